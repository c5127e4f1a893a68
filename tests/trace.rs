//! `--trace` (issue 22): a scripted conversation's trace names every step
//! of the loop on every server, and without `--trace` stderr is as before.
//! The format is for people, so these tests look for the names of the
//! steps, not for exact lines.

#[macro_use]
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{Conn, Kind, Server, TIMEOUT};

/// Whether a stderr line is a trace line: `[loop N SECS] ...` or
/// `[THREAD SECS] ...`.
fn is_trace(line: &str) -> bool {
    line.starts_with('[') && line.contains("] ")
}

/// A client socket with a small receive buffer, so a reply larger than the
/// socket buffers is easy to make.
fn small_window_conn(server: &Server) -> Conn {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .expect("socket");
    socket.set_recv_buffer_size(8 * 1024).expect("SO_RCVBUF");
    socket.connect(&server.addr.into()).expect("connect");
    Conn::from_stream(TcpStream::from(socket))
}

/// Connect, two lines, then a reply too large for the socket buffers to a
/// client that reads late (it sends until the server pauses it, and only
/// then reads), then a close.
fn conversation_names_every_step(kind: Kind) {
    let mut server = Server::start(kind, &["--trace", "--max-pending", "4096"]);
    let mut conn = small_window_conn(&server);
    server.wait_connected(1);
    conn.send(b"hello\nworld\n");
    conn.expect_line(b"hello\n");
    conn.expect_line(b"world\n");

    // The late reader: another thread sends lines until told to stop
    // (it blocks once the server pauses it and the buffers fill).
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut writer = conn.stream.try_clone().expect("clone");
    let writer = {
        let (stop, sent) = (stop.clone(), sent.clone());
        thread::spawn(move || {
            let line = [b"x".repeat(1023), b"\n".to_vec()].concat();
            while !stop.load(Ordering::SeqCst) {
                writer.write_all(&line).expect("send");
                sent.fetch_add(line.len(), Ordering::SeqCst);
            }
        })
    };
    server.wait_stderr("the pause of the slow client", |l| {
        is_trace(l) && l.contains("client 1: paused")
    });
    stop.store(true, Ordering::SeqCst);
    // Now read it all: the writer finishes once the server reads again.
    // Short read timeouts only to look at the writer again; the deadline
    // is what fails the test.
    conn.stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let mut received = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + TIMEOUT * 3;
    while !(writer.is_finished() && received >= sent.load(Ordering::SeqCst)) {
        assert!(
            Instant::now() < deadline,
            "{received} of {} bytes echoed",
            sent.load(Ordering::SeqCst)
        );
        match conn.reader.read(&mut buf) {
            Ok(0) => panic!("EOF after {received} bytes"),
            Ok(n) => received += n,
            Err(e) if common::is_timeout(&e) => {}
            Err(e) => panic!("read the echo: {e}"),
        }
    }
    writer.join().expect("writer");
    assert_eq!(received, sent.load(Ordering::SeqCst));
    server.wait_stderr("the resume", |l| l.contains("client 1: resumed"));
    drop(conn);
    server.wait_disconnected(1);
    server.wait_stderr("the close", |l| l.contains("client 1: closed"));

    let trace: Vec<&String> = server
        .stderr_lines()
        .iter()
        .filter(|l| is_trace(l))
        .collect();
    let text = trace
        .iter()
        .map(|l| l.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    // Every line says who speaks: a loop, or a thread.
    let speakers: &[&str] = match kind {
        Kind::Reactor => &["[loop 0 "],
        Kind::Reactor2 => &["[acceptor ", "[loop 0 ", "[loop 1 "],
        Kind::Threaded => &["[acceptor ", "[client-1 ", "[client-1-w "],
    };
    for line in &trace {
        assert!(
            speakers.iter().any(|s| line.starts_with(s)),
            "{line:?} names no loop or thread of {kind:?}"
        );
    }
    let common_steps = [
        "accepted client 1",
        "client 1: read ",
        "client 1: framed 2 lines",
        "client 1: handler: reply 12 bytes in 2 messages",
        "client 1: wrote ",
        "client 1: paused",
        "client 1: resumed",
        "client 1: read 0 bytes: end of stream",
        "client 1: closing",
        "client 1: closed",
    ];
    let loop_steps = [
        "pass ",
        "client 1: event: readable",
        "partial write",
        "client 1: waiting for writable",
        "client 1: output done, waiting for readable only",
        "lingering",
    ];
    let thread_steps = [
        "pass ",
        "client 1: writing ",
        "client 1: reader waits (paused)",
    ];
    let steps: Vec<&str> = match kind {
        Kind::Threaded => common_steps.iter().chain(&thread_steps).copied().collect(),
        _ => common_steps.iter().chain(&loop_steps).copied().collect(),
    };
    for step in steps {
        assert!(
            text.contains(step),
            "{step:?} missing from the trace\n{}",
            server.transcript()
        );
    }
    // In order: a line is read, framed, handled, then its reply written.
    // On threaded-server the writer thread's lines are ordered only with
    // what it waits for: it may print its first write after the reader has
    // moved on.
    let mut order = vec![
        "accepted client 1",
        "client 1: read 12 bytes",
        "client 1: framed 2 lines",
        "client 1: handler: reply",
        "client 1: wrote ",
        "client 1: paused",
        "client 1: resumed",
        "client 1: closed",
    ];
    if kind == Kind::Threaded {
        order.retain(|step| *step != "client 1: wrote ");
    }
    let first = |step: &str| {
        trace
            .iter()
            .position(|l| l.contains(step))
            .unwrap_or_else(|| panic!("{step:?} missing"))
    };
    for pair in order.windows(2) {
        assert!(
            first(pair[0]) < first(pair[1]),
            "{:?} comes after {:?}\n{text}",
            pair[0],
            pair[1]
        );
    }
    server.stop(common::SIGINT);
}

/// Without `--trace`, stderr is as before: nothing, for this conversation.
fn no_trace_without_the_flag(kind: Kind) {
    let mut server = Server::start(kind, &[]);
    let mut conn = server.connect_as(1);
    conn.send(b"hello\nworld\n");
    conn.expect_line(b"hello\n");
    conn.expect_line(b"world\n");
    drop(conn);
    server.wait_disconnected(1);
    server.stop(common::SIGINT);
    server.pump();
    assert!(
        server.stderr_lines().is_empty(),
        "stderr without --trace:\n{}",
        server.transcript()
    );
}

/// The sink prints the client's bytes on stdout and its status lines on
/// stderr: with `--trace`, stdout holds exactly the bytes, and every other
/// stderr line is a status line or a trace line.
fn sink_stdout_stays_exact(kind: Kind) {
    let mut server = Server::start(kind, &["--handler", "sink", "--trace"]);
    let mut conn = server.connect_as(1);
    let bytes = b"one\ntwo\nthree without a newline";
    conn.send(bytes);
    conn.shutdown_write();
    conn.expect_eof();
    server.wait_disconnected(1);
    // Stopping reads stderr to its end.
    server.stop(common::SIGINT);
    let stdout = std::fs::read(server.stdout_path()).expect("stdout.bin");
    assert_eq!(stdout, bytes, "stdout must hold exactly the sink's bytes");
    let text = server.stderr_lines().join("\n");
    for step in ["bytes to stdout", "client 1: closed"] {
        assert!(text.contains(step), "{step:?} missing from\n{text}");
    }
    for line in server.stderr_lines() {
        assert!(
            is_trace(line) || line.starts_with("Listening on ") || line.starts_with("Client "),
            "unexpected stderr line {line:?}"
        );
    }
}

/// The ledger with a journal: the handler's persist, the periodic timer,
/// the signal and the drain (a client still connected may finish) are in
/// the trace.
fn persist_timer_and_drain(kind: Kind) {
    let args = [
        "--handler",
        "ledger",
        "--journal",
        "journal.bin",
        "--report-every",
        "0.05",
        "--trace",
    ];
    let mut server = Server::start(kind, &args);
    let mut conn = server.connect_as(1);
    conn.send(b"Marc credit $2\n");
    server.wait_stderr("the persist", |l| {
        l.contains("client 1: handler: persist: append")
    });
    server.wait_stderr("the report timer", |l| {
        l.contains("timer: report the client count")
    });
    server.signal(common::SIGINT);
    server.wait_stderr("the drain", |l| l.contains("drain: clients may finish"));
    conn.send(b"Ann debit $1\n");
    conn.shutdown_write();
    conn.expect_eof();
    server.assert_exit_0();
    let text = server.stderr_lines().join("\n");
    for step in ["caught 1 shutdown signal", "client 1: closed"] {
        assert!(text.contains(step), "{step:?} missing from\n{text}");
    }
}

every_server!(
    conversation_names_every_step,
    persist_timer_and_drain,
    no_trace_without_the_flag,
    sink_stdout_stays_exact
);
