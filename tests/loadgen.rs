//! `loadgen` end to end: against the real servers, and against tiny fake
//! servers that answer wrongly (a load generator that cannot fail a check is
//! no check).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const LOADGEN: &str = env!("CARGO_BIN_EXE_loadgen");
const SERVERS: [&str; 2] = [
    env!("CARGO_BIN_EXE_nonblocking-server"),
    env!("CARGO_BIN_EXE_threaded-server"),
];
/// Longest wait for any one thing; a hang fails the test instead of CI.
const WAIT: Duration = Duration::from_secs(20);

/// A server started on port 0; SIGINT and reaped on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    /// Starts `bin` with `args` and port 0, waits for its `Listening on` line.
    /// Panics if it does not listen: every server model must.
    fn start(bin: &str, args: &[&str]) -> Server {
        let mut child = Command::new(bin)
            .args(args)
            .arg("0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn server");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = rx.recv_timeout(WAIT).ok();
        let Some(port) = first.as_deref().and_then(|l| {
            l.strip_prefix("Listening on ")?
                .split_whitespace()
                .next()?
                .rsplit(':')
                .next()?
                .parse()
                .ok()
        }) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{bin} did not print its Listening line: {first:?}");
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || while rx.recv().is_ok() {});
        Server { child, port }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        let _ = self.child.wait();
    }
}

/// Runs loadgen with `args` (plus `--json` and a timeout) to completion.
fn loadgen(args: &[&str]) -> Output {
    let mut cmd = Command::new(LOADGEN);
    cmd.args(args).args(["--json", "--timeout", "60"]);
    cmd.output().expect("run loadgen")
}

/// The value of `"key":` in loadgen's one-line JSON, as raw text.
fn field<'a>(json: &'a str, key: &str) -> &'a str {
    let pat = format!("\"{key}\":");
    let start = json
        .find(&pat)
        .unwrap_or_else(|| panic!("no {key} in {json}"))
        + pat.len();
    let rest = &json[start..];
    let end = if let Some(quoted) = rest.strip_prefix('"') {
        1 + quoted.find('"').expect("closing quote") + 1
    } else {
        rest.find([',', '}']).expect("end of value")
    };
    &rest[..end]
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn echo_against_both_servers_counts_every_line() {
    for bin in SERVERS {
        let server = Server::start(bin, &["--handler", "echo"]);
        let port = server.port.to_string();
        let out = loadgen(&[
            "--handler",
            "echo",
            "--clients",
            "5",
            "--lines",
            "200",
            "--window",
            "4",
            &port,
        ]);
        let json = stdout(&out);
        assert!(out.status.success(), "{bin}: {json} {:?}", out.stderr);
        assert_eq!(field(&json, "lines"), "1000", "{json}");
        assert_eq!(field(&json, "errors"), "0", "{json}");
        assert_eq!(field(&json, "bytes_received"), "32000", "{json}");
        assert_ne!(field(&json, "p99_us"), "null", "{json}");
    }
}

#[test]
fn echo_reply_that_differs_is_an_error() {
    // One byte of the 3rd reply is changed.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let fake = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut reader = BufReader::new(s.try_clone().unwrap());
        for i in 0..10 {
            let mut line = Vec::new();
            if reader.read_until(b'\n', &mut line).unwrap() == 0 {
                break;
            }
            if i == 2 {
                line[0] = b'X';
            }
            s.write_all(&line).unwrap();
        }
    });
    let out = loadgen(&["--clients", "1", "--lines", "10", &port]);
    fake.join().unwrap();
    let json = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{json}");
    assert_eq!(field(&json, "errors"), "1", "{json}");
}

#[test]
fn ledger_log_mismatch_is_reported() {
    // A fake ledger: consumes each client to EOF, closes it, then writes a
    // wrong log. Without --stop-pid, loadgen waits for the log to be written.
    let dir = std::env::temp_dir().join(format!("loadgen-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("log.txt");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let log2 = log.clone();
    let fake = std::thread::spawn(move || {
        let mut total = 0;
        for _ in 0..3 {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(WAIT)).unwrap();
            let mut data = Vec::new();
            s.read_to_end(&mut data).unwrap();
            total += data.len();
            s.shutdown(Shutdown::Both).unwrap();
        }
        std::thread::sleep(Duration::from_millis(200));
        std::fs::write(&log2, b"Nobody $0.00\n").unwrap();
        total
    });
    let expect = dir.join("expected.txt");
    let out = loadgen(&[
        "--handler",
        "ledger",
        "--clients",
        "3",
        "--lines",
        "100",
        "--repeat",
        "2",
        "--expect-log",
        expect.to_str().unwrap(),
        "--verify-log",
        log.to_str().unwrap(),
        "--log-wait",
        "20",
        &port,
    ]);
    let received = fake.join().unwrap();
    let json = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{json}");
    assert_eq!(field(&json, "log_check"), "\"mismatch\"", "{json}");
    assert_eq!(field(&json, "lines"), "600", "{json}");
    assert_eq!(field(&json, "bytes_sent"), received.to_string(), "{json}");
    let expected = std::fs::read_to_string(&expect).unwrap();
    assert!(expected.lines().count() > 10, "{expected}");
    assert!(
        expected
            .lines()
            .all(|l| l.contains(" $") && !l.contains("$-0.00")),
        "{expected}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A ledger server `bin` driven by loadgen with `args`, which then checks
/// the server's log itself (`--verify-log`, `--stop-pid`); the JSON summary.
fn ledger_verified(bin: &str, tag: &str, args: &[&str]) -> (std::process::Output, String) {
    let dir = std::env::temp_dir().join(format!(
        "loadgen-{tag}-{}-{}",
        std::process::id(),
        bin.rsplit('/').next().unwrap()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("log.txt");
    let server = Server::start(
        bin,
        &["--handler", "ledger", "--log", log.to_str().unwrap()],
    );
    let port = server.port.to_string();
    let pid = server.pid().to_string();
    let mut all = vec!["--handler", "ledger"];
    all.extend_from_slice(args);
    all.extend_from_slice(&[
        "--verify-log",
        log.to_str().unwrap(),
        "--stop-pid",
        &pid,
        &port,
    ]);
    let out = loadgen(&all);
    let json = stdout(&out);
    drop(server);
    std::fs::remove_dir_all(&dir).unwrap();
    (out, json)
}

/// The real ledger handler, on both servers, writes exactly the log loadgen expects.
#[test]
fn ledger_log_matches_on_both_servers() {
    for bin in SERVERS {
        let (out, json) = ledger_verified(
            bin,
            "ledger",
            &["--clients", "8", "--lines", "500", "--repeat", "3"],
        );
        assert_eq!(field(&json, "log_check"), "\"match\"", "{bin}: {json}");
        assert_eq!(field(&json, "lines"), "12000", "{json}");
        assert!(out.status.success(), "{json}");
    }
}

/// Every list of a 30-client join/leave run is right, on both servers.
#[test]
fn presence_lists_on_both_servers() {
    for bin in SERVERS {
        let server = Server::start(bin, &["--handler", "presence"]);
        let port = server.port.to_string();
        let out = loadgen(&["--handler", "presence", "--clients", "30", &port]);
        let json = stdout(&out);
        assert!(out.status.success(), "{bin}: {json}");
        assert_eq!(field(&json, "lines"), "900", "{json}");
        assert_eq!(field(&json, "errors"), "0", "{json}");
        assert_ne!(field(&json, "join_s"), "null", "{json}");
    }
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &[][..],
        &["--clients", "0", "7"],
        &["--handler", "echo", "--repeat", "2", "7"],
        &["--handler", "presence", "--connect-burst", "7"],
        &["--bogus", "7"],
        &["not-an-address"],
    ] {
        let out = Command::new(LOADGEN).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}");
    }
}

/// A port that was just free: nothing listens there.
fn free_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port().to_string()
}

#[test]
fn unreachable_server_is_exit_1() {
    let port = free_port();
    let out = Command::new(LOADGEN)
        .args(["--clients", "1", "--connect-timeout-ms", "5", &port])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&port));
}

/// `--threads 2` against both real servers: every reply checked, the
/// summary's counts exact (7 clients split 4 + 3 over the threads).
#[test]
fn echo_on_two_threads_counts_every_line() {
    for bin in SERVERS {
        let server = Server::start(bin, &["--handler", "echo"]);
        let port = server.port.to_string();
        let out = loadgen(&[
            "--threads",
            "2",
            "--clients",
            "7",
            "--lines",
            "150",
            "--window",
            "3",
            &port,
        ]);
        let json = stdout(&out);
        assert!(out.status.success(), "{bin}: {json} {:?}", out.stderr);
        assert_eq!(field(&json, "threads"), "2", "{json}");
        assert_eq!(field(&json, "lines"), "1050", "{json}");
        assert_eq!(field(&json, "errors"), "0", "{json}");
        assert_eq!(field(&json, "bytes_sent"), "33600", "{json}");
        assert_eq!(field(&json, "bytes_received"), "33600", "{json}");
        assert_eq!(field(&json, "transport"), "\"tcp\"", "{json}");
    }
}

/// `--threads 2` ledger on both servers: the server's log equals the one
/// loadgen computed over the clients of both threads.
#[test]
fn ledger_on_two_threads_matches_the_log() {
    for bin in SERVERS {
        let (out, json) = ledger_verified(
            bin,
            "ledger2",
            &[
                "--threads",
                "2",
                "--clients",
                "5",
                "--lines",
                "400",
                "--repeat",
                "2",
            ],
        );
        assert_eq!(field(&json, "log_check"), "\"match\"", "{bin}: {json}");
        assert_eq!(field(&json, "lines"), "4000", "{json}");
        assert_eq!(field(&json, "threads"), "2", "{json}");
        assert_eq!(field(&json, "errors"), "0", "{json}");
        assert!(out.status.success(), "{json}");
    }
}

/// What a test UDP responder does with the datagrams it receives.
#[derive(Clone, Copy)]
enum Udp {
    /// Returns each datagram exactly.
    Echo,
    /// Drops every 10th datagram it receives, echoes the others.
    DropTenth,
    /// Returns each pair of datagrams in swapped order.
    Swap,
    /// Changes one byte of the 5th reply.
    Corrupt,
}

/// A UDP responder thread on 127.0.0.1 that handles `total` datagrams (or
/// gives up after [`WAIT`] of silence); returns its port and a handle
/// yielding how many datagrams it received.
fn udp_responder(how: Udp, total: usize) -> (String, std::thread::JoinHandle<usize>) {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let port = sock.local_addr().unwrap().port().to_string();
    let handle = std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        let mut held: Option<(Vec<u8>, std::net::SocketAddr)> = None;
        for k in 1..=total {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                return k - 1;
            };
            let mut data = buf[..n].to_vec();
            match how {
                Udp::Echo => {}
                Udp::DropTenth if k % 10 == 0 => continue,
                Udp::DropTenth => {}
                Udp::Swap => match held.take() {
                    None => {
                        held = Some((data, from));
                        continue;
                    }
                    Some((first, first_from)) => {
                        sock.send_to(&data, from).unwrap();
                        data = first;
                        sock.send_to(&data, first_from).unwrap();
                        continue;
                    }
                },
                Udp::Corrupt if k == 5 => data[n - 2] ^= 1,
                Udp::Corrupt => {}
            }
            sock.send_to(&data, from).unwrap();
        }
        total
    });
    (port, handle)
}

#[test]
fn udp_echo_checks_every_reply() {
    let (port, responder) = udp_responder(Udp::Echo, 3 * 100);
    let out = loadgen(&[
        "--udp",
        "--threads",
        "2",
        "--clients",
        "3",
        "--lines",
        "100",
        "--window",
        "4",
        &port,
    ]);
    assert_eq!(responder.join().unwrap(), 300);
    let json = stdout(&out);
    assert!(out.status.success(), "{json} {:?}", out.stderr);
    assert_eq!(field(&json, "transport"), "\"udp\"", "{json}");
    assert_eq!(field(&json, "lines"), "300", "{json}");
    assert_eq!(field(&json, "lost"), "0", "{json}");
    assert_eq!(field(&json, "errors"), "0", "{json}");
    assert_eq!(field(&json, "bytes_received"), "9600", "{json}");
    assert_ne!(field(&json, "p99_us"), "null", "{json}");
}

/// A window's equal datagrams leave as one segmented message (UDP GSO) by
/// default, each as its own with `--udp-one-by-one`: a plain
/// `recv_from` server gets the same datagrams either way, one by one.
#[test]
fn udp_datagrams_arrive_one_by_one_however_they_are_sent() {
    for how in [&[][..], &["--udp-one-by-one"][..]] {
        let (port, responder) = udp_responder(Udp::Echo, 2 * 200);
        let mut args = vec![
            "--udp",
            "--clients",
            "2",
            "--lines",
            "200",
            "--window",
            "64",
        ];
        args.extend_from_slice(how);
        args.push(&port);
        let out = loadgen(&args);
        assert_eq!(responder.join().unwrap(), 400, "{how:?}");
        let json = stdout(&out);
        assert!(out.status.success(), "{how:?} {json} {:?}", out.stderr);
        assert_eq!(field(&json, "lines"), "400", "{how:?} {json}");
        assert_eq!(field(&json, "lost"), "0", "{how:?} {json}");
        assert_eq!(field(&json, "bytes_received"), "12800", "{how:?} {json}");
    }
}

/// Every 10th datagram gets no reply: exactly those are counted lost, the
/// run ends (it does not wait for them past --udp-timeout) and passes.
#[test]
fn udp_lost_datagrams_are_counted_exactly() {
    let (port, responder) = udp_responder(Udp::DropTenth, 2 * 50);
    let out = loadgen(&[
        "--udp",
        "--clients",
        "2",
        "--lines",
        "50",
        "--window",
        "5",
        &port,
    ]);
    assert_eq!(responder.join().unwrap(), 100);
    let json = stdout(&out);
    assert!(out.status.success(), "{json} {:?}", out.stderr);
    assert_eq!(field(&json, "lost"), "10", "{json}");
    assert_eq!(field(&json, "late"), "0", "{json}");
    assert_eq!(field(&json, "lines"), "90", "{json}");
    assert_eq!(field(&json, "errors"), "0", "{json}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("lost: 0"), "{text}");
}

/// Replies out of order are matched to their datagrams by number; a reply
/// with one byte changed is an error and fails the run.
#[test]
fn udp_replies_are_matched_and_checked() {
    let (port, responder) = udp_responder(Udp::Swap, 40);
    let out = loadgen(&[
        "--udp",
        "--clients",
        "1",
        "--lines",
        "40",
        "--window",
        "2",
        &port,
    ]);
    responder.join().unwrap();
    let json = stdout(&out);
    assert!(out.status.success(), "{json} {:?}", out.stderr);
    assert_eq!(field(&json, "lines"), "40", "{json}");
    assert_eq!(field(&json, "lost"), "0", "{json}");

    let (port, responder) = udp_responder(Udp::Corrupt, 20);
    let out = loadgen(&["--udp", "--clients", "1", "--lines", "20", &port]);
    responder.join().unwrap();
    let json = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{json}");
    assert_eq!(field(&json, "errors"), "1", "{json}");
    assert_eq!(field(&json, "lines"), "20", "{json}");
}

#[test]
fn udp_usage_errors_exit_2() {
    let input = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    for args in [
        &["--udp", "--handler", "ledger", "7"][..],
        &["--udp", "--input", input, "7"],
        &["--udp", "--udp-timeout", "0", "7"],
    ] {
        let out = Command::new(LOADGEN).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--udp"), "{args:?}: {err}");
    }
    let out = Command::new(LOADGEN)
        .args(["--threads", "0", "7"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// `--threads 2` presence on both servers: every list right, counts exact.
#[test]
fn presence_on_two_threads() {
    for bin in SERVERS {
        let server = Server::start(bin, &["--handler", "presence"]);
        let port = server.port.to_string();
        let out = loadgen(&[
            "--handler",
            "presence",
            "--threads",
            "2",
            "--clients",
            "25",
            &port,
        ]);
        let json = stdout(&out);
        assert!(out.status.success(), "{bin}: {json}");
        assert_eq!(field(&json, "threads"), "2", "{json}");
        assert_eq!(field(&json, "lines"), "625", "{json}");
        assert_eq!(field(&json, "errors"), "0", "{json}");
    }
}

/// A wrong list read by the second thread ends the run with an error.
#[test]
fn presence_wrong_list_on_another_thread_is_an_error() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let fake = std::thread::spawn(move || {
        let mut held = Vec::new();
        for (i, lists) in [&["c00001\n"][..], &["c00001 c00002\n", "c00001 c0000X\n"]]
            .iter()
            .enumerate()
        {
            let (s, _) = listener.accept().unwrap();
            let mut name = String::new();
            BufReader::new(&s).read_line(&mut name).unwrap();
            assert_eq!(name, format!("c{:05}\n", i + 1));
            held.push(s);
            for (s, list) in held.iter_mut().zip(lists.iter()) {
                s.write_all(list.as_bytes()).unwrap();
            }
        }
        // Keep the sockets open until loadgen has finished.
        let _ = done_rx.recv_timeout(WAIT);
    });
    let out = loadgen(&[
        "--handler",
        "presence",
        "--threads",
        "2",
        "--clients",
        "2",
        &port,
    ]);
    done_tx.send(()).unwrap();
    fake.join().unwrap();
    let json = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{json}");
    assert_eq!(field(&json, "errors"), "1", "{json}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("client 2 line 1"), "{err}");
}

/// The three server models: the event loop, two loops, the threaded server.
fn every_server() -> [(&'static str, &'static [&'static str]); 3] {
    [
        (SERVERS[0], &[]),
        (SERVERS[0], &["--reactors", "2"]),
        (SERVERS[1], &[]),
    ]
}

/// Issue 21: loadgen's defaults (50 clients) against a queue server's
/// defaults (10 slots) run without an error, and the bytes it reports are
/// the bytes of the protocol: `put ITEM\n` + `pop\n` sent, `True\n` + the
/// item's line received, per step (pops may return another client's item,
/// but over the run every item comes back once).
#[test]
fn queue_defaults_against_server_defaults() {
    const STEPS: u64 = 20;
    let (mut sent, mut received) = (0, 0);
    for id in 1..=50 {
        for step in 0..STEPS {
            let item = format!("lg{id}-{step}");
            sent += "put \n".len() + item.len() + "pop\n".len();
            received += "True\n".len() + item.len() + 1;
        }
    }
    for (bin, extra) in every_server() {
        let mut args = extra.to_vec();
        args.extend(["--handler", "queue"]);
        let server = Server::start(bin, &args);
        let port = server.port.to_string();
        let out = loadgen(&["--handler", "queue", "--lines", &STEPS.to_string(), &port]);
        let json = stdout(&out);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{bin} {extra:?}: {json} {err}");
        assert_eq!(field(&json, "errors"), "0", "{json}");
        assert_eq!(field(&json, "clients"), "50", "{json}");
        assert_eq!(
            field(&json, "lines"),
            (50 * STEPS * 2).to_string(),
            "{json}"
        );
        assert_eq!(field(&json, "bytes_sent"), sent.to_string(), "{json}");
        assert_eq!(
            field(&json, "bytes_received"),
            received.to_string(),
            "{json}"
        );
    }
}

/// Sends each of `commands` on one connection to `port`, returns the answers.
fn ask(port: u16, commands: &[&str]) -> Vec<String> {
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    commands
        .iter()
        .map(|c| {
            writer.write_all(format!("{c}\n").as_bytes()).unwrap();
            let mut answer = String::new();
            reader.read_line(&mut answer).unwrap();
            answer.trim_end().to_string()
        })
        .collect()
}

/// Issue 21: a queue that already holds items is not a usage error: the
/// run works around them and leaves them as they were, in order.
#[test]
fn queue_with_items_runs_and_keeps_them() {
    let server = Server::start(SERVERS[0], &["--handler", "queue", "--queue-size", "3"]);
    assert_eq!(ask(server.port, &["put A", "put B"]), ["True", "True"]);
    let out = loadgen(&[
        "--handler",
        "queue",
        "--clients",
        "7",
        "--lines",
        "30",
        &server.port.to_string(),
    ]);
    let json = stdout(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{json} {err}");
    assert_eq!(field(&json, "lines"), "420", "{json}");
    assert!(err.contains("the queue held 2 items"), "{err}");
    assert_eq!(
        ask(server.port, &["size", "pop", "pop", "pop"]),
        ["2", "A", "B", "None"]
    );
}

/// A queue of size 0 takes nothing: a run error (exit 1) saying so, not a
/// usage error and not a hang.
#[test]
fn queue_of_size_0_is_a_run_error() {
    let server = Server::start(SERVERS[0], &["--handler", "queue", "--queue-size", "0"]);
    let out = loadgen(&["--handler", "queue", &server.port.to_string()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("error: ") && err.contains("size is 0"),
        "{err}"
    );
}

/// Issue 21: `--help` names every mode, in the summary and in the list of
/// modes.
#[test]
fn help_lists_every_mode() {
    let out = Command::new(LOADGEN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = stdout(&out);
    let about = help.lines().next().unwrap_or_default();
    let (_, modes) = help.split_once("Modes:").expect("a Modes section");
    for mode in ["ledger", "echo", "presence", "queue", "grpc-queue"] {
        assert!(about.contains(mode), "the first line lacks {mode}: {about}");
        assert!(
            modes
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{mode} "))),
            "the Modes section has no entry for {mode}:\n{modes}"
        );
    }
}

/// Issue 21: loadgen's errors read like every other program's: `error: `
/// and the OS reason without ` (os error N)`.
#[test]
fn errors_read_error_without_errno() {
    let port = free_port();
    for mode in ["echo", "queue"] {
        let out = Command::new(LOADGEN)
            .args([
                "-H",
                mode,
                "--clients",
                "1",
                "--connect-timeout-ms",
                "5",
                &port,
            ])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{mode}: {err}");
        assert!(err.starts_with("error: "), "{mode}: {err}");
        assert!(err.contains("refused"), "{mode}: {err}");
        assert!(
            !err.contains("os error") && !err.contains("loadgen:"),
            "{mode}: {err}"
        );
    }
    // A usage error found after parsing reads like clap's own, usage line included.
    let out = Command::new(LOADGEN)
        .args(["-H", "echo", "--repeat", "2", &port])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.starts_with("error: ") && err.contains("Usage: loadgen"),
        "{err}"
    );
}
