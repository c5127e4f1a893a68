//! The ledger's grammar: one line to a transaction, or blank, or invalid.
//! Pure and allocation-free: the hot path of a ledger blast.

use rust_decimal::Decimal;

use super::money::decimal;

/// SPEC: at most this many digits in an amount, all of them counted
/// (leading zeros too). 10^28 - 1 < 2^96, so any such amount fits in a
/// `Decimal` mantissa.
pub const MAX_AMOUNT_DIGITS: u32 = 28;

/// Whether a transaction adds to or subtracts from its account.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Credit,
    Debit,
}

/// One parsed transaction, borrowing its name from the line.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Tx<'a> {
    /// Valid UTF-8 with no whitespace (see `parse_name`), kept as bytes:
    /// accounts are keyed and sorted by these bytes, so the hot path never
    /// needs a `&str` (an ASCII name is not validated twice).
    pub name: &'a [u8],
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

/// SPEC separators: runs of spaces and tabs, nothing else.
#[inline(always)]
fn is_sep(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// The index of the first byte at or after `i` that is not a separator.
#[inline(always)]
fn skip_seps(line: &[u8], mut i: usize) -> usize {
    while let Some(&b) = line.get(i) {
        if !is_sep(b) {
            break;
        }
        i += 1;
    }
    i
}

/// Classifies one line given without its terminator. Pure and
/// allocation-free: one pass over the bytes, each looked at once (a name
/// with non-ASCII or control bytes is checked again, see `valid_name`).
// Inlined: the handler then reads the result from registers, and the
// `Decimal` built here is taken apart again by `apply` at no cost.
#[inline(always)]
pub fn parse_line(line: &[u8]) -> Line<'_> {
    let i = skip_seps(line, 0);
    if i == line.len() {
        return Line::Blank;
    }
    match fields(line, i) {
        // Nothing but separators after the amount (a fourth field is invalid).
        Some((tx, end)) if skip_seps(line, end) == line.len() => Line::Tx(tx),
        _ => Line::Invalid,
    }
}

/// The transaction at the start of `lines` (complete lines, each ending in
/// `\n`) when its amount ends its line: the transaction, its line's length
/// without the terminator (`\n` or `\r\n`) and with it. `None` for anything
/// else (blank, invalid, separators after the amount): the caller then
/// takes that line whole through [`parse_line`]. A `Some` is always what
/// [`parse_line`] says of the same line.
#[inline(always)]
pub fn parse_terminated(lines: &[u8]) -> Option<(Tx<'_>, usize, usize)> {
    // No field crosses a `\n`: separators are spaces and tabs, a name with
    // a `\n` in it is invalid, and the type and the amount stop at it.
    let (tx, end) = fields(lines, skip_seps(lines, 0))?;
    match lines.get(end) {
        Some(b'\n') => Some((tx, end, end + 1)),
        Some(b'\r') if lines.get(end + 1) == Some(&b'\n') => Some((tx, end, end + 2)),
        _ => None,
    }
}

/// NAME, TYPE and AMOUNT from `i` (the first byte of the name): the
/// transaction and the index just after its amount, or `None` if the
/// fields are not a transaction. The caller checks what follows.
#[inline(always)]
fn fields(s: &[u8], mut i: usize) -> Option<(Tx<'_>, usize)> {
    // NAME: up to the next separator. Printable ASCII other than space is
    // one comparison a byte; anything else is looked at once more below.
    let name_start = i;
    let mut printable = true;
    while let Some(&b) = s.get(i) {
        if b.wrapping_sub(0x21) >= 0x5f {
            if is_sep(b) {
                break;
            }
            if b == b'\n' {
                // Invalid in a name, and the end of the line in a block:
                // the scan never runs into the next line.
                return None;
            }
            printable = false;
        }
        i += 1;
    }
    let name = &s[name_start..i];
    if !printable && !valid_name(name) {
        return None;
    }
    // TYPE and the separator after it: a missing one is too few fields.
    i = skip_seps(s, i);
    let (kind, len) = kind_at(&s[i..])?;
    i = skip_seps(s, i + len);
    let (amount, len) = read_amount(&s[i..])?;
    Some((Tx { name, kind, amount }, i + len))
}

/// The transaction a line holds, or `None` for a blank or invalid line.
pub fn parse_transaction(line: &[u8]) -> Option<Tx<'_>> {
    match parse_line(line) {
        Line::Tx(tx) => Some(tx),
        Line::Blank | Line::Invalid => None,
    }
}

/// `credit` or `debit` in any ASCII case at the start of `s`, followed by a
/// separator: the kind and the bytes taken, separator included.
#[inline(always)]
fn kind_at(s: &[u8]) -> Option<(Kind, usize)> {
    // The first 8 bytes as one little-endian word, zero-padded (a zero byte
    // is no separator, so a short field cannot match).
    let word = match s.first_chunk::<8>() {
        Some(head) => u64::from_le_bytes(*head),
        None => {
            let mut head = [0u8; 8];
            head[..s.len()].copy_from_slice(s);
            u64::from_le_bytes(head)
        }
    };
    // `| 0x20` maps an ASCII capital to its lowercase letter and leaves a
    // lowercase letter alone; no other byte becomes a lowercase letter
    // (that needs bit 0x20 to be the only difference), so this is exactly
    // ASCII case-insensitive equality.
    const CREDIT: u64 = u64::from_le_bytes(*b"credit\0\0");
    const DEBIT: u64 = u64::from_le_bytes(*b"debit\0\0\0");
    const LOWER6: u64 = 0x2020_2020_2020;
    const LOWER5: u64 = 0x20_2020_2020;
    if (word | LOWER6) & 0xffff_ffff_ffff == CREDIT && is_sep((word >> 48) as u8) {
        Some((Kind::Credit, 7))
    } else if (word | LOWER5) & 0xff_ffff_ffff == DEBIT && is_sep((word >> 40) as u8) {
        Some((Kind::Debit, 6))
    } else {
        None
    }
}

/// A NAME is valid UTF-8 with no whitespace at all: the fields are split on
/// spaces and tabs only, and any other Unicode whitespace (`\r`, `\x0b`,
/// `\x0c`, U+0085, U+00A0, U+3000, ...) makes the line invalid rather than
/// becoming part of a name, so "non-space" holds in the Unicode sense and a
/// log line always reads as one name, one space, one balance.
fn valid_name(name: &[u8]) -> bool {
    if name.is_ascii() {
        // ASCII is UTF-8. ASCII whitespace per `char::is_whitespace`: \t
        // \n \x0b \x0c \r and space; space and tab cannot be here.
        return !name.iter().any(|b| (b'\n'..=b'\r').contains(b));
    }
    std::str::from_utf8(name).is_ok_and(|text| !text.chars().any(char::is_whitespace))
}

/// `$`?, digits, then optionally `.` and digits; at most 28 digits in all.
/// Public because the atm's amounts share the grammar (SPEC "atm").
#[inline]
pub fn parse_amount(amount: &[u8]) -> Option<Decimal> {
    match read_amount(amount) {
        Some((value, len)) if len == amount.len() => Some(value),
        _ => None,
    }
}

/// Up to 19 digits fit a `u64` (10^19 - 1 < 2^64), whose arithmetic is
/// cheaper than `u128`'s; longer amounts are read again by [`wide_amount`].
const FAST_DIGITS: usize = 19;

/// Reads the amount at the start of `s`: the value and the bytes it took.
/// The caller decides what may follow (a separator in a line, nothing for
/// [`parse_amount`]); a digit or `.` cannot, since they would have been
/// taken. The digits go straight into an integer mantissa, the count after
/// the point is the scale: no text is parsed twice.
#[inline(always)]
fn read_amount(s: &[u8]) -> Option<(Decimal, usize)> {
    let start = usize::from(s.first() == Some(&b'$'));
    let mut mantissa: u64 = 0;
    let mut i = start;
    // Wrapping: past 19 digits the value is discarded and read again.
    let mut digits = |i: &mut usize| {
        let from = *i;
        while let Some(&b) = s.get(*i) {
            let digit = b.wrapping_sub(b'0');
            if digit > 9 {
                break;
            }
            mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(digit));
            *i += 1;
        }
        *i - from
    };
    let int_digits = digits(&mut i);
    if int_digits == 0 {
        return None; // ``, `$`, `.5`, `$-0`, `-2`
    }
    let mut scale = 0;
    if s.get(i) == Some(&b'.') {
        i += 1;
        scale = digits(&mut i);
        if scale == 0 {
            return None; // `2.`
        }
    }
    let value = if int_digits + scale <= FAST_DIGITS {
        decimal(u128::from(mantissa), false, scale as u32)
    } else {
        wide_amount(&s[start..i], scale)?
    };
    Some((value, i))
}

/// The slow path of [`read_amount`]: `digits` (with its `.`, if any) already
/// checked, over 19 digits. `None` past [`MAX_AMOUNT_DIGITS`].
#[cold]
fn wide_amount(digits: &[u8], scale: usize) -> Option<Decimal> {
    let mut mantissa: u128 = 0;
    let mut count = 0;
    for &b in digits.iter().filter(|&&b| b != b'.') {
        count += 1;
        if count > MAX_AMOUNT_DIGITS {
            return None;
        }
        mantissa = mantissa * 10 + u128::from(b - b'0');
    }
    // mantissa < 10^28 < 2^96 and scale <= 27: always representable.
    Some(decimal(mantissa, false, scale as u32))
}

#[cfg(test)]
mod tests;
