//! Black-box tests of `nonblocking-client`: the real binary against tiny
//! fake servers started in the test on 127.0.0.1:0, so these tests hold
//! the client to SPEC without depending on the real server's handlers.

#[allow(unused_macros)]
#[macro_use]
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::wait_child;

/// Longest any single step may take before the test fails instead of hanging.
const TIMEOUT: Duration = Duration::from_secs(30);

fn client() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nonblocking-client"))
}

/// A listener on 127.0.0.1 with an OS-chosen port, and that port as an ADDR.
fn fake_server() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    (listener, addr)
}

/// Accepts one connection, with read and write timeouts so a stuck client
/// fails the test rather than hanging it.
fn accept(listener: &TcpListener) -> TcpStream {
    let (stream, _) = listener.accept().unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(TIMEOUT)).unwrap();
    stream
}

/// An address where nothing listens: a port the OS just gave us, released.
fn dead_addr() -> String {
    let (listener, addr) = fake_server();
    drop(listener);
    addr
}

/// Collects the child's stdout and stderr on threads (so a full pipe never
/// blocks it) after waiting for it.
fn finish(mut child: Child) -> Output {
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = thread::spawn(move || {
        let mut v = Vec::new();
        out.read_to_end(&mut v).unwrap();
        v
    });
    let err = thread::spawn(move || {
        let mut v = Vec::new();
        err.read_to_end(&mut v).unwrap();
        v
    });
    let status = wait_child(&mut child, "nonblocking-client");
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Runs the client with `stdin` fed from a thread, all output captured.
fn run(args: &[&str], stdin: Vec<u8>) -> Output {
    let mut child = client()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    // A client that exits early closes the pipe: that error is the test's
    // business through the exit status, not a panic here.
    thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    finish(child)
}

fn stderr_text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts exit 1 with exactly one stderr line containing each of `needles`.
fn assert_one_line_error(out: &Output, needles: &[&str]) {
    let err = stderr_text(out);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one stderr line, got: {err:?}");
    assert!(err.starts_with("error: "), "{err:?}");
    for needle in needles {
        assert!(err.contains(needle), "{err:?} should name {needle:?}");
    }
}

/// Deterministic pseudo-random bytes (xorshift), all 256 values.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A file in the temp dir, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &[u8]) -> Self {
        let path =
            std::env::temp_dir().join(format!("nonblocking-client-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Reads from the client until its EOF, returning everything, then holds
/// the connection open until `release` fires, so the test can check that
/// the client waits for our close.
fn read_all_then_hold(
    listener: TcpListener,
    release: mpsc::Receiver<()>,
    got_all: mpsc::Sender<usize>,
) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut conn = accept(&listener);
        let mut data = Vec::new();
        conn.read_to_end(&mut data).unwrap();
        got_all.send(data.len()).unwrap();
        let _ = release.recv_timeout(TIMEOUT);
        data
    })
}

#[test]
fn ledger_streams_a_large_file_exactly_and_waits_for_the_server_to_close() {
    let mut contents = Vec::new();
    let mut i = 0u64;
    while contents.len() < 5_000_000 {
        writeln!(
            contents,
            "acct{} {} ${}.{:02}",
            i % 97,
            ["credit", "debit"][(i % 2) as usize],
            i,
            i % 100
        )
        .unwrap();
        i += 1;
    }
    contents.extend_from_slice(b"last line without newline credit 1");
    let file = TempFile::new("ledger.txt", &contents);

    let (listener, addr) = fake_server();
    // After the client's EOF the server talks on: far more than the
    // kernel buffers hold while nobody reads (a few MiB), so the
    // writes finish only if the client is still there reading. A client
    // that left at its EOF makes them fail. Then we close.
    let server = thread::spawn(move || {
        let mut conn = accept(&listener);
        let mut data = Vec::new();
        conn.read_to_end(&mut data).unwrap();
        let talk = vec![b"not an error, just talk\n".as_slice(); 1 << 20].concat();
        let talked = conn.write_all(&talk);
        (data, talked)
    });
    let child = client()
        .args(["ledger", &addr, file.path()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (received, talked) = server.join().unwrap();
    let out = finish(child);
    talked.expect("the client stopped reading after its EOF: it did not wait for our close");
    assert!(out.status.success(), "stderr: {}", stderr_text(&out));
    assert!(received == contents, "the server got different bytes");
    assert!(out.stderr.is_empty() && out.stdout.is_empty());
}

#[test]
fn ledger_reports_the_servers_error_line() {
    let file = TempFile::new("ledger-err.txt", b"Marc credit $2\n");
    let (listener, addr) = fake_server();
    let server = thread::spawn(move || {
        let mut conn = accept(&listener);
        let mut data = Vec::new();
        conn.read_to_end(&mut data).unwrap();
        conn.write_all(b"error: line too long\n").unwrap();
    });
    let out = run(&["ledger", &addr, file.path()], Vec::new());
    server.join().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr_text(&out), "error: line too long\n");
}

#[test]
fn ledger_with_a_missing_file_fails_before_connecting() {
    let (listener, addr) = fake_server();
    listener.set_nonblocking(true).unwrap();
    let missing = std::env::temp_dir().join("nonblocking-client-no-such-file.txt");
    let missing = missing.to_str().unwrap();
    let out = run(&["ledger", &addr, missing], Vec::new());
    assert_one_line_error(&out, &[missing, "No such file or directory"]);
    assert!(
        listener.accept().is_err(),
        "the client connected although the file was missing"
    );
}

#[test]
fn every_subcommand_names_an_unreachable_server() {
    let file = TempFile::new("unreachable.txt", b"Marc credit $2\n");
    let addr = dead_addr();
    let cases: [&[&str]; 5] = [
        &["ledger", &addr, file.path()],
        &["presence", &addr, "alice"],
        &["send", &addr],
        &["chat", &addr],
        &["queue", &addr],
    ];
    for args in cases {
        let out = run(args, b"put A\n".to_vec());
        assert_one_line_error(
            &out,
            &[&format!("cannot connect to {addr}"), "Connection refused"],
        );
    }
    // A bare PORT means 127.0.0.1, and the message says so.
    let port = addr.rsplit_once(':').unwrap().1;
    let out = run(&["send", port], Vec::new());
    assert_one_line_error(&out, &[&addr]);
}

#[test]
fn send_copies_binary_stdin_exactly() {
    let data = noise(3 * 1024 * 1024 + 7, 0x9e37_79b9_7f4a_7c15);
    let (listener, addr) = fake_server();
    let (release_tx, release_rx) = mpsc::channel();
    let (got_tx, got_rx) = mpsc::channel();
    let server = read_all_then_hold(listener, release_rx, got_tx);
    let expected = data.clone();
    let waiter = thread::spawn(move || run(&["send", &addr], data));
    assert_eq!(got_rx.recv_timeout(TIMEOUT).unwrap(), expected.len());
    release_tx.send(()).unwrap();
    let received = server.join().unwrap();
    let out = waiter.join().unwrap();
    assert!(out.status.success(), "stderr: {}", stderr_text(&out));
    assert!(received == expected, "the server got different bytes");
}

#[test]
fn send_of_empty_stdin_sends_nothing_and_succeeds() {
    let (listener, addr) = fake_server();
    let (release_tx, release_rx) = mpsc::channel();
    let (got_tx, _got_rx) = mpsc::channel();
    drop(release_tx); // nothing to check in between: close as soon as all is read
    let server = read_all_then_hold(listener, release_rx, got_tx);
    let out = run(&["send", &addr], Vec::new());
    assert!(out.status.success(), "stderr: {}", stderr_text(&out));
    assert!(server.join().unwrap().is_empty());
}

/// SPEC "queue": a bounded FIFO shared by every client; one answer line
/// per command. Serves one connection until it closes.
fn fake_queue_server(listener: TcpListener, capacity: usize) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let conn = accept(&listener);
        let mut writer = conn.try_clone().unwrap();
        let mut queue = std::collections::VecDeque::new();
        for line in BufReader::new(conn).lines() {
            let line = line.unwrap();
            let words: Vec<&str> = line.split_whitespace().collect();
            let reply = match words.first().map(|w| w.to_ascii_lowercase()).as_deref() {
                Some("put") if words.len() == 2 => {
                    if queue.len() < capacity {
                        queue.push_back(words[1].to_string());
                        "True".to_string()
                    } else {
                        "False".to_string()
                    }
                }
                Some("put") => "error: usage: put ITEM".to_string(),
                Some("peek") => queue.front().cloned().unwrap_or_else(|| "None".into()),
                Some("pop") => queue.pop_front().unwrap_or_else(|| "None".into()),
                Some("size") => queue.len().to_string(),
                _ => "error: unknown command".to_string(),
            };
            writer.write_all(format!("{reply}\n").as_bytes()).unwrap();
        }
    })
}

#[test]
fn queue_plays_the_seed_transcript_when_piped() {
    let (listener, addr) = fake_server();
    let server = fake_queue_server(listener, 3);
    let input = "put A\nput B\nput C\nput D\nsize\npeek\nsize\npop\npop\nsize\npop\npop\npeek\n";
    let out = run(&["queue", &addr], input.into());
    server.join().unwrap();
    assert!(out.status.success(), "stderr: {}", stderr_text(&out));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "True\nTrue\nTrue\nFalse\n3\nA\n3\nA\nB\n1\nC\nQueue is empty\nQueue is empty\n",
        "no prompt when stdin is not a terminal"
    );
    assert!(out.stderr.is_empty());
}

#[test]
fn queue_prints_server_errors_and_goes_on() {
    let (listener, addr) = fake_server();
    let server = fake_queue_server(listener, 2);
    let out = run(&["queue", &addr], b"put\nfrob\nPUT x\npop".to_vec());
    server.join().unwrap();
    assert!(out.status.success(), "stderr: {}", stderr_text(&out));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "error: usage: put ITEM\nerror: unknown command\nTrue\nx\n"
    );
}

#[test]
fn queue_exits_0_on_ctrl_c() {
    let (listener, addr) = fake_server();
    let server = fake_queue_server(listener, 3);
    let mut child = client()
        .args(["queue", &addr])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // stdin stays open: the client is blocked reading it when SIGINT comes.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"size\n").unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "0\n");
    sigint(&child);
    assert_eq!(wait_child(&mut child, "nonblocking-client").code(), Some(0));
    server.join().unwrap(); // the fake server saw the socket close
}

fn sigint(child: &Child) {
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill(2) with a pid we spawned and a valid signal number.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
}

#[test]
fn presence_sends_its_name_and_prints_each_list_until_the_server_closes() {
    let (listener, addr) = fake_server();
    let server = thread::spawn(move || {
        let conn = accept(&listener);
        let mut name = String::new();
        BufReader::new(&conn).read_line(&mut name).unwrap();
        (&conn).write_all(b"alice\nalice bob\n").unwrap();
        (&conn).write_all(b"alice\n").unwrap();
        name
    });
    let out = run(&["presence", &addr, "alice"], Vec::new());
    assert_eq!(server.join().unwrap(), "alice\n");
    assert!(out.status.success(), "stderr: {}", stderr_text(&out));
    assert_eq!(out.stdout, b"alice\nalice bob\nalice\n");
}

#[test]
fn presence_reports_a_refused_name() {
    let (listener, addr) = fake_server();
    let server = thread::spawn(move || {
        let mut conn = accept(&listener);
        let mut name = [0u8; 64];
        let _ = conn.read(&mut name).unwrap();
        conn.write_all(b"error: name taken\n").unwrap();
    });
    let out = run(&["presence", &addr, "alice"], Vec::new());
    server.join().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr_text(&out), "error: name taken\n");
    assert!(out.stdout.is_empty());
}

#[test]
fn presence_closes_the_socket_and_exits_0_on_ctrl_c() {
    let (listener, addr) = fake_server();
    let (closed_tx, closed_rx) = mpsc::channel();
    let server = thread::spawn(move || {
        let mut conn = accept(&listener);
        let mut name = [0u8; 64];
        let _ = conn.read(&mut name).unwrap();
        conn.write_all(b"alice\n").unwrap();
        // After the client's Ctrl+C, its close reaches us as EOF.
        let mut rest = Vec::new();
        let eof = conn.read_to_end(&mut rest).is_ok();
        closed_tx.send(eof).unwrap();
    });
    let mut child = client()
        .args(["presence", &addr, "alice"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "alice\n");
    sigint(&child);
    assert_eq!(wait_child(&mut child, "nonblocking-client").code(), Some(0));
    assert!(
        closed_rx.recv_timeout(TIMEOUT).unwrap(),
        "socket closed cleanly"
    );
    server.join().unwrap();
}

#[test]
fn chat_prints_each_echoed_line() {
    let (listener, addr) = fake_server();
    let server = thread::spawn(move || {
        let conn = accept(&listener);
        let mut writer = conn.try_clone().unwrap();
        let mut reader = BufReader::new(conn);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).unwrap() > 0 {
            writer.write_all(&line).unwrap();
            line.clear();
        }
    });
    let out = run(&["chat", &addr], "hello\nwörld\r\nlast".into());
    server.join().unwrap();
    assert!(out.status.success(), "stderr: {}", stderr_text(&out));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "hello\nwörld\r\nlast\n"
    );
}

#[test]
fn chat_does_not_deadlock_on_a_silent_server() {
    let (listener, addr) = fake_server();
    let (release_tx, release_rx) = mpsc::channel();
    let (got_tx, _got_rx) = mpsc::channel();
    drop(release_tx);
    let server = read_all_then_hold(listener, release_rx, got_tx);
    let input = "Marc credit $2\n".repeat(20_000);
    let out = run(&["chat", &addr], input.clone().into());
    assert_eq!(server.join().unwrap(), input.as_bytes());
    assert!(out.status.success(), "stderr: {}", stderr_text(&out));
    assert!(out.stdout.is_empty());
}

#[test]
fn usage_errors_exit_2_with_a_usage_line() {
    let cases: [&[&str]; 7] = [
        &[],
        &["frobnicate"],
        &["ledger", "5555"],
        &["send"],
        &["send", "localhost"],
        &["send", "::1:80"],
        &["presence", "0", "alice"],
    ];
    for args in cases {
        let out = run(args, Vec::new());
        let err = stderr_text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("Usage:"), "{args:?}: {err}");
    }
}

#[test]
fn help_describes_every_subcommand_and_argument() {
    let out = run(&["--help"], Vec::new());
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for sub in ["ledger", "presence", "send", "chat", "queue"] {
        assert!(help.contains(sub), "--help lists {sub}");
        let out = run(&[sub, "--help"], Vec::new());
        assert!(out.status.success());
        let help = String::from_utf8(out.stdout).unwrap();
        assert!(
            help.contains("<ADDR>") && help.contains("[V6ADDR]:PORT"),
            "{sub}: {help}"
        );
    }
    let help = String::from_utf8(run(&["ledger", "--help"], Vec::new()).stdout).unwrap();
    assert!(help.contains("<FILE>"));
    let help = String::from_utf8(run(&["presence", "--help"], Vec::new()).stdout).unwrap();
    assert!(help.contains("<NAME>"));
}
