//! Client ids and the connected count: the part of the server's state that
//! everything accepting clients must share (SPEC: ids start at 1 and are
//! never reused; counts are totals). Today one reactor or the threaded
//! supervisor holds it; N reactors (`--reactors`) or a UDP socket on the
//! same poll share one through an `Arc`, which is why it is atomic.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::handlers::ClientId;

/// See the module doc.
#[derive(Debug)]
pub struct Roster {
    /// The id the next client gets.
    next_id: AtomicU64,
    /// Clients connected (accepted, their disconnect line not printed yet).
    connected: AtomicUsize,
}

impl Default for Roster {
    fn default() -> Self {
        Self::new()
    }
}

impl Roster {
    pub fn new() -> Self {
        Roster {
            next_id: AtomicU64::new(1),
            connected: AtomicUsize::new(0),
        }
    }

    /// A new client: its id and the count with it.
    pub fn join(&self) -> (ClientId, usize) {
        let id = ClientId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let count = self.connected.fetch_add(1, Ordering::SeqCst) + 1;
        (id, count)
    }

    /// An id alone, for a server that counts its clients itself (the
    /// threaded server prints its counts under its table's lock).
    pub fn next_id(&self) -> ClientId {
        ClientId(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// A client is gone: the count without it.
    pub fn leave(&self) -> usize {
        self.connected.fetch_sub(1, Ordering::SeqCst) - 1
    }

    /// Clients connected now.
    pub fn count(&self) -> usize {
        self.connected.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_start_at_1_are_never_reused_and_counts_follow() {
        let r = Roster::new();
        assert_eq!(r.join(), (ClientId(1), 1));
        assert_eq!(r.join(), (ClientId(2), 2));
        assert_eq!(r.leave(), 1);
        assert_eq!(r.join(), (ClientId(3), 2));
        assert_eq!(r.count(), 2);
    }
}
