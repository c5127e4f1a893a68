//! Echo over UDP (`--udp`): each client is its own UDP socket connected to
//! the server, keeps at most `--window` datagrams in flight, and checks
//! every reply byte for byte (an echo server returns each datagram
//! exactly). Each datagram is a generated echo line, which names its client
//! and number, so a reply is matched to its datagram whatever the order.
//!
//! UDP loses datagrams: one whose reply has not come within
//! `--udp-timeout` is counted lost and its place in the window is freed, so
//! a run never hangs on a loss. A reply that comes after that is counted
//! late, not checked twice. Losses do not fail a run (they are what UDP
//! does; the summary reports them). A reply that matches no datagram in
//! flight, or differs from its datagram, is an error; so is a run that got
//! no reply at all (nothing answers at that address), and a socket error
//! (ICMP port unreachable shows up as `ECONNREFUSED`).
//!
//! Datagrams go out and come back in batches (`sendmmsg`, `recvmmsg`: the
//! servers' [`batch`] module), so at 64 in flight the load generator costs
//! a few system calls per batch rather than two per datagram, and is not
//! what a run measures. A client is driven by its events: it reads until a
//! batch comes back short (its socket is empty: see [`batch`]), then fills
//! its window, and waits for the next event.

use std::collections::{HashSet, VecDeque};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket as StdUdp};
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};

use super::lines;
use super::spread::{Part, Slot, spread};
use super::stats::Latencies;
use super::{Options, Report, RunError, diag_limited, interrupted, poll_timeout, would_block};
use crate::server_core::datagram::batch::{self, Receiver, Sender};

/// The largest UDP payload (IPv4): `--line-bytes` must fit in one datagram.
pub const MAX_DATAGRAM: usize = 65_507;

struct Client {
    /// 1-based, as in the generated lines.
    id: usize,
    sock: UdpSocket,
    /// Datagrams sent; the next one's number.
    sent: u64,
    /// Datagrams waiting for their reply, in sending order: number, time sent.
    in_flight: VecDeque<(u64, Instant)>,
    /// Numbers counted lost whose reply may still come (then it is late).
    lost: HashSet<u64>,
    done: bool,
}

struct Run<'a> {
    opts: &'a Options,
    latencies: Latencies,
    /// The datagrams of one send batch, one after the other.
    lines: Vec<u8>,
    /// Where each datagram in `lines` ends.
    ends: Vec<usize>,
    expect: Vec<u8>,
    rx: Receiver,
    tx: Sender,
    part: Part,
    shown: u64,
    finished: usize,
    /// When the oldest datagram in flight anywhere expires (or later).
    next_expiry: Option<Instant>,
}

impl Run<'_> {
    /// Sends, receives and checks until the socket would block, then
    /// retires the client if it has nothing left to do.
    fn drive(&mut self, c: &mut Client, poll: &Poll) {
        if c.done {
            return;
        }
        if let Err(e) = self.pump(c) {
            let how = if e.kind() == io::ErrorKind::ConnectionRefused {
                " (nothing listens for UDP there?)"
            } else {
                ""
            };
            diag_limited(&mut self.shown, 5, || {
                format!("udp client {}: {e}{how}", c.id)
            });
            self.part.errors += 1;
            self.retire(c, poll);
            return;
        }
        if c.sent == self.opts.lines && c.in_flight.is_empty() {
            self.retire(c, poll);
        }
    }

    fn retire(&mut self, c: &mut Client, poll: &Poll) {
        c.done = true;
        let _ = poll.registry().deregister(&mut c.sock);
        self.finished += 1;
    }

    /// Takes the replies that came, then fills the window.
    fn pump(&mut self, c: &mut Client) -> io::Result<()> {
        loop {
            // Out of `self` while its replies are checked (no allocation).
            let mut rx = std::mem::take(&mut self.rx);
            let want = rx.capacity();
            let received = rx.recv(&c.sock, want);
            if let Ok(n) = received {
                for i in 0..n {
                    let reply = rx.get(i).0;
                    self.part.bytes_received += reply.len() as u64;
                    self.take_reply(c, reply);
                }
            }
            self.rx = rx;
            match received {
                // Short: the socket is empty, the next reply is an event.
                Ok(n) if n < want => break,
                Ok(_) => {}
                Err(e) if would_block(&e) => break,
                Err(e) if interrupted(&e) => {}
                Err(e) => return Err(e),
            }
        }
        while c.sent < self.opts.lines && (c.in_flight.len() as u64) < self.opts.window {
            let room = (self.opts.window - c.in_flight.len() as u64).min(self.opts.lines - c.sent);
            let count = usize::try_from(room)
                .unwrap_or(usize::MAX)
                .min(batch::MAX_BATCH);
            self.lines.clear();
            self.ends.clear();
            for k in 0..count as u64 {
                lines::echo_line(c.id, c.sent + k, self.opts.line_bytes, &mut self.lines);
                self.ends.push(self.lines.len());
            }
            let datagrams = self.ends.iter().scan(0, |start, &end| {
                let datagram = &self.lines[*start..end];
                *start = end;
                Some((None, datagram))
            });
            let sent = match self.tx.send(&c.sock, datagrams) {
                Ok(sent) => sent,
                Err(e) if would_block(&e) => break,
                Err(e) if interrupted(&e) => continue,
                Err(e) => return Err(e),
            };
            let now = Instant::now();
            let expiry = now + self.opts.udp_timeout;
            self.next_expiry = Some(self.next_expiry.map_or(expiry, |t| t.min(expiry)));
            for _ in 0..sent {
                c.in_flight.push_back((c.sent, now));
                c.sent += 1;
            }
            if let Some(&bytes) = sent.checked_sub(1).and_then(|last| self.ends.get(last)) {
                self.part.bytes_sent += bytes as u64;
            }
        }
        Ok(())
    }

    /// Matches one reply to its datagram and checks it.
    fn take_reply(&mut self, c: &mut Client, reply: &[u8]) {
        let now = Instant::now();
        let seq = datagram_number(reply);
        let slot = seq.and_then(|s| c.in_flight.iter().position(|&(q, _)| q == s));
        let (Some(seq), Some(slot)) = (seq, slot) else {
            if seq.is_some_and(|s| c.lost.remove(&s)) {
                self.part.late += 1;
                return;
            }
            self.part.errors += 1;
            diag_limited(&mut self.shown, 5, || {
                format!(
                    "udp client {}: a reply that matches no datagram in flight: {:?}",
                    c.id,
                    String::from_utf8_lossy(&reply[..reply.len().min(60)])
                )
            });
            return;
        };
        let (_, sent_at) = c.in_flight.remove(slot).expect("position found above");
        self.expect.clear();
        lines::echo_line(c.id, seq, self.opts.line_bytes, &mut self.expect);
        if reply != self.expect.as_slice() {
            self.part.errors += 1;
            let expect = &self.expect;
            diag_limited(&mut self.shown, 5, || {
                format!(
                    "udp client {} datagram {seq}: reply differs from {:?}",
                    c.id,
                    String::from_utf8_lossy(expect)
                )
            });
        }
        self.latencies.record(now.duration_since(sent_at));
        self.part.lines += 1;
    }

    /// Counts every datagram older than the timeout as lost (freeing its
    /// place in the window), once the earliest expiry has come.
    fn expire(&mut self, clients: &mut [Client], poll: &Poll) {
        let now = Instant::now();
        if self.next_expiry.is_none_or(|t| now < t) {
            return;
        }
        let timeout = self.opts.udp_timeout;
        let mut next: Option<Instant> = None;
        for c in clients.iter_mut().filter(|c| !c.done) {
            let mut freed = false;
            while let Some(&(seq, sent_at)) = c.in_flight.front() {
                if now < sent_at + timeout {
                    break;
                }
                c.in_flight.pop_front();
                c.lost.insert(seq);
                self.part.lost += 1;
                freed = true;
            }
            if freed {
                // Its window has room again (or it is finished).
                self.drive(c, poll);
            }
            if let (false, Some(&(_, sent_at))) = (c.done, c.in_flight.front()) {
                let t = sent_at + timeout;
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        self.next_expiry = next;
    }
}

/// The number in a generated echo line `cCLIENT NUMBER xxx...`.
fn datagram_number(reply: &[u8]) -> Option<u64> {
    let mut fields = reply.split(|&b| b == b' ');
    fields.next()?;
    let num = fields.next()?;
    if num.is_empty() || !num.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(num).ok()?.parse().ok()
}

/// Runs echo over UDP, the clients spread over `--threads` threads.
///
/// # Errors
/// See [`super::run`].
pub fn run(opts: &Options) -> Result<Report, RunError> {
    if opts.line_bytes > MAX_DATAGRAM {
        return Err(RunError::Usage(format!(
            "--udp: --line-bytes at most {MAX_DATAGRAM} (one datagram)"
        )));
    }
    let total = opts.lines * opts.clients as u64;
    let part = spread(
        opts,
        |n| format!("{n}/{total} datagrams answered or lost"),
        |slot| part(opts, &slot),
    )?;
    let mut part = part;
    if part.lines == 0 && part.lost > 0 {
        // Not one reply: nothing answers there (a loss rate of 100% is not
        // a measurement).
        super::error_line(&format!(
            "no reply to any datagram: is a UDP echo server at {}?",
            opts.addr
        ));
        part.errors += 1;
    }
    let mut report = Report::new(opts);
    report.lost = Some(part.lost);
    report.late = part.late;
    part.into_report(&mut report);
    Ok(report)
}

/// One UDP socket connected to `addr`, from the unspecified address of the
/// same family and an OS-chosen port. Its receive buffer holds a whole
/// window of replies (the kernel counts about 1 KiB of overhead per
/// datagram), so a loss is the server's or the network's, never ours.
fn socket(addr: SocketAddr, opts: &Options) -> io::Result<UdpSocket> {
    let local: SocketAddr = match addr {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let s = StdUdp::bind(local)?;
    let want = usize::try_from(opts.window)
        .unwrap_or(usize::MAX)
        .saturating_mul(opts.line_bytes + 1024)
        .min(16 << 20);
    let sock = socket2::SockRef::from(&s);
    if sock.recv_buffer_size()? < want {
        // Best effort: the kernel caps it at net.core.rmem_max.
        let _ = sock.set_recv_buffer_size(want);
    }
    s.connect(addr)?;
    s.set_nonblocking(true)?;
    Ok(UdpSocket::from_std(s))
}

/// One thread's share of a UDP run.
fn part(opts: &Options, slot: &Slot<'_>) -> Result<Part, RunError> {
    let t0 = Instant::now();
    let socks: io::Result<Vec<UdpSocket>> = slot
        .clients
        .clone()
        .map(|_| socket(opts.addr, opts))
        .collect();
    let connect = t0.elapsed();
    let Some(start) = slot.ready(socks.is_ok()) else {
        return socks.map(|_| Part::default()).map_err(RunError::from);
    };
    let poll = Poll::new()?;
    let mut clients = Vec::with_capacity(slot.clients.len());
    for (i, mut sock) in socks?.into_iter().enumerate() {
        poll.registry()
            .register(&mut sock, Token(i), Interest::READABLE | Interest::WRITABLE)?;
        clients.push(Client {
            id: slot.clients.start + i + 1,
            sock,
            sent: 0,
            in_flight: VecDeque::new(),
            lost: HashSet::new(),
            done: false,
        });
    }
    let total = opts.lines * clients.len() as u64;
    let mut run = Run {
        opts,
        latencies: Latencies::with_capacity(usize::try_from(total.min(50_000_000)).unwrap_or(0)),
        lines: Vec::with_capacity(opts.line_bytes.saturating_mul(batch::MAX_BATCH)),
        ends: Vec::with_capacity(batch::MAX_BATCH),
        expect: Vec::with_capacity(opts.line_bytes),
        // A reply one byte longer than its datagram is seen as longer.
        rx: Receiver::new(
            usize::try_from(opts.window).unwrap_or(usize::MAX),
            opts.line_bytes + 1,
        ),
        tx: if opts.udp_one_by_one {
            Sender::one_by_one()
        } else {
            Sender::new()
        },
        part: Part {
            connect,
            ..Part::default()
        },
        shown: 0,
        finished: 0,
        next_expiry: None,
    };
    let mut events = Events::with_capacity(1024);
    let mut poll = poll;
    let mut reported = 0;
    for c in &mut clients {
        run.drive(c, &poll);
    }
    while run.finished < clients.len() {
        let now = Instant::now();
        if now >= slot.deadline {
            let left = clients.len() - run.finished;
            super::error_line(&format!("timeout: {left} udp clients unfinished"));
            run.part.errors += left as u64;
            break;
        }
        let wait = poll_timeout(slot.deadline).map(|t| {
            run.next_expiry.map_or(t, |e| {
                t.min(e.saturating_duration_since(now) + Duration::from_micros(100))
            })
        });
        match poll.poll(&mut events, wait) {
            Err(e) if interrupted(&e) => continue,
            other => other?,
        }
        for ev in &events {
            run.drive(&mut clients[ev.token().0], &poll);
        }
        run.expire(&mut clients, &poll);
        let done = run.part.lines + run.part.lost;
        slot.advance(done - reported);
        reported = done;
    }
    let mut part = run.part;
    part.latencies = run.latencies;
    part.span = Some((start, Instant::now()));
    Ok(part)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_number_of_a_generated_line() {
        let mut line = Vec::new();
        lines::echo_line(123_456, 42, 40, &mut line);
        assert_eq!(datagram_number(&line), Some(42));
        assert_eq!(datagram_number(b"c00001 000000000007 xx\n"), Some(7));
        assert_eq!(datagram_number(b"c00001 00x000000007 xx\n"), None);
        assert_eq!(datagram_number(b"c00001"), None);
        assert_eq!(datagram_number(b""), None);
    }
}
