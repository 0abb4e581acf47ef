#!/usr/bin/env bash
# Object-created event latency on the embedded blob store vs on NATS
# JetStream: one node on one nats-server, and three nodes on a three-server
# cluster (replicas 3), same machine, same run. EVENTS objects are uploaded
# one at a time through the first node's storage API into a container with
# an object trigger; each is timed from the upload's answer until the
# trigger's invocation shows in the nodes' summed
# `nimbus_invocations_total{function="worker",outcome="success"}`. The
# worker is the `echo` guest. The polling adds a few milliseconds to every
# case alike.
#
#   bash benches/cluster-events.sh    # EVENTS=50
set -euo pipefail
cd "$(dirname "$0")/.."

EVENTS=${EVENTS:-50}

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

# config DIR PORT CLUSTER_TOML
config() {
    cat >"$1/nimbus.toml" <<TOML
listen = "127.0.0.1:$2"
ledger = "usage.jsonl"
data_dir = "data"
$3
[tenants.bench]
api_keys = ["bench-key"]
[[functions]]
tenant = "bench"
name = "worker"
component = "echo.wasm"
[[object_triggers]]
tenant = "bench"
function = "worker"
container = "in"
TOML
}

start_node() { # DIR; its pid in $node_pid
    target/release/nimbus serve --config "$1/nimbus.toml" >/dev/null 2>>"$1/nimbus.log" &
    node_pid=$!
    pids+=("$node_pid")
}

wait_up() { # PORT
    for _ in $(seq 1 600); do
        curl -sf "http://127.0.0.1:$1/readyz" >/dev/null 2>&1 && return
        sleep 0.1
    done
    echo "node on $1 never ready" >&2
    exit 1
}

successes() { # PORTS...
    local total=0 n
    for port in "$@"; do
        n=$(curl -sf "http://127.0.0.1:$port/metrics" |
            awk '/^nimbus_invocations_total\{tenant="bench",function="worker",outcome="success"\}/ { print $2 }')
        total=$((total + ${n:-0}))
    done
    echo "$total"
}

# run_case NAME NODES CLUSTER_TOML: prints "NAME median_us p90_us"
run_case() {
    local name=$1 nodes=$2 cluster=$3
    local dirs=() ports=() started=()
    for i in $(seq 1 "$nodes"); do
        local d="$work/case-$name-$i"
        mkdir -p "$d"
        cp target/guests/echo.wasm "$d/echo.wasm"
        dirs+=("$d")
        ports+=("$(free_port)")
    done
    for i in $(seq 0 $((nodes - 1))); do
        config "${dirs[$i]}" "${ports[$i]}" "$cluster"
        start_node "${dirs[$i]}"
        started+=("$node_pid")
    done
    for port in "${ports[@]}"; do wait_up "$port"; done
    local api="http://127.0.0.1:${ports[0]}/storage/v1/bench"
    for _ in $(seq 1 600); do
        curl -sf -o /dev/null -X PUT -H 'authorization: Bearer bench-key' "$api/in" && break
        sleep 0.1
    done
    # One warm-up event, then EVENTS timed one at a time: from the upload's
    # answer until the trigger's invocation is counted on some node.
    local lat=() seen t0 t1
    for i in $(seq 0 "$EVENTS"); do
        seen=$(successes "${ports[@]}")
        curl -sf -o /dev/null -H 'authorization: Bearer bench-key' --data-binary "object $i" \
            -X PUT "$api/in/o$i"
        t0=$(date +%s%N)
        local until=$((seen + 1))
        for _ in $(seq 1 5000); do
            [ "$(successes "${ports[@]}")" -ge "$until" ] && break
            sleep 0.002
        done
        t1=$(date +%s%N)
        [ "$i" -gt 0 ] && lat+=($(((t1 - t0) / 1000)))
    done
    for p in "${started[@]}"; do
        kill "$p"
        wait "$p" 2>/dev/null || true
    done
    local sorted
    sorted=$(printf '%s\n' "${lat[@]}" | sort -n)
    echo "$name $(sed -n "$(((${#lat[@]} + 1) / 2))p" <<<"$sorted") $(sed -n "$(((${#lat[@]} * 9 + 9) / 10))p" <<<"$sorted")"
}

results=()
results+=("$(run_case embedded 1 "")")

n1=$(free_port)
start_nats "$single_nats" single "$n1"
results+=("$(run_case "nats-1-server" 1 "[cluster]
urls = [\"nats://127.0.0.1:$n1\"]")")

if [ -n "$current_nats" ]; then
    ports=() routes=()
    for i in 1 2 3; do
        ports+=("$(free_port)")
        routes+=("$(free_port)")
    done
    route_list="nats-route://127.0.0.1:${routes[0]}, nats-route://127.0.0.1:${routes[1]}, nats-route://127.0.0.1:${routes[2]}"
    for i in 0 1 2; do
        start_nats "$current_nats" "c$i" "${ports[$i]}" "${routes[$i]}" "$route_list"
    done
    results+=("$(run_case "nats-3-nodes-R3" 3 "[cluster]
urls = [\"nats://127.0.0.1:${ports[0]}\", \"nats://127.0.0.1:${ports[1]}\", \"nats://127.0.0.1:${ports[2]}\"]
replicas = 3")")
else
    echo "(no nats-server 2.10+ on PATH: three-server case skipped)"
fi

echo
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(free -g | awk '/Mem:/ {print $2}') GiB, Linux $(uname -r)"
echo "nats-server: single $("$single_nats" --version | sed 's/nats-server: //')${current_nats:+, cluster $("$current_nats" --version | sed 's/nats-server: //')}"
echo "object-created event latency, $EVENTS uploads one at a time (echo worker): upload answered -> its invocation counted (metrics polled every ~2 ms + a scrape)"
printf '%-20s %12s %12s %12s\n' backend "median ms" "p90 ms" "vs embedded"
read -r _ base _ <<<"${results[0]}"
for line in "${results[@]}"; do
    read -r name m p <<<"$line"
    printf '%-20s %12s %12s %11sx\n' "$name" \
        "$(awk -v n="$m" 'BEGIN { printf "%.1f", n / 1000 }')" \
        "$(awk -v n="$p" 'BEGIN { printf "%.1f", n / 1000 }')" \
        "$(awk -v a="$m" -v b="$base" 'BEGIN { printf "%.2f", a / (b > 0 ? b : 1) }')"
done
