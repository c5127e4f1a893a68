//! queue (SPEC "queue", seed 001 task 1): one bounded FIFO shared by every
//! client; `put ITEM`, `peek`, `pop`, `size`, one answer line each.

#[macro_use]
mod common;

use common::*;

every_server!(
    seed_transcript,
    seed_transcript_through_nonblocking_client,
    shared_between_clients,
    usage_and_unknown_command_errors,
    case_insensitive_commands_items_kept,
    idle_flushed_and_crlf_commands,
    blank_line_answers_unknown_command,
);

fn start_queue(kind: Kind, size: &str) -> Server {
    let s = Server::start(kind, &["-H", "queue", "--queue-size", size]);
    assert_eq!(s.handler, "queue");
    s
}

/// Sends one command line and expects one answer line.
fn ask(c: &mut Conn, cmd: &str, answer: &str) {
    c.send(format!("{cmd}\n").as_bytes());
    let got = c.line();
    assert_eq!(
        show(&got),
        show(format!("{answer}\n").as_bytes()),
        "answer to {cmd:?}"
    );
}

fn seed_transcript(kind: Kind) {
    let mut s = start_queue(kind, "3");
    let mut c = s.connect_as(1);
    for (cmd, answer) in [
        ("put A", "True"),
        ("put B", "True"),
        ("put C", "True"),
        ("put D", "False"),
        ("size", "3"),
        ("peek", "A"),
        ("size", "3"),
        ("pop", "A"),
        ("pop", "B"),
        ("size", "1"),
        ("pop", "C"),
        ("pop", "None"),
        ("peek", "None"),
        ("size", "0"),
    ] {
        ask(&mut c, cmd, answer);
    }
    s.stop(SIGINT);
}

fn shared_between_clients(kind: Kind) {
    let mut s = start_queue(kind, "10");
    let mut a = s.connect_as(1);
    let mut b = s.connect_as(2);
    ask(&mut a, "put X", "True");
    ask(&mut b, "peek", "X");
    ask(&mut b, "put Y", "True");
    ask(&mut a, "size", "2");
    ask(&mut b, "pop", "X");
    ask(&mut a, "pop", "Y");
    ask(&mut b, "size", "0");
    // The queue outlives its clients.
    ask(&mut a, "put Z", "True");
    drop(a);
    s.wait_disconnected(1);
    let mut c = s.connect_as(3);
    ask(&mut c, "pop", "Z");
    // Pipelined commands from one client are answered in order.
    b.send(b"put 1\nput 2\nsize\npop\npop\npop\n");
    for answer in ["True", "True", "2", "1", "2", "None"] {
        b.expect_line(format!("{answer}\n").as_bytes());
    }
    s.stop(SIGINT);
}

fn usage_and_unknown_command_errors(kind: Kind) {
    let mut s = start_queue(kind, "10");
    let mut c = s.connect_as(1);
    ask(&mut c, "put", "error: usage: put ITEM");
    ask(&mut c, "put a b", "error: usage: put ITEM");
    ask(&mut c, "frobnicate", "error: unknown command");
    ask(&mut c, "popp", "error: unknown command");
    // The connection stayed open and the queue untouched.
    ask(&mut c, "size", "0");
    ask(&mut c, "put ok", "True");
    ask(&mut c, "pop", "ok");
    s.stop(SIGINT);
}

/// A request/reply client must never wait forever: a blank line (an empty
/// command) is answered like any unknown command, and changes nothing.
fn blank_line_answers_unknown_command(kind: Kind) {
    let mut s = start_queue(kind, "10");
    let mut c = s.connect_as(1);
    ask(&mut c, "put a", "True");
    ask(&mut c, "", "error: unknown command");
    ask(&mut c, " \t ", "error: unknown command");
    c.send(b"\r\n");
    c.expect_line(b"error: unknown command\n");
    ask(&mut c, "size", "1");
    s.stop(SIGINT);
}

fn case_insensitive_commands_items_kept(kind: Kind) {
    let mut s = start_queue(kind, "2");
    let mut c = s.connect_as(1);
    ask(&mut c, "PUT MiXeD", "True");
    ask(&mut c, "Put lower", "True");
    ask(&mut c, "pUt full", "False");
    ask(&mut c, "SIZE", "2");
    ask(&mut c, "Peek", "MiXeD");
    ask(&mut c, "POP", "MiXeD");
    ask(&mut c, "pop", "lower");
    // An item is any token of non-space bytes, kept as sent.
    c.send(b"put \xff\xfe\xc3\xa9!\n");
    c.expect_line(b"True\n");
    c.send(b"pop\n");
    c.expect_line(b"\xff\xfe\xc3\xa9!\n");
    s.stop(SIGINT);
}

fn idle_flushed_and_crlf_commands(kind: Kind) {
    let mut s = start_queue(kind, "10");
    let mut c = s.connect_as(1);
    // Without a newline: the 50 ms rule makes it a command.
    c.send(b"put A");
    c.expect_line(b"True\n");
    c.send(b"size\r\n");
    c.expect_line(b"1\n");
    c.send(b"pop");
    c.expect_line(b"A\n");
    // EOF: the last command is answered, then the server closes.
    c.send(b"size");
    c.shutdown_write();
    let rest = c.read_to_eof();
    assert_eq!(show(&rest), "0\\n");
    s.stop(SIGINT);
}

/// The seed's own transcript, typed into `nonblocking-client queue` (stdin
/// piped, so no prompt): the client prints `Queue is empty` for `None`.
fn seed_transcript_through_nonblocking_client(kind: Kind) {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let mut s = start_queue(kind, "3");
    let mut client = Command::new(env!("CARGO_BIN_EXE_nonblocking-client"))
        .args(["queue", &s.addr.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start nonblocking-client");
    client
        .stdin
        .take()
        .unwrap()
        .write_all(
            b"put A\nput B\nput C\nput D\nsize\npeek\nsize\npop\npop\nsize\npop\npop\npeek\n",
        )
        .unwrap();
    let out = wait_output(client, "nonblocking-client");
    assert!(out.status.success(), "client failed: {out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "True\nTrue\nTrue\nFalse\n3\nA\n3\nA\nB\n1\nC\nQueue is empty\nQueue is empty\n"
    );
    s.stop(SIGINT);
}
