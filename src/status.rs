//! Every status and diagnostic line's exact wording, in one place.
//!
//! Status lines go to stdout (stderr when stdout carries the sink's bytes),
//! one per event, flushed at once: SPEC's graders read them live through a
//! pipe, where Rust's stdout does not promise to flush at each newline.
//! Diagnostics always go to stderr.

use std::fmt;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::time::Duration;

use crate::handlers::ClientId;

/// Where status lines go, decided once at start.
#[derive(Clone, Copy, Debug)]
pub struct Status {
    to_stderr: bool,
}

impl Status {
    /// `to_stderr`: true for the sink, whose stdout is the received bytes.
    pub fn new(to_stderr: bool) -> Self {
        Status { to_stderr }
    }

    /// Whether status lines go to stdout (every handler but the sink).
    pub fn on_stdout(&self) -> bool {
        !self.to_stderr
    }

    /// Prints one status line and flushes it. A closed stdout is not a
    /// reason to stop serving, so write errors are ignored. Once a server
    /// has a stdout writer, a line for stdout is queued to it, never
    /// written here (see [`crate::stdout`]: a full stdout blocks no one).
    pub fn line(&self, args: fmt::Arguments<'_>) {
        if self.to_stderr {
            let mut err = io::stderr().lock();
            let _ = writeln!(err, "{args}");
            let _ = err.flush();
        } else if let Some(writer) = crate::stdout::StdoutWriter::for_status_lines() {
            writer.push_line(format!("{args}\n").as_bytes());
        } else {
            let mut out = io::stdout().lock();
            let _ = writeln!(out, "{args}");
            let _ = out.flush();
        }
    }

    /// The first line; `udp`: the server serves datagrams too (SPEC
    /// "Datagrams").
    pub fn listening(&self, addr: SocketAddr, handler: &str, udp: bool) {
        let transports = if udp { ", tcp and udp" } else { "" };
        self.line(format_args!(
            "Listening on {addr} (handler {handler}{transports})"
        ));
    }

    pub fn connected(&self, id: ClientId, clients: usize) {
        self.line(format_args!(
            "Client {id} connected. Number of connected clients = {clients}"
        ));
    }

    pub fn disconnected(&self, id: ClientId, clients: usize) {
        self.line(format_args!(
            "Client {id} disconnected. Number of connected clients = {clients}"
        ));
    }

    pub fn count(&self, clients: usize) {
        self.line(format_args!("Number of connected clients = {clients}"));
    }

    /// SPEC's words whatever the count ("for 1 clients"), like the ledger's
    /// summary line: a script can match one fixed pattern.
    pub fn draining(&self, timeout: Duration, clients: usize) {
        self.line(format_args!(
            "Shutting down: waiting up to {} s for {clients} clients (signal again to stop now)",
            Secs(timeout),
        ));
    }
}

/// What a client over `--max-line` gets before the close (SPEC).
pub const LINE_TOO_LONG: &[u8] = b"error: line too long\n";
/// What a client past `--max-clients` gets before the close (SPEC).
pub const TOO_MANY_CLIENTS: &[u8] = b"error: too many clients\n";

/// The diagnostic for a client closed for a line over `--max-line`.
pub fn line_too_long(id: ClientId, max_line: usize) {
    diag(format_args!(
        "client {id}: line longer than {max_line} bytes; closing"
    ));
}

/// Refuses a connection at `--max-clients` (Redis does the same): a
/// best-effort error line (the socket is new, so its send buffer has room
/// and the write does not block), our FIN, and the diagnostic. The client
/// gets no id and no status line.
pub fn refuse_too_many_clients(stream: &impl AsFd, max_clients: usize) {
    let socket = socket2::SockRef::from(stream);
    // Never accepted as a client: a plain close, whatever a store's
    // server set at accept (see `net::set_reset_on_close`).
    let _ = socket.set_linger(None);
    let _ = (&*socket).write(TOO_MANY_CLIENTS);
    let _ = socket.shutdown(std::net::Shutdown::Write);
    too_many_clients(max_clients);
}

/// The diagnostic for a connection refused at `--max-clients`.
pub fn too_many_clients(max_clients: usize) {
    diag(format_args!(
        "refused a connection: too many clients (--max-clients {max_clients})"
    ));
}

/// What a new UDP peer past `--max-udp-peers` gets (SPEC "Datagrams"): the
/// TCP refusal without its line end.
pub const UDP_TOO_MANY_CLIENTS: &[u8] = b"error: too many clients";
/// What a datagram over `--max-line` gets; the peer stays.
pub const UDP_LINE_TOO_LONG: &[u8] = b"error: line too long";

/// The diagnostic for datagrams from new peers refused at `--max-udp-peers`
/// (throttled: `more` were refused since the last one).
pub fn udp_refused(from: SocketAddr, max_udp_peers: usize, more: u64) {
    diag(format_args!(
        "refused a UDP peer {from}: too many clients (--max-udp-peers {max_udp_peers}){}",
        Also(more)
    ));
}

/// The diagnostic for a datagram over `--max-line` (throttled).
pub fn udp_too_long(id: ClientId, max_line: usize, more: u64) {
    diag(format_args!(
        "client {id}: datagram longer than {max_line} bytes; answered with an error{}",
        Also(more)
    ));
}

/// The diagnostic for reply datagrams dropped (the bounded queue was full,
/// or the send failed).
pub fn udp_replies_dropped(dropped: u64, why: &dyn fmt::Display) {
    diag(format_args!(
        "dropped {dropped} UDP repl{} ({why})",
        if dropped == 1 { "y" } else { "ies" }
    ));
}

/// ` (and N more since the last such line)` when N > 0.
struct Also(u64);

impl fmt::Display for Also {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => Ok(()),
            n => write!(f, " (and {n} more since the last such line)"),
        }
    }
}

/// The diagnostic when a second signal ends the drain.
pub const SECOND_SIGNAL: &str = "second signal: ending the drain now";
/// The diagnostic when `--drain-timeout` ends the drain.
pub const DRAIN_TIMEOUT: &str = "drain timeout reached";

/// The diagnostic for clients whose unfinished line the end of a drain cut.
pub fn cut_partial_lines(clients: u64) {
    diag(format_args!(
        "drain ended: {clients} client{} cut off in the middle of a line",
        if clients == 1 { "" } else { "s" }
    ));
}

/// The shutdown flush ran out of time for a client that did not read.
pub fn killed_with_output(id: ClientId, pending: usize) {
    diag(format_args!(
        "client {id}: closed at shutdown with {pending} bytes of output it did not read"
    ));
}

/// The diagnostic when stdout fails (a reader that went away: `| head -c
/// 1`), said once, not once per write: what the sink takes after that is
/// discarded.
pub fn stdout_failed(why: &dyn fmt::Display) {
    diag(format_args!(
        "stdout: {}; what clients send from now on is discarded",
        without_os_error(&why.to_string())
    ));
}

/// Status lines dropped because stdout stayed full past `--max-pending`.
pub fn status_lines_dropped(lines: u64) {
    diag(format_args!(
        "stdout: {lines} status lines not printed: stdout was full"
    ));
}

/// The error that ends a server whose stdout stayed full through shutdown
/// (printed as `error: ...`, exit 1).
pub fn stdout_unwritten(bytes: usize) -> String {
    format!("stdout: {bytes} bytes not written: still full at the end of the shutdown")
}

/// The diagnostic for a client dropped over `--max-pending`
/// (`SlowPolicy::Disconnect`).
pub fn dropped_slow(id: ClientId, pending: usize, max_pending: usize) {
    diag(format_args!(
        "client {id}: dropped, {pending} bytes of output pending (over --max-pending {max_pending})"
    ));
}

/// The diagnostic for a client dropped after an I/O error. The OS reason
/// reads as in every other message, without Rust's ` (os error N)`.
pub fn dropped_error(id: ClientId, why: &dyn fmt::Display) {
    diag(format_args!(
        "client {id}: {}",
        without_os_error(&why.to_string())
    ));
}

/// `text` with every ` (os error N)` (N digits) removed.
pub fn without_os_error(text: &str) -> String {
    const OPEN: &str = " (os error ";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(OPEN) {
        let after = &rest[at + OPEN.len()..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && after[digits..].starts_with(')') {
            out.push_str(&rest[..at]);
            rest = &after[digits + 1..];
        } else {
            out.push_str(&rest[..at + OPEN.len()]);
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Prints one diagnostic line on stderr.
pub fn diag(args: fmt::Arguments<'_>) {
    let mut err = io::stderr().lock();
    let _ = writeln!(err, "{args}");
    let _ = err.flush();
}

/// A duration as a user wrote it: `30`, `0.5`, `1.25`.
pub struct Secs(pub Duration);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.subsec_nanos() == 0 {
            write!(f, "{}", d.as_secs())
        } else {
            // f64's shortest round-trip form: 0.5, not 0.500000.
            write!(f, "{}", d.as_secs_f64())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_print_as_written() {
        assert_eq!(Secs(Duration::from_secs(30)).to_string(), "30");
        assert_eq!(Secs(Duration::from_millis(500)).to_string(), "0.5");
        assert_eq!(Secs(Duration::from_millis(1250)).to_string(), "1.25");
    }

    #[test]
    fn os_error_codes_are_dropped_and_nothing_else() {
        let reset = std::io::Error::from_raw_os_error(libc::ECONNRESET);
        assert_eq!(
            without_os_error(&reset.to_string()),
            "Connection reset by peer"
        );
        assert_eq!(
            without_os_error("cannot start a writer thread: x (os error 11); closing"),
            "cannot start a writer thread: x; closing"
        );
        for kept in ["plain", "a (os error )", "a (os error 1x)", "(os error 5)"] {
            assert_eq!(without_os_error(kept), kept);
        }
    }
}
