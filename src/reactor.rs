//! The event loop: one thread, one `mio::Poll`, every socket.
//!
//! Each pass of the loop (after Redis's `ae.c`):
//!
//! 1. poll, with a timeout from the earliest deadline (report, idle flush,
//!    linger, drain end, accept retry), or zero while work is pending;
//! 2. handle the events: accept, signals, reads, datagrams (the handler's
//!    actions are applied at once; replies are only queued); with
//!    what other threads left for this loop, if any ([`Membership`]);
//! 3. read again from connections that still had data when their fairness
//!    budget ran out, or that were just resumed (no edge will come for them);
//! 4. run due timers (idle flush, linger, UDP peers' idle expiry), measured
//!    with a fresh `Instant::now()`;
//! 5. flush every connection that got output (one `writev` each),
//!    enforce `--max-pending`, and send the queued reply datagrams
//!    (`udp`); before the first byte, datagram or FIN that follows
//!    persisted bytes, make them durable (one sync for the pass);
//! 6. remove dead connections, after the batch, so a slab key is never
//!    reused while an event for its old owner may still be in hand;
//! 7. hand the time to the [`Lifecycle`] and carry out its commands.
//!
//! The rules (phases, signals, the slow-client rule, framing, durability)
//! live in [`crate::server_core`], shared with the threaded server; this file and
//! its children own only sockets and readiness. mio on Linux is
//! edge-triggered: every read, write and accept runs until `WouldBlock`, or
//! the connection is put on a list to be resumed without an event.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use slab::Slab;

use crate::accept::{self, Acceptor};
use crate::config::ServerConfig;
use crate::handlers::{ClientId, Finish, Framing, Handler, Outbox, ServerStats, SlowPolicy};
use crate::limits::output_total::OutputTotal;
use crate::server_core::Setup;
use crate::server_core::durable::Durable;
use crate::server_core::ending::Cause;
use crate::server_core::lifecycle::{Command, Lifecycle};
use crate::server_core::session::Session;
use crate::signals::ShutdownSignals;
use crate::status;
use crate::stdout::{FlushDeadline, StdoutWriter};
use crate::store::Store;
use crate::timers::AcceptBackoff;
use crate::trace::Trace;

mod closing;
mod conn;
mod input;
mod member;
mod output;
mod stdout;
mod udp;

use conn::Conn;
pub use member::{Alone, Announcement, Membership, Wake, admit_to};

use crate::net::tokens::{LISTENER, SIGNALS, UDP, WAKE};

/// One `read` call's worth; the buffer is shared by every connection.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Time the event phase, and then the ready list, may each spend reading in
/// one loop pass before timers run: with the per-connection budgets, what
/// keeps the periodic count within SPEC's "never more than 1 s late"
/// however many clients are busy. The rest is read in the next pass.
const PASS_BUDGET: Duration = Duration::from_millis(100);

/// Runs the event loop on `listener` until a shutdown signal and the
/// shutdown SPEC describes, then returns what the handler leaves to write
/// and print. Prints the `Listening on` line once signals are being caught,
/// so a test that signals right after reading it cannot kill the process.
///
/// `setup.store`: where the handler's persisted bytes go (see
/// [`crate::server_core::durable`]): synced at most once per loop pass, and only
/// when output or a FIN follows unsynced bytes.
///
/// # Errors
/// Only set-up failures (poll, signal or listener registration), a failing
/// `poll`, and a store that cannot be written (acknowledging what is not
/// durable would break its promise: every client is reset, the server
/// stops); anything that goes wrong with one client closes only that client.
pub fn run(
    listener: std::net::TcpListener,
    udp: Option<std::net::UdpSocket>,
    setup: Setup,
) -> io::Result<Finish> {
    Reactor::new(listener, udp, setup)?.run()
}

/// A loop that is not the whole server: its poll (with its [`WAKE`]
/// waker registered), the `--udp` socket if it serves it, and how it takes
/// part ([`Membership`]). No listener and no signals: whoever runs it
/// passes clients and signals on through the membership.
pub struct LoopParts {
    pub poll: Poll,
    pub udp: Option<std::net::UdpSocket>,
    /// The one stdout writer of every loop.
    pub stdout: StdoutWriter,
    /// This loop's [`WAKE`] waker (the stdout writer wakes it too).
    pub waker: Arc<Waker>,
    pub config: ServerConfig,
    pub handler: Box<dyn Handler>,
    pub store: Option<Box<dyn Store>>,
    pub member: Box<dyn Membership>,
}

/// Runs such a loop until the lifecycle is done (see [`run`]).
///
/// # Errors
/// As for [`run`].
pub fn run_loop(parts: LoopParts) -> io::Result<Finish> {
    let LoopParts {
        poll,
        udp,
        stdout,
        waker,
        config,
        handler,
        store,
        member,
    } = parts;
    let udp = udp::Udp::serve(udp, poll.registry(), &config, &*handler)?;
    let sources = Sources {
        poll,
        listener: None,
        signals: None,
        udp,
    };
    let stdout = stdout::LoopStdout::new(stdout, waker);
    Reactor::with_parts(sources, stdout, config, handler, store, member)?.run()
}

/// A loop's poll and the sources registered with it already.
struct Sources {
    poll: Poll,
    listener: Option<TcpListener>,
    signals: Option<ShutdownSignals>,
    udp: Option<udp::Udp>,
}

struct Reactor {
    poll: Poll,
    /// `None` once shutdown began.
    listener: Option<TcpListener>,
    /// `None` in a loop run by [`run_loop`]: whoever runs it catches the
    /// signals and passes them on through the membership.
    signals: Option<ShutdownSignals>,
    conns: Slab<Conn>,
    /// The `--udp` socket and its peers (clients too).
    udp: Option<udp::Udp>,
    /// Routes handler actions (which name clients) to slab keys.
    keys: HashMap<ClientId, usize>,
    handler: Box<dyn Handler>,
    framing: Framing,
    slow_policy: SlowPolicy,
    outbox: Outbox,
    config: ServerConfig,
    /// Phases, signals, reports, accept back-off: the shared rules.
    life: Lifecycle,
    /// The handler's store and what it is owed.
    durable: Durable,
    /// The store failed: every client is reset and the loop stops.
    fatal: Option<io::Error>,
    /// Shared read buffer: a connection holds bytes only for an unfinished line.
    scratch: Vec<u8>,
    /// Connections to read from without waiting for an event.
    ready: VecDeque<(usize, ClientId)>,
    /// Connections with new output to flush at the end of this pass.
    /// Flushed front to back: the connection whose input caused output is
    /// put first, then the others in the order the handler addressed them.
    dirty: VecDeque<usize>,
    /// Connections marked dead, removed at the end of this pass.
    dead: Vec<usize>,
    /// Idle-flush deadlines, earliest first. At most one entry per
    /// connection: a later deadline is pushed again when the entry pops.
    idle_queue: BinaryHeap<Reverse<(Instant, usize, ClientId)>>,
    /// Linger deadlines, earliest first.
    linger_queue: BinaryHeap<Reverse<(Instant, usize, ClientId)>>,
    /// The connection whose input is being handled, so a reply to it skips
    /// the id lookup.
    current: Option<(ClientId, usize)>,
    stats: ServerStats,
    /// The sink's bytes: queued for the stdout writer thread, never
    /// written by the loop (see [`stdout`]).
    stdout: stdout::LoopStdout,
    /// How this loop takes part in the server: client ids, counts and the
    /// server-wide lines go through it.
    member: Box<dyn Membership>,
    /// `--trace`: one line per step (off: one branch per step).
    trace: Trace,
    /// `--max-output-total`: the total, and whom this loop holds back.
    total_gate: output::TotalGate,
}

impl Reactor {
    fn new(
        listener: std::net::TcpListener,
        udp: Option<std::net::UdpSocket>,
        setup: Setup,
    ) -> io::Result<Self> {
        let Setup {
            config,
            handler,
            store,
            status,
            mut signals,
        } = setup;
        let (poll, listener) = crate::net::poll_with_listener(listener, &mut signals)?;
        let addr = listener.local_addr()?;
        let udp = udp::Udp::serve(udp, poll.registry(), &config, &*handler)?;
        status.listening(addr, handler.traits().name, udp.is_some());
        let sources = Sources {
            poll,
            listener: Some(listener),
            signals: Some(signals),
            udp,
        };
        // The stdout writer wakes the loop through it.
        let waker = Arc::new(Waker::new(sources.poll.registry(), WAKE)?);
        let stdout = stdout::LoopStdout::new(StdoutWriter::new(config.max_pending_bytes)?, waker);
        let total = OutputTotal::new(config.max_output_total_bytes);
        let alone = Alone::new(status, total);
        Reactor::with_parts(sources, stdout, config, handler, store, Box::new(alone))
    }

    /// The loop around an existing poll; the listener, the signals and the
    /// UDP socket, if any, are registered already.
    fn with_parts(
        sources: Sources,
        stdout: stdout::LoopStdout,
        config: ServerConfig,
        handler: Box<dyn Handler>,
        store: Option<Box<dyn Store>>,
        member: Box<dyn Membership>,
    ) -> io::Result<Self> {
        let Sources {
            poll,
            listener,
            signals,
            udp,
        } = sources;
        let total_gate = output::TotalGate::new(member.output_total());
        Ok(Reactor {
            trace: Trace::for_this_loop(config.trace),
            poll,
            listener,
            signals,
            member,
            conns: Slab::new(),
            udp,
            keys: HashMap::new(),
            framing: handler.traits().framing,
            slow_policy: handler.traits().slow,
            life: Lifecycle::new(Instant::now(), &config, handler.traits().shutdown),
            handler,
            outbox: Outbox::new(),
            config,
            durable: Durable::new(store),
            fatal: None,
            scratch: vec![0; READ_CHUNK_BYTES],
            ready: VecDeque::new(),
            dirty: VecDeque::new(),
            dead: Vec::new(),
            idle_queue: BinaryHeap::new(),
            linger_queue: BinaryHeap::new(),
            current: None,
            stats: ServerStats::default(),
            stdout,
            total_gate,
        })
    }

    fn run(&mut self) -> io::Result<Finish> {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.next_timeout(Instant::now());
            self.kick_stdout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                // A signal landing during poll is an empty wakeup.
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            self.trace.pass(&events, timeout);
            let pass_start = Instant::now();
            self.outbox.set_now(pass_start);
            for event in events.iter() {
                match event.token() {
                    LISTENER => accept::accept_all(self),
                    SIGNALS => self.handle_signals(),
                    UDP => self.handle_udp_event(),
                    WAKE => self.handle_wake(),
                    // Past the pass budget, reading waits for a later pass
                    // (timers first); edge-triggered, so it must be queued.
                    Token(key) if pass_start.elapsed() > PASS_BUDGET => self.defer(key),
                    Token(key) => {
                        self.trace
                            .event(event, || self.conns.get(key).map(|c| c.id));
                        self.handle_event(key, event.is_readable(), event.is_read_closed())
                    }
                }
            }
            self.handle_ready();
            self.handle_udp_ready();
            let now = Instant::now();
            self.handle_timers(now);
            self.udp_expire(now);
            self.flush_dirty();
            self.flush_udp();
            if let Some(e) = self.fatal.take() {
                self.reset_all();
                return Err(e);
            }
            self.reap();
            let now = Instant::now();
            // A drain is over when this loop has nobody left.
            let serving = self.member.serving(self.conns.len());
            self.life.handle_timeout(now, serving);
            self.run_commands();
            self.trace.pass_end();
            if self.dead.is_empty()
                && !self.udp_owes_output()
                && self.life.is_done(self.conns.len(), now)
                && self.stdout_settled(now)
            {
                break;
            }
        }
        self.durable.finish()?;
        FlushDeadline::finish(&self.stdout.writer)?;
        Ok(self.handler.finish(&self.stats))
    }

    /// The store failed: nothing more may look acknowledged. Every client
    /// is reset (no FIN that could read as "all you sent is safe").
    fn reset_all(&mut self) {
        for (_, conn) in self.conns.iter_mut() {
            let _ = socket2::SockRef::from(&conn.stream).set_linger(Some(Duration::ZERO));
        }
        status::diag(format_args!("store failed: resetting every client"));
    }

    /// Time until the earliest deadline; zero while connections wait to be
    /// read, flushed or removed without an event.
    fn next_timeout(&self, now: Instant) -> Option<Duration> {
        if !self.ready.is_empty()
            || !self.dirty.is_empty()
            || !self.dead.is_empty()
            || self.udp.as_ref().is_some_and(udp::Udp::has_work)
        {
            return Some(Duration::ZERO);
        }
        [
            self.total_gate.recheck_at(now),
            self.life.poll_timeout(),
            self.udp.as_ref().and_then(udp::Udp::deadline),
            self.idle_queue.peek().map(|e| e.0.0),
            self.linger_queue.peek().map(|e| e.0.0),
            self.stdout.flush.wake_at(now),
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|deadline| deadline.saturating_duration_since(now))
    }

    /// Carries out what the lifecycle asks for.
    fn run_commands(&mut self) {
        while let Some(command) = self.life.poll_command() {
            self.trace.command(&command);
            match command {
                Command::StopAccepting => accept::stop_accepting(self),
                Command::NotifyHandler => {
                    self.handler.on_shutdown(&mut self.outbox);
                    self.apply_actions();
                }
                Command::AnnounceDrain { timeout } => {
                    self.member.announce(Announcement::Drain { timeout });
                }
                Command::CloseAll { cut } => {
                    self.udp_close_all();
                    self.close_all(cut);
                }
                Command::KillAll => {
                    self.udp_kill();
                    let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
                    for key in keys {
                        let conn = &self.conns[key];
                        if !conn.ending.is_dead() && !conn.out.is_empty() {
                            status::killed_with_output(conn.id, conn.out.pending());
                        }
                        self.end_conn(key, Cause::Killed);
                    }
                }
                Command::ReportCount => self.member.announce(Announcement::Count),
                Command::Accept => accept::accept_all(self),
                Command::Diagnostic(line) => {
                    self.member.announce(Announcement::Diagnostic(line));
                }
            }
        }
    }

    /// Another thread left something for this loop (see [`Membership`]):
    /// clients to serve, signals, actions for its clients.
    fn handle_wake(&mut self) {
        let wake = self.member.take_wake(&mut self.outbox);
        self.trace.woken(wake.clients.len(), wake.signals);
        for (stream, peer) in wake.clients {
            // Settled first: counted twice for a moment, a client would be
            // refused a place it has.
            self.member.settle();
            self.add_client(stream, peer);
        }
        let now = Instant::now();
        for _ in 0..wake.signals {
            self.stdout_signal(now);
            self.life.handle_signal(now);
        }
        self.run_commands();
        if let Some(e) = wake.failure {
            self.fatal.get_or_insert(e);
        }
        self.apply_actions();
        self.resume_after_stdout();
    }

    /// Every signal counts: two in one wakeup are a first and a second.
    fn handle_signals(&mut self) {
        let now = Instant::now();
        let count = self.signals.as_mut().map_or(0, ShutdownSignals::take);
        self.trace.signals(count);
        for _ in 0..count {
            self.stdout_signal(now);
            self.life.handle_signal(now);
        }
        self.run_commands();
    }
}

// ----- accepting -------------------------------------------------------

impl Acceptor for Reactor {
    type Listener = TcpListener;

    fn listening(&mut self) -> (&mut Option<TcpListener>, &mut AcceptBackoff, &Registry) {
        let backoff = self.life.accept_backoff();
        (&mut self.listener, backoff, self.poll.registry())
    }

    fn add_client(&mut self, mut stream: TcpStream, peer: SocketAddr) {
        let _ = stream.set_nodelay(true);
        // Until what it sends is durable, a death of the process must reset
        // this connection, not close it (see `net::set_reset_on_close`;
        // cleared before our FIN, at `Step::ShutWrite` in `closing.rs`).
        if self.durable.is_on()
            && let Err(e) = crate::net::set_reset_on_close(&stream, true)
        {
            status::diag(format_args!("accept: SO_LINGER: {e}; dropping connection"));
            return;
        }
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, Token(key), Interest::READABLE)
        {
            status::diag(format_args!("register: {e}; dropping connection"));
            return;
        }
        // The id, the status line and the handler's `on_connect`, in one
        // step (see [`Membership::admit`]).
        let max = self.config.max_clients;
        let Some(id) = self
            .member
            .admit(peer, Some(max), &mut *self.handler, &mut self.outbox)
        else {
            let _ = self.poll.registry().deregister(&mut stream);
            status::refuse_too_many_clients(&stream, max);
            return;
        };
        let session = Session::new(self.framing, self.config.max_line_bytes);
        let conn = entry.insert(Conn::new(stream, id, session));
        conn.out.charge_to(&self.total_gate.total);
        self.keys.insert(id, key);
        self.trace.accepted(id, peer);
        self.apply_actions();
        // Bytes may already be waiting; the edge that announced them can
        // predate our registration.
        self.ready.push_back((key, id));
    }
}
