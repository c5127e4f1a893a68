//! Shutdown (SPEC "Shutdown"): echo, presence and queue flush what is queued
//! for each client and close it at once on SIGINT/SIGTERM; every handler
//! exits 0. (The ledger's and the sink's drain are in ledger.rs and sink.rs.)

#[macro_use]
mod common;

use std::time::Duration;

use common::*;

both!(
    echo_sigint_closes_clients_at_once,
    echo_sigterm_closes_clients_at_once,
    echo_pending_replies_flushed_before_close,
    presence_sigint_closes_joined_clients,
    queue_sigint_closes_clients,
    idle_servers_exit_0,
);

/// Well under the 30 s drain: closing "at once" must not wait for it.
const QUICK: Duration = Duration::from_secs(15);

fn stop_quickly(s: &mut Server, sig: i32) {
    s.signal(sig);
    let status = s.wait_exit_within(QUICK);
    assert_eq!(status.code(), Some(0), "{status:?}\n{}", s.transcript());
}

fn echo_closes(kind: Kind, sig: i32) {
    let mut s = Server::start(kind, &["-H", "echo"]);
    let mut a = s.connect_as(1);
    let mut b = s.connect_as(2);
    a.send(b"hello\n");
    a.expect_line(b"hello\n");
    stop_quickly(&mut s, sig);
    a.expect_eof();
    b.expect_eof();
}

fn echo_sigint_closes_clients_at_once(kind: Kind) {
    echo_closes(kind, SIGINT);
}

fn echo_sigterm_closes_clients_at_once(kind: Kind) {
    echo_closes(kind, SIGTERM);
}

/// A client that sent many lines without reading: after the signal it reads
/// whole replies, in order, then a clean EOF (no reset losing replies).
fn echo_pending_replies_flushed_before_close(kind: Kind) {
    let mut s = Server::start(kind, &["-H", "echo"]);
    let mut c = s.connect_as(1);
    let mut sent = Vec::new();
    for i in 0..2000 {
        sent.extend_from_slice(format!("line {i:05} {}\n", "p".repeat(40)).as_bytes());
    }
    c.send(&sent);
    // The first reply shows the server is at work on this client.
    let first = c.line();
    assert_eq!(show(&first), show(&sent[..first.len()]));
    stop_quickly(&mut s, SIGINT);
    let mut got = first;
    got.extend(c.read_to_eof());
    assert!(
        sent.starts_with(&got),
        "replies are not a prefix of what was sent: got {} bytes ending {:?}",
        got.len(),
        show(&got[got.len().saturating_sub(80)..])
    );
    assert!(
        got.ends_with(b"\n"),
        "a reply was cut: ends {:?}",
        show(&got[got.len().saturating_sub(80)..])
    );
}

fn presence_sigint_closes_joined_clients(kind: Kind) {
    let mut s = Server::start(kind, &["-H", "presence"]);
    let mut a = s.connect_as(1);
    a.send(b"ann\n");
    a.expect_line(b"ann\n");
    let mut b = s.connect_as(2);
    b.send(b"bo\n");
    a.expect_line(b"ann bo\n");
    b.expect_line(b"ann bo\n");
    // Connected but not joined yet.
    let mut c = s.connect_as(3);
    stop_quickly(&mut s, SIGINT);
    a.expect_eof();
    b.expect_eof();
    c.expect_eof();
}

fn queue_sigint_closes_clients(kind: Kind) {
    let mut s = Server::start(kind, &["-H", "queue"]);
    let mut a = s.connect_as(1);
    let mut b = s.connect_as(2);
    a.send(b"put A\nsize\n");
    a.expect_line(b"True\n");
    a.expect_line(b"1\n");
    stop_quickly(&mut s, SIGINT);
    a.expect_eof();
    b.expect_eof();
}

fn idle_servers_exit_0(kind: Kind) {
    for handler in ["ledger", "echo", "presence", "sink", "queue"] {
        for sig in [SIGINT, SIGTERM] {
            let mut s = Server::start(kind, &["-H", handler]);
            assert_eq!(s.handler, handler);
            // A client that came and went: nothing left to drain.
            let c = s.connect_as(1);
            drop(c);
            s.wait_disconnected(1);
            stop_quickly(&mut s, sig);
        }
    }
}
