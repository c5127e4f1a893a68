//! The reactor's output: carrying out the handler's actions, flushing
//! connections that got output, the slow-client rule, write interest.

use mio::{Interest, Token};

use super::Reactor;
use crate::handlers::ClientId;
use crate::outbuf::Flushed;
use crate::server::actions::{self, Bytes, Clients};
use crate::server::ending::{Cause, Stage};
use crate::server::session::Flow;
use crate::status;

/// Bytes written to one connection before others get a turn.
const MAX_WRITE_PER_WAKEUP_BYTES: usize = 1024 * 1024;

impl Reactor {
    /// Carries out what the handler left in the outbox (see
    /// [`actions`]). Output is only queued here; it is written in
    /// [`Reactor::flush_dirty`].
    pub(super) fn apply_actions(&mut self) {
        if self.outbox.is_empty() {
            return;
        }
        self.trace
            .actions(self.current.map(|(id, _)| id), &self.outbox);
        let outbox = std::mem::take(&mut self.outbox);
        if let Err(e) = actions::persist(&outbox, &mut self.durable) {
            self.fatal.get_or_insert(e);
        }
        actions::to_clients(&outbox, self);
        // Queued for the stdout writer; a full queue pauses the sender.
        self.print(&outbox);
        self.outbox = outbox;
        self.outbox.clear();
    }

    /// The slab key of a client that can still take output.
    fn live_key(&self, id: ClientId) -> Option<usize> {
        let key = match self.current {
            Some((current, key)) if current == id => key,
            _ => *self.keys.get(&id)?,
        };
        match self.conns.get(key) {
            Some(conn) if conn.id == id && conn.ending.takes_output() => Some(key),
            _ => None,
        }
    }

    pub(super) fn mark_dirty(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push_back(key);
        }
    }

    /// Like [`Reactor::mark_dirty`], but flushed before the others: the
    /// client that spoke gets its answer first (a presence newcomer its list
    /// before the other 999), then everyone else in the order addressed.
    /// The caller checks it is not dirty yet (it would be queued twice).
    fn mark_dirty_first(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        debug_assert!(!conn.dirty);
        conn.dirty = true;
        self.dirty.push_front(key);
    }

    /// Writes out every connection that got output this pass, applies
    /// `--max-pending`, moves closing connections along, and keeps each
    /// connection's registered interest in step with its output.
    pub(super) fn flush_dirty(&mut self) {
        let mut deferred = Vec::new();
        // Handling one connection can dirty others (a dropped presence
        // client makes a broadcast), hence the loop.
        while let Some(key) = self.dirty.pop_front() {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            conn.dirty = false;
            if conn.ending.is_dead() {
                continue;
            }
            // SPEC's durability rule: no byte and no FIN goes out before
            // what was persisted ahead of it is durable. One sync covers
            // every connection after it in this pass; a pass that only reads
            // (a ledger blast) syncs nothing.
            if self.durable.owes_sync()
                && (!conn.out.is_empty() || conn.ending.stage() == Stage::Closing)
                && let Err(e) = self.durable.sync_before_output()
            {
                self.fatal.get_or_insert(e);
            }
            if self.fatal.is_some() {
                // The store failed: nothing more goes out (see `run`).
                return;
            }
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            let queued = conn.out.pending();
            let flushed = match conn
                .out
                .flush_to(&mut conn.stream, MAX_WRITE_PER_WAKEUP_BYTES)
            {
                Ok(flushed) => flushed,
                Err(e) => {
                    self.drop_client(key, &e.to_string());
                    continue;
                }
            };
            self.trace.wrote(conn.id, queued, conn.out.pending());
            if flushed == Flushed::Budget {
                deferred.push(key);
            }
            self.after_flush(key);
            if let Some(conn) = self.conns.get_mut(key)
                && !conn.ending.is_dead()
            {
                self.update_interest(key);
            }
        }
        for key in deferred {
            if self.conns.get(key).is_some_and(|c| !c.ending.is_dead()) {
                self.mark_dirty(key);
            }
        }
    }

    /// Slow-client policy and closing, once output was written.
    fn after_flush(&mut self, key: usize) {
        let max = self.config.max_pending_bytes;
        let conn = &mut self.conns[key];
        let pending = conn.out.pending();
        match conn.ending.stage() {
            Stage::Open => {
                let was_paused = conn.gates.by_output;
                let flow = conn.gates.on_output(pending, max, self.slow_policy);
                let paused = conn.gates.by_output;
                self.trace.flow(conn.id, was_paused, paused, pending, max);
                match flow {
                    Flow::Steady => {}
                    Flow::Resume => self.ready.push_back((key, conn.id)),
                    Flow::Drop => {
                        status::dropped_slow(conn.id, pending, max);
                        self.drop_client(key, "");
                        return;
                    }
                }
                if pending == 0 {
                    self.conns[key].out.shrink();
                }
            }
            Stage::Closing if pending == 0 => self.flushed(key),
            _ => {}
        }
    }

    /// Registers WRITABLE exactly while output is queued (STYLE §3.3).
    fn update_interest(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        let wanted = if conn.out.is_empty() {
            Interest::READABLE
        } else {
            Interest::READABLE | Interest::WRITABLE
        };
        if wanted != conn.interest {
            match self
                .poll
                .registry()
                .reregister(&mut conn.stream, Token(key), wanted)
            {
                Ok(()) => {
                    conn.interest = wanted;
                    self.trace.interest(conn.id, wanted.is_writable());
                }
                Err(e) => self.drop_client(key, &format!("reregister: {e}")),
            }
        }
    }
}

impl Clients for Reactor {
    fn send(&mut self, to: ClientId, bytes: Bytes<'_>) {
        let Some(key) = self.live_key(to) else {
            if let Some(udp) = self.udp.as_mut() {
                udp.send(to, bytes.as_slice());
            }
            return;
        };
        let conn = &mut self.conns[key];
        match bytes {
            Bytes::Shared(buf) => conn.out.push_shared(buf),
            Bytes::Slice(slice) => conn.out.push_slice(slice),
        }
        if self.current.is_some_and(|(id, _)| id == to) && !conn.dirty {
            self.mark_dirty_first(key);
        } else {
            self.mark_dirty(key);
        }
    }

    fn close(&mut self, id: ClientId) {
        if let Some(key) = self.live_key(id) {
            self.end_conn(key, Cause::HandlerClosed);
        } else {
            self.udp_close(id);
        }
    }

    fn pause(&mut self, id: ClientId, paused: bool) {
        if let Some(key) = self.live_key(id) {
            self.conns[key].gates.by_handler = paused;
            if !paused {
                // Edge-triggered: what arrived during the pause raised no
                // event we acted on, so read now.
                self.ready.push_back((key, id));
            }
        }
    }
}
