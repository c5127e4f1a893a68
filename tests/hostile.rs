//! Issue 19, "Trust under attack": what a hostile environment must not
//! achieve. Here: running the server out of descriptors (SPEC "atm":
//! descriptors never run out under the bank's own writes; `--max-clients`
//! is lowered at start to what `RLIMIT_NOFILE` allows, with a diagnostic).
//! The atm's lockout is in `tests/atm.rs`, the UDP reply cap and
//! `--max-udp-peers` in `tests/udp.rs`.

#[macro_use]
mod common;

use common::*;

every_server!(a_deposit_is_acknowledged_under_a_low_descriptor_limit_full_of_idle_clients);

/// The case: `ulimit -n 64`, then more idle connections than that.
const FD_LIMIT: libc::rlim_t = 64;
const CLIENTS: usize = 100;

fn a_deposit_is_acknowledged_under_a_low_descriptor_limit_full_of_idle_clients(kind: Kind) {
    let dir = TempDir::new(&format!("nofile-{}", kind.name()));
    let accounts = dir.join("accounts.txt");
    std::fs::write(&accounts, "ada 98765 5\n").unwrap();
    let path = accounts.to_str().unwrap().to_string();
    let mut s = Server::start_with(kind, &["-H", "atm", "--accounts", &path], dir, |cmd| {
        limit_nofile(cmd, FD_LIMIT)
    });
    let prefix = "--max-clients lowered from 10000 to ";
    let line = s.wait_stderr("the lowered --max-clients diagnostic", |l| {
        l.starts_with(prefix)
    });
    let max: u64 = line[prefix.len()..]
        .split(':')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("malformed diagnostic {line:?}"));
    assert!(
        line.contains(&format!("is {FD_LIMIT}")) && (20..FD_LIMIT - 10).contains(&max),
        "{line}"
    );
    let mut first = s.connect_as(1);
    let mut others: Vec<Conn> = (1..CLIENTS).map(|_| s.connect()).collect();
    // The first `max` are served; every one after gets the refusal (the
    // last one's shows that the server went through all of them).
    s.wait_connected(max);
    let last = others.last_mut().expect("clients");
    last.expect_line(b"error: too many clients\n");
    last.expect_eof();
    // Full of idle clients: a deposit is made durable and acknowledged.
    for (amount, balance) in [("12.50", "17.50"), ("1", "18.50")] {
        first.send(format!("d{amount}\n").as_bytes());
        first.expect_line(b"\n");
        first.expect_line(b"\tPlease give the username and pin number.\n");
        first.expect_line(b"\n");
        first.send(b"uada p98765\n");
        first.expect_line(
            format!("Deposited {amount} dollar(s). Balance is now {balance} dollar(s).\n")
                .as_bytes(),
        );
    }
    let (on_disk, _, _) = nonblocking::store::accounts_log::read(&accounts).unwrap();
    assert_eq!(on_disk.balance("ada"), Some("18.50".parse().unwrap()));
    // Every served client is still served.
    others[0].send(b"b\n");
    others[0].expect_line(b"\n");
    s.assert_no_stderr("Too many open files");
    s.stop(SIGINT);
    assert!(
        !s.seen_status(|l| l.starts_with(&format!("Client {} connected", max + 1))),
        "never more than --max-clients\n{}",
        s.transcript()
    );
}
