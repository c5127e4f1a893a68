//! Limits every handler shares (SPEC "Framing", `--max-line`,
//! `--max-clients`) and robustness: garbage never brings a server down.

#[macro_use]
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;

use common::*;

every_server!(
    max_line_exceeded_closes_only_that_client,
    max_line_applies_to_ledger,
    ten_megabyte_line_without_newline,
    max_clients_rejects_the_extra_one,
    garbage_never_crashes_echo,
    garbage_never_crashes_queue,
    garbage_never_crashes_presence,
    garbage_never_crashes_ledger,
);

fn expect_line_too_long(c: &mut Conn) {
    c.expect_line(b"error: line too long\n");
    c.expect_closed();
}

fn max_line_exceeded_closes_only_that_client(kind: Kind) {
    let mut s = Server::start(kind, &["-H", "echo", "--max-line", "10"]);
    let mut other = s.connect_as(1);
    let mut c = s.connect_as(2);
    // Exactly 10 bytes is fine, the terminator not counted.
    c.send(b"0123456789\n");
    c.expect_line(b"0123456789\n");
    c.send(b"0123456789\r\n");
    c.expect_line(b"0123456789\r\n");
    c.send(b"0123456789a\n");
    expect_line_too_long(&mut c);
    s.wait_disconnected(2);
    other.send(b"still here\n");
    other.expect_line(b"still here\n");
    // A partial line (no newline yet) over the limit is caught as well.
    let mut d = s.connect_as(3);
    d.send(b"01234567890123");
    expect_line_too_long(&mut d);
    other.send(b"ok\n");
    other.expect_line(b"ok\n");
    s.stop(SIGINT);
}

fn max_line_applies_to_ledger(kind: Kind) {
    let dir = TempDir::new("limits-ledger");
    let log = dir.join("log.txt").to_string_lossy().into_owned();
    let mut s = Server::start_in(
        kind,
        &["-H", "ledger", "--max-line", "20", "--log", &log],
        dir,
    );
    let mut ok = s.connect_as(1);
    let mut c = s.connect_as(2);
    c.send(b"Al credit 1\nBartholomew credit 100000\n");
    expect_line_too_long(&mut c);
    ok.send(b"Cy credit 2\n");
    ok.shutdown_write();
    ok.expect_eof();
    s.stop(SIGINT);
    // The line before the long one counts; the long one does not.
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "Al $1.00\nCy $2.00\n"
    );
}

fn ten_megabyte_line_without_newline(kind: Kind) {
    let mut s = Server::start(kind, &["-H", "echo"]);
    let mut other = s.connect_as(1);
    let c = s.connect_as(2);
    let mut writer = c.stream.try_clone().unwrap();
    let sender = thread::spawn(move || {
        let chunk = vec![b'x'; 64 * 1024];
        // The server closes on us part-way: errors end the sending.
        for _ in 0..160 {
            if writer.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let mut c = c;
    c.expect_line(b"error: line too long\n");
    other.send(b"served meanwhile\n");
    other.expect_line(b"served meanwhile\n");
    sender.join().unwrap();
    c.expect_closed();
    s.wait_disconnected(2);
    assert!(s.running());
    other.send(b"and after\n");
    other.expect_line(b"and after\n");
    s.stop(SIGINT);
}

fn max_clients_rejects_the_extra_one(kind: Kind) {
    let mut s = Server::start(kind, &["-H", "echo", "--max-clients", "5"]);
    let mut conns: Vec<Conn> = (1..=5).map(|id| s.connect_as(id)).collect();
    let mut sixth = s.connect();
    sixth.expect_line(b"error: too many clients\n");
    sixth.expect_closed();
    s.wait_stderr("a diagnostic about the rejected client", |l| {
        !l.trim().is_empty()
    });
    // The five are still served.
    for (i, c) in conns.iter_mut().enumerate() {
        let msg = format!("client {}\n", i + 1);
        c.send(msg.as_bytes());
        c.expect_line(msg.as_bytes());
    }
    drop(conns.remove(0));
    assert_eq!(s.wait_disconnected(1), 4);
    // The rejected connection got no id: the next client is number 6.
    let mut next = s.connect();
    assert_eq!(s.wait_connected(6), 5);
    next.send(b"hi\n");
    next.expect_line(b"hi\n");
    let sixes = s
        .status_lines()
        .iter()
        .filter(|l| l.starts_with("Client 6 "))
        .count();
    assert_eq!(sixes, 1, "{}", s.transcript());
    s.stop(SIGINT);
}

/// Random bytes (with some newlines, some long runs without) from several
/// clients, some reading and some not, some closing abruptly.
fn throw_garbage(s: &Server) {
    let addr = s.addr;
    let throwers: Vec<_> = (0..6u64)
        .map(|i| {
            thread::spawn(move || {
                let mut rng = Rng::new(7000 + i);
                let Ok(mut stream) = TcpStream::connect(addr) else {
                    return;
                };
                let _ = stream.set_read_timeout(Some(std::time::Duration::from_millis(200)));
                let _ = stream.set_write_timeout(Some(TIMEOUT));
                for round in 0..8 {
                    let len = 1 + rng.below(200_000) as usize;
                    let mut junk = rng.bytes(len);
                    if i % 2 == 0 {
                        // Sprinkle newlines so there are many short lines.
                        for _ in 0..junk.len() / 50 {
                            let at = rng.below(junk.len() as u64) as usize;
                            junk[at] = b'\n';
                        }
                    }
                    if stream.write_all(&junk).is_err() {
                        return;
                    }
                    if i % 3 == 0 && round % 2 == 0 {
                        let mut buf = vec![0; 1 << 16];
                        let _ = stream.read(&mut buf);
                    }
                }
                // Odd ones vanish without reading (a reset for the server).
            })
        })
        .collect();
    for t in throwers {
        t.join().unwrap();
    }
}

fn garbage_never_crashes_echo(kind: Kind) {
    let mut s = Server::start(kind, &["-H", "echo"]);
    throw_garbage(&s);
    let mut c = s.connect();
    c.send(b"fresh\n");
    c.expect_line(b"fresh\n");
    assert!(s.running());
    s.stop(SIGINT);
}

fn garbage_never_crashes_queue(kind: Kind) {
    let mut s = Server::start(kind, &["-H", "queue"]);
    throw_garbage(&s);
    let mut c = s.connect();
    c.send(b"size\n");
    let answer = c.line_string();
    let n: usize = answer
        .trim_end()
        .parse()
        .unwrap_or_else(|_| panic!("size answered {answer:?}"));
    assert!(n <= 10, "size {n} over the default capacity of 10");
    c.send(b"frob\n");
    c.expect_line(b"error: unknown command\n");
    s.stop(SIGINT);
}

fn garbage_never_crashes_presence(kind: Kind) {
    let mut s = Server::start(kind, &["-H", "presence"]);
    throw_garbage(&s);
    let mut c = s.connect();
    c.send(b"fresh\n");
    // Random bytes can hardly form a valid name, but the list must name us.
    let line = c.line_string();
    assert!(
        line.split_whitespace().any(|n| n == "fresh"),
        "list {line:?}"
    );
    s.stop(SIGINT);
}

fn garbage_never_crashes_ledger(kind: Kind) {
    let dir = TempDir::new("garbage-ledger");
    let log = dir.join("log.txt").to_string_lossy().into_owned();
    let mut s = Server::start_in(kind, &["-H", "ledger", "--log", &log], dir);
    throw_garbage(&s);
    let mut c = s.connect();
    c.send(b"zzzFresh credit 1.25\n");
    c.shutdown_write();
    c.expect_eof();
    assert!(s.running());
    s.stop(SIGINT);
    let log = std::fs::read_to_string(&log).expect("the log");
    assert!(
        log.ends_with("zzzFresh $1.25\n") || log.contains("\nzzzFresh $1.25\n"),
        "log: {log:?}"
    );
}
