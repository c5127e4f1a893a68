//! Opening the client connections: one after another with a short timeout
//! and retry (the default), or all at once (`--connect-burst`).
//!
//! Why sequential is the default (ledger anchors, observation 5): a server
//! with a tiny accept backlog (the seeds' `listen(5)`) overflows under a SYN
//! burst; Linux then answers with SYN cookies, and a client whose completing
//! ACK was dropped later gets a RST for its data. Connecting one at a time,
//! giving up on an attempt after a few ms and retrying, measures the server
//! instead of the kernel's 1 s SYN retransmit timer. `--connect-burst` shows
//! what a burst does (our servers' backlog of 1024 should lose nothing).

use std::io;
use std::net::{SocketAddr, TcpStream as StdStream};
use std::ops::Range;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

/// Timed-out attempts per client before the run gives up on connecting.
const MAX_ATTEMPTS: u32 = 500;
/// Refused (or otherwise failed) attempts per client before giving up: a
/// server that is not listening should fail the run fast.
const MAX_REFUSALS: u32 = 10;

/// How connections are opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectMode {
    /// One at a time; each attempt times out after the given time and is retried.
    Sequential { attempt_timeout: Duration },
    /// Every SYN at once (non-blocking connects), no retry.
    Burst,
}

/// The connections of one run, non-blocking, `TCP_NODELAY` set.
#[derive(Debug)]
pub struct Connected {
    pub streams: Vec<TcpStream>,
    /// Attempts that failed and were retried (sequential mode).
    pub retries: u64,
    pub elapsed: Duration,
}

/// Opens one connection, retrying as [`ConnectMode::Sequential`] describes.
/// Returns the stream and the number of retries.
///
/// # Errors
/// The last error after `MAX_ATTEMPTS` attempts.
pub fn connect_one(addr: SocketAddr, attempt_timeout: Duration) -> io::Result<(TcpStream, u64)> {
    let (mut timeouts, mut refusals) = (0, 0);
    loop {
        match StdStream::connect_timeout(&addr, attempt_timeout) {
            Ok(s) => {
                s.set_nodelay(true)?;
                s.set_nonblocking(true)?;
                return Ok((TcpStream::from_std(s), u64::from(timeouts + refusals)));
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut && timeouts + 1 < MAX_ATTEMPTS => {
                timeouts += 1;
            }
            Err(e) if e.kind() != io::ErrorKind::TimedOut && refusals + 1 < MAX_REFUSALS => {
                refusals += 1;
                // Refused or reset: the server is not ready; don't spin.
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Opens one connection to `addr` for each client index in `ids` (a
/// thread's share; the indexes only name clients in errors).
///
/// # Errors
/// The first connection that cannot be made (with the client number).
pub fn connect_all(
    addr: SocketAddr,
    ids: Range<usize>,
    mode: ConnectMode,
) -> io::Result<Connected> {
    let (first, n) = (ids.start, ids.len());
    let start = Instant::now();
    let mut streams = Vec::with_capacity(n);
    let mut retries = 0;
    match mode {
        ConnectMode::Sequential { attempt_timeout } => {
            for i in 0..n {
                let (s, r) = connect_one(addr, attempt_timeout).map_err(|e| {
                    io::Error::new(e.kind(), format!("client {}: {e}", first + i + 1))
                })?;
                retries += r;
                streams.push(s);
            }
        }
        ConnectMode::Burst => {
            let mut poll = Poll::new()?;
            for i in 0..n {
                let mut s = TcpStream::connect(addr)?;
                poll.registry()
                    .register(&mut s, Token(i), Interest::WRITABLE)?;
                streams.push(s);
            }
            let mut pending = vec![true; n];
            let mut left = n;
            let mut events = Events::with_capacity(1024);
            let deadline = start + Duration::from_secs(60);
            while left > 0 {
                let now = Instant::now();
                if now >= deadline {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("{left} of {n} connections not established after 60 s"),
                    ));
                }
                match poll.poll(&mut events, Some(deadline - now)) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => other?,
                }
                for ev in &events {
                    let i = ev.token().0;
                    if !pending[i] {
                        continue;
                    }
                    if let Some(e) = streams[i].take_error()? {
                        return Err(io::Error::new(
                            e.kind(),
                            format!("client {}: {e}", first + i + 1),
                        ));
                    }
                    // Writable without an error, or still in progress (a
                    // spurious event): peer_addr tells them apart.
                    match streams[i].peer_addr() {
                        Ok(_) => {
                            pending[i] = false;
                            left -= 1;
                        }
                        Err(e) if e.kind() == io::ErrorKind::NotConnected => {}
                        Err(e) => {
                            return Err(io::Error::new(
                                e.kind(),
                                format!("client {}: {e}", first + i + 1),
                            ));
                        }
                    }
                }
            }
            for s in &mut streams {
                poll.registry().deregister(s)?;
                s.set_nodelay(true)?;
            }
        }
    }
    Ok(Connected {
        streams,
        retries,
        elapsed: start.elapsed(),
    })
}
