//! Cases the fuzz targets in `fuzz/` found, kept as plain tests.

use std::ops::ControlFlow;

use nonblocking::framing::LineFramer;

/// Found by the `framer` fuzz target. Reproducer, as `framer` fuzz input:
/// `[3, 0, b'a', b'b', b'c', b'd', b'\r']` (max_line 4, no cuts, data
/// `abcd\r`). The framer holds one byte past `max_line` while it is a `\r`
/// that a `\n` may follow; `flush` (EOF, idle flush) used to hand `abcd\r`
/// to the handler. SPEC drops a `\r` only before a `\n`, so as a last line it
/// is 5 bytes and gets `error: line too long`. Fixed in `src/framing.rs`.
#[test]
fn a_flushed_tail_is_never_longer_than_max_line() {
    let max_line = 4;
    let mut framer = LineFramer::new();
    let mut messages: Vec<Vec<u8>> = Vec::new();
    let pushed = framer.push(b"abcd\r", max_line, |line| {
        messages.push(line.to_vec());
        ControlFlow::Continue(())
    });
    assert!(pushed.is_ok(), "`abcd\\r` may still become `abcd\\r\\n`");
    let flushed = framer.flush(max_line, |tail| messages.push(tail.to_vec()));
    assert!(
        flushed.is_err(),
        "as a last line, `abcd\\r` is 5 bytes: too long"
    );
    for msg in &messages {
        assert!(
            msg.len() <= max_line,
            "message {msg:?} is over --max-line {max_line}"
        );
    }
}
