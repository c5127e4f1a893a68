//! presence (SPEC "presence", seed 001 task 2): the first message is a name;
//! every joined client gets the sorted list on each join and leave; bad and
//! duplicate names get an error and a close; a client that does not read is
//! dropped and the others are told.
//!
//! "Nobody else heard anything" is checked with a sentinel: a later join whose
//! list must be the very next line every other client reads.

#[macro_use]
mod common;

use std::collections::BTreeSet;
use std::io::BufRead;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::FromRawFd;
use std::sync::mpsc;
use std::thread;

use common::*;

every_server!(
    seed_example,
    invalid_names_rejected,
    duplicate_name_rejected,
    later_messages_ignored,
    two_hundred_join_then_leave,
    never_reading_client_is_dropped,
);

fn start_presence(kind: Kind, extra: &[&str]) -> Server {
    let mut args = vec!["-H", "presence"];
    args.extend_from_slice(extra);
    let s = Server::start(kind, &args);
    assert_eq!(s.handler, "presence");
    s
}

fn seed_example(kind: Kind) {
    let mut s = start_presence(kind, &[]);
    let mut greg = s.connect_as(1);
    greg.send(b"greg\n");
    greg.expect_line(b"greg\n");
    let mut bob = s.connect_as(2);
    // Without a newline: the 50 ms rule makes it a message.
    bob.send(b"bob");
    greg.expect_line(b"bob greg\n");
    bob.expect_line(b"bob greg\n");
    let mut vlad = s.connect_as(3);
    vlad.send(b"vlad\r\n");
    greg.expect_line(b"bob greg vlad\n");
    bob.expect_line(b"bob greg vlad\n");
    vlad.expect_line(b"bob greg vlad\n");
    drop(bob);
    s.wait_disconnected(2);
    greg.expect_line(b"greg vlad\n");
    vlad.expect_line(b"greg vlad\n");
    // Sentinel: nothing else was sent to greg or vlad in between.
    let mut zed = s.connect_as(4);
    zed.send(b"zed");
    for c in [&mut greg, &mut vlad, &mut zed] {
        c.expect_line(b"greg vlad zed\n");
    }
    s.stop(SIGINT);
}

/// Sends `name` as a first message and expects `error: ...\n` then a close.
fn expect_rejected(s: &mut Server, id: u64, name: &[u8]) {
    let mut c = s.connect_as(id);
    c.send(name);
    let line = c.line();
    assert!(
        line.starts_with(b"error: ") && line.len() > b"error: \n".len(),
        "name {:?}: want `error: <reason>\\n`, got {:?}",
        show(name),
        show(&line)
    );
    c.expect_eof();
    s.wait_disconnected(id);
}

fn invalid_names_rejected(kind: Kind) {
    let mut s = start_presence(kind, &[]);
    let mut alice = s.connect_as(1);
    alice.send(b"alice\n");
    alice.expect_line(b"alice\n");
    let mut id = 2;
    let bad: &[&[u8]] = &[
        b"bad name\n",
        b"bob!\n",
        b"\xc3\xa9mile\n",
        b"under_score\n",
        b"aaaaaaaaaaaaaaaaaaaaa\n", // 21 bytes
        b"\n",                      // empty
        b"no-newline",
    ];
    for name in bad {
        expect_rejected(&mut s, id, name);
        id += 1;
    }
    // 20 bytes of [A-Za-z0-9] is fine; alice hears only this join.
    let mut ok = s.connect_as(id);
    ok.send(b"Abcdefghij0123456789\n");
    ok.expect_line(b"Abcdefghij0123456789 alice\n");
    alice.expect_line(b"Abcdefghij0123456789 alice\n");
    s.stop(SIGINT);
}

fn duplicate_name_rejected(kind: Kind) {
    let mut s = start_presence(kind, &[]);
    let mut alice = s.connect_as(1);
    alice.send(b"alice\n");
    alice.expect_line(b"alice\n");
    expect_rejected(&mut s, 2, b"alice\n");
    expect_rejected(&mut s, 3, b"alice");
    // Names are case-sensitive bytes: Alice is another name.
    let mut big = s.connect_as(4);
    big.send(b"Alice\n");
    big.expect_line(b"Alice alice\n");
    alice.expect_line(b"Alice alice\n");
    s.stop(SIGINT);
}

fn later_messages_ignored(kind: Kind) {
    let mut s = start_presence(kind, &[]);
    let mut a = s.connect_as(1);
    a.send(b"amy\n");
    a.expect_line(b"amy\n");
    let mut b = s.connect_as(2);
    b.send(b"ben\n");
    a.expect_line(b"amy ben\n");
    b.expect_line(b"amy ben\n");
    a.send(b"hello everyone\nbob\n");
    b.send(b"cal");
    let mut c = s.connect_as(3);
    c.send(b"cat\n");
    for x in [&mut a, &mut b, &mut c] {
        x.expect_line(b"amy ben cat\n");
    }
    s.stop(SIGINT);
}

fn list(names: &BTreeSet<String>) -> Vec<u8> {
    let mut line = names.iter().cloned().collect::<Vec<_>>().join(" ");
    line.push('\n');
    line.into_bytes()
}

fn two_hundred_join_then_leave(kind: Kind) {
    const N: usize = 200;
    let mut s = start_presence(kind, &[]);
    let mut joined: Vec<(String, Conn)> = Vec::new();
    let mut names = BTreeSet::new();
    for i in 0..N {
        // Not in sorted order of joining: the list must be sorted anyway.
        let name = format!("c{:03}", (i * 7919) % N);
        let mut c = s.connect_as(i as u64 + 1);
        c.send(format!("{name}\n").as_bytes());
        names.insert(name.clone());
        joined.push((name, c));
        let want = list(&names);
        for (_, c) in joined.iter_mut() {
            c.expect_line(&want);
        }
    }
    // Leave in another order: every second one, then the rest.
    let mut order: Vec<usize> = (0..N).step_by(2).collect();
    order.extend((1..N).step_by(2).rev());
    let mut slots: Vec<Option<(String, Conn)>> = joined.into_iter().map(Some).collect();
    for &i in &order {
        let (name, c) = slots[i].take().unwrap();
        drop(c);
        names.remove(&name);
        if names.is_empty() {
            break;
        }
        let want = list(&names);
        for (_, c) in slots.iter_mut().flatten() {
            c.expect_line(&want);
        }
    }
    s.wait_status("the count back to 0", |l| {
        l.starts_with("Client ") && l.ends_with(" disconnected. Number of connected clients = 0")
    });
    // Each leave was broadcast (so the server had handled it) before the next
    // client left: the status lines follow that order, with counts to match.
    let want: Vec<String> = order
        .iter()
        .enumerate()
        .map(|(k, i)| {
            format!(
                "Client {} disconnected. Number of connected clients = {}",
                i + 1,
                N - 1 - k
            )
        })
        .collect();
    let got: Vec<String> = s
        .status_lines()
        .iter()
        .filter(|l| l.contains(" disconnected. "))
        .cloned()
        .collect();
    if got != want {
        let first = got.iter().zip(&want).position(|(g, w)| g != w);
        panic!(
            "disconnect status lines are not in the order the clients left \
             (first difference at #{first:?}: got {:?}, want {:?})\n{}",
            first.map(|k| &got[k]),
            first.map(|k| &want[k]),
            s.transcript()
        );
    }
    s.stop(SIGINT);
}

/// A client whose receive buffer is small (set before connect, so the TCP
/// window is small too), so unread lists pile up on the server quickly.
fn connect_small_rcvbuf(addr: SocketAddr) -> TcpStream {
    let SocketAddr::V4(v4) = addr else {
        panic!("IPv4 expected")
    };
    // SAFETY: plain socket calls on a fresh fd we own; the fd is handed to
    // TcpStream (which closes it) only after connect succeeded.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let size: libc::c_int = 4096;
        let rc = libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        assert_eq!(rc, 0, "setsockopt: {}", std::io::Error::last_os_error());
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: v4.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let rc = libc::connect(
            fd,
            (&sin as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            libc::close(fd);
            panic!("connect {addr}: {e}");
        }
        TcpStream::from_raw_fd(fd)
    }
}

/// What a reader thread saw.
enum Seen {
    Line,
    Sentinel(String, String),
    Failed(String),
}

fn never_reading_client_is_dropped(kind: Kind) {
    const READERS: usize = 40;
    let mut s = start_presence(kind, &["--max-pending", "65536"]);
    let mut slow = Conn::from_stream(connect_small_rcvbuf(s.addr));
    s.wait_connected(1);
    slow.send(b"slow\n");
    // Joined before anyone else (the threaded server may otherwise handle a
    // later client's name first); after this first list it never reads.
    slow.expect_line(b"slow\n");
    // Readers with long names make every list about 1 KB.
    let mut names = BTreeSet::from(["slow".to_string()]);
    let mut conns = Vec::new();
    for i in 0..READERS {
        let name = format!("reader{i:02}xxxxxxxxxxxx");
        let mut c = s.connect_as(i as u64 + 2);
        c.send(format!("{name}\n").as_bytes());
        names.insert(name.clone());
        let want = list(&names);
        for (_, c) in conns.iter_mut() {
            let c: &mut Conn = c;
            c.expect_line(&want);
        }
        c.expect_line(&want);
        conns.push((name, c));
    }
    // Each reader drains its socket in a thread, checks every list it gets
    // names itself, and reports each line; the churn below waits for every
    // reader to have read each list before going on, so a reader is never
    // more than two lists behind and only the client that never reads can
    // pass --max-pending.
    let (tx, rx) = mpsc::channel();
    let mut threads = Vec::new();
    for (name, mut c) in conns {
        let tx = tx.clone();
        threads.push(thread::spawn(move || {
            loop {
                let mut line = Vec::new();
                match c.reader.read_until(b'\n', &mut line) {
                    Ok(_) if line.ends_with(b"\n") => {}
                    other => {
                        let _ = tx.send(Seen::Failed(format!(
                            "{name}: read {other:?}, got {:?}",
                            show(&line)
                        )));
                        return;
                    }
                }
                let line = String::from_utf8_lossy(&line).into_owned();
                if !line.split_whitespace().any(|n| n == name) {
                    let _ = tx.send(Seen::Failed(format!(
                        "{name} got a list without itself: {line:?}"
                    )));
                    return;
                }
                if line.contains("zzsentinel") {
                    let _ = tx.send(Seen::Sentinel(name, line));
                    return;
                }
                if tx.send(Seen::Line).is_err() {
                    return;
                }
            }
        }));
    }
    let mut lines_read = 0;
    let mut wait_lines = |s: &Server, want: usize| {
        while lines_read < want {
            match rx.recv_timeout(TIMEOUT) {
                Ok(Seen::Line) => lines_read += 1,
                Ok(Seen::Failed(why)) => panic!("a reader failed: {why}\n{}", s.transcript()),
                Ok(Seen::Sentinel(name, line)) => panic!("{name}: early {line:?}"),
                Err(e) => panic!(
                    "readers got {lines_read} of {want} lists: {e}\n{}",
                    s.transcript()
                ),
            }
        }
    };
    // Churn until the server gives up on the client that never reads.
    let mut id = READERS as u64 + 2;
    let mut dropped = false;
    for i in 0..20_000 {
        let name = format!("churn{i:05}yyyyyyyyyy");
        let mut c = s.connect();
        c.send(format!("{name}\n").as_bytes());
        let first = c.line_string();
        assert!(
            first.split_whitespace().any(|n| n == name)
                && first.split_whitespace().count() > READERS,
            "churner got {first:?}"
        );
        drop(c);
        // Its join and its leave: two lists for every reader.
        wait_lines(&s, 2 * READERS * (i + 1));
        s.wait_disconnected(id);
        id += 1;
        if s.seen_status(|l| l.starts_with("Client 1 disconnected.")) {
            eprintln!("the slow client was dropped after {} churns", i + 1);
            dropped = true;
            break;
        }
    }
    assert!(
        dropped,
        "a client that never reads was not dropped with --max-pending 65536\n{}",
        s.transcript()
    );
    // A diagnostic says why.
    s.wait_stderr("a diagnostic about the dropped client", |l| {
        !l.trim().is_empty()
    });
    names.remove("slow");
    names.insert("zzsentinel".to_string());
    let want = String::from_utf8(list(&names)).unwrap();
    let mut sentinel = s.connect_as(id);
    sentinel.send(b"zzsentinel\n");
    assert_eq!(sentinel.line_string(), want);
    let mut sentinels = 0;
    while sentinels < READERS {
        match rx.recv_timeout(TIMEOUT) {
            Ok(Seen::Line) => {}
            Ok(Seen::Sentinel(name, line)) => {
                assert_eq!(line, want, "{name}'s list after the drop");
                sentinels += 1;
            }
            Ok(Seen::Failed(why)) => panic!("a reader failed: {why}"),
            Err(e) => panic!("{sentinels} of {READERS} readers got the sentinel list: {e}"),
        }
    }
    for t in threads {
        t.join().expect("a reader failed");
    }
    s.stop(SIGINT);
}
