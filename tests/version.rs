//! `--version` on every binary: the binary's own name and the crate's
//! version, exit 0 (before, every one printed the crate's name,
//! `nonblocking`). Also `-V`, and a usage error still names the binary.

use std::process::Command;

const BINARIES: [(&str, &str); 5] = [
    (
        "nonblocking-server",
        env!("CARGO_BIN_EXE_nonblocking-server"),
    ),
    ("threaded-server", env!("CARGO_BIN_EXE_threaded-server")),
    (
        "nonblocking-client",
        env!("CARGO_BIN_EXE_nonblocking-client"),
    ),
    ("loadgen", env!("CARGO_BIN_EXE_loadgen")),
    ("queue-grpc-server", env!("CARGO_BIN_EXE_queue-grpc-server")),
];

#[test]
fn every_binary_prints_its_own_name_and_version() {
    for (name, path) in BINARIES {
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
    }
}

#[test]
fn a_usage_error_still_exits_2_with_the_binarys_usage_line() {
    for (name, path) in BINARIES {
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
}
