//! The reactor's per-connection timers (idle flush, linger) and every way a
//! connection ends: a graceful close (flush, FIN, linger), a drop, and
//! shutdown's close of everyone.

use std::cmp::Reverse;
use std::io::{self, Read};
use std::net::Shutdown;
use std::time::Instant;

use super::Reactor;
use super::conn::{ConnState, Drain};
use crate::server::lifecycle::Phase;
use crate::server::session::{LINGER, MAX_FINAL_READ_BYTES, MAX_LINGER_DISCARD_BYTES};
use crate::status;

impl Reactor {
    /// Idle flushes and linger ends that are due at `now`.
    pub(super) fn handle_timers(&mut self, now: Instant) {
        while let Some(&Reverse((due, key, id))) = self.idle_queue.peek() {
            if due > now {
                break;
            }
            self.idle_queue.pop();
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if conn.id != id || conn.state != ConnState::Open {
                continue;
            }
            match conn.session.idle_deadline() {
                Some(deadline) if deadline <= now => {
                    self.trace.idle_flush(id);
                    self.flush_partial(key);
                    self.mark_dirty(key);
                }
                Some(later) => self.idle_queue.push(Reverse((later, key, id))),
                None => {}
            }
        }
        while let Some(&Reverse((due, key, id))) = self.linger_queue.peek() {
            if due > now {
                break;
            }
            self.linger_queue.pop();
            if self.conns.get(key).is_some_and(|c| c.id == id) {
                self.kill(key);
            }
        }
    }

    /// Tells the handler the client is gone, once.
    pub(super) fn client_gone(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if conn.handler_knows {
            conn.handler_knows = false;
            let id = conn.id;
            self.handler.on_disconnect(id, &mut self.outbox);
            self.apply_actions();
        }
    }

    /// No more input is handled; output is flushed, then the connection
    /// lingers and closes.
    pub(super) fn start_closing(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if conn.state == ConnState::Open {
            conn.state = ConnState::Closing;
            self.trace.closing(conn.id);
            conn.session.discard_deadline();
            self.mark_dirty(key);
        }
    }

    /// Everything is out: send our FIN, then wait for theirs.
    pub(super) fn start_lingering(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        // What it sent is durable now (`flush_dirty` syncs first): the FIN
        // may acknowledge it, and the close after it is a plain one.
        if self.durable.is_on() {
            let _ = crate::net::set_reset_on_close(&conn.stream, false);
        }
        let _ = conn.stream.shutdown(Shutdown::Write);
        self.trace.lingering(conn.id);
        let mut until = Instant::now() + LINGER;
        if let Phase::Closing { until: end } = self.life.phase() {
            until = until.min(end);
        }
        conn.state = ConnState::Lingering { until };
        self.linger_queue.push(Reverse((until, key, conn.id)));
        self.discard_input(key);
    }

    /// Reads and drops input from a closing client (see [`LINGER`]).
    pub(super) fn discard_input(&mut self, key: usize) {
        loop {
            let conn = &mut self.conns[key];
            if conn.discarded > MAX_LINGER_DISCARD_BYTES {
                self.kill(key);
                return;
            }
            match conn.stream.read(&mut self.scratch) {
                Ok(0) => {
                    if matches!(conn.state, ConnState::Lingering { .. }) {
                        self.kill(key);
                    }
                    return;
                }
                Ok(n) => conn.discarded += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.kill(key);
                    return;
                }
            }
        }
    }

    /// Drops a client at once (I/O error, too slow): queued output is lost.
    /// `why`: the diagnostic, unless the caller printed one already.
    pub(super) fn drop_client(&mut self, key: usize, why: &str) {
        if !why.is_empty() {
            status::dropped_error(self.conns[key].id, &why);
        }
        self.conns[key].session.discard();
        self.client_gone(key);
        self.kill(key);
    }

    /// Marks the connection for removal after this pass.
    pub(super) fn kill(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if conn.state != ConnState::Dead {
            conn.state = ConnState::Dead;
            conn.out.clear();
            self.dead.push(key);
        }
    }

    /// Removes dead connections (deferred so a key is never reused within
    /// the batch of events that may still name it).
    pub(super) fn reap(&mut self) {
        for key in std::mem::take(&mut self.dead) {
            let mut conn = self.conns.remove(key);
            // Deregister before the stream is dropped (closed).
            let _ = self.poll.registry().deregister(&mut conn.stream);
            self.keys.remove(&conn.id);
            self.trace.closed(conn.id);
            self.member.leave(conn.id);
        }
    }

    /// Closes every client: what is already in the kernel is read and
    /// handled first (no complete line received is lost), then queued output
    /// is flushed. `cut`: an unfinished line is dropped and counted (end of
    /// a drain) rather than handled as a last message.
    pub(super) fn close_all(&mut self, cut: bool) {
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        let mut cut_clients = 0u64;
        for key in keys {
            let conn = &mut self.conns[key];
            if conn.state != ConnState::Open {
                continue;
            }
            if conn.may_read() {
                self.read_available(key, MAX_FINAL_READ_BYTES, Drain::ToEnd);
            }
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if conn.state != ConnState::Open {
                continue;
            }
            if cut {
                if conn.session.cut(conn.gates.by_handler) {
                    cut_clients += 1;
                }
            } else {
                self.flush_partial(key);
            }
            // Every client is going, and the handler heard so in
            // `on_shutdown`: telling it one by one would only make presence
            // broadcast lists nobody will read.
            if let Some(conn) = self.conns.get_mut(key) {
                conn.handler_knows = false;
            }
            self.start_closing(key);
        }
        if cut_clients > 0 {
            self.stats.cut_partial_lines += cut_clients;
            status::cut_partial_lines(cut_clients);
        }
    }
}
