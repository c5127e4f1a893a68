//! `--handler grpc-queue` and `--handler queue`: the seed 001 queue under
//! load, over gRPC (`queue-grpc-server`) or over lines (`--handler queue`
//! on either line server), with the same driver so the two compare fairly.
//!
//! Each client has its own connection (an HTTP/2 connection, or a TCP
//! stream) and does `--lines` steps of a `put` of a unique item then a
//! `pop`; over gRPC, `--window W` runs them as W chains at once, W calls in
//! flight on the one connection. Every answer is checked: each `put` must
//! answer true (a chain holds one of the queue's slots from its `put` to
//! its `pop`, so at most as many chains as the queue has slots hold an item,
//! over all clients and threads: see [`super::queue::Room`]), each `pop`
//! must return an item, and at the end the items popped must be exactly the
//! items put.
//!
//! The clients are spread over `--threads` threads, each with its own
//! current-thread tokio runtime (no work stealing, no cross-thread wakeups),
//! so the load generator costs less CPU per call than the server it
//! measures. The gRPC client writes and reads HTTP/2 frames itself
//! (`wire::GrpcConn`): a call is two precomputed frames out and its
//! reply's frames in, with no HTTP library in between.
//! [`Report::lines`] counts calls: a step is two.

use std::collections::HashSet;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use super::queue::{Room, Slots};
use super::stats::Latencies;
use super::{Options, Report, RunError, diag_limited};

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
    /// Another handle on the same connection, for one more call in flight
    /// at once (`--window`); `None` when the protocol has one at a time.
    fn fork(&self) -> Option<Self> {
        None
    }
    /// Bytes sent and received so far on the connection, if it counts them.
    fn bytes(&self) -> Option<(u64, u64)> {
        None
    }
}

/// `--handler grpc-queue`.
///
/// # Errors
/// As [`run_queue`]; a build without the `grpc` feature says so (usage).
pub fn run_grpc_queue(opts: &Options) -> Result<Report, RunError> {
    #[cfg(feature = "grpc")]
    return run_queue::<GrpcConn>(opts);
    #[cfg(not(feature = "grpc"))]
    {
        let _ = opts;
        Err(RunError::Usage(format!(
            "--handler grpc-queue: {}",
            crate::GRPC_NOT_BUILT
        )))
    }
}

#[cfg(feature = "grpc")]
mod wire;
#[cfg(feature = "grpc")]
pub use wire::GrpcConn;

/// What one client did.
#[derive(Default)]
struct ClientResult {
    calls: u64,
    put: Vec<String>,
    popped: Vec<String>,
    latencies: Vec<Duration>,
    error: Option<String>,
    /// [`QueueConn::bytes`] of the client's connection at the end.
    bytes: Option<(u64, u64)>,
}

/// One client: `steps` × (`put` a unique item, `pop`), each answer
/// checked, in `window` chains at once over its one connection (chain `k`
/// does steps `k`, `k + window`, ...); `window` is 1 where the connection
/// cannot fork. Each chain holds one of `slots` from its `put` to its
/// `pop`, so a client holds up to `window` of them.
async fn client<C: QueueConn + 'static>(
    conn: C,
    id: usize,
    steps: u64,
    window: u64,
    slots: Arc<Slots>,
) -> ClientResult {
    let forks: Vec<C> = (1..window).map_while(|_| conn.fork()).collect();
    let stride = 1 + forks.len() as u64;
    let chains: Vec<_> = std::iter::once(conn)
        .chain(forks)
        .zip(0..)
        .map(|(conn, first)| {
            let slots = Arc::clone(&slots);
            tokio::task::spawn_local(chain(conn, id, first, stride, steps, slots))
        })
        .collect();
    let mut r = ClientResult::default();
    // The forks share the connection, and so its byte count: read it once,
    // from one chain's handle, after every chain is done.
    let mut first_conn = None;
    for done in chains {
        let done = match done.await {
            Ok((done, conn)) => {
                first_conn = first_conn.or(Some(conn));
                done
            }
            Err(e) => ClientResult {
                error: Some(format!("client {id}: {e}")),
                ..ClientResult::default()
            },
        };
        r.calls += done.calls;
        r.put.extend(done.put);
        r.popped.extend(done.popped);
        r.latencies.extend(done.latencies);
        r.error = r.error.or(done.error);
    }
    r.bytes = first_conn.and_then(|conn| conn.bytes());
    r
}

/// One chain of client `id`: steps `first`, `first + stride`, ... below
/// `steps`, each a `put` then a `pop`, holding one of `slots` in between;
/// stops at the first failure. Gives its connection handle back.
async fn chain<C: QueueConn>(
    mut conn: C,
    id: usize,
    first: u64,
    stride: u64,
    steps: u64,
    slots: Arc<Slots>,
) -> (ClientResult, C) {
    let r = chain_steps(&mut conn, id, first, stride, steps, &slots).await;
    (r, conn)
}

async fn chain_steps<C: QueueConn>(
    conn: &mut C,
    id: usize,
    first: u64,
    stride: u64,
    steps: u64,
    slots: &Slots,
) -> ClientResult {
    let mut r = ClientResult::default();
    let mine = usize::try_from(steps.saturating_sub(first).div_ceil(stride)).unwrap_or(0);
    r.latencies.reserve(mine.saturating_mul(2));
    for step in (first..steps).step_by(usize::try_from(stride).unwrap_or(1)) {
        let item = format!("lg{id}-{step}");
        // Waiting for a slot is not timed: the latency is the call's.
        let _slot = slots.acquire().await;
        let start = Instant::now();
        match conn.put(item.clone()).await {
            Ok(true) => {}
            Ok(false) => {
                r.error = Some(format!(
                    "client {id}: put answered false although loadgen held a free slot \
                     (queue full: is another client filling it?)"
                ));
                return r;
            }
            Err(e) => {
                r.error = Some(format!("client {id}: put: {e}"));
                return r;
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
                return r;
            }
            Err(e) => {
                r.error = Some(format!("client {id}: pop: {e}"));
                return r;
            }
        }
        r.latencies.push(start.elapsed());
        r.calls += 1;
    }
    r
}

/// A current-thread runtime: one per load thread.
fn thread_runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
}

/// Runs `work` to its end on a new [`thread_runtime`], inside a `LocalSet`
/// (a connection's I/O may be a local task: `wire`).
fn block_on_local<T>(work: impl Future<Output = T>) -> io::Result<T> {
    Ok(tokio::task::LocalSet::new().block_on(&thread_runtime()?, work))
}

/// The error for a run past `--timeout`.
fn timed_out(timeout: Duration) -> RunError {
    RunError::Io(io::Error::new(
        io::ErrorKind::TimedOut,
        format!("the run did not finish within {timeout:?} (--timeout)"),
    ))
}

/// Runs `opts.clients` clients of connection type `C` over `opts.threads`
/// threads and reports.
///
/// # Errors
/// [`RunError::Io`] when a connection fails, a runtime cannot start, the
/// queue takes no items, or the run outlasts `--timeout`.
pub fn run_queue<C: QueueConn + 'static>(opts: &Options) -> Result<Report, RunError> {
    let deadline = tokio::time::Instant::now() + opts.timeout;
    // Up to this many chains may hold an item at once: probe for that much
    // room (the window is 1 where the connection cannot fork).
    let chains = opts
        .clients
        .saturating_mul(usize::try_from(opts.window).unwrap_or(usize::MAX));
    let room = block_on_local(async {
        tokio::time::timeout_at(deadline, Room::prepare::<C>(opts.addr, chains))
            .await
            .map_err(|_| timed_out(opts.timeout))?
    })??;
    let run = run_clients::<C>(opts, deadline, &room.slots);
    // The items queued before the run go back whatever happened to it, in
    // a time of their own (the run may have used up --timeout).
    let restored = block_on_local(async {
        tokio::time::timeout(opts.timeout, room.restore::<C>(opts.addr))
            .await
            .map_err(|_| timed_out(opts.timeout))?
    })?;
    let mut report = run?;
    if let Err(e) = restored {
        report.errors += 1;
        eprintln!("error: {e}");
    }
    Ok(report)
}

/// Connects the clients over `opts.threads` threads, runs them sharing
/// `slots`, and checks their answers.
fn run_clients<C: QueueConn + 'static>(
    opts: &Options,
    deadline: tokio::time::Instant,
    slots: &Arc<Slots>,
) -> Result<Report, RunError> {
    let mut report = Report::new(opts);

    // Every thread connects its clients, then all start together.
    let threads = opts.threads.clamp(1, opts.clients);
    let connected = Arc::new(Barrier::new(threads + 1));
    let connect_start = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let ids: Vec<usize> = (t..opts.clients).step_by(threads).collect();
            let (addr, steps, timeout) = (opts.addr, opts.lines, opts.timeout);
            let window = opts.window;
            let connected = Arc::clone(&connected);
            let slots = Arc::clone(slots);
            thread::spawn(move || {
                let run = Run {
                    addr,
                    steps,
                    window,
                    deadline,
                    timeout,
                    slots,
                };
                load_thread::<C>(&run, &ids, &connected)
            })
        })
        .collect();
    connected.wait();
    report.connect = connect_start.elapsed();
    let start = Instant::now();
    let mut results = Vec::with_capacity(opts.clients);
    let mut failure = None;
    for worker in workers {
        match worker.join() {
            Ok(Ok(done)) => results.extend(done),
            Ok(Err(e)) => failure = failure.or(Some(e)),
            Err(_) => {
                failure = failure.or(Some(RunError::Io(io::Error::other(
                    "a load thread panicked",
                ))))
            }
        }
    }
    report.wall = start.elapsed();
    if let Some(e) = failure {
        return Err(e);
    }
    check(&mut report, results);
    Ok(report)
}

/// What every load thread runs with.
struct Run {
    addr: SocketAddr,
    /// `--lines`: steps per client.
    steps: u64,
    /// `--window`: chains per client.
    window: u64,
    /// The run's end (`--timeout` from its start).
    deadline: tokio::time::Instant,
    /// `--timeout`, for the error.
    timeout: Duration,
    /// The queue's slots, shared by every chain on every thread.
    slots: Arc<Slots>,
}

/// One load thread: connects the clients `ids`, waits at `connected` for
/// every thread, then runs them as tasks on its own runtime.
fn load_thread<C: QueueConn + 'static>(
    run: &Run,
    ids: &[usize],
    connected: &Barrier,
) -> Result<Vec<ClientResult>, RunError> {
    let Run {
        addr,
        steps,
        window,
        deadline,
        timeout,
        ref slots,
    } = *run;
    let runtime = thread_runtime();
    let local = tokio::task::LocalSet::new();
    let conns = runtime
        .as_ref()
        .map_err(|e| io::Error::new(e.kind(), e.to_string()))
        .and_then(|rt| {
            rt.block_on(local.run_until(async {
                let mut conns = Vec::with_capacity(ids.len());
                for _ in ids {
                    let conn = tokio::time::timeout_at(deadline, C::open(addr)).await;
                    conns.push(conn.map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??);
                }
                Ok(conns)
            }))
        });
    // Reached whatever happened, so no thread waits for ever.
    connected.wait();
    let (runtime, conns) = (runtime?, conns?);
    let work = local.run_until(async {
        let tasks: Vec<_> = conns
            .into_iter()
            .zip(ids)
            .map(|(conn, &id)| {
                let slots = Arc::clone(slots);
                tokio::task::spawn_local(client(conn, id + 1, steps, window, slots))
            })
            .collect();
        let mut results = Vec::with_capacity(tasks.len());
        for task in tasks {
            results.push(task.await.map_err(io::Error::other)?);
        }
        Ok::<_, RunError>(results)
    });
    runtime
        .block_on(async { tokio::time::timeout_at(deadline, work).await })
        .map_err(|_| timed_out(timeout))?
}

/// Adds the clients' calls, latencies and errors to `report`, and checks
/// that every item popped was put, and (when every client finished) every
/// item put was popped, each once.
fn check(report: &mut Report, results: Vec<ClientResult>) {
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
}
