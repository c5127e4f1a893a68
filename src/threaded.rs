//! One OS thread per connection, driving the same handlers as the reactor
//! (the seeds' "multithreaded" server, kept for comparison).
//!
//! Threads and what they own:
//!
//! - the **supervisor** (the caller's thread): accepts, catches SIGINT and
//!   SIGTERM, prints the periodic count and runs shutdown. It waits in a
//!   small `mio::Poll` (listener, signals, a waker) so that one blocking wait
//!   covers all three; it never touches a client's bytes.
//! - a **reader** per client: blocking reads, framing, the idle flush (a read
//!   timeout while a partial line is held), then, under the handler lock, the
//!   `on_*` call and the bookkeeping part of its actions (queueing output,
//!   pauses, closes). The lock is released before any I/O: socket writes,
//!   stdout and stderr happen outside it.
//! - a **writer** per client, started when output is first queued for it:
//!   takes the client's whole queue at once and writes it with blocking
//!   vectored writes, so a slow client blocks only its own writer.
//!
//! Output is queued under the handler lock, so every client sees broadcasts
//! in the one order the handler produced them. Lock order is
//! `core` → `Client::state`; `table` is never held with either.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::mem::ManuallyDrop;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::ops::ControlFlow;
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use crate::config::ServerConfig;
use crate::framing::{IDLE_FLUSH, LineFramer};
use crate::handlers::{
    Action, ClientId, Finish, Framing, Handler, Outbox, Payload, ServerStats, ShutdownPolicy,
    SlowPolicy,
};
use crate::journal::Journal;
use crate::outbuf::OutBuf;
use crate::status::{self, Status};
use crate::timers::{AcceptBackoff, AfterError, Ticker};

const LISTENER: Token = Token(0);
const SIGNALS: Token = Token(1);
const WAKE: Token = Token(2);

/// Reader stacks: the handler runs on them. Small, so 10,000 idle
/// connections fit in memory (only touched pages count anyway).
const READER_STACK_BYTES: usize = 128 * 1024;
/// Writer stacks: they only copy slices into `writev`.
const WRITER_STACK_BYTES: usize = 64 * 1024;
/// A reader's buffer starts this small (an idle connection holds it while
/// blocked in `read`) ...
const READ_CHUNK_MIN_BYTES: usize = 4 * 1024;
/// ... and grows to this while reads keep filling it (bulk senders).
const READ_CHUNK_MAX_BYTES: usize = 64 * 1024;
/// What is read from each client when shutdown closes it: what was already
/// sent is handled, a client that keeps sending does not hold us forever.
const MAX_FINAL_READ_BYTES: usize = 4 * 1024 * 1024;
/// After our last byte and FIN, how long we read and discard what a client
/// still sends before closing: closing with unread input makes Linux send a
/// RST, which can destroy replies the client has not read yet.
const LINGER: Duration = Duration::from_secs(1);
/// Bytes discarded from a closing client before we give up on a clean close.
const MAX_LINGER_DISCARD_BYTES: usize = 4 * 1024 * 1024;
/// Echo, presence, queue: how long shutdown may spend flushing.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(2);
/// After killing every client at the end of shutdown, how long we wait for
/// their threads to report before returning anyway (a thread blocked on a
/// stdout nobody reads cannot be interrupted).
const REAP_GRACE: Duration = Duration::from_secs(1);

/// Runs the thread-per-connection server on `listener` until SIGINT/SIGTERM
/// and the shutdown SPEC describes, then returns what the handler leaves to
/// write and print. Prints the `Listening on` line once signals are caught.
///
/// # Errors
/// Only set-up failures (poll, signal or listener registration) and a
/// failing `poll`; anything that goes wrong with one client closes only that
/// client.
///
/// With a `journal`, the records a handler call produces are written in the
/// same lock hold (so the journal's order is the order of application), and
/// fsynced before a client is closed after its EOF.
pub fn run(
    listener: TcpListener,
    config: ServerConfig,
    handler: Box<dyn Handler>,
    status: Status,
    journal: Option<Journal>,
) -> io::Result<Finish> {
    let sup = Supervisor::new(listener, config, handler, status)?;
    if let Some(journal) = journal {
        *lock(&sup.server.journal) = Some(JournalState {
            journal,
            records: Vec::new(),
            failed: false,
        });
    }
    sup.run()
}

/// The ledger's journal and the buffer records pass through.
struct JournalState {
    journal: Journal,
    records: Vec<u8>,
    /// A write or sync failed: nothing more may be acknowledged.
    failed: bool,
}

/// Locks, ignoring poisoning: a panicking thread leaves plain data behind,
/// and the other clients are still worth serving.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

// ----- shared state ----------------------------------------------------------

/// Everything the supervisor and the client threads share.
struct Server {
    /// The handler and who it can address. Held only for handler calls and
    /// queueing, never across I/O.
    core: Mutex<Core>,
    /// Every connected client (accepted, not yet closed): the SPEC count,
    /// and what shutdown walks. Status lines are printed under this lock so
    /// their counts come out in order.
    table: Mutex<HashMap<ClientId, Arc<Client>>>,
    /// `--journal`. Lock order: `core` before `journal`, never the reverse.
    journal: Mutex<Option<JournalState>>,
    /// Connections whose threads have not finished (flush and linger
    /// included): a client leaves `table` when it disconnects, but shutdown
    /// must wait until its output is out.
    open: AtomicUsize,
    config: ServerConfig,
    status: Status,
    framing: Framing,
    slow_policy: SlowPolicy,
    /// Raw fd 1, for the sink's bytes (no line buffering). The lock keeps one
    /// `write_all` whole.
    stdout: Mutex<ManuallyDrop<File>>,
    /// Partial lines dropped at the end of a drain (`ServerStats`).
    cut_partial_lines: AtomicU64,
    /// Wakes the supervisor: the last client left, or a test signal.
    waker: Waker,
    /// Signals injected by unit tests (a real SIGINT would reach every test
    /// in the process).
    test_signals: AtomicUsize,
}

/// The handler lock's contents.
struct Core {
    handler: Box<dyn Handler>,
    /// Clients actions can name; removed when the reader finishes with the
    /// client, so later actions naming it are ignored.
    registry: HashMap<ClientId, Registered>,
}

struct Registered {
    client: Arc<Client>,
    /// True until the handler has been told this client is gone (or closed
    /// it itself), so `on_disconnect` is called exactly once.
    handler_knows: bool,
}

/// One connection, shared by its reader, its writer, the handler lock's
/// registry and the supervisor.
struct Client {
    id: ClientId,
    /// Read by the reader, written by the writer (`&TcpStream` is both), shut
    /// down by whoever must wake them.
    stream: TcpStream,
    /// `--max-pending`, copied here for the writer.
    max_pending: usize,
    state: Mutex<ClientState>,
    /// The reader waits here while paused.
    readable: Condvar,
    /// The writer waits here for output.
    writable: Condvar,
}

#[derive(Default)]
struct ClientState {
    /// Output queued and not yet taken by the writer.
    out: OutBuf,
    /// Bytes the writer took and has not written yet: counted for
    /// `--max-pending` with `out`.
    in_flight: usize,
    /// The handler asked us not to read (the sink's waiting clients).
    paused_by_handler: bool,
    /// Queued output passed `--max-pending` (echo, queue): no reading until
    /// it has drained to half of that.
    paused_by_output: bool,
    /// Why reading must end, set by another thread; `None` while serving.
    stop: Option<Stop>,
    /// No more output will be queued: the writer flushes, sends FIN, exits.
    output_closed: bool,
    /// Output is thrown away and the writer exits at once.
    dead: bool,
    /// The writer thread, once output was first queued.
    writer: Option<JoinHandle<bool>>,
}

/// Why a reader must stop, as decided by another thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The handler closed it (`Action::Close`): flush, close; no
    /// `on_disconnect`.
    Closed,
    /// Server shutdown: handle what the kernel already holds, then close.
    /// `cut`: an unfinished line is dropped and counted (end of a drain)
    /// rather than handled as a last message.
    Shutdown { cut: bool },
    /// Over `--max-pending` under `SlowPolicy::Disconnect`; the handler was
    /// already told.
    Dropped,
    /// A write failed (the writer printed why).
    WriteFailed,
    /// Shutdown's time ran out.
    Killed,
}

/// How a reader's connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The client shut its sending side: its unfinished line is its last
    /// message, then queued output is flushed.
    Eof,
    /// See [`Stop::Shutdown`].
    Shutdown { cut: bool },
    /// `--max-line`: `error: line too long`, then a graceful close.
    TooLong,
    /// The handler closed it: graceful close, no `on_disconnect`.
    Closed,
    /// Closed at once; queued output is lost.
    Kill,
}

impl Stop {
    fn end(self) -> End {
        match self {
            Stop::Closed => End::Closed,
            Stop::Shutdown { cut } => End::Shutdown { cut },
            Stop::Dropped | Stop::WriteFailed | Stop::Killed => End::Kill,
        }
    }
}

/// What a reader may do next.
enum Gate {
    Read,
    /// Shutdown: read what is left (the socket's read side is shut, so reads
    /// no longer block), then end.
    FinalRead {
        cut: bool,
    },
    /// Paused past the idle deadline: the unfinished line is a message.
    IdleDue,
    End(End),
}

impl Client {
    fn state(&self) -> MutexGuard<'_, ClientState> {
        lock(&self.state)
    }

    /// Waits until the reader may go on. `holding`: the reader has bytes in
    /// hand already (they are handled at shutdown unless the handler paused
    /// the client, like bytes a paused reactor connection leaves unread).
    fn gate(&self, idle_deadline: Option<Instant>, holding: bool) -> Gate {
        let mut st = self.state();
        loop {
            match st.stop {
                Some(Stop::Shutdown { cut }) => {
                    let paused = st.paused_by_handler || (st.paused_by_output && !holding);
                    return if paused {
                        Gate::End(End::Shutdown { cut })
                    } else {
                        Gate::FinalRead { cut }
                    };
                }
                Some(stop) => return Gate::End(stop.end()),
                None => {}
            }
            if !st.paused_by_handler && !st.paused_by_output {
                return Gate::Read;
            }
            st = match idle_deadline {
                Some(deadline) => {
                    let now = Instant::now();
                    if deadline <= now {
                        return Gate::IdleDue;
                    }
                    self.readable
                        .wait_timeout(st, deadline - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => self
                    .readable
                    .wait(st)
                    .unwrap_or_else(PoisonError::into_inner),
            };
        }
    }

    /// Why reading ended, when a read reported EOF or an error: another
    /// thread's stop (it shut the socket to wake us), else `otherwise`.
    fn stop_or(&self, otherwise: End) -> End {
        self.state().stop.map_or(otherwise, Stop::end)
    }

    /// Sets `stop` (unless a stronger one is set) and wakes the reader.
    fn request_stop(&self, st: &mut ClientState, stop: Stop) {
        let replace = match st.stop {
            None => true,
            Some(Stop::Closed | Stop::Shutdown { .. }) => {
                matches!(stop, Stop::Dropped | Stop::WriteFailed | Stop::Killed)
            }
            Some(_) => false,
        };
        if replace {
            st.stop = Some(stop);
        }
        self.readable.notify_all();
    }

    /// Throws queued output away and shuts the socket, waking a reader
    /// blocked in `read` and a writer blocked in `write`.
    fn kill(&self, stop: Stop) {
        let mut st = self.state();
        self.request_stop(&mut st, stop);
        st.dead = true;
        st.out.clear();
        self.writable.notify_all();
        drop(st);
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// No more output: lets the writer flush and send our FIN. Returns
    /// whether everything went out and the FIN was sent.
    fn close_output(&self) -> bool {
        let writer = {
            let mut st = self.state();
            if st.dead {
                return false;
            }
            st.output_closed = true;
            self.writable.notify_all();
            st.writer.take()
        };
        match writer {
            Some(writer) => writer.join().unwrap_or(false),
            // Nothing was ever queued; `output_closed` keeps it that way.
            None => self.stream.shutdown(Shutdown::Write).is_ok(),
        }
    }

    /// Kills the connection and waits for its writer.
    fn kill_and_join(&self, stop: Stop) {
        self.kill(stop);
        let writer = self.state().writer.take();
        if let Some(writer) = writer {
            let _ = writer.join();
        }
    }

    /// Reads and drops input after our FIN (see [`LINGER`]), until the
    /// client closes too, `LINGER` passes, or it sent too much.
    fn linger(&self) {
        let until = Instant::now() + LINGER;
        let mut buf = [0u8; 1024];
        let mut discarded = 0;
        while discarded <= MAX_LINGER_DISCARD_BYTES {
            let now = Instant::now();
            if now >= until || self.stream.set_read_timeout(Some(until - now)).is_err() {
                return;
            }
            match (&self.stream).read(&mut buf) {
                Ok(0) => return,
                Ok(n) => discarded += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return, // timeout, reset
            }
        }
    }

    /// The writer thread's loop: takes the whole queue, writes it (blocking),
    /// repeats; after `output_closed` and an empty queue, sends FIN. Returns
    /// whether it ended with everything written and the FIN sent.
    fn write_loop(&self) -> bool {
        let mut local = OutBuf::new();
        loop {
            if local.is_empty() {
                let mut st = self.state();
                loop {
                    if st.dead {
                        return false;
                    }
                    if !st.out.is_empty() {
                        // Double buffering: enqueuers keep appending to the
                        // (emptied, allocation-keeping) other buffer.
                        std::mem::swap(&mut st.out, &mut local);
                        st.in_flight = local.pending();
                        break;
                    }
                    if st.output_closed {
                        drop(st);
                        return self.stream.shutdown(Shutdown::Write).is_ok();
                    }
                    st = self
                        .writable
                        .wait(st)
                        .unwrap_or_else(PoisonError::into_inner);
                }
            }
            // A blocking socket returns only when all is written or on error.
            let result = local.flush_to(&mut &self.stream, usize::MAX);
            let mut st = self.state();
            st.in_flight = local.pending();
            match result {
                Ok(_) => {
                    let pending = st.out.pending() + st.in_flight;
                    if st.paused_by_output && pending <= self.max_pending / 2 {
                        st.paused_by_output = false;
                        self.readable.notify_all();
                    }
                    if pending == 0 {
                        // Going idle: give the chunks back.
                        local.shrink();
                        st.out.shrink();
                    }
                }
                Err(e) => {
                    if !st.dead {
                        status::diag(format_args!("client {}: {e}", self.id));
                        drop(st);
                        self.kill(Stop::WriteFailed);
                    }
                    return false;
                }
            }
        }
    }
}

/// A reader thread's own state.
struct Reader {
    framer: LineFramer,
    buf: Vec<u8>,
    /// When the unfinished line becomes a message (idle flush), if held.
    idle_deadline: Option<Instant>,
    /// The socket's current read timeout, so it is set only on change.
    timeout: Option<Duration>,
    /// Bytes read since shutdown asked us to stop.
    final_bytes: usize,
    /// This thread's outbox: Stdout and Diagnostic actions are carried out
    /// from it after the handler lock is released.
    out: Outbox,
}

impl Reader {
    fn new() -> Self {
        Reader {
            framer: LineFramer::new(),
            buf: vec![0; READ_CHUNK_MIN_BYTES],
            idle_deadline: None,
            timeout: None,
            final_bytes: 0,
            out: Outbox::new(),
        }
    }

    fn set_timeout(&mut self, stream: &TcpStream, wanted: Option<Duration>) {
        // Skip the syscall when the change is below timer resolution anyway.
        let close = |a: Duration, b: Duration| a.abs_diff(b) < Duration::from_millis(2);
        let same = match (self.timeout, wanted) {
            (None, None) => true,
            (Some(a), Some(b)) => close(a, b),
            _ => false,
        };
        if !same && stream.set_read_timeout(wanted).is_ok() {
            self.timeout = wanted;
        }
    }

    /// Grows the buffer while reads fill it, and frees it again when the
    /// client goes back to small messages.
    fn adapt_buffer(&mut self, n: usize) {
        let len = self.buf.len();
        if n == len && len < READ_CHUNK_MAX_BYTES {
            self.buf.resize((len * 4).min(READ_CHUNK_MAX_BYTES), 0);
        } else if n < READ_CHUNK_MIN_BYTES && len > READ_CHUNK_MIN_BYTES {
            self.buf = vec![0; READ_CHUNK_MIN_BYTES];
        }
    }
}

impl Server {
    fn core(&self) -> MutexGuard<'_, Core> {
        lock(&self.core)
    }

    /// Carries out the actions that touch shared state (output queues,
    /// pauses, closes) while the handler lock is held, so broadcasts are
    /// queued to everyone in one order. `actor`: the client whose reader is
    /// calling (its own socket need not be shut to wake it). Stdout and
    /// diagnostics are left for [`Server::carry_out_unlocked`].
    fn apply(&self, core: &mut Core, out: &Outbox, actor: Option<ClientId>) {
        let mut dropped = Vec::new();
        self.apply_locked(core, out, actor, &mut dropped);
        if dropped.is_empty() {
            return;
        }
        // Drops under SlowPolicy::Disconnect: tell the handler, whose
        // answer (the new presence list) may drop more.
        let mut extra = Outbox::new();
        while let Some((id, pending)) = dropped.pop() {
            let Some(reg) = core.registry.get_mut(&id) else {
                continue;
            };
            if !reg.handler_knows {
                continue;
            }
            reg.handler_knows = false;
            status::diag(format_args!(
                "client {id}: dropped, {pending} bytes of output pending (over --max-pending {})",
                self.config.max_pending_bytes
            ));
            reg.client.kill(Stop::Dropped);
            core.handler.on_disconnect(id, &mut extra);
            self.apply_locked(core, &extra, actor, &mut dropped);
            // Rare path: these few lines may be written under the lock.
            self.carry_out_unlocked(&extra);
            extra.clear();
        }
    }

    fn apply_locked(
        &self,
        core: &mut Core,
        out: &Outbox,
        actor: Option<ClientId>,
        dropped: &mut Vec<(ClientId, usize)>,
    ) {
        for action in out.actions() {
            match action {
                Action::Send { to, payload } => {
                    let Some(reg) = core.registry.get(to) else {
                        continue;
                    };
                    if let Some(pending) = self.enqueue(&reg.client, out, payload) {
                        dropped.push((*to, pending));
                    }
                }
                Action::Close(id) => {
                    let Some(reg) = core.registry.get_mut(id) else {
                        continue;
                    };
                    reg.handler_knows = false;
                    let client = &reg.client;
                    let mut st = client.state();
                    client.request_stop(&mut st, Stop::Closed);
                    drop(st);
                    if actor != Some(*id) {
                        // Its reader may be blocked in `read`.
                        let _ = client.stream.shutdown(Shutdown::Read);
                    }
                }
                Action::PauseReading(id) => {
                    if let Some(reg) = core.registry.get(id) {
                        reg.client.state().paused_by_handler = true;
                    }
                }
                Action::ResumeReading(id) => {
                    if let Some(reg) = core.registry.get(id) {
                        reg.client.state().paused_by_handler = false;
                        reg.client.readable.notify_all();
                    }
                }
                // No handler persists yet: the server core carries it out.
                Action::Stdout(_) | Action::Diagnostic(_) | Action::Persist(_) => {}
            }
        }
    }

    /// Queues `payload` for `client`, starting its writer if it has none.
    /// Returns the pending byte count if the client must be dropped
    /// (`SlowPolicy::Disconnect` over `--max-pending`).
    fn enqueue(&self, client: &Arc<Client>, out: &Outbox, payload: &Payload) -> Option<usize> {
        let mut st = client.state();
        if st.dead || st.output_closed {
            return None;
        }
        let was_empty = st.out.is_empty();
        match payload {
            Payload::Shared(buf) => st.out.push_shared(buf),
            Payload::Arena(_) => st.out.push_slice(out.bytes(payload)),
        }
        if st.writer.is_none() {
            let writer = Arc::clone(client);
            match thread::Builder::new()
                .name(format!("client-{}-w", client.id))
                .stack_size(WRITER_STACK_BYTES)
                .spawn(move || writer.write_loop())
            {
                Ok(handle) => st.writer = Some(handle),
                Err(e) => {
                    status::diag(format_args!(
                        "client {}: cannot start a writer thread: {e}; closing",
                        client.id
                    ));
                    drop(st);
                    client.kill(Stop::WriteFailed);
                    return None;
                }
            }
        } else if was_empty {
            // The writer sleeps only on an empty queue.
            client.writable.notify_one();
        }
        let pending = st.out.pending() + st.in_flight;
        if pending > self.config.max_pending_bytes {
            match self.slow_policy {
                SlowPolicy::PauseReading => st.paused_by_output = true,
                SlowPolicy::Disconnect => return Some(pending),
            }
        }
        None
    }

    /// Stdout and diagnostics, after the handler lock is released.
    fn carry_out_unlocked(&self, out: &Outbox) {
        for action in out.actions() {
            match action {
                Action::Stdout(payload) => {
                    // Blocking write: a slow stdout must slow the sender down.
                    let mut stdout = lock(&self.stdout);
                    if let Err(e) = stdout.write_all(out.bytes(payload)) {
                        status::diag(format_args!("stdout: {e}"));
                    }
                }
                Action::Diagnostic(line) => status::diag(format_args!("{line}")),
                _ => {}
            }
        }
    }

    /// Calls the handler with this reader's outbox, applies, unlocks, then
    /// does the I/O part.
    fn with_handler<R>(
        &self,
        id: ClientId,
        out: &mut Outbox,
        call: impl FnOnce(&mut dyn Handler, &mut Outbox) -> R,
    ) -> R {
        let mut core = self.core();
        out.set_now(Instant::now());
        let result = call(&mut *core.handler, out);
        self.apply(&mut core, out, Some(id));
        self.write_journal(&mut core);
        drop(core);
        self.carry_out_unlocked(out);
        out.clear();
        result
    }

    /// Writes the records the handler produced, under the core lock so the
    /// journal's order is the order transactions were applied in.
    fn write_journal(&self, core: &mut Core) {
        let mut guard = lock(&self.journal);
        let Some(js) = guard.as_mut() else { return };
        core.handler.take_journal(&mut js.records);
        if !js.records.is_empty()
            && !js.failed
            && let Err(e) = js.journal.write(&js.records)
        {
            js.failed = true;
            status::diag(format_args!(
                "journal: {e}; no more transactions will be acknowledged"
            ));
        }
        js.records.clear();
    }

    /// Makes every journal record written so far durable. Returns false if
    /// the journal failed: the caller must not acknowledge the client.
    fn sync_journal(&self) -> bool {
        let mut guard = lock(&self.journal);
        let Some(js) = guard.as_mut() else {
            return true;
        };
        if !js.failed
            && let Err(e) = js.journal.sync()
        {
            js.failed = true;
            status::diag(format_args!(
                "journal: {e}; no more transactions will be acknowledged"
            ));
        }
        !js.failed
    }

    // ----- reader thread ---------------------------------------------------

    fn serve(&self, client: &Client) {
        let mut r = Reader::new();
        let end = self.read_loop(client, &mut r);
        self.end_client(client, &mut r, end);
    }

    fn read_loop(&self, client: &Client, r: &mut Reader) -> End {
        loop {
            let final_read = match client.gate(r.idle_deadline, false) {
                Gate::End(end) => return end,
                Gate::IdleDue => {
                    if let Some(end) = self.flush_partial(client.id, r) {
                        return end;
                    }
                    continue;
                }
                Gate::Read => None,
                Gate::FinalRead { cut } => Some(cut),
            };
            if let Some(cut) = final_read
                && r.final_bytes >= MAX_FINAL_READ_BYTES
            {
                return End::Shutdown { cut };
            }
            let mut timeout = None;
            if let Some(deadline) = r.idle_deadline {
                let now = Instant::now();
                if deadline <= now {
                    if let Some(end) = self.flush_partial(client.id, r) {
                        return end;
                    }
                    continue;
                }
                timeout = Some(deadline - now);
            }
            r.set_timeout(&client.stream, timeout);
            match (&client.stream).read(&mut r.buf) {
                Ok(0) => {
                    return match final_read {
                        Some(cut) => End::Shutdown { cut },
                        // Our own shutdown(Read) looks like EOF.
                        None => client.stop_or(End::Eof),
                    };
                }
                Ok(n) => {
                    if final_read.is_some() {
                        r.final_bytes += n;
                    }
                    // A pause may have come while we were blocked in read:
                    // hold the bytes until it ends.
                    loop {
                        match client.gate(r.idle_deadline, true) {
                            Gate::End(end) => return end,
                            Gate::IdleDue => {
                                if let Some(end) = self.flush_partial(client.id, r) {
                                    return end;
                                }
                            }
                            Gate::Read | Gate::FinalRead { .. } => break,
                        }
                    }
                    if let Some(end) = self.handle_input(client.id, r, n) {
                        return end;
                    }
                    r.adapt_buffer(n);
                }
                // SO_RCVTIMEO expired: the loop top flushes if due.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => {
                    let end = client.stop_or(End::Kill);
                    if end == End::Kill {
                        status::diag(format_args!("client {}: {e}", client.id));
                    }
                    return end;
                }
            }
        }
    }

    /// Hands `r.buf[..n]` to the framer and handler.
    fn handle_input(&self, id: ClientId, r: &mut Reader, n: usize) -> Option<End> {
        let Reader {
            framer,
            buf,
            idle_deadline,
            out,
            ..
        } = r;
        let data = &buf[..n];
        let max_line = self.config.max_line_bytes;
        let framing = self.framing;
        let (too_long, closed) = self.with_handler(id, out, |handler, out| match framing {
            Framing::Raw => {
                handler.on_message(id, data, out);
                (false, false)
            }
            Framing::Lines { idle_flush } => {
                let mut closed = false;
                let result = framer.push(data, max_line, |line| {
                    let before = out.actions().len();
                    handler.on_message(id, line, out);
                    // Stop at once if the handler closed this client.
                    closed = out.closes_since(before, id);
                    if closed {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                });
                *idle_deadline =
                    (idle_flush && framer.has_partial()).then(|| Instant::now() + IDLE_FLUSH);
                (result.is_err(), closed)
            }
        });
        if too_long {
            Some(End::TooLong)
        } else if closed {
            Some(End::Closed)
        } else {
            None
        }
    }

    /// Hands out the unfinished line as a message (EOF tail, idle flush,
    /// shutdown); `Some(End::TooLong)` if it is over `--max-line`.
    fn flush_partial(&self, id: ClientId, r: &mut Reader) -> Option<End> {
        r.idle_deadline = None;
        if !r.framer.has_partial() {
            return None;
        }
        let framer = &mut r.framer;
        let max = self.config.max_line_bytes;
        let result = self.with_handler(id, &mut r.out, |handler, out| {
            framer.flush(max, |msg| handler.on_message(id, msg, out))
        });
        result.is_err().then_some(End::TooLong)
    }

    /// The end of a connection, in the reader thread (or the supervisor if
    /// the reader could not be started).
    fn end_client(&self, client: &Client, r: &mut Reader, end: End) {
        let id = client.id;
        let end = match end {
            End::Eof | End::Shutdown { cut: false } => self.flush_partial(id, r).unwrap_or(end),
            other => other,
        };
        match end {
            End::Eof | End::Shutdown { cut: false } => {}
            End::Shutdown { cut: true } => {
                let had_partial = match self.framing {
                    Framing::Lines { .. } => r.framer.discard(),
                    // A sink stream still open at the end of the drain is cut.
                    Framing::Raw => true,
                };
                if had_partial {
                    self.cut_partial_lines.fetch_add(1, Ordering::Relaxed);
                }
            }
            End::TooLong => {
                status::line_too_long(id, self.config.max_line_bytes);
                r.out.send(id, status::LINE_TOO_LONG);
            }
            End::Closed | End::Kill => {
                r.framer.discard();
            }
        }
        // Tell the handler (once) and forget the id, in one lock hold.
        {
            let mut core = self.core();
            if let Some(reg) = core.registry.get_mut(&id)
                && reg.handler_knows
            {
                reg.handler_knows = false;
                core.handler.on_disconnect(id, &mut r.out);
            }
            self.apply(&mut core, &r.out, Some(id));
            core.registry.remove(&id);
        }
        self.carry_out_unlocked(&r.out);
        r.out.clear();
        // A client that sees us close after its EOF may rely on what it sent
        // being durable; if the journal failed, it gets a reset instead.
        let durable = self.sync_journal();

        // The status line goes out now, in the order clients leave, not
        // after the flush and linger below: those take different times per
        // client, and the counts would come out of order.
        {
            let mut table = lock(&self.table);
            table.remove(&id);
            self.status.disconnected(id, table.len());
        }
        if end == End::Kill || !durable {
            client.kill_and_join(Stop::Killed);
        } else if client.close_output() {
            client.linger();
        } else {
            client.kill_and_join(Stop::Killed);
        }
        if self.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            let _ = self.waker.wake();
        }
    }
}

// ----- supervisor ------------------------------------------------------------

/// The server's phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// Ledger and sink after the first signal: serving connected clients
    /// until they leave or `until`.
    Draining {
        until: Instant,
    },
    /// Every client was told to close; at `until` the rest are killed.
    Closing {
        until: Instant,
    },
    /// Everyone was killed at `until - REAP_GRACE`; we wait for their
    /// threads until `until`, then return anyway.
    Reaping {
        until: Instant,
    },
}

struct Supervisor {
    server: Arc<Server>,
    poll: Poll,
    /// `None` once shutdown began.
    listener: Option<TcpListener>,
    signals: Signals,
    /// The id the next client gets.
    next_id: u64,
    /// The periodic count (`--report-every`), if on.
    report: Option<Ticker>,
    phase: Phase,
    /// Accepting on hold after descriptor exhaustion.
    accept_backoff: AcceptBackoff,
    /// The supervisor's own outbox (on_connect, on_shutdown).
    out: Outbox,
}

impl Supervisor {
    fn new(
        listener: TcpListener,
        config: ServerConfig,
        handler: Box<dyn Handler>,
        status: Status,
    ) -> io::Result<Self> {
        let poll = Poll::new()?;
        listener.set_nonblocking(true)?;
        poll.registry().register(
            &mut SourceFd(&listener.as_raw_fd()),
            LISTENER,
            Interest::READABLE,
        )?;
        let mut signals = Signals::new([SIGINT, SIGTERM])?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        let waker = Waker::new(poll.registry(), WAKE)?;
        let start = Instant::now();
        // SAFETY: fd 1 is open for the life of the process; ManuallyDrop
        // keeps this File from closing it.
        let stdout = ManuallyDrop::new(unsafe { File::from_raw_fd(1) });
        let addr = listener.local_addr()?;
        status.listening(addr, handler.name());
        let server = Arc::new(Server {
            framing: handler.framing(),
            slow_policy: handler.slow_policy(),
            core: Mutex::new(Core {
                handler,
                registry: HashMap::new(),
            }),
            table: Mutex::new(HashMap::new()),
            open: AtomicUsize::new(0),
            journal: Mutex::new(None),
            status,
            stdout: Mutex::new(stdout),
            cut_partial_lines: AtomicU64::new(0),
            waker,
            test_signals: AtomicUsize::new(0),
            config,
        });
        Ok(Supervisor {
            report: Ticker::new(start, server.config.report_every),
            server,
            poll,
            listener: Some(listener),
            signals,
            next_id: 1,
            phase: Phase::Running,
            accept_backoff: AcceptBackoff::default(),
            out: Outbox::new(),
        })
    }

    fn clients(&self) -> usize {
        lock(&self.server.table).len()
    }

    /// Connections still flushing or lingering, connected ones included.
    fn open(&self) -> usize {
        self.server.open.load(Ordering::SeqCst)
    }

    fn run(mut self) -> io::Result<Finish> {
        let mut events = Events::with_capacity(256);
        loop {
            let timeout = self.next_timeout(Instant::now());
            // A signal landing during poll is an empty wakeup.
            if let Err(e) = self.poll.poll(&mut events, timeout)
                && e.kind() != io::ErrorKind::Interrupted
            {
                return Err(e);
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.handle_accept(),
                    SIGNALS => {
                        let n = self.signals.pending().count();
                        for _ in 0..n {
                            self.handle_signal();
                        }
                    }
                    _ => {}
                }
            }
            for _ in 0..self.server.test_signals.swap(0, Ordering::Relaxed) {
                self.handle_signal();
            }
            self.handle_timers(Instant::now());
            if self.finished() {
                break;
            }
        }
        let cut = self.server.cut_partial_lines.load(Ordering::Relaxed);
        if cut > 0 {
            status::diag(format_args!(
                "drain ended: {cut} client{} cut off in the middle of a line",
                if cut == 1 { "" } else { "s" }
            ));
        }
        let stats = ServerStats {
            cut_partial_lines: cut,
        };
        {
            let mut core = self.server.core();
            self.server.write_journal(&mut core);
        }
        self.server.sync_journal();
        Ok(self.server.core().handler.finish(&stats))
    }

    fn finished(&self) -> bool {
        match self.phase {
            Phase::Running | Phase::Draining { .. } => false,
            Phase::Closing { .. } => self.open() == 0,
            Phase::Reaping { until } => self.open() == 0 || Instant::now() >= until,
        }
    }

    fn next_timeout(&self, now: Instant) -> Option<Duration> {
        let phase_end = match self.phase {
            Phase::Running => None,
            Phase::Draining { until } | Phase::Closing { until } | Phase::Reaping { until } => {
                Some(until)
            }
        };
        [
            self.report.as_ref().map(Ticker::deadline),
            self.accept_backoff.deadline(),
            phase_end,
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|deadline| deadline.saturating_duration_since(now))
    }

    // ----- accepting -------------------------------------------------------

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
        let server = &self.server;
        if self.clients() >= server.config.max_clients {
            // A best-effort line, then close; the new socket's send buffer
            // has room for it, so the write does not block.
            let _ = stream.write(status::TOO_MANY_CLIENTS);
            let _ = stream.shutdown(Shutdown::Write);
            status::too_many_clients(server.config.max_clients);
            return;
        }
        // accept(2) does not pass O_NONBLOCK on; make sure anyway.
        if let Err(e) = stream.set_nonblocking(false) {
            status::diag(format_args!("accept: {e}; dropping connection"));
            return;
        }
        let _ = stream.set_nodelay(true);
        let id = ClientId(self.next_id);
        self.next_id += 1;
        let client = Arc::new(Client {
            id,
            stream,
            max_pending: server.config.max_pending_bytes,
            state: Mutex::new(ClientState::default()),
            readable: Condvar::new(),
            writable: Condvar::new(),
        });
        {
            let mut table = lock(&server.table);
            table.insert(id, Arc::clone(&client));
            server.open.fetch_add(1, Ordering::SeqCst);
            server.status.connected(id, table.len());
        }
        {
            // Registered and announced before its reader starts, so pauses
            // from on_connect (the sink's waiters) hold from the first read.
            let mut core = server.core();
            core.registry.insert(
                id,
                Registered {
                    client: Arc::clone(&client),
                    handler_knows: true,
                },
            );
            self.out.set_now(Instant::now());
            core.handler.on_connect(id, peer, &mut self.out);
            server.apply(&mut core, &self.out, None);
        }
        server.carry_out_unlocked(&self.out);
        self.out.clear();
        let reader_server = Arc::clone(server);
        let reader_client = Arc::clone(&client);
        let spawned = thread::Builder::new()
            .name(format!("client-{id}"))
            .stack_size(READER_STACK_BYTES)
            .spawn(move || reader_server.serve(&reader_client));
        if let Err(e) = spawned {
            status::diag(format_args!(
                "client {id}: cannot start a thread: {e}; closing"
            ));
            server.end_client(&client, &mut Reader::new(), End::Kill);
        }
    }

    // ----- signals and shutdown -------------------------------------------

    fn handle_signal(&mut self) {
        let now = Instant::now();
        match self.phase {
            Phase::Running => self.begin_shutdown(now),
            Phase::Draining { .. } => {
                status::diag(format_args!("second signal: ending the drain now"));
                self.close_all(now, true);
            }
            // Already closing: stop waiting for slow readers.
            Phase::Closing { .. } => self.phase = Phase::Closing { until: now },
            Phase::Reaping { .. } => {}
        }
    }

    fn begin_shutdown(&mut self, now: Instant) {
        // SPEC: connections already in the accept queue are served like the
        // others; then the listener is closed.
        self.handle_accept();
        if let Some(listener) = self.listener.take() {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&listener.as_raw_fd()));
        }
        self.accept_backoff.cancel();
        let server = Arc::clone(&self.server);
        let policy = {
            let mut core = server.core();
            core.handler.on_shutdown(&mut self.out);
            server.apply(&mut core, &self.out, None);
            core.handler.shutdown_policy()
        };
        server.carry_out_unlocked(&self.out);
        self.out.clear();
        let clients = self.clients();
        match policy {
            ShutdownPolicy::Drain if clients > 0 => {
                server.status.draining(server.config.drain_timeout, clients);
                self.phase = Phase::Draining {
                    until: now + server.config.drain_timeout,
                };
            }
            ShutdownPolicy::Drain => self.phase = Phase::Closing { until: now },
            ShutdownPolicy::CloseNow => self.close_all(now, false),
        }
    }

    /// Tells every client's reader to handle what it already received and
    /// close (see [`Stop::Shutdown`]); shutting the read side wakes a reader
    /// blocked in `read` and makes later reads return at once.
    fn close_all(&mut self, now: Instant, cut: bool) {
        self.phase = Phase::Closing {
            until: now + SHUTDOWN_FLUSH,
        };
        for client in self.snapshot() {
            let mut st = client.state();
            if st.stop.is_some() {
                continue;
            }
            client.request_stop(&mut st, Stop::Shutdown { cut });
            drop(st);
            let _ = client.stream.shutdown(Shutdown::Read);
        }
    }

    fn snapshot(&self) -> Vec<Arc<Client>> {
        lock(&self.server.table).values().cloned().collect()
    }

    fn handle_timers(&mut self, now: Instant) {
        if self.report.as_mut().is_some_and(|t| t.fire(now)) {
            let table = lock(&self.server.table);
            self.server.status.count(table.len());
        }
        if self.accept_backoff.due(now) {
            self.handle_accept();
        }
        match self.phase {
            Phase::Draining { until } if until <= now => {
                status::diag(format_args!("drain timeout reached"));
                self.close_all(now, true);
            }
            Phase::Draining { .. } if self.clients() == 0 => {
                self.phase = Phase::Closing { until: now };
            }
            Phase::Closing { until } if until <= now => {
                for client in self.snapshot() {
                    client.kill(Stop::Killed);
                }
                self.phase = Phase::Reaping {
                    until: now + REAP_GRACE,
                };
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    //! The paths echo does not reach (broadcast order, drain and cut lines,
    //! handler pauses, drops under `SlowPolicy::Disconnect`), driven through
    //! a small test handler over real sockets. Signals are injected through
    //! `Server::test_signals`: a real SIGINT would reach every test here.

    use super::*;
    use crate::config::HandlerKind;
    use crate::handlers::strip_terminator;
    use std::collections::VecDeque;
    use std::io::{BufRead, BufReader};

    type Log = Arc<Mutex<Vec<(ClientId, Vec<u8>)>>>;

    /// `bcast X` sends `ID:X` to everyone, `flood` sends 4 MB to client 1,
    /// anything else is answered `ok`. Every client gets `hi ID` on connect
    /// and `gone ID` when another leaves; `on_shutdown` sends `shutdown`.
    /// With `turnstile`, only the oldest client is read (like the sink).
    #[derive(Default)]
    struct Probe {
        drain: bool,
        disconnect_slow: bool,
        turnstile: bool,
        members: Vec<ClientId>,
        owner: Option<ClientId>,
        waiting: VecDeque<ClientId>,
        log: Log,
        lines: u64,
    }

    impl Probe {
        fn broadcast(&self, text: String, out: &mut Outbox) {
            let shared: Arc<[u8]> = Arc::from(text.into_bytes());
            for &m in &self.members {
                out.send_shared(m, &shared);
            }
        }
    }

    impl Handler for Probe {
        fn name(&self) -> &'static str {
            "probe"
        }
        fn framing(&self) -> Framing {
            Framing::Lines { idle_flush: false }
        }
        fn slow_policy(&self) -> SlowPolicy {
            if self.disconnect_slow {
                SlowPolicy::Disconnect
            } else {
                SlowPolicy::PauseReading
            }
        }
        fn shutdown_policy(&self) -> ShutdownPolicy {
            if self.drain {
                ShutdownPolicy::Drain
            } else {
                ShutdownPolicy::CloseNow
            }
        }
        fn on_connect(&mut self, id: ClientId, _peer: SocketAddr, out: &mut Outbox) {
            self.members.push(id);
            out.send(id, format!("hi {id}\n").as_bytes());
            if self.turnstile {
                if self.owner.is_none() {
                    self.owner = Some(id);
                } else {
                    self.waiting.push_back(id);
                    out.pause_reading(id);
                }
            }
        }
        fn on_message(&mut self, id: ClientId, msg: &[u8], out: &mut Outbox) {
            lock(&self.log).push((id, msg.to_vec()));
            self.lines += 1;
            let line = strip_terminator(msg);
            if let Some(rest) = line.strip_prefix(b"bcast ") {
                let text = format!("{id}:{}\n", String::from_utf8_lossy(rest));
                self.broadcast(text, out);
            } else if line == b"flood" {
                out.send(ClientId(1), &vec![b'x'; 4 << 20]);
            } else {
                out.send(id, b"ok\n");
            }
        }
        fn on_disconnect(&mut self, id: ClientId, out: &mut Outbox) {
            self.members.retain(|&m| m != id);
            self.broadcast(format!("gone {id}\n"), out);
            if self.owner == Some(id) {
                self.owner = self.waiting.pop_front();
                if let Some(next) = self.owner {
                    out.resume_reading(next);
                }
            }
        }
        fn on_shutdown(&mut self, out: &mut Outbox) {
            self.broadcast("shutdown\n".to_string(), out);
        }
        fn finish(&mut self, stats: &ServerStats) -> Finish {
            Finish {
                files: Vec::new(),
                status: vec![format!(
                    "lines {} cut {}",
                    self.lines, stats.cut_partial_lines
                )],
            }
        }
    }

    struct Running {
        addr: SocketAddr,
        server: Arc<Server>,
        thread: JoinHandle<io::Result<Finish>>,
    }

    impl Running {
        fn start(handler: Probe, tweak: impl FnOnce(&mut ServerConfig)) -> Running {
            let listener = crate::net::bind_listener("127.0.0.1:0".parse().unwrap()).unwrap();
            let addr = listener.local_addr().unwrap();
            let mut config = ServerConfig::new(HandlerKind::Echo);
            config.report_every = None;
            tweak(&mut config);
            let sup = Supervisor::new(listener, config, Box::new(handler), Status::new(true))
                .expect("supervisor starts");
            let server = Arc::clone(&sup.server);
            let thread = thread::spawn(move || sup.run());
            Running {
                addr,
                server,
                thread,
            }
        }

        fn signal(&self) {
            self.server.test_signals.fetch_add(1, Ordering::Relaxed);
            self.server.waker.wake().unwrap();
        }

        /// Connects and reads the `hi ID` greeting (so ids are known).
        fn connect(&self, id: u64) -> (TcpStream, BufReader<TcpStream>) {
            let stream = TcpStream::connect(self.addr).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            assert_eq!(read_line(&mut reader), format!("hi {id}\n"));
            (stream, reader)
        }

        fn finish(self) -> Finish {
            self.thread.join().unwrap().unwrap()
        }
    }

    fn read_line(reader: &mut BufReader<TcpStream>) -> String {
        let mut line = String::new();
        reader
            .read_line(&mut line)
            .expect("a line before the timeout");
        line
    }

    fn assert_eof(reader: &mut BufReader<TcpStream>) {
        let mut rest = Vec::new();
        match reader.read_to_end(&mut rest) {
            Ok(_) => assert!(rest.is_empty(), "unexpected bytes {rest:?}"),
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}"),
        }
    }

    #[test]
    fn broadcasts_reach_every_client_in_one_order() {
        let server = Running::start(Probe::default(), |_| {});
        let clients: Vec<_> = (1..=3).map(|id| server.connect(id)).collect();
        let senders: Vec<_> = clients
            .iter()
            .map(|(stream, _)| {
                let mut stream = stream.try_clone().unwrap();
                thread::spawn(move || {
                    for k in 0..200 {
                        stream.write_all(format!("bcast {k}\n").as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for sender in senders {
            sender.join().unwrap();
        }
        let seen: Vec<Vec<String>> = clients
            .into_iter()
            .map(|(_, mut reader)| (0..600).map(|_| read_line(&mut reader)).collect())
            .collect();
        assert_eq!(seen[0], seen[1]);
        assert_eq!(seen[0], seen[2]);
        for id in 1..=3 {
            let mine: Vec<&String> = seen[0]
                .iter()
                .filter(|l| l.starts_with(&format!("{id}:")))
                .collect();
            let expected: Vec<String> = (0..200).map(|k| format!("{id}:{k}\n")).collect();
            assert_eq!(
                mine,
                expected.iter().collect::<Vec<_>>(),
                "client {id} in order"
            );
        }
        server.signal();
        server.finish();
    }

    #[test]
    fn drain_serves_until_the_second_signal_then_cuts_the_partial_line() {
        let probe = Probe {
            drain: true,
            ..Probe::default()
        };
        let server = Running::start(probe, |c| c.drain_timeout = Duration::from_secs(60));
        let (mut stream, mut reader) = server.connect(1);
        stream.write_all(b"a\n").unwrap();
        assert_eq!(read_line(&mut reader), "ok\n");
        server.signal();
        assert_eq!(read_line(&mut reader), "shutdown\n");
        // Still served while draining; "part" arrives in the same segment.
        stream.write_all(b"b\npart").unwrap();
        assert_eq!(read_line(&mut reader), "ok\n");
        server.signal();
        assert_eof(&mut reader);
        let finish = server.finish();
        assert_eq!(finish.status, vec!["lines 2 cut 1".to_string()]);
    }

    #[test]
    fn drain_ends_when_the_last_client_leaves_and_its_tail_counts() {
        let probe = Probe {
            drain: true,
            ..Probe::default()
        };
        let server = Running::start(probe, |c| c.drain_timeout = Duration::from_secs(60));
        let (mut stream, mut reader) = server.connect(1);
        server.signal();
        assert_eq!(read_line(&mut reader), "shutdown\n");
        stream.write_all(b"x\ntail").unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        assert_eq!(read_line(&mut reader), "ok\n");
        assert_eq!(read_line(&mut reader), "ok\n", "the EOF tail is a message");
        assert_eof(&mut reader);
        let finish = server.finish();
        assert_eq!(finish.status, vec!["lines 2 cut 0".to_string()]);
    }

    #[test]
    fn a_paused_client_is_not_read_until_resumed() {
        let probe = Probe {
            turnstile: true,
            ..Probe::default()
        };
        let log = Arc::clone(&probe.log);
        let server = Running::start(probe, |_| {});
        let (mut one, mut one_reader) = server.connect(1);
        let (mut two, mut two_reader) = server.connect(2);
        two.write_all(b"two\n").unwrap();
        one.write_all(b"one\n").unwrap();
        assert_eq!(read_line(&mut one_reader), "ok\n");
        assert_eq!(*lock(&log), vec![(ClientId(1), b"one\n".to_vec())]);
        one.shutdown(Shutdown::Write).unwrap();
        assert_eq!(read_line(&mut two_reader), "gone 1\n");
        assert_eq!(read_line(&mut two_reader), "ok\n");
        assert_eq!(
            *lock(&log),
            vec![
                (ClientId(1), b"one\n".to_vec()),
                (ClientId(2), b"two\n".to_vec())
            ]
        );
        server.signal();
        server.finish();
    }

    #[test]
    fn a_slow_client_is_dropped_under_the_disconnect_policy() {
        let probe = Probe {
            disconnect_slow: true,
            ..Probe::default()
        };
        let server = Running::start(probe, |c| c.max_pending_bytes = 1024);
        let (_one, mut one_reader) = server.connect(1);
        let (mut two, mut two_reader) = server.connect(2);
        two.write_all(b"flood\n").unwrap();
        assert_eq!(read_line(&mut two_reader), "gone 1\n");
        let mut got = Vec::new();
        let _ = one_reader.read_to_end(&mut got);
        assert!(got.len() < 4 << 20, "the flood was dropped with the client");
        two.write_all(b"still here\n").unwrap();
        assert_eq!(read_line(&mut two_reader), "ok\n");
        server.signal();
        assert_eq!(read_line(&mut two_reader), "shutdown\n");
        assert_eof(&mut two_reader);
        server.finish();
    }
}
