//! `--threads N`: a run's clients spread over N threads, each with its own
//! mio `Poll` and its own share of the clients (contiguous ids, so every
//! client keeps the id, and the lines, it has with one thread).
//!
//! Each thread connects its clients, then waits at a barrier so the
//! measured phase starts together everywhere; it ends when its last client
//! is done. The run's wall time is first start to last end; counts add up;
//! latency percentiles are computed over every sample of every thread (never
//! an average of per-thread percentiles). The calling thread only shows
//! the progress line.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Barrier, mpsc};
use std::time::{Duration, Instant};

use super::stats::Latencies;
use super::{Options, Progress, Report, RunError};

/// What one thread gets: its clients, the run's deadline, the start gate
/// and a progress counter.
pub struct Slot<'a> {
    /// Which thread, from 0.
    pub index: usize,
    /// The 0-based indexes of the clients this thread drives (client id =
    /// index + 1).
    pub clients: Range<usize>,
    /// The whole run ends by then, connecting included.
    pub deadline: Instant,
    /// Units done (replies, bytes: the mode decides), for the progress line.
    pub progress: &'a AtomicU64,
    barrier: &'a Barrier,
    failed: &'a AtomicBool,
}

impl Slot<'_> {
    /// Call once, when this thread's clients are connected (`ok`) or could
    /// not be. Waits for every thread; returns the start of the measured
    /// phase, or `None` when some thread failed to connect (then stop).
    pub fn ready(&self, ok: bool) -> Option<Instant> {
        if !ok {
            self.failed.store(true, Ordering::SeqCst);
        }
        self.barrier.wait();
        (!self.failed.load(Ordering::SeqCst)).then(Instant::now)
    }

    /// Adds `n` units to the progress counter.
    pub fn advance(&self, n: u64) {
        self.progress.fetch_add(n, Ordering::Relaxed);
    }
}

/// What one thread measured; [`spread`] adds them up.
#[derive(Debug, Default)]
pub struct Part {
    pub lines: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub errors: u64,
    /// UDP: datagrams without a reply in time; late: replies after that.
    pub lost: u64,
    pub late: u64,
    pub latencies: Latencies,
    pub connect: Duration,
    pub connect_retries: u64,
    /// The measured phase: start (from [`Slot::ready`]) and end.
    pub span: Option<(Instant, Instant)>,
}

impl Part {
    fn add(&mut self, p: Part) {
        self.lines += p.lines;
        self.bytes_sent += p.bytes_sent;
        self.bytes_received += p.bytes_received;
        self.errors += p.errors;
        self.lost += p.lost;
        self.late += p.late;
        self.latencies.append(p.latencies);
        // The threads connect at the same time: the longest is the phase.
        self.connect = self.connect.max(p.connect);
        self.connect_retries += p.connect_retries;
        self.span = match (self.span, p.span) {
            (Some((a, b)), Some((c, d))) => Some((a.min(c), b.max(d))),
            (x, y) => x.or(y),
        };
    }

    /// Fills the report's counts, wall time and latency.
    pub fn into_report(self, report: &mut Report) {
        report.lines = self.lines;
        report.bytes_sent = self.bytes_sent;
        report.bytes_received = self.bytes_received;
        report.errors = self.errors;
        report.wall = self.span.map_or(Duration::ZERO, |(a, b)| b - a);
        report.connect = self.connect;
        report.connect_retries = self.connect_retries;
        report.latency = self.latencies.summarize();
    }
}

/// The number of threads a run uses: `--threads`, at least 1, at most one
/// per client.
pub fn thread_count(opts: &Options) -> usize {
    opts.threads.clamp(1, opts.clients.max(1))
}

/// The clients of thread `k` of `threads`: contiguous, sizes differing by
/// at most one.
pub fn share(clients: usize, threads: usize, k: usize) -> Range<usize> {
    let (base, extra) = (clients / threads, clients % threads);
    let start = k * base + k.min(extra);
    start..start + base + usize::from(k < extra)
}

/// Runs `work` on [`thread_count`] threads and adds up their parts.
/// `progress_text` turns the summed progress counter into the text of the
/// once-a-second line.
///
/// # Errors
/// The first error a thread returned (a connect failure, say).
pub fn spread<F>(
    opts: &Options,
    progress_text: impl Fn(u64) -> String,
    work: F,
) -> Result<Part, RunError>
where
    F: Fn(Slot<'_>) -> Result<Part, RunError> + Sync,
{
    let threads = thread_count(opts);
    let deadline = Instant::now() + opts.timeout;
    let barrier = Barrier::new(threads);
    let failed = AtomicBool::new(false);
    let counter = AtomicU64::new(0);
    let mut progress = Progress::new(opts.progress);
    let results = std::thread::scope(|scope| {
        let (done_tx, done_rx) = mpsc::channel();
        let handles: Vec<_> = (0..threads)
            .map(|k| {
                let slot = Slot {
                    index: k,
                    clients: share(opts.clients, threads, k),
                    deadline,
                    progress: &counter,
                    barrier: &barrier,
                    failed: &failed,
                };
                let (work, done_tx) = (&work, done_tx.clone());
                std::thread::Builder::new()
                    .name(format!("loadgen-{k}"))
                    .spawn_scoped(scope, move || {
                        let r = work(slot);
                        let _ = done_tx.send(());
                        r
                    })
                    .expect("spawn a loadgen thread")
            })
            .collect();
        drop(done_tx);
        let mut finished = 0;
        while finished < threads {
            match done_rx.recv_timeout(Duration::from_millis(200)) {
                Ok(()) => finished += 1,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                // A thread panicked: join reports it.
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            progress.tick(|| progress_text(counter.load(Ordering::Relaxed)));
        }
        progress.finish();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect::<Vec<_>>()
    });
    let mut total = Part::default();
    for r in results {
        total.add(r?);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_every_client_once() {
        for (clients, threads) in [(10, 3), (3, 3), (50, 2), (1, 1), (7, 4)] {
            let mut next = 0;
            for k in 0..threads {
                let r = share(clients, threads, k);
                assert_eq!(r.start, next);
                assert!(r.len() == clients / threads || r.len() == clients / threads + 1);
                next = r.end;
            }
            assert_eq!(next, clients);
        }
    }

    #[test]
    fn parts_add_counts_and_spans() {
        let t0 = Instant::now();
        let t = |ms| t0 + Duration::from_millis(ms);
        let mut a = Part {
            lines: 3,
            span: Some((t(5), t(20))),
            ..Part::default()
        };
        a.latencies.record(Duration::from_micros(1));
        let mut b = Part {
            lines: 4,
            errors: 1,
            span: Some((t(2), t(10))),
            ..Part::default()
        };
        for us in [2, 3, 100] {
            b.latencies.record(Duration::from_micros(us));
        }
        let mut total = Part::default();
        total.add(a);
        total.add(b);
        assert_eq!((total.lines, total.errors), (7, 1));
        assert_eq!(total.span, Some((t(2), t(20))));
        let l = total.latencies.summarize().unwrap();
        // Over all four samples: p50 is the 2nd smallest, not a mean of medians.
        assert_eq!((l.count, l.p50), (4, Duration::from_micros(2)));
    }
}
