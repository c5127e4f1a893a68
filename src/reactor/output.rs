//! The reactor's output: carrying out the handler's actions, flushing
//! connections that got output, the slow-client rule, `--max-output-total`
//! (whom this loop holds back, and the largest holder a dropping handler
//! drops), write interest.

use std::collections::HashMap;
use std::time::Instant;

use mio::{Interest, Token};

use super::Reactor;
use crate::handlers::{ClientId, SlowPolicy};
use crate::limits::output_total::{self, OutputTotal, RECHECK};
use crate::outbuf::Flushed;
use crate::server_core::actions::{self, Bytes, Clients};
use crate::server_core::ending::{Cause, Stage};
use crate::server_core::session::Flow;
use crate::status;

/// Bytes written to one connection before others get a turn.
const MAX_WRITE_PER_WAKEUP_BYTES: usize = 1024 * 1024;

/// `--max-output-total` as one loop sees it (see
/// [`crate::limits::output_total`]).
pub(super) struct TotalGate {
    /// The process's total (shared by every loop).
    pub(super) total: OutputTotal,
    /// Connections not read from because the total is over while they have
    /// output queued, by slab key (with the id, since a key is reused). Each
    /// is resumed when the total falls back, or when its own output has all
    /// gone out (a client with nothing queued is served).
    held: HashMap<usize, ClientId>,
}

impl TotalGate {
    pub(super) fn new(total: OutputTotal) -> Self {
        TotalGate {
            total,
            held: HashMap::new(),
        }
    }

    /// Whether a connection with `pending` bytes queued must not be read
    /// from now; if so it is held.
    pub(super) fn holds(&mut self, key: usize, id: ClientId, pending: usize) -> bool {
        if !self.total.holds(pending) {
            return false;
        }
        self.held.insert(key, id);
        true
    }

    /// Stops holding `key` (its output has all gone out), if it was held.
    /// Nothing is hashed while no one is held: this runs for every
    /// connection that empties its output, on every loop pass.
    fn release(&mut self, key: usize) -> Option<ClientId> {
        if self.held.is_empty() {
            return None;
        }
        self.held.remove(&key)
    }

    /// When to look at the total again while holding connections back:
    /// the fall wakes the loop, this bounds the wait if a wake was missed.
    pub(super) fn recheck_at(&self, now: Instant) -> Option<Instant> {
        (!self.held.is_empty()).then(|| now + RECHECK)
    }
}

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
        loop {
            self.flush_dirty_once();
            // A dropped holder's goodbye (presence's new list) is more
            // output: flush it, then look at the total again.
            if self.fatal.is_some() || !self.drop_largest_holder() {
                break;
            }
        }
        self.release_held();
    }

    /// Resumes every connection held back by the total once it is back
    /// under half (this loop's flush, or another loop's, which wakes this
    /// one, brought it down): read at once, since no new edge comes for
    /// what waited in the kernel.
    pub(super) fn release_held(&mut self) {
        if self.total_gate.held.is_empty() || self.total_gate.total.holds_back() {
            return;
        }
        self.trace.total_released(self.total_gate.held.len());
        self.ready.extend(self.total_gate.held.drain());
    }

    /// Over `--max-output-total` under [`SlowPolicy::Disconnect`]
    /// (presence): drops the connection of this loop with the most output
    /// queued, as too slow. Returns whether one was dropped.
    fn drop_largest_holder(&mut self) -> bool {
        if self.slow_policy != SlowPolicy::Disconnect || !self.total_gate.total.over_limit() {
            return false;
        }
        let largest = self
            .conns
            .iter()
            .filter(|(_, c)| matches!(c.ending.stage(), Stage::Open | Stage::Closing))
            .map(|(key, c)| (c.out.pending(), key))
            .max();
        let Some((pending, key)) = largest.filter(|&(pending, _)| pending > 0) else {
            return false;
        };
        output_total::dropped_largest(self.conns[key].id, pending, &self.total_gate.total);
        self.drop_client(key, "");
        true
    }

    /// One round of [`Reactor::flush_dirty`].
    fn flush_dirty_once(&mut self) {
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
                    // Nothing queued: it may be read again, over or not.
                    if let Some(id) = self.total_gate.release(key) {
                        self.ready.push_back((key, id));
                    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_connection_with_output_queued_is_held_and_only_while_over() {
        let total = OutputTotal::new(100);
        let mut gate = TotalGate::new(total.clone());
        let now = Instant::now();
        assert!(!gate.holds(1, ClientId(1), 10), "under the limit");
        assert_eq!(gate.recheck_at(now), None);
        total.add(101);
        assert!(!gate.holds(2, ClientId(2), 0), "nothing queued: served");
        assert!(gate.holds(1, ClientId(1), 10));
        assert_eq!(gate.held.get(&1), Some(&ClientId(1)));
        assert_eq!(gate.recheck_at(now), Some(now + RECHECK));
        total.sub(51);
        assert!(!gate.holds(3, ClientId(3), 10), "back to half");
    }
}
