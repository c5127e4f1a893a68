#!/usr/bin/env bash
# Soak: SOAK_MINUTES (default 10) of mixed clients against long-running
# servers, one per handler (ledger, echo, presence), run concurrently.
# Not run in CI.
#
#   scripts/soak.sh                    # 10 minutes, nonblocking-server
#   SOAK_MINUTES=1 scripts/soak.sh     # a quick pass
#   SERVER=threaded-server scripts/soak.sh
#
# Clients (scripts/soak_clients.py): ledger blasters with known data, echo
# ping-pong verifying replies, presence churn, slow readers that never read,
# connect-then-reset clients. Checks at the end, each a failure (exit 1):
#   - every client's replies were right;
#   - each server's RSS (sampled every 10 s) did not grow after the first
#     minute: last sample <= 1.10 * max(first minute's samples) + 1 MiB;
#   - each server's client count returns to 0 (--report-every 1);
#   - the ledger's log equals the sum of everything the blasters sent;
#   - SIGINT exits 0.
set -u
cd "$(dirname "$0")/.."
MINUTES=${SOAK_MINUTES:-10}
SERVER=${SERVER:-nonblocking-server}
SAMPLE_SECS=${SAMPLE_SECS:-10}
if [ -z "${SKIP_BUILD:-}" ]; then
    cargo build --release --quiet --bin "$SERVER" || exit 1
fi
BIN=target/release/$SERVER
WORK=$(mktemp -d /tmp/nb-soak.XXXXXX)
echo "soak: $MINUTES min, $BIN, files in $WORK"
FAIL=0
fail() { echo "FAIL: $*"; FAIL=1; }

declare -A PID PORT
start() { # name handler args...
    local name=$1; shift
    mkdir -p "$WORK/$name"
    (cd "$WORK/$name" && exec "$OLDPWD/$BIN" -H "$@" --report-every 1 0 \
        >"$WORK/$name/out.txt" 2>"$WORK/$name/err.txt") &
    PID[$name]=$!
    for _ in $(seq 200); do
        grep -q '^Listening on' "$WORK/$name/out.txt" 2>/dev/null && break
        sleep 0.05
    done
    PORT[$name]=$(sed -n '1s/^Listening on .*:\([0-9]*\) (handler .*)$/\1/p' "$WORK/$name/out.txt")
    [ -n "${PORT[$name]}" ] || { echo "$name server did not start"; cat "$WORK/$name/err.txt"; exit 1; }
}
start ledger ledger --log "$WORK/ledger/log.txt"
start echo echo
start presence presence --max-pending 262144
echo "ports: ledger ${PORT[ledger]} echo ${PORT[echo]} presence ${PORT[presence]}"
cleanup() { for n in ledger echo presence; do kill "${PID[$n]}" 2>/dev/null; done; }
trap cleanup EXIT

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

SECS=$((MINUTES * 60))
python3 scripts/soak_clients.py --ledger "${PORT[ledger]}" --echo "${PORT[echo]}" \
    --presence "${PORT[presence]}" --seconds "$SECS" --expected "$WORK/expected_log.txt" \
    >"$WORK/clients.txt" 2>"$WORK/clients.err" &
CLIENTS=$!
declare -A SAMPLES FIRSTMAX
START=$(date +%s)
while kill -0 "$CLIENTS" 2>/dev/null; do
    t=$(( $(date +%s) - START ))
    for n in ledger echo presence; do
        r=$(rss_kib "${PID[$n]}")
        SAMPLES[$n]="${SAMPLES[$n]:-} $r"
        if [ "$t" -le 60 ] && [ "$r" -gt "${FIRSTMAX[$n]:-0}" ]; then FIRSTMAX[$n]=$r; fi
    done
    for _ in $(seq "$SAMPLE_SECS"); do kill -0 "$CLIENTS" 2>/dev/null || break; sleep 1; done
done
wait "$CLIENTS" || fail "clients reported errors: $(head -5 "$WORK/clients.err" | tr '\n' ' ')"
cat "$WORK/clients.txt"

# The count returns to 0: a periodic line after the clients are gone.
for n in ledger echo presence; do
    ok=0
    for _ in $(seq 30); do
        last=$(grep '^Number of connected clients = ' "$WORK/$n/out.txt" | tail -1)
        if [ "$last" = "Number of connected clients = 0" ]; then ok=1; break; fi
        sleep 0.5
    done
    [ $ok = 1 ] || fail "$n: client count did not return to 0 (last: $last)"
done

# RSS after the first minute.
for n in ledger echo presence; do
    r=$(rss_kib "${PID[$n]}")
    SAMPLES[$n]="${SAMPLES[$n]:-} $r"
    first=${FIRSTMAX[$n]:-$r}
    bound=$(( first * 110 / 100 + 1024 ))
    echo "$n RSS KiB samples:${SAMPLES[$n]} (first-minute max $first, bound $bound)"
    [ "$r" -le "$bound" ] || fail "$n: RSS grew to $r KiB (bound $bound KiB)"
done

for n in ledger echo presence; do
    kill -INT "${PID[$n]}"
    wait "${PID[$n]}"; rc=$?
    [ $rc = 0 ] || fail "$n: exit status $rc after SIGINT"
    tail -1 "$WORK/$n/out.txt" | sed "s/^/$n last status: /"
    d=$(wc -l <"$WORK/$n/err.txt")
    echo "$n: $d diagnostic lines"
done
trap - EXIT
if cmp -s "$WORK/ledger/log.txt" "$WORK/expected_log.txt"; then
    echo "ledger log: MATCH ($(wc -l <"$WORK/expected_log.txt") accounts)"
else
    fail "ledger log differs from the expectation (diff $WORK/ledger/log.txt $WORK/expected_log.txt)"
fi
if [ $FAIL = 0 ]; then echo "soak: PASS"; rm -rf "$WORK"; else echo "soak: FAIL (files in $WORK)"; fi
exit $FAIL
