//! The server core, I/O-free, that both servers drive: the [`lifecycle`]
//! (phases, signals, reports, accept back-off), a client's [`session`]
//! (framing, idle flush, pause gates, the slow-client rule), a
//! connection's [`ending`] (closing, flush, FIN, linger, drop), the
//! [`census`] (client ids, counts and their status lines, for one loop,
//! N loops or the threaded server), the [`actions`] interpreter (a
//! handler's outbox in SPEC's order, each server supplying only its
//! per-client primitives), the [`durable`] rule (nothing goes out before what was persisted ahead of it
//! is durable) and the [`datagram`] side (UDP peers as clients, idle
//! expiry, reply shaping, the bounded reply queue). The servers own
//! sockets, threads and the clock; these own the rules, and unit tests
//! drive them with a fake clock.

pub mod actions;
pub mod census;
pub mod datagram;
pub mod durable;
pub mod ending;
pub mod lifecycle;
pub mod session;

use crate::config::ServerConfig;
use crate::handlers::Handler;
use crate::signals::ShutdownSignals;
use crate::status::Status;
use crate::store::Store;

/// What a server needs besides its listening socket, built once by
/// [`crate::app`] for whichever server runs (and, later, shared out to N
/// reactors or a UDP socket from one place).
pub struct Setup {
    pub config: ServerConfig,
    pub handler: Box<dyn Handler>,
    /// Where the handler's persisted bytes go (see [`durable`]), if any.
    pub store: Option<Box<dyn Store>>,
    /// Where status lines go.
    pub status: Status,
    /// The shutdown signals, caught since the program's first moment.
    pub signals: ShutdownSignals,
}
