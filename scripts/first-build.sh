#!/usr/bin/env bash
# The first build, timed cold (issue 21 item 7): README's first command
# until the server prints `Listening`, then README's test command's build
# (`--no-run`; TESTS=1 also runs the tests), each from an empty target
# directory, with the load average before and after. Run it on a quiet
# machine: every figure is wall-clock.
#
#   scripts/first-build.sh                       # README's commands
#   TEST_CMD="cargo test" scripts/first-build.sh  # another test command
#   TESTS=1 scripts/first-build.sh                # time the whole cargo test too
#   SRC=/tmp/old scripts/first-build.sh           # another tree (git archive REV | tar -x -C /tmp/old)
#
# Knobs: COLD_DIR (a fresh mktemp directory; removed at the end unless
# KEEP=1), TEST_CMD ("cargo test --all-features"), TESTS (0), KEEP (0).
set -euo pipefail
cd "${SRC:-$(dirname "$0")/..}"
TEST_CMD=${TEST_CMD:-"cargo test --all-features"}
COLD_DIR=${COLD_DIR:-$(mktemp -d /tmp/nonblocking-cold.XXXXXX)}
mkdir -p "$COLD_DIR"
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$COLD_DIR"' EXIT

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

rev=$(git rev-parse --short HEAD 2>/dev/null || echo "not a git tree")
git diff --quiet HEAD 2>/dev/null || rev="$rev (with changes)"
echo "# $PWD at $rev, $(nproc) cores"
# CPU seconds (user + sys) of every process a command ran: steadier than
# wall-clock on a shared machine.
TIME_FMT="cpu %U s user + %S s sys"
echo "# load before: $(cut -d' ' -f1-3 /proc/loadavg)"

# 1. cargo run --release --bin nonblocking-server -- 0, until `Listening`.
out=$COLD_DIR/run.out
: >"$out"
start=$(now)
CARGO_TARGET_DIR=$COLD_DIR/run /usr/bin/time -f "$TIME_FMT" -o "$COLD_DIR/run.cpu" cargo run --quiet --release --bin nonblocking-server -- 0 \
    >"$out" 2>"$COLD_DIR/run.err" &
cargo_pid=$!
until grep -q '^Listening' "$out"; do
    if ! kill -0 "$cargo_pid" 2>/dev/null; then
        cat "$COLD_DIR/run.err" >&2
        echo "error: the server never printed Listening" >&2
        exit 1
    fi
    sleep 0.1
done
echo "cold: cargo run --release --bin nonblocking-server -- 0 until Listening: $(since "$start") s"
# /usr/bin/time runs cargo, and cargo run execs the server (Unix): stop
# that process, time's child, by its id.
server_pid=$(pgrep -P "$cargo_pid" || true)
[ -n "$server_pid" ] && kill -INT "$server_pid"
wait "$cargo_pid" || true
echo "  $(cat "$COLD_DIR/run.cpu")"
echo "# load: $(cut -d' ' -f1-3 /proc/loadavg)"

# 2. The README's test command, built cold.
start=$(now)
CARGO_TARGET_DIR=$COLD_DIR/test /usr/bin/time -f "$TIME_FMT" -o "$COLD_DIR/test.cpu" \
    $TEST_CMD --no-run --quiet 2>"$COLD_DIR/test-build.err" \
    || { cat "$COLD_DIR/test-build.err" >&2; exit 1; }
echo "cold: $TEST_CMD --no-run: $(since "$start") s"
echo "  $(cat "$COLD_DIR/test.cpu")"
echo "# load: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "${TESTS:-0}" = 1 ]; then
    start=$(now)
    status=0
    CARGO_TARGET_DIR=$COLD_DIR/test $TEST_CMD --quiet >"$COLD_DIR/test.out" 2>&1 || status=$?
    echo "then: $TEST_CMD (built, running every test): $(since "$start") s, exit $status"
    grep -E '^test result' "$COLD_DIR/test.out" \
        | awk '{ p += $4; f += $6; i += $8 } END { print "  passed " p ", failed " f ", ignored " i }'
    echo "# load: $(cut -d' ' -f1-3 /proc/loadavg)"
fi
echo "# target size: run $(du -sh "$COLD_DIR/run" | cut -f1), test $(du -sh "$COLD_DIR/test" | cut -f1)"
