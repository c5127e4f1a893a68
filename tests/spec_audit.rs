//! Divergences found by driving the programs from outside against SPEC.md
//! (and docs/PROTOCOL.md where SPEC is silent), each pinned by a test that
//! failed before its fix. The real binaries, on 127.0.0.1 port 0, both
//! servers where one is started.

#[macro_use]
mod common;

use common::*;

both!(atm_accounts_errors_say_error_once);

/// SPEC "atm": a missing or malformed accounts file is one line naming the
/// file (and the line), exit 1. It read `error: error: ...`.
fn atm_accounts_errors_say_error_once(kind: Kind) {
    let dir = TempDir::new("audit-atm");
    let bad = dir.join("accounts.txt");
    std::fs::write(&bad, "charles 02323 0\nbroken line\n").unwrap();
    let missing = dir.join("missing.txt");
    for (path, needle) in [(&bad, "line 2"), (&missing, "missing.txt")] {
        let path = path.to_str().unwrap();
        let (status, _out, err) = run_to_end(kind, &["-H", "atm", "--accounts", path, "0"]);
        assert_eq!(status.code(), Some(1), "{path}: {status:?} {err:?}");
        assert_eq!(err.lines().count(), 1, "one line: {err:?}");
        assert!(err.starts_with("error: "), "{err:?}");
        assert!(!err.contains("error: error:"), "doubled prefix: {err:?}");
        assert!(err.contains(needle), "names {needle}: {err:?}");
    }
}

