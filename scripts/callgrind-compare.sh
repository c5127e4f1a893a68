#!/usr/bin/env bash
# Instructions per ledger line under callgrind, for one or more nonblocking-server binaries,
# to check that a change costs nothing on the hot path (issue 22: `--trace` off).
#
#   scripts/callgrind-compare.sh BIN...            # e.g. a build without a change, then with it
#   LINES="100000 300000" EXTRA="--reactors 1" scripts/callgrind-compare.sh BIN...
#
# Each binary runs `-H ledger` under `valgrind --tool=callgrind` twice, with LINES lines from one
# client (sent whole, then EOF, then SIGINT), and the figure is the difference of the two runs'
# instruction totals over the difference of their line counts: start-up, shutdown and the log
# write cancel out. Instruction counts are repeatable here, unlike timings on a shared machine.
set -euo pipefail
[ $# -ge 1 ] || { sed -n 2,10p "$0"; exit 2; }
read -r -a COUNTS <<<"${LINES:-100000 300000}"
EXTRA=${EXTRA:-}
WORK=$(mktemp -d /tmp/callgrind-ledger.XXXXXX)

python3 - "$WORK" "${COUNTS[@]}" <<'EOF'
import sys
work, counts = sys.argv[1], [int(n) for n in sys.argv[2:]]
for n in counts:
    with open(f"{work}/lines.{n}", "w") as f:
        for i in range(n):
            f.write(f"name{i % 97} {'credit' if i % 3 else 'debit'} ${i % 50}.{i % 100:02d}\n")
EOF

send() {  # port file: the whole file, then EOF, then wait for the server's EOF
  python3 - "$1" "$2" <<'EOF'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
with open(sys.argv[2], "rb") as f:
    s.sendall(f.read())
s.shutdown(socket.SHUT_WR)
while s.recv(65536):
    pass
EOF
}

instructions() {  # bin lines -> total instructions of one run
  local bin=$1 n=$2 dir
  dir=$(mktemp -d "$WORK/run.XXXX")
  (cd "$dir" && exec valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" \
    "$bin" -H ledger $EXTRA --report-every 0 0) >"$dir/out" 2>"$dir/err" &
  local pid=$! port=""
  for _ in $(seq 600); do
    port=$(grep -o 'Listening on [^ ]*' "$dir/out" 2>/dev/null | grep -o '[0-9]*$' || true)
    [ -n "$port" ] && break
    sleep 0.1
  done
  [ -n "$port" ] || { echo "no Listening line from $bin" >&2; cat "$dir/err" >&2; exit 1; }
  send "$port" "$WORK/lines.$n"
  kill -INT "$pid"
  wait "$pid"
  grep -E '^(summary|totals):' "$dir/cg.out" | head -1 | awk '{print $2}'
}

printf 'load average: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '%s\t%s\t%s\t%s\n' binary "Ir at ${COUNTS[0]}" "Ir at ${COUNTS[1]}" "Ir per line"
for bin in "$@"; do
  a=$(instructions "$bin" "${COUNTS[0]}")
  b=$(instructions "$bin" "${COUNTS[1]}")
  per=$(python3 -c "print(f'{($b - $a) / (${COUNTS[1]} - ${COUNTS[0]}):.1f}')")
  printf '%s\t%s\t%s\t%s\n' "$bin" "$a" "$b" "$per"
done
rm -rf "$WORK"
