//! The ledger line parser against SPEC "ledger": the grammar case by case,
//! then the fast path against a plain model on random and near-miss lines.

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
        "2.", ".5", "$.5", "$2.", "-2", "+2", "$-2", "-$2", "1e5", "1E5", "1,000", "1_000", "nan",
        "NaN", "inf", "Infinity", "$", "$$2", "2$", "1.2.3", "1..2", "0x10", "½", "١٢", "２",
        "$2\r", "\u{a0}2", "2\u{a0}",
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
