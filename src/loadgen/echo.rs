//! Echo mode: each client keeps at most `window` lines in flight, checks
//! every reply byte for byte and in order, and times each line from the
//! moment it was queued to the moment its echo was parsed.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::time::Instant;

use mio::Poll;
use mio::net::TcpStream;

use super::lines;
use super::spread::{Part, Slot, spread};
use super::stats::Latencies;
use super::{
    Options, READ_BUF_BYTES, Report, RunError, Source, connect, diag_limited, drive_until,
    interrupted, register_all, would_block,
};

struct Client {
    /// 1-based, as in the generated lines.
    id: usize,
    stream: TcpStream,
    sent: u64,
    received: u64,
    /// Queued output not yet taken by the socket.
    out: Vec<u8>,
    out_pos: usize,
    /// Received bytes of a reply not complete yet.
    partial: Vec<u8>,
    /// When each line in flight was queued, oldest first.
    sent_at: VecDeque<Instant>,
    done: bool,
}

struct Run<'a> {
    opts: &'a Options,
    latencies: Latencies,
    expect: Vec<u8>,
    bytes_sent: u64,
    bytes_received: u64,
    lines_received: u64,
    errors: u64,
    shown: u64,
    finished: usize,
}

impl Run<'_> {
    /// Line `seq` of client `id`, into `out`.
    fn line(&self, id: usize, seq: u64, out: &mut Vec<u8>) {
        match &self.opts.source {
            Source::Generated { .. } => lines::echo_line(id, seq, self.opts.line_bytes, out),
            Source::Input(input) => {
                out.extend_from_slice(&input[(seq % input.len() as u64) as usize]);
            }
        }
    }

    fn drive(&mut self, c: &mut Client, buf: &mut [u8], poll: &Poll) {
        if c.done {
            return;
        }
        if let Err(e) = self.pump(c, buf) {
            diag_limited(&mut self.shown, 5, || format!("echo client {}: {e}", c.id));
            self.errors += 1;
            c.done = true;
        }
        if c.done {
            let _ = poll.registry().deregister(&mut c.stream);
            let _ = c.stream.shutdown(Shutdown::Both);
            self.finished += 1;
        }
    }

    fn pump(&mut self, c: &mut Client, buf: &mut [u8]) -> io::Result<()> {
        let lines = self.opts.lines;
        loop {
            let mut progress = false;
            // Queue new lines within the window.
            let now = Instant::now();
            while c.sent < lines && c.sent - c.received < self.opts.window {
                self.line(c.id, c.sent, &mut c.out);
                c.sent_at.push_back(now);
                c.sent += 1;
            }
            // Send what the socket takes.
            while c.out_pos < c.out.len() {
                match c.stream.write(&c.out[c.out_pos..]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => {
                        c.out_pos += n;
                        self.bytes_sent += n as u64;
                        progress = true;
                    }
                    Err(e) if would_block(&e) => break,
                    Err(e) if interrupted(&e) => {}
                    Err(e) => return Err(e),
                }
            }
            if c.out_pos == c.out.len() {
                c.out.clear();
                c.out_pos = 0;
            }
            // Read and check every complete reply.
            loop {
                let n = match c.stream.read(buf) {
                    // Every reply is in: the server may close.
                    Ok(0) if c.received == lines => break,
                    Ok(0) => {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("server closed after {} of {lines} replies", c.received),
                        ));
                    }
                    Ok(n) => n,
                    Err(e) if would_block(&e) => break,
                    Err(e) if interrupted(&e) => continue,
                    Err(e) => return Err(e),
                };
                progress = true;
                self.bytes_received += n as u64;
                self.take_replies(c, &buf[..n])?;
            }
            if c.received == lines {
                c.done = true;
                return Ok(());
            }
            if !progress {
                return Ok(());
            }
        }
    }

    fn take_replies(&mut self, c: &mut Client, mut data: &[u8]) -> io::Result<()> {
        let now = Instant::now();
        while let Some(i) = memchr::memchr(b'\n', data) {
            let (head, rest) = data.split_at(i + 1);
            data = rest;
            if c.received >= c.sent {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a reply to a line never sent",
                ));
            }
            let mut expect = std::mem::take(&mut self.expect);
            expect.clear();
            self.line(c.id, c.received, &mut expect);
            let matches = if c.partial.is_empty() {
                head == expect.as_slice()
            } else {
                c.partial.extend_from_slice(head);
                let m = c.partial == expect;
                c.partial.clear();
                m
            };
            if !matches {
                self.errors += 1;
                let seq = c.received;
                diag_limited(&mut self.shown, 5, || {
                    format!(
                        "echo client {} line {seq}: reply differs from {:?}",
                        c.id,
                        String::from_utf8_lossy(&expect)
                    )
                });
            }
            self.expect = expect;
            let t0 = c.sent_at.pop_front().expect("a line in flight per reply");
            self.latencies.record(now.duration_since(t0));
            c.received += 1;
            self.lines_received += 1;
        }
        // Bounded: a reply longer than any line we sent is already wrong.
        if c.partial.len() + data.len() > 1 << 20 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a reply over 1 MiB without a newline",
            ));
        }
        c.partial.extend_from_slice(data);
        Ok(())
    }
}

/// Runs echo mode, the clients spread over `--threads` threads.
///
/// # Errors
/// See [`super::run`].
pub fn run(opts: &Options) -> Result<Report, RunError> {
    let total = opts.lines * opts.clients as u64;
    let part = spread(
        opts,
        |n| format!("{n}/{total} replies"),
        |slot| part(opts, &slot),
    )?;
    let mut report = Report::new(opts);
    part.into_report(&mut report);
    Ok(report)
}

/// A poll with every one of `streams` registered, and their clients.
fn register(
    opts: &Options,
    slot: &Slot<'_>,
    streams: Vec<TcpStream>,
) -> std::io::Result<(Vec<Client>, Poll)> {
    let window = opts.window.min(4096) as usize;
    let (poll, clients) = register_all(streams, |i, stream| Client {
        id: slot.clients.start + i + 1,
        stream,
        sent: 0,
        received: 0,
        out: Vec::with_capacity(opts.line_bytes * window),
        out_pos: 0,
        partial: Vec::new(),
        sent_at: VecDeque::with_capacity(window),
        done: false,
    })?;
    Ok((clients, poll))
}

/// One thread's share of an echo run.
fn part(opts: &Options, slot: &Slot<'_>) -> Result<Part, RunError> {
    let connected = connect::connect_all(opts.addr, slot.clients.clone(), opts.connect);
    // Registered before the start gate: setting up our own poll is not
    // the server's time (18,000 epoll_ctl calls are tens of ms).
    let prepared = connected.and_then(|c| {
        let (clients, poll) = register(opts, slot, c.streams)?;
        Ok((clients, poll, c.elapsed, c.retries))
    });
    let Some(start) = slot.ready(prepared.is_ok()) else {
        return prepared.map(|_| Part::default()).map_err(RunError::from);
    };
    let (mut clients, mut poll, connect_elapsed, connect_retries) = prepared?;
    let deadline = slot.deadline;
    let total = opts.lines * clients.len() as u64;
    let mut run = Run {
        opts,
        latencies: Latencies::with_capacity(usize::try_from(total.min(50_000_000)).unwrap_or(0)),
        expect: Vec::new(),
        bytes_sent: 0,
        bytes_received: 0,
        lines_received: 0,
        errors: 0,
        shown: 0,
        finished: 0,
    };
    let mut buf = vec![0u8; READ_BUF_BYTES];
    let mut reported = 0;
    for c in &mut clients {
        run.drive(c, &mut buf, &poll);
    }
    let unfinished = clients.len() - run.finished;
    let timed_out = drive_until(&mut poll, deadline, "echo", unfinished, |poll, events| {
        for ev in events {
            run.drive(&mut clients[ev.token().0], &mut buf, poll);
        }
        slot.advance(run.lines_received - reported);
        reported = run.lines_received;
        clients.len() - run.finished
    })?;
    run.errors += timed_out;
    Ok(Part {
        lines: run.lines_received,
        bytes_sent: run.bytes_sent,
        bytes_received: run.bytes_received,
        errors: run.errors,
        latencies: run.latencies,
        connect: connect_elapsed,
        connect_retries,
        span: Some((start, Instant::now())),
        ..Part::default()
    })
}
