//! The server command line (shared by both servers) and the configuration it
//! yields, with SPEC's defaults. Units live in types: durations are
//! `Duration`, sizes are byte counts named `*_bytes` or documented as such.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::handlers::{Datagrams, FileRole};

use clap::Parser;

mod values;
pub use values::{
    MIN_REPORT_EVERY, number_in, parse_report_every, parse_secs, parse_udp_idle, port_number,
    refuse_negative,
};

/// Which protocol a server speaks (`--handler`): one of
/// [`crate::handlers::REGISTRY`].
pub use crate::handlers::HandlerKind;

/// Command line of `nonblocking-server` and `threaded-server`.
#[derive(Debug, Clone, Parser)]
#[command(
    version,
    about = "A TCP line server for the nonblocking protocols \
             (ledger, echo, presence, sink, queue, menu, atm).",
    after_help = "Status lines go to stdout (stderr with --handler sink), diagnostics to stderr.\n\
                  SIGINT, SIGTERM or SIGHUP stops the server, exit 0; ledger and sink first let\n\
                  connected clients finish (up to --drain-timeout), a second signal stops at once;\n\
                  menu prints `Bye bye~`."
)]
pub struct ServerArgs {
    /// TCP port to listen on; 0 lets the OS choose (the first status line shows the real port)
    #[arg(value_name = "PORT", allow_negative_numbers = true, value_parser = port_number)]
    pub port: u16,

    /// Protocol to serve
    #[arg(
        short = 'H',
        long,
        value_enum,
        default_value = "echo",
        value_name = "NAME"
    )]
    pub handler: HandlerKind,

    /// IP address to listen on; 0.0.0.0 or :: opens the server to other machines
    #[arg(short = 'b', long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST), value_name = "HOST")]
    pub bind: IpAddr,

    /// ledger: balances file written at shutdown (atomically: temp file, fsync, rename);
    /// checked at start: a regular file or absent, in a writable directory
    #[arg(long, default_value = "log.txt", value_name = "PATH")]
    pub log: PathBuf,

    /// ledger: append every applied transaction to PATH (batched fsync), replay it at start;
    /// a client's connection is closed after its EOF only once all it sent is durable.
    /// PATH must be a regular file holding a journal of this program, or absent (created)
    #[arg(long, value_name = "PATH")]
    pub journal: Option<PathBuf>,

    /// Print the client count every SECS seconds, measured from start (fractions allowed, at least 0.01; 0 = off)
    #[arg(long, default_value = "60", value_parser = parse_report_every, allow_negative_numbers = true, value_name = "SECS")]
    pub report_every: Duration,

    /// Longest line a client may send, terminator not counted; longer gets `error: line too long` and a close
    #[arg(long, default_value_t = 65536, value_parser = number_in(1, 1 << 32), allow_negative_numbers = true, value_name = "BYTES")]
    pub max_line: u64,

    /// Connections served at once; one more gets `error: too many clients` and is closed
    #[arg(long, default_value_t = 10000, value_parser = number_in(1, 1_000_000), allow_negative_numbers = true, value_name = "N")]
    pub max_clients: u64,

    /// Output queued for one client before it counts as too slow (echo/queue: reading pauses; presence: dropped); sink: bytes held for stdout
    #[arg(long, default_value_t = 4 * 1024 * 1024, value_parser = number_in(1, 1 << 40), allow_negative_numbers = true, value_name = "BYTES")]
    pub max_pending: u64,

    /// ledger and sink: after SIGINT/SIGTERM, how long connected clients may go on sending
    #[arg(long, default_value = "30", value_parser = parse_secs, allow_negative_numbers = true, value_name = "SECS")]
    pub drain_timeout: Duration,

    /// echo: reply in upper case (Unicode-aware where the line is UTF-8)
    #[arg(long)]
    pub upper: bool,

    /// queue: capacity of the shared queue
    #[arg(long, default_value_t = 10, value_parser = number_in(0, 100_000_000), allow_negative_numbers = true, value_name = "N")]
    pub queue_size: u64,

    /// atm: the accounts file, one `NAME PIN BALANCE` per line; rewritten atomically after each change
    #[arg(long, value_name = "PATH", required_if_eq("handler", "atm"))]
    pub accounts: Option<PathBuf>,
    /// echo: after N echoed messages a client's next one gets
    /// `STRINGS LIMIT REACHED, CLOSING CONNECTION` and a close (seed 002); 0 = no limit
    #[arg(long, default_value_t = 0, value_parser = number_in(0, u64::MAX), allow_negative_numbers = true, value_name = "N")]
    pub max_messages: u64,

    /// Also serve UDP on the same address and port (echo, menu, atm, queue): a datagram is a
    /// message, each reply one datagram; a peer is a client until --udp-idle
    #[arg(long)]
    pub udp: bool,

    /// With --udp: a peer silent this long is forgotten (its disconnect line is printed)
    #[arg(long, default_value = "60", value_parser = parse_udp_idle, allow_negative_numbers = true, value_name = "SECS")]
    pub udp_idle: Duration,
    /// With --udp: UDP peers tracked at once, apart from --max-clients; a new peer beyond it
    /// gets `error: too many clients` and is not tracked
    #[arg(long, default_value_t = 1024, value_parser = number_in(1, 1_000_000), allow_negative_numbers = true, value_name = "N")]
    pub max_udp_peers: u64,
    /// nonblocking-server only: N event loops, one thread each; 0 = one per CPU core
    #[arg(long, default_value_t = 1, value_parser = number_in(0, MAX_REACTORS), allow_negative_numbers = true, value_name = "N")]
    pub reactors: u64,

    /// The listen backlog: connections the kernel completes before the server accepts them
    /// (Linux caps it at net.core.somaxconn)
    #[arg(long, default_value_t = 4096, value_parser = number_in(1, i32::MAX as u64), allow_negative_numbers = true, value_name = "N")]
    pub backlog: u64,
    /// One human-readable line per step of the loop on stderr (passes, events, reads, lines,
    /// the handler's actions, writes, pauses, accepts, closes, timers); for people learning,
    /// not a stable format; throttled when busy (docs/TOUR.md); off costs nothing
    #[arg(long)]
    pub trace: bool,
}

/// The most event loops `--reactors` may ask for.
pub const MAX_REACTORS: u64 = 256;

/// The configuration both servers run with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub handler: HandlerKind,
    pub addr: SocketAddr,
    pub log: PathBuf,
    /// The ledger's journal, if any.
    pub journal: Option<PathBuf>,
    /// `None`: no periodic count (`--report-every 0`).
    pub report_every: Option<Duration>,
    pub max_line_bytes: usize,
    pub max_clients: usize,
    pub max_pending_bytes: usize,
    pub drain_timeout: Duration,
    pub upper: bool,
    pub queue_size: usize,
    /// The atm's accounts file (always set for `--handler atm`).
    pub accounts: Option<PathBuf>,
    /// echo's `--max-messages`; 0 = no limit.
    pub max_messages: u64,
    /// `--udp`: serve datagrams too.
    pub udp: bool,
    /// `--udp-idle`: how long a silent UDP peer stays a client.
    pub udp_idle: Duration,
    /// `--max-udp-peers`: a datagram burst from many ports never takes
    /// the places TCP clients need (`--max-clients` counts TCP only).
    pub max_udp_peers: usize,
    /// `--reactors`, resolved: the number of event loops (1 or more; `0`
    /// on the command line becomes the number of CPU cores).
    pub reactors: usize,
    /// `--reactors` was given with a value other than 1 (the threaded
    /// server refuses it).
    pub reactors_asked: bool,
    /// `--backlog`: a burst of thousands of connects waits here, not in
    /// SYN retransmits.
    pub backlog: i32,
    /// `--trace`: print each step of the loop (see [`crate::trace`]).
    pub trace: bool,
}

impl ServerConfig {
    /// SPEC's defaults, listening on 127.0.0.1 port 0 (what tests want).
    pub fn new(handler: HandlerKind) -> Self {
        ServerArgs::parse_from(["server", "--handler", handler.name(), "0"]).into()
    }
}

impl ServerConfig {
    /// The files the server replaces when it writes them (temporary file
    /// and rename), each with its option: checked at start by
    /// [`ServerConfig::check_files`]. The handler says which they are.
    pub fn output_files(&self) -> Vec<(&'static str, &Path)> {
        self.handler
            .files(self)
            .into_iter()
            .filter(|file| file.role == FileRole::Replaced)
            .map(|file| (file.option, file.path))
            .collect()
    }

    /// Usage checks across options (exit 2): no file named by two options
    /// (`./log.txt` and `log.txt` are one), and a `--max-line` the journal
    /// can hold.
    ///
    /// # Errors
    /// The message for the usage error.
    pub fn validate(&self) -> Result<(), String> {
        let owned = self.handler.files(self);
        if self.journal.is_some() && !owned.iter().any(|f| f.role == FileRole::Journal) {
            return Err(format!(
                "--journal does not apply to --handler {}",
                self.handler.name()
            ));
        }
        let named: Vec<_> = owned.iter().map(|f| (f.option, f.path)).collect();
        for (i, (flag_a, a)) in named.iter().enumerate() {
            for (flag_b, b) in &named[i + 1..] {
                if crate::fsutil::same_file(a, b) {
                    return Err(format!(
                        "{flag_a} {} and {flag_b} {} are the same file",
                        a.display(),
                        b.display()
                    ));
                }
            }
        }
        if self.udp && self.handler.traits().datagrams == Datagrams::No {
            return Err(format!(
                "--udp works with --handler {}, not {}",
                udp_handlers(),
                self.handler.name()
            ));
        }
        if self.journal.is_some() && self.max_line_bytes > crate::journal::MAX_RECORD_BYTES {
            return Err(format!(
                "--journal holds lines of at most {} bytes: --max-line {} is too long for it",
                crate::journal::MAX_RECORD_BYTES,
                self.max_line_bytes
            ));
        }
        Ok(())
    }

    /// The start-up check of [`ServerConfig::output_files`] (exit 1 before
    /// listening): each a regular file or absent, in a writable directory.
    ///
    /// # Errors
    /// One line naming the option, the path and the reason.
    pub fn check_files(&self) -> Result<(), String> {
        for (flag, path) in self.output_files() {
            crate::fsutil::check_output_path(path)
                .map_err(|why| format!("cannot write {flag} {}: {why}", path.display()))?;
        }
        Ok(())
    }
}

/// The handlers `--udp` serves, for the usage error: `a, b or c`.
fn udp_handlers() -> String {
    let names: Vec<&str> = crate::handlers::REGISTRY
        .iter()
        .filter(|kind| kind.traits().datagrams != Datagrams::No)
        .map(|kind| kind.name())
        .collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => names.join(""),
    }
}

impl From<ServerArgs> for ServerConfig {
    fn from(args: ServerArgs) -> Self {
        let clamp = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        ServerConfig {
            handler: args.handler,
            addr: SocketAddr::new(args.bind, args.port),
            log: args.log,
            journal: args.journal,
            report_every: (!args.report_every.is_zero()).then_some(args.report_every),
            max_line_bytes: clamp(args.max_line),
            max_clients: clamp(args.max_clients),
            max_pending_bytes: clamp(args.max_pending),
            drain_timeout: args.drain_timeout,
            upper: args.upper,
            queue_size: clamp(args.queue_size),
            accounts: args.accounts,
            max_messages: args.max_messages,
            udp: args.udp,
            udp_idle: args.udp_idle,
            max_udp_peers: clamp(args.max_udp_peers),
            reactors: match args.reactors {
                0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
                n => clamp(n),
            },
            reactors_asked: args.reactors != 1,
            backlog: i32::try_from(args.backlog).unwrap_or(i32::MAX),
            trace: args.trace,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn kind(name: &str) -> HandlerKind {
        HandlerKind::named(name).expect("a registered handler")
    }

    #[test]
    fn defaults_match_spec() {
        let c = ServerConfig::new(kind("echo"));
        assert_eq!(c.addr, "127.0.0.1:0".parse().unwrap());
        assert_eq!(c.log, PathBuf::from("log.txt"));
        assert_eq!(c.report_every, Some(Duration::from_secs(60)));
        assert_eq!(c.max_line_bytes, 65536);
        assert_eq!(c.max_clients, 10000);
        assert_eq!(c.max_pending_bytes, 4194304);
        assert_eq!(c.drain_timeout, Duration::from_secs(30));
        assert!(!c.upper);
        assert_eq!(c.queue_size, 10);
        assert_eq!(c.max_messages, 0);
        assert_eq!(c.reactors, 1);
        assert_eq!(c.backlog, 4096);
    }

    #[test]
    fn reactors_zero_means_one_per_core() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(config(&["s", "--reactors", "0", "1"]).reactors, cores);
        assert_eq!(config(&["s", "--reactors", "3", "1"]).reactors, 3);
        assert!(config(&["s", "--reactors", "3", "1"]).reactors_asked);
        assert!(!config(&["s", "--reactors", "1", "1"]).reactors_asked);
        assert!(ServerArgs::try_parse_from(["s", "--reactors", "-1", "1"]).is_err());
        assert!(ServerArgs::try_parse_from(["s", "--reactors", "257", "1"]).is_err());
    }

    #[test]
    fn max_messages_and_menu_parse() {
        let args =
            ServerArgs::try_parse_from(["s", "--max-messages", "10", "-H", "menu", "1"]).unwrap();
        let c = ServerConfig::from(args);
        assert_eq!(c.max_messages, 10);
        assert_eq!(c.handler, kind("menu"));
        assert_eq!(kind("menu").name(), "menu");
        let err = ServerArgs::try_parse_from(["s", "--max-messages", "-1", "1"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn every_option_parses() {
        let args = ServerArgs::try_parse_from([
            "s",
            "-H",
            "queue",
            "-b",
            "::1",
            "--log",
            "/tmp/x",
            "--report-every",
            "0.5",
            "--max-line",
            "10",
            "--max-clients",
            "5",
            "--max-pending",
            "100",
            "--drain-timeout",
            "1.5",
            "--upper",
            "--queue-size",
            "3",
            "7722",
        ])
        .unwrap();
        let c = ServerConfig::from(args);
        assert_eq!(c.handler, kind("queue"));
        assert_eq!(c.addr, "[::1]:7722".parse().unwrap());
        assert_eq!(c.report_every, Some(Duration::from_millis(500)));
        assert_eq!(c.max_line_bytes, 10);
        assert_eq!(c.max_clients, 5);
        assert_eq!(c.max_pending_bytes, 100);
        assert_eq!(c.drain_timeout, Duration::from_millis(1500));
        assert!(c.upper);
        assert_eq!(c.queue_size, 3);
    }

    #[test]
    fn report_every_zero_turns_it_off() {
        let args = ServerArgs::try_parse_from(["s", "--report-every", "0", "1"]).unwrap();
        assert_eq!(ServerConfig::from(args).report_every, None);
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for bad in [
            vec!["s"],
            vec!["s", "70000"],
            vec!["s", "-H", "nope", "1"],
            vec!["s", "--report-every", "-1", "1"],
            vec!["s", "--report-every", "nan", "1"],
            vec!["s", "--max-line", "0", "1"],
            vec!["s", "-b", "localhost:1", "1"],
        ] {
            let err = ServerArgs::try_parse_from(&bad).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad:?}");
        }
    }

    fn parse_err(args: &[&str]) -> String {
        ServerArgs::try_parse_from(args).unwrap_err().to_string()
    }

    #[test]
    fn negative_numbers_get_a_message_that_says_so() {
        for args in [
            &["s", "--report-every", "-1", "1"][..],
            &["s", "--report-every=-0.5", "1"],
            &["s", "--drain-timeout", "-2", "1"],
            &["s", "--max-line", "-5", "1"],
            &["s", "--max-clients", "-1", "1"],
            &["s", "--max-pending", "-1", "1"],
            &["s", "--queue-size", "-1", "1"],
            &["s", "-1"],
        ] {
            let err = parse_err(args);
            assert!(
                err.contains("negative numbers are not allowed"),
                "{args:?}: {err}"
            );
        }
    }

    #[test]
    fn report_every_has_a_lower_bound_except_zero() {
        let err = parse_err(&["s", "--report-every", "0.001", "1"]);
        assert!(err.contains("at least 0.01 seconds"), "{err}");
        assert!(ServerArgs::try_parse_from(["s", "--report-every", "0.009", "1"]).is_err());
        let args = ServerArgs::try_parse_from(["s", "--report-every", "0.01", "1"]).unwrap();
        assert_eq!(args.report_every, Duration::from_millis(10));
    }

    fn config(args: &[&str]) -> ServerConfig {
        ServerConfig::from(ServerArgs::try_parse_from(args).unwrap())
    }

    #[test]
    fn the_log_and_the_journal_must_be_two_files() {
        let err = config(&["s", "-H", "ledger", "--journal", "./log.txt", "1"])
            .validate()
            .unwrap_err();
        assert!(
            err.contains("--log log.txt and --journal ./log.txt"),
            "{err}"
        );
        let c = config(&["s", "-H", "ledger", "--journal", "j", "--log", "j", "1"]);
        assert!(c.validate().is_err());
        let c = config(&["s", "-H", "ledger", "--journal", "journal", "1"]);
        assert_eq!(c.validate(), Ok(()));
        // Only the ledger writes --log.
        assert!(config(&["s", "-H", "echo", "1"]).output_files().is_empty());
    }

    #[test]
    fn a_journal_needs_a_max_line_it_can_hold() {
        let with_max_line = |max: &str| {
            config(&[
                "s",
                "-H",
                "ledger",
                "--journal",
                "j",
                "--max-line",
                max,
                "1",
            ])
        };
        assert!(
            with_max_line("1048577")
                .validate()
                .unwrap_err()
                .contains("--max-line")
        );
        assert_eq!(with_max_line("1048576").validate(), Ok(()));
    }

    #[test]
    fn atm_needs_accounts() {
        let err = ServerArgs::try_parse_from(["s", "-H", "atm", "1"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let args =
            ServerArgs::try_parse_from(["s", "-H", "atm", "--accounts", "a.txt", "1"]).unwrap();
        let c = ServerConfig::from(args);
        assert_eq!(c.handler, kind("atm"));
        assert_eq!(c.accounts, Some(PathBuf::from("a.txt")));
    }

    #[test]
    fn udp_options_parse_and_only_some_handlers_serve_datagrams() {
        let c = config(&["s", "--udp", "--udp-idle", "1.5", "1"]);
        assert!(c.udp);
        assert_eq!(c.udp_idle, Duration::from_millis(1500));
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(config(&["s", "1"]).udp_idle, Duration::from_secs(60));
        assert_eq!(config(&["s", "1"]).max_udp_peers, 1024);
        assert_eq!(config(&["s", "--max-udp-peers", "7", "1"]).max_udp_peers, 7);
        assert!(ServerArgs::try_parse_from(["s", "--max-udp-peers", "0", "1"]).is_err());
        assert!(ServerArgs::try_parse_from(["s", "--udp-idle", "0", "1"]).is_err());
        for ok in ["echo", "menu", "queue"] {
            assert_eq!(config(&["s", "-H", ok, "--udp", "1"]).validate(), Ok(()));
        }
        for bad in ["presence", "ledger", "sink"] {
            let err = config(&["s", "-H", bad, "--udp", "1"])
                .validate()
                .unwrap_err();
            assert!(err.contains("--udp") && err.contains(bad), "{err}");
        }
    }

    #[test]
    fn command_line_definition_is_consistent() {
        ServerArgs::command().debug_assert();
    }
}
