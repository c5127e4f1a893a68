//! Carrying out a handler's actions in the threaded server: the part that
//! touches shared state under the handler lock (output queues, pauses,
//! closes, persisted bytes), and the part done after it is released
//! (stdout, diagnostics).

use std::io;
use std::net::Shutdown;
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use super::client::Client;
use super::{Core, Server, lock};
use crate::handlers::{ClientId, Handler, Outbox, SlowPolicy};
use crate::limits::output_total;
use crate::server_core::actions::{self, Bytes, Clients};
use crate::server_core::ending::Cause;
use crate::server_core::session::Flow;
use crate::status;
use crate::stdout::Waiter;

/// Writer stacks: they only copy slices into `writev`.
const WRITER_STACK_BYTES: usize = 64 * 1024;

impl Server {
    /// Calls the handler with this thread's outbox, carries out what touches
    /// shared state, unlocks, then does the I/O part. `actor`: the client
    /// whose reader is calling (its own socket need not be shut to wake it).
    pub(super) fn with_handler<R>(
        &self,
        actor: Option<ClientId>,
        out: &mut Outbox,
        call: impl FnOnce(&mut dyn Handler, &mut Outbox) -> R,
    ) -> R {
        self.with_handler_and_peers(actor, out, &mut NoPeers, call)
    }

    /// [`Server::with_handler`], the actions that name no TCP client going
    /// to `peers` (the `--udp` socket's peers).
    pub(super) fn with_handler_and_peers<R>(
        &self,
        actor: Option<ClientId>,
        out: &mut Outbox,
        peers: &mut dyn Clients,
        call: impl FnOnce(&mut dyn Handler, &mut Outbox) -> R,
    ) -> R {
        let mut core = self.core();
        out.set_now(Instant::now());
        let result = call(&mut *core.handler, out);
        self.trace.actions(actor, out);
        if self.persist(out) {
            self.apply_to(&mut core, out, actor, peers);
        }
        drop(core);
        self.carry_out_unlocked(out, actor);
        out.clear();
        result
    }

    /// The durability rule (see [`crate::server_core::durable`]), under the
    /// handler lock: the actions' persisted bytes go to the store in the
    /// order they were produced, and if any output follows them (here, or
    /// owed from earlier calls), they are synced before it is queued.
    /// Returns false if the store failed: nothing of this call may be
    /// carried out.
    pub(super) fn persist(&self, out: &Outbox) -> bool {
        if !self.persisting {
            return true;
        }
        let mut durable = lock(&self.durable);
        let mut result = actions::persist(out, &mut durable);
        if result.is_ok() {
            result = durable.put();
        }
        if result.is_ok() && actions::sends(out) {
            result = durable.sync_before_output();
        }
        match result {
            Ok(()) => true,
            Err(e) => {
                self.fail(e);
                false
            }
        }
    }

    /// Before a FIN: makes what was persisted durable. False if the store
    /// failed (the client must be reset, not closed).
    pub(super) fn sync_before_fin(&self) -> bool {
        if !self.persisting {
            return true;
        }
        let result = lock(&self.durable).sync_before_output();
        match result {
            Ok(()) => true,
            Err(e) => {
                self.fail(e);
                false
            }
        }
    }

    /// The store failed: the supervisor resets every client and stops.
    fn fail(&self, e: io::Error) {
        lock(&self.fatal).get_or_insert(e);
        let _ = self.waker.wake();
    }

    /// Carries out the actions that touch shared state (output queues,
    /// pauses, closes) while the handler lock is held, so broadcasts are
    /// queued to everyone in one order. The caller has carried out the
    /// `Persist` actions first ([`Server::persist`]). Stdout and diagnostics are left for
    /// [`Server::carry_out_unlocked`].
    pub(super) fn apply(&self, core: &mut Core, out: &Outbox, actor: Option<ClientId>) {
        self.apply_to(core, out, actor, &mut NoPeers);
    }

    /// [`Server::apply`], with the `--udp` peers.
    fn apply_to(
        &self,
        core: &mut Core,
        out: &Outbox,
        actor: Option<ClientId>,
        peers: &mut dyn Clients,
    ) {
        let mut dropped = Vec::new();
        self.apply_locked(core, out, actor, &mut dropped, peers);
        // Drops under SlowPolicy::Disconnect: tell the handler, whose
        // answer (the new presence list) may drop more.
        let mut extra = Outbox::new();
        loop {
            let (id, pending, over_total) = match dropped.pop() {
                Some((id, pending)) => (id, pending, false),
                None => match self.largest_holder_over_total(core) {
                    Some((id, pending)) => (id, pending, true),
                    None => break,
                },
            };
            let Some(reg) = core.registry.get_mut(&id) else {
                continue;
            };
            if !reg.ending.handler_knows() {
                continue;
            }
            reg.ending.close(Cause::Dropped);
            if over_total {
                output_total::dropped_largest(id, pending, &self.output_total);
            } else {
                status::dropped_slow(id, pending, self.config.max_pending_bytes);
            }
            reg.client.kill(Cause::Dropped);
            core.handler.on_disconnect(id, &mut extra);
            if self.persist(&extra) {
                self.apply_locked(core, &extra, actor, &mut dropped, peers);
            }
            // Rare path: these few lines may be written under the lock.
            self.carry_out_unlocked(&extra, None);
            extra.clear();
        }
    }

    /// Under `SlowPolicy::Disconnect` (presence), while the output of the
    /// clients still served is over `--max-output-total`: the one holding
    /// the most, to drop as too slow. Counted from the clients (not only
    /// the shared total, which keeps a dropped client's bytes until its
    /// writer has let go of them), and looked at only when the total is
    /// over.
    fn largest_holder_over_total(&self, core: &Core) -> Option<(ClientId, usize)> {
        if self.slow_policy != SlowPolicy::Disconnect || !self.output_total.over_limit() {
            return None;
        }
        let mut held = 0usize;
        let mut largest = None;
        for (&id, reg) in &core.registry {
            if !reg.ending.handler_knows() {
                continue;
            }
            let unsent = reg.client.unsent();
            held += unsent;
            if unsent > 0 && largest.is_none_or(|(_, most)| unsent > most) {
                largest = Some((id, unsent));
            }
        }
        largest.filter(|_| held > self.output_total.limit())
    }

    fn apply_locked(
        &self,
        core: &mut Core,
        out: &Outbox,
        actor: Option<ClientId>,
        dropped: &mut Vec<(ClientId, usize)>,
        peers: &mut dyn Clients,
    ) {
        let mut locked = Locked {
            server: self,
            core,
            actor,
            dropped,
            peers,
        };
        actions::to_clients(out, &mut locked);
    }

    /// Queues `payload` for `client`, starting its writer if it has none.
    /// Returns the pending byte count if the client must be dropped
    /// (`SlowPolicy::Disconnect` over `--max-pending`).
    fn enqueue(&self, client: &Arc<Client>, bytes: Bytes<'_>) -> Option<usize> {
        let mut st = client.state();
        if st.dead || st.output_closed {
            return None;
        }
        let was_empty = st.out.is_empty();
        match bytes {
            Bytes::Shared(buf) => st.out.push_shared(buf),
            Bytes::Slice(slice) => st.out.push_slice(slice),
        }
        if st.writer.is_none() {
            let writer = Arc::clone(client);
            match thread::Builder::new()
                .name(format!("client-{}-w", client.id))
                .stack_size(WRITER_STACK_BYTES)
                .spawn(move || writer.write_loop())
            {
                Ok(handle) => st.writer = Some(handle),
                Err(e) => {
                    let first = client.claim_failure(&mut st);
                    drop(st);
                    if first {
                        status::dropped_error(
                            client.id,
                            &format_args!("cannot start a writer thread: {e}; closing"),
                        );
                    }
                    client.kill(Cause::Dropped);
                    return None;
                }
            }
        } else if was_empty {
            // The writer sleeps only on an empty queue.
            client.writable.notify_one();
        }
        let pending = st.out.pending() + st.in_flight;
        let (max, was_paused) = (self.config.max_pending_bytes, st.gates.by_output);
        let flow = st.gates.on_output(pending, max, self.slow_policy);
        let paused = st.gates.by_output;
        client
            .trace
            .flow(client.id, was_paused, paused, pending, max);
        match flow {
            Flow::Drop => Some(pending),
            Flow::Resume => {
                client.readable.notify_all();
                None
            }
            Flow::Steady => None,
        }
    }

    /// Stdout and diagnostics, after the handler lock is released. Stdout
    /// bytes are queued for the writer thread; over its budget, `actor`
    /// (the sink's owner, whose input made them) waits for room.
    pub(super) fn carry_out_unlocked(&self, out: &Outbox, actor: Option<ClientId>) {
        let mut over = false;
        actions::print_lines(out, |bytes| over |= !self.stdout.push(bytes));
        if over && let Some(id) = actor {
            self.pause_for_stdout(id);
        }
    }

    /// Closes `id`'s read gate until the stdout queue has drained to half
    /// its budget: its reader then waits in [`Client::gate`] (only its own
    /// thread waits; shutdown's stop and kill wake it like any pause).
    fn pause_for_stdout(&self, id: ClientId) {
        let Some(client) = lock(&self.table).get(&id).cloned() else {
            return;
        };
        // Held while the waiter is registered: the writer thread's call,
        // which takes it too, cannot come before the gate is closed.
        let mut st = client.state();
        if st.gates.by_stdout || st.stop.is_some() {
            return;
        }
        let (resumed, writer) = (Arc::clone(&client), self.stdout.clone());
        let waiter: Waiter = Arc::new(move || {
            let mut st = resumed.state();
            st.gates.by_stdout = false;
            resumed.readable.notify_all();
            drop(st);
            resumed
                .trace
                .stdout_flow(resumed.id, false, writer.unwritten(), writer.budget());
        });
        if self.stdout.room_or_notify(&waiter) {
            return;
        }
        st.gates.by_stdout = true;
        drop(st);
        client
            .trace
            .stdout_flow(id, true, self.stdout.unwritten(), self.stdout.budget());
    }
}

/// The per-client primitives under the handler lock (so broadcasts are
/// queued to everyone in one order).
struct Locked<'a> {
    server: &'a Server,
    core: &'a mut Core,
    /// The client whose reader is calling (its own socket need not be shut
    /// to wake it).
    actor: Option<ClientId>,
    /// Clients over `--max-pending` under `SlowPolicy::Disconnect`.
    dropped: &'a mut Vec<(ClientId, usize)>,
    /// Where actions naming no TCP client go.
    peers: &'a mut dyn Clients,
}

impl Clients for Locked<'_> {
    fn send(&mut self, to: ClientId, bytes: Bytes<'_>) {
        let Some(reg) = self.core.registry.get(&to) else {
            self.peers.send(to, bytes);
            return;
        };
        if let Some(pending) = self.server.enqueue(&reg.client, bytes) {
            self.dropped.push((to, pending));
        }
    }

    fn close(&mut self, id: ClientId) {
        let Some(reg) = self.core.registry.get_mut(&id) else {
            self.peers.close(id);
            return;
        };
        reg.ending.close(Cause::HandlerClosed);
        let client = &reg.client;
        let mut st = client.state();
        client.request_stop(&mut st, Cause::HandlerClosed);
        drop(st);
        if self.actor != Some(id) {
            // Its reader may be blocked in `read`.
            let _ = client.stream.shutdown(Shutdown::Read);
        }
    }

    fn pause(&mut self, id: ClientId, paused: bool) {
        if let Some(reg) = self.core.registry.get(&id) {
            reg.client.state().gates.by_handler = paused;
            if !paused {
                reg.client.readable.notify_all();
            }
        }
    }
}

/// A server with no `--udp` peers: actions naming no TCP client name a
/// client gone meanwhile.
struct NoPeers;

impl Clients for NoPeers {
    fn send(&mut self, _: ClientId, _: Bytes<'_>) {}
    fn close(&mut self, _: ClientId) {}
    fn pause(&mut self, _: ClientId, _: bool) {}
}
