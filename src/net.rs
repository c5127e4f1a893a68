//! Socket set-up shared by both servers and the clients.

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

/// SPEC: a burst of 1,000 clients connecting at once loses none of them.
pub const LISTEN_BACKLOG: i32 = 1024;

/// A listening socket on `addr` with SO_REUSEADDR (a server can restart at
/// once) and SPEC's backlog. Blocking; callers switch it as they need.
///
/// # Errors
/// The OS error from socket, bind or listen.
pub fn bind_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        // `::` serves IPv4 too where the system allows it, as users expect.
        let _ = socket.set_only_v6(false);
    }
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// The OS reason without Rust's " (os error N)" suffix, for one-line errors.
pub fn os_reason(err: &io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error") {
        Some(cut) => text[..cut].to_string(),
        None => text,
    }
}
