#!/usr/bin/env bash
# A refused segmented send falls back to one datagram per message (PROTOCOL section 8): in a
# network namespace of its own (needs root: unshare -n) whose lo has an MTU of 1,500, an echo
# server gets bursts of 60 equal datagrams of 2,000, 1,000, 1,400 and 3,000 bytes from one
# client, which checks every reply byte for byte. strace shows the server's sendmmsg calls: the
# first segmented call of 2,000-byte runs fails with EMSGSIZE and goes out one by one, runs of
# 1,000 and 1,400 bytes are segmented again (UDP_SEGMENT in msg_control), 3,000 never.
#
#   sudo scripts/udp-mtu-fallback.sh [path/to/nonblocking-server]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${1:-$ROOT/target/release/nonblocking-server}
command -v strace >/dev/null || { echo "needs strace (apt-get install strace)" >&2; exit 1; }
WORK=$(mktemp -d /tmp/udp-mtu.XXXXXX)
cat >"$WORK/client.py" <<'PY'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
s.settimeout(5)
server = ("127.0.0.1", int(sys.argv[1]))
ok = 0
for size in (2000, 1000, 1400, 3000):
    sent = [bytes([65 + i % 26]) * size for i in range(60)]
    for d in sent:
        s.sendto(d, server)
    for d in sent:
        got, _ = s.recvfrom(70000)
        assert got == d, (size, len(got))
        ok += 1
print(f"client: {ok} replies, every one exact")
PY
export BIN WORK
unshare -n bash -c '
ip link set lo up && ip link set lo mtu 1500
"$BIN" -H echo --udp --max-line 4000 --report-every 0 0 >"$WORK/server.out" 2>&1 &
pid=$!
for _ in $(seq 100); do grep -q Listening "$WORK/server.out" && break; sleep 0.05; done
port=$(grep -oE ":[0-9]+" "$WORK/server.out" | head -1 | tr -d :)
strace -f -e trace=sendmmsg -o "$WORK/strace.txt" -p "$pid" 2>/dev/null &
st=$!
sleep 0.5  # strace attaches
python3 "$WORK/client.py" "$port"
kill -INT "$pid"; wait "$pid" || true
kill "$st" 2>/dev/null || true; wait "$st" 2>/dev/null || true
'
echo "server sendmmsg calls: $(grep -c sendmmsg "$WORK/strace.txt")," \
  "refused with EMSGSIZE: $(grep -c EMSGSIZE "$WORK/strace.txt")," \
  "with UDP_SEGMENT (cmsg_type=0x67): $(grep -c 'cmsg_type=0x67' "$WORK/strace.txt")"
echo "strace output: $WORK/strace.txt"
