//! The client census: SPEC's ids (from 1, never reused) and the total
//! count in every status line, for one event loop or shared by N.
//!
//! One mutex rather than two atomics: the id, the count and the status line
//! that shows them are one step, so the lines come out in the order the
//! counts changed (`... = 3` never after `... = 4` for a later event) and
//! every line is whole. It is taken once per connect and disconnect, never
//! per message.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::handlers::ClientId;
use crate::status::Status;

/// See the module doc.
pub struct Census {
    state: Mutex<State>,
    /// Connections the acceptor handed to a loop that the loop has not
    /// admitted or refused yet: they hold descriptors too, so the acceptor
    /// counts them against `--max-clients` (see [`Census::tcp_in_use`]).
    handed_out: AtomicUsize,
    status: Status,
}

struct State {
    /// Connections admitted and not yet removed (closing ones included,
    /// as with one loop: the count is what the slabs hold), and UDP peers.
    clients: usize,
    /// The UDP peers among `clients`: counted in every line, but they take
    /// no `--max-clients` place (they have `--max-udp-peers`).
    udp_peers: usize,
    /// The id the next client gets.
    next_id: u64,
}

impl Census {
    pub fn new(status: Status) -> Self {
        Census {
            state: Mutex::new(State {
                clients: 0,
                udp_peers: 0,
                next_id: 1,
            }),
            handed_out: AtomicUsize::new(0),
            status,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new client, if the TCP clients are below `max` (`--max-clients`;
    /// `None`: a UDP peer, which takes no place): its id, and its
    /// `Client N connected` line printed.
    pub fn admit(&self, max: Option<usize>) -> Option<ClientId> {
        let mut state = self.lock();
        match max {
            Some(max) if state.clients - state.udp_peers >= max => return None,
            Some(_) => {}
            None => state.udp_peers += 1,
        }
        let id = ClientId(state.next_id);
        state.next_id += 1;
        state.clients += 1;
        self.status.connected(id, state.clients);
        Some(id)
    }

    /// A client was removed: its `Client N disconnected` line.
    pub fn leave(&self, id: ClientId) {
        let mut state = self.lock();
        state.clients = state.clients.saturating_sub(1);
        self.status.disconnected(id, state.clients);
    }

    /// A UDP peer was forgotten: its `Client N disconnected` line.
    pub fn leave_udp_peer(&self, id: ClientId) {
        let mut state = self.lock();
        state.udp_peers = state.udp_peers.saturating_sub(1);
        state.clients = state.clients.saturating_sub(1);
        self.status.disconnected(id, state.clients);
    }

    /// TCP connections holding a descriptor now: the clients (the total
    /// less the UDP peers) and those handed to a loop not yet settled. A
    /// loop settles a connection just before admitting it, so for a moment
    /// one per loop may count for nothing: the acceptor may then take one
    /// more per loop, which the loop's exact check refuses (the descriptor
    /// reserve has a place per loop for it).
    pub fn tcp_in_use(&self) -> usize {
        let state = self.lock();
        state.clients - state.udp_peers + self.handed_out.load(Ordering::SeqCst)
    }

    /// The acceptor handed `n` connections to a loop.
    pub fn handed_out(&self, n: usize) {
        self.handed_out.fetch_add(n, Ordering::SeqCst);
    }

    /// A loop admitted or refused `n` of them (or they were dropped).
    pub fn settled(&self, n: usize) {
        self.handed_out.fetch_sub(n, Ordering::SeqCst);
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
                std::thread::spawn(move || {
                    (0..50)
                        .filter_map(|_| c.admit(Some(150)))
                        .collect::<Vec<_>>()
                })
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
        assert_eq!(
            census.admit(Some(150)),
            Some(ClientId(151)),
            "ids never reused"
        );
    }

    #[test]
    fn udp_peers_count_in_the_total_but_take_no_max_clients_place() {
        let census = Census::new(Status::new(true));
        assert_eq!(census.admit(Some(1)), Some(ClientId(1)));
        assert_eq!(census.admit(Some(1)), None, "one TCP place");
        assert_eq!(census.admit(None), Some(ClientId(2)));
        assert_eq!(census.admit(None), Some(ClientId(3)));
        assert_eq!(census.count(), 3);
        census.leave(ClientId(1));
        assert_eq!(census.admit(Some(1)), Some(ClientId(4)), "peers took none");
        census.leave_udp_peer(ClientId(2));
        assert_eq!(census.count(), 2);
        assert_eq!(census.admit(Some(1)), None);
    }
}
