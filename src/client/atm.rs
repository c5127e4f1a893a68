//! `nonblocking-client atm ADDR [--tcp]`: seed 002's `udpclient.py` menu,
//! with what UDP needs and the seed lacked (SPEC "nonblocking-client"):
//! a reply that does not come within [`REPLY_TIMEOUT`] is asked again up to
//! [`RETRIES`] times, then a one-line error and exit 1.
//!
//! [`session`] holds the menu logic over plain readers and writers and a
//! [`Link`] (one request, one reply), so it is tested without a terminal;
//! [`UdpLink`] and [`TcpLink`] are the two transports.
//!
//! The PIN is read with the terminal's echo off (rustix's safe termios
//! calls: no `unsafe` of ours, and rustix is already in the dependency
//! tree), and a SIGINT while it is off restores the terminal before the
//! program exits.

use std::io::{self, BufRead, BufReader, IsTerminal, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rustix::termios::{LocalModes, OptionalActions, Termios, tcgetattr, tcsetattr};

use super::{ClientError, connect, on_sigint};
use crate::addr::Target;

/// How long one try waits for a reply.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(2);
/// How many times a request is sent again before giving up.
pub const RETRIES: u32 = 3;
/// The seed's challenge (the bare, UDP form of the reply).
pub const CHALLENGE: &[u8] = crate::handlers::atm::CHALLENGE;
/// Largest reply kept (a datagram, or one TCP line).
const MAX_REPLY: usize = 64 * 1024;

/// Why a request got no usable reply.
#[derive(Debug)]
pub enum LinkError {
    Send(io::Error),
    Receive(io::Error),
    /// No reply to any of `tries` sends, `each` apart.
    NoReply {
        tries: u32,
        each: Duration,
    },
    /// The server closed the connection (TCP).
    Closed,
}

/// One request, one reply: the reply as its text, without the `\n` a TCP
/// reply line ends with (so both transports give the seed's bytes).
pub trait Link {
    /// # Errors
    /// [`LinkError`].
    fn ask(&mut self, request: &[u8]) -> Result<Vec<u8>, LinkError>;
}

/// The seed's transport: one datagram each way, from a connected socket
/// (so only the server's datagrams are received).
#[derive(Debug)]
pub struct UdpLink {
    socket: UdpSocket,
    retries: u32,
    timeout: Duration,
    buf: Vec<u8>,
}

impl UdpLink {
    /// A socket on an ephemeral port of `server`'s family, connected to it.
    ///
    /// # Errors
    /// The socket could not be bound or connected.
    pub fn connect(server: SocketAddr, timeout: Duration, retries: u32) -> io::Result<UdpLink> {
        let local: SocketAddr = if server.is_ipv4() {
            "0.0.0.0:0".parse().expect("literal")
        } else {
            "[::]:0".parse().expect("literal")
        };
        let socket = UdpSocket::bind(local)?;
        socket.connect(server)?;
        socket.set_read_timeout(Some(timeout))?;
        Ok(UdpLink {
            socket,
            retries,
            timeout,
            buf: vec![0; MAX_REPLY],
        })
    }

    /// Drops replies that arrived late for an earlier request (a retried
    /// request can be answered twice), so they are not taken for the next.
    fn drain_stale(&mut self) {
        if self.socket.set_nonblocking(true).is_ok() {
            while self.socket.recv(&mut self.buf).is_ok() {}
            let _ = self.socket.set_nonblocking(false);
        }
    }
}

impl Link for UdpLink {
    fn ask(&mut self, request: &[u8]) -> Result<Vec<u8>, LinkError> {
        self.drain_stale();
        for _ in 0..=self.retries {
            self.socket.send(request).map_err(LinkError::Send)?;
            match self.socket.recv(&mut self.buf) {
                Ok(n) => return Ok(self.buf[..n].to_vec()),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                // An ICMP "port unreachable": nothing listens there.
                Err(e) => return Err(LinkError::Receive(e)),
            }
        }
        Err(LinkError::NoReply {
            tries: self.retries + 1,
            each: self.timeout,
        })
    }
}

/// `--tcp`: each request a line; each reply a line, except the challenge,
/// which is three (`\n\tPlease give the username and pin number.\n\n`).
#[derive(Debug)]
pub struct TcpLink {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    wait: Duration,
}

impl TcpLink {
    /// Wraps a connected stream; a reply may take up to `wait`.
    ///
    /// # Errors
    /// The socket options could not be set.
    pub fn new(stream: TcpStream, wait: Duration) -> io::Result<TcpLink> {
        stream.set_read_timeout(Some(wait))?;
        let _ = stream.set_nodelay(true);
        Ok(TcpLink {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
            wait,
        })
    }

    /// One line without its `\n` (or `\r\n`).
    fn line(&mut self) -> Result<Vec<u8>, LinkError> {
        let mut line = Vec::new();
        let n = (&mut self.reader)
            .take(MAX_REPLY as u64)
            .read_until(b'\n', &mut line)
            .map_err(|e| match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => LinkError::NoReply {
                    tries: 1,
                    each: self.wait,
                },
                _ => LinkError::Receive(e),
            })?;
        if n == 0 {
            return Err(LinkError::Closed);
        }
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        Ok(line)
    }
}

impl Link for TcpLink {
    fn ask(&mut self, request: &[u8]) -> Result<Vec<u8>, LinkError> {
        let mut line = request.to_vec();
        line.push(b'\n');
        self.writer.write_all(&line).map_err(LinkError::Send)?;
        let first = self.line()?;
        if !first.is_empty() {
            return Ok(first);
        }
        // The challenge: an empty line, its text, an empty line.
        let mut reply = vec![b'\n'];
        reply.extend_from_slice(&self.line()?);
        reply.push(b'\n');
        reply.extend_from_slice(&self.line()?);
        Ok(reply)
    }
}

/// What ended a session early.
#[derive(Debug)]
pub enum SessionError {
    Input(io::Error),
    Output(io::Error),
    Link(LinkError),
    /// The server's `error: ...` reply (too many clients, line too long).
    Server(String),
}

/// The seed's menu, as its `udpclient.py` prints it.
pub const MENU: &str = "\n\n\t(1) Check Balance\n\n\t(2) Withdraw\n\n\t(3) Deposit\n\n\n\tInput command by sending a number...\n";

/// Reads one line without its line end; `None` at end of input.
fn read_line(input: &mut dyn BufRead) -> io::Result<Option<String>> {
    let mut line = String::new();
    if input.take(MAX_REPLY as u64).read_line(&mut line)? == 0 {
        return Ok(None);
    }
    Ok(Some(line.trim().to_string()))
}

/// Runs the menu until stdin ends: each choice becomes the seed's request
/// (`b`, `w<AMOUNT>`, `d<AMOUNT>`), the reply is printed as
/// `From Server: <reply>`, and the challenge is answered with
/// `u<NAME> p<PIN>` (the PIN read by `read_pin`, which hides it on a
/// terminal).
///
/// # Errors
/// [`SessionError`]; the end of input is not one.
pub fn session(
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    link: &mut dyn Link,
    read_pin: &mut dyn FnMut(&mut dyn BufRead) -> io::Result<Option<String>>,
) -> Result<(), SessionError> {
    let say = |out: &mut dyn Write, text: &[u8]| {
        out.write_all(text)
            .and_then(|()| out.flush())
            .map_err(SessionError::Output)
    };
    let ask = |link: &mut dyn Link, out: &mut dyn Write, request: &[u8]| {
        let reply = link.ask(request).map_err(SessionError::Link)?;
        if reply.starts_with(b"error: ") {
            return Err(SessionError::Server(
                String::from_utf8_lossy(&reply).trim_end().to_string(),
            ));
        }
        let mut shown = b"\nFrom Server: ".to_vec();
        shown.extend_from_slice(&reply);
        shown.push(b'\n');
        say(out, &shown)?;
        Ok(reply)
    };
    loop {
        say(out, MENU.as_bytes())?;
        let Some(choice) = read_line(input).map_err(SessionError::Input)? else {
            return Ok(());
        };
        let request = match choice.as_str() {
            "1" => "b".to_string(),
            "2" | "3" => {
                let (verb, letter) = if choice == "2" {
                    ("withdraw", 'w')
                } else {
                    ("deposit", 'd')
                };
                say(
                    out,
                    format!("\n\tHow much do you want to {verb}?\n").as_bytes(),
                )?;
                let Some(amount) = read_line(input).map_err(SessionError::Input)? else {
                    return Ok(());
                };
                format!("{letter}{amount}")
            }
            _ => {
                say(out, b"\nIllegal Command.\n")?;
                continue;
            }
        };
        if ask(link, out, request.as_bytes())? != CHALLENGE {
            continue;
        }
        say(out, b"\n\tPlease give the username.\n")?;
        let Some(name) = read_line(input).map_err(SessionError::Input)? else {
            return Ok(());
        };
        say(out, b"\n\tPlease give the pin number.\n")?;
        let Some(pin) = read_pin(input).map_err(SessionError::Input)? else {
            return Ok(());
        };
        ask(link, out, format!("u{name} p{pin}").as_bytes())?;
    }
}

/// The terminal settings to put back if a signal comes while echo is off.
type Saved = Arc<Mutex<Option<Termios>>>;

/// Reads the PIN from a terminal with echo off (the newline still shows),
/// then restores the terminal.
fn read_pin_hidden(input: &mut dyn BufRead, saved: &Saved) -> io::Result<Option<String>> {
    let stdin = io::stdin();
    let original = tcgetattr(&stdin)?;
    let mut quiet = original.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    quiet.local_modes.insert(LocalModes::ECHONL);
    *saved.lock().unwrap_or_else(PoisonError::into_inner) = Some(original.clone());
    tcsetattr(&stdin, OptionalActions::Now, &quiet)?;
    let pin = read_line(input);
    let _ = tcsetattr(&stdin, OptionalActions::Now, &original);
    saved.lock().unwrap_or_else(PoisonError::into_inner).take();
    pin
}

/// The whole subcommand. Ctrl+C prints `Interrupted` (as the seed does)
/// and exits 0, the terminal restored.
///
/// # Errors
/// A [`ClientError`] naming the server: unreachable, no reply after the
/// last try, closed, or its `error:` line.
pub fn run_atm(target: &Target, tcp: bool) -> Result<(), ClientError> {
    let peer = target.to_string();
    let mut link: Box<dyn Link> = if tcp {
        let stream = connect(target)?;
        let wait = REPLY_TIMEOUT * (RETRIES + 1);
        Box::new(
            TcpLink::new(stream, wait).map_err(|source| ClientError::Connect {
                peer: peer.clone(),
                source,
            })?,
        )
    } else {
        let addr = target.resolve().map_err(|source| ClientError::Resolve {
            peer: peer.clone(),
            source,
        })?[0];
        Box::new(
            UdpLink::connect(addr, REPLY_TIMEOUT, RETRIES).map_err(|source| {
                ClientError::Connect {
                    peer: peer.clone(),
                    source,
                }
            })?,
        )
    };
    let saved: Saved = Arc::default();
    let on_signal = Arc::clone(&saved);
    on_sigint(move || {
        if let Some(original) = on_signal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _ = tcsetattr(io::stdin(), OptionalActions::Now, &original);
        }
        println!("Interrupted");
        std::process::exit(0);
    })?;
    let terminal = io::stdin().is_terminal();
    let stdin = io::stdin();
    let mut input = stdin.lock();
    // Not locked for the session: the SIGINT thread prints too.
    let mut out = io::stdout();
    let mut read_pin = |input: &mut dyn BufRead| {
        if terminal {
            read_pin_hidden(input, &saved)
        } else {
            read_line(input)
        }
    };
    session(&mut input, &mut out, &mut *link, &mut read_pin).map_err(|e| match e {
        SessionError::Input(source) => ClientError::Read {
            input: "stdin".to_string(),
            source,
        },
        SessionError::Output(source) => ClientError::Stdout(source),
        SessionError::Server(line) => ClientError::Server { line },
        SessionError::Link(LinkError::Send(source)) => ClientError::Send { peer, source },
        SessionError::Link(LinkError::Receive(source)) => ClientError::Receive { peer, source },
        SessionError::Link(LinkError::Closed) => ClientError::Closed { peer },
        SessionError::Link(LinkError::NoReply { tries, each }) => ClientError::Receive {
            peer,
            source: io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "no reply after {tries} {} ({} s each)",
                    if tries == 1 { "try" } else { "tries" },
                    each.as_secs_f64()
                ),
            ),
        },
    })
}
