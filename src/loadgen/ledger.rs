//! Ledger mode: every client streams its lines in large writes, `repeat`
//! times, half-closes, and reads to EOF. A ledger server closes a connection
//! only after it consumed everything, so the last EOF means the server has
//! every byte; the log it writes at shutdown can then be checked.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use mio::Poll;
use mio::net::TcpStream;

use super::lines::{self, Balances, NoExpectedLog};
use super::spread::{Part, Slot, spread};
use super::{
    LEDGER_CHUNK_BYTES, LogCheck, Options, READ_BUF_BYTES, Report, RunError, Source, VerifyLog,
    connect, diag_limited, drive_until, interrupted, register_all, would_block,
};

/// The bytes each client sends (once; it sends them `repeat` times) and the
/// log the server must write.
pub struct Workload {
    pub per_client: Vec<Arc<[u8]>>,
    /// Lines in one send of one client's data.
    pub lines_per_client: u64,
    pub expected_log: Result<Vec<u8>, NoExpectedLog>,
}

/// Builds the data for `opts` (generated per client, or the `--input` lines
/// cycled) and the log it must produce.
pub fn workload(opts: &Options) -> Workload {
    let mut balances = Balances::new();
    let (per_client, mut expected): (Vec<Arc<[u8]>>, Result<(), NoExpectedLog>) = match &opts.source
    {
        Source::Generated { seed } => {
            let data = (0..opts.clients)
                .map(|i| Arc::from(lines::ledger_lines(*seed, i + 1, opts.lines, &mut balances)))
                .collect();
            (data, Ok(()))
        }
        Source::Input(input) => {
            let chosen = || input.iter().cycle().take(opts.lines as usize);
            let data: Arc<[u8]> = chosen().flatten().copied().collect::<Vec<u8>>().into();
            let mut one = Balances::new();
            let ok = lines::apply_lines(chosen().map(Vec::as_slice), &mut one);
            for (name, cents) in one {
                balances.insert(name, cents * opts.clients as i128);
            }
            (vec![data; opts.clients], ok)
        }
    };
    let expected_log = match expected.as_mut() {
        Ok(()) => lines::render_log(&balances, opts.repeat),
        Err(e) => Err(e.clone()),
    };
    Workload {
        per_client,
        lines_per_client: opts.lines,
        expected_log,
    }
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    Sending,
    /// Sending side shut down; reading until the server closes.
    Draining,
    Done,
}

struct Client {
    stream: TcpStream,
    data: Arc<[u8]>,
    /// Offset in `data` of the next byte to send.
    pos: usize,
    sends_left: u64,
    state: State,
    /// The server sent something (a ledger sends only limit errors).
    got_bytes: bool,
}

struct Totals {
    bytes_sent: u64,
    bytes_received: u64,
    errors: u64,
    shown: u64,
    finished: usize,
}

/// Runs ledger mode, the clients spread over `--threads` threads.
///
/// # Errors
/// See [`super::run`].
pub fn run(opts: &Options) -> Result<Report, RunError> {
    // A log modified after this instant is this run's (see `wait_for_log`).
    let run_start = SystemTime::now();
    let work = workload(opts);
    if let (Some(path), Ok(log)) = (&opts.expect_log, &work.expected_log) {
        std::fs::write(path, log).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot write {}: {e}", path.display()))
        })?;
    }
    let total_bytes: u64 =
        work.per_client.iter().map(|d| d.len() as u64).sum::<u64>() * opts.repeat;
    let part = spread(
        opts,
        |sent| {
            format!(
                "{:.0}% sent",
                100.0 * sent as f64 / total_bytes.max(1) as f64
            )
        },
        |slot| part(opts, &slot, &work.per_client[slot.clients.clone()]),
    )?;
    let mut report = Report::new(opts);
    part.into_report(&mut report);
    // Every line counts once sent: a ledger server answers nothing.
    report.lines = work.lines_per_client * opts.repeat * opts.clients as u64;
    if let Some(v) = &opts.verify_log {
        report.log_check = match &work.expected_log {
            Err(NoExpectedLog(why)) => LogCheck::Unavailable(why.clone()),
            Ok(expected) => match wait_for_log(v, run_start) {
                Ok(actual) => compare_logs(expected, &actual),
                Err(why) => LogCheck::Unavailable(why),
            },
        };
    } else if let Err(NoExpectedLog(why)) = &work.expected_log
        && opts.expect_log.is_some()
    {
        report.log_check = LogCheck::Unavailable(why.clone());
    }
    Ok(report)
}

/// One thread's share of a ledger run: the clients of `slot`, whose data
/// is `data` (one entry per client).
fn part(opts: &Options, slot: &Slot<'_>, data: &[Arc<[u8]>]) -> Result<Part, RunError> {
    let connected = connect::connect_all(opts.addr, slot.clients.clone(), opts.connect);
    let Some(start) = slot.ready(connected.is_ok()) else {
        return connected.map(|_| Part::default()).map_err(RunError::from);
    };
    let connected = connected?;
    let deadline = slot.deadline;
    let (mut poll, mut clients) = register_all(connected.streams, |i, stream| Client {
        stream,
        data: Arc::clone(&data[i]),
        pos: 0,
        sends_left: opts.repeat,
        state: State::Sending,
        got_bytes: false,
    })?;
    let mut t = Totals {
        bytes_sent: 0,
        bytes_received: 0,
        errors: 0,
        shown: 0,
        finished: 0,
    };
    let mut buf = vec![0u8; READ_BUF_BYTES];
    let first = slot.clients.start;
    let mut reported = 0;
    for (i, c) in clients.iter_mut().enumerate() {
        drive(first + i, c, &poll, &mut t, &mut buf);
    }
    let unfinished = clients.len() - t.finished;
    let timed_out = drive_until(&mut poll, deadline, "ledger", unfinished, |poll, events| {
        for ev in events {
            let i = ev.token().0;
            drive(first + i, &mut clients[i], poll, &mut t, &mut buf);
        }
        slot.advance(t.bytes_sent - reported);
        reported = t.bytes_sent;
        clients.len() - t.finished
    })?;
    t.errors += timed_out;
    let end = Instant::now();
    drop(clients);
    Ok(Part {
        bytes_sent: t.bytes_sent,
        bytes_received: t.bytes_received,
        errors: t.errors,
        connect: connected.elapsed,
        connect_retries: connected.retries,
        span: Some((start, end)),
        ..Part::default()
    })
}

/// Sends what the socket takes and reads what it has, until both would
/// block (edge-triggered readiness: stop early and no new event comes).
fn drive(i: usize, c: &mut Client, poll: &Poll, t: &mut Totals, buf: &mut [u8]) {
    if c.state == State::Done {
        return;
    }
    if let Err(e) = pump(c, t, buf) {
        diag_limited(&mut t.shown, 5, || format!("ledger client {}: {e}", i + 1));
        t.errors += 1;
        c.state = State::Done;
    }
    if c.state == State::Done {
        let _ = poll.registry().deregister(&mut c.stream);
        let _ = c.stream.shutdown(Shutdown::Both);
        t.finished += 1;
    }
}

fn pump(c: &mut Client, t: &mut Totals, buf: &mut [u8]) -> io::Result<()> {
    while c.state == State::Sending {
        let end = (c.pos + LEDGER_CHUNK_BYTES).min(c.data.len());
        match c.stream.write(&c.data[c.pos..end]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                c.pos += n;
                t.bytes_sent += n as u64;
                if c.pos == c.data.len() {
                    c.pos = 0;
                    c.sends_left -= 1;
                    if c.sends_left == 0 {
                        c.stream.shutdown(Shutdown::Write)?;
                        c.state = State::Draining;
                    }
                }
            }
            Err(e) if would_block(&e) => break,
            Err(e) if interrupted(&e) => {}
            Err(e) => return Err(e),
        }
    }
    loop {
        match c.stream.read(buf) {
            Ok(0) if c.state == State::Draining => {
                c.state = State::Done;
                return Ok(());
            }
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "server closed the connection before all lines were sent",
                ));
            }
            Ok(n) => {
                t.bytes_received += n as u64;
                if !c.got_bytes {
                    c.got_bytes = true;
                    t.errors += 1;
                    let text = String::from_utf8_lossy(&buf[..n.min(80)]).into_owned();
                    diag_limited(&mut t.shown, 5, || {
                        format!("a ledger server replied (it should send nothing): {text:?}")
                    });
                }
            }
            Err(e) if would_block(&e) => return Ok(()),
            Err(e) if interrupted(&e) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Waits until the server has written its log, then reads it. Without a pid
/// to stop, "written" means modified after `since`, the start of the run: a
/// server writes its log only at shutdown, and file times come from a coarse
/// clock that may lag `SystemTime::now()` by a few ms, so "after the last
/// EOF" could miss a log written right then.
fn wait_for_log(v: &VerifyLog, since: SystemTime) -> Result<Vec<u8>, String> {
    let deadline = Instant::now() + v.wait;
    let step = Duration::from_millis(20);
    if let Some(pid) = v.stop_pid {
        let pid_t = libc::pid_t::try_from(pid).map_err(|_| format!("bad pid {pid}"))?;
        // SAFETY: kill(2) with a plain pid and signal number.
        if unsafe { libc::kill(pid_t, libc::SIGINT) } != 0 {
            return Err(format!(
                "cannot signal pid {pid}: {}",
                io::Error::last_os_error()
            ));
        }
        while process_alive(pid) {
            if Instant::now() >= deadline {
                return Err(format!("server pid {pid} still running after SIGINT"));
            }
            std::thread::sleep(step);
        }
        return std::fs::read(&v.path).map_err(|e| format!("{}: {e}", v.path.display()));
    }
    // Someone else stops the server: wait for a log written after the run,
    // whose size holds still (some servers write in several pieces).
    let mut last_len = None;
    loop {
        if let Some(len) = fresh_len(&v.path, since) {
            if last_len == Some(len) {
                return std::fs::read(&v.path).map_err(|e| format!("{}: {e}", v.path.display()));
            }
            last_len = Some(len);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{} not written within {:.0} s after the run",
                v.path.display(),
                v.wait.as_secs_f64()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The file's length if it was modified at or after `since`.
fn fresh_len(path: &Path, since: SystemTime) -> Option<u64> {
    let meta = std::fs::metadata(path).ok()?;
    (meta.modified().ok()? >= since).then_some(meta.len())
}

/// Whether `pid` still runs (a zombie has exited: its parent just has not
/// reaped it yet).
fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// Byte comparison, describing the first difference.
pub fn compare_logs(expected: &[u8], actual: &[u8]) -> LogCheck {
    if expected == actual {
        return LogCheck::Match;
    }
    let mut exp = expected.split_inclusive(|&b| b == b'\n');
    let mut act = actual.split_inclusive(|&b| b == b'\n');
    for n in 1.. {
        match (exp.next(), act.next()) {
            (Some(e), Some(a)) if e == a => {}
            (e, a) => {
                let show = |l: Option<&[u8]>| {
                    l.map_or("end of file".to_string(), |l| {
                        format!("{:?}", String::from_utf8_lossy(l))
                    })
                };
                return LogCheck::Mismatch(format!(
                    "line {n}: expected {}, got {} ({} vs {} bytes)",
                    show(e),
                    show(a),
                    expected.len(),
                    actual.len()
                ));
            }
        }
    }
    unreachable!("two different byte strings differ at some line")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadgen::{Mode, parse_addr};

    #[test]
    fn log_comparison_names_the_first_difference() {
        assert_eq!(compare_logs(b"a $1.00\n", b"a $1.00\n"), LogCheck::Match);
        let LogCheck::Mismatch(m) = compare_logs(b"a $1.00\nb $2.00\n", b"a $1.00\nb $2.01\n")
        else {
            panic!()
        };
        assert!(m.starts_with("line 2:"), "{m}");
        let LogCheck::Mismatch(m) = compare_logs(b"a $1.00\n", b"") else {
            panic!()
        };
        assert!(m.contains("got end of file"), "{m}");
    }

    #[test]
    fn workload_expected_log_scales_with_repeat_and_clients() {
        let mut opts = Options::new(parse_addr("1").unwrap(), Mode::Ledger);
        opts.clients = 3;
        opts.lines = 3;
        opts.repeat = 2;
        opts.source = Source::Input(lines::split_input(b"A credit $1.50\nB debit 2\n"));
        let w = workload(&opts);
        // Each client sends A, B, A (cycled): A +3.00, B -2.00; x3 clients x2 sends.
        assert_eq!(w.expected_log.unwrap(), b"A $18.00\nB $-12.00\n");
        assert_eq!(
            &*w.per_client[2],
            b"A credit $1.50\nB debit 2\nA credit $1.50\n"
        );
    }

    #[test]
    fn generated_workload_is_deterministic() {
        let mut opts = Options::new(parse_addr("1").unwrap(), Mode::Ledger);
        opts.clients = 4;
        opts.lines = 100;
        let (a, b) = (workload(&opts), workload(&opts));
        assert_eq!(a.per_client, b.per_client);
        assert_eq!(a.expected_log.unwrap(), b.expected_log.unwrap());
    }
}
