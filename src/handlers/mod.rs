//! The handler seam: protocol meaning without I/O.
//!
//! A handler never sees a socket, a token, a clock or stdout. The server (the
//! mio reactor or the thread-per-connection server) feeds it events
//! (`on_connect`, `on_message`, `on_disconnect`, `on_shutdown`) and carries out
//! the [`Action`]s it leaves in an [`Outbox`]. That is what lets two very
//! different servers share one implementation of each protocol, and lets every
//! protocol be tested with plain byte slices.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::config::ServerConfig;
use crate::store::Store;

pub mod atm;
pub mod echo;
pub mod ledger;
pub mod menu;
pub mod presence;
pub mod queue;
pub mod sharing;
pub mod sink;
mod traits;

pub use sharing::Sharded;
pub use traits::{
    Datagrams, FileRole, HandlerKind, OwnedFile, Registration, Sharing, Traits, no_files,
};

/// Every handler `--handler` can name, in the order `--help` lists them:
/// one line per handler (see `docs/ADDING-A-HANDLER.md`).
pub static REGISTRY: &[HandlerKind] = &[
    HandlerKind(&ledger::REGISTRATION),
    HandlerKind(&echo::REGISTRATION),
    HandlerKind(&presence::REGISTRATION),
    HandlerKind(&sink::REGISTRATION),
    HandlerKind(&queue::REGISTRATION),
    HandlerKind(&menu::REGISTRATION),
    HandlerKind(&atm::REGISTRATION),
];

/// SPEC's client number: starts at 1 and is never reused within a run.
///
/// Not a mio `Token`: tokens are slab keys, and the slab hands a freed key
/// straight back out, so the two must never be derived from each other.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub u64);

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// How the server cuts a client's byte stream into messages.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Framing {
    /// Lines ending in `\n`; the tail at EOF is a last line. With
    /// `idle_flush`, bytes that sat [`crate::framing::IDLE_FLUSH`] with no
    /// newline after them are a message too (SPEC: interactive handlers only).
    Lines { idle_flush: bool },
    /// Lines as with `Lines { idle_flush: false }`, but the complete lines
    /// of one read go to [`Handler::on_lines`] in one call (the ledger: a
    /// stream of millions of lines, where a call and a newline search per
    /// line cost more than the line's own work).
    LineBlocks,
    /// No framing: every chunk read is handed over as it is (the sink).
    Raw,
}

/// What the server does when a client's queued output passes `--max-pending`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SlowPolicy {
    /// Stop reading from it until its output drains (echo, queue): the client
    /// slows itself down and loses nothing.
    PauseReading,
    /// Drop it with a diagnostic (presence): a broadcast must not wait for it.
    Disconnect,
}

/// What a server does with connected clients after SIGINT/SIGTERM.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ShutdownPolicy {
    /// Keep serving them until they disconnect or `--drain-timeout` passes
    /// (ledger, sink: a client may still be sending data that must count).
    Drain,
    /// Flush what is queued for each client and close it at once.
    CloseNow,
}

/// Bytes carried by an action: a range of the outbox's reusable arena (no
/// allocation per reply), or one shared buffer that many sends point at (a
/// broadcast is built once, whatever the number of recipients).
#[derive(Clone, Debug)]
pub enum Payload {
    Arena(Range<usize>),
    Shared(Arc<[u8]>),
}

/// One thing the server must do on a handler's behalf.
#[derive(Clone, Debug)]
pub enum Action {
    /// Queue bytes to a client's output, after everything queued before.
    Send { to: ClientId, payload: Payload },
    /// Flush the client's queued output, then close the connection. The
    /// handler gets no `on_disconnect` for a client it closed itself.
    Close(ClientId),
    /// Stop reading from the client (its bytes wait in the kernel).
    PauseReading(ClientId),
    /// Read from the client again. The server must read at once: with
    /// edge-triggered readiness, data that arrived during the pause raises no
    /// new event.
    ResumeReading(ClientId),
    /// Bytes for the server's stdout, exactly as given (the sink).
    Stdout(Payload),
    /// One line for stderr.
    Diagnostic(String),
    /// Bytes for the handler's [`crate::store::Store`] (the ledger's journal
    /// records, the atm's accounts file), and whether they add to what was
    /// persisted before or replace it. The server's rule: no byte and no
    /// FIN goes out to any client before everything persisted ahead of it is
    /// durable, so an acknowledged change survives a crash.
    Persist { payload: Payload, record: Record },
}

/// How persisted bytes relate to those persisted before them.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// One more record after the others (a journal): all of them count.
    Append,
    /// The whole state (a snapshot): it supersedes everything persisted
    /// before it, so only the last one of a batch reaches the store.
    Replace,
}

/// An action with its bytes resolved, as tests and the threaded server see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    Send(ClientId, Vec<u8>),
    Close(ClientId),
    PauseReading(ClientId),
    ResumeReading(ClientId),
    Stdout(Vec<u8>),
    Diagnostic(String),
    /// [`Record::Append`] bytes.
    Persist(Vec<u8>),
    /// [`Record::Replace`] bytes.
    Snapshot(Vec<u8>),
}

/// Where a handler leaves its actions. Reused across calls: the server
/// carries the actions out and calls [`Outbox::clear`], which keeps the
/// allocations, so a steady stream of replies allocates nothing.
#[derive(Debug)]
pub struct Outbox {
    actions: Vec<Action>,
    /// Backing store for `Payload::Arena` ranges.
    arena: Vec<u8>,
    /// The time of the event being handled, set by the server: handlers
    /// never read a clock (quinn-proto's rule), so tests can give any time.
    now: Instant,
    /// The longest reply the client can take (not counting a TCP line's
    /// `\n`), if its transport limits it: a UDP reply datagram (SPEC
    /// "Datagrams"). Set by the server for the message being handled; a
    /// handler that would consume state to make a longer reply (the
    /// queue's `pop`) answers [`REPLY_TOO_LARGE`] instead, so nothing is
    /// lost.
    reply_limit: Option<usize>,
}

/// The answer to a request whose reply would pass [`Outbox::reply_limit`]
/// (a UDP transport also puts it in place of any longer reply datagram).
pub const REPLY_TOO_LARGE: &[u8] = b"error: reply too large for a datagram, use TCP";

impl Default for Outbox {
    fn default() -> Self {
        Self::new()
    }
}

/// A peer address for tests and benches that do not care which.
pub const TEST_PEER: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 40000));

impl Outbox {
    pub fn new() -> Self {
        Self {
            actions: Vec::new(),
            arena: Vec::new(),
            now: Instant::now(),
            reply_limit: None,
        }
    }

    /// The time of the event being handled (see the field's doc).
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Sets the time handlers see: the server calls it with a fresh
    /// `Instant` after every poll (or before every locked call).
    pub fn set_now(&mut self, now: Instant) {
        self.now = now;
    }

    /// See the field's doc.
    pub fn reply_limit(&self) -> Option<usize> {
        self.reply_limit
    }

    /// Sets the limit for the message about to be handled (`None` after).
    pub fn set_reply_limit(&mut self, limit: Option<usize>) {
        self.reply_limit = limit;
    }

    /// Queues `bytes` for client `to`.
    pub fn send(&mut self, to: ClientId, bytes: &[u8]) {
        let payload = self.stash(bytes);
        self.actions.push(Action::Send { to, payload });
    }

    /// Queues bytes produced by `fill` for client `to`, written straight into
    /// the arena (no temporary buffer). `fill` must only append.
    pub fn send_with(&mut self, to: ClientId, fill: impl FnOnce(&mut Vec<u8>)) {
        let start = self.arena.len();
        fill(&mut self.arena);
        let payload = Payload::Arena(start..self.arena.len());
        self.actions.push(Action::Send { to, payload });
    }

    /// Queues one shared buffer for client `to` (no copy; see [`Payload`]).
    pub fn send_shared(&mut self, to: ClientId, bytes: &Arc<[u8]>) {
        self.actions.push(Action::Send {
            to,
            payload: Payload::Shared(Arc::clone(bytes)),
        });
    }

    pub fn close(&mut self, id: ClientId) {
        self.actions.push(Action::Close(id));
    }

    pub fn pause_reading(&mut self, id: ClientId) {
        self.actions.push(Action::PauseReading(id));
    }

    pub fn resume_reading(&mut self, id: ClientId) {
        self.actions.push(Action::ResumeReading(id));
    }

    pub fn stdout(&mut self, bytes: &[u8]) {
        let payload = self.stash(bytes);
        self.actions.push(Action::Stdout(payload));
    }

    /// Appends one record, written straight into the arena by `fill`
    /// (which must only append), to the handler's store (see
    /// [`Action::Persist`], [`Record::Append`]).
    pub fn append_record_with(&mut self, fill: impl FnOnce(&mut Vec<u8>)) {
        let start = self.arena.len();
        fill(&mut self.arena);
        let payload = Payload::Arena(start..self.arena.len());
        self.actions.push(Action::Persist {
            payload,
            record: Record::Append,
        });
    }

    /// Hands the handler's whole state to its store, superseding whatever
    /// was persisted before (see [`Record::Replace`]).
    pub fn replace_snapshot(&mut self, bytes: &[u8]) {
        let payload = self.stash(bytes);
        self.actions.push(Action::Persist {
            payload,
            record: Record::Replace,
        });
    }

    pub fn diagnostic(&mut self, line: impl Into<String>) {
        self.actions.push(Action::Diagnostic(line.into()));
    }

    fn stash(&mut self, bytes: &[u8]) -> Payload {
        let start = self.arena.len();
        self.arena.extend_from_slice(bytes);
        Payload::Arena(start..self.arena.len())
    }

    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    pub fn actions(&self) -> &[Action] {
        &self.actions
    }

    /// Whether an action from index `from` on closes `id`: a server stops
    /// handing that client's remaining lines to the handler.
    pub fn closes_since(&self, from: usize, id: ClientId) -> bool {
        self.actions[from..]
            .iter()
            .any(|a| matches!(a, Action::Close(to) if *to == id))
    }

    /// The bytes a payload stands for.
    pub fn bytes<'a>(&'a self, payload: &'a Payload) -> &'a [u8] {
        match payload {
            Payload::Arena(range) => &self.arena[range.clone()],
            Payload::Shared(buf) => buf,
        }
    }

    /// Forgets every action, keeping the allocations for the next call.
    pub fn clear(&mut self) {
        self.actions.clear();
        self.arena.clear();
    }

    /// The actions with their bytes resolved, in order.
    pub fn effects(&self) -> Vec<Effect> {
        self.actions
            .iter()
            .map(|action| match action {
                Action::Send { to, payload } => Effect::Send(*to, self.bytes(payload).to_vec()),
                Action::Close(id) => Effect::Close(*id),
                Action::PauseReading(id) => Effect::PauseReading(*id),
                Action::ResumeReading(id) => Effect::ResumeReading(*id),
                Action::Stdout(payload) => Effect::Stdout(self.bytes(payload).to_vec()),
                Action::Diagnostic(line) => Effect::Diagnostic(line.clone()),
                Action::Persist { payload, record } => {
                    let bytes = self.bytes(payload).to_vec();
                    match record {
                        Record::Append => Effect::Persist(bytes),
                        Record::Replace => Effect::Snapshot(bytes),
                    }
                }
            })
            .collect()
    }

    /// [`Outbox::effects`], then [`Outbox::clear`]: what unit tests call
    /// after each event.
    pub fn take(&mut self) -> Vec<Effect> {
        let effects = self.effects();
        self.clear();
        effects
    }
}

/// Counts the server gathered that a handler's final report may need.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Partial lines (bytes after a client's last newline) discarded because
    /// the drain ended before the client finished them.
    pub cut_partial_lines: u64,
}

/// What a handler leaves behind when the server stops: files to write
/// (atomically, by the server), then diagnostics and status lines to print.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Finish {
    pub files: Vec<(PathBuf, Vec<u8>)>,
    /// Lines for stderr (a merge of `--reactors N` parts that overflowed).
    pub diagnostics: Vec<String>,
    pub status: Vec<String>,
}

/// A line protocol, free of I/O. See the module doc.
///
/// Messages given to `on_message` keep their terminator (`\n`, `\r\n`, or
/// none for an EOF tail or an idle-flushed message); [`strip_terminator`]
/// removes it for handlers that do not echo it.
pub trait Handler: Send {
    /// What the handler is like (see [`Traits`]): the same value for the
    /// handler's whole life.
    fn traits(&self) -> &'static Traits;
    /// `--reactors N` with [`Sharing::PerLoop`]: this handler as `loops`
    /// parts (the first keeps its state, e.g. a replayed journal) and the
    /// merge that makes one of them at the end. `None`: it does not split
    /// (one handler is shared).
    fn split(&mut self, _loops: usize) -> Option<Sharded> {
        None
    }
    /// A client was accepted and given `id`; `peer` is its address as the
    /// server sees it (a UDP peer has one too).
    fn on_connect(&mut self, _id: ClientId, _peer: SocketAddr, _out: &mut Outbox) {}
    /// One complete message from `id` (see the trait doc about terminators).
    fn on_message(&mut self, id: ClientId, msg: &[u8], out: &mut Outbox);
    /// With [`Framing::LineBlocks`]: `lines` holds complete lines from `id`,
    /// each ending in `\n`, none longer than `--max-line`. The same as
    /// [`Handler::on_message`] for each in turn (stopping at a close of
    /// `id`), which is what this default does; a handler overrides it to
    /// take the lines in one pass.
    fn on_lines(&mut self, id: ClientId, lines: &[u8], out: &mut Outbox) {
        for line in lines.split_inclusive(|&b| b == b'\n') {
            let before = out.actions().len();
            self.on_message(id, line, out);
            if out.closes_since(before, id) {
                return;
            }
        }
    }
    /// `id` is gone (EOF after its last message, error, or dropped by the
    /// server). Not called for a client the handler closed itself, nor for
    /// the clients shutdown closes ([`Handler::on_shutdown`] said that
    /// everyone goes), on either server.
    fn on_disconnect(&mut self, _id: ClientId, _out: &mut Outbox) {}
    /// SIGINT, SIGTERM or SIGHUP arrived; the listener is closed. Clients
    /// that drain (see [`ShutdownPolicy`]) are still served.
    fn on_shutdown(&mut self, _out: &mut Outbox) {}
    /// The server is about to exit: the ledger's log and summary line.
    fn finish(&mut self, _stats: &ServerStats) -> Finish {
        Finish::default()
    }
}

/// `msg` without its trailing `\n` or `\r\n`.
pub fn strip_terminator(msg: &[u8]) -> &[u8] {
    match msg {
        [rest @ .., b'\r', b'\n'] => rest,
        [rest @ .., b'\n'] => rest,
        _ => msg,
    }
}

/// A handler and, if it persists anything, the store its
/// [`Action::Persist`] bytes go to (see [`crate::store`]).
pub struct Built {
    pub handler: Box<dyn Handler>,
    pub store: Option<Box<dyn Store>>,
    /// Lines for stderr about the build (what a replay found), printed by
    /// the server before it listens: handlers print nothing themselves.
    pub notes: Vec<String>,
}

/// Why [`build`] failed.
#[derive(Debug)]
pub enum BuildError {
    /// The options do not fit together (exit 2 with a usage line).
    Usage(String),
    /// A file the handler needs could not be opened (exit 1).
    Io(String),
}

impl Built {
    /// A handler that persists nothing.
    pub fn plain(handler: impl Handler + 'static) -> Built {
        Built {
            handler: Box::new(handler),
            store: None,
            notes: Vec::new(),
        }
    }
}

/// The handler `--handler` names, configured from the command line, with
/// its store (replayed, where it has one, before any client connects).
/// Diagnostics about the replay go to stderr.
///
/// # Errors
/// See [`BuildError`].
pub fn build(config: &ServerConfig) -> Result<Built, BuildError> {
    (config.handler.0.build)(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_terminator_removes_only_the_line_end() {
        assert_eq!(strip_terminator(b"a b\r\n"), b"a b");
        assert_eq!(strip_terminator(b"a b\n"), b"a b");
        assert_eq!(strip_terminator(b"a b"), b"a b");
        assert_eq!(strip_terminator(b"a\r"), b"a\r");
        assert_eq!(strip_terminator(b"\n"), b"");
    }

    #[test]
    fn outbox_resolves_arena_and_shared_payloads_in_order() {
        let mut out = Outbox::new();
        let shared: Arc<[u8]> = Arc::from(&b"alice bob\n"[..]);
        out.send(ClientId(1), b"one\n");
        out.send_shared(ClientId(2), &shared);
        out.send_with(ClientId(3), |buf| buf.extend_from_slice(b"three\n"));
        out.close(ClientId(1));
        assert_eq!(
            out.take(),
            vec![
                Effect::Send(ClientId(1), b"one\n".to_vec()),
                Effect::Send(ClientId(2), b"alice bob\n".to_vec()),
                Effect::Send(ClientId(3), b"three\n".to_vec()),
                Effect::Close(ClientId(1)),
            ]
        );
        assert!(out.is_empty());
    }
}
