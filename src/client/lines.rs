//! The line subcommands: `ledger`, `send`, `presence`, `chat`, `queue`.
//! Each `run_*` does the set-up (file, socket, SIGINT), then hands the
//! stream to the logic in `stream` or [`queue_repl`].

use std::fs::File;
use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use super::{
    ClientError, Fault, LineQueue, await_close, connect, copy_to_server, no_delay, on_sigint,
    print_replies, queue_repl, relay_lines, send_lines, server_error,
};
use crate::addr::Target;

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
    let result = (&stream)
        .write_all(&hello)
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
/// An unreachable server, a failed transfer, or the server's refusal
/// (`error: too many clients`, `error: line too long`, then its close).
pub fn run_chat(target: &Target) -> Result<(), ClientError> {
    let stream = connect(target)?;
    no_delay(&stream);
    let reader = stream.try_clone().map_err(|source| ClientError::Connect {
        peer: target.to_string(),
        source,
    })?;
    let printer = thread::spawn(move || {
        let printed = print_replies(&reader, &mut io::stdout());
        if let Err(Fault::Server(line)) = &printed {
            // Refused and closed: nothing typed from now on can reach the
            // server, so say why and stop now rather than at stdin's end.
            eprintln!("{line}");
            std::process::exit(1);
        }
        printed
    });
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
    // The server's refusal explains a failed send better than the send.
    let result = match (sent, printed) {
        (_, Err(refused @ Fault::Server(_))) => Err(refused),
        (sent, printed) => sent.and(printed),
    };
    result.map_err(|f| f.context(target, "stdin"))
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
    use crate::client::MAX_PIECE_BYTES;
    use crate::test_io::Trickle;

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
}
