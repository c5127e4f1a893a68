//! The `nonblocking-client` subcommands (SPEC "nonblocking-client"), one
//! `run_*` function each, over blocking `std::net`: a client talks to one
//! server and needs no event loop.
//!
//! Each `run_*` does the I/O set-up (file, socket, SIGINT) and hands plain
//! readers and writers to a function that holds the protocol logic, so the
//! logic is tested with in-memory buffers. Those functions report a
//! [`Fault`] (what went wrong, no names); `run_*` adds the address or file
//! and returns a [`ClientError`], whose `Display` is the one stderr line.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, IsTerminal, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use signal_hook::consts::SIGINT;
use signal_hook::iterator::Signals;

use crate::addr::{ConnectError, Target};
use crate::net::os_reason;

pub mod atm;
mod grpc_queue;
pub mod menu;
mod queue_repl;
pub use grpc_queue::{GrpcQueue, run_grpc_queue};
pub use queue_repl::{LineQueue, QUEUE_EMPTY, QueueTransport, queue_repl};

/// Bytes read from a file or stdin per `read` call: large, so a 1 GB
/// upload is ~16k syscalls, and fixed, so memory does not grow with input.
pub const CHUNK_BYTES: usize = 64 * 1024;

/// Most bytes of one server line held at once. A longer line passes through
/// in pieces, so nothing the server sends can grow our memory.
pub const MAX_PIECE_BYTES: usize = 64 * 1024;

/// What went wrong inside a subcommand's protocol logic, before the caller
/// names the address or file it concerns.
#[derive(Debug)]
pub enum Fault {
    /// Reading the input (file or stdin) failed.
    Input(io::Error),
    /// Writing to stdout failed.
    Output(io::Error),
    /// Writing to the server failed.
    Send(io::Error),
    /// Reading from the server failed.
    Receive(io::Error),
    /// The server closed the connection while a reply was still due.
    Closed,
    /// The server sent this `error: ...` line (terminator removed).
    Server(String),
}

/// A subcommand's failure; `Display` is the complete stderr line, and the
/// program exits 1 after printing it.
#[derive(Debug)]
pub enum ClientError {
    /// The host name did not resolve.
    Resolve { peer: String, source: io::Error },
    /// No resolved address accepted the connection.
    Connect { peer: String, source: io::Error },
    /// The input file cannot be opened (or is a directory).
    Open { path: String, source: io::Error },
    /// The input (a file's name, or `stdin`) failed while reading.
    Read { input: String, source: io::Error },
    /// stdout refused our output (e.g. a closed pipe).
    Stdout(io::Error),
    /// Sending to the server failed.
    Send { peer: String, source: io::Error },
    /// Receiving from the server failed.
    Receive { peer: String, source: io::Error },
    /// The server hung up while a reply was due.
    Closed { peer: String },
    /// The server's own `error: ...` line, printed as it was sent.
    Server { line: String },
    /// The SIGINT handler could not be installed.
    Signal(io::Error),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ClientError::*;
        match self {
            Resolve { peer, source } => {
                write!(f, "error: cannot resolve {peer}: {}", os_reason(source))
            }
            Connect { peer, source } => {
                write!(f, "error: cannot connect to {peer}: {}", os_reason(source))
            }
            Open { path, source } => write!(f, "error: cannot open {path}: {}", os_reason(source)),
            Read { input, source } => {
                write!(f, "error: cannot read {input}: {}", os_reason(source))
            }
            Stdout(source) => write!(f, "error: cannot write to stdout: {}", os_reason(source)),
            Send { peer, source } => {
                write!(f, "error: cannot send to {peer}: {}", os_reason(source))
            }
            Receive { peer, source } => {
                write!(
                    f,
                    "error: cannot receive from {peer}: {}",
                    os_reason(source)
                )
            }
            Closed { peer } => write!(f, "error: {peer} closed the connection"),
            Server { line } => write!(f, "{line}"),
            Signal(source) => write!(
                f,
                "error: cannot install the SIGINT handler: {}",
                os_reason(source)
            ),
        }
    }
}

impl std::error::Error for ClientError {}

impl Fault {
    /// Names the server (`peer`) and the input (a path or `stdin`).
    fn context(self, peer: &Target, input: &str) -> ClientError {
        let peer = peer.to_string();
        match self {
            Fault::Input(source) => ClientError::Read {
                input: input.to_string(),
                source,
            },
            Fault::Output(source) => ClientError::Stdout(source),
            Fault::Send(source) => ClientError::Send { peer, source },
            Fault::Receive(source) => ClientError::Receive { peer, source },
            Fault::Closed => ClientError::Closed { peer },
            Fault::Server(line) => ClientError::Server { line },
        }
    }
}

// ---------------------------------------------------------------------------
// Protocol logic over plain readers and writers.

/// Writes all of `bytes`, one `write` call at a time: a socket may take only
/// part of a buffer per call (seed 003: "handle partial sends"), so the loop
/// resends the rest until none is left.
///
/// # Errors
/// The writer's error; `WriteZero` when it accepts nothing while bytes remain.
pub fn send_all<W: Write + ?Sized>(dst: &mut W, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match dst.write(bytes) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "peer accepted no bytes",
                ));
            }
            Ok(sent) => bytes = &bytes[sent..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Copies `src` to `dst` exactly, [`CHUNK_BYTES`] at a time, until `src`
/// ends: any size in constant memory. Returns the byte count.
///
/// # Errors
/// [`Fault::Input`] when reading fails, [`Fault::Send`] when writing does.
pub fn copy_to_server<R: Read + ?Sized, W: Write + ?Sized>(
    src: &mut R,
    dst: &mut W,
) -> Result<u64, Fault> {
    let mut buf = vec![0u8; CHUNK_BYTES];
    let mut total = 0u64;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Fault::Input(e)),
        };
        send_all(dst, &buf[..n]).map_err(Fault::Send)?;
        total += n as u64;
    }
}

/// A server's byte stream cut into lines, holding at most
/// [`MAX_PIECE_BYTES`] of one line at a time.
pub struct ServerLines<R> {
    /// Buffered so that finding `\n` costs no extra syscalls.
    reader: BufReader<R>,
    /// Whether the next piece begins a line; only a line's first piece can
    /// be a server `error:` line.
    at_line_start: bool,
}

/// Where a piece returned by [`ServerLines::next_piece`] sits in its line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// The piece is the start of a line.
    pub starts_line: bool,
}

impl<R: Read> ServerLines<R> {
    pub fn new(reader: R) -> Self {
        ServerLines {
            reader: BufReader::new(reader),
            at_line_start: true,
        }
    }

    /// Replaces `buf` with the next piece: the rest of the current line with
    /// its `\n`, or its next [`MAX_PIECE_BYTES`], or the tail before EOF.
    /// `None` at EOF.
    ///
    /// # Errors
    /// The reader's error.
    pub fn next_piece(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<Piece>> {
        buf.clear();
        let n = (&mut self.reader)
            .take(MAX_PIECE_BYTES as u64)
            .read_until(b'\n', buf)?;
        if n == 0 {
            return Ok(None);
        }
        let piece = Piece {
            starts_line: self.at_line_start,
        };
        self.at_line_start = buf.ends_with(b"\n");
        Ok(Some(piece))
    }
}

/// A line the server starts with `error:` (SPEC's `error: <reason>\n`), with
/// its terminator removed. Only meaningful for a piece that starts a line.
fn server_error(piece: &[u8]) -> Option<String> {
    piece
        .starts_with(b"error:")
        .then(|| String::from_utf8_lossy(trim_line_end(piece)).into_owned())
}

/// `line` without a trailing `\n` or `\r\n`.
fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Reads until the server closes, ignoring what it sends except an
/// `error:` line. Returning `Ok` is the proof that the server has read
/// everything we sent: it closes only after our EOF (SPEC "Framing").
///
/// # Errors
/// [`Fault::Server`] with the server's error line; [`Fault::Receive`] when
/// the connection fails (e.g. reset) instead of closing.
pub fn await_close<R: Read>(server: R) -> Result<(), Fault> {
    let mut lines = ServerLines::new(server);
    let mut buf = Vec::new();
    while let Some(piece) = lines.next_piece(&mut buf).map_err(Fault::Receive)? {
        if piece.starts_line
            && let Some(line) = server_error(&buf)
        {
            return Err(Fault::Server(line));
        }
    }
    Ok(())
}

/// Prints every line the server sends to `out`, flushing each, until the
/// server closes (presence: the list of names after each join or leave).
///
/// # Errors
/// [`Fault::Server`] for an `error:` line (not printed to `out`),
/// [`Fault::Receive`] or [`Fault::Output`] when either side fails.
pub fn relay_lines<R: Read, W: Write + ?Sized>(server: R, out: &mut W) -> Result<(), Fault> {
    let mut lines = ServerLines::new(server);
    let mut buf = Vec::new();
    while let Some(piece) = lines.next_piece(&mut buf).map_err(Fault::Receive)? {
        if piece.starts_line
            && let Some(line) = server_error(&buf)
        {
            return Err(Fault::Server(line));
        }
        out.write_all(&buf).map_err(Fault::Output)?;
        out.flush().map_err(Fault::Output)?;
    }
    Ok(())
}

/// Sends `input` line by line (chat): each line goes out as soon as it is
/// complete, so replies can come back while the user is still typing. A
/// last line without `\n` gets one, so its reply prints as a line too.
/// Lines longer than [`CHUNK_BYTES`] go out in pieces (bounded memory).
///
/// # Errors
/// [`Fault::Input`] or [`Fault::Send`].
pub fn send_lines<R: BufRead, W: Write + ?Sized>(
    mut input: R,
    server: &mut W,
) -> Result<(), Fault> {
    let mut buf = Vec::new();
    let mut line_open = false;
    loop {
        buf.clear();
        let n = (&mut input)
            .take(CHUNK_BYTES as u64)
            .read_until(b'\n', &mut buf)
            .map_err(Fault::Input)?;
        if n == 0 {
            break;
        }
        send_all(server, &buf).map_err(Fault::Send)?;
        line_open = !buf.ends_with(b"\n");
    }
    if line_open {
        send_all(server, b"\n").map_err(Fault::Send)?;
    }
    Ok(())
}

/// Copies whatever the server sends to `out`, flushing after each read, so
/// a reply appears as soon as it arrives, until the server closes. Replies
/// are not matched to requests: a server that sends nothing, or more than
/// one line per request, is shown as it is.
///
/// # Errors
/// [`Fault::Receive`] or [`Fault::Output`].
pub fn print_replies<R: Read, W: Write + ?Sized>(mut server: R, out: &mut W) -> Result<(), Fault> {
    let mut buf = vec![0u8; CHUNK_BYTES];
    loop {
        let n = match server.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Fault::Receive(e)),
        };
        out.write_all(&buf[..n]).map_err(Fault::Output)?;
        out.flush().map_err(Fault::Output)?;
    }
}

/// The line queue client's loop: [`queue_repl`] over [`LineQueue`].
///
/// # Errors
/// [`Fault::Closed`] when the server hangs up while a reply is due;
/// otherwise the failing side's fault.
pub fn queue_session<I, S, W, O>(
    input: I,
    replies: S,
    server: &mut W,
    out: &mut O,
    prompt: bool,
) -> Result<(), Fault>
where
    I: BufRead,
    S: Read,
    W: Write + ?Sized,
    O: Write + ?Sized,
{
    queue_repl(input, &mut LineQueue::new(replies, server), out, prompt)
}

// ---------------------------------------------------------------------------
// The subcommands: set-up, then the logic above.

/// Connects, naming the address in the error.
fn connect(target: &Target) -> Result<TcpStream, ClientError> {
    target.connect().map_err(|e| match e {
        ConnectError::Resolve(source) => ClientError::Resolve {
            peer: target.to_string(),
            source,
        },
        ConnectError::Connect(source) => ClientError::Connect {
            peer: target.to_string(),
            source,
        },
    })
}

/// Runs `action` on the first SIGINT, on a thread of its own (signal-hook's
/// self-pipe), where it may take locks and do I/O.
fn on_sigint(action: impl FnOnce() + Send + 'static) -> Result<(), ClientError> {
    let mut signals = Signals::new([SIGINT]).map_err(ClientError::Signal)?;
    thread::spawn(move || {
        if signals.forever().next().is_some() {
            action();
        }
    });
    Ok(())
}

/// Interactive replies should not wait for Nagle's timer; failing to set
/// it costs latency, not correctness, so the error is ignored.
fn no_delay(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
}

/// After a failed send: if the server already told us why it hung up
/// (`error: too many clients`, `error: line too long`), that line is the
/// better message. Best effort: a reset may have discarded it.
fn said_before_closing(stream: &TcpStream) -> Option<String> {
    stream.set_nonblocking(true).ok()?;
    let mut buf = [0u8; 512];
    let n = (&*stream).read(&mut buf).ok()?;
    let first = buf[..n].split(|&b| b == b'\n').next()?;
    server_error(first)
}

/// The upload shared by `ledger` and `send`: all of `src`, then our EOF,
/// then wait for the server's close.
fn upload<R: Read + ?Sized>(stream: &TcpStream, src: &mut R) -> Result<(), Fault> {
    if let Err(fault) = copy_to_server(src, &mut &*stream) {
        return Err(match fault {
            Fault::Send(e) => said_before_closing(stream).map_or(Fault::Send(e), Fault::Server),
            other => other,
        });
    }
    // Our EOF: the server handles the last line and closes (SPEC "Framing").
    stream.shutdown(Shutdown::Write).map_err(Fault::Send)?;
    await_close(stream)
}

/// `ledger ADDR FILE` (seed 000): streams FILE, then waits for the server
/// to close, so `Ok` means the server has every byte.
///
/// # Errors
/// A missing or unreadable FILE (checked before connecting), an unreachable
/// server, a failed transfer, or the server's `error:` line.
pub fn run_ledger(target: &Target, path: &Path) -> Result<(), ClientError> {
    let shown = path.display().to_string();
    let open_error = |source| ClientError::Open {
        path: shown.clone(),
        source,
    };
    let mut file = File::open(path).map_err(open_error)?;
    // Linux opens a directory for reading; say so now, not after connecting.
    if file.metadata().map_err(open_error)?.is_dir() {
        return Err(open_error(io::Error::from(io::ErrorKind::IsADirectory)));
    }
    let stream = connect(target)?;
    upload(&stream, &mut file).map_err(|f| f.context(target, &shown))
}

/// `send ADDR` (seed 003): copies stdin to the server exactly, then waits
/// for the server to close.
///
/// # Errors
/// An unreachable server, a failed transfer, or the server's `error:` line.
pub fn run_send(target: &Target) -> Result<(), ClientError> {
    let stream = connect(target)?;
    upload(&stream, &mut io::stdin().lock()).map_err(|f| f.context(target, "stdin"))
}

/// `presence ADDR NAME` (seed 001 task 2): sends NAME once, then prints
/// every list the server sends. Ends with `Ok` when the server closes or
/// on Ctrl+C, which closes the socket.
///
/// # Errors
/// An unreachable server, a failed transfer, or the server's `error:` line
/// (a name that is invalid or taken).
pub fn run_presence(target: &Target, name: &str) -> Result<(), ClientError> {
    let stream = connect(target)?;
    let closer = stream.try_clone().map_err(|source| ClientError::Connect {
        peer: target.to_string(),
        source,
    })?;
    // Shutting the socket down wakes the blocked read below with EOF, so
    // the normal end-of-stream path runs and we exit 0.
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&interrupted);
    on_sigint(move || {
        flag.store(true, Ordering::SeqCst);
        let _ = closer.shutdown(Shutdown::Both);
    })?;
    let mut hello = Vec::with_capacity(name.len() + 1);
    hello.extend_from_slice(name.as_bytes());
    hello.push(b'\n');
    let result = send_all(&mut &stream, &hello)
        .map_err(Fault::Send)
        .and_then(|()| relay_lines(&stream, &mut io::stdout()));
    match result {
        // SPEC: Ctrl+C closes the socket and exits 0, whatever the closed
        // socket made the send or the read report.
        Err(_) if interrupted.load(Ordering::SeqCst) => Ok(()),
        other => other.map_err(|f| f.context(target, "stdin")),
    }
}

/// `chat ADDR` (seeds 002, 004): sends stdin line by line while a second
/// thread prints whatever the server sends, so a server that answers
/// nothing, or more than asked, never deadlocks us. At stdin's EOF we send
/// our EOF and wait until the server closes.
///
/// # Errors
/// An unreachable server or a failed transfer.
pub fn run_chat(target: &Target) -> Result<(), ClientError> {
    let stream = connect(target)?;
    no_delay(&stream);
    let reader = stream.try_clone().map_err(|source| ClientError::Connect {
        peer: target.to_string(),
        source,
    })?;
    let printer = thread::spawn(move || print_replies(&reader, &mut io::stdout()));
    let sent = send_lines(io::stdin().lock(), &mut &stream);
    // On success, our EOF lets the server finish and close. On failure,
    // closing both ways wakes the printer so it can be joined.
    let how = if sent.is_ok() {
        Shutdown::Write
    } else {
        Shutdown::Both
    };
    let _ = stream.shutdown(how);
    let printed = printer.join().expect("the reply printer does not panic");
    sent.and(printed).map_err(|f| f.context(target, "stdin"))
}

/// `queue ADDR` (seed 001 task 1): the interactive queue client. Ctrl+C or
/// EOF ends it with `Ok`.
///
/// # Errors
/// An unreachable server, a failed transfer, or a server that closes while
/// a reply is due.
pub fn run_queue(target: &Target) -> Result<(), ClientError> {
    let stream = connect(target)?;
    no_delay(&stream);
    let prompt = io::stdin().is_terminal();
    let closer = stream.try_clone().map_err(|source| ClientError::Connect {
        peer: target.to_string(),
        source,
    })?;
    // The main thread may be blocked reading the terminal, which nothing
    // can wake portably, so Ctrl+C closes the socket and exits from here.
    // `io::stdout()` (not a held lock) keeps this write from deadlocking.
    on_sigint(move || {
        let _ = closer.shutdown(Shutdown::Both);
        if prompt {
            let _ = io::stdout().write_all(b"\n");
        }
        std::process::exit(0);
    })?;
    queue_session(
        io::stdin().lock(),
        &stream,
        &mut &stream,
        &mut io::stdout(),
        prompt,
    )
    .map_err(|f| f.context(target, "stdin"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes 1 to 3 bytes per call and now and then reports
    /// `Interrupted`, like a socket under pressure.
    struct Trickle {
        data: Vec<u8>,
        calls: usize,
    }

    impl Trickle {
        fn new() -> Self {
            Trickle {
                data: Vec::new(),
                calls: 0,
            }
        }
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.calls += 1;
            if self.calls.is_multiple_of(7) {
                return Err(io::ErrorKind::Interrupted.into());
            }
            let n = buf.len().min(1 + self.calls % 3);
            self.data.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A reader that hands out at most `step` bytes per call.
    struct Dribble<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Dribble<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.data.len().min(self.step).min(buf.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    struct Failing(io::ErrorKind);

    impl Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(self.0.into())
        }
    }

    impl Write for Failing {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(self.0.into())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Deterministic bytes covering all 256 values.
    fn noise(len: usize) -> Vec<u8> {
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn send_all_finishes_partial_sends() {
        let data = noise(10_000);
        let mut w = Trickle::new();
        send_all(&mut w, &data).unwrap();
        assert_eq!(w.data, data);
        assert!(w.calls > 10_000 / 3, "the writer really was partial");
    }

    #[test]
    fn send_all_reports_a_writer_that_takes_nothing() {
        struct Zero;
        impl Write for Zero {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Ok(0)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let err = send_all(&mut Zero, b"x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WriteZero);
        send_all(&mut Zero, b"").unwrap();
    }

    #[test]
    fn copy_is_exact_whatever_the_chunking() {
        let data = noise(3 * CHUNK_BYTES + 17);
        let mut src = Dribble {
            data: &data,
            step: 5000,
        };
        let mut w = Trickle::new();
        assert_eq!(copy_to_server(&mut src, &mut w).unwrap(), data.len() as u64);
        assert_eq!(w.data, data);

        let mut out = Vec::new();
        let n = copy_to_server(&mut &data[..], &mut out).unwrap();
        assert_eq!((n, out), (data.len() as u64, data));
    }

    #[test]
    fn copy_names_the_failing_side() {
        let mut out = Vec::new();
        let fault = copy_to_server(&mut Failing(io::ErrorKind::Other), &mut out).unwrap_err();
        assert!(matches!(fault, Fault::Input(_)));
        let fault =
            copy_to_server(&mut &b"abc"[..], &mut Failing(io::ErrorKind::BrokenPipe)).unwrap_err();
        assert!(matches!(fault, Fault::Send(e) if e.kind() == io::ErrorKind::BrokenPipe));
    }

    #[test]
    fn await_close_ignores_data_but_not_errors() {
        assert!(await_close(&b""[..]).is_ok());
        assert!(await_close(&b"junk\nmore junk"[..]).is_ok());
        assert!(await_close(&b"not an error: x\n"[..]).is_ok());
        let huge = vec![b'x'; 5 * MAX_PIECE_BYTES];
        assert!(await_close(&huge[..]).is_ok());
        let mut tricky = vec![b'x'; MAX_PIECE_BYTES];
        tricky.extend_from_slice(b"error: inside a long line\n");
        assert!(await_close(&tricky[..]).is_ok());

        let fault = await_close(&b"error: too many clients\n"[..]).unwrap_err();
        assert!(matches!(fault, Fault::Server(l) if l == "error: too many clients"));
        let fault = await_close(&b"x\nerror: line too long\r\n"[..]).unwrap_err();
        assert!(matches!(fault, Fault::Server(l) if l == "error: line too long"));
        let fault = await_close(&b"error: cut"[..]).unwrap_err();
        assert!(matches!(fault, Fault::Server(l) if l == "error: cut"));
        let fault = await_close(Failing(io::ErrorKind::ConnectionReset)).unwrap_err();
        assert!(matches!(fault, Fault::Receive(_)));
    }

    #[test]
    fn relay_prints_lines_and_stops_at_an_error() {
        let mut out = Vec::new();
        relay_lines(&b"alice\nalice bob\nbob"[..], &mut out).unwrap();
        assert_eq!(out, b"alice\nalice bob\nbob");

        let mut out = Vec::new();
        let fault = relay_lines(&b"error: name taken\n"[..], &mut out).unwrap_err();
        assert!(matches!(fault, Fault::Server(l) if l == "error: name taken"));
        assert!(out.is_empty(), "an error line goes to stderr, not stdout");

        let mut long = vec![b'n'; 3 * MAX_PIECE_BYTES + 1];
        long.push(b'\n');
        let mut out = Vec::new();
        relay_lines(&long[..], &mut out).unwrap();
        assert_eq!(out, long);

        let fault = relay_lines(&b"a\n"[..], &mut Failing(io::ErrorKind::BrokenPipe)).unwrap_err();
        assert!(matches!(fault, Fault::Output(_)));
    }

    #[test]
    fn send_lines_terminates_the_last_line() {
        let sent = |input: &[u8]| {
            let mut w = Trickle::new();
            send_lines(input, &mut w).unwrap();
            w.data
        };
        assert_eq!(sent(b""), b"");
        assert_eq!(sent(b"a\n"), b"a\n");
        assert_eq!(sent(b"a\r\nb"), b"a\r\nb\n");
        assert_eq!(sent(b"\n\n"), b"\n\n");
        let mut long = vec![b'y'; 2 * CHUNK_BYTES];
        assert_eq!(sent(&long), [&long[..], b"\n"].concat());
        long.push(b'\n');
        assert_eq!(sent(&long), long);
    }

    #[test]
    fn print_replies_copies_exactly() {
        let data = noise(200_000);
        let mut out = Vec::new();
        print_replies(
            Dribble {
                data: &data,
                step: 999,
            },
            &mut out,
        )
        .unwrap();
        assert_eq!(out, data);
        let fault = print_replies(Failing(io::ErrorKind::ConnectionReset), &mut out).unwrap_err();
        assert!(matches!(fault, Fault::Receive(_)));
    }

    /// Runs a queue session against canned replies; returns (sent, printed).
    fn queue(input: &[u8], replies: &[u8], prompt: bool) -> (Result<(), Fault>, Vec<u8>, Vec<u8>) {
        let mut sent = Trickle::new();
        let mut printed = Vec::new();
        let result = queue_session(input, replies, &mut sent, &mut printed, prompt);
        (result, sent.data, printed)
    }

    #[test]
    fn queue_maps_replies() {
        let (result, sent, printed) = queue(
            b"put A\r\npeek\n\n   \npop\npeek\nfrob\nsize",
            b"True\nA\nA\nNone\r\nerror: unknown command\n0\n",
            false,
        );
        result.unwrap();
        assert_eq!(sent, b"put A\npeek\npop\npeek\nfrob\nsize\n");
        assert_eq!(
            printed,
            b"True\nA\nA\nQueue is empty\nerror: unknown command\n0\n"
        );
    }

    #[test]
    fn queue_prompts_only_when_asked() {
        let (result, _, printed) = queue(b"size\n", b"0\n", true);
        result.unwrap();
        assert_eq!(printed, b"> 0\n> \n");
    }

    #[test]
    fn queue_reports_a_server_that_hangs_up() {
        let (result, _, printed) = queue(b"size\nsize\n", b"2\n", false);
        assert!(matches!(result, Err(Fault::Closed)));
        assert_eq!(printed, b"2\n");
    }

    #[test]
    fn queue_prints_an_item_called_none_inside_a_long_line_as_is() {
        let mut reply = vec![b'z'; MAX_PIECE_BYTES];
        reply.extend_from_slice(b"None\n");
        let (result, _, printed) = queue(b"pop\n", &reply, false);
        result.unwrap();
        assert_eq!(printed, reply);
    }

    #[test]
    fn errors_name_the_address_and_reason() {
        let target: Target = "9".parse().unwrap();
        let err = ClientError::Connect {
            peer: target.to_string(),
            source: io::Error::from_raw_os_error(libc::ECONNREFUSED),
        };
        assert_eq!(
            err.to_string(),
            "error: cannot connect to 127.0.0.1:9: Connection refused"
        );
        let err = Fault::Server("error: too many clients".into()).context(&target, "stdin");
        assert_eq!(err.to_string(), "error: too many clients");
        let err = Fault::Input(io::Error::from_raw_os_error(libc::EIO)).context(&target, "in.txt");
        assert_eq!(
            err.to_string(),
            "error: cannot read in.txt: Input/output error"
        );
    }
}
