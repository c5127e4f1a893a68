//! Ledger: arbitrary lines from arbitrary clients, then `finish`.
#![no_main]

#[path = "../../tests/support/harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    let (cut, rest) = input.split_first().unwrap_or((&0, &[]));
    let events = harness::events_from_bytes(rest, harness::LEDGER_VOCAB);
    harness::check_ledger(&events, u64::from(*cut % 4));
});
