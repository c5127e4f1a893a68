//! The byte-moving logic of the line subcommands, over plain readers and
//! writers: the exact upload copy, a server's stream cut into bounded
//! lines, and the relays that print what the server sends.

use std::io::{self, BufRead, BufReader, Read, Write};

use super::{CHUNK_BYTES, Fault, MAX_PIECE_BYTES};

/// Copies `src` to `dst` exactly, [`CHUNK_BYTES`] at a time, until `src`
/// ends: any size in constant memory. Returns the byte count. A socket may
/// take only part of a buffer per `write` (seed 003: "handle partial
/// sends"); `write_all` resends the rest and retries `Interrupted`.
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
        dst.write_all(&buf[..n]).map_err(Fault::Send)?;
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
pub(super) fn server_error(piece: &[u8]) -> Option<String> {
    piece
        .starts_with(b"error:")
        .then(|| String::from_utf8_lossy(trim_line_end(piece)).into_owned())
}

/// `line` without a trailing `\n` or `\r\n`.
pub(super) fn trim_line_end(line: &[u8]) -> &[u8] {
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
    // Relayed to nowhere: the same reading, and a sink never fails.
    relay_lines(server, &mut io::sink())
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
        server.write_all(&buf).map_err(Fault::Send)?;
        line_open = !buf.ends_with(b"\n");
    }
    if line_open {
        server.write_all(b"\n").map_err(Fault::Send)?;
    }
    Ok(())
}

/// The limit errors every handler shares (SPEC "Limits"): the server sends
/// one of these lines, then closes the connection.
const LIMIT_ERRORS: [&[u8]; 2] = [b"error: too many clients", b"error: line too long"];

/// `line` (terminator removed) when it is one of [`LIMIT_ERRORS`].
pub(super) fn limit_error(line: &[u8]) -> Option<String> {
    let text = trim_line_end(line);
    LIMIT_ERRORS
        .contains(&text)
        .then(|| String::from_utf8_lossy(text).into_owned())
}

/// Whether `start` (the beginning of a line) may still become one of the
/// [`LIMIT_ERRORS`] lines, `\n` or `\r\n` included.
fn may_be_limit_error(start: &[u8]) -> bool {
    LIMIT_ERRORS.iter().any(|text| {
        let rest = start.strip_prefix(*text);
        text.starts_with(start) || matches!(rest, Some(b"\n" | b"\r" | b"\r\n"))
    })
}

/// Copies whatever the server sends to `out`, flushing after each read, so
/// a reply appears as soon as it arrives, until the server closes. Replies
/// are not matched to requests: a server that sends nothing, or more than
/// one line per request, is shown as it is.
///
/// One exception (PROTOCOL "nonblocking-client"): a limit error line
/// (`error: too many clients`, `error: line too long`) that is the last
/// thing before the server closes is the server's refusal, not a reply.
/// Such a line is held back (at most a few dozen bytes) until the next
/// bytes or the close decide: an echo server that merely returns that text
/// and goes on is printed as usual.
///
/// # Errors
/// [`Fault::Server`] for a refusal, [`Fault::Receive`] or [`Fault::Output`].
pub fn print_replies<R: Read, W: Write + ?Sized>(mut server: R, out: &mut W) -> Result<(), Fault> {
    let mut buf = vec![0u8; CHUNK_BYTES];
    // The start of the current line while it may still be a limit error.
    let mut held: Vec<u8> = Vec::new();
    let mut at_line_start = true;
    loop {
        let n = match server.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(refusal(&held).unwrap_or(Fault::Receive(e))),
        };
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            if held.is_empty() && !at_line_start {
                let end = line_end(rest);
                out.write_all(&rest[..end]).map_err(Fault::Output)?;
                at_line_start = rest[..end].ends_with(b"\n");
                rest = &rest[end..];
                continue;
            }
            if held.ends_with(b"\n") {
                // A whole limit error line, and more after it: a reply.
                out.write_all(&held).map_err(Fault::Output)?;
                held.clear();
                at_line_start = true;
                continue;
            }
            let end = line_end(rest);
            held.extend_from_slice(&rest[..end]);
            rest = &rest[end..];
            if !may_be_limit_error(&held) {
                out.write_all(&held).map_err(Fault::Output)?;
                at_line_start = held.ends_with(b"\n");
                held.clear();
            }
        }
        out.flush().map_err(Fault::Output)?;
    }
    if let Some(fault) = refusal(&held) {
        return Err(fault);
    }
    out.write_all(&held)
        .and_then(|()| out.flush())
        .map_err(Fault::Output)
}

/// The index just past the first `\n` of `bytes`, or its length.
fn line_end(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |i| i + 1)
}

/// [`Fault::Server`] when `held` is a complete limit error line.
fn refusal(held: &[u8]) -> Option<Fault> {
    held.ends_with(b"\n")
        .then(|| limit_error(held))
        .flatten()
        .map(Fault::Server)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_io::{Dribble, Failing, Trickle, Zero, noise};

    #[test]
    fn copy_reports_a_server_that_takes_nothing() {
        let fault = copy_to_server(&mut &b"x"[..], &mut Zero).unwrap_err();
        assert!(matches!(fault, Fault::Send(e) if e.kind() == io::ErrorKind::WriteZero));
        assert_eq!(copy_to_server(&mut &b""[..], &mut Zero).unwrap(), 0);
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
    fn print_replies_tells_a_refusal_from_a_reply() {
        let printed = |replies: &[u8], step: usize| {
            let mut out = Vec::new();
            let result = print_replies(
                Dribble {
                    data: replies,
                    step,
                },
                &mut out,
            );
            (result, out)
        };
        for step in [1, 3, 1000] {
            // The last line before the close: the server's refusal.
            let (result, out) = printed(b"ok\nerror: line too long\n", step);
            assert!(matches!(result, Err(Fault::Server(l)) if l == "error: line too long"));
            assert_eq!(out, b"ok\n");
            let (result, out) = printed(b"error: too many clients\r\n", step);
            assert!(matches!(result, Err(Fault::Server(l)) if l == "error: too many clients"));
            assert!(out.is_empty());
            // The same text with more after it, or cut short: replies.
            let echoed = b"error: line too long\nerror: too many clients\nafter";
            let (result, out) = printed(echoed, step);
            result.unwrap();
            assert_eq!(out, echoed);
            for tail in [
                &b"error: line too"[..],
                b"xerror: line too long\n",
                b"error:",
            ] {
                let (result, out) = printed(tail, step);
                result.unwrap();
                assert_eq!(out, tail);
            }
        }
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
}
