//! The event loop: one thread, one `mio::Poll`, every socket.
//!
//! Each pass of the loop (after Redis's `ae.c`):
//!
//! 1. poll, with a timeout from the earliest deadline (report, idle flush,
//!    linger, drain end, accept retry), or zero while work is pending;
//! 2. handle the events: accept, signals, reads (the handler's actions are
//!    applied at once; replies are only queued);
//! 3. read again from connections that still had data when their fairness
//!    budget ran out, or that were just resumed (no edge will come for them);
//! 4. run due timers, measured with a fresh `Instant::now()`;
//! 5. flush every connection that got output (one `writev` each, however
//!    many replies or broadcasts were queued) and enforce `--max-pending`;
//! 6. remove dead connections, after the batch, so a slab key is never
//!    reused while an event for its old owner may still be in hand.
//!
//! mio on Linux is edge-triggered: every read, write and accept runs until
//! `WouldBlock`, or the connection is put on a list to be resumed without an
//! event.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use crate::config::ServerConfig;
use crate::framing::{IDLE_FLUSH, LineFramer};
use crate::handlers::{
    Action, ClientId, Finish, Framing, Handler, Outbox, Payload, ServerStats, ShutdownPolicy,
    SlowPolicy,
};
use crate::journal::Journal;
use crate::outbuf::{Flushed, OutBuf};
use crate::status::{self, Status};
use crate::timers::{AcceptBackoff, AfterError, Ticker};

const LISTENER: Token = Token(usize::MAX);
const SIGNALS: Token = Token(usize::MAX - 1);

/// One `read` call's worth; the buffer is shared by every connection.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Bytes read from one connection before others get a turn.
const MAX_READ_PER_WAKEUP_BYTES: usize = 256 * 1024;
/// Bytes written to one connection before others get a turn.
const MAX_WRITE_PER_WAKEUP_BYTES: usize = 1024 * 1024;
/// Time the event phase, and then the ready list, may each spend reading in
/// one loop pass before timers run: with the per-connection budgets, what
/// keeps the periodic count within SPEC's "never more than 1 s late"
/// however many clients are busy. The rest is read in the next pass.
const PASS_BUDGET: Duration = Duration::from_millis(100);
/// What is read from each client when shutdown closes it: what was already
/// sent is handled, a client that keeps sending does not hold us forever.
const MAX_FINAL_READ_BYTES: usize = 16 * MAX_READ_PER_WAKEUP_BYTES;
/// After our last byte and FIN, how long we read and discard what a client
/// still sends before closing: closing with unread input makes Linux send a
/// RST, which can destroy replies the client has not read yet.
const LINGER: Duration = Duration::from_secs(1);
/// Bytes discarded from a closing client before we give up on a clean close.
const MAX_LINGER_DISCARD_BYTES: usize = 4 * 1024 * 1024;
/// Echo, presence, queue: how long shutdown may spend flushing.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(2);

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnState {
    /// Reading and writing.
    Open,
    /// No more input is handled (EOF, or the handler or a limit closed it);
    /// queued output is flushed, then our side is shut.
    Closing,
    /// Our FIN is sent; reading and discarding until the client closes too
    /// or `until` (see [`LINGER`]).
    Lingering { until: Instant },
    /// Gone; removed from the slab after this loop pass.
    Dead,
}

/// One client connection.
struct Conn {
    stream: TcpStream,
    /// SPEC's client number, for status lines and handler events.
    id: ClientId,
    framer: LineFramer,
    out: OutBuf,
    state: ConnState,
    /// The interest currently registered with the poller, so we reregister
    /// only when it changes.
    interest: Interest,
    /// The handler asked us not to read (the sink's waiting clients).
    paused_by_handler: bool,
    /// Its queued output passed `--max-pending` (echo, queue): no reading
    /// until it has drained to half of that.
    paused_by_output: bool,
    /// True until the handler has been told this client is gone (or closed
    /// it itself), so `on_disconnect` is called exactly once.
    handler_knows: bool,
    /// When its unfinished line counts as a message (idle flush), if it has one.
    idle_deadline: Option<Instant>,
    /// On the `dirty` list already.
    dirty: bool,
    /// Bytes discarded while lingering.
    discarded: usize,
}

impl Conn {
    fn may_read(&self) -> bool {
        self.state == ConnState::Open && !self.paused_by_handler && !self.paused_by_output
    }
}

/// The server's phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// Ledger and sink after the first signal: serving connected clients
    /// until they leave or `until`.
    Draining {
        until: Instant,
    },
    /// Closing every client: flush, then close; exit when none is left, or
    /// at `until` whatever remains.
    Closing {
        until: Instant,
    },
}

/// Runs the event loop on `listener` until SIGINT/SIGTERM and the shutdown
/// SPEC describes, then returns what the handler leaves to write and print.
/// Prints the `Listening on` line once signals are being caught, so a test
/// that signals right after reading it cannot kill the process by default.
///
/// With a `journal`, what the handler applied in one loop pass is made
/// durable (one write, one fsync) before any client is closed in that pass.
///
/// # Errors
/// Only set-up failures (poll, signal or listener registration), a failing
/// `poll`, and a journal that cannot be written (acknowledging what is not
/// durable would break the journal's promise); anything that goes wrong
/// with one client closes only that client.
pub fn run(
    listener: std::net::TcpListener,
    config: ServerConfig,
    handler: Box<dyn Handler>,
    status: Status,
    journal: Option<Journal>,
) -> io::Result<Finish> {
    let mut reactor = Reactor::new(listener, config, handler, status)?;
    reactor.journal = journal;
    reactor.run()
}

struct Reactor {
    poll: Poll,
    /// `None` once shutdown began.
    listener: Option<TcpListener>,
    signals: Signals,
    conns: Slab<Conn>,
    /// Routes handler actions (which name clients) to slab keys.
    keys: HashMap<ClientId, usize>,
    handler: Box<dyn Handler>,
    framing: Framing,
    outbox: Outbox,
    config: ServerConfig,
    status: Status,
    /// The id the next client gets.
    next_id: u64,
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
    /// Accepting on hold after descriptor exhaustion.
    accept_backoff: AcceptBackoff,
    /// The periodic count (`--report-every`), if on.
    report: Option<Ticker>,
    phase: Phase,
    stats: ServerStats,
    /// The ledger's journal (`--journal`), synced once per loop pass.
    journal: Option<Journal>,
    /// Records taken from the handler, reused between passes.
    journal_buf: Vec<u8>,
    /// Records were written since the last fsync.
    journal_unsynced: bool,
    /// A journal write failed; the loop stops at the end of the pass.
    journal_error: Option<io::Error>,
    /// Raw fd 1, for the sink's bytes (no line buffering).
    stdout: std::mem::ManuallyDrop<std::fs::File>,
}

impl Reactor {
    fn new(
        listener: std::net::TcpListener,
        config: ServerConfig,
        handler: Box<dyn Handler>,
        status: Status,
    ) -> io::Result<Self> {
        let poll = Poll::new()?;
        listener.set_nonblocking(true)?;
        let mut listener = TcpListener::from_std(listener);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let mut signals = Signals::new([SIGINT, SIGTERM])?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        let start = Instant::now();
        let framing = handler.framing();
        // SAFETY: fd 1 is open for the life of the process; ManuallyDrop
        // keeps this File from closing it.
        let stdout = std::mem::ManuallyDrop::new(unsafe {
            <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(1)
        });
        let addr = listener.local_addr()?;
        status.listening(addr, handler.name());
        Ok(Reactor {
            poll,
            listener: Some(listener),
            signals,
            conns: Slab::new(),
            keys: HashMap::new(),
            handler,
            framing,
            outbox: Outbox::new(),
            report: Ticker::new(start, config.report_every),
            config,
            status,
            next_id: 1,
            scratch: vec![0; READ_CHUNK_BYTES],
            ready: VecDeque::new(),
            dirty: VecDeque::new(),
            dead: Vec::new(),
            idle_queue: BinaryHeap::new(),
            linger_queue: BinaryHeap::new(),
            current: None,
            accept_backoff: AcceptBackoff::default(),
            phase: Phase::Running,
            stats: ServerStats::default(),
            journal: None,
            journal_buf: Vec::new(),
            journal_unsynced: false,
            journal_error: None,
            stdout,
        })
    }

    fn run(&mut self) -> io::Result<Finish> {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.next_timeout(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                // A signal landing during poll is an empty wakeup.
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            let pass_start = Instant::now();
            self.outbox.set_now(pass_start);
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.handle_accept(),
                    SIGNALS => self.handle_signals(),
                    // Past the pass budget, reading waits for a later pass
                    // (timers first); edge-triggered, so it must be queued.
                    Token(key) if pass_start.elapsed() > PASS_BUDGET => self.defer(key),
                    Token(key) => {
                        self.handle_event(key, event.is_readable(), event.is_read_closed())
                    }
                }
            }
            self.handle_ready();
            self.handle_timers(Instant::now());
            // Before any FIN goes out in flush_dirty: a client that sees us
            // close after its EOF may rely on all it sent being durable.
            self.sync_journal(false)?;
            self.flush_dirty();
            self.reap();
            if self.finished() {
                break;
            }
        }
        self.sync_journal(true)?;
        Ok(self.handler.finish(&self.stats))
    }

    /// Writes what the handler applied this pass to the journal, and makes
    /// it durable if this pass is about to close a client (its FIN is the
    /// acknowledgement) or `force`. Writing every pass keeps memory bounded;
    /// syncing only before a FIN keeps a blast from waiting on the disk at
    /// every pass: at most one fsync per pass, and none while clients are
    /// only sending.
    fn sync_journal(&mut self, force: bool) -> io::Result<()> {
        self.write_journal();
        if let Some(e) = self.journal_error.take() {
            return Err(io::Error::new(e.kind(), format!("journal: {e}")));
        }
        let Some(journal) = &mut self.journal else {
            return Ok(());
        };
        let closing = || {
            self.dirty.iter().any(|&k| {
                self.conns
                    .get(k)
                    .is_some_and(|c| c.state == ConnState::Closing)
            })
        };
        if self.journal_unsynced && (force || closing()) {
            journal
                .sync()
                .map_err(|e| io::Error::new(e.kind(), format!("journal: {e}")))?;
            self.journal_unsynced = false;
        }
        Ok(())
    }

    /// Writes (without waiting for the disk) the records the handler has
    /// produced since the last call. Called after every read too, so the
    /// records of one read, not of a whole pass, are held in memory. An
    /// error is kept for [`Reactor::sync_journal`] to report.
    fn write_journal(&mut self) {
        let Some(journal) = &mut self.journal else {
            return;
        };
        self.handler.take_journal(&mut self.journal_buf);
        if self.journal_buf.is_empty() || self.journal_error.is_some() {
            self.journal_buf.clear();
            return;
        }
        match journal.write(&self.journal_buf) {
            Ok(()) => self.journal_unsynced = true,
            Err(e) => self.journal_error = Some(e),
        }
        self.journal_buf.clear();
    }

    fn finished(&self) -> bool {
        matches!(self.phase, Phase::Closing { .. }) && self.conns.is_empty()
    }

    /// Time until the earliest deadline; zero while connections wait to be
    /// read or flushed without an event.
    fn next_timeout(&self, now: Instant) -> Option<Duration> {
        if !self.ready.is_empty() || !self.dirty.is_empty() {
            return Some(Duration::ZERO);
        }
        let phase_end = match self.phase {
            Phase::Running => None,
            Phase::Draining { until } | Phase::Closing { until } => Some(until),
        };
        [
            self.report.as_ref().map(Ticker::deadline),
            self.idle_queue.peek().map(|e| e.0.0),
            self.linger_queue.peek().map(|e| e.0.0),
            self.accept_backoff.deadline(),
            phase_end,
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|deadline| deadline.saturating_duration_since(now))
    }

    // ----- accepting -------------------------------------------------------

    /// Accepts until the queue is empty (edge-triggered: no second event
    /// comes for connections left behind).
    fn handle_accept(&mut self) {
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => {
                    self.accept_backoff.accepted();
                    self.add_client(stream, peer);
                }
                Err(e) => {
                    if self.accept_backoff.error(&e, Instant::now()) == AfterError::Stop {
                        return;
                    }
                }
            }
        }
    }

    fn add_client(&mut self, mut stream: TcpStream, peer: SocketAddr) {
        if self.conns.len() >= self.config.max_clients {
            // Redis does the same: a best-effort line, then close. The
            // socket is new, so its send buffer has room for it.
            let _ = stream.write(status::TOO_MANY_CLIENTS);
            let _ = stream.shutdown(Shutdown::Write);
            status::too_many_clients(self.config.max_clients);
            return;
        }
        let _ = stream.set_nodelay(true);
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
        let id = ClientId(self.next_id);
        self.next_id += 1;
        entry.insert(Conn {
            stream,
            id,
            framer: LineFramer::new(),
            out: OutBuf::new(),
            state: ConnState::Open,
            interest: Interest::READABLE,
            paused_by_handler: false,
            paused_by_output: false,
            handler_knows: true,
            idle_deadline: None,
            dirty: false,
            discarded: 0,
        });
        self.keys.insert(id, key);
        self.status.connected(id, self.conns.len());
        self.handler.on_connect(id, peer, &mut self.outbox);
        self.apply_actions();
        // Bytes may already be waiting; the edge that announced them can
        // predate our registration.
        self.ready.push_back((key, id));
    }

    // ----- signals and shutdown -------------------------------------------

    fn handle_signals(&mut self) {
        let mut got = false;
        for _ in self.signals.pending() {
            got = true;
        }
        if !got {
            return;
        }
        let now = Instant::now();
        match self.phase {
            Phase::Running => self.begin_shutdown(now),
            Phase::Draining { .. } => {
                status::diag(format_args!("second signal: ending the drain now"));
                self.end_drain(now);
            }
            Phase::Closing { .. } => {
                // Already closing: stop waiting for slow readers.
                self.phase = Phase::Closing { until: now };
            }
        }
    }

    fn begin_shutdown(&mut self, now: Instant) {
        // SPEC: connections already in the accept queue are served like the
        // others; then the listener is closed.
        self.handle_accept();
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        self.accept_backoff.cancel();
        self.handler.on_shutdown(&mut self.outbox);
        self.apply_actions();
        match self.handler.shutdown_policy() {
            ShutdownPolicy::Drain if !self.conns.is_empty() => {
                self.status
                    .draining(self.config.drain_timeout, self.conns.len());
                self.phase = Phase::Draining {
                    until: now + self.config.drain_timeout,
                };
            }
            ShutdownPolicy::Drain => self.phase = Phase::Closing { until: now },
            ShutdownPolicy::CloseNow => self.close_all(now, false),
        }
    }

    fn end_drain(&mut self, now: Instant) {
        self.close_all(now, true);
    }

    /// Closes every client: what is already in the kernel is read and
    /// handled first (no complete line received is lost), then queued output
    /// is flushed. `cut`: an unfinished line is dropped and counted (end of
    /// a drain) rather than handled as a last message.
    fn close_all(&mut self, now: Instant, cut: bool) {
        self.phase = Phase::Closing {
            until: now + SHUTDOWN_FLUSH,
        };
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        let mut cut_clients = 0u64;
        for key in keys {
            let conn = &mut self.conns[key];
            if conn.state != ConnState::Open {
                continue;
            }
            if conn.may_read() {
                self.read_available(key, MAX_FINAL_READ_BYTES, Drain::ToEnd);
            }
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if conn.state != ConnState::Open {
                continue;
            }
            if cut {
                let partial = match self.framing {
                    Framing::Lines { .. } => conn.framer.discard(),
                    // A sink stream still open at the end of the drain is cut;
                    // a waiter that never had its turn sent us nothing yet.
                    Framing::Raw => !conn.paused_by_handler,
                };
                if partial {
                    cut_clients += 1;
                }
            } else {
                self.flush_partial(key);
            }
            // Every client is going: telling the handler one by one would
            // only make presence broadcast lists nobody needs any more.
            if let Some(conn) = self.conns.get_mut(key) {
                conn.handler_knows = false;
            }
            self.start_closing(key);
        }
        if cut_clients > 0 {
            self.stats.cut_partial_lines += cut_clients;
            status::diag(format_args!(
                "drain ended: {cut_clients} client{} cut off in the middle of a line",
                if cut_clients == 1 { "" } else { "s" }
            ));
        }
    }

    // ----- reading ---------------------------------------------------------

    /// `read_closed`: the event's hint that the peer's FIN has arrived.
    fn handle_event(&mut self, key: usize, readable: bool, read_closed: bool) {
        let Some(conn) = self.conns.get(key) else {
            return; // sporadic event for a removed connection
        };
        match conn.state {
            ConnState::Dead => {}
            ConnState::Open => {
                // Writable events and error hints are handled by trying the
                // operation: a hint alone proves nothing (mio docs).
                if conn.may_read() {
                    let until = if read_closed || !cfg!(target_os = "linux") {
                        Drain::ToEnd
                    } else {
                        Drain::ShortReadEnds
                    };
                    self.read_available(key, MAX_READ_PER_WAKEUP_BYTES, until);
                }
                self.mark_dirty(key);
            }
            ConnState::Closing | ConnState::Lingering { .. } => {
                if readable {
                    self.discard_input(key);
                }
                self.mark_dirty(key);
            }
        }
    }

    /// An event that came after the pass budget ran out: its connection is
    /// read in a later pass, its output flushed in this one.
    fn defer(&mut self, key: usize) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        match conn.state {
            ConnState::Dead => {}
            ConnState::Open => {
                if conn.may_read() {
                    self.ready.push_back((key, conn.id));
                }
                self.mark_dirty(key);
            }
            ConnState::Closing | ConnState::Lingering { .. } => {
                self.discard_input(key);
                self.mark_dirty(key);
            }
        }
    }

    /// Reads the connections waiting without an event, oldest first, for
    /// up to [`PASS_BUDGET`] of its own (not what the events left: a busy
    /// event phase must not starve connections that will raise no other
    /// edge, such as a client that has sent everything).
    fn handle_ready(&mut self) {
        let start = Instant::now();
        let mut ready = std::mem::take(&mut self.ready);
        let mut handled = 0usize;
        while let Some((key, id)) = ready.pop_front() {
            // At least one per pass, whatever the budget: progress.
            if handled > 0 && start.elapsed() > PASS_BUDGET {
                // This entry and the rest go first in the next pass, ahead
                // of those queued meanwhile; none may be dropped.
                ready.push_front((key, id));
                ready.append(&mut self.ready);
                self.ready = ready;
                return;
            }
            handled += 1;
            match self.conns.get(key) {
                Some(conn) if conn.id == id && conn.may_read() => {
                    self.read_available(key, MAX_READ_PER_WAKEUP_BYTES, Drain::ToEnd);
                    self.mark_dirty(key);
                }
                _ => {}
            }
        }
    }

    /// Reads and handles input from `key` until `WouldBlock` (or a short
    /// read, see [`Drain`]), EOF, an error, a pause, or `budget` bytes (then
    /// it goes on the ready list).
    fn read_available(&mut self, key: usize, budget: usize, until: Drain) {
        let mut read_total = 0;
        loop {
            let conn = &mut self.conns[key];
            if !conn.may_read() {
                return;
            }
            if read_total >= budget {
                self.ready.push_back((key, conn.id));
                return;
            }
            match conn.stream.read(&mut self.scratch) {
                Ok(0) => {
                    self.handle_eof(key);
                    return;
                }
                Ok(n) => {
                    read_total += n;
                    self.handle_input(key, n);
                    self.write_journal();
                    if until == Drain::ShortReadEnds && n < self.scratch.len() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.drop_client(key, &e.to_string());
                    return;
                }
            }
        }
    }

    /// Hands `scratch[..n]`, just read from `key`, to the framer and handler.
    fn handle_input(&mut self, key: usize, n: usize) {
        let conn = &mut self.conns[key];
        let id = conn.id;
        self.current = Some((id, key));
        let handler = &mut *self.handler;
        let outbox = &mut self.outbox;
        let data = &self.scratch[..n];
        let result = match self.framing {
            Framing::Raw => {
                handler.on_message(id, data, outbox);
                Ok(())
            }
            Framing::Lines { idle_flush } => {
                let result = conn.framer.push(data, self.config.max_line_bytes, |line| {
                    let before = outbox.actions().len();
                    handler.on_message(id, line, outbox);
                    // Stop at once if the handler closed this client.
                    let closed = outbox.closes_since(before, id);
                    if closed {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                });
                if idle_flush && conn.framer.has_partial() {
                    let deadline = Instant::now() + IDLE_FLUSH;
                    if conn.idle_deadline.is_none() {
                        self.idle_queue.push(Reverse((deadline, key, id)));
                    }
                    conn.idle_deadline = Some(deadline);
                } else {
                    conn.idle_deadline = None;
                }
                result
            }
        };
        self.apply_actions();
        self.current = None;
        if result.is_err() {
            self.line_too_long(key);
        }
    }

    /// SPEC: a line over `--max-line` gets the error line, then the
    /// connection is closed; no other client is affected.
    fn line_too_long(&mut self, key: usize) {
        let max = self.config.max_line_bytes;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let id = conn.id;
        status::line_too_long(id, max);
        if conn.state == ConnState::Open {
            conn.out.push_slice(status::LINE_TOO_LONG);
            self.client_gone(key);
            self.start_closing(key);
        }
    }

    /// The client shut its sending side: its unfinished line is its last
    /// message; then everything queued for it is sent and it is closed.
    fn handle_eof(&mut self, key: usize) {
        self.flush_partial(key);
        if self.conns[key].state == ConnState::Open {
            self.client_gone(key);
            self.start_closing(key);
        }
    }

    /// Hands out the unfinished line as a message (EOF tail, idle flush,
    /// shutdown).
    fn flush_partial(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        conn.idle_deadline = None;
        let id = conn.id;
        let handler = &mut *self.handler;
        let outbox = &mut self.outbox;
        let max = self.config.max_line_bytes;
        match conn
            .framer
            .flush(max, |msg| handler.on_message(id, msg, outbox))
        {
            Ok(true) => {
                self.current = Some((id, key));
                self.apply_actions();
                self.current = None;
            }
            Ok(false) => {}
            Err(_) => self.line_too_long(key),
        }
    }

    /// Reads and drops input from a closing client (see [`LINGER`]).
    fn discard_input(&mut self, key: usize) {
        loop {
            let conn = &mut self.conns[key];
            if conn.discarded > MAX_LINGER_DISCARD_BYTES {
                self.kill(key);
                return;
            }
            match conn.stream.read(&mut self.scratch) {
                Ok(0) => {
                    if matches!(conn.state, ConnState::Lingering { .. }) {
                        self.kill(key);
                    }
                    return;
                }
                Ok(n) => conn.discarded += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.kill(key);
                    return;
                }
            }
        }
    }

    // ----- handler actions -------------------------------------------------

    /// Carries out what the handler left in the outbox. Output is only
    /// queued here; it is written in [`Reactor::flush_dirty`].
    fn apply_actions(&mut self) {
        if self.outbox.is_empty() {
            return;
        }
        let outbox = std::mem::take(&mut self.outbox);
        for action in outbox.actions() {
            match action {
                Action::Send { to, payload } => {
                    let Some(key) = self.live_key(*to) else {
                        continue;
                    };
                    let conn = &mut self.conns[key];
                    match payload {
                        Payload::Shared(buf) => conn.out.push_shared(buf),
                        Payload::Arena(_) => conn.out.push_slice(outbox.bytes(payload)),
                    }
                    if self.current.is_some_and(|(id, _)| id == *to) && !conn.dirty {
                        self.mark_dirty_first(key);
                    } else {
                        self.mark_dirty(key);
                    }
                }
                Action::Close(id) => {
                    if let Some(key) = self.live_key(*id) {
                        let conn = &mut self.conns[key];
                        if conn.state == ConnState::Open {
                            conn.handler_knows = false;
                            self.start_closing(key);
                        }
                    }
                }
                Action::PauseReading(id) => {
                    if let Some(key) = self.live_key(*id) {
                        self.conns[key].paused_by_handler = true;
                    }
                }
                Action::ResumeReading(id) => {
                    if let Some(key) = self.live_key(*id) {
                        self.conns[key].paused_by_handler = false;
                        // Edge-triggered: what arrived during the pause raised
                        // no event we acted on, so read now.
                        self.ready.push_back((key, *id));
                    }
                }
                Action::Stdout(payload) => {
                    // Blocking write: the sink's other clients wait by SPEC
                    // anyway, and a slow stdout must slow the sender down.
                    if let Err(e) = self.stdout.write_all(outbox.bytes(payload)) {
                        status::diag(format_args!("stdout: {e}"));
                    }
                }
                Action::Diagnostic(line) => status::diag(format_args!("{line}")),
                // No handler persists yet: the server core carries it out.
                Action::Persist(_) => {}
            }
        }
        self.outbox = outbox;
        self.outbox.clear();
    }

    /// The slab key of a client that can still take output.
    fn live_key(&self, id: ClientId) -> Option<usize> {
        let key = match self.current {
            Some((current, key)) if current == id => key,
            _ => *self.keys.get(&id)?,
        };
        match self.conns.get(key) {
            Some(conn)
                if conn.id == id && matches!(conn.state, ConnState::Open | ConnState::Closing) =>
            {
                Some(key)
            }
            _ => None,
        }
    }

    // ----- writing ---------------------------------------------------------

    fn mark_dirty(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push_back(key);
        }
    }

    /// Like [`Reactor::mark_dirty`], but flushed before the others: the
    /// client that spoke gets its answer first (a presence newcomer its list
    /// before the other 999), then everyone else in the order addressed.
    /// The caller checks it is not dirty yet (it would be queued twice).
    fn mark_dirty_first(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        debug_assert!(!conn.dirty);
        conn.dirty = true;
        self.dirty.push_front(key);
    }

    /// Writes out every connection that got output this pass, applies
    /// `--max-pending`, moves closing connections along, and keeps each
    /// connection's registered interest in step with its output.
    fn flush_dirty(&mut self) {
        let mut deferred = Vec::new();
        // Handling one connection can dirty others (a dropped presence
        // client makes a broadcast), hence the loop.
        while let Some(key) = self.dirty.pop_front() {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            conn.dirty = false;
            if conn.state == ConnState::Dead {
                continue;
            }
            let flushed = match conn
                .out
                .flush_to(&mut conn.stream, MAX_WRITE_PER_WAKEUP_BYTES)
            {
                Ok(flushed) => flushed,
                Err(e) => {
                    self.drop_client(key, &e.to_string());
                    continue;
                }
            };
            if flushed == Flushed::Budget {
                deferred.push(key);
            }
            self.after_flush(key);
            if let Some(conn) = self.conns.get_mut(key)
                && conn.state != ConnState::Dead
            {
                self.update_interest(key);
            }
        }
        for key in deferred {
            if self
                .conns
                .get(key)
                .is_some_and(|c| c.state != ConnState::Dead)
            {
                self.mark_dirty(key);
            }
        }
    }

    /// Slow-client policy and closing, once output was written.
    fn after_flush(&mut self, key: usize) {
        let max = self.config.max_pending_bytes;
        let conn = &mut self.conns[key];
        let pending = conn.out.pending();
        match conn.state {
            ConnState::Open if pending > max => match self.handler.slow_policy() {
                SlowPolicy::PauseReading => conn.paused_by_output = true,
                SlowPolicy::Disconnect => {
                    let id = conn.id;
                    status::diag(format_args!(
                        "client {id}: dropped, {pending} bytes of output pending (over --max-pending {max})"
                    ));
                    self.drop_client(key, "");
                }
            },
            ConnState::Open => {
                if conn.paused_by_output && pending <= max / 2 {
                    conn.paused_by_output = false;
                    self.ready.push_back((key, conn.id));
                }
                if pending == 0 {
                    conn.out.shrink();
                }
            }
            ConnState::Closing if pending == 0 => {
                // Everything is out: send our FIN, then wait for theirs.
                let _ = conn.stream.shutdown(Shutdown::Write);
                let mut until = Instant::now() + LINGER;
                if let Phase::Closing { until: end } = self.phase {
                    until = until.min(end);
                }
                conn.state = ConnState::Lingering { until };
                self.linger_queue.push(Reverse((until, key, conn.id)));
                self.discard_input(key);
            }
            _ => {}
        }
    }

    /// Registers WRITABLE exactly while output is queued (STYLE §3.3).
    fn update_interest(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        let wanted = if conn.out.is_empty() {
            Interest::READABLE
        } else {
            Interest::READABLE | Interest::WRITABLE
        };
        if wanted != conn.interest {
            match self
                .poll
                .registry()
                .reregister(&mut conn.stream, Token(key), wanted)
            {
                Ok(()) => conn.interest = wanted,
                Err(e) => self.drop_client(key, &format!("reregister: {e}")),
            }
        }
    }

    // ----- timers ----------------------------------------------------------

    fn handle_timers(&mut self, now: Instant) {
        if self.report.as_mut().is_some_and(|t| t.fire(now)) {
            self.status.count(self.conns.len());
        }
        if self.accept_backoff.due(now) {
            self.handle_accept();
        }
        while let Some(&Reverse((due, key, id))) = self.idle_queue.peek() {
            if due > now {
                break;
            }
            self.idle_queue.pop();
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if conn.id != id || conn.state != ConnState::Open {
                continue;
            }
            match conn.idle_deadline {
                Some(deadline) if deadline <= now => {
                    self.flush_partial(key);
                    self.mark_dirty(key);
                }
                Some(later) => self.idle_queue.push(Reverse((later, key, id))),
                None => {}
            }
        }
        while let Some(&Reverse((due, key, id))) = self.linger_queue.peek() {
            if due > now {
                break;
            }
            self.linger_queue.pop();
            if self.conns.get(key).is_some_and(|c| c.id == id) {
                self.kill(key);
            }
        }
        match self.phase {
            Phase::Draining { until } if until <= now => {
                status::diag(format_args!("drain timeout reached"));
                self.end_drain(now);
            }
            Phase::Closing { until } if until <= now => {
                let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
                for key in keys {
                    self.kill(key);
                }
            }
            _ => {}
        }
    }

    // ----- closing ---------------------------------------------------------

    /// Tells the handler the client is gone, once.
    fn client_gone(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if conn.handler_knows {
            conn.handler_knows = false;
            let id = conn.id;
            self.handler.on_disconnect(id, &mut self.outbox);
            self.apply_actions();
        }
    }

    /// No more input is handled; output is flushed, then the connection
    /// lingers and closes.
    fn start_closing(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if conn.state == ConnState::Open {
            conn.state = ConnState::Closing;
            conn.idle_deadline = None;
            self.mark_dirty(key);
        }
    }

    /// Drops a client at once (I/O error, too slow): queued output is lost.
    fn drop_client(&mut self, key: usize, why: &str) {
        if !why.is_empty() {
            let id = self.conns[key].id;
            status::diag(format_args!("client {id}: {why}"));
        }
        self.conns[key].framer.discard();
        self.client_gone(key);
        self.kill(key);
    }

    /// Marks the connection for removal after this pass.
    fn kill(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if conn.state != ConnState::Dead {
            conn.state = ConnState::Dead;
            conn.out.clear();
            self.dead.push(key);
        }
    }

    /// Removes dead connections (deferred so a key is never reused within
    /// the batch of events that may still name it).
    fn reap(&mut self) {
        for key in std::mem::take(&mut self.dead) {
            let mut conn = self.conns.remove(key);
            // Deregister before the stream is dropped (closed).
            let _ = self.poll.registry().deregister(&mut conn.stream);
            self.keys.remove(&conn.id);
            self.status.disconnected(conn.id, self.conns.len());
        }
        if matches!(self.phase, Phase::Draining { .. }) && self.conns.is_empty() {
            self.phase = Phase::Closing {
                until: Instant::now(),
            };
        }
    }
}

/// How far a read pass must go before it may stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drain {
    /// Until `WouldBlock` or EOF: no event will announce what is left.
    ToEnd,
    /// A read that returns less than asked for ends the pass. On Linux's
    /// edge-triggered epoll this is safe and saves one `read` per wakeup
    /// (nginx does the same): the short read emptied the socket, data that
    /// arrives later raises a new edge, and a FIN that arrived before the
    /// event was reported shows as `is_read_closed`, in which case the
    /// caller asks for `ToEnd`. Elsewhere mio promises only the drain rule.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    ShortReadEnds,
}
