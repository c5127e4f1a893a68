#!/usr/bin/env bash
# The ledger 10M workload driven by the anchors' blaster, several servers interleaved in one
# series, so a before/after comparison of our server is a ratio to tokio taken in the same run.
#
#   ANCHORS=DIR scripts/ledger-blast.sh                       # ours (this tree) vs tokio, RUNS=3
#   BEFORE=/path/to/old/nonblocking-server scripts/ledger-blast.sh   # adds the old binary as "before"
#   EXTRA="--reactors 2" scripts/ledger-blast.sh              # options for our server
#
# Knobs: RUNS (3), REPEAT (20: 50 clients x 10,000 lines x 20 = 10M), ANCHORS (required: the
#        anchors' directory, holding ledger/),
#        BEFORE (an older nonblocking-server binary), EXTRA (extra options for ours), OUT (a dir).
# Per run: a fresh server in a fresh directory, wait until it listens, blaster, SIGINT, wait, and
# the log compared byte for byte with gen_ledger.py's expected log. Prints one line per run and a
# summary: median tx/s (blaster's barrier-to-last-EOF rate) and each server's median over tokio's.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${RUNS:-3}
REPEAT=${REPEAT:-20}
# blaster, tokio-ledger and gen_ledger.py are not in this repository: ANCHORS names their
# directory. No default: a path that exists on one machine only would fail later, less clearly.
ANCHORS=${ANCHORS:-}
[ -n "$ANCHORS" ] || { echo "error: ANCHORS is not set: give the anchors' directory (ANCHORS=DIR, holding ledger/blaster, ledger/tokio-ledger and ledger/gen_ledger.py)" >&2; exit 2; }
[ -f "$ANCHORS/ledger/gen_ledger.py" ] ||
  { echo "error: ANCHORS=$ANCHORS: no ledger/gen_ledger.py there (the anchors' directory)" >&2; exit 2; }
ANCHORS=$(realpath "$ANCHORS")
EXTRA=${EXTRA:-}
OUT=${OUT:-$(mktemp -d /tmp/ledger-blast.XXXXXX)}
AT=$ROOT/target/anchors
mkdir -p "$OUT"

cargo build --release --quiet --bin nonblocking-server --manifest-path "$ROOT/Cargo.toml" || exit 1
for p in blaster tokio-ledger; do
  cargo build --release --quiet --locked --manifest-path "$ANCHORS/ledger/$p/Cargo.toml" \
    --target-dir "$AT/ledger" || exit 1
done
DATA=$AT/ledger-data
[ -f "$DATA/expected_log_x$REPEAT.txt" ] ||
  python3 "$ANCHORS/ledger/gen_ledger.py" "$DATA" --clients 50 --lines 10000 --repeat "$REPEAT" >/dev/null || exit 1

declare -A CMD=(
  [ours]="$ROOT/target/release/nonblocking-server -H ledger $EXTRA"
  [tokio]="$AT/ledger/release/tokio-ledger"
)
NAMES="ours tokio"
if [ -n "${BEFORE:-}" ]; then CMD[before]="$BEFORE -H ledger"; NAMES="before ours tokio"; fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

: >"$OUT/runs.tsv"
for run in $(seq "$RUNS"); do
  for name in $NAMES; do
    rd=$OUT/$name.$run; mkdir -p "$rd"; port=$(free_port)
    # tokio-ledger takes the port as its only argument, ours as the last one.
    (cd "$rd" && exec env --default-signal=INT ${CMD[$name]} "$port") >"$rd/server.out" 2>"$rd/server.err" &
    spid=$!
    for _ in $(seq 200); do ss -Htln "sport = :$port" | grep -q . && break; sleep 0.05; done
    "$AT/ledger/release/blaster" --port "$port" --repeat "$REPEAT" "$DATA" >"$rd/blaster.out" 2>&1
    kill -INT "$spid"; wait "$spid"
    rate=$(grep -o 'lines_per_s=[0-9.]*' "$rd/blaster.out" | cut -d= -f2)
    if cmp -s "$rd/log.txt" "$DATA/expected_log_x$REPEAT.txt"; then check=MATCH; else check=MISMATCH; fi
    printf '%s\t%s\t%s\t%s\n' "$name" "$run" "$rate" "$check" | tee -a "$OUT/runs.tsv"
  done
done

python3 - "$OUT/runs.tsv" <<'EOF'
import sys, statistics
rows = [l.split("\t") for l in open(sys.argv[1]).read().split("\n") if l]
by = {}
for name, run, rate, check in rows:
    by.setdefault(name, []).append((float(rate or 0), check))
med = {n: statistics.median(r for r, _ in v) for n, v in by.items()}
print("\n| server | runs | median tx/s (min-max) | over tokio | logs |")
print("|---|---|---|---|---|")
for n, v in by.items():
    rates = [r for r, _ in v]
    ratio = med[n] / med["tokio"] if med.get("tokio") else float("nan")
    checks = ",".join(sorted({c for _, c in v}))
    print(f"| {n} | {len(v)} | {med[n]/1e6:.2f}M ({min(rates)/1e6:.2f}-{max(rates)/1e6:.2f}M) | {ratio:.2f}x | {checks} |")
EOF
echo "runs: $OUT" >&2
