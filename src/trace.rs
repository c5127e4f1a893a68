//! `--trace`: one short human-readable line per step of a server's loop, on
//! stderr, for people learning how one thread serves many clients. The
//! servers call one method per step (`trace.read(id, n)`); this module
//! formats, filters and throttles. The format is for people, not a stable
//! interface.
//!
//! Off (the default), every method is one predictable branch on whether a
//! sink exists: no formatting, no allocation, no clock read, no lock.
//! Arguments that cost something to compute are passed as closures, called
//! only when the trace is on, and the formatting sits in a cold function
//! out of line, so a server's hot function keeps its size and the
//! compiler's inlining of it (measured: see docs/TOUR.md).
//!
//! A line starts with who speaks and when (seconds since the server
//! started): `[loop 0 3.141]` for an event loop (`--reactors N`: loop 0 to
//! N-1), `[client-3 3.141]` for a thread of `threaded-server` (its reader;
//! `client-3-w` its writer; `acceptor` the accepting thread). Steps inside a
//! loop pass are indented under the pass line.
//!
//! The throttle, so a busy server neither drowns the reader nor slows down
//! much ([`PASS_LINES`], [`BURST_LINES`], [`LINES_PER_SECOND`]):
//! - in one loop pass, at most [`PASS_LINES`] lines about events, reads,
//!   framing and the handler are shown; the rest are counted by kind, and
//!   one summary line ends the pass (`... 1234 more steps in this pass not
//!   shown: read 400, ...`). Writes, waits for writable, pauses, accepts,
//!   closes, timers and the drain are always shown (they are what a reader
//!   looks for, and there are at most a few per client and pass);
//! - each trace (one per loop; one for all of `threaded-server`'s threads)
//!   shows at most [`BURST_LINES`] lines at once, then [`LINES_PER_SECOND`]
//!   a second (a token bucket): a conversation typed by hand, or a test's,
//!   is shown whole; a load test is sampled. Steps past the rate are only
//!   counted, and the next line shown is preceded by one line saying how
//!   many steps, of which kinds, were not shown.
//!
//! A hidden step still costs a lock and a counter, never formatting.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use mio::Token;
use mio::event::Event;

use crate::handlers::{ClientId, Framing, Outbox};
use crate::net::tokens;
use crate::server_core::lifecycle::Command;

mod sink;
#[cfg(test)]
mod tests;

use sink::{Sink, Speaker, Step, describe_actions};

/// Lines about events, reads, framing and the handler shown per loop pass;
/// the rest are summarised in one line.
pub const PASS_LINES: u32 = 24;
/// Lines one trace may show at once, before the rate applies.
pub const BURST_LINES: u32 = 2000;
/// Lines shown per second by one trace once the burst is spent; the rest
/// are counted.
pub const LINES_PER_SECOND: u32 = 200;

/// What an event in a pass came from, as the loop classifies its tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A client's socket.
    Client,
    /// The listening socket: connections wait to be accepted.
    Listener,
    /// The shutdown signals.
    Signal,
    /// Another thread woke the loop (`mio::Waker`).
    WakeUp,
    /// The `--udp` socket.
    Datagram,
}

impl Source {
    /// What a token stands for, in every poll of the servers
    /// ([`crate::net::tokens`]); any other token is a client's.
    fn of(token: Token) -> Source {
        match token {
            tokens::LISTENER => Source::Listener,
            tokens::SIGNALS => Source::Signal,
            tokens::WAKE => Source::WakeUp,
            tokens::UDP => Source::Datagram,
            _ => Source::Client,
        }
    }

    const ALL: [Source; 5] = [
        Source::Client,
        Source::Listener,
        Source::Signal,
        Source::WakeUp,
        Source::Datagram,
    ];

    fn name(self) -> &'static str {
        match self {
            Source::Client => "client socket",
            Source::Listener => "listener",
            Source::Signal => "signal",
            Source::WakeUp => "wake-up",
            Source::Datagram => "udp socket",
        }
    }
}

/// See the module doc. Cloning shares the sink (and its throttle).
#[derive(Clone, Default)]
pub struct Trace {
    /// `None`: tracing is off.
    sink: Option<Arc<Sink>>,
}

impl Trace {
    /// Off: every method does nothing.
    pub fn off() -> Trace {
        Trace { sink: None }
    }

    /// The trace of the event loop running on this thread, on stderr if
    /// `on`. Its number comes from the thread's name, `reactor-N` with
    /// `--reactors N` (loop 0 otherwise), so the loop need not know it is
    /// one of several.
    pub fn for_this_loop(on: bool) -> Trace {
        let index = std::thread::current()
            .name()
            .and_then(|name| name.strip_prefix("reactor-"))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        Trace::new(on, Speaker::Loop(index), Box::new(io::stderr()))
    }

    /// The one trace of `threaded-server`, shared by its threads; each line
    /// names the thread that printed it.
    pub fn for_threads(on: bool) -> Trace {
        Trace::new(on, Speaker::Thread, Box::new(io::stderr()))
    }

    fn new(on: bool, speaker: Speaker, out: Box<dyn Write + Send>) -> Trace {
        // One clock for every trace of the process, so that the lines of
        // several loops and threads can be read side by side.
        static START: OnceLock<Instant> = OnceLock::new();
        let start = *START.get_or_init(Instant::now);
        Trace {
            sink: on.then(|| Arc::new(Sink::new(speaker, start, out))),
        }
    }

    /// Whether tracing is on.
    #[inline]
    pub fn on(&self) -> bool {
        self.sink.is_some()
    }

    /// A loop pass begins: `events` came back from `poll`, which was given
    /// `timeout`.
    #[inline]
    pub fn pass(&self, events: &mio::Events, timeout: Option<Duration>) {
        if let Some(sink) = &self.sink {
            out_of_line(|| {
                let mut counts = [0usize; Source::ALL.len()];
                for event in events {
                    let s = Source::of(event.token());
                    counts[Source::ALL.iter().position(|&x| x == s).unwrap_or(0)] += 1;
                }
                sink.pass(&counts, timeout, Instant::now());
            });
        }
    }

    /// The pass is over: says what was hidden in it, if anything.
    #[inline]
    pub fn pass_end(&self) {
        if let Some(sink) = &self.sink {
            out_of_line(|| {
                sink.pass_end();
            });
        }
    }

    /// One event for a client's socket; `id`: whose (none if it is gone).
    #[inline]
    pub fn event(&self, event: &Event, id: impl FnOnce() -> Option<ClientId>) {
        if let Some(sink) = &self.sink {
            out_of_line(|| {
                let mut ready = Vec::new();
                if event.is_readable() {
                    ready.push("readable");
                }
                if event.is_writable() {
                    ready.push("writable");
                }
                if event.is_read_closed() {
                    ready.push("read closed (FIN)");
                }
                if event.is_write_closed() {
                    ready.push("write closed");
                }
                if event.is_error() {
                    ready.push("error");
                }
                let ready = ready.join(", ");
                match id() {
                    Some(id) => sink.step(Step::Event, format_args!("client {id}: event: {ready}")),
                    None => sink.step(
                        Step::Event,
                        format_args!("event for a gone client: {ready}"),
                    ),
                }
            });
        }
    }

    /// A connection was accepted and is now watched for readable.
    #[inline]
    pub fn accepted(&self, id: ClientId, peer: SocketAddr) {
        if let Some(sink) = &self.sink {
            out_of_line(|| {
                sink.step(
                    Step::Accept,
                    format_args!("accepted client {id} from {peer}"),
                );
            });
        }
    }

    /// The acceptor of `--reactors N` handed `n` new connections to loop
    /// `index`.
    #[inline]
    pub fn handed(&self, n: usize, index: usize) {
        if let Some(sink) = &self.sink {
            out_of_line(|| {
                sink.step(
                    Step::Accept,
                    format_args!("accepted {n} connection(s), handed to loop {index}"),
                );
            });
        }
    }

    /// `read` returned `n` bytes.
    #[inline]
    pub fn read(&self, id: ClientId, n: usize) {
        if let Some(sink) = &self.sink {
            out_of_line(|| {
                sink.step(Step::Read, format_args!("client {id}: read {n} bytes"));
            });
        }
    }

    /// `read` said `WouldBlock`: the socket is empty, wait for the next
    /// readable event.
    #[inline]
    pub fn would_block(&self, id: ClientId) {
        if let Some(sink) = &self.sink {
            out_of_line(|| {
                sink.step(
                    Step::Read,
                    format_args!("client {id}: read: would block (socket empty)"),
                );
            });
        }
    }

    /// `read` returned 0: the client sent its FIN.
    #[inline]
    pub fn eof(&self, id: ClientId) {
        if let Some(sink) = &self.sink {
            out_of_line(|| {
                sink.step(
                    Step::Read,
                    format_args!("client {id}: read 0 bytes: end of stream"),
                );
            });
        }
    }

    /// `data` was handed to the client's framer; `partial`: the bytes of an
    /// unfinished line it keeps afterwards.
    #[inline]
    pub fn framed(
        &self,
        id: ClientId,
        framing: Framing,
        data: &[u8],
        partial: impl FnOnce() -> usize,
    ) {
        if let Some(sink) = &self.sink {
            out_of_line(|| {
                if let Framing::Raw = framing {
                    let n = data.len();
                    sink.step(
                        Step::Framed,
                        format_args!("client {id}: {n} bytes to the handler as they are (raw)"),
                    );
                    return;
                }
                let lines = data.iter().filter(|&&b| b == b'\n').count();
                let s = if lines == 1 { "" } else { "s" };
                match partial() {
                    0 => sink.step(
                        Step::Framed,
                        format_args!("client {id}: framed {lines} line{s}"),
                    ),
                    kept => sink.step(
                        Step::Framed,
                        format_args!(
                            "client {id}: framed {lines} line{s}, kept a partial line of {kept} bytes"
                        ),
                    ),
                }
            });
        }
    }

    /// The handler left `out` (nothing is said if it is empty); `actor`:
    /// the client whose input (or connect, or disconnect) it was handling.
    #[inline]
    pub fn actions(&self, actor: Option<ClientId>, out: &Outbox) {
        if let Some(sink) = &self.sink
            && !out.is_empty()
        {
            out_of_line(|| {
                let text = describe_actions(actor, out);
                match actor {
                    Some(id) => {
                        sink.step(Step::Handler, format_args!("client {id}: handler: {text}"))
                    }
                    None => sink.step(Step::Handler, format_args!("handler: {text}")),
                }
            });
        }
    }

    /// A non-blocking flush: `before` bytes were queued, `after` are left
    /// (the socket's buffer is full: a partial write).
    #[inline]
    pub fn wrote(&self, id: ClientId, before: usize, after: usize) {
        if let Some(sink) = &self.sink
            && before > 0
        {
            out_of_line(|| {
                let n = before - after;
                if after == 0 {
                    sink.step(
                        Step::Write,
                        format_args!("client {id}: wrote {n} bytes, all out"),
                    );
                } else if n == 0 {
                    sink.step(
                        Step::Write,
                        format_args!(
                            "client {id}: write would block: socket buffer full, {after} bytes wait"
                        ),
                    );
                } else {
                    sink.step(
                        Step::Write,
                        format_args!(
                            "client {id}: wrote {n} of {before} bytes: partial write, socket buffer full, {after} left"
                        ),
                    );
                }
            });
        }
    }

    /// A blocking write of `n` bytes begins (a writer thread sleeps in it
    /// while the socket's buffer is full).
    #[inline]
    pub fn writing(&self, id: ClientId, n: usize) {
        if let Some(sink) = &self.sink {
            out_of_line(|| {
                sink.step(
                    Step::Write,
                    format_args!(
                        "client {id}: writing {n} bytes (blocks while the socket buffer is full)"
                    ),
                );
            });
        }
    }

    /// The registered interest changed: `writable` is whether the loop now
    /// waits for the socket to take more output.
    #[inline]
    pub fn interest(&self, id: ClientId, writable: bool) {
        if let Some(sink) = &self.sink {
            out_of_line(|| {
                if writable {
                    sink.step(
                        Step::Interest,
                        format_args!("client {id}: waiting for writable (output left)"),
                    );
                } else {
                    sink.step(
                        Step::Interest,
                        format_args!("client {id}: output done, waiting for readable only"),
                    );
                }
            });
        }
    }

    /// The slow-client rule: `paused` before and after, with `pending`
    /// bytes queued and `max` the `--max-pending` limit.
    #[inline]
    pub fn flow(&self, id: ClientId, was_paused: bool, paused: bool, pending: usize, max: usize) {
        if let Some(sink) = &self.sink {
            out_of_line(|| {
                match (was_paused, paused) {
                    (false, true) => sink.step(
                        Step::Flow,
                        format_args!(
                            "client {id}: paused: {pending} bytes queued > --max-pending {max}, its input waits in the kernel"
                        ),
                    ),
                    (true, false) => sink.step(
                        Step::Flow,
                        format_args!("client {id}: resumed: {pending} bytes queued <= {}", max / 2),
                    ),
                    _ => {}
                }
            });
        }
    }

    /// Not read from: over `--max-output-total`, with output queued.
    #[inline]
    pub fn total_held(&self, id: ClientId) {
        if let Some(sink) = &self.sink {
            let line = format_args!("client {id}: held: output over --max-output-total");
            out_of_line(|| sink.step(Step::Flow, line));
        }
    }

    /// The output total fell back under half: `count` held clients resume.
    #[inline]
    pub fn total_released(&self, count: usize) {
        if let Some(sink) = &self.sink {
            let line = format_args!("{count} held clients resume: total output under half");
            out_of_line(|| sink.step(Step::Flow, line));
        }
    }

    /// The sink's client stops (`paused`) or starts again being read,
    /// because the stdout writer's queue holds `unwritten` bytes of its
    /// `budget`.
    #[inline]
    pub fn stdout_flow(&self, id: ClientId, paused: bool, unwritten: usize, budget: usize) {
        if let Some(sink) = &self.sink {
            out_of_line(|| {
                if paused {
                    sink.step(
                        Step::Flow,
                        format_args!(
                            "client {id}: paused: {unwritten} bytes wait for stdout > {budget}, its input waits in the kernel"
                        ),
                    );
                } else {
                    sink.step(
                        Step::Flow,
                        format_args!(
                            "client {id}: resumed: {unwritten} bytes wait for stdout <= {}",
                            budget / 2
                        ),
                    );
                }
            });
        }
    }

    /// A reader thread waits because its client is paused.
    #[inline]
    pub fn waiting(&self, id: ClientId) {
        if let Some(sink) = &self.sink {
            out_of_line(|| {
                sink.step(
                    Step::Flow,
                    format_args!("client {id}: reader waits (paused) until the writer catches up"),
                );
            });
        }
    }

    /// The client is no longer read; its queued output is flushed, then
    /// our FIN goes out.
    #[inline]
    pub fn closing(&self, id: ClientId) {
        if let Some(sink) = &self.sink {
            out_of_line(|| {
                sink.step(
                    Step::Close,
                    format_args!(
                        "client {id}: closing: no more input, flush what is queued, then FIN"
                    ),
                );
            });
        }
    }

    /// Our FIN is sent; waiting for the client's.
    #[inline]
    pub fn lingering(&self, id: ClientId) {
        if let Some(sink) = &self.sink {
            out_of_line(|| {
                sink.step(
                    Step::Close,
                    format_args!("client {id}: all out, FIN sent, lingering for the client's FIN"),
                );
            });
        }
    }

    /// The connection is closed and forgotten.
    #[inline]
    pub fn closed(&self, id: ClientId) {
        if let Some(sink) = &self.sink {
            out_of_line(|| {
                sink.step(Step::Close, format_args!("client {id}: closed"));
            });
        }
    }

    /// A client's idle-flush deadline passed: its unfinished line becomes a
    /// message.
    #[inline]
    pub fn idle_flush(&self, id: ClientId) {
        if let Some(sink) = &self.sink {
            out_of_line(|| {
                sink.step(
                    Step::Timer,
                    format_args!("client {id}: timer: idle flush, the partial line is a message"),
                );
            });
        }
    }

    /// `n` shutdown signals were caught.
    #[inline]
    pub fn signals(&self, n: usize) {
        if let Some(sink) = &self.sink {
            out_of_line(|| {
                sink.step(
                    Step::Lifecycle,
                    format_args!("caught {n} shutdown signal(s)"),
                );
            });
        }
    }

    /// Another thread woke this loop (`--reactors N`): the acceptor with
    /// `clients` new connections and `signals` signals, or another loop
    /// with actions for this loop's clients.
    #[inline]
    pub fn woken(&self, clients: usize, signals: usize) {
        if let Some(sink) = &self.sink {
            out_of_line(|| {
                if clients + signals > 0 {
                    sink.step(
                        Step::Lifecycle,
                        format_args!(
                            "woken by the acceptor: {clients} new connection(s), {signals} signal(s)"
                        ),
                    );
                } else {
                    sink.step(
                        Step::Lifecycle,
                        format_args!("woken by another loop: actions for clients of this loop"),
                    );
                }
            });
        }
    }

    /// The lifecycle asks for `command` (timers, the drain, shutdown).
    #[inline]
    pub fn command(&self, command: &Command) {
        if let Some(sink) = &self.sink {
            out_of_line(|| {
                sink.command(command);
            });
        }
    }
}

/// Runs a step's formatting out of line: the servers' hot functions then
/// hold only the branch and a call, so turning `--trace` off leaves their
/// code (and the compiler's inlining of it) as it was.
#[cold]
#[inline(never)]
fn out_of_line(step: impl FnOnce()) {
    step();
}
