//! The client census: SPEC's ids (from 1, never reused) and the total
//! count in every status line, for one event loop or shared by N.
//!
//! One mutex rather than two atomics: the id, the count and the status line
//! that shows them are one step, so the lines come out in the order the
//! counts changed (`... = 3` never after `... = 4` for a later event) and
//! every line is whole. It is taken once per connect and disconnect, never
//! per message.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::handlers::ClientId;
use crate::status::Status;

/// See the module doc.
pub struct Census {
    state: Mutex<State>,
    status: Status,
}

struct State {
    /// Connections admitted and not yet removed (closing ones included,
    /// as with one loop: the count is what the slabs hold).
    clients: usize,
    /// The id the next client gets.
    next_id: u64,
}

impl Census {
    pub fn new(status: Status) -> Self {
        Census {
            state: Mutex::new(State {
                clients: 0,
                next_id: 1,
            }),
            status,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new client, if the total is below `max` (`--max-clients`): its
    /// id, and its `Client N connected` line printed.
    pub fn admit(&self, max: usize) -> Option<ClientId> {
        let mut state = self.lock();
        if state.clients >= max {
            return None;
        }
        let id = ClientId(state.next_id);
        state.next_id += 1;
        state.clients += 1;
        self.status.connected(id, state.clients);
        Some(id)
    }

    /// An id alone, for a server that counts its clients and prints their
    /// lines itself (the threaded server, under its table's lock).
    pub fn next_id(&self) -> ClientId {
        let mut state = self.lock();
        let id = ClientId(state.next_id);
        state.next_id += 1;
        id
    }

    /// A client was removed: its `Client N disconnected` line.
    pub fn leave(&self, id: ClientId) {
        let mut state = self.lock();
        state.clients = state.clients.saturating_sub(1);
        self.status.disconnected(id, state.clients);
    }

    /// The total now.
    pub fn count(&self) -> usize {
        self.lock().clients
    }

    /// The periodic `Number of connected clients = N` line.
    pub fn report(&self) {
        let state = self.lock();
        self.status.count(state.clients);
    }

    /// SPEC's drain line, with the total, if any client is left.
    pub fn draining(&self, timeout: Duration) {
        let state = self.lock();
        if state.clients > 0 {
            self.status.draining(timeout, state.clients);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_the_total_is_capped() {
        let census = std::sync::Arc::new(Census::new(Status::new(true)));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let c = census.clone();
                std::thread::spawn(move || (0..50).filter_map(|_| c.admit(150)).collect::<Vec<_>>())
            })
            .collect();
        let mut ids: Vec<u64> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .map(|id| id.0)
            .collect();
        ids.sort_unstable();
        assert_eq!(ids, (1..=150).collect::<Vec<_>>());
        assert_eq!(census.count(), 150);
        census.leave(ClientId(3));
        assert_eq!(census.admit(150), Some(ClientId(151)), "ids never reused");
    }
}
