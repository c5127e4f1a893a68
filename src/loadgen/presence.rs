//! Presence mode (the method of the echo-presence anchors' `presence-load`).
//!
//! Join phase: client i (1-based) connects, sends `cIIIII\n`, and the next
//! client connects only once client i has received its first list; the
//! phase ends when every client has every list. Leave phase: the clients
//! close one by one in join order; after closing client s, wait until client
//! s+1 has the list without s. So each client receives exactly N lines, and
//! each is checked byte for byte against the list expected at that step.

use std::io::{self, Read};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use super::connect::{self, ConnectMode};
use super::stats::Latencies;
use super::{
    Options, Progress, READ_BUF_BYTES, Report, RunError, interrupted, poll_timeout, would_block,
};

/// Bytes per name in the full list: `c00001` plus its separator.
const NAME_W: usize = 7;

struct Client {
    stream: TcpStream,
    partial: Vec<u8>,
    lines: usize,
}

struct Load {
    n: usize,
    /// `c00001 c00002 ... cN`: every expected list is a slice of it.
    full: Vec<u8>,
    clients: Vec<Option<Client>>,
    poll: Poll,
    events: Events,
    buf: Vec<u8>,
    bytes: u64,
    lines: u64,
    errors: u64,
    deadline: Instant,
    progress: Progress,
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

impl Load {
    fn expected(&self, j: usize, t: usize) -> Option<&[u8]> {
        expected_list(&self.full, self.n, j, t)
    }

    /// Checks line `line` of client `j`. A wrong list ends the run: every
    /// later step would differ too, and waiting for lists that never come
    /// would only run into the timeout.
    fn check_line(&mut self, j: usize, line: &[u8]) -> Result<(), Abort> {
        let t = self.clients[j].as_ref().map_or(0, |c| c.lines);
        if self.expected(j, t) != Some(line) {
            let cut = |b: &[u8]| {
                let s = String::from_utf8_lossy(&b[..b.len().min(60)]).into_owned();
                format!("{s:?} ({} bytes)", b.len())
            };
            return Err(format!(
                "client {} line {}: got {}, want {}",
                j + 1,
                t + 1,
                cut(line),
                self.expected(j, t).map_or("nothing".into(), cut)
            ));
        }
        if let Some(c) = self.clients[j].as_mut() {
            c.lines += 1;
        }
        self.lines += 1;
        Ok(())
    }

    fn on_readable(&mut self, j: usize) -> Result<(), Abort> {
        loop {
            let Some(c) = self.clients[j].as_mut() else {
                return Ok(());
            };
            let n = match c.stream.read(&mut self.buf) {
                Ok(0) => return Err(format!("server closed client {}", j + 1)),
                Ok(n) => n,
                Err(e) if would_block(&e) => return Ok(()),
                Err(e) if interrupted(&e) => continue,
                Err(e) => return Err(format!("client {}: read: {e}", j + 1)),
            };
            self.bytes += n as u64;
            let data = std::mem::take(&mut self.buf);
            let mut rest = &data[..n];
            while let Some(i) = memchr::memchr(b'\n', rest) {
                let (line, tail) = (&rest[..i], &rest[i + 1..]);
                rest = tail;
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
                if c.partial.len() + rest.len() > self.full.len() + 1 {
                    return Err(format!("client {}: a line longer than any list", j + 1));
                }
                c.partial.extend_from_slice(rest);
            }
            self.buf = data;
        }
    }

    /// Runs the event loop until `done` holds.
    fn pump(&mut self, what: &str, done: impl Fn(&Load) -> bool) -> Result<(), Abort> {
        while !done(self) {
            if Instant::now() >= self.deadline {
                return Err(format!("timeout while waiting for {what}"));
            }
            match self
                .poll
                .poll(&mut self.events, poll_timeout(self.deadline))
            {
                Err(e) if interrupted(&e) => continue,
                Err(e) => return Err(format!("poll: {e}")),
                Ok(()) => {}
            }
            let tokens: Vec<usize> = self.events.iter().map(|e| e.token().0).collect();
            for j in tokens {
                self.on_readable(j)?;
            }
            let (lines, n) = (self.lines, self.n);
            self.progress
                .tick(|| format!("{what}: {lines}/{} lines", 2 * n * n));
        }
        Ok(())
    }

    fn lines_of(&self, j: usize) -> usize {
        self.clients[j].as_ref().map_or(usize::MAX, |c| c.lines)
    }
}

/// Runs presence mode.
///
/// # Errors
/// See [`super::run`].
pub fn run(opts: &Options) -> Result<Report, RunError> {
    let n = opts.clients;
    let attempt_timeout = match opts.connect {
        ConnectMode::Sequential { attempt_timeout } => attempt_timeout,
        ConnectMode::Burst => Duration::from_millis(20),
    };
    let names: Vec<String> = (1..=n).map(|i| format!("c{i:05}")).collect();
    let mut ld = Load {
        n,
        full: names.join(" ").into_bytes(),
        clients: (0..n).map(|_| None).collect(),
        poll: Poll::new()?,
        events: Events::with_capacity(4096),
        buf: vec![0u8; READ_BUF_BYTES],
        bytes: 0,
        lines: 0,
        errors: 0,
        deadline: Instant::now() + opts.timeout,
        progress: Progress::new(opts.progress),
    };
    let mut report = Report::new(opts);
    // Joins and leaves are steps in one order: one thread drives them all.
    report.threads = 1;
    let mut join_steps = Latencies::with_capacity(n);
    let mut connect_time = Duration::ZERO;
    let mut bytes_sent = 0u64;

    let start = Instant::now();
    let mut result = (|| -> Result<(), Abort> {
        for (j, name) in names.iter().enumerate() {
            let t0 = Instant::now();
            let (mut stream, retries) = connect::connect_one(opts.addr, attempt_timeout)
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
            ld.poll
                .registry()
                .register(&mut stream, Token(j), Interest::READABLE)
                .map_err(|e| format!("register: {e}"))?;
            ld.clients[j] = Some(Client {
                stream,
                partial: Vec::new(),
                lines: 0,
            });
            ld.pump("a joiner's first list", |l| l.lines_of(j) >= 1)?;
            join_steps.record(t0.elapsed());
        }
        ld.pump("the join phase to drain", |l| {
            (0..l.n).all(|j| l.lines_of(j) >= l.n - j)
        })?;
        Ok(())
    })();
    let join = start.elapsed();
    report.phases.push(("join", join));
    if result.is_ok() {
        let leave_start = Instant::now();
        result = (|| -> Result<(), Abort> {
            for s in 0..n {
                if let Some(mut c) = ld.clients[s].take() {
                    let _ = ld.poll.registry().deregister(&mut c.stream);
                }
                if s + 1 < n {
                    ld.pump("the next leaver's last list", |l| l.lines_of(s + 1) >= l.n)?;
                }
            }
            Ok(())
        })();
        report.phases.push(("leave", leave_start.elapsed()));
    }
    ld.progress.finish();
    if let Err(why) = result {
        eprintln!("loadgen: presence run stopped: {why}");
        ld.errors += 1;
    }
    let expected_lines = (n * n) as u64;
    if ld.errors == 0 && ld.lines != expected_lines {
        ld.errors += 1;
    }
    report.wall = report.phases.iter().map(|(_, d)| *d).sum();
    report.lines = ld.lines;
    report.bytes_sent = bytes_sent;
    report.bytes_received = ld.bytes;
    report.errors = ld.errors;
    report.connect = connect_time;
    report.latency = join_steps.summarize();
    Ok(report)
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
