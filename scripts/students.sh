#!/usr/bin/env bash
# Seed 004's "20,000 students within 1 second" (issue 20, item 2), one run: CLIENTS clients
# connect at once (loadgen --connect-burst) to nonblocking-server (one loop), each sends one
# line and waits for its echo. Prints loadgen's summary, its time from the first connect to the
# last echo (connect_s + wall_s), the kernel's counters before and after (/proc/net/netstat
# TcpExt ListenOverflows, ListenDrops, TCPSynRetrans: machine-wide, so run it on a quiet
# machine), the CPU both used, and the load average.
#
#   scripts/students.sh                      # 18,000 clients
#   STRACE=1 scripts/students.sh             # also loadgen under strace -c -f: the cost of connect()
#   CLIENTS=5000 SERVER_ARGS="--backlog 1024" scripts/students.sh
#   SERVER_BIN=/path/to/old/nonblocking-server LOADGEN_BIN=/path/to/old/loadgen scripts/students.sh
#
# Knobs: CLIENTS (18000), THREADS (loadgen --threads; default: one per core), SERVER_ARGS (extra
# server options), SERVER_BIN / LOADGEN_BIN (default: this checkout's release build), STRACE (0).
# 18,000 clients need a hard descriptor limit (ulimit -Hn) above 18,000 for both processes.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
CLIENTS=${CLIENTS:-18000}
THREADS=${THREADS:-$(nproc)}
SERVER_ARGS=${SERVER_ARGS:-}
STRACE=${STRACE:-0}
if [ -z "${SERVER_BIN:-}" ] || [ -z "${LOADGEN_BIN:-}" ]; then
  cargo build --release --quiet --bin nonblocking-server --bin loadgen || exit 1
fi
SERVER_BIN=${SERVER_BIN:-$ROOT/target/release/nonblocking-server}
LOADGEN_BIN=${LOADGEN_BIN:-$ROOT/target/release/loadgen}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" -gt $((CLIENTS + 50)) ] || { echo "students.sh: ulimit -n $(ulimit -n) is below $CLIENTS clients" >&2; exit 1; }
WORK=$(mktemp -d /tmp/students.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

counters() {  # TcpExt ListenOverflows ListenDrops TCPSynRetrans
  awk '/^TcpExt:/ { if (!n) { for (i = 2; i <= NF; i++) k[i] = $i; n = 1 }
                    else for (i = 2; i <= NF; i++) v[k[i]] = $i }
       END { print v["ListenOverflows"], v["ListenDrops"], v["TCPSynRetrans"] }' /proc/net/netstat
}
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }   # user + system, in clock ticks

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# shellcheck disable=SC2086  # SERVER_ARGS is a list of options
"$SERVER_BIN" --max-clients $((CLIENTS + 1000)) --report-every 0 $SERVER_ARGS "$port" >"$WORK/server.out" 2>&1 &
spid=$!
for _ in $(seq 200); do grep -q Listening "$WORK/server.out" && break; sleep 0.05; done
grep -q Listening "$WORK/server.out" || { echo "students.sh: the server did not start: $(cat "$WORK/server.out")" >&2; exit 1; }

read -r lo0 ld0 sr0 < <(counters)
load=$(cut -d' ' -f1-3 /proc/loadavg)
trace=()
[ "$STRACE" = 1 ] && trace=(strace -c -f -o "$WORK/loadgen.strace")
/usr/bin/time -f '%U %S' -o "$WORK/loadgen.time" "${trace[@]}" "$LOADGEN_BIN" --json --threads "$THREADS" \
  --handler echo --clients "$CLIENTS" --lines 1 --window 1 --connect-burst "127.0.0.1:$port" >"$WORK/loadgen.json"
rc=$?
read -r lo1 ld1 sr1 < <(counters)
srv_ticks=$(ticks "$spid")
kill -INT "$spid"; wait "$spid"

python3 - "$WORK" "$rc" "$CLIENTS" "$load" "$((lo1 - lo0))" "$((ld1 - ld0))" "$((sr1 - sr0))" "$srv_ticks" "$(getconf CLK_TCK)" "$STRACE" <<'PY'
import json, sys
work, rc, clients, load, lo, ld, sr, srv_ticks, hz, strace = sys.argv[1:]
j = json.loads(open(f"{work}/loadgen.json").read().strip().splitlines()[-1])
u, s = (float(x) for x in open(f"{work}/loadgen.time").read().split()[-2:])
total = j["connect_s"] + j["wall_s"]
print(f"clients {clients}: connect {j['connect_s']:.3f} s + echo {j['wall_s']:.3f} s = {total:.3f} s "
      f"first connect to last echo (loadgen exit {rc}, errors {j['errors']}, p99 {j['p99_us']} us)")
print(f"kernel: ListenOverflows +{lo}, ListenDrops +{ld}, TCPSynRetrans +{sr}")
print(f"cpu: server {int(srv_ticks) / int(hz):.2f} s, loadgen {u + s:.2f} s (user {u:.2f}, sys {s:.2f})")
print(f"load average before the run: {load}")
if strace == "1":
    for line in open(f"{work}/loadgen.strace"):
        f = line.split()
        if f and f[-1] in ("connect", "socket", "bind", "epoll_ctl", "setsockopt"):
            print(f"loadgen strace -c: {f[-1]} {f[3]} calls, {f[2]} us each")
PY
