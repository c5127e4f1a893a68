//! Smoke tests of `threaded-server` with the echo handler, from SPEC.md:
//! framing, the 50 ms rule, limits, status lines, SIGINT. (The cross-server
//! suite lives elsewhere; these keep the threaded server honest meanwhile.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::thread;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

struct Server {
    child: Child,
    port: u16,
    lines: Receiver<String>,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_threaded-server"))
            .args(["--handler", "echo"])
            .args(args)
            .arg("0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("threaded-server starts");
        let (tx, lines) = channel();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = lines.recv_timeout(WAIT).expect("a Listening line");
        let rest = first
            .strip_prefix("Listening on 127.0.0.1:")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
        let port = rest
            .strip_suffix(" (handler echo)")
            .expect("handler named")
            .parse()
            .unwrap();
        Server { child, port, lines }
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream
    }

    fn status(&self) -> String {
        self.lines.recv_timeout(WAIT).expect("a status line")
    }

    fn interrupt(mut self) -> i32 {
        // SAFETY: plain kill(2) on our own child.
        assert_eq!(
            unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) },
            0
        );
        let status = self.child.wait().unwrap();
        status.code().expect("exited, not killed by the signal")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_exact(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    stream
        .read_exact(&mut buf)
        .expect("reply before the timeout");
    buf
}

fn read_to_eof(stream: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    stream
        .read_to_end(&mut buf)
        .expect("EOF before the timeout");
    buf
}

#[test]
fn echo_is_exact_with_crlf_and_the_50ms_rule() {
    let server = Server::start(&[]);
    let mut c = server.connect();
    c.write_all(b"hello\r\nw\xffrld\n").unwrap();
    assert_eq!(read_exact(&mut c, 13), b"hello\r\nw\xffrld\n");
    // No newline: the bytes come back once they sat 50 ms.
    c.write_all(b"abc").unwrap();
    assert_eq!(read_exact(&mut c, 3), b"abc");
    // EOF: the tail is a last message, then the server closes.
    c.write_all(b"x\ntail").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_eof(&mut c), b"x\ntail");
}

#[test]
fn status_lines_number_clients_from_one() {
    let server = Server::start(&["--report-every", "0"]);
    let a = server.connect();
    assert_eq!(
        server.status(),
        "Client 1 connected. Number of connected clients = 1"
    );
    let b = server.connect();
    assert_eq!(
        server.status(),
        "Client 2 connected. Number of connected clients = 2"
    );
    drop(a);
    assert_eq!(
        server.status(),
        "Client 1 disconnected. Number of connected clients = 1"
    );
    drop(b);
    assert_eq!(
        server.status(),
        "Client 2 disconnected. Number of connected clients = 0"
    );
    let _c = server.connect();
    assert_eq!(
        server.status(),
        "Client 3 connected. Number of connected clients = 1",
        "ids are never reused"
    );
}

#[test]
fn one_client_too_many_is_refused_without_an_id() {
    let server = Server::start(&["--max-clients", "1", "--report-every", "0"]);
    let mut first = server.connect();
    assert_eq!(
        server.status(),
        "Client 1 connected. Number of connected clients = 1"
    );
    let mut second = server.connect();
    assert_eq!(read_to_eof(&mut second), b"error: too many clients\n");
    first.write_all(b"still served\n").unwrap();
    assert_eq!(read_exact(&mut first, 13), b"still served\n");
    drop(first);
    assert_eq!(
        server.status(),
        "Client 1 disconnected. Number of connected clients = 0"
    );
    let _third = server.connect();
    assert_eq!(
        server.status(),
        "Client 2 connected. Number of connected clients = 1",
        "the refused connection got no id and no status line"
    );
}

#[test]
fn a_line_over_max_line_closes_only_that_client() {
    let server = Server::start(&["--max-line", "10"]);
    let mut other = server.connect();
    let mut c = server.connect();
    c.write_all(b"0123456789\n").unwrap();
    assert_eq!(read_exact(&mut c, 11), b"0123456789\n");
    c.write_all(b"0123456789x\n").unwrap();
    assert_eq!(read_to_eof(&mut c), b"error: line too long\n");
    other.write_all(b"fine\n").unwrap();
    assert_eq!(read_exact(&mut other, 5), b"fine\n");
}

#[test]
fn a_client_that_does_not_read_is_slowed_down_not_dropped() {
    let server = Server::start(&["--max-pending", "1000"]);
    let c = server.connect();
    let line = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrst\n";
    let total = 4 << 20;
    let mut writer = c.try_clone().unwrap();
    let sender = thread::spawn(move || {
        let mut sent = 0;
        while sent < total {
            writer.write_all(line).unwrap();
            sent += line.len();
        }
        writer.shutdown(Shutdown::Write).unwrap();
        sent
    });
    // The echo outruns the 1000-byte limit again and again while we read.
    let mut reader = c;
    let got = read_to_eof(&mut reader);
    let sent = sender.join().unwrap();
    assert_eq!(got.len(), sent);
    assert!(got.chunks(line.len()).all(|chunk| chunk == line));
}

#[test]
fn sigint_closes_clients_and_exits_zero() {
    let server = Server::start(&[]);
    let mut c = server.connect();
    c.write_all(b"before\n").unwrap();
    assert_eq!(read_exact(&mut c, 7), b"before\n");
    let mut reader = c.try_clone().unwrap();
    let eof = thread::spawn(move || read_to_eof(&mut reader));
    assert_eq!(server.interrupt(), 0);
    assert_eq!(eof.join().unwrap(), b"");
}
