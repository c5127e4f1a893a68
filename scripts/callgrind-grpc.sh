#!/usr/bin/env bash
# Where queue-grpc-server's time goes per call, by counters that repeat on a busy machine
# (issue 20 item 3): callgrind instructions per call split by crate and by function, and
# strace -c system calls per call.
#
#   scripts/callgrind-grpc.sh                          # this tree's release build
#   SERVER=/path/to/other/queue-grpc-server scripts/callgrind-grpc.sh   # e.g. main's build
#   TOOL=strace scripts/callgrind-grpc.sh              # system calls per call instead
#
# Knobs: SERVER, LOADGEN (this tree's target/release builds), CLIENTS (50), WINDOW (16: calls in
#        flight per client), THREADS (2: loadgen's), STEPS ("100 400": put+pop steps per client
#        of the two runs), TOOL (callgrind or strace), TOP (25), OUT (a directory kept).
#
# The server runs under the tool twice, driven by `loadgen -H grpc-queue` (not under the tool)
# with STEPS[0] then STEPS[1] steps per client; the figures are the differences of the two runs
# over the difference of their calls (2 per step), so start-up and shutdown cancel out.
# Under callgrind the server is ~50x slower than native, so more calls arrive per read than
# natively: the per-call figure is a floor for the native one, comparable between builds
# driven by the same LOADGEN.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
SERVER=${SERVER:-$TARGET/release/queue-grpc-server}
LOADGEN=${LOADGEN:-$TARGET/release/loadgen}
CLIENTS=${CLIENTS:-50}
WINDOW=${WINDOW:-16}
THREADS=${THREADS:-2}
read -r -a STEPS <<<"${STEPS:-100 400}"
TOOL=${TOOL:-callgrind}
TOP=${TOP:-25}
OUT=${OUT:-$(mktemp -d /tmp/callgrind-grpc.XXXXXX)}
mkdir -p "$OUT"
[ -x "$SERVER" ] && [ -x "$LOADGEN" ] || {
  echo "build first: cargo build --release --features grpc --bins (or set SERVER, LOADGEN)" >&2
  exit 2
}
SERVER=$(realpath "$SERVER") LOADGEN=$(realpath "$LOADGEN")   # the server runs in its own directory

# run STEPS -> the tool's output file for one run of STEPS steps per client
run() {
  local steps=$1 dir=$OUT/$TOOL.$1 port="" pid
  mkdir -p "$dir"
  case $TOOL in
    callgrind) (cd "$dir" && exec valgrind --tool=callgrind --callgrind-out-file="$dir/out" \
                  "$SERVER" 0 1024) >"$dir/server.out" 2>"$dir/server.err" & ;;
    strace) (cd "$dir" && exec strace -f -c -o "$dir/out" "$SERVER" 0 1024) \
                  >"$dir/server.out" 2>"$dir/server.err" & ;;
    *) echo "TOOL=$TOOL: callgrind or strace" >&2; exit 2 ;;
  esac
  pid=$!
  for _ in $(seq 600); do
    port=$(sed -n 's/^Listening on [^ ]*:\([0-9]*\) .*/\1/p' "$dir/server.out" 2>/dev/null || true)
    [ -n "$port" ] && break
    sleep 0.1
  done
  [ -n "$port" ] || { echo "the server did not listen; see $dir/server.err" >&2; exit 1; }
  "$LOADGEN" --json --handler grpc-queue --threads "$THREADS" --clients "$CLIENTS" \
    --window "$WINDOW" --lines "$steps" --timeout 600 "127.0.0.1:$port" >"$dir/loadgen.json"
  grep -q '"errors":0,' "$dir/loadgen.json" || { echo "loadgen errors: $dir/loadgen.json" >&2; exit 1; }
  # strace passes no SIGINT on to its tracee (it detaches on one): signal the server itself.
  if [ "$TOOL" = strace ]; then kill -INT "$(pgrep -P "$pid")"; else kill -INT "$pid"; fi
  wait "$pid"
  echo "$dir/out"
}

a=$(run "${STEPS[0]}")
b=$(run "${STEPS[1]}")
calls=$(( 2 * CLIENTS * (STEPS[1] - STEPS[0]) ))
printf 'load average: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
echo "server: $SERVER"
echo "loadgen: $LOADGEN -H grpc-queue -c $CLIENTS --window $WINDOW --threads $THREADS -l ${STEPS[*]}"
echo "calls counted: $calls (the difference of the two runs)"
echo

python3 - "$TOOL" "$a" "$b" "$calls" "$TOP" <<'PY'
import re, subprocess, sys
tool, a, b, calls, top = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])

def crate_of(path, obj):
    m = re.search(r"registry/src/[^/]+/([A-Za-z0-9_-]+?)-\d+\.\d+", path)
    if m:
        return m.group(1)
    if "/library/" in path or path.startswith("/rustc/"):
        return "std (Rust library)"
    if path.startswith(("src/", "./src/")) or "/out/queue" in path or "/nonblocking" in path or "/grpcperf/" in path:
        return "nonblocking (ours and the generated code)"
    if "libc" in obj:
        return "libc (malloc, free, memcpy, ...)"
    return f"other {obj}".strip()

def owner_of(fn, obj):
    """The crate whose function this is: `h2::proto::..` -> h2, `<hyper::X as tower::Y>::f` -> hyper,
    a C symbol -> its object (libc: malloc, free, memcpy)."""
    m = re.match(r"[<&\s]*(?:dyn |mut )?([A-Za-z_][A-Za-z0-9_]*)::", fn)
    if m:
        return m.group(1).replace("_", "-") if m.group(1) not in ("core", "alloc", "std") else "std (Rust library)"
    if "libc" in obj:
        return "libc (malloc, free, memcpy, ...)"
    return f"other {obj}".strip()

if tool == "callgrind":
    def load(out):
        text = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", "--auto=no", out],
                              capture_output=True, text=True, check=True).stdout
        total = int(re.search(r"^summary:\s*(\d+)", open(out).read(), re.M).group(1))
        by_fn, by_crate, by_owner = {}, {}, {}
        for row in text.splitlines():
            m = re.match(r"\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(\S+?):(.*?)(?: \[(.*)\])?$", row)
            if not m:
                continue
            ir, path, fn, obj = int(m.group(1).replace(",", "")), m.group(2), m.group(3), m.group(4) or ""
            by_fn[fn] = by_fn.get(fn, 0) + ir
            c = crate_of(path, obj)
            by_crate[c] = by_crate.get(c, 0) + ir
            o = owner_of(fn, obj)
            by_owner[o] = by_owner.get(o, 0) + ir
        return total, by_fn, by_crate, by_owner
    ta, fa, ca, oa = load(a)
    tb, fb, cb, ob = load(b)
    print(f"instructions per call, whole server: {(tb - ta) / calls:.0f}")
    print()
    for title, x, y in (("the crate of the function (inlined code counted where it was inlined)", oa, ob),
                        ("the crate of the source line (inlined code counted where it came from)", ca, cb),
                        ("function", fa, fb)):
        print(f"self instructions per call, by {title}:")
        diff = {k: y.get(k, 0) - x.get(k, 0) for k in set(x) | set(y)}
        for name, ir in sorted(diff.items(), key=lambda kv: -kv[1])[:top]:
            print(f"{ir / calls:9.1f}  {name[:150]}")
        print()
else:
    def load(out):
        rows = {}
        for line in open(out):
            f = line.split()
            if len(f) >= 5 and f[0][0].isdigit() and not line.startswith("100.00"):
                name = f[-1]
                rows[name] = int(f[3])
        return rows
    x, y = load(a), load(b)
    diff = {k: y.get(k, 0) - x.get(k, 0) for k in set(x) | set(y)}
    print(f"system calls per call, whole server: {sum(diff.values()) / calls:.3f}")
    for name, n in sorted(diff.items(), key=lambda kv: -kv[1])[:top]:
        if n > 0:
            print(f"{n / calls:9.3f}  {name}")
PY
echo "outputs: $OUT" >&2
