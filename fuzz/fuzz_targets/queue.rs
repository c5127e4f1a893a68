//! Queue: arbitrary commands from arbitrary clients; the first byte sets the
//! capacity.
#![no_main]

#[path = "../../tests/support/harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    let (capacity, rest) = input.split_first().unwrap_or((&0, &[]));
    let events = harness::events_from_bytes(rest, harness::QUEUE_VOCAB);
    harness::check_queue(usize::from(*capacity % 8), &events);
});
