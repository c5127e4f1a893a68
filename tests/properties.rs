//! The fuzz targets' properties (see `fuzz/`), as proptest tests that run in
//! plain `cargo test`: the framer under random chunkings, and every handler
//! driven by random event sequences, each checked by the invariants in
//! `support/harness.rs`. Case counts are kept small so the suite stays fast;
//! `cargo fuzz` is where the long runs happen.

#[path = "support/harness.rs"]
mod harness;
#[path = "support/parsers.rs"]
mod parsers;

use harness::Event;
use proptest::prelude::*;

fn stream_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        3 => Just(b'\n'),
        2 => Just(b'\r'),
        4 => b'a'..=b'c',
        1 => any::<u8>(),
    ]
}

/// A message: one of `vocab`'s prefixes (or none), then a few bytes biased
/// towards blanks, line ends and name characters.
fn message(vocab: &'static [&'static [u8]]) -> impl Strategy<Value = Vec<u8>> {
    let body = proptest::collection::vec(
        prop_oneof![
            4 => b'a'..=b'c',
            2 => Just(b' '),
            1 => Just(b'\t'),
            1 => Just(b'\r'),
            1 => Just(b'\n'),
            2 => b'0'..=b'9',
            1 => Just(b'.'),
            1 => any::<u8>(),
        ],
        0..12,
    );
    (0..=vocab.len(), body).prop_map(move |(i, body)| {
        let mut v = vocab.get(i).map_or_else(Vec::new, |p| p.to_vec());
        v.extend(body);
        v
    })
}

fn events(vocab: &'static [&'static [u8]]) -> impl Strategy<Value = Vec<Event>> {
    let event = prop_oneof![
        3 => Just(Event::Connect),
        6 => (any::<usize>(), message(vocab), prop::bool::weighted(0.05))
            .prop_map(|(client, bytes, force)| Event::Message { client, bytes, force }),
        2 => any::<usize>().prop_map(|client| Event::Disconnect { client }),
        1 => Just(Event::Shutdown),
    ];
    proptest::collection::vec(event, 0..40)
}

#[test]
fn harness_helpers_are_sane() {
    harness::self_check();
}

/// The request checks' models on the paths that matter, spelled out: a
/// deposit answered, a request that waited too long, five wrong PINs and
/// the lock; the menu's run time after a wait and its count.
#[test]
fn scripted_requests_pass_the_checks() {
    use parsers::Op::{Connect, Disconnect, Message, Wait};
    let say = |client: usize, text: &str| Message {
        client,
        bytes: text.as_bytes().to_vec(),
    };
    let mut atm = vec![Connect, say(0, "d 5\n"), say(0, "ucharles p02323\n")];
    atm.extend([say(0, "w1"), Wait { secs: 31 }, say(0, "ucharles p02323")]);
    for _ in 0..6 {
        atm.extend([say(0, "b"), say(0, "uann p0000")]);
    }
    atm.extend([
        Wait { secs: 61 },
        say(0, "b"),
        say(0, "uann p1234"),
        Disconnect { client: 0 },
    ]);
    parsers::check_atm(&atm);
    let menu = [
        Connect,
        Wait { secs: 3725 },
        say(0, "4\n"),
        say(0, "1 \u{e9}t\u{e9}\n"),
        say(0, "3"),
        say(0, "5"),
    ];
    parsers::check_menu(&menu);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn framer_any_chunking(
        data in proptest::collection::vec(stream_byte(), 0..200),
        max_line in 1usize..12,
        cuts in proptest::collection::vec(0usize..200, 0..16),
    ) {
        harness::check_framer(&data, max_line, &cuts);
    }

    #[test]
    fn framer_from_fuzz_bytes(input in proptest::collection::vec(any::<u8>(), 0..200)) {
        let (data, max_line, cuts) = harness::framer_from_bytes(&input);
        harness::check_framer(&data, max_line, &cuts);
    }

    #[test]
    fn presence_random_events(events in events(harness::PRESENCE_VOCAB)) {
        harness::check_presence(&events);
    }

    #[test]
    fn queue_random_events(capacity in 0usize..5, events in events(harness::QUEUE_VOCAB)) {
        harness::check_queue(capacity, &events);
    }

    #[test]
    fn sink_random_events(events in events(&[])) {
        harness::check_sink(&events);
    }

    #[test]
    fn ledger_random_lines(
        events in events(harness::LEDGER_VOCAB),
        cut in 0u64..3,
        journal in any::<bool>(),
    ) {
        harness::check_ledger(&events, cut, journal);
    }

    #[test]
    fn handlers_from_fuzz_bytes(input in proptest::collection::vec(any::<u8>(), 0..200)) {
        harness::check_presence(&harness::events_from_bytes(&input, harness::PRESENCE_VOCAB));
        harness::check_queue(usize::from(input.first().copied().unwrap_or(0) % 5),
            &harness::events_from_bytes(&input, harness::QUEUE_VOCAB));
        harness::check_sink(&harness::events_from_bytes(&input, &[]));
        harness::check_ledger(&harness::events_from_bytes(&input, harness::LEDGER_VOCAB), 0, true);
    }

    #[test]
    fn accounts_file_from_bytes(text in proptest::collection::vec(
        prop_oneof![
            4 => Just(b' '), 1 => Just(b'\t'), 2 => Just(b'\n'), 1 => Just(b'\r'),
            6 => b'0'..=b'9', 4 => b'a'..=b'c', 1 => Just(b'-'), 1 => Just(b'.'),
            1 => Just(b'$'), 1 => any::<u8>(),
        ],
        0..120,
    )) {
        parsers::check_accounts_file(&text);
    }

    #[test]
    fn accounts_file_from_valid_lines(lines in proptest::collection::vec(
        ("[a-c]{1,3}", "[0-9]{4,12}", "-?[0-9]{1,4}(\\.[0-9]{1,2})?"),
        0..6,
    )) {
        let text: String = lines.iter().map(|(n, p, b)| format!("{n} {p} {b}\n")).collect();
        parsers::check_accounts_file(text.as_bytes());
    }

    #[test]
    fn journal_from_file_bytes(bytes in proptest::collection::vec(
        prop_oneof![
            3 => Just(b"# nonblocking journal v1\n".to_vec()),
            6 => Just(b"Al credit 1\n".to_vec()),
            1 => Just(b"not a record\n".to_vec()),
            2 => proptest::collection::vec(any::<u8>(), 0..6),
        ],
        0..6,
    )) {
        parsers::check_journal_file(&bytes.concat());
    }

    #[test]
    fn menu_requests(input in proptest::collection::vec(any::<u8>(), 0..200)) {
        parsers::check_menu(&parsers::ops_from_bytes(&input, parsers::MENU_VOCAB));
    }

    #[test]
    fn atm_requests(input in proptest::collection::vec(any::<u8>(), 0..300)) {
        parsers::check_atm(&parsers::ops_from_bytes(&input, parsers::ATM_VOCAB));
    }

    #[test]
    fn datagram_core(input in proptest::collection::vec(any::<u8>(), 0..300)) {
        let (idle_millis, max_peers, ops) = parsers::datagram_ops_from_bytes(&input);
        parsers::check_datagrams(idle_millis, max_peers, &ops);
    }
}
