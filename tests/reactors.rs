//! What is specific to `--reactors N` (SPEC "Scale-out"): with clients on
//! every loop, ids stay unique and counts total, the periodic count is
//! printed once per period, presence lists reach everyone in one order,
//! the ledger's log and journal stay exact, and `--reactors 0` runs one
//! loop per core. (Every other test also runs with `--reactors 2`: the
//! `reactor2` case of `every_server!`.)
//!
//! The acceptor hands connections to the loops in turn, so clients that
//! connect one after another alternate between the two loops.

#[allow(unused_macros)]
#[macro_use]
mod common;

use std::collections::BTreeMap;
use std::fs;
use std::thread;

use common::*;

const R2: Kind = Kind::Reactor2;

/// The count a `Client N (dis)connected. Number of connected clients = C`
/// line shows, and whether it is a connect.
fn parse_event(line: &str) -> Option<(u64, bool, usize)> {
    let rest = line.strip_prefix("Client ")?;
    let (id, rest) = rest.split_once(' ')?;
    let (what, count) = rest.split_once(". Number of connected clients = ")?;
    Some((id.parse().ok()?, what == "connected", count.parse().ok()?))
}

#[test]
fn ids_unique_and_counts_total_with_many_clients_on_two_loops() {
    const CLIENTS: usize = 200;
    let mut s = Server::start(R2, &["-H", "echo"]);
    let addr = s.addr;
    // All at once, from several threads: both loops admit concurrently.
    let conns: Vec<Conn> = thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(move || {
                    (0..CLIENTS / 4)
                        .map(|_| Conn::connect(addr))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    for _ in 0..CLIENTS {
        s.wait_status("a connect line", |l| l.contains(" connected. "));
    }
    let mut conns = conns;
    for (i, c) in conns.iter_mut().enumerate() {
        let msg = format!("client {i}\n");
        c.send(msg.as_bytes());
        c.expect_line(msg.as_bytes());
    }
    drop(conns);
    for _ in 0..CLIENTS {
        s.wait_status("a disconnect line", |l| l.contains(" disconnected. "));
    }
    s.stop(SIGINT);
    // Every line whole, ids 1..=CLIENTS once each, and the counts in print
    // order step by one: the total, never a loop's own count.
    let mut ids = Vec::new();
    let mut total = 0usize;
    for line in s.status_lines().iter().skip(1) {
        if line.starts_with("Number of connected clients = ") {
            continue;
        }
        let (id, connected, count) =
            parse_event(line).unwrap_or_else(|| panic!("malformed line {line:?}"));
        if connected {
            total += 1;
            ids.push(id);
        } else {
            total -= 1;
        }
        assert_eq!(
            count,
            total,
            "line {line:?} out of order\n{}",
            s.transcript()
        );
    }
    ids.sort_unstable();
    assert_eq!(ids, (1..=CLIENTS as u64).collect::<Vec<_>>());
    assert_eq!(total, 0);
}

#[test]
fn max_clients_is_a_total_over_the_loops() {
    let mut s = Server::start(R2, &["-H", "echo", "--max-clients", "3"]);
    let mut kept: Vec<Conn> = (1..=3).map(|id| s.connect_as(id)).collect();
    for _ in 0..2 {
        let mut extra = s.connect();
        extra.expect_line(b"error: too many clients\n");
        extra.expect_closed();
    }
    kept[2].send(b"still here\n");
    kept[2].expect_line(b"still here\n");
    drop(kept.pop());
    s.wait_disconnected(3);
    let _fourth = s.connect_as(4);
    s.stop(SIGINT);
}

/// One periodic line per period, showing the total. Told apart by events,
/// not by a clock: a loop printing its own count shows less than the
/// clients connected; loops each printing the total print their lines in
/// the same tick, one right after the other. So after each report the
/// test connects a client and waits for its connected line: a second
/// report before that line is a duplicate, or a test stalled for a whole
/// period (0.5 s), which a duplicating server does every time and a
/// working one at most rarely.
#[test]
fn the_periodic_count_is_printed_once_per_period() {
    const CYCLES: u64 = 6;
    let is_report = |l: &str| l.starts_with("Number of connected clients = ");
    let mut s = Server::start(R2, &["-H", "echo", "--report-every", "0.5"]);
    let mut conns = vec![s.connect_as(1), s.connect_as(2)];
    for id in 3..3 + CYCLES {
        s.wait_status("a periodic line", is_report);
        conns.push(s.connect_as(id));
    }
    s.stop(SIGINT);
    let lines = s.status_lines();
    let from = lines
        .iter()
        .position(|l| l.starts_with("Client 2 connected."))
        .expect("client 2's line");
    let mut connected = 2;
    let mut reports = 0;
    let mut back_to_back = 0;
    let mut previous_was_report = false;
    for line in &lines[from + 1..] {
        if let Some(count) = line.strip_prefix("Number of connected clients = ") {
            let count: usize = count.parse().expect("a count");
            // The loops print their connect lines themselves, so a report
            // may already count a client whose line comes just after it.
            assert!(
                count >= connected,
                "{line:?} after {connected} clients connected: a loop's own count\n{}",
                s.transcript()
            );
            reports += 1;
            back_to_back += usize::from(previous_was_report);
            previous_was_report = true;
        } else if let Some((_, true, count)) = parse_event(line) {
            connected = count;
            previous_was_report = false;
        } else {
            break; // the shutdown
        }
    }
    assert!(reports >= CYCLES as usize, "{}", s.transcript());
    assert!(
        back_to_back <= CYCLES as usize / 2,
        "{back_to_back} periodic lines came right after another with no client between: \
         more than one loop prints them\n{}",
        s.transcript()
    );
}

#[test]
fn presence_lists_reach_clients_on_both_loops_in_one_order() {
    const CLIENTS: u64 = 8;
    let mut s = Server::start(R2, &["-H", "presence"]);
    let mut conns: Vec<Conn> = (1..=CLIENTS).map(|id| s.connect_as(id)).collect();
    // Everyone joins at once (alternate clients are on the two loops).
    thread::scope(|scope| {
        for (i, c) in conns.iter_mut().enumerate() {
            scope.spawn(move || c.send(format!("n{i}\n").as_bytes()));
        }
    });
    let everyone: Vec<String> = (0..CLIENTS).map(|i| format!("n{i}")).collect();
    let full = format!("{}\n", everyone.join(" "));
    let mut seen: Vec<Vec<String>> = Vec::new();
    for c in &mut conns {
        let mut lists = Vec::new();
        loop {
            let line = c.line_string();
            let done = line == full;
            lists.push(line);
            if done {
                break;
            }
        }
        seen.push(lists);
    }
    // Half leave at once; the rest must see the same lists in one order.
    let leaving: Vec<Conn> = conns.drain(..CLIENTS as usize / 2).collect();
    thread::scope(|scope| {
        for c in leaving {
            scope.spawn(move || drop(c));
        }
    });
    let rest = &everyone[CLIENTS as usize / 2..];
    let last = format!("{}\n", rest.join(" "));
    let mut after: Vec<Vec<String>> = Vec::new();
    for c in &mut conns {
        let mut lists = Vec::new();
        loop {
            let line = c.line_string();
            let done = line == last;
            lists.push(line);
            if done {
                break;
            }
        }
        after.push(lists);
    }
    // Joins: a client hears every list from its own join on, so each
    // client's lists are the end of the longest one, in the same order.
    let longest = seen.iter().max_by_key(|l| l.len()).unwrap().clone();
    assert_eq!(
        longest.len(),
        CLIENTS as usize,
        "one list per join: {longest:?}"
    );
    for lists in &seen {
        assert!(
            longest.ends_with(lists),
            "lists out of order:\n{lists:?}\nvs\n{longest:?}"
        );
    }
    for lists in &after {
        assert_eq!(lists, &after[0], "leaves seen in another order");
    }
    s.stop(SIGINT);
}

/// `NAME credit|debit AMOUNT` lines for client `k`, and their effect on
/// `model` (cents).
fn ledger_lines(k: usize, lines: usize, model: &mut BTreeMap<String, i64>) -> Vec<u8> {
    let mut out = Vec::new();
    for j in 0..lines {
        let name = format!("acct{}", (k * 7 + j) % 5);
        let cents = ((k * 31 + j * 17) % 1000) as i64 + 1;
        let credit = !(j + k).is_multiple_of(3);
        *model.entry(name.clone()).or_insert(0) += if credit { cents } else { -cents };
        let kind = if credit { "credit" } else { "debit" };
        out.extend_from_slice(
            format!("{name} {kind} ${}.{:02}\n", cents / 100, cents % 100).as_bytes(),
        );
    }
    out
}

/// Ten clients (five per loop) send their lines; each is waited for.
fn send_ledger_round(s: &mut Server, first_id: u64, model: &mut BTreeMap<String, i64>) {
    let mut conns: Vec<Conn> = (0..10).map(|i| s.connect_as(first_id + i)).collect();
    for (k, c) in conns.iter_mut().enumerate() {
        c.send(&ledger_lines(k + first_id as usize, 300, model));
        c.shutdown_write();
    }
    for c in &mut conns {
        c.expect_eof();
    }
    // The loops close them in any order.
    for _ in 0..conns.len() {
        s.wait_status("a disconnect line", |l| l.contains(" disconnected. "));
    }
}

#[test]
fn ledger_log_exact_with_clients_on_both_loops_and_after_a_replay() {
    let dir = TempDir::new("reactors-ledger");
    let journal = dir.join("journal").to_string_lossy().into_owned();
    let log = dir.join("log.txt").to_string_lossy().into_owned();
    let args = ["-H", "ledger", "--log", &log, "--journal", &journal];
    let mut model = BTreeMap::new();
    let mut s = Server::start_in(R2, &args, dir);
    send_ledger_round(&mut s, 1, &mut model);
    s.stop(SIGINT);
    assert_eq!(
        s.last_status(),
        "Applied 3000 transactions, discarded 0 lines, cut 0 partial lines"
    );
    assert_eq!(fs::read_to_string(&log).unwrap(), render_cents(&model));
    // Restart: the journal (written by both loops) replays into the new
    // run's balances; this run's counts are its own.
    let dir = TempDir::new("reactors-ledger-2");
    let mut s = Server::start_in(R2, &args, dir);
    s.wait_stderr("the replay diagnostic", |l| {
        l.contains("replayed 3000 transactions")
    });
    send_ledger_round(&mut s, 1, &mut model);
    s.stop(SIGINT);
    assert_eq!(
        s.last_status(),
        "Applied 3000 transactions, discarded 0 lines, cut 0 partial lines"
    );
    assert_eq!(fs::read_to_string(&log).unwrap(), render_cents(&model));
}

#[test]
fn reactors_zero_is_one_loop_per_core() {
    let mut s = Server::start(Kind::Reactor, &["-H", "echo", "--reactors", "0"]);
    let mut conns: Vec<Conn> = (1..=4).map(|id| s.connect_as(id)).collect();
    for (i, c) in conns.iter_mut().enumerate() {
        let msg = format!("hello {i}\n");
        c.send(msg.as_bytes());
        c.expect_line(msg.as_bytes());
    }
    s.stop(SIGTERM);
}

#[test]
fn threaded_server_refuses_reactors() {
    let (status, _, err) = run_to_end(Kind::Threaded, &["--reactors", "2", "0"]);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("--reactors"), "{err}");
    // --reactors 1 is the threaded server as it is.
    let mut s = Server::start(Kind::Threaded, &["--reactors", "1"]);
    s.stop(SIGINT);
}

/// Asks the atm with `request`, answers its challenge, returns the reply.
fn atm_ask(c: &mut Conn, request: &[u8], credentials: &[u8]) -> Vec<u8> {
    c.send(request);
    c.expect_line(b"\n");
    c.expect_line(b"\tPlease give the username and pin number.\n");
    c.expect_line(b"\n");
    c.send(credentials);
    c.line()
}

#[test]
fn atm_accounts_and_queue_are_one_state_for_clients_on_both_loops() {
    let dir = TempDir::new("reactors-atm");
    let accounts = dir.join("accounts.txt");
    fs::write(&accounts, "ada 1234 100\n").unwrap();
    let path = accounts.to_string_lossy().into_owned();
    let mut s = Server::start_in(R2, &["-H", "atm", "--accounts", &path], dir);
    let mut first = s.connect_as(1); // one loop
    let mut second = s.connect_as(2); // the other
    let reply = atm_ask(&mut first, b"d10\n", b"uada p1234\n");
    assert_eq!(
        show(&reply),
        show(b"Deposited 10 dollar(s). Balance is now 110 dollar(s).\n")
    );
    // Acknowledged means durable, whichever loop answered.
    // (The accounts file and its change log, read as a restart would.)
    let (on_disk, _, _) = nonblocking::store::accounts_log::read(&accounts).unwrap();
    assert_eq!(on_disk.balance("ada"), Some(110.into()), "{on_disk:?}");
    let reply = atm_ask(&mut second, b"b\n", b"uada p1234\n");
    assert_eq!(show(&reply), show(b"110 dollar(s) are in your balance.\n"));
    s.stop(SIGINT);

    let mut s = Server::start(R2, &["-H", "queue", "--queue-size", "2"]);
    let mut conns = [s.connect_as(1), s.connect_as(2)];
    for (who, cmd, want) in [
        (0, &b"put x\n"[..], &b"True\n"[..]),
        (1, b"put y\n", b"True\n"),
        (0, b"put z\n", b"False\n"),
        (1, b"size\n", b"2\n"),
        (1, b"pop\n", b"x\n"),
        (0, b"pop\n", b"y\n"),
        (1, b"pop\n", b"None\n"),
    ] {
        conns[who].send(cmd);
        conns[who].expect_line(want);
    }
    s.stop(SIGINT);
}
