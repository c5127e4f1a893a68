//! Time-driven pieces both servers share. They take `now` rather than read
//! the clock, so tests can drive them with a fake one.

use std::io;
use std::time::{Duration, Instant};

use crate::status;

/// A periodic deadline at `start + k * period` (SPEC: the client count
/// "every SECS seconds measured from start"). Each deadline comes from the
/// previous one, never from when it was handled, so lateness does not add
/// up; after missed periods it fires once and jumps to the next future one.
#[derive(Debug, Clone)]
pub struct Ticker {
    start: Instant,
    period: Duration,
    next: Instant,
}

impl Ticker {
    /// `None` for a zero period (turned off).
    pub fn new(start: Instant, period: Option<Duration>) -> Option<Ticker> {
        let period = period.filter(|p| !p.is_zero())?;
        Some(Ticker {
            start,
            period,
            next: start + period,
        })
    }

    /// The next deadline.
    pub fn deadline(&self) -> Instant {
        self.next
    }

    /// Whether a deadline has passed at `now`; if so, moves to the first
    /// deadline after `now`.
    pub fn fire(&mut self, now: Instant) -> bool {
        if now < self.next {
            return false;
        }
        let elapsed = now.duration_since(self.start).as_secs_f64();
        let k = (elapsed / self.period.as_secs_f64()).floor() + 1.0;
        self.next = (self.next + self.period).max(self.start + self.period.mul_f64(k));
        true
    }
}

/// How `accept` copes with running out of descriptors (STYLE §3.7): a
/// per-connection error moves on to the next connection; EMFILE, ENFILE and
/// the like stop accepting for [`AcceptBackoff::RETRY`], because looping
/// would spin and waiting for an edge would strand the backlog.
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    /// When to accept again without waiting for an event.
    retry_at: Option<Instant>,
    /// Exhaustion was reported and not yet recovered from (one line each way).
    exhausted: bool,
}

/// What an accept loop does with one `accept` result.
#[derive(Debug)]
pub enum Accepted<T> {
    /// A connection: add it, then accept the next.
    Client(T),
    /// That one failed on its own: accept the next.
    Next,
    /// Leave the loop (queue empty, or retrying on a timer).
    Stop,
}

/// What the accept loop does after an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterError {
    /// Accept the next connection.
    Next,
    /// Leave the loop (queue empty, or retrying on a timer).
    Stop,
}

impl AcceptBackoff {
    pub const RETRY: Duration = Duration::from_millis(100);

    /// A connection was accepted.
    pub fn accepted(&mut self) {
        if self.exhausted {
            self.exhausted = false;
            status::diag(format_args!("accept: descriptors available again"));
        }
    }

    /// Classifies an `accept` error at `now`.
    pub fn error(&mut self, e: &io::Error, now: Instant) -> AfterError {
        match e.kind() {
            io::ErrorKind::WouldBlock => AfterError::Stop,
            io::ErrorKind::Interrupted => AfterError::Next,
            _ if is_connection_error(e) => AfterError::Next,
            _ => {
                if !self.exhausted {
                    self.exhausted = true;
                    status::diag(format_args!(
                        "accept: {e} (retrying every {} ms)",
                        Self::RETRY.as_millis()
                    ));
                }
                self.retry_at = Some(now + Self::RETRY);
                AfterError::Stop
            }
        }
    }

    /// One turn of an accept loop, run until `WouldBlock`: what to do with
    /// `result`, what `accept` returned at `now`.
    pub fn on_accept<T>(&mut self, result: io::Result<T>, now: Instant) -> Accepted<T> {
        match result {
            Ok(conn) => {
                self.accepted();
                Accepted::Client(conn)
            }
            Err(e) => match self.error(&e, now) {
                AfterError::Next => Accepted::Next,
                AfterError::Stop => Accepted::Stop,
            },
        }
    }

    /// When to accept again, if accepting is on hold.
    pub fn deadline(&self) -> Option<Instant> {
        self.retry_at
    }

    /// Whether the hold is over at `now` (then the caller accepts).
    pub fn due(&mut self, now: Instant) -> bool {
        if self.retry_at.is_some_and(|t| t <= now) {
            self.retry_at = None;
            return true;
        }
        false
    }

    /// Accepting stopped for good (shutdown).
    pub fn cancel(&mut self) {
        self.retry_at = None;
    }
}

/// Errors that concern one incoming connection only: accept the next one
/// (after hyper's `is_connection_error`).
pub fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) || e.raw_os_error() == Some(libc::EPROTO)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn ticks_fall_on_start_plus_k_periods() {
        let t0 = Instant::now();
        let mut t = Ticker::new(t0, Some(S)).unwrap();
        assert!(!t.fire(t0 + S / 2));
        // Handled 300 ms late: the next deadline is still start + 2 s.
        assert!(t.fire(t0 + S + S * 3 / 10));
        assert_eq!(t.deadline(), t0 + 2 * S);
        assert!(!t.fire(t0 + S * 19 / 10));
        assert!(t.fire(t0 + 2 * S));
        assert_eq!(t.deadline(), t0 + 3 * S);
    }

    #[test]
    fn missed_periods_fire_once_then_jump_ahead() {
        let t0 = Instant::now();
        let mut t = Ticker::new(t0, Some(S)).unwrap();
        assert!(t.fire(t0 + S * 45 / 10));
        assert_eq!(t.deadline(), t0 + 5 * S);
        assert!(!t.fire(t0 + S * 46 / 10));
    }

    #[test]
    fn zero_period_is_off() {
        assert!(Ticker::new(Instant::now(), Some(Duration::ZERO)).is_none());
        assert!(Ticker::new(Instant::now(), None).is_none());
    }

    #[test]
    fn exhaustion_holds_accepting_then_releases_it() {
        let now = Instant::now();
        let mut b = AcceptBackoff::default();
        let emfile = io::Error::from_raw_os_error(libc::EMFILE);
        assert_eq!(b.error(&emfile, now), AfterError::Stop);
        assert_eq!(b.deadline(), Some(now + AcceptBackoff::RETRY));
        assert!(!b.due(now));
        assert!(b.due(now + AcceptBackoff::RETRY));
        assert_eq!(b.deadline(), None);
        b.accepted();
        assert!(!b.exhausted);
    }

    #[test]
    fn accept_results_step_the_loop() {
        let now = Instant::now();
        let mut b = AcceptBackoff::default();
        assert!(matches!(b.on_accept(Ok(7), now), Accepted::Client(7)));
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert!(matches!(b.on_accept::<u8>(Err(reset), now), Accepted::Next));
        let empty = io::Error::from(io::ErrorKind::WouldBlock);
        assert!(matches!(b.on_accept::<u8>(Err(empty), now), Accepted::Stop));
    }

    #[test]
    fn per_connection_errors_move_on() {
        let now = Instant::now();
        let mut b = AcceptBackoff::default();
        for kind in [io::ErrorKind::ConnectionAborted, io::ErrorKind::Interrupted] {
            assert_eq!(b.error(&io::Error::from(kind), now), AfterError::Next);
        }
        assert_eq!(
            b.error(&io::Error::from(io::ErrorKind::WouldBlock), now),
            AfterError::Stop
        );
        assert_eq!(b.deadline(), None);
    }
}
