//! Divergences found by driving the programs from outside against SPEC.md
//! (and docs/PROTOCOL.md where SPEC is silent), each pinned by a test that
//! failed before its fix. The real binaries, on 127.0.0.1 port 0, both
//! servers where one is started.

#[macro_use]
mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

every_server!(
    atm_accounts_errors_say_error_once,
    client_chat_reports_the_servers_limit_errors_on_stderr_exit_1,
    client_chat_prints_an_echoed_error_text_as_a_reply,
    client_queue_reports_the_servers_limit_errors_on_stderr_exit_1,
    client_menu_reports_the_servers_limit_errors_on_stderr_exit_1,
);

/// Runs `nonblocking-client ARGS` with `stdin`, killed after [`TIMEOUT`].
fn client(args: &[&str], stdin: &[u8]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nonblocking-client"));
    cmd.args(args);
    run_with_input(cmd, stdin)
}

/// PROTOCOL §10: the server's `error: ...` line is printed on stderr as it
/// was sent (and nowhere else), and the client exits 1.
fn assert_server_error(out: &Output, line: &str, what: &str) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what}: exit status; stdout {stdout:?} stderr {stderr:?}"
    );
    assert_eq!(stderr, format!("{line}\n"), "{what}: stderr");
    assert!(
        !stdout.contains(line),
        "{what}: the error line belongs on stderr only: {stdout:?}"
    );
}

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

/// Linux's tables of TCP sockets, /proc/net/tcp and tcp6, read once.
fn tcp_table() -> String {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|t| std::fs::read_to_string(t).ok())
        .collect()
}

/// The send and receive queues (`tx_queue`, `rx_queue`) of the established
/// TCP socket from `local` to `remote` in `table` ([`tcp_table`]): bytes not
/// yet acknowledged by the peer, and bytes not yet read.
fn tcp_queues(table: &str, local: SocketAddr, remote: SocketAddr) -> Option<(u64, u64)> {
    let port = |field: &str| {
        let (_, port) = field.rsplit_once(':')?;
        u16::from_str_radix(port, 16).ok()
    };
    table.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() > 4
            && port(f[1]) == Some(local.port())
            && port(f[2]) == Some(remote.port())
            && f[3] == "01"
        {
            let (tx, rx) = f[4].split_once(':')?;
            Some((
                u64::from_str_radix(tx, 16).ok()?,
                u64::from_str_radix(rx, 16).ok()?,
            ))
        } else {
            None
        }
    })
}

/// A server with its one `--max-clients` slot taken by a held connection.
fn full_server(kind: Kind, handler: &str) -> (Server, Conn) {
    let mut server = Server::start(kind, &["-H", handler, "--max-clients", "1"]);
    let hold = server.connect_as(1);
    (server, hold)
}

fn client_chat_reports_the_servers_limit_errors_on_stderr_exit_1(kind: Kind) {
    let (server, _hold) = full_server(kind, "echo");
    let port = server.port().to_string();
    let out = client(&["chat", &port], b"hello\n");
    assert_server_error(&out, "error: too many clients", "chat, server full");

    let server = Server::start(kind, &["-H", "echo", "--max-line", "3"]);
    let port = server.port().to_string();
    let out = client(&["chat", &port], b"ok\nabcdef\n");
    assert_server_error(&out, "error: line too long", "chat, line too long");
    assert_eq!(out.stdout, b"ok\n", "the replies before the error");
}

every_server!(client_chat_stops_at_a_refusal_without_waiting_for_stdin);

/// A user at a terminal learns of the refusal at once: `chat` does not wait
/// for an end of input that nothing it reads can change.
fn client_chat_stops_at_a_refusal_without_waiting_for_stdin(kind: Kind) {
    let (server, _hold) = full_server(kind, "echo");
    let mut child = Command::new(env!("CARGO_BIN_EXE_nonblocking-client"))
        .args(["chat", &server.port().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nonblocking-client");
    let _stdin_kept_open = child.stdin.take();
    let status = wait_child(
        &mut child,
        "chat still waits for stdin after the server refused it",
    );
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert_eq!(err, "error: too many clients\n");
}

/// The other side of the rule above: `chat` shows replies as they come, so
/// an echo server returning a line that merely reads like a limit error
/// (and staying open) is a reply like any other.
fn client_chat_prints_an_echoed_error_text_as_a_reply(kind: Kind) {
    let server = Server::start(kind, &["-H", "echo"]);
    let port = server.port().to_string();
    let input = b"error: line too long\nerror: too many clients\nafter\n";
    let out = client(&["chat", &port], input);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(input)
    );
    assert!(out.stderr.is_empty(), "{out:?}");
}

fn client_queue_reports_the_servers_limit_errors_on_stderr_exit_1(kind: Kind) {
    let (server, _hold) = full_server(kind, "queue");
    let port = server.port().to_string();
    let out = client(&["queue", &port], b"size\n");
    assert_server_error(&out, "error: too many clients", "queue, server full");

    let server = Server::start(kind, &["-H", "queue", "--max-line", "6"]);
    let port = server.port().to_string();
    let out = client(&["queue", &port], b"put A\nput ABCDEFG\nsize\n");
    assert_server_error(&out, "error: line too long", "queue, line too long");
    assert_eq!(out.stdout, b"True\n", "the answers before the error");
}

fn client_menu_reports_the_servers_limit_errors_on_stderr_exit_1(kind: Kind) {
    let (server, _hold) = full_server(kind, "menu");
    let port = server.port().to_string();
    let out = client(&["menu", &port], b"3\n");
    assert_server_error(&out, "error: too many clients", "menu, server full");

    let server = Server::start(kind, &["-H", "menu", "--max-line", "8"]);
    let port = server.port().to_string();
    let out = client(&["menu", &port], b"1\nhello there\n");
    assert_server_error(&out, "error: line too long", "menu, line too long");
}

/// SPEC "Status lines": every program exits 2 with a usage line on a usage
/// error. loadgen's invalid values (clap's value errors) had none.
#[test]
fn loadgen_bad_values_exit_2_with_a_usage_line() {
    for args in [
        &["--clients", "0", "7722"][..],
        &["--threads", "x", "7722"],
        &["--handler", "nope", "7722"],
        &["host-without-port"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .args(args)
            .output()
            .expect("run loadgen");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("Usage: loadgen"),
            "{args:?}: no usage line: {err}"
        );
    }
}

/// `--help` describes every option in words a user reads: no rustdoc link
/// syntax leaking from doc comments.
#[test]
fn loadgen_help_has_no_rustdoc_links() {
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .arg("--help")
        .output()
        .expect("run loadgen --help");
    let help = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    assert!(!help.contains("[`"), "rustdoc link in --help: {help}");
}

every_server!(server_help_names_every_handler_and_signal);

/// SPEC: `--help` describes every option; the servers' summary line listed
/// five of the seven handlers, and the closing note left out SIGHUP and the
/// menu's immediate stop.
fn server_help_names_every_handler_and_signal(kind: Kind) {
    let (status, out, _err) = run_to_end(kind, &["--help"]);
    assert_eq!(status.code(), Some(0));
    let summary = out.lines().next().unwrap_or_default();
    for name in ["ledger", "echo", "presence", "sink", "queue", "menu", "atm"] {
        assert!(summary.contains(name), "{name} missing from {summary:?}");
    }
    assert!(out.contains("SIGHUP"), "SIGHUP not described: {out}");
}

/// PROTOCOL §2: a negative number is a usage error that says so. The gRPC
/// server took `-1` for an unknown flag and suggested `-- -1`.
#[cfg(feature = "grpc")]
#[test]
fn grpc_server_negative_numbers_say_so() {
    for args in [&["0", "-1"][..], &["-5", "3"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_queue-grpc-server"))
            .args(args)
            .output()
            .expect("run queue-grpc-server");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("negative numbers are not allowed"),
            "{args:?}: {err}"
        );
        assert!(err.contains("Usage: queue-grpc-server"), "{args:?}: {err}");
    }
}

every_server!(drain_line_prints_seconds_as_a_plain_decimal);

/// PROTOCOL §3: the drain line's seconds are the value as a plain decimal
/// (it said "as the user wrote them", which `0.50` or `5e-1` are not).
fn drain_line_prints_seconds_as_a_plain_decimal(kind: Kind) {
    for (given, shown) in [("0.50", "0.5"), ("5e-1", "0.5"), ("30", "30")] {
        let mut server = Server::start(kind, &["-H", "ledger", "--drain-timeout", given]);
        let _client = server.connect_as(1);
        server.signal(SIGINT);
        server.wait_status_eq(&format!(
            "Shutting down: waiting up to {shown} s for 1 clients (signal again to stop now)"
        ));
        server.stop(SIGINT);
    }
}

mod a_client_killed_at_the_end_of_the_shutdown_flush_gets_a_diagnostic {
    #[test]
    fn reactor() {
        super::a_client_killed_at_the_end_of_the_shutdown_flush_gets_a_diagnostic(
            crate::common::Kind::Reactor,
        )
    }
    #[test]
    fn reactor2() {
        super::a_client_killed_at_the_end_of_the_shutdown_flush_gets_a_diagnostic(
            crate::common::Kind::Reactor2,
        )
    }
    #[test]
    fn threaded() {
        super::a_client_killed_at_the_end_of_the_shutdown_flush_gets_a_diagnostic(
            crate::common::Kind::Threaded,
        )
    }
}

/// PROTOCOL §6: "A client dropped for any reason gets exactly one
/// diagnostic line", and echo's shutdown closes a client that has not read
/// its output within the flush "anyway". That client loses output, and
/// stderr said nothing about it on either server.
///
/// The server must hold more than the kernel can ever take for it, or
/// nothing is cut and no diagnostic is owed (issue 23 item 1: with
/// `--max-pending 1000` a paused echo held about 50 KiB, the kernel's send
/// buffer, which grows up to `tcp_wmem`'s 4 MiB, took it during the flush,
/// the threaded server's writer finished and sent its FIN, and the test
/// failed 3 runs in 5 although no client lost output). So: 8 MiB held, and
/// a client whose receive buffer is small and fixed (SO_RCVBUF set before
/// connect turns Linux's autotuning off).
fn a_client_killed_at_the_end_of_the_shutdown_flush_gets_a_diagnostic(kind: Kind) {
    // Room to hold more output than the kernel can ever take for us (our
    // receive buffer and tcp_wmem's 4 MiB): 8 MiB.
    let mut server = Server::start(kind, &["-H", "echo", "--max-pending", "8388608"]);
    // Small buffers of our own, fixed (no autotuning): our receive buffer
    // bounds what the kernel can still deliver to us, our send buffer what
    // the closing server must read and drop after the signal.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    socket.set_send_buffer_size(64 * 1024).unwrap();
    socket.connect(&server.addr.into()).unwrap();
    let our_rcvbuf = socket.recv_buffer_size().unwrap() as u64;
    let conn = Conn::from_stream(socket.into());
    server.wait_connected(1);
    // The most the server's send queue can grow to (Linux autotuning).
    let wmem_max: u64 = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .expect("/proc/sys/net/ipv4/tcp_wmem")
        .split_whitespace()
        .nth(2)
        .and_then(|v| v.parse().ok())
        .expect("tcp_wmem's maximum");
    // Send, never reading, until the server holds more output for us than
    // the kernel could still take: then its shutdown flush cannot end.
    // Counted from the kernel's queues, not guessed from a quiet spell.
    // 64 lines of 1 KiB a write, the size of our send buffer.
    let chunk = [b'x'; 1023]
        .iter()
        .chain(b"\n")
        .copied()
        .cycle()
        .take(64 * 1024)
        .collect::<Vec<u8>>();
    conn.stream.set_nonblocking(true).unwrap();
    let mut stream = &conn.stream;
    let mut sent = 0u64;
    let mut last_held_more = false;
    let deadline = Instant::now() + 6 * TIMEOUT;
    loop {
        // A batch, then a look: what the server has not read when the
        // signal comes is read and dropped by it; past 4 MiB of that it
        // gives up on the client without a word (see issue 23's report).
        for _ in 0..64 {
            match stream.write(&chunk) {
                Ok(n) => sent += n as u64,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("send: {e}"),
            }
        }
        // What the server has read is what we sent less what waits on
        // either side; what it handed back waits in its send queue or our
        // receive queue (we never read). Echo holds the difference. Bytes
        // sent but not yet acknowledged count on both sides: `held` errs
        // low, so the check errs late. Twice in a row: /proc is read line
        // by line while bytes move.
        let ours = conn.stream.local_addr().unwrap();
        let table = tcp_table();
        let (our_tx, our_rx) = tcp_queues(&table, ours, server.addr).expect("our socket");
        let (srv_tx, srv_rx) = tcp_queues(&table, server.addr, ours).expect("the server's socket");
        let held = sent.saturating_sub(our_tx + srv_rx + srv_tx + our_rx);
        let room = our_rcvbuf.saturating_sub(our_rx) + wmem_max.saturating_sub(srv_tx);
        if held > room && last_held_more {
            break;
        }
        last_held_more = held > room;
        // A hang guard, not a timing: on a loaded machine this takes long.
        assert!(
            Instant::now() < deadline,
            "the server never held more than {room} bytes: sent {sent}, held {held}\n{}",
            server.transcript()
        );
        thread::yield_now();
    }
    server.stop(SIGINT);
    assert!(
        server.stderr_lines().iter().any(|l| l.contains("client 1")),
        "no diagnostic names the client cut off with unsent output\n{}",
        server.transcript()
    );
}

every_server!(a_reset_client_s_diagnostic_has_no_rust_error_code);

/// PROTOCOL §3 prints OS reasons without Rust's `(os error N)` suffix (the
/// bind error, the clients' errors); a client dropped after an I/O error
/// read `client 1: Connection reset by peer (os error 104)`.
fn a_reset_client_s_diagnostic_has_no_rust_error_code(kind: Kind) {
    let mut server = Server::start(kind, &["-H", "ledger"]);
    let mut conn = server.connect_as(1);
    conn.send(b"A credit 1\nB cre");
    // SO_LINGER 0: close sends a reset instead of a FIN.
    socket2::SockRef::from(&conn.stream)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER 0");
    drop(conn);
    let line = server.wait_stderr("the reset client's diagnostic", |l| {
        l.starts_with("client 1: ")
    });
    assert!(!line.contains("os error"), "{line:?}");
    server.wait_disconnected(1);
    server.stop(SIGINT);
}

/// The sink with a stdout nobody reads (`nonblocking-server -H sink 7722 |
/// head -c 1`): SPEC is silent, but "a client dropped for any reason gets
/// exactly one diagnostic line" (PROTOCOL §6), and a user expects one
/// line saying stdout is gone, not one per 64 KiB written. Both servers
/// printed `stdout: Broken pipe (os error 32)` once per write (153 lines
/// for 10 MB) and went on taking clients' bytes they could not write.
fn sink_with_a_closed_stdout_says_so_once(kind: Kind) {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let mut child = kind
        .command(&std::env::temp_dir())
        .args(["-H", "sink", "0"])
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the sink");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx.recv_timeout(TIMEOUT).expect("the Listening line");
    let (addr, _) = parse_listening(&first).expect("a Listening line");
    let mut conn = Conn::connect(addr);
    conn.send(&vec![b'x'; 4 << 20]);
    conn.shutdown_write();
    let _ = conn.reader.read_to_end(&mut Vec::new());
    send_signal(&child, SIGINT);
    // The exit status is left open: 0, or 1 for a sink that could not
    // write what it took, are both defensible; the spam is not.
    wait_child(&mut child, "the sink after SIGINT");
    // The reader thread ends at the stderr EOF, which the exit brings.
    let lines: Vec<String> = rx.iter().collect();
    let stdout_lines = lines.iter().filter(|l| l.starts_with("stdout")).count();
    assert_eq!(
        stdout_lines,
        1,
        "one diagnostic about stdout, not {stdout_lines}: {:?}",
        &lines[..lines.len().min(8)]
    );
}

every_server!(sink_with_a_closed_stdout_says_so_once);
