//! One client's input side, once for both servers and without I/O: bytes
//! in, handler calls and flow decisions out. A [`Session`] frames what was
//! read (lines or raw chunks), hands each message to the handler, stops at
//! once when the handler closes the client, and keeps the idle-flush
//! deadline (SPEC's 50 ms rule). [`Gates`] are its pause switches and the
//! slow-client rule: pause above `--max-pending`, resume at half of it (so
//! a client does not flap), or drop, by the handler's [`SlowPolicy`].
//!
//! A server owns the socket and calls these with the bytes it read and the
//! time it read them; a UDP peer (a client with no stream) can use the same
//! types with one datagram per message.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use crate::framing::{IDLE_FLUSH, LineFramer};
use crate::handlers::{ClientId, Framing, Handler, Outbox, SlowPolicy};

/// What is read from a client when shutdown closes it: what it already sent
/// is handled, a client that keeps sending does not hold the server forever.
pub const MAX_FINAL_READ_BYTES: usize = 4 * 1024 * 1024;
/// After our last byte and FIN, how long a server reads and discards what a
/// client still sends before closing: closing with unread input makes Linux
/// send a RST, which can destroy replies the client has not read yet.
pub const LINGER: Duration = Duration::from_secs(1);
/// Bytes discarded from a lingering client before giving up on a clean
/// close.
pub const MAX_LINGER_DISCARD_BYTES: usize = 4 * 1024 * 1024;

/// What handling some input led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// Keep reading.
    Continue,
    /// The handler closed this client: the rest of the input is dropped.
    Closed,
    /// A line passed `--max-line`: the client gets the error line and is
    /// closed; its framer is empty.
    TooLong,
}

/// See the module doc.
#[derive(Debug)]
pub struct Session {
    /// The handler's framing.
    framing: Framing,
    /// `--max-line`.
    max_line: usize,
    framer: LineFramer,
    /// When the unfinished line counts as a message (idle flush), if the
    /// handler wants that and a line is unfinished.
    idle_deadline: Option<Instant>,
}

impl Session {
    pub fn new(framing: Framing, max_line: usize) -> Self {
        Session {
            framing,
            max_line,
            framer: LineFramer::new(),
            idle_deadline: None,
        }
    }

    pub fn idle_deadline(&self) -> Option<Instant> {
        self.idle_deadline
    }

    /// Bytes of an unfinished line held (for `--trace`).
    pub fn partial_len(&self) -> usize {
        self.framer.partial_len()
    }

    /// Hands `data`, just read from `id`, to the handler: every complete
    /// line (or the whole chunk with [`Framing::Raw`]). `now` gives the time
    /// of the read; it is asked only when an idle deadline must be set (a
    /// clock read saved on the hot path).
    pub fn input(
        &mut self,
        id: ClientId,
        data: &[u8],
        now: impl FnOnce() -> Instant,
        handler: &mut dyn Handler,
        out: &mut Outbox,
    ) -> Input {
        let idle_flush = match self.framing {
            Framing::Raw => {
                // SPEC: the sink takes bytes of any length; no --max-line.
                let before = out.actions().len();
                handler.on_message(id, data, out);
                return if out.closes_since(before, id) {
                    Input::Closed
                } else {
                    Input::Continue
                };
            }
            Framing::Lines { idle_flush } => idle_flush,
            Framing::LineBlocks => return self.input_blocks(id, data, handler, out),
        };
        let result = self.push_lines(id, data, handler, out);
        self.idle_deadline = (idle_flush && self.framer.has_partial()).then(|| now() + IDLE_FLUSH);
        result
    }

    /// [`Framing::LineBlocks`]: the complete lines of `data` in one
    /// [`Handler::on_lines`] call where they may be, else line by line.
    fn input_blocks(
        &mut self,
        id: ClientId,
        data: &[u8],
        handler: &mut dyn Handler,
        out: &mut Outbox,
    ) -> Input {
        let mut rest = data;
        if self.framer.has_partial() {
            // The line an earlier read began ends here (or not yet).
            let head = memchr::memchr(b'\n', rest).map_or(rest.len(), |i| i + 1);
            let (head, tail) = rest.split_at(head);
            let result = self.push_lines(id, head, handler, out);
            if result != Input::Continue {
                return result;
            }
            rest = tail;
        }
        if let Some(last) = memchr::memrchr(b'\n', rest) {
            let (lines, tail) = rest.split_at(last + 1);
            // No line of a block is longer than the block: one comparison
            // instead of one per line. A longer block takes the framer's
            // path below, which finds the line too long.
            if lines.len() <= self.max_line.saturating_add(1) {
                let before = out.actions().len();
                handler.on_lines(id, lines, out);
                if out.closes_since(before, id) {
                    return Input::Closed;
                }
                rest = tail;
            }
        }
        self.push_lines(id, rest, handler, out)
    }

    /// Every complete line of `data` to [`Handler::on_message`], through
    /// the framer, which keeps the unfinished rest.
    fn push_lines(
        &mut self,
        id: ClientId,
        data: &[u8],
        handler: &mut dyn Handler,
        out: &mut Outbox,
    ) -> Input {
        let mut closed = false;
        let result = self.framer.push(data, self.max_line, |line| {
            let before = out.actions().len();
            handler.on_message(id, line, out);
            // Stop at once if the handler closed this client.
            closed = out.closes_since(before, id);
            if closed {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        if result.is_err() {
            Input::TooLong
        } else if closed {
            self.framer.discard();
            self.idle_deadline = None;
            Input::Closed
        } else {
            Input::Continue
        }
    }

    /// Hands out the unfinished line as a message: at EOF (SPEC: the tail
    /// is a last line), when the idle deadline passed, or at shutdown.
    /// Returns whether there was one.
    pub fn flush_partial(
        &mut self,
        id: ClientId,
        handler: &mut dyn Handler,
        out: &mut Outbox,
    ) -> Result<bool, TooLong> {
        self.idle_deadline = None;
        self.framer
            .flush(self.max_line, |msg| handler.on_message(id, msg, out))
            .map_err(|_| TooLong)
    }

    /// The end of a drain closes this client: its unfinished line is
    /// dropped. Returns whether it counts as cut: a line was unfinished, or
    /// (raw framing, the sink) its stream was being taken when the drain
    /// ended. A client the handler kept paused never had bytes handled, so
    /// it is not counted.
    pub fn cut(&mut self, paused_by_handler: bool) -> bool {
        self.idle_deadline = None;
        match self.framing {
            Framing::Lines { .. } | Framing::LineBlocks => self.framer.discard(),
            Framing::Raw => !paused_by_handler,
        }
    }

    /// No idle flush any more (the client is closing).
    pub fn discard_deadline(&mut self) {
        self.idle_deadline = None;
    }

    /// Forgets the unfinished line (the client is dropped).
    pub fn discard(&mut self) {
        self.idle_deadline = None;
        self.framer.discard();
    }
}

/// The unfinished line is over `--max-line`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLong;

/// Why a client is not read from. See the module doc.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Gates {
    /// The handler asked (the sink's waiting clients).
    pub by_handler: bool,
    /// Its queued output passed `--max-pending` (echo, queue): closed
    /// until that output has drained to half of it.
    pub by_output: bool,
    /// The stdout writer's queue is over its budget (the sink's owner):
    /// closed until it has drained to half of it.
    pub by_stdout: bool,
}

/// What the slow-client rule decided after a client's queued output
/// changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Nothing changes.
    Steady,
    /// Reading may go on: read at once (edge-triggered readiness raises no
    /// new event for what arrived during the pause).
    Resume,
    /// Over `--max-pending` under [`SlowPolicy::Disconnect`]: drop it.
    Drop,
}

impl Gates {
    /// Whether the client may be read from.
    pub fn open(&self) -> bool {
        !self.by_handler && !self.by_output && !self.by_stdout
    }

    /// The slow-client rule, with `pending` bytes of output queued.
    pub fn on_output(&mut self, pending: usize, max_pending: usize, policy: SlowPolicy) -> Flow {
        if pending > max_pending {
            return match policy {
                SlowPolicy::PauseReading => {
                    self.by_output = true;
                    Flow::Steady
                }
                SlowPolicy::Disconnect => Flow::Drop,
            };
        }
        if self.by_output && pending <= max_pending / 2 {
            self.by_output = false;
            if !self.by_handler && !self.by_stdout {
                return Flow::Resume;
            }
        }
        Flow::Steady
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::{Effect, TEST_PEER, Traits};
    use std::time::Duration;

    /// Answers `ok` to every message, closes the client on `bye`.
    struct Answer;

    impl Handler for Answer {
        fn traits(&self) -> &'static Traits {
            const TRAITS: Traits = Traits::interactive("answer");
            &TRAITS
        }
        fn on_message(&mut self, id: ClientId, msg: &[u8], out: &mut Outbox) {
            if msg.starts_with(b"bye") {
                out.close(id);
            } else {
                out.send(id, msg);
            }
        }
    }

    const ID: ClientId = ClientId(1);
    const IDLE: Framing = Framing::Lines { idle_flush: true };

    #[test]
    fn lines_go_to_the_handler_and_the_rest_waits_for_the_idle_deadline() {
        let (mut s, mut h, mut out) = (Session::new(IDLE, 100), Answer, Outbox::new());
        let t0 = Instant::now();
        let _ = TEST_PEER;
        assert_eq!(
            s.input(ID, b"a\nb", || t0, &mut h, &mut out),
            Input::Continue
        );
        assert_eq!(out.take(), vec![Effect::Send(ID, b"a\n".to_vec())]);
        assert_eq!(s.idle_deadline(), Some(t0 + IDLE_FLUSH));
        // More bytes of the same line move the deadline.
        let t1 = t0 + Duration::from_millis(30);
        s.input(ID, b"c", || t1, &mut h, &mut out);
        assert_eq!(s.idle_deadline(), Some(t1 + IDLE_FLUSH));
        assert_eq!(s.flush_partial(ID, &mut h, &mut out), Ok(true));
        assert_eq!(out.take(), vec![Effect::Send(ID, b"bc".to_vec())]);
        assert_eq!(s.idle_deadline(), None);
    }

    #[test]
    fn without_idle_flush_no_deadline_is_set() {
        let lines = Framing::Lines { idle_flush: false };
        let (mut s, mut h, mut out) = (Session::new(lines, 100), Answer, Outbox::new());
        s.input(ID, b"partial", Instant::now, &mut h, &mut out);
        assert_eq!(s.idle_deadline(), None);
        assert!(s.cut(false), "the partial line is cut at drain end");
        assert!(!s.cut(false));
    }

    #[test]
    fn a_close_stops_at_once_and_drops_the_rest() {
        let (mut s, mut h, mut out) = (Session::new(IDLE, 100), Answer, Outbox::new());
        let got = s.input(ID, b"x\nbye\ny\nz", Instant::now, &mut h, &mut out);
        assert_eq!(got, Input::Closed);
        assert_eq!(
            out.take(),
            vec![Effect::Send(ID, b"x\n".to_vec()), Effect::Close(ID)]
        );
        assert_eq!(s.flush_partial(ID, &mut h, &mut out), Ok(false));
    }

    #[test]
    fn an_overlong_line_is_too_long_complete_or_not() {
        let (mut s, mut h, mut out) = (Session::new(IDLE, 4), Answer, Outbox::new());
        let t = Instant::now();
        assert_eq!(
            s.input(ID, b"12345", || t, &mut h, &mut out),
            Input::TooLong
        );
        let (mut s, mut out) = (Session::new(IDLE, 4), Outbox::new());
        // A `\r` is held for a `\n` that may follow; without one it is content.
        s.input(ID, b"1234\r", || t, &mut h, &mut out);
        assert_eq!(s.flush_partial(ID, &mut h, &mut out), Err(TooLong));
    }

    #[test]
    fn raw_chunks_go_whole_and_a_sink_waiter_is_not_cut() {
        let (mut s, mut h, mut out) = (Session::new(Framing::Raw, 1), Answer, Outbox::new());
        let t = Instant::now();
        s.input(ID, b"a\nb", || t, &mut h, &mut out);
        assert_eq!(out.take(), vec![Effect::Send(ID, b"a\nb".to_vec())]);
        assert!(s.cut(false));
        assert!(!s.cut(true));
    }

    #[test]
    fn slow_clients_pause_above_max_and_resume_at_half() {
        let mut g = Gates::default();
        let p = SlowPolicy::PauseReading;
        assert_eq!(g.on_output(100, 100, p), Flow::Steady);
        assert!(g.open());
        assert_eq!(g.on_output(101, 100, p), Flow::Steady);
        assert!(!g.open());
        assert_eq!(g.on_output(51, 100, p), Flow::Steady, "hysteresis");
        assert!(!g.open());
        assert_eq!(g.on_output(50, 100, p), Flow::Resume);
        assert!(g.open());
        // Paused by the handler too: the output gate opens, reading waits.
        g.by_handler = true;
        g.on_output(101, 100, p);
        assert_eq!(g.on_output(0, 100, p), Flow::Steady);
        assert!(!g.by_output && !g.open());
    }

    #[test]
    fn slow_clients_are_dropped_under_the_disconnect_policy() {
        let mut g = Gates::default();
        let d = SlowPolicy::Disconnect;
        assert_eq!(g.on_output(100, 100, d), Flow::Steady);
        assert_eq!(g.on_output(101, 100, d), Flow::Drop);
    }

    proptest::proptest! {
        /// Blocks of lines (one `on_lines` call a read) against the framer
        /// (one `on_message` a line), for any bytes cut into any reads and
        /// any `--max-line`: the same messages, closes and too-long ends,
        /// and the same unfinished line kept.
        #[test]
        fn line_blocks_frame_as_lines_do(
            data in proptest::collection::vec(
                proptest::sample::select(b"ab\r\n\n\nbye\n".to_vec()), 0..200),
            cuts in proptest::collection::vec(0usize..200, 0..8),
            max_line in 1usize..12,
        ) {
            let lines = Framing::Lines { idle_flush: false };
            let (mut a, mut b) = (Session::new(lines, max_line), Session::new(Framing::LineBlocks, max_line));
            let (mut out_a, mut out_b) = (Outbox::new(), Outbox::new());
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            cuts.extend([0, data.len()]);
            cuts.sort_unstable();
            for read in cuts.windows(2) {
                let chunk = &data[read[0]..read[1]];
                let got_a = a.input(ID, chunk, Instant::now, &mut Answer, &mut out_a);
                let got_b = b.input(ID, chunk, Instant::now, &mut Answer, &mut out_b);
                proptest::prop_assert_eq!(got_a, got_b);
                proptest::prop_assert_eq!(out_a.take(), out_b.take());
                if got_a != Input::Continue {
                    return Ok(());
                }
            }
            let tail_a = a.flush_partial(ID, &mut Answer, &mut out_a);
            proptest::prop_assert_eq!(tail_a, b.flush_partial(ID, &mut Answer, &mut out_b));
            proptest::prop_assert_eq!(out_a.take(), out_b.take());
        }
    }
}
