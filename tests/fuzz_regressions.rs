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

/// Found by the `accounts` fuzz target (tests/support/parsers.rs,
/// `check_accounts_file`). A BALANCE of 27 integer digits and one decimal
/// parses (28 digits, the grammar's limit), but the atm writes balances
/// with two decimals: 29 digits, which the parser refuses. Any deposit or
/// withdrawal then persists an accounts file the atm cannot load: the bank
/// refuses to start after its next restart. The rendered file must parse.
#[test]
#[ignore = "bug in src/handlers/atm/accounts.rs (push_money vs parse_amount's 28-digit limit), reported in issue 23's closing note; un-ignore with the fix"]
fn an_accounts_file_the_atm_writes_can_be_read_back() {
    use nonblocking::handlers::atm::Accounts;
    let file = b"big 02222 230002320222202186806454012.5\n";
    let accounts = Accounts::parse(file).expect("28 digits are allowed");
    let rendered = accounts.render();
    assert_eq!(
        Accounts::parse(&rendered).map_err(|e| e.to_string()),
        Ok(accounts),
        "the atm wrote {:?}",
        String::from_utf8_lossy(&rendered)
    );
}
