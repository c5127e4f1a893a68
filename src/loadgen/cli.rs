//! The `loadgen` command line and its `main`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use super::{ConnectMode, Mode, Options, RunError, Source, VerifyLog, lines, parse_addr};

/// Command line of `loadgen`.
#[derive(Debug, Clone, Parser)]
#[command(
    version,
    about = "Drives N concurrent clients against a server speaking ledger, echo, presence, queue or \
             grpc-queue (queue-grpc-server), checks every answer and prints one summary.",
    after_help = "Modes:\n  \
      ledger    each client streams its lines in 64 KiB writes (--repeat times), shuts down its\n            \
                sending side and reads to EOF; the expected log can be written or checked\n  \
      echo      each client keeps --window lines in flight and checks every reply byte for byte\n  \
      presence  clients c00001.. join one by one, then leave one by one; every list is checked\n  \
      queue     each client does --lines steps of put then pop on a line server's `--handler queue`,\n            \
                every answer checked; at most as many clients as the queue has slots hold an item\n            \
                at once (the others wait, untimed); items queued before the run are taken out and\n            \
                put back after it; the summary counts calls (two per step)\n  \
      grpc-queue  the same workload against queue-grpc-server\n  \
      --udp     echo over UDP: each client its own socket, --window datagrams in flight, every\n            \
                reply checked; no reply within --udp-timeout counts the datagram lost\n\n\
      --threads spreads the clients over N threads, each its own poll loop (presence: thread 0 also\n\
      conducts the join/leave steps; the others read their clients' lists and wake it).\n\n\
      Exit status: 0 if every client finished and every check passed, 1 otherwise, 2 on a usage error.\n\
      Example: loadgen --handler ledger --clients 50 --lines 10000 --repeat 20 --verify-log log.txt --stop-pid $PID 7722"
)]
pub struct Args {
    /// Server address: `HOST:PORT`, `[V6ADDR]:PORT`, or a bare `PORT` (127.0.0.1)
    #[arg(value_name = "ADDR", value_parser = parse_addr)]
    pub addr: std::net::SocketAddr,

    /// Protocol the clients speak: ledger, echo, presence, queue or grpc-queue (see Modes below)
    #[arg(short = 'H', long = "handler", value_enum, default_value_t = Mode::Echo, value_name = "NAME")]
    pub mode: Mode,

    /// Concurrent clients
    #[arg(short, long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=1_000_000), value_name = "N")]
    pub clients: u64,

    /// Lines per client (ledger: per send; queue, grpc-queue: put+pop steps; presence: ignored,
    /// each client gets N lists)
    #[arg(short, long, default_value_t = 1000, value_name = "N")]
    pub lines: u64,

    /// echo: lines in flight per client (1 = ping-pong); grpc-queue: calls in flight per client
    #[arg(short, long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..), value_name = "W")]
    pub window: u64,

    /// ledger: send the data K times on each connection
    #[arg(short, long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..), value_name = "K")]
    pub repeat: u64,

    /// echo: bytes per generated line, newline included (at least 21: the line's number is in it)
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(21..=1 << 20), value_name = "BYTES")]
    pub line_bytes: u64,

    /// Send these lines (cycled to --lines per client) instead of generated ones
    #[arg(short, long, value_name = "FILE")]
    pub input: Option<PathBuf>,

    /// Seed of the generated lines (same seed, same lines)
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub seed: u64,

    /// Open every connection at once instead of one by one with retry
    #[arg(long)]
    pub connect_burst: bool,

    /// Give up on one connect attempt after this many ms and retry (one-by-one mode)
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..), value_name = "MS")]
    pub connect_timeout_ms: u64,

    /// The whole run must finish within this many seconds
    #[arg(long, default_value_t = 300.0, value_name = "SECS")]
    pub timeout: f64,

    /// ledger: write the log the server must produce to FILE
    #[arg(long, value_name = "FILE")]
    pub expect_log: Option<PathBuf>,

    /// ledger: after the run, compare the server's log at PATH with the expected one
    #[arg(long, value_name = "PATH")]
    pub verify_log: Option<PathBuf>,

    /// with --verify-log: send SIGINT to this server process after the run and wait for it to
    /// exit; without it, loadgen waits for PATH to be rewritten (someone else stops the server)
    #[arg(long, value_name = "PID", requires = "verify_log")]
    pub stop_pid: Option<u32>,

    /// with --verify-log: how long to wait for the log, in seconds
    #[arg(long, default_value_t = 60.0, value_name = "SECS")]
    pub log_wait: f64,

    /// Threads the clients are spread over, each with its own poll loop [default: CPU cores]
    #[arg(short = 'j', long, value_parser = clap::value_parser!(u64).range(1..=4096), value_name = "N")]
    pub threads: Option<u64>,

    /// echo over UDP: one socket per client, --window datagrams in flight
    #[arg(long)]
    pub udp: bool,

    /// with --udp: a datagram whose reply has not come after SECS is counted lost
    #[arg(long, default_value_t = 1.0, value_name = "SECS")]
    pub udp_timeout: f64,

    /// with --udp: send each datagram as its own message, as most clients do, rather than a
    /// window's equal datagrams as one segmented message (UDP GSO: the server still gets them
    /// one by one)
    #[arg(long)]
    pub udp_one_by_one: bool,

    /// Print the summary as one JSON object
    #[arg(long)]
    pub json: bool,
}

impl Args {
    /// # Errors
    /// `(exit status, message)`: 1 for an `--input` file that cannot be
    /// read, 2 for a value that does not fit.
    pub fn into_options(self) -> Result<Options, (u8, String)> {
        let secs = |what: &str, v: f64| {
            Duration::try_from_secs_f64(v)
                .map_err(|_| (2, format!("{what}: {v} is not a duration in seconds")))
        };
        let source = match &self.input {
            Some(path) => {
                let data = std::fs::read(path)
                    .map_err(|e| (1, format!("cannot read {}: {e}", path.display())))?;
                Source::Input(lines::split_input(&data))
            }
            None => Source::Generated { seed: self.seed },
        };
        let mut opts = Options::new(self.addr, self.mode);
        opts.clients =
            usize::try_from(self.clients).map_err(|_| (2, "--clients too large".into()))?;
        opts.lines = self.lines;
        opts.window = self.window;
        opts.repeat = self.repeat;
        opts.line_bytes =
            usize::try_from(self.line_bytes).map_err(|_| (2, "--line-bytes too large".into()))?;
        opts.source = source;
        opts.connect = if self.connect_burst {
            ConnectMode::Burst
        } else {
            ConnectMode::Sequential {
                attempt_timeout: Duration::from_millis(self.connect_timeout_ms),
            }
        };
        opts.timeout = secs("--timeout", self.timeout)?;
        opts.expect_log = self.expect_log;
        opts.verify_log = match self.verify_log {
            Some(path) => Some(VerifyLog {
                path,
                stop_pid: self.stop_pid,
                wait: secs("--log-wait", self.log_wait)?,
            }),
            None => None,
        };
        opts.progress = true;
        if let Some(n) = self.threads {
            opts.threads = usize::try_from(n).map_err(|_| (2, "--threads too large".into()))?;
        }
        opts.udp = self.udp;
        opts.udp_timeout = secs("--udp-timeout", self.udp_timeout)?;
        opts.udp_one_by_one = self.udp_one_by_one;
        Ok(opts)
    }
}

/// The whole `loadgen` program. Exit status: 0 when every check passed, 1
/// when a client failed or a check did not pass, 2 on a usage error.
pub fn main() -> ExitCode {
    // Not `Args::parse()`: SPEC wants a usage line on every usage error.
    let args: Args = crate::cli::parse_or_exit();
    let json = args.json;
    // Exits 2 with `error: MSG` and the usage line, as clap's own errors.
    let usage = |msg: &str| -> ExitCode { crate::cli::usage_exit::<Args>(msg) };
    let opts = match args.into_options() {
        Ok(o) => o,
        Err((2, msg)) => return usage(&msg),
        Err((code, msg)) => {
            super::error_line(&msg);
            return ExitCode::from(code);
        }
    };
    match super::run(&opts) {
        Ok(report) => {
            if json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.to_text());
            }
            if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(RunError::Usage(msg)) => usage(&msg),
        Err(RunError::Io(e)) => {
            super::error_line(&format!("{}: {e}", opts.addr));
            ExitCode::from(1)
        }
    }
}
