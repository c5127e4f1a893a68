//! Descriptors against `RLIMIT_NOFILE` (SPEC "atm": descriptors never run
//! out under the server's own writes, all servers, all handlers).
//!
//! Every client holds one descriptor (a UDP peer none; a thread none). The
//! server needs more of its own: what is open at start (stdio, the
//! listener, the UDP socket, a journal, anything inherited), a poll, a
//! waker and a stdout per loop or polling thread, the signal socket pair,
//! the files it writes (a temporary file, its directory, `/dev/urandom`),
//! and one accepted connection to refuse politely at `--max-clients`. If
//! the limit cannot hold `--max-clients` on top of that reserve,
//! `--max-clients` is lowered at start with a diagnostic: a client beyond
//! it gets `error: too many clients`, and a deposit never meets `Too many
//! open files`. The soft limit is first raised to the hard one, as a user
//! of a server expects (most systems ship a soft 1,024 under a much higher
//! hard limit).
//!
//! The arithmetic is [`fit_max_clients`], pure; [`fit_descriptors`] is the
//! one call at start-up that reads the OS.
//!
//! The output queued for all clients together (`--max-output-total`) is
//! [`output_total`]'s.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

use crate::config::ServerConfig;
use crate::status;

pub mod output_total;

/// Descriptors per event loop or polling thread: its poll (epoll), its
/// waker (eventfd), its own handle on stdout, and (`--reactors N`) one
/// connection on its way from the acceptor that the loop will refuse.
pub const PER_LOOP: usize = 4;
/// Descriptors the server opens after start-up whatever the model: the
/// signal socket pair and one copy of its write end per signal (5), a file
/// write (temporary file, directory, `/dev/urandom`: 3), the journal's
/// directory sync (1), one connection accepted only to be refused (1), and
/// 2 to spare.
pub const FIXED_RESERVE: usize = 12;
/// What a hard limit of "unlimited" is raised to: Linux's default
/// `fs.nr_open` (a soft limit may not be infinite for descriptors).
const UNLIMITED_AS: u64 = 1 << 20;

/// The descriptors the server keeps for itself: `open` already open at
/// start, and `loops` event loops or polling threads to come.
pub fn reserve(open: usize, loops: usize) -> usize {
    open.saturating_add(loops.saturating_mul(PER_LOOP))
        .saturating_add(FIXED_RESERVE)
}

/// The `--max-clients` that fits: `asked`, or what `limit` (the soft
/// `RLIMIT_NOFILE`; `None`: unlimited) leaves beside `reserve`, at least 1
/// (a server that serves no one is no use; the diagnostic says the limit is
/// too low).
pub fn fit_max_clients(asked: usize, limit: Option<u64>, reserve: usize) -> usize {
    let Some(limit) = limit else {
        return asked;
    };
    let room = usize::try_from(limit)
        .unwrap_or(usize::MAX)
        .saturating_sub(reserve);
    asked.min(room).max(1)
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, if it can; the soft
/// limit now (`None`: unlimited).
pub fn raise_nofile() -> Option<u64> {
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    let target = maximum.unwrap_or(UNLIMITED_AS);
    if current.is_some_and(|soft| soft < target) {
        let raised = Rlimit {
            current: Some(target),
            maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            return Some(target);
        }
    }
    current
}

/// Descriptors open now (Linux: `/proc/self/fd`, less the one reading it);
/// elsewhere a guess that covers stdio, a listener, a UDP socket and a
/// journal.
pub fn open_descriptors() -> usize {
    const GUESS: usize = 8;
    std::fs::read_dir("/proc/self/fd").map_or(GUESS, |dir| dir.count().saturating_sub(1))
}

/// The event loops or polling threads a server runs: `nonblocking-server`
/// one per `--reactors` plus the acceptor when there are several;
/// `threaded-server` its supervisor and its UDP thread (a client's threads
/// hold no descriptor of their own).
pub fn loops(config: &ServerConfig, threaded: bool) -> usize {
    match (threaded, config.reactors) {
        (true, _) => 2,
        (false, 1) => 1,
        (false, n) => n + 1,
    }
}

/// The one call at start-up (after the bind, so the sockets are counted):
/// raises the soft limit, and lowers `--max-clients` if it does not fit,
/// with a diagnostic.
pub fn fit_descriptors(mut config: ServerConfig, threaded: bool) -> ServerConfig {
    config.max_clients = fit_to_limit(config.max_clients, loops(&config, threaded));
    config
}

/// [`fit_descriptors`] for any server: `max_clients` as it fits beside
/// what is open now and `loops` event loops to come, with the diagnostic
/// when it is lowered (`queue-grpc-server`: its one runtime thread).
pub fn fit_to_limit(max_clients: usize, loops: usize) -> usize {
    let limit = raise_nofile();
    let reserve = reserve(open_descriptors(), loops);
    let fitted = fit_max_clients(max_clients, limit, reserve);
    if fitted < max_clients {
        status::diag(format_args!(
            "--max-clients lowered from {max_clients} to {fitted}: the descriptor limit (ulimit -n) is {}, and the server keeps {reserve} for itself",
            limit.unwrap_or(0),
        ));
    }
    fitted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_clients_is_kept_when_the_limit_holds_it_and_the_reserve() {
        assert_eq!(fit_max_clients(10_000, Some(1 << 20), 30), 10_000);
        assert_eq!(fit_max_clients(10_000, Some(10_030), 30), 10_000);
        assert_eq!(fit_max_clients(10_000, None, 30), 10_000);
    }

    #[test]
    fn max_clients_is_lowered_to_what_the_limit_leaves() {
        // The cases: ulimit -n 64, and 1,024 with --max-clients 10000.
        assert_eq!(fit_max_clients(10_000, Some(64), reserve(5, 1)), 64 - 21);
        assert_eq!(fit_max_clients(10_000, Some(1024), 30), 994);
        assert_eq!(fit_max_clients(10_000, Some(10_029), 30), 9_999);
        // Never below 1, however low the limit.
        assert_eq!(fit_max_clients(10_000, Some(8), 30), 1);
    }

    #[test]
    fn the_reserve_counts_what_is_open_and_each_loop() {
        assert_eq!(reserve(4, 1), 4 + 4 + FIXED_RESERVE);
        assert_eq!(reserve(4, 3), 4 + 12 + FIXED_RESERVE);
        assert_eq!(reserve(usize::MAX, 3), usize::MAX);
    }

    #[test]
    fn loops_per_model() {
        use clap::Parser;
        let args = crate::config::ServerArgs::try_parse_from(["s", "1"]).unwrap();
        let mut config = ServerConfig::from(args);
        assert_eq!(loops(&config, false), 1);
        assert_eq!(loops(&config, true), 2);
        config.reactors = 2;
        assert_eq!(loops(&config, false), 3, "two loops and the acceptor");
        assert_eq!(loops(&config, true), 2, "--reactors is refused there");
    }

    #[test]
    fn this_process_has_stdio_open_and_a_limit() {
        assert!(open_descriptors() >= 3);
        let limit = getrlimit(Resource::Nofile);
        assert!(limit.current.is_none_or(|soft| soft >= 3));
    }
}
