//! Opening the client connections: one after another with a short timeout
//! and retry (the default), or all at once (`--connect-burst`).
//!
//! Why sequential is the default (ledger anchors, observation 5): a server
//! with a tiny accept backlog (the seeds' `listen(5)`) overflows under a SYN
//! burst; Linux then answers with SYN cookies, and a client whose completing
//! ACK was dropped later gets a RST for its data. Connecting one at a time,
//! giving up on an attempt after a few ms and retrying, measures the server
//! instead of the kernel's 1 s SYN retransmit timer. `--connect-burst` shows
//! what a burst does (our servers' default backlog of 4096 should lose nothing).
//!
//! Source addresses (SPEC): against an IPv4 loopback server, client `i`
//! connects from 127.0.0.(1 + i mod 254). From one source address every
//! connect searches the ephemeral port range for a free 4-tuple, and with
//! thousands of ports in use that search cost ~365 us a connect (strace, 18,000
//! clients), time a measurement of the server must not include. With
//! `IP_BIND_ADDRESS_NO_PORT` the bind picks only the address, the port is
//! chosen at connect time per destination, and 254 addresses share the load.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Protocol, Socket, Type};

/// Loopback source addresses clients are spread over: 127.0.0.1 to
/// 127.0.0.254 (Linux routes all of 127/8 to `lo`).
const LOOPBACK_SOURCES: usize = 254;

/// The source address client `index` (0-based) binds to before connecting
/// to `server`: spread over `LOOPBACK_SOURCES` (254) addresses when the server
/// is on IPv4 loopback, none (the kernel's choice) otherwise.
pub fn source_for(server: SocketAddr, index: usize) -> Option<SocketAddr> {
    match server.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => {
            let last = u8::try_from(1 + index % LOOPBACK_SOURCES).unwrap_or(1);
            Some(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)),
                0,
            ))
        }
        _ => None,
    }
}

/// An unconnected TCP socket for client `index`, bound to its
/// [`source_for`] address (address only: the port is left to connect);
/// `nonblocking` from its creation (SOCK_NONBLOCK: no fcntl calls).
pub(crate) fn client_socket(
    server: SocketAddr,
    index: usize,
    nonblocking: bool,
) -> io::Result<Socket> {
    let ty = if nonblocking {
        Type::STREAM.nonblocking()
    } else {
        Type::STREAM
    };
    let socket = Socket::new(Domain::for_address(server), ty, Some(Protocol::TCP))?;
    if let Some(source) = source_for(server, index) {
        set_bind_address_no_port(&socket)?;
        socket.bind(&source.into())?;
    }
    Ok(socket)
}

/// `IP_BIND_ADDRESS_NO_PORT` (Linux 4.2): a bind with port 0 takes the
/// address only; the port is picked at connect, where the kernel knows the
/// destination and may reuse a port another destination already uses.
fn set_bind_address_no_port(socket: &Socket) -> io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let on: libc::c_int = 1;
    // SAFETY: setsockopt reads `on` (an int, its size given) on a socket we own.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            std::ptr::from_ref(&on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

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

/// Opens client `index`'s connection (0-based; it picks the source
/// address), retrying as [`ConnectMode::Sequential`] describes. Returns the
/// stream and the number of retries.
///
/// # Errors
/// The last error after `MAX_ATTEMPTS` attempts.
pub fn connect_one(
    addr: SocketAddr,
    index: usize,
    attempt_timeout: Duration,
) -> io::Result<(TcpStream, u64)> {
    let (mut timeouts, mut refusals) = (0, 0);
    loop {
        let attempt = client_socket(addr, index, false)
            .and_then(|s| s.connect_timeout(&addr.into(), attempt_timeout).map(|()| s));
        match attempt {
            Ok(s) => {
                s.set_nodelay(true)?;
                s.set_nonblocking(true)?;
                let s: std::net::TcpStream = s.into();
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
                let (s, r) = connect_one(addr, first + i, attempt_timeout).map_err(|e| {
                    io::Error::new(e.kind(), format!("client {}: {e}", first + i + 1))
                })?;
                retries += r;
                streams.push(s);
            }
        }
        ConnectMode::Burst => {
            let mut poll = Poll::new()?;
            for i in 0..n {
                let socket = client_socket(addr, first + i, true)?;
                match socket.connect(&addr.into()) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
                    Err(e) => {
                        return Err(io::Error::new(
                            e.kind(),
                            format!("client {}: {e}", first + i + 1),
                        ));
                    }
                }
                let mut s = TcpStream::from_std(socket.into());
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
            // Connected: what follows is our own bookkeeping, not timed.
            let elapsed = start.elapsed();
            for s in &mut streams {
                poll.registry().deregister(s)?;
                s.set_nodelay(true)?;
            }
            return Ok(Connected {
                streams,
                retries,
                elapsed,
            });
        }
    }
    Ok(Connected {
        streams,
        retries,
        elapsed: start.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_clients_spread_over_254_sources() {
        let server: SocketAddr = "127.0.0.1:7722".parse().unwrap();
        let ip = |i| source_for(server, i).map(|a| a.ip().to_string());
        assert_eq!(ip(0).as_deref(), Some("127.0.0.1"));
        assert_eq!(ip(253).as_deref(), Some("127.0.0.254"));
        assert_eq!(ip(254).as_deref(), Some("127.0.0.1"));
        assert_eq!(source_for(server, 5).unwrap().port(), 0);
        // Another loopback address of the server's is loopback too.
        assert!(source_for("127.1.2.3:1".parse().unwrap(), 0).is_some());
        // Elsewhere the kernel picks: a remote host, IPv6 (one loopback address).
        assert_eq!(source_for("10.0.0.1:7722".parse().unwrap(), 0), None);
        assert_eq!(source_for("[::1]:7722".parse().unwrap(), 0), None);
    }

    #[test]
    fn connections_come_from_the_spread_sources() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        for mode in [
            ConnectMode::Burst,
            ConnectMode::Sequential {
                attempt_timeout: Duration::from_secs(5),
            },
        ] {
            let connected = connect_all(addr, 300..303, mode).unwrap();
            let sources: Vec<_> = connected
                .streams
                .iter()
                .map(|s| s.local_addr().unwrap().ip().to_string())
                .collect();
            assert_eq!(sources, ["127.0.0.47", "127.0.0.48", "127.0.0.49"]);
            for _ in 0..3 {
                let (_, peer) = listener.accept().unwrap();
                assert!(sources.contains(&peer.ip().to_string()), "{peer}");
            }
        }
    }
}
