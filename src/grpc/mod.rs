//! The seed 001 queue over gRPC (SPEC "queue over gRPC").
//!
//! - [`pb`]: the messages, client and server generated at build time from
//!   `proto/queue.proto` (the wire contract; `build.rs`).
//! - [`server`]: `queue-grpc-server`, tonic on a current-thread tokio
//!   runtime around the same [`crate::queue::BoundedQueue`] the line
//!   `queue` handler uses; `incoming` (its connections: `--max-clients`,
//!   descriptor exhaustion, the idle timeout) and `budget` (replies a
//!   connection may hold) keep its memory bounded.
//!
//! `nonblocking-client grpc-queue` uses [`pb::queue_client::QueueClient`]
//! and [`client_runtime`]; `loadgen --handler grpc-queue` writes its own
//! HTTP/2 frames (`loadgen::grpc`), to cost less than the server it loads.

mod budget;
mod incoming;
pub mod server;

/// Generated from `proto/queue.proto` (package `queue`).
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod pb {
    tonic::include_proto!("queue");
}

use std::io;

/// The server's runtime: current-thread, one thread like the rest of the
/// project; the calls of every client interleave on it. Measured against a
/// two-worker multi-thread runtime on two cores (issue 20, BENCHMARKS.md):
/// that one used 11-14 us of CPU per call against 7.5-9 (cross-thread
/// wake-ups, a contended lock) and made no more calls/s, since the load
/// generator needs the other core.
///
/// # Errors
/// The OS refused what the runtime needs (an epoll instance, a timer).
pub fn runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
}

/// The clients' runtime: one worker thread keeps the HTTP/2 connection
/// answered (pings, the server's GOAWAY at shutdown) while the caller
/// blocks elsewhere, e.g. on a terminal; calls are made with `block_on`.
///
/// # Errors
/// The OS refused a thread, an epoll instance or a timer.
pub fn client_runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_io()
        .enable_time()
        .build()
}

/// The `http://` URI tonic connects to for a client's `ADDR` (already
/// resolved: IPv6 in brackets).
pub fn endpoint_uri(addr: std::net::SocketAddr) -> String {
    format!("http://{addr}")
}

/// A gRPC channel (one HTTP/2 connection) to `addr`, connected now, so an
/// unreachable server is an error here rather than at the first call.
///
/// # Errors
/// The OS reason the connection failed (refused, unreachable, ...).
pub async fn connect(addr: std::net::SocketAddr) -> io::Result<tonic::transport::Channel> {
    tonic::transport::Endpoint::from_shared(endpoint_uri(addr))
        .map_err(io::Error::other)?
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| io_cause(&e))
}

/// The first `io::Error` in `err`'s chain of causes (tonic wraps the OS
/// error in its own), so a one-line error can name the OS reason; else the
/// error's own text.
pub fn io_cause(err: &(dyn std::error::Error + 'static)) -> io::Error {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return match io.raw_os_error() {
                Some(code) => io::Error::from_raw_os_error(code),
                None => io::Error::new(io.kind(), io.to_string()),
            };
        }
        cause = e.source();
    }
    io::Error::other(err.to_string())
}
