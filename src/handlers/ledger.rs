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

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

use rust_decimal::{Decimal, RoundingStrategy};

use super::strip_terminator;
use super::{ClientId, Finish, Framing, Handler, Outbox, ServerStats, ShutdownPolicy};

/// SPEC: at most this many digits in an amount, all of them counted
/// (leading zeros too). 10^28 - 1 < 2^96, so any such amount fits in a
/// `Decimal` mantissa.
pub const MAX_AMOUNT_DIGITS: u32 = 28;

/// Largest magnitude of a `Decimal` mantissa (96 bits).
const MAX_MANTISSA: u128 = (1 << 96) - 1;

/// 10^0 ..= 10^28: scales never exceed 28.
const POW10: [i128; 29] = {
    let mut table = [1i128; 29];
    let mut i = 1;
    while i < table.len() {
        table[i] = table[i - 1] * 10;
        i += 1;
    }
    table
};

/// `m * 10^k` stays far inside `i128` (with room to add a `Decimal`
/// mantissa) while `|m| <= SCALE_UP_LIMIT[k]`.
const SCALE_UP_LIMIT: [u128; 29] = {
    let mut table = [0u128; 29];
    let mut i = 0;
    while i < table.len() {
        table[i] = (1u128 << 126) / POW10[i] as u128;
        i += 1;
    }
    table
};

/// Whether a transaction adds to or subtracts from its account.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Credit,
    Debit,
}

/// One parsed transaction, borrowing its name from the line.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Tx<'a> {
    pub name: &'a str,
    pub kind: Kind,
    /// Never negative; at most 28 digits.
    pub amount: Decimal,
}

/// What one line is, before it touches any account.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// Nothing but spaces and tabs: skipped, not counted.
    Blank,
    Tx(Tx<'a>),
    /// Anything else: discarded and counted.
    Invalid,
}

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
    /// Balances by account name. Names come from untrusted clients, so the
    /// hasher must be randomly keyed (a fixed one would let a client flood
    /// one bucket): ahash's `RandomState` is, and it took a line from ~78 ns
    /// to ~48 ns where std's SipHash was the largest single cost.
    accounts: HashMap<Box<str>, Decimal, ahash::RandomState>,
    applied: u64,
    discarded: u64,
    /// With `--journal`: records of the transactions applied since the
    /// server last took them (see [`Handler::take_journal`]).
    journal: Option<Vec<u8>>,
}

impl Ledger {
    pub fn new(log: PathBuf) -> Self {
        Ledger {
            log,
            accounts: HashMap::with_hasher(ahash::RandomState::new()),
            applied: 0,
            discarded: 0,
            journal: None,
        }
    }

    /// Keeps a record of every applied transaction for the server's
    /// journal (`--journal`).
    pub fn with_journal(mut self) -> Self {
        self.journal = Some(Vec::new());
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
        self.accounts.get(name).copied()
    }

    /// Parses and applies one line given without its terminator.
    pub fn apply_line(&mut self, line: &[u8]) -> Outcome {
        let outcome = match parse_line(line) {
            Line::Blank => Outcome::Skipped,
            Line::Invalid => Outcome::Discarded,
            Line::Tx(tx) => self.apply(tx),
        };
        match outcome {
            Outcome::Applied => {
                self.applied += 1;
                if let Some(journal) = &mut self.journal {
                    // The line itself is the record: replay parses it the
                    // same way, so it applies exactly as it did here.
                    journal.extend_from_slice(line);
                    journal.push(b'\n');
                }
            }
            Outcome::Discarded => self.discarded += 1,
            Outcome::Skipped => {}
        }
        outcome
    }

    fn apply(&mut self, tx: Tx<'_>) -> Outcome {
        let delta = match tx.kind {
            Kind::Credit => tx.amount,
            Kind::Debit => -tx.amount,
        };
        match self.accounts.get_mut(tx.name) {
            Some(balance) => match add_exact(*balance, delta) {
                Some(sum) => {
                    *balance = sum;
                    Outcome::Applied
                }
                None => Outcome::Discarded,
            },
            None => {
                // 0 + delta: exact, since |delta| < 10^28 fits a mantissa.
                self.accounts.insert(Box::from(tx.name), delta);
                Outcome::Applied
            }
        }
    }

    /// The `--log` file: `NAME $BALANCE\n` per account, sorted by name in
    /// byte order, two decimals rounded half away from zero, never `$-0.00`.
    pub fn render_log(&self) -> Vec<u8> {
        let mut accounts: Vec<(&str, &Decimal)> =
            self.accounts.iter().map(|(k, v)| (&**k, v)).collect();
        // `str`'s order is the byte order of its UTF-8.
        accounts.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut out = Vec::with_capacity(accounts.len() * 24);
        for (name, balance) in accounts {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b" $");
            push_cents(&mut out, to_cents(*balance));
            out.push(b'\n');
        }
        out
    }
}

impl Handler for Ledger {
    fn name(&self) -> &'static str {
        "ledger"
    }

    fn framing(&self) -> Framing {
        // SPEC: a ledger line ends only at `\n` or EOF, never on a pause.
        Framing::Lines { idle_flush: false }
    }

    fn shutdown_policy(&self) -> ShutdownPolicy {
        ShutdownPolicy::Drain
    }

    fn on_message(&mut self, _id: ClientId, msg: &[u8], _out: &mut Outbox) {
        // The ledger answers nothing, not even to a discarded line.
        self.apply_line(strip_terminator(msg));
    }

    fn take_journal(&mut self, into: &mut Vec<u8>) {
        if let Some(journal) = &mut self.journal {
            into.extend_from_slice(journal);
            journal.clear();
        }
    }

    fn replay(&mut self, record: &[u8]) -> bool {
        // A replayed transaction was applied (and counted) in an earlier
        // run: it changes balances only, not this run's counts or journal.
        match parse_line(record) {
            Line::Tx(tx) => {
                self.apply(tx);
                true
            }
            Line::Blank | Line::Invalid => false,
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
        }
    }
}

/// The last status line. The nouns stay plural whatever the counts, as in
/// SPEC's text, so scripts can match one fixed pattern.
pub fn summary_line(applied: u64, discarded: u64, cut: u64) -> String {
    format!("Applied {applied} transactions, discarded {discarded} lines, cut {cut} partial lines")
}

/// SPEC separators: runs of spaces and tabs, nothing else.
fn is_sep(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Splits off the first field of `s` (which starts with a non-separator)
/// and skips the separators after it.
fn next_field(s: &[u8]) -> (&[u8], &[u8]) {
    let end = s.iter().position(|&b| is_sep(b)).unwrap_or(s.len());
    let (field, rest) = s.split_at(end);
    let next = rest.iter().position(|&b| !is_sep(b)).unwrap_or(rest.len());
    (field, &rest[next..])
}

/// Classifies one line given without its terminator. Pure and
/// allocation-free.
pub fn parse_line(line: &[u8]) -> Line<'_> {
    let start = line.iter().position(|&b| !is_sep(b));
    let Some(start) = start else {
        return Line::Blank;
    };
    let (name, rest) = next_field(&line[start..]);
    let (kind, rest) = next_field(rest);
    let (amount, rest) = next_field(rest);
    if amount.is_empty() || !rest.is_empty() {
        return Line::Invalid; // fewer or more than three fields
    }
    match parse_fields(name, kind, amount) {
        Some(tx) => Line::Tx(tx),
        None => Line::Invalid,
    }
}

/// The transaction a line holds, or `None` for a blank or invalid line.
pub fn parse_transaction(line: &[u8]) -> Option<Tx<'_>> {
    match parse_line(line) {
        Line::Tx(tx) => Some(tx),
        Line::Blank | Line::Invalid => None,
    }
}

fn parse_fields<'a>(name: &'a [u8], kind: &[u8], amount: &[u8]) -> Option<Tx<'a>> {
    let kind = if kind.eq_ignore_ascii_case(b"credit") {
        Kind::Credit
    } else if kind.eq_ignore_ascii_case(b"debit") {
        Kind::Debit
    } else {
        return None;
    };
    Some(Tx {
        name: parse_name(name)?,
        kind,
        amount: parse_amount(amount)?,
    })
}

/// A NAME is valid UTF-8 with no whitespace at all: the fields are split on
/// spaces and tabs only, and any other Unicode whitespace (`\r`, `\x0b`,
/// `\x0c`, U+0085, U+00A0, U+3000, ...) makes the line invalid rather than
/// becoming part of a name, so "non-space" holds in the Unicode sense and a
/// log line always reads as one name, one space, one balance.
fn parse_name(name: &[u8]) -> Option<&str> {
    if name.is_ascii() {
        // The common case, without a full UTF-8 validation. ASCII
        // whitespace per `char::is_whitespace`: \t \n \x0b \x0c \r and
        // space; space and tab cannot be here.
        if name.iter().any(|b| (b'\n'..=b'\r').contains(b)) {
            return None;
        }
        // SAFETY: every byte is ASCII, so the bytes are valid UTF-8.
        return Some(unsafe { std::str::from_utf8_unchecked(name) });
    }
    let name = std::str::from_utf8(name).ok()?;
    (!name.chars().any(char::is_whitespace)).then_some(name)
}

/// `$`?, digits, then optionally `.` and digits; at most 28 digits in all.
/// Public because the atm's amounts share the grammar (SPEC "atm").
pub fn parse_amount(amount: &[u8]) -> Option<Decimal> {
    let s = amount.strip_prefix(b"$").unwrap_or(amount);
    // Up to 19 digits fit a u64 (cheaper than u128 arithmetic per digit);
    // the rest of the 28 allowed go into `mantissa`.
    let mut low: u64 = 0;
    let mut mantissa: u128 = 0;
    let mut digits = 0u32;
    let mut scale = 0u32;
    let mut int_digits = 0u32;
    let mut seen_point = false;
    for &b in s {
        match b {
            b'0'..=b'9' => {
                digits += 1;
                if digits <= 19 {
                    low = low * 10 + u64::from(b - b'0');
                } else if digits > MAX_AMOUNT_DIGITS {
                    return None;
                } else {
                    if digits == 20 {
                        mantissa = u128::from(low);
                    }
                    mantissa = mantissa * 10 + u128::from(b - b'0');
                }
                if seen_point {
                    scale += 1;
                } else {
                    int_digits += 1;
                }
            }
            b'.' if !seen_point && int_digits > 0 => seen_point = true,
            _ => return None,
        }
    }
    if int_digits == 0 || (seen_point && scale == 0) {
        return None; // no digits at all (``, `$`), or `2.`
    }
    if digits <= 19 {
        mantissa = u128::from(low);
    }
    // mantissa < 10^28 < 2^96 and scale <= 27: always representable.
    Some(decimal(mantissa, false, scale))
}

/// `a + b` exactly, or `None` when no `Decimal` holds the exact sum (the
/// ledger's overflow). Unlike `Decimal::checked_add` it never rounds.
pub fn add_exact(a: Decimal, b: Decimal) -> Option<Decimal> {
    add_aligned(a.mantissa(), a.scale(), b.mantissa(), b.scale()).or_else(|| {
        // Trailing zeros (a balance that once held `2.50`) may have forced a
        // scale the sum does not need. Without them, an operand that will not
        // scale up to the other's scale proves the sum is too big: the other
        // operand's last digit is then nonzero, so the sum's is too.
        let (a, b) = (a.normalize(), b.normalize());
        add_aligned(a.mantissa(), a.scale(), b.mantissa(), b.scale())
    })
}

/// Sums `ma * 10^-sa + mb * 10^-sb` at the larger scale, dropping trailing
/// zeros only while the mantissa is too wide (that loses nothing).
fn add_aligned(ma: i128, sa: u32, mb: i128, sb: u32) -> Option<Decimal> {
    let (mut sum, mut scale) = if sa == sb {
        // The common case; |ma|, |mb| < 2^96, so this cannot overflow.
        (ma + mb, sa)
    } else {
        // Only the operand with the smaller scale moves. Past the limit the
        // sum could not fit in 96 bits anyway (see `add_exact`).
        let (small, k, other, scale) = if sa < sb {
            (ma, sb - sa, mb, sb)
        } else {
            (mb, sa - sb, ma, sa)
        };
        if small.unsigned_abs() > SCALE_UP_LIMIT[k as usize] {
            return None;
        }
        (small * POW10[k as usize] + other, scale)
    };
    while sum.unsigned_abs() > MAX_MANTISSA {
        if scale == 0 || sum % 10 != 0 {
            return None;
        }
        sum /= 10;
        scale -= 1;
    }
    Some(decimal(sum.unsigned_abs(), sum < 0, scale))
}

/// A `Decimal` from a magnitude below 2^96 and a scale of at most 28.
fn decimal(magnitude: u128, negative: bool, scale: u32) -> Decimal {
    debug_assert!(magnitude <= MAX_MANTISSA && scale <= 28);
    let lo = magnitude as u32;
    let mid = (magnitude >> 32) as u32;
    let hi = (magnitude >> 64) as u32;
    Decimal::from_parts(lo, mid, hi, negative, scale)
}

/// The balance in whole cents, rounded half away from zero.
fn to_cents(balance: Decimal) -> i128 {
    let rounded = balance.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
    // round_dp leaves a scale of at most 2; |mantissa| < 2^96, so * 100 fits.
    rounded.mantissa() * POW10[(2 - rounded.scale().min(2)) as usize]
}

/// `12.34`, `-12.34`, `0.00`: a zero is never signed (`mantissa` of a
/// negative zero is 0).
fn push_cents(out: &mut Vec<u8>, cents: i128) {
    if cents < 0 {
        out.push(b'-');
    }
    let abs = cents.unsigned_abs();
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{}.{:02}", abs / 100, abs % 100);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_records_applied_lines_only_and_replays_to_the_same_balances() {
        let mut ledger = Ledger::new(PathBuf::from("log.txt")).with_journal();
        let mut out = Outbox::new();
        for line in [
            &b"Marc credit $2\n"[..],
            b"bad line\n",
            b"Marc debit 1.5\r\n",
            b"\n",
            b"Ann credit 7",
        ] {
            ledger.on_message(ClientId(1), line, &mut out);
        }
        let mut records = Vec::new();
        ledger.take_journal(&mut records);
        assert_eq!(records, b"Marc credit $2\nMarc debit 1.5\nAnn credit 7\n");
        let mut again = Vec::new();
        ledger.take_journal(&mut again);
        assert!(again.is_empty(), "records are handed over once");

        let mut restarted = Ledger::new(PathBuf::from("log.txt")).with_journal();
        for record in records.split(|&b| b == b'\n').filter(|r| !r.is_empty()) {
            assert!(restarted.replay(record));
        }
        assert_eq!(restarted.render_log(), ledger.render_log());
        assert_eq!(
            restarted.applied(),
            0,
            "replayed transactions belong to an earlier run"
        );
        let mut none = Vec::new();
        restarted.take_journal(&mut none);
        assert!(
            none.is_empty(),
            "replaying must not journal the records a second time"
        );
        assert!(!restarted.replay(b"not a transaction"));
    }

    #[test]
    fn without_a_journal_nothing_is_recorded() {
        let mut ledger = Ledger::new(PathBuf::from("log.txt"));
        ledger.on_message(ClientId(1), b"Marc credit 2\n", &mut Outbox::new());
        let mut records = Vec::new();
        ledger.take_journal(&mut records);
        assert!(records.is_empty());
    }
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use std::str::FromStr;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn tx<'a>(name: &'a str, kind: Kind, amount: &str) -> Line<'a> {
        Line::Tx(Tx {
            name,
            kind,
            amount: dec(amount),
        })
    }

    /// A ledger fed `lines` (each given as a client sends it, terminator
    /// included) through the Handler interface, with the outbox checked to
    /// stay empty: the ledger answers nothing.
    fn ledger_after(lines: &[&[u8]]) -> Ledger {
        let mut ledger = Ledger::new(PathBuf::from("log.txt"));
        let mut out = Outbox::new();
        for line in lines {
            ledger.on_message(ClientId(1), line, &mut out);
            assert!(out.is_empty(), "the ledger replied to {line:?}");
        }
        ledger
    }

    fn log_after(lines: &[&[u8]]) -> String {
        String::from_utf8(ledger_after(lines).render_log()).unwrap()
    }

    // ----- grammar ----------------------------------------------------------

    #[test]
    fn three_fields_make_a_transaction() {
        assert_eq!(parse_line(b"Marc credit $2"), tx("Marc", Kind::Credit, "2"));
        assert_eq!(parse_line(b"Marc debit 1"), tx("Marc", Kind::Debit, "1"));
    }

    #[test]
    fn fields_are_separated_by_runs_of_spaces_and_tabs() {
        for line in [
            &b"Marc credit 2.5"[..],
            b"Marc  \t credit\t\t2.5",
            b"Marc\tcredit\t2.5",
            b" \t Marc credit 2.5",
            b"Marc credit 2.5 \t ",
            b"\t\tMarc    credit    2.5\t\t",
        ] {
            assert_eq!(
                parse_line(line),
                tx("Marc", Kind::Credit, "2.5"),
                "{line:?}"
            );
        }
    }

    #[test]
    fn blank_lines_are_skipped_not_counted() {
        for line in [&b""[..], b" ", b"\t", b" \t  \t"] {
            assert_eq!(parse_line(line), Line::Blank, "{line:?}");
        }
        let ledger = ledger_after(&[b"\n", b"\r\n", b"  \t \n", b"", b"\t\r\n"]);
        assert_eq!((ledger.applied(), ledger.discarded()), (0, 0));
        assert!(ledger.render_log().is_empty());
    }

    #[test]
    fn wrong_field_count_is_invalid() {
        for line in [
            &b"Marc"[..],
            b"Marc credit",
            b"Marc credit  \t",
            b"Marc credit 2 extra",
            b"Marc Smith credit 2",
            b"Marc credit $ 2",
            b"credit 2",
        ] {
            assert_eq!(parse_line(line), Line::Invalid, "{line:?}");
        }
    }

    #[test]
    fn type_is_ascii_case_insensitive() {
        for (line, kind) in [
            (&b"a CREDIT 1"[..], Kind::Credit),
            (b"a Credit 1", Kind::Credit),
            (b"a cReDiT 1", Kind::Credit),
            (b"a DEBIT 1", Kind::Debit),
            (b"a Debit 1", Kind::Debit),
        ] {
            assert_eq!(parse_line(line), tx("a", kind, "1"), "{line:?}");
        }
    }

    #[test]
    fn unknown_types_are_invalid() {
        for line in [
            &b"a deposit 1"[..],
            b"a credits 1",
            b"a cred 1",
            b"a debit- 1",
            b"a 1 credit",
            // Case folding is ASCII only: no Unicode look-alikes.
            "a CREDİT 1".as_bytes(),
            "a ＣＲＥＤＩＴ 1".as_bytes(),
        ] {
            assert_eq!(parse_line(line), Line::Invalid, "{line:?}");
        }
    }

    #[test]
    fn names_are_case_sensitive_accounts() {
        let log = log_after(&[b"Marc credit 1\n", b"marc credit 2\n", b"MARC debit 3\n"]);
        assert_eq!(log, "MARC $-3.00\nMarc $1.00\nmarc $2.00\n");
    }

    #[test]
    fn names_may_be_any_non_space_utf8() {
        for name in [
            "Zoë", "名前", "a$b", "1234", "-", "$5", "credit", "🦀", "a\u{0}b",
        ] {
            let line = format!("{name} credit 1");
            assert_eq!(
                parse_line(line.as_bytes()),
                tx(name, Kind::Credit, "1"),
                "{name:?}"
            );
        }
    }

    #[test]
    fn names_with_other_whitespace_are_invalid() {
        // Our reading of "non-space": no Unicode whitespace in a NAME, and
        // only spaces and tabs separate fields.
        for name in [
            "a\rb",
            "a\x0bb",
            "a\x0cb",
            "a\nb",
            "Marc\r",
            "a\u{85}b",
            "a\u{a0}b",
            "a\u{2003}b",
            "a\u{3000}b",
            "\u{2028}",
        ] {
            let line = format!("{name} credit 1");
            assert_eq!(parse_line(line.as_bytes()), Line::Invalid, "{name:?}");
        }
    }

    #[test]
    fn invalid_utf8_is_invalid() {
        for line in [
            &b"Marc\xff credit 1"[..],
            b"\xc3 credit 1",         // truncated sequence
            b"\xed\xa0\x80 credit 1", // surrogate
            b"\xc0\xaf credit 1",     // overlong
            b"Marc credit 1\xff",
            b"Marc cr\xe9dit 1",
        ] {
            assert_eq!(parse_line(line), Line::Invalid, "{line:?}");
        }
    }

    #[test]
    fn amounts_that_parse() {
        for (text, value) in [
            ("2", "2"),
            ("$2", "2"),
            ("2.5", "2.5"),
            ("$1234.56", "1234.56"),
            ("0", "0"),
            ("$0.00", "0"),
            ("007", "7"),
            ("1.000", "1"),
            ("0.0000001", "0.0000001"),
        ] {
            let line = format!("a credit {text}");
            assert_eq!(
                parse_line(line.as_bytes()),
                tx("a", Kind::Credit, value),
                "{text}"
            );
        }
    }

    #[test]
    fn amount_keeps_its_written_scale() {
        let Some(tx) = parse_transaction(b"a credit 1.50") else {
            panic!("valid line")
        };
        assert_eq!(tx.amount.scale(), 2);
        assert_eq!(tx.amount.mantissa(), 150);
    }

    #[test]
    fn amounts_that_do_not_parse() {
        for text in [
            "2.", ".5", "$.5", "$2.", "-2", "+2", "$-2", "-$2", "1e5", "1E5", "1,000", "1_000",
            "nan", "NaN", "inf", "Infinity", "$", "$$2", "2$", "1.2.3", "1..2", "0x10", "½", "١٢",
            "２", "$2\r", "\u{a0}2", "2\u{a0}",
        ] {
            let line = format!("a credit {text}");
            assert_eq!(parse_line(line.as_bytes()), Line::Invalid, "{text:?}");
        }
    }

    #[test]
    fn at_most_28_digits_in_all() {
        let ok = [
            "9999999999999999999999999999",  // 28 digits
            "$9999999999999999999999999999", // 28 digits, `$` not counted
            "99999999999999.99999999999999", // 14 + 14
            "0.000000000000000000000000001", // 1 + 27
            "0000000000000000000000000001",  // leading zeros count
        ];
        for text in ok {
            let line = format!("a credit {text}");
            assert_eq!(
                parse_line(line.as_bytes()),
                tx("a", Kind::Credit, text.trim_start_matches('$')),
                "{text}"
            );
        }
        let too_long = [
            "99999999999999999999999999999",  // 29 digits
            "79228162514264337593543950335",  // 2^96 - 1: fits a Decimal, still 29 digits
            "99999999999999.999999999999999", // 14 + 15
            "0.0000000000000000000000000001", // 1 + 28
            "00000000000000000000000000001",  // leading zeros count
        ];
        for text in too_long {
            let line = format!("a credit {text}");
            assert_eq!(parse_line(line.as_bytes()), Line::Invalid, "{text}");
        }
    }

    #[test]
    fn parse_transaction_is_none_for_blank_and_invalid() {
        assert_eq!(parse_transaction(b"  "), None);
        assert_eq!(parse_transaction(b"a b c"), None);
        assert!(parse_transaction(b"a credit 1").is_some());
    }

    // ----- applying lines ---------------------------------------------------

    #[test]
    fn terminators_are_stripped_crlf_included() {
        let ledger = ledger_after(&[
            b"Marc credit $2\r\n",
            b"Marc debit $1\n",
            b"Marc credit 0.5", // EOF tail, no terminator
        ]);
        assert_eq!((ledger.applied(), ledger.discarded()), (3, 0));
        assert_eq!(ledger.balance("Marc"), Some(dec("1.5")));
    }

    #[test]
    fn a_stray_carriage_return_is_not_a_terminator() {
        // Framing drops a `\r` only before `\n`: a tail ending in `\r` keeps it,
        // and `$1\r` is not an amount.
        let ledger = ledger_after(&[b"Marc credit $1\r"]);
        assert_eq!((ledger.applied(), ledger.discarded()), (0, 1));
    }

    #[test]
    fn counts_and_outcomes() {
        let mut ledger = Ledger::new(PathBuf::from("x"));
        assert_eq!(ledger.apply_line(b"a credit 1"), Outcome::Applied);
        assert_eq!(ledger.apply_line(b"a credit"), Outcome::Discarded);
        assert_eq!(ledger.apply_line(b"a credit x"), Outcome::Discarded);
        assert_eq!(ledger.apply_line(b" \t "), Outcome::Skipped);
        assert_eq!(ledger.apply_line(b"b debit 2"), Outcome::Applied);
        assert_eq!((ledger.applied(), ledger.discarded()), (2, 2));
    }

    #[test]
    fn invalid_lines_create_no_account() {
        let ledger = ledger_after(&[b"ghost credit 1.\n", b"ghost2 refund 1\n"]);
        assert!(ledger.render_log().is_empty());
        assert_eq!(ledger.discarded(), 2);
    }

    #[test]
    fn a_zero_transaction_creates_an_account() {
        assert_eq!(log_after(&[b"a debit 0\n"]), "a $0.00\n");
    }

    #[test]
    fn balances_may_go_negative() {
        assert_eq!(
            log_after(&[b"a debit 12.34\n", b"b credit 1\n", b"b debit 3.5\n"]),
            "a $-12.34\nb $-2.50\n"
        );
    }

    #[test]
    fn seed_example_100_clients() {
        let mut ledger = Ledger::new(PathBuf::from("log.txt"));
        let mut out = Outbox::new();
        for client in 1..=100 {
            ledger.on_message(ClientId(client), b"Marc credit $2\n", &mut out);
            ledger.on_message(ClientId(client), b"Marc debit $1\n", &mut out);
        }
        assert!(out.is_empty());
        assert_eq!(ledger.render_log(), b"Marc $100.00\n");
        assert_eq!(ledger.applied(), 200);
    }

    #[test]
    fn sums_are_exact_decimals() {
        // 0.1 + 0.2 is 0.3 here, and 10^6 small amounts add up exactly.
        let mut ledger = Ledger::new(PathBuf::from("x"));
        ledger.apply_line(b"a credit 0.1");
        ledger.apply_line(b"a credit 0.2");
        assert_eq!(ledger.balance("a"), Some(dec("0.3")));
        for _ in 0..100_000 {
            ledger.apply_line(b"b credit 0.01");
        }
        assert_eq!(ledger.balance("b"), Some(dec("1000")));
        ledger.apply_line(b"c credit 0.0000000001");
        ledger.apply_line(b"c credit 1000000000");
        assert_eq!(ledger.balance("c"), Some(dec("1000000000.0000000001")));
    }

    // ----- overflow -----------------------------------------------------------

    const MAX28: &[u8] = b"9999999999999999999999999999";

    fn line(parts: &[&[u8]]) -> Vec<u8> {
        parts.join(&b" "[..])
    }

    #[test]
    fn a_transaction_that_would_overflow_is_discarded() {
        let mut ledger = Ledger::new(PathBuf::from("x"));
        let credit = line(&[b"a", b"credit", MAX28]);
        // 7 * (10^28 - 1) < 2^96 - 1 < 8 * (10^28 - 1)
        for _ in 0..7 {
            assert_eq!(ledger.apply_line(&credit), Outcome::Applied);
        }
        let before = ledger.balance("a");
        assert_eq!(ledger.apply_line(&credit), Outcome::Discarded);
        assert_eq!(ledger.balance("a"), before);
        assert_eq!((ledger.applied(), ledger.discarded()), (7, 1));
        // The account still works, both ways.
        assert_eq!(
            ledger.apply_line(&line(&[b"a", b"debit", MAX28])),
            Outcome::Applied
        );
        assert_eq!(ledger.apply_line(b"a credit 1"), Outcome::Applied);
        assert_eq!(
            ledger.balance("a"),
            Some(dec("59999999999999999999999999995"))
        );
        // And negative overflow is discarded the same way.
        let debit = line(&[b"b", b"debit", MAX28]);
        for _ in 0..7 {
            assert_eq!(ledger.apply_line(&debit), Outcome::Applied);
        }
        assert_eq!(ledger.apply_line(&debit), Outcome::Discarded);
    }

    #[test]
    fn a_sum_that_decimal_would_round_is_discarded() {
        // rust_decimal's checked_add rounds this instead of failing: the exact
        // sum 9999999999999999999999999999.1 needs 29 significant digits.
        let big = dec("9999999999999999999999999999");
        let rounded = big
            .checked_add(dec("0.1"))
            .expect("Decimal rounds, no None");
        assert_eq!(rounded.scale(), 0, "{rounded}");
        assert_eq!(add_exact(big, dec("0.1")), None);

        let mut ledger = Ledger::new(PathBuf::from("x"));
        assert_eq!(
            ledger.apply_line(&line(&[b"a", b"credit", MAX28])),
            Outcome::Applied
        );
        assert_eq!(ledger.apply_line(b"a credit 0.1"), Outcome::Discarded);
        assert_eq!(ledger.apply_line(b"a debit $0.01"), Outcome::Discarded);
        assert_eq!(ledger.balance("a"), Some(big));
        assert_eq!(ledger.render_log(), b"a $9999999999999999999999999999.00\n");
    }

    #[test]
    fn a_sum_that_needs_no_extra_scale_is_exact_not_overflow() {
        // The balance carries 27 trailing zeros of scale; the sum only fits
        // without them, and is still exact.
        let mut ledger = Ledger::new(PathBuf::from("x"));
        assert_eq!(
            ledger.apply_line(b"a credit 5.000000000000000000000000000"),
            Outcome::Applied
        );
        assert_eq!(
            ledger.apply_line(b"a credit 100000000000000000000"),
            Outcome::Applied
        );
        assert_eq!(ledger.balance("a"), Some(dec("100000000000000000005")));
        // A huge integer balance plus zero cents is exact too.
        let credit = line(&[b"b", b"credit", MAX28]);
        for _ in 0..7 {
            ledger.apply_line(&credit);
        }
        assert_eq!(ledger.apply_line(b"b credit 0.00"), Outcome::Applied);
        assert_eq!(ledger.apply_line(b"b credit 0.50"), Outcome::Discarded);
        assert_eq!(
            ledger.balance("b"),
            Some(dec("69999999999999999999999999993"))
        );
    }

    #[test]
    fn add_exact_agrees_with_decimal_when_decimal_is_exact() {
        for (a, b, sum) in [
            ("1.5", "2.25", "3.75"),
            ("-1", "0.001", "-0.999"),
            ("0.5", "0.5", "1.0"),
            (
                "79228162514264337593543950335",
                "-1",
                "79228162514264337593543950334",
            ),
            (
                "7922816251426433759354395033.5",
                "0.5",
                "7922816251426433759354395034",
            ),
        ] {
            assert_eq!(add_exact(dec(a), dec(b)), Some(dec(sum)), "{a} + {b}");
        }
        assert_eq!(
            add_exact(dec("79228162514264337593543950335"), dec("1")),
            None
        );
        assert_eq!(
            add_exact(dec("-79228162514264337593543950335"), dec("-1")),
            None
        );
        assert_eq!(
            add_exact(dec("7922816251426433759354395033.5"), dec("0.1")),
            None
        );
    }

    // ----- the log --------------------------------------------------------------

    #[test]
    fn log_rounds_half_away_from_zero() {
        for (amount, shown) in [
            ("0.005", "0.01"),
            ("0.0049999", "0.00"),
            ("2.675", "2.68"), // 2.67 in binary floating point
            ("1.995", "2.00"),
            ("1.994999", "1.99"),
            ("0.125", "0.13"), // not banker's rounding (0.12)
            ("12.3", "12.30"),
            ("7", "7.00"),
        ] {
            let credit = format!("a credit {amount}\n");
            assert_eq!(log_after(&[credit.as_bytes()]), format!("a ${shown}\n"));
            let debit = format!("a debit {amount}\n");
            let negative = if shown == "0.00" {
                shown.to_string()
            } else {
                format!("-{shown}")
            };
            assert_eq!(log_after(&[debit.as_bytes()]), format!("a ${negative}\n"));
        }
    }

    #[test]
    fn log_never_shows_minus_zero() {
        assert_eq!(log_after(&[b"a debit 0.004\n"]), "a $0.00\n");
        assert_eq!(log_after(&[b"a debit 0.00\n"]), "a $0.00\n");
        assert_eq!(
            log_after(&[b"a credit 1\n", b"a debit 1.00\n"]),
            "a $0.00\n"
        );
        assert_eq!(log_after(&[b"a debit 0.005\n"]), "a $-0.01\n");
    }

    #[test]
    fn log_is_sorted_in_byte_order() {
        let log = log_after(&[
            "émile credit 1\n".as_bytes(),
            b"alice credit 1\n",
            b"Zoe credit 1\n",
            b"_x credit 1\n",
            b"Marcus credit 1\n",
            b"Marc credit 1\n",
            "Émile credit 1\n".as_bytes(),
            b"Bob credit 1\n",
            b"0 credit 1\n",
            "名 credit 1\n".as_bytes(),
            b"~ credit 1\n",
        ]);
        let names: Vec<&str> = log.lines().map(|l| l.split(' ').next().unwrap()).collect();
        assert_eq!(
            names,
            [
                "0", "Bob", "Marc", "Marcus", "Zoe", "_x", "alice", "~", "Émile", "émile", "名"
            ]
        );
    }

    #[test]
    fn no_accounts_empty_log() {
        assert!(ledger_after(&[]).render_log().is_empty());
    }

    #[test]
    fn finish_writes_the_configured_log_and_the_summary() {
        let mut ledger = Ledger::new(PathBuf::from("/some/dir/balances.txt"));
        let mut out = Outbox::new();
        for msg in [
            &b"b credit 2\n"[..],
            b"a credit 1.005\r\n",
            b"bogus\n",
            b"\n",
            b"a debit x\n",
            b"c debit 3",
        ] {
            ledger.on_message(ClientId(7), msg, &mut out);
        }
        assert!(out.is_empty());
        let finish = ledger.finish(&ServerStats {
            cut_partial_lines: 4,
        });
        assert_eq!(
            finish,
            Finish {
                files: vec![(
                    PathBuf::from("/some/dir/balances.txt"),
                    b"a $1.01\nb $2.00\nc $-3.00\n".to_vec()
                )],
                status: vec![
                    "Applied 3 transactions, discarded 2 lines, cut 4 partial lines".to_string()
                ],
            }
        );
    }

    #[test]
    fn summary_line_matches_spec_text() {
        assert_eq!(
            summary_line(1000, 3, 0),
            "Applied 1000 transactions, discarded 3 lines, cut 0 partial lines"
        );
    }

    #[test]
    fn handler_shape() {
        let ledger = Ledger::new(PathBuf::from("log.txt"));
        assert_eq!(ledger.name(), "ledger");
        assert_eq!(ledger.framing(), Framing::Lines { idle_flush: false });
        assert_eq!(ledger.shutdown_policy(), ShutdownPolicy::Drain);
    }

    // ----- real input files (/work/shared/data/000, see its SOURCE.txt) --------

    /// `small_input_crlf.txt`: CRLF endings, no newline after the last line.
    const SMALL_INPUT_CRLF: &[u8] = b"Marc credit $2\r\nMarc debit $1\r\n\
Leo credit $2\r\nLeo debit $1\r\nCamron credit $2\r\nCamron debit $1\r\n\
Krishan credit $2\r\nKrishan debit $1\r\nNathan credit $2\r\nNathan debit $1\r\n\
James credit $2\r\nJames debit $1\r\nRyder credit $2\r\nRyder debit $1\r\n\
Ryan credit $2\r\nRyan debit $1\r\nBrad credit $2\r\nBrad debit $1\r\n\
Norm credit $2\r\nNorm debit $1";

    /// `jackewilson_test.txt`: LF endings.
    const JACKEWILSON_TEST: &[u8] = b"jack credit $100.22\nmarge debit $50\n\
zackary credit $33.99\na credit $500.55\na debit $500.22\n";

    /// Feeds `file` through the real line framer, in chunks of `chunk`
    /// bytes, then hands over the EOF tail as the reactor does.
    fn feed_file(ledger: &mut Ledger, client: ClientId, file: &[u8], chunk: usize) {
        use crate::framing::LineFramer;
        use std::ops::ControlFlow;
        let mut framer = LineFramer::new();
        let mut out = Outbox::new();
        for piece in file.chunks(chunk) {
            framer
                .push(piece, 65536, |line| {
                    ledger.on_message(client, line, &mut out);
                    ControlFlow::Continue(())
                })
                .unwrap();
        }
        framer
            .flush(usize::MAX, |tail| ledger.on_message(client, tail, &mut out))
            .unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn embedded_inputs_match_their_description() {
        assert_eq!(SMALL_INPUT_CRLF.len(), 324);
        assert_eq!(SMALL_INPUT_CRLF.split(|&b| b == b'\n').count(), 20);
        assert!(SMALL_INPUT_CRLF.ends_with(b"Norm debit $1"));
        assert_eq!(JACKEWILSON_TEST.len(), 91);
    }

    #[test]
    fn small_input_crlf_from_three_clients() {
        let mut ledger = Ledger::new(PathBuf::from("log.txt"));
        for (client, chunk) in [(1, 4096), (2, 7), (3, 1)] {
            feed_file(&mut ledger, ClientId(client), SMALL_INPUT_CRLF, chunk);
        }
        assert_eq!((ledger.applied(), ledger.discarded()), (60, 0));
        assert_eq!(
            String::from_utf8(ledger.render_log()).unwrap(),
            "Brad $3.00\nCamron $3.00\nJames $3.00\nKrishan $3.00\nLeo $3.00\n\
Marc $3.00\nNathan $3.00\nNorm $3.00\nRyan $3.00\nRyder $3.00\n"
        );
    }

    #[test]
    fn jackewilson_test_file() {
        let mut ledger = Ledger::new(PathBuf::from("log.txt"));
        feed_file(&mut ledger, ClientId(1), JACKEWILSON_TEST, 10);
        assert_eq!((ledger.applied(), ledger.discarded()), (5, 0));
        assert_eq!(
            String::from_utf8(ledger.render_log()).unwrap(),
            "a $0.33\njack $100.22\nmarge $-50.00\nzackary $33.99\n"
        );
    }

    // ----- properties -------------------------------------------------------------

    /// An amount in cents and how it is written: `$` or not, 0-2 decimals.
    fn amount_strategy() -> impl Strategy<Value = (i128, String)> {
        (0u64..1_000_000_000, 0u32..3, any::<bool>()).prop_map(|(units, decimals, dollar)| {
            let (cents, text) = match decimals {
                0 => (i128::from(units) * 100, units.to_string()),
                1 => (
                    i128::from(units) * 10,
                    format!("{}.{}", units / 10, units % 10),
                ),
                _ => (
                    i128::from(units),
                    format!("{}.{:02}", units / 100, units % 100),
                ),
            };
            (cents, if dollar { format!("${text}") } else { text })
        })
    }

    fn separator() -> impl Strategy<Value = String> {
        proptest::string::string_regex("[ \t]{1,3}").unwrap()
    }

    /// The model's log: whole cents, sorted by a BTreeMap (byte order for
    /// `String`), formatted independently of `push_cents`.
    fn model_log(model: &BTreeMap<String, i128>) -> String {
        model
            .iter()
            .map(|(name, &cents)| {
                let sign = if cents < 0 { "-" } else { "" };
                let abs = cents.abs();
                format!(
                    "{name} ${sign}{}.{}{}\n",
                    abs / 100,
                    (abs / 10) % 10,
                    abs % 10
                )
            })
            .collect()
    }

    proptest! {
        #[test]
        fn random_valid_transactions_agree_with_integer_cents(
            txs in prop::collection::vec(
                (
                    prop::sample::select(vec!["Marc", "marc", "Zoë", "名前", "a_b", "Z"]),
                    any::<bool>(),
                    prop::sample::select(vec!["credit", "debit", "CREDIT", "Debit"]),
                    amount_strategy(),
                    separator(),
                    separator(),
                    any::<bool>(),
                ),
                0..60,
            )
        ) {
            let mut ledger = Ledger::new(PathBuf::from("log.txt"));
            let mut model: BTreeMap<String, i128> = BTreeMap::new();
            let mut out = Outbox::new();
            for (name, crlf, kind, (cents, amount), sep1, sep2, indent) in &txs {
                let lead = if *indent { "\t " } else { "" };
                let end = if *crlf { "\r\n" } else { "\n" };
                let msg = format!("{lead}{name}{sep1}{kind}{sep2}{amount}{end}");
                ledger.on_message(ClientId(1), msg.as_bytes(), &mut out);
                let signed = if kind.eq_ignore_ascii_case("credit") { *cents } else { -cents };
                *model.entry(name.to_string()).or_insert(0) += signed;
            }
            prop_assert!(out.is_empty());
            prop_assert_eq!(ledger.applied(), txs.len() as u64);
            prop_assert_eq!(ledger.discarded(), 0);
            prop_assert_eq!(String::from_utf8(ledger.render_log()).unwrap(), model_log(&model));
        }

        #[test]
        fn rendering_rounds_half_away_from_zero(
            magnitude in 0u128..=MAX_MANTISSA,
            negative in any::<bool>(),
            scale in 0u32..=28,
        ) {
            let mantissa = if negative { -(magnitude as i128) } else { magnitude as i128 };
            let balance = Decimal::from_i128_with_scale(mantissa, scale);
            let mut ledger = Ledger::new(PathBuf::from("x"));
            ledger.accounts.insert(Box::from("a"), balance);

            // Independent integer rounding: floor((2|m| + d) / 2d) at d = 10^(s-2).
            let cents: u128 = if scale <= 2 {
                magnitude * 10u128.pow(2 - scale)
            } else {
                let d = 10u128.pow(scale - 2);
                (2 * magnitude + d) / (2 * d)
            };
            let sign = if negative && cents != 0 { "-" } else { "" };
            let expected = format!("a ${sign}{}.{:02}\n", cents / 100, cents % 100);
            prop_assert_eq!(String::from_utf8(ledger.render_log()).unwrap(), expected);
        }

        #[test]
        fn add_exact_is_exact_or_refuses(
            ma in -(MAX_MANTISSA as i128)..=(MAX_MANTISSA as i128),
            sa in 0u32..=28,
            mb in -(MAX_MANTISSA as i128)..=(MAX_MANTISSA as i128),
            sb in 0u32..=28,
        ) {
            let a = Decimal::from_i128_with_scale(ma, sa);
            let b = Decimal::from_i128_with_scale(mb, sb);
            match add_exact(a, b) {
                // Exact: undoing the sum gives back each operand exactly.
                Some(sum) => {
                    prop_assert_eq!(add_exact(sum, -b), Some(a));
                    prop_assert_eq!(add_exact(sum, -a), Some(b));
                }
                // Refused: then no Decimal holds the sum, so Decimal's own
                // checked_add either fails or loses digits.
                None => {
                    if let Some(rounded) = a.checked_add(b) {
                        prop_assert_ne!(add_exact(rounded, -b), Some(a));
                    }
                }
            }
        }
    }
}
