#!/usr/bin/env bash
# Idle connections: how much memory a server needs to hold N connected,
# silent clients, and how long it takes to accept them all.
#
#   scripts/idle.sh [N ...]          (default: 1000 10000)
#   SERVERS="nonblocking-server threaded-server" scripts/idle.sh 1000
#
# For each server and N: start it (--handler echo, --report-every 0), open N
# connections from one Python process as fast as the kernel accepts them, and
# wait until the server's status line says "Client N connected". Prints the
# time from the first connect to that line and the server's peak RSS
# (VmHWM). Needs python3; raises its own descriptor limit.
set -euo pipefail
cd "$(dirname "$0")/.."
COUNTS=("${@:-1000 10000}")
read -r -a COUNTS <<< "${COUNTS[*]}"
SERVERS=${SERVERS:-"nonblocking-server threaded-server"}
cargo build --release --quiet --bin nonblocking-server --bin threaded-server
ulimit -n "$(ulimit -Hn)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

printf '%-20s %7s %12s %14s\n' server clients "accept s" "peak RSS MiB"
for server in $SERVERS; do
    for n in "${COUNTS[@]}"; do
        out="$tmp/out"
        : > "$out"
        "target/release/$server" --handler echo --report-every 0 --max-clients $((n + 10)) 0 > "$out" 2> "$tmp/err" &
        pid=$!
        for _ in $(seq 100); do grep -q Listening "$out" && break; sleep 0.05; done
        port=$(sed -n 's/^Listening on [^ ]*:\([0-9]*\) .*/\1/p' "$out")
        secs=$(python3 - "$port" "$n" "$out" <<'PY'
import socket, sys, time
port, n, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
want = f"Client {n} connected.".encode()
socks = []
t0 = time.monotonic()
for _ in range(n):
    socks.append(socket.create_connection(("127.0.0.1", port)))
deadline = t0 + 120
while time.monotonic() < deadline:
    with open(out, "rb") as f:
        if want in f.read():
            break
    time.sleep(0.01)
else:
    sys.exit(f"server did not report {n} clients in 120 s")
print(f"{time.monotonic() - t0:.3f}")
PY
)
        rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
        kill -INT "$pid"; wait "$pid" || true
        printf '%-20s %7d %12s %14s\n' "$server" "$n" "$secs" "$(awk -v k="$rss_kb" 'BEGIN { printf "%.1f", k / 1024 }')"
    done
done
