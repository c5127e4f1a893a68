//! `--max-output-total` (SPEC "Server options", issue 19 item 9): output
//! queued for all clients together is bounded. Past it the server stops
//! reading from every client that has output queued (the others are
//! served), until the total is under half; nothing is lost. A broadcast
//! past it drops the largest holder as too slow.

#[macro_use]
mod common;

use std::collections::BTreeSet;
use std::io::{self, BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use socket2::{Domain, Socket, Type};

use common::*;

every_server!(
    unread_echoes_stop_reading_in_total_and_all_arrive,
    held_clients_do_not_hold_up_a_signal,
    a_broadcast_over_the_total_drops_the_largest_holder,
);

/// A connection whose receive buffer is small (set before connect, so the
/// window is small from the start): what it does not read stays with the
/// server, not in its own kernel.
fn connect_small_rcvbuf(addr: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(16 * 1024).expect("SO_RCVBUF");
    socket.set_send_buffer_size(64 * 1024).expect("SO_SNDBUF");
    socket.connect(&addr.into()).expect("connect");
    let stream = TcpStream::from(socket);
    let _ = stream.set_nodelay(true);
    stream
}

/// Client `i`'s lines: numbered, so any loss or reordering shows.
fn echo_data(i: usize, bytes: usize) -> Vec<u8> {
    let mut data = Vec::with_capacity(bytes + 100);
    let mut n = 0;
    while data.len() < bytes {
        data.extend_from_slice(
            format!("client {i:02} line {n:08} {}\n", "x".repeat(60)).as_bytes(),
        );
        n += 1;
    }
    data
}

/// Sends `data` until a write makes no progress for `stall` (the server
/// stopped reading and every buffer on the way is full) or all is sent.
/// Returns the bytes sent.
fn send_until_stalled(stream: &mut TcpStream, data: &[u8], stall: Duration) -> usize {
    stream.set_write_timeout(Some(stall)).unwrap();
    let mut sent = 0;
    while sent < data.len() {
        match stream.write(&data[sent..]) {
            Ok(0) => panic!("write returned 0"),
            Ok(n) => sent += n,
            Err(e) if is_timeout(&e) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("send after {sent} bytes: {e}"),
        }
    }
    sent
}

/// Reads `want.len()` bytes and checks they are exactly `want`.
fn expect_exactly(stream: &mut TcpStream, want: &[u8], who: &str) -> io::Result<()> {
    let mut got = vec![0u8; want.len()];
    let mut off = 0;
    while off < got.len() {
        match stream.read(&mut got[off..]) {
            Ok(0) => {
                return Err(io::Error::other(format!(
                    "{who}: EOF after {off} of {}",
                    want.len()
                )));
            }
            Ok(n) => {
                if got[off..off + n] != want[off..off + n] {
                    let at = off + (0..n).find(|&k| got[off + k] != want[off + k]).unwrap_or(0);
                    return Err(io::Error::other(format!(
                        "{who}: echo differs at byte {at}: got {:?}, want {:?}",
                        show(&got[at..(at + 60).min(off + n)]),
                        show(&want[at..(at + 60).min(want.len())])
                    )));
                }
                off += n;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io::Error::other(format!("{who}: read after {off}: {e}"))),
        }
    }
    Ok(())
}

fn unread_echoes_stop_reading_in_total_and_all_arrive(kind: Kind) {
    const CLIENTS: usize = 8;
    const EACH: usize = 8 << 20;
    const TOTAL: usize = 1 << 20;
    let total = TOTAL.to_string();
    let mut s = Server::start(kind, &["--max-output-total", &total]);
    let mut senders: Vec<(TcpStream, Vec<u8>)> = (0..CLIENTS)
        .map(|i| (connect_small_rcvbuf(s.addr), echo_data(i, EACH)))
        .collect();
    for i in 0..CLIENTS {
        s.wait_connected(i as u64 + 1);
    }
    let rss_before = s.rss_kib().expect("VmRSS (Linux)");
    // Every client sends and never reads, all at once.
    let sent: Vec<usize> = thread::scope(|scope| {
        let handles: Vec<_> = senders
            .iter_mut()
            .map(|(stream, data)| {
                scope.spawn(move || send_until_stalled(stream, data, Duration::from_secs(2)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let accepted: usize = sent.iter().sum();
    let rss_after = s.rss_kib().expect("VmRSS (Linux)");
    eprintln!("sent {sent:?}, {accepted} in all; RSS {rss_before} -> {rss_after} KiB");
    assert!(s.running(), "{}", s.transcript());
    assert!(
        sent.iter().all(|&n| n < EACH),
        "a client sent all {EACH} bytes unread: the server never stopped reading it"
    );
    // The kernel's buffers hold most of what was sent (several MB a
    // connection on loopback); the server's own memory shows what it took.
    // Without the total each client's 4 MiB (--max-pending) would be queued
    // before its reading stopped: 32 MiB for 8 clients.
    assert!(
        rss_after.saturating_sub(rss_before) < 16 * 1024,
        "the server grew from {rss_before} to {rss_after} KiB with --max-output-total {TOTAL}: the total is not bounded"
    );
    // A client that reads is still served meanwhile.
    let mut reader = s.connect();
    for n in 0..20 {
        let line = format!("still served {n}\n");
        reader.send(line.as_bytes());
        reader.expect_line(line.as_bytes());
    }
    // Now they read: every byte each sent comes back, in order, and the
    // rest of what they have to send goes through too.
    thread::scope(|scope| {
        for (i, (stream, data)) in senders.iter_mut().enumerate() {
            let mut read_side = stream.try_clone().unwrap();
            read_side.set_read_timeout(Some(TIMEOUT)).unwrap();
            let (already, data) = (sent[i], &*data);
            scope.spawn(move || {
                expect_exactly(&mut read_side, data, &format!("client {i}")).unwrap()
            });
            scope.spawn(move || {
                stream.set_write_timeout(Some(TIMEOUT)).unwrap();
                stream.write_all(&data[already..]).unwrap();
            });
        }
    });
    s.stop(SIGINT);
}

/// Clients held by the total (a threaded reader waiting for it) still
/// let SIGINT end the server: their queued output is flushed for the
/// usual time, then they are closed, exit 0.
fn held_clients_do_not_hold_up_a_signal(kind: Kind) {
    let mut s = Server::start(kind, &["--max-output-total", "65536"]);
    let mut senders: Vec<TcpStream> = (0..4).map(|_| connect_small_rcvbuf(s.addr)).collect();
    for i in 0..4 {
        s.wait_connected(i + 1);
    }
    let data = echo_data(0, 8 << 20);
    thread::scope(|scope| {
        for stream in &mut senders {
            let data = &data;
            scope.spawn(move || send_until_stalled(stream, data, Duration::from_secs(2)));
        }
    });
    s.stop(SIGINT);
    for id in 1..=4 {
        let line = format!("Client {id} disconnected.");
        assert!(
            s.seen_status(|l| l.starts_with(&line)),
            "{}",
            s.transcript()
        );
    }
}

/// A presence reader's thread: reads every list, each must name `me`, and
/// passes it on, up to the one that names `zzlast`; or says why it failed.
fn read_lists(mut conn: Conn, me: String, tx: mpsc::Sender<Result<String, String>>) {
    loop {
        let mut line = String::new();
        match conn.reader.read_line(&mut line) {
            Ok(n) if n > 0 && line.ends_with('\n') => {}
            other => {
                let _ = tx.send(Err(format!("{me}: {other:?} {line:?}")));
                return;
            }
        }
        if !line.split_whitespace().any(|n| n == me) {
            let _ = tx.send(Err(format!("{me} got a list without itself: {line:?}")));
            return;
        }
        let done = line.contains("zzlast");
        if tx.send(Ok(line)).is_err() || done {
            return;
        }
    }
}

fn list(names: &BTreeSet<String>) -> String {
    format!("{}\n", names.iter().cloned().collect::<Vec<_>>().join(" "))
}

fn a_broadcast_over_the_total_drops_the_largest_holder(kind: Kind) {
    // Lists of about 1.3 KB, a broadcast about 80 KB in all (the limit is
    // well above that: threaded-server counts a broadcast before its
    // writers have written it). The kernel takes a few MB for the client
    // that never reads before the server holds any of its output.
    const READERS: usize = 60;
    const CHURNS: usize = 10_000;
    // --max-pending as large as allowed: only the total can drop anyone.
    let mut s = Server::start(
        kind,
        &[
            "-H",
            "presence",
            "--max-output-total",
            "1048576",
            "--max-pending",
            "1099511627776",
        ],
    );
    let mut slow = Conn::from_stream(connect_small_rcvbuf(s.addr));
    s.wait_connected(1);
    slow.send(b"slow\n");
    slow.expect_line(b"slow\n");
    let mut names = BTreeSet::from(["slow".to_string()]);
    let (tx, rx) = mpsc::channel();
    let mut threads = Vec::new();
    for i in 0..READERS {
        let name = format!("reader{i:02}xxxxxxxxxxxx");
        let mut c = s.connect_as(i as u64 + 2);
        c.send(format!("{name}\n").as_bytes());
        names.insert(name.clone());
        assert_eq!(c.line_string(), list(&names));
        let tx = tx.clone();
        threads.push(thread::spawn(move || read_lists(c, name, tx)));
        // Every earlier reader got this join's list: none is behind.
        for _ in 0..i {
            match rx.recv_timeout(TIMEOUT) {
                Ok(Ok(got)) => assert_eq!(got, list(&names)),
                other => panic!("a join list: {other:?}\n{}", s.transcript()),
            }
        }
    }
    let mut id = READERS as u64 + 2;
    let mut churns = 0;
    while !s.seen_status(|l| l.starts_with("Client 1 disconnected.")) {
        assert!(
            churns < CHURNS,
            "a client that never reads was not dropped after {CHURNS} churns with --max-output-total 1048576\n{}",
            s.transcript()
        );
        let mut c = s.connect();
        // 20 bytes, the longest name: bigger lists.
        let name = format!("churn{churns:05}yyyyyyyyyy");
        c.send(format!("{name}\n").as_bytes());
        assert!(c.line_string().contains(&name));
        drop(c);
        s.wait_disconnected(id);
        id += 1;
        churns += 1;
        // Both lists reached every reader (so only the client that never
        // reads falls behind).
        for _ in 0..2 * READERS {
            match rx.recv_timeout(TIMEOUT) {
                Ok(Ok(_)) => {}
                Ok(Err(why)) => panic!("{why}\n{}", s.transcript()),
                Err(e) => panic!("churn {churns}: {e}\n{}", s.transcript()),
            }
        }
    }
    eprintln!("the client that never reads was dropped after {churns} churns");
    s.wait_stderr("the diagnostic for the largest holder", |l| {
        l.contains("client 1: dropped") && l.contains("--max-output-total 1048576")
    });
    // The others keep getting the list, without the slow client.
    names.remove("slow");
    names.insert("zzlast".to_string());
    let want = list(&names);
    let mut last = s.connect_as(id);
    last.send(b"zzlast\n");
    assert_eq!(last.line_string(), want);
    let mut seen = 0;
    while seen < READERS {
        let got = rx.recv_timeout(TIMEOUT).expect("the last list");
        let got = got.unwrap_or_else(|why| panic!("{why}"));
        if got.contains("zzlast") {
            assert_eq!(got, want);
            seen += 1;
        }
    }
    // Only the client that never read was dropped.
    let drops: Vec<&String> = s
        .stderr_lines()
        .iter()
        .filter(|l| l.contains("dropped"))
        .collect();
    assert_eq!(drops.len(), 1, "{drops:?}");
    for t in threads {
        t.join().unwrap();
    }
    s.stop(SIGINT);
}
