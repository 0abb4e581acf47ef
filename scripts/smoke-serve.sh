#!/usr/bin/env bash
# CI smoke test of the README's main job: `nimbus serve` on the sample config,
# a few requests as a user would send them, a scrape, then a graceful stop.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo run --quiet -p nimbus-guests >/dev/null
cargo build --quiet --bin nimbus
port=${PORT:-18180}
log=$(mktemp)
target/debug/nimbus serve --config nimbus.toml --listen "127.0.0.1:$port" 2>"$log" &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -f "$log"' EXIT
# The server listens at once and is ready once its functions are loaded:
# the 18 MB Python seed handler takes a minute or two to compile in a debug
# build the first time (then it loads from the compile cache under
# data_dir). /healthz answers first, /readyz when everything is loaded.
for _ in $(seq 1 3000); do
    curl -sf -o /dev/null "http://127.0.0.1:$port/healthz" && break
    kill -0 $pid 2>/dev/null || { echo "smoke: nimbus serve exited" >&2; cat "$log" >&2; exit 1; }
    sleep 0.1
done
for _ in $(seq 1 3000); do
    curl -sf -o /dev/null "http://127.0.0.1:$port/readyz" && break
    kill -0 $pid 2>/dev/null || { echo "smoke: nimbus serve exited" >&2; cat "$log" >&2; exit 1; }
    sleep 0.1
done

check() { # expected-status curl-args...
    local want=$1
    shift
    local got
    got=$(curl -s -o /dev/null -w '%{http_code}' "$@")
    if [ "$got" != "$want" ]; then
        echo "smoke: curl $* -> $got, expected $want" >&2
        cat "$log" >&2
        exit 1
    fi
}
base="http://127.0.0.1:$port"
[ "$(curl -sf "$base/hello")" = "Hello from Nimbus!" ] || { echo "smoke: /hello" >&2; exit 1; }
check 401 "$base/acme/hello/echo" -d x
check 200 -H 'Authorization: Bearer acme-secret' "$base/acme/hello/echo" -d x
check 404 "$base/nobody/nothing"
[ "$(curl -sf -H 'Authorization: Bearer acme-secret' "$base/acme/compute" -d 1000)" = 168 ] ||
    { echo "smoke: compute" >&2; exit 1; }
[ "$(curl -sf -H 'Authorization: Bearer acme-secret' "$base/acme/config" -d greeting)" = "Hello from wasi:config!" ] ||
    { echo "smoke: config" >&2; exit 1; }
# Read whole responses before grepping: `curl | grep -q` fails under
# pipefail when grep stops reading early and curl gets SIGPIPE.
logs=$(curl -sf -H 'Authorization: Bearer admin-secret' "$base/admin/v1/tenants/acme/functions/config/logs")
grep -q '"level":"info"' <<<"$logs" || { echo "smoke: logs" >&2; exit 1; }
n1=$(curl -sf -H 'Authorization: Bearer acme-secret' "$base/acme/counter" -d 'incr visits smoke')
n2=$(curl -sf -H 'Authorization: Bearer acme-secret' "$base/acme/counter" -d 'incr visits smoke')
[ "$n2" = "$((n1 + 1))" ] || { echo "smoke: counter $n1 then $n2" >&2; exit 1; }
# The seed's pipeline: upload an image, get its thumbnail.
png=$(mktemp --suffix=.png)
python3 scripts/make-png.py "$png" 640 400
check 200 -H 'Authorization: Bearer demo-secret' -T "$png" "$base/storage/v1/demo/uploads/smoke.png"
rm -f "$png"
thumb=$(mktemp)
for _ in $(seq 1 100); do
    code=$(curl -s -o "$thumb" -w '%{http_code}' -H 'Authorization: Bearer demo-secret' \
        "$base/storage/v1/demo/thumbnails/smoke.png")
    [ "$code" = 200 ] && break
    sleep 0.1
done
dims=$(python3 -c 'import struct,sys; d=open(sys.argv[1],"rb").read(); print("%dx%d" % struct.unpack(">II", d[16:24]))' "$thumb")
rm -f "$thumb"
[ "$dims" = 128x80 ] || { echo "smoke: thumbnail $code $dims" >&2; cat "$log" >&2; exit 1; }
# The seed's own Python handler ran on the same upload: its line is in its logs.
seen=
for _ in $(seq 1 100); do
    seed_logs=$(curl -sf -H 'Authorization: Bearer admin-secret' "$base/admin/v1/tenants/demo/functions/seed-handler/logs" || true)
    grep -qF '开始处理文件: smoke.png 来自桶: uploads' <<<"$seed_logs" && { seen=1; break; }
    sleep 0.1
done
[ -n "$seen" ] || { echo "smoke: seed-handler logs: $seed_logs" >&2; cat "$log" >&2; exit 1; }
# A queued message: published by a guest, consumed by the worker.
# `get` of a counter that does not exist yet is an error: count it as 0.
count() {
    local n
    n=$(curl -s -H 'Authorization: Bearer acme-secret' "$base/acme/counter" -d 'get visits queued' || true)
    case "$n" in *[!0-9]*|"") echo 0 ;; *) echo "$n" ;; esac
}
q1=$(count)
check 200 -H 'Authorization: Bearer acme-secret' "$base/acme/publisher" -d 'publish jobs incr visits queued'
for _ in $(seq 1 100); do
    q2=$(count)
    [ "$q2" = "$((q1 + 1))" ] && break
    sleep 0.1
done
[ "$q2" = "$((q1 + 1))" ] || { echo "smoke: queue $q1 then $q2" >&2; exit 1; }
metrics=$(curl -sf "$base/metrics")
grep -q 'nimbus_object_events_total{tenant="demo",container="uploads",result="delivered"}' <<<"$metrics" ||
    { echo "smoke: object event metrics" >&2; exit 1; }
grep -q 'nimbus_invocations_total{tenant="acme",function="hello",outcome="success"} 2' <<<"$metrics" ||
    { echo "smoke: metrics" >&2; echo "$metrics" >&2; exit 1; }
# The usage API: acme's own key sees its invocations, priced with prices.toml.
usage=$(curl -sf -H 'Authorization: Bearer acme-secret' "$base/usage/v1/acme?period=$(date -u +%Y-%m)")
python3 -c '
import json, sys
u = json.load(sys.stdin)
hello = [f for f in u["functions"] if f["function"] == "hello"]
assert hello and hello[0]["totals"]["invocations"] >= 2, u
assert u["currency"] == "USD" and u["statement"]["tenant"] == "acme", u
' <<<"$usage" || { echo "smoke: usage API: $usage" >&2; exit 1; }
check 200 "$base/console"
kill -TERM $pid
wait $pid
grep -q "nimbus stopped" "$log"
# The month's statement from the ledger directory the server wrote.
bill=$(target/debug/nimbus bill --ledger target/nimbus-usage --prices prices.toml \
    --period "$(date -u +%Y-%m)" --tenant acme --format json)
python3 -c '
import json, sys
b = json.load(sys.stdin)
s = b["statements"][0]
assert s["tenant"] == "acme" and s["currency"] == "USD", s
assert any(l["function"] == "hello" and l["dimension"] == "requests" for l in s["lines"]), s
' <<<"$bill" || { echo "smoke: nimbus bill: $bill" >&2; exit 1; }
echo "smoke: nimbus serve OK"
