//! The queue REPL shared by `queue ADDR` (lines) and `grpc-queue ADDR`
//! (gRPC): one loop reads commands and prints answers, a [`QueueTransport`]
//! carries each command to its server.

use std::io::{BufRead, Read, Write};

use super::{Fault, ServerLines, limit_error, trim_line_end};

/// How the queue REPL reaches its server: the line protocol
/// ([`LineQueue`]) or gRPC (`grpc_queue`). The REPL around it
/// ([`queue_repl`]) is the same for both, so both clients read and print
/// alike.
pub trait QueueTransport {
    /// Asks the server about one non-blank command `line` (terminator
    /// removed) and writes the answer's text, without a `\n`, to `out`:
    /// `True`/`False`, the item, `Queue is empty`, the count, or an
    /// `error: ...` line that leaves the session going.
    ///
    /// # Errors
    /// A fault that ends the session (the server hung up, stdout failed).
    fn ask<O: Write + ?Sized>(&mut self, line: &[u8], out: &mut O) -> Result<(), Fault>;
}

/// The queue REPL (seed 001 task 1): for each input line, one answer line.
/// `prompt` prints `> ` before each input line (only on a terminal, so
/// piped transcripts stay clean). Blank lines are skipped without asking
/// the server. Returns at the input's EOF.
///
/// # Errors
/// The transport's fault, or the input's or output's.
pub fn queue_repl<I, T, O>(
    mut input: I,
    transport: &mut T,
    out: &mut O,
    prompt: bool,
) -> Result<(), Fault>
where
    I: BufRead,
    T: QueueTransport,
    O: Write + ?Sized,
{
    let mut command = Vec::new();
    loop {
        if prompt {
            out.write_all(b"> ").map_err(Fault::Output)?;
            out.flush().map_err(Fault::Output)?;
        }
        command.clear();
        if input
            .read_until(b'\n', &mut command)
            .map_err(Fault::Input)?
            == 0
        {
            if prompt {
                // End the prompt's line so the shell's prompt starts clean.
                out.write_all(b"\n").map_err(Fault::Output)?;
            }
            return out.flush().map_err(Fault::Output);
        }
        let line = trim_line_end(&command);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        transport.ask(line, out)?;
        out.write_all(b"\n").map_err(Fault::Output)?;
        out.flush().map_err(Fault::Output)?;
    }
}

/// The line protocol's transport: sends the command line as typed (the
/// server parses it with [`crate::handlers::queue::parse`]) and prints the
/// one reply line, `None` shown as `Queue is empty`.
pub struct LineQueue<'w, S, W: ?Sized> {
    replies: ServerLines<S>,
    server: &'w mut W,
    reply: Vec<u8>,
}

impl<'w, S: Read, W: Write + ?Sized> LineQueue<'w, S, W> {
    pub fn new(replies: S, server: &'w mut W) -> Self {
        LineQueue {
            replies: ServerLines::new(replies),
            server,
            reply: Vec::new(),
        }
    }
}

impl<S: Read, W: Write + ?Sized> QueueTransport for LineQueue<'_, S, W> {
    fn ask<O: Write + ?Sized>(&mut self, line: &[u8], out: &mut O) -> Result<(), Fault> {
        let mut request = Vec::with_capacity(line.len() + 1);
        request.extend_from_slice(line);
        request.push(b'\n');
        self.server.write_all(&request).map_err(Fault::Send)?;

        // SPEC: every answer is one line. A line longer than a piece is
        // printed whole, piece by piece.
        let mut first = true;
        loop {
            let Some(_) = self
                .replies
                .next_piece(&mut self.reply)
                .map_err(Fault::Receive)?
            else {
                return Err(Fault::Closed);
            };
            let complete = self.reply.ends_with(b"\n");
            // A limit error is the server's refusal before it closes, not
            // an answer (an item has no spaces, so none reads like one).
            if first
                && complete
                && let Some(line) = limit_error(&self.reply)
            {
                return Err(Fault::Server(line));
            }
            let text = trim_line_end(&self.reply);
            let shown: &[u8] = if first && complete && text == b"None" {
                QUEUE_EMPTY
            } else {
                text
            };
            out.write_all(shown).map_err(Fault::Output)?;
            first = false;
            if complete {
                return Ok(());
            }
        }
    }
}

/// What the queue clients print for an empty queue (the seed's words).
pub const QUEUE_EMPTY: &[u8] = b"Queue is empty";
