#!/usr/bin/env bash
# Queue-trigger throughput on the embedded queues (redb) vs on NATS
# JetStream: one node on one nats-server, and three nodes on a three-server
# cluster (replicas 3), same machine, same run. Each case fills the queue
# with MESSAGES messages while no trigger consumes it, then starts the
# node(s) with a queue trigger and times the drain: from the start until
# the nodes' `nimbus_invocations_total{function="worker",outcome="success"}`
# sum to MESSAGES. The worker is the `echo` guest (no services), so the
# figure is the queue's cost plus one invocation per message. Two cores:
# three nodes share them, so this is overhead against embedded, not scaling.
#
#   bash benches/cluster-queue.sh    # MESSAGES=2000 BATCH=10
set -euo pipefail
cd "$(dirname "$0")/.."

MESSAGES=${MESSAGES:-2000}
BATCH=${BATCH:-10}

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

# config DIR PORT CLUSTER_TOML WITH_TRIGGER
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
TOML
    if [ "$4" = yes ]; then
        cat >>"$1/nimbus.toml" <<TOML
[[queue_triggers]]
tenant = "bench"
function = "worker"
queue = "jobs"
batch_size = $BATCH
TOML
    fi
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

# run_case NAME NODES CLUSTER_TOML: prints "NAME messages_per_second"
run_case() {
    local name=$1 nodes=$2 cluster=$3
    local dirs=() ports=()
    for i in $(seq 1 "$nodes"); do
        local d="$work/case-$name-$i"
        mkdir -p "$d"
        cp target/guests/echo.wasm "$d/echo.wasm"
        dirs+=("$d")
        ports+=("$(free_port)")
    done
    # Fill: the first node, without a trigger.
    config "${dirs[0]}" "${ports[0]}" "$cluster" no
    local pid
    start_node "${dirs[0]}"
    pid=$node_pid
    wait_up "${ports[0]}"
    local sent
    sent=$(seq 1 "$MESSAGES" | xargs -P 8 -I{} curl -s -o /dev/null -w '%{http_code}\n' \
        -H 'authorization: Bearer bench-key' --data-binary 'm{}' \
        "http://127.0.0.1:${ports[0]}/queues/v1/bench/jobs/messages" | grep -c '^20' || true)
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    if [ "$sent" != "$MESSAGES" ]; then
        echo "$name failed:$sent/$MESSAGES-sent(see-${dirs[0]}/nimbus.log)"
        return
    fi
    wait "$pid" 2>/dev/null || true
    # Drain: every node with the trigger, timed from when all are ready
    # (triggers start just before); what ran before that is not counted.
    local t0 s0 started=()
    for i in $(seq 0 $((nodes - 1))); do
        config "${dirs[$i]}" "${ports[$i]}" "$cluster" yes
        start_node "${dirs[$i]}"
        started+=("$node_pid")
    done
    for port in "${ports[@]}"; do wait_up "$port"; done
    t0=$(date +%s%N)
    s0=$(successes "${ports[@]}")
    while [ "$(successes "${ports[@]}")" -lt "$MESSAGES" ]; do
        sleep 0.02
    done
    local t1
    t1=$(date +%s%N)
    for p in "${started[@]}"; do
        kill "$p"
        wait "$p" 2>/dev/null || true
    done
    echo "$name $(awk -v n=$((MESSAGES - s0)) -v ns=$((t1 - t0)) 'BEGIN { printf "%.0f", n / (ns / 1e9) }')"
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
echo "queue-trigger drain of $MESSAGES messages (batch $BATCH, echo worker), from every node ready to the last success"
printf '%-20s %12s %12s\n' backend "msg/s" "vs embedded"
read -r _ base <<<"${results[0]}"
for line in "${results[@]}"; do
    read -r name r <<<"$line"
    printf '%-20s %12s %11sx\n' "$name" "$r" \
        "$(awk -v a="$r" -v b="$base" 'BEGIN { printf "%.2f", a / (b > 0 ? b : 1) }')"
done
