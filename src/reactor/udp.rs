//! The reactor's UDP socket (`--udp`, SPEC "Datagrams"): served from the
//! same `mio::Poll` as the TCP connections, with the same handler. The
//! rules (peers as clients, idle expiry, what a datagram and a reply hold,
//! the bounded reply queue) are the server core's
//! [`datagram`](crate::server_core::datagram); this file owns the socket.
//!
//! One pass of the loop reads up to [`MAX_DATAGRAMS_PER_PASS`] datagrams,
//! a `recvmmsg` batch at a time ([`batch`]), hands each to the handler, and
//! queues the replies. They are sent with the TCP output, after the
//! durability sync (so an atm reply never leaves before the change it
//! reports is on disk), a `sendmmsg` batch at a time, a run of equal
//! replies to one peer as one segmented message ([`batch::Sender`]).
//!
//! Edge-triggered (mio): the socket is read until it is empty, and a batch
//! that comes back short says it is (see [`batch`]), so ping-pong costs one
//! `epoll_wait`, one `recvmmsg` and one `sendmmsg` per wakeup, however many
//! datagrams that wakeup brings, and no call that only hears `EAGAIN`. If the
//! budget runs out first, the next pass reads again without waiting for an
//! event.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use mio::net::UdpSocket;
use mio::{Interest, Registry};

use super::Reactor;
use crate::handlers::{ClientId, Datagrams};
use crate::server_core::datagram::batch::{self, Receiver, Sender};
use crate::server_core::datagram::{self, Admit, Drained, Peers, Replies, Throttle};
use crate::status;

use crate::net::tokens::UDP;

/// Datagrams handled per loop pass before timers and other sockets get a
/// turn (STYLE §3.9).
const MAX_DATAGRAMS_PER_PASS: usize = 256;
/// Datagrams already in the socket that shutdown still handles (SPEC: what
/// was received before the clients were closed is not lost), bounded so a
/// flood cannot hold shutdown.
const MAX_FINAL_DATAGRAMS: usize = 4096;

/// The socket and its peers.
pub(super) struct Udp {
    socket: UdpSocket,
    peers: Peers,
    replies: Replies,
    /// A batch of datagrams; each slot sized so a datagram cut short is one
    /// over `--max-line`.
    rx: Receiver,
    /// Sends the queued replies a batch per call.
    tx: Sender,
    /// The handler's [`crate::handlers::Handler::datagram_is_line`].
    is_line: bool,
    /// The read budget ran out: read again next pass, without an event.
    more: bool,
    /// The socket said `WouldBlock` to a reply: WRITABLE is registered.
    blocked: bool,
    /// The size of the datagram being handled (0 between datagrams): a
    /// reply is capped at [`datagram::reply_cap`] of it.
    answering: usize,
    /// Shutdown closed it: no more reads; queued replies still go out.
    closed: bool,
    refused: Throttle,
    too_long: Throttle,
    dropped: Throttle,
    errors: Throttle,
}

impl Udp {
    /// The `--udp` socket, if any, registered with this loop's poll.
    ///
    /// # Errors
    /// Setting the socket up or registering it failed.
    pub(super) fn serve(
        socket: Option<std::net::UdpSocket>,
        registry: &Registry,
        config: &crate::config::ServerConfig,
        handler: &dyn crate::handlers::Handler,
    ) -> io::Result<Option<Udp>> {
        socket
            .map(|socket| {
                Udp::new(
                    socket,
                    registry,
                    config,
                    handler.traits().datagrams == Datagrams::Lines,
                )
            })
            .transpose()
    }

    fn new(
        socket: std::net::UdpSocket,
        registry: &Registry,
        config: &crate::config::ServerConfig,
        is_line: bool,
    ) -> io::Result<Udp> {
        socket.set_nonblocking(true)?;
        let mut socket = UdpSocket::from_std(socket);
        registry.register(&mut socket, UDP, Interest::READABLE)?;
        Ok(Udp {
            socket,
            peers: Peers::new(config.udp_idle, config.max_udp_peers),
            replies: Replies::new(),
            rx: Receiver::new(
                batch::SERVER_RECV_BATCH,
                datagram::recv_buffer_len(config.max_line_bytes),
            ),
            tx: Sender::new(),
            is_line,
            more: false,
            blocked: false,
            answering: 0,
            closed: false,
            refused: Throttle::default(),
            too_long: Throttle::default(),
            dropped: Throttle::default(),
            errors: Throttle::default(),
        })
    }

    /// Whether the next poll must not wait: datagrams may be left unread,
    /// or replies are queued and the socket has not refused them.
    pub(super) fn has_work(&self) -> bool {
        (self.more && !self.closed) || (!self.replies.is_empty() && !self.blocked)
    }

    /// Replies are queued.
    pub(super) fn has_output(&self) -> bool {
        !self.replies.is_empty()
    }

    /// The earliest idle expiry.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.peers.poll_timeout()
    }

    /// Queues a handler's reply to `id`; false if `id` is no UDP peer.
    pub(super) fn send(&mut self, id: ClientId, payload: &[u8]) -> bool {
        let Some(to) = self.peers.addr(id) else {
            return false;
        };
        self.replies
            .push(to, datagram::reply(payload, self.is_line, self.answering));
        true
    }
}

impl Reactor {
    /// Whether the loop must not exit yet: replies are still queued.
    pub(super) fn udp_owes_output(&self) -> bool {
        self.udp.as_ref().is_some_and(Udp::has_output)
    }

    /// Reads and handles datagrams until the socket is empty or `budget`
    /// is spent.
    pub(super) fn handle_udp(&mut self, budget: usize) {
        let mut left = budget;
        while left > 0 {
            let Some(udp) = self.udp.as_mut() else {
                return;
            };
            if udp.closed {
                return;
            }
            let want = left.min(udp.rx.capacity());
            match udp.rx.recv(&udp.socket, want) {
                Ok(n) => {
                    left = left.saturating_sub(n);
                    for i in 0..n {
                        self.handle_datagram(i);
                    }
                    if n < want {
                        // Short: the socket was empty, and what comes now
                        // brings an event (see `batch`).
                        if let Some(udp) = self.udp.as_mut() {
                            udp.more = false;
                        }
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    udp.more = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // An error queued on the socket (an ICMP report) concerns
                // one earlier send, not the socket: go on (it counts
                // against the budget, and its diagnostic is throttled).
                Err(e) => {
                    left -= 1;
                    if udp.errors.hit(self.outbox.now()).is_some() {
                        status::diag(format_args!("udp: receive: {e}"));
                    }
                }
            }
        }
        if let Some(udp) = self.udp.as_mut() {
            udp.more = true;
        }
    }

    /// The events' share: one budget of datagrams.
    pub(super) fn handle_udp_event(&mut self) {
        self.handle_udp(MAX_DATAGRAMS_PER_PASS);
    }

    /// A pass with no event for the socket: read on if the budget ran out.
    pub(super) fn handle_udp_ready(&mut self) {
        if self.udp.as_ref().is_some_and(|u| u.more) {
            self.handle_udp(MAX_DATAGRAMS_PER_PASS);
        }
    }

    /// Datagram `i` of the batch just received.
    fn handle_datagram(&mut self, i: usize) {
        let Some(udp) = self.udp.as_mut() else {
            return;
        };
        let (datagram, from) = udp.rx.get(i);
        let Some(from) = from else {
            return; // no IPv4 or IPv6 sender: not from a UDP socket
        };
        udp.answering = datagram.len();
        self.handle_from(i, from);
        if let Some(udp) = self.udp.as_mut() {
            udp.answering = 0;
        }
    }

    /// Datagram `i` of the batch, from `from`.
    fn handle_from(&mut self, i: usize, from: SocketAddr) {
        let now = self.outbox.now();
        let max_peers = self.config.max_udp_peers;
        let Some(udp) = self.udp.as_mut() else {
            return;
        };
        let known = match udp.peers.addr_is_known(from) {
            // Refreshes its idle time.
            true => match udp.peers.admit(from, now, || unreachable!("a known peer")) {
                Admit::Known(id) | Admit::New(id) => Some(id),
                Admit::Refused => None,
            },
            false => None,
        };
        let id = match known {
            Some(id) => id,
            None => {
                if udp.peers.is_full() {
                    // `--max-udp-peers`, apart from `--max-clients`.
                    udp.replies.push(from, status::UDP_TOO_MANY_CLIENTS);
                    if let Some(more) = udp.refused.hit(now) {
                        status::udp_refused(from, max_peers, more);
                    }
                    return;
                }
                // A new peer: its id, its line and the handler's
                // `on_connect`, in one step (see [`Membership::admit`]);
                // `None`: it takes no `--max-clients` place.
                let Some(id) = self
                    .member
                    .admit(from, None, &mut *self.handler, &mut self.outbox)
                else {
                    return;
                };
                if let Some(udp) = self.udp.as_mut() {
                    udp.peers.admit(from, now, || id);
                }
                self.apply_actions();
                id
            }
        };
        let max_line = self.config.max_line_bytes;
        let Some(udp) = self.udp.as_mut() else {
            return;
        };
        let (datagram, _) = udp.rx.get(i);
        if datagram::is_too_long(datagram, max_line) {
            // SPEC: the error, and the peer stays.
            udp.replies.push(from, status::UDP_LINE_TOO_LONG);
            if let Some(more) = udp.too_long.hit(now) {
                status::udp_too_long(id, max_line, more);
            }
            return;
        }
        let msg = datagram::message(datagram, udp.is_line);
        self.outbox
            .set_reply_limit(Some(datagram::reply_cap(udp.answering)));
        self.handler.on_message(id, msg, &mut self.outbox);
        self.outbox.set_reply_limit(None);
        self.apply_actions();
    }

    /// The handler closed `id` (menu's `5`): forget the peer (no
    /// `on_disconnect`, as for a TCP client the handler closed). False if
    /// `id` is no UDP peer.
    pub(super) fn udp_close(&mut self, id: ClientId) -> bool {
        let Some(udp) = self.udp.as_mut() else {
            return false;
        };
        if !udp.peers.forget(id) {
            return false;
        }
        self.udp_left(id);
        true
    }

    /// A forgotten peer's `disconnected` line (and its
    /// place in the census).
    fn udp_left(&mut self, id: ClientId) {
        self.member.leave_udp_peer(id);
    }

    /// Forgets the peers silent for `--udp-idle`.
    pub(super) fn udp_expire(&mut self, now: Instant) {
        loop {
            let Some(id) = self.udp.as_mut().and_then(|u| u.peers.poll_expired(now)) else {
                return;
            };
            self.udp_left(id);
            self.handler.on_disconnect(id, &mut self.outbox);
            self.apply_actions();
        }
    }

    /// Sends the queued replies (after the durability sync), registering
    /// WRITABLE exactly while the socket refuses them.
    pub(super) fn flush_udp(&mut self) {
        // SPEC's durability rule holds for datagrams too (the atm's
        // `Deposited ...` leaves only once the accounts file is synced).
        if self.udp_owes_output()
            && self.durable.owes_sync()
            && let Err(e) = self.durable.sync_before_output()
        {
            self.fatal.get_or_insert(e);
        }
        if self.fatal.is_some() {
            return;
        }
        let now = self.outbox.now();
        let registry = self.poll.registry();
        let Some(udp) = self.udp.as_mut() else {
            return;
        };
        let (socket, tx) = (&udp.socket, &mut udp.tx);
        let blocked = udp.replies.flush(|pending| tx.send(socket, pending)) == Drained::Blocked;
        if blocked != udp.blocked {
            let interest = if blocked {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            match registry.reregister(&mut udp.socket, UDP, interest) {
                Ok(()) => udp.blocked = blocked,
                Err(e) => status::diag(format_args!("udp: reregister: {e}")),
            }
        }
        if udp.replies.dropped() > 0 && udp.dropped.hit(now).is_some() {
            let (dropped, error) = udp.replies.take_dropped();
            match error {
                Some(kind) => status::udp_replies_dropped(dropped, &io::Error::from(kind)),
                None => status::udp_replies_dropped(dropped, &"reply queue full"),
            }
        }
    }

    /// Shutdown: what is already in the socket is handled (bounded), then
    /// every peer is forgotten with its disconnect line, as TCP clients are
    /// closed. The handler heard that everyone goes in `on_shutdown`, so no
    /// `on_disconnect` follows. Queued replies still go out.
    pub(super) fn udp_close_all(&mut self) {
        if self.udp.as_ref().is_none_or(|u| u.closed) {
            return;
        }
        self.handle_udp(MAX_FINAL_DATAGRAMS);
        let Some(udp) = self.udp.as_mut() else {
            return;
        };
        // Still registered: WRITABLE may be needed for the last replies.
        udp.closed = true;
        udp.more = false;
        for id in udp.peers.drain() {
            self.udp_left(id);
        }
    }

    /// Shutdown's time ran out: queued replies are dropped.
    pub(super) fn udp_kill(&mut self) {
        if let Some(udp) = self.udp.as_mut() {
            udp.replies.clear();
        }
    }
}
