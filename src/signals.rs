//! The shutdown signals (SIGINT, SIGTERM, SIGHUP), caught through
//! `signal-hook-mio`: signal-hook's self-pipe, registered with a poll like
//! a socket.
//!
//! Each look ([`ShutdownSignals::take`]) reports every kind of signal that
//! arrived since the last one, once: SIGINT then SIGTERM back to back are a
//! first and a second, while two SIGINTs before the loop looks may count as
//! one (SPEC allows it; the kernel merges identical pending signals anyway).
//!
//! [`crate::app`] creates them before anything else, so a signal during
//! start-up (file checks, journal replay) never kills the process by the
//! signal's default action: start-up looks at them and stops cleanly.

use std::io;

use mio::{Interest, Registry, Token};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

/// The signals that shut the servers down (SPEC: SIGHUP is a shutdown like
/// SIGTERM, so a closed terminal never loses the ledger's log).
pub const SHUTDOWN_SIGNALS: [i32; 3] = [SIGINT, SIGTERM, SIGHUP];

/// See the module doc.
pub struct ShutdownSignals {
    /// The self-pipe and its handlers (removed on drop).
    signals: Signals,
}

impl ShutdownSignals {
    /// Catches [`SHUTDOWN_SIGNALS`] from now on.
    ///
    /// # Errors
    /// Creating the self-pipe or installing a handler failed.
    pub fn new() -> io::Result<Self> {
        Ok(ShutdownSignals {
            signals: Signals::new(SHUTDOWN_SIGNALS)?,
        })
    }

    /// Registers the self-pipe with a poll, readable under `token`.
    ///
    /// # Errors
    /// As `Registry::register`.
    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(&mut self.signals, token, Interest::READABLE)
    }

    /// How many kinds of signal arrived since the last call (drains the
    /// self-pipe to `WouldBlock`, as edge-triggered readiness needs).
    pub fn take(&mut self) -> usize {
        self.signals.pending().count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_kinds_in_one_look_count_twice_and_a_look_drains() {
        let mut signals = ShutdownSignals::new().unwrap();
        assert_eq!(signals.take(), 0);
        // SIGHUP only: the test harness itself may rely on SIGINT/SIGTERM.
        signal_hook::low_level::raise(SIGHUP).unwrap();
        signal_hook::low_level::raise(SIGHUP).unwrap();
        assert_eq!(
            signals.take(),
            1,
            "identical signals in one look count once"
        );
        assert_eq!(signals.take(), 0, "the look drained the pipe");
    }
}
