#!/usr/bin/env bash
# The main job on embedded defaults: build the sample guests, run each through
# `nimbus run`, and show the response, the guest's logs, the usage record and
# the billing metrics.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2 >/dev/null 2>&1 || true
cargo build --quiet --bin nimbus
cargo run --quiet -p nimbus-guests >/dev/null
nimbus=target/debug/nimbus
out=target/demo
mkdir -p "$out"
rm -f "$out/usage.jsonl"

run() {
    local title=$1
    shift
    echo "== $title: nimbus run $*"
    set +e
    "$nimbus" run "$@" --ledger "$out/usage.jsonl" --usage-json "$out/usage.json" --metrics "$out/metrics.txt"
    local rc=$?
    set -e
    echo
    echo "-- exit code $rc; usage record:"
    cat "$out/usage.json"
    echo
}

printf 'hello, nimbus' >"$out/hello.txt"
printf '1000000' >"$out/million.txt"
run "echo" target/guests/echo.wasm --data "$out/hello.txt" --tenant acme
run "compute (primes below 1,000,000)" target/guests/compute.wasm --data "$out/million.txt" --tenant acme
run "spin-loop (stopped by fuel)" target/guests/spin-loop.wasm --fuel 50000000
run "sleep (stopped by the deadline)" target/guests/sleep.wasm --timeout 300
run "memory-bomb (stopped by the memory limit)" target/guests/memory-bomb.wasm --memory 16777216
run "trap (a guest panic)" target/guests/trap.wasm

echo "== billing metrics of the last run (Prometheus text format):"
grep -v '^#' "$out/metrics.txt" | grep -v ' 0$'
echo
echo "== usage ledger ($out/usage.jsonl): $(wc -l <"$out/usage.jsonl") records"
