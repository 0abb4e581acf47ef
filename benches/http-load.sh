#!/usr/bin/env bash
# HTTP load benchmark: Nimbus (`nimbus serve`, metering, metrics and ledger
# on) vs `wasmtime serve` 48.0.8 on the same hello-world wasi:http guest, same
# machine, same run, driven by wrk on loopback.
#
#   bash benches/http-load.sh            # DURATION=10 CONNECTIONS=32 THREADS=2 ROUNDS=2
#
# Needs wrk (Debian package) and wasmtime 48.0.8
# (`cargo install wasmtime-cli --version 48.0.8 --locked`); both are installed
# if missing. Prints requests/s and p50/p99 latency for both, and the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-2}
NIMBUS_PORT=${NIMBUS_PORT:-18081}
WASMTIME_PORT=${WASMTIME_PORT:-18082}

command -v wrk >/dev/null || { apt-get install -y -qq wrk >/dev/null; }
if ! wasmtime --version 2>/dev/null | grep -q '^wasmtime 48\.0\.8'; then
    cargo install wasmtime-cli --version 48.0.8 --locked
fi
rustup target add wasm32-wasip2 >/dev/null 2>&1 || true
cargo build --release --quiet --bin nimbus
cargo run --release --quiet -p nimbus-guests >/dev/null
guest=target/guests/hello-http.wasm

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/nimbus.toml" <<TOML
listen = "127.0.0.1:$NIMBUS_PORT"
ledger = "$work/usage.jsonl"
[tenants.bench]
max_concurrency = 256
[[functions]]
tenant = "bench"
name = "hello"
component = "$PWD/$guest"
public = true
TOML

wait_port() {
    for _ in $(seq 1 200); do
        curl -sf -o /dev/null "http://127.0.0.1:$1/$2" && return 0
        sleep 0.05
    done
    echo "server on port $1 did not come up" >&2
    return 1
}

target/release/nimbus serve --config "$work/nimbus.toml" 2>"$work/nimbus.log" &
pids+=($!)
wasmtime serve -Scli -O pooling-allocator=y --addr "127.0.0.1:$WASMTIME_PORT" "$guest" 2>"$work/wasmtime.log" >/dev/null &
pids+=($!)
wait_port "$NIMBUS_PORT" bench/hello/
wait_port "$WASMTIME_PORT" bench/hello/

# wrk --latency prints "50%" and "99%" lines with units (us, ms, s).
to_us() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u);
        if (u == "us") print n; else if (u == "ms") print n * 1000; else if (u == "s") print n * 1000000; else print n
    }'
}
run_wrk() { # name port -> "rps p50_us p99_us"
    local out
    out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "http://127.0.0.1:$2/bench/hello/")
    local rps p50 p99
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    p50=$(to_us "$(awk '$1 == "50%" {print $2}' <<<"$out")")
    p99=$(to_us "$(awk '$1 == "99%" {print $2}' <<<"$out")")
    if grep -q "Non-2xx" <<<"$out"; then
        echo "warning: $1 answered non-2xx responses: $(grep Non-2xx <<<"$out")" >&2
    fi
    echo "$rps $p50 $p99"
}

# Warm both, then alternate rounds so drift on the machine hits both alike.
wrk -t1 -c4 -d2s "http://127.0.0.1:$NIMBUS_PORT/bench/hello/" >/dev/null
wrk -t1 -c4 -d2s "http://127.0.0.1:$WASMTIME_PORT/bench/hello/" >/dev/null
declare -a n_rps n_p50 n_p99 w_rps w_p50 w_p99
for r in $(seq 1 "$ROUNDS"); do
    read -r a b c <<<"$(run_wrk nimbus "$NIMBUS_PORT")"
    n_rps+=("$a"); n_p50+=("$b"); n_p99+=("$c")
    read -r a b c <<<"$(run_wrk wasmtime "$WASMTIME_PORT")"
    w_rps+=("$a"); w_p50+=("$b"); w_p99+=("$c")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
nr=$(median "${n_rps[@]}"); np50=$(median "${n_p50[@]}"); np99=$(median "${n_p99[@]}")
wr=$(median "${w_rps[@]}"); wp50=$(median "${w_p50[@]}"); wp99=$(median "${w_p99[@]}")
records=$(wc -l <"$work/usage.jsonl")

echo
echo "hello-http, wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s, median of $ROUNDS rounds, $(nproc) cores"
printf '%-28s %12s %10s %10s\n' server "requests/s" "p50 (us)" "p99 (us)"
printf '%-28s %12.0f %10.0f %10.0f\n' "nimbus serve (metered)" "$nr" "$np50" "$np99"
printf '%-28s %12.0f %10.0f %10.0f\n' "wasmtime serve 48.0.8" "$wr" "$wp50" "$wp99"
awk -v a="$nr" -v b="$wr" 'BEGIN { printf "throughput ratio nimbus / wasmtime serve: %.2fx (target >= 1.5x)\n", a / b }'
echo "nimbus usage records written: $records"
