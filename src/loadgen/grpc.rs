//! `--handler grpc-queue` and `--handler queue`: the seed 001 queue under
//! load, over gRPC (`queue-grpc-server`) or over lines (`--handler queue`
//! on either line server), with the same driver so the two compare fairly.
//!
//! Each client has its own connection (an HTTP/2 channel, or a TCP stream)
//! and does `--lines` steps of a `put` of a unique item then a `pop`. Every
//! answer is checked: each `put` must answer true (at most as many clients
//! as the queue has slots are between a `put` and a `pop`: see
//! [`super::queue::Room`]), each `pop` must return an item, and at the end
//! the items popped must be exactly the items put.
//!
//! The clients run as tasks on one current-thread tokio runtime (one core,
//! like the other modes). [`Report::lines`] counts calls: a step is two.

use std::collections::HashSet;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tonic::transport::Channel;

use std::sync::Arc;

use super::queue::{Room, Slots};
use super::stats::Latencies;
use super::{Options, Report, RunError, diag_limited};
use crate::grpc::pb::queue_client::QueueClient;
use crate::grpc::pb::{Empty, PutRequest};

/// One client's connection to a queue server, whichever protocol.
pub trait QueueConn: Sized {
    /// Connects to `addr`.
    fn open(addr: SocketAddr) -> impl Future<Output = io::Result<Self>>;
    /// `put`: `Ok(true)` if added, `Ok(false)` if the queue was full.
    fn put(&mut self, item: String) -> impl Future<Output = Result<bool, String>>;
    /// `pop`: the item, or `None` when the queue was empty.
    fn pop(&mut self) -> impl Future<Output = Result<Option<String>, String>>;
    /// `size`.
    fn size(&mut self) -> impl Future<Output = Result<u64, String>>;
    /// Bytes sent and received so far, if this connection counts them.
    fn bytes(&self) -> Option<(u64, u64)> {
        None
    }
}

/// The gRPC connection: one channel per client.
pub struct GrpcConn(QueueClient<Channel>);

impl QueueConn for GrpcConn {
    async fn open(addr: SocketAddr) -> io::Result<Self> {
        Ok(GrpcConn(QueueClient::new(
            crate::grpc::connect(addr).await?,
        )))
    }

    async fn put(&mut self, item: String) -> Result<bool, String> {
        let reply = self.0.put(PutRequest { item }).await;
        reply.map(|r| r.get_ref().ok).map_err(|s| s.to_string())
    }

    async fn pop(&mut self) -> Result<Option<String>, String> {
        let reply = self.0.pop(Empty {}).await.map_err(|s| s.to_string())?;
        let reply = reply.into_inner();
        Ok((!reply.empty).then_some(reply.item))
    }

    async fn size(&mut self) -> Result<u64, String> {
        let reply = self.0.size(Empty {}).await.map_err(|s| s.to_string())?;
        Ok(u64::from(reply.get_ref().size))
    }
}

/// What one client did.
#[derive(Default)]
struct ClientResult {
    calls: u64,
    put: Vec<String>,
    popped: Vec<String>,
    latencies: Vec<Duration>,
    error: Option<String>,
    /// [`QueueConn::bytes`] at the end.
    bytes: Option<(u64, u64)>,
}

/// One client: `steps` × (`put` a unique item, `pop`), each answer checked;
/// between its `put` and its `pop` it holds one of the queue's `slots`.
async fn client<C: QueueConn>(
    mut conn: C,
    id: usize,
    steps: u64,
    slots: Arc<Slots>,
) -> ClientResult {
    let mut r = ClientResult::default();
    client_steps(&mut conn, id, steps, &slots, &mut r).await;
    r.bytes = conn.bytes();
    r
}

async fn client_steps<C: QueueConn>(
    conn: &mut C,
    id: usize,
    steps: u64,
    slots: &Slots,
    r: &mut ClientResult,
) {
    let steps_usize = usize::try_from(steps).unwrap_or(0);
    r.latencies.reserve(steps_usize.saturating_mul(2));
    for step in 0..steps {
        let item = format!("lg{id}-{step}");
        let _slot = slots.acquire().await;
        let start = Instant::now();
        match conn.put(item.clone()).await {
            Ok(true) => {}
            Ok(false) => {
                r.error = Some(format!(
                    "client {id}: put answered false (queue full: start the server with SIZE >= --clients)"
                ));
                return;
            }
            Err(e) => {
                r.error = Some(format!("client {id}: put: {e}"));
                return;
            }
        }
        r.latencies.push(start.elapsed());
        r.calls += 1;
        r.put.push(item);
        let start = Instant::now();
        match conn.pop().await {
            Ok(Some(item)) => r.popped.push(item),
            Ok(None) => {
                r.error = Some(format!("client {id}: pop answered empty after its own put"));
                return;
            }
            Err(e) => {
                r.error = Some(format!("client {id}: pop: {e}"));
                return;
            }
        }
        r.latencies.push(start.elapsed());
        r.calls += 1;
    }
}

/// Runs `opts.clients` clients of connection type `C` and reports.
///
/// # Errors
/// [`RunError::Io`] when the first connection fails, the runtime cannot
/// start or the queue takes no items.
pub fn run_queue<C: QueueConn + 'static>(opts: &Options) -> Result<Report, RunError> {
    let runtime = crate::grpc::runtime()?;
    let local = tokio::task::LocalSet::new();
    let deadline = opts.timeout;
    let work = local.run_until(drive::<C>(opts));
    match runtime.block_on(async { tokio::time::timeout(deadline, work).await }) {
        Ok(result) => result,
        Err(_) => Err(RunError::Io(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the run did not finish within {deadline:?} (--timeout)"),
        ))),
    }
}

async fn drive<C: QueueConn + 'static>(opts: &Options) -> Result<Report, RunError> {
    let mut report = Report::new(opts);
    // One runtime on the calling thread, whatever --threads says.
    report.threads = 1;
    let room = Room::prepare::<C>(opts.addr, opts.clients).await?;
    let connect_start = Instant::now();
    let mut conns = Vec::with_capacity(opts.clients);
    for _ in 0..opts.clients {
        conns.push(C::open(opts.addr).await?);
    }
    report.connect = connect_start.elapsed();

    let start = Instant::now();
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(id, conn)| {
            let slots = Arc::clone(&room.slots);
            tokio::task::spawn_local(client(conn, id + 1, opts.lines, slots))
        })
        .collect();
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await.map_err(io::Error::other)?);
    }
    report.wall = start.elapsed();

    let mut latencies = Latencies::with_capacity(results.iter().map(|r| r.latencies.len()).sum());
    let mut put = HashSet::new();
    let mut popped = Vec::new();
    let mut shown = 0;
    report.bytes_counted = results.iter().all(|r| r.bytes.is_some());
    for r in results {
        report.lines += r.calls;
        if let Some((sent, received)) = r.bytes {
            report.bytes_sent += sent;
            report.bytes_received += received;
        }
        for d in r.latencies {
            latencies.record(d);
        }
        if let Some(e) = r.error {
            report.errors += 1;
            diag_limited(&mut shown, 10, || e);
        }
        put.extend(r.put);
        popped.extend(r.popped);
    }
    // Every item popped was put, and (when every client finished) every
    // item put was popped, each once.
    let mut seen = HashSet::with_capacity(popped.len());
    for item in popped {
        if !put.contains(&item) || !seen.insert(item.clone()) {
            report.errors += 1;
            diag_limited(&mut shown, 10, || {
                format!("pop returned {item:?}, not an item put in this run or twice")
            });
        }
    }
    if report.errors == 0 && seen.len() != put.len() {
        report.errors += 1;
        let missing = put.len() - seen.len();
        diag_limited(&mut shown, 10, || {
            format!("{missing} items put were never popped")
        });
    }
    report.latency = latencies.summarize();
    if let Err(e) = room.restore::<C>(opts.addr).await {
        report.errors += 1;
        diag_limited(&mut shown, 10, || e.to_string());
    }
    Ok(report)
}
