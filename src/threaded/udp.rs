//! The threaded server's UDP socket (`--udp`, SPEC "Datagrams"): one thread
//! for the socket, the same handler behind the same lock, the same rules
//! (the server core's [`datagram`](crate::server::datagram)) as the reactor.
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
use crate::server::actions::{Bytes, Clients};
use crate::server::datagram::{self, Admit, Drained, Peers, Replies, Throttle};
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
        let mut worker = Worker {
            server: Arc::clone(server),
            buf: vec![0; datagram::recv_buffer_len(server.config.max_line_bytes)],
            peers: Peers::new(server.config.udp_idle, server.config.max_udp_peers),
            replies: Replies::new(),
            socket,
            poll,
            state: Arc::clone(&state),
            blocked: false,
            answering: 0,
            is_line: server.datagram_is_line,
            out: Outbox::new(),
            closes: Vec::new(),
            refused: Throttle::default(),
            too_long: Throttle::default(),
            dropped: Throttle::default(),
            errors: Throttle::default(),
        };
        server.open.fetch_add(1, Ordering::SeqCst);
        let spawned = thread::Builder::new()
            .name("udp".to_string())
            .spawn(move || {
                worker.run();
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
    buf: Vec<u8>,
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
    fn run(&mut self) {
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
                CLOSE => return self.close_all(),
                _ => return,
            }
            // Edge-triggered: read until WouldBlock, flushing as we go.
            while self.read(MAX_DATAGRAMS_PER_FLUSH) {
                self.flush();
            }
            self.expire(Instant::now());
            self.flush();
        }
    }

    /// Reads and handles up to `budget` datagrams; true if the budget ran
    /// out before `WouldBlock`.
    fn read(&mut self, budget: usize) -> bool {
        for _ in 0..budget {
            match self.socket.recv_from(&mut self.buf) {
                Ok((n, from)) => {
                    self.answering = n;
                    self.handle_datagram(n, from);
                    self.answering = 0;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Concerns one earlier send, not the socket (see the reactor).
                Err(e) => {
                    if self.errors.hit(Instant::now()).is_some() {
                        status::diag(format_args!("udp: receive: {e}"));
                    }
                }
            }
        }
        true
    }

    fn handle_datagram(&mut self, n: usize, from: SocketAddr) {
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
        if datagram::is_too_long(&self.buf[..n], max_line) {
            // SPEC: the error, and the peer stays.
            self.replies.push(from, status::UDP_LINE_TOO_LONG);
            if let Some(more) = self.too_long.hit(now) {
                status::udp_too_long(id, max_line, more);
            }
            return;
        }
        let buf = std::mem::take(&mut self.buf);
        let msg = datagram::message(&buf[..n], self.is_line);
        self.call(|handler, out| handler.on_message(id, msg, out));
        self.buf = buf;
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
        let socket = &self.socket;
        let blocked = self.replies.flush(|bytes, to| socket.send_to(bytes, to)) == Drained::Blocked;
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
    fn close_all(&mut self) {
        self.read(MAX_FINAL_DATAGRAMS);
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
