//! echo (seeds 002, 003, 004): every message back exactly as received,
//! terminator included; `--upper` turns it to upper case; `--max-messages N`
//! closes a client after N echoes with seed 002's limit reply.

use std::collections::HashMap;

use super::sharing::{self, Mergeable};
use super::{
    BuildError, Built, ClientId, Datagrams, Handler, Outbox, Registration, Sharded, Sharing,
    Traits, no_files,
};
use crate::config::ServerConfig;

/// Seed 002's limit reply, byte for byte: its `tcpclient.py` compares the
/// whole `recv` against exactly these bytes.
pub const LIMIT_REPLY: &[u8] = b"STRINGS LIMIT REACHED, CLOSING CONNECTION";

pub struct Echo {
    upper: bool,
    /// `--max-messages`: `None` is no limit (the option's 0).
    max_messages: Option<u64>,
    /// Messages echoed per connected client; kept only with a limit, and
    /// an entry lives no longer than its connection.
    echoed: HashMap<ClientId, u64>,
}

impl Echo {
    pub fn new(upper: bool) -> Self {
        Echo {
            upper,
            max_messages: None,
            echoed: HashMap::new(),
        }
    }

    /// `--max-messages N`: a client's first `n` messages are echoed, its
    /// next one gets [`LIMIT_REPLY`] and a close. 0 means no limit.
    pub fn with_max_messages(mut self, n: u64) -> Self {
        self.max_messages = (n > 0).then_some(n);
        self
    }
}

/// What echo is like (see [`Traits`]).
pub const TRAITS: Traits = Traits {
    datagrams: Datagrams::Whole,
    sharing: Sharing::PerLoop,
    ..Traits::interactive("echo")
};

/// echo's entry in [`super::REGISTRY`].
pub static REGISTRATION: Registration = Registration {
    traits: &TRAITS,
    help: "Every message back as received (--upper: in upper case)",
    files: no_files,
    build: build_echo,
};

impl Handler for Echo {
    fn traits(&self) -> &'static Traits {
        &TRAITS
    }

    fn split(&mut self, loops: usize) -> Option<Sharded> {
        Some(sharing::split(self, loops))
    }

    fn on_message(&mut self, id: ClientId, msg: &[u8], out: &mut Outbox) {
        if let Some(limit) = self.max_messages {
            let echoed = self.echoed.entry(id).or_insert(0);
            if *echoed >= limit {
                // The reply ends as the message did (SPEC): none for an
                // idle-flushed message, so the seed's client sees exactly
                // LIMIT_REPLY in its one recv.
                let terminator = &msg[super::strip_terminator(msg).len()..];
                out.send_with(id, |buf| {
                    buf.extend_from_slice(LIMIT_REPLY);
                    buf.extend_from_slice(terminator);
                });
                out.close(id);
                // No on_disconnect follows a close the handler asked for.
                self.echoed.remove(&id);
                return;
            }
            *echoed += 1;
        }
        if self.upper {
            out.send_with(id, |buf| push_upper(buf, msg));
        } else {
            out.send(id, msg);
        }
    }

    fn on_disconnect(&mut self, id: ClientId, _out: &mut Outbox) {
        self.echoed.remove(&id);
    }
}

/// Appends `msg` in upper case: Unicode rules where it is valid UTF-8,
/// otherwise ASCII letters only with every other byte unchanged.
pub fn push_upper(buf: &mut Vec<u8>, msg: &[u8]) {
    match std::str::from_utf8(msg) {
        Ok(text) if !text.is_ascii() => {
            for c in text.chars().flat_map(char::to_uppercase) {
                let mut tmp = [0u8; 4];
                buf.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
            }
        }
        _ => buf.extend(msg.iter().map(u8::to_ascii_uppercase)),
    }
}

/// Clients of different loops never meet: a part per loop, nothing to add.
impl Mergeable for Echo {
    fn fresh(&self) -> Self {
        Echo {
            upper: self.upper,
            max_messages: self.max_messages,
            echoed: HashMap::new(),
        }
    }

    fn absorb(&mut self, _other: Self) -> Vec<String> {
        Vec::new()
    }
}

fn build_echo(config: &ServerConfig) -> Result<Built, BuildError> {
    Ok(Built::plain(
        Echo::new(config.upper).with_max_messages(config.max_messages),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::Effect;

    fn reply(upper: bool, msg: &[u8]) -> Vec<Effect> {
        let mut echo = Echo::new(upper);
        let mut out = Outbox::new();
        echo.on_message(ClientId(3), msg, &mut out);
        out.take()
    }

    fn sent(bytes: &[u8]) -> Vec<Effect> {
        vec![Effect::Send(ClientId(3), bytes.to_vec())]
    }

    #[test]
    fn echoes_exactly_with_each_terminator() {
        for msg in [
            &b"hello\n"[..],
            b"hello\r\n",
            b"hello", // idle-flushed or EOF tail: no terminator
            b"\n",
            b"\r\n",
            b"  spaced\tout \r\n",
            b"a\rb\n", // a `\r` not before `\n` is data
            b"\xff\xfe binary \x00\n",
            "Zoë straße\n".as_bytes(),
        ] {
            assert_eq!(reply(false, msg), sent(msg), "{msg:?}");
        }
    }

    #[test]
    fn upper_ascii_keeps_terminators() {
        assert_eq!(
            reply(true, b"Hello, World 42!\n"),
            sent(b"HELLO, WORLD 42!\n")
        );
        assert_eq!(reply(true, b"mixed Case\r\n"), sent(b"MIXED CASE\r\n"));
        assert_eq!(reply(true, b"no newline"), sent(b"NO NEWLINE"));
        assert_eq!(reply(true, b"\n"), sent(b"\n"));
    }

    #[test]
    fn upper_follows_unicode_rules_for_utf8() {
        assert_eq!(
            reply(true, "zoë straße\r\n".as_bytes()),
            sent("ZOË STRASSE\r\n".as_bytes())
        );
        assert_eq!(
            reply(true, "ǆ ﬁ ῳ é\n".as_bytes()),
            sent("Ǆ FI ΩΙ É\n".as_bytes())
        );
        assert_eq!(
            reply(true, "привет мир".as_bytes()),
            sent("ПРИВЕТ МИР".as_bytes())
        );
        // Characters with no case pass through.
        assert_eq!(
            reply(true, "名前 🦀 x\n".as_bytes()),
            sent("名前 🦀 X\n".as_bytes())
        );
    }

    #[test]
    fn upper_on_invalid_utf8_changes_ascii_letters_only() {
        // `\xe9` is Latin-1 `é`: not UTF-8, so it must come back untouched.
        assert_eq!(
            reply(true, b"caf\xe9 ok\xff\xfez\r\n"),
            sent(b"CAF\xe9 OK\xff\xfeZ\r\n")
        );
        // Valid UTF-8 next to an invalid byte: the whole message is treated
        // as bytes, so `ë` (c3 ab) stays lower case.
        assert_eq!(reply(true, b"zo\xc3\xab\x80\n"), sent(b"ZO\xc3\xab\x80\n"));
    }

    #[test]
    fn replies_go_to_the_sender_only_in_order() {
        let mut echo = Echo::new(false);
        let mut out = Outbox::new();
        echo.on_message(ClientId(1), b"one\n", &mut out);
        echo.on_message(ClientId(2), b"two\n", &mut out);
        echo.on_message(ClientId(1), b"three\n", &mut out);
        assert_eq!(
            out.take(),
            vec![
                Effect::Send(ClientId(1), b"one\n".to_vec()),
                Effect::Send(ClientId(2), b"two\n".to_vec()),
                Effect::Send(ClientId(1), b"three\n".to_vec()),
            ]
        );
    }

    #[test]
    fn handler_shape() {
        use crate::handlers::{Framing, ShutdownPolicy, SlowPolicy};
        let t = Echo::new(false).traits();
        assert_eq!(t.name, "echo");
        assert_eq!(t.framing, Framing::Lines { idle_flush: true });
        assert_eq!(t.shutdown, ShutdownPolicy::CloseNow);
        assert_eq!(t.slow, SlowPolicy::PauseReading);
        assert_eq!(t.datagrams, Datagrams::Whole, "SPEC: a datagram back whole");
        assert_eq!(t.sharing, Sharing::PerLoop);
    }

    fn limited(n: u64) -> Echo {
        Echo::new(false).with_max_messages(n)
    }

    #[test]
    fn max_messages_echoes_n_then_answers_the_next_with_its_terminator_and_closes() {
        for (last, reply) in [
            (
                &b"eleven\n"[..],
                &b"STRINGS LIMIT REACHED, CLOSING CONNECTION\n"[..],
            ),
            (
                b"eleven\r\n",
                b"STRINGS LIMIT REACHED, CLOSING CONNECTION\r\n",
            ),
            (b"eleven", b"STRINGS LIMIT REACHED, CLOSING CONNECTION"),
        ] {
            let mut echo = limited(10);
            let mut out = Outbox::new();
            for i in 0..10 {
                let msg = format!("m{i}");
                echo.on_message(ClientId(3), msg.as_bytes(), &mut out);
                assert_eq!(out.take(), sent(msg.as_bytes()), "message {i}");
            }
            echo.on_message(ClientId(3), last, &mut out);
            assert_eq!(
                out.take(),
                vec![
                    Effect::Send(ClientId(3), reply.to_vec()),
                    Effect::Close(ClientId(3))
                ],
                "{last:?}"
            );
            assert!(echo.echoed.is_empty(), "a closed client leaves no state");
        }
    }

    #[test]
    fn max_messages_counts_per_connection_and_forgets_the_gone() {
        let mut echo = Echo::new(true).with_max_messages(1);
        let mut out = Outbox::new();
        echo.on_message(ClientId(1), b"a\n", &mut out);
        echo.on_message(ClientId(2), b"b\n", &mut out);
        assert_eq!(
            out.take(),
            vec![
                Effect::Send(ClientId(1), b"A\n".to_vec()),
                Effect::Send(ClientId(2), b"B\n".to_vec()),
            ]
        );
        echo.on_disconnect(ClientId(2), &mut out);
        assert_eq!(echo.echoed.len(), 1);
        echo.on_message(ClientId(1), b"c\n", &mut out);
        assert_eq!(
            out.take(),
            vec![
                Effect::Send(
                    ClientId(1),
                    LIMIT_REPLY.iter().chain(b"\n").copied().collect()
                ),
                Effect::Close(ClientId(1)),
            ]
        );
    }

    #[test]
    fn max_messages_zero_is_no_limit_and_keeps_no_state() {
        let mut echo = limited(0);
        let mut out = Outbox::new();
        for _ in 0..1000 {
            echo.on_message(ClientId(1), b"x\n", &mut out);
        }
        assert_eq!(out.take().len(), 1000);
        assert!(echo.echoed.is_empty());
    }
}
