//! `queue-grpc-server [--bind HOST] PORT SIZE`: one [`BoundedQueue`] of
//! capacity SIZE shared by every gRPC client.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::oneshot;
use tonic::transport::Server;
use tonic::{Request, Response, Status};

use super::budget::ReplyBudgetLayer;
use super::incoming::{ConnLimits, Incoming};
use super::pb::queue_server::{Queue, QueueServer};
use super::pb::{Empty, ItemReply, PutReply, PutRequest, SizeReply};
use crate::net;
use crate::queue::BoundedQueue;
use crate::status;

/// Command line of `queue-grpc-server`.
#[derive(Debug, Clone, Parser)]
#[command(
    version,
    about = "The seed 001 remote queue over gRPC: put, peek, pop and size on one bounded queue \
             shared by every client (service `queue.Queue` in proto/queue.proto).",
    after_help = "The first stdout line is `Listening on ADDR (grpc queue, size SIZE)`.\n\
                  SIGINT or SIGTERM (or SIGHUP): stop accepting, finish the calls in flight, exit 0;\n\
                  connections get up to 5 s to close, a second signal stops at once."
)]
pub struct GrpcArgs {
    /// IP address to listen on; 0.0.0.0 or :: opens the server to other machines
    #[arg(short = 'b', long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST), value_name = "HOST")]
    pub bind: IpAddr,

    /// TCP port to listen on; 0 lets the OS choose (the first line shows the real port)
    #[arg(value_name = "PORT", allow_negative_numbers = true, value_parser = crate::config::port_number)]
    pub port: u16,

    /// Capacity of the queue: 1 or more items
    #[arg(value_name = "SIZE", allow_negative_numbers = true, value_parser = queue_size)]
    pub size: u32,

    /// Connections served at once; one more gets an HTTP/2 GOAWAY (`too many clients`) and is closed
    #[arg(long, default_value_t = 10000, value_parser = crate::config::number_in(1, 1_000_000), allow_negative_numbers = true, value_name = "N")]
    pub max_clients: u64,

    /// Close a connection that sent nothing for SECS seconds (fractions allowed)
    #[arg(long, default_value = "300", value_parser = idle_timeout, allow_negative_numbers = true, value_name = "SECS")]
    pub idle_timeout: Duration,
}

/// `--idle-timeout`: seconds, more than 0.
fn idle_timeout(text: &str) -> Result<Duration, String> {
    let idle = crate::config::parse_secs(text)?;
    if idle.is_zero() {
        return Err("the timeout must be more than 0".to_string());
    }
    Ok(idle)
}

/// SIZE: 1 to 4,294,967,295 (the size reply is a `uint32`), with the
/// servers' messages for a negative number or a non-number.
fn queue_size(text: &str) -> Result<u32, String> {
    crate::config::number_in(1, u64::from(u32::MAX))(text).map(|n| n as u32)
}

/// The `queue.Queue` service. Cloned per connection by tonic; every clone
/// shares the one queue. The lock is never contended on the one runtime
/// thread; tonic asks for `Send` services, hence a `Mutex`, not a `RefCell`.
#[derive(Clone)]
pub struct QueueService {
    queue: Arc<Mutex<BoundedQueue<String>>>,
}

impl QueueService {
    pub fn new(capacity: u32) -> Self {
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX);
        QueueService {
            queue: Arc::new(Mutex::new(BoundedQueue::new(capacity))),
        }
    }

    fn queue(&self) -> MutexGuard<'_, BoundedQueue<String>> {
        // No call panics while holding the lock; if one did, the queue is
        // still consistent (every operation is one VecDeque call).
        self.queue
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

fn item_reply(item: Option<String>) -> ItemReply {
    match item {
        Some(item) => ItemReply { empty: false, item },
        None => ItemReply {
            empty: true,
            item: String::new(),
        },
    }
}

#[tonic::async_trait]
impl Queue for QueueService {
    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutReply>, Status> {
        let item = request.into_inner().item;
        match self.queue().put(item) {
            Ok(ok) => Ok(Response::new(PutReply { ok })),
            Err(why) => Err(Status::invalid_argument(why.reason())),
        }
    }

    async fn peek(&self, _: Request<Empty>) -> Result<Response<ItemReply>, Status> {
        let item = self.queue().peek().cloned();
        Ok(Response::new(item_reply(item)))
    }

    async fn pop(&self, _: Request<Empty>) -> Result<Response<ItemReply>, Status> {
        let item = self.queue().pop();
        Ok(Response::new(item_reply(item)))
    }

    async fn size(&self, _: Request<Empty>) -> Result<Response<SizeReply>, Status> {
        // The capacity is a u32, so the count fits.
        let size = u32::try_from(self.queue().size()).unwrap_or(u32::MAX);
        Ok(Response::new(SizeReply { size }))
    }
}

/// The whole program. Exit status: 0 after SIGINT/SIGTERM/SIGHUP, 1 when
/// the address cannot be bound or the server fails, 2 on a usage error.
pub fn main() -> ExitCode {
    let args: GrpcArgs = crate::cli::parse_or_exit();
    let addr = SocketAddr::new(args.bind, args.port);
    let listener = match net::bind_listener(addr).and_then(|l| {
        l.set_nonblocking(true)?;
        Ok(l)
    }) {
        Ok(listener) => listener,
        Err(e) => {
            status::diag(format_args!(
                "error: cannot listen on {addr}: {}",
                net::os_reason(&e)
            ));
            return ExitCode::from(1);
        }
    };
    // After the bind, so the listener is counted: the runtime's one
    // thread is the one loop (its epoll and waker; the signal pipe is in
    // the fixed reserve).
    let max_clients =
        crate::limits::fit_to_limit(usize::try_from(args.max_clients).unwrap_or(usize::MAX), 1);
    let result = super::runtime().and_then(|runtime| {
        runtime.block_on(async {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            let local = listener.local_addr()?;
            // Installed before the first line, so a signal sent as soon as
            // a supervisor sees it is a clean shutdown.
            let signals = Signals::new()?;
            let status = status::Status::new(false);
            status.line(format_args!(
                "Listening on {local} (grpc queue, size {})",
                args.size
            ));
            let limits = ConnLimits {
                max_clients,
                idle_timeout: args.idle_timeout,
                replies_per_connection: REPLIES_PER_CONNECTION,
            };
            serve(Incoming::new(listener, limits), args.size, signals).await
        })
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            status::diag(format_args!("error: {}", net::os_reason(&e)));
            ExitCode::from(1)
        }
    }
}

/// How long, after the first signal, connections may take to close: a
/// client that never answers the server's HTTP/2 GOAWAY (a stopped
/// process) must not keep the server alive. Calls themselves take
/// microseconds, so every call in flight finishes well within it.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Calls one connection may have open at once (SPEC; each is one queue
/// operation, a client needs one at a time).
pub const MAX_STREAMS_PER_CONNECTION: u32 = 256;

/// Calls of one connection running or holding an unsent reply (each at
/// most a 64 KiB item): see `grpc::budget`. The other open streams wait
/// with their headers only.
pub const REPLIES_PER_CONNECTION: usize = 8;

/// The largest request message decoded: a put of the longest item is
/// 65,540 bytes; anything up to this gets INVALID_ARGUMENT from the queue's
/// own check, anything longer OUT_OF_RANGE before it is buffered whole.
pub const MAX_REQUEST_BYTES: usize = 128 * 1024;

/// Bytes a peer may send on one stream, and on the whole connection,
/// before the server has read them (HTTP/2 flow control): what the server
/// buffers for streams still waiting for a reply slot.
pub const STREAM_WINDOW: u32 = 128 * 1024;
/// See [`STREAM_WINDOW`].
pub const CONNECTION_WINDOW: u32 = 1024 * 1024;

/// The largest header block a peer may send per stream (gRPC's are a few
/// hundred bytes); held for every stream waiting for a reply slot.
pub const MAX_HEADER_LIST_BYTES: u32 = 8 * 1024;

/// Serves until a signal, then stops accepting and lets the calls in flight
/// finish; returns when every connection has closed, at a second signal, or
/// after [`SHUTDOWN_GRACE`].
///
/// Memory stays bounded whatever a peer does (SPEC): per connection, at
/// most [`REPLIES_PER_CONNECTION`] calls run or hold replies, their
/// requests at most [`MAX_REQUEST_BYTES`] each; the other streams (up to
/// [`MAX_STREAMS_PER_CONNECTION`]) hold their headers and at most
/// [`CONNECTION_WINDOW`] bytes of body between them. That is a few MiB per
/// connection, and `--max-clients` connections.
async fn serve(incoming: Incoming, size: u32, mut signals: Signals) -> io::Result<()> {
    let (stop, stopped) = oneshot::channel::<()>();
    let service =
        QueueServer::new(QueueService::new(size)).max_decoding_message_size(MAX_REQUEST_BYTES);
    let server = Server::builder()
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
        .layer(ReplyBudgetLayer)
        .serve_with_incoming_shutdown(service, incoming, async {
            let _ = stopped.await;
        });
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => return result.map_err(io::Error::other),
        () = signals.recv() => {}
    }
    let _ = stop.send(());
    tokio::select! {
        result = &mut server => result.map_err(io::Error::other),
        () = signals.recv() => Ok(()),
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {
            status::diag(format_args!(
                "shutdown: connections still open after {} s; closing them",
                SHUTDOWN_GRACE.as_secs()
            ));
            Ok(())
        }
    }
}

/// SIGINT, SIGTERM and SIGHUP (SPEC "Shutdown": a closed terminal is a
/// shutdown like SIGTERM), installed before the first line is printed.
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> io::Result<Self> {
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// The next of the three, whichever comes first.
    async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
            _ = self.hup.recv() => {}
        }
    }
}
