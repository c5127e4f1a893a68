#!/usr/bin/env bash
# Instructions of the whole server for UDP echo ping-pong, counted by callgrind (repeatable,
# unlike timings): 50 loadgen clients x LINES datagrams, window 1, so each wakeup has one datagram
# per peer and nothing to segment; the cost of planning segmented sends shows here if anywhere.
#
#   scripts/callgrind-udp.sh                                   # this tree's release build
#   scripts/callgrind-udp.sh /path/to/other/nonblocking-server # another build, same load
#
# Knobs: LINES (400 per client), OUT (a dir; callgrind.out is kept there for callgrind_annotate).
# Start-up and shutdown are in the total; compare two builds at the same LINES.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LINES=${LINES:-400}
OUT=${OUT:-$(mktemp -d /tmp/callgrind-udp.XXXXXX)}
cargo build --release --quiet --bin nonblocking-server --bin loadgen --manifest-path "$ROOT/Cargo.toml"
BIN=${1:-${CARGO_TARGET_DIR:-$ROOT/target}/release/nonblocking-server}
LOADGEN=${CARGO_TARGET_DIR:-$ROOT/target}/release/loadgen
command -v valgrind >/dev/null || { echo "need valgrind (apt-get install valgrind)" >&2; exit 1; }
cd "$OUT"
valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out" \
  "$BIN" -H echo --udp --report-every 0 0 >server.out 2>server.err &
pid=$!
for _ in $(seq 300); do grep -q Listening server.out 2>/dev/null && break; sleep 0.1; done
port=$(grep -o ':[0-9]*' server.out | head -1 | tr -d :)
"$LOADGEN" --udp --clients 50 --lines "$LINES" --window 1 --threads 1 --json "127.0.0.1:$port" >loadgen.json
kill -INT "$pid"
wait "$pid" || true
total=$(callgrind_annotate "$OUT/callgrind.out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
answered=$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(j["lines"], j["lost"])' loadgen.json)
echo "server: $BIN"
echo "datagrams answered, lost: $answered   instructions: $total   per datagram (start-up included): $((total / (50 * LINES)))"
echo "callgrind output: $OUT/callgrind.out"
