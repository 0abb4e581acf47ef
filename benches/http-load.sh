#!/usr/bin/env bash
# HTTP load benchmark: Nimbus (`nimbus serve`, metering, metrics and ledger
# on) vs `wasmtime serve` 48.0.8 on the same hello-world wasi:http guests
# (Rust, Python via componentize-py, JavaScript via componentize-js), same
# machine, same run, driven by wrk on loopback. Both servers instantiate
# every request afresh (wasmtime serve always does; Nimbus never reuses an
# instance).
#
#   bash benches/http-load.sh    # DURATION=10 CONNECTIONS=32 BIG_CONNECTIONS=16 THREADS=2 ROUNDS=2 GUESTS="rust python js"
#
# Also measures, for Python and JavaScript, the admin API deploy (compile)
# and the first request after it: cold (empty compile cache), then warm
# (a restarted `nimbus serve` on the same cache), next to `wasmtime serve`'s
# start-to-first-response (compiling, its cache off).
#
# For the Rust guest it also measures nginx answering the same 19-byte body
# from its config (no guest, no instance): the ceiling of loopback HTTP with
# this wrk on this machine, and Nimbus as a fraction of it.
#
# Needs wrk and nginx (Debian packages `wrk`, `nginx-light`), wasmtime 48.0.8
# (`cargo install wasmtime-cli --version 48.0.8 --locked`), componentize-py
# and componentize-js (`.ci/setup`); wrk, nginx and wasmtime are installed if
# missing. Prints the machine, requests/s and p50/p99 latency for all, and
# the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-32}
# Python and JavaScript requests take milliseconds each: fewer connections,
# as `wasmtime serve` was first measured with.
BIG_CONNECTIONS=${BIG_CONNECTIONS:-16}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-2}
GUESTS=${GUESTS:-"rust python js"}
NIMBUS_PORT=${NIMBUS_PORT:-18081}
# wasmtime serve listens on WASMTIME_PORT and up, two per guest.
WASMTIME_PORT=${WASMTIME_PORT:-18082}
NGINX_PORT=${NGINX_PORT:-18080}
ADMIN_KEY=bench-admin

command -v wrk >/dev/null || { apt-get install -y -qq wrk >/dev/null; }
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { apt-get install -y -qq nginx-light >/dev/null; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if ! wasmtime --version 2>/dev/null | grep -q '^wasmtime 48\.0\.8'; then
    cargo install wasmtime-cli --version 48.0.8 --locked
fi
rustup target add wasm32-wasip2 >/dev/null 2>&1 || true
cargo build --release --quiet --bin nimbus
cargo run --release --quiet -p nimbus-guests >/dev/null
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
declare -A wasm=([rust]=target/guests/hello-http.wasm)
# The same standard components `wasmtime serve` runs: built as a user
# would, against wasi:http/proxy without the SDK.
for lang in python js; do
    if [[ " $GUESTS " == *" $lang "* ]]; then
        wasm[$lang]=$work/$lang-hello.wasm
        target/release/nimbus build "guests/$lang/hello-http" --world wasi:http/proxy@0.2.12 \
            -o "${wasm[$lang]}" >&2
    fi
done


# Functions are named after their language: /bench/rust/, /bench/python/...
cat >"$work/nimbus.toml" <<TOML
listen = "127.0.0.1:$NIMBUS_PORT"
ledger = "$work/usage.jsonl"
data_dir = "$work/data"
compile_cache = "$work/compiled"
admin_keys = ["$ADMIN_KEY"]
[tenants.bench]
max_concurrency = 256
[[functions]]
tenant = "bench"
name = "rust"
component = "$PWD/${wasm[rust]}"
public = true
TOML

wait_port() { # port path [tries of 50 ms]
    for _ in $(seq 1 "${3:-200}"); do
        curl -sf -o /dev/null "http://127.0.0.1:$1/$2" && return 0
        sleep 0.05
    done
    echo "server on port $1 did not come up" >&2
    return 1
}
ms() { awk -v s="$1" 'BEGIN { printf "%.0f", s * 1000 }'; }
start_nimbus() {
    target/release/nimbus serve --config "$work/nimbus.toml" 2>>"$work/nimbus.log" &
    nimbus_pid=$!
    pids+=("$nimbus_pid")
    wait_port "$NIMBUS_PORT" bench/rust/
}
stop_nimbus() {
    kill "$nimbus_pid"
    wait "$nimbus_pid" 2>/dev/null || true
}
# Deploys $lang through the admin API, then sends its first request:
# prints "deploy_ms first_request_ms".
deploy_and_first() {
    local lang=$1 deploy first
    deploy=$(curl -sf -o /dev/null -w '%{time_total}' -X PUT \
        -H "Authorization: Bearer $ADMIN_KEY" --data-binary "@${wasm[$lang]}" \
        "http://127.0.0.1:$NIMBUS_PORT/admin/v1/tenants/bench/functions/$lang?public=true")
    first=$(curl -sf -o /dev/null -w '%{time_total}' "http://127.0.0.1:$NIMBUS_PORT/bench/$lang/")
    echo "$(ms "$deploy") $(ms "$first")"
}
metric() { # family -> value on the running nimbus
    curl -sf "http://127.0.0.1:$NIMBUS_PORT/metrics" | awk -v f="$1" '$1 == f {print $2}'
}

declare -A cold_deploy cold_first warm_deploy warm_first ws_first
big=()
for lang in python js; do [[ " $GUESTS " == *" $lang "* ]] && big+=("$lang"); done
if ((${#big[@]})); then
    # Cold: an empty compile cache, so each deploy compiles.
    start_nimbus
    for lang in "${big[@]}"; do
        read -r cold_deploy[$lang] cold_first[$lang] <<<"$(deploy_and_first "$lang")"
    done
    cold_compiled=$(metric nimbus_component_compilations_total)
    stop_nimbus
    # Warm: a new process on the same cache loads what the first compiled.
    start_nimbus
    for lang in "${big[@]}"; do
        read -r warm_deploy[$lang] warm_first[$lang] <<<"$(deploy_and_first "$lang")"
    done
    warm_compiled=$(metric nimbus_component_compilations_total)
    warm_hits=$(metric nimbus_component_cache_hits_total)
else
    start_nimbus
fi

# wasmtime serve, two per guest: with the pooling allocator and with its
# default (on-demand) one; which is faster depends on the guest, and the
# ratio is taken against the faster. Its cache is off, so start to first
# response is its compile time plus one request.
port=$WASMTIME_PORT
declare -A ws_port ws_pid
for lang in $GUESTS; do
    for alloc in pooling default; do
        ws_port[$lang-$alloc]=$port
        opt=()
        [ "$alloc" = pooling ] && opt=(-O pooling-allocator=y)
        t0=$(date +%s.%N)
        wasmtime serve -Scli "${opt[@]}" -C cache=n --addr "127.0.0.1:$port" \
            "${wasm[$lang]}" 2>"$work/wasmtime-$lang-$alloc.log" >/dev/null &
        pids+=($!)
        ws_pid[$lang-$alloc]=$!
        wait_port "$port" bench/ 6000 || { cat "$work/wasmtime-$lang-$alloc.log" >&2; exit 1; }
        [ "$alloc" = pooling ] &&
            ws_first[$lang]=$(ms "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')")
        port=$((port + 1))
    done
done

# nginx, one worker per core as it is deployed, its logs off: the static
# body hello-http answers, so both responses carry the same bytes.
mkdir -p "$work/nginx"
cat >"$work/nginx/nginx.conf" <<NGINX
worker_processes $(nproc);
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / { default_type text/plain; return 200 "Hello from Nimbus!\n"; }
    }
}
NGINX
"$NGINX" -p "$work/nginx" -c "$work/nginx/nginx.conf" >/dev/null 2>"$work/nginx/start.log" &
pids+=($!)
nginx_pid=$!
wait_port "$NGINX_PORT" bench/ || { cat "$work/nginx/start.log" "$work/nginx/error.log" >&2; exit 1; }

# wrk --latency prints "50%" and "99%" lines with units (us, ms, s).
to_us() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u);
        if (u == "us") print n; else if (u == "ms") print n * 1000; else if (u == "s") print n * 1000000; else print n
    }'
}
# CPU time (user + system, in clock ticks) of a server process and its
# children (nginx's workers): per request, it is steadier on this VM than
# requests/s, which move with what the hypervisor gives the two cores.
cpu_ticks() {
    local t=0 p
    for p in "$1" $(pgrep -P "$1" || true); do
        t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    done
    echo "$t"
}
run_wrk() { # name url connections server_pid -> "rps p50_us p99_us cpu_us_per_request"
    local out c0 c1
    c0=$(cpu_ticks "$4")
    out=$(wrk -t"$THREADS" -c"$3" -d"${DURATION}s" --latency "$2")
    c1=$(cpu_ticks "$4")
    local rps p50 p99 cpu
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    p50=$(to_us "$(awk '$1 == "50%" {print $2}' <<<"$out")")
    p99=$(to_us "$(awk '$1 == "99%" {print $2}' <<<"$out")")
    cpu=$(awk -v c0="$c0" -v c1="$c1" -v hz="$(getconf CLK_TCK)" \
        '/requests in/ {printf "%.1f", (c1 - c0) / hz * 1e6 / $1}' <<<"$out")
    if grep -q -e "Non-2xx" -e "Socket errors" <<<"$out"; then
        echo "warning: $1 answered errors: $(grep -e Non-2xx -e 'Socket errors' <<<"$out")" >&2
    fi
    echo "$rps $p50 $p99 $cpu"
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

cpu=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo)
echo
echo "machine: $(nproc) cores, ${cpu:-unknown CPU}, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), Linux $(uname -r)"
echo "wrk -t$THREADS -d${DURATION}s -c$CONNECTIONS (rust) / -c$BIG_CONNECTIONS (python, js), median of $ROUNDS rounds, servers alternating, fresh instance per request on all"
printf '%-8s %-30s %12s %10s %10s %14s\n' guest server "requests/s" "p50 (us)" "p99 (us)" "CPU us/request"
for lang in $GUESTS; do
    conns=$BIG_CONNECTIONS
    [ "$lang" = rust ] && conns=$CONNECTIONS
    urls=("http://127.0.0.1:$NIMBUS_PORT/bench/$lang/"
        "http://127.0.0.1:${ws_port[$lang-pooling]}/bench/$lang/"
        "http://127.0.0.1:${ws_port[$lang-default]}/bench/$lang/")
    names=("nimbus serve (metered)" "wasmtime serve (pooling)" "wasmtime serve (default)")
    servers=("$nimbus_pid" "${ws_pid[$lang-pooling]}" "${ws_pid[$lang-default]}")
    if [ "$lang" = rust ]; then
        urls+=("http://127.0.0.1:$NGINX_PORT/bench/$lang/")
        names+=("nginx (static body, ceiling)")
        servers+=("$nginx_pid")
    fi
    for u in "${urls[@]}"; do wrk -t1 -c4 -d2s "$u" >/dev/null; done
    declare -A rps=() p50=() p99=() cpu=()
    for _ in $(seq 1 "$ROUNDS"); do
        for i in "${!urls[@]}"; do
            read -r a b c d <<<"$(run_wrk "${names[$i]} $lang" "${urls[$i]}" "$conns" "${servers[$i]}")"
            rps[$i]+="$a " p50[$i]+="$b " p99[$i]+="$c " cpu[$i]+="$d "
        done
    done
    declare -A med=()
    for i in "${!urls[@]}"; do
        # shellcheck disable=SC2086
        med[$i]=$(median ${rps[$i]})
        # shellcheck disable=SC2086
        printf '%-8s %-30s %12.0f %10.0f %10.0f %14.1f\n' "$([ "$i" = 0 ] && echo "$lang")" "${names[$i]}" \
            "${med[$i]}" "$(median ${p50[$i]})" "$(median ${p99[$i]})" "$(median ${cpu[$i]})"
    done
    awk -v l="$lang" -v a="${med[0]}" -v b="${med[1]}" -v c="${med[2]}" \
        'BEGIN { best = (b > c) ? b : c; printf "%-8s ratio nimbus / faster wasmtime serve: %.2fx\n", "", a / best }'
    if [ "$lang" = rust ]; then
        awk -v a="${med[0]}" -v n="${med[3]}" \
            'BEGIN { printf "%-8s fraction of the nginx ceiling: nimbus %.2f\n", "", a / n }'
    fi
done
echo "nimbus usage records written: $(wc -l <"$work/usage.jsonl")"

if ((${#big[@]})); then
    echo
    echo "deploy through the admin API and first request after it (ms); nimbus serve release build"
    printf '%-8s %14s %14s %14s %14s %22s\n' guest "cold deploy" "cold 1st req" \
        "warm deploy" "warm 1st req" "wasmtime serve start"
    for lang in "${big[@]}"; do
        printf '%-8s %14s %14s %14s %14s %22s\n' "$lang" "${cold_deploy[$lang]}" \
            "${cold_first[$lang]}" "${warm_deploy[$lang]}" "${warm_first[$lang]}" "${ws_first[$lang]}"
    done
    echo "cold: compilations $cold_compiled (rust at start + each deploy); warm restart: compilations $warm_compiled, cache hits $warm_hits"
    echo "(wasmtime serve start = process start to first response, compiling with its cache off)"
fi
