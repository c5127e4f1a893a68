//! Presence mode (the method of the echo-presence anchors' `presence-load`).
//!
//! Join phase: client i (1-based) connects, sends `cIIIII\n`, and the next
//! client connects only once client i has received its first list; the
//! phase ends when every client has every list. Leave phase: the clients
//! close one by one in join order; after closing client s, wait until client
//! s+1 has the list without s. So each client receives exactly N lines, and
//! each is checked byte for byte against the list expected at that step.
//!
//! With `--threads T` client j is read by thread j % T. Thread 0 is the
//! conductor: it connects each joiner, hands its socket to its thread (a
//! channel and a `mio::Waker`), closes leavers the same way, and waits for
//! each step on the line counts every thread publishes (the other threads
//! wake it when they have read lines). Each thread checks the lines it
//! reads against the same expected lists, so every check holds for any T;
//! with T = 1 no socket changes hands.

use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};

use super::connect::{self, ConnectMode};
use super::spread::thread_count;
use super::stats::Latencies;
use super::{
    Options, Progress, READ_BUF_BYTES, Report, RunError, interrupted, poll_timeout, would_block,
};

/// Bytes per name in the full list: `c00001` plus its separator.
const NAME_W: usize = 7;
/// The token of each thread's waker.
const WAKE: Token = Token(usize::MAX);

struct Client {
    stream: TcpStream,
    partial: Vec<u8>,
    lines: usize,
}

/// What every thread sees.
struct Shared {
    n: usize,
    /// `c00001 c00002 ... cN`: every expected list is a slice of it.
    full: Vec<u8>,
    /// Lines each client has received (and that passed the check).
    lines: Vec<AtomicUsize>,
    total_lines: AtomicU64,
    bytes: AtomicU64,
    /// The first failure of any thread; it ends the run.
    abort: Mutex<Option<Abort>>,
}

impl Shared {
    fn fail(&self, why: Abort) {
        let mut a = self
            .abort
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        a.get_or_insert(why);
    }

    fn failed(&self) -> Option<Abort> {
        self.abort
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn lines_of(&self, j: usize) -> usize {
        self.lines[j].load(Ordering::Acquire)
    }
}

/// A conductor's order to the thread that owns a client.
enum Cmd {
    Add(usize, TcpStream),
    Close(usize),
    Stop,
}

/// The sockets one thread reads, and their checks.
struct Reader<'a> {
    shared: &'a Shared,
    /// Indexed by client (0-based); only this thread's are ever `Some`.
    clients: Vec<Option<Client>>,
    poll: Poll,
    events: Events,
    buf: Vec<u8>,
}

/// Line `t` (0-based, without `\n`) that client `j` (0-based) of `n` must
/// receive; `full` is every name joined by spaces.
fn expected_list(full: &[u8], n: usize, j: usize, t: usize) -> Option<&[u8]> {
    if t < n - j {
        // Join phase: names 0..=j+t are present.
        Some(&full[..(j + t + 1) * NAME_W - 1])
    } else if t < n {
        // Leave phase: client s just left; names s+1.. remain.
        let s = t - (n - j);
        Some(&full[(s + 1) * NAME_W..])
    } else {
        None
    }
}

/// Why the run stopped early: the server closed a client, a socket failed,
/// or time ran out. Presence lists depend on every earlier step, so one
/// failure ends the run.
type Abort = String;

impl Reader<'_> {
    fn new(shared: &Shared, poll: Poll) -> Reader<'_> {
        Reader {
            shared,
            clients: (0..shared.n).map(|_| None).collect(),
            poll,
            events: Events::with_capacity(4096),
            buf: vec![0u8; READ_BUF_BYTES],
        }
    }

    fn add(&mut self, j: usize, mut stream: TcpStream) -> Result<(), Abort> {
        self.poll
            .registry()
            .register(&mut stream, Token(j), Interest::READABLE)
            .map_err(|e| format!("register: {e}"))?;
        self.clients[j] = Some(Client {
            stream,
            partial: Vec::new(),
            lines: 0,
        });
        Ok(())
    }

    fn close(&mut self, j: usize) {
        if let Some(mut c) = self.clients[j].take() {
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
    }

    /// Checks line `line` of client `j`. A wrong list ends the run: every
    /// later step would differ too, and waiting for lists that never come
    /// would only run into the timeout.
    fn check_line(&mut self, j: usize, line: &[u8]) -> Result<(), Abort> {
        let sh = self.shared;
        let t = self.clients[j].as_ref().map_or(0, |c| c.lines);
        let expected = expected_list(&sh.full, sh.n, j, t);
        if expected != Some(line) {
            let cut = |b: &[u8]| {
                let s = String::from_utf8_lossy(&b[..b.len().min(60)]).into_owned();
                format!("{s:?} ({} bytes)", b.len())
            };
            return Err(format!(
                "client {} line {}: got {}, want {}",
                j + 1,
                t + 1,
                cut(line),
                expected.map_or("nothing".into(), cut)
            ));
        }
        if let Some(c) = self.clients[j].as_mut() {
            c.lines += 1;
            sh.lines[j].store(c.lines, Ordering::Release);
        }
        sh.total_lines.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Reads and checks what client `j` has. Returns whether it read lines.
    fn on_readable(&mut self, j: usize) -> Result<bool, Abort> {
        let mut saw = false;
        loop {
            let Some(c) = self.clients[j].as_mut() else {
                return Ok(saw);
            };
            let n = match c.stream.read(&mut self.buf) {
                Ok(0) => return Err(format!("server closed client {}", j + 1)),
                Ok(n) => n,
                Err(e) if would_block(&e) => return Ok(saw),
                Err(e) if interrupted(&e) => continue,
                Err(e) => return Err(format!("client {}: read: {e}", j + 1)),
            };
            self.shared.bytes.fetch_add(n as u64, Ordering::Relaxed);
            let data = std::mem::take(&mut self.buf);
            let mut rest = &data[..n];
            while let Some(i) = memchr::memchr(b'\n', rest) {
                let (line, tail) = (&rest[..i], &rest[i + 1..]);
                rest = tail;
                saw = true;
                let partial = self.clients[j]
                    .as_mut()
                    .map(|c| std::mem::take(&mut c.partial))
                    .unwrap_or_default();
                if partial.is_empty() {
                    self.check_line(j, line)?;
                } else {
                    let mut whole = partial;
                    whole.extend_from_slice(line);
                    self.check_line(j, &whole)?;
                }
            }
            if let Some(c) = self.clients[j].as_mut() {
                if c.partial.len() + rest.len() > self.shared.full.len() + 1 {
                    return Err(format!("client {}: a line longer than any list", j + 1));
                }
                c.partial.extend_from_slice(rest);
            }
            self.buf = data;
        }
    }

    /// Thread 1..T: reads its clients and obeys the conductor until `Stop`.
    /// A failure is published and the thread goes on obeying (so the
    /// conductor, which sees the failure, can stop it).
    fn serve(mut self, cmds: &mpsc::Receiver<Cmd>, conductor: &Waker) {
        let mut failed = false;
        loop {
            if let Err(e) = self
                .poll
                .poll(&mut self.events, Some(Duration::from_millis(200)))
                && !interrupted(&e)
            {
                self.shared.fail(format!("poll: {e}"));
                let _ = conductor.wake();
                failed = true;
            }
            let ready: Vec<usize> = self.events.iter().map(|e| e.token().0).collect();
            let mut saw = false;
            for j in ready.into_iter().filter(|&j| j != WAKE.0) {
                if failed {
                    continue;
                }
                match self.on_readable(j) {
                    Ok(s) => saw |= s,
                    Err(why) => {
                        self.shared.fail(why);
                        failed = true;
                        saw = true;
                    }
                }
            }
            while let Ok(cmd) = cmds.try_recv() {
                match cmd {
                    Cmd::Add(j, stream) => {
                        // Registering a socket that has data already
                        // reports it at the next poll (epoll checks on add).
                        if let Err(why) = self.add(j, stream) {
                            self.shared.fail(why);
                            failed = true;
                            saw = true;
                        }
                    }
                    Cmd::Close(j) => self.close(j),
                    Cmd::Stop => return,
                }
            }
            if saw {
                let _ = conductor.wake();
            }
        }
    }
}

/// Thread 0: drives the steps, reads its own clients.
struct Conductor<'a> {
    reader: Reader<'a>,
    /// Threads 1..T: their orders and their wakers.
    others: Vec<(mpsc::Sender<Cmd>, Waker)>,
    deadline: Instant,
    progress: Progress,
}

impl Conductor<'_> {
    /// Hands client `j` to its thread.
    fn add(&mut self, j: usize, stream: TcpStream) -> Result<(), Abort> {
        let threads = self.others.len() + 1;
        match j % threads {
            0 => self.reader.add(j, stream),
            k => self.order(k, Cmd::Add(j, stream)),
        }
    }

    fn close(&mut self, j: usize) -> Result<(), Abort> {
        match j % (self.others.len() + 1) {
            0 => {
                self.reader.close(j);
                Ok(())
            }
            k => self.order(k, Cmd::Close(j)),
        }
    }

    fn order(&self, k: usize, cmd: Cmd) -> Result<(), Abort> {
        let (tx, waker) = &self.others[k - 1];
        tx.send(cmd)
            .map_err(|_| format!("loadgen thread {k} is gone"))?;
        waker.wake().map_err(|e| format!("wake: {e}"))
    }

    /// Runs the event loop until `done` holds.
    fn pump(&mut self, what: &str, done: impl Fn(&Shared) -> bool) -> Result<(), Abort> {
        let sh = self.reader.shared;
        loop {
            if let Some(why) = sh.failed() {
                return Err(why);
            }
            if done(sh) {
                return Ok(());
            }
            if Instant::now() >= self.deadline {
                return Err(format!("timeout while waiting for {what}"));
            }
            let r = &mut self.reader;
            match r.poll.poll(&mut r.events, poll_timeout(self.deadline)) {
                Err(e) if interrupted(&e) => continue,
                Err(e) => return Err(format!("poll: {e}")),
                Ok(()) => {}
            }
            let tokens: Vec<usize> = r.events.iter().map(|e| e.token().0).collect();
            for j in tokens.into_iter().filter(|&j| j != WAKE.0) {
                r.on_readable(j)?;
            }
            let (lines, n) = (sh.total_lines.load(Ordering::Relaxed), sh.n);
            self.progress
                .tick(|| format!("{what}: {lines}/{} lines", 2 * n * n));
        }
    }
}

/// Runs presence mode.
///
/// # Errors
/// See [`super::run`].
pub fn run(opts: &Options) -> Result<Report, RunError> {
    let n = opts.clients;
    let threads = thread_count(opts);
    let names: Vec<String> = (1..=n).map(|i| format!("c{i:05}")).collect();
    let shared = Shared {
        n,
        full: names.join(" ").into_bytes(),
        lines: (0..n).map(|_| AtomicUsize::new(0)).collect(),
        total_lines: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        abort: Mutex::new(None),
    };
    let own_poll = Poll::new()?;
    let conductor_waker = Waker::new(own_poll.registry(), WAKE)?;
    let mut polls = Vec::with_capacity(threads - 1);
    for _ in 1..threads {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKE)?;
        polls.push((poll, waker));
    }
    std::thread::scope(|scope| {
        let mut others = Vec::with_capacity(threads - 1);
        for (k, (poll, waker)) in polls.into_iter().enumerate() {
            let (tx, rx) = mpsc::channel();
            let reader = Reader::new(&shared, poll);
            let wake_me = &conductor_waker;
            std::thread::Builder::new()
                .name(format!("loadgen-{}", k + 1))
                .spawn_scoped(scope, move || reader.serve(&rx, wake_me))
                .expect("spawn a loadgen thread");
            others.push((tx, waker));
        }
        let mut c = Conductor {
            reader: Reader::new(&shared, own_poll),
            others,
            deadline: Instant::now() + opts.timeout,
            progress: Progress::new(opts.progress),
        };
        let report = conduct(opts, &names, &mut c, threads);
        for (tx, waker) in &c.others {
            let _ = tx.send(Cmd::Stop);
            let _ = waker.wake();
        }
        Ok(report)
    })
}

/// The join phase, then the leave phase, as the module text describes.
fn conduct(opts: &Options, names: &[String], c: &mut Conductor<'_>, threads: usize) -> Report {
    let n = names.len();
    let sh = c.reader.shared;
    let attempt_timeout = match opts.connect {
        ConnectMode::Sequential { attempt_timeout } => attempt_timeout,
        ConnectMode::Burst => Duration::from_millis(20),
    };
    let mut report = Report::new(opts);
    report.threads = threads;
    let mut join_steps = Latencies::with_capacity(n);
    let mut connect_time = Duration::ZERO;
    let mut bytes_sent = 0u64;

    let start = Instant::now();
    let mut result = (|| -> Result<(), Abort> {
        for (j, name) in names.iter().enumerate() {
            let t0 = Instant::now();
            let (mut stream, retries) = connect::connect_one(opts.addr, j, attempt_timeout)
                .map_err(|e| format!("connect (client {}): {e}", j + 1))?;
            connect_time += t0.elapsed();
            report.connect_retries += retries;
            let line = format!("{name}\n");
            // A fresh socket's send buffer takes 7 bytes at once.
            match io::Write::write(&mut stream, line.as_bytes()) {
                Ok(k) if k == line.len() => bytes_sent += k as u64,
                Ok(_) => return Err(format!("client {}: short write of its name", j + 1)),
                Err(e) => return Err(format!("client {}: write: {e}", j + 1)),
            }
            c.add(j, stream)?;
            c.pump("a joiner's first list", |s| s.lines_of(j) >= 1)?;
            join_steps.record(t0.elapsed());
        }
        c.pump("the join phase to drain", |s| {
            (0..s.n).all(|j| s.lines_of(j) >= s.n - j)
        })
    })();
    let join = start.elapsed();
    report.phases.push(("join", join));
    if result.is_ok() {
        let leave_start = Instant::now();
        result = (|| -> Result<(), Abort> {
            for s in 0..n {
                c.close(s)?;
                if s + 1 < n {
                    c.pump("the next leaver's last list", |sh| {
                        sh.lines_of(s + 1) >= sh.n
                    })?;
                }
            }
            Ok(())
        })();
        report.phases.push(("leave", leave_start.elapsed()));
    }
    c.progress.finish();
    let mut errors = 0;
    if let Err(why) = result {
        super::error_line(&format!("presence run stopped: {why}"));
        errors += 1;
    }
    let lines = sh.total_lines.load(Ordering::Relaxed);
    if errors == 0 && lines != (n * n) as u64 {
        errors += 1;
    }
    report.wall = report.phases.iter().map(|(_, d)| *d).sum();
    report.lines = lines;
    report.bytes_sent = bytes_sent;
    report.bytes_received = sh.bytes.load(Ordering::Relaxed);
    report.errors = errors;
    report.connect = connect_time;
    report.latency = join_steps.summarize();
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_lists_follow_joins_then_leaves() {
        let full = b"c00001 c00002 c00003 c00004";
        let e = |j, t| expected_list(full, 4, j, t);
        // Client 2 joins second: it sees the lists of joins 2, 3, 4, then
        // client 1's leave; it leaves next, so that is its last line.
        assert_eq!(e(1, 0), Some(&b"c00001 c00002"[..]));
        assert_eq!(e(1, 2), Some(&full[..]));
        assert_eq!(e(1, 3), Some(&b"c00002 c00003 c00004"[..]));
        assert_eq!(e(1, 4), None);
        // The last joiner sees the full list first, then every leave.
        assert_eq!(e(3, 0), Some(&full[..]));
        assert_eq!(e(3, 1), Some(&b"c00002 c00003 c00004"[..]));
        assert_eq!(e(3, 3), Some(&b"c00004"[..]));
        // The first joiner: 4 join lists, then it leaves first.
        assert_eq!(e(0, 3), Some(&full[..]));
    }
}
