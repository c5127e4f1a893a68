//! queue (seed 001 task 1): the line protocol around [`BoundedQueue`]:
//! `put ITEM`, `peek`, `pop` and `size`, one command per line.
//!
//! [`parse`] is the command language on its own, shared with
//! `nonblocking-client grpc-queue`, which reads the same commands from a
//! terminal and sends them over gRPC.
//!
//! Memory is bounded by `capacity` items of at most `--max-line` bytes each
//! (the server enforces the line limit before a line reaches us) and at most
//! [`crate::queue::MAX_ITEM_BYTES`].

use std::io::Write;

use super::{
    BuildError, Built, ClientId, Handler, Outbox, REPLY_TOO_LARGE, Registration, Traits, no_files,
    strip_terminator,
};
use crate::config::ServerConfig;
use crate::queue::BoundedQueue;

pub const USAGE_PUT: &str = "error: usage: put ITEM";
pub const USAGE_PEEK: &str = "error: usage: peek";
pub const USAGE_POP: &str = "error: usage: pop";
pub const USAGE_SIZE: &str = "error: usage: size";
/// Also the answer to a blank line: an empty command is not a known one,
/// and a request/reply client must never wait for an answer that never
/// comes.
pub const UNKNOWN: &str = "error: unknown command";

/// One well-formed command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    Put(&'a [u8]),
    Peek,
    Pop,
    Size,
}

/// What separates tokens: ASCII whitespace (space, tab, `\r`, form feed), so
/// surrounding blanks and a stray `\r` never become part of an item.
fn is_space(b: &u8) -> bool {
    b.is_ascii_whitespace()
}

/// The line's tokens: runs of non-space bytes.
fn tokens(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(is_space).filter(|t| !t.is_empty())
}

/// Parses one command line (its terminator may still be on it). Command
/// words are ASCII case-insensitive; blanks around words are ignored.
///
/// # Errors
/// The exact error line to answer (no `\n`): a usage line for a known
/// command with the wrong arguments, [`UNKNOWN`] for anything else,
/// a blank line included.
pub fn parse(line: &[u8]) -> Result<Command<'_>, &'static str> {
    let mut words = tokens(strip_terminator(line));
    let Some(command) = words.next() else {
        return Err(UNKNOWN);
    };
    let arg = words.next();
    let extra = words.next().is_some();
    let is = |name: &str| command.eq_ignore_ascii_case(name.as_bytes());
    let (parsed, usage) = if is("put") {
        (arg.filter(|_| !extra).map(Command::Put), USAGE_PUT)
    } else if is("peek") {
        (arg.is_none().then_some(Command::Peek), USAGE_PEEK)
    } else if is("pop") {
        (arg.is_none().then_some(Command::Pop), USAGE_POP)
    } else if is("size") {
        (arg.is_none().then_some(Command::Size), USAGE_SIZE)
    } else {
        return Err(UNKNOWN);
    };
    parsed.ok_or(usage)
}

pub struct Queue {
    /// The items as the clients sent them: any bytes but whitespace.
    queue: BoundedQueue<Box<[u8]>>,
}

impl Queue {
    /// `capacity` is `--queue-size`; 0 is allowed (every `put` answers
    /// `False`).
    pub fn new(capacity: usize) -> Self {
        Queue {
            queue: BoundedQueue::new(capacity),
        }
    }
}

/// What queue is like (see [`Traits`]).
pub const TRAITS: Traits = Traits::interactive("queue");

/// queue's entry in [`super::REGISTRY`].
pub static REGISTRATION: Registration = Registration {
    traits: &TRAITS,
    help: "One shared bounded FIFO: put ITEM, peek, pop, size",
    files: no_files,
    build: build_queue,
};

impl Handler for Queue {
    fn traits(&self) -> &'static Traits {
        &TRAITS
    }

    fn on_message(&mut self, id: ClientId, msg: &[u8], out: &mut Outbox) {
        let command = match parse(msg) {
            Ok(command) => command,
            Err(error) => return send_line(out, id, error.as_bytes()),
        };
        match command {
            Command::Put(item) => match self.queue.put(item.into()) {
                Ok(true) => out.send(id, b"True\n"),
                Ok(false) => out.send(id, b"False\n"),
                // Only an item over MAX_ITEM_BYTES gets here (a token is
                // never empty nor holds a space), with `--max-line` raised.
                Err(why) => out.send_with(id, |buf| {
                    let _ = writeln!(buf, "error: {}", why.reason());
                }),
            },
            Command::Peek => match self.queue.peek() {
                Some(item) => send_line(out, id, item),
                None => out.send(id, b"None\n"),
            },
            // An item the reply could not carry (a UDP datagram) stays.
            Command::Pop => match self.queue.peek() {
                Some(item) if out.reply_limit().is_some_and(|max| item.len() > max) => {
                    send_line(out, id, REPLY_TOO_LARGE);
                }
                Some(_) => {
                    if let Some(item) = self.queue.pop() {
                        send_line(out, id, &item);
                    }
                }
                None => out.send(id, b"None\n"),
            },
            Command::Size => {
                let size = self.queue.size();
                // Writing to a Vec cannot fail.
                out.send_with(id, |buf| {
                    let _ = writeln!(buf, "{size}");
                });
            }
        }
    }
}

/// `bytes` and a `\n`, written straight into the outbox.
fn send_line(out: &mut Outbox, id: ClientId, bytes: &[u8]) {
    out.send_with(id, |buf| {
        buf.extend_from_slice(bytes);
        buf.push(b'\n');
    });
}

fn build_queue(config: &ServerConfig) -> Result<Built, BuildError> {
    Ok(Built::plain(Queue::new(config.queue_size)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::Effect;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    const A: ClientId = ClientId(1);
    const B: ClientId = ClientId(2);

    /// Sends `line` from `id` and returns the bytes it was answered, checking
    /// that every action is a send to `id`.
    fn ask(q: &mut Queue, out: &mut Outbox, id: ClientId, line: &[u8]) -> Vec<u8> {
        q.on_message(id, line, out);
        let mut reply = Vec::new();
        for effect in out.take() {
            match effect {
                Effect::Send(to, bytes) if to == id => reply.extend(bytes),
                other => panic!("unexpected effect {other:?} for {line:?}"),
            }
        }
        reply
    }

    #[test]
    fn seed_transcript() {
        let mut q = Queue::new(3);
        let mut out = Outbox::new();
        let transcript: [(&[u8], &[u8]); 14] = [
            (b"put A\n", b"True\n"),
            (b"put B\n", b"True\n"),
            (b"put C\n", b"True\n"),
            (b"put D\n", b"False\n"),
            (b"size\n", b"3\n"),
            (b"peek\n", b"A\n"),
            (b"size\n", b"3\n"),
            (b"pop\n", b"A\n"),
            (b"pop\n", b"B\n"),
            (b"size\n", b"1\n"),
            (b"pop\n", b"C\n"),
            (b"pop\n", b"None\n"),
            (b"peek\n", b"None\n"),
            (b"size\n", b"0\n"),
        ];
        for (line, reply) in transcript {
            q.on_message(A, line, &mut out);
            assert_eq!(
                out.take(),
                vec![Effect::Send(A, reply.to_vec())],
                "{line:?}"
            );
        }
    }

    #[test]
    fn a_pop_whose_reply_could_not_be_carried_leaves_the_item() {
        let mut q = Queue::new(10);
        let mut out = Outbox::new();
        assert_eq!(ask(&mut q, &mut out, A, b"put 12345\n"), b"True\n");
        out.set_reply_limit(Some(4));
        let mut too_large = REPLY_TOO_LARGE.to_vec();
        too_large.push(b'\n');
        assert_eq!(ask(&mut q, &mut out, A, b"pop"), too_large);
        assert_eq!(ask(&mut q, &mut out, A, b"size"), b"1\n");
        out.set_reply_limit(Some(5));
        assert_eq!(ask(&mut q, &mut out, A, b"pop"), b"12345\n");
        assert_eq!(ask(&mut q, &mut out, A, b"pop"), b"None\n");
    }

    #[test]
    fn clients_share_one_queue() {
        let mut q = Queue::new(10);
        let mut out = Outbox::new();
        assert_eq!(ask(&mut q, &mut out, A, b"put x\n"), b"True\n");
        assert_eq!(ask(&mut q, &mut out, B, b"put y\n"), b"True\n");
        assert_eq!(ask(&mut q, &mut out, B, b"size\n"), b"2\n");
        assert_eq!(ask(&mut q, &mut out, B, b"pop\n"), b"x\n");
        assert_eq!(ask(&mut q, &mut out, A, b"peek\n"), b"y\n");
        assert_eq!(ask(&mut q, &mut out, A, b"pop\n"), b"y\n");
        assert_eq!(ask(&mut q, &mut out, B, b"pop\n"), b"None\n");
    }

    #[test]
    fn commands_are_case_insensitive_and_blanks_tolerated() {
        let mut q = Queue::new(10);
        let mut out = Outbox::new();
        assert_eq!(ask(&mut q, &mut out, A, b"PUT Apple\n"), b"True\n");
        assert_eq!(
            ask(&mut q, &mut out, A, b"  pUt \t bAnAnA  \r\n"),
            b"True\n"
        );
        assert_eq!(ask(&mut q, &mut out, A, b"Size"), b"2\n");
        assert_eq!(ask(&mut q, &mut out, A, b"\tPEEK \r\n"), b"Apple\n");
        assert_eq!(ask(&mut q, &mut out, A, b"Pop\r"), b"Apple\n");
        assert_eq!(ask(&mut q, &mut out, A, b"POP"), b"bAnAnA\n");
    }

    #[test]
    fn items_are_kept_as_sent_bytes() {
        let mut q = Queue::new(10);
        let mut out = Outbox::new();
        let items: [&[u8]; 4] = [b"\xff\xfe\x00", "\u{e9}t\u{e9}".as_bytes(), b"None", b"put"];
        for item in items {
            let mut line = b"put ".to_vec();
            line.extend_from_slice(item);
            line.push(b'\n');
            assert_eq!(ask(&mut q, &mut out, A, &line), b"True\n");
        }
        for item in items {
            let mut reply = item.to_vec();
            reply.push(b'\n');
            assert_eq!(ask(&mut q, &mut out, A, b"pop\n"), reply);
        }
    }

    #[test]
    fn capacity_zero_refuses_every_put() {
        let mut q = Queue::new(0);
        let mut out = Outbox::new();
        assert_eq!(ask(&mut q, &mut out, A, b"put A\n"), b"False\n");
        assert_eq!(ask(&mut q, &mut out, A, b"size\n"), b"0\n");
        assert_eq!(ask(&mut q, &mut out, A, b"pop\n"), b"None\n");
    }

    #[test]
    fn errors_answer_one_line_and_change_nothing() {
        let mut q = Queue::new(1);
        let mut out = Outbox::new();
        let cases: [(&[u8], &str); 11] = [
            (b"put\n", USAGE_PUT),
            (b"put   \n", USAGE_PUT),
            (b"put a b\n", USAGE_PUT),
            (b"peek x\n", USAGE_PEEK),
            (b"pop x\n", USAGE_POP),
            (b"size x\n", USAGE_SIZE),
            (b"get\n", UNKNOWN),
            (b"putA\n", UNKNOWN),
            (b"pu t A\n", UNKNOWN),
            (b"\xff\n", UNKNOWN),
            (b"sizes\n", UNKNOWN),
        ];
        for (line, reply) in cases {
            q.on_message(A, line, &mut out);
            assert_eq!(
                out.take(),
                vec![Effect::Send(A, format!("{reply}\n").into_bytes())],
                "{line:?}"
            );
        }
        assert_eq!(ask(&mut q, &mut out, A, b"size\n"), b"0\n");
    }

    #[test]
    fn blank_lines_answer_unknown_command() {
        // A request/reply client must never wait for an answer that never
        // comes, so a blank command is answered like any unknown one.
        let mut q = Queue::new(1);
        let mut out = Outbox::new();
        for line in [&b"\n"[..], b"\r\n", b"", b"  \t \n"] {
            assert_eq!(
                ask(&mut q, &mut out, A, line),
                b"error: unknown command\n",
                "{line:?}"
            );
        }
    }

    #[test]
    fn an_item_over_the_queue_limit_is_refused_with_a_reason() {
        // Reachable only with `--max-line` raised above the default.
        let mut q = Queue::new(2);
        let mut out = Outbox::new();
        let mut line = b"put ".to_vec();
        line.extend(std::iter::repeat_n(b'x', crate::queue::MAX_ITEM_BYTES + 1));
        assert_eq!(
            ask(&mut q, &mut out, A, &line),
            b"error: the item is longer than 65536 bytes\n"
        );
        assert_eq!(ask(&mut q, &mut out, A, b"size\n"), b"0\n");
    }

    #[test]
    fn parse_is_the_command_language() {
        assert_eq!(parse(b"PuT  x\r\n"), Ok(Command::Put(b"x")));
        assert_eq!(parse(b" peek"), Ok(Command::Peek));
        assert_eq!(parse(b"POP\n"), Ok(Command::Pop));
        assert_eq!(parse(b"size \t"), Ok(Command::Size));
        assert_eq!(parse(b"put"), Err(USAGE_PUT));
        assert_eq!(parse(b"size 1"), Err(USAGE_SIZE));
        assert_eq!(parse(b""), Err(UNKNOWN));
        assert_eq!(parse(b"nope"), Err(UNKNOWN));
    }

    #[derive(Clone, Debug)]
    enum Cmd {
        Put(Vec<u8>),
        Peek,
        Pop,
        Size,
    }

    fn cmd() -> impl Strategy<Value = Cmd> {
        // Items: 1..8 non-space bytes of any value.
        let item = proptest::collection::vec(
            any::<u8>().prop_filter("non-space", |b| !b.is_ascii_whitespace()),
            1..8,
        );
        prop_oneof![
            3 => item.prop_map(Cmd::Put),
            1 => Just(Cmd::Peek),
            2 => Just(Cmd::Pop),
            1 => Just(Cmd::Size),
        ]
    }

    /// The same command written another way the SPEC allows: the command
    /// word's case, blanks around it, and the terminator, chosen by `style`.
    fn restyle(line: &[u8], style: u16) -> Vec<u8> {
        let line = strip_terminator(line);
        let split = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
        let (word, rest) = line.split_at(split);
        let blanks: [&[u8]; 4] = [b"", b" ", b"\t", b" \t "];
        let mut v = blanks[usize::from(style & 3)].to_vec();
        v.extend(word.iter().enumerate().map(|(i, b)| {
            if style & (0x100 << (i % 4)) != 0 {
                b.to_ascii_uppercase()
            } else {
                *b
            }
        }));
        if !rest.is_empty() {
            v.extend_from_slice(blanks[usize::from((style >> 2) & 3)]);
            v.extend_from_slice(rest);
        }
        v.extend_from_slice(blanks[usize::from((style >> 4) & 3)]);
        let ends: [&[u8]; 3] = [b"\n", b"\r\n", b""];
        v.extend_from_slice(ends[usize::from((style >> 6) & 3) % 3]);
        v
    }

    proptest! {
        #[test]
        fn behaves_like_a_bounded_vecdeque(
            capacity in 0usize..6,
            cmds in proptest::collection::vec((cmd(), 1u64..4, any::<u16>()), 0..64),
        ) {
            let mut q = Queue::new(capacity);
            let mut out = Outbox::new();
            let mut model: VecDeque<Vec<u8>> = VecDeque::new();
            let line = |s: &[u8]| { let mut v = s.to_vec(); v.push(b'\n'); v };
            for (cmd, client, style) in cmds {
                let id = ClientId(client);
                let (sent, expected) = match cmd {
                    Cmd::Put(item) => {
                        let mut sent = b"put ".to_vec();
                        sent.extend_from_slice(&item);
                        sent.push(b'\n');
                        let reply = if model.len() < capacity {
                            model.push_back(item);
                            line(b"True")
                        } else {
                            line(b"False")
                        };
                        (sent, reply)
                    }
                    Cmd::Peek => (b"peek\n".to_vec(), line(model.front().map_or(&b"None"[..], |v| v))),
                    Cmd::Pop => {
                        let reply = match model.pop_front() {
                            Some(item) => line(&item),
                            None => line(b"None"),
                        };
                        (b"pop\n".to_vec(), reply)
                    }
                    Cmd::Size => (b"size\n".to_vec(), line(model.len().to_string().as_bytes())),
                };
                let sent = restyle(&sent, style);
                q.on_message(id, &sent, &mut out);
                prop_assert_eq!(out.take(), vec![Effect::Send(id, expected)]);
                prop_assert!(q.queue.size() <= capacity);
            }
        }
    }
}
