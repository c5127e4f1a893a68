//! The atm's accounts file (`--accounts`): arbitrary file bytes parsed,
//! rendered and parsed again.
#![no_main]

#[path = "../../tests/support/harness.rs"]
mod harness;
#[path = "../../tests/support/parsers.rs"]
mod parsers;

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    parsers::check_accounts_file(input);
});
