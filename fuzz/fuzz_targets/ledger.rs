//! Ledger: arbitrary lines from arbitrary clients, then `finish`, and the
//! journal replayed.
#![no_main]

#[path = "../../tests/support/harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    // First byte: the cut count the server reports, and --journal or not.
    let (&first, rest) = input.split_first().unwrap_or((&0, &[]));
    let events = harness::events_from_bytes(rest, harness::LEDGER_VOCAB);
    harness::check_ledger(&events, u64::from(first % 4), first & 0x80 != 0);
});
