//! What this build of the tests leaves out: each optional cargo feature
//! that is off shows here as an ignored test with the command that runs
//! its tests, so a plain `cargo test` cannot look like the whole suite.

/// gRPC (`queue-grpc-server`, `tests/grpc.rs`) is the `grpc` feature.
#[cfg(not(feature = "grpc"))]
#[test]
#[ignore = "the gRPC tests need the grpc feature: cargo test --all-features"]
fn grpc_tests_need_the_grpc_feature() {
    panic!("built without the grpc feature: run cargo test --all-features");
}
