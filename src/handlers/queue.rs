//! queue (seed 001 task 1): one bounded FIFO shared by every client, driven
//! by `put ITEM`, `peek`, `pop` and `size`, one command per line.
//!
//! Memory is bounded by `capacity` items of at most `--max-line` bytes each
//! (the server enforces the line limit before a line reaches us).

use std::collections::VecDeque;
use std::io::Write;

use super::{ClientId, Framing, Handler, Outbox, strip_terminator};

const USAGE_PUT: &[u8] = b"error: usage: put ITEM\n";
const USAGE_PEEK: &[u8] = b"error: usage: peek\n";
const USAGE_POP: &[u8] = b"error: usage: pop\n";
const USAGE_SIZE: &[u8] = b"error: usage: size\n";
const UNKNOWN: &[u8] = b"error: unknown command\n";

/// Initial allocation at most: a huge `--queue-size` must not reserve memory
/// for items that may never come.
const INITIAL_ITEMS: usize = 64;

pub struct Queue {
    /// The items, oldest first. Never longer than `capacity`.
    items: VecDeque<Box<[u8]>>,
    /// `--queue-size`; 0 is allowed (every `put` answers `False`).
    capacity: usize,
}

impl Queue {
    pub fn new(capacity: usize) -> Self {
        Queue {
            items: VecDeque::with_capacity(capacity.min(INITIAL_ITEMS)),
            capacity,
        }
    }
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

impl Handler for Queue {
    fn name(&self) -> &'static str {
        "queue"
    }

    fn framing(&self) -> Framing {
        // Interactive: clients often send a command with no newline.
        Framing::Lines { idle_flush: true }
    }

    fn on_message(&mut self, id: ClientId, msg: &[u8], out: &mut Outbox) {
        let mut words = tokens(strip_terminator(msg));
        // A blank line is no command: nothing to answer (as Redis's inline
        // protocol does).
        let Some(command) = words.next() else {
            return;
        };
        let arg = words.next();
        let extra = words.next().is_some();
        let is = |name: &str| command.eq_ignore_ascii_case(name.as_bytes());
        if is("put") {
            match arg {
                Some(item) if !extra => {
                    if self.items.len() < self.capacity {
                        self.items.push_back(item.into());
                        out.send(id, b"True\n");
                    } else {
                        out.send(id, b"False\n");
                    }
                }
                _ => out.send(id, USAGE_PUT),
            }
        } else if is("peek") {
            if arg.is_some() {
                out.send(id, USAGE_PEEK);
            } else {
                match self.items.front() {
                    Some(item) => send_line(out, id, item),
                    None => out.send(id, b"None\n"),
                }
            }
        } else if is("pop") {
            if arg.is_some() {
                out.send(id, USAGE_POP);
            } else {
                match self.items.pop_front() {
                    Some(item) => send_line(out, id, &item),
                    None => out.send(id, b"None\n"),
                }
            }
        } else if is("size") {
            if arg.is_some() {
                out.send(id, USAGE_SIZE);
            } else {
                let size = self.items.len();
                // Writing to a Vec cannot fail.
                out.send_with(id, |buf| {
                    let _ = writeln!(buf, "{size}");
                });
            }
        } else {
            out.send(id, UNKNOWN);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::Effect;
    use proptest::prelude::*;

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
        let cases: [(&[u8], &[u8]); 11] = [
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
                vec![Effect::Send(A, reply.to_vec())],
                "{line:?}"
            );
        }
        assert_eq!(ask(&mut q, &mut out, A, b"size\n"), b"0\n");
    }

    #[test]
    fn blank_lines_are_ignored() {
        let mut q = Queue::new(1);
        let mut out = Outbox::new();
        for line in [&b"\n"[..], b"\r\n", b"", b"  \t \n"] {
            q.on_message(A, line, &mut out);
            assert_eq!(out.take(), vec![], "{line:?}");
        }
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
                prop_assert!(q.items.len() <= capacity);
            }
        }
    }
}
