#!/usr/bin/env bash
# What one UDP echo datagram costs the kernel and the server, counted rather than timed (issue 20
# item 4): for each server and each way loadgen sends, one run of loadgen --udp (50 clients x
# UDP_LINES datagrams, 64 in flight) and
#   - lo packets per datagram: /sys/class/net/lo/statistics/tx_packets before and after, divided
#     by the datagrams answered. Each is one trip through the IP layer and loopback delivery; one
#     request and one reply sent one by one are 2; a segmented message (UDP GSO) is one packet
#     however many datagrams it carries, cut back into them only at the receiving socket;
#   - server CPU per datagram: utime+stime from /proc/PID/stat at the end of the run;
#   - RcvbufErrors: /proc/net/snmp's Udp counter (datagrams the kernel dropped at a full socket).
# Nothing else may use loopback during a run (the packet counter is the whole interface's).
#
#   scripts/udp-packets.sh
#   BASE_BIN=DIR SERVERS="nonblocking nonblocking-base python" scripts/udp-packets.sh
#
# Knobs: SERVERS ("nonblocking threaded python"; nonblocking-base = BASE_BIN/nonblocking-server),
#        SENDS ("segmented one-by-one": loadgen's default, and --udp-one-by-one), UDP_LINES (10000),
#        THREADS (2).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
SERVERS=${SERVERS:-"nonblocking threaded python"}
SENDS=${SENDS:-"segmented one-by-one"}
UDP_LINES=${UDP_LINES:-10000}
THREADS=${THREADS:-2}
cargo build --release --quiet --bin nonblocking-server --bin threaded-server --bin loadgen
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
TICK=$(getconf CLK_TCK)
work=$(mktemp -d /tmp/udp-packets.XXXXXX)
trap 'rm -rf "$work"' EXIT

server_cmd() {
  case $1 in
    nonblocking) echo "$BIN/nonblocking-server -H echo --udp --report-every 0 0" ;;
    threaded) echo "$BIN/threaded-server -H echo --udp --report-every 0 0" ;;
    nonblocking-base) echo "${BASE_BIN:?BASE_BIN=DIR for nonblocking-base}/nonblocking-server -H echo --udp --report-every 0 0" ;;
    python) echo "python3 $ROOT/scripts/peers/udp_echo_server.py 0" ;;
    *) echo "unknown server $1" >&2; exit 2 ;;
  esac
}

rcvbuf_errors() { awk '/^Udp:/ { if (!h) { for (i = 1; i <= NF; i++) if ($i == "RcvbufErrors") c = i; h = 1 } else print $c }' /proc/net/snmp; }

echo "| server | loadgen sends | datagrams answered | lost | lo packets per datagram | server CPU per datagram | RcvbufErrors |"
echo "|---|---|---|---|---|---|---|"
for srv in $SERVERS; do
  for how in $SENDS; do
    extra=()
    [ "$how" = one-by-one ] && extra=(--udp-one-by-one)
    # shellcheck disable=SC2046
    $(server_cmd "$srv") >"$work/out" 2>"$work/err" &
    pid=$!
    for _ in $(seq 100); do grep -q Listening "$work/out" 2>/dev/null && break; sleep 0.1; done
    port=$(grep -oE ':[0-9]+' "$work/out" | head -1 | tr -d :)
    [ -n "$port" ] || { echo "no port from $srv: $(cat "$work/out" "$work/err")" >&2; kill "$pid"; exit 1; }
    p0=$(cat /sys/class/net/lo/statistics/tx_packets)
    r0=$(rcvbuf_errors)
    "$BIN/loadgen" --udp --clients 50 --lines "$UDP_LINES" --window 64 --threads "$THREADS" --json \
      "${extra[@]}" "127.0.0.1:$port" >"$work/lg.json" 2>"$work/lg.err" || true
    p1=$(cat /sys/class/net/lo/statistics/tx_packets)
    r1=$(rcvbuf_errors)
    read -r ut st < <(awk '{ print $14, $15 }' "/proc/$pid/stat")
    kill -INT "$pid"; wait "$pid" 2>/dev/null || true
    python3 - "$srv" "$how" "$work/lg.json" "$((p1 - p0))" "$(( (ut + st) ))" "$TICK" "$((r1 - r0))" <<'PY'
import json, sys
srv, how, path, packets, ticks, tick, rcvbuf = sys.argv[1:]
j = json.load(open(path))
n = j["lines"]
cpu_us = int(ticks) / int(tick) * 1e6
print(f"| {srv} | {how} | {n:,} | {j['lost']} | {int(packets) / n:.3f} | {cpu_us / n:.2f} us | {rcvbuf} |")
PY
  done
done
