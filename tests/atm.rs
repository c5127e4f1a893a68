//! atm (SPEC "atm", the `atm` client row): the client against a small UDP
//! responder driven by the real handler, the seed author's own
//! `udpclient.py` against the same responder, and the real servers over TCP
//! (start-up errors included) and over UDP (`--udp`: exact bytes, the seed's
//! client, durability under SIGKILL, lockout).

#[macro_use]
mod common;

use std::collections::HashMap;
use std::io::{self, BufRead};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::*;
use nonblocking::client::atm::{LinkError, SessionError, UdpLink, session};
use nonblocking::handlers::atm::{Accounts, Atm};
use nonblocking::handlers::{ClientId, Effect, Handler, Outbox};
use nonblocking::store::accounts_log;

const SEED_ACCOUNTS: &str = "charles 02323 0\n";
const CHALLENGE_SHOWN: &str = "\nFrom Server: \n\tPlease give the username and pin number.\n\n";

/// A UDP bank on 127.0.0.1: each datagram goes to a real [`Atm`] (one
/// client id per source address), each reply goes back as one datagram
/// without the `\n` of its TCP form, as SPEC "Datagrams" says the server
/// does. It ignores the first `drop_first` datagrams, or all when `silent`,
/// and keeps every datagram it got, in order, for [`Responder::settle`].
struct Responder {
    addr: SocketAddr,
    /// The datagrams got before each [`SENTINEL`], sent on at its arrival.
    settled: Receiver<Vec<Vec<u8>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Not a datagram any client sends: marks "everything before me is in".
const SENTINEL: &[u8] = b"\0settle\0";

impl Responder {
    fn start(accounts: &str, drop_first: usize, silent: bool) -> Responder {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        // Only how often the thread looks at `stop`; nothing waits on it.
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (settled_tx, settled) = mpsc::channel();
        let mut atm = Atm::new(Accounts::parse(accounts.as_bytes()).unwrap());
        let stop2 = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let mut out = Outbox::new();
            let mut ids: HashMap<SocketAddr, ClientId> = HashMap::new();
            let mut seen: Vec<Vec<u8>> = Vec::new();
            let mut buf = vec![0u8; 65536];
            while !stop2.load(Ordering::SeqCst) {
                let Ok((n, peer)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                if &buf[..n] == SENTINEL {
                    let _ = settled_tx.send(seen.clone());
                    continue;
                }
                seen.push(buf[..n].to_vec());
                if silent || seen.len() <= drop_first {
                    continue;
                }
                let next = ClientId(ids.len() as u64 + 1);
                let id = *ids.entry(peer).or_insert(next);
                out.set_now(Instant::now());
                atm.on_message(id, &buf[..n], &mut out);
                for effect in out.take() {
                    if let Effect::Send(_, bytes) = effect {
                        let datagram = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
                        socket.send_to(datagram, peer).unwrap();
                    }
                }
            }
        });
        Responder {
            addr,
            settled,
            stop,
            thread: Some(thread),
        }
    }

    /// Every datagram the bank has got, once every datagram already sent
    /// to it is in: a later datagram proves it, not a pause. On loopback a
    /// datagram is in the receiver's queue when `send` returns, and one
    /// socket's queue is read in order, so the sentinel, sent after the
    /// client's last send returned (or after the client exited), comes
    /// after all of them.
    fn settle(&self) -> Vec<Vec<u8>> {
        let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
        probe.send_to(SENTINEL, self.addr).unwrap();
        self.settled
            .recv_timeout(TIMEOUT)
            .expect("the bank never got the sentinel")
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The menu exactly as udpclient.py prints it.
const MENU: &str = "\n\n\t(1) Check Balance\n\n\t(2) Withdraw\n\n\t(3) Deposit\n\n\n\tInput command by sending a number...\n";

/// Runs [`session`] over `link` with `input`; the output and the result.
/// PINs go through the `read_pin` hook, which records them.
fn run_session(input: &str, link: &mut UdpLink) -> (String, Result<(), SessionError>, Vec<String>) {
    let mut reader = io::Cursor::new(input.as_bytes().to_vec());
    let mut out = Vec::new();
    let mut pins = Vec::new();
    let mut read_pin = |r: &mut dyn BufRead| -> io::Result<Option<String>> {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        pins.push(line.trim().to_string());
        Ok(Some(line.trim().to_string()))
    };
    let result = session(&mut reader, &mut out, link, &mut read_pin);
    (String::from_utf8(out).unwrap(), result, pins)
}

/// The output of one menu round that meets the challenge.
fn round(prompt: Option<&str>, reply: &str) -> String {
    let mut s = MENU.to_string();
    if let Some(p) = prompt {
        s += &format!("\n\tHow much do you want to {p}?\n");
    }
    s += CHALLENGE_SHOWN;
    s += "\n\tPlease give the username.\n\n\tPlease give the pin number.\n";
    s += &format!("\nFrom Server: {reply}\n");
    s
}

#[test]
fn client_session_follows_the_seed_flow_over_udp() {
    let bank = Responder::start(SEED_ACCOUNTS, 0, false);
    let mut link = UdpLink::connect(bank.addr, TIMEOUT, 3).unwrap();
    let input = "1\ncharles\n02323\n2\n23\ncharles\n02323\n3\n23.5\ncharles\n02323\n9\n";
    let (out, result, pins) = run_session(input, &mut link);
    result.unwrap();
    let expected = round(None, "0 dollar(s) are in your balance.")
        + &round(
            Some("withdraw"),
            "Withdrew 23 dollar(s). Balance is now -23 dollar(s).",
        )
        + &round(
            Some("deposit"),
            "Deposited 23.50 dollar(s). Balance is now 0.50 dollar(s).",
        )
        + MENU
        + "\nIllegal Command.\n"
        + MENU;
    assert_eq!(out, expected);
    assert_eq!(
        pins, ["02323"; 3],
        "every PIN is read through the hidden reader"
    );
    // b, creds, w23, creds, d23.5, creds: the illegal choice sends nothing.
    assert_eq!(bank.settle().len(), 6, "one datagram per request, no retry");
}

#[test]
fn wrong_pin_is_reported_and_the_menu_goes_on() {
    let bank = Responder::start(SEED_ACCOUNTS, 0, false);
    let mut link = UdpLink::connect(bank.addr, TIMEOUT, 3).unwrap();
    let (out, result, _) = run_session("2\n5\ncharles\n1111\n", &mut link);
    result.unwrap();
    let expected = round(
        Some("withdraw"),
        "Invalid credentials. Please try the withdraw command again.",
    ) + MENU;
    assert_eq!(out, expected);
}

#[test]
fn a_lost_datagram_is_asked_again() {
    // The first datagram (`b`) is dropped; the client sends it again.
    let bank = Responder::start(SEED_ACCOUNTS, 1, false);
    let mut link = UdpLink::connect(bank.addr, Duration::from_millis(300), 3).unwrap();
    let (out, result, _) = run_session("1\ncharles\n02323\n", &mut link);
    result.unwrap();
    assert_eq!(out, round(None, "0 dollar(s) are in your balance.") + MENU);
    // The dropped `b` is sent again after the 300 ms timeout; a slow
    // machine may make more tries of it, never of the credentials once
    // answered. So: two `b`s or more, then the credentials, last.
    let got = bank.settle();
    let (creds, tries) = got.split_last().expect("datagrams");
    assert_eq!(creds, b"ucharles p02323", "{got:?}");
    assert!(
        tries.len() >= 2 && tries.iter().all(|d| d == b"b"),
        "b (dropped), b again, the credentials: {got:?}"
    );
}

#[test]
fn no_reply_after_the_last_try_is_an_error() {
    let bank = Responder::start(SEED_ACCOUNTS, 0, true);
    let mut link = UdpLink::connect(bank.addr, Duration::from_millis(100), 3).unwrap();
    let (out, result, _) = run_session("1\ncharles\n02323\n", &mut link);
    match result {
        Err(SessionError::Link(LinkError::NoReply { tries: 4, .. })) => {}
        other => panic!("expected NoReply after 4 tries, got {other:?}"),
    }
    assert_eq!(out, MENU, "nothing printed for a reply that never came");
    assert_eq!(
        bank.settle(),
        vec![b"b".to_vec(); 4],
        "one send and three retries"
    );
}

fn client_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nonblocking-client"))
}

#[test]
fn the_client_binary_over_udp() {
    let bank = Responder::start(SEED_ACCOUNTS, 0, false);
    let mut cmd = client_bin();
    cmd.args(["atm", &bank.addr.to_string()]);
    let output = run_with_input(cmd, "3\n23\ncharles\n02323\n1\ncharles\n02323\n".as_bytes());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(output.stderr.is_empty(), "{output:?}");
    assert!(stdout.contains(CHALLENGE_SHOWN), "{stdout}");
    assert!(
        stdout.contains("\nFrom Server: Deposited 23 dollar(s). Balance is now 23 dollar(s).\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\nFrom Server: 23 dollar(s) are in your balance.\n"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("02323"),
        "the PIN is never printed: {stdout}"
    );
}

#[test]
fn the_client_binary_gives_up_with_one_line_and_exit_1() {
    // 4 tries of 2 s each: this test takes about 8 s.
    let bank = Responder::start(SEED_ACCOUNTS, 0, true);
    let mut cmd = client_bin();
    cmd.args(["atm", &bank.addr.to_string()]);
    let output = run_with_input(cmd, "1\n".as_bytes());
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains(&bank.addr.to_string()), "{stderr}");
    assert!(stderr.contains("no reply after 4 tries"), "{stderr}");
    assert_eq!(
        bank.settle(),
        vec![b"b".to_vec(); 4],
        "one send and three retries"
    );
}

#[test]
fn the_seed_udpclient_py_against_the_handler() {
    let bank = Responder::start(SEED_ACCOUNTS, 0, false);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/seeds/udpclient.py");
    let mut cmd = Command::new("python3");
    cmd.args(["-u", script, &bank.addr.port().to_string()]);
    // The seed's flow: b, w23, d23, each answering the challenge. The
    // script loops forever; the end of its input ends it with EOFError.
    let input = "1\ncharles\n02323\n2\n23\ncharles\n02323\n3\n23\ncharles\n02323\n";
    let output = run_with_input(cmd, input.as_bytes());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("EOFError"), "ended by its input: {stderr}");
    // The script's `==` on the challenge held: it asked for the username
    // after each of the three requests.
    assert_eq!(
        stdout.matches("Please give the username.\n").count(),
        3,
        "{stdout}"
    );
    for line in [
        "From Server:  0 dollar(s) are in your balance.\n",
        "From Server:  Withdrew 23 dollar(s). Balance is now -23 dollar(s).\n",
        "From Server:  Deposited 23 dollar(s). Balance is now 0 dollar(s).\n",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in {stdout}");
    }
}

// ---------------------------------------------------------------------------
// The real servers over TCP.

every_server!(
    tcp_replies_end_in_a_newline,
    client_binary_over_tcp,
    bad_accounts_file_stops_the_server,
    two_pipelined_deposits_leave_one_line_per_account,
    a_temporary_file_left_by_a_crash_is_removed_at_start,
    a_balance_near_the_limit_survives_sigkill_and_a_restart,
    acknowledged_deposits_survive_sigkill_at_random_exactly_once,
    a_torn_change_log_tail_is_ignored_at_start,
    the_change_log_is_folded_into_the_accounts_file,
    a_clean_exit_folds_the_change_log_into_the_accounts_file,
    a_fold_that_fails_at_exit_is_exit_1_and_keeps_the_log,
);

fn start_atm(kind: Kind, accounts: &str) -> Server {
    let dir = TempDir::new(kind.name());
    let path = dir.join("accounts.txt");
    std::fs::write(&path, accounts).unwrap();
    let path = path.to_str().unwrap().to_string();
    Server::start_in(kind, &["-H", "atm", "--accounts", &path], dir)
}

fn tcp_replies_end_in_a_newline(kind: Kind) {
    let mut s = start_atm(kind, "charles 02323 0\nada 1234 -5.25\n");
    assert_eq!(s.handler, "atm");
    let mut c = s.connect_as(1);
    c.send(b"b\n");
    c.expect_line(b"\n");
    c.expect_line(b"\tPlease give the username and pin number.\n");
    c.expect_line(b"\n");
    c.send(b"uada p1234\r\n");
    c.expect_line(b"-5.25 dollar(s) are in your balance.\n");
    c.send(b"w23\n");
    for _ in 0..3 {
        c.line();
    }
    c.send(b"ucharles p02323\n");
    c.expect_line(b"Withdrew 23 dollar(s). Balance is now -23 dollar(s).\n");
    c.send(b"d1\n");
    for _ in 0..3 {
        c.line();
    }
    c.send(b"ucharles p0000\n");
    c.expect_line(b"Invalid credentials. Please try the deposit command again.\n");
    c.send(b"hello\n");
    c.expect_line(b"Improper format, please send command again.\n");
    // The seed's client sends no newline: the 50 ms rule frames it.
    c.send(b"b");
    c.expect_line(b"\n");
}

fn client_binary_over_tcp(kind: Kind) {
    let s = start_atm(kind, SEED_ACCOUNTS);
    let mut cmd = client_bin();
    cmd.args(["atm", &s.addr.to_string(), "--tcp"]);
    let output = run_with_input(cmd, "2\n7\ncharles\n02323\n1\ncharles\n02323\n".as_bytes());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout.matches(CHALLENGE_SHOWN).count(), 2, "{stdout}");
    assert!(
        stdout.contains("\nFrom Server: Withdrew 7 dollar(s). Balance is now -7 dollar(s).\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\nFrom Server: -7 dollar(s) are in your balance.\n"),
        "{stdout}"
    );
}

/// Issue 19 item 1: two changes persisted in one loop pass (one TCP write
/// holding two deposits with their credentials) must leave the accounts
/// file with one line per account, so the bank starts again.
fn two_pipelined_deposits_leave_one_line_per_account(kind: Kind) {
    let mut s = start_atm(kind, SEED_ACCOUNTS);
    let path = s.dir.join("accounts.txt");
    let mut c = s.connect_as(1);
    c.send(b"d1\nucharles p02323\nd2\nucharles p02323\n");
    for n in [1, 2] {
        for line in [
            &b"\n"[..],
            b"\tPlease give the username and pin number.\n",
            b"\n",
        ] {
            c.expect_line(line);
        }
        let total = if n == 1 { 1 } else { 3 };
        c.expect_line(
            format!("Deposited {n} dollar(s). Balance is now {total} dollar(s).\n").as_bytes(),
        );
    }
    assert_eq!(balance_on_disk(&path, "charles"), "3");
    s.stop(libc::SIGINT);
    let mut again = Server::start(kind, &["-H", "atm", "--accounts", path.to_str().unwrap()]);
    // The clean exit folded the change log into the accounts file.
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "charles 02323 3\n");
    assert!(!accounts_log::log_path(&path).exists());
    let mut c = again.connect_as(1);
    assert_eq!(
        charles_asks(&mut c, "b"),
        "3 dollar(s) are in your balance.\n"
    );
    again.stop(libc::SIGINT);
}

/// SPEC atm: "a temporary file a crash left behind is removed at the next
/// start" (a SIGKILL between creating it and the rename).
fn a_temporary_file_left_by_a_crash_is_removed_at_start(kind: Kind) {
    let dir = TempDir::new(kind.name());
    let path = dir.join("accounts.txt");
    std::fs::write(&path, SEED_ACCOUNTS).unwrap();
    let stale = dir.join(".accounts.txt.tmp.0123456789abcdef");
    std::fs::write(&stale, "charles 02323 99\n").unwrap();
    let unrelated = dir.join(".accounts.txt.tmp.notours");
    std::fs::write(&unrelated, "keep").unwrap();
    let mut s = Server::start(kind, &["-H", "atm", "--accounts", path.to_str().unwrap()]);
    assert!(!stale.exists(), "the crash's temporary file is gone");
    assert!(unrelated.exists(), "a name we never make is left alone");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), SEED_ACCOUNTS);
    s.stop(libc::SIGINT);
}

/// `request` (`b`, `d1`, ...) and charles's credentials over `c`; the
/// reply after the three challenge lines.
fn charles_asks(c: &mut Conn, request: &str) -> String {
    c.send(format!("{request}\nucharles p02323\n").as_bytes());
    for _ in 0..3 {
        c.line();
    }
    c.line_string()
}

/// Found by fuzzing: a BALANCE of 27 integer digits and one decimal loads,
/// but written back with two decimals it had 29 digits, so after any change
/// the bank could not start again. Now the file keeps what it can read, and
/// a change the file could not hold is refused.
fn a_balance_near_the_limit_survives_sigkill_and_a_restart(kind: Kind) {
    let big = "23000232022220218680645401";
    let mut s = start_atm(kind, &format!("charles 02323 {big}2.5\n"));
    let path = s.dir.join("accounts.txt");
    let mut c = s.connect_as(1);
    assert_eq!(
        charles_asks(&mut c, "d1"),
        format!("Deposited 1 dollar(s). Balance is now {big}3.50 dollar(s).\n")
    );
    // One cent more would need 29 digits: refused, the balance unchanged.
    assert_eq!(
        charles_asks(&mut c, "d0.01"),
        "Improper format, please send command again.\n"
    );
    s.signal(libc::SIGKILL);
    s.wait_exit();
    let mut again = Server::start(kind, &["-H", "atm", "--accounts", path.to_str().unwrap()]);
    let mut c = again.connect_as(1);
    assert_eq!(
        charles_asks(&mut c, "b"),
        format!("{big}3.50 dollar(s) are in your balance.\n")
    );
    again.stop(libc::SIGINT);
}

/// NAME's balance as a restart would find it: the accounts file, then its
/// change log replayed (issue 19 item 11).
fn balance_on_disk(path: &std::path::Path, name: &str) -> String {
    let (accounts, _, _) = accounts_log::read(path).expect("the bank's files load");
    nonblocking::handlers::atm::money(accounts.balance(name).expect("the account"))
}

/// A small xorshift generator: the kill moments, reproducible from the
/// seed printed on failure.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Issue 19 item 11: with a change log beside the accounts file, SIGKILL at
/// any moment still loses no acknowledged deposit and applies none twice.
/// Each cycle pipelines deposits of 1, 2, 3, ... dollars, kills the server
/// after a random number of `Deposited` replies, reads every reply that
/// still arrives, and restarts: the balance must then be the sum of the
/// first m deposits, for an m no smaller than the acknowledged count (the
/// deposits are applied in order, and these sums tell any m apart).
fn acknowledged_deposits_survive_sigkill_at_random_exactly_once(kind: Kind) {
    const CYCLES: u64 = 10;
    const DEPOSITS: u64 = 120;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut rng = Rng(seed);
    let dir = TempDir::new(kind.name());
    let path = dir.join("accounts.txt");
    // A few other accounts, so the snapshot is more than one line.
    std::fs::write(
        &path,
        "ada 1111 5
charles 02323 0
zed 9999 -1
",
    )
    .unwrap();
    let mut before: u64 = 0;
    for cycle in 0..CYCLES {
        let s = Server::start(kind, &["-H", "atm", "--accounts", path.to_str().unwrap()]);
        let mut c = s.connect();
        let requests: String = (1..=DEPOSITS)
            .map(|n| format!("d{n}\nucharles p02323\n"))
            .collect();
        c.send(requests.as_bytes());
        let kill_after = 1 + rng.below(DEPOSITS - 1);
        let mut acked = 0;
        let mut killed = false;
        let mut line = Vec::new();
        loop {
            line.clear();
            match c.reader.read_until(b'\n', &mut line) {
                Ok(_) if line.ends_with(b"\n") => {}
                // EOF, a reset, or a reply cut by the kill.
                _ if killed => break,
                other => panic!("cycle {cycle} (seed {seed}): {other:?} {line:?}"),
            }
            if line.starts_with(b"Deposited ") {
                acked += 1;
                let total = before + acked * (acked + 1) / 2;
                assert!(line.ends_with(format!("Balance is now {total} dollar(s).\n").as_bytes()));
                if acked == kill_after {
                    s.signal(libc::SIGKILL);
                    killed = true;
                }
                if acked == DEPOSITS {
                    s.signal(libc::SIGKILL);
                    break;
                }
            }
        }
        drop(s);
        let mut again = Server::start(kind, &["-H", "atm", "--accounts", path.to_str().unwrap()]);
        let mut c = again.connect();
        let shown = charles_asks(&mut c, "b");
        let now: u64 = shown
            .split(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{shown:?}"));
        let applied = (0..=DEPOSITS).find(|m| before + m * (m + 1) / 2 == now);
        assert!(
            matches!(applied, Some(m) if m >= acked),
            "cycle {cycle} (seed {seed}): {acked} acknowledged, balance {now} from {before}"
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap().lines().count(),
            3,
            "one line per account"
        );
        before = now;
        again.stop(libc::SIGINT);
    }
}

/// A change record torn by a crash (no `\n`) was never synced, so never
/// acknowledged: the start ignores it with a diagnostic, keeps the whole
/// records before it, and folds them into the accounts file.
fn a_torn_change_log_tail_is_ignored_at_start(kind: Kind) {
    let dir = TempDir::new(kind.name());
    let path = dir.join("accounts.txt");
    std::fs::write(
        &path,
        "charles 02323 0
ada 1234 1
",
    )
    .unwrap();
    std::fs::write(
        accounts_log::log_path(&path),
        "charles 5
ada 7
charles 1",
    )
    .unwrap();
    let mut s = Server::start_in(
        kind,
        &["-H", "atm", "--accounts", path.to_str().unwrap()],
        dir,
    );
    s.wait_stderr("the torn record's diagnostic", |l| {
        l.contains("torn last record") && l.contains("accounts.txt.log")
    });
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "charles 02323 5\nada 1234 7\n"
    );
    assert!(!accounts_log::log_path(&path).exists());
    let mut c = s.connect_as(1);
    assert_eq!(
        charles_asks(&mut c, "b"),
        "5 dollar(s) are in your balance.\n"
    );
    s.stop(libc::SIGINT);
}

/// The change log never grows past the accounts file's size: past it, the
/// log is folded into the accounts file (rewritten atomically) and removed.
fn the_change_log_is_folded_into_the_accounts_file(kind: Kind) {
    let mut s = start_atm(kind, "charles 02323 0\nada 1234 100\n");
    let path = s.dir.join("accounts.txt");
    let log = accounts_log::log_path(&path);
    let mut c = s.connect_as(1);
    let mut total = 0;
    for n in 1..=20 {
        total += n;
        assert_eq!(
            charles_asks(&mut c, &format!("d{n}")),
            format!("Deposited {n} dollar(s). Balance is now {total} dollar(s).\n")
        );
        let snapshot = std::fs::read_to_string(&path).unwrap();
        let log_len = std::fs::metadata(&log).map_or(0, |m| m.len());
        assert!(
            log_len <= snapshot.len() as u64,
            "after d{n}: a log of {log_len} bytes beside a {}-byte file",
            snapshot.len()
        );
        assert_eq!(snapshot.lines().count(), 2, "{snapshot:?}");
        assert_eq!(balance_on_disk(&path, "charles"), total.to_string());
    }
    // 31 bytes of accounts, records of 10 to 12 bytes: folded several
    // times; the accounts file shows a recent balance.
    let snapshot = accounts_log::read(&path).unwrap().0;
    assert_eq!(
        snapshot
            .balance("ada")
            .map(nonblocking::handlers::atm::money),
        Some("100".into())
    );
    let folded = std::fs::read_to_string(&path).unwrap();
    assert_ne!(folded, "charles 02323 0\nada 1234 100\n", "never folded");
    s.stop(libc::SIGINT);
}

/// After Ctrl+C the accounts file alone is the truth: a user who reads it
/// sees every acknowledged balance, and no change log is left beside it.
fn a_clean_exit_folds_the_change_log_into_the_accounts_file(kind: Kind) {
    let mut s = start_atm(kind, "charles 02323 0\nada 1234 100\n");
    let path = s.dir.join("accounts.txt");
    let mut c = s.connect_as(1);
    assert_eq!(
        charles_asks(&mut c, "d5"),
        "Deposited 5 dollar(s). Balance is now 5 dollar(s).\n"
    );
    // The deposit is in the log, not yet in the file (the precondition
    // for the exit to have something to fold).
    assert!(accounts_log::log_path(&path).exists());
    s.stop(libc::SIGINT);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "charles 02323 5\nada 1234 100\n"
    );
    assert!(!accounts_log::log_path(&path).exists());
}

/// A fold that cannot be done at exit loses nothing: one diagnostic, exit
/// 1, and the log stays for the next start to replay.
fn a_fold_that_fails_at_exit_is_exit_1_and_keeps_the_log(kind: Kind) {
    let mut s = start_atm(kind, "charles 02323 0\n");
    let path = s.dir.join("accounts.txt");
    let log = accounts_log::log_path(&path);
    let mut c = s.connect_as(1);
    assert_eq!(
        charles_asks(&mut c, "d5"),
        "Deposited 5 dollar(s). Balance is now 5 dollar(s).\n"
    );
    // A directory where the accounts file was: it can be neither read nor
    // renamed over, so the fold fails (even for root).
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    s.signal(libc::SIGINT);
    let status = s.wait_exit();
    assert_eq!(status.code(), Some(1), "{}", s.transcript());
    let errors: Vec<_> = s
        .stderr_lines()
        .iter()
        .filter(|l| l.contains("error"))
        .collect();
    assert_eq!(errors.len(), 1, "{}", s.transcript());
    assert!(errors[0].contains("accounts.txt"), "{}", s.transcript());
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "charles 5\n");
}

/// The server with `args` (port 0 appended) in a fresh directory; its output.
fn server_exit(kind: Kind, args: &[&str], accounts: Option<&str>) -> (Output, TempDir) {
    let dir = TempDir::new(kind.name());
    if let Some(text) = accounts {
        std::fs::write(dir.join("accounts.txt"), text).unwrap();
    }
    let mut cmd = kind.command(&dir.path);
    cmd.args(args).arg("0");
    (run_with_input(cmd, "".as_bytes()), dir)
}

fn bad_accounts_file_stops_the_server(kind: Kind) {
    let (out, _dir) = server_exit(kind, &["-H", "atm"], None);
    assert_eq!(out.status.code(), Some(2), "no --accounts: {out:?}");

    let (out, _dir) = server_exit(kind, &["-H", "atm", "--accounts", "missing.txt"], None);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("missing.txt"), "{stderr}");

    let bad = "charles 02323 0\nada 98765 12.345\n";
    let (out, _dir) = server_exit(
        kind,
        &["-H", "atm", "--accounts", "accounts.txt"],
        Some(bad),
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("accounts.txt") && stderr.contains("line 2"),
        "{stderr}"
    );
    assert!(!stderr.contains("98765"), "no PIN in diagnostics: {stderr}");
}

// ---------------------------------------------------------------------------
// The real servers over UDP (`--udp`, SPEC "Datagrams").

every_server!(
    udp_replies_are_the_seeds_bytes,
    the_seed_udpclient_py_against_the_server,
    the_client_binary_against_the_server_over_udp,
    an_acknowledged_deposit_survives_sigkill_exactly_once,
    lockout_is_per_name_and_address_over_udp_and_tcp,
);

/// The atm with `--udp` on `path` (which outlives the server).
fn start_atm_udp(kind: Kind, path: &std::path::Path) -> Server {
    let path = path.to_str().unwrap();
    Server::start(kind, &["-H", "atm", "--udp", "--accounts", path])
}

/// A UDP client of the real server.
struct Teller {
    socket: UdpSocket,
}

impl Teller {
    fn new(server: SocketAddr) -> Teller {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.connect(server).unwrap();
        socket.set_read_timeout(Some(TIMEOUT)).unwrap();
        Teller { socket }
    }

    /// Sends `datagram`, expects exactly `reply` back.
    fn ask(&self, datagram: &str, reply: &str) {
        self.socket.send(datagram.as_bytes()).unwrap();
        let mut buf = [0u8; 2048];
        let n = self
            .socket
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no reply to {datagram:?}: {e}"));
        assert_eq!(
            show(&buf[..n]),
            show(reply.as_bytes()),
            "reply to {datagram:?}"
        );
    }
}

const CHALLENGE_DATAGRAM: &str = "\n\tPlease give the username and pin number.\n";

fn udp_replies_are_the_seeds_bytes(kind: Kind) {
    let dir = TempDir::new("atm-udp");
    let path = dir.join("accounts.txt");
    std::fs::write(&path, "charles 02323 0\nada 1234 -5.25\n").unwrap();
    let mut s = start_atm_udp(kind, &path);
    assert_eq!(s.handler, "atm, tcp and udp");
    let t = Teller::new(s.addr);
    t.ask("b", CHALLENGE_DATAGRAM);
    s.wait_status_eq("Client 1 connected. Number of connected clients = 1");
    t.ask("uada p1234", "-5.25 dollar(s) are in your balance.");
    t.ask("w23\r\n", CHALLENGE_DATAGRAM);
    t.ask(
        "ucharles p02323\n",
        "Withdrew 23 dollar(s). Balance is now -23 dollar(s).",
    );
    t.ask("d1.5", CHALLENGE_DATAGRAM);
    t.ask(
        "ucharles p0000",
        "Invalid credentials. Please try the deposit command again.",
    );
    t.ask(
        "ucharles p02323",
        "Improper format, please send command again.",
    );
    t.ask("hello", "Improper format, please send command again.");
    // Over TCP the same server ends each reply with `\n`.
    let mut c = s.connect_as(2);
    c.send(b"b\n");
    c.expect_line(b"\n");
    c.expect_line(b"\tPlease give the username and pin number.\n");
    c.expect_line(b"\n");
    c.send(b"ucharles p02323\n");
    c.expect_line(b"-23 dollar(s) are in your balance.\n");
    s.stop(SIGINT);
    assert_eq!(balance_on_disk(&path, "charles"), "-23");
    assert_eq!(balance_on_disk(&path, "ada"), "-5.25");
}

fn the_seed_udpclient_py_against_the_server(kind: Kind) {
    let dir = TempDir::new("atm-udp");
    let path = dir.join("accounts.txt");
    std::fs::write(&path, SEED_ACCOUNTS).unwrap();
    let mut s = start_atm_udp(kind, &path);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/seeds/udpclient.py");
    let mut cmd = Command::new("python3");
    cmd.args(["-u", script, &s.port().to_string()]);
    let input = "1\ncharles\n02323\n2\n23\ncharles\n02323\n3\n23\ncharles\n02323\n";
    let output = run_with_input(cmd, input.as_bytes());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("EOFError"), "ended by its input: {stderr}");
    assert_eq!(
        stdout.matches("Please give the username.\n").count(),
        3,
        "the script's `==` on the challenge held each time: {stdout}"
    );
    for line in [
        "From Server:  0 dollar(s) are in your balance.\n",
        "From Server:  Withdrew 23 dollar(s). Balance is now -23 dollar(s).\n",
        "From Server:  Deposited 23 dollar(s). Balance is now 0 dollar(s).\n",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in {stdout}");
    }
    s.wait_status_eq("Client 1 connected. Number of connected clients = 1");
    s.stop(SIGINT);
}

fn the_client_binary_against_the_server_over_udp(kind: Kind) {
    let dir = TempDir::new("atm-udp");
    let path = dir.join("accounts.txt");
    std::fs::write(&path, SEED_ACCOUNTS).unwrap();
    let mut s = start_atm_udp(kind, &path);
    let mut cmd = client_bin();
    cmd.args(["atm", &s.addr.to_string()]);
    let output = run_with_input(cmd, "3\n23\ncharles\n02323\n1\ncharles\n02323\n".as_bytes());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(stdout.contains(CHALLENGE_SHOWN), "{stdout}");
    assert!(
        stdout.contains("\nFrom Server: Deposited 23 dollar(s). Balance is now 23 dollar(s).\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\nFrom Server: 23 dollar(s) are in your balance.\n"),
        "{stdout}"
    );
    s.stop(SIGINT);
}

/// SPEC: a reply that reports a change goes out only once the change is
/// durable. SIGKILL right after the last `Deposited` datagram arrives; the
/// restarted server shows every acknowledged deposit, each exactly once.
fn an_acknowledged_deposit_survives_sigkill_exactly_once(kind: Kind) {
    let dir = TempDir::new("atm-udp");
    let path = dir.join("accounts.txt");
    std::fs::write(&path, SEED_ACCOUNTS).unwrap();
    let mut s = start_atm_udp(kind, &path);
    let t = Teller::new(s.addr);
    for n in 1..=5 {
        t.ask(&format!("d{n}"), CHALLENGE_DATAGRAM);
        let total: u32 = (1..=n).sum();
        t.ask(
            "ucharles p02323",
            &format!("Deposited {n} dollar(s). Balance is now {total} dollar(s)."),
        );
        // Durable before the reply left: the files show it already.
        assert_eq!(balance_on_disk(&path, "charles"), total.to_string());
    }
    s.signal(libc::SIGKILL);
    s.wait_exit();
    assert_eq!(balance_on_disk(&path, "charles"), "15");
    let s = start_atm_udp(kind, &path);
    let t = Teller::new(s.addr);
    t.ask("b", CHALLENGE_DATAGRAM);
    t.ask("ucharles p02323", "15 dollar(s) are in your balance.");
}

/// A TCP client of the real server from `source` (any 127.0.0.0/8
/// address is the loopback's own), its id awaited.
fn connect_from(s: &mut Server, source: [u8; 4], id: u64) -> Conn {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from((source, 0)).into()).unwrap();
    socket.connect(&s.addr.into()).unwrap();
    let conn = Conn::from_stream(socket.into());
    s.wait_connected(id);
    conn
}

/// Over TCP: `b`, its challenge, then `creds`; the reply line.
fn tcp_try(c: &mut Conn, creds: &str) -> String {
    c.send(b"b\n");
    c.expect_line(b"\n");
    c.expect_line(b"\tPlease give the username and pin number.\n");
    c.expect_line(b"\n");
    c.send(format!("{creds}\n").as_bytes());
    let line = c.line_string();
    line.strip_suffix('\n').unwrap_or(&line).to_string()
}

const INVALID_BALANCE: &str = "Invalid credentials. Please try the balance command again.";
const LOCKED: &str = "Account locked. Try again later.";

/// SPEC "atm": lockout per NAME and source address, over both transports.
fn lockout_is_per_name_and_address_over_udp_and_tcp(kind: Kind) {
    let dir = TempDir::new("atm-lockout");
    let path = dir.join("accounts.txt");
    std::fs::write(&path, "ada 98765 5\n").unwrap();
    let mut s = start_atm_udp(kind, &path);
    let addr = s.addr;
    let teller = |source: [u8; 4]| {
        let socket = UdpSocket::bind(SocketAddr::from((source, 0))).unwrap();
        socket.connect(addr).unwrap();
        socket.set_read_timeout(Some(TIMEOUT)).unwrap();
        Teller { socket }
    };
    // An attacker at 127.0.0.1 over UDP: five wrong PINs for ada.
    let attacker = teller([127, 0, 0, 1]);
    for _ in 0..5 {
        attacker.ask("b", CHALLENGE_DATAGRAM);
        attacker.ask("uada p11111", INVALID_BALANCE);
    }
    s.wait_stderr("the lockout diagnostic", |l| {
        l.contains("account ada locked for 127.0.0.1")
    });
    // Locked for that address: even the right PIN, over either transport.
    attacker.ask("b", CHALLENGE_DATAGRAM);
    attacker.ask("uada p98765", LOCKED);
    let mut attacker_tcp = connect_from(&mut s, [127, 0, 0, 1], 2);
    assert_eq!(tcp_try(&mut attacker_tcp, "uada p98765"), LOCKED);
    // The owner at another address is not affected, over either transport.
    let owner = teller([127, 0, 0, 2]);
    owner.ask("b", CHALLENGE_DATAGRAM);
    owner.ask("uada p98765", "5 dollar(s) are in your balance.");
    let mut owner_tcp = connect_from(&mut s, [127, 0, 0, 2], 4);
    assert_eq!(
        tcp_try(&mut owner_tcp, "uada p98765"),
        "5 dollar(s) are in your balance."
    );
    // An unknown NAME gets exactly the same replies.
    let prober = teller([127, 0, 0, 3]);
    for _ in 0..5 {
        prober.ask("b", CHALLENGE_DATAGRAM);
        prober.ask("unobody p11111", INVALID_BALANCE);
    }
    prober.ask("b", CHALLENGE_DATAGRAM);
    prober.ask("unobody p98765", LOCKED);
    s.wait_stderr("the unknown NAME's diagnostic", |l| {
        l.contains("unknown NAME nobody locked for 127.0.0.3")
    });
    // One address, many NAMEs over TCP: the 20th wrong credential in a
    // minute still gets Invalid credentials, then every NAME is locked.
    let mut sprayer = connect_from(&mut s, [127, 0, 0, 4], 6);
    for i in 0..20 {
        assert_eq!(
            tcp_try(&mut sprayer, &format!("uname{i} p1234")),
            INVALID_BALANCE
        );
    }
    assert_eq!(tcp_try(&mut sprayer, "uada p98765"), LOCKED);
    s.wait_stderr("the address lock diagnostic", |l| {
        l.contains("every NAME locked for 127.0.0.4")
    });
    assert_eq!(
        tcp_try(&mut owner_tcp, "uada p98765"),
        "5 dollar(s) are in your balance."
    );
    s.stop(SIGINT);
    assert!(
        !s.stderr_lines().iter().any(|l| l.contains("98765"))
            && !s.status_lines().iter().any(|l| l.contains("98765")),
        "no PIN in any line\n{}",
        s.transcript()
    );
}
