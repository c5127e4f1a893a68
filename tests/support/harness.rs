//! Drivers and invariant checks shared by the `cargo fuzz` targets in
//! `fuzz/` and the proptest properties in `tests/properties.rs`.
//!
//! Each check takes plain data (bytes, or a list of [`Event`]s), drives one
//! surface through its public API exactly as the servers do, and panics with
//! a message naming the broken rule. The fuzz targets decode their input
//! with the `*_from_bytes` functions; proptest builds the same values from
//! strategies. Included by path (`#[path]`), so it is not a crate of its own
//! and the main crate's build never sees `fuzz/`.

#![allow(dead_code)] // each includer uses a different part

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::ops::ControlFlow;
use std::path::PathBuf;

use nonblocking::framing::{LineFramer, LineTooLong};
use nonblocking::handlers::ledger::Ledger;
use nonblocking::handlers::presence::Presence;
use nonblocking::handlers::queue::Queue;
use nonblocking::handlers::sink::Sink;
use nonblocking::handlers::{
    ClientId, Effect, Handler, Outbox, ServerStats, TEST_PEER, strip_terminator,
};

/// Reads a fuzz input front to back; past the end every read is 0.
pub struct Bytes<'a> {
    rest: &'a [u8],
}

impl<'a> Bytes<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Bytes { rest: data }
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    pub fn byte(&mut self) -> u8 {
        match self.rest.split_first() {
            Some((&b, rest)) => {
                self.rest = rest;
                b
            }
            None => 0,
        }
    }

    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.rest.split_at(n.min(self.rest.len()));
        self.rest = rest;
        head
    }
}

// ---------------------------------------------------------------------------
// framer

/// Input layout: `[max_line-1] [cut count] [cut; count] data...`. Cuts are
/// positions in `data` (clamped), so any bytes give a valid case.
pub fn framer_from_bytes(input: &[u8]) -> (Vec<u8>, usize, Vec<usize>) {
    let mut b = Bytes::new(input);
    let max_line = 1 + usize::from(b.byte() % 24);
    let count = usize::from(b.byte() % 16);
    let cuts: Vec<usize> = b.take(count).iter().map(|&c| usize::from(c)).collect();
    (b.take(usize::MAX).to_vec(), max_line, cuts)
}

/// What one framing of a stream gave.
#[derive(Debug, PartialEq, Eq)]
pub struct Framed {
    /// Lines `push` emitted, terminators included.
    pub lines: Vec<Vec<u8>>,
    /// `Ok(tail flushed at EOF, if any)`, or the error and how many bytes of
    /// the input had been pushed when it came (the chunk that raised it
    /// included).
    pub result: Result<Option<Vec<u8>>, (LineTooLong, usize)>,
}

/// Pushes `data` cut at `cuts` (sorted, clamped) through a fresh framer,
/// then flushes, as the reactor does at EOF.
pub fn frame(data: &[u8], max_line: usize, cuts: &[usize]) -> Framed {
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(data.len())).collect();
    cuts.sort_unstable();
    cuts.push(data.len());
    let mut framer = LineFramer::new();
    let mut lines = Vec::new();
    let mut at = 0;
    for cut in cuts {
        let chunk = &data[at..cut];
        at = cut;
        let pushed = framer.push(chunk, max_line, |line| {
            lines.push(line.to_vec());
            ControlFlow::Continue(())
        });
        if let Err(e) = pushed {
            assert!(!framer.has_partial(), "framer holds bytes after an error");
            return Framed {
                lines,
                result: Err((e, at)),
            };
        }
        assert!(
            framer.partial_len() <= max_line + 1,
            "framer holds {} bytes with max_line {max_line}",
            framer.partial_len()
        );
    }
    let mut tail = None;
    match framer.flush(max_line, |t| tail = Some(t.to_vec())) {
        Ok(flushed) => assert_eq!(flushed, tail.is_some()),
        Err(e) => {
            assert!(tail.is_none(), "a too-long tail was handed out");
            assert!(!framer.has_partial(), "framer holds bytes after an error");
            return Framed {
                lines,
                result: Err((e, data.len())),
            };
        }
    }
    assert!(!framer.has_partial(), "flush left bytes behind");
    Framed {
        lines,
        result: Ok(tail),
    }
}

/// A line's length without its `\n` or `\r\n`.
fn content_len(line: &[u8]) -> usize {
    strip_terminator(line).len()
}

/// Whether bytes with no `\n` may still become a line of at most
/// `max_line`: one byte over is allowed if it is a `\r` (the start of `\r\n`).
/// A tail handed out by `flush` gets no such allowance (see
/// `tests/fuzz_regressions.rs`).
fn unfinished_fits(partial: &[u8], max_line: usize) -> bool {
    partial.len() <= max_line || (partial.len() == max_line + 1 && partial.last() == Some(&b'\r'))
}

/// The framer's invariants for one stream and one chunking.
pub fn check_framer(data: &[u8], max_line: usize, cuts: &[usize]) {
    let got = frame(data, max_line, cuts);
    // Every emitted line is one whole line that fits.
    for line in &got.lines {
        assert_eq!(line.last(), Some(&b'\n'), "line {line:?} lacks its \\n");
        assert_eq!(
            memchr_count(line),
            1,
            "line {line:?} holds more than one \\n"
        );
        assert!(
            content_len(line) <= max_line,
            "line {line:?} is over max_line {max_line}"
        );
    }
    let emitted: Vec<u8> = got.lines.concat();
    assert!(
        data.starts_with(&emitted),
        "emitted lines are not a prefix of the input"
    );
    match &got.result {
        Ok(tail) => {
            // Nothing lost, nothing added.
            let mut all = emitted.clone();
            if let Some(tail) = tail {
                assert!(!tail.is_empty(), "an empty tail was flushed");
                assert!(!tail.contains(&b'\n'), "tail {tail:?} holds a \\n");
                assert!(
                    tail.len() <= max_line,
                    "tail {tail:?} is over max_line {max_line}"
                );
                all.extend_from_slice(tail);
            }
            assert_eq!(all, data, "lines + tail differ from the input");
        }
        Err((_, pushed)) => {
            // The error is deserved: the line after the emitted ones is too
            // long, judging only by the bytes pushed so far.
            let rest = &data[emitted.len()..*pushed];
            let deserved = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => content_len(&rest[..=i]) > max_line,
                // Unfinished: too long already, or (at EOF, where a final
                // `\r` is content) longer than max_line.
                None => {
                    !unfinished_fits(rest, max_line)
                        || (*pushed == data.len() && rest.len() > max_line)
                }
            };
            assert!(
                deserved,
                "LineTooLong for {rest:?} with max_line {max_line}"
            );
        }
    }
    // Chunking never changes the outcome: same as one push of everything
    // (the error's position aside: a chunked stream may see it earlier).
    let whole = frame(data, max_line, &[]);
    assert_eq!(got.lines, whole.lines, "chunking changed the lines");
    match (&got.result, &whole.result) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "chunking changed the tail"),
        (Err(_), Err(_)) => {}
        (a, b) => panic!("chunking changed the result: {a:?} vs one push {b:?}"),
    }
}

fn memchr_count(line: &[u8]) -> usize {
    line.iter().filter(|&&b| b == b'\n').count()
}

// ---------------------------------------------------------------------------
// handler events

/// What the server tells a handler. Clients are named by their place among
/// the clients still connected (modulo their number), so any value is valid.
#[derive(Clone, Debug)]
pub enum Event {
    Connect,
    /// `force`: deliver even if the handler paused the client (a server that
    /// breaks the pause contract; only the sink looks at it).
    Message {
        client: usize,
        bytes: Vec<u8>,
        force: bool,
    },
    Disconnect {
        client: usize,
    },
    Shutdown,
}

/// Decodes events: an op byte, then its operands. A message is one of
/// `vocab`'s prefixes (chosen by a byte; one value past the end means none)
/// followed by up to 31 bytes of the input, so a fuzzer reaches the
/// commands a handler understands without guessing them.
pub fn events_from_bytes(input: &[u8], vocab: &[&[u8]]) -> Vec<Event> {
    let mut b = Bytes::new(input);
    let mut events = Vec::new();
    while !b.is_empty() {
        let event = match b.byte() % 10 {
            0..=2 => Event::Connect,
            3..=7 => {
                let client = usize::from(b.byte());
                let kind = b.byte();
                let len = usize::from(b.byte() % 32);
                let mut bytes = vocab
                    .get(usize::from(kind & 0x7f) % (vocab.len() + 1))
                    .map_or_else(Vec::new, |p| p.to_vec());
                bytes.extend_from_slice(b.take(len));
                Event::Message {
                    client,
                    bytes,
                    force: kind & 0x80 != 0,
                }
            }
            8 => Event::Disconnect {
                client: usize::from(b.byte()),
            },
            _ => Event::Shutdown,
        };
        events.push(event);
    }
    events
}

/// A line handler is given lines: at most one `\n`, at the end, and never
/// nothing (the framer's contract). Returns `None` for a message the
/// framer could not produce.
pub fn as_line(bytes: &[u8]) -> Option<&[u8]> {
    let line = match bytes.iter().position(|&b| b == b'\n') {
        Some(i) => &bytes[..=i],
        None => bytes,
    };
    (!line.is_empty()).then_some(line)
}

/// The clients connected now, in connection order, and the ids to give.
#[derive(Default)]
pub struct Clients {
    pub live: Vec<ClientId>,
    next: u64,
}

impl Clients {
    pub fn connect(&mut self) -> ClientId {
        self.next += 1;
        let id = ClientId(self.next);
        self.live.push(id);
        id
    }

    pub fn pick(&self, n: usize) -> Option<ClientId> {
        (!self.live.is_empty()).then(|| self.live[n % self.live.len()])
    }

    pub fn is_live(&self, id: ClientId) -> bool {
        self.live.contains(&id)
    }

    pub fn remove(&mut self, id: ClientId) {
        self.live.retain(|&c| c != id);
    }
}

// ---------------------------------------------------------------------------
// presence

pub const PRESENCE_VOCAB: &[&[u8]] = &[b"alice", b"bob\n", b"Carol\r\n", b"a", b"0"];

fn valid_name(name: &[u8]) -> bool {
    (1..=20).contains(&name.len()) && name.iter().all(u8::is_ascii_alphanumeric)
}

/// Presence against a model of SPEC: a join or a departure sends every
/// joined client the sorted list, once; a bad or taken name gets one
/// `error: ` line and a close, and nobody else hears of it; nothing goes to
/// a client that is gone.
pub fn check_presence(events: &[Event]) {
    let mut p = Presence::new();
    let mut out = Outbox::new();
    let mut clients = Clients::default();
    let mut joined: BTreeMap<Vec<u8>, ClientId> = BTreeMap::new();
    let mut shutting_down = false;
    for event in events {
        // (who the event is about, whether a list is due)
        let (about, broadcast) = match event {
            Event::Connect => {
                let id = clients.connect();
                p.on_connect(id, TEST_PEER, &mut out);
                (id, false)
            }
            Event::Message { client, bytes, .. } => {
                let (Some(id), Some(msg)) = (clients.pick(*client), as_line(bytes)) else {
                    continue;
                };
                let already = joined.values().any(|&c| c == id);
                p.on_message(id, msg, &mut out);
                let name = strip_terminator(msg);
                if already {
                    (id, false)
                } else if valid_name(name) && !joined.contains_key(name) {
                    joined.insert(name.to_vec(), id);
                    (id, true)
                } else {
                    let effects = out.take();
                    assert_eq!(effects.len(), 2, "{msg:?}: {effects:?}");
                    assert!(
                        matches!(&effects[0], Effect::Send(to, b) if *to == id && is_error_line(b)),
                        "{msg:?}: expected one error line, got {effects:?}"
                    );
                    assert_eq!(effects[1], Effect::Close(id), "{msg:?}");
                    clients.remove(id);
                    continue;
                }
            }
            Event::Disconnect { client } => {
                let Some(id) = clients.pick(*client) else {
                    continue;
                };
                p.on_disconnect(id, &mut out);
                clients.remove(id);
                let was_joined = joined.values().any(|&c| c == id);
                joined.retain(|_, c| *c != id);
                (id, was_joined && !shutting_down)
            }
            Event::Shutdown => {
                p.on_shutdown(&mut out);
                shutting_down = true;
                (ClientId(0), false)
            }
        };
        let effects = out.take();
        for effect in &effects {
            match effect {
                Effect::Send(to, bytes) => {
                    assert!(clients.is_live(*to), "send to gone client {to}");
                    assert!(
                        is_name_list(bytes),
                        "not a name list: {bytes:?} ({event:?})"
                    );
                }
                other => panic!("presence did {other:?} after {event:?} about {about}"),
            }
        }
        if broadcast && !joined.is_empty() {
            let mut list = joined
                .keys()
                .map(|n| n.as_slice())
                .collect::<Vec<_>>()
                .join(&b' ');
            list.push(b'\n');
            let mut want: Vec<Effect> = joined
                .values()
                .map(|&id| Effect::Send(id, list.clone()))
                .collect();
            let mut got = effects;
            want.sort_by_key(|e| format!("{e:?}"));
            got.sort_by_key(|e| format!("{e:?}"));
            assert_eq!(got, want, "list after {event:?}");
        } else {
            assert_eq!(effects, vec![], "nothing is due after {event:?}");
        }
    }
}

fn is_error_line(bytes: &[u8]) -> bool {
    bytes.starts_with(b"error: ") && bytes.ends_with(b"\n") && memchr_count(bytes) == 1
}

/// `a b c\n`: valid names, strictly increasing in byte order, one space
/// between them.
fn is_name_list(bytes: &[u8]) -> bool {
    let Some(body) = bytes.strip_suffix(b"\n") else {
        return false;
    };
    let names: Vec<&[u8]> = body.split(|&b| b == b' ').collect();
    names.iter().all(|n| valid_name(n)) && names.windows(2).all(|w| w[0] < w[1])
}

// ---------------------------------------------------------------------------
// queue

pub const QUEUE_VOCAB: &[&[u8]] = &[
    b"put ",
    b"PUT ",
    b"peek",
    b"pop",
    b"size",
    b" Pop\r\n",
    b"put\t",
    b"size ",
];

/// The queue against a model of SPEC: one bounded FIFO shared by everyone,
/// every command answered by exactly one line to its sender, never more than
/// `capacity` items. Tokens are split on ASCII whitespace (SPEC: "one token
/// of non-space bytes"; `\r` and tabs count as space, as in the handler).
pub fn check_queue(capacity: usize, events: &[Event]) {
    let mut q = Queue::new(capacity);
    let mut out = Outbox::new();
    let mut clients = Clients::default();
    let mut model: VecDeque<Vec<u8>> = VecDeque::new();
    for event in events {
        match event {
            Event::Connect => {
                let id = clients.connect();
                q.on_connect(id, TEST_PEER, &mut out);
            }
            Event::Message { client, bytes, .. } => {
                let (Some(id), Some(msg)) = (clients.pick(*client), as_line(bytes)) else {
                    continue;
                };
                q.on_message(id, msg, &mut out);
                let effects = out.take();
                let want = queue_model(&mut model, capacity, msg);
                assert!(model.len() <= capacity);
                match (want, effects.as_slice()) {
                    (None, []) => {}
                    (Some(want), [Effect::Send(to, got)]) => {
                        assert_eq!(*to, id, "reply to someone else");
                        assert_eq!(got.last(), Some(&b'\n'), "{got:?}");
                        assert_eq!(memchr_count(got), 1, "not one line: {got:?}");
                        match want {
                            Reply::Exactly(want) => {
                                assert_eq!(got, &want, "reply to {msg:?}")
                            }
                            Reply::Error => {
                                assert!(is_error_line(got), "reply to {msg:?}: {got:?}")
                            }
                        }
                    }
                    (want, got) => panic!("{msg:?}: want {want:?}, got {got:?}"),
                }
                continue;
            }
            Event::Disconnect { client } => {
                let Some(id) = clients.pick(*client) else {
                    continue;
                };
                q.on_disconnect(id, &mut out);
                clients.remove(id);
            }
            Event::Shutdown => q.on_shutdown(&mut out),
        }
        assert_eq!(out.take(), vec![], "queue acted on {event:?}");
    }
}

#[derive(Debug)]
enum Reply {
    Exactly(Vec<u8>),
    /// Some `error: ` line; the state is unchanged.
    Error,
}

fn queue_model(model: &mut VecDeque<Vec<u8>>, capacity: usize, msg: &[u8]) -> Option<Reply> {
    let line = |b: &[u8]| {
        let mut v = b.to_vec();
        v.push(b'\n');
        Reply::Exactly(v)
    };
    let words: Vec<&[u8]> = strip_terminator(msg)
        .split(u8::is_ascii_whitespace)
        .filter(|w| !w.is_empty())
        .collect();
    // A blank line is an unknown (empty) command: it is answered, so a
    // request/reply client never waits forever.
    let Some((command, args)) = words.split_first() else {
        return Some(line(b"error: unknown command"));
    };
    let command = command.to_ascii_lowercase();
    Some(match (command.as_slice(), args) {
        (b"put", [item]) if model.len() < capacity => {
            model.push_back(item.to_vec());
            line(b"True")
        }
        (b"put", [_]) => line(b"False"),
        (b"peek", []) => line(model.front().map_or(&b"None"[..], |v| v)),
        (b"pop", []) => match model.pop_front() {
            Some(item) => line(&item),
            None => line(b"None"),
        },
        (b"size", []) => line(model.len().to_string().as_bytes()),
        (b"put" | b"peek" | b"pop" | b"size", _) => Reply::Error,
        _ => line(b"error: unknown command"),
    })
}

// ---------------------------------------------------------------------------
// sink

/// The sink's turnstile: at any time exactly one connected client is read
/// (none when nobody is connected), and it is the earliest connected; stdout
/// gets exactly the bytes that client sent, and one client's stream never
/// interleaves with another's. A message forced onto a paused client (a
/// server bug) is dropped with a diagnostic and that client closed.
pub fn check_sink(events: &[Event]) {
    let mut s = Sink::new();
    let mut out = Outbox::new();
    let mut clients = Clients::default();
    let mut paused: HashSet<ClientId> = HashSet::new();
    // Whose bytes stdout got, run by run.
    let mut runs: Vec<ClientId> = Vec::new();
    for event in events {
        let mut expect_stdout: Option<&[u8]> = None;
        let mut forced: Option<ClientId> = None;
        match event {
            Event::Connect => {
                let id = clients.connect();
                s.on_connect(id, TEST_PEER, &mut out);
            }
            Event::Message {
                client,
                bytes,
                force,
            } => {
                let Some(id) = clients.pick(*client) else {
                    continue;
                };
                if bytes.is_empty() || (paused.contains(&id) && !force) {
                    continue; // the server does not read a paused client
                }
                s.on_message(id, bytes, &mut out);
                if paused.contains(&id) {
                    forced = Some(id);
                } else {
                    expect_stdout = Some(bytes);
                    if runs.last() != Some(&id) {
                        assert!(!runs.contains(&id), "client {id} wrote again later");
                        runs.push(id);
                    }
                }
            }
            Event::Disconnect { client } => {
                let Some(id) = clients.pick(*client) else {
                    continue;
                };
                s.on_disconnect(id, &mut out);
                clients.remove(id);
                paused.remove(&id);
            }
            Event::Shutdown => s.on_shutdown(&mut out),
        }
        let effects = out.take();
        if let Some(id) = forced {
            assert_eq!(effects.len(), 2, "{effects:?}");
            assert!(matches!(&effects[0], Effect::Diagnostic(_)), "{effects:?}");
            assert_eq!(effects[1], Effect::Close(id));
            clients.remove(id);
            paused.remove(&id);
        } else {
            let mut stdout = Vec::new();
            for effect in effects {
                match effect {
                    Effect::Stdout(b) => stdout.extend(b),
                    Effect::PauseReading(id) => {
                        assert!(clients.is_live(id), "pause of gone {id}");
                        assert!(paused.insert(id), "{id} paused twice");
                    }
                    Effect::ResumeReading(id) => {
                        assert!(clients.is_live(id), "resume of gone {id}");
                        assert!(paused.remove(&id), "{id} resumed but not paused");
                    }
                    other => panic!("sink did {other:?} after {event:?}"),
                }
            }
            assert_eq!(
                stdout,
                expect_stdout.unwrap_or_default(),
                "stdout after {event:?}"
            );
        }
        let reading: Vec<ClientId> = clients
            .live
            .iter()
            .copied()
            .filter(|id| !paused.contains(id))
            .collect();
        let want: Vec<ClientId> = clients.live.first().copied().into_iter().collect();
        assert_eq!(
            reading, want,
            "after {event:?}: the earliest connected client alone is read"
        );
    }
}

// ---------------------------------------------------------------------------
// ledger

pub const LEDGER_VOCAB: &[&[u8]] = &[
    b"Marc credit $",
    b"Marc debit ",
    b"bob DEBIT $0.",
    b" \tmarc\t credit  9999999999999999999999999999",
    "\u{e9}t\u{e9} Credit 1".as_bytes(),
    b"Zed debit 0.005",
    b"Zed credit 0.00",
    b"x credit 79228162514264337593543950335",
];

/// The ledger, whatever it is sent: it sends nothing; its log is one line
/// per account, `NAME $-?DIGITS.DD\n`, in strictly increasing byte order of
/// NAME, never `$-0.00`; its summary line counts what it was given. With
/// `journal` (`--journal`) it journals one record per applied transaction,
/// and those records, replayed into a fresh ledger, give the same log and
/// are not journaled again (a restart must not apply them twice); without
/// it, it journals nothing.
pub fn check_ledger(events: &[Event], cut: u64, journal: bool) {
    let path = PathBuf::from("fuzz-ledger-log.txt");
    let fresh = || {
        let ledger = Ledger::new(path.clone());
        if journal {
            ledger.with_journal()
        } else {
            ledger
        }
    };
    let mut ledger = fresh();
    let mut out = Outbox::new();
    let mut clients = Clients::default();
    let mut records = Vec::new();
    let mut lines = 0u64;
    for event in events {
        match event {
            Event::Connect => {
                let id = clients.connect();
                ledger.on_connect(id, TEST_PEER, &mut out);
            }
            Event::Message { client, bytes, .. } => {
                let (Some(id), Some(msg)) = (clients.pick(*client), as_line(bytes)) else {
                    continue;
                };
                ledger.on_message(id, msg, &mut out);
                lines += 1;
            }
            Event::Disconnect { client } => {
                let Some(id) = clients.pick(*client) else {
                    continue;
                };
                ledger.on_disconnect(id, &mut out);
                clients.remove(id);
            }
            Event::Shutdown => ledger.on_shutdown(&mut out),
        }
        // The journal's records come as Persist actions, nothing else.
        for effect in out.take() {
            match effect {
                Effect::Persist(bytes) => records.extend(bytes),
                other => panic!("the ledger answered {event:?} with {other:?}"),
            }
        }
    }
    let finish = ledger.finish(&ServerStats {
        cut_partial_lines: cut,
    });
    let log = ledger_log(&finish.files, &path);
    check_ledger_log(log);

    let summary = finish.status.last().expect("a summary status line");
    let (applied, discarded, cut_seen) =
        parse_summary(summary).unwrap_or_else(|| panic!("summary {summary:?}"));
    assert_eq!(cut_seen, cut, "{summary:?}");
    assert!(
        applied + discarded <= lines,
        "{summary:?} counts more than the {lines} lines sent"
    );

    if !journal {
        assert!(records.is_empty(), "journaled without --journal");
        return;
    }
    assert!(
        records.is_empty() || records.ends_with(b"\n"),
        "torn journal"
    );
    let records: Vec<&[u8]> = records
        .split(|&b| b == b'\n')
        .filter(|r| !r.is_empty())
        .collect();
    assert_eq!(
        records.len() as u64,
        applied,
        "one journal record per applied transaction"
    );
    let mut restarted = fresh();
    for record in &records {
        assert!(
            restarted.replay(record),
            "journal record {record:?} refused"
        );
    }
    assert!(
        restarted.finish(&ServerStats::default()).status[0].starts_with("Applied 0 "),
        "replayed records were counted (and journaled) again"
    );
    let finish = restarted.finish(&ServerStats::default());
    assert_eq!(
        ledger_log(&finish.files, &path),
        log,
        "replaying the journal gave another log"
    );
}

fn ledger_log<'a>(files: &'a [(PathBuf, Vec<u8>)], path: &PathBuf) -> &'a [u8] {
    let logs: Vec<&Vec<u8>> = files
        .iter()
        .filter(|(p, _)| p == path)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(logs.len(), 1, "finish must write --log once: {files:?}");
    logs[0]
}

/// The log's format rules (see [`check_ledger`]).
pub fn check_ledger_log(log: &[u8]) {
    assert!(log.is_empty() || log.ends_with(b"\n"), "log {log:?}");
    let mut names: Vec<&[u8]> = Vec::new();
    for line in log.split_inclusive(|&b| b == b'\n') {
        let body = line
            .strip_suffix(b"\n")
            .expect("every log line ends in \\n");
        let at = body
            .iter()
            .rposition(|&b| b == b' ')
            .unwrap_or_else(|| panic!("log line {line:?} has no space"));
        let (name, balance) = (&body[..at], &body[at + 1..]);
        assert!(
            !name.is_empty()
                && std::str::from_utf8(name).is_ok()
                && !name.iter().any(|b| matches!(b, b' ' | b'\t' | b'\n')),
            "bad name in {line:?}"
        );
        assert!(is_balance(balance), "bad balance in {line:?}");
        assert_ne!(balance, b"$-0.00", "{line:?}");
        names.push(name);
    }
    assert!(
        names.windows(2).all(|w| w[0] < w[1]),
        "log not sorted by name (or a name twice): {names:?}"
    );
}

/// `$-?DIGITS.DD`
fn is_balance(b: &[u8]) -> bool {
    let Some(b) = b.strip_prefix(b"$") else {
        return false;
    };
    let b = b.strip_prefix(b"-").unwrap_or(b);
    let Some((int, frac)) = b.split_at_checked(b.len().saturating_sub(3)) else {
        return false;
    };
    !int.is_empty()
        && int.iter().all(u8::is_ascii_digit)
        && frac.len() == 3
        && frac[0] == b'.'
        && frac[1..].iter().all(u8::is_ascii_digit)
}

/// `Applied A transactions, discarded D lines, cut C partial lines`.
fn parse_summary(line: &str) -> Option<(u64, u64, u64)> {
    let rest = line.strip_prefix("Applied ")?;
    let (a, rest) = rest.split_once(" transactions, discarded ")?;
    let (d, rest) = rest.split_once(" lines, cut ")?;
    let c = rest.strip_suffix(" partial lines")?;
    Some((a.parse().ok()?, d.parse().ok()?, c.parse().ok()?))
}

/// Sanity for the model helpers above (run by `tests/properties.rs`).
pub fn self_check() {
    assert!(is_name_list(b"a b\n"));
    assert!(!is_name_list(b"b a\n"));
    assert!(!is_name_list(b"a  b\n"));
    assert!(!is_name_list(b"\n"));
    assert!(is_balance(b"$0.00") && is_balance(b"$-12.34") && is_balance(b"$100.00"));
    assert!(!is_balance(b"$.00") && !is_balance(b"$1.0") && !is_balance(b"1.00"));
    assert_eq!(
        parse_summary("Applied 3 transactions, discarded 1 lines, cut 0 partial lines"),
        Some((3, 1, 0))
    );
}
