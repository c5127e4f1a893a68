//! A connection's end of life, once for every server and without I/O: open,
//! closing (output is flushed), lingering (our FIN is sent, input is read
//! and dropped), dead. Like [`Lifecycle`](super::lifecycle::Lifecycle),
//! what happened goes in (a [`Cause`] to stop, output flushed, bytes
//! discarded, the peer's FIN, the time) and what the server must do comes
//! out as [`Step`]s, which it carries out with its own sockets; unit tests
//! drive it with a fake clock.
//!
//! The rules (SPEC "Framing", "Limits", "Shutdown"):
//! - a graceful close (EOF, `--max-line`, the handler's close, shutdown)
//!   stops handling input, flushes what is queued, sends our FIN, then reads
//!   and drops input until the client closes too, [`LINGER`] passes or it
//!   sent [`MAX_LINGER_DISCARD_BYTES`] (closing with unread bytes would
//!   reset the connection and could destroy our last replies in flight);
//! - a drop (an I/O error, too slow) or a kill (shutdown's time ran out)
//!   closes at once: queued output is lost;
//! - the handler hears `on_disconnect` at most once, and not when it closed
//!   the client itself or when shutdown closes everyone (it heard
//!   `on_shutdown`: telling it one by one would only make presence
//!   broadcast lists nobody will read).

use std::time::Instant;

use super::session::{LINGER, MAX_LINGER_DISCARD_BYTES};

/// Why a connection stops taking input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The client shut its sending side.
    Eof,
    /// A line over `--max-line` (its error line is queued first).
    TooLong,
    /// The handler closed it (`Action::Close`).
    HandlerClosed,
    /// Server shutdown closes every client. `cut`: its unfinished line is
    /// dropped and counted (the end of a drain) rather than handled as a
    /// last message.
    Shutdown { cut: bool },
    /// An I/O error, or too slow under `--max-pending`: closed at once.
    Dropped,
    /// Closed at once, the handler not told: shutdown's time ran out (it
    /// heard `on_shutdown`), or a connection past its FIN is done (see
    /// [`Ending::peer_closed`], [`Ending::discarded`],
    /// [`Ending::handle_timeout`]).
    Killed,
}

impl Cause {
    /// Queued output is still sent (then FIN and linger). A cause that is
    /// not graceful overrides one that is, never the reverse.
    pub fn is_graceful(self) -> bool {
        matches!(
            self,
            Cause::Eof | Cause::TooLong | Cause::HandlerClosed | Cause::Shutdown { .. }
        )
    }

    /// The handler is told, if it has not been yet.
    fn tells_handler(self) -> bool {
        matches!(self, Cause::Eof | Cause::TooLong | Cause::Dropped)
    }
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Reading and writing.
    Open,
    /// No more input is handled; queued output is flushed, then our side
    /// is shut.
    Closing,
    /// Our FIN is sent; input is read and dropped until the client closes
    /// too or `until`.
    Lingering { until: Instant },
    /// Gone: the server removes it.
    Dead,
}

/// What the server does with a connection's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// Read it and hand it to the session (gates permitting).
    Handle,
    /// Read it and drop it (closing, lingering).
    Discard,
    /// Nothing: the connection is dead.
    Stopped,
}

/// What the server must do, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Call the handler's `on_disconnect` (once per connection).
    TellHandler,
    /// Input is no longer handled: flush what is queued (then report
    /// [`Ending::flushed`]).
    Flush,
    /// Everything is out: shut the write side (our FIN), then read and drop
    /// input ([`Reading::Discard`]) until the client closes or `until`.
    ShutWrite { until: Instant },
    /// Close the socket now; queued output is lost.
    CloseNow,
}

/// The steps one input asks for (at most two), in order.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Steps([Option<Step>; 2]);

impl Steps {
    fn one(step: Step) -> Self {
        Steps([Some(step), None])
    }

    pub fn is_empty(&self) -> bool {
        self.0[0].is_none()
    }

    pub fn contains(&self, step: Step) -> bool {
        self.0.contains(&Some(step))
    }
}

impl IntoIterator for Steps {
    type Item = Step;
    type IntoIter = std::iter::Flatten<std::array::IntoIter<Option<Step>, 2>>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter().flatten()
    }
}

/// See the module doc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    stage: Stage,
    /// The handler still counts this client as connected: it must hear
    /// `on_disconnect` if the connection ends for a reason it did not see.
    handler_knows: bool,
    /// Bytes dropped since input stopped being handled.
    discarded: usize,
}

impl Default for Ending {
    fn default() -> Self {
        Self::new()
    }
}

impl Ending {
    /// An open connection the handler knows (its `on_connect` was called).
    pub fn new() -> Self {
        Ending {
            stage: Stage::Open,
            handler_knows: true,
            discarded: 0,
        }
    }

    pub fn stage(&self) -> Stage {
        self.stage
    }

    pub fn is_open(&self) -> bool {
        self.stage == Stage::Open
    }

    pub fn is_dead(&self) -> bool {
        self.stage == Stage::Dead
    }

    /// Whether the handler still counts this client as connected.
    pub fn handler_knows(&self) -> bool {
        self.handler_knows
    }

    /// Whether output for this client is still queued (open or closing).
    pub fn takes_output(&self) -> bool {
        matches!(self.stage, Stage::Open | Stage::Closing)
    }

    pub fn reading(&self) -> Reading {
        match self.stage {
            Stage::Open => Reading::Handle,
            Stage::Closing | Stage::Lingering { .. } => Reading::Discard,
            Stage::Dead => Reading::Stopped,
        }
    }

    /// The connection must end for `cause`. A graceful cause only ends an
    /// open connection (one already closing goes on as it was); a drop or
    /// a kill ends any connection that is not dead yet.
    pub fn close(&mut self, cause: Cause) -> Steps {
        let applies = if cause.is_graceful() {
            self.stage == Stage::Open
        } else {
            self.stage != Stage::Dead
        };
        if !applies {
            return Steps::default();
        }
        let tell = std::mem::replace(&mut self.handler_knows, false) && cause.tells_handler();
        let (stage, step) = if cause.is_graceful() {
            (Stage::Closing, Step::Flush)
        } else {
            (Stage::Dead, Step::CloseNow)
        };
        self.stage = stage;
        match tell {
            true => Steps([Some(Step::TellHandler), Some(step)]),
            false => Steps::one(step),
        }
    }

    /// Everything queued was written at `now`. `cap`: a time the linger
    /// must not outlast (the end of shutdown's flush), if any.
    pub fn flushed(&mut self, now: Instant, cap: Option<Instant>) -> Steps {
        if self.stage != Stage::Closing {
            return Steps::default();
        }
        let until = cap.map_or(now + LINGER, |cap| cap.min(now + LINGER));
        self.stage = Stage::Lingering { until };
        Steps::one(Step::ShutWrite { until })
    }

    /// `n` bytes of input were read and dropped.
    pub fn discarded(&mut self, n: usize) -> Steps {
        self.discarded = self.discarded.saturating_add(n);
        if self.discarded > MAX_LINGER_DISCARD_BYTES {
            return self.close(Cause::Killed);
        }
        Steps::default()
    }

    /// A read returned 0 (the client's FIN) after input stopped being
    /// handled: a lingering connection is done; a closing one still has
    /// output to flush.
    pub fn peer_closed(&mut self) -> Steps {
        match self.stage {
            Stage::Lingering { .. } => self.close(Cause::Killed),
            _ => Steps::default(),
        }
    }

    /// Runs what is due at `now`: the end of a linger.
    pub fn handle_timeout(&mut self, now: Instant) -> Steps {
        match self.stage {
            Stage::Lingering { until } if until <= now => self.close(Cause::Killed),
            _ => Steps::default(),
        }
    }

    /// The next deadline: the end of the linger.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.stage {
            Stage::Lingering { until } => Some(until),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn steps(s: Steps) -> Vec<Step> {
        s.into_iter().collect()
    }

    /// A connection closed for `cause` at `t0`, flushed 5 ms later.
    fn lingering(cause: Cause) -> (Ending, Instant) {
        let t0 = Instant::now();
        let mut e = Ending::new();
        e.close(cause);
        assert_eq!(
            steps(e.flushed(t0 + 5 * MS, None)),
            vec![Step::ShutWrite {
                until: t0 + 5 * MS + LINGER
            }]
        );
        (e, t0)
    }

    #[test]
    fn eof_tells_the_handler_flushes_then_shuts_the_write_side_and_lingers() {
        let t0 = Instant::now();
        let mut e = Ending::new();
        assert_eq!(e.reading(), Reading::Handle);
        assert_eq!(
            steps(e.close(Cause::Eof)),
            vec![Step::TellHandler, Step::Flush]
        );
        assert_eq!(e.stage(), Stage::Closing);
        assert!(e.takes_output(), "replies still go out while closing");
        assert_eq!(e.reading(), Reading::Discard);
        assert_eq!(e.poll_timeout(), None, "flushing has no deadline here");
        let until = t0 + LINGER;
        assert_eq!(steps(e.flushed(t0, None)), vec![Step::ShutWrite { until }]);
        assert!(!e.takes_output());
        assert_eq!(e.reading(), Reading::Discard);
        assert_eq!(e.poll_timeout(), Some(until));
        assert_eq!(steps(e.flushed(t0, None)), vec![], "one FIN");
    }

    #[test]
    fn the_handler_is_told_only_when_it_did_not_see_the_end() {
        for (cause, told) in [
            (Cause::Eof, true),
            (Cause::TooLong, true),
            (Cause::Dropped, true),
            (Cause::HandlerClosed, false),
            (Cause::Shutdown { cut: true }, false),
            (Cause::Killed, false),
        ] {
            let mut e = Ending::new();
            let s = steps(e.close(cause));
            assert_eq!(s.contains(&Step::TellHandler), told, "{cause:?}");
            // Whatever comes next, it is never told again.
            for next in [Cause::Dropped, Cause::Killed] {
                assert!(!steps(e.clone().close(next)).contains(&Step::TellHandler));
            }
        }
    }

    #[test]
    fn a_drop_or_a_kill_closes_at_once_from_any_stage() {
        let (lingering, _) = lingering(Cause::Eof);
        let mut closing = Ending::new();
        closing.close(Cause::HandlerClosed);
        for start in [Ending::new(), closing, lingering] {
            for cause in [Cause::Dropped, Cause::Killed] {
                let mut e = start.clone();
                let s = steps(e.close(cause));
                assert_eq!(s.last(), Some(&Step::CloseNow), "{start:?} {cause:?}");
                assert!(e.is_dead());
                assert_eq!(e.reading(), Reading::Stopped);
                assert!(!e.takes_output());
                assert_eq!(steps(e.close(cause)), vec![], "closed once");
            }
        }
    }

    #[test]
    fn a_graceful_cause_does_not_restart_a_close_under_way() {
        let (mut e, t0) = lingering(Cause::HandlerClosed);
        let before = e.clone();
        for cause in [
            Cause::Eof,
            Cause::TooLong,
            Cause::HandlerClosed,
            Cause::Shutdown { cut: true },
        ] {
            assert_eq!(steps(e.close(cause)), vec![], "{cause:?}");
        }
        assert_eq!(e, before);
        let mut closing = Ending::new();
        closing.close(Cause::Shutdown { cut: false });
        assert_eq!(steps(closing.close(Cause::Eof)), vec![]);
        assert_eq!(closing.stage(), Stage::Closing);
        assert_eq!(e.poll_timeout(), Some(t0 + 5 * MS + LINGER));
    }

    #[test]
    fn the_linger_ends_at_its_deadline() {
        let (mut e, t0) = lingering(Cause::Eof);
        let until = t0 + 5 * MS + LINGER;
        assert_eq!(steps(e.handle_timeout(until - MS)), vec![]);
        assert_eq!(steps(e.handle_timeout(until)), vec![Step::CloseNow]);
        assert!(e.is_dead());
        assert_eq!(e.poll_timeout(), None);
    }

    #[test]
    fn the_linger_never_outlasts_the_cap() {
        let t0 = Instant::now();
        let mut e = Ending::new();
        e.close(Cause::Shutdown { cut: false });
        let cap = t0 + 100 * MS;
        assert_eq!(
            steps(e.flushed(t0, Some(cap))),
            vec![Step::ShutWrite { until: cap }]
        );
        let mut late = Ending::new();
        late.close(Cause::Shutdown { cut: false });
        let far = t0 + 10 * LINGER;
        assert_eq!(
            steps(late.flushed(t0, Some(far))),
            vec![Step::ShutWrite { until: t0 + LINGER }]
        );
    }

    #[test]
    fn the_peer_closing_ends_a_linger_but_not_a_flush() {
        let mut closing = Ending::new();
        closing.close(Cause::Eof);
        assert_eq!(steps(closing.peer_closed()), vec![]);
        assert_eq!(closing.stage(), Stage::Closing, "our output still goes out");
        let (mut e, _) = lingering(Cause::Eof);
        assert_eq!(steps(e.peer_closed()), vec![Step::CloseNow]);
    }

    #[test]
    fn discarding_more_than_the_budget_closes_at_once() {
        let (mut e, _) = lingering(Cause::Eof);
        assert_eq!(steps(e.discarded(MAX_LINGER_DISCARD_BYTES)), vec![]);
        assert_eq!(steps(e.discarded(1)), vec![Step::CloseNow]);
        // Counted while still flushing too.
        let mut closing = Ending::new();
        closing.close(Cause::TooLong);
        assert_eq!(
            steps(closing.discarded(MAX_LINGER_DISCARD_BYTES + 1)),
            vec![Step::CloseNow]
        );
    }

    #[test]
    fn an_open_connection_has_no_deadline_and_ignores_time_and_flushes() {
        let t0 = Instant::now();
        let mut e = Ending::new();
        assert_eq!(steps(e.handle_timeout(t0 + 10 * LINGER)), vec![]);
        assert_eq!(steps(e.flushed(t0, None)), vec![]);
        assert_eq!(steps(e.peer_closed()), vec![]);
        assert!(e.is_open());
        assert_eq!(e.poll_timeout(), None);
    }
}
