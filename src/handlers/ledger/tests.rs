//! The ledger handler against SPEC "ledger": lines, counts and exact sums,
//! the journal, the log and summary at exit, random transactions against
//! integer cents, and line blocks against line by line.

use super::testkit::*;
use super::*;
use crate::handlers::Effect;
use proptest::prelude::*;
use std::collections::BTreeMap;

#[test]
fn journal_persists_applied_lines_only_and_replays_to_the_same_balances() {
    let mut ledger = Ledger::new(PathBuf::from("log.txt")).with_journal();
    let mut out = Outbox::new();
    let mut records = Vec::new();
    for line in [
        &b"Marc credit $2\n"[..],
        b"bad line\n",
        b"Marc debit 1.5\r\n",
        b"\n",
        b"Ann credit 7",
    ] {
        ledger.on_message(ClientId(1), line, &mut out);
        for effect in out.take() {
            match effect {
                Effect::Persist(bytes) => records.extend(bytes),
                other => panic!("the ledger did {other:?}"),
            }
        }
    }
    assert_eq!(records, b"Marc credit $2\nMarc debit 1.5\nAnn credit 7\n");

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
    assert!(!restarted.replay(b"not a transaction"));
}

#[test]
fn without_a_journal_nothing_is_persisted() {
    let mut ledger = Ledger::new(PathBuf::from("log.txt"));
    let mut out = Outbox::new();
    ledger.on_message(ClientId(1), b"Marc credit 2\n", &mut out);
    assert!(out.is_empty());
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
            ..Finish::default()
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
    let t = ledger.traits();
    assert_eq!(t.name, "ledger");
    assert_eq!(t.framing, Framing::LineBlocks);
    assert_eq!(t.shutdown, ShutdownPolicy::Drain);
    assert_eq!(t.sharing, Sharing::PerLoop, "balances are sums");
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
}

/// One line for [`on_lines_is_on_message_line_by_line`]: near
/// transactions with every kind of flaw, or any bytes but `\n`.
fn block_line() -> impl Strategy<Value = Vec<u8>> {
    let pick = |v: Vec<&'static str>| prop::sample::select(v);
    let near = (
        pick(vec!["", " ", "\t "]),
        pick(vec![
            "Marc", "Zoë", "a\rb", "x\u{a0}", "credit", "\u{0}", "",
        ]),
        pick(vec!["", " ", "\t", "  "]),
        pick(vec!["credit", "DEBIT", "debits", "cred", ""]),
        pick(vec!["", " ", "\t"]),
        pick(vec![
            "$2",
            "2.50",
            "1.",
            ".5",
            "$-0",
            "1e9",
            "99999999999999999999999999999",
            "0",
        ]),
        pick(vec!["", " ", "\t", "\r", " x", "$", "\r\r"]),
    )
        .prop_map(|(a, b, c, d, e, f, g)| [a, b, c, d, e, f, g].concat().into_bytes());
    let junk = prop::collection::vec(
        any::<u8>().prop_filter("no newline", |b| *b != b'\n'),
        0..24,
    );
    prop_oneof![4 => near, 1 => junk]
}

proptest! {
    /// The block path (one call for many lines) against the line path,
    /// journal included: the same counts, balances and records.
    #[test]
    fn on_lines_is_on_message_line_by_line(
        lines in prop::collection::vec((block_line(), any::<bool>()), 0..40)
    ) {
        let mut block = Vec::new();
        let (mut by_line, mut by_block) = (ledger_with_journal(), ledger_with_journal());
        let (mut out_line, mut out_block) = (Outbox::new(), Outbox::new());
        for (line, crlf) in &lines {
            let start = block.len();
            block.extend_from_slice(line);
            block.extend_from_slice(if *crlf { b"\r\n" } else { b"\n" });
            by_line.on_message(ClientId(1), &block[start..], &mut out_line);
        }
        by_block.on_lines(ClientId(1), &block, &mut out_block);
        prop_assert_eq!(by_block.applied(), by_line.applied());
        prop_assert_eq!(by_block.discarded(), by_line.discarded());
        prop_assert_eq!(by_block.render_log(), by_line.render_log());
        prop_assert_eq!(out_block.take(), out_line.take());
    }
}

fn ledger_with_journal() -> Ledger {
    Ledger::new(PathBuf::from("log.txt")).with_journal()
}
