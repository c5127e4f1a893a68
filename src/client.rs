//! The `nonblocking-client` subcommands (SPEC "nonblocking-client"), one
//! `run_*` function each, over blocking `std::net`: a client talks to one
//! server and needs no event loop.
//!
//! Each `run_*` does the I/O set-up (file, socket, SIGINT) and hands plain
//! readers and writers to a function that holds the protocol logic, so the
//! logic is tested with in-memory buffers. Those functions report a
//! [`Fault`] (what went wrong, no names); `run_*` adds the address or file
//! and returns a [`ClientError`], whose `Display` is the one stderr line.
//!
//! This file holds the error types and the set-up every subcommand shares
//! (connect, SIGINT); the rest lives in submodules, re-exported here:
//! - `stream`: the byte-moving logic (upload copy, server lines, relays).
//! - `lines`: the line subcommands `ledger`, `send`, `presence`, `chat`, `queue`.
//! - `queue_repl`: the queue prompt loop shared by `queue` and `grpc-queue`.
//! - `grpc_queue`: the `grpc-queue` subcommand.
//! - [`atm`]: the `atm` subcommand (UDP or TCP).
//! - [`menu`]: the `menu` subcommand (TCP or UDP).

use std::fmt;
use std::io;
use std::net::TcpStream;
use std::thread;

use signal_hook::consts::SIGINT;
use signal_hook::iterator::Signals;

use crate::addr::{ConnectError, Target};
use crate::net::os_reason;

pub mod atm;
#[cfg(feature = "grpc")]
mod grpc_queue;
mod lines;
pub mod menu;
mod queue_repl;
mod stream;
#[cfg(feature = "grpc")]
pub use grpc_queue::{GrpcQueue, run_grpc_queue};
pub use lines::{queue_session, run_chat, run_ledger, run_presence, run_queue, run_send};
pub use queue_repl::{LineQueue, QUEUE_EMPTY, QueueTransport, queue_repl};
pub use stream::{
    Piece, ServerLines, await_close, copy_to_server, print_replies, relay_lines, send_lines,
};
use stream::{limit_error, server_error, trim_line_end};

/// Bytes read from a file or stdin per `read` call: large, so a 1 GB
/// upload is ~16k syscalls, and fixed, so memory does not grow with input.
pub const CHUNK_BYTES: usize = 64 * 1024;

/// Most bytes of one server line held at once. A longer line passes through
/// in pieces, so nothing the server sends can grow our memory.
pub const MAX_PIECE_BYTES: usize = 64 * 1024;

/// What went wrong inside a subcommand's protocol logic, before the caller
/// names the address or file it concerns.
#[derive(Debug)]
pub enum Fault {
    /// Reading the input (file or stdin) failed.
    Input(io::Error),
    /// Writing to stdout failed.
    Output(io::Error),
    /// Writing to the server failed.
    Send(io::Error),
    /// Reading from the server failed.
    Receive(io::Error),
    /// The server closed the connection while a reply was still due.
    Closed,
    /// The server sent this `error: ...` line (terminator removed).
    Server(String),
}

/// A subcommand's failure; `Display` is the complete stderr line, and the
/// program exits 1 after printing it.
#[derive(Debug)]
pub enum ClientError {
    /// The host name did not resolve.
    Resolve { peer: String, source: io::Error },
    /// No resolved address accepted the connection.
    Connect { peer: String, source: io::Error },
    /// The input file cannot be opened (or is a directory).
    Open { path: String, source: io::Error },
    /// The input (a file's name, or `stdin`) failed while reading.
    Read { input: String, source: io::Error },
    /// stdout refused our output (e.g. a closed pipe).
    Stdout(io::Error),
    /// Sending to the server failed.
    Send { peer: String, source: io::Error },
    /// Receiving from the server failed.
    Receive { peer: String, source: io::Error },
    /// The server hung up while a reply was due.
    Closed { peer: String },
    /// The server's own `error: ...` line, printed as it was sent.
    Server { line: String },
    /// The SIGINT handler could not be installed.
    Signal(io::Error),
    /// This build left the subcommand out (an optional cargo feature).
    NotBuilt(&'static str),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ClientError::*;
        match self {
            Resolve { peer, source } => {
                write!(f, "error: cannot resolve {peer}: {}", os_reason(source))
            }
            Connect { peer, source } => {
                write!(f, "error: cannot connect to {peer}: {}", os_reason(source))
            }
            Open { path, source } => write!(f, "error: cannot open {path}: {}", os_reason(source)),
            Read { input, source } => {
                write!(f, "error: cannot read {input}: {}", os_reason(source))
            }
            Stdout(source) => write!(f, "error: cannot write to stdout: {}", os_reason(source)),
            Send { peer, source } => {
                write!(f, "error: cannot send to {peer}: {}", os_reason(source))
            }
            Receive { peer, source } => {
                write!(
                    f,
                    "error: cannot receive from {peer}: {}",
                    os_reason(source)
                )
            }
            Closed { peer } => write!(f, "error: {peer} closed the connection"),
            Server { line } => write!(f, "{line}"),
            Signal(source) => write!(
                f,
                "error: cannot install the SIGINT handler: {}",
                os_reason(source)
            ),
            NotBuilt(why) => write!(f, "error: {why}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// `grpc-queue ADDR` in a build without the `grpc` feature: says how to
/// get it (the subcommand stays listed, so `--help` matches the README).
///
/// # Errors
/// Always [`ClientError::NotBuilt`].
#[cfg(not(feature = "grpc"))]
pub fn run_grpc_queue(_: &Target) -> Result<(), ClientError> {
    Err(ClientError::NotBuilt(crate::GRPC_NOT_BUILT))
}

impl Fault {
    /// Names the server (`peer`) and the input (a path or `stdin`).
    fn context(self, peer: &Target, input: &str) -> ClientError {
        let peer = peer.to_string();
        match self {
            Fault::Input(source) => ClientError::Read {
                input: input.to_string(),
                source,
            },
            Fault::Output(source) => ClientError::Stdout(source),
            Fault::Send(source) => ClientError::Send { peer, source },
            Fault::Receive(source) => ClientError::Receive { peer, source },
            Fault::Closed => ClientError::Closed { peer },
            Fault::Server(line) => ClientError::Server { line },
        }
    }
}

// ---------------------------------------------------------------------------
// Set-up shared by the subcommands.

/// Connects, naming the address in the error.
fn connect(target: &Target) -> Result<TcpStream, ClientError> {
    target.connect().map_err(|e| match e {
        ConnectError::Resolve(source) => ClientError::Resolve {
            peer: target.to_string(),
            source,
        },
        ConnectError::Connect(source) => ClientError::Connect {
            peer: target.to_string(),
            source,
        },
    })
}

/// Runs `action` on the first SIGINT, on a thread of its own (signal-hook's
/// self-pipe), where it may take locks and do I/O.
fn on_sigint(action: impl FnOnce() + Send + 'static) -> Result<(), ClientError> {
    let mut signals = Signals::new([SIGINT]).map_err(ClientError::Signal)?;
    thread::spawn(move || {
        if signals.forever().next().is_some() {
            action();
        }
    });
    Ok(())
}

/// Interactive replies should not wait for Nagle's timer; failing to set
/// it costs latency, not correctness, so the error is ignored.
fn no_delay(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_address_and_reason() {
        let target: Target = "9".parse().unwrap();
        let err = ClientError::Connect {
            peer: target.to_string(),
            source: io::Error::from_raw_os_error(libc::ECONNREFUSED),
        };
        assert_eq!(
            err.to_string(),
            "error: cannot connect to 127.0.0.1:9: Connection refused"
        );
        let err = Fault::Server("error: too many clients".into()).context(&target, "stdin");
        assert_eq!(err.to_string(), "error: too many clients");
        let err = Fault::Input(io::Error::from_raw_os_error(libc::EIO)).context(&target, "in.txt");
        assert_eq!(
            err.to_string(),
            "error: cannot read in.txt: Input/output error"
        );
    }
}
