//! `loadgen`: drives N concurrent clients against any server that speaks the
//! ledger, echo or presence protocol, checks every reply, and reports one
//! summary (throughput, latency percentiles, bytes, connect time, errors).
//!
//! The clients are spread over `--threads` threads (default: one per core),
//! each with its own mio `Poll` ([`spread`]; presence conducts its own), so
//! the load generator is not what a measurement measures:
//! - [`ledger`]: every client streams its lines in 64 KiB writes (`--repeat`
//!   times), shuts down its sending side and reads to EOF (a ledger server
//!   closes only after consuming everything). The expected log is computed in
//!   integer cents and can be written (`--expect-log`) or compared with the
//!   server's (`--verify-log`).
//! - [`echo`]: fixed-size unique lines, at most `--window` in flight per
//!   client, every reply checked byte for byte and timed.
//! - [`presence`]: clients join one by one, then leave one by one; every list
//!   every client receives is checked; thread 0 conducts the steps.
//! - [`udp`]: echo over UDP (`--udp`), one socket per client, `--window`
//!   datagrams in flight, every reply checked, lost datagrams counted.
//!
//! [`lines`] (generation, expected log), [`rng`] and [`stats`] (percentiles)
//! are pure; [`report`] is the summary.

use std::io::{self, IsTerminal, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub mod cli;
pub mod connect;
pub mod echo;
pub mod grpc;
pub mod ledger;
pub mod lines;
pub mod presence;
pub mod queue;
pub mod report;
pub mod rng;
pub mod spread;
pub mod stats;
pub mod udp;

pub use connect::ConnectMode;
pub use report::{LogCheck, Report};
pub use rng::Rng;
pub use stats::LatencySummary;

/// Bytes per ledger write: large, like a client streaming a file.
pub const LEDGER_CHUNK_BYTES: usize = 64 * 1024;
/// Read buffer shared by all connections of one run.
const READ_BUF_BYTES: usize = 256 * 1024;

/// Which protocol the clients speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Ledger,
    Echo,
    Presence,
    /// A line server with `--handler queue`: put then pop per step.
    Queue,
    /// `queue-grpc-server`: put then pop per step.
    GrpcQueue,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Ledger => "ledger",
            Mode::Echo => "echo",
            Mode::Presence => "presence",
            Mode::Queue => "queue",
            Mode::GrpcQueue => "grpc-queue",
        }
    }
}

/// Where the lines come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Generated from this seed (ledger: random transactions; echo: unique
    /// fixed-size lines).
    Generated { seed: u64 },
    /// Every client sends these lines (each ends in `\n`), cycling through
    /// them for `--lines` lines.
    Input(Vec<Vec<u8>>),
}

/// Everything one run needs; [`cli::Args`] builds it from the command line,
/// benches build it in code.
#[derive(Debug, Clone)]
pub struct Options {
    pub addr: SocketAddr,
    pub mode: Mode,
    pub clients: usize,
    /// Lines per client (per send, for the ledger's `repeat`).
    pub lines: u64,
    /// Echo: lines in flight per client.
    pub window: u64,
    /// Ledger: times each client sends its lines on its connection.
    pub repeat: u64,
    /// Echo: bytes per generated line, `\n` included.
    pub line_bytes: usize,
    pub source: Source,
    pub connect: ConnectMode,
    /// The whole run (connecting included) must end within this.
    pub timeout: Duration,
    /// Ledger: write the expected log here.
    pub expect_log: Option<PathBuf>,
    /// Ledger: after the run, compare the server's log at this path.
    pub verify_log: Option<VerifyLog>,
    /// Print a progress line on stderr (only ever on a terminal).
    pub progress: bool,
    /// Threads the clients are spread over (`--threads`).
    pub threads: usize,
    /// Echo over UDP instead of TCP (`--udp`).
    pub udp: bool,
    /// UDP: a datagram whose reply has not come after this is lost.
    pub udp_timeout: Duration,
    /// UDP: every datagram its own message (`--udp-one-by-one`), not a
    /// window's equal datagrams as one segmented message.
    pub udp_one_by_one: bool,
}

impl Options {
    /// Defaults for `mode` against `addr`: 50 clients, 1,000 lines, window 1,
    /// repeat 1, 32-byte lines, seed 1, sequential connect, 300 s timeout,
    /// one thread per core, TCP (UDP: 1 s until a datagram counts as lost).
    pub fn new(addr: SocketAddr, mode: Mode) -> Self {
        Options {
            addr,
            mode,
            clients: 50,
            lines: 1000,
            window: 1,
            repeat: 1,
            line_bytes: 32,
            source: Source::Generated { seed: 1 },
            connect: ConnectMode::Sequential {
                attempt_timeout: Duration::from_millis(20),
            },
            timeout: Duration::from_secs(300),
            expect_log: None,
            verify_log: None,
            progress: false,
            threads: default_threads(),
            udp: false,
            udp_timeout: Duration::from_secs(1),
            udp_one_by_one: false,
        }
    }
}

/// `--threads` by default: the number of CPU cores (1 if unknown).
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// How `--verify-log` learns that the server has written its log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyLog {
    pub path: PathBuf,
    /// Send SIGINT to this process after the run and wait for it to exit
    /// (`--stop-pid`). Without it, wait until the file is modified after the
    /// run ended (someone else stops the server).
    pub stop_pid: Option<u32>,
    pub wait: Duration,
}

/// Why a run could not be carried out at all (as opposed to errors counted
/// in the [`Report`]).
#[derive(Debug)]
pub enum RunError {
    /// Could not connect, or set up polling.
    Io(io::Error),
    /// The options do not fit together.
    Usage(String),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Io(e) => e.fmt(f),
            RunError::Usage(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for RunError {}

impl From<io::Error> for RunError {
    fn from(e: io::Error) -> Self {
        RunError::Io(e)
    }
}

/// Runs one load test.
///
/// # Errors
/// [`RunError`] when the run cannot start (connect failure, bad options).
/// Failures of single clients during the run are counted in
/// [`Report::errors`] instead.
pub fn run(opts: &Options) -> Result<Report, RunError> {
    check_options(opts)?;
    raise_fd_limit();
    match opts.mode {
        Mode::Ledger => ledger::run(opts),
        Mode::Echo if opts.udp => udp::run(opts),
        Mode::Echo => echo::run(opts),
        Mode::Presence => presence::run(opts),
        Mode::Queue => grpc::run_queue::<queue::LineConn>(opts),
        Mode::GrpcQueue => grpc::run_grpc_queue(opts),
    }
}

fn check_options(opts: &Options) -> Result<(), RunError> {
    let bad = |m: &str| Err(RunError::Usage(m.to_string()));
    if opts.clients == 0 {
        return bad("--clients must be at least 1");
    }
    if opts.window == 0 {
        return bad("--window must be at least 1");
    }
    if opts.threads == 0 {
        return bad("--threads must be at least 1");
    }
    if opts.udp && opts.mode != Mode::Echo {
        return bad("--udp drives echo only");
    }
    if opts.udp && matches!(opts.source, Source::Input(_)) {
        return bad("--udp: --input does not apply (each datagram carries its client and number)");
    }
    if opts.udp && opts.udp_timeout.is_zero() {
        return bad("--udp-timeout must be above 0");
    }
    if opts.repeat == 0 {
        return bad("--repeat must be at least 1");
    }
    if opts.mode != Mode::Ledger
        && (opts.repeat != 1 || opts.expect_log.is_some() || opts.verify_log.is_some())
    {
        return bad("--repeat, --expect-log and --verify-log apply to --handler ledger only");
    }
    if opts.mode == Mode::Presence {
        if opts.clients > 99_999 {
            return bad("presence: at most 99999 clients (names are c00001..c99999)");
        }
        if matches!(opts.source, Source::Input(_)) {
            return bad("presence: --input does not apply (names are generated)");
        }
        if opts.connect == ConnectMode::Burst {
            return bad("presence: clients join one by one; --connect-burst does not apply");
        }
    }
    if matches!(opts.mode, Mode::Queue | Mode::GrpcQueue)
        && (opts.window != 1 && opts.mode == Mode::Queue || matches!(opts.source, Source::Input(_)))
    {
        return bad("queue: --window does not apply; queue, grpc-queue: --input does not apply");
    }
    if let Source::Input(lines) = &opts.source
        && lines.is_empty()
    {
        return bad("--input: the file has no lines");
    }
    Ok(())
}

/// 1,000 clients plus a server on one machine pass the usual soft limit of
/// 1,024 descriptors: lift ours to the hard limit (best effort).
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// `ADDR` per SPEC (`HOST:PORT`, `[V6ADDR]:PORT`, or a bare `PORT` meaning
/// 127.0.0.1), parsed by [`crate::addr`] like every client's, then resolved
/// once: the run connects every client to the same address.
///
/// # Errors
/// A message naming the address.
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    let target: crate::addr::Target = s.parse().map_err(|e| format!("{e}"))?;
    target
        .resolve()
        .map_err(|e| format!("cannot resolve {s}: {e}"))?
        .into_iter()
        .next()
        .ok_or_else(|| format!("{s} resolves to no address"))
}

/// A once-a-second status line on stderr, only when stderr is a terminal and
/// only once the run has lasted a second.
struct Progress {
    enabled: bool,
    start: Instant,
    next: Instant,
    shown: bool,
}

impl Progress {
    fn new(enabled: bool) -> Self {
        let start = Instant::now();
        Progress {
            enabled: enabled && io::stderr().is_terminal(),
            start,
            next: start + Duration::from_secs(1),
            shown: false,
        }
    }

    /// Shows `text()` if a second has passed since the last line.
    fn tick(&mut self, text: impl FnOnce() -> String) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if now < self.next {
            return;
        }
        self.next = now + Duration::from_secs(1);
        self.shown = true;
        let secs = now.duration_since(self.start).as_secs();
        let _ = write!(io::stderr(), "\r\x1b[K[{secs:>4} s] {}", text());
    }

    fn finish(&mut self) {
        if self.shown {
            let _ = write!(io::stderr(), "\r\x1b[K");
            self.shown = false;
        }
    }
}

/// How long to block in `poll`: until the deadline, but at most 200 ms so
/// the progress line stays fresh.
fn poll_timeout(deadline: Instant) -> Option<Duration> {
    Some(
        deadline
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(200)),
    )
}

/// A poll with each of `streams` registered for both directions under its
/// index as token, and the clients `client` builds around them.
fn register_all<C>(
    streams: Vec<mio::net::TcpStream>,
    mut client: impl FnMut(usize, mio::net::TcpStream) -> C,
) -> io::Result<(mio::Poll, Vec<C>)> {
    let poll = mio::Poll::new()?;
    let mut clients = Vec::with_capacity(streams.len());
    for (i, mut stream) in streams.into_iter().enumerate() {
        poll.registry().register(
            &mut stream,
            mio::Token(i),
            mio::Interest::READABLE | mio::Interest::WRITABLE,
        )?;
        clients.push(client(i, stream));
    }
    Ok((poll, clients))
}

/// The wait loop of a thread that drives clients: polls until `step`
/// reports no unfinished client or `deadline` passes. `step` handles one
/// batch of readiness (the poll is lent to it for re-registering) and
/// returns how many clients are still unfinished. Returns how many were
/// left at the deadline, already reported on stderr as `kind` clients, for
/// the error count.
fn drive_until(
    poll: &mut mio::Poll,
    deadline: Instant,
    kind: &str,
    mut unfinished: usize,
    mut step: impl FnMut(&mio::Poll, &mio::Events) -> usize,
) -> io::Result<u64> {
    let mut events = mio::Events::with_capacity(1024);
    while unfinished > 0 {
        if Instant::now() >= deadline {
            error_line(&format!("timeout: {unfinished} {kind} clients unfinished"));
            return Ok(unfinished as u64);
        }
        match poll.poll(&mut events, poll_timeout(deadline)) {
            Err(e) if interrupted(&e) => continue,
            other => other?,
        }
        unfinished = step(poll, &events);
    }
    Ok(0)
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

fn interrupted(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Interrupted
}

/// Prints `error: TEXT` on stderr, as every program of the project writes
/// its errors: the OS reason without Rust's ` (os error N)`.
pub fn error_line(text: &str) {
    eprintln!("error: {}", crate::status::without_os_error(text));
}

/// Prints one [`error_line`], at most `limit` of a kind, so a run with
/// thousands of failures stays readable.
fn diag_limited(count: &mut u64, limit: u64, line: impl FnOnce() -> String) {
    *count += 1;
    if *count <= limit {
        error_line(&line());
    } else if *count == limit + 1 {
        eprintln!("error: (more errors not shown)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addr_forms() {
        assert_eq!(
            parse_addr("7722").unwrap(),
            "127.0.0.1:7722".parse().unwrap()
        );
        assert_eq!(parse_addr("[::1]:7").unwrap(), "[::1]:7".parse().unwrap());
        assert_eq!(
            parse_addr("10.0.0.1:80").unwrap(),
            "10.0.0.1:80".parse().unwrap()
        );
        assert!(parse_addr("nope").is_err());
        assert!(parse_addr("70000").is_err());
    }

    #[test]
    fn options_that_do_not_fit_are_refused() {
        let addr = parse_addr("1").unwrap();
        let mut o = Options::new(addr, Mode::Echo);
        o.repeat = 2;
        assert!(matches!(check_options(&o), Err(RunError::Usage(_))));
        let mut o = Options::new(addr, Mode::Presence);
        o.connect = ConnectMode::Burst;
        assert!(check_options(&o).is_err());
        let o = Options::new(addr, Mode::Ledger);
        assert!(check_options(&o).is_ok());
    }
}
