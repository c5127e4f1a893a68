//! atm (seed 002): the UDP bank with a PIN, I/O-free.
//!
//! A request (`b`, `w<AMOUNT>`, `d<AMOUNT>`) gets the seed's challenge and
//! waits, for that client only, up to [`REQUEST_TIMEOUT`]; `u<NAME> p<PIN>`
//! answers it. Wrong credentials lock a NAME for the address they came
//! from ([`lockout`]: per NAME and address, and per address across all
//! NAMEs), so an attacker locks out only itself, and an unknown NAME is
//! treated exactly like an account. Time is only ever `out.now()`, so tests
//! drive the clocks.
//!
//! Transport: every reply is emitted in its TCP form, the seed's text plus
//! one `\n` (so the challenge ends in two). A UDP transport strips that one
//! `\n` (SPEC "Datagrams": a reply datagram is the reply without the `\n` a
//! TCP reply line ends with), which gives the seed's exact bytes, e.g. the
//! challenge `\n\tPlease give the username and pin number.\n` its own
//! `udpclient.py` compares against. The handler never knows which it is.
//!
//! Durability: a withdraw or deposit appends one change record, the
//! account's new balance ([`accounts_log::push_record`]), through
//! [`Outbox::append_record_with`] before its reply is queued; the server
//! syncs the store ([`AccountsLogStore`]: the accounts file as a snapshot
//! plus its change log) before that reply leaves. So an acknowledged change
//! is on disk, its cost does not depend on the number of accounts, and a
//! restart replays the log to the state after the last change: a record
//! sets a balance, so nothing is applied twice.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use rust_decimal::Decimal;

use super::{
    BuildError, Built, ClientId, FileRole, Handler, Outbox, OwnedFile, Registration, Traits,
    strip_terminator,
};
use crate::config::ServerConfig;
use crate::handlers::ledger::add_exact;
pub use crate::store::accounts_log::LoadError;
use crate::store::accounts_log::{self, AccountsLogStore};

pub mod accounts;
pub mod lockout;

pub use accounts::{
    Account, Accounts, ParseError, Pin, TooLong, fits_file, money, push_balance, push_money,
};
use lockout::Lockout;

/// The seed's challenge, exactly (its `udpclient.py` compares with `==`).
pub const CHALLENGE: &[u8] = b"\n\tPlease give the username and pin number.\n";
pub const IMPROPER: &[u8] = b"Improper format, please send command again.";
pub const LOCKED: &[u8] = b"Account locked. Try again later.";

/// How long a request waits for its credentials (SPEC: up to 30 s).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Wrong PINs in a row for one NAME from one address that lock it there.
pub const MAX_WRONG_PINS: u32 = lockout::MAX_WRONG_IN_A_ROW;
/// How long a lock lasts.
pub const LOCKOUT: Duration = lockout::LOCK_TIME;

/// What a request asks for, once credentials come.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Balance,
    Withdraw(Decimal),
    Deposit(Decimal),
}

impl Op {
    /// The word in `Invalid credentials. Please try the <word> command again.`
    fn word(self) -> &'static str {
        match self {
            Op::Balance => "balance",
            Op::Withdraw(_) => "withdraw",
            Op::Deposit(_) => "deposit",
        }
    }
}

/// One message, parsed. Its `Debug` hides the PIN.
#[derive(Clone, PartialEq, Eq)]
pub enum Request<'a> {
    Op(Op),
    /// `u<NAME> p<PIN>`; either part may be empty (then it is simply wrong).
    Credentials {
        name: &'a [u8],
        pin: &'a [u8],
    },
    Improper,
}

impl fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Request::Op(op) => f.debug_tuple("Op").field(op).finish(),
            Request::Credentials { name, .. } => f
                .debug_struct("Credentials")
                .field("name", &String::from_utf8_lossy(name))
                .field("pin", &"<redacted>")
                .finish(),
            Request::Improper => f.write_str("Improper"),
        }
    }
}

fn is_blank(b: &u8) -> bool {
    *b == b' ' || *b == b'\t'
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|b| !is_blank(b)).unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !is_blank(b))
        .map_or(start, |i| i + 1);
    &s[start..end]
}

/// Parses one message (its `\n` or `\r\n` ignored; spaces and tabs around
/// it and between the letter and the AMOUNT too). Letters are
/// case-sensitive, as in the seed.
pub fn parse_request(msg: &[u8]) -> Request<'_> {
    let msg = trim(strip_terminator(msg));
    let amount = |rest: &[u8]| accounts::parse_cents_amount(trim(rest));
    match msg {
        b"b" => Request::Op(Op::Balance),
        [b'w', rest @ ..] => {
            amount(rest).map_or(Request::Improper, |a| Request::Op(Op::Withdraw(a)))
        }
        [b'd', rest @ ..] => {
            amount(rest).map_or(Request::Improper, |a| Request::Op(Op::Deposit(a)))
        }
        [b'u', ..] => {
            let mut fields = msg.split(is_blank).filter(|f| !f.is_empty());
            match (fields.next(), fields.next(), fields.next()) {
                (Some([b'u', name @ ..]), Some([b'p', pin @ ..]), None) => {
                    Request::Credentials { name, pin }
                }
                _ => Request::Improper,
            }
        }
        _ => Request::Improper,
    }
}

/// A request waiting for its credentials.
#[derive(Copy, Clone, Debug)]
struct Waiting {
    op: Op,
    since: Instant,
}

/// The atm handler. Its `Debug` shows no PIN ([`Pin`]'s is redacted).
#[derive(Debug)]
pub struct Atm {
    accounts: Accounts,
    /// Who may try a PIN now (bounded tables, see [`lockout`]).
    lockout: Lockout,
    /// Each connected client's IP address, which the lockout counts by
    /// (removed at disconnect).
    addresses: HashMap<ClientId, IpAddr>,
    /// At most one per connected client (removed at disconnect).
    waiting: HashMap<ClientId, Waiting>,
}

/// A PIN compared when the NAME is unknown, so an unknown NAME costs the
/// same time as a wrong PIN.
fn decoy_pin() -> Pin {
    Pin::parse(b"000000000000").expect("a valid PIN")
}

impl Atm {
    pub fn new(accounts: Accounts) -> Atm {
        Atm {
            accounts,
            lockout: Lockout::new(),
            addresses: HashMap::new(),
            waiting: HashMap::new(),
        }
    }

    /// Reads the accounts file and replays its change log (reads only: the
    /// server's start compacts, see [`build`]).
    ///
    /// # Errors
    /// [`LoadError`], whose `Display` is the stderr line after `error: `
    /// (the server adds that prefix to every start-up error).
    pub fn load(path: &Path) -> Result<Atm, LoadError> {
        accounts_log::read(path).map(|(accounts, _, _)| Atm::new(accounts))
    }

    pub fn accounts(&self) -> &Accounts {
        &self.accounts
    }

    /// Whether `id` has a request waiting (expired or not).
    pub fn is_waiting(&self, id: ClientId) -> bool {
        self.waiting.contains_key(&id)
    }

    fn answer(&mut self, id: ClientId, op: Op, name: &[u8], pin: &[u8], out: &mut Outbox) {
        let now = out.now();
        // A client with no on_connect (a hand-driven handler) counts as one
        // address of its own kind.
        let addr = self
            .addresses
            .get(&id)
            .copied()
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        if self.lockout.is_locked(name, addr, now) {
            // No PIN is looked at, known NAME or not.
            return reply(out, id, LOCKED);
        }
        // An unknown NAME costs the same work as a wrong PIN and counts
        // exactly like one.
        let found = self.accounts.find(name);
        let right = match found {
            Some(index) => self.accounts.get(index).pin.matches(pin),
            None => {
                let _ = decoy_pin().matches(pin);
                false
            }
        };
        let Some(index) = found.filter(|_| right) else {
            let failure = self.lockout.failed(name, addr, now);
            let shown = shown_name(name);
            if failure.name_locked {
                // Only stderr may tell an account from an unknown NAME.
                let what = if found.is_some() {
                    "account"
                } else {
                    "unknown NAME"
                };
                out.diagnostic(format!(
                    "atm: {what} {shown} locked for {addr} for {} s after {MAX_WRONG_PINS} wrong credentials in a row",
                    LOCKOUT.as_secs()
                ));
            }
            if failure.address_locked {
                out.diagnostic(format!(
                    "atm: every NAME locked for {addr} for {} s after {} wrong credentials within {} s (the last for {shown})",
                    LOCKOUT.as_secs(),
                    lockout::MAX_WRONG_PER_WINDOW,
                    lockout::WINDOW.as_secs()
                ));
            }
            return invalid(id, op, out);
        };
        self.lockout.succeeded(name, addr);
        let balance = self.accounts.get(index).balance;
        let (verb, amount, change) = match op {
            Op::Balance => {
                return out.send_with(id, |buf| {
                    push_money(buf, balance);
                    buf.extend_from_slice(b" dollar(s) are in your balance.\n");
                });
            }
            Op::Withdraw(amount) => ("Withdrew ", amount, -amount),
            Op::Deposit(amount) => ("Deposited ", amount, amount),
        };
        // Past what a Decimal holds exactly, or what the accounts file's
        // grammar can write back: refused, nothing changes, so the file
        // always parses at the next start.
        let applied = add_exact(balance, change)
            .ok_or_else(|| "the balance would overflow".to_string())
            .and_then(|new| {
                self.accounts
                    .set_balance(index, new)
                    .map(|()| new)
                    .map_err(|too_long| too_long.to_string())
            });
        let new = match applied {
            Ok(new) => new,
            Err(why) => {
                out.diagnostic(format!(
                    "atm: {} refused for account {}: {why}",
                    op.word(),
                    self.accounts.get(index).name
                ));
                return reply(out, id, IMPROPER);
            }
        };
        // Persist first: the server sends nothing queued after this until
        // it is durable.
        let name = &self.accounts.get(index).name;
        out.append_record_with(|buf| accounts_log::push_record(buf, name, new));
        out.send_with(id, |buf| {
            buf.extend_from_slice(verb.as_bytes());
            push_money(buf, amount);
            buf.extend_from_slice(b" dollar(s). Balance is now ");
            push_money(buf, new);
            buf.extend_from_slice(b" dollar(s).\n");
        });
    }
}

/// A NAME as a diagnostic shows it: any bytes a client sent, escaped and
/// cut to a sane length (a NAME that exists is 1 to 20 of `[A-Za-z0-9]`).
fn shown_name(name: &[u8]) -> String {
    const MAX_SHOWN: usize = 40;
    let cut = &name[..name.len().min(MAX_SHOWN)];
    let mut shown: String = String::from_utf8_lossy(cut).escape_debug().collect();
    if name.len() > MAX_SHOWN {
        shown.push_str("...");
    }
    shown
}

/// The reply in its TCP form: `text` and one `\n` (see the module doc).
fn reply(out: &mut Outbox, id: ClientId, text: &[u8]) {
    out.send_with(id, |buf| {
        buf.extend_from_slice(text);
        buf.push(b'\n');
    });
}

fn invalid(id: ClientId, op: Op, out: &mut Outbox) {
    out.send_with(id, |buf| {
        buf.extend_from_slice(b"Invalid credentials. Please try the ");
        buf.extend_from_slice(op.word().as_bytes());
        buf.extend_from_slice(b" command again.\n");
    });
}

/// What atm is like (see [`Traits`]).
pub const TRAITS: Traits = Traits::interactive("atm");

/// atm's entry in [`super::REGISTRY`].
pub static REGISTRATION: Registration = Registration {
    traits: &TRAITS,
    help: "The seed's bank with a PIN: b, w<AMOUNT>, d<AMOUNT>, then u<NAME> p<PIN> (needs --accounts)",
    files,
    build,
};

impl Handler for Atm {
    fn traits(&self) -> &'static Traits {
        &TRAITS
    }

    fn on_connect(&mut self, id: ClientId, peer: SocketAddr, _out: &mut Outbox) {
        self.addresses.insert(id, peer.ip());
    }

    fn on_message(&mut self, id: ClientId, msg: &[u8], out: &mut Outbox) {
        let now = out.now();
        match parse_request(msg) {
            Request::Op(op) => {
                // A newer request replaces the waiting one.
                self.waiting.insert(id, Waiting { op, since: now });
                reply(out, id, CHALLENGE);
            }
            Request::Credentials { name, pin } => match self.waiting.remove(&id) {
                Some(w) if now.saturating_duration_since(w.since) <= REQUEST_TIMEOUT => {
                    self.answer(id, w.op, name, pin, out);
                }
                // No request, or it waited too long.
                _ => reply(out, id, IMPROPER),
            },
            // Leaves a waiting request as it was.
            Request::Improper => reply(out, id, IMPROPER),
        }
    }

    fn on_disconnect(&mut self, id: ClientId, _out: &mut Outbox) {
        self.waiting.remove(&id);
        self.addresses.remove(&id);
    }
}

/// The atm and its store: the accounts file replayed and compacted (see
/// [`AccountsLogStore::open`]; SPEC: a missing or malformed accounts file
/// stops the server at start, exit 1).
///
/// # Errors
/// [`BuildError::Io`] naming the file and the line.
pub fn build(config: &ServerConfig) -> Result<Built, BuildError> {
    // clap makes a missing --accounts a usage error first.
    let path = config.accounts.as_deref().unwrap_or(Path::new(""));
    let (accounts, store, notes) =
        AccountsLogStore::open(path).map_err(|e| BuildError::Io(e.to_string()))?;
    Ok(Built {
        handler: Box::new(Atm::new(accounts)),
        store: Some(Box::new(store)),
        notes,
    })
}

/// The accounts file, rewritten at each compaction (its change log,
/// `PATH.log`, is derived from it).
fn files(config: &ServerConfig) -> Vec<OwnedFile<'_>> {
    config
        .accounts
        .iter()
        .map(|path| OwnedFile {
            option: "--accounts",
            path,
            role: FileRole::Replaced,
        })
        .collect()
}

#[cfg(test)]
mod tests;
