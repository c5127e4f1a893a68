//! The reactor's reading: events, the ready list, reads to `WouldBlock`,
//! and handing the bytes to the client's [`Session`](crate::server_core::session::Session).

use std::cmp::Reverse;
use std::io::{self, Read};
use std::time::Instant;

use super::conn::Drain;
use super::{PASS_BUDGET, Reactor};
use crate::server_core::ending::{Cause, Reading};
use crate::server_core::session::Input;
use crate::status;

/// Bytes read from one connection before others get a turn.
pub(super) const MAX_READ_PER_WAKEUP_BYTES: usize = 256 * 1024;

impl Reactor {
    /// `read_closed`: the event's hint that the peer's FIN has arrived.
    pub(super) fn handle_event(&mut self, key: usize, readable: bool, read_closed: bool) {
        let Some(conn) = self.conns.get(key) else {
            return; // sporadic event for a removed connection
        };
        match conn.ending.reading() {
            Reading::Stopped => {}
            Reading::Handle => {
                // Writable events and error hints are handled by trying the
                // operation: a hint alone proves nothing (mio docs).
                if conn.may_read() {
                    let until = if read_closed || !cfg!(target_os = "linux") {
                        Drain::ToEnd
                    } else {
                        Drain::ShortReadEnds
                    };
                    self.read_available(key, MAX_READ_PER_WAKEUP_BYTES, until);
                }
                self.mark_dirty(key);
            }
            Reading::Discard => {
                if readable {
                    self.discard_input(key);
                }
                self.mark_dirty(key);
            }
        }
    }

    /// An event that came after the pass budget ran out: its connection is
    /// read in a later pass, its output flushed in this one.
    pub(super) fn defer(&mut self, key: usize) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        match conn.ending.reading() {
            Reading::Stopped => {}
            Reading::Handle => {
                if conn.may_read() {
                    self.ready.push_back((key, conn.id));
                }
                self.mark_dirty(key);
            }
            Reading::Discard => {
                self.discard_input(key);
                self.mark_dirty(key);
            }
        }
    }

    /// Reads the connections waiting without an event, oldest first, for
    /// up to [`PASS_BUDGET`] of its own (not what the events left: a busy
    /// event phase must not starve connections that will raise no other
    /// edge, such as a client that has sent everything).
    pub(super) fn handle_ready(&mut self) {
        // Woken by another loop whose flush brought the total back?
        self.release_held();
        let start = Instant::now();
        let mut ready = std::mem::take(&mut self.ready);
        let mut handled = 0usize;
        while let Some((key, id)) = ready.pop_front() {
            // At least one per pass, whatever the budget: progress.
            if handled > 0 && start.elapsed() > PASS_BUDGET {
                // This entry and the rest go first in the next pass, ahead
                // of those queued meanwhile; none may be dropped.
                ready.push_front((key, id));
                ready.append(&mut self.ready);
                self.ready = ready;
                return;
            }
            handled += 1;
            match self.conns.get(key) {
                Some(conn) if conn.id == id && conn.may_read() => {
                    self.read_available(key, MAX_READ_PER_WAKEUP_BYTES, Drain::ToEnd);
                    self.mark_dirty(key);
                }
                _ => {}
            }
        }
    }

    /// Reads and handles input from `key` until `WouldBlock` (or a short
    /// read, see [`Drain`]), EOF, an error, a pause, or `budget` bytes (then
    /// it goes on the ready list).
    pub(super) fn read_available(&mut self, key: usize, budget: usize, until: Drain) {
        let mut read_total = 0;
        loop {
            let conn = &mut self.conns[key];
            if !conn.may_read() {
                return;
            }
            // `--max-output-total`: what it sends waits in the kernel.
            if self.total_gate.holds(key, conn.id, conn.out.pending()) {
                self.trace.total_held(conn.id);
                return;
            }
            if read_total >= budget {
                self.ready.push_back((key, conn.id));
                return;
            }
            match conn.stream.read(&mut self.scratch) {
                Ok(0) => {
                    self.trace.eof(conn.id);
                    self.handle_eof(key);
                    return;
                }
                Ok(n) => {
                    self.trace.read(conn.id, n);
                    read_total += n;
                    self.handle_input(key, n);
                    // One store write per read: what one read persisted is
                    // all that is held in memory.
                    if let Err(e) = self.durable.put() {
                        self.fatal.get_or_insert(e);
                    }
                    if until == Drain::ShortReadEnds && n < self.scratch.len() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.trace.would_block(conn.id);
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.drop_client(key, &e.to_string());
                    return;
                }
            }
        }
    }

    /// Hands `scratch[..n]`, just read from `key`, to the session and handler.
    fn handle_input(&mut self, key: usize, n: usize) {
        let conn = &mut self.conns[key];
        let id = conn.id;
        self.current = Some((id, key));
        let had_deadline = conn.session.idle_deadline().is_some();
        // The idle deadline counts from this read, not from the pass start.
        let result = conn.session.input(
            id,
            &self.scratch[..n],
            Instant::now,
            &mut *self.handler,
            &mut self.outbox,
        );
        let data = &self.scratch[..n];
        self.trace
            .framed(id, self.framing, data, || conn.session.partial_len());
        if let (false, Some(deadline)) = (had_deadline, conn.session.idle_deadline()) {
            self.idle_queue.push(Reverse((deadline, key, id)));
        }
        self.apply_actions();
        self.current = None;
        if result == Input::TooLong {
            self.line_too_long(key);
        }
    }

    /// SPEC: a line over `--max-line` gets the error line, then the
    /// connection is closed; no other client is affected.
    pub(super) fn line_too_long(&mut self, key: usize) {
        let max = self.config.max_line_bytes;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        status::line_too_long(conn.id, max);
        if conn.ending.is_open() {
            conn.out.push_slice(status::LINE_TOO_LONG);
            self.end_conn(key, Cause::TooLong);
        }
    }

    /// The client shut its sending side: its unfinished line is its last
    /// message; then everything queued for it is sent and it is closed.
    fn handle_eof(&mut self, key: usize) {
        self.flush_partial(key);
        self.end_conn(key, Cause::Eof);
    }

    /// Hands out the unfinished line as a message (EOF tail, idle flush,
    /// shutdown).
    pub(super) fn flush_partial(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        let id = conn.id;
        match conn
            .session
            .flush_partial(id, &mut *self.handler, &mut self.outbox)
        {
            Ok(true) => {
                self.current = Some((id, key));
                self.apply_actions();
                self.current = None;
            }
            Ok(false) => {}
            Err(_) => self.line_too_long(key),
        }
    }
}
