//! The UDP side of the server core, once for both servers and without I/O
//! (SPEC "Datagrams"): who the peers are, when a silent one is forgotten,
//! what a datagram hands the handler, what a reply datagram holds, and the
//! bounded queue of replies the socket could not take yet.
//!
//! A UDP peer (address and port) is a client: an id at its first datagram,
//! a place in every count (but not against `--max-clients`: peers have
//! their own limit, `--max-udp-peers`, so a burst of datagrams from many
//! ports never locks TCP clients out), forgotten after
//! `--udp-idle` seconds without a datagram. [`Peers`] keeps one expiry entry
//! per peer in a heap, refreshed lazily: a datagram only stamps the peer's
//! last-seen time, and an entry that comes due for a peer seen since is put
//! back with its new deadline (the reactor's idle-flush queue does the same).
//! So a busy peer costs no heap work per datagram and no wakeup scans the
//! table.
//!
//! Memory is bounded whatever addresses datagrams claim to come from (a
//! spoofing flood): the table holds at most `--max-udp-peers` peers, its
//! heap at most about twice that, and [`Replies`] at most
//! [`MAX_QUEUED_BYTES`].
//!
//! No amplifier: a reply datagram is at most [`reply_cap`] of the datagram
//! it answers (a forged source address must not turn a 4-byte `peek` into
//! a 65,000-byte datagram at someone else); a longer one is replaced by
//! [`REPLY_TOO_LARGE`].
//!
//! The I/O itself, datagrams in batches, is the submodule [`batch`].

pub mod batch;
pub mod segments;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub use crate::handlers::REPLY_TOO_LARGE;
use crate::handlers::{ClientId, strip_terminator};

/// The largest datagram payload there is (IPv6's is 65,527 bytes, IPv4's
/// 65,507): a receive buffer this large never truncates.
pub const MAX_DATAGRAM_BYTES: usize = 65536;

/// Replies waiting for the socket (it said `WouldBlock`), payload bytes plus
/// [`QUEUED_OVERHEAD_BYTES`] each: past this a reply is dropped and counted.
/// UDP may drop; the server must not grow.
pub const MAX_QUEUED_BYTES: usize = 4 * 1024 * 1024;
/// What one queued reply is charged beyond its payload (address, vector
/// header, allocator rounding), so a flood of empty replies is bounded too.
pub const QUEUED_OVERHEAD_BYTES: usize = 64;

/// At most one diagnostic per kind per this period; the rest are counted
/// and summed up in the next one.
pub const DIAGNOSTIC_PERIOD: Duration = Duration::from_secs(1);

/// The receive buffer for `--max-line`: room for the longest allowed line,
/// its `\r\n`, and one byte more, so a datagram cut short by the buffer is
/// always one that is too long anyway ([`is_too_long`]).
pub fn recv_buffer_len(max_line: usize) -> usize {
    max_line.saturating_add(3).min(MAX_DATAGRAM_BYTES)
}

/// Whether a datagram breaks `--max-line`: its length without one trailing
/// `\r\n` or `\n`, as for a TCP line.
pub fn is_too_long(datagram: &[u8], max_line: usize) -> bool {
    strip_terminator(datagram).len() > max_line
}

/// What the handler gets from a datagram: without one trailing `\r\n` or
/// `\n` when the handler's datagrams are lines, whole otherwise (echo).
pub fn message(datagram: &[u8], is_line: bool) -> &[u8] {
    if is_line {
        strip_terminator(datagram)
    } else {
        datagram
    }
}

/// Reply datagrams up to this size are sent whatever the request's size.
pub const MIN_REPLY_CAP: usize = 512;
/// How many times the datagram it answers a reply may be (SPEC).
pub const REPLY_FACTOR: usize = 3;

/// The largest reply datagram to a datagram of `request_len` bytes: the
/// larger of [`MIN_REPLY_CAP`] and [`REPLY_FACTOR`] times the request.
pub fn reply_cap(request_len: usize) -> usize {
    request_len.saturating_mul(REPLY_FACTOR).max(MIN_REPLY_CAP)
}

/// The datagram for one reply to a datagram of `request_len` bytes
/// (0 for a reply that answers none: the cap is then [`MIN_REPLY_CAP`]):
/// without the `\n` a TCP reply line ends with when the handler's
/// datagrams are lines, the bytes as given otherwise; [`REPLY_TOO_LARGE`]
/// if that is over [`reply_cap`].
pub fn reply(payload: &[u8], is_line: bool, request_len: usize) -> &[u8] {
    let datagram = match payload {
        [rest @ .., b'\n'] if is_line => rest,
        _ => payload,
    };
    if datagram.len() > reply_cap(request_len) {
        REPLY_TOO_LARGE
    } else {
        datagram
    }
}

/// What [`Peers::admit`] decided about a datagram's sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// A peer already tracked.
    Known(ClientId),
    /// A new peer, tracked from now on: print its connected line and tell
    /// the handler.
    New(ClientId),
    /// A new peer with no room (`--max-udp-peers`): answer
    /// `error: too many clients`, do not track it.
    Refused,
}

#[derive(Debug, Clone, Copy)]
struct Peer {
    id: ClientId,
    last_seen: Instant,
}

/// The UDP peers that are clients. See the module doc.
#[derive(Debug)]
pub struct Peers {
    /// `--udp-idle`.
    idle: Duration,
    /// `--max-udp-peers`.
    max_peers: usize,
    by_addr: HashMap<SocketAddr, Peer>,
    /// Routes the handler's replies (which name clients) to addresses.
    by_id: HashMap<ClientId, SocketAddr>,
    /// Expiry deadlines, earliest first: at most one live entry per peer,
    /// plus stale ones for peers forgotten early (rebuilt when they pile
    /// up, see [`Peers::forget`]).
    expiry: BinaryHeap<Reverse<(Instant, ClientId)>>,
}

impl Peers {
    pub fn new(idle: Duration, max_peers: usize) -> Self {
        Peers {
            idle,
            max_peers,
            by_addr: HashMap::new(),
            by_id: HashMap::new(),
            expiry: BinaryHeap::new(),
        }
    }

    /// Peers tracked.
    pub fn len(&self) -> usize {
        self.by_addr.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_addr.is_empty()
    }

    /// Whether a new peer would be refused (`--max-udp-peers` reached).
    pub fn is_full(&self) -> bool {
        self.by_addr.len() >= self.max_peers
    }

    /// A datagram came from `addr` at `now`. `new_id` is called only for a
    /// new peer that is taken (under `--max-udp-peers`).
    pub fn admit(
        &mut self,
        addr: SocketAddr,
        now: Instant,
        new_id: impl FnOnce() -> ClientId,
    ) -> Admit {
        if let Some(peer) = self.by_addr.get_mut(&addr) {
            peer.last_seen = now;
            return Admit::Known(peer.id);
        }
        if self.is_full() {
            return Admit::Refused;
        }
        let id = new_id();
        self.by_addr.insert(addr, Peer { id, last_seen: now });
        self.by_id.insert(id, addr);
        self.expiry.push(Reverse((now + self.idle, id)));
        Admit::New(id)
    }

    /// Whether datagrams from `addr` come from a tracked peer.
    pub fn addr_is_known(&self, addr: SocketAddr) -> bool {
        self.by_addr.contains_key(&addr)
    }

    /// The address of a tracked peer.
    pub fn addr(&self, id: ClientId) -> Option<SocketAddr> {
        self.by_id.get(&id).copied()
    }

    /// Stops tracking `id` (the handler closed it); false if it was not
    /// tracked. Its heap entry goes stale and is skipped when it comes due.
    pub fn forget(&mut self, id: ClientId) -> bool {
        let Some(addr) = self.by_id.remove(&id) else {
            return false;
        };
        self.by_addr.remove(&addr);
        // Peers that come and go faster than --udp-idle (menu's `5`) would
        // leave stale entries for up to --udp-idle each: rebuild once they
        // outnumber the live ones.
        if self.expiry.len() > 2 * self.by_addr.len() + 64 {
            let idle = self.idle;
            self.expiry = self
                .by_addr
                .values()
                .map(|p| Reverse((p.last_seen + idle, p.id)))
                .collect();
        }
        true
    }

    /// When [`Peers::poll_expired`] may next have something (possibly
    /// early: an entry may be stale or refreshed; that costs one wakeup).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.expiry.peek().map(|e| e.0.0)
    }

    /// The next peer silent for `--udp-idle` at `now`, forgotten; `None`
    /// when no more are due. Call until `None`.
    pub fn poll_expired(&mut self, now: Instant) -> Option<ClientId> {
        while let Some(&Reverse((due, id))) = self.expiry.peek() {
            if due > now {
                return None;
            }
            self.expiry.pop();
            let Some(addr) = self.by_id.get(&id) else {
                continue; // forgotten already
            };
            let deadline = self.by_addr[addr].last_seen + self.idle;
            if deadline <= due {
                // The entry is current: silent for the whole idle time.
                self.forget(id);
                return Some(id);
            }
            // Seen since the entry was pushed: back in with its deadline,
            // even one already past, so peers due in one wakeup go in the
            // order they fell silent.
            self.expiry.push(Reverse((deadline, id)));
        }
        None
    }

    /// Forgets every peer (shutdown), in id order.
    pub fn drain(&mut self) -> Vec<ClientId> {
        let mut ids: Vec<ClientId> = self.by_id.keys().copied().collect();
        ids.sort();
        self.by_addr.clear();
        self.by_id.clear();
        self.expiry.clear();
        ids
    }
}

/// Replies the socket could not take yet, bounded (see [`MAX_QUEUED_BYTES`]).
#[derive(Debug, Default)]
pub struct Replies {
    queue: VecDeque<(SocketAddr, Vec<u8>)>,
    /// Charged bytes queued (payloads plus overhead).
    charged: usize,
    /// Replies dropped (queue full or a send error) since the last
    /// [`Replies::take_dropped`].
    dropped: u64,
    /// The last send error, for the diagnostic.
    last_error: Option<io::ErrorKind>,
}

/// The queued replies, oldest first, as [`Replies::flush`] hands them to
/// its `send`: each with its address.
pub struct Pending<'q>(std::collections::vec_deque::Iter<'q, (SocketAddr, Vec<u8>)>);

impl<'q> Iterator for Pending<'q> {
    type Item = (Option<SocketAddr>, &'q [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        self.0
            .next()
            .map(|(to, bytes)| (Some(*to), bytes.as_slice()))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

/// How far [`Replies::flush`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Everything went out (or was dropped after an error).
    Empty,
    /// The socket said `WouldBlock`: wait until it is writable.
    Blocked,
}

impl Replies {
    pub fn new() -> Self {
        Replies::default()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Queues one reply datagram; false if it was dropped (full).
    pub fn push(&mut self, to: SocketAddr, datagram: &[u8]) -> bool {
        let charge = datagram.len() + QUEUED_OVERHEAD_BYTES;
        if self.charged + charge > MAX_QUEUED_BYTES {
            self.dropped += 1;
            return false;
        }
        self.charged += charge;
        self.queue.push_back((to, datagram.to_vec()));
        true
    }

    /// Sends queued replies in order, a batch per call of `send` (which
    /// takes what it can from the front of the queue and says how many
    /// went out, as [`batch::Sender::send`] does), until the queue is empty
    /// or `send` says `WouldBlock`. A reply whose send fails otherwise is
    /// dropped and counted (one bad address must not hold the others).
    pub fn flush(&mut self, mut send: impl FnMut(Pending<'_>) -> io::Result<usize>) -> Drained {
        while !self.queue.is_empty() {
            let sent = match send(Pending(self.queue.iter())) {
                // Nothing taken and nothing said: wait for writability
                // rather than spin.
                Ok(0) => return Drained::Blocked,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Drained::Blocked,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.dropped += 1;
                    self.last_error = Some(e.kind());
                    1
                }
            };
            for (_, bytes) in self.queue.drain(..sent.min(self.queue.len())) {
                self.charged -= bytes.len() + QUEUED_OVERHEAD_BYTES;
            }
        }
        if self.queue.capacity() > 1024 {
            self.queue.shrink_to(1024);
        }
        Drained::Empty
    }

    /// Replies dropped since the last [`Replies::take_dropped`].
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Replies dropped since the last call, and the last send error if
    /// there was one; the count is reset.
    pub fn take_dropped(&mut self) -> (u64, Option<io::ErrorKind>) {
        let dropped = std::mem::take(&mut self.dropped);
        (dropped, self.last_error.take())
    }

    /// Forgets every queued reply (shutdown's time ran out).
    pub fn clear(&mut self) {
        self.dropped += self.queue.len() as u64;
        self.queue.clear();
        self.charged = 0;
    }
}

/// At most one diagnostic per [`DIAGNOSTIC_PERIOD`]: a flood of refused
/// datagrams must not become a flood of stderr lines (a blocking write in
/// the loop).
#[derive(Debug, Default)]
pub struct Throttle {
    next: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    /// One more event at `now`: `Some(n)` if a diagnostic may be printed
    /// now, `n` being the events suppressed since the last one.
    pub fn hit(&mut self, now: Instant) -> Option<u64> {
        match self.next {
            Some(next) if now < next => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.next = Some(now + DIAGNOSTIC_PERIOD);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests;
