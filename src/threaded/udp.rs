//! The threaded server's UDP socket (`--udp`, SPEC "Datagrams"): one thread
//! for the socket, the same handler behind the same lock, the same rules
//! (the server core's [`datagram`](crate::server_core::datagram)) as the reactor.
//!
//! The thread waits in its own small `mio::Poll` (the socket and a waker
//! the supervisor uses at shutdown), with the earliest idle expiry as the
//! timeout. Each datagram is one [`Server::with_handler`] call; the replies
//! it addresses to UDP peers are taken from the outbox inside that call and
//! sent after it returns, so they leave only once what the call persisted is
//! durable (`with_handler` syncs before returning when a reply follows a
//! change). The handlers `--udp` allows answer only the client that spoke,
//! so a TCP client's call never addresses a UDP peer.
//!
//! Datagrams come and go in batches ([`batch`]: `recvmmsg`, `sendmmsg`,
//! equal replies to one peer segmented) as in the reactor, and a short batch means the socket is empty; each datagram
//! is still one handler call, under the lock.
//!
//! Counts: UDP peers are counted in the server's census (as peers: they
//! take no `--max-clients` place), which prints every status line.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Waker};

use super::Server;
use crate::handlers::{ClientId, Outbox};
use crate::server_core::actions::{Bytes, Clients};
use crate::server_core::datagram::batch::{self, Receiver, Sender};
use crate::server_core::datagram::{self, Admit, Drained, Peers, Replies, Throttle};
use crate::status;

use crate::net::tokens::{UDP as SOCKET, WAKE};

/// Datagrams handled before queued replies are flushed, so a burst does not
/// hold every reply until the socket is empty.
const MAX_DATAGRAMS_PER_FLUSH: usize = 256;
/// Datagrams already in the socket that shutdown still handles (bounded).
const MAX_FINAL_DATAGRAMS: usize = 4096;
/// While shutdown waits for the socket to take the last replies, how often
/// it looks at the kill flag.
const FINAL_FLUSH_POLL: Duration = Duration::from_millis(100);

const RUN: u8 = 0;
const CLOSE: u8 = 1;
const KILL: u8 = 2;

/// The supervisor's handle on the UDP thread.
pub(super) struct UdpThread {
    state: Arc<AtomicU8>,
    waker: Waker,
}

impl UdpThread {
    /// Starts the thread for `socket`. Counted in `server.open` until it
    /// ends, so shutdown waits for its last replies.
    ///
    /// # Errors
    /// Poll, registration or thread creation failed.
    pub(super) fn spawn(server: &Arc<Server>, socket: std::net::UdpSocket) -> io::Result<Self> {
        let poll = Poll::new()?;
        socket.set_nonblocking(true)?;
        let mut socket = UdpSocket::from_std(socket);
        poll.registry()
            .register(&mut socket, SOCKET, Interest::READABLE)?;
        let waker = Waker::new(poll.registry(), WAKE)?;
        let state = Arc::new(AtomicU8::new(RUN));
        let (worker_server, worker_state) = (Arc::clone(server), Arc::clone(&state));
        server.open.fetch_add(1, Ordering::SeqCst);
        let spawned = thread::Builder::new()
            .name("udp".to_string())
            .spawn(move || {
                // Built here: the batch headers hold raw pointers, so they
                // are not `Send`, and need not be.
                let config = &worker_server.config;
                let mut rx = Receiver::new(
                    batch::SERVER_RECV_BATCH,
                    datagram::recv_buffer_len(config.max_line_bytes),
                );
                let mut worker = Worker {
                    tx: Sender::new(),
                    peers: Peers::new(config.udp_idle, config.max_udp_peers),
                    replies: Replies::new(),
                    is_line: worker_server.datagram_is_line,
                    server: worker_server,
                    socket,
                    poll,
                    state: worker_state,
                    blocked: false,
                    answering: 0,
                    out: Outbox::new(),
                    closes: Vec::new(),
                    refused: Throttle::default(),
                    too_long: Throttle::default(),
                    dropped: Throttle::default(),
                    errors: Throttle::default(),
                };
                worker.run(&mut rx);
                let server = Arc::clone(&worker.server);
                drop(worker);
                if server.open.fetch_sub(1, Ordering::SeqCst) == 1 {
                    let _ = server.waker.wake();
                }
            });
        if let Err(e) = spawned {
            server.open.fetch_sub(1, Ordering::SeqCst);
            return Err(e);
        }
        Ok(UdpThread { state, waker })
    }

    /// Shutdown: handle what the socket holds, forget every peer (with its
    /// disconnect line), send the last replies, end.
    pub(super) fn close(&self) {
        let _ = self
            .state
            .compare_exchange(RUN, CLOSE, Ordering::SeqCst, Ordering::SeqCst);
        let _ = self.waker.wake();
    }

    /// Shutdown's time ran out: end now, queued replies are dropped.
    pub(super) fn kill(&self) {
        self.state.store(KILL, Ordering::SeqCst);
        let _ = self.waker.wake();
    }
}

/// The UDP thread's own state.
struct Worker {
    server: Arc<Server>,
    socket: UdpSocket,
    poll: Poll,
    state: Arc<AtomicU8>,
    peers: Peers,
    replies: Replies,
    /// Sends the queued replies a batch per call.
    tx: Sender,
    /// WRITABLE is registered: the socket refused a reply.
    blocked: bool,
    /// The size of the datagram being handled (0 between datagrams): a
    /// reply is capped at [`datagram::reply_cap`] of it.
    answering: usize,
    is_line: bool,
    out: Outbox,
    /// Peers the handler closed in the current call.
    closes: Vec<ClientId>,
    refused: Throttle,
    too_long: Throttle,
    dropped: Throttle,
    errors: Throttle,
}

impl Worker {
    /// Serves until shutdown; `rx` takes the datagrams (each slot sized so a
    /// datagram cut short is one over `--max-line`).
    fn run(&mut self, rx: &mut Receiver) {
        let mut events = Events::with_capacity(16);
        loop {
            let timeout = self
                .peers
                .poll_timeout()
                .map(|t| t.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, timeout)
                && e.kind() != io::ErrorKind::Interrupted
            {
                status::diag(format_args!("udp: poll: {e}"));
                return;
            }
            match self.state.load(Ordering::SeqCst) {
                RUN => {}
                CLOSE => return self.close_all(rx),
                _ => return,
            }
            // Edge-triggered: read until the socket is empty, flushing as
            // we go.
            while self.read(rx, MAX_DATAGRAMS_PER_FLUSH) {
                self.flush();
            }
            self.expire(Instant::now());
            self.flush();
        }
    }

    /// Reads and handles up to `budget` datagrams; true if the budget ran
    /// out before the socket was empty.
    fn read(&mut self, rx: &mut Receiver, budget: usize) -> bool {
        let mut left = budget;
        while left > 0 {
            let want = left.min(rx.capacity());
            match rx.recv(&self.socket, want) {
                Ok(n) => {
                    left = left.saturating_sub(n);
                    for i in 0..n {
                        let (datagram, from) = rx.get(i);
                        let Some(from) = from else {
                            continue; // no IPv4 or IPv6 sender
                        };
                        self.answering = datagram.len();
                        self.handle_datagram(datagram, from);
                        self.answering = 0;
                    }
                    if n < want {
                        return false; // short: the socket was empty
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Concerns one earlier send, not the socket (see the reactor).
                Err(e) => {
                    left -= 1;
                    if self.errors.hit(Instant::now()).is_some() {
                        status::diag(format_args!("udp: receive: {e}"));
                    }
                }
            }
        }
        true
    }

    fn handle_datagram(&mut self, datagram: &[u8], from: SocketAddr) {
        let now = Instant::now();
        let server = Arc::clone(&self.server);
        // Room is `--max-udp-peers`, apart from the TCP clients'
        // `--max-clients`: a new peer takes no place in the census, which
        // gives it its id and prints its line.
        let census = &server.census;
        let admit = self.peers.admit(from, now, || {
            census
                .admit(None)
                .expect("a UDP peer takes no --max-clients place")
        });
        let id = match admit {
            Admit::Known(id) => id,
            Admit::New(id) => {
                self.call(|handler, out| handler.on_connect(id, from, out));
                id
            }
            Admit::Refused => {
                self.replies.push(from, status::UDP_TOO_MANY_CLIENTS);
                if let Some(more) = self.refused.hit(now) {
                    status::udp_refused(from, server.config.max_udp_peers, more);
                }
                return;
            }
        };
        let max_line = server.config.max_line_bytes;
        if datagram::is_too_long(datagram, max_line) {
            // SPEC: the error, and the peer stays.
            self.replies.push(from, status::UDP_LINE_TOO_LONG);
            if let Some(more) = self.too_long.hit(now) {
                status::udp_too_long(id, max_line, more);
            }
            return;
        }
        let msg = datagram::message(datagram, self.is_line);
        self.call(|handler, out| handler.on_message(id, msg, out));
    }

    /// One handler call under the lock: the replies it addresses to UDP
    /// peers are queued (sent after the call, when what it persisted is
    /// durable), the peers it closes are forgotten.
    fn call(&mut self, f: impl FnOnce(&mut dyn crate::handlers::Handler, &mut Outbox)) {
        let Worker {
            server,
            peers,
            replies,
            out,
            closes,
            is_line,
            answering,
            ..
        } = self;
        // Every reply here is a datagram (see `Outbox::reply_limit`).
        out.set_reply_limit(Some(datagram::reply_cap(*answering)));
        let mut udp = UdpClients {
            peers,
            replies,
            closes,
            is_line: *is_line,
            answering: *answering,
        };
        server.with_handler_and_peers(None, out, &mut udp, f);
        for id in std::mem::take(&mut self.closes) {
            if self.peers.forget(id) {
                self.disconnected(id);
            }
        }
    }

    /// The disconnect line of a peer just forgotten.
    fn disconnected(&self, id: ClientId) {
        self.server.census.leave_udp_peer(id);
    }

    /// Forgets the peers silent for `--udp-idle`.
    fn expire(&mut self, now: Instant) {
        while let Some(id) = self.peers.poll_expired(now) {
            self.disconnected(id);
            self.call(|handler, out| handler.on_disconnect(id, out));
        }
    }

    /// Sends the queued replies, registering WRITABLE exactly while the
    /// socket refuses them.
    fn flush(&mut self) {
        let (socket, tx) = (&self.socket, &mut self.tx);
        let blocked = self.replies.flush(|pending| tx.send(socket, pending)) == Drained::Blocked;
        if blocked != self.blocked {
            let interest = if blocked {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            match self
                .poll
                .registry()
                .reregister(&mut self.socket, SOCKET, interest)
            {
                Ok(()) => self.blocked = blocked,
                Err(e) => status::diag(format_args!("udp: reregister: {e}")),
            }
        }
        if self.replies.dropped() > 0 && self.dropped.hit(Instant::now()).is_some() {
            let (dropped, error) = self.replies.take_dropped();
            match error {
                Some(kind) => status::udp_replies_dropped(dropped, &io::Error::from(kind)),
                None => status::udp_replies_dropped(dropped, &"reply queue full"),
            }
        }
    }

    /// Shutdown (as the reactor does): what the socket holds is handled,
    /// every peer is forgotten with its disconnect line (no `on_disconnect`:
    /// the handler heard in `on_shutdown` that everyone goes), and the last
    /// replies are sent unless shutdown's time runs out.
    fn close_all(&mut self, rx: &mut Receiver) {
        self.read(rx, MAX_FINAL_DATAGRAMS);
        for id in self.peers.drain() {
            self.server.census.leave_udp_peer(id);
        }
        let mut events = Events::with_capacity(4);
        loop {
            self.flush();
            if self.replies.is_empty() || self.state.load(Ordering::SeqCst) == KILL {
                return;
            }
            let _ = self.poll.poll(&mut events, Some(FINAL_FLUSH_POLL));
        }
    }
}

/// The `--udp` peers as the action interpreter sees them: a reply is
/// queued (sent after the call), a close forgets the peer after the call.
struct UdpClients<'a> {
    peers: &'a Peers,
    replies: &'a mut Replies,
    closes: &'a mut Vec<ClientId>,
    is_line: bool,
    /// The size of the datagram being answered (the reply cap).
    answering: usize,
}

impl Clients for UdpClients<'_> {
    fn send(&mut self, to: ClientId, bytes: Bytes<'_>) {
        if let Some(addr) = self.peers.addr(to) {
            let reply = datagram::reply(bytes.as_slice(), self.is_line, self.answering);
            self.replies.push(addr, reply);
        }
    }
    fn close(&mut self, id: ClientId) {
        self.closes.push(id);
    }
    /// A datagram socket is never paused: nothing is read per peer.
    fn pause(&mut self, _: ClientId, _: bool) {}
}
