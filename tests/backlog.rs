//! `--backlog N` (SPEC "Server options"): the listen backlog, 4096 by
//! default. A bad value is a usage error (exit 2); a good one is the size
//! of the accept queue, seen from outside while the server is stopped
//! (SIGSTOP): Linux queues at most N+1 finished handshakes and drops the
//! SYN of the next client (counted in `/proc/net/netstat` ListenOverflows).

#[macro_use]
mod common;

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

use common::*;
use socket2::{Domain, Protocol, Socket, Type};

every_server!(
    bad_backlog_is_a_usage_error,
    help_describes_backlog,
    backlog_bounds_the_accept_queue,
    default_backlog_queues_a_burst,
);

fn bad_backlog_is_a_usage_error(kind: Kind) {
    for bad in ["0", "-1", "x", "2147483648", ""] {
        let (status, _out, err) = run_to_end(kind, &["--backlog", bad, "0"]);
        assert_eq!(status.code(), Some(2), "--backlog {bad:?}: {err}");
        assert!(err.contains("--backlog"), "--backlog {bad:?}: {err}");
        assert!(err.to_lowercase().contains("usage"), "{err}");
    }
}

fn help_describes_backlog(kind: Kind) {
    let (status, out, _err) = run_to_end(kind, &["--help"]);
    assert_eq!(status.code(), Some(0));
    let line = out
        .lines()
        .find(|l| l.contains("--backlog"))
        .unwrap_or_else(|| panic!("--help has no --backlog:\n{out}"));
    assert!(
        line.contains("4096") || out.contains("[default: 4096]"),
        "{out}"
    );
}

/// Connections waiting in `addr`'s accept queue: the `rx_queue` of its
/// LISTEN line in `/proc/net/tcp` (for a listener, the kernel shows the
/// accept queue's length there).
fn accept_queue(addr: SocketAddr) -> usize {
    let local = format!("0100007F:{:04X}", addr.port());
    let table = fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() > 4 && f[1] == local && f[3] == "0A" {
            let rx = f[4].split(':').nth(1).expect("tx:rx");
            return usize::from_str_radix(rx, 16).expect("hex rx_queue");
        }
    }
    panic!("no listener on {addr} in /proc/net/tcp");
}

/// TcpExt ListenOverflows from `/proc/net/netstat` (this network namespace).
fn listen_overflows() -> u64 {
    let text = fs::read_to_string("/proc/net/netstat").expect("read /proc/net/netstat");
    let mut lines = text.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        if !names.starts_with("TcpExt:") {
            continue;
        }
        for (n, v) in names.split_whitespace().zip(values.split_whitespace()) {
            if n == "ListenOverflows" {
                return v.parse().expect("a count");
            }
        }
    }
    panic!("no TcpExt ListenOverflows in /proc/net/netstat");
}

/// Waits (up to [`TIMEOUT`]) until `ready` holds; panics with `what`.
fn await_true(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::yield_now();
    }
}

/// Whether every thread of process `pid` is stopped (state `T` in its
/// `/proc/PID/task/TID/stat`).
fn all_threads_stopped(pid: i32) -> bool {
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).expect("read /proc/PID/task");
    tasks.flatten().all(|t| {
        let stat = fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        // The state follows the command name, which is in parentheses.
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('T'))
    })
}

/// Stops the server (it accepts nothing), runs `body`, lets it go on.
fn while_stopped(server: &mut Server, body: impl FnOnce(SocketAddr)) {
    server.signal(libc::SIGSTOP);
    let pid = server.pid();
    await_true("the server stopped", || all_threads_stopped(pid));
    let addr = server.addr;
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(addr)));
    server.signal(libc::SIGCONT);
    if let Err(p) = outcome {
        std::panic::resume_unwind(p);
    }
}

fn backlog_bounds_the_accept_queue(kind: Kind) {
    let mut server = Server::start(kind, &["--backlog", "2"]);
    while_stopped(&mut server, |addr| {
        // Backlog 2: three finished handshakes fit (Linux: full is "more than N").
        let held: Vec<TcpStream> = (0..3)
            .map(|_| TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect"))
            .collect();
        await_true("3 connections in the accept queue", || {
            accept_queue(addr) == 3
        });
        let before = listen_overflows();
        let extra = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
        extra.set_nonblocking(true).unwrap();
        let _ = extra.connect(&addr.into()); // in progress
        // With a larger backlog the fourth would join the queue; with 2 its
        // SYN is dropped and counted.
        await_true("the fourth SYN dropped or queued", || {
            listen_overflows() > before || accept_queue(addr) > 3
        });
        assert_eq!(
            accept_queue(addr),
            3,
            "--backlog 2 queued a fourth connection"
        );
        drop(held);
    });
    server.stop(libc::SIGINT);
}

fn default_backlog_queues_a_burst(kind: Kind) {
    const BURST: usize = 64;
    let mut server = Server::start(kind, &[]);
    while_stopped(&mut server, |addr| {
        let held: Vec<TcpStream> = (0..BURST)
            .map(|_| TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect"))
            .collect();
        await_true("the whole burst in the accept queue", || {
            accept_queue(addr) == BURST
        });
        drop(held);
    });
    server.stop(libc::SIGINT);
}
