//! echo (SPEC "echo"): every message back exactly as received, terminator
//! included; `--upper`; ids never reused; the periodic count; a client that
//! sends faster than it reads is slowed down, never dropped.

#[macro_use]
mod common;

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use common::*;

every_server!(
    exact_terminators,
    eof_tail_is_echoed_then_closed,
    upper_unicode_and_invalid_utf8,
    ids_never_reused,
    report_every_while_busy,
    fifty_megabytes_unread_then_read,
);

fn exact_terminators(kind: Kind) {
    let mut s = Server::start(kind, &["-H", "echo"]);
    assert_eq!(s.handler, "echo");
    let mut c = s.connect_as(1);
    c.send(b"one\n");
    c.expect_bytes(b"one\n");
    c.send(b"two\r\n");
    c.expect_bytes(b"two\r\n");
    // SPEC: 50 ms with no newline makes a message; the socket stays open.
    c.send(b"hello");
    c.expect_bytes(b"hello");
    c.send(b" world\nfour\r\nfive");
    c.expect_bytes(b" world\nfour\r\nfive");
    // Still open and served after an idle-flushed message.
    c.send(b"six\n");
    c.expect_bytes(b"six\n");
    drop(c);
    s.wait_disconnected(1);
    s.stop(SIGINT);
}

fn eof_tail_is_echoed_then_closed(kind: Kind) {
    let mut s = Server::start(kind, &[]);
    assert_eq!(s.handler, "echo", "echo is the default handler");
    let mut c = s.connect_as(1);
    c.send(b"a\nb\r\nbye");
    c.shutdown_write();
    // SPEC: at EOF the bytes after the last \n are a last line; the server
    // sends everything queued, then closes.
    let got = c.read_to_eof();
    assert_eq!(show(&got), show(b"a\nb\r\nbye"));
    s.wait_disconnected(1);
    s.stop(SIGINT);
}

fn upper_unicode_and_invalid_utf8(kind: Kind) {
    let mut s = Server::start(kind, &["-H", "echo", "--upper"]);
    let mut c = s.connect_as(1);
    c.send("straße\n".as_bytes());
    c.expect_line("STRASSE\n".as_bytes());
    c.send("héllo wörld, ça va?\r\n".as_bytes());
    c.expect_line("HÉLLO WÖRLD, ÇA VA?\r\n".as_bytes());
    // Not UTF-8: ASCII letters only, every other byte unchanged.
    c.send(b"ab\xffcd\xe9z 1!\n");
    c.expect_line(b"AB\xffCD\xe9Z 1!\n");
    // Idle-flushed message, upper-cased too.
    c.send(b"quiet");
    c.expect_bytes(b"QUIET");
    s.stop(SIGINT);
}

fn ids_never_reused(kind: Kind) {
    let mut s = Server::start(kind, &["-H", "echo"]);
    let a = s.connect();
    assert_eq!(s.wait_connected(1), 1);
    let b = s.connect();
    assert_eq!(s.wait_connected(2), 2);
    drop(b);
    assert_eq!(s.wait_disconnected(2), 1);
    let mut c = s.connect();
    assert_eq!(
        s.wait_connected(3),
        2,
        "a reconnecting client gets a new id"
    );
    c.send(b"ping\n");
    c.expect_line(b"ping\n");
    drop(a);
    assert_eq!(s.wait_disconnected(1), 1);
    drop(c);
    assert_eq!(s.wait_disconnected(3), 0);
    let _d = s.connect();
    assert_eq!(s.wait_connected(4), 1);
    s.stop(SIGINT);
}

fn report_every_while_busy(kind: Kind) {
    const CLIENTS: u64 = 50;
    let mut s = Server::start(kind, &["-H", "echo", "--report-every", "0.5"]);
    let mut conns = Vec::new();
    for id in 1..=CLIENTS {
        conns.push(s.connect_as(id));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let round_trips = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for (i, mut c) in conns.into_iter().enumerate() {
        let stop = stop.clone();
        let round_trips = round_trips.clone();
        workers.push(thread::spawn(move || {
            let msg = format!("client {i} keeps the server busy {}\n", "x".repeat(100));
            let batch = msg.repeat(20);
            while !stop.load(Ordering::Relaxed) {
                c.send(batch.as_bytes());
                c.expect_bytes(batch.as_bytes());
                round_trips.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // The periodic lines keep coming while the clients hammer the server;
    // every one of them says 50. Four lines at a 0.5 s period: the 20 s
    // timeout per line is generous (no timing assertion).
    for _ in 0..4 {
        let line = s.wait_status("a periodic count line", |l| {
            l.starts_with("Number of connected clients = ")
        });
        assert_eq!(
            line,
            "Number of connected clients = 50",
            "{}",
            s.transcript()
        );
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("an echo client failed");
    }
    assert!(round_trips.load(Ordering::Relaxed) > 0);
    s.wait_status("the count back to 0", |l| {
        l.ends_with("disconnected. Number of connected clients = 0")
    });
    s.wait_status_eq("Number of connected clients = 0");
    s.stop(SIGINT);
}

fn fifty_megabytes_unread_then_read(kind: Kind) {
    const TOTAL: usize = 50 * 1024 * 1024;
    // Numbered lines of varied length, so loss, duplication or reordering
    // all show up in the comparison.
    let mut rng = Rng::new(50);
    let mut data = Vec::with_capacity(TOTAL + 2000);
    let mut n = 0u64;
    while data.len() < TOTAL {
        let len = 20 + rng.below(1500) as usize;
        let fill = (b'a' + (n % 26) as u8) as char;
        data.extend_from_slice(format!("{n:010} {}\n", fill.to_string().repeat(len)).as_bytes());
        n += 1;
    }
    let data = Arc::new(data);

    let mut s = Server::start(kind, &["-H", "echo"]);
    let c = s.connect_as(1);
    let mut writer_stream = c.stream.try_clone().unwrap();
    // Short write timeout: a write that makes no progress for 1 s means the
    // server stopped reading from us (as it must), so the reader may start.
    writer_stream
        .set_write_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let (blocked_tx, blocked_rx) = std::sync::mpsc::channel::<()>();
    let wdata = data.clone();
    let writer = thread::spawn(move || -> io::Result<bool> {
        let mut off = 0;
        let mut ever_blocked = false;
        let mut stalled = 0;
        while off < wdata.len() {
            match writer_stream.write(&wdata[off..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(k) => {
                    off += k;
                    stalled = 0;
                }
                Err(e) if is_timeout(&e) => {
                    if !ever_blocked {
                        ever_blocked = true;
                        let _ = blocked_tx.send(());
                    }
                    stalled += 1;
                    if stalled > 60 {
                        return Err(io::Error::other("no write progress for 60 s"));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let _ = blocked_tx.send(());
        Ok(ever_blocked)
    });
    // Start reading only once the writer is blocked or done.
    blocked_rx
        .recv_timeout(Duration::from_secs(120))
        .expect("the writer neither blocked nor finished");
    assert!(
        s.running(),
        "server died while a client was not reading\n{}",
        s.transcript()
    );
    let mut reader = c.reader;
    let mut got = vec![0u8; data.len()];
    let mut off = 0;
    while off < got.len() {
        match reader.read(&mut got[off..]) {
            Ok(0) => panic!("EOF after {off} of {} bytes", data.len()),
            Ok(k) => {
                let (a, b) = (&got[off..off + k], &data[off..off + k]);
                if a != b {
                    let at = off + a.iter().zip(b).position(|(x, y)| x != y).unwrap();
                    panic!(
                        "reply differs at byte {at}: got {:?}, want {:?}",
                        show(&got[at..(at + 60).min(off + k)]),
                        show(&data[at..(at + 60).min(data.len())])
                    );
                }
                off += k;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("read after {off} of {} bytes: {e}", data.len()),
        }
    }
    let ever_blocked = writer
        .join()
        .unwrap()
        .expect("the writer failed: the server dropped a slow client");
    // SPEC: the server stops reading while the client's queued output is over
    // --max-pending (4 MiB by default): 50 MB cannot all have been taken in.
    assert!(
        ever_blocked,
        "50 MB were accepted without the writer ever blocking: the server buffered without bound"
    );
    if let Some(kib) = s.peak_rss_kib() {
        assert!(
            kib < 40 * 1024,
            "server peak RSS {kib} KiB for a 50 MB unread stream: memory is not bounded by --max-pending"
        );
    }
    s.stop(SIGINT);
}
