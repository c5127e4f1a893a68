//! Presence: arbitrary connects, messages and disconnects.
#![no_main]

#[path = "../../tests/support/harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    harness::check_presence(&harness::events_from_bytes(input, harness::PRESENCE_VOCAB));
});
