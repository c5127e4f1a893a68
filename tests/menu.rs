//! menu (SPEC "menu", seed 004's EasyTCPServer) on both servers, and
//! `nonblocking-client menu` (SPEC's `menu` client row) against them,
//! through pipes and through a pseudo-terminal; option 1 in every form real
//! clients send it (`support/easy_menu_client.py` speaks like the seed's
//! EasyTCPClient/EasyUDPClient), and our client against a strict server of
//! the seed's shape.

#[macro_use]
mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Command, Output};
use std::thread;

use common::*;

every_server!(
    every_option_exact_bytes,
    option_1_in_two_messages_over_tcp,
    option_1_forms_over_udp_per_peer,
    seed_shaped_client_over_tcp_and_udp,
    requests_served_counts_across_clients,
    unknown_options_keep_the_connection,
    option_5_closes_without_a_reply,
    pipelined_requests_are_answered_in_order_up_to_5,
    sigint_prints_bye_bye_closes_everyone_and_exits_0,
    sigterm_prints_bye_bye_and_exits_0,
    ipv6_client_address,
    client_through_pipes,
    client_on_a_terminal_exits_on_5_and_ctrl_c,
);

const MENU: &str = "1) convert text to UPPER-case\n\
                    2) get my IP address and port number\n\
                    3) get server request count\n\
                    4) get server running time\n\
                    5) exit\n";

fn menu_server(kind: Kind) -> Server {
    let s = Server::start(kind, &["-H", "menu"]);
    assert_eq!(s.handler, "menu");
    s
}

every_server!(run_time_counts_from_the_servers_start);

/// `4` answers the time since the server started, whole seconds. Bounded
/// on both sides by the test's own clock, each bound in the direction a
/// slow machine cannot break: the server started after `spawned` and
/// before its Listening line was read, and answered between our request
/// and the reply. After 1.1 s, a server that always says `00:00:00` (or
/// counts from the connection) fails the lower bound.
fn run_time_counts_from_the_servers_start(kind: Kind) {
    let spawned = std::time::Instant::now();
    let mut s = menu_server(kind);
    let listening = std::time::Instant::now();
    let mut c = s.connect_as(1);
    // Time must pass for a run time to show it.
    thread::sleep(std::time::Duration::from_millis(1100));
    let asked = std::time::Instant::now();
    c.send(b"4\n");
    let shown = run_time_secs(&mut c);
    let answered = std::time::Instant::now();
    let at_least = (asked - listening).as_secs();
    let at_most = (answered - spawned).as_secs();
    assert!(at_least >= 1);
    assert!(
        (at_least..=at_most).contains(&shown),
        "run time {shown} s, the test measured {at_least} to {at_most} s"
    );
    s.stop(SIGINT);
}

/// A menu server that serves UDP on its port too.
fn menu_server_udp(kind: Kind) -> Server {
    Server::start(kind, &["-H", "menu", "--udp"])
}

/// Reads a `run time = HH:MM:SS` line and returns the seconds it shows.
fn run_time_secs(c: &mut Conn) -> u64 {
    let line = c.line_string();
    let hms = line
        .strip_prefix("run time = ")
        .and_then(|l| l.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("not a run time line: {line:?}"));
    let parts: Vec<&str> = hms.split(':').collect();
    assert_eq!(parts.len(), 3, "{line:?}");
    for p in &parts {
        assert!(
            p.len() >= 2 && p.bytes().all(|b| b.is_ascii_digit()),
            "{line:?}"
        );
    }
    let [h, m, s] = [0, 1, 2].map(|i| parts[i].parse::<u64>().unwrap());
    assert!(m < 60 && s < 60, "{line:?}");
    h * 3600 + m * 60 + s
}

fn every_option_exact_bytes(kind: Kind) {
    let mut s = menu_server(kind);
    let mut c = s.connect_as(1);
    let port = c.stream.local_addr().unwrap().port();
    c.send(b"1 hello, World 42\n");
    c.expect_bytes(b"HELLO, WORLD 42\n");
    // echo --upper's rules; every reply ends in `\n` whatever the request's end.
    c.send("1 zoë straße\r\n".as_bytes());
    c.expect_bytes("ZOË STRASSE\n".as_bytes());
    c.send(b"2\n");
    c.expect_bytes(format!("client IP = 127.0.0.1, port = {port}\n").as_bytes());
    c.send(b"3\n");
    c.expect_bytes(b"requests served = 4\n");
    // Just started: well under a minute, whatever the machine's load.
    c.send(b"4\n");
    assert!(run_time_secs(&mut c) < 60);
    // 50 ms with no newline is a request too (seed 004's client sends none).
    c.send(b"3");
    c.expect_bytes(b"requests served = 6\n");
    c.send(b"5\n");
    c.expect_eof();
    s.wait_disconnected(1);
    s.stop(SIGINT);
}

fn option_1_in_two_messages_over_tcp(kind: Kind) {
    let mut s = menu_server(kind);
    let mut c = s.connect_as(1);
    // `1|TEXT`, kept exactly after the bar.
    c.send(b"1|a|b  c\n");
    c.expect_bytes(b"A|B  C\n");
    // The seed's clients: `1`, then the sentence as its own line, in two
    // writes or in one; nothing comes back for the `1` alone.
    c.send(b"1\n");
    c.send(b"hello there\n");
    c.expect_bytes(b"HELLO THERE\n");
    c.send(b"1\nsecond\n");
    c.expect_bytes(b"SECOND\n");
    // The sentence is whatever comes next, `5` and `1` included.
    c.send(b"1\n5\n1\n1\n");
    c.expect_bytes(b"5\n1\n");
    // Each exchange was one request.
    c.send(b"3\n");
    c.expect_bytes(b"requests served = 6\n");

    // A `1` still waiting at EOF is dropped: no reply, not counted.
    let mut d = s.connect_as(2);
    d.send(b"1\n");
    d.shutdown_write();
    d.expect_eof();
    s.wait_disconnected(2);
    c.send(b"3\n");
    c.expect_bytes(b"requests served = 7\n");
    s.stop(SIGINT);
}

/// Sends `datagram` from `socket` to `server` and expects exactly `reply`.
fn udp_ask(socket: &UdpSocket, server: SocketAddr, datagram: &[u8], reply: &[u8]) {
    socket.send_to(datagram, server).unwrap();
    let mut buf = [0u8; 4096];
    let n = socket
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no reply to {}: {e}", show(datagram)));
    assert_eq!(show(&buf[..n]), show(reply), "reply to {}", show(datagram));
}

fn udp_peer() -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(TIMEOUT)).unwrap();
    socket
}

fn option_1_forms_over_udp_per_peer(kind: Kind) {
    let mut s = menu_server_udp(kind);
    let (a, b) = (udp_peer(), udp_peer());
    udp_ask(&a, s.addr, b"1 one\n", b"ONE");
    udp_ask(&a, s.addr, b"1|two", b"TWO");
    // `1` alone is not answered; the peer's next datagram is the sentence,
    // whatever another peer sends in between, and whatever it holds.
    a.send_to(b"1", s.addr).unwrap();
    s.wait_connected(1);
    udp_ask(&b, s.addr, b"3", b"requests served = 3");
    udp_ask(&a, s.addr, b"three\r\n", b"THREE");
    a.send_to(b"1", s.addr).unwrap();
    udp_ask(&a, s.addr, b"5", b"5");
    udp_ask(&b, s.addr, b"3", b"requests served = 6");
    s.stop(SIGINT);

    // A `1` waiting when its peer is forgotten (--udp-idle) is dropped:
    // after the peer's disconnect line, its next datagram is an option.
    let mut s = Server::start(kind, &["-H", "menu", "--udp", "--udp-idle", "1"]);
    a.send_to(b"1", s.addr).unwrap();
    s.wait_disconnected(1);
    udp_ask(&a, s.addr, b"hello", b"error: unknown option");
    udp_ask(&a, s.addr, b"3", b"requests served = 2");
    s.stop(SIGINT);
}

/// Runs `python3 tests/support/SCRIPT ARGS...` to its end and returns its
/// stdout; the test fails, showing both outputs, if it did not exit 0.
fn python_support(script: &str, args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support")
        .join(script);
    let mut cmd = Command::new("python3");
    cmd.arg(&script).args(args);
    let out = run_with_input(cmd, b"");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{} {args:?}: {:?}\n{stdout}\n{}",
        script.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `support/easy_menu_client.py TRANSPORT 127.0.0.1 PORT STEPS`: its stdout.
fn easy_client(transport: &str, server: &Server, steps: &[&str]) -> String {
    let port = server.port().to_string();
    let mut args = vec![transport, "127.0.0.1", &port];
    args.extend_from_slice(steps);
    python_support("easy_menu_client.py", &args)
}

fn seed_shaped_client_over_tcp_and_udp(kind: Kind) {
    let mut s = menu_server_udp(kind);
    let steps = ["1=hello, World", "1=5", "9", "3", "5"];
    // TCP first (client 1), then UDP (client 2): the count goes on. Over
    // TCP the client reads after its `5` and sees the close; over UDP it
    // just stops, and its `5` makes the server forget it.
    for (id, transport, served, end) in [(1, "tcp", 4, "closed\n"), (2, "udp", 8, "")] {
        assert_eq!(
            easy_client(transport, &s, &steps),
            format!(
                "Reply from server: HELLO, WORLD\n\
                 Reply from server: 5\n\
                 Reply from server: error: unknown option\n\
                 Reply from server: requests served = {served}\n{end}"
            ),
            "{transport}"
        );
        s.wait_disconnected(id);
    }
    s.stop(SIGINT);
}

fn requests_served_counts_across_clients(kind: Kind) {
    let mut s = menu_server(kind);
    let mut a = s.connect_as(1);
    let mut b = s.connect_as(2);
    a.send(b"1 x\n");
    a.expect_bytes(b"X\n");
    b.send(b"2\n");
    b.line();
    a.send(b"nonsense\n");
    a.expect_bytes(b"error: unknown option\n");
    b.send(b"3\n");
    b.expect_bytes(b"requests served = 4\n");
    a.send(b"3\n");
    a.expect_bytes(b"requests served = 5\n");
    // A client that leaves takes nothing from the count.
    drop(b);
    s.wait_disconnected(2);
    let mut c = s.connect_as(3);
    c.send(b"3\n");
    c.expect_bytes(b"requests served = 6\n");
    s.stop(SIGINT);
}

fn unknown_options_keep_the_connection(kind: Kind) {
    let mut s = menu_server(kind);
    let mut c = s.connect_as(1);
    for bad in [
        &b"0\n"[..],
        b"6\n",
        b"\n",
        b"12\n",
        b"1hello\n",
        b"4 now\n",
        b"exit\r\n",
    ] {
        c.send(bad);
        c.expect_bytes(b"error: unknown option\n");
    }
    c.send(b"3\n");
    c.expect_bytes(b"requests served = 8\n");
    assert!(!s.seen_status(|l| l.starts_with("Client 1 disconnected")));
    s.stop(SIGINT);
}

fn option_5_closes_without_a_reply(kind: Kind) {
    let mut s = menu_server(kind);
    let mut a = s.connect_as(1);
    let mut b = s.connect_as(2);
    a.send(b"5\n");
    a.expect_eof();
    assert_eq!(s.wait_disconnected(1), 1);
    // Idle-flushed `5` closes too; the other client is untouched.
    b.send(b"3\n");
    b.expect_bytes(b"requests served = 1\n");
    b.send(b"5");
    b.expect_eof();
    assert_eq!(s.wait_disconnected(2), 0);
    s.stop(SIGINT);
}

fn pipelined_requests_are_answered_in_order_up_to_5(kind: Kind) {
    let mut s = menu_server(kind);
    let mut c = s.connect_as(1);
    // One write; what follows `5` is neither answered nor counted.
    c.send(b"3\n1 a\n\n3\r\n5\n3\n");
    let got = c.read_to_eof();
    assert_eq!(
        show(&got),
        show(b"requests served = 1\nA\nerror: unknown option\nrequests served = 4\n")
    );
    s.wait_disconnected(1);
    let mut d = s.connect_as(2);
    d.send(b"3\n");
    d.expect_bytes(b"requests served = 5\n");
    s.stop(SIGINT);
}

fn stop_says_bye_bye(kind: Kind, sig: i32) {
    let mut s = menu_server(kind);
    let mut a = s.connect_as(1);
    let mut b = s.connect_as(2);
    a.send(b"3\n");
    a.expect_bytes(b"requests served = 1\n");
    s.signal(sig);
    a.expect_closed();
    b.expect_closed();
    s.assert_exit_0();
    assert_eq!(s.last_status(), "Bye bye~", "{}", s.transcript());
    let byes = s.status_lines().iter().filter(|l| *l == "Bye bye~").count();
    assert_eq!(byes, 1, "{}", s.transcript());
}

fn sigint_prints_bye_bye_closes_everyone_and_exits_0(kind: Kind) {
    stop_says_bye_bye(kind, SIGINT);
}

fn sigterm_prints_bye_bye_and_exits_0(kind: Kind) {
    stop_says_bye_bye(kind, SIGTERM);
}

fn ipv6_client_address(kind: Kind) {
    require_ipv6();
    let mut s = Server::start(kind, &["-H", "menu", "-b", "::1"]);
    let mut c = s.connect_as(1);
    let port = c.stream.local_addr().unwrap().port();
    c.send(b"2\n");
    // No brackets: the IP alone, then the port (SPEC's two fields).
    c.expect_bytes(format!("client IP = ::1, port = {port}\n").as_bytes());
    s.stop(SIGINT);
}

// ---------------------------------------------------------------------------
// The client.

fn client() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nonblocking-client"))
}

/// Runs the client with `args` and `input` on a pipe.
fn run_client(args: &[&str], input: &[u8]) -> Output {
    let mut cmd = client();
    cmd.args(args);
    run_with_input(cmd, input)
}

/// The transcript with every `RTT = N.NNN ms` value checked and replaced by
/// `X`.
fn mask_rtt(text: &str) -> String {
    let mut masked = String::new();
    for line in text.split_inclusive('\n') {
        match line.strip_prefix("RTT = ") {
            Some(rest) => {
                let ms = rest.strip_suffix(" ms\n").expect("`RTT = N ms`");
                let (whole, decimals) = ms.split_once('.').expect("a decimal point");
                assert!(
                    whole.bytes().all(|b| b.is_ascii_digit()) && !whole.is_empty(),
                    "{line}"
                );
                assert!(
                    decimals.len() == 3 && decimals.bytes().all(|b| b.is_ascii_digit()),
                    "{line}"
                );
                masked.push_str("RTT = X ms\n");
            }
            None => masked.push_str(line),
        }
    }
    masked
}

fn client_through_pipes(kind: Kind) {
    let mut s = menu_server(kind);
    let addr = s.addr.to_string();
    let out = run_client(&["menu", &addr], b"1\nhello, world\n2\n3\n9\n5\n");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{:?}\n{stdout}", out.status);
    s.wait_connected(1);
    s.wait_disconnected(1);
    // The client's port is whatever the OS gave it: take it from the reply.
    let port_line = stdout
        .lines()
        .find(|l| l.starts_with("Reply from server: client IP = 127.0.0.1, port = "))
        .unwrap_or_else(|| panic!("no address reply:\n{stdout}"));
    let expected = format!(
        "{MENU}Input option: 1\nInput sentence: hello, world\n\
         Reply from server: HELLO, WORLD\nRTT = X ms\n\n\
         {MENU}Input option: 2\n{port_line}\nRTT = X ms\n\n\
         {MENU}Input option: 3\nReply from server: requests served = 3\nRTT = X ms\n\n\
         {MENU}Input option: 9\nInvalid option\n\n\
         {MENU}Input option: 5\nBye bye~\n"
    );
    assert_eq!(mask_rtt(&stdout), expected);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // End of input instead of 5: the same farewell, exit 0.
    let out = run_client(&["menu", &addr], b"3\n");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{stdout}");
    assert!(
        mask_rtt(&stdout).ends_with(&format!(
            "Reply from server: requests served = 4\nRTT = X ms\n\n{MENU}Input option: \nBye bye~\n"
        )),
        "{stdout}"
    );
    s.stop(SIGINT);
}

/// Runs the client on a pseudo-terminal through `support/menu_pty.py`
/// with `steps`; returns the screen, ending in `EXIT CODE`.
fn on_terminal(addr: &str, steps: &[&str]) -> String {
    let mut args = vec![env!("CARGO_BIN_EXE_nonblocking-client"), "menu", addr, "--"];
    args.extend_from_slice(steps);
    python_support("menu_pty.py", &args)
}

fn client_on_a_terminal_exits_on_5_and_ctrl_c(kind: Kind) {
    let mut s = menu_server(kind);
    let addr = s.addr.to_string();
    // The terminal echoes what is typed; the client prints only prompts,
    // replies and RTTs.
    let screen = on_terminal(
        &addr,
        &[
            "expect=Input option: ",
            "type=1\\n",
            "expect=Input sentence: ",
            "type=make me loud\\n",
            "expect=RTT = ",
            "expect=Input option: ",
            "type=4\\n",
            "expect=Reply from server: run time = 00:",
            "expect=Input option: ",
            "type=5\\n",
        ],
    );
    let screen = mask_rtt(&screen);
    assert!(
        screen.starts_with(&format!(
            "{MENU}Input option: 1\nInput sentence: make me loud\n\
             Reply from server: MAKE ME LOUD\nRTT = X ms\n\n{MENU}Input option: 4\n"
        )),
        "{screen}"
    );
    assert!(
        screen.ends_with(&format!("{MENU}Input option: 5\nBye bye~\nEXIT 0\n")),
        "{screen}"
    );
    s.wait_disconnected(1);

    // Ctrl+C at the prompt: the terminal sends SIGINT; `Bye bye~`, exit 0,
    // and the server sees the client go.
    let screen = on_terminal(
        &addr,
        &[
            "expect=Input option: ",
            "type=3\\n",
            "expect=Input option: ",
            "ctrl-c",
        ],
    );
    let screen = mask_rtt(&screen);
    assert!(
        screen.contains("Reply from server: requests served = 3\nRTT = X ms\n"),
        "{screen}"
    );
    assert!(
        screen.ends_with("Input option: ^C\nBye bye~\nEXIT 0\n"),
        "{screen}"
    );
    s.wait_disconnected(2);

    // Ctrl+D (end of input) at the prompt.
    let screen = on_terminal(&addr, &["expect=Input option: ", "ctrl-d"]);
    assert!(
        screen.ends_with("Input option: \nBye bye~\nEXIT 0\n"),
        "{screen}"
    );
    s.wait_disconnected(3);
    s.stop(SIGINT);
}

/// A strict server of the seed's shape answers one request: `1` makes the
/// next message the sentence; `2` to `4` stand alone; it knows no `1 TEXT`.
/// `waiting` says whether a `1` came before; `None` means "no reply".
fn strict_reply(waiting: &mut bool, msg: &str) -> Option<String> {
    if std::mem::take(waiting) {
        return Some(msg.to_uppercase());
    }
    match msg {
        "1" => {
            *waiting = true;
            None
        }
        "3" => Some("requests served = 2".to_string()),
        "5" => None,
        _ => Some("error: unknown option".to_string()),
    }
}

/// Runs our client with `args` on the input `1`, `hello`, `3`, `5`
/// against a [`strict_reply`] server, and checks what it printed.
fn session_with_a_strict_server(args: &[&str]) {
    let out = run_client(args, b"1\nhello\n3\n5\n");
    let stdout = mask_rtt(&String::from_utf8(out.stdout).unwrap());
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("Input sentence: hello\nReply from server: HELLO\nRTT = X ms\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Reply from server: requests served = 2\nRTT = X ms\n"),
        "{stdout}"
    );
    assert!(stdout.ends_with("Input option: 5\nBye bye~\n"), "{stdout}");
}

// The client against a strict line server shaped like the seed's (and like
// EasyTCPServer.java in the wild): it reads lines and takes the line after
// a `1` as the sentence, so a `1 TEXT` would get an error here.
#[test]
fn client_over_tcp_against_a_strict_seed_shaped_server() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = thread::spawn(move || {
        let (stream, _) = listener.accept().expect("a client");
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut writer = stream.try_clone().unwrap();
        let mut got = Vec::new();
        let mut waiting = false;
        for line in BufReader::new(stream).lines() {
            let line = line.expect("a line");
            got.push(line.clone());
            if line == "5" && !waiting {
                break;
            }
            if let Some(reply) = strict_reply(&mut waiting, &line) {
                writer.write_all(format!("{reply}\n").as_bytes()).unwrap();
            }
        }
        got
    });
    session_with_a_strict_server(&["menu", &addr]);
    assert_eq!(server.join().unwrap(), ["1", "hello", "3", "5"]);
}

// The client's UDP side against a strict datagram server of the seed's
// shape: `1` and the sentence are two datagrams, the reply one datagram;
// when the reply is lost, the client sends both again.
#[test]
fn client_over_udp_against_a_strict_seed_shaped_server_resends_a_lost_request() {
    let responder = UdpSocket::bind("127.0.0.1:0").unwrap();
    responder.set_read_timeout(Some(TIMEOUT)).unwrap();
    let addr = responder.local_addr().unwrap().to_string();
    let server = thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        let mut waiting = false;
        let mut dropped = false;
        loop {
            let (n, from) = responder.recv_from(&mut buf).expect("a datagram");
            let msg = String::from_utf8(buf[..n].to_vec()).unwrap();
            got.push(msg.clone());
            if msg == "5" && !waiting {
                break;
            }
            let Some(reply) = strict_reply(&mut waiting, &msg) else {
                continue;
            };
            // The first reply is "lost", so the client tries again.
            if !std::mem::replace(&mut dropped, true) {
                continue;
            }
            responder.send_to(reply.as_bytes(), from).unwrap();
        }
        got
    });
    session_with_a_strict_server(&["menu", "--udp", &addr]);
    assert_eq!(
        server.join().unwrap(),
        ["1", "hello", "1", "hello", "3", "5"]
    );
}

#[test]
fn client_names_an_unreachable_server_and_exits_1() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let out = run_client(&["menu", &addr], b"3\n");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&addr), "{stderr}");
}
