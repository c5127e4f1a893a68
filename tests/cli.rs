//! The server command line (SPEC "Programs", "Server options", "Status
//! lines"): usage errors exit 2, a port in use exits 1 naming the address,
//! `--help` covers every option, the first status line names the address.

#[macro_use]
mod common;

use std::net::TcpListener;

use common::*;

both!(
    no_arguments_is_a_usage_error,
    bad_handler_is_a_usage_error,
    negative_report_every_is_a_usage_error,
    negative_numbers_get_a_message_that_says_so,
    report_every_below_10_ms_is_a_usage_error,
    bad_port_is_a_usage_error,
    port_in_use_exits_1_naming_the_address,
    help_mentions_every_option,
    listening_line_names_each_handler,
    ipv6_bind,
);

fn assert_usage_error(kind: Kind, args: &[&str]) {
    let (status, _out, err) = run_to_end(kind, args);
    assert_eq!(
        status.code(),
        Some(2),
        "{args:?}: {status:?}, stderr {err:?}"
    );
    assert!(
        err.to_lowercase().contains("usage"),
        "{args:?}: no usage line on stderr: {err:?}"
    );
}

fn no_arguments_is_a_usage_error(kind: Kind) {
    assert_usage_error(kind, &[]);
}

fn bad_handler_is_a_usage_error(kind: Kind) {
    assert_usage_error(kind, &["-H", "nope", "0"]);
    assert_usage_error(kind, &["--handler", "Echoes", "0"]);
}

fn negative_report_every_is_a_usage_error(kind: Kind) {
    assert_usage_error(kind, &["--report-every", "-1", "0"]);
    assert_usage_error(kind, &["--report-every=-1", "0"]);
    assert_usage_error(kind, &["--report-every", "soon", "0"]);
}

fn negative_numbers_get_a_message_that_says_so(kind: Kind) {
    for args in [
        &["--report-every", "-1", "0"][..],
        &["--drain-timeout", "-0.5", "0"],
        &["--max-line", "-1", "0"],
        &["--max-clients", "-10", "0"],
        &["--queue-size", "-1", "0"],
        &["-1"],
    ] {
        assert_usage_error(kind, args);
        let (_, _, err) = run_to_end(kind, args);
        assert!(
            err.contains("negative numbers are not allowed"),
            "{args:?}: {err:?}"
        );
    }
}

fn report_every_below_10_ms_is_a_usage_error(kind: Kind) {
    for secs in ["0.001", "0.000001", "0.009"] {
        let args = ["--report-every", secs, "0"];
        assert_usage_error(kind, &args);
        let (_, _, err) = run_to_end(kind, &args);
        assert!(err.contains("at least 0.01 seconds"), "{secs}: {err:?}");
    }
}

fn bad_port_is_a_usage_error(kind: Kind) {
    assert_usage_error(kind, &["65536"]);
    assert_usage_error(kind, &["http"]);
    assert_usage_error(kind, &["0", "1"]);
}

fn port_in_use_exits_1_naming_the_address(kind: Kind) {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (status, out, err) = run_to_end(kind, &[&port]);
    assert_eq!(status.code(), Some(1), "{status:?}, stderr {err:?}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "want one line on stderr: {err:?}");
    assert!(
        lines[0].contains(&format!("127.0.0.1:{port}")),
        "the error does not name the address: {err:?}"
    );
    assert!(
        lines[0].to_lowercase().contains("in use"),
        "the error does not give the OS reason: {err:?}"
    );
    assert!(!out.contains("Listening on"), "stdout: {out:?}");
}

fn help_mentions_every_option(kind: Kind) {
    let (status, out, err) = run_to_end(kind, &["--help"]);
    assert_eq!(status.code(), Some(0), "{status:?}, stderr {err:?}");
    for word in [
        "-H",
        "--handler",
        "-b",
        "--bind",
        "--log",
        "--report-every",
        "--max-line",
        "--max-clients",
        "--max-pending",
        "--drain-timeout",
        "--upper",
        "--queue-size",
        "PORT",
        "ledger",
        "echo",
        "presence",
        "sink",
        "queue",
    ] {
        assert!(out.contains(word), "--help does not mention {word}:\n{out}");
    }
}

fn listening_line_names_each_handler(kind: Kind) {
    for handler in ["ledger", "echo", "presence", "sink", "queue"] {
        let s = Server::start(kind, &["--handler", handler]);
        assert_eq!(s.handler, handler);
        assert!(s.addr.ip().is_loopback() && s.addr.is_ipv4(), "{}", s.addr);
        assert_ne!(s.port(), 0, "the Listening line must show the real port");
        assert_eq!(
            s.status_lines()[0],
            format!("Listening on 127.0.0.1:{} (handler {handler})", s.port())
        );
    }
}

fn ipv6_bind(kind: Kind) {
    require_ipv6();
    let mut s = Server::start(kind, &["-b", "::1"]);
    assert_eq!(
        s.status_lines()[0],
        format!("Listening on [::1]:{} (handler echo)", s.port())
    );
    let mut c = s.connect_as(1);
    c.send(b"over v6\n");
    c.expect_line(b"over v6\n");
    s.stop(SIGINT);
}
