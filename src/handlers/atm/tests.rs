//! The atm handler against SPEC "atm", byte for byte, with injected time.

use std::time::{Duration, Instant};

use super::*;
use crate::handlers::Effect;

const A: ClientId = ClientId(1);
const B: ClientId = ClientId(2);
/// The reply to anything the atm cannot read as a request.
const IMPROPER_REPLY: &str = "Improper format, please send command again.\n";
const CHALLENGE_TCP: &[u8] = b"\n\tPlease give the username and pin number.\n\n";

/// An atm and a clock the test moves.
struct Bank {
    atm: Atm,
    out: Outbox,
    start: Instant,
}

impl Bank {
    fn new(file: &str) -> Bank {
        Bank {
            atm: Atm::new(Accounts::parse(file.as_bytes()).unwrap()),
            out: Outbox::new(),
            start: Instant::now(),
        }
    }

    /// The seed's single account.
    fn seed() -> Bank {
        Bank::new("charles 02323 0\n")
    }

    /// `msg` from `id` at `secs` seconds after the start.
    fn at(&mut self, secs: f64, id: ClientId, msg: &str) -> Vec<Effect> {
        self.out.set_now(self.start + Duration::from_secs_f64(secs));
        self.atm.on_message(id, msg.as_bytes(), &mut self.out);
        self.out.take()
    }

    /// The one reply `msg` gets (persists and diagnostics aside: the tests
    /// about those look at [`Bank::at`]).
    fn reply(&mut self, secs: f64, id: ClientId, msg: &str) -> String {
        let effects = self.at(secs, id, msg);
        let sends: Vec<_> = effects
            .iter()
            .filter(|e| !matches!(e, Effect::Persist(_) | Effect::Diagnostic(_)))
            .collect();
        match &sends[..] {
            [Effect::Send(to, bytes)] if *to == id => String::from_utf8(bytes.clone()).unwrap(),
            _ => panic!("{msg:?}: expected one reply, got {effects:?}"),
        }
    }

    fn balance(&self, name: &str) -> String {
        money(self.atm.accounts().balance(name).unwrap())
    }
}

fn send(id: ClientId, text: &str) -> Effect {
    Effect::Send(id, text.as_bytes().to_vec())
}

#[test]
fn the_seed_udpclient_flow() {
    let mut bank = Bank::seed();
    // What udpclient.py sends for (1), (2) 23, (3) 23: no newline at all.
    assert_eq!(
        bank.at(0.0, A, "b"),
        vec![Effect::Send(A, CHALLENGE_TCP.to_vec())]
    );
    assert_eq!(
        bank.reply(1.0, A, "ucharles p02323"),
        "0 dollar(s) are in your balance.\n"
    );
    assert_eq!(bank.reply(2.0, A, "w23").as_bytes(), CHALLENGE_TCP);
    assert_eq!(
        bank.at(3.0, A, "ucharles p02323"),
        vec![
            Effect::Persist(b"charles -23\n".to_vec()),
            send(A, "Withdrew 23 dollar(s). Balance is now -23 dollar(s).\n"),
        ]
    );
    assert_eq!(bank.reply(4.0, A, "d23").as_bytes(), CHALLENGE_TCP);
    assert_eq!(
        bank.at(5.0, A, "ucharles p02323"),
        vec![
            Effect::Persist(b"charles 0\n".to_vec()),
            send(A, "Deposited 23 dollar(s). Balance is now 0 dollar(s).\n"),
        ]
    );
}

#[test]
fn the_challenge_over_udp_is_the_seed_text_exactly() {
    // A UDP transport strips the one `\n` of the TCP form (SPEC Datagrams).
    let tcp = Bank::seed().reply(0.0, A, "b");
    let udp = tcp.strip_suffix('\n').unwrap();
    assert_eq!(udp, "\n\tPlease give the username and pin number.\n");
    assert_eq!(udp.as_bytes(), CHALLENGE);
}

#[test]
fn line_terminators_and_blanks_are_ignored() {
    let mut bank = Bank::seed();
    for request in ["b\n", "b\r\n", " b \t", "w 23\r\n", "d\t23\n"] {
        assert_eq!(
            bank.reply(0.0, A, request).as_bytes(),
            CHALLENGE_TCP,
            "{request:?}"
        );
    }
    assert_eq!(
        bank.reply(0.0, A, "  ucharles \t p02323 \r\n"),
        "Deposited 23 dollar(s). Balance is now 23 dollar(s).\n"
    );
}

#[test]
fn improper_format() {
    let mut bank = Bank::seed();
    for msg in [
        "",
        "\n",
        "x",
        "B",
        "bb",
        "b 1",
        "w",
        "w-1",
        "w$",
        "w2.",
        "w.5",
        "w1e3",
        "w23abc",
        "d 2 3",
        "w1.005",
        "wnan",
        "hello",
        "ucharles",
        "ucharles p02323 extra",
        "ucharles x02323",
        "p02323 ucharles",
    ] {
        assert_eq!(bank.reply(0.0, A, msg), IMPROPER_REPLY, "{msg:?}");
    }
}

#[test]
fn credentials_without_a_request_are_improper() {
    let mut bank = Bank::seed();
    assert_eq!(bank.reply(0.0, A, "ucharles p02323"), IMPROPER_REPLY);
    // A request is answered once: the same credentials again are improper.
    bank.reply(1.0, A, "b");
    bank.reply(2.0, A, "ucharles p02323");
    assert_eq!(bank.reply(3.0, A, "ucharles p02323"), IMPROPER_REPLY);
}

#[test]
fn amounts_whole_and_fractional() {
    let mut bank = Bank::seed();
    for (request, reply) in [
        (
            "d23.5",
            "Deposited 23.50 dollar(s). Balance is now 23.50 dollar(s).\n",
        ),
        (
            "d$0.50",
            "Deposited 0.50 dollar(s). Balance is now 24 dollar(s).\n",
        ),
        (
            "w24.00",
            "Withdrew 24 dollar(s). Balance is now 0 dollar(s).\n",
        ),
        (
            "w0.05",
            "Withdrew 0.05 dollar(s). Balance is now -0.05 dollar(s).\n",
        ),
        (
            "d0023",
            "Deposited 23 dollar(s). Balance is now 22.95 dollar(s).\n",
        ),
        (
            "w1.250",
            "Withdrew 1.25 dollar(s). Balance is now 21.70 dollar(s).\n",
        ),
    ] {
        bank.reply(0.0, A, request);
        assert_eq!(bank.reply(0.0, A, "ucharles p02323"), reply, "{request}");
    }
    assert_eq!(bank.balance("charles"), "21.70");
}

#[test]
fn negative_balances_print_with_a_minus() {
    let mut bank = Bank::new("ada 1234 -$12.50\n");
    bank.reply(0.0, A, "b");
    assert_eq!(
        bank.reply(0.0, A, "uada p1234"),
        "-12.50 dollar(s) are in your balance.\n"
    );
    bank.reply(0.0, A, "w0.50");
    assert_eq!(
        bank.reply(0.0, A, "uada p1234"),
        "Withdrew 0.50 dollar(s). Balance is now -13 dollar(s).\n"
    );
}

#[test]
fn a_change_is_persisted_before_its_reply() {
    let mut bank = Bank::new("ada 1234 10\nbob 5678 -1.5\n");
    bank.reply(0.0, A, "d5");
    let effects = bank.at(0.0, A, "uada p1234");
    assert_eq!(
        effects,
        vec![
            Effect::Persist(b"ada 15\n".to_vec()),
            send(A, "Deposited 5 dollar(s). Balance is now 15 dollar(s).\n"),
        ]
    );
    // A balance check changes nothing and persists nothing.
    bank.reply(0.0, A, "b");
    assert_eq!(bank.at(0.0, A, "uada p1234").len(), 1);
}

/// The effects of `request` then ada's right credentials.
fn change(bank: &mut Bank, request: &str) -> Vec<Effect> {
    bank.reply(0.0, A, request);
    bank.at(0.0, A, "uada p1234")
}

fn assert_refused(bank: &mut Bank, request: &str) {
    let before = bank.balance("ada");
    let effects = change(bank, request);
    assert!(
        matches!(&effects[..], [Effect::Diagnostic(_), Effect::Send(..)]),
        "{request}: {effects:?}"
    );
    assert_eq!(effects[1], send(A, IMPROPER_REPLY));
    assert_eq!(bank.balance("ada"), before, "{request}");
}

#[test]
fn a_change_the_accounts_file_could_not_hold_is_refused_and_changes_nothing() {
    // 28 nines: the largest amount the grammar allows, so the largest
    // balance the file can hold; one cent more needs 29 digits.
    let nines = "9".repeat(28);
    let mut bank = Bank::new(&format!("ada 1234 {nines}\n"));
    assert_refused(&mut bank, "d0.01");
    assert_refused(&mut bank, &format!("d{nines}"));
    // Downwards the same: -28 nines is the lowest.
    let mut bank = Bank::new(&format!("ada 1234 -{nines}\n"));
    assert_refused(&mut bank, "w1");
    let effects = change(&mut bank, "d1");
    assert!(
        matches!(&effects[..], [Effect::Persist(_), Effect::Send(..)]),
        "{effects:?}"
    );
}

#[test]
fn a_sum_past_what_a_decimal_holds_is_refused() {
    // 26 integer digits and cents, plus 28 digits: the exact sum needs a
    // mantissa wider than a Decimal's 96 bits.
    let mut bank = Bank::new(&format!("ada 1234 {}.01\n", "1".repeat(26)));
    assert_refused(&mut bank, &format!("d{}", "9".repeat(28)));
}

#[test]
fn every_change_the_atm_persists_replays_to_a_file_that_parses_back() {
    // 27 integer digits and one decimal: a valid BALANCE whose two-decimal
    // spelling would have 29 digits (found by fuzzing).
    let big = "23000232022220218680645401";
    let file = format!("ada 1234 {big}2.5\n");
    let mut on_disk = Accounts::parse(file.as_bytes()).unwrap();
    let mut bank = Bank::new(&file);
    for request in ["d1", "w0.5", "d0.5"] {
        let effects = change(&mut bank, request);
        let [Effect::Persist(record), Effect::Send(..)] = &effects[..] else {
            panic!("{request}: {effects:?}");
        };
        assert_eq!(accounts_log::replay(&mut on_disk, record), Ok(0));
        assert_eq!(&on_disk, bank.atm.accounts(), "{request}");
        let compacted = Accounts::parse(&on_disk.render()).expect("the atm reads what it writes");
        assert_eq!(&compacted, bank.atm.accounts(), "{request}");
    }
    // The reply keeps SPEC's two decimals; only the file drops the zero.
    assert_eq!(
        change(&mut bank, "d0")[1],
        send(
            A,
            &format!("Deposited 0 dollar(s). Balance is now {big}3.50 dollar(s).\n")
        )
    );
    assert_eq!(
        String::from_utf8(bank.atm.accounts().render()).unwrap(),
        format!("ada 1234 {big}3.5\n")
    );
}

#[test]
fn wrong_credentials_name_the_command() {
    let mut bank = Bank::seed();
    for (request, word) in [("b", "balance"), ("w1", "withdraw"), ("d1", "deposit")] {
        for creds in ["ucharles p2323", "uCharles p02323", "u p", "unobody p02323"] {
            bank.reply(0.0, A, request);
            assert_eq!(
                bank.reply(0.0, A, creds),
                format!("Invalid credentials. Please try the {word} command again.\n"),
                "{request} {creds}"
            );
        }
    }
    assert_eq!(bank.balance("charles"), "0");
}

#[test]
fn requests_wait_per_client_and_a_newer_one_replaces_the_older() {
    let mut bank = Bank::seed();
    bank.reply(0.0, A, "w5");
    // B's credentials do not answer A's request.
    assert_eq!(bank.reply(0.0, B, "ucharles p02323"), IMPROPER_REPLY);
    bank.reply(0.0, A, "d7");
    assert_eq!(
        bank.reply(0.0, A, "ucharles p02323"),
        "Deposited 7 dollar(s). Balance is now 7 dollar(s).\n"
    );
    // Improper input leaves a waiting request alone.
    bank.reply(1.0, B, "b");
    bank.reply(2.0, B, "garbage");
    assert_eq!(
        bank.reply(3.0, B, "ucharles p02323"),
        "7 dollar(s) are in your balance.\n"
    );
}

#[test]
fn a_request_waits_30_seconds_and_no_longer() {
    let mut bank = Bank::seed();
    bank.reply(100.0, A, "b");
    assert_eq!(
        bank.reply(130.0, A, "ucharles p02323"),
        "0 dollar(s) are in your balance.\n"
    );
    bank.reply(200.0, A, "d1");
    assert_eq!(bank.reply(230.001, A, "ucharles p02323"), IMPROPER_REPLY);
    assert_eq!(bank.balance("charles"), "0");
}

#[test]
fn a_disconnect_forgets_the_waiting_request() {
    let mut bank = Bank::seed();
    bank.reply(0.0, A, "b");
    assert!(bank.atm.is_waiting(A));
    bank.atm.on_disconnect(A, &mut bank.out);
    assert!(!bank.atm.is_waiting(A));
    assert!(bank.out.take().is_empty());
}

/// Sends `creds` for a fresh balance request; the reply.
fn try_pin(bank: &mut Bank, secs: f64, creds: &str) -> (String, Vec<Effect>) {
    bank.reply(secs, A, "b");
    let mut effects = bank.at(secs, A, creds);
    let Some(Effect::Send(_, bytes)) = effects.pop() else {
        panic!("no reply to {creds:?}");
    };
    (String::from_utf8(bytes).unwrap(), effects)
}

const INVALID: &str = "Invalid credentials. Please try the balance command again.\n";
const LOCKED_TCP: &str = "Account locked. Try again later.\n";
const RIGHT: &str = "0 dollar(s) are in your balance.\n";

#[test]
fn five_wrong_pins_lock_the_account_for_60_seconds() {
    let mut bank = Bank::new("charles 02323 0\nada 98765 0\n");
    for _ in 0..4 {
        assert_eq!(
            try_pin(&mut bank, 10.0, "ucharles p1111"),
            (INVALID.into(), vec![])
        );
    }
    // The fifth still gets Invalid credentials, and a diagnostic names the account.
    let (reply, diags) = try_pin(&mut bank, 10.0, "ucharles p1111");
    assert_eq!(reply, INVALID);
    let [Effect::Diagnostic(line)] = &diags[..] else {
        panic!("{diags:?}");
    };
    assert!(
        line.contains("charles") && line.contains("locked"),
        "{line}"
    );
    assert!(!line.contains("02323") && !line.contains("1111"), "{line}");
    // Locked: even the right PIN, even for a change, for 60 s.
    assert_eq!(try_pin(&mut bank, 10.0, "ucharles p02323").0, LOCKED_TCP);
    assert_eq!(try_pin(&mut bank, 69.9, "ucharles p1111").0, LOCKED_TCP);
    bank.reply(69.9, A, "d5");
    assert_eq!(bank.reply(69.9, A, "ucharles p02323"), LOCKED_TCP);
    assert_eq!(bank.balance("charles"), "0");
    // Other accounts are not affected.
    bank.reply(20.0, A, "b");
    assert_eq!(bank.reply(20.0, A, "uada p98765"), RIGHT);
    // Released after 60 s, with a fresh count of five.
    assert_eq!(try_pin(&mut bank, 70.0, "ucharles p02323").0, RIGHT);
    for _ in 0..4 {
        assert_eq!(try_pin(&mut bank, 71.0, "ucharles p1111").0, INVALID);
    }
    assert_eq!(try_pin(&mut bank, 71.0, "ucharles p02323").0, RIGHT);
}

#[test]
fn a_right_pin_resets_the_count() {
    let mut bank = Bank::seed();
    for _ in 0..4 {
        try_pin(&mut bank, 0.0, "ucharles p1111");
    }
    assert_eq!(try_pin(&mut bank, 0.0, "ucharles p02323").0, RIGHT);
    for _ in 0..4 {
        assert_eq!(try_pin(&mut bank, 0.0, "ucharles p1111").0, INVALID);
    }
    assert_eq!(try_pin(&mut bank, 0.0, "ucharles p02323").0, RIGHT);
}

/// A client `id` connected from 10.0.0.`host`.
fn connect(bank: &mut Bank, id: u64, host: u8) {
    let peer = SocketAddr::from(([10, 0, 0, host], 5000 + id as u16));
    bank.atm.on_connect(ClientId(id), peer, &mut bank.out);
    assert!(bank.out.take().is_empty());
}

/// `creds` for a fresh balance request from client `id`; the reply.
fn try_as(bank: &mut Bank, secs: f64, id: u64, creds: &str) -> String {
    bank.reply(secs, ClientId(id), "b");
    bank.reply(secs, ClientId(id), creds)
}

#[test]
fn wrong_pins_count_per_address_across_its_clients_and_not_elsewhere() {
    let mut bank = Bank::seed();
    connect(&mut bank, 1, 1);
    connect(&mut bank, 2, 1);
    connect(&mut bank, 3, 2);
    for _ in 0..4 {
        assert_eq!(try_as(&mut bank, 0.0, 1, "ucharles p0"), INVALID);
    }
    // The fifth from the same address, another connection: still counted.
    assert_eq!(try_as(&mut bank, 0.0, 2, "ucharles p0"), INVALID);
    assert_eq!(try_as(&mut bank, 1.0, 1, "ucharles p02323"), LOCKED_TCP);
    assert_eq!(try_as(&mut bank, 1.0, 2, "ucharles p02323"), LOCKED_TCP);
    // The owner at another address is not affected.
    assert_eq!(try_as(&mut bank, 1.0, 3, "ucharles p02323"), RIGHT);
}

#[test]
fn an_unknown_name_gets_exactly_the_replies_an_account_gets() {
    let mut bank = Bank::seed();
    connect(&mut bank, 1, 1);
    connect(&mut bank, 2, 2);
    let mut replies = |id: u64, name: &str| -> (Vec<String>, usize) {
        let mut seen = Vec::new();
        let mut diagnostics = 0;
        for (i, secs) in [0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 59.9, 60.0]
            .iter()
            .enumerate()
        {
            bank.reply(*secs, ClientId(id), "b");
            let pin = if i == 6 { "02323" } else { "1111" };
            let effects = bank.at(*secs, ClientId(id), &format!("u{name} p{pin}"));
            for e in effects {
                match e {
                    Effect::Send(_, bytes) => seen.push(String::from_utf8(bytes).unwrap()),
                    Effect::Diagnostic(line) => {
                        assert!(line.contains(name) && line.contains("10.0.0."), "{line}");
                        diagnostics += 1;
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
        (seen, diagnostics)
    };
    let known = replies(1, "charles");
    let unknown = replies(2, "nobody");
    assert_eq!(known, unknown);
    let mut expected = vec![INVALID.to_string(); 5];
    expected.extend([LOCKED_TCP.into(), LOCKED_TCP.into(), INVALID.into()]);
    assert_eq!(known, (expected, 1));
}

#[test]
fn twenty_wrong_credentials_a_minute_lock_every_name_for_the_address() {
    let mut bank = Bank::new("charles 02323 0\nada 98765 0\n");
    connect(&mut bank, 1, 1);
    connect(&mut bank, 2, 2);
    // 19 wrong on 19 NAMEs (one each: no NAME reaches five).
    for i in 0..19 {
        assert_eq!(try_as(&mut bank, 1.0, 1, &format!("un{i} p0")), INVALID);
    }
    // The 20th still gets Invalid credentials, with a diagnostic.
    bank.reply(2.0, A, "b");
    let effects = bank.at(2.0, A, "uada p0");
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::Diagnostic(l) if l.contains("every NAME"))),
        "{effects:?}"
    );
    assert!(effects.contains(&send(A, INVALID)), "{effects:?}");
    // Then every NAME is locked for that address, right PIN or not.
    assert_eq!(try_as(&mut bank, 3.0, 1, "ucharles p02323"), LOCKED_TCP);
    assert_eq!(try_as(&mut bank, 61.9, 1, "unew p0"), LOCKED_TCP);
    // Not for another address.
    assert_eq!(try_as(&mut bank, 3.0, 2, "ucharles p02323"), RIGHT);
    // Over after 60 s.
    assert_eq!(try_as(&mut bank, 62.0, 1, "ucharles p02323"), RIGHT);
}

#[test]
fn pins_never_show_in_debug_or_diagnostics() {
    let mut bank = Bank::new("charles 48151623 0\n");
    for _ in 0..5 {
        let (_, diags) = try_pin(&mut bank, 0.0, "ucharles p48151620");
        for d in diags {
            assert!(!format!("{d:?}").contains("4815162"), "{d:?}");
        }
    }
    bank.reply(0.0, A, "b");
    let shown = format!("{:?}", bank.atm);
    assert!(!shown.contains("4815162"), "{shown}");
    let shown = format!("{:?}", parse_request(b"ucharles p48151623"));
    assert!(
        shown.contains("charles") && !shown.contains("4815162"),
        "{shown}"
    );
}

#[test]
fn parse_request_shapes() {
    use rust_decimal::Decimal;
    assert_eq!(parse_request(b"b"), Request::Op(Op::Balance));
    assert_eq!(
        parse_request(b"w23"),
        Request::Op(Op::Withdraw(Decimal::from(23)))
    );
    assert_eq!(
        parse_request(b"d$1.50\n"),
        Request::Op(Op::Deposit("1.50".parse().unwrap()))
    );
    assert_eq!(
        parse_request(b"ucharles p02323"),
        Request::Credentials {
            name: b"charles",
            pin: b"02323"
        }
    );
    assert_eq!(
        parse_request(b"u p"),
        Request::Credentials {
            name: b"",
            pin: b""
        }
    );
}

#[test]
fn loading_names_the_file_and_the_line() {
    let dir = std::env::temp_dir().join(format!("nb-atm-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("accounts.txt");
    std::fs::write(&path, "charles 02323 0\nbroken line\n").unwrap();
    let err = Atm::load(&path).unwrap_err().to_string();
    assert!(err.starts_with("accounts file "), "{err}");
    assert!(
        err.contains("accounts.txt") && err.contains("line 2"),
        "{err}"
    );
    assert!(!err.contains('\n'));
    let missing = dir.join("missing.txt");
    let err = Atm::load(&missing).unwrap_err().to_string();
    assert!(
        err.contains("missing.txt") && !err.contains("os error"),
        "{err}"
    );
    std::fs::write(&path, "charles 02323 7\n").unwrap();
    assert_eq!(Atm::load(&path).unwrap().accounts().len(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}
