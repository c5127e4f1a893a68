#!/usr/bin/env bash
# Our two servers against the peers in shared/anchors, on one machine, in one go.
#
#   scripts/compare.sh                 # everything, RUNS=3 (many minutes: python's ledger run is ~2 min)
#   QUICK=1 RUNS=1 scripts/compare.sh  # small sizes, a smoke pass (about a minute)
#   SERVERS="nonblocking tokio" WORKLOADS="echo-w1 presence" scripts/compare.sh
#   scripts/compare.sh --threads 2    # loadgen on 2 threads (same as THREADS=2)
#   WORKLOADS=udp-echo SERVERS="nonblocking threaded python" scripts/compare.sh
#   SERVERS="nonblocking grpc python" WORKLOADS=grpc-queue scripts/compare.sh   # the gRPC table
#   SERVERS="nonblocking nonblocking-r2 tokio" WORKLOADS="echo-w1 presence-1000" scripts/compare.sh --threads 2
#   SERVERS="threaded nonblocking nonblocking-r0" WORKLOADS=connect-scale scripts/compare.sh --threads 2
#
# Knobs: RUNS (3), QUICK (0), SERVERS ("nonblocking threaded tokio python grpc"; also
#        nonblocking-r2 and nonblocking-r0: nonblocking-server --reactors 2 / 0, each its own column),
#        WORKLOADS ("ledger-10M echo-w1 echo-w64 presence-1000 ledger-scale udp-echo grpc-queue";
#        connect-scale on demand),
#        CONNECT_CLIENTS ("100 1000 5000 10000 18000"; QUICK: "100 500"): connect-scale's client counts,
#        THREADS (1, or --threads N): loadgen's --threads, the same for every row of a series
#        (1 is how the tables before issue 14 were measured; 2 so loadgen is not the bottleneck),
#        GRPC_PY (target/grpc-venv/bin/python, created with grpcio if missing: the grpc-queue peer),
#        GRPC_WINDOW (16): grpc-queue's calls in flight per client over gRPC,
#        SCALE_CLIENTS ("10 50 200 1000"), OUT (bench-results; bench-results/quick with QUICK=1), ANCHORS (no default;
#        required with tokio or python in SERVERS: the peers' directory),
#        WAIT_IDLE (1; 0 with QUICK): before each run wait up to 2 min for the machine to go idle,
#        BASE_BIN (none): a directory holding another build's nonblocking-server (say, main's,
#        copied aside): the server nonblocking-base runs it, for before and after in one run
#        (loadgen is this build's for both; any workload but grpc-queue),
#        CASE_LIMIT (300 s per run).
#
# Workloads (issue 5):
#   ledger-10M     ledger, 50 clients x 10,000 lines, each sent 20 times (10M transactions)
#   echo-w1        echo, 50 clients x 10,000 lines of 32 bytes, ping-pong (window 1)
#   echo-w64       echo, 50 clients x 10,000 lines, window 64
#   presence-1000  presence, 1,000 clients join one by one, then leave one by one
#   ledger-scale   ledger at SCALE_CLIENTS clients, 1M lines in all (for the plot)
#   udp-echo       = udp-echo-w1 + udp-echo-w64 + udp-echo-w64-1by1: echo over UDP (loadgen
#                  --udp), 50 clients x 10,000 datagrams of 32 bytes, ping-pong and 64 in flight;
#                  w64 sends a window's datagrams as one segmented message (UDP GSO; every server
#                  still receives them one by one), w64-1by1 each as its own (--udp-one-by-one,
#                  as most clients send); servers: ours with
#                  --udp (skipped with a note while a binary's --help has no --udp) and the
#                  python peer scripts/peers/udp_echo_server.py (the seeds' recvfrom/sendto loop);
#                  the check column shows lost=N (no reply within 1 s) and late=M (of those,
#                  the reply came after all: a stall, not a drop)
#   grpc-queue     seed 001's queue, put then pop per step, 1 client x 10,000 steps and 50 clients
#                  x 2,000 steps (lines = calls, two per step): `grpc` = queue-grpc-server, `python`
#                  = scripts/peers/grpc_queue_server.py (grpcio, thread pool), both loadgen
#                  --handler grpc-queue --window $GRPC_WINDOW (16 calls in flight on each client's
#                  one HTTP/2 connection; loadgen writes its own frames, ~2-3 us of CPU a call); `nonblocking`/`threaded` = the line `--handler queue` on
#                  the same workload (loadgen --handler queue, one call at a time). Queue size 1024.
#   connect-scale  seed 004's question (issue 14): at each of CONNECT_CLIENTS, every client connects
#                  at once (--connect-burst) and does one echo round trip; time = loadgen's connect_s
#                  + wall_s (first connect to last reply, less the start barrier), and the server's
#                  peak RSS; servers get --max-clients 20000; python is skipped (a thread per client
#                  of 18,000). Plotted in $OUT/connect-scale.svg (time and peak RSS against clients).
#                  18,000 clients need ulimit -n above 18,000 for loadgen and the server (both raise
#                  their soft limit to the hard one; this machine's hard limit is 20,000).
#
# Every run: a fresh server under GNU `/usr/bin/time -v` (wrapped in `env --default-signal=INT`,
# since background jobs of a script start with SIGINT ignored), cwd = a fresh run directory (the
# ledger peers write log.txt there; ours too, by default), wait until the port listens, run loadgen
# (the same load generator for every server), SIGINT the server, wait for it to exit. Ledger logs
# are compared byte for byte with the log loadgen computed (--expect-log). Server CPU (user+sys)
# and peak RSS come from time -v; loadgen's CPU from time too. The table gives the median of RUNS
# with min-max, and "ours/this": nonblocking-server's median lines/s over this server's.
#
# Output: $OUT/table.md (also printed), $OUT/raw.tsv, $OUT/ledger-scaling.svg,
# $OUT/connect-scale.svg (with connect-scale), $OUT/env.txt.
set -uo pipefail
THREADS=${THREADS:-1}
while [ $# -gt 0 ]; do
  case $1 in
    --threads) THREADS=${2:?--threads needs a number}; shift 2 ;;
    --threads=*) THREADS=${1#--threads=}; shift ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "compare.sh: unknown argument $1 (knobs are environment variables; see --help)" >&2; exit 2 ;;
  esac
done
case $THREADS in ''|*[!0-9]*|0) echo "compare.sh: --threads wants a number >= 1" >&2; exit 2 ;; esac
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
RUNS=${RUNS:-3}
QUICK=${QUICK:-0}
SERVERS=${SERVERS:-"nonblocking threaded tokio python grpc"}
WORKLOADS=${WORKLOADS:-"ledger-10M echo-w1 echo-w64 presence-1000 ledger-scale udp-echo grpc-queue"}
WORKLOADS=${WORKLOADS//udp-echo-w/@udp-w}                 # keep the explicit names,
WORKLOADS=${WORKLOADS//udp-echo/udp-echo-w1 udp-echo-w64 udp-echo-w64-1by1}  # expand the bare one
WORKLOADS=${WORKLOADS//@udp-w/udp-echo-w}
SCALE_CLIENTS=${SCALE_CLIENTS:-"10 50 200 1000"}
if [ "$QUICK" = 1 ]; then CONNECT_CLIENTS=${CONNECT_CLIENTS:-"100 500"}; fi
CONNECT_CLIENTS=${CONNECT_CLIENTS:-"100 1000 5000 10000 18000"}
SRV_EXTRA=""   # server options for the current workload (ours only)
if [ "$QUICK" = 1 ]; then OUT=${OUT:-$ROOT/bench-results/quick}; fi   # a smoke pass never overwrites a real table
OUT=$(realpath -m "${OUT:-$ROOT/bench-results}")
# The peers (tokio, and the Python thread-per-client ledger/echo/presence) are not in this
# repository: ANCHORS names their directory, the one holding ledger/ and echo-presence/. No
# default: a path that exists on one machine only would fail later, and less clearly.
ANCHORS=${ANCHORS:-}
needs_anchors=0
case " $SERVERS " in *" tokio "*) needs_anchors=1 ;; esac
case " $SERVERS " in *" python "*)
  case " $WORKLOADS " in *" ledger"* | *" echo-w"* | *" presence"*) needs_anchors=1 ;; esac ;;
esac
if [ "$needs_anchors" = 1 ]; then
  [ -n "$ANCHORS" ] || { echo "error: ANCHORS is not set: the tokio and python peers need it (ANCHORS=DIR, the directory holding ledger/ and echo-presence/), or leave them out of SERVERS" >&2; exit 2; }
  [ -d "$ANCHORS/ledger" ] && [ -d "$ANCHORS/echo-presence" ] ||
    { echo "error: ANCHORS=$ANCHORS: no ledger/ and echo-presence/ there (the peers' directory)" >&2; exit 2; }
  ANCHORS=$(realpath "$ANCHORS")
fi
CASE_LIMIT=${CASE_LIMIT:-300}
if [ "$QUICK" = 1 ]; then WAIT_IDLE=${WAIT_IDLE:-0}; else WAIT_IDLE=${WAIT_IDLE:-1}; fi

# Sizes: full, or QUICK.
if [ "$QUICK" = 1 ]; then
  LEDGER_LINES=1000; LEDGER_REPEAT=2; ECHO_LINES=500; ECHO64_LINES=2000; PRESENCE_N=100; SCALE_TOTAL=100000
  UDP_LINES=500; GRPC_STEPS_1=100; GRPC_STEPS_50=20
else
  LEDGER_LINES=10000; LEDGER_REPEAT=20; ECHO_LINES=10000; ECHO64_LINES=10000; PRESENCE_N=1000; SCALE_TOTAL=1000000
  UDP_LINES=10000; GRPC_STEPS_1=10000; GRPC_STEPS_50=2000
fi
GRPC_WINDOW=${GRPC_WINDOW:-16}   # grpc-queue over gRPC: calls in flight per client (loadgen --window)
QUEUE_SIZE=1024  # >= clients x GRPC_WINDOW of the grpc-queue workload: each chain has one item queued at most

mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/compare.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
RAW=$OUT/raw.tsv
printf 'workload\tserver\tclients\trun\tstatus\tlines\tlines_per_s\twall_s\tp50_us\tp99_us\tmax_us\tjoin_s\tleave_s\tconnect_s\terrors\tsrv_cpu_s\tsrv_rss_kb\tloadgen_cpu_s\tcheck\n' >"$RAW"

# ---- tools and builds --------------------------------------------------------------------
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; } || {
  echo "need GNU time (apt-get install time)" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
PY=$(python3 -c 'import sys; print(sys.executable)')   # not a pyenv shim: its CPU is the server's

echo "# building (release)" >&2
FEATURES=()   # queue-grpc-server and loadgen's grpc-queue are the cargo feature grpc
case " $SERVERS $WORKLOADS " in *" grpc "*|*" grpc-queue "*) FEATURES=(--features grpc) ;; esac
cargo build --release --quiet --bins "${FEATURES[@]}" || exit 1
B=$ROOT/target/release
LOADGEN=$B/loadgen
AT=$ROOT/target/anchors           # peers build here; shared/anchors stays untouched
want_peer() { case " $SERVERS " in *" $1 "*) return 0;; esac; return 1; }
if want_peer tokio; then
  cargo build --release --quiet --locked --manifest-path "$ANCHORS/ledger/tokio-ledger/Cargo.toml" \
    --target-dir "$AT/ledger" || exit 1
  cargo build --release --quiet --locked --manifest-path "$ANCHORS/echo-presence/Cargo.toml" \
    --target-dir "$AT/echo-presence" || exit 1
fi

GRPC_PY=${GRPC_PY:-$ROOT/target/grpc-venv/bin/python}
case " $WORKLOADS " in *" grpc-queue "*)
  if want_peer python && ! "$GRPC_PY" -c 'import grpc, grpc_tools' 2>/dev/null; then
    echo "# installing grpcio for the python grpc-queue peer into target/grpc-venv" >&2
    python3 -m venv "$ROOT/target/grpc-venv" && "$ROOT/target/grpc-venv/bin/pip" install --quiet grpcio grpcio-tools || exit 1
    GRPC_PY=$ROOT/target/grpc-venv/bin/python
  fi ;;
esac

{
  echo "# $(date -u +%FT%TZ) $(nproc) cores, $(uname -r), $(rustc --version), $($PY --version 2>&1)"
  echo "# git $(git rev-parse --short HEAD 2>/dev/null) RUNS=$RUNS QUICK=$QUICK loadgen --threads $THREADS loadavg: $(cat /proc/loadavg)"
  echo "# ulimit -n $(ulimit -n), somaxconn $(cat /proc/sys/net/core/somaxconn)"
} | tee "$OUT/env.txt" >&2

# has_udp BINARY: whether its --help offers --udp (our servers' UDP side may not exist yet)
has_udp() { "$1" --help 2>/dev/null | grep -q -- '--udp'; }
UDP_NOTED=" "

# server_cmd SERVER HANDLER -> the command line (port appended later), or nothing if n/a.
# HANDLER udp-echo: echo over UDP.
server_cmd() {
  local srv=$1 h=$2
  if [ "$h" = udp-echo ]; then
    case $srv in
      nonblocking|threaded)
        local bin=$B/$srv-server
        if has_udp "$bin"; then echo "$bin --handler echo --udp"
        else
          case $UDP_NOTED in *" $srv "*) ;; *)
            echo "  (note: $srv-server has no --udp yet: its udp-echo rows are skipped)" >&2
            UDP_NOTED="$UDP_NOTED$srv " ;; esac
        fi ;;
      nonblocking-base) [ -x "${BASE_BIN:-}/nonblocking-server" ] &&
        echo "$BASE_BIN/nonblocking-server --handler echo --udp" ;;
      python) echo "$PY $ROOT/scripts/peers/udp_echo_server.py" ;;
    esac
    return 0
  fi
  case $srv in
    nonblocking|threaded) [ "$h" = grpc-queue ] && { echo "$B/$srv-server --handler queue --queue-size $QUEUE_SIZE"; return; } ;;&
    nonblocking) echo "$B/nonblocking-server --handler $h $SRV_EXTRA" ;;
    nonblocking-base) [ -x "${BASE_BIN:-}/nonblocking-server" ] && [ "$h" != grpc-queue ] &&
      echo "$BASE_BIN/nonblocking-server --handler $h $SRV_EXTRA" ;;
    nonblocking-r2) echo "$B/nonblocking-server --reactors 2 --handler $h $SRV_EXTRA" ;;
    nonblocking-r0) echo "$B/nonblocking-server --reactors 0 --handler $h $SRV_EXTRA" ;;
    threaded)    echo "$B/threaded-server --handler $h $SRV_EXTRA" ;;
    grpc) [ "$h" = grpc-queue ] && echo "$B/queue-grpc-server" ;;
    tokio)
      case $h in
        ledger) echo "$AT/ledger/release/tokio-ledger" ;;
        echo) echo "$AT/echo-presence/release/tokio-echo" ;;
        presence) echo "$AT/echo-presence/release/tokio-presence" ;;
      esac ;;
    python)
      case $h in
        ledger) echo "$PY $ANCHORS/ledger/ledger_threaded.py" ;;
        echo) echo "$PY $ANCHORS/echo-presence/echo_threaded.py" ;;
        presence) echo "$PY $ANCHORS/echo-presence/presence_threaded.py" ;;
        grpc-queue) echo "$GRPC_PY $ROOT/scripts/peers/grpc_queue_server.py" ;;
      esac ;;
  esac
}
# server_tail SERVER HANDLER -> arguments after the port (the gRPC queues' SIZE)
server_tail() {
  case $1:$2 in grpc:grpc-queue|python:grpc-queue) echo "$QUEUE_SIZE" ;; esac
}
# loadgen_handler SERVER HANDLER -> what loadgen speaks: the line servers serve grpc-queue's
# workload with their line `queue` handler
loadgen_handler() {
  case $1:$2 in nonblocking:grpc-queue|threaded:grpc-queue) echo queue ;; *) echo "$2" ;; esac
}

busy_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat; }
HZ=$(getconf CLK_TCK)
wait_idle() {
  [ "$WAIT_IDLE" = 1 ] || return 0
  local i a b
  for i in $(seq 120); do
    a=$(busy_ticks); sleep 1; b=$(busy_ticks)
    [ $((b - a)) -lt $((HZ * 2 / 10)) ] && return 0
    [ $((i % 30)) -eq 1 ] && echo "  (waiting for the machine to go idle: $(cat /proc/loadavg))" >&2
  done
  echo "  (machine still busy; going on)" >&2
}
free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# run_one WORKLOAD SERVER HANDLER CLIENTS RUN LOADGEN-ARGS...   appends one row to $RAW
run_one() {
  local w=$1 srv=$2 h=$3 clients=$4 run=$5; shift 5
  local cmd; cmd=$(server_cmd "$srv" "$h")
  [ -n "$cmd" ] || return 0
  wait_idle
  local rd=$WORK/$w-$srv-$clients-$run port tpid spid="" i
  mkdir -p "$rd"; port=$(free_port)
  # shellcheck disable=SC2086  # cmd is a command line on purpose
  ( cd "$rd" && exec /usr/bin/time -v -o "$rd/server.time" env --default-signal=INT $cmd "$port" $(server_tail "$srv" "$h") \
      >"$rd/server.out" 2>"$rd/server.err" ) &
  tpid=$!
  for i in $(seq 200); do
    kill -0 "$tpid" 2>/dev/null || break
    ss -Htuln "sport = :$port" | grep -q . && { spid=$(ps -o pid= --ppid "$tpid" | tr -d ' '); break; }
    sleep 0.05
  done
  if [ -z "$spid" ]; then
    wait "$tpid" 2>/dev/null
    echo "  $w $srv c=$clients run $run: server did not start: $(tail -1 "$rd/server.err")" >&2
    printf '%s\t%s\t%s\t%s\tNOSTART\n' "$w" "$srv" "$clients" "$run" >>"$RAW"
    return 0
  fi
  local extra=() lh=$h
  [ "$h" = ledger ] && extra=(--expect-log "$rd/expected.txt")
  [ "$h" = udp-echo ] && { lh=echo; extra=(--udp); }
  [ "$(loadgen_handler "$srv" "$h")" = grpc-queue ] && extra=(--window "$GRPC_WINDOW")
  /usr/bin/time -f '%U %S' -o "$rd/loadgen.time" timeout $((CASE_LIMIT + 30)) \
    "$LOADGEN" --json --timeout "$CASE_LIMIT" --threads "$THREADS" --handler "$(loadgen_handler "$srv" "$lh")" \
    --clients "$clients" "${extra[@]}" "$@" \
    "127.0.0.1:$port" >"$rd/loadgen.json" 2>"$rd/loadgen.err"
  local rc=$?
  kill -INT "$spid" 2>/dev/null
  for i in $(seq 600); do kill -0 "$spid" 2>/dev/null || break; sleep 0.05; done
  kill -0 "$spid" 2>/dev/null && { echo "  (server ignored SIGINT for 30 s: SIGKILL)" >&2; kill -KILL "$spid"; }
  wait "$tpid" 2>/dev/null
  local check=-
  if [ "$h" = ledger ]; then
    if [ -f "$rd/log.txt" ] && cmp -s "$rd/log.txt" "$rd/expected.txt"; then check=MATCH; else check=MISMATCH; fi
  fi
  "$PY" - "$rd" "$w" "$srv" "$clients" "$run" "$rc" "$check" >>"$RAW" <<'PY'
import json, sys
rd, w, srv, clients, run, rc, check = sys.argv[1:]
def time_v(key):
    for line in open(f"{rd}/server.time"):
        if key in line:
            return float(line.rsplit(":", 1)[1])
    return float("nan")
try:
    j = json.loads(open(f"{rd}/loadgen.json").read().strip().splitlines()[-1])
except Exception:
    j = None
cpu = time_v("User time") + time_v("System time")
rss = int(time_v("Maximum resident set size"))
try:
    u, s = open(f"{rd}/loadgen.time").read().split()[-2:]
    lcpu = f"{float(u) + float(s):.2f}"
except Exception:
    lcpu = "NA"
if j is None:
    print(f"{w}\t{srv}\t{clients}\t{run}\tFAILED(rc={rc})" + "\tNA" * 13 + f"\t{check}")
    sys.exit()
status = "BADLOG" if check == "MISMATCH" else "OK" if rc == "0" else f"ERR(rc={rc})"
if j.get("transport") == "udp":
    # lost = no reply within --udp-timeout; late = of those, the reply came after all
    check = f"lost={j.get('lost')}" + (f" late={j['late']}" if j.get("late") else "")
na = lambda v: "NA" if v is None else v
print("\t".join(str(x) for x in [
    w, srv, clients, run, status, j["lines"], j["lines_per_s"], j["wall_s"], na(j["p50_us"]),
    na(j["p99_us"]), na(j["max_us"]), na(j["join_s"]), na(j["leave_s"]), j["connect_s"],
    j["errors"], f"{cpu:.2f}", rss, lcpu, check]))
PY
  echo "  $w $srv c=$clients run $run: $(tail -1 "$RAW" | cut -f5,7,8,16,17,19 | tr '\t' ' ')" >&2
  [ -s "$rd/loadgen.err" ] && sed 's/^/    loadgen: /' "$rd/loadgen.err" | head -3 >&2
  return 0
}

for w in $WORKLOADS; do
  echo "== $w" >&2
  for run in $(seq "$RUNS"); do
    for srv in $SERVERS; do
      SRV_EXTRA=""
      case $w in
        ledger-10M) run_one "$w" "$srv" ledger 50 "$run" --lines "$LEDGER_LINES" --repeat "$LEDGER_REPEAT" ;;
        echo-w1) run_one "$w" "$srv" echo 50 "$run" --lines "$ECHO_LINES" --window 1 ;;
        echo-w64) run_one "$w" "$srv" echo 50 "$run" --lines "$ECHO64_LINES" --window 64 ;;
        presence-1000) run_one "$w" "$srv" presence "$PRESENCE_N" "$run" ;;
        udp-echo-w1) run_one "$w" "$srv" udp-echo 50 "$run" --lines "$UDP_LINES" --window 1 ;;
        udp-echo-w64) run_one "$w" "$srv" udp-echo 50 "$run" --lines "$UDP_LINES" --window 64 ;;
        udp-echo-w64-1by1) run_one "$w" "$srv" udp-echo 50 "$run" --lines "$UDP_LINES" --window 64 --udp-one-by-one ;;
        connect-scale)
          [ "$srv" = python ] && { echo "  (connect-scale: python skipped, a thread per client)" >&2; continue; }
          SRV_EXTRA="--max-clients 20000"
          for c in $CONNECT_CLIENTS; do
            run_one "$w" "$srv" echo "$c" "$run" --lines 1 --window 1 --connect-burst
          done ;;
        ledger-scale)
          for c in $SCALE_CLIENTS; do
            run_one "$w" "$srv" ledger "$c" "$run" --lines $((SCALE_TOTAL / c))
          done ;;
        grpc-queue)
          run_one "$w" "$srv" grpc-queue 1 "$run" --lines "$GRPC_STEPS_1"
          run_one "$w" "$srv" grpc-queue 50 "$run" --lines "$GRPC_STEPS_50" ;;
        *) echo "unknown workload $w" >&2; exit 2 ;;
      esac
    done
  done
done

# ---- table and plot ----------------------------------------------------------------------
"$PY" - "$RAW" "$OUT" "$QUICK" "$THREADS" <<'PY' | tee "$OUT/table.md"
import math, sys
from collections import defaultdict
raw, out, quick, threads = sys.argv[1:]
rows = [l.rstrip("\n").split("\t") for l in open(raw)]
head, rows = rows[0], rows[1:]
rows = [dict(zip(head, r + ["NA"] * (len(head) - len(r)))) for r in rows]
groups = defaultdict(list)
for r in rows:
    groups[(r["workload"], r["server"], int(r["clients"]))].append(r)

def num(v):
    try:
        x = float(v)
        return None if math.isnan(x) else x
    except ValueError:
        return None

def med(vals):
    v = sorted(x for x in vals if x is not None)
    if not v:
        return None
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2

def stat(rs, key, fmt="{:,.0f}", scale=1.0):
    v = [num(r[key]) for r in rs if r["status"] == "OK"]
    v = [x * scale for x in v if x is not None]
    if not v:
        return "n/a"
    m = med(v)
    return fmt.format(m) + (f" ({fmt.format(min(v))}-{fmt.format(max(v))})" if len(v) > 1 else "")

def median_of(key3, key):
    return med([num(r[key]) for r in groups.get(key3, []) if r["status"] == "OK"])

labels = {
    "ledger-10M": "ledger 50 clients x {} lines x repeat {}",
    "echo-w1": "echo 50 clients ping-pong (window 1)",
    "echo-w64": "echo 50 clients, window 64",
    "presence-1000": "presence, {} clients join then leave",
    "ledger-scale": "ledger scaling",
    "udp-echo-w1": "udp echo 50 clients ping-pong",
    "udp-echo-w64": "udp echo 50 clients, 64 in flight (loadgen sends each window segmented)",
    "udp-echo-w64-1by1": "udp echo 50 clients, 64 in flight (loadgen sends one by one)",
    "grpc-queue": "queue put+pop: line queue (nonblocking, threaded) vs gRPC (grpc, python grpcio)",
    "connect-scale": "clients connect at once + one echo round trip",
}
print(f"# nonblocking vs peers{' (QUICK sizes: a smoke pass, not a measurement)' if quick == '1' else ''}\n")
print(f"loadgen --threads {threads}. Median of runs, (min-max) when more than one. ours/this = nonblocking-server's median lines/s "
      "divided by this server's (> 1: ours is faster). Server CPU = user+sys over the server's life; "
      "RSS = peak. Presence lines/s = N² lists / (join + leave time).\n")
print("| workload | server | clients | runs ok | lines/s | ours/this | p50 us | p99 us | wall s | join s | leave s | server CPU s | server peak RSS MiB | loadgen CPU s | check |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
order = ["nonblocking", "nonblocking-base", "nonblocking-r2", "nonblocking-r0", "threaded", "tokio", "python", "grpc"]
for (w, srv, c) in sorted(groups, key=lambda k: (list(labels).index(k[0]) if k[0] in labels else 9, k[2], order.index(k[1]) if k[1] in order else 9)):
    rs = groups[(w, srv, c)]
    ok = [r for r in rs if r["status"] == "OK"]
    ours = median_of((w, "nonblocking", c), "lines_per_s")
    this = median_of((w, srv, c), "lines_per_s")
    ratio = f"{ours / this:.2f}" if ours and this else "n/a"
    checks = sorted({r["check"] for r in rs} - {"-"})
    bad = sorted({r["status"] for r in rs} - {"OK", "BADLOG"})
    check = ",".join(checks + bad) or "-"
    print(f"| {w} | {srv} | {c} | {len(ok)}/{len(rs)} | {stat(rs, 'lines_per_s')} | {ratio} | "
          f"{stat(rs, 'p50_us')} | {stat(rs, 'p99_us')} | {stat(rs, 'wall_s', '{:.3f}')} | "
          f"{stat(rs, 'join_s', '{:.3f}')} | {stat(rs, 'leave_s', '{:.3f}')} | {stat(rs, 'srv_cpu_s', '{:.2f}')} | "
          f"{stat(rs, 'srv_rss_kb', '{:.1f}', 1 / 1024)} | {stat(rs, 'loadgen_cpu_s', '{:.2f}')} | {check} |")

# grpc-queue: lines are calls. Issue 13's two ratios, per client count.
for c in sorted({k[2] for k in groups if k[0] == "grpc-queue"}):
    g = median_of(("grpc-queue", "grpc", c), "lines_per_s")
    p = median_of(("grpc-queue", "python", c), "lines_per_s")
    n = median_of(("grpc-queue", "nonblocking", c), "lines_per_s")
    r = lambda a, b: f"{a / b:.1f}x" if a and b else "n/a"
    print(f"\ngrpc-queue, {c} clients (calls/s): queue-grpc-server / python grpcio = {r(g, p)}; "
          f"line queue on the reactor / queue-grpc-server = {r(n, g)}")

# Plots: one panel per measure, x = clients (log scale), one line per server (ours first).
colors = {"nonblocking": "#d62728", "nonblocking-r2": "#ff7f0e", "nonblocking-r0": "#9467bd",
          "threaded": "#1f77b4", "tokio": "#7f7f7f", "python": "#bcbd22"}
PW, H, L, R, T, Bm = 640, 400, 70, 150, 30, 50

def panel(x0, series, title, yfmt):
    xs = sorted({c for s in series.values() for c, _ in s})
    ymax = max(m for s in series.values() for _, m in s) * 1.1 or 1
    lx = lambda c: x0 + (L + (math.log10(c) - math.log10(xs[0])) / max(1e-9, math.log10(xs[-1]) - math.log10(xs[0])) * (PW - L - R) if len(xs) > 1 else (PW - R + L) / 2)
    ly = lambda v: H - Bm - v / ymax * (H - T - Bm)
    svg = [f'<text x="{x0+L}" y="18" font-size="14">{title}</text>',
           f'<line x1="{x0+L}" y1="{H-Bm}" x2="{x0+PW-R}" y2="{H-Bm}" stroke="black"/>',
           f'<line x1="{x0+L}" y1="{T}" x2="{x0+L}" y2="{H-Bm}" stroke="black"/>',
           f'<text x="{x0+(L+PW-R)/2}" y="{H-10}" text-anchor="middle">clients (log scale)</text>']
    for c in xs:
        svg.append(f'<text x="{lx(c):.1f}" y="{H-Bm+16}" text-anchor="middle">{c}</text>')
    for i in range(6):
        v = ymax * i / 5
        svg.append(f'<line x1="{x0+L-4}" y1="{ly(v):.1f}" x2="{x0+PW-R}" y2="{ly(v):.1f}" stroke="#ddd"/>')
        svg.append(f'<text x="{x0+L-6}" y="{ly(v)+4:.1f}" text-anchor="end">{yfmt(v)}</text>')
    for k, srv in enumerate(sorted(series, key=lambda s: order.index(s) if s in order else 9)):
        pts = sorted(series[srv])
        col = colors.get(srv, "black")
        ours = srv.startswith("nonblocking") or srv == "threaded"
        width = 3 if ours else 1.5
        dash = "" if ours else ' stroke-dasharray="5,4"'
        svg.append(f'<polyline fill="none" stroke="{col}" stroke-width="{width}"{dash} points="' +
                   " ".join(f"{lx(c):.1f},{ly(m):.1f}" for c, m in pts) + '"/>')
        for c, m in pts:
            svg.append(f'<circle cx="{lx(c):.1f}" cy="{ly(m):.1f}" r="3" fill="{col}"/>')
        y = T + 10 + 18 * k
        svg.append(f'<line x1="{x0+PW-R+10}" y1="{y}" x2="{x0+PW-R+35}" y2="{y}" stroke="{col}" stroke-width="{width}"{dash}/>')
        svg.append(f'<text x="{x0+PW-R+40}" y="{y+4}">{srv}</text>')
    return svg

def write_svg(name, panels):
    W = PW * len(panels)
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>']
    for k, (series, title, yfmt) in enumerate(panels):
        svg += panel(PW * k, series, title, yfmt)
    svg.append("</svg>")
    open(f"{out}/{name}", "w").write("\n".join(svg) + "\n")
    print(f"\nPlot: {out}/{name}")

def series_of(workload, value):
    series = {}
    for (w, srv, c) in groups:
        if w == workload:
            m = med([value(r) for r in groups[(w, srv, c)] if r["status"] == "OK"])
            if m:
                series.setdefault(srv, []).append((c, m))
    return series

ledger = series_of("ledger-scale", lambda r: num(r["lines_per_s"]))
if ledger:
    write_svg("ledger-scaling.svg", [(ledger, "ledger throughput vs clients (median lines/s)",
                                      lambda v: f"{v/1e6:.1f}M")])

def first_connect_to_last_reply(r):
    a, b = num(r["connect_s"]), num(r["wall_s"])
    return None if a is None or b is None else a + b

times = series_of("connect-scale", first_connect_to_last_reply)
rss = series_of("connect-scale", lambda r: (num(r["srv_rss_kb"]) or 0) / 1024 or None)
if times:
    write_svg("connect-scale.svg", [
        (times, "connect + one echo round trip: seconds (median)", lambda v: f"{v:.2f}"),
        (rss, "server peak RSS, MiB (median)", lambda v: f"{v:.0f}"),
    ])
PY
echo "# raw rows: $RAW" >&2
