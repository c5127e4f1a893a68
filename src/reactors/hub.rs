//! A handler with one shared state (presence, queue, sink, atm, menu)
//! under N loops: the handler behind one mutex, called without any socket
//! I/O under the lock (the threaded server's rule), and every action that
//! names a client routed to the loop that owns it.
//!
//! Order. Handler calls are serialised by the lock, and each client's
//! output must be queued in that same order (presence: every client sees
//! the same lists in the same order). So, under the lock, a call first
//! takes its own loop's mailbox (actions that earlier calls, on other
//! loops, left for this loop's clients) into the loop's outbox, then the
//! handler runs, then its actions are split: this loop's clients' into the
//! outbox after the mailbox items, the others' into their loops' mailboxes.
//! Everything in a mailbox is therefore older than anything a later call
//! adds anywhere. The owner is woken (`mio::Waker`) after the lock is
//! released; an idle loop empties its mailbox when woken.
//!
//! Durability (the atm's accounts): persisted bytes go to the one store
//! under the lock and are synced before the call's replies are routed, so
//! no loop can send an acknowledgement of what is not durable.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use mio::Waker;

use crate::handlers::{ClientId, Finish, Handler, Outbox, ServerStats, Traits};
use crate::server_core::actions::{self, Bytes, Clients, Line};
use crate::server_core::census::Census;
use crate::server_core::durable::Durable;
use crate::status;

/// An action for a client of another loop, with its bytes owned.
enum Routed {
    Send(ClientId, Arc<[u8]>),
    Close(ClientId),
    Pause(ClientId),
    Resume(ClientId),
}

/// The shared handler and its routing (see the module doc).
pub struct Hub {
    core: Mutex<Shared>,
    /// One per loop, by index.
    wakers: Vec<Arc<Waker>>,
}

/// What the lock protects.
struct Shared {
    handler: Box<dyn Handler>,
    /// The handler's one store.
    durable: Durable,
    /// Which loop owns each client: from its admission to its removal.
    owner: HashMap<ClientId, usize>,
    /// Per loop: actions for its clients, oldest first.
    mailboxes: Vec<Vec<Routed>>,
    /// `on_shutdown` goes to the handler once, not once per loop.
    told_shutdown: bool,
    /// The loops' counts, summed as they finish.
    stats: ServerStats,
    /// The store failed: nothing more is routed, every loop stops.
    failure: Option<String>,
}

impl Hub {
    pub fn new(handler: Box<dyn Handler>, durable: Durable, wakers: Vec<Arc<Waker>>) -> Self {
        Hub {
            core: Mutex::new(Shared {
                handler,
                durable,
                owner: HashMap::new(),
                mailboxes: wakers.iter().map(|_| Vec::new()).collect(),
                told_shutdown: false,
                stats: ServerStats::default(),
                failure: None,
            }),
            wakers,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes the loops named in `wake` (after the lock is released) and
    /// empties it.
    fn wake(&self, wake: &mut Vec<usize>) {
        for i in wake.drain(..) {
            let _ = self.wakers[i].wake();
        }
    }

    /// Admits a client on loop `me`: its id and status line (the census),
    /// its owner, and the handler's `on_connect`, all in one hold of the
    /// lock, so the handler hears of clients in id order (the sink serves
    /// them in the order they connected). `None`: over `max` (see
    /// [`Census::admit`]).
    pub fn connect(
        &self,
        me: usize,
        peer: SocketAddr,
        census: &Census,
        max: Option<usize>,
        out: &mut Outbox,
    ) -> Option<ClientId> {
        let mut wake = Vec::new();
        let mut tmp = Outbox::new();
        let id = {
            let mut core = self.lock();
            let id = census.admit(max)?;
            core.owner.insert(id, me);
            core.call(me, out, &mut tmp, &mut wake, |h, t| {
                h.on_connect(id, peer, t)
            });
            id
        };
        self.wake(&mut wake);
        Some(id)
    }

    /// The client was removed from its loop: actions naming it are dropped
    /// from now on.
    pub fn forget(&self, id: ClientId) {
        self.lock().owner.remove(&id);
    }

    /// Moves loop `me`'s mailbox into `out`. Returns the store's failure,
    /// if it failed.
    pub fn take_mailbox(&self, me: usize, out: &mut Outbox) -> Option<io::Error> {
        let mut core = self.lock();
        core.drain_mailbox(me, out);
        core.failure
            .as_ref()
            .map(|why| io::Error::other(why.clone()))
    }

    /// Once every loop has finished: the last sync, the store's finish,
    /// and the handler's files and lines.
    ///
    /// # Errors
    /// The store failed.
    pub fn finish(&self) -> io::Result<Finish> {
        let mut core = self.lock();
        core.durable.finish()?;
        let stats = core.stats;
        Ok(core.handler.finish(&stats))
    }
}

impl Shared {
    fn drain_mailbox(&mut self, me: usize, out: &mut Outbox) {
        for routed in self.mailboxes[me].drain(..) {
            match routed {
                Routed::Send(to, bytes) => out.send_shared(to, &bytes),
                Routed::Close(id) => out.close(id),
                Routed::Pause(id) => out.pause_reading(id),
                Routed::Resume(id) => out.resume_reading(id),
            }
        }
    }

    /// One handler call from loop `me` (see the module doc for the order).
    fn call(
        &mut self,
        me: usize,
        out: &mut Outbox,
        tmp: &mut Outbox,
        wake: &mut Vec<usize>,
        f: impl FnOnce(&mut dyn Handler, &mut Outbox),
    ) {
        self.drain_mailbox(me, out);
        tmp.set_now(out.now());
        tmp.set_reply_limit(out.reply_limit());
        f(&mut *self.handler, tmp);
        if self.persist(tmp) {
            self.route(me, tmp, out, wake);
        } else {
            // Every loop must hear of it and stop.
            wake.clear();
            wake.extend(0..self.mailboxes.len());
        }
        tmp.clear();
    }

    /// The durability rule: this call's persisted bytes are made durable
    /// before its replies are routed. False if the store failed.
    fn persist(&mut self, tmp: &Outbox) -> bool {
        if self.failure.is_some() {
            return false;
        }
        let mut result = actions::persist(tmp, &mut self.durable);
        if result.is_ok() && self.durable.owes_sync() {
            result = self.durable.sync_before_output();
        }
        match result {
            Ok(()) => true,
            Err(e) => {
                status::diag(format_args!("error: {e}"));
                self.failure = Some(e.to_string());
                false
            }
        }
    }

    /// Routes the call's actions: this loop's clients' (and its stdout and
    /// diagnostics) into its outbox, the others' into their loops'
    /// mailboxes.
    fn route(&mut self, me: usize, tmp: &Outbox, out: &mut Outbox, wake: &mut Vec<usize>) {
        let mut router = Router {
            owner: &self.owner,
            mailboxes: &mut self.mailboxes,
            me,
            out,
            wake,
        };
        actions::to_clients(tmp, &mut router);
        actions::to_lines(tmp, |line| match line {
            Line::Stdout(bytes) => router.out.stdout(bytes),
            Line::Diagnostic(text) => router.out.diagnostic(text),
        });
    }
}

/// Where a shared handler's per-client actions go: see [`Shared::route`].
struct Router<'a> {
    owner: &'a HashMap<ClientId, usize>,
    mailboxes: &'a mut Vec<Vec<Routed>>,
    me: usize,
    out: &'a mut Outbox,
    wake: &'a mut Vec<usize>,
}

impl Router<'_> {
    /// Hands `routed` (for client `id`) to its loop: this loop's outbox, or
    /// another loop's mailbox (that loop to be woken). A client no loop
    /// owns any more is gone: dropped.
    fn route(&mut self, id: ClientId, routed: Routed) {
        match self.owner.get(&id) {
            Some(&owner) if owner == self.me => match routed {
                Routed::Close(id) => self.out.close(id),
                Routed::Pause(id) => self.out.pause_reading(id),
                Routed::Resume(id) => self.out.resume_reading(id),
                Routed::Send(to, bytes) => self.out.send_shared(to, &bytes),
            },
            Some(&owner) => {
                self.mailboxes[owner].push(routed);
                if !self.wake.contains(&owner) {
                    self.wake.push(owner);
                }
            }
            None => {}
        }
    }
}

impl Clients for Router<'_> {
    fn send(&mut self, to: ClientId, bytes: Bytes<'_>) {
        match (self.owner.get(&to), bytes) {
            // This loop's client: no copy into a shared buffer.
            (Some(&owner), Bytes::Slice(slice)) if owner == self.me => self.out.send(to, slice),
            (Some(_), bytes) => self.route(to, Routed::Send(to, bytes.to_shared())),
            (None, _) => {}
        }
    }
    fn close(&mut self, id: ClientId) {
        self.route(id, Routed::Close(id));
    }
    fn pause(&mut self, id: ClientId, paused: bool) {
        let routed = if paused {
            Routed::Pause(id)
        } else {
            Routed::Resume(id)
        };
        self.route(id, routed);
    }
}

/// One loop's face of the [`Hub`]: what the loop calls its handler.
pub struct HubProxy {
    hub: Arc<Hub>,
    me: usize,
    /// The handler's outbox, reused; its actions are routed into the loop's.
    tmp: Outbox,
    /// Loops to wake once the lock is released.
    wake: Vec<usize>,
    /// The shared handler's, read once (no lock to ask).
    traits: &'static Traits,
}

impl HubProxy {
    pub fn new(hub: Arc<Hub>, me: usize) -> Self {
        let traits = hub.lock().handler.traits();
        HubProxy {
            hub,
            me,
            tmp: Outbox::new(),
            wake: Vec::new(),
            traits,
        }
    }

    fn with(&mut self, out: &mut Outbox, f: impl FnOnce(&mut dyn Handler, &mut Outbox)) {
        {
            let mut core = self.hub.lock();
            core.call(self.me, out, &mut self.tmp, &mut self.wake, f);
        }
        self.hub.wake(&mut self.wake);
    }
}

impl Handler for HubProxy {
    fn traits(&self) -> &'static Traits {
        self.traits
    }
    /// Not used by the loops ([`Hub::connect`] admits and tells the
    /// handler in one step); kept correct for any other caller.
    fn on_connect(&mut self, id: ClientId, peer: SocketAddr, out: &mut Outbox) {
        let me = self.me;
        self.hub.lock().owner.insert(id, me);
        self.with(out, |h, t| h.on_connect(id, peer, t));
    }
    fn on_message(&mut self, id: ClientId, msg: &[u8], out: &mut Outbox) {
        self.with(out, |h, t| h.on_message(id, msg, t));
    }
    fn on_disconnect(&mut self, id: ClientId, out: &mut Outbox) {
        self.with(out, |h, t| h.on_disconnect(id, t));
    }
    /// Every loop passes the shutdown on; the handler hears it once.
    fn on_shutdown(&mut self, out: &mut Outbox) {
        let first = {
            let mut core = self.hub.lock();
            !std::mem::replace(&mut core.told_shutdown, true)
        };
        if first {
            self.with(out, |h, t| h.on_shutdown(t));
        }
    }
    /// Adds this loop's counts; [`Hub::finish`] finishes the handler once.
    fn finish(&mut self, stats: &ServerStats) -> Finish {
        let mut core = self.hub.lock();
        core.stats.cut_partial_lines += stats.cut_partial_lines;
        Finish::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::presence::Presence;
    use crate::handlers::{Effect, TEST_PEER};
    use crate::status::Status;
    use mio::{Poll, Token};

    fn send(to: u64, bytes: &[u8]) -> Effect {
        Effect::Send(ClientId(to), bytes.to_vec())
    }

    /// Two loops, presence: what a call leaves for the other loop reaches
    /// that loop before anything a later call queues there directly.
    #[test]
    fn a_loop_queues_its_mailbox_before_its_own_calls_actions() {
        let polls: Vec<Poll> = (0..2).map(|_| Poll::new().unwrap()).collect();
        let wakers = polls
            .iter()
            .map(|p| Arc::new(Waker::new(p.registry(), Token(0)).unwrap()))
            .collect();
        let hub = Arc::new(Hub::new(
            Box::new(Presence::new()),
            Durable::new(None),
            wakers,
        ));
        let census = Census::new(Status::new(true));
        let (mut out0, mut out1) = (Outbox::new(), Outbox::new());
        let a = hub
            .connect(0, TEST_PEER, &census, Some(10), &mut out0)
            .unwrap();
        let b = hub
            .connect(1, TEST_PEER, &census, Some(10), &mut out1)
            .unwrap();
        assert_eq!((a, b), (ClientId(1), ClientId(2)));
        let (mut loop0, mut loop1) = (HubProxy::new(hub.clone(), 0), HubProxy::new(hub.clone(), 1));
        // a (loop 0) joins: its list is local to loop 0.
        loop0.on_message(a, b"ann\n", &mut out0);
        assert_eq!(out0.take(), vec![send(1, b"ann\n")]);
        // b (loop 1) joins: a's copy goes to loop 0's mailbox.
        loop1.on_message(b, b"bob\n", &mut out1);
        assert_eq!(out1.take(), vec![send(2, b"ann bob\n")]);
        // b leaves, handled on loop 1: a's next list goes to the mailbox too,
        // after the first.
        loop1.on_disconnect(b, &mut out1);
        assert_eq!(out1.take(), vec![]);
        // Whatever loop 0 does next, the mailbox comes first, in order,
        // then that call's own actions.
        loop0.on_message(a, b"ignored\n", &mut out0);
        let c = hub
            .connect(0, TEST_PEER, &census, Some(10), &mut out0)
            .unwrap();
        loop0.on_message(c, b"cat\n", &mut out0);
        assert_eq!(
            out0.take(),
            vec![
                send(1, b"ann bob\n"),
                send(1, b"ann\n"),
                send(1, b"ann cat\n"),
                send(3, b"ann cat\n"),
            ]
        );
        // Nothing left behind.
        assert!(hub.take_mailbox(0, &mut out0).is_none());
        assert_eq!(out0.take(), vec![]);
    }
}
