#!/usr/bin/env bash
# Restart benchmark: how soon a `nimbus serve` process answers after it is
# spawned, cold (an empty data_dir: every component compiled) and warm (a
# second start on the same data_dir: the registry restored, every version
# loaded from the compile cache), next to `wasmtime serve` 48.0.8 starting
# on a `wasmtime compile` artifact (--allow-precompiled), same machine,
# same run.
#
#   bash benches/restart.sh    # ROUNDS=5 FUNCTIONS=20 GUESTS="python js"
#
# Measured from the spawn of the process, by a small Python poller (1 ms
# between attempts, one keep-alive connection per poller), each scenario
# ROUNDS times (median and min):
#   - FUNCTIONS small Rust functions (hello-http, each copy made distinct
#     by a custom section, so each is its own compile and cache entry):
#     the first /healthz 200, the first 200 of a function (its request sent
#     as soon as /healthz answered: it waits for the function to load; the
#     first and the last function of the file), and the first /readyz 200;
#   - one Python and one JavaScript component (componentize-py /
#     componentize-js hello-http against wasi:http/proxy, no SDK: the
#     component `wasmtime serve` runs too), alone in the config: the same;
#   - `wasmtime serve` on the precompiled Python and JavaScript components,
#     default and pooling allocator: spawn to the first 200.
# A request still waiting after 10 s (a cold Python or JavaScript compile)
# gets a 503 with Retry-After; the poller asks again, so a cold "fn 200" is
# the compile time. The page cache is warm in every case (the files were
# just written or read): a restart, not a boot.
#
# Needs python3, wasmtime 48.0.8 (`cargo install wasmtime-cli --version
# 48.0.8 --locked`, installed if missing), componentize-py and
# componentize-js (`.ci/setup`; a language whose toolchain is missing is
# skipped with a message).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
FUNCTIONS=${FUNCTIONS:-20}
GUESTS=${GUESTS:-"python js"}
PORT=${PORT:-18281}

command -v python3 >/dev/null || { echo "restart.sh needs python3" >&2; exit 1; }
if ! wasmtime --version 2>/dev/null | grep -q '^wasmtime 48\.0\.8'; then
    cargo install wasmtime-cli --version 48.0.8 --locked
fi
rustup target add wasm32-wasip2 >/dev/null 2>&1 || true
cargo build --release --quiet --bin nimbus
cargo run --release --quiet -p nimbus-guests >/dev/null

work=$(mktemp -d)
cleanup() { rm -rf "$work"; }
trap cleanup EXIT

# The poller: spawns one server and prints, in ms from the spawn,
# "healthz first_fn last_fn readyz ready_line compilations cache_hits"
# (nimbus) or "first" (wasmtime). It stops the server (SIGTERM) itself.
cat >"$work/poll.py" <<'PY'
import http.client, os, signal, subprocess, sys, threading, time

mode, port = sys.argv[1], int(sys.argv[2])
paths = sys.argv[3].split(",")
cmd = sys.argv[sys.argv.index("--") + 1:]
LIMIT = 600.0

class Poller:
    """One keep-alive connection, reopened after any failure."""
    def __init__(self):
        self.conn = None
    def get(self, path):
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            self.conn.request("GET", path)
            r = self.conn.getresponse()
            body = r.read()
            if r.getheader("connection", "").lower() == "close":
                self.close()
            return r.status, body
        except (OSError, http.client.HTTPException):
            self.close()
            return None, b""
    def close(self):
        if self.conn is not None:
            self.conn.close()
        self.conn = None

def until_200(path, t0):
    """ms from t0 to the first 200 of path (any other answer: retried)."""
    p = Poller()
    while True:
        status, body = p.get(path)
        if status == 200:
            p.close()
            return (time.perf_counter() - t0) * 1000.0, body
        if time.perf_counter() - t0 > LIMIT:
            sys.exit(f"{path}: no 200 within {LIMIT} s (last status {status})")
        time.sleep(0.001)

t0 = time.perf_counter()
proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE, text=True)
lines, ready_at = [], [None]
def read_stderr():
    for line in proc.stderr:
        if line.strip() == "nimbus ready" and ready_at[0] is None:
            ready_at[0] = (time.perf_counter() - t0) * 1000.0
        lines.append(line)
reader = threading.Thread(target=read_stderr, daemon=True)
reader.start()
try:
    if mode == "wasmtime":
        first, _ = until_200(paths[0], t0)
        print(f"{first:.1f}")
    else:
        healthz, _ = until_200("/healthz", t0)
        got = {}
        def fetch(key, path):
            got[key] = until_200(path, t0)[0]
        threads = [threading.Thread(target=fetch, args=(p, p)) for p in paths]
        threads.append(threading.Thread(target=fetch, args=("readyz", "/readyz")))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        while ready_at[0] is None and proc.poll() is None:
            time.sleep(0.001)
        metrics = until_200("/metrics", t0)[1].decode()
        def metric(family):
            for l in metrics.splitlines():
                if l.startswith(family + " "):
                    return l.split()[1]
            return "?"
        print(f"{healthz:.1f} {got[paths[0]]:.1f} {got[paths[-1]]:.1f} {got['readyz']:.1f} "
              f"{ready_at[0] or 0:.1f} {metric('nimbus_component_compilations_total')} "
              f"{metric('nimbus_component_cache_hits_total')}")
except SystemExit:
    sys.stderr.write("".join(lines))
    raise
finally:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
PY

# Distinct copies of a component: a custom section appended (a component
# may carry custom sections anywhere), so each has its own sha256.
cat >"$work/copy.py" <<'PY'
import sys
def leb(n):
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)
src, dst, tag = sys.argv[1], sys.argv[2], sys.argv[3].encode()
name = b"nimbus-bench"
content = leb(len(name)) + name + tag
with open(src, "rb") as f:
    data = f.read()
with open(dst, "wb") as f:
    f.write(data + b"\x00" + leb(len(content)) + content)
PY

mkdir -p "$work/rust"
names=()
for i in $(seq -w 1 "$FUNCTIONS"); do
    names+=("fn$i")
    python3 "$work/copy.py" target/guests/hello-http.wasm "$work/rust/fn$i.wasm" "copy $i"
done

# The Python and JavaScript components, built as benches/http-load.sh
# builds them: against wasi:http/proxy without the SDK.
declare -A wasm tool=([python]=componentize-py [js]=componentize-js) fn=([python]=py [js]=js)
langs=()
for lang in $GUESTS; do
    if ! command -v "${tool[$lang]}" >/dev/null; then
        echo "skipping $lang: ${tool[$lang]} not found (install it with .ci/setup)" >&2
        continue
    fi
    wasm[$lang]=$work/$lang-hello.wasm
    target/release/nimbus build "guests/$lang/hello-http" --world wasi:http/proxy@0.2.12 \
        -o "${wasm[$lang]}" >&2
    wasmtime compile -o "$work/$lang-hello.cwasm" "${wasm[$lang]}"
    langs+=("$lang")
done

# config DIR FUNCTION:WASM...: a config for `nimbus serve` in DIR, its
# data_dir (and so its compile cache, <data_dir>/compiled) DIR/data.
config() {
    local dir=$1
    shift
    mkdir -p "$dir"
    cat >"$dir/nimbus.toml" <<TOML
listen = "127.0.0.1:$PORT"
ledger = "$dir/usage"
data_dir = "$dir/data"
[tenants.bench]
TOML
    for spec in "$@"; do
        cat >>"$dir/nimbus.toml" <<TOML
[[functions]]
tenant = "bench"
name = "${spec%%:*}"
component = "${spec#*:}"
public = true
TOML
    done
}

# Results: one list of numbers per "scenario/figure".
declare -A res
add() { res[$1]+="$2 "; }
# nimbus_round NAME DIR PATHS: a cold start on a new data_dir, then a warm
# restart on it.
nimbus_round() {
    local name=$1 dir=$2 paths=$3 temp out
    for temp in cold warm; do
        out=$(python3 "$work/poll.py" nimbus "$PORT" "$paths" -- \
            target/release/nimbus serve --config "$dir/nimbus.toml")
        read -r h f l r line comp hits <<<"$out"
        add "$name/$temp/healthz" "$h"
        add "$name/$temp/first" "$f"
        add "$name/$temp/last" "$l"
        add "$name/$temp/readyz" "$r"
        add "$name/$temp/line" "$line"
        add "$name/$temp/compiled" "$comp"
        add "$name/$temp/hits" "$hits"
    done
}

specs=()
for n in "${names[@]}"; do specs+=("$n:$work/rust/$n.wasm"); done
for round in $(seq 1 "$ROUNDS"); do
    dir=$work/rust-$round
    config "$dir" "${specs[@]}"
    nimbus_round rust "$dir" "/bench/${names[0]}/,/bench/${names[-1]}/"
    rm -rf "$dir"
    for lang in "${langs[@]}"; do
        dir=$work/$lang-$round
        config "$dir" "${fn[$lang]}:${wasm[$lang]}"
        nimbus_round "$lang" "$dir" "/bench/${fn[$lang]}/"
        rm -rf "$dir"
        for alloc in default pooling; do
            opt=()
            [ "$alloc" = pooling ] && opt=(-O pooling-allocator=y)
            add "$lang/wasmtime-$alloc" "$(python3 "$work/poll.py" wasmtime "$PORT" /bench/ -- \
                wasmtime serve -Scli "${opt[@]}" --allow-precompiled --addr "127.0.0.1:$PORT" \
                "$work/$lang-hello.cwasm")"
        done
    done
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
minimum() { printf '%s\n' "$@" | sort -g | head -1; }
# "median (min)" of a figure
fig() {
    # shellcheck disable=SC2086
    printf '%.1f (%.1f)' "$(median ${res[$1]})" "$(minimum ${res[$1]})"
}
same() { # the one value of a figure if every round agrees, else all of them
    # shellcheck disable=SC2086
    local u
    u=$(printf '%s\n' ${res[$1]} | sort -u | tr '\n' ' ')
    echo "${u% }"
}

cpu=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo)
echo
echo "machine: $(nproc) cores, ${cpu:-unknown CPU}, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), Linux $(uname -r)"
echo "nimbus serve (release) from process spawn, ms: median (min) of $ROUNDS rounds; cold = empty data_dir (compiles), warm = restart on it (compile cache)"
printf '%-22s %5s %16s %18s %18s %18s %18s\n' scenario "" "/healthz 200" "fn 200" "last fn 200" "/readyz 200" "'nimbus ready'"
for s in rust "${langs[@]}"; do
    label="$FUNCTIONS rust functions"
    [ "$s" = python ] && label="1 python component"
    [ "$s" = js ] && label="1 js component"
    for temp in cold warm; do
        last=-
        [ "$s" = rust ] && last=$(fig "$s/$temp/last")
        printf '%-22s %5s %16s %18s %18s %18s %18s\n' "$label" "$temp" "$(fig "$s/$temp/healthz")" \
            "$(fig "$s/$temp/first")" "$last" "$(fig "$s/$temp/readyz")" "$(fig "$s/$temp/line")"
    done
    echo "$(printf '%-28s' '')compilations: cold $(same "$s/cold/compiled"), warm $(same "$s/warm/compiled"); cache hits: cold $(same "$s/cold/hits"), warm $(same "$s/warm/hits")"
done
if ((${#langs[@]})); then
    echo
    echo "spawn to first 200 (ms), cached: nimbus serve warm vs wasmtime serve --allow-precompiled on a 'wasmtime compile' artifact"
    printf '%-8s %22s %26s %26s %12s\n' guest "nimbus serve (warm)" "wasmtime serve (default)" "wasmtime serve (pooling)" "ratio"
    for lang in "${langs[@]}"; do
        # shellcheck disable=SC2086
        n=$(median ${res[$lang/warm/first]})
        # shellcheck disable=SC2086
        wd=$(median ${res[$lang/wasmtime-default]})
        # shellcheck disable=SC2086
        wp=$(median ${res[$lang/wasmtime-pooling]})
        printf '%-8s %22s %26s %26s %12s\n' "$lang" "$(fig "$lang/warm/first")" "$(fig "$lang/wasmtime-default")" \
            "$(fig "$lang/wasmtime-pooling")" \
            "$(awk -v n="$n" -v a="$wd" -v b="$wp" 'BEGIN { best = (a < b) ? a : b; printf "%.2fx", n / best }')"
    done
    echo "(ratio: nimbus serve's median / the faster wasmtime serve's median)"
fi

echo
echo "targets:"
if [[ " ${langs[*]} " == *" python "* ]]; then
    # shellcheck disable=SC2086
    py=$(median ${res[python/warm/first]})
    awk -v v="$py" 'BEGIN { printf "  first response from a cached Python component <= 50 ms after start: %.1f ms (median) %s\n", v, (v <= 50) ? "met" : "NOT met" }'
fi
all_h=""
for s in rust "${langs[@]}"; do all_h+="${res[$s/cold/healthz]}${res[$s/warm/healthz]}"; done
# shellcheck disable=SC2086
worst=$(printf '%s\n' $all_h | sort -g | tail -1)
awk -v v="$worst" 'BEGIN { printf "  /healthz within 200 ms of start whatever is deployed: worst of every start %.1f ms %s\n", v, (v <= 200) ? "met" : "NOT met" }'
