#!/usr/bin/env bash
# Instructions per ledger line for the whole server, counted by callgrind (issue 20, item 1).
#
#   scripts/callgrind-ledger.sh                  # 500,000 lines of the anchors' data
#   LINES_PER_CLIENT=2000 scripts/callgrind-ledger.sh   # a quicker run (100,000 lines)
#   SERVER=/path/to/other/nonblocking-server scripts/callgrind-ledger.sh   # e.g. main's build
#
# Knobs: CLIENTS (50) x LINES_PER_CLIENT (10000) lines, the anchors' gen_ledger.py files
#        concatenated (deterministic: its fixed seed); ANCHORS (required: the anchors' directory); SERVER (the
#        binary to measure, default this tree's release build); TOP (25 functions); OUT (a dir).
#
# 1. builds release (debug = 1 in Cargo.toml: function names and inlined frames for callgrind);
# 2. starts `nonblocking-server --handler ledger` under callgrind on port 0;
# 3. streams the lines through one `nonblocking-client ledger` (not under valgrind: callgrind
#    counts the server process only, --trace-children=no);
# 4. sends SIGINT once the client has exited (the server then has every byte, SPEC);
# 5. checks the log against gen_ledger.py's expected log, prints instructions per line for the
#    whole server, and the self cost per line by function (inlined code counted in the function
#    it was inlined into) and by source file.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CLIENTS=${CLIENTS:-50}
LINES_PER_CLIENT=${LINES_PER_CLIENT:-10000}
TOP=${TOP:-25}
ANCHORS=${ANCHORS:-}
[ -n "$ANCHORS" ] || { echo "error: ANCHORS is not set: give the anchors' directory (ANCHORS=DIR)" >&2; exit 2; }
[ -d "$ANCHORS" ] || { echo "error: ANCHORS=$ANCHORS: no such directory" >&2; exit 2; }
ANCHORS=$(realpath "$ANCHORS")
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=${OUT:-$(mktemp -d /tmp/callgrind-ledger.XXXXXX)}
mkdir -p "$OUT"

cargo build --release --quiet --bin nonblocking-server --bin nonblocking-client \
  --manifest-path "$ROOT/Cargo.toml"
SERVER=${SERVER:-$TARGET/release/nonblocking-server}
CLIENT=$TARGET/release/nonblocking-client

LINES=$((CLIENTS * LINES_PER_CLIENT))
DATA=$TARGET/callgrind-ledger-data/${CLIENTS}x$LINES_PER_CLIENT
if [ ! -f "$DATA/all.txt" ]; then
  python3 "$ANCHORS/ledger/gen_ledger.py" "$DATA" --clients "$CLIENTS" \
    --lines "$LINES_PER_CLIENT" >/dev/null
  for i in $(seq "$CLIENTS"); do cat "$DATA/input_$i.txt"; done >"$DATA/all.txt"
fi
[ "$(wc -l <"$DATA/all.txt")" -eq "$LINES" ] || { echo "bad data in $DATA" >&2; exit 1; }

cd "$OUT"
rm -f callgrind.out log.txt
valgrind --tool=callgrind --callgrind-out-file=callgrind.out --trace-children=no \
  "$SERVER" --handler ledger --report-every 0 --log log.txt 0 >server.out 2>server.err &
vg=$!
trap 'kill -INT "$vg" 2>/dev/null || true' EXIT
for _ in $(seq 600); do grep -q '^Listening' server.out && break; sleep 0.1; done
port=$(sed -n 's/^Listening on [^ ]*:\([0-9]*\) .*/\1/p' server.out)
[ -n "$port" ] || { echo "the server did not listen; see $OUT/server.err" >&2; exit 1; }

"$CLIENT" ledger "127.0.0.1:$port" "$DATA/all.txt"
kill -INT "$vg"
wait "$vg"
trap - EXIT

if cmp -s log.txt "$DATA/expected_log.txt"; then check=MATCH; else check=MISMATCH; fi
grep -h '^Applied' server.out || true
total=$(sed -n 's/^summary: *//p' callgrind.out)
echo "log: $check (against gen_ledger.py's expected_log.txt)"
echo "server: $SERVER"
echo "lines: $LINES   instructions: $total   per line: $((total / LINES))"
echo

# callgrind_annotate splits a function's self cost by the source file of its inlined code
# (`slice/iter/macros.rs:parse_line`, `parse.rs:parse_line`); sum it per function, and per file.
split() {
  python3 - "$1" "$LINES" "$TOP" <<'PY'
import re, subprocess, sys
out, lines, top = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
text = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", "--auto=no", out],
                      capture_output=True, text=True, check=True).stdout
by_fn, by_file = {}, {}
for row in text.splitlines():
    m = re.match(r"\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(\S+?):(.*?)(?: \[.*\])?$", row)
    if not m:
        continue
    ir, path, fn = int(m.group(1).replace(",", "")), m.group(2), m.group(3)
    by_fn[fn] = by_fn.get(fn, 0) + ir
    by_file[path.rsplit("/", 1)[-1]] = by_file.get(path.rsplit("/", 1)[-1], 0) + ir
for title, table in (("function (inlined code included)", by_fn), ("source file", by_file)):
    print(f"self instructions per line, by {title}:")
    for name, ir in sorted(table.items(), key=lambda kv: -kv[1])[:top]:
        print(f"{ir / lines:9.1f}  {name[:140]}")
    print()
PY
}
split callgrind.out
echo "callgrind output: $OUT/callgrind.out" >&2
[ "$check" = MATCH ]
