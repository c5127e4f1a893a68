//! `echo --max-messages N` (SPEC "echo", seed 002's "max 10 strings"): a
//! client's first N messages are echoed, its next one gets
//! `STRINGS LIMIT REACHED, CLOSING CONNECTION` plus that message's own
//! terminator, and the connection closes. Per connection; 0 = no limit.
//! Includes the seed author's own `tcpclient.py` flow, run by python3.

#[macro_use]
mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

const LIMIT: &[u8] = b"STRINGS LIMIT REACHED, CLOSING CONNECTION";

every_server!(
    eleventh_line_with_a_newline,
    eleventh_message_without_a_newline,
    limit_is_per_connection,
    zero_means_no_limit,
    pipelined_messages_past_the_limit_are_not_echoed,
    seed_002_tcpclient_flow,
);

/// Sends messages 1..=n, each ended by `end`, and checks each echo.
fn echo_n(c: &mut Conn, n: usize, end: &[u8]) {
    for i in 1..=n {
        let msg = [format!("string {i}").as_bytes(), end].concat();
        c.send(&msg);
        c.expect_bytes(&msg);
    }
}

fn eleventh_line_with_a_newline(kind: Kind) {
    let mut s = Server::start(kind, &["-H", "echo", "--max-messages", "10"]);
    let mut c = s.connect_as(1);
    echo_n(&mut c, 10, b"\n");
    c.send(b"eleven\r\n");
    c.expect_bytes(&[LIMIT, b"\r\n"].concat());
    c.expect_eof();
    s.wait_disconnected(1);

    let mut c = s.connect_as(2);
    echo_n(&mut c, 10, b"\r\n");
    c.send(b"eleven\n");
    c.expect_bytes(&[LIMIT, b"\n"].concat());
    c.expect_eof();
    s.wait_disconnected(2);
    s.stop(SIGINT);
}

fn eleventh_message_without_a_newline(kind: Kind) {
    // The 50 ms rule makes each unterminated message whole; the limit reply
    // then has no terminator either, so a byte-for-byte compare matches.
    let mut s = Server::start(kind, &["-H", "echo", "--upper", "--max-messages", "10"]);
    let mut c = s.connect_as(1);
    for i in 1..=10 {
        c.send(format!("string {i}").as_bytes());
        c.expect_bytes(format!("STRING {i}").as_bytes());
    }
    c.send(b"eleven");
    c.expect_bytes(LIMIT);
    c.expect_eof();
    s.wait_disconnected(1);
    s.stop(SIGINT);
}

fn limit_is_per_connection(kind: Kind) {
    let mut s = Server::start(kind, &["--max-messages", "2"]);
    let mut a = s.connect_as(1);
    let mut b = s.connect_as(2);
    echo_n(&mut a, 2, b"\n");
    // b's count is its own: a's two echoes do not use up b's.
    echo_n(&mut b, 2, b"\n");
    a.send(b"three\n");
    a.expect_bytes(&[LIMIT, b"\n"].concat());
    a.expect_eof();
    s.wait_disconnected(1);
    // b is still open at its limit; its next message closes it.
    b.send(b"three\n");
    b.expect_bytes(&[LIMIT, b"\n"].concat());
    b.expect_eof();
    // A new connection (a new client) starts from zero.
    let mut c = s.connect_as(3);
    echo_n(&mut c, 2, b"\n");
    drop(c);
    s.wait_disconnected(3);
    s.stop(SIGINT);
}

fn zero_means_no_limit(kind: Kind) {
    let mut s = Server::start(kind, &["--max-messages", "0"]);
    let mut c = s.connect_as(1);
    echo_n(&mut c, 50, b"\n");
    drop(c);
    s.wait_disconnected(1);
    s.stop(SIGINT);
}

fn pipelined_messages_past_the_limit_are_not_echoed(kind: Kind) {
    let mut s = Server::start(kind, &["--max-messages", "2"]);
    let mut c = s.connect_as(1);
    // One write: the third line gets the limit reply, the fourth nothing.
    c.send(b"one\ntwo\nthree\nfour\n");
    let got = c.read_to_eof();
    assert_eq!(show(&got), show(&[b"one\ntwo\n", LIMIT, b"\n"].concat()));
    s.wait_disconnected(1);
    s.stop(SIGINT);
}

fn seed_002_tcpclient_flow(kind: Kind) {
    // The seed's server: upper case, 10 strings. Its client: one sentence
    // per input() line, no newline sent, one recv(1024) each.
    let mut s = Server::start(kind, &["-H", "echo", "--upper", "--max-messages", "10"]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/seed002_tcpclient.py");
    let sentences: String = (1..=12).map(|i| format!("sentence {i}\n")).collect();
    let mut child = Command::new("python3")
        .arg(&script)
        .arg("127.0.0.1")
        .arg(s.port().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(sentences.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}\n{stdout}\n{stderr}", out.status);
    for i in 1..=10 {
        assert!(
            stdout.contains(&format!("\nFrom Server:  SENTENCE {i}\n")),
            "reply {i} missing:\n{stdout}"
        );
    }
    // The 11th sentence got the limit reply, recognised byte for byte; the
    // client stopped there (the 12th line was never sent).
    assert!(
        stdout.contains("From Server:  STRINGS LIMIT REACHED, CLOSING CONNECTION\n"),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("\n\tCLIENT CONNECTION CLOSED.\n"),
        "the seed client did not recognise the limit reply:\n{stdout}"
    );
    assert!(!stdout.contains("SENTENCE 11"), "{stdout}");
    s.wait_disconnected(1);
    s.stop(SIGINT);
}
