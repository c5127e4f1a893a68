//! `--version` on every binary: the binary's own name and the crate's
//! version, exit 0 (before, every one printed the crate's name,
//! `nonblocking`). Also `-V`, and a usage error still names the binary.

use std::process::Command;

/// `--version` and `-V` print `NAME VERSION`, exit 0; an unknown option
/// exits 2 with a usage line that names the binary.
fn names_itself(name: &str, path: &str) {
    for flag in ["--version", "-V"] {
        let out = Command::new(path).arg(flag).output().expect("run");
        assert_eq!(out.status.code(), Some(0), "{name} {flag}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{name} {}\n", env!("CARGO_PKG_VERSION")),
            "{name} {flag}"
        );
        assert!(out.stderr.is_empty(), "{name} {flag}");
    }
    let out = Command::new(path)
        .arg("--no-such-option")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "{name}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("Usage: {name} ")),
        "{name}: {stderr}"
    );
}

#[test]
fn nonblocking_server() {
    names_itself(
        "nonblocking-server",
        env!("CARGO_BIN_EXE_nonblocking-server"),
    );
}

#[test]
fn threaded_server() {
    names_itself("threaded-server", env!("CARGO_BIN_EXE_threaded-server"));
}

#[test]
fn nonblocking_client() {
    names_itself(
        "nonblocking-client",
        env!("CARGO_BIN_EXE_nonblocking-client"),
    );
}

#[test]
fn loadgen() {
    names_itself("loadgen", env!("CARGO_BIN_EXE_loadgen"));
}

// Its own test, so that gating the gRPC binary (a feature, a workspace
// member) gates this one function with it.
#[test]
fn queue_grpc_server() {
    names_itself("queue-grpc-server", env!("CARGO_BIN_EXE_queue-grpc-server"));
}
