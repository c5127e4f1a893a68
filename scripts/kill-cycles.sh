#!/usr/bin/env bash
# SIGKILL cycles for the ledger's journal (issue 19 item 4), two ways:
#
# MODE=test (default): runs the test in tests/kill.rs for KILL_CYCLES
# cycles per server and sums its `kill-cycle` lines. Each cycle: a server
# with --journal, 6 ledger clients sending one connection after another (a
# fresh account each, 200 to 8,000 `credit 1` lines), SIGKILL at a random
# moment around their ends, restart on the same journal, and every
# client's account compared with what it sent. A client counts as
# acknowledged only on a clean EOF after its own EOF, as the project's
# client does.
#
# MODE=clients: the issue's own set-up, with the built binaries: CLIENTS
# (6) runs of `nonblocking-client ledger` with LINES (100,000) `credit 1`
# lines each, SIGKILL at a moment drawn uniformly over 1.2 times one
# undisturbed run, restart on the journal; a client that exited 0 must find
# all its lines.
#
#   scripts/kill-cycles.sh                      # 50 cycles per server, debug build
#   KILL_CYCLES=200 scripts/kill-cycles.sh
#   PROFILE=release SERVERS=threaded scripts/kill-cycles.sh
#   KILL_SEED=123 scripts/kill-cycles.sh        # replay one run (MODE=test)
#   MODE=clients PROFILE=release KILL_CYCLES=45 scripts/kill-cycles.sh
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
PROFILE_DIR=target/${PROFILE:-debug}
[ -n "${CARGO_TARGET_DIR:-}" ] && PROFILE_DIR=$CARGO_TARGET_DIR/${PROFILE:-debug}

# MODE=clients: one server kind, KILL_CYCLES cycles.
clients_mode() {
    local CLIENTS=${CLIENTS:-6} LINES=${LINES:-100000}
    local WORK
    WORK=$(mktemp -d /tmp/nb-kill-clients.XXXXXX)
    echo "kill-cycles (clients): $KILL_CYCLES cycles per server, $CLIENTS x $LINES lines, ${PROFILE:-debug} build, files in $WORK"
    echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
    for k in $(seq "$CLIENTS"); do
        yes "c$k credit 1" | head -n "$LINES" >"$WORK/in$k.txt"
    done
    local FAIL=0 server
    for server in $SERVERS; do
        local cmd
        case $server in
            reactor) cmd=("$PROFILE_DIR/nonblocking-server") ;;
            reactor2) cmd=("$PROFILE_DIR/nonblocking-server" --reactors 2) ;;
            threaded) cmd=("$PROFILE_DIR/threaded-server") ;;
            *) echo "unknown server $server" >&2; return 2 ;;
        esac
        local dir=$WORK/$server
        mkdir -p "$dir"
        # start: the server on the journal; sets SPID and PORT.
        start() {
            # No stale Listening line: the new server's redirection may come
            # after our first look.
            rm -f "$dir/out.txt"
            "${cmd[@]}" -H ledger --journal "$dir/journal" --log "$dir/log.txt" \
                --report-every 0 0 >"$dir/out.txt" 2>"$dir/err.txt" &
            SPID=$!
            PORT=
            for _ in $(seq 2000); do
                PORT=$(sed -n 's/^Listening on 127.0.0.1:\([0-9]*\) .*/\1/p' "$dir/out.txt" 2>/dev/null)
                [ -n "$PORT" ] && return 0
                sleep 0.01
            done
            echo "$server: no Listening line" >&2
            return 1
        }
        local cycle acked=0 lost=0 lost_lines=0 losing=0 runs=0 calib_ms=0
        for cycle in $(seq 0 "$KILL_CYCLES"); do
            rm -f "$dir/journal" "$dir/log.txt"
            start || return 1
            local t0 pids=() k
            t0=$(date +%s%N)
            for k in $(seq "$CLIENTS"); do
                "$PROFILE_DIR/nonblocking-client" ledger "127.0.0.1:$PORT" "$WORK/in$k.txt" \
                    >/dev/null 2>&1 &
                pids+=($!)
            done
            if [ "$cycle" -eq 0 ]; then
                # Calibration: one run undisturbed, to spread the kills over.
                wait "${pids[@]}"
                calib_ms=$((($(date +%s%N) - t0) / 1000000))
                kill -TERM "$SPID"; wait "$SPID"
                continue
            fi
            local delay_ms=$(( (RANDOM * 32768 + RANDOM) % (calib_ms * 12 / 10 + 1) ))
            sleep "$(printf '%d.%03d' $((delay_ms / 1000)) $((delay_ms % 1000)))"
            kill -KILL "$SPID"; wait "$SPID" 2>/dev/null
            local codes=()
            for k in $(seq "$CLIENTS"); do
                wait "${pids[$((k - 1))]}"; codes+=($?)
            done
            start || return 1
            # SIGTERM: a script's background job starts with SIGINT ignored.
            kill -TERM "$SPID"; wait "$SPID"
            if [ ! -f "$dir/log.txt" ]; then
                echo "$server cycle $cycle: the restart wrote no log:"; cat "$dir/err.txt"
                return 1
            fi
            runs=$((runs + 1))
            local cycle_lost=0
            for k in $(seq "$CLIENTS"); do
                local have
                have=$(sed -n "s/^c$k \\\$\([0-9]*\)\.00\$/\1/p" "$dir/log.txt")
                have=${have:-0}
                if [ "$have" -gt "$LINES" ]; then
                    echo "$server cycle $cycle: c$k holds $have of $LINES lines"; FAIL=1
                fi
                if [ "${codes[$((k - 1))]}" -eq 0 ]; then
                    acked=$((acked + 1))
                    if [ "$have" -lt "$LINES" ]; then
                        echo "$server cycle $cycle: client $k exited 0, its account holds $have of $LINES lines"
                        lost=$((lost + 1)); lost_lines=$((lost_lines + LINES - have)); cycle_lost=1
                    fi
                fi
            done
            losing=$((losing + cycle_lost))
        done
        echo "$server: $runs cycles ($losing with a loss), kill within 0..$((calib_ms * 12 / 10)) ms, $((runs * CLIENTS)) clients, $acked exited 0, $lost exited 0 but lost lines ($lost_lines lines)"
        [ "$lost" -gt 0 ] && FAIL=1
    done
    return $FAIL
}

if [ "${MODE:-test}" = clients ]; then
    if [ -z "${SKIP_BUILD:-}" ]; then
        cargo build "${PROFILE_ARGS[@]}" --quiet --bins || exit 1
    fi
    clients_mode
    exit $?
fi

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
