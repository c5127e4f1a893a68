//! One OS thread per connection, driving the same handlers as the reactor
//! (the seeds' "multithreaded" server, kept for comparison).
//!
//! Threads and what they own:
//!
//! - the **supervisor** (`supervisor`, the caller's thread): accepts,
//!   catches the shutdown signals, and carries out the shared
//!   [`Lifecycle`](crate::server_core::lifecycle::Lifecycle)'s commands (reports,
//!   drain, close, kill). It waits in a small `mio::Poll` (listener, signals,
//!   a waker); it never touches a client's bytes.
//! - a **reader** per client (`reader`): blocking reads, the client's
//!   [`Session`](crate::server_core::session::Session) (framing, the idle flush as
//!   a read timeout), then, under the handler lock, the `on_*` call and the
//!   bookkeeping part of its actions (`actions`: queueing output, pauses,
//!   closes, persisted bytes). The lock is released before any socket I/O.
//! - a **writer** per client (`client`), started when output is first
//!   queued for it: takes the client's whole queue at once and writes it
//!   with blocking vectored writes, so a slow client blocks only its writer.
//! - with `--udp`, one **UDP thread** (`udp`) for the datagram socket: each
//!   datagram one handler call under the same lock, its peers counted with
//!   the TCP clients, expired after `--udp-idle`.
//!
//! Output is queued under the handler lock, so every client sees broadcasts
//! in the one order the handler produced them. Lock order is
//! `core` → `durable` → `Client::state`; `table` is never held with either.

use std::collections::HashMap;
use std::io;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use mio::Waker;

use crate::config::ServerConfig;
use crate::handlers::{ClientId, Finish, Framing, Handler, SlowPolicy};
use crate::limits::output_total::OutputTotal;
use crate::server_core::Setup;
use crate::server_core::census::Census;
use crate::server_core::durable::Durable;
use crate::server_core::ending::Ending;
use crate::trace::Trace;

mod actions;
mod client;
mod reader;
mod supervisor;
mod udp;

use client::Client;

/// Runs the thread-per-connection server on `listener` until a shutdown
/// signal and the shutdown SPEC describes, then returns what the handler
/// leaves to write and print. Prints the `Listening on` line once signals
/// are caught.
///
/// `setup.store`: where the handler's persisted bytes go, in the order the
/// handler produced them (under the handler lock). Synced lazily: only when
/// output or a FIN is about to follow unsynced bytes, so a client that only
/// sends (a ledger blast) costs no fsync per line.
///
/// # Errors
/// Set-up failures (poll, signal or listener registration), a failing
/// `poll`, and a failing store (every client is reset, the server stops);
/// anything that goes wrong with one client closes only that client.
pub fn run(
    listener: TcpListener,
    udp: Option<std::net::UdpSocket>,
    setup: Setup,
) -> io::Result<Finish> {
    supervisor::Supervisor::new(listener, udp, setup)?.run()
}

/// Locks, ignoring poisoning: a panicking thread leaves plain data behind,
/// and the other clients are still worth serving.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Everything the supervisor and the client threads share.
struct Server {
    /// The handler and who it can address. Held only for handler calls and
    /// queueing, never across socket I/O.
    core: Mutex<Core>,
    /// The handler's store. Taken after `core` (so records keep the order
    /// the handler applied them in), and alone for the sync before a FIN.
    durable: Mutex<Durable>,
    /// The handler has a store (skips the `durable` lock otherwise).
    persisting: bool,
    /// The store failed: the supervisor resets every client and stops.
    fatal: Mutex<Option<io::Error>>,
    /// Client ids (the count is `table`'s length, printed under its lock).
    census: Census,
    /// Every connected client (accepted, not yet closed): the SPEC count,
    /// and what shutdown walks. Status lines are printed under this lock so
    /// their counts come out in order.
    table: Mutex<HashMap<ClientId, Arc<Client>>>,
    /// Clients that left `table` and whose output is still being flushed:
    /// what the shutdown's kill must still reach (and name, if it cuts
    /// their output off).
    flushing: Mutex<HashMap<ClientId, Arc<Client>>>,
    /// Connections whose threads have not finished (flush and linger
    /// included): a client leaves `table` when it disconnects, but shutdown
    /// must wait until its output is out.
    open: AtomicUsize,
    config: ServerConfig,
    framing: Framing,
    slow_policy: SlowPolicy,
    /// The sink's bytes, queued for the stdout writer thread: a reader
    /// never blocks on stdout, it waits for room like for a pause.
    stdout: crate::stdout::StdoutWriter,
    /// Partial lines dropped at the end of a drain (`ServerStats`).
    cut_partial_lines: AtomicU64,
    /// Wakes the supervisor: the last client left, a store failed.
    waker: Waker,
    /// The handler's [`Handler::datagram_is_line`].
    datagram_is_line: bool,
    /// `--trace`: one line per step, naming the thread (shared throttle).
    trace: Trace,
    /// `--max-output-total`: every client's output is charged here.
    output_total: OutputTotal,
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
    /// Whether the handler must still hear `on_disconnect` (once), decided
    /// under the handler lock; the reader takes it along to linger.
    ending: Ending,
}

impl Server {
    fn core(&self) -> MutexGuard<'_, Core> {
        lock(&self.core)
    }
}
