//! Socket set-up shared by both servers and the clients.

use std::io;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsFd;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

/// SPEC's default `--backlog`: a burst of thousands of clients connecting
/// at once waits in the accept queue instead of losing SYNs (each lost one
/// costs its client a 1 s retransmit). Linux caps it at
/// `net.core.somaxconn` (4096 since 5.4).
pub const LISTEN_BACKLOG: i32 = 4096;

/// A listening socket on `addr` with SO_REUSEADDR (a server can restart at
/// once) and SPEC's default backlog. Blocking; callers switch it as they need.
///
/// # Errors
/// The OS error from socket, bind or listen.
pub fn bind_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    bind_listener_with_backlog(addr, LISTEN_BACKLOG)
}

/// [`bind_listener`] with the accept backlog `backlog` (`--backlog`).
///
/// # Errors
/// The OS error from socket, bind or listen.
pub fn bind_listener_with_backlog(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        // `::` serves IPv4 too where the system allows it, as users expect.
        let _ = socket.set_only_v6(false);
    }
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

/// Whether closing `socket` resets the connection (`SO_LINGER` on, 0 s)
/// instead of closing it with a FIN (the default).
///
/// Why a server with a store sets it on every connection until what the
/// client sent is durable: when a process dies (SIGKILL, a crash) the
/// kernel closes its sockets, and a socket whose receive queue is empty
/// gets a FIN, which a ledger client cannot tell from our "all you sent is
/// durable" close. A thread that has read the client's last bytes into
/// memory but not yet written them to the store empties that queue, so a
/// death at that moment would acknowledge bytes that are lost. With linger
/// 0 the kernel sends RST instead, which the client sees as a failure.
/// `shutdown(2)` ignores the option, so it is cleared just before the FIN
/// that acknowledges (then the usual close and `TIME_WAIT` follow).
///
/// # Errors
/// The OS error from `setsockopt`.
pub fn set_reset_on_close(socket: &impl AsFd, reset: bool) -> io::Result<()> {
    socket2::SockRef::from(socket).set_linger(reset.then_some(Duration::ZERO))
}

/// Asked for on a `--udp` socket's receive buffer: a burst of datagrams
/// waits here while the loop serves other sockets (the kernel caps it at
/// `net.core.rmem_max`). With Linux's default (about 208 KiB) loadgen lost
/// a third of the datagrams at 50 clients x 64 in flight.
pub const UDP_RECV_BUFFER_BYTES: usize = 4 * 1024 * 1024;
/// Asked for on its send buffer: replies to many peers in one pass.
pub const UDP_SEND_BUFFER_BYTES: usize = 1024 * 1024;

/// The `--udp` socket on `addr` (the TCP listener's address, port
/// included), with large buffers. No SO_REUSEADDR: on UDP it would let a
/// second server share the port silently. Blocking; callers switch it.
///
/// # Errors
/// The OS error from socket or bind (buffer sizes are best effort).
pub fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    let _ = socket.set_recv_buffer_size(UDP_RECV_BUFFER_BYTES);
    let _ = socket.set_send_buffer_size(UDP_SEND_BUFFER_BYTES);
    if addr.is_ipv6() {
        let _ = socket.set_only_v6(false);
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// The listener on `addr` (accept backlog `backlog`) and, with `udp`, a UDP socket on the same
/// address and port. With port 0 the UDP socket takes the port the
/// listener got; if that port is taken for UDP, both are bound again on a
/// new port (a few times).
///
/// # Errors
/// The OS error of the bind that failed, and the address it was for.
pub fn bind_server(
    addr: SocketAddr,
    udp: bool,
    backlog: i32,
) -> Result<(TcpListener, Option<UdpSocket>), (SocketAddr, io::Error)> {
    const TRIES_ON_PORT_0: usize = 8;
    let mut tries = 0;
    loop {
        let listener = bind_listener_with_backlog(addr, backlog).map_err(|e| (addr, e))?;
        if !udp {
            return Ok((listener, None));
        }
        let bound = listener.local_addr().map_err(|e| (addr, e))?;
        match bind_udp(bound) {
            Ok(socket) => return Ok((listener, Some(socket))),
            Err(e)
                if addr.port() == 0
                    && e.kind() == io::ErrorKind::AddrInUse
                    && tries < TRIES_ON_PORT_0 =>
            {
                tries += 1;
            }
            Err(e) => {
                let why = format!("{} (udp)", os_reason(&e));
                return Err((bound, io::Error::new(e.kind(), why)));
            }
        }
    }
}

/// The OS reason without Rust's " (os error N)" suffix, for one-line errors.
pub fn os_reason(err: &io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error") {
        Some(cut) => text[..cut].to_string(),
        None => text,
    }
}

/// A new poll with the listening socket (non-blocking, under
/// [`tokens::LISTENER`]) and the shutdown signals ([`tokens::SIGNALS`])
/// registered: how an event loop and the `--reactors N` acceptor start.
///
/// # Errors
/// Creating the poll or registering either source failed.
pub fn poll_with_listener(
    listener: std::net::TcpListener,
    signals: &mut crate::signals::ShutdownSignals,
) -> std::io::Result<(mio::Poll, mio::net::TcpListener)> {
    let poll = mio::Poll::new()?;
    listener.set_nonblocking(true)?;
    let mut listener = mio::net::TcpListener::from_std(listener);
    poll.registry()
        .register(&mut listener, tokens::LISTENER, mio::Interest::READABLE)?;
    signals.register(poll.registry(), tokens::SIGNALS)?;
    Ok((poll, listener))
}

/// The poll tokens of a server's own sources, one set for every poll (the
/// event loop, the `--reactors N` acceptor, the threaded supervisor and its
/// UDP thread). At the top of the range, so that a client's token is its
/// slab key with no offset arithmetic.
pub mod tokens {
    use mio::Token;

    /// The listening socket.
    pub const LISTENER: Token = Token(usize::MAX);
    /// The shutdown signals' self-pipe.
    pub const SIGNALS: Token = Token(usize::MAX - 1);
    /// A `mio::Waker`: another thread has something for this poll.
    pub const WAKE: Token = Token(usize::MAX - 2);
    /// The `--udp` socket.
    pub const UDP: Token = Token(usize::MAX - 3);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpStream};

    /// A client that sent everything and its EOF, served by a socket that
    /// read it all and is then closed as a dying process's sockets are
    /// (`close`, nothing unread): what does the client read?
    fn client_sees_after_close(reset: bool) -> io::Result<usize> {
        let listener = bind_listener("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut served, _) = listener.accept().unwrap();
        set_reset_on_close(&served, true).unwrap();
        if !reset {
            set_reset_on_close(&served, false).unwrap();
        }
        client.write_all(&[b'x'; 100_000]).unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let mut all = Vec::new();
        served.read_to_end(&mut all).unwrap();
        assert_eq!(all.len(), 100_000);
        drop(served);
        client.read(&mut [0u8; 16])
    }

    #[test]
    fn a_socket_set_to_reset_is_reset_on_close_even_with_nothing_unread() {
        let err = client_sees_after_close(true).expect_err("a reset, not a FIN");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err}");
    }

    #[test]
    fn a_cleared_socket_closes_with_a_fin() {
        // Exactly what a client takes for "all you sent is durable": the
        // reason the option is cleared only once it is.
        assert_eq!(client_sees_after_close(false).unwrap(), 0);
    }
}
