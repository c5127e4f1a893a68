//! presence (seed 001 task 2): a client's first message is its name; every
//! join and every departure sends all joined clients the sorted name list.
//!
//! A list is built once per event, into one `Arc<[u8]>` that every
//! recipient's send points at: a join among `n` clients costs O(total name
//! bytes) to build and `n` reference-count bumps to send, never `n` copies.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::{
    BuildError, Built, ClientId, Datagrams, Handler, Outbox, Registration, SlowPolicy, Traits,
    no_files, strip_terminator,
};
use crate::config::ServerConfig;

/// SPEC: a name is 1 to 20 bytes.
const MAX_NAME_BYTES: usize = 20;

const INVALID_NAME: &[u8] = b"error: invalid name (1 to 20 letters or digits)\n";
const NAME_TAKEN: &[u8] = b"error: name taken\n";

#[derive(Default)]
pub struct Presence {
    /// Joined clients by name: byte-ordered, so the list is one in-order walk,
    /// and the recipients of a broadcast come out in a deterministic order.
    by_name: BTreeMap<Box<[u8]>, ClientId>,
    /// Joined clients' names: tells a joined client from one whose first
    /// message is still to come, and finds the entry to remove on disconnect.
    by_id: HashMap<ClientId, Box<[u8]>>,
    /// Bytes of the current list (names, separators and the `\n`), so the
    /// buffer is allocated at its exact size.
    list_bytes: usize,
    /// Shutdown began: every client is about to be closed, so departures are
    /// no longer announced (n clients closing would otherwise queue n
    /// shrinking lists to each, O(n²) bytes, for connections being closed).
    shutting_down: bool,
}

impl Presence {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends the current list, built once, to every joined client.
    fn broadcast(&self, out: &mut Outbox) {
        if self.by_name.is_empty() {
            return;
        }
        let mut list = Vec::with_capacity(self.list_bytes);
        for name in self.by_name.keys() {
            if !list.is_empty() {
                list.push(b' ');
            }
            list.extend_from_slice(name);
        }
        list.push(b'\n');
        debug_assert_eq!(list.len(), self.list_bytes);
        let list: Arc<[u8]> = Arc::from(list);
        for &id in self.by_name.values() {
            out.send_shared(id, &list);
        }
    }

    fn reject(id: ClientId, reason: &[u8], out: &mut Outbox) {
        out.send(id, reason);
        out.close(id);
    }
}

/// SPEC: 1 to 20 bytes of `[A-Za-z0-9]`.
fn is_valid_name(name: &[u8]) -> bool {
    (1..=MAX_NAME_BYTES).contains(&name.len()) && name.iter().all(u8::is_ascii_alphanumeric)
}

/// What presence is like (see [`Traits`]).
pub const TRAITS: Traits = Traits {
    // SPEC: a broadcast must not wait for a client that does not read.
    slow: SlowPolicy::Disconnect,
    datagrams: Datagrams::No,
    ..Traits::interactive("presence")
};

/// presence's entry in [`super::REGISTRY`].
pub static REGISTRATION: Registration = Registration {
    traits: &TRAITS,
    help: "First message is a name; everyone gets the sorted list of names on each join/leave",
    files: no_files,
    build: build_presence,
};

impl Handler for Presence {
    fn traits(&self) -> &'static Traits {
        &TRAITS
    }

    fn on_message(&mut self, id: ClientId, msg: &[u8], out: &mut Outbox) {
        if self.by_id.contains_key(&id) {
            // SPEC: later messages from a joined client are ignored.
            return;
        }
        let name = strip_terminator(msg);
        if !is_valid_name(name) {
            Self::reject(id, INVALID_NAME, out);
            return;
        }
        if self.by_name.contains_key(name) {
            Self::reject(id, NAME_TAKEN, out);
            return;
        }
        let name: Box<[u8]> = name.into();
        // One separator before each name but the first, one `\n` at the end:
        // one byte per name in all.
        self.list_bytes += name.len() + 1;
        self.by_name.insert(name.clone(), id);
        self.by_id.insert(id, name);
        self.broadcast(out);
    }

    fn on_disconnect(&mut self, id: ClientId, out: &mut Outbox) {
        // A client that never named itself was never announced.
        let Some(name) = self.by_id.remove(&id) else {
            return;
        };
        self.by_name.remove(&name);
        self.list_bytes -= name.len() + 1;
        if !self.shutting_down {
            self.broadcast(out);
        }
    }

    fn on_shutdown(&mut self, _out: &mut Outbox) {
        self.shutting_down = true;
    }
}

fn build_presence(_: &ServerConfig) -> Result<Built, BuildError> {
    Ok(Built::plain(Presence::new()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::{Action, Effect, Payload, TEST_PEER};

    const GREG: ClientId = ClientId(1);
    const BOB: ClientId = ClientId(2);
    const VLAD: ClientId = ClientId(3);

    fn send(to: ClientId, bytes: &[u8]) -> Effect {
        Effect::Send(to, bytes.to_vec())
    }

    fn join(p: &mut Presence, out: &mut Outbox, id: ClientId, msg: &[u8]) -> Vec<Effect> {
        p.on_connect(id, TEST_PEER, out);
        p.on_message(id, msg, out);
        out.take()
    }

    #[test]
    fn seed_example() {
        let mut p = Presence::new();
        let mut out = Outbox::new();
        assert_eq!(
            join(&mut p, &mut out, GREG, b"greg"),
            vec![send(GREG, b"greg\n")]
        );
        assert_eq!(
            join(&mut p, &mut out, BOB, b"bob"),
            vec![send(BOB, b"bob greg\n"), send(GREG, b"bob greg\n")]
        );
        assert_eq!(
            join(&mut p, &mut out, VLAD, b"vlad"),
            vec![
                send(BOB, b"bob greg vlad\n"),
                send(GREG, b"bob greg vlad\n"),
                send(VLAD, b"bob greg vlad\n"),
            ]
        );
        p.on_disconnect(BOB, &mut out);
        assert_eq!(
            out.take(),
            vec![send(GREG, b"greg vlad\n"), send(VLAD, b"greg vlad\n")]
        );
    }

    #[test]
    fn name_with_newline_or_crlf() {
        let mut p = Presence::new();
        let mut out = Outbox::new();
        assert_eq!(
            join(&mut p, &mut out, ClientId(1), b"alice\n"),
            vec![send(ClientId(1), b"alice\n")]
        );
        assert_eq!(
            join(&mut p, &mut out, ClientId(2), b"Bob\r\n"),
            vec![
                send(ClientId(2), b"Bob alice\n"),
                send(ClientId(1), b"Bob alice\n")
            ]
        );
    }

    #[test]
    fn sorted_in_byte_order() {
        let mut p = Presence::new();
        let mut out = Outbox::new();
        for (i, name) in [&b"b"[..], b"a1", b"B", b"a", b"0"].iter().enumerate() {
            join(&mut p, &mut out, ClientId(i as u64 + 1), name);
        }
        join(&mut p, &mut out, ClientId(9), b"Z9");
        p.on_disconnect(ClientId(3), &mut out); // "B"
        let effects = out.take();
        assert_eq!(effects.len(), 5);
        assert!(
            effects
                .iter()
                .all(|e| matches!(e, Effect::Send(_, b) if b == b"0 Z9 a a1 b\n"))
        );
    }

    #[test]
    fn twenty_bytes_is_the_longest_name() {
        let mut p = Presence::new();
        let mut out = Outbox::new();
        let name = b"abcdefghij0123456789";
        assert_eq!(
            join(&mut p, &mut out, ClientId(1), name),
            vec![send(ClientId(1), b"abcdefghij0123456789\n")]
        );
    }

    #[test]
    fn invalid_names_get_an_error_and_are_closed_alone() {
        let bad: [&[u8]; 9] = [
            b"",
            b"\n",
            b"\r\n",
            b"abcdefghij0123456789X",
            b"bob!",
            "z\u{e9}ro".as_bytes(),
            b"bo b\n",
            b" bob\n",
            b"bob\t\n",
        ];
        for name in bad {
            let mut p = Presence::new();
            let mut out = Outbox::new();
            join(&mut p, &mut out, ClientId(1), b"alice");
            assert_eq!(
                join(&mut p, &mut out, ClientId(2), name),
                vec![send(ClientId(2), INVALID_NAME), Effect::Close(ClientId(2))],
                "name {name:?}"
            );
            // Never joined: not in later lists, not told about them.
            assert_eq!(
                join(&mut p, &mut out, ClientId(3), b"carol"),
                vec![
                    send(ClientId(1), b"alice carol\n"),
                    send(ClientId(3), b"alice carol\n"),
                ],
                "name {name:?}"
            );
        }
    }

    #[test]
    fn taken_name_gets_an_error_and_is_closed_alone() {
        let mut p = Presence::new();
        let mut out = Outbox::new();
        join(&mut p, &mut out, ClientId(1), b"bob\n");
        assert_eq!(
            join(&mut p, &mut out, ClientId(2), b"bob"),
            vec![send(ClientId(2), NAME_TAKEN), Effect::Close(ClientId(2))]
        );
        // Names are case-sensitive.
        assert_eq!(
            join(&mut p, &mut out, ClientId(3), b"BOB"),
            vec![
                send(ClientId(3), b"BOB bob\n"),
                send(ClientId(1), b"BOB bob\n")
            ]
        );
    }

    #[test]
    fn name_is_free_again_after_its_owner_leaves() {
        let mut p = Presence::new();
        let mut out = Outbox::new();
        join(&mut p, &mut out, ClientId(1), b"bob");
        p.on_disconnect(ClientId(1), &mut out);
        assert_eq!(out.take(), vec![], "nobody is left to tell");
        assert_eq!(
            join(&mut p, &mut out, ClientId(2), b"bob"),
            vec![send(ClientId(2), b"bob\n")]
        );
    }

    #[test]
    fn later_messages_from_a_joined_client_are_ignored() {
        let mut p = Presence::new();
        let mut out = Outbox::new();
        join(&mut p, &mut out, ClientId(1), b"alice");
        for msg in [&b"carol\n"[..], b"", b"bob!", b"alice"] {
            p.on_message(ClientId(1), msg, &mut out);
            assert_eq!(out.take(), vec![]);
        }
        assert_eq!(
            join(&mut p, &mut out, ClientId(2), b"carol"),
            vec![
                send(ClientId(1), b"alice carol\n"),
                send(ClientId(2), b"alice carol\n"),
            ]
        );
    }

    #[test]
    fn unnamed_client_leaving_announces_nothing() {
        let mut p = Presence::new();
        let mut out = Outbox::new();
        join(&mut p, &mut out, ClientId(1), b"alice");
        p.on_connect(ClientId(2), TEST_PEER, &mut out);
        p.on_disconnect(ClientId(2), &mut out);
        assert_eq!(out.take(), vec![]);
    }

    #[test]
    fn departures_during_shutdown_are_not_announced() {
        let mut p = Presence::new();
        let mut out = Outbox::new();
        join(&mut p, &mut out, ClientId(1), b"alice");
        join(&mut p, &mut out, ClientId(2), b"bob");
        p.on_shutdown(&mut out);
        p.on_disconnect(ClientId(1), &mut out);
        p.on_disconnect(ClientId(2), &mut out);
        assert_eq!(out.take(), vec![]);
    }

    #[test]
    fn one_broadcast_shares_one_buffer() {
        let mut p = Presence::new();
        let mut out = Outbox::new();
        for (i, name) in [&b"a"[..], b"b", b"c", b"d"].iter().enumerate() {
            p.on_message(ClientId(i as u64 + 1), name, &mut out);
            out.clear();
        }
        p.on_message(ClientId(5), b"e", &mut out);
        let shared: Vec<&Arc<[u8]>> = out
            .actions()
            .iter()
            .map(|a| match a {
                Action::Send {
                    payload: Payload::Shared(buf),
                    ..
                } => buf,
                other => panic!("expected a shared send, got {other:?}"),
            })
            .collect();
        assert_eq!(shared.len(), 5);
        assert_eq!(&shared[0][..], b"a b c d e\n");
        assert!(shared.iter().all(|buf| Arc::ptr_eq(buf, shared[0])));
        // One reference per send, none kept by the handler: no copy anywhere.
        assert_eq!(Arc::strong_count(shared[0]), 5);
    }
}
