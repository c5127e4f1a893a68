//! A handler whose state shards: every loop has its own (echo has none
//! worth sharing; the ledger's balances are sums). No lock on the hot path:
//! the loop calls its own handler directly. At the end each shard is left
//! in a slot, and [`super::run`] merges them into one.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use crate::handlers::{
    ClientId, Finish, Framing, Handler, Outbox, ServerStats, ShutdownPolicy, SlowPolicy,
};

/// Where the shards go when their loops finish, by loop index.
pub type Slot<H> = Arc<Mutex<Vec<Option<(H, ServerStats)>>>>;

/// One loop's handler (see the module doc).
pub struct Shard<H: Handler> {
    /// `None` only after `finish`.
    inner: Option<H>,
    index: usize,
    slot: Slot<H>,
}

impl<H: Handler> Shard<H> {
    pub fn new(inner: H, index: usize, slot: Slot<H>) -> Self {
        Shard {
            inner: Some(inner),
            index,
            slot,
        }
    }

    fn get(&self) -> &H {
        self.inner
            .as_ref()
            .expect("a shard is not used after finish")
    }

    fn get_mut(&mut self) -> &mut H {
        self.inner
            .as_mut()
            .expect("a shard is not used after finish")
    }
}

/// A slot for `n` loops.
pub fn empty_slot<H>(n: usize) -> Slot<H> {
    Arc::new(Mutex::new((0..n).map(|_| None).collect()))
}

/// Takes the shards out of a slot once every loop has finished, with the
/// server counts summed.
pub fn collect<H>(slot: &Slot<H>) -> (Vec<H>, ServerStats) {
    let mut slots = slot.lock().unwrap_or_else(PoisonError::into_inner);
    let mut stats = ServerStats::default();
    let mut shards = Vec::new();
    for (shard, s) in slots.iter_mut().filter_map(Option::take) {
        stats.cut_partial_lines += s.cut_partial_lines;
        shards.push(shard);
    }
    (shards, stats)
}

impl<H: Handler> Handler for Shard<H> {
    fn name(&self) -> &'static str {
        self.get().name()
    }
    fn framing(&self) -> Framing {
        self.get().framing()
    }
    fn slow_policy(&self) -> SlowPolicy {
        self.get().slow_policy()
    }
    fn shutdown_policy(&self) -> ShutdownPolicy {
        self.get().shutdown_policy()
    }
    fn status_on_stderr(&self) -> bool {
        self.get().status_on_stderr()
    }
    fn datagram_is_line(&self) -> bool {
        self.get().datagram_is_line()
    }
    fn on_connect(&mut self, id: ClientId, peer: SocketAddr, out: &mut Outbox) {
        self.get_mut().on_connect(id, peer, out);
    }
    fn on_message(&mut self, id: ClientId, msg: &[u8], out: &mut Outbox) {
        self.get_mut().on_message(id, msg, out);
    }
    fn on_disconnect(&mut self, id: ClientId, out: &mut Outbox) {
        self.get_mut().on_disconnect(id, out);
    }
    fn on_shutdown(&mut self, out: &mut Outbox) {
        self.get_mut().on_shutdown(out);
    }
    /// Leaves the shard in its slot; the merged handler's `finish` makes
    /// the real files and lines (once, not once per loop).
    fn finish(&mut self, stats: &ServerStats) -> Finish {
        if let Some(inner) = self.inner.take() {
            let mut slots = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
            slots[self.index] = Some((inner, *stats));
        }
        Finish::default()
    }
}
