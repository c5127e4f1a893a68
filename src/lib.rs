//! `nonblocking`: a TCP line server built around one hand-written,
//! single-threaded, readiness-based event loop.
//!
//! The architecture in one picture:
//!
//! ```text
//!   sockets ──► reactor (mio Poll, Slab<Conn>) ──► framing ──► Handler::on_* ──► Outbox
//!      ▲                                                                           │
//!      └──────────── OutBuf (queued bytes, partial writes) ◄──── Actions ◄─────────┘
//! ```
//!
//! The reactor owns every socket; handlers own the meaning of the bytes and do
//! no I/O; [`handlers::Action`]s are the seam between them. The same handlers
//! run under [`threaded`], a thread-per-connection server kept for comparison.
//! What both servers must agree on (shutdown phases and signals, framing and
//! the idle flush, the slow-client rule, ids and counts, durability) is the
//! I/O-free [`server_core`], written once and driven by both.
//!
//! Modules, by layer (a new module goes in its layer's list, in both places):
//!
//! Programs:
//! - [`app`]: what both server binaries do around their loop (bind, exit codes, files).
//! - [`client`]: the `nonblocking-client` subcommands.
//! - [`loadgen`]: N concurrent clients against any server; throughput, latency, checks.
//! - `grpc` (the `grpc` feature): `queue-grpc-server` and the gRPC code generated from
//!   `proto/queue.proto`.
//!
//! Servers (own sockets, threads, the clock):
//! - [`reactor`]: the mio event loop, which never knows whether it has siblings;
//!   [`reactors`]: N of them (`--reactors N`).
//! - [`threaded`]: one OS thread per connection, same handlers.
//!
//! Server core (no I/O; both servers drive it):
//! - [`server_core`]: lifecycle (signals, drain, reports), a client's session, the census,
//!   the actions interpreter, durability, datagrams (UDP peers as clients, `--udp`).
//! - [`framing`]: bytes to lines, `\r\n`, `--max-line`, the EOF tail.
//! - [`outbuf`]: a connection's queued output, partial and vectored writes.
//! - [`timers`]: the drift-free report ticker and accept back-off.
//!
//! Protocols (no I/O):
//! - [`handlers`]: the handler trait and the protocols.
//! - [`queue`]: the seed 001 bounded queue, shared by the line handler and gRPC.
//!
//! Durable state:
//! - [`store`]: where persisted bytes go (the handler-neutral durability seam).
//! - [`journal`]: an append-only file of records (`--journal`).
//! - [`fsutil`]: atomic file writes.
//!
//! Edges:
//! - [`cli`], [`config`]: argument parsing, the server command line and SPEC defaults.
//! - [`status`]: the exact text of every status and diagnostic line.
//! - [`trace`]: `--trace`, one line per step of a loop on stderr, formatted and throttled.
//! - [`net`]: socket set-up.
//! - [`limits`]: descriptors against `RLIMIT_NOFILE`; `--max-clients` lowered to fit;
//!   the output queued for all clients (`--max-output-total`).
//! - [`signals`]: the shutdown signals, counted one by one.
//! - [`addr`]: the clients' `ADDR` (`HOST:PORT`, `[V6ADDR]:PORT`, bare `PORT`).

// Programs
pub mod app;
pub mod client;
#[cfg(feature = "grpc")]
pub mod grpc;
pub mod loadgen;

/// What a program built without the `grpc` feature says when asked for
/// gRPC (`nonblocking-client grpc-queue`, `loadgen -H grpc-queue`).
#[cfg(not(feature = "grpc"))]
pub const GRPC_NOT_BUILT: &str =
    "this build has no gRPC; rebuild with: cargo build --release --features grpc";

// Servers
pub mod reactor;
pub mod reactors;
pub mod threaded;

// Server core
pub mod accept;
pub mod framing;
pub mod outbuf;
pub mod server_core;
pub mod timers;

// Protocols
pub mod handlers;
pub mod queue;

// Durable state
pub mod fsutil;
pub mod journal;
pub mod store;

// Edges
pub mod addr;
pub mod cli;
pub mod config;
pub mod limits;
pub mod net;
pub mod signals;
pub mod status;
pub mod stdout;
pub mod trace;

// Tests
#[cfg(test)]
mod test_io;
