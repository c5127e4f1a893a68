//! The sink's stdout, written by a thread of its own, so that a full stdout
//! (a pipe whose reader is slow or asleep) never blocks an event loop or
//! the threaded server's supervisor (SPEC "sink").
//!
//! Why a thread, and not a non-blocking fd 1: `O_NONBLOCK` belongs to the
//! open file description, which fd 1 shares with the shell and every other
//! process writing to the same terminal or pipe; setting it would make
//! their writes fail with `EAGAIN`. A regular file cannot be registered
//! with epoll either. So one thread owns the blocking writes, and the
//! servers hand it bytes through a bounded queue:
//!
//! - [`StdoutWriter::push`] queues bytes (never refuses them: they were
//!   read already) and says when the queue is over its budget; the server
//!   then stops reading the client that produced them;
//! - [`StdoutWriter::room_or_notify`] says whether the queue has drained to
//!   half the budget, or registers a [`Waiter`] the writer thread calls when
//!   it has (an event loop's `mio::Waker`, a reader thread's condition
//!   variable): the loop never waits on stdout;
//! - at shutdown, [`FlushDeadline`] says how long the server waits for the
//!   queue to be written: `--drain-timeout` after the first signal, or
//!   until a second signal.
//!
//! A stdout that fails (a reader gone: `EPIPE`) is said once; what is
//! queued then, and what comes later, is discarded (as before the writer
//! thread existed).
//!
//! Status lines on stdout go through the same queue once a server has made
//! its writer ([`StdoutWriter::for_status_lines`]; not on a terminal), so a
//! stdout nobody reads (`| less`, a stopped logger) stops no loop, thread
//! or lock either.
//! A status line has no client to pause: over the budget it is dropped and
//! counted ([`StdoutWriter::push_line`]), and the count is said on stderr
//! once there is room again, and at the end.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::os::fd::AsFd;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use crate::status;

/// Called once by the writer thread (with no lock held) when what a
/// producer waited for has happened.
pub type Waiter = Arc<dyn Fn() + Send + Sync>;

/// Small pushes are gathered into chunks of this size (one `write` each;
/// a pipe holds 64 KiB by default).
const CHUNK_BYTES: usize = 64 * 1024;

/// Empty chunk buffers kept for reuse (a queue that fills and drains
/// over and over then allocates nothing).
const SPARE_CHUNKS: usize = 8;

/// How long the end of a server waits for what it queued last (the final
/// status lines) once its own wait for stdout is over.
pub const FINISH_GRACE: Duration = Duration::from_millis(200);

/// The writer's stack: it only hands slices to `write`.
const WRITER_STACK_BYTES: usize = 64 * 1024;

/// The writer status lines go through: the first one a server made.
static STATUS_LINES: OnceLock<StdoutWriter> = OnceLock::new();

/// See the module doc. Cloning shares the one queue and thread (every
/// loop of `--reactors N` writes through the same one, so one client's
/// bytes stay ahead of the next owner's).
#[derive(Clone)]
pub struct StdoutWriter {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    /// The writer thread sleeps here while the queue is empty.
    work: Condvar,
    /// Bytes queued past this stop the producer (`--max-pending`); it may
    /// go on at half of it.
    budget: usize,
    /// fd 1, duplicated (dropping it leaves fd 1 open); written only by
    /// the writer thread.
    file: File,
}

#[derive(Default)]
struct State {
    /// Bytes not yet handed to `write`, oldest first.
    chunks: VecDeque<Vec<u8>>,
    /// Bytes queued or being written.
    unwritten: usize,
    /// A write failed: everything is discarded from now on.
    failed: bool,
    /// The writer thread runs (started at the first push).
    started: bool,
    /// The writer thread sleeps on `work` (else a push need not wake it:
    /// it looks at the queue before it sleeps).
    idle: bool,
    /// To call when `unwritten` is at most half the budget (or stdout
    /// failed).
    room_waiters: Vec<Waiter>,
    /// To call when `unwritten` is 0.
    flush_waiters: Vec<Waiter>,
    /// Status lines dropped over the budget and not said yet.
    dropped_lines: u64,
    /// Written chunks' buffers, kept for the next ones (at most
    /// [`SPARE_CHUNKS`]).
    spare: Vec<Vec<u8>>,
}

impl StdoutWriter {
    /// A writer for fd 1 with a queue of `budget` bytes. The thread starts
    /// at the first push (servers that never print never start it).
    ///
    /// The first writer made in a process also carries its status lines,
    /// unless stdout is a terminal: there a person may be watching them
    /// interleave with `--trace` on stderr, which a second thread would
    /// reorder, and a terminal is read as it is written.
    ///
    /// # Errors
    /// fd 1 cannot be duplicated.
    pub fn new(budget: usize) -> io::Result<Self> {
        let stdout = io::stdout();
        let file = File::from(stdout.as_fd().try_clone_to_owned()?);
        let writer = Self::to_file(file, budget);
        if !stdout.is_terminal() {
            let _ = STATUS_LINES.set(writer.clone());
        }
        Ok(writer)
    }

    /// The writer status lines on stdout go through, once a server has
    /// made one (before that, and in programs that make none, they are
    /// written directly).
    pub fn for_status_lines() -> Option<&'static StdoutWriter> {
        STATUS_LINES.get()
    }

    /// Queues one status line, or drops and counts it if the queue cannot
    /// take it within the budget (an empty queue takes any line). The
    /// first line queued after drops, with room again, has the count said
    /// first (on stderr).
    pub fn push_line(&self, line: &[u8]) {
        let mut st = self.inner.lock();
        if !st.failed && st.unwritten > 0 && st.unwritten + line.len() > self.inner.budget {
            st.dropped_lines += 1;
            return;
        }
        let dropped = if st.has_room(self.inner.budget) {
            std::mem::take(&mut st.dropped_lines)
        } else {
            0
        };
        self.queue(&mut st, line);
        self.inner.wake(&mut st);
        drop(st);
        if dropped > 0 {
            status::status_lines_dropped(dropped);
        }
    }

    /// Status lines dropped and not said yet; the count is reset.
    pub fn take_dropped_lines(&self) -> u64 {
        std::mem::take(&mut self.inner.lock().dropped_lines)
    }

    /// Waits up to `timeout` for everything queued to be written; whether
    /// it was (or stdout failed).
    pub fn wait_flushed(&self, timeout: Duration) -> bool {
        let (tx, rx) = mpsc::channel();
        let waiter: Waiter = Arc::new(move || {
            let _ = tx.send(());
        });
        self.flushed_or_notify(&waiter) || rx.recv_timeout(timeout).is_ok()
    }

    /// A writer for `file` (the tests' pipes).
    fn to_file(file: File, budget: usize) -> Self {
        StdoutWriter {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                work: Condvar::new(),
                budget: budget.max(1),
                file,
            }),
        }
    }

    /// Queues `bytes` after everything queued before, and wakes the
    /// writer. Returns false when the queue is now over the budget: the
    /// caller stops reading the client that produced them (then asks
    /// [`Self::room_or_notify`]).
    pub fn push(&self, bytes: &[u8]) -> bool {
        let mut st = self.inner.lock();
        let within = self.queue(&mut st, bytes);
        self.inner.wake(&mut st);
        within
    }

    /// [`Self::push`], leaving the writer asleep until [`Self::kick`] (or
    /// any other call but this one): an event loop queues a pass's reads and
    /// wakes the writer once, before it polls, rather than once per read (a
    /// thread switch each, measured: most of the writer's cost).
    pub fn push_later(&self, bytes: &[u8]) -> bool {
        let mut st = self.inner.lock();
        self.queue(&mut st, bytes)
    }

    /// Wakes the writer if it sleeps with bytes queued.
    pub fn kick(&self) {
        self.inner.wake(&mut self.inner.lock());
    }

    fn queue(&self, st: &mut State, bytes: &[u8]) -> bool {
        if st.failed || bytes.is_empty() {
            return true;
        }
        if !st.started && !self.start(st) {
            return true;
        }
        match st.chunks.back_mut() {
            Some(last) if last.len() + bytes.len() <= CHUNK_BYTES => last.extend_from_slice(bytes),
            _ => {
                let mut chunk = st.spare.pop().unwrap_or_default();
                chunk.extend_from_slice(bytes);
                st.chunks.push_back(chunk);
            }
        }
        st.unwritten += bytes.len();
        st.unwritten <= self.inner.budget
    }

    /// True if the queue has drained to half the budget (or stdout failed:
    /// nothing will be queued any more); otherwise `waiter` is called once
    /// it has, and false is returned.
    pub fn room_or_notify(&self, waiter: &Waiter) -> bool {
        let mut st = self.inner.lock();
        self.inner.wake(&mut st);
        if st.has_room(self.inner.budget) {
            return true;
        }
        add_waiter(&mut st.room_waiters, waiter);
        false
    }

    /// True if everything queued was written (or stdout failed); otherwise
    /// `waiter` is called once it has been, and false is returned.
    pub fn flushed_or_notify(&self, waiter: &Waiter) -> bool {
        let mut st = self.inner.lock();
        self.inner.wake(&mut st);
        if st.unwritten == 0 {
            return true;
        }
        add_waiter(&mut st.flush_waiters, waiter);
        false
    }

    /// Bytes queued and not written yet (0 once stdout failed: their loss
    /// was said already).
    pub fn unwritten(&self) -> usize {
        self.inner.lock().unwritten
    }

    /// The queue's budget in bytes.
    pub fn budget(&self) -> usize {
        self.inner.budget
    }

    /// Starts the writer thread; on failure, stdout counts as failed.
    fn start(&self, st: &mut State) -> bool {
        let inner = Arc::clone(&self.inner);
        match thread::Builder::new()
            .name("stdout".into())
            .stack_size(WRITER_STACK_BYTES)
            .spawn(move || inner.write_loop())
        {
            Ok(_) => {
                st.started = true;
                true
            }
            Err(e) => {
                st.failed = true;
                status::stdout_failed(&format_args!("cannot start its writer thread: {e}"));
                false
            }
        }
    }
}

impl State {
    fn has_room(&self, budget: usize) -> bool {
        self.failed || self.unwritten <= budget / 2
    }
}

/// A waiter registered twice (a loop asking again) is called once.
fn add_waiter(waiters: &mut Vec<Waiter>, waiter: &Waiter) {
    if !waiters.iter().any(|w| Arc::ptr_eq(w, waiter)) {
        waiters.push(Arc::clone(waiter));
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes the writer thread if it sleeps and bytes are queued.
    fn wake(&self, st: &mut State) {
        if st.idle && !st.chunks.is_empty() {
            st.idle = false;
            self.work.notify_one();
        }
    }

    /// The writer thread: one chunk at a time, written whole with the lock
    /// released (a blocked `write` holds up nobody but this thread). It
    /// lives as long as the process; exiting does not wait for it.
    fn write_loop(&self) {
        let mut st = self.lock();
        loop {
            let Some(mut chunk) = st.chunks.pop_front() else {
                st.idle = true;
                st = self.work.wait(st).unwrap_or_else(PoisonError::into_inner);
                continue;
            };
            drop(st);
            let result = (&self.file).write_all(&chunk);
            st = self.lock();
            st.unwritten -= chunk.len();
            if let Err(e) = result {
                st.failed = true;
                st.unwritten = 0;
                st.chunks.clear();
                status::stdout_failed(&e);
            }
            chunk.clear();
            if chunk.capacity() <= 2 * CHUNK_BYTES && st.spare.len() < SPARE_CHUNKS {
                st.spare.push(chunk);
            }
            let mut due = Vec::new();
            if st.has_room(self.budget) {
                due.append(&mut st.room_waiters);
            }
            if st.unwritten == 0 {
                due.append(&mut st.flush_waiters);
            }
            if !due.is_empty() {
                drop(st);
                for waiter in due {
                    waiter();
                }
                st = self.lock();
            }
        }
    }
}

/// How long shutdown waits for stdout (SPEC "Shutdown"): until
/// `--drain-timeout` after the first signal, or a second signal. Fed every
/// signal the server counts; asked before the server exits.
#[derive(Debug, Default)]
pub struct FlushDeadline {
    /// `--drain-timeout` after the first signal.
    deadline: Option<Instant>,
    /// Signals seen; a second one stops the wait at once.
    signals: usize,
}

impl FlushDeadline {
    /// One shutdown signal at `now`.
    pub fn on_signal(&mut self, now: Instant, drain_timeout: Duration) {
        self.signals += 1;
        self.deadline.get_or_insert(now + drain_timeout);
    }

    /// When to look again while waiting (the deadline), if it is still
    /// ahead of `now` (a passed one must not make a poll return at once).
    pub fn wake_at(&self, now: Instant) -> Option<Instant> {
        self.deadline.filter(|&d| d > now && self.signals < 2)
    }

    /// Whether the server may stop waiting for `stdout` at `now`: it is
    /// written, or the wait is over; otherwise `waiter` is called once it
    /// is written.
    pub fn settled(&self, stdout: &StdoutWriter, now: Instant, waiter: &Waiter) -> bool {
        self.signals >= 2
            || self.deadline.is_some_and(|d| now >= d)
            || stdout.flushed_or_notify(waiter)
    }

    /// The server's end: an error (exit 1, the diagnostic) if stdout still
    /// holds bytes after [`FINISH_GRACE`] (the last status lines were
    /// queued a moment ago: a stdout that is read takes them at once).
    ///
    /// # Errors
    /// Bytes were not written.
    pub fn finish(stdout: &StdoutWriter) -> io::Result<()> {
        if stdout.wait_flushed(FINISH_GRACE) {
            return Ok(());
        }
        match stdout.unwritten() {
            0 => Ok(()),
            n => Err(io::Error::other(status::stdout_unwritten(n))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn counter() -> (Waiter, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = Arc::clone(&calls);
        let waiter: Waiter = Arc::new(move || {
            c.fetch_add(1, Ordering::SeqCst);
        });
        (waiter, calls)
    }

    /// A writer whose thread is not started: the queue alone.
    fn queue_only(budget: usize) -> StdoutWriter {
        let w = StdoutWriter::new(budget).unwrap();
        w.inner.lock().started = true;
        w
    }

    #[test]
    fn over_the_budget_the_producer_is_told_and_waits_for_half() {
        let w = queue_only(100);
        assert!(w.push(&[1; 60]));
        assert!(w.push(&[2; 40]), "exactly the budget is not over it");
        assert!(!w.push(&[3; 1]), "one byte over");
        assert_eq!(w.unwritten(), 101);
        let (waiter, calls) = counter();
        assert!(!w.room_or_notify(&waiter));
        assert!(!w.room_or_notify(&waiter), "asked twice, called once");
        assert_eq!(w.inner.lock().room_waiters.len(), 1);
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn status_lines_over_the_budget_are_dropped_counted_and_said_once_there_is_room() {
        let w = queue_only(100);
        w.push_line(&[b'a'; 150]);
        assert_eq!(w.unwritten(), 150, "an empty queue takes any line");
        w.push_line(b"dropped\n");
        w.push_line(b"dropped too\n");
        assert_eq!(w.unwritten(), 150);
        assert_eq!(w.inner.lock().dropped_lines, 2);
        // The writer took the long line: room again. The next line is
        // queued, and the count is said (and reset) before it.
        {
            let mut st = w.inner.lock();
            st.chunks.clear();
            st.unwritten = 0;
        }
        w.push_line(b"kept\n");
        assert_eq!(w.unwritten(), 5);
        assert_eq!(w.take_dropped_lines(), 0, "said when the line was queued");
        w.push_line(&[b'b'; 96]);
        assert_eq!(w.unwritten(), 5, "5 + 96 is over 100: dropped");
        assert_eq!(w.take_dropped_lines(), 1, "the end's count");
        assert_eq!(w.take_dropped_lines(), 0, "reset");
    }

    #[test]
    fn small_pushes_share_a_chunk_and_keep_their_order() {
        let w = queue_only(1 << 20);
        w.push(b"ab");
        w.push(b"cd");
        w.push(&vec![b'x'; CHUNK_BYTES]);
        w.push(b"ef");
        let st = w.inner.lock();
        let all: Vec<u8> = st.chunks.iter().flatten().copied().collect();
        assert_eq!(st.chunks.len(), 3, "abcd, the big one, ef");
        assert_eq!(&all[..4], b"abcd");
        assert_eq!(&all[all.len() - 2..], b"ef");
        assert_eq!(all.len(), st.unwritten);
    }

    /// Through a real pipe: a reader that sleeps holds the queue over the
    /// budget; once it reads, the producer's waiter is called, then the
    /// flush waiter, and the bytes arrive whole and in order.
    #[test]
    fn waiters_are_called_as_a_sleeping_reader_catches_up() {
        use std::io::Read;
        let (mut reader, pipe) = io::pipe().unwrap();
        let w = StdoutWriter::to_file(File::from(std::os::fd::OwnedFd::from(pipe)), 1 << 20);
        let sent: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
        let mut over = false;
        for part in sent.chunks(10_000) {
            over |= !w.push(part);
        }
        assert!(over, "4 MiB into a 1 MiB budget and a 64 KiB pipe");
        let (tx, calls) = std::sync::mpsc::channel();
        let tx2 = tx.clone();
        let room: Waiter = Arc::new(move || tx.send("room").unwrap());
        let flushed: Waiter = Arc::new(move || tx2.send("flushed").unwrap());
        assert!(!w.room_or_notify(&room));
        assert!(!w.flushed_or_notify(&flushed));
        assert!(calls.try_recv().is_err(), "nobody read yet");
        let mut got = vec![0; sent.len()];
        reader.read_exact(&mut got).unwrap();
        assert!(got == sent, "bytes differ");
        let wait = Duration::from_secs(20);
        assert_eq!(calls.recv_timeout(wait), Ok("room"));
        assert_eq!(calls.recv_timeout(wait), Ok("flushed"));
        assert_eq!(w.unwritten(), 0);
        assert!(w.room_or_notify(&room) && w.flushed_or_notify(&flushed));
    }

    #[test]
    fn a_second_signal_or_the_deadline_ends_the_wait() {
        let w = queue_only(100);
        w.push(b"stuck");
        let (waiter, _) = counter();
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut f = FlushDeadline::default();
        f.on_signal(t0, 30 * s);
        assert!(!f.settled(&w, t0 + s, &waiter));
        assert!(f.settled(&w, t0 + 30 * s, &waiter));
        assert_eq!(f.wake_at(t0), Some(t0 + 30 * s));
        assert_eq!(f.wake_at(t0 + 30 * s), None, "passed");
        f.on_signal(t0 + 2 * s, 30 * s);
        assert_eq!(f.deadline, Some(t0 + 30 * s), "counted from the first");
        assert_eq!(f.wake_at(t0), None, "nothing to wait for after a second");
        assert!(f.settled(&w, t0 + 2 * s, &waiter));
        let e = FlushDeadline::finish(&w).unwrap_err();
        assert!(e.to_string().contains("5 bytes"), "{e}");
    }
}
