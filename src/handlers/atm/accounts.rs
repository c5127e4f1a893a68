//! The atm's accounts file (`--accounts PATH`): pure parse and render, plus
//! the two value types that carry its rules, [`Pin`] and money.
//!
//! One account per line, `NAME PIN BALANCE`, fields separated by runs of
//! spaces or tabs (leading and trailing ones ignored, `\r\n` allowed, blank
//! lines skipped):
//! - NAME: 1 to 20 of `[A-Za-z0-9]`, case-sensitive, unique in the file;
//! - PIN: 4 to 12 ASCII digits (leading zeros count: `02323`);
//! - BALANCE: an optional `-`, then an amount in the ledger's grammar
//!   ([`crate::handlers::ledger::parse_amount`]: `$`?, digits, `.digits`?),
//!   in whole cents (`12.50` and `12.500` are fine, `12.505` is not).
//!
//! [`Accounts::render_into`] writes every account back in file order as
//! `NAME PIN BALANCE\n` with BALANCE in the form of [`push_balance`]
//! (`100`, `-23`, `12.50`, and `…012.5` where two decimals would pass the
//! grammar's 28 digits): the value is exact, the spelling (`$`, trailing
//! zeros) is not kept. Parsing a rendered file gives the same accounts,
//! because [`Accounts::set_balance`] refuses a balance the file cannot hold.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;

use rust_decimal::{Decimal, RoundingStrategy};
use subtle::ConstantTimeEq;

use crate::handlers::ledger::{MAX_AMOUNT_DIGITS, parse_amount};

/// Longest NAME (SPEC).
pub const MAX_NAME: usize = 20;
/// Shortest and longest PIN (SPEC).
pub const MIN_PIN: usize = 4;
pub const MAX_PIN: usize = 12;

/// A PIN. Its `Debug` never shows the digits, so no diagnostic, status line
/// or `{:?}` of a handler can print one; only [`Accounts::render_into`]
/// (the accounts file itself) writes them.
#[derive(Clone)]
pub struct Pin {
    /// The digits, zero-padded to the longest PIN, so a comparison always
    /// touches the same number of bytes.
    digits: [u8; MAX_PIN],
    len: u8,
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(<redacted>)")
    }
}

/// Constant time too (see [`Pin::matches`]), so no `==` can leak.
impl PartialEq for Pin {
    fn eq(&self, other: &Pin) -> bool {
        self.matches(other.as_bytes())
    }
}

impl Eq for Pin {}

impl Pin {
    /// 4 to 12 ASCII digits, else `None`.
    pub fn parse(text: &[u8]) -> Option<Pin> {
        if !(MIN_PIN..=MAX_PIN).contains(&text.len()) || !text.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let mut digits = [0u8; MAX_PIN];
        digits[..text.len()].copy_from_slice(text);
        Some(Pin {
            digits,
            len: text.len() as u8,
        })
    }

    /// Whether `candidate` is this PIN, in time that does not depend on
    /// where (or whether) they differ: `subtle`'s comparisons are written
    /// so the optimiser cannot turn them into an early exit. Only the
    /// candidate's own length (which its sender knows) shapes the work.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let mut padded = [0u8; MAX_PIN];
        let n = candidate.len().min(MAX_PIN);
        padded[..n].copy_from_slice(&candidate[..n]);
        let same_len = (candidate.len() as u64).ct_eq(&u64::from(self.len));
        bool::from(self.digits.ct_eq(&padded) & same_len)
    }

    fn as_bytes(&self) -> &[u8] {
        &self.digits[..usize::from(self.len)]
    }
}

/// One account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub pin: Pin,
    pub balance: Decimal,
}

/// Every account, in file order, with an index by NAME.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Accounts {
    list: Vec<Account>,
    index: HashMap<Vec<u8>, usize>,
}

/// Why a line of the accounts file was refused (`line` counts from 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for ParseError {}

impl Accounts {
    /// Parses a whole accounts file (see the module doc). An empty file is
    /// valid and holds no account.
    ///
    /// # Errors
    /// The first bad line, with its number and what is wrong (never the
    /// PIN it holds).
    pub fn parse(text: &[u8]) -> Result<Accounts, ParseError> {
        let mut accounts = Accounts::default();
        for (i, raw) in text.split(|&b| b == b'\n').enumerate() {
            let line = raw.strip_suffix(b"\r").unwrap_or(raw);
            let fail = |reason: &str| ParseError {
                line: i + 1,
                reason: reason.to_string(),
            };
            let fields: Vec<&[u8]> = line
                .split(|&b| b == b' ' || b == b'\t')
                .filter(|f| !f.is_empty())
                .collect();
            if fields.is_empty() {
                continue;
            }
            let [name, pin, balance] = fields[..] else {
                return Err(fail("expected `NAME PIN BALANCE`"));
            };
            if !valid_name(name) {
                return Err(fail("NAME must be 1 to 20 letters or digits"));
            }
            let pin = Pin::parse(pin).ok_or_else(|| fail("PIN must be 4 to 12 digits"))?;
            let balance = parse_balance(balance)
                .ok_or_else(|| fail("BALANCE must be an amount in whole cents, like 12, -3.50"))?;
            if accounts.index.contains_key(name) {
                return Err(fail("NAME appears twice"));
            }
            accounts.index.insert(name.to_vec(), accounts.list.len());
            accounts.list.push(Account {
                // valid_name checked ASCII.
                name: String::from_utf8_lossy(name).into_owned(),
                pin,
                balance,
            });
        }
        Ok(accounts)
    }

    /// Appends the file's new content: one `NAME PIN BALANCE\n` per
    /// account, in the order they were read.
    pub fn render_into(&self, out: &mut Vec<u8>) {
        for account in &self.list {
            out.extend_from_slice(account.name.as_bytes());
            out.push(b' ');
            out.extend_from_slice(account.pin.as_bytes());
            out.push(b' ');
            push_balance(out, account.balance);
            out.push(b'\n');
        }
    }

    /// [`Accounts::render_into`] into a new buffer.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.render_into(&mut out);
        out
    }

    /// The index of the account called `name`, if any.
    pub fn find(&self, name: &[u8]) -> Option<usize> {
        self.index.get(name).copied()
    }

    pub fn get(&self, index: usize) -> &Account {
        &self.list[index]
    }

    /// Sets the balance of account `index`, unless the file's grammar
    /// cannot write it ([`fits_file`]): then nothing changes, so whatever
    /// the atm renders, it can parse back at its next start.
    ///
    /// # Errors
    /// [`TooLong`]: the balance needs more than 28 digits.
    pub fn set_balance(&mut self, index: usize, balance: Decimal) -> Result<(), TooLong> {
        if !fits_file(balance) {
            return Err(TooLong);
        }
        self.list[index].balance = balance;
        Ok(())
    }

    /// The balance of `name`, if it exists.
    pub fn balance(&self, name: &str) -> Option<Decimal> {
        self.find(name.as_bytes()).map(|i| self.list[i].balance)
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// A balance the accounts file cannot hold: written in the fewest digits
/// ([`push_balance`]), it needs more than the grammar's 28.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct TooLong;

impl fmt::Display for TooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the balance would need more than {MAX_AMOUNT_DIGITS} digits"
        )
    }
}

impl std::error::Error for TooLong {}

/// Whether `balance` is whole cents and its shortest writing (trailing
/// zero decimals dropped, `0` before a point) has at most the 28 digits
/// the ledger's grammar reads back.
pub fn fits_file(balance: Decimal) -> bool {
    let n = balance.normalize();
    let scale = n.scale();
    let digits = decimal_digits(n.mantissa().unsigned_abs());
    // `0.05`: mantissa 5, scale 2, written with a leading `0`, 3 digits.
    scale <= 2 && digits.max(scale + 1) <= MAX_AMOUNT_DIGITS
}

/// How many decimal digits `n` has (`0` has one).
fn decimal_digits(n: u128) -> u32 {
    n.checked_ilog10().map_or(1, |log| log + 1)
}

/// A BALANCE as the accounts file holds it: [`push_money`]'s form (whole,
/// or exactly two decimals) when that fits the grammar's 28 digits, else
/// with the one decimal it needs (`…012.5`; a balance of 27 integer digits
/// and one decimal is a valid BALANCE, but its `…012.50` would not parse).
/// Replies keep [`push_money`]'s two decimals: only the file is read back.
pub fn push_balance(out: &mut Vec<u8>, balance: Decimal) {
    let start = out.len();
    push_money(out, balance);
    let written = out[start..].iter().filter(|b| b.is_ascii_digit()).count();
    if written > MAX_AMOUNT_DIGITS as usize && out.ends_with(b"0") && out[start..].contains(&b'.') {
        out.pop();
    }
}

/// SPEC's NAME: 1 to 20 of `[A-Za-z0-9]`.
pub fn valid_name(name: &[u8]) -> bool {
    (1..=MAX_NAME).contains(&name.len()) && name.iter().all(u8::is_ascii_alphanumeric)
}

/// An amount in the ledger's grammar that is a whole number of cents: the
/// atm moves cents, and every number it prints has at most two decimals,
/// so a sub-cent part could only be shown rounded (a lie about money).
pub fn parse_cents_amount(text: &[u8]) -> Option<Decimal> {
    let amount = parse_amount(text)?;
    whole_cents(amount).then_some(amount)
}

/// A BALANCE: an optional `-`, then [`parse_cents_amount`].
pub fn parse_balance(text: &[u8]) -> Option<Decimal> {
    match text.strip_prefix(b"-") {
        Some(rest) => parse_cents_amount(rest).map(|a| -a),
        None => parse_cents_amount(text),
    }
}

/// Whether `d` has no digit beyond the cents.
pub fn whole_cents(d: Decimal) -> bool {
    d.normalize().scale() <= 2
}

/// SPEC's numbers: without decimals when whole (`23`, `-23`, `0`, never
/// `-0`), otherwise with exactly two (`23.50`, `-0.50`).
pub fn push_money(out: &mut Vec<u8>, amount: Decimal) {
    let n = amount.normalize();
    // Writing to a Vec cannot fail.
    if n.is_zero() {
        out.push(b'0');
    } else if n.scale() == 0 {
        let _ = write!(out, "{}", n.mantissa());
    } else {
        // Whole cents by construction; rounding only guards the invariant.
        let r = n.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
        let cents = if r.scale() == 2 {
            r.mantissa()
        } else {
            r.mantissa() * 10
        };
        if cents < 0 {
            out.push(b'-');
        }
        let abs = cents.unsigned_abs();
        let _ = write!(out, "{}.{:02}", abs / 100, abs % 100);
    }
}

/// [`push_money`] as a `String` (tests, diagnostics).
pub fn money(amount: Decimal) -> String {
    let mut out = Vec::new();
    push_money(&mut out, amount);
    String::from_utf8(out).expect("digits, `-` and `.` are ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn parses_names_pins_and_balances() {
        let a = Accounts::parse(
            b"charles 02323 0\nAda  1234\t-$12.50\r\n\n  bob 000000000000 100.00  \n",
        )
        .unwrap();
        assert_eq!(a.len(), 3);
        assert_eq!(a.balance("charles"), Some(dec("0")));
        assert_eq!(a.balance("Ada"), Some(dec("-12.5")));
        assert_eq!(a.balance("bob"), Some(dec("100")));
        assert_eq!(a.balance("ada"), None, "names are case-sensitive");
        assert!(a.get(0).pin.matches(b"02323"));
        assert!(!a.get(0).pin.matches(b"2323"), "leading zeros count");
    }

    #[test]
    fn empty_file_holds_no_account() {
        assert!(Accounts::parse(b"").unwrap().is_empty());
        assert!(Accounts::parse(b"\n \n").unwrap().is_empty());
    }

    #[test]
    fn bad_lines_are_named_by_number() {
        for (text, line) in [
            (&b"a 1234 0\nb 1234\n"[..], 2),
            (b"a 1234 0 extra\n", 1),
            (b"a 1234 0\n\nthis_name 1234 0\n", 3),
            (b"abcdefghijklmnopqrstu 1234 0\n", 1),
            (b"a 123 0\n", 1),
            (b"a 1234567890123 0\n", 1),
            (b"a 12a4 0\n", 1),
            (b"a 1234 1.005\n", 1),
            (b"a 1234 $-1\n", 1),
            (b"a 1234 --1\n", 1),
            (b"a 1234 1e3\n", 1),
            (b"a 1234 .5\n", 1),
            (b"a 1234 0\na 5678 1\n", 2),
            (b"\xff 1234 0\n", 1),
        ] {
            let err = Accounts::parse(text).unwrap_err();
            assert_eq!(err.line, line, "{:?}", String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn errors_never_show_the_pin() {
        let err = Accounts::parse(b"a 987654 1.005\n").unwrap_err();
        assert!(!err.to_string().contains("987654"), "{err}");
    }

    #[test]
    fn render_is_canonical_and_parses_back() {
        let text = b"charles 02323 -23\nAda 1234 $12.50\nbob 9999 100.00\nz 0000 -0\n";
        let a = Accounts::parse(text).unwrap();
        let rendered = a.render();
        assert_eq!(
            rendered,
            b"charles 02323 -23\nAda 1234 12.50\nbob 9999 100\nz 0000 0\n"
        );
        assert_eq!(Accounts::parse(&rendered).unwrap(), a);
    }

    #[test]
    fn money_prints_whole_or_two_decimals() {
        for (value, text) in [
            ("23", "23"),
            ("-23", "-23"),
            ("23.00", "23"),
            ("23.5", "23.50"),
            ("-0.5", "-0.50"),
            ("0.05", "0.05"),
            ("0", "0"),
            ("-0", "0"),
            ("-0.00", "0"),
            (
                "1234567890123456789012345678",
                "1234567890123456789012345678",
            ),
        ] {
            assert_eq!(money(dec(value)), text, "{value}");
        }
    }

    #[test]
    fn pins_compare_exactly() {
        let pin = Pin::parse(b"02323").unwrap();
        assert!(pin.matches(b"02323"));
        for wrong in [
            &b""[..],
            b"0232",
            b"023230",
            b"02324",
            b"12323",
            b"02323\0",
            b"0232300000000000",
        ] {
            assert!(!pin.matches(wrong), "{:?}", String::from_utf8_lossy(wrong));
        }
        let long = Pin::parse(b"123456789012").unwrap();
        assert!(long.matches(b"123456789012"));
        assert!(!long.matches(b"1234567890123"));
        assert!(Pin::parse(b"123").is_none());
        assert!(Pin::parse(b"1234567890123").is_none());
    }

    #[test]
    fn pin_debug_is_redacted() {
        let a = Accounts::parse(b"charles 98765 0\n").unwrap();
        let shown = format!("{a:?} {:?}", a.get(0));
        assert!(!shown.contains("98765"), "{shown}");
    }
}
