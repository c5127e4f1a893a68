//! The datagram core (`src/server_core/datagram.rs`): UDP peers admitted (up
//! to `--max-udp-peers`),
//! refreshed, forgotten and expired on a fake clock, the bounded reply
//! queue against a socket that blocks and fails, and datagram shaping.
#![no_main]

#[path = "../../tests/support/harness.rs"]
mod harness;
#[path = "../../tests/support/parsers.rs"]
mod parsers;

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    let (idle_millis, max_peers, ops) = parsers::datagram_ops_from_bytes(input);
    parsers::check_datagrams(idle_millis, max_peers, &ops);
});
