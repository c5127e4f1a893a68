//! The menu's and the atm's request parsers: each handler driven by
//! arbitrary messages from arbitrary clients on a fake clock; the first
//! byte picks the handler.
#![no_main]

#[path = "../../tests/support/harness.rs"]
mod harness;
#[path = "../../tests/support/parsers.rs"]
mod parsers;

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    let (&first, rest) = input.split_first().unwrap_or((&0, &[]));
    if first & 1 == 0 {
        parsers::check_menu(&parsers::ops_from_bytes(rest, parsers::MENU_VOCAB));
    } else {
        parsers::check_atm(&parsers::ops_from_bytes(rest, parsers::ATM_VOCAB));
    }
});
