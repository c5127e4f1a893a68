//! The fuzz targets' properties (see `fuzz/`), as proptest tests that run in
//! plain `cargo test`: the framer under random chunkings, and every handler
//! driven by random event sequences, each checked by the invariants in
//! `support/harness.rs`. Case counts are kept small so the suite stays fast;
//! `cargo fuzz` is where the long runs happen.

#[path = "support/harness.rs"]
mod harness;

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
}
