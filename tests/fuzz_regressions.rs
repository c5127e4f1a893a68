//! Cases the fuzz targets in `fuzz/` found, kept as plain tests.

use std::ops::ControlFlow;

use nonblocking::framing::LineFramer;

/// Found with the `framer` target's rule "no message handed to a handler is
/// longer than `--max-line`" (the fuzz harness tolerates this one case, see
/// `unfinished_fits` in `support/harness.rs`, so the targets can look for
/// anything else). Reproducer, as `framer` fuzz input: `[3, 0, b'a', b'b',
/// b'c', b'd', b'\r']` (max_line 4, no cuts, data `abcd\r`).
///
/// The framer keeps one byte past `max_line` when it is a `\r`, since a
/// `\n` may follow and make it `\r\n` (not counted). If the stream ends
/// there (EOF) or pauses (the 50 ms idle flush), `flush` hands the handler
/// `abcd\r`: 5 bytes with `--max-line 4`. SPEC drops a `\r` only before a
/// `\n`, so that last line is 5 bytes long and should get
/// `error: line too long` (or at least never reach a handler whole).
/// Harmless in practice (one byte over), but it is the one way past the
/// limit. Fix belongs in `src/framing.rs`.
#[test]
#[ignore = "framing: a flushed tail can be max_line + 1 bytes (a trailing \\r); see doc"]
fn a_flushed_tail_is_never_longer_than_max_line() {
    let max_line = 4;
    let mut framer = LineFramer::new();
    let mut messages: Vec<Vec<u8>> = Vec::new();
    let pushed = framer.push(b"abcd\r", max_line, |line| {
        messages.push(line.to_vec());
        ControlFlow::Continue(())
    });
    if pushed.is_ok() {
        framer.flush(|tail| messages.push(tail.to_vec()));
    }
    for msg in &messages {
        assert!(
            msg.len() <= max_line,
            "message {msg:?} is over --max-line {max_line}"
        );
    }
}
