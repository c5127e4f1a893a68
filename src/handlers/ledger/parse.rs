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
fn parse_name(name: &[u8]) -> Option<&[u8]> {
    if name.is_ascii() {
        // The common case, without a UTF-8 validation: ASCII is UTF-8.
        // ASCII whitespace per `char::is_whitespace`: \t \n \x0b \x0c \r
        // and space; space and tab cannot be here.
        return (!name.iter().any(|b| (b'\n'..=b'\r').contains(b))).then_some(name);
    }
    let text = std::str::from_utf8(name).ok()?;
    (!text.chars().any(char::is_whitespace)).then_some(name)
}

/// `$`?, digits, then optionally `.` and digits; at most 28 digits in all.
/// Public because the atm's amounts share the grammar (SPEC "atm").
#[inline]
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

#[cfg(test)]
mod tests {
    use super::super::Ledger;
    use super::super::testkit::*;
    use super::*;
    use crate::handlers::{ClientId, Handler, Outbox};
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
}
