//! ledger (SPEC "ledger", seed 000): transactions in, sorted balances to
//! `--log` at shutdown, the drain after SIGINT/SIGTERM, the final counts.
//!
//! Expected logs are computed here, independently, with i128 thousandths
//! of a dollar and SPEC's rendering rule (two decimals, half away from zero,
//! never `$-0.00`).

#[macro_use]
mod common;

use std::collections::BTreeMap;
use std::fs;
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use common::*;

every_server!(
    seed_100_clients,
    seed_100_clients_signal_right_after_sending,
    fifty_clients_ten_thousand_lines,
    split_transaction_is_not_idle_flushed,
    invalid_lines_discarded_connection_stays_open,
    eof_tail_without_newline_is_applied,
    crlf_lines,
    sample_lf_file,
    rounding_and_negative_zero,
    overflow_is_discarded,
    empty_log_when_no_accounts,
    log_path_honoured_and_default_is_log_txt,
    drain_after_sigint,
    drain_after_sigterm,
    second_signal_ends_drain_and_cuts_partial_lines,
    drain_timeout_ends_drain,
);

fn start_ledger(kind: Kind, extra: &[&str]) -> Server {
    let dir = TempDir::new(&format!("ledger-{}", kind.name()));
    let log = dir.join("log.txt").to_string_lossy().into_owned();
    let mut args = vec!["-H", "ledger", "--log", log.as_str()];
    args.extend_from_slice(extra);
    let s = Server::start_in(kind, &args, dir);
    assert_eq!(s.handler, "ledger");
    s
}

/// SIGINT, exit 0, and the log's contents.
fn finish(s: &mut Server) -> String {
    s.stop(SIGINT);
    read_log(s)
}

fn read_log(s: &Server) -> String {
    let path = s.dir.join("log.txt");
    fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}\n{}", path.display(), s.transcript()))
}

fn counts_line(applied: u64, discarded: u64, cut: u64) -> String {
    format!("Applied {applied} transactions, discarded {discarded} lines, cut {cut} partial lines")
}

/// Sends `bytes`, closes the sending side and waits for the server's close:
/// afterwards the server has handled every line.
fn send_all_and_close(s: &Server, bytes: &[u8]) {
    let mut c = s.connect();
    c.send(bytes);
    c.shutdown_write();
    c.expect_eof();
}

/// SPEC's log rendering from thousandths of a dollar.
fn render(balances: &BTreeMap<Vec<u8>, i128>) -> String {
    let mut out = String::new();
    for (name, &mills) in balances {
        let neg = mills < 0;
        let cents = (mills.abs() + 5) / 10; // half away from zero
        let sign = if neg && cents != 0 { "-" } else { "" };
        out.push_str(&format!(
            "{} ${sign}{}.{:02}\n",
            String::from_utf8(name.clone()).unwrap(),
            cents / 100,
            cents % 100
        ));
    }
    out
}

fn seed_100_clients(kind: Kind) {
    let s = start_ledger(kind, &[]);
    let addr = s.addr;
    let clients: Vec<_> = (0..100)
        .map(|_| {
            thread::spawn(move || {
                let mut c = Conn::connect(addr);
                c.send(b"Marc credit $2\nMarc debit $1\n");
                c.shutdown_write();
                c.expect_eof();
            })
        })
        .collect();
    for c in clients {
        c.join().expect("a ledger client failed");
    }
    let mut s = s;
    assert_eq!(finish(&mut s), "Marc $100.00\n");
    assert_eq!(s.last_status(), counts_line(200, 0, 0));
}

/// The seed's own scenario: the clients run in the background and SIGINT
/// follows at once. SPEC: connections waiting in the accept queue are
/// accepted first and served, and ledger clients are drained, so nothing is
/// lost.
fn seed_100_clients_signal_right_after_sending(kind: Kind) {
    let mut s = start_ledger(kind, &[]);
    let addr = s.addr;
    let clients: Vec<_> = (0..100)
        .map(|_| {
            thread::spawn(move || {
                let mut stream = TcpStream::connect(addr).expect("connect");
                std::io::Write::write_all(&mut stream, b"Marc credit $2\nMarc debit $1\n")
                    .expect("send");
                // Dropped: FIN after the data, like the seed's client.py.
            })
        })
        .collect();
    for c in clients {
        c.join().expect("a ledger client failed");
    }
    assert_eq!(finish(&mut s), "Marc $100.00\n");
    assert_eq!(s.last_status(), counts_line(200, 0, 0));
}

const NAMES: &[&str] = &[
    "Marc", "marc", "Abigail", "Zoe", "Zoey", "Élodie", "bob_1", "X", "Sofia", "李雷", "O'Neil",
    "a-b-c",
];
const TYPES: &[(&str, i128)] = &[
    ("credit", 1),
    ("debit", -1),
    ("CREDIT", 1),
    ("Debit", -1),
    ("dEbIt", -1),
    ("Credit", 1),
];
const SEPS: &[&str] = &[" ", "  ", "\t", " \t ", "\t\t"];
/// Lines SPEC says are discarded; `{}` is a name.
const INVALID: &[&str] = &[
    "{} credit",
    "{} credit $5 extra",
    "{} withdraw $5",
    "{} credit $-5",
    "{} credit -5",
    "{} credit +5",
    "{} credit 2.",
    "{} credit .5",
    "{} credit $",
    "{} credit 1e3",
    "{} credit 1,000",
    "{} credit nan",
    "{} debit inf",
    "{} credit $$5",
    "{} credit 5$",
    "{} credit 0x10",
    "{} credit 5.5.5",
    "{} credit 12345678901234567890123456789",
    "{}",
    "{} crédit 5",
    "credit {} 5",
];

/// One generated client input: bytes, and what it does to the model.
fn generate(seed: u64, lines: usize, model: &mut BTreeMap<Vec<u8>, i128>) -> (Vec<u8>, u64, u64) {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(lines * 30);
    let (mut applied, mut discarded) = (0, 0);
    for _ in 0..lines {
        let name = *rng.pick(NAMES);
        let r = rng.below(100);
        let body: Vec<u8> = if r < 85 {
            let (ty, sign) = *rng.pick(TYPES);
            let int = rng.below(10_000) as i128;
            let (frac_text, mills) = match rng.below(4) {
                0 => (String::new(), 0),
                1 => {
                    let d = rng.below(10) as i128;
                    (format!(".{d}"), d * 100)
                }
                2 => {
                    let d = rng.below(100) as i128;
                    (format!(".{d:02}"), d * 10)
                }
                _ => {
                    let d = rng.below(1000) as i128;
                    (format!(".{d:03}"), d)
                }
            };
            let int_text = if rng.below(20) == 0 {
                format!("{int:06}")
            } else {
                int.to_string()
            };
            let dollar = if rng.below(2) == 0 { "$" } else { "" };
            let lead = if rng.below(10) == 0 { " \t" } else { "" };
            let trail = if rng.below(10) == 0 { "\t " } else { "" };
            *model.entry(name.as_bytes().to_vec()).or_insert(0) += sign * (int * 1000 + mills);
            applied += 1;
            format!(
                "{lead}{name}{}{ty}{}{dollar}{int_text}{frac_text}{trail}",
                rng.pick(SEPS),
                rng.pick(SEPS)
            )
            .into_bytes()
        } else if r < 95 {
            discarded += 1;
            if rng.below(10) == 0 {
                b"M\xffrc credit 5".to_vec()
            } else {
                rng.pick(INVALID).replace("{}", name).into_bytes()
            }
        } else {
            // Empty after trimming: skipped, not counted.
            rng.pick(&["", " ", "\t", " \t "]).as_bytes().to_vec()
        };
        out.extend_from_slice(&body);
        out.extend_from_slice(if rng.below(5) == 0 { b"\r\n" } else { b"\n" });
    }
    (out, applied, discarded)
}

fn fifty_clients_ten_thousand_lines(kind: Kind) {
    const CLIENTS: u64 = 50;
    const LINES: usize = 10_000;
    let mut model = BTreeMap::new();
    let (mut applied, mut discarded) = (0, 0);
    let mut inputs = Vec::new();
    for c in 0..CLIENTS {
        let (bytes, a, d) = generate(1000 + c, LINES, &mut model);
        applied += a;
        discarded += d;
        inputs.push(bytes);
    }
    // An account whose only transactions are zero still exists.
    model.insert(b"Zed0".to_vec(), 0);
    inputs[0].extend_from_slice(b"Zed0 credit 0\nZed0 debit $0.000\n");
    applied += 2;

    let mut s = start_ledger(kind, &[]);
    let addr = s.addr;
    let clients: Vec<_> = inputs
        .into_iter()
        .map(|bytes| {
            thread::spawn(move || {
                let mut c = Conn::connect(addr);
                // In a few large writes, like the seed's client.
                for chunk in bytes.chunks(64 * 1024) {
                    c.send(chunk);
                }
                c.shutdown_write();
                c.expect_eof();
            })
        })
        .collect();
    for c in clients {
        c.join().expect("a ledger client failed");
    }
    let log = finish(&mut s);
    let want = render(&model);
    if log != want {
        let got: Vec<_> = log.lines().collect();
        let exp: Vec<_> = want.lines().collect();
        panic!("log differs:\n got: {got:?}\nwant: {exp:?}");
    }
    assert_eq!(s.last_status(), counts_line(applied, discarded, 0));
}

fn split_transaction_is_not_idle_flushed(kind: Kind) {
    let mut s = start_ledger(kind, &[]);
    let mut c = s.connect_as(1);
    c.send(b"Marc cre");
    // SPEC: the ledger never idle-flushes (the 50 ms rule is for interactive
    // handlers); 200 ms apart the two halves are still one line.
    thread::sleep(Duration::from_millis(200));
    c.send(b"dit $5\nAnn debit 1");
    thread::sleep(Duration::from_millis(200));
    c.send(b".25\n");
    c.shutdown_write();
    c.expect_eof();
    assert_eq!(finish(&mut s), "Ann $-1.25\nMarc $5.00\n");
    assert_eq!(s.last_status(), counts_line(2, 0, 0));
}

fn invalid_lines_discarded_connection_stays_open(kind: Kind) {
    let mut s = start_ledger(kind, &[]);
    let mut c = s.connect_as(1);
    c.send(b"this is not a transaction\nMarc credit\n");
    c.send(b"Marc credit $3\n\xff\xfe credit 1\nBea debit 2.50\n");
    c.send(b"Marc debit ten\n");
    c.send(b"Marc debit 1\n");
    c.shutdown_write();
    // SPEC: no reply to anything, and the connection stayed open.
    let got = c.read_to_eof();
    assert!(got.is_empty(), "the ledger replied: {:?}", show(&got));
    assert_eq!(finish(&mut s), "Bea $-2.50\nMarc $2.00\n");
    assert_eq!(s.last_status(), counts_line(3, 4, 0));
}

fn eof_tail_without_newline_is_applied(kind: Kind) {
    let mut s = start_ledger(kind, &[]);
    send_all_and_close(&s, b"Marc credit $7\nAnn credit 1");
    send_all_and_close(&s, b"Marc debit 0.5");
    assert_eq!(finish(&mut s), "Ann $1.00\nMarc $6.50\n");
    assert_eq!(s.last_status(), counts_line(3, 0, 0));
}

fn crlf_lines(kind: Kind) {
    let mut s = start_ledger(kind, &[]);
    send_all_and_close(&s, b"Zu credit $1.50\r\nAnn debit 2\r\n\r\nZu CREDIT 1\r\n");
    let mut want = String::from("Ann $-2.00\n");
    // A real student input: CRLF endings and no newline after the last line.
    let bytes = test_data("000/small_input_crlf.txt");
    for _ in 0..3 {
        send_all_and_close(&s, &bytes);
    }
    for name in [
        "Brad", "Camron", "James", "Krishan", "Leo", "Marc", "Nathan", "Norm", "Ryan", "Ryder",
    ] {
        want.push_str(&format!("{name} $3.00\n"));
    }
    want.push_str("Zu $2.50\n");
    assert_eq!(finish(&mut s), want);
    // 3 of our own lines plus the file's 20, three times: all 63 applied.
    assert_eq!(s.last_status(), counts_line(3 + 3 * 20, 0, 0));
}

fn sample_lf_file(kind: Kind) {
    let mut s = start_ledger(kind, &[]);
    send_all_and_close(&s, &test_data("000/jackewilson_test.txt"));
    assert_eq!(
        finish(&mut s),
        "a $0.33\njack $100.22\nmarge $-50.00\nzackary $33.99\n"
    );
    assert_eq!(s.last_status(), counts_line(5, 0, 0));
}

fn rounding_and_negative_zero(kind: Kind) {
    let mut s = start_ledger(kind, &[]);
    send_all_and_close(
        &s,
        b"A credit 0.005\n\
          B debit 0.005\n\
          C debit 0.004\n\
          D credit 1.994\n\
          E credit 1.995\n\
          F debit 2.675\n\
          G credit 1\nG debit 1\n\
          H credit 0.1\nH credit 0.1\nH credit 0.1\n\
          I debit 0\n\
          J credit 0.0049999999999999999999999\n\
          K credit 0000000000000000000000001.500\n\
          L debit 1234567.89\n",
    );
    assert_eq!(
        finish(&mut s),
        "A $0.01\nB $-0.01\nC $0.00\nD $1.99\nE $2.00\nF $-2.68\nG $0.00\nH $0.30\n\
         I $0.00\nJ $0.00\nK $1.50\nL $-1234567.89\n"
    );
    assert_eq!(s.last_status(), counts_line(15, 0, 0));
}

/// SPEC: sums are exact rust_decimal values and a transaction that would
/// overflow a balance is discarded. 8 x (10^28 - 1) is past rust_decimal's
/// maximum (about 7.9 x 10^28); 7 of them are not.
fn overflow_is_discarded(kind: Kind) {
    let mut s = start_ledger(kind, &[]);
    let big = "9999999999999999999999999999"; // 28 digits: the most SPEC allows
    let mut input = String::new();
    for _ in 0..8 {
        input.push_str(&format!("Rich credit {big}\n"));
    }
    input.push_str("Rich debit 3\n");
    send_all_and_close(&s, input.as_bytes());
    assert_eq!(finish(&mut s), "Rich $69999999999999999999999999990.00\n");
    assert_eq!(s.last_status(), counts_line(8, 1, 0));
}

fn empty_log_when_no_accounts(kind: Kind) {
    let mut s = start_ledger(kind, &[]);
    // A stale file is replaced, not appended to.
    fs::write(s.dir.join("log.txt"), "Old $1.00\n").unwrap();
    send_all_and_close(&s, b"\n \t\nnot valid\nMarc credit 2.\n");
    assert_eq!(finish(&mut s), "");
    assert_eq!(s.last_status(), counts_line(0, 2, 0));
}

fn log_path_honoured_and_default_is_log_txt(kind: Kind) {
    // --log elsewhere: nothing named log.txt appears in the working dir.
    let dir = TempDir::new("ledger-logpath");
    fs::create_dir(dir.join("out")).unwrap();
    let custom = dir.join("out/balances.txt").to_string_lossy().into_owned();
    let mut s = Server::start_in(kind, &["-H", "ledger", "--log", &custom], dir);
    send_all_and_close(&s, b"Zed credit 1\nAmy credit 2\n");
    s.stop(SIGINT);
    assert_eq!(
        fs::read_to_string(&custom).expect("the --log file"),
        "Amy $2.00\nZed $1.00\n"
    );
    assert!(
        !s.dir.join("log.txt").exists(),
        "log.txt written despite --log"
    );
    let leftovers: Vec<_> = fs::read_dir(s.dir.join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["balances.txt"], "temporary files left behind");

    // Default: log.txt in the working directory.
    let mut s = Server::start(kind, &["-H", "ledger"]);
    send_all_and_close(&s, b"Bo credit 3\n");
    s.stop(SIGINT);
    assert_eq!(
        fs::read_to_string(s.dir.join("log.txt")).expect("default log.txt"),
        "Bo $3.00\n"
    );
}

fn drain(kind: Kind, sig: i32) {
    let mut s = start_ledger(kind, &[]);
    let mut a = s.connect_as(1);
    let mut b = s.connect_as(2);
    a.send(b"Ann credit 1\nAnn cre");
    b.send(b"Bob credit 2\n");
    s.signal(sig);
    let line = s.wait_status("the drain line", |l| l.starts_with("Shutting down"));
    assert_eq!(
        line,
        "Shutting down: waiting up to 30 s for 2 clients (signal again to stop now)"
    );
    // The listener is closed: a new client is refused or never served.
    let late = TcpStream::connect(s.addr).ok();
    // Connected clients go on sending, and it all counts.
    a.send(b"dit 10\nAnn debit 0.5");
    a.shutdown_write();
    a.expect_eof();
    s.wait_disconnected(1);
    assert!(
        s.running(),
        "the server stopped while a ledger client was still connected\n{}",
        s.transcript()
    );
    b.send(b"Bob debit 0.25\n");
    b.shutdown_write();
    b.expect_eof();
    s.assert_exit_0();
    assert_eq!(read_log(&s), "Ann $10.50\nBob $1.75\n");
    assert_eq!(s.last_status(), counts_line(5, 0, 0));
    assert!(
        !s.status_lines()
            .iter()
            .any(|l| l.starts_with("Client 3 connected")),
        "a client connecting after the signal was served\n{}",
        s.transcript()
    );
    if let Some(late) = late {
        let mut late = Conn::from_stream(late);
        late.expect_closed();
    }
}

fn drain_after_sigint(kind: Kind) {
    drain(kind, SIGINT);
}

fn drain_after_sigterm(kind: Kind) {
    drain(kind, SIGTERM);
}

fn second_signal_ends_drain_and_cuts_partial_lines(kind: Kind) {
    // A drain that would last an hour: an exit is the second signal's doing.
    let mut s = start_ledger(kind, &["--drain-timeout", "3600"]);
    let mut a = s.connect_as(1);
    let mut b = s.connect_as(2);
    a.send(b"Cy credit 3\nCy cre");
    b.send(b"Dee debit 1\nDee deb");
    s.signal(SIGINT);
    s.wait_status_eq(
        "Shutting down: waiting up to 3600 s for 2 clients (signal again to stop now)",
    );
    s.signal(SIGINT);
    let status = s.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", s.transcript());
    assert_eq!(read_log(&s), "Cy $3.00\nDee $-1.00\n");
    assert_eq!(s.last_status(), counts_line(2, 0, 2));
    a.expect_closed();
    b.expect_closed();
}

fn drain_timeout_ends_drain(kind: Kind) {
    let mut s = start_ledger(kind, &["--drain-timeout", "0.5"]);
    let mut a = s.connect_as(1);
    let mut b = s.connect_as(2);
    a.send(b"Ed credit 4\nEd credit 1");
    b.send(b"Fay credit 5\nFay d");
    s.signal(SIGINT);
    s.wait_status_eq("Shutting down: waiting up to 0.5 s for 2 clients (signal again to stop now)");
    // Nobody disconnects and no second signal: the timeout alone ends it.
    let status = s.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", s.transcript());
    assert_eq!(read_log(&s), "Ed $4.00\nFay $5.00\n");
    assert_eq!(s.last_status(), counts_line(2, 0, 2));
    a.expect_closed();
    b.expect_closed();
}
