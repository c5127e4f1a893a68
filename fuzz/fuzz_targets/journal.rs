//! A ledger journal (`--journal`) opened from arbitrary file bytes:
//! replayed, cut or refused, then appended to and opened again.
#![no_main]

#[path = "../../tests/support/harness.rs"]
mod harness;
#[path = "../../tests/support/parsers.rs"]
mod parsers;

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    parsers::check_journal_file(input);
});
