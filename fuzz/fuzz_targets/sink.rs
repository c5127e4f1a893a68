//! Sink: arbitrary connects, raw chunks and disconnects, honouring the
//! handler's pauses (and now and then breaking them on purpose).
#![no_main]

#[path = "../../tests/support/harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    harness::check_sink(&harness::events_from_bytes(input, &[]));
});
