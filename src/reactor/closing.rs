//! The reactor's per-connection timers (idle flush, linger) and every way a
//! connection ends: a graceful close (flush, FIN, linger), a drop, and
//! shutdown's close of everyone. The rules are
//! [`Ending`](crate::server_core::ending::Ending)'s; this carries out its steps
//! on the socket.

use std::cmp::Reverse;
use std::io::{self, Read};
use std::net::Shutdown;
use std::time::Instant;

use super::Reactor;
use super::conn::Drain;
use crate::server_core::ending::{Cause, Step, Steps};
use crate::server_core::lifecycle::Phase;
use crate::server_core::session::MAX_FINAL_READ_BYTES;
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
            if conn.id != id || !conn.ending.is_open() {
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
            if let Some(conn) = self.conns.get_mut(key)
                && conn.id == id
            {
                let steps = conn.ending.handle_timeout(now);
                self.carry_out(key, steps);
            }
        }
    }

    /// The connection ends for `cause` (see
    /// [`Ending::close`](crate::server_core::ending::Ending::close)).
    pub(super) fn end_conn(&mut self, key: usize, cause: Cause) {
        let steps = self.conns[key].ending.close(cause);
        self.carry_out(key, steps);
    }

    /// Everything queued for the connection is written: a closing one
    /// sends its FIN and lingers, no longer than shutdown's flush.
    pub(super) fn flushed(&mut self, key: usize) {
        let cap = match self.life.phase() {
            Phase::Closing { until } => Some(until),
            _ => None,
        };
        let steps = self.conns[key].ending.flushed(Instant::now(), cap);
        self.carry_out(key, steps);
    }

    /// Does what the connection's ending asked for.
    fn carry_out(&mut self, key: usize, steps: Steps) {
        for step in steps {
            let conn = &mut self.conns[key];
            match step {
                Step::TellHandler => {
                    let id = conn.id;
                    self.handler.on_disconnect(id, &mut self.outbox);
                    self.apply_actions();
                }
                Step::Flush => {
                    self.trace.closing(conn.id);
                    conn.session.discard_deadline();
                    self.mark_dirty(key);
                }
                Step::ShutWrite { until } => {
                    // What it sent is durable now (`flush_dirty` syncs
                    // first): the FIN may acknowledge it, and the close
                    // after it is a plain one.
                    if self.durable.is_on() {
                        let _ = crate::net::set_reset_on_close(&conn.stream, false);
                    }
                    let _ = conn.stream.shutdown(Shutdown::Write);
                    self.trace.lingering(conn.id);
                    self.linger_queue.push(Reverse((until, key, conn.id)));
                    self.discard_input(key);
                }
                Step::CloseNow => {
                    conn.out.clear();
                    self.dead.push(key);
                }
            }
        }
    }

    /// Reads and drops input from a closing client (see
    /// [`crate::server_core::session::LINGER`]).
    pub(super) fn discard_input(&mut self, key: usize) {
        loop {
            let conn = &mut self.conns[key];
            let steps = match conn.stream.read(&mut self.scratch) {
                Ok(0) => {
                    let steps = conn.ending.peer_closed();
                    self.carry_out(key, steps);
                    return;
                }
                Ok(n) => conn.ending.discarded(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => conn.ending.close(Cause::Dropped),
            };
            if !steps.is_empty() {
                self.carry_out(key, steps);
                return;
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
        self.end_conn(key, Cause::Dropped);
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
            if !conn.ending.is_open() {
                continue;
            }
            if conn.may_read() {
                self.read_available(key, MAX_FINAL_READ_BYTES, Drain::ToEnd);
            }
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if !conn.ending.is_open() {
                continue;
            }
            if cut {
                if conn.session.cut(conn.gates.by_handler) {
                    cut_clients += 1;
                }
            } else {
                self.flush_partial(key);
            }
            // The handler heard of it in `on_shutdown`.
            self.end_conn(key, Cause::Shutdown { cut });
        }
        if cut_clients > 0 {
            self.stats.cut_partial_lines += cut_clients;
            status::cut_partial_lines(cut_clients);
        }
    }
}
