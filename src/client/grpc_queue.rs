//! `grpc-queue ADDR` (seed 001 task 1): the queue REPL of `queue ADDR`,
//! over gRPC to `queue-grpc-server`. The same [`queue_repl`] reads and
//! prints; commands are parsed here with the line handler's own parser
//! ([`crate::handlers::queue::parse`]), so a command the line server would
//! refuse prints the very error line it would have answered.

use std::io::{self, IsTerminal, Write};

use tokio::runtime::Runtime;
use tonic::transport::Channel;
use tonic::{Code, Status};

use super::{ClientError, Fault, QUEUE_EMPTY, QueueTransport, on_sigint, queue_repl};
use crate::addr::Target;
use crate::grpc::pb::queue_client::QueueClient;
use crate::grpc::pb::{Empty, ItemReply, PutRequest};
use crate::handlers::queue::{Command, parse};

/// Printed for a `put` whose item is not UTF-8: a proto3 `string` must be.
pub const NOT_UTF8: &str = "error: the item is not UTF-8 text (gRPC strings must be)";

/// The gRPC transport: one channel; its calls run one at a time, and the
/// runtime's worker keeps the connection answered between them.
pub struct GrpcQueue {
    runtime: Runtime,
    client: QueueClient<Channel>,
}

impl GrpcQueue {
    /// Connects to the first of `target`'s addresses that accepts.
    ///
    /// # Errors
    /// The name does not resolve, or no address accepts the connection.
    pub fn connect(target: &Target) -> Result<Self, ClientError> {
        let peer = target.to_string();
        let addrs = target.resolve().map_err(|source| ClientError::Resolve {
            peer: peer.clone(),
            source,
        })?;
        let runtime = crate::grpc::client_runtime().map_err(|source| ClientError::Connect {
            peer: peer.clone(),
            source,
        })?;
        let mut last = None;
        for addr in addrs {
            match runtime.block_on(crate::grpc::connect(addr)) {
                Ok(channel) => {
                    return Ok(GrpcQueue {
                        runtime,
                        client: QueueClient::new(channel),
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(ClientError::Connect {
            peer,
            source: last.unwrap_or_else(|| io::Error::from(io::ErrorKind::NotFound)),
        })
    }
}

/// An `ItemReply` as the clients print it.
fn item_text(reply: &ItemReply) -> &[u8] {
    if reply.empty {
        QUEUE_EMPTY
    } else {
        reply.item.as_bytes()
    }
}

/// A failed call: `INVALID_ARGUMENT` is an answer (printed, the session
/// goes on, as the line client prints the line server's `error:` lines);
/// anything else ends the session.
fn refused<O: Write + ?Sized>(status: &Status, out: &mut O) -> Result<(), Fault> {
    match status.code() {
        Code::InvalidArgument => write!(out, "error: {}", status.message()).map_err(Fault::Output),
        Code::Unavailable => Err(Fault::Closed),
        code => Err(Fault::Receive(io::Error::other(format!(
            "{} (gRPC status {code:?})",
            status.message()
        )))),
    }
}

impl QueueTransport for GrpcQueue {
    fn ask<O: Write + ?Sized>(&mut self, line: &[u8], out: &mut O) -> Result<(), Fault> {
        let command = match parse(line) {
            Ok(command) => command,
            Err(error) => return out.write_all(error.as_bytes()).map_err(Fault::Output),
        };
        let client = &mut self.client;
        let text: Vec<u8> = match command {
            Command::Put(item) => {
                let Ok(item) = std::str::from_utf8(item) else {
                    return out.write_all(NOT_UTF8.as_bytes()).map_err(Fault::Output);
                };
                let request = PutRequest {
                    item: item.to_owned(),
                };
                match self.runtime.block_on(client.put(request)) {
                    Ok(reply) if reply.get_ref().ok => b"True".to_vec(),
                    Ok(_) => b"False".to_vec(),
                    Err(status) => return refused(&status, out),
                }
            }
            Command::Peek | Command::Pop => {
                let call = if command == Command::Peek {
                    self.runtime.block_on(client.peek(Empty {}))
                } else {
                    self.runtime.block_on(client.pop(Empty {}))
                };
                match call {
                    Ok(reply) => item_text(reply.get_ref()).to_vec(),
                    Err(status) => return refused(&status, out),
                }
            }
            Command::Size => match self.runtime.block_on(client.size(Empty {})) {
                Ok(reply) => reply.get_ref().size.to_string().into_bytes(),
                Err(status) => return refused(&status, out),
            },
        };
        out.write_all(&text).map_err(Fault::Output)
    }
}

/// `grpc-queue ADDR`: the interactive queue client over gRPC. Ctrl+C or EOF
/// ends it with `Ok`.
///
/// # Errors
/// An unreachable server, or a call that fails for another reason than a
/// refused item (the server went away, ...).
pub fn run_grpc_queue(target: &Target) -> Result<(), ClientError> {
    let mut transport = GrpcQueue::connect(target)?;
    let prompt = io::stdin().is_terminal();
    // The main thread may be blocked reading the terminal: Ctrl+C exits
    // from the signal thread (the OS closes the connection).
    on_sigint(move || {
        if prompt {
            let _ = io::stdout().write_all(b"\n");
        }
        std::process::exit(0);
    })?;
    queue_repl(
        io::stdin().lock(),
        &mut transport,
        &mut io::stdout(),
        prompt,
    )
    .map_err(|f| f.context(target, "stdin"))
}
