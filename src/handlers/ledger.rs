//! ledger (seed 000): every line is a transaction `NAME TYPE AMOUNT` applied
//! to an account; at shutdown the balances are written to `--log`.
//!
//! Parsing and applying a line is the hot path (a client may stream millions
//! of lines), so it allocates nothing except the key of a new account: the
//! amount is read straight from the bytes into a mantissa and a scale, and
//! accounts are looked up by `&str`.
//!
//! Sums are exact. `rust_decimal`'s own `checked_add` would not do: when the
//! exact sum needs more than 96 bits of mantissa at the operands' scale it
//! rounds to a smaller scale and returns `Some`. [`add_exact`] does the sum in
//! `i128` and refuses anything it cannot represent exactly; the ledger then
//! discards that transaction as an overflow.
//!
//! The code is in three files: this one (the handler, its journal and the
//! log), `ledger/parse.rs` (a line to a transaction) and `ledger/money.rs`
//! (exact sums, rounding to cents).

use std::path::PathBuf;

use rust_decimal::Decimal;

use super::sharing;
use super::{
    ClientId, Datagrams, Finish, Framing, Handler, Outbox, Registration, ServerStats, Sharded,
    Sharing, ShutdownPolicy, Traits, strip_terminator,
};

mod accounts;
mod money;
mod parse;
mod setup;

use parse::parse_terminated;
use setup::{build, files};

pub use money::add_exact;
pub use parse::{Kind, Line, MAX_AMOUNT_DIGITS, Tx, parse_amount, parse_line, parse_transaction};

use accounts::Accounts;
use money::{Balance, push_cents, to_cents};

/// What applying one line did.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// Invalid, or it would have overflowed its balance.
    Discarded,
    /// Blank line: not counted either way.
    Skipped,
}

/// The ledger handler. See the module doc.
pub struct Ledger {
    /// Where [`Handler::finish`] asks the server to write the balances.
    log: PathBuf,
    /// Balances by account name, randomly keyed against floods of one
    /// bucket (see [`Accounts`]).
    accounts: Accounts,
    applied: u64,
    discarded: u64,
    /// With `--journal`: every applied transaction is also persisted
    /// ([`Outbox::append_record_with`]) as one record, the line itself, which
    /// [`Ledger::replay`] reads back at the next start.
    journal: bool,
}

impl Ledger {
    pub fn new(log: PathBuf) -> Self {
        Ledger {
            log,
            accounts: Accounts::new(),
            applied: 0,
            discarded: 0,
            journal: false,
        }
    }

    /// Keeps a record of every applied transaction for the server's
    /// journal (`--journal`).
    pub fn with_journal(mut self) -> Self {
        self.journal = true;
        self
    }

    /// Transactions applied so far.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// Lines discarded so far (invalid, or they would have overflowed).
    pub fn discarded(&self) -> u64 {
        self.discarded
    }

    /// The balance of `name`, if it has an account.
    pub fn balance(&self, name: &str) -> Option<Decimal> {
        self.accounts.get(name.as_bytes()).map(|b| b.to_decimal())
    }

    /// Parses and applies one line given without its terminator.
    pub fn apply_line(&mut self, line: &[u8]) -> Outcome {
        let outcome = match parse_line(line) {
            Line::Blank => Outcome::Skipped,
            Line::Invalid => Outcome::Discarded,
            Line::Tx(tx) => self.apply(tx),
        };
        self.count(outcome);
        outcome
    }

    #[inline(always)]
    fn count(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Applied => self.applied += 1,
            Outcome::Discarded => self.discarded += 1,
            Outcome::Skipped => {}
        }
    }

    /// With `--journal`, an applied line (without its terminator) is the
    /// record: replay parses it the same way, so it applies exactly as it
    /// did here.
    #[inline(always)]
    fn journal_line(&self, outcome: Outcome, line: &[u8], out: &mut Outbox) {
        if outcome == Outcome::Applied && self.journal {
            out.append_record_with(|buf| {
                buf.extend_from_slice(line);
                buf.push(b'\n');
            });
        }
    }

    #[inline(always)]
    fn apply(&mut self, tx: Tx<'_>) -> Outcome {
        let (mantissa, scale) = (tx.amount.mantissa(), tx.amount.scale());
        let delta = match tx.kind {
            Kind::Credit => mantissa,
            Kind::Debit => -mantissa,
        };
        // One hash of the name. A new account starts at 0 at the amount's
        // scale, so its first sum is the amount itself (|delta| < 10^28).
        let balance = self
            .accounts
            .get_or_insert_with(tx.name, || Balance::new(0, scale));
        if balance.add(delta, scale) {
            Outcome::Applied
        } else {
            Outcome::Discarded
        }
    }

    /// Re-applies one journal record (without its newline) at start;
    /// whether it was understood. A replayed transaction was applied (and
    /// counted) in an earlier run: it changes balances only, not this run's
    /// counts, and is not persisted again.
    pub fn replay(&mut self, record: &[u8]) -> bool {
        match parse_line(record) {
            Line::Tx(tx) => {
                self.apply(tx);
                true
            }
            Line::Blank | Line::Invalid => false,
        }
    }

    /// The `--log` file: `NAME $BALANCE\n` per account, sorted by name in
    /// byte order, two decimals rounded half away from zero, never `$-0.00`.
    pub fn render_log(&self) -> Vec<u8> {
        let mut accounts: Vec<(&[u8], &Balance)> = self.accounts.iter().collect();
        // SPEC: sorted by NAME in byte order.
        accounts.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut out = Vec::with_capacity(accounts.len() * 24);
        for (name, balance) in accounts {
            out.extend_from_slice(name);
            out.extend_from_slice(b" $");
            push_cents(&mut out, to_cents(*balance));
            out.push(b'\n');
        }
        out
    }
}

/// What ledger is like (see [`Traits`]).
pub const TRAITS: Traits = Traits {
    // SPEC: a ledger line ends only at `\n` or EOF, never on a pause.
    framing: Framing::LineBlocks,
    // SPEC: a connected client may still be sending transactions.
    shutdown: ShutdownPolicy::Drain,
    datagrams: Datagrams::No,
    // Balances are sums: one ledger per loop, added up at the end.
    sharing: Sharing::PerLoop,
    ..Traits::interactive("ledger")
};

/// ledger's entry in [`super::REGISTRY`].
pub static REGISTRATION: Registration = Registration {
    traits: &TRAITS,
    help: "Bank transactions `NAME credit|debit AMOUNT`; sorted balances to --log at shutdown",
    files,
    build,
};

impl Handler for Ledger {
    fn traits(&self) -> &'static Traits {
        &TRAITS
    }

    fn split(&mut self, loops: usize) -> Option<Sharded> {
        Some(sharing::split(self, loops))
    }

    fn on_message(&mut self, _id: ClientId, msg: &[u8], out: &mut Outbox) {
        // The ledger answers nothing, not even to a discarded line.
        let line = strip_terminator(msg);
        let outcome = self.apply_line(line);
        self.journal_line(outcome, line, out);
    }

    /// One pass over the block: a line whose amount ends it is parsed and
    /// applied where it lies, with no newline search and no call of its
    /// own; any other line is found and handled as [`Self::on_message`] does.
    fn on_lines(&mut self, id: ClientId, lines: &[u8], out: &mut Outbox) {
        let mut rest = lines;
        while !rest.is_empty() {
            let taken = match parse_terminated(rest) {
                Some((tx, line_len, taken)) => {
                    let outcome = self.apply(tx);
                    self.count(outcome);
                    self.journal_line(outcome, &rest[..line_len], out);
                    taken
                }
                None => {
                    let taken = memchr::memchr(b'\n', rest).map_or(rest.len(), |i| i + 1);
                    self.on_message(id, &rest[..taken], out);
                    taken
                }
            };
            rest = &rest[taken..];
        }
    }

    fn finish(&mut self, stats: &ServerStats) -> Finish {
        Finish {
            files: vec![(self.log.clone(), self.render_log())],
            status: vec![summary_line(
                self.applied,
                self.discarded,
                stats.cut_partial_lines,
            )],
            ..Finish::default()
        }
    }
}

/// The last status line. The nouns stay plural whatever the counts, as in
/// SPEC's text, so scripts can match one fixed pattern.
pub fn summary_line(applied: u64, discarded: u64, cut: u64) -> String {
    format!("Applied {applied} transactions, discarded {discarded} lines, cut {cut} partial lines")
}

/// Helpers the tests of this module and its children share.
#[cfg(test)]
mod testkit {
    use super::*;
    use std::str::FromStr;

    pub(super) fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    pub(super) fn tx<'a>(name: &'a str, kind: Kind, amount: &str) -> Line<'a> {
        Line::Tx(Tx {
            name: name.as_bytes(),
            kind,
            amount: dec(amount),
        })
    }

    /// A ledger fed `lines` (each given as a client sends it, terminator
    /// included) through the Handler interface, with the outbox checked to
    /// stay empty: the ledger answers nothing.
    pub(super) fn ledger_after(lines: &[&[u8]]) -> Ledger {
        let mut ledger = Ledger::new(PathBuf::from("log.txt"));
        let mut out = Outbox::new();
        for line in lines {
            ledger.on_message(ClientId(1), line, &mut out);
            assert!(out.is_empty(), "the ledger replied to {line:?}");
        }
        ledger
    }

    pub(super) fn log_after(lines: &[&[u8]]) -> String {
        String::from_utf8(ledger_after(lines).render_log()).unwrap()
    }
}

#[cfg(test)]
mod tests;
