#!/usr/bin/env bash
# SIGKILL cycles for the ledger's journal (issue 19 item 4): runs the test
# in tests/kill.rs for KILL_CYCLES cycles per server and sums its
# `kill-cycle` lines. Each cycle: a server with --journal, 6 ledger clients
# sending one connection after another (a fresh account each, 200 to 8,000
# `credit 1` lines), SIGKILL at a random moment around their ends, restart
# on the same journal, and every client's account compared with what it
# sent. A client counts as acknowledged only on a clean EOF after its own
# EOF, as the project's client does.
#
#   scripts/kill-cycles.sh                      # 50 cycles per server, debug build
#   KILL_CYCLES=200 scripts/kill-cycles.sh
#   PROFILE=release SERVERS=threaded scripts/kill-cycles.sh
#   KILL_SEED=123 scripts/kill-cycles.sh        # replay one run
#
# Prints one line per server; exit 1 if any acknowledged transaction was
# lost (or the test failed otherwise). Not run in CI (`cargo test` runs 5
# cycles per server).
set -u
cd "$(dirname "$0")/.."
export KILL_CYCLES=${KILL_CYCLES:-50}
SERVERS=${SERVERS:-reactor reactor2 threaded}
case "${PROFILE:-debug}" in
    debug) PROFILE_ARGS=() ;;
    release) PROFILE_ARGS=(--release) ;;
    *) echo "PROFILE must be debug or release" >&2; exit 2 ;;
esac
cargo test "${PROFILE_ARGS[@]}" --quiet --test kill --no-run || exit 1
LOGDIR=$(mktemp -d /tmp/nb-kill-cycles.XXXXXX)
echo "kill-cycles: $KILL_CYCLES cycles per server, ${PROFILE:-debug} build, logs in $LOGDIR"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
FAIL=0
for server in $SERVERS; do
    log=$LOGDIR/$server.txt
    cargo test "${PROFILE_ARGS[@]}" --quiet --test kill -- --exact \
        "sigkill_at_a_random_moment_loses_nothing_acknowledged::$server" \
        --nocapture >"$log" 2>&1
    status=$?
    grep -m1 -o 'KILL_SEED=[0-9]*' "$log" | sed "s/^/$server: /"
    awk -v server="$server" '
        /^kill-cycle / {
            cycles++
            split($0, part, ": ")
            n = split(part[2], f, " ")
            clients += f[1]; acked += f[3]; reset += f[5]; lost += f[10]
            sub(/\(/, "", f[14]); lines += f[14]
            if (f[10] > 0) losing++
        }
        END {
            printf "%s: %d cycles (%d with a loss), %d clients, %d acknowledged, %d reset after their EOF, %d acknowledged but lost (%d lines)\n",
                server, cycles, losing, clients, acked, reset, lost, lines
        }' "$log"
    if [ "$status" -ne 0 ]; then
        FAIL=1
        echo "$server: the test failed (see $log):"
        grep -E 'acknowledged, yet|panicked|timed out' "$log" | head -5
    fi
done
exit $FAIL
