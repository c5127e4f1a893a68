#!/usr/bin/env bash
# Syscalls per message, ours against the tokio peer, under the same loadgen run (issue 20,
# item 5): each server runs under `strace -c -f` (every thread), loadgen drives it, the server
# is stopped with SIGINT and strace's counts are divided by the messages the server answered.
#
#   scripts/syscalls.sh                                   # echo ping-pong and presence-1000
#   ECHO_LINES=2000 PRESENCE_N=300 scripts/syscalls.sh    # smaller, quicker
#   SERVERS="nonblocking tokio" WORKLOADS=echo-w1 scripts/syscalls.sh
#   SERVERS="nonblocking threaded python" WORKLOADS="udp-w1 udp-w64" scripts/syscalls.sh   # UDP echo
#
# Knobs: SERVERS ("nonblocking nonblocking-r2 tokio"; for UDP also threaded, and python =
#        scripts/peers/udp_echo_server.py), WORKLOADS ("echo-w1 presence"; udp-w1 and udp-w64 =
#        loadgen --udp, 50 clients x UDP_LINES (10000) datagrams, window 1 or 64),
#        ECHO_LINES (10000 per client, 50 clients, window 1), PRESENCE_N (1000),
#        THREADS (2: loadgen's --threads), ANCHORS (required: the anchors' directory), OUT (bench-results/syscalls).
# Messages: echo = the replies (loadgen's lines); presence = the lists the clients received
# (loadgen's lines). strace slows every syscall, so only the counts mean anything here, not time.
# Output: $OUT/table.md (also printed) and one strace summary per run in $OUT.
# TRACER=perf counts with `perf stat` on the syscall tracepoints instead (all threads too): it
# hardly slows the server, so each wakeup finds as many messages waiting as it would untraced
# (strace's slowdown lets more pile up, which flatters batching: the UDP rows).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
SERVERS=${SERVERS:-"nonblocking nonblocking-r2 tokio"}
WORKLOADS=${WORKLOADS:-"echo-w1 presence"}
ECHO_LINES=${ECHO_LINES:-10000}
PRESENCE_N=${PRESENCE_N:-1000}
THREADS=${THREADS:-2}
ANCHORS=${ANCHORS:-}
[ -n "$ANCHORS" ] || { echo "error: ANCHORS is not set: give the anchors' directory (ANCHORS=DIR)" >&2; exit 2; }
[ -d "$ANCHORS" ] || { echo "error: ANCHORS=$ANCHORS: no such directory" >&2; exit 2; }
ANCHORS=$(realpath "$ANCHORS")
OUT=$(realpath -m "${OUT:-$ROOT/bench-results/syscalls}")
TRACER=${TRACER:-strace}
command -v "$TRACER" >/dev/null || { echo "syscalls.sh: needs $TRACER (apt-get install $TRACER)" >&2; exit 1; }
PERF_EVENTS=raw_syscalls:sys_enter
for n in sendto write writev sendmsg sendmmsg recvfrom read readv recvmsg recvmmsg epoll_wait epoll_pwait epoll_pwait2; do
  PERF_EVENTS=$PERF_EVENTS,syscalls:sys_enter_$n
done
case $TRACER in strace|perf) ;; *) echo "syscalls.sh: TRACER is strace or perf" >&2; exit 2 ;; esac
[ -d "$ANCHORS/echo-presence" ] || { echo "syscalls.sh: no anchors at $ANCHORS (set ANCHORS=DIR)" >&2; exit 1; }
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

echo "# building (release)" >&2
cargo build --release --quiet --bin nonblocking-server --bin threaded-server --bin loadgen || exit 1
AT=$ROOT/target/anchors
cargo build --release --quiet --locked --manifest-path "$ANCHORS/echo-presence/Cargo.toml" \
  --target-dir "$AT/echo-presence" || exit 1
B=$ROOT/target/release

server_cmd() {  # SERVER HANDLER -> command (port appended)
  case $1 in
    nonblocking) echo "$B/nonblocking-server --report-every 0 --handler $2" ;;
    nonblocking-r2) echo "$B/nonblocking-server --report-every 0 --reactors 2 --handler $2" ;;
    tokio) echo "$AT/echo-presence/release/tokio-$2" ;;
  esac
}
udp_server_cmd() {  # SERVER -> a UDP echo server's command (port appended), or nothing
  case $1 in
    nonblocking|threaded) echo "$B/$1-server --report-every 0 --handler echo --udp" ;;
    python) echo "$(python3 -c 'import sys; print(sys.executable)') $ROOT/scripts/peers/udp_echo_server.py" ;;
  esac
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

{
  echo "# $(date -u +%FT%TZ) git $(git rev-parse --short HEAD) loadavg: $(cat /proc/loadavg)"
  echo
  echo "| workload | server | messages | sendto+write(+sendmmsg) per msg | recvfrom+read(+recvmmsg) per msg | epoll_wait per msg | msgs per epoll_wait | all syscalls per msg |"
  echo "|---|---|---|---|---|---|---|---|"
} >"$OUT/table.md"

for w in $WORKLOADS; do
  for srv in $SERVERS; do
    case $w in
      echo-w1) h=echo; lg=(--handler echo --clients 50 --lines "$ECHO_LINES" --window 1) ;;
      presence) h=presence; lg=(--handler presence --clients "$PRESENCE_N") ;;
      udp-w1|udp-w64) h=udp; lg=(--handler echo --udp --clients 50 --lines "${UDP_LINES:-10000}" --window "${w#udp-w}") ;;
      *) echo "unknown workload $w" >&2; exit 2 ;;
    esac
    if [ "$h" = udp ]; then cmd=$(udp_server_cmd "$srv"); else cmd=$(server_cmd "$srv" "$h"); fi
    [ -n "$cmd" ] || { echo "  $w $srv: skipped (no such server for $w)" >&2; continue; }
    port=$(free_port)
    sum=$OUT/$w-$srv.$TRACER
    # shellcheck disable=SC2046  # the command line is split on purpose
    case $TRACER in
      strace) trace=(strace -c -f -o "$sum") ;;
      perf) trace=(perf stat -x, -e "$PERF_EVENTS" -o "$sum") ;;
    esac
    "${trace[@]}" env --default-signal=INT $cmd "$port" >/dev/null 2>&1 &
    tpid=$!
    for _ in $(seq 200); do
      ss -Htuln "sport = :$port" | grep -q . && break
      sleep 0.05
    done
    json=$("$B/loadgen" --json --threads "$THREADS" "${lg[@]}" "127.0.0.1:$port")
    rc=$?
    # The server is the tracer's child; SIGINT it and let the tracer write the summary.
    spid=$(ps -o pid= --ppid "$tpid" | tr -d ' ')
    kill -INT "$spid" 2>/dev/null
    wait "$tpid"
    msgs=$(echo "$json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["lines"])')
    echo "  $w $srv: loadgen exit $rc, $msgs messages" >&2
    python3 - "$sum" "$w" "$srv" "$msgs" >>"$OUT/table.md" <<'PY'
import sys
path, w, srv, msgs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
calls = {}
for line in open(path):
    f = line.split()
    # "% time  seconds  usecs/call  calls  [errors]  syscall"; skip headers, rulers, the total
    if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
        calls[f[-1]] = int(f[3])
    # perf stat -x,: "count,unit,event,..."; raw_syscalls counts every call (the total)
    f = line.strip().split(",")
    if len(f) > 2 and f[0].isdigit() and "sys_enter" in f[2]:
        name = f[2].split("sys_enter_")[-1] if "sys_enter_" in f[2] else "other"
        calls[name] = int(f[0])
if "other" in calls:
    calls["other"] -= sum(v for k, v in calls.items() if k != "other")
per = lambda *names: sum(calls.get(n, 0) for n in names) / msgs
ew = calls.get("epoll_wait", 0) + calls.get("epoll_pwait", 0) + calls.get("epoll_pwait2", 0)
print(f"| {w} | {srv} | {msgs:,} | {per('sendto', 'write', 'writev', 'sendmsg', 'sendmmsg'):.3f} "
      f"| {per('recvfrom', 'read', 'readv', 'recvmsg', 'recvmmsg'):.3f} | {ew / msgs:.4f} "
      f"| {msgs / ew if ew else float('inf'):.1f} | {sum(calls.values()) / msgs:.3f} |")
PY
  done
done
cat "$OUT/table.md"
