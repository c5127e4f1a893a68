//! Drivers and invariant checks for the newer input parsers, shared (like
//! [`crate::harness`]) by the `cargo fuzz` targets in `fuzz/` and the
//! proptests in `tests/properties.rs`: the atm's accounts file, a journal
//! opened from arbitrary file bytes, the menu's and the atm's requests
//! (the handlers driven on a fake clock), and the datagram core (UDP peers,
//! their expiry, the bounded reply queue). Each check panics naming the
//! broken rule. Included by path next to `harness.rs`, whose [`Bytes`]
//! reader it uses.

#![allow(dead_code)] // each includer uses a different part

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nonblocking::handlers::atm::{self, Accounts, Atm};
use nonblocking::handlers::ledger::Ledger;
use nonblocking::handlers::menu::{self, Menu};
use nonblocking::handlers::{ClientId, Effect, Handler, Outbox, TEST_PEER};
use nonblocking::journal::{HEADER, Journal, MAX_RECORD_BYTES};
use nonblocking::server_core::datagram::{
    self, Admit, Drained, MAX_QUEUED_BYTES, Peers, QUEUED_OVERHEAD_BYTES, Replies,
};
use nonblocking::store::accounts_log;

use crate::harness::{Bytes, Clients, as_line};

// ---------------------------------------------------------------------------
// the atm's accounts file

/// Whatever the bytes, parsing never panics; a file that parses renders to
/// one canonical `NAME PIN BALANCE\n` line per account, which parses back
/// to the same accounts and renders the same again; a refusal names a line
/// of the file and none of its bytes (a PIN must never reach stderr).
pub fn check_accounts_file(text: &[u8]) {
    let lines = text.split(|&b| b == b'\n').count();
    match Accounts::parse(text) {
        Ok(accounts) => {
            let rendered = accounts.render();
            let again = Accounts::parse(&rendered)
                .unwrap_or_else(|e| panic!("the rendered file is refused: {e}: {rendered:?}"));
            assert_eq!(again, accounts, "render then parse changed the accounts");
            assert_eq!(again.render(), rendered, "rendering is not canonical");
            let blank = |l: &&[u8]| l.iter().all(|&b| b == b' ' || b == b'\t' || b == b'\r');
            let accounts_in_text = text.split(|&b| b == b'\n').filter(|l| !blank(l)).count();
            assert_eq!(accounts.len(), accounts_in_text, "an account line was lost");
            assert_eq!(rendered.split(|&b| b == b'\n').count(), accounts.len() + 1);
            for i in 0..accounts.len() {
                let account = accounts.get(i);
                assert_eq!(accounts.find(account.name.as_bytes()), Some(i));
                assert!(atm::accounts::valid_name(account.name.as_bytes()));
            }
        }
        Err(e) => {
            assert!(
                (1..=lines).contains(&e.line),
                "line {} of a {lines}-line file",
                e.line
            );
            // Nothing of the refused line is quoted: no field that could
            // be a PIN (4 or more digits) is in the message.
            let line = text.split(|&b| b == b'\n').nth(e.line - 1).unwrap();
            let shown = e.to_string();
            for field in line.split(|&b| b == b' ' || b == b'\t') {
                let field = field.strip_suffix(b"\r").unwrap_or(field);
                if field.len() >= 4 && field.iter().all(u8::is_ascii_digit) {
                    let field = std::str::from_utf8(field).unwrap();
                    assert!(!shown.contains(field), "{shown:?} quotes {field}");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// a journal opened from arbitrary bytes

/// A scratch file for one journal check, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // tmpfs when there is one: the journal syncs on every open.
        let dir = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        Scratch(dir.join(format!("nb-{tag}-{}-{n}", std::process::id())))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Opens a ledger journal whose file holds `bytes`. Either it is refused
/// and the file is left exactly as it was, or: every complete record was
/// replayed, only a torn last record (after our header) was cut, the file
/// now ends at a record boundary, opening it again replays the same
/// records and cuts nothing, and a record appended then is replayed after
/// them.
pub fn check_journal_file(bytes: &[u8]) {
    let scratch = Scratch::new("fuzz-journal");
    let path = &scratch.0;
    std::fs::write(path, bytes).expect("write the journal file");
    let open = |path: &Path| {
        let mut ledger = Ledger::new(PathBuf::from("unused-log"));
        let mut records: Vec<Vec<u8>> = Vec::new();
        let opened = Journal::open(path, |r| {
            assert!(r.len() <= MAX_RECORD_BYTES, "a record over the limit");
            assert!(!r.contains(&b'\n'), "a record holds a newline");
            records.push(r.to_vec());
            ledger.replay(r)
        });
        (opened, records, ledger)
    };
    let (opened, records, ledger) = open(path);
    let after = std::fs::read(path).expect("read the journal back");
    let (mut journal, replayed) = match opened {
        Ok(ok) => ok,
        Err(e) => {
            assert_eq!(after, bytes, "a refused journal was modified ({e})");
            assert!(
                matches!(e.kind(), io::ErrorKind::InvalidData),
                "refused with {e:?}"
            );
            assert!(e.to_string().starts_with("line "), "{e}");
            return;
        }
    };
    assert_eq!(replayed.records, records.len() as u64);
    if records.is_empty() && !bytes.starts_with(HEADER) && !replayed.headerless {
        // Empty or a torn header: started afresh.
        assert!(HEADER.starts_with(bytes), "{bytes:?} was overwritten");
        assert_eq!(after, HEADER);
    } else {
        // Kept as it was, up to the last record boundary.
        assert!(bytes.starts_with(&after), "the journal was rewritten");
        assert_eq!(
            (bytes.len() - after.len()) as u64,
            replayed.torn_bytes,
            "cut more than the torn record"
        );
        assert!(after.is_empty() || after.ends_with(b"\n"));
        assert!(
            replayed.torn_bytes == 0 || !replayed.headerless,
            "a headerless file had a record cut"
        );
        assert_eq!(replayed.headerless, !after.starts_with(HEADER));
    }
    // A record appended now is replayed after the others.
    journal
        .append(b"Fuzz credit 1\n")
        .expect("append to the journal");
    drop(journal);
    let (again, records2, ledger2) = open(path);
    let (_, replayed2) = again.expect("our own journal is refused on reopening");
    assert_eq!(replayed2.torn_bytes, 0);
    assert_eq!(records2.len(), records.len() + 1);
    assert_eq!(&records2[..records.len()], &records[..]);
    assert_eq!(records2.last().unwrap(), b"Fuzz credit 1");
    // The appended credit is the only difference in the balances.
    let log = |l: Ledger| l.render_log();
    let (before, after) = (log(ledger), log(ledger2));
    if !before.windows(5).any(|w| w == b"Fuzz ") {
        assert!(after.windows(11).any(|w| w == b"Fuzz $1.00\n"), "{after:?}");
    }
}

// ---------------------------------------------------------------------------
// menu and atm requests, on a fake clock

/// What a requests fuzz input does, one op at a time.
#[derive(Clone, Debug)]
pub enum Op {
    Connect,
    Message {
        client: usize,
        bytes: Vec<u8>,
    },
    Disconnect {
        client: usize,
    },
    /// The fake clock moves on by this many seconds.
    Wait {
        secs: u64,
    },
}

/// Decodes ops: an op byte, then its operands; a message is one of
/// `vocab`'s prefixes (or none) and up to 15 more bytes of the input.
pub fn ops_from_bytes(input: &[u8], vocab: &[&[u8]]) -> Vec<Op> {
    let mut b = Bytes::new(input);
    let mut ops = Vec::new();
    while !b.is_empty() {
        ops.push(match b.byte() % 8 {
            0 => Op::Connect,
            1..=4 => {
                let client = usize::from(b.byte());
                let kind = usize::from(b.byte());
                let len = usize::from(b.byte() % 16);
                let mut bytes = vocab
                    .get(kind % (vocab.len() + 1))
                    .map_or_else(Vec::new, |p| p.to_vec());
                bytes.extend_from_slice(b.take(len));
                Op::Message { client, bytes }
            }
            5 => Op::Disconnect {
                client: usize::from(b.byte()),
            },
            _ => Op::Wait {
                secs: u64::from(b.byte() % 64),
            },
        });
    }
    ops
}

pub const MENU_VOCAB: &[&[u8]] = &[
    b"1 ", b"1|", b"1", b"2", b"3", b"4", b"5", b" 3 \r\n", b"\t4\t",
];

/// The menu, against a model: `5` (ASCII blanks around it ignored) closes
/// the client and answers nothing; every other request gets exactly one
/// reply line, to its sender: `1 TEXT` the TEXT in upper case, `2` the
/// sender's address, `3` the replies given so far (this one included), `4`
/// the fake clock's distance from the start, anything else the error.
pub fn check_menu(ops: &[Op]) {
    let started = Instant::now();
    let mut now = started;
    let mut menu = Menu::new(started);
    let mut out = Outbox::new();
    let mut live = Clients::default();
    let mut served = 0u64;
    // Clients that sent a bare `1`: their next line is the sentence.
    let mut awaiting = std::collections::HashSet::new();
    for op in ops {
        out.set_now(now);
        match op {
            Op::Connect => {
                let id = live.connect();
                menu.on_connect(id, TEST_PEER, &mut out);
            }
            Op::Message { client, bytes } => {
                let (Some(id), Some(msg)) = (live.pick(*client), as_line(bytes)) else {
                    continue;
                };
                menu.on_message(id, msg, &mut out);
                let body = strip(msg);
                let effects = out.take();
                // After a bare `1`, the next line is the sentence, whatever
                // it holds.
                let upper = if awaiting.remove(&id) {
                    Some(body)
                } else if body.trim_ascii() == b"1" {
                    assert!(effects.is_empty(), "{msg:?} -> {effects:?}");
                    awaiting.insert(id);
                    continue;
                } else {
                    upper_text(body)
                };
                if upper.is_none() && body.trim_ascii() == b"5" {
                    assert!(
                        matches!(effects[..], [Effect::Close(c)] if c == id),
                        "{msg:?} -> {effects:?}"
                    );
                    live.remove(id);
                    menu.on_disconnect(id, &mut out);
                    out.take();
                    continue;
                }
                served += 1;
                let [Effect::Send(to, reply)] = &effects[..] else {
                    panic!("{msg:?} -> {effects:?}: one reply expected");
                };
                assert_eq!(*to, id, "a reply to another client");
                let want: Vec<u8> = if let Some(text) = upper {
                    // Echo's --upper: Unicode upper case for UTF-8 text,
                    // ASCII letters only otherwise.
                    let mut v = match std::str::from_utf8(text) {
                        Ok(t) => t.to_uppercase().into_bytes(),
                        Err(_) => text.to_ascii_uppercase(),
                    };
                    v.push(b'\n');
                    v
                } else {
                    let text = match body.trim_ascii() {
                        b"2" => menu::format_peer(TEST_PEER),
                        b"3" => format!("requests served = {served}"),
                        b"4" => format!(
                            "run time = {}",
                            menu::format_run_time(now.duration_since(started).as_secs())
                        ),
                        _ => "error: unknown option".to_string(),
                    };
                    format!("{text}\n").into_bytes()
                };
                assert_eq!(
                    String::from_utf8_lossy(reply),
                    String::from_utf8_lossy(&want),
                    "reply to {msg:?}"
                );
            }
            Op::Disconnect { client } => {
                let Some(id) = live.pick(*client) else {
                    continue;
                };
                menu.on_disconnect(id, &mut out);
                live.remove(id);
                awaiting.remove(&id);
                assert!(out.take().is_empty(), "the menu spoke at a disconnect");
            }
            Op::Wait { secs } => now += Duration::from_secs(*secs),
        }
    }
}

/// The TEXT of `1 TEXT` or `1|TEXT`.
fn upper_text(body: &[u8]) -> Option<&[u8]> {
    body.strip_prefix(b"1 ")
        .or_else(|| body.strip_prefix(b"1|"))
}

fn strip(msg: &[u8]) -> &[u8] {
    nonblocking::handlers::strip_terminator(msg)
}

pub const ATM_ACCOUNTS: &[u8] =
    b"charles 02323 100\nann 1234 -5.50\nBig 999999 79228162514264337593543950\n";

pub const ATM_VOCAB: &[&[u8]] = &[
    b"b",
    b"w",
    b"d",
    b"w 1",
    b"d0.5",
    b"ucharles p02323",
    b"ucharles p0000",
    b"uann p1234",
    b"uBig p999999",
    b"unobody p1234",
    b"u p",
    b" \tb\t\r\n",
];

/// The atm, whatever it is sent, on a fake clock: every message gets
/// exactly one reply, to its sender, ending in `\n` and one of the seed's
/// texts; a change is persisted before its reply, as change-log records
/// that, replayed onto the file, give the atm's accounts, and render to a
/// file that parses back; a PIN never shows in a diagnostic;
/// money is neither made nor lost (the sum of balances moves by exactly the
/// amounts withdrawn and deposited).
pub fn check_atm(ops: &[Op]) {
    let start = Instant::now();
    let mut now = start;
    let accounts = Accounts::parse(ATM_ACCOUNTS).expect("the test accounts");
    let total = |a: &Accounts| {
        (0..a.len())
            .map(|i| a.get(i).balance)
            .reduce(|x, y| x + y)
            .expect("the test accounts are not empty")
    };
    let mut bank = Atm::new(accounts.clone());
    // The accounts file as a restart would read it: the file plus the log.
    let mut saved = accounts.clone();
    let mut sum = total(&accounts);
    let mut out = Outbox::new();
    let mut live = Clients::default();
    for op in ops {
        out.set_now(now);
        match op {
            Op::Connect => {
                let id = live.connect();
                bank.on_connect(id, TEST_PEER, &mut out);
                assert!(out.take().is_empty());
            }
            Op::Message { client, bytes } => {
                let (Some(id), Some(msg)) = (live.pick(*client), as_line(bytes)) else {
                    continue;
                };
                bank.on_message(id, msg, &mut out);
                let effects = out.take();
                let mut persisted = None;
                let mut replies = Vec::new();
                for effect in &effects {
                    match effect {
                        // Change-log records (`NAME BALANCE`), appended.
                        Effect::Persist(bytes) => {
                            assert!(replies.is_empty(), "persisted after the reply");
                            assert!(persisted.is_none(), "persisted twice for one message");
                            persisted = Some(bytes.clone());
                        }
                        Effect::Send(to, reply) => {
                            assert_eq!(*to, id, "a reply to another client");
                            replies.push(reply.clone());
                        }
                        Effect::Diagnostic(line) => {
                            for pin in ["02323", "1234", "999999"] {
                                assert!(!line.contains(pin), "a PIN in {line:?}");
                            }
                        }
                        other => panic!("the atm answered {msg:?} with {other:?}"),
                    }
                }
                let [reply] = &replies[..] else {
                    panic!("{msg:?} -> {effects:?}: one reply expected");
                };
                let text = String::from_utf8_lossy(reply);
                let text = text
                    .strip_suffix('\n')
                    .unwrap_or_else(|| panic!("{reply:?} does not end in \\n"));
                let known = text.as_bytes() == atm::CHALLENGE
                    || text.as_bytes() == atm::IMPROPER
                    || text.as_bytes() == atm::LOCKED
                    || text.ends_with(" dollar(s) are in your balance.")
                    || (text.starts_with("Withdrew ") || text.starts_with("Deposited "))
                        && text.ends_with(" dollar(s).")
                    || text.starts_with("Invalid credentials. Please try the ")
                        && text.ends_with(" command again.");
                assert!(known, "{msg:?} -> unknown reply {text:?}");
                let moved = text.starts_with("Withdrew ") || text.starts_with("Deposited ");
                assert_eq!(
                    persisted.is_some(),
                    moved,
                    "{msg:?} -> {text:?}: persisted iff money moved"
                );
                if let Some(records) = persisted {
                    accounts_log::replay(&mut saved, &records).expect("the records replay");
                    assert_eq!(&saved, bank.accounts(), "persisted another state");
                    let file = saved.render();
                    let reread = Accounts::parse(&file).expect("the file the log makes parses");
                    assert_eq!(&reread, &saved, "the file does not read back");
                    let new_sum = total(&saved);
                    let amount = text
                        .split_whitespace()
                        .nth(1)
                        .and_then(|a| atm::accounts::parse_balance(a.as_bytes()))
                        .unwrap_or_else(|| panic!("no amount in {text:?}"));
                    let want = if text.starts_with("Withdrew ") {
                        sum - amount
                    } else {
                        sum + amount
                    };
                    assert_eq!(new_sum, want, "{text:?}: money made or lost");
                    sum = new_sum;
                }
                assert_eq!(total(bank.accounts()), sum, "balances changed unpersisted");
            }
            Op::Disconnect { client } => {
                let Some(id) = live.pick(*client) else {
                    continue;
                };
                bank.on_disconnect(id, &mut out);
                live.remove(id);
                assert!(out.take().is_empty(), "the atm spoke at a disconnect");
                assert!(!bank.is_waiting(id), "a gone client's request kept");
            }
            Op::Wait { secs } => now += Duration::from_secs(*secs),
        }
    }
}

// ---------------------------------------------------------------------------
// the datagram core

/// One step of the datagram core's input.
#[derive(Clone, Debug)]
pub enum DatagramOp {
    /// A datagram from peer address number `from` (of 8).
    Datagram {
        from: u8,
    },
    /// The handler closes a peer (menu's `5`).
    Forget {
        peer: u8,
    },
    Wait {
        millis: u64,
    },
    /// Expired peers are taken (the loop's timer fired).
    Expire,
    /// A reply of `len` bytes to address `to` is queued.
    Reply {
        to: u8,
        len: usize,
    },
    /// The socket takes `n` replies, then says `WouldBlock`; `fail` makes
    /// one of them an error instead.
    Flush {
        n: u8,
        fail: bool,
    },
    /// A received datagram, checked against the shaping rules.
    /// `bytes` is shaped as a received datagram, and as a reply (after
    /// `pad` bytes of padding, so replies reach their cap) to a request of
    /// `request_len` bytes.
    Shape {
        bytes: Vec<u8>,
        max_line: usize,
        is_line: bool,
        pad: usize,
        request_len: usize,
    },
}

/// `(--udp-idle in ms, --max-udp-peers, ops)`.
pub fn datagram_ops_from_bytes(input: &[u8]) -> (u64, usize, Vec<DatagramOp>) {
    let mut b = Bytes::new(input);
    let idle_millis = 1 + u64::from(b.byte()) * 10;
    // 0 to 8 places for the 8 addresses: full tables are reached.
    let max_peers = usize::from(b.byte() % 9);
    let mut ops = Vec::new();
    while !b.is_empty() {
        let op = b.byte();
        ops.push(match op % 8 {
            0 | 1 => DatagramOp::Datagram { from: b.byte() % 8 },
            2 => DatagramOp::Forget { peer: b.byte() % 8 },
            3 => DatagramOp::Wait {
                millis: u64::from(b.byte()) * 10,
            },
            4 => DatagramOp::Expire,
            5 => DatagramOp::Reply {
                to: b.byte() % 8,
                // Up to about a sixth of the queue's bound, so a few fill it.
                len: usize::from(b.byte()) * usize::from(b.byte()) * 12,
            },
            6 => DatagramOp::Flush {
                n: b.byte() % 8,
                fail: op & 0x80 != 0,
            },
            _ => {
                let max_line = usize::from(b.byte() % 8);
                let len = usize::from(b.byte() % 16);
                let pad = usize::from(b.byte()) * 8;
                let request_len = usize::from(b.byte()) * 2;
                DatagramOp::Shape {
                    bytes: b.take(len).to_vec(),
                    max_line,
                    is_line: op & 0x80 != 0,
                    pad,
                    request_len,
                }
            }
        });
    }
    (idle_millis, max_peers, ops)
}

fn peer_addr(n: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 40000 + u16::from(n)))
}

/// [`Peers`] against a model (each peer forgotten exactly when silent for
/// `--udp-idle`, in the order they fell silent, never earlier; a new peer
/// refused exactly when `--max-udp-peers` are tracked, and never tracked;
/// ids are never reused), [`Replies`] against a
/// queue model (order kept, bounded, every reply sent or counted as
/// dropped), and the shaping functions against SPEC's rules.
pub fn check_datagrams(idle_millis: u64, max_peers: usize, ops: &[DatagramOp]) {
    let idle = Duration::from_millis(idle_millis);
    let start = Instant::now();
    let mut now = start;
    let mut peers = Peers::new(idle, max_peers);
    // Model: address -> (id, last seen).
    let mut model: HashMap<SocketAddr, (ClientId, Instant)> = HashMap::new();
    let mut next_id = 0u64;
    let mut replies = Replies::new();
    let mut queued: VecDeque<(SocketAddr, usize)> = VecDeque::new();
    let mut charged = 0usize;
    let mut dropped = 0u64;
    for op in ops {
        match op {
            DatagramOp::Datagram { from } => {
                let addr = peer_addr(*from);
                let room = model.len() < max_peers;
                assert_eq!(peers.is_full(), !room);
                let admit = peers.admit(addr, now, || {
                    next_id += 1;
                    ClientId(next_id)
                });
                match model.get_mut(&addr) {
                    Some((id, seen)) => {
                        assert_eq!(admit, Admit::Known(*id), "{addr}");
                        *seen = now;
                    }
                    None if room => {
                        assert_eq!(admit, Admit::New(ClientId(next_id)), "{addr}");
                        model.insert(addr, (ClientId(next_id), now));
                    }
                    None => assert_eq!(admit, Admit::Refused, "{addr}"),
                }
            }
            DatagramOp::Forget { peer } => {
                let addr = peer_addr(*peer);
                match model.remove(&addr) {
                    Some((id, _)) => {
                        assert_eq!(peers.addr(id), Some(addr));
                        assert!(peers.forget(id), "a tracked peer not forgotten");
                        assert!(!peers.forget(id), "forgotten twice");
                    }
                    None => assert!(!peers.addr_is_known(addr)),
                }
            }
            DatagramOp::Wait { millis } => now += Duration::from_millis(*millis),
            DatagramOp::Expire => {
                let mut due: Vec<(Instant, ClientId)> = model
                    .values()
                    .filter(|(_, seen)| *seen + idle <= now)
                    .map(|&(id, seen)| (seen, id))
                    .collect();
                due.sort();
                let mut got = Vec::new();
                while let Some(id) = peers.poll_expired(now) {
                    got.push(id);
                }
                let got_set: std::collections::BTreeSet<ClientId> = got.iter().copied().collect();
                let due_set: std::collections::BTreeSet<ClientId> =
                    due.iter().map(|&(_, id)| id).collect();
                assert_eq!(got_set, due_set, "expired peers at {:?}", now - start);
                // In the order they fell silent (ties in any order).
                let silent_at = |id: &ClientId| due.iter().find(|d| d.1 == *id).unwrap().0;
                assert!(
                    got.windows(2).all(|w| silent_at(&w[0]) <= silent_at(&w[1])),
                    "expiry out of order: {got:?} {due:?}"
                );
                model.retain(|_, (id, _)| !got_set.contains(id));
                if let Some(next) = peers.poll_timeout() {
                    // Never later than the next peer due.
                    if let Some(first) = model.values().map(|&(_, seen)| seen + idle).min() {
                        assert!(next <= first, "the timer would fire late");
                    }
                }
            }
            DatagramOp::Reply { to, len } => {
                let charge = len + QUEUED_OVERHEAD_BYTES;
                let taken = replies.push(peer_addr(*to), &vec![b'r'; *len]);
                assert_eq!(taken, charged + charge <= MAX_QUEUED_BYTES, "bound");
                if taken {
                    charged += charge;
                    queued.push_back((peer_addr(*to), *len));
                } else {
                    dropped += 1;
                }
            }
            DatagramOp::Flush { n, fail } => {
                let mut calls = 0u8;
                let mut sent: Vec<(SocketAddr, usize)> = Vec::new();
                // Each call sends one reply of the batch it is offered.
                let flushed = replies.flush(|mut pending| {
                    calls += 1;
                    if calls > *n {
                        return Err(io::ErrorKind::WouldBlock.into());
                    }
                    if *fail && calls == 1 {
                        return Err(io::Error::from(io::ErrorKind::ConnectionRefused));
                    }
                    let (to, bytes) = pending.next().expect("flush offers what is queued");
                    sent.push((to.expect("a peer's address"), bytes.len()));
                    Ok(1)
                });
                let settled = usize::from(*n).min(queued.len());
                let gone: Vec<(SocketAddr, usize)> = queued.drain(..settled).collect();
                for (_, len) in &gone {
                    charged -= len + QUEUED_OVERHEAD_BYTES;
                }
                let want: Vec<(SocketAddr, usize)> = if *fail && settled > 0 {
                    dropped += 1;
                    gone[1..].to_vec()
                } else {
                    gone
                };
                assert_eq!(sent, want, "replies out of order, lost or repeated");
                assert_eq!(
                    flushed,
                    if queued.is_empty() {
                        Drained::Empty
                    } else {
                        Drained::Blocked
                    }
                );
                assert_eq!(replies.is_empty(), queued.is_empty());
            }
            DatagramOp::Shape {
                bytes,
                max_line,
                is_line,
                pad,
                request_len,
            } => {
                let body = nonblocking::handlers::strip_terminator(bytes);
                assert_eq!(
                    datagram::is_too_long(bytes, *max_line),
                    body.len() > *max_line
                );
                // A receive buffer of recv_buffer_len never cuts a datagram
                // that is not too long anyway.
                let cap = datagram::recv_buffer_len(*max_line);
                if bytes.len() > cap {
                    assert!(datagram::is_too_long(&bytes[..cap], *max_line));
                }
                let msg = datagram::message(bytes, *is_line);
                assert_eq!(msg, if *is_line { body } else { &bytes[..] });
                // A reply: one `\n` less for line handlers; over the larger
                // of 512 bytes and 3 times the request, the too-large reply.
                let mut payload = vec![b'p'; *pad];
                payload.extend_from_slice(bytes);
                let reply = datagram::reply(&payload, *is_line, *request_len);
                let want = match payload.split_last() {
                    Some((b'\n', rest)) if *is_line => rest,
                    _ => &payload[..],
                };
                if want.len() > (3 * request_len).max(512) {
                    assert_eq!(reply, datagram::REPLY_TOO_LARGE);
                } else {
                    assert_eq!(reply, want);
                }
            }
        }
        assert_eq!(peers.len(), model.len(), "peers tracked");
        assert_eq!(replies.dropped(), dropped, "dropped replies counted");
    }
    let mut ids: Vec<ClientId> = model.values().map(|&(id, _)| id).collect();
    ids.sort();
    assert_eq!(
        peers.drain(),
        ids,
        "shutdown forgets every peer, in id order"
    );
    assert!(peers.is_empty());
}
