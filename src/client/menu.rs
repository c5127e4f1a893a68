//! `nonblocking-client menu ADDR [--udp]` (seed 004's EasyTCPClient): the
//! five-option menu, one request and one reply line per choice, with the
//! round-trip time measured on a monotonic clock around the request.
//!
//! Option 1 goes out as the seed's clients send it: `1`, then the sentence
//! as its own message (line or datagram), one reply for the two. That is
//! what a server written to the seed expects; ours takes `1 TEXT` too.
//!
//! The protocol logic ([`menu_session`]) runs over plain readers, writers
//! and a [`Transport`], so it is tested with in-memory buffers; [`run_menu`]
//! does the set-up (socket, SIGINT).

use std::io::{self, BufRead, BufReader, IsTerminal, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use signal_hook::consts::SIGINT;
use signal_hook::iterator::Signals;

use crate::addr::{ConnectError, Target};
use crate::client::{ClientError, Fault, limit_error};

/// The menu, shown before every `Input option: ` prompt.
pub const MENU: &str = "1) convert text to UPPER-case\n\
                        2) get my IP address and port number\n\
                        3) get server request count\n\
                        4) get server running time\n\
                        5) exit\n";

/// Printed on `5`, at the end of stdin, and on Ctrl+C.
pub const FAREWELL: &str = "Bye bye~";

/// Longest reply line kept; a longer one is a protocol error (a menu reply
/// is at most as long as the sentence we sent).
pub const MAX_REPLY_BYTES: usize = 16 * 1024 * 1024;

/// UDP: how long to wait for a reply before sending the request again, and
/// how many times to send it in all (datagrams get lost; SPEC's atm client
/// uses the same numbers).
pub const UDP_WAIT: Duration = Duration::from_secs(2);
pub const UDP_TRIES: u32 = 3;

/// One request, one reply: the two ways of carrying them.
pub trait Transport {
    /// Sends the messages of one request in order (no line ends; each its
    /// own line or datagram) and returns the one reply line without its
    /// line end.
    fn request(&mut self, request: &[&[u8]]) -> Result<Vec<u8>, Fault>;
    /// Sends `request` and expects no reply (option 5), best effort.
    fn tell(&mut self, request: &[u8]);
}

/// TCP: one line each way.
pub struct TcpTransport<R> {
    replies: BufReader<R>,
    stream: TcpStream,
}

impl TcpTransport<TcpStream> {
    pub fn new(stream: TcpStream) -> io::Result<Self> {
        let reader = stream.try_clone()?;
        Ok(TcpTransport {
            replies: BufReader::new(reader),
            stream,
        })
    }
}

impl<R: Read> Transport for TcpTransport<R> {
    fn request(&mut self, request: &[&[u8]]) -> Result<Vec<u8>, Fault> {
        // One write for all the lines: the same bytes as one write each,
        // in one segment.
        let mut lines = Vec::with_capacity(request.iter().map(|m| m.len() + 1).sum());
        for message in request {
            lines.extend_from_slice(message);
            lines.push(b'\n');
        }
        self.stream.write_all(&lines).map_err(Fault::Send)?;
        let reply = read_reply(&mut self.replies)?;
        // A limit error is the server's refusal before it closes, not a
        // reply (option 1 answers in upper case, so none reads like one).
        match limit_error(&reply) {
            Some(line) => Err(Fault::Server(line)),
            None => Ok(reply),
        }
    }

    fn tell(&mut self, request: &[u8]) {
        let mut line = request.to_vec();
        line.push(b'\n');
        let _ = self.stream.write_all(&line);
    }
}

/// Reads one reply line, at most [`MAX_REPLY_BYTES`], and drops its line
/// end. EOF before the line end is [`Fault::Closed`].
pub fn read_reply<R: BufRead>(replies: &mut R) -> Result<Vec<u8>, Fault> {
    let mut reply = Vec::new();
    let limit = MAX_REPLY_BYTES as u64 + 1;
    replies
        .by_ref()
        .take(limit)
        .read_until(b'\n', &mut reply)
        .map_err(Fault::Receive)?;
    if reply.last() != Some(&b'\n') {
        if reply.len() > MAX_REPLY_BYTES {
            return Err(Fault::Receive(io::Error::other(format!(
                "reply longer than {MAX_REPLY_BYTES} bytes"
            ))));
        }
        return Err(Fault::Closed);
    }
    Ok(strip_line_end(&reply).to_vec())
}

fn strip_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// UDP: one datagram each way, on a connected socket (so only the server's
/// datagrams arrive, and a closed port shows as `Connection refused`).
pub struct UdpTransport {
    socket: UdpSocket,
    buf: Vec<u8>,
}

impl UdpTransport {
    /// A socket on an OS-chosen port of the server's address family,
    /// connected to `server`, waiting [`UDP_WAIT`] per try.
    pub fn connect(server: SocketAddr) -> io::Result<Self> {
        let local: SocketAddr = match server {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(local)?;
        socket.connect(server)?;
        socket.set_read_timeout(Some(UDP_WAIT))?;
        Ok(UdpTransport {
            socket,
            buf: vec![0; 64 * 1024],
        })
    }
}

impl Transport for UdpTransport {
    /// A try sends every message again: the seed's protocol has no request
    /// ids, so a lost reply and a lost sentence look the same from here
    /// (see PROTOCOL's menu client decisions).
    fn request(&mut self, request: &[&[u8]]) -> Result<Vec<u8>, Fault> {
        for _ in 0..UDP_TRIES {
            for message in request {
                self.socket.send(message).map_err(Fault::Send)?;
            }
            match self.socket.recv(&mut self.buf) {
                Ok(n) => return Ok(strip_line_end(&self.buf[..n]).to_vec()),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(Fault::Receive(e)),
            }
        }
        Err(Fault::Receive(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "no reply after {UDP_TRIES} tries, {} s apart",
                UDP_WAIT.as_secs()
            ),
        )))
    }

    fn tell(&mut self, request: &[u8]) {
        let _ = self.socket.send(request);
    }
}

/// Reads one input line (line end removed); `None` at EOF. When `echo`
/// (stdin is not a terminal) the line is printed after the prompt, so a
/// piped session reads like a typed one, one line per prompt.
fn ask<I: BufRead, O: Write + ?Sized>(
    input: &mut I,
    out: &mut O,
    prompt: &str,
    echo: bool,
) -> Result<Option<Vec<u8>>, Fault> {
    out.write_all(prompt.as_bytes()).map_err(Fault::Output)?;
    out.flush().map_err(Fault::Output)?;
    let mut line = Vec::new();
    if input.read_until(b'\n', &mut line).map_err(Fault::Input)? == 0 {
        return Ok(None);
    }
    let line = strip_line_end(&line).to_vec();
    if echo {
        out.write_all(&line).map_err(Fault::Output)?;
        out.write_all(b"\n").map_err(Fault::Output)?;
    }
    Ok(Some(line))
}

/// The whole interactive session: menu, prompt, request, reply and RTT,
/// until `5` or the input's EOF (both print [`FAREWELL`] and return `Ok`;
/// the server is told `5` so it closes, or for UDP forgets us, at once).
///
/// # Errors
/// The failing side's [`Fault`]; [`Fault::Closed`] when the server hangs
/// up while a reply is due.
pub fn menu_session<I, O, T>(
    mut input: I,
    out: &mut O,
    server: &mut T,
    echo: bool,
) -> Result<(), Fault>
where
    I: BufRead,
    O: Write + ?Sized,
    T: Transport + ?Sized,
{
    let mut first = true;
    loop {
        if !first {
            out.write_all(b"\n").map_err(Fault::Output)?;
        }
        first = false;
        out.write_all(MENU.as_bytes()).map_err(Fault::Output)?;
        let Some(option) = ask(&mut input, out, "Input option: ", echo)? else {
            return goodbye(out, server, true);
        };
        // The sentence is read before anything is sent, so input that ends
        // at `Input sentence: ` leaves no `1` waiting at the server, and the
        // goodbye `5` is taken as an option, not as the sentence.
        let sentence;
        let request: Vec<&[u8]> = match option.trim_ascii() {
            b"1" => {
                let Some(text) = ask(&mut input, out, "Input sentence: ", echo)? else {
                    return goodbye(out, server, true);
                };
                sentence = text;
                vec![b"1", &sentence]
            }
            choice @ (b"2" | b"3" | b"4") => vec![choice],
            b"5" => return goodbye(out, server, false),
            _ => {
                out.write_all(b"Invalid option\n").map_err(Fault::Output)?;
                continue;
            }
        };
        let start = Instant::now();
        let reply = server.request(&request)?;
        let rtt = start.elapsed();
        out.write_all(b"Reply from server: ")
            .and_then(|()| out.write_all(&reply))
            .and_then(|()| writeln!(out, "\n{}", format_rtt(rtt)))
            .and_then(|()| out.flush())
            .map_err(Fault::Output)?;
    }
}

/// `RTT = 0.123 ms`: milliseconds, three decimals.
pub fn format_rtt(rtt: Duration) -> String {
    format!("RTT = {:.3} ms", rtt.as_secs_f64() * 1000.0)
}

/// Tells the server `5`, prints the farewell (on a fresh line when the
/// input ended at a prompt, so the prompt's line is finished).
fn goodbye<O: Write + ?Sized, T: Transport + ?Sized>(
    out: &mut O,
    server: &mut T,
    after_prompt: bool,
) -> Result<(), Fault> {
    server.tell(b"5");
    if after_prompt {
        out.write_all(b"\n").map_err(Fault::Output)?;
    }
    writeln!(out, "{FAREWELL}")
        .and_then(|()| out.flush())
        .map_err(Fault::Output)
}

/// `menu ADDR [--udp]`: connects (TCP) or opens a connected UDP socket,
/// then runs [`menu_session`] on stdin and stdout. Ctrl+C prints the
/// farewell and exits 0 from a signal thread (the main thread may be
/// blocked reading the terminal, which nothing can wake portably).
///
/// # Errors
/// An unreachable server (TCP), a failed transfer, or a server that closes
/// (or, over UDP, stays silent) while a reply is due.
pub fn run_menu(target: &Target, udp: bool) -> Result<(), ClientError> {
    let peer = || target.to_string();
    let terminal = io::stdin().is_terminal();
    let mut server: Box<dyn Transport> = if udp {
        let addrs = target.resolve().map_err(|source| ClientError::Resolve {
            peer: peer(),
            source,
        })?;
        let transport = UdpTransport::connect(addrs[0]).map_err(|source| ClientError::Connect {
            peer: peer(),
            source,
        })?;
        let goodbye = transport
            .socket
            .try_clone()
            .map_err(|source| ClientError::Connect {
                peer: peer(),
                source,
            })?;
        on_sigint(move || {
            let _ = goodbye.send(b"5");
        })?;
        Box::new(transport)
    } else {
        let stream = target.connect().map_err(|e| match e {
            ConnectError::Resolve(source) => ClientError::Resolve {
                peer: peer(),
                source,
            },
            ConnectError::Connect(source) => ClientError::Connect {
                peer: peer(),
                source,
            },
        })?;
        // Interactive requests must not wait for Nagle's timer; failing to
        // set it costs latency only.
        let _ = stream.set_nodelay(true);
        let closer = stream.try_clone().map_err(|source| ClientError::Connect {
            peer: peer(),
            source,
        })?;
        on_sigint(move || {
            let _ = closer.shutdown(Shutdown::Both);
        })?;
        Box::new(
            TcpTransport::new(stream).map_err(|source| ClientError::Connect {
                peer: peer(),
                source,
            })?,
        )
    };
    menu_session(
        io::stdin().lock(),
        &mut io::stdout(),
        &mut *server,
        !terminal,
    )
    .map_err(|f| f.context(target, "stdin"))
}

/// On the first SIGINT: `close`, the farewell, exit 0 (signal-hook's
/// self-pipe thread, where I/O is allowed).
fn on_sigint(close: impl FnOnce() + Send + 'static) -> Result<(), ClientError> {
    let mut signals = Signals::new([SIGINT]).map_err(ClientError::Signal)?;
    thread::spawn(move || {
        if signals.forever().next().is_some() {
            close();
            // `io::stdout()`, not a held lock: the main thread may hold
            // none while it waits on stdin, and each write locks briefly.
            // A fresh line: the cursor likely sits after a prompt.
            let _ = io::stdout().write_all(b"\nBye bye~\n");
            let _ = io::stdout().flush();
            std::process::exit(0);
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scripted server: answers each request from `replies` in order and
    /// records what it was sent.
    struct Fake {
        replies: Vec<&'static [u8]>,
        /// Each request's messages, as text.
        got: Vec<Vec<String>>,
        told: Vec<Vec<u8>>,
    }

    impl Fake {
        fn new(replies: &[&'static [u8]]) -> Self {
            Fake {
                replies: replies.iter().rev().copied().collect(),
                got: Vec::new(),
                told: Vec::new(),
            }
        }
    }

    impl Transport for Fake {
        fn request(&mut self, request: &[&[u8]]) -> Result<Vec<u8>, Fault> {
            self.got.push(
                request
                    .iter()
                    .map(|m| String::from_utf8_lossy(m).into_owned())
                    .collect(),
            );
            self.replies.pop().map(<[u8]>::to_vec).ok_or(Fault::Closed)
        }
        fn tell(&mut self, request: &[u8]) {
            self.told.push(request.to_vec());
        }
    }

    /// Runs a session; returns its result and output with every RTT value
    /// replaced by `X`.
    fn session(input: &[u8], fake: &mut Fake, echo: bool) -> (Result<(), Fault>, String) {
        let mut out = Vec::new();
        let result = menu_session(input, &mut out, fake, echo);
        let text = String::from_utf8(out).unwrap();
        let masked = text
            .lines()
            .map(|l| match l.strip_prefix("RTT = ") {
                Some(rest) => {
                    let ms = rest.strip_suffix(" ms").expect("RTT in ms");
                    let (_, decimals) = ms.split_once('.').expect("a decimal point");
                    assert_eq!(decimals.len(), 3, "three decimals: {l}");
                    ms.parse::<f64>().expect("a number");
                    "RTT = X ms".to_string()
                }
                None => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        (result, masked)
    }

    #[test]
    fn a_piped_session_reads_like_a_typed_one() {
        let mut fake = Fake::new(&[
            b"HELLO THERE",
            b"client IP = ::1, port = 5",
            b"requests served = 2",
        ]);
        let (result, text) = session(b"1\nhello there\n2\n3\n5\n", &mut fake, true);
        result.unwrap();
        let menu = MENU.trim_end();
        assert_eq!(
            text,
            format!(
                "{menu}\nInput option: 1\nInput sentence: hello there\n\
                 Reply from server: HELLO THERE\nRTT = X ms\n\n\
                 {menu}\nInput option: 2\nReply from server: client IP = ::1, port = 5\nRTT = X ms\n\n\
                 {menu}\nInput option: 3\nReply from server: requests served = 2\nRTT = X ms\n\n\
                 {menu}\nInput option: 5\nBye bye~"
            )
        );
        // Option 1 as the seed's clients send it: the option, then the
        // sentence as its own message.
        assert_eq!(fake.got, [vec!["1", "hello there"], vec!["2"], vec!["3"]]);
        assert_eq!(fake.told, vec![b"5".to_vec()]);
    }

    #[test]
    fn an_unknown_option_says_so_and_shows_the_menu_again_without_asking_the_server() {
        let mut fake = Fake::new(&[b"run time = 00:00:01"]);
        let (result, text) = session(b"7\n\nx\n4\r\n", &mut fake, false);
        result.unwrap();
        assert_eq!(text.matches("Invalid option").count(), 3);
        assert_eq!(text.matches("5) exit").count(), 5);
        assert!(
            text.contains("Reply from server: run time = 00:00:01\nRTT = X ms"),
            "{text}"
        );
        // EOF at a prompt: the farewell on a fresh line.
        assert!(text.ends_with("Input option: \nBye bye~"), "{text}");
        assert_eq!(fake.got, [["4"]]);
    }

    #[test]
    fn eof_at_the_sentence_prompt_says_goodbye() {
        let mut fake = Fake::new(&[]);
        let (result, text) = session(b"1\n", &mut fake, true);
        result.unwrap();
        assert!(text.ends_with("Input sentence: \nBye bye~"), "{text}");
        // Nothing of option 1 went out, so the goodbye `5` is an option.
        assert!(fake.got.is_empty());
        assert_eq!(fake.told, [b"5"]);
    }

    #[test]
    fn a_server_that_hangs_up_mid_request_is_an_error() {
        let mut fake = Fake::new(&[]);
        let (result, _) = session(b"3\n", &mut fake, true);
        assert!(matches!(result, Err(Fault::Closed)));
    }

    #[test]
    fn tcp_replies_are_lines_and_eof_before_one_is_closed() {
        let mut r: &[u8] = b"HELLO\r\nrequests served = 1\npartial";
        assert_eq!(read_reply(&mut r).unwrap(), b"HELLO");
        assert_eq!(read_reply(&mut r).unwrap(), b"requests served = 1");
        assert!(matches!(read_reply(&mut r), Err(Fault::Closed)));
    }

    #[test]
    fn rtt_has_three_decimals_in_milliseconds() {
        assert_eq!(format_rtt(Duration::from_micros(123)), "RTT = 0.123 ms");
        assert_eq!(format_rtt(Duration::from_millis(2500)), "RTT = 2500.000 ms");
        assert_eq!(format_rtt(Duration::ZERO), "RTT = 0.000 ms");
    }
}
