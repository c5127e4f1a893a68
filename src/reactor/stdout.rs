//! The reactor's side of the stdout writer ([`crate::stdout`]): bytes for
//! stdout are queued, never written here; the client that produced them
//! stops being read while the queue is over its budget, and is read again
//! when the writer thread wakes the loop; at shutdown the loop stays until
//! stdout is written or [`FlushDeadline`] says to stop waiting.

use std::sync::Arc;
use std::time::Instant;

use mio::Waker;

use super::Reactor;
use crate::handlers::Outbox;
use crate::server_core::actions;
use crate::stdout::{FlushDeadline, StdoutWriter, Waiter};

/// The loop's part of the stdout writer.
pub(super) struct LoopStdout {
    pub(super) writer: StdoutWriter,
    /// Wakes this loop (its [`crate::net::tokens::WAKE`] waker).
    waiter: Waiter,
    /// This pass queued bytes the writer has not been woken for.
    unkicked: bool,
    /// Clients not read until the queue drains: (slab key, id).
    paused: Vec<(usize, crate::handlers::ClientId)>,
    /// How long shutdown waits for the queue.
    pub(super) flush: FlushDeadline,
}

impl LoopStdout {
    pub(super) fn new(writer: StdoutWriter, waker: Arc<Waker>) -> Self {
        LoopStdout {
            writer,
            waiter: Arc::new(move || {
                let _ = waker.wake();
            }),
            unkicked: false,
            paused: Vec::new(),
            flush: FlushDeadline::default(),
        }
    }
}

impl Reactor {
    /// Stdout bytes go to the writer's queue, diagnostics to stderr. Over
    /// the budget, the client whose input made them (the sink's owner) is
    /// not read until the queue has drained to half (a
    /// `Stdout` action only comes from handling a client's input, or from
    /// `on_shutdown`, which has no client to pause and prints little).
    pub(super) fn print(&mut self, outbox: &Outbox) {
        let writer = &self.stdout.writer;
        let (mut over, mut queued) = (false, false);
        // The writer is woken once per pass, before the poll
        // ([`Reactor::kick_stdout`]).
        actions::print_lines(outbox, |bytes| {
            queued = true;
            over |= !writer.push_later(bytes);
        });
        self.stdout.unkicked |= queued;
        if !over || self.stdout.writer.room_or_notify(&self.stdout.waiter) {
            return;
        }
        let Some((id, key)) = self.current else {
            return;
        };
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.id != id || !conn.ending.is_open() || conn.gates.by_stdout {
            return;
        }
        conn.gates.by_stdout = true;
        self.stdout.paused.push((key, id));
        let writer = &self.stdout.writer;
        self.trace
            .stdout_flow(id, true, writer.unwritten(), writer.budget());
    }

    /// On a wake-up: if the queue has drained to half, the paused clients
    /// are read again (at once: edge-triggered, what arrived meanwhile
    /// raises no event); if not, the writer wakes the loop again later.
    pub(super) fn resume_after_stdout(&mut self) {
        if self.stdout.paused.is_empty() || !self.stdout.writer.room_or_notify(&self.stdout.waiter)
        {
            return;
        }
        let unwritten = self.stdout.writer.unwritten();
        for (key, id) in std::mem::take(&mut self.stdout.paused) {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if conn.id != id || !conn.gates.by_stdout {
                continue;
            }
            conn.gates.by_stdout = false;
            self.trace
                .stdout_flow(id, false, unwritten, self.stdout.writer.budget());
            if conn.may_read() {
                self.ready.push_back((key, id));
            }
        }
    }

    /// Wakes the stdout writer for what this pass queued: before the loop
    /// polls, so nothing queued waits for an event that may never come.
    pub(super) fn kick_stdout(&mut self) {
        if std::mem::take(&mut self.stdout.unkicked) {
            self.stdout.writer.kick();
        }
    }

    /// Counts a shutdown signal for the stdout wait.
    pub(super) fn stdout_signal(&mut self, now: Instant) {
        self.stdout.flush.on_signal(now, self.config.drain_timeout);
    }

    /// Whether the loop may end as far as stdout goes (see
    /// [`FlushDeadline::settled`]); if not, the writer wakes the loop once
    /// the queue is written.
    pub(super) fn stdout_settled(&self, now: Instant) -> bool {
        self.stdout
            .flush
            .settled(&self.stdout.writer, now, &self.stdout.waiter)
    }
}
