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
mod tests {
    use super::super::Ledger;
    use super::super::testkit::*;
    use super::*;
    use crate::handlers::{ClientId, Handler, Outbox};
    use proptest::prelude::*;
    use std::path::PathBuf;

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

    // ----- the one-pass parser against a plain model of SPEC ------------------

    /// SPEC's grammar written as plainly as possible with the standard
    /// library's tools (split, `from_utf8`, `Decimal::from_str`): slow, and
    /// sharing no code with [`parse_line`].
    fn model(line: &[u8]) -> Line<'_> {
        let fields: Vec<&[u8]> = line
            .split(|&b| b == b' ' || b == b'\t')
            .filter(|f| !f.is_empty())
            .collect();
        let [name, kind, amount] = fields[..] else {
            return if fields.is_empty() {
                Line::Blank
            } else {
                Line::Invalid
            };
        };
        let name_ok = std::str::from_utf8(name).is_ok_and(|n| !n.contains(char::is_whitespace));
        let kind = match kind.to_ascii_lowercase().as_slice() {
            b"credit" => Kind::Credit,
            b"debit" => Kind::Debit,
            _ => return Line::Invalid,
        };
        match (name_ok, model_amount(amount)) {
            (true, Some(amount)) => Line::Tx(Tx { name, kind, amount }),
            _ => Line::Invalid,
        }
    }

    /// `$`?, digits, (`.` digits)?, at most 28 digits, read by `Decimal`'s
    /// own string parser (which keeps the written scale).
    fn model_amount(text: &[u8]) -> Option<Decimal> {
        let text = std::str::from_utf8(text).ok()?;
        let number = text.strip_prefix('$').unwrap_or(text);
        let (int, frac) = match number.split_once('.') {
            Some((int, frac)) => (int, Some(frac)),
            None => (number, None),
        };
        let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let digits = int.len() + frac.map_or(0, str::len);
        (all_digits(int) && frac.is_none_or(all_digits) && digits <= 28).then(|| dec(number))
    }

    /// Equal as lines, and amounts equal in mantissa and scale too
    /// (`Decimal`'s `==` says 1.5 == 1.50; the ledger keeps the scale).
    fn same(a: &Line<'_>, b: &Line<'_>) -> bool {
        let parts = |line: &Line<'_>| match line {
            Line::Tx(tx) => Some((tx.amount.mantissa(), tx.amount.scale())),
            _ => None,
        };
        a == b && parts(a) == parts(b)
    }

    /// Pieces that sit on the grammar's edges: separators and the other
    /// whitespace, both types in odd cases and near misses, signs, points,
    /// exponents, commas, non-ASCII digits and letters, invalid UTF-8.
    const PIECES: &[&[u8]] = &[
        b" ",
        b"\t",
        b"  ",
        b"\r",
        b"\n",
        b"\x0b",
        b"\x0c",
        b"\0",
        b"\x7f",
        b"credit",
        b"CREDIT",
        b"Credit",
        b"debit",
        b"DeBiT",
        b"credi",
        b"debitt",
        b"$",
        b"$$",
        b"-",
        b"+",
        b".",
        b"..",
        b"0",
        b"7",
        b"9",
        b"00",
        b"123",
        b"4022",
        b"07",
        b"1e9",
        b"E",
        b",",
        b"_",
        b"nan",
        b"inf",
        b"Marc",
        b"a",
        b"\x80",
        b"\xc3",
        b"\xff",
        b"\xed\xa0\x80",
        b"\xc0\xaf",
        "\u{a0}".as_bytes(),
        "\u{3000}".as_bytes(),
        "\u{85}".as_bytes(),
        "crédit".as_bytes(),
        "١".as_bytes(),
        "２".as_bytes(),
        "½".as_bytes(),
        "é".as_bytes(),
        "名".as_bytes(),
        "🦀".as_bytes(),
    ];

    /// A line of 0 to 12 pieces.
    fn piece_line() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(prop::sample::select(PIECES), 0..12).prop_map(|p| p.concat())
    }

    /// Lines shaped like transactions, each part drawn from near misses:
    /// what a buggy fast path would most likely get wrong.
    fn shaped_line() -> impl Strategy<Value = Vec<u8>> {
        let sep = prop::sample::select(vec!["", " ", "\t", " \t ", "  "]);
        let name = prop::sample::select(vec![
            &b"Harper"[..],
            b"a",
            "Zoë".as_bytes(),
            "名前".as_bytes(),
            b"a\rb",
            "x\u{a0}".as_bytes(),
            b"$5",
            b"credit",
            b"\0",
            b"ab\x7f",
            b"ab\x80",
            b"\xff",
            b"Zo\xc3",
        ]);
        let kind = prop::sample::select(vec![
            "credit", "debit", "CREDIT", "Debit", "cred", "debits", "credit$", "debit1", "",
        ]);
        let digits = |max| proptest::string::string_regex(&format!("[0-9]{{0,{max}}}")).unwrap();
        let amount = (
            prop::sample::select(vec!["", "$", "$-", "-", "+", "$$"]),
            digits(30),
            prop::sample::select(vec!["", ".", ",", "e", "x"]),
            digits(30),
            prop::sample::select(vec!["", "$", ".5", "e9", "\r", "\u{a0}", " extra"]),
        )
            .prop_map(|(sign, int, point, frac, tail)| format!("{sign}{int}{point}{frac}{tail}"));
        (
            sep.clone(),
            name,
            sep.clone(),
            kind,
            sep.clone(),
            amount,
            sep,
        )
            .prop_map(|(s0, name, s1, kind, s2, amount, s3)| {
                let text = format!("{s1}{kind}{s2}{amount}{s3}");
                [s0.as_bytes(), name, text.as_bytes()].concat()
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn parse_line_agrees_with_the_model_on_random_bytes(
            line in prop::collection::vec(any::<u8>(), 0..40),
        ) {
            let (fast, slow) = (parse_line(&line), model(&line));
            prop_assert!(same(&fast, &slow), "{:?}: {:?} vs model {:?}", line, fast, slow);
        }

        #[test]
        fn parse_line_agrees_with_the_model_on_edge_pieces(line in piece_line()) {
            let (fast, slow) = (parse_line(&line), model(&line));
            prop_assert!(same(&fast, &slow), "{:?}: {:?} vs model {:?}", line, fast, slow);
        }

        #[test]
        fn parse_line_agrees_with_the_model_on_near_transactions(line in shaped_line()) {
            let (fast, slow) = (parse_line(&line), model(&line));
            prop_assert!(same(&fast, &slow), "{:?}: {:?} vs model {:?}", line, fast, slow);
        }

        #[test]
        fn parse_amount_agrees_with_the_model(
            text in proptest::string::string_regex(r"\$?[0-9]{0,31}(\.[0-9]{0,31})?").unwrap(),
        ) {
            let fast = parse_amount(text.as_bytes()).map(|d| (d.mantissa(), d.scale()));
            let slow = model_amount(text.as_bytes()).map(|d| (d.mantissa(), d.scale()));
            prop_assert_eq!(fast, slow, "{:?}", text);
        }
    }

    #[test]
    fn the_model_knows_the_spec_examples() {
        // The model itself, on SPEC's cases, so the agreement above means
        // something.
        assert_eq!(model(b" Marc\tcredit  $2 "), tx("Marc", Kind::Credit, "2"));
        assert_eq!(model(b"a DEBIT 1234.56"), tx("a", Kind::Debit, "1234.56"));
        assert_eq!(model(b" \t"), Line::Blank);
        for bad in [
            &b"a credit 2."[..],
            b"a credit .5",
            b"a credit $-0",
            b"a credit 1e9",
            b"a credit 1,000",
            b"a credit 99999999999999999999999999999",
            "a credit ２".as_bytes(),
            b"a\rb credit 1",
            b"a credit 1 x",
        ] {
            assert_eq!(model(bad), Line::Invalid, "{bad:?}");
        }
    }
}
