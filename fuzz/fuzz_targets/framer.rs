//! LineFramer: arbitrary bytes cut at arbitrary places (the input's first
//! bytes give `max_line` and the cuts; see `harness::framer_from_bytes`).
#![no_main]

#[path = "../../tests/support/harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    let (data, max_line, cuts) = harness::framer_from_bytes(input);
    harness::check_framer(&data, max_line, &cuts);
});
