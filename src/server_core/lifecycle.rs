//! The server's life, once for both servers and without I/O: running,
//! draining, closing, finished. In the style of quinn-proto's `Connection`:
//! events and time go in (`handle_signal`, `handle_timeout`), the next
//! deadline and commands come out (`poll_timeout`, `poll_command`). The
//! server carries the commands out with its own sockets and threads, so
//! the mio reactor, the thread-per-connection server (and later N reactors
//! or a UDP socket on the same poll) share one set of rules, and unit tests
//! drive them with a fake clock.
//!
//! The rules (SPEC "Shutdown"):
//! - the first SIGINT, SIGTERM or SIGHUP stops accepting (what waits in the
//!   accept queue is accepted first), tells the handler, then either drains
//!   (ledger, sink: clients go on until they leave or `--drain-timeout`) or
//!   closes every client at once (echo, presence, queue);
//! - every signal counts, however many arrive in one wakeup: a second one
//!   ends the drain (a partial line is cut), a third stops waiting for slow
//!   readers;
//! - closing flushes each client's output and closes it; what is still open
//!   after [`SHUTDOWN_FLUSH`] is killed.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::ServerConfig;
use crate::handlers::ShutdownPolicy;
use crate::status;
use crate::timers::{AcceptBackoff, Ticker};

/// Echo, presence, queue (and the end of a drain): how long shutdown may
/// spend flushing before what is left is killed.
pub const SHUTDOWN_FLUSH: Duration = Duration::from_secs(2);
/// After every client was killed, how long a server may wait for them to be
/// gone (a thread that does not finish must not keep the process alive).
pub const REAP_GRACE: Duration = Duration::from_secs(1);

/// Where the server is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Running,
    /// Ledger and sink after the first signal: serving connected clients
    /// until they leave or `until`.
    Draining {
        until: Instant,
    },
    /// Every client was told to close (flush, then close); at `until` the
    /// rest are killed.
    Closing {
        until: Instant,
    },
    /// Every client was killed; the server exits once they are gone, or at
    /// `until` whatever remains.
    Finished {
        until: Instant,
    },
}

/// What the server must do, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Accept what waits in the listen queue, then close the listener.
    StopAccepting,
    /// Call the handler's `on_shutdown` and carry out its actions.
    NotifyHandler,
    /// Print SPEC's drain line with the current client count (none if no
    /// client is left, the drain then ends at the next `handle_timeout`).
    AnnounceDrain { timeout: Duration },
    /// Close every open client: handle what the kernel already holds,
    /// flush, close. `cut`: an unfinished line is dropped and counted (the
    /// end of a drain) instead of being handled as a last message.
    CloseAll { cut: bool },
    /// Drop every connection still open (queued output is lost).
    KillAll,
    /// Print the periodic client count.
    ReportCount,
    /// Accepting was on hold after descriptor exhaustion: accept now,
    /// without waiting for an event.
    Accept,
    /// One diagnostic line (text from [`status`]).
    Diagnostic(&'static str),
}

/// See the module doc.
#[derive(Debug)]
pub struct Lifecycle {
    phase: Phase,
    policy: ShutdownPolicy,
    drain_timeout: Duration,
    /// The periodic count (`--report-every`), if on.
    report: Option<Ticker>,
    /// Accepting on hold after descriptor exhaustion.
    accept: AcceptBackoff,
    commands: VecDeque<Command>,
}

impl Lifecycle {
    pub fn new(start: Instant, config: &ServerConfig, policy: ShutdownPolicy) -> Self {
        Lifecycle {
            phase: Phase::Running,
            policy,
            drain_timeout: config.drain_timeout,
            report: Ticker::new(start, config.report_every),
            accept: AcceptBackoff::default(),
            commands: VecDeque::new(),
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether new connections are taken.
    pub fn accepting(&self) -> bool {
        self.phase == Phase::Running
    }

    /// The accept loop's error handling (see [`AcceptBackoff`]).
    pub fn accept_backoff(&mut self) -> &mut AcceptBackoff {
        &mut self.accept
    }

    /// One SIGINT, SIGTERM or SIGHUP at `now`. Call it once per signal,
    /// even for several delivered in one wakeup.
    pub fn handle_signal(&mut self, now: Instant) {
        match self.phase {
            Phase::Running => {
                self.accept.cancel();
                self.commands.push_back(Command::StopAccepting);
                self.commands.push_back(Command::NotifyHandler);
                match self.policy {
                    ShutdownPolicy::Drain => {
                        self.phase = Phase::Draining {
                            until: now + self.drain_timeout,
                        };
                        self.commands.push_back(Command::AnnounceDrain {
                            timeout: self.drain_timeout,
                        });
                    }
                    ShutdownPolicy::CloseNow => self.close_all(now, false),
                }
            }
            Phase::Draining { .. } => {
                self.commands
                    .push_back(Command::Diagnostic(status::SECOND_SIGNAL));
                self.close_all(now, true);
            }
            // Already closing: stop waiting for slow readers.
            Phase::Closing { .. } => self.phase = Phase::Closing { until: now },
            Phase::Finished { .. } => {}
        }
    }

    /// Runs what is due at `now`. `clients`: connected clients (a drain
    /// with none left is over).
    pub fn handle_timeout(&mut self, now: Instant, clients: usize) {
        if self.report.as_mut().is_some_and(|t| t.fire(now)) {
            self.commands.push_back(Command::ReportCount);
        }
        if self.accept.due(now) {
            self.commands.push_back(Command::Accept);
        }
        match self.phase {
            Phase::Draining { until } if until <= now => {
                self.commands
                    .push_back(Command::Diagnostic(status::DRAIN_TIMEOUT));
                self.close_all(now, true);
            }
            Phase::Draining { .. } if clients == 0 => {
                // Nobody left to wait for; nothing to cut.
                self.phase = Phase::Closing { until: now };
            }
            Phase::Closing { until } if until <= now => {
                self.commands.push_back(Command::KillAll);
                self.phase = Phase::Finished {
                    until: now + REAP_GRACE,
                };
            }
            _ => {}
        }
    }

    fn close_all(&mut self, now: Instant, cut: bool) {
        self.phase = Phase::Closing {
            until: now + SHUTDOWN_FLUSH,
        };
        self.commands.push_back(Command::CloseAll { cut });
    }

    /// The earliest deadline: the next report, the accept retry, the end of
    /// the drain or of the flush.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let phase_end = match self.phase {
            Phase::Running => None,
            Phase::Draining { until } | Phase::Closing { until } | Phase::Finished { until } => {
                Some(until)
            }
        };
        [
            self.report.as_ref().map(Ticker::deadline),
            self.accept.deadline(),
            phase_end,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The next thing to do, in order.
    pub fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    /// Whether the server may exit: shutdown is past the drain and `open`
    /// connections (flushing and lingering ones included) are gone, or the
    /// grace after killing them is over.
    pub fn is_done(&self, open: usize, now: Instant) -> bool {
        match self.phase {
            Phase::Running | Phase::Draining { .. } => false,
            Phase::Closing { .. } => open == 0,
            Phase::Finished { until } => open == 0 || now >= until,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HandlerKind;

    const S: Duration = Duration::from_secs(1);

    /// The commands a first signal gives under the drain policy (with the
    /// 30 s drain of [`lifecycle`]).
    const DRAIN_BEGINS: [Command; 3] = [
        Command::StopAccepting,
        Command::NotifyHandler,
        Command::AnnounceDrain {
            timeout: Duration::from_secs(30),
        },
    ];

    fn lifecycle(policy: ShutdownPolicy) -> (Lifecycle, Instant) {
        let t0 = Instant::now();
        let mut config = ServerConfig::new(HandlerKind::named("echo").unwrap());
        config.report_every = Some(10 * S);
        config.drain_timeout = 30 * S;
        (Lifecycle::new(t0, &config, policy), t0)
    }

    fn drain(l: &mut Lifecycle) -> Vec<Command> {
        std::iter::from_fn(|| l.poll_command()).collect()
    }

    #[test]
    fn reports_fall_every_period_from_start() {
        let (mut l, t0) = lifecycle(ShutdownPolicy::CloseNow);
        assert_eq!(l.poll_timeout(), Some(t0 + 10 * S));
        l.handle_timeout(t0 + 9 * S, 3);
        assert_eq!(drain(&mut l), vec![]);
        l.handle_timeout(t0 + 10 * S, 3);
        assert_eq!(drain(&mut l), vec![Command::ReportCount]);
        assert_eq!(l.poll_timeout(), Some(t0 + 20 * S));
    }

    #[test]
    fn close_now_flushes_then_kills_what_is_left() {
        let (mut l, t0) = lifecycle(ShutdownPolicy::CloseNow);
        l.handle_signal(t0 + S);
        assert_eq!(
            drain(&mut l),
            vec![
                Command::StopAccepting,
                Command::NotifyHandler,
                Command::CloseAll { cut: false }
            ]
        );
        assert!(!l.accepting());
        assert_eq!(l.poll_timeout(), Some(t0 + S + SHUTDOWN_FLUSH));
        assert!(!l.is_done(2, t0 + S));
        assert!(l.is_done(0, t0 + S), "everyone closed cleanly");
        l.handle_timeout(t0 + S + SHUTDOWN_FLUSH, 2);
        assert_eq!(drain(&mut l), vec![Command::KillAll]);
        assert!(!l.is_done(1, t0 + S + SHUTDOWN_FLUSH));
        assert!(l.is_done(1, t0 + S + SHUTDOWN_FLUSH + REAP_GRACE));
    }

    #[test]
    fn drain_ends_at_the_timeout_and_cuts() {
        let (mut l, t0) = lifecycle(ShutdownPolicy::Drain);
        l.handle_signal(t0);
        assert_eq!(drain(&mut l), DRAIN_BEGINS);
        assert_eq!(l.poll_timeout(), Some(t0 + 10 * S), "the report first");
        l.handle_timeout(t0 + 29 * S, 1);
        // Missed periods fire once (see `Ticker`).
        assert_eq!(drain(&mut l), vec![Command::ReportCount]);
        assert!(!l.is_done(1, t0 + 29 * S));
        l.handle_timeout(t0 + 30 * S, 1);
        assert_eq!(
            drain(&mut l),
            vec![
                Command::ReportCount,
                Command::Diagnostic(status::DRAIN_TIMEOUT),
                Command::CloseAll { cut: true }
            ]
        );
    }

    #[test]
    fn drain_ends_when_the_last_client_leaves() {
        let (mut l, t0) = lifecycle(ShutdownPolicy::Drain);
        l.handle_signal(t0);
        drain(&mut l);
        l.handle_timeout(t0 + S, 0);
        assert_eq!(drain(&mut l), vec![], "nothing to cut or close");
        assert!(l.is_done(0, t0 + S));
    }

    #[test]
    fn every_signal_counts_two_in_one_wakeup_end_the_drain() {
        let (mut l, t0) = lifecycle(ShutdownPolicy::Drain);
        l.handle_signal(t0);
        l.handle_signal(t0);
        assert_eq!(
            drain(&mut l),
            [
                &DRAIN_BEGINS[..],
                &[
                    Command::Diagnostic(status::SECOND_SIGNAL),
                    Command::CloseAll { cut: true }
                ]
            ]
            .concat()
        );
        // A third stops waiting for slow readers at once.
        l.handle_signal(t0 + S);
        l.handle_timeout(t0 + S, 1);
        assert_eq!(drain(&mut l), vec![Command::KillAll]);
        l.handle_signal(t0 + S);
        assert_eq!(
            drain(&mut l),
            vec![],
            "signals after the kill change nothing"
        );
    }

    #[test]
    fn accept_retry_after_exhaustion_is_a_command() {
        let (mut l, t0) = lifecycle(ShutdownPolicy::CloseNow);
        let emfile = std::io::Error::from_raw_os_error(libc::EMFILE);
        l.accept_backoff().error(&emfile, t0);
        assert_eq!(l.poll_timeout(), Some(t0 + AcceptBackoff::RETRY));
        l.handle_timeout(t0 + AcceptBackoff::RETRY, 0);
        assert_eq!(drain(&mut l), vec![Command::Accept]);
        // Shutdown cancels a pending retry.
        l.accept_backoff().error(&emfile, t0);
        l.handle_signal(t0);
        assert_eq!(l.accept_backoff().deadline(), None);
    }
}
