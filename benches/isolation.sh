#!/usr/bin/env bash
# Noisy neighbours: a victim tenant's hello-http under wrk while a second
# tenant, inside its own default limits (timeout 2 s), loops on hostile
# guests — spin-loop, memory-bomb, log-flood, sleep, and a mix — all in one
# run against one release `nimbus serve`. Prints the victim's requests/s and
# p50/p99 alone and under each load (and the share of alone it keeps), and
# how the hostile tenant's own invocations ended.
#
#   bash benches/isolation.sh      # DURATION=10 VICTIM_CONNECTIONS=8
#
# Needs wrk (Debian package; installed if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
VICTIM_CONNECTIONS=${VICTIM_CONNECTIONS:-8}
PORT=${PORT:-18181}

command -v wrk >/dev/null || { apt-get install -y -qq wrk >/dev/null; }
cargo build --release --quiet --bin nimbus
cargo run --release --quiet -p nimbus-guests >/dev/null

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

g=$PWD/target/guests
cat >"$work/nimbus.toml" <<TOML
listen = "127.0.0.1:$PORT"
ledger = "$work/usage.jsonl"
data_dir = "$work/data"
[tenants.victim]
[tenants.hostile]
timeout_ms = 2000
[[functions]]
tenant = "victim"
name = "hello"
component = "$g/hello-http.wasm"
public = true
TOML
for f in spin-loop memory-bomb log-flood sleep; do
    cat >>"$work/nimbus.toml" <<TOML
[[functions]]
tenant = "hostile"
name = "$f"
component = "$g/$f.wasm"
public = true
TOML
done

target/release/nimbus serve --config "$work/nimbus.toml" 2>"$work/nimbus.log" &
pids+=($!)
for _ in $(seq 1 600); do
    curl -sf -o /dev/null "http://127.0.0.1:$PORT/victim/hello/" && break
    sleep 0.1
done
curl -sf -o /dev/null "http://127.0.0.1:$PORT/victim/hello/" || { cat "$work/nimbus.log"; exit 1; }

to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u);
        if (u == "us") print n / 1000; else if (u == "ms") print n; else if (u == "s") print n * 1000; else print n
    }'
}

# scenario "name" "function:connections ..."
declare -a rows
alone_rps=
scenario() {
    local name=$1 load=$2 hpids=() out
    for spec in $load; do
        local f=${spec%%:*} c=${spec##*:}
        wrk -t1 -c"$c" -d"$((DURATION + 2))s" "http://127.0.0.1:$PORT/hostile/$f/" \
            >"$work/hostile-$f.txt" 2>&1 &
        hpids+=($!)
    done
    [ -n "$load" ] && sleep 1
    out=$(wrk -t1 -c"$VICTIM_CONNECTIONS" -d"${DURATION}s" --latency "http://127.0.0.1:$PORT/victim/hello/")
    for p in "${hpids[@]}"; do wait "$p" || true; done
    local rps p50 p99
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    p50=$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")
    p99=$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")
    [ -z "$alone_rps" ] && alone_rps=$rps
    rows+=("$(printf '%-34s %10.0f %9.2f %9.2f %8.1f %%' "$name" "$rps" "$p50" "$p99" \
        "$(awk -v a="$rps" -v b="$alone_rps" 'BEGIN { print 100 * a / b }')")")
}

scenario "alone" ""
scenario "16 clients on spin-loop" "spin-loop:16"
scenario "8 clients on memory-bomb" "memory-bomb:8"
scenario "8 clients on log-flood" "log-flood:8"
scenario "12 spin + 6 bomb + 4 flood" "spin-loop:12 memory-bomb:6 log-flood:4"
scenario "64 clients on sleep" "sleep:64"

cpu=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo)
echo
echo "machine: $(nproc) cores, ${cpu:-unknown CPU}, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), Linux $(uname -r)"
echo "victim: wrk -t1 -c$VICTIM_CONNECTIONS -d${DURATION}s on hello-http; hostile tenant at default limits, timeout 2 s"
printf '%-34s %10s %9s %9s %10s\n' "load from the hostile tenant" "req/s" "p50 ms" "p99 ms" "of alone"
printf '%s\n' "${rows[@]}"
echo
echo "how the hostile tenant's invocations ended (usage records):"
awk -F'"outcome":"' '/"tenant":"hostile"/ { split($2, a, "\""); n[a[1]]++ } END { for (o in n) printf "  %-16s %d\n", o, n[o] }' "$work/usage.jsonl"
echo "victim records: $(grep -c '"tenant":"victim"' "$work/usage.jsonl")"
