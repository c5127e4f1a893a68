//! menu (seed 004: the EasyTCPServer that HW3 inherits): one request per
//! line (TCP) or datagram (UDP), one reply line each.
//!
//! | request            | reply                                           |
//! |--------------------|-------------------------------------------------|
//! | `1 TEXT`, `1\|TEXT` | TEXT in upper case (echo's `--upper` rules)     |
//! | `1` alone          | none yet: the client's next message is TEXT     |
//! | `2`                | `client IP = 127.0.0.1, port = 54321`           |
//! | `3`                | `requests served = N` (all clients, errors too) |
//! | `4`                | `run time = HH:MM:SS` since the server started  |
//! | `5`                | no reply; the connection is closed              |
//! | other              | `error: unknown option` (the connection stays)  |
//!
//! A bare `1` is how the seed's own clients send option 1 (the option, then
//! the sentence as its own line or datagram), so the handler remembers, per
//! client, that the next message is a sentence, whatever it holds (`5`
//! included).
//!
//! Like every handler it reads no clock: the run time is the event's time
//! (`Outbox::now`, set by the server) minus the start instant it was built
//! with, so tests can put it at any distance from the start.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Instant;

use super::echo::push_upper;
use super::{
    BuildError, Built, ClientId, Finish, Handler, Outbox, Registration, ServerStats, Traits,
    no_files, strip_terminator,
};
use crate::config::ServerConfig;

/// What the server prints at exit (SPEC: on SIGINT or SIGTERM).
pub const FAREWELL: &str = "Bye bye~";

pub struct Menu {
    /// The server's start, given at construction: the run time counts
    /// from here, not from the first client.
    started: Instant,
    /// Replies sent since start, to every client (error replies included).
    served: u64,
    /// Each connected client's address as the server saw it at connect.
    peers: HashMap<ClientId, SocketAddr>,
    /// Clients that sent a bare `1`: their next message is the sentence.
    /// At most one entry per connected client, removed with the client.
    awaiting_sentence: HashSet<ClientId>,
}

/// One parsed request line (terminator already removed).
#[derive(Debug, PartialEq, Eq)]
enum Request<'a> {
    Upper(&'a [u8]),
    /// A bare `1`: the sentence comes as the next message.
    AskSentence,
    Address,
    Count,
    RunTime,
    Exit,
    Unknown,
}

/// `1` then one space or `|` then TEXT, kept exactly (further spaces are
/// TEXT). The options stand alone otherwise, ASCII whitespace around them
/// ignored (`nc` users type `2 ` too): `1 ` is a bare `1`, not an empty
/// TEXT, since a person who typed it is waiting to give the sentence.
fn parse(line: &[u8]) -> Request<'_> {
    if line.trim_ascii() == b"1" {
        return Request::AskSentence;
    }
    if let Some(text) = line
        .strip_prefix(b"1 ")
        .or_else(|| line.strip_prefix(b"1|"))
    {
        return Request::Upper(text);
    }
    match line.trim_ascii() {
        b"2" => Request::Address,
        b"3" => Request::Count,
        b"4" => Request::RunTime,
        b"5" => Request::Exit,
        _ => Request::Unknown,
    }
}

impl Menu {
    /// A menu whose run time counts from `started` (the server passes its
    /// own start; tests pass any instant).
    pub fn new(started: Instant) -> Self {
        Menu {
            started,
            served: 0,
            peers: HashMap::new(),
            awaiting_sentence: HashSet::new(),
        }
    }

    /// Drops everything kept about `id`: no state outlives a client.
    fn forget(&mut self, id: ClientId) {
        self.peers.remove(&id);
        self.awaiting_sentence.remove(&id);
    }
}

/// `HH:MM:SS`, hours at least two digits and unbounded (`27:03:09`).
pub fn format_run_time(secs: u64) -> String {
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// `client IP = ..., port = ...`: the IP without brackets (`::1`); an
/// IPv4-mapped IPv6 address (a dual-stack `::` listener) shows as the IPv4
/// address the client actually used.
pub fn format_peer(peer: SocketAddr) -> String {
    format!(
        "client IP = {}, port = {}",
        peer.ip().to_canonical(),
        peer.port()
    )
}

/// What menu is like (see [`Traits`]).
pub const TRAITS: Traits = Traits::interactive("menu");

/// menu's entry in [`super::REGISTRY`].
pub static REGISTRATION: Registration = Registration {
    traits: &TRAITS,
    help: "Seed 004's menu: `1` then TEXT, `1 TEXT` or `1|TEXT` (upper case), 2 (your address), 3 (request count), 4 (run time), 5 (close)",
    files: no_files,
    build: build_menu,
};

impl Handler for Menu {
    fn traits(&self) -> &'static Traits {
        &TRAITS
    }

    fn on_connect(&mut self, id: ClientId, peer: SocketAddr, _out: &mut Outbox) {
        self.peers.insert(id, peer);
    }

    fn on_message(&mut self, id: ClientId, msg: &[u8], out: &mut Outbox) {
        let line = strip_terminator(msg);
        // The sentence after a bare `1` is never an option: the seed's
        // clients send whatever was typed at `Input sentence: `.
        let request = if self.awaiting_sentence.remove(&id) {
            Request::Upper(line)
        } else {
            parse(line)
        };
        match request {
            Request::Exit => {
                // Nothing is answered, so nothing is counted.
                self.forget(id);
                out.close(id);
                return;
            }
            Request::AskSentence => {
                // Answered (and counted) when the sentence comes.
                self.awaiting_sentence.insert(id);
                return;
            }
            _ => {}
        }
        self.served += 1;
        let text = match request {
            Request::Upper(text) => {
                out.send_with(id, |buf| {
                    push_upper(buf, text);
                    buf.push(b'\n');
                });
                return;
            }
            Request::Address => match self.peers.get(&id) {
                Some(&peer) => format_peer(peer),
                // A server always connects a client first; say so if not.
                None => "error: address unknown".to_string(),
            },
            Request::Count => format!("requests served = {}", self.served),
            Request::RunTime => {
                let up = out.now().saturating_duration_since(self.started);
                format!("run time = {}", format_run_time(up.as_secs()))
            }
            Request::Exit | Request::AskSentence => unreachable!("handled above"),
            Request::Unknown => "error: unknown option".to_string(),
        };
        out.send_with(id, |buf| {
            buf.extend_from_slice(text.as_bytes());
            buf.push(b'\n');
        });
    }

    /// A `1` still waiting for its sentence (EOF, or a UDP peer forgotten
    /// after `--udp-idle`) is dropped unanswered and uncounted.
    fn on_disconnect(&mut self, id: ClientId, _out: &mut Outbox) {
        self.forget(id);
    }

    /// The server prints the farewell after closing every client, then
    /// exits 0.
    fn finish(&mut self, _stats: &ServerStats) -> Finish {
        Finish {
            status: vec![FAREWELL.to_string()],
            ..Finish::default()
        }
    }
}

fn build_menu(_: &ServerConfig) -> Result<Built, BuildError> {
    // The server's start: build runs once, just before the bind.
    Ok(Built::plain(Menu::new(Instant::now())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::{Effect, Framing, ShutdownPolicy, TEST_PEER};
    use std::time::Duration;

    fn menu() -> (Menu, Outbox, Instant) {
        let start = Instant::now();
        let mut out = Outbox::new();
        out.set_now(start);
        (Menu::new(start), out, start)
    }

    fn ask(menu: &mut Menu, out: &mut Outbox, id: u64, msg: &[u8]) -> Vec<Effect> {
        menu.on_message(ClientId(id), msg, out);
        out.take()
    }

    fn line(id: u64, text: &str) -> Vec<Effect> {
        vec![Effect::Send(ClientId(id), format!("{text}\n").into_bytes())]
    }

    #[test]
    fn option_1_upper_cases_with_echo_rules() {
        let (mut m, mut out, _) = menu();
        assert_eq!(
            ask(&mut m, &mut out, 1, b"1 hello world\n"),
            line(1, "HELLO WORLD")
        );
        assert_eq!(
            ask(&mut m, &mut out, 1, b"1 zo\xc3\xab\r\n"),
            line(1, "ZOË")
        );
        assert_eq!(
            ask(&mut m, &mut out, 1, b"1  two  spaces"),
            line(1, " TWO  SPACES")
        );
        assert_eq!(ask(&mut m, &mut out, 1, b"1 \n"), vec![], "a bare 1");
        assert_eq!(ask(&mut m, &mut out, 1, b"\n"), line(1, ""), "empty TEXT");
        assert_eq!(
            ask(&mut m, &mut out, 1, b"1 caf\xe9\n"),
            vec![Effect::Send(ClientId(1), b"CAF\xe9\n".to_vec())]
        );
    }

    #[test]
    fn option_1_with_a_bar_keeps_the_text_exactly() {
        let (mut m, mut out, _) = menu();
        assert_eq!(ask(&mut m, &mut out, 1, b"1|a|b c\n"), line(1, "A|B C"));
        assert_eq!(ask(&mut m, &mut out, 1, b"1| x "), line(1, " X "));
        assert_eq!(ask(&mut m, &mut out, 1, b"1|\r\n"), line(1, ""));
    }

    #[test]
    fn a_bare_1_makes_the_next_message_the_sentence_whatever_it_holds() {
        let (mut m, mut out, _) = menu();
        m.on_connect(ClientId(1), TEST_PEER, &mut out);
        for (sentence, reply) in [
            (&b"hello there\n"[..], "HELLO THERE"),
            (b"5\n", "5"),
            (b"1\n", "1"),
            (b"3", "3"),
            (b"1 x\r\n", "1 X"),
            (b"\n", ""),
        ] {
            assert_eq!(ask(&mut m, &mut out, 1, b"1\n"), vec![], "no reply yet");
            assert_eq!(
                ask(&mut m, &mut out, 1, sentence),
                line(1, reply),
                "{sentence:?}"
            );
        }
        // Each exchange was one request; the state is gone after it.
        assert_eq!(
            ask(&mut m, &mut out, 1, b"3\n"),
            line(1, "requests served = 7")
        );
        assert_eq!(
            ask(&mut m, &mut out, 1, b"5"),
            vec![Effect::Close(ClientId(1))]
        );
    }

    #[test]
    fn the_sentence_is_awaited_per_client() {
        let (mut m, mut out, _) = menu();
        m.on_connect(ClientId(1), TEST_PEER, &mut out);
        m.on_connect(ClientId(2), TEST_PEER, &mut out);
        assert_eq!(ask(&mut m, &mut out, 1, b"1"), vec![]);
        // Client 2's options stay options while client 1 is mid-request.
        assert_eq!(
            ask(&mut m, &mut out, 2, b"3"),
            line(2, "requests served = 1")
        );
        assert_eq!(ask(&mut m, &mut out, 1, b"abc"), line(1, "ABC"));
        // A client that leaves mid-request leaves nothing behind, and the
        // unanswered `1` is not counted.
        assert_eq!(ask(&mut m, &mut out, 2, b"1\n"), vec![]);
        m.on_disconnect(ClientId(2), &mut out);
        assert!(m.awaiting_sentence.is_empty());
        assert_eq!(
            ask(&mut m, &mut out, 1, b"3"),
            line(1, "requests served = 3")
        );
    }

    #[test]
    fn option_2_formats_ipv4_ipv6_and_mapped_addresses() {
        let (mut m, mut out, _) = menu();
        for (id, peer, text) in [
            (1, "127.0.0.1:54321", "client IP = 127.0.0.1, port = 54321"),
            (2, "[::1]:5", "client IP = ::1, port = 5"),
            (3, "[::ffff:127.0.0.1]:7", "client IP = 127.0.0.1, port = 7"),
            (
                4,
                "[fe80::1:2]:65535",
                "client IP = fe80::1:2, port = 65535",
            ),
        ] {
            m.on_connect(ClientId(id), peer.parse().unwrap(), &mut out);
            assert_eq!(ask(&mut m, &mut out, id, b"2\n"), line(id, text));
        }
        // Each client its own address, whatever the order of requests.
        assert_eq!(
            ask(&mut m, &mut out, 2, b"2"),
            line(2, "client IP = ::1, port = 5")
        );
    }

    #[test]
    fn option_3_counts_every_answer_of_every_client_errors_included() {
        let (mut m, mut out, _) = menu();
        m.on_connect(ClientId(1), TEST_PEER, &mut out);
        m.on_connect(ClientId(2), TEST_PEER, &mut out);
        ask(&mut m, &mut out, 1, b"1 a\n");
        ask(&mut m, &mut out, 2, b"9\n");
        ask(&mut m, &mut out, 2, b"\n");
        assert_eq!(
            ask(&mut m, &mut out, 1, b"3\n"),
            line(1, "requests served = 4")
        );
        assert_eq!(
            ask(&mut m, &mut out, 2, b"3\r\n"),
            line(2, "requests served = 5")
        );
        // Option 5 is answered by no reply, so it is not counted.
        assert_eq!(
            ask(&mut m, &mut out, 2, b"5\n"),
            vec![Effect::Close(ClientId(2))]
        );
        assert_eq!(
            ask(&mut m, &mut out, 1, b"3"),
            line(1, "requests served = 6")
        );
    }

    #[test]
    fn option_4_reports_time_since_the_start_past_an_hour_and_a_day() {
        let (mut m, mut out, start) = menu();
        for (secs, text) in [
            (0, "run time = 00:00:00"),
            (59, "run time = 00:00:59"),
            (3600 + 2 * 60 + 3, "run time = 01:02:03"),
            (27 * 3600 + 3 * 60 + 9, "run time = 27:03:09"),
            (100 * 3600, "run time = 100:00:00"),
        ] {
            out.set_now(start + Duration::from_secs(secs) + Duration::from_millis(999));
            assert_eq!(ask(&mut m, &mut out, 1, b"4\n"), line(1, text), "{secs}");
        }
        // An event time before the start (only a test can make one) is 0.
        let mut early = Menu::new(start + Duration::from_secs(10));
        out.set_now(start);
        assert_eq!(
            ask(&mut early, &mut out, 1, b"4\n"),
            line(1, "run time = 00:00:00")
        );
    }

    #[test]
    fn unknown_options_get_an_error_and_keep_the_connection() {
        let (mut m, mut out, _) = menu();
        for bad in [
            &b"0\n"[..],
            b"6\n",
            b"\n",
            b"",
            b"12\n",
            b"1hello\n",
            b"2 extra\n",
            b"one\n",
            b" 1 x\n",
            b"\xff\n",
        ] {
            assert_eq!(
                ask(&mut m, &mut out, 1, bad),
                line(1, "error: unknown option"),
                "{bad:?}"
            );
        }
        // Whitespace around a bare option is forgiven.
        m.on_connect(ClientId(1), TEST_PEER, &mut out);
        assert_eq!(
            ask(&mut m, &mut out, 1, b" 2 \n"),
            line(1, "client IP = 127.0.0.1, port = 40000")
        );
    }

    #[test]
    fn option_5_closes_without_a_reply_and_forgets_the_client() {
        let (mut m, mut out, _) = menu();
        m.on_connect(ClientId(1), TEST_PEER, &mut out);
        m.on_connect(ClientId(2), TEST_PEER, &mut out);
        assert_eq!(
            ask(&mut m, &mut out, 1, b"5"),
            vec![Effect::Close(ClientId(1))]
        );
        ask(&mut m, &mut out, 2, b"1");
        m.on_disconnect(ClientId(2), &mut out);
        assert!(m.peers.is_empty(), "no state outlives a connection");
        assert!(m.awaiting_sentence.is_empty());
    }

    #[test]
    fn shape_and_farewell() {
        let (mut m, _, _) = menu();
        assert_eq!(m.traits().name, "menu");
        assert_eq!(m.traits().framing, Framing::Lines { idle_flush: true });
        assert_eq!(m.traits().shutdown, ShutdownPolicy::CloseNow);
        let finish = m.finish(&ServerStats::default());
        assert_eq!(finish.status, vec!["Bye bye~".to_string()]);
        assert!(finish.files.is_empty());
    }
}
