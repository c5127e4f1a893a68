//! Status lines on a stdout nobody reads (`| less` left unscrolled, a
//! stopped logger): they are queued to the server's stdout writer, never
//! written by a loop, a reader thread or under a lock, so the server goes on
//! serving. Over `--max-pending` they are dropped and counted on stderr
//! (PROTOCOL section 2). On every server.

#[macro_use]
mod common;

use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Stdio};
use std::thread;

use common::*;

every_server!(
    a_full_stdout_stops_no_one_and_every_status_line_arrives_once_read,
    status_lines_over_max_pending_are_dropped_and_counted,
);

/// Clients that connect and leave: 2 status lines each, about 110 bytes,
/// so 1,500 of them are 2.5 times what a default pipe (64 KiB) holds (and
/// their ports in TIME_WAIT leave other tests plenty).
const CLIENTS: usize = 1500;

/// A server whose stdout is a pipe the test reads only when it chooses.
struct Stuck {
    child: Child,
    /// The pipe's read end, past the `Listening` line.
    pipe: io::PipeReader,
    /// From that line.
    addr: SocketAddr,
    /// The server's working directory, removed at the end.
    _dir: TempDir,
}

fn start_with_stuck_stdout(kind: Kind, args: &[&str]) -> Stuck {
    let (mut reader, writer) = io::pipe().expect("a pipe for stdout");
    let dir = TempDir::new(kind.name());
    let child = kind
        .command(&dir.path)
        .args(["-H", "echo", "--report-every", "0"])
        .args(args)
        .arg("0")
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", kind.bin()));
    // The first line, byte by byte, so nothing after it is taken.
    let mut first = Vec::new();
    let mut byte = [0u8; 1];
    while first.last() != Some(&b'\n') {
        reader.read_exact(&mut byte).expect("the Listening line");
        first.push(byte[0]);
    }
    let first = String::from_utf8(first).expect("text");
    let (addr, _) = parse_listening(first.trim_end())
        .unwrap_or_else(|| panic!("not a Listening line: {first:?}"));
    Stuck {
        child,
        pipe: reader,
        addr,
        _dir: dir,
    }
}

/// Connects and closes `n` clients, one after the other.
fn come_and_go(addr: SocketAddr, n: usize) {
    for _ in 0..n {
        drop(TcpStream::connect(addr).expect("connect"));
    }
}

/// An echo round trip; fails (does not hang) if the server does not answer.
fn echo_answers(addr: SocketAddr) {
    let mut c = Conn::connect(addr);
    c.send(b"still serving\n");
    c.expect_line(b"still serving\n");
}

/// Reads the pipe to its end in a thread; SIGTERM; the exit status, the
/// stdout lines and stderr.
fn stop_and_read(stuck: Stuck) -> (i32, Vec<String>, String) {
    let Stuck {
        child, mut pipe, ..
    } = stuck;
    let reading = thread::spawn(move || {
        let mut out = String::new();
        pipe.read_to_string(&mut out).map(|_| out)
    });
    send_signal(&child, SIGTERM);
    let out = child.wait_with_output().expect("the server's exit");
    let stdout = reading.join().unwrap().expect("read stdout");
    let lines = stdout.lines().map(str::to_string).collect();
    let code = out.status.code().expect("an exit code, not a signal");
    (
        code,
        lines,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The ids of the `Client N connected` / `disconnected` lines, in order;
/// every other line must be one SPEC names.
fn client_ids(lines: &[String], word: &str) -> Vec<u64> {
    let prefix = "Client ";
    lines
        .iter()
        .filter(|l| {
            l.ends_with(&format!(
                " {word}. Number of connected clients = {}",
                count(l)
            ))
        })
        .map(|l| {
            l[prefix.len()..]
                .split(' ')
                .next()
                .and_then(|id| id.parse().ok())
                .unwrap_or_else(|| panic!("a client line without its id: {l:?}"))
        })
        .collect()
}

/// The count at the end of a status line.
fn count(line: &str) -> &str {
    line.rsplit(' ').next().unwrap_or("")
}

/// Every line is whole and one of SPEC's status lines.
fn assert_whole_status_lines(lines: &[String]) {
    for l in lines {
        let known = (l.starts_with("Client ")
            && (l.contains(" connected. Number of connected clients = ")
                || l.contains(" disconnected. Number of connected clients = ")))
            || l.starts_with("Shutting down: ")
            || l.starts_with("Number of connected clients = ");
        assert!(known, "not a whole status line: {l:?}");
    }
}

/// Before the writer carried status lines, the single loop blocked in
/// `write` once the pipe was full (the echo below never came back), and the
/// threaded server blocked while holding the handler's lock.
fn a_full_stdout_stops_no_one_and_every_status_line_arrives_once_read(kind: Kind) {
    let stuck = start_with_stuck_stdout(kind, &[]);
    come_and_go(stuck.addr, CLIENTS);
    echo_answers(stuck.addr);
    let (code, lines, stderr) = stop_and_read(stuck);
    assert_eq!(code, 0, "exit status; stderr: {stderr}");
    assert_whole_status_lines(&lines);
    // Within --max-pending (4 MiB) nothing is dropped: every client's two
    // lines, ids in order of connection.
    let connected = client_ids(&lines, "connected");
    let disconnected = client_ids(&lines, "disconnected");
    assert_eq!(
        connected.len(),
        CLIENTS + 1,
        "connected lines; stderr: {stderr}"
    );
    assert_eq!(disconnected.len(), CLIENTS + 1, "disconnected lines");
    let want: Vec<u64> = (1..=CLIENTS as u64 + 1).collect();
    assert_eq!(connected, want, "connected lines in id order");
    assert!(!stderr.contains("not printed"), "{stderr}");
}

/// With `--max-pending 4096` the queue holds a few dozen lines past the
/// pipe: the rest are dropped and counted on stderr, and what arrives is
/// whole lines, in order. The server still serves and exits 0.
fn status_lines_over_max_pending_are_dropped_and_counted(kind: Kind) {
    let stuck = start_with_stuck_stdout(kind, &["--max-pending", "4096"]);
    come_and_go(stuck.addr, CLIENTS);
    echo_answers(stuck.addr);
    let (code, lines, stderr) = stop_and_read(stuck);
    assert_eq!(code, 0, "exit status; stderr: {stderr}");
    assert_whole_status_lines(&lines);
    let said: Vec<u64> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("stdout: "))
        .filter_map(|l| l.strip_suffix(" status lines not printed: stdout was full"))
        .map(|n| n.parse().expect("a count"))
        .collect();
    // Said whenever a line finds room again (the pipe takes some while it
    // fills), and at the end.
    assert!(!said.is_empty(), "no count: {stderr}");
    let dropped: u64 = said.iter().sum();
    let printed =
        (client_ids(&lines, "connected").len() + client_ids(&lines, "disconnected").len()) as u64;
    let all = 2 * (CLIENTS as u64 + 1);
    assert!(
        dropped > 0 && printed < all,
        "{printed} printed, {dropped} dropped"
    );
    // The drop count covers every line not printed (client lines, and at
    // most the shutdown line besides).
    assert!(
        (all..=all + 1).contains(&(printed + dropped)),
        "{printed} printed + {dropped} dropped, {all} client lines"
    );
    let connected = client_ids(&lines, "connected");
    assert!(
        connected.windows(2).all(|w| w[0] < w[1]),
        "connected lines out of order"
    );
}
