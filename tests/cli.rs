//! The server command line (SPEC "Programs", "Server options", "Status
//! lines"): usage errors exit 2, a port in use exits 1 naming the address,
//! `--help` covers every option, the first status line names the address.

#[macro_use]
mod common;

use std::net::TcpListener;

use common::*;

every_server!(
    no_arguments_is_a_usage_error,
    bad_handler_is_a_usage_error,
    negative_report_every_is_a_usage_error,
    negative_numbers_get_a_message_that_says_so,
    report_every_below_10_ms_is_a_usage_error,
    bad_port_is_a_usage_error,
    max_output_total_of_0_or_no_number_is_a_usage_error,
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
        &["--max-output-total", "-1", "0"],
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

/// Decision (docs/PROTOCOL.md): 0 would mean no client could ever have
/// output queued; a total below `--max-pending` is allowed (it binds first).
fn max_output_total_of_0_or_no_number_is_a_usage_error(kind: Kind) {
    for bad in ["0", "lots", "1099511627777"] {
        assert_usage_error(kind, &["--max-output-total", bad, "0"]);
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

/// The server options in SPEC's table (copied into `tests/data/spec/`):
/// each row's option names, whether it is `nonblocking-server only`, and
/// for `--handler` the handler names its meaning lists.
struct SpecOption {
    names: Vec<String>,
    reactor_only: bool,
    values: Vec<String>,
}

fn spec_options() -> Vec<SpecOption> {
    let table = String::from_utf8(test_data("spec/server-options.md")).expect("UTF-8");
    let options: Vec<SpecOption> = table
        .lines()
        .filter_map(|row| {
            let mut cells = row.strip_prefix("| `")?.split(" | ");
            let option = cells.next()?.strip_suffix('`')?;
            let meaning = cells.next()?;
            let names = option
                .split(", ")
                .filter_map(|o| o.split(' ').next())
                .filter(|o| o.starts_with('-'))
                .map(str::to_string)
                .collect();
            let values = if option.starts_with("-H") {
                meaning
                    .split('`')
                    .skip(1)
                    .step_by(2)
                    .map(str::to_string)
                    .collect()
            } else {
                Vec::new()
            };
            Some(SpecOption {
                names,
                reactor_only: meaning.contains("nonblocking-server only"),
                values,
            })
        })
        .collect();
    // A table that stopped parsing must not make the test vacuous.
    assert!(
        options.len() >= 20,
        "{} options in the table",
        options.len()
    );
    options
}

/// Whether `help` names `word` as a whole word (`--udp` is not found in
/// `--udp-idle`).
fn mentions(help: &str, word: &str) -> bool {
    help.match_indices(word).any(|(at, _)| {
        let before = help[..at].chars().next_back();
        let after = help[at + word.len()..].chars().next();
        let part_of_word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '-');
        !part_of_word(after) && (word.starts_with('-') || !part_of_word(before))
    })
}

/// SPEC: `--help` describes every option. Every option of SPEC's table
/// (the threaded server leaves out those for nonblocking-server only) and
/// every handler, by name.
fn help_mentions_every_option(kind: Kind) {
    let (status, out, err) = run_to_end(kind, &["--help"]);
    assert_eq!(status.code(), Some(0), "{status:?}, stderr {err:?}");
    let mut missing = Vec::new();
    for option in spec_options() {
        if option.reactor_only && kind == Kind::Threaded {
            continue;
        }
        for word in option.names.iter().chain(&option.values) {
            if !mentions(&out, word) {
                missing.push(word.clone());
            }
        }
    }
    assert!(mentions(&out, "PORT"), "--help has no PORT:\n{out}");
    assert!(
        missing.is_empty(),
        "--help does not mention {missing:?}:\n{out}"
    );
}

#[test]
fn the_option_table_parses_and_whole_words_are_told_apart() {
    let options = spec_options();
    let handler = options
        .iter()
        .find(|o| o.names.iter().any(|n| n == "--handler"))
        .expect("--handler");
    assert_eq!(handler.names, ["-H", "--handler"]);
    assert_eq!(
        handler.values,
        ["ledger", "echo", "presence", "sink", "queue", "menu", "atm"]
    );
    assert!(
        options
            .iter()
            .any(|o| o.reactor_only && o.names == ["--reactors"])
    );
    assert!(
        options.iter().any(|o| o.names == ["--max-output-total"]),
        "--max-output-total not in the table"
    );
    assert!(mentions("  --udp-idle <SECS>\n  --udp\n", "--udp"));
    assert!(!mentions("  --udp-idle <SECS>\n", "--udp"));
    assert!(!mentions("sinks", "sink") && mentions("- sink: ...", "sink"));
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
