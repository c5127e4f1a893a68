//! [`Sharing::PerLoop`](super::Sharing::PerLoop): a handler split into one
//! part per event loop (`--reactors N`), each called by its own loop with
//! no lock, and merged back into one at the end. A handler opts in by
//! implementing [`Mergeable`] and answering [`super::Handler::split`] with
//! [`split`]; the servers never learn its type.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use super::{ClientId, Finish, Handler, Outbox, ServerStats, Traits};

/// A handler whose state can be split over loops and summed back.
pub trait Mergeable: Handler + Sized + 'static {
    /// An empty handler configured like this one, for another loop.
    fn fresh(&self) -> Self;
    /// Adds another loop's part into this one at the end; returns the
    /// diagnostics the merge gives (e.g. balances that overflow when added).
    fn absorb(&mut self, other: Self) -> Vec<String>;
}

/// A handler split for `--reactors N`: one part per loop, and the merge
/// that runs once every loop has finished.
pub struct Sharded {
    pub parts: Vec<Box<dyn Handler>>,
    /// Merges the parts the loops left behind into one handler and returns
    /// its [`Handler::finish`] (with the server counts summed).
    pub merge: Box<dyn FnOnce() -> Finish + Send>,
}

/// Where the parts go when their loops finish, by loop index.
type Slot<H> = Arc<Mutex<Vec<Option<(H, ServerStats)>>>>;

/// Splits `handler` into `loops` parts: the first is `handler`'s state
/// (moved out, leaving a fresh one behind), the others are fresh.
pub fn split<H: Mergeable>(handler: &mut H, loops: usize) -> Sharded {
    let first = std::mem::replace(handler, handler.fresh());
    let mut states = Vec::with_capacity(loops);
    for _ in 1..loops {
        states.push(first.fresh());
    }
    states.insert(0, first);
    let slot: Slot<H> = Arc::new(Mutex::new((0..loops).map(|_| None).collect()));
    let parts = states
        .into_iter()
        .enumerate()
        .map(|(index, inner)| {
            Box::new(Part {
                inner: Some(inner),
                index,
                slot: slot.clone(),
            }) as Box<dyn Handler>
        })
        .collect();
    Sharded {
        parts,
        merge: Box::new(move || merge(&slot)),
    }
}

/// Takes the parts out of the slot once every loop has finished, merges
/// them into the first, sums the server counts, and finishes it.
fn merge<H: Mergeable>(slot: &Slot<H>) -> Finish {
    let mut slots = slot.lock().unwrap_or_else(PoisonError::into_inner);
    let mut stats = ServerStats::default();
    let mut merged: Option<H> = None;
    let mut diagnostics = Vec::new();
    for (part, part_stats) in slots.iter_mut().filter_map(Option::take) {
        stats.cut_partial_lines += part_stats.cut_partial_lines;
        match &mut merged {
            None => merged = Some(part),
            Some(into) => diagnostics.extend(into.absorb(part)),
        }
    }
    let Some(mut merged) = merged else {
        return Finish::default();
    };
    let mut finish = merged.finish(&stats);
    diagnostics.append(&mut finish.diagnostics);
    finish.diagnostics = diagnostics;
    finish
}

/// One loop's part (see the module doc).
struct Part<H: Mergeable> {
    /// `None` only after `finish`.
    inner: Option<H>,
    index: usize,
    slot: Slot<H>,
}

impl<H: Mergeable> Part<H> {
    fn get_mut(&mut self) -> &mut H {
        self.inner
            .as_mut()
            .expect("a part is not used after finish")
    }
}

impl<H: Mergeable> Handler for Part<H> {
    fn traits(&self) -> &'static Traits {
        match &self.inner {
            Some(inner) => inner.traits(),
            // After finish nobody asks; any part's answer is the same.
            None => unreachable!("a part is not used after finish"),
        }
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
    /// Leaves the part in its slot; the merge makes the real files and
    /// lines (once, not once per loop).
    fn finish(&mut self, stats: &ServerStats) -> Finish {
        if let Some(inner) = self.inner.take() {
            let mut slots = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
            slots[self.index] = Some((inner, *stats));
        }
        Finish::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::ledger::Ledger;
    use crate::handlers::{Sharing, TEST_PEER};
    use std::path::PathBuf;

    #[test]
    fn parts_keep_the_first_state_and_merge_into_one_finish() {
        let mut ledger = Ledger::new(PathBuf::from("log.txt"));
        assert_eq!(ledger.traits().sharing, Sharing::PerLoop);
        let mut out = Outbox::new();
        // State from before the split (a replayed journal) stays in part 0.
        ledger.on_message(ClientId(1), b"a credit 1\n", &mut out);
        let Sharded { mut parts, merge } = ledger.split(3).expect("the ledger splits");
        assert_eq!(parts.len(), 3);
        parts[1].on_connect(ClientId(2), TEST_PEER, &mut out);
        parts[1].on_message(ClientId(2), b"a credit 2\n", &mut out);
        parts[2].on_message(ClientId(3), b"b debit 1\n", &mut out);
        parts[2].on_message(ClientId(3), b"nonsense\n", &mut out);
        for (i, part) in parts.iter_mut().enumerate() {
            let stats = ServerStats {
                cut_partial_lines: i as u64,
            };
            assert_eq!(
                part.finish(&stats),
                Finish::default(),
                "only the merge finishes"
            );
        }
        let finish = merge();
        assert_eq!(
            finish.files,
            vec![(PathBuf::from("log.txt"), b"a $3.00\nb $-1.00\n".to_vec())]
        );
        assert_eq!(
            finish.status,
            vec!["Applied 3 transactions, discarded 1 lines, cut 3 partial lines".to_string()]
        );
        assert!(finish.diagnostics.is_empty());
    }
}
