//! A client's reader thread: blocking reads into the client's
//! [`Session`], the idle flush as a read timeout, and the end of the
//! connection (last message, `on_disconnect`, flush, FIN, linger).

use std::io::{self, Read};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::client::{Client, Gate};
use super::{Server, lock};
use crate::handlers::{ClientId, Outbox};
use crate::server_core::ending::{Cause, Step};
use crate::server_core::session::{Input, MAX_FINAL_READ_BYTES, Session};
use crate::status;

/// A reader's buffer starts this small (an idle connection holds it while
/// blocked in `read`) ...
const READ_CHUNK_MIN_BYTES: usize = 4 * 1024;
/// ... and grows to this while reads keep filling it (bulk senders).
const READ_CHUNK_MAX_BYTES: usize = 64 * 1024;

/// A reader thread's own state.
pub(super) struct Reader {
    session: Session,
    buf: Vec<u8>,
    /// The socket's current read timeout, so it is set only on change.
    timeout: Option<Duration>,
    /// Bytes read since shutdown asked us to stop.
    final_bytes: usize,
    /// This thread's outbox: Stdout and Diagnostic actions are carried out
    /// from it after the handler lock is released.
    out: Outbox,
}

impl Reader {
    pub(super) fn new(session: Session) -> Self {
        Reader {
            session,
            buf: vec![0; READ_CHUNK_MIN_BYTES],
            timeout: None,
            final_bytes: 0,
            out: Outbox::new(),
        }
    }

    fn set_timeout(&mut self, stream: &TcpStream, wanted: Option<Duration>) {
        // Skip the syscall when the change is below timer resolution anyway.
        let close = |a: Duration, b: Duration| a.abs_diff(b) < Duration::from_millis(2);
        let same = match (self.timeout, wanted) {
            (None, None) => true,
            (Some(a), Some(b)) => close(a, b),
            _ => false,
        };
        if !same && stream.set_read_timeout(wanted).is_ok() {
            self.timeout = wanted;
        }
    }

    /// Grows the buffer while reads fill it, and frees it again when the
    /// client goes back to small messages.
    fn adapt_buffer(&mut self, n: usize) {
        let len = self.buf.len();
        if n == len && len < READ_CHUNK_MAX_BYTES {
            self.buf.resize((len * 4).min(READ_CHUNK_MAX_BYTES), 0);
        } else if n < READ_CHUNK_MIN_BYTES && len > READ_CHUNK_MIN_BYTES {
            self.buf = vec![0; READ_CHUNK_MIN_BYTES];
        }
    }
}

impl Server {
    /// A reader's state for a new client.
    pub(super) fn reader(&self) -> Reader {
        Reader::new(Session::new(self.framing, self.config.max_line_bytes))
    }

    pub(super) fn serve(&self, client: &Client) {
        let mut r = self.reader();
        let end = self.read_loop(client, &mut r);
        self.end_client(client, &mut r, end);
    }

    fn read_loop(&self, client: &Client, r: &mut Reader) -> Cause {
        loop {
            let final_read = match client.gate(r.session.idle_deadline(), false) {
                Gate::End(end) => return end,
                Gate::IdleDue => {
                    if let Some(end) = self.flush_partial(client.id, r) {
                        return end;
                    }
                    continue;
                }
                Gate::Read => None,
                Gate::FinalRead { cut } => Some(cut),
            };
            if let Some(cut) = final_read
                && r.final_bytes >= MAX_FINAL_READ_BYTES
            {
                return Cause::Shutdown { cut };
            }
            let mut timeout = None;
            if let Some(deadline) = r.session.idle_deadline() {
                let now = Instant::now();
                if deadline <= now {
                    if let Some(end) = self.flush_partial(client.id, r) {
                        return end;
                    }
                    continue;
                }
                timeout = Some(deadline - now);
            }
            r.set_timeout(&client.stream, timeout);
            match (&client.stream).read(&mut r.buf) {
                Ok(0) => {
                    self.trace.eof(client.id);
                    return match final_read {
                        Some(cut) => Cause::Shutdown { cut },
                        // Our own shutdown(Read) looks like EOF.
                        None => client.state().stop.unwrap_or(Cause::Eof),
                    };
                }
                Ok(n) => {
                    self.trace.read(client.id, n);
                    if final_read.is_some() {
                        r.final_bytes += n;
                    }
                    // A pause may have come while we were blocked in read:
                    // hold the bytes until it ends.
                    loop {
                        match client.gate(r.session.idle_deadline(), true) {
                            Gate::End(end) => return end,
                            Gate::IdleDue => {
                                if let Some(end) = self.flush_partial(client.id, r) {
                                    return end;
                                }
                            }
                            Gate::Read | Gate::FinalRead { .. } => break,
                        }
                    }
                    if let Some(end) = self.handle_input(client.id, r, n) {
                        return end;
                    }
                    r.adapt_buffer(n);
                }
                // SO_RCVTIMEO expired: the loop top flushes if due.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => {
                    let mut st = client.state();
                    if let Some(stop) = st.stop {
                        return stop;
                    }
                    let first = client.claim_failure(&mut st);
                    drop(st);
                    if first {
                        status::dropped_error(client.id, &e);
                    }
                    return Cause::Dropped;
                }
            }
        }
    }

    /// Hands `r.buf[..n]` to the session and handler.
    fn handle_input(&self, id: ClientId, r: &mut Reader, n: usize) -> Option<Cause> {
        let Reader {
            session, buf, out, ..
        } = r;
        let data = &buf[..n];
        let input = self.with_handler(Some(id), out, |handler, out| {
            let now = out.now();
            let input = session.input(id, data, || now, handler, out);
            self.trace
                .framed(id, self.framing, data, || session.partial_len());
            input
        });
        match input {
            Input::Continue => None,
            Input::Closed => Some(Cause::HandlerClosed),
            Input::TooLong => Some(Cause::TooLong),
        }
    }

    /// Hands out the unfinished line as a message (EOF tail, idle flush,
    /// shutdown); `Some(Cause::TooLong)` if it is over `--max-line`.
    fn flush_partial(&self, id: ClientId, r: &mut Reader) -> Option<Cause> {
        let session = &mut r.session;
        let result = self.with_handler(Some(id), &mut r.out, |handler, out| {
            session.flush_partial(id, handler, out)
        });
        result.is_err().then_some(Cause::TooLong)
    }

    /// The end of a connection, in the reader thread (or the supervisor if
    /// the reader could not be started).
    pub(super) fn end_client(&self, client: &Client, r: &mut Reader, end: Cause) {
        let id = client.id;
        self.trace.closing(id);
        let end = match end {
            Cause::Eof | Cause::Shutdown { cut: false } => self.flush_partial(id, r).unwrap_or(end),
            other => other,
        };
        match end {
            Cause::Eof | Cause::Shutdown { cut: false } => {}
            Cause::Shutdown { cut: true } => {
                let paused = client.state().gates.by_handler;
                if r.session.cut(paused) {
                    self.cut_partial_lines.fetch_add(1, Ordering::Relaxed);
                }
            }
            Cause::TooLong => {
                status::line_too_long(id, self.config.max_line_bytes);
                r.out.send(id, status::LINE_TOO_LONG);
            }
            Cause::HandlerClosed | Cause::Dropped | Cause::Killed => r.session.discard(),
        }
        // Tell the handler (once), forget the id and print the status line,
        // in one lock hold: the line then comes out in the order the handler
        // saw clients leave (presence's broadcasts follow that order), not in
        // whatever order the threads reach the code below.
        let ending = {
            let mut core = self.core();
            if let Some(reg) = core.registry.get_mut(&id)
                && reg.ending.close(end).contains(Step::TellHandler)
            {
                core.handler.on_disconnect(id, &mut r.out);
            }
            if self.persist(&r.out) {
                self.apply(&mut core, &r.out, Some(id));
            }
            let reg = core.registry.remove(&id);
            self.census.leave(id);
            reg.map(|reg| reg.ending)
        };
        self.carry_out_unlocked(&r.out, None);
        r.out.clear();
        // SPEC's durability rule: our FIN may tell the client all it sent
        // is safe. If the store failed it gets a reset instead.
        let durable = self.sync_before_fin();
        // All this reader handled is durable now: a FIN tells the truth.
        // Not after an abrupt end (a kill, a drop), whose reader may have
        // dropped bytes it held: that connection is reset instead.
        if durable && end.is_graceful() {
            client.allow_fin();
        }

        // The table forgets it now (its status line is out already), not
        // after the flush and linger below, which take different times per
        // client.
        {
            let mut table = lock(&self.table);
            let gone = table.remove(&id);
            if let Some(client) = gone {
                lock(&self.flushing).insert(id, client);
            }
        }
        if !durable {
            client.abandon();
        } else if !end.is_graceful() {
            client.kill_and_join(Cause::Killed);
        } else if client.close_output()
            && let Some(ending) = ending
        {
            self.trace.lingering(id);
            client.linger(ending, matches!(end, Cause::Shutdown { .. }));
        } else {
            client.kill_and_join(Cause::Killed);
        }
        lock(&self.flushing).remove(&id);
        self.trace.closed(id);
        if self.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            let _ = self.waker.wake();
        }
    }
}
