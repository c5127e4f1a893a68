#!/usr/bin/env bash
# Instructions of the whole server for LINES echo lines ping-pong over one connection, counted
# by callgrind (repeatable here, unlike timings): a check that the echo path did not grow.
#
#   scripts/callgrind-echo.sh                                  # this tree's release build
#   scripts/callgrind-echo.sh /path/to/other/nonblocking-server # e.g. an older build, same load
#
# Knobs: LINES (20000), OUT (a dir; callgrind.out is kept there for callgrind_annotate).
# Start-up and shutdown are in the total; compare two builds at the same LINES.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LINES=${LINES:-20000}
OUT=${OUT:-$(mktemp -d /tmp/callgrind-echo.XXXXXX)}
BIN=${1:-}
if [ -z "$BIN" ]; then
  cargo build --release --quiet --bin nonblocking-server --manifest-path "$ROOT/Cargo.toml"
  BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/nonblocking-server
fi
command -v valgrind >/dev/null || { echo "need valgrind (apt-get install valgrind)" >&2; exit 1; }
cd "$OUT"
valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out" \
  "$BIN" -H echo --report-every 0 0 >server.out 2>server.err &
pid=$!
for _ in $(seq 300); do grep -q Listening server.out 2>/dev/null && break; sleep 0.1; done
port=$(grep -o ':[0-9]*' server.out | head -1 | tr -d :)
python3 - "$port" "$LINES" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
f = s.makefile("rb")
for i in range(int(sys.argv[2])):
    line = b"hello world %d\n" % i
    s.sendall(line)
    assert f.readline() == line, "echo mismatch"
s.close()
PY
kill -INT "$pid"
wait "$pid" || true
total=$(callgrind_annotate "$OUT/callgrind.out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
echo "server: $BIN"
echo "lines: $LINES   instructions: $total   per line (start-up included): $((total / LINES))"
echo "callgrind output: $OUT/callgrind.out"
