//! sink (seed 003): every byte a client sends goes to stdout exactly, one
//! client's whole stream at a time, in the order the clients connected.
//!
//! A turnstile: the first client connected owns stdout; each later one is
//! paused at once (the server does not read it, so its bytes wait in the
//! kernel and memory stays bounded) and queued. When the owner is gone (after
//! its last bytes), the longest-waiting client becomes owner and is resumed.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use super::{
    BuildError, Built, ClientId, Datagrams, Framing, Handler, Outbox, Registration, ShutdownPolicy,
    Traits, no_files,
};
use crate::config::ServerConfig;

#[derive(Default)]
pub struct Sink {
    /// The client whose bytes go to stdout now; `None` when nobody is
    /// connected.
    owner: Option<ClientId>,
    /// Paused clients by connection order (a sequence number this handler
    /// gives out in `on_connect`), so the next owner is the first entry and
    /// one leaving early is removed in O(log n).
    waiting: BTreeMap<u64, ClientId>,
    /// Each waiting client's key in `waiting`.
    turn_of: HashMap<ClientId, u64>,
    /// The next client's place in line.
    next_turn: u64,
}

impl Sink {
    pub fn new() -> Self {
        Self::default()
    }

    /// The next waiting client takes stdout, if any waits.
    fn hand_over(&mut self, out: &mut Outbox) {
        self.owner = self.waiting.pop_first().map(|(_, next)| next);
        if let Some(next) = self.owner {
            self.turn_of.remove(&next);
            out.resume_reading(next);
        }
    }

    fn stop_waiting(&mut self, id: ClientId) {
        if let Some(turn) = self.turn_of.remove(&id) {
            self.waiting.remove(&turn);
        }
    }
}

/// What sink is like (see [`Traits`]).
pub const TRAITS: Traits = Traits {
    // SPEC: raw bytes of any length; no lines, no --max-line.
    framing: Framing::Raw,
    // SPEC: a connected client may still be sending bytes that count.
    shutdown: ShutdownPolicy::Drain,
    // SPEC: stdout carries the received bytes.
    status_on_stderr: true,
    datagrams: Datagrams::No,
    ..Traits::interactive("sink")
};

/// sink's entry in [`super::REGISTRY`].
pub static REGISTRATION: Registration = Registration {
    traits: &TRAITS,
    help: "Every byte to stdout, one client's whole stream at a time",
    files: no_files,
    build: build_sink,
};

impl Handler for Sink {
    fn traits(&self) -> &'static Traits {
        &TRAITS
    }

    fn on_connect(&mut self, id: ClientId, _peer: SocketAddr, out: &mut Outbox) {
        if self.owner.is_none() {
            self.owner = Some(id);
            return;
        }
        let turn = self.next_turn;
        self.next_turn += 1;
        self.waiting.insert(turn, id);
        self.turn_of.insert(id, turn);
        out.pause_reading(id);
    }

    fn on_message(&mut self, id: ClientId, msg: &[u8], out: &mut Outbox) {
        if self.owner == Some(id) {
            if !msg.is_empty() {
                out.stdout(msg);
            }
            return;
        }
        // The server read a client it was told not to read (a server bug).
        // Writing the bytes would interleave two streams, and holding them
        // would break the memory bound; both are worse than failing loudly.
        // The bytes are dropped and the client is closed, so its sender sees
        // the failure instead of a silent loss.
        out.diagnostic(format!(
            "sink: client {id} sent {} bytes while not holding stdout (server bug); \
             dropped them and closing it",
            msg.len()
        ));
        self.stop_waiting(id);
        out.close(id);
    }

    fn on_disconnect(&mut self, id: ClientId, out: &mut Outbox) {
        if self.owner == Some(id) {
            self.hand_over(out);
        } else {
            // Left before its turn (only an error or the end of a drain can
            // tell us: a paused client is not read, so its EOF is not seen).
            self.stop_waiting(id);
        }
    }
}

fn build_sink(_: &ServerConfig) -> Result<Built, BuildError> {
    Ok(Built::plain(Sink::new()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::{Effect, TEST_PEER};

    const C1: ClientId = ClientId(1);
    const C2: ClientId = ClientId(2);
    const C3: ClientId = ClientId(3);

    fn stdout(bytes: &[u8]) -> Effect {
        Effect::Stdout(bytes.to_vec())
    }

    fn three_clients() -> (Sink, Outbox) {
        let mut s = Sink::new();
        let mut out = Outbox::new();
        s.on_connect(C1, TEST_PEER, &mut out);
        assert_eq!(out.take(), vec![], "the first client owns stdout");
        s.on_connect(C2, TEST_PEER, &mut out);
        assert_eq!(out.take(), vec![Effect::PauseReading(C2)]);
        s.on_connect(C3, TEST_PEER, &mut out);
        assert_eq!(out.take(), vec![Effect::PauseReading(C3)]);
        (s, out)
    }

    #[test]
    fn owner_bytes_go_to_stdout_then_turns_pass_in_connection_order() {
        let (mut s, mut out) = three_clients();
        s.on_message(C1, b"one ", &mut out);
        s.on_message(C1, b"two\n", &mut out);
        assert_eq!(out.take(), vec![stdout(b"one "), stdout(b"two\n")]);

        s.on_disconnect(C1, &mut out);
        assert_eq!(out.take(), vec![Effect::ResumeReading(C2)]);
        s.on_message(C2, b"second", &mut out);
        assert_eq!(out.take(), vec![stdout(b"second")]);

        s.on_disconnect(C2, &mut out);
        assert_eq!(out.take(), vec![Effect::ResumeReading(C3)]);
        s.on_message(C3, b"third", &mut out);
        s.on_disconnect(C3, &mut out);
        assert_eq!(out.take(), vec![stdout(b"third")]);

        // Nobody left: the next client owns stdout at once.
        s.on_connect(ClientId(4), TEST_PEER, &mut out);
        s.on_message(ClientId(4), b"fourth", &mut out);
        assert_eq!(out.take(), vec![stdout(b"fourth")]);
    }

    #[test]
    fn waiter_leaving_early_loses_its_turn() {
        let (mut s, mut out) = three_clients();
        s.on_disconnect(C2, &mut out);
        assert_eq!(out.take(), vec![], "the owner is not disturbed");
        s.on_message(C1, b"a", &mut out);
        s.on_disconnect(C1, &mut out);
        assert_eq!(out.take(), vec![stdout(b"a"), Effect::ResumeReading(C3)]);
        s.on_disconnect(C3, &mut out);
        assert_eq!(out.take(), vec![]);
    }

    #[test]
    fn last_waiter_leaving_early_then_owner_leaving() {
        let (mut s, mut out) = three_clients();
        s.on_disconnect(C3, &mut out);
        s.on_disconnect(C1, &mut out);
        assert_eq!(out.take(), vec![Effect::ResumeReading(C2)]);
        s.on_disconnect(C2, &mut out);
        assert_eq!(out.take(), vec![], "C3 left: nobody to resume");
    }

    #[test]
    fn later_connections_queue_behind_a_handover() {
        let (mut s, mut out) = three_clients();
        s.on_disconnect(C1, &mut out);
        assert_eq!(out.take(), vec![Effect::ResumeReading(C2)]);
        s.on_connect(ClientId(4), TEST_PEER, &mut out);
        assert_eq!(out.take(), vec![Effect::PauseReading(ClientId(4))]);
        s.on_disconnect(C2, &mut out);
        assert_eq!(out.take(), vec![Effect::ResumeReading(C3)]);
        s.on_disconnect(C3, &mut out);
        assert_eq!(out.take(), vec![Effect::ResumeReading(ClientId(4))]);
    }

    #[test]
    fn binary_bytes_are_preserved_exactly() {
        let mut s = Sink::new();
        let mut out = Outbox::new();
        let all: Vec<u8> = (0..=255u8).chain([b'\r', b'\n', 0, 0xff]).collect();
        s.on_connect(C1, TEST_PEER, &mut out);
        s.on_message(C1, &all[..100], &mut out);
        s.on_message(C1, &all[100..], &mut out);
        assert_eq!(out.take(), vec![stdout(&all[..100]), stdout(&all[100..])]);
    }

    #[test]
    fn bytes_from_a_waiter_are_never_written() {
        let (mut s, mut out) = three_clients();
        s.on_message(C3, b"out of turn", &mut out);
        let effects = out.take();
        assert_eq!(effects.len(), 2, "{effects:?}");
        assert!(matches!(&effects[0], Effect::Diagnostic(line) if line.contains("client 3")));
        assert_eq!(effects[1], Effect::Close(C3));
        // Closed by us, so no on_disconnect comes; it must not get a turn.
        s.on_disconnect(C1, &mut out);
        s.on_disconnect(C2, &mut out);
        assert_eq!(
            out.take(),
            vec![Effect::ResumeReading(C2)],
            "C3 was dropped from the line"
        );
    }
}
