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
//!
//! Modules:
//! - [`cli`]: argument parsing shared by every binary (usage errors exit 2).
//! - [`config`]: the server command line and its SPEC defaults.
//! - [`status`]: the exact text of every status and diagnostic line.
//! - [`framing`]: bytes to lines, `\r\n`, `--max-line`, the EOF tail.
//! - [`outbuf`]: a connection's queued output, partial and vectored writes.
//! - [`reactor`]: the mio event loop.
//! - [`threaded`]: one OS thread per connection, same handlers.
//! - [`handlers`]: the handler trait and the five protocols.
//! - [`app`]: what both server binaries do around their loop (bind, exit codes, the log).
//! - [`journal`]: the ledger's append-only journal (`--journal`).
//! - [`timers`]: the drift-free report ticker and accept back-off both servers use.
//! - [`net`], [`fsutil`]: socket set-up, atomic file writes.
//! - [`addr`]: the clients' `ADDR` (`HOST:PORT`, `[V6ADDR]:PORT`, bare `PORT`).
//! - [`client`]: the `nonblocking-client` subcommands.
//! - [`loadgen`]: N concurrent clients against any server; throughput, latency, checks.
//! - [`queue`]: the seed 001 bounded queue, shared by the line handler and gRPC.
//! - [`grpc`]: `queue-grpc-server` and the gRPC code generated from `proto/queue.proto`.

pub mod addr;
pub mod app;
pub mod cli;
pub mod client;
pub mod config;
pub mod framing;
pub mod fsutil;
pub mod grpc;
pub mod handlers;
pub mod journal;
pub mod loadgen;
pub mod net;
pub mod outbuf;
pub mod queue;
pub mod reactor;
pub mod status;
pub mod store;
pub mod threaded;
pub mod timers;
