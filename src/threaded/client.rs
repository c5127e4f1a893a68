//! One connection of the threaded server: its shared state, how another
//! thread stops it, and its writer thread.

use std::io::{self, Read};
use std::net::{Shutdown, TcpStream};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::lock;
use crate::handlers::{ClientId, SlowPolicy};
use crate::limits::output_total::{OutputTotal, RECHECK};
use crate::outbuf::OutBuf;
use crate::server_core::ending::{Cause, Ending, Step};
use crate::server_core::session::{Flow, Gates};
use crate::status;
use crate::trace::Trace;

/// While lingering on a socket whose read side we shut ourselves (reads
/// return 0 at once then, the peer's FIN or not), how often to look again.
const LINGER_POLL: Duration = Duration::from_millis(10);

/// One connection, shared by its reader, its writer, the handler lock's
/// registry and the supervisor.
pub(super) struct Client {
    pub(super) id: ClientId,
    /// Read by the reader, written by the writer (`&TcpStream` is both), shut
    /// down by whoever must wake them.
    pub(super) stream: TcpStream,
    /// `--max-pending` and the handler's policy, copied here for the writer.
    pub(super) max_pending: usize,
    pub(super) slow_policy: SlowPolicy,
    /// `--max-output-total`: the server's, which its output is charged to.
    pub(super) output_total: OutputTotal,
    pub(super) state: Mutex<ClientState>,
    /// The reader waits here while paused.
    pub(super) readable: Condvar,
    /// The writer waits here for output.
    pub(super) writable: Condvar,
    /// `--trace` (the server's, shared).
    pub(super) trace: Trace,
}

pub(super) struct ClientState {
    /// Output queued and not yet taken by the writer.
    pub(super) out: OutBuf,
    /// Bytes the writer took and has not written yet: counted for
    /// `--max-pending` with `out`.
    pub(super) in_flight: usize,
    /// Why the reader must not read (handler, `--max-pending`).
    pub(super) gates: Gates,
    /// Why reading must end, set by another thread; `None` while serving.
    /// (The reader passes it on to the registry's [`Ending`] when it ends.)
    pub(super) stop: Option<Cause>,
    /// No more output will be queued: the writer flushes, sends FIN, exits.
    pub(super) output_closed: bool,
    /// Output is thrown away and the writer exits at once.
    pub(super) dead: bool,
    /// The writer thread, once output was first queued.
    pub(super) writer: Option<JoinHandle<bool>>,
    /// `SO_LINGER` is {on, 0}: the server has a store and this client's
    /// input is not known durable yet, so no FIN may go out (see
    /// [`crate::net::set_reset_on_close`]); cleared by [`Client::allow_fin`].
    pub(super) reset_on_close: bool,
    /// The reader waits because the output total is over and this client
    /// has output queued: the writer wakes it when that output is gone.
    pub(super) held_by_total: bool,
}

impl ClientState {
    /// A new client's state, its output charged to `total`.
    pub(super) fn new(total: &OutputTotal) -> Self {
        ClientState {
            out: OutBuf::counted(total.clone()),
            in_flight: 0,
            gates: Gates::default(),
            stop: None,
            output_closed: false,
            dead: false,
            writer: None,
            reset_on_close: false,
            held_by_total: false,
        }
    }

    /// Output queued or being written.
    /// Output queued or being written by the writer thread.
    fn output_len(&self) -> usize {
        self.out.pending() + self.in_flight
    }
}

/// What a reader may do next.
pub(super) enum Gate {
    Read,
    /// Shutdown: read what is left (the socket's read side is shut, so reads
    /// no longer block), then end.
    FinalRead {
        cut: bool,
    },
    /// Paused past the idle deadline: the unfinished line is a message.
    IdleDue,
    /// The connection ends (see [`Ending`]).
    End(Cause),
}

impl Client {
    pub(super) fn state(&self) -> MutexGuard<'_, ClientState> {
        lock(&self.state)
    }

    /// Waits until the reader may go on. `holding`: the reader has bytes in
    /// hand already (they are handled at shutdown unless the handler paused
    /// the client, like bytes a paused reactor connection leaves unread).
    pub(super) fn gate(&self, idle_deadline: Option<Instant>, holding: bool) -> Gate {
        let mut st = self.state();
        loop {
            // `--max-output-total`: not read while it has output queued
            // (bytes already in hand are handled).
            let held = !holding && self.output_total.holds(st.output_len());
            let newly_held = held && !st.held_by_total;
            st.held_by_total = held;
            match st.stop {
                Some(Cause::Shutdown { cut }) => {
                    let paused = st.gates.by_handler
                        || ((st.gates.by_output || st.gates.by_stdout) && !holding)
                        || held;
                    return if paused {
                        Gate::End(Cause::Shutdown { cut })
                    } else {
                        Gate::FinalRead { cut }
                    };
                }
                Some(stop) => return Gate::End(stop),
                None => {}
            }
            let paused = !st.gates.open();
            if !paused && !held {
                return Gate::Read;
            }
            if paused {
                self.trace.waiting(self.id);
            } else if newly_held {
                self.trace.total_held(self.id);
            }
            // Held by the total: look again every RECHECK (the fall of the
            // total, caused by any client, wakes no one's condvar).
            let recheck = held.then_some(RECHECK);
            let idle = match idle_deadline {
                Some(deadline) => {
                    let now = Instant::now();
                    if deadline <= now {
                        return Gate::IdleDue;
                    }
                    Some(deadline - now)
                }
                None => None,
            };
            st = match recheck.into_iter().chain(idle).min() {
                Some(timeout) => {
                    self.readable
                        .wait_timeout(st, timeout)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => self
                    .readable
                    .wait(st)
                    .unwrap_or_else(PoisonError::into_inner),
            };
        }
    }

    /// Sets `stop` (unless a stronger one is set: see
    /// [`Cause::is_graceful`]) and wakes the reader.
    pub(super) fn request_stop(&self, st: &mut ClientState, stop: Cause) {
        let replace = match st.stop {
            None => true,
            Some(set) => set.is_graceful() && !stop.is_graceful(),
        };
        if replace {
            st.stop = Some(stop);
        }
        self.readable.notify_all();
    }

    /// An I/O error on this client: true for the first to report one (it
    /// prints the diagnostic), false if the client was already being
    /// dropped for another reason (one diagnostic per dropped client).
    pub(super) fn claim_failure(&self, st: &mut ClientState) -> bool {
        let first = !st.dead && st.stop.is_none_or(Cause::is_graceful);
        if first {
            self.request_stop(st, Cause::Dropped);
        }
        first
    }

    /// Throws queued output away and shuts the socket, waking a reader
    /// blocked in `read` and a writer blocked in `write`.
    pub(super) fn kill(&self, stop: Cause) {
        let mut st = self.state();
        self.request_stop(&mut st, stop);
        st.dead = true;
        st.out.clear();
        self.writable.notify_all();
        // A connection whose input is not durable yet gets no FIN here: its
        // reader may hold bytes it now drops, and a FIN would acknowledge
        // them. Shutting the read side wakes the reader; the close then
        // resets. A writer blocked in `write` needs the write side shut (a
        // FIN): only the atm's clients have writers while armed, and the
        // atm acknowledges with replies, not with its close.
        let how = if st.reset_on_close && st.writer.is_none() {
            Shutdown::Read
        } else {
            Shutdown::Both
        };
        drop(st);
        let _ = self.stream.shutdown(how);
    }

    /// Everything this client sent that the server took in is durable: a
    /// FIN may go out from now on (clears [`ClientState::reset_on_close`]).
    pub(super) fn allow_fin(&self) {
        let mut st = self.state();
        if st.reset_on_close {
            st.reset_on_close = false;
            // Cannot fail on a socket we hold; were it to, the close after
            // our FIN would reset, which loses nothing durable.
            let _ = crate::net::set_reset_on_close(&self.stream, false);
        }
    }

    /// No more output: lets the writer flush and send our FIN. Returns
    /// whether everything went out and the FIN was sent.
    pub(super) fn close_output(&self) -> bool {
        let writer = {
            let mut st = self.state();
            if st.dead {
                return false;
            }
            st.output_closed = true;
            self.writable.notify_all();
            st.writer.take()
        };
        match writer {
            Some(writer) => writer.join().unwrap_or(false),
            // Nothing was ever queued; `output_closed` keeps it that way.
            None => self.stream.shutdown(Shutdown::Write).is_ok(),
        }
    }

    /// The store failed: no FIN may go out (it could read as "all you sent
    /// is safe"). Output stops; the socket is reset when the process exits.
    pub(super) fn abandon(&self) {
        let _ = crate::net::set_reset_on_close(&self.stream, true);
        let mut st = self.state();
        st.reset_on_close = true;
        st.dead = true;
        st.out.clear();
        self.writable.notify_all();
    }

    /// Output queued or being written that has not reached the socket; 0
    /// once the connection is dead (its loss was already said).
    pub(super) fn unsent(&self) -> usize {
        let st = self.state();
        if st.dead {
            0
        } else {
            st.out.pending() + st.in_flight
        }
    }

    /// Shutdown's time ran out: kills the connection, naming the client if
    /// that cuts output off (SPEC: nothing lost without a word).
    pub(super) fn kill_at_shutdown(&self) {
        let unsent = self.unsent();
        if unsent > 0 {
            crate::status::killed_with_output(self.id, unsent);
        }
        self.kill(Cause::Killed);
    }

    /// Kills the connection and waits for its writer.
    pub(super) fn kill_and_join(&self, stop: Cause) {
        self.kill(stop);
        let writer = self.state().writer.take();
        if let Some(writer) = writer {
            let _ = writer.join();
        }
    }

    /// Our FIN is out: reads and drops input until `ending` says the
    /// connection is done (the client closed too, its linger passed, or it
    /// sent too much). `read_shut`: we shut the read side ourselves
    /// (shutdown), so a read of 0 does not prove the client closed: keep
    /// looking until the linger ends (closing with its bytes unread would
    /// reset it).
    pub(super) fn linger(&self, mut ending: Ending, read_shut: bool) {
        let Some(Step::ShutWrite { until }) =
            ending.flushed(Instant::now(), None).into_iter().next()
        else {
            return;
        };
        let mut buf = [0u8; 1024];
        loop {
            let now = Instant::now();
            if !ending.handle_timeout(now).is_empty()
                || self.stream.set_read_timeout(Some(until - now)).is_err()
            {
                return;
            }
            let steps = match (&self.stream).read(&mut buf) {
                // Killed meanwhile (shutdown's time ran out): stop here.
                Ok(0) if read_shut && self.state().dead => return,
                Ok(0) if read_shut => {
                    std::thread::sleep(LINGER_POLL.min(until - now));
                    continue;
                }
                Ok(0) => ending.peer_closed(),
                Ok(n) => ending.discarded(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return, // timeout, reset
            };
            if !steps.is_empty() {
                return;
            }
        }
    }

    /// The writer thread's loop: takes the whole queue, writes it (blocking),
    /// repeats; after `output_closed` and an empty queue, sends FIN. Returns
    /// whether it ended with everything written and the FIN sent.
    pub(super) fn write_loop(&self) -> bool {
        let mut local = OutBuf::counted(self.output_total.clone());
        loop {
            if local.is_empty() {
                let mut st = self.state();
                loop {
                    if st.dead {
                        return false;
                    }
                    if !st.out.is_empty() {
                        // Double buffering: enqueuers keep appending to the
                        // (emptied, allocation-keeping) other buffer.
                        std::mem::swap(&mut st.out, &mut local);
                        st.in_flight = local.pending();
                        break;
                    }
                    if st.output_closed {
                        drop(st);
                        return self.stream.shutdown(Shutdown::Write).is_ok();
                    }
                    st = self
                        .writable
                        .wait(st)
                        .unwrap_or_else(PoisonError::into_inner);
                }
            }
            // A blocking socket returns only when all is written or on error.
            let queued = local.pending();
            self.trace.writing(self.id, queued);
            let result = local.flush_to(&mut &self.stream, usize::MAX);
            self.trace.wrote(self.id, queued, local.pending());
            let mut st = self.state();
            st.in_flight = local.pending();
            match result {
                Ok(_) => {
                    let pending = st.out.pending() + st.in_flight;
                    let was_paused = st.gates.by_output;
                    // Drops are decided where output is queued.
                    let flow = st
                        .gates
                        .on_output(pending, self.max_pending, self.slow_policy);
                    let paused = st.gates.by_output;
                    self.trace
                        .flow(self.id, was_paused, paused, pending, self.max_pending);
                    // Its output all went out: a reader held by the total
                    // may read again.
                    if flow == Flow::Resume || (pending == 0 && st.held_by_total) {
                        self.readable.notify_all();
                    }
                    if pending == 0 {
                        // Going idle: give the chunks back.
                        local.shrink();
                        st.out.shrink();
                    }
                }
                Err(e) => {
                    let first = self.claim_failure(&mut st);
                    drop(st);
                    if first {
                        status::dropped_error(self.id, &e);
                        self.kill(Cause::Dropped);
                    }
                    return false;
                }
            }
        }
    }
}
