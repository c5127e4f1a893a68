//! The accept step every acceptor shares (the single loop, the
//! `--reactors N` acceptor, the threaded server's supervisor): accept until
//! the queue is empty under the back-off rules of
//! [`AcceptBackoff`], and at shutdown accept what waits, then close the
//! listener. Each acceptor says only where its listener is and what it does
//! with a connection.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Instant;

use mio::Registry;
use mio::unix::SourceFd;

use crate::timers::{AcceptBackoff, Accepted};

/// A listening socket registered with a poll.
pub trait Listener {
    /// What `accept` returns.
    type Stream;

    fn accept(&self) -> io::Result<(Self::Stream, SocketAddr)>;

    /// Leaves `registry` (before the socket is closed).
    fn deregister(&mut self, registry: &Registry);
}

impl Listener for mio::net::TcpListener {
    type Stream = mio::net::TcpStream;

    fn accept(&self) -> io::Result<(Self::Stream, SocketAddr)> {
        mio::net::TcpListener::accept(self)
    }

    fn deregister(&mut self, registry: &Registry) {
        let _ = registry.deregister(self);
    }
}

/// The threaded server's (its connections become blocking sockets, one
/// thread each).
impl Listener for std::net::TcpListener {
    type Stream = std::net::TcpStream;

    fn accept(&self) -> io::Result<(Self::Stream, SocketAddr)> {
        std::net::TcpListener::accept(self)
    }

    fn deregister(&mut self, registry: &Registry) {
        let _ = registry.deregister(&mut SourceFd(&self.as_raw_fd()));
    }
}

/// Where an acceptor keeps what accepting needs, and what it does with a
/// connection.
pub trait Acceptor {
    type Listener: Listener;

    /// Its listener (`None` once shutdown closed it), its accept back-off,
    /// and the registry the listener is registered with.
    fn listening(&mut self) -> (&mut Option<Self::Listener>, &mut AcceptBackoff, &Registry);

    /// Serves (or refuses) a connection just accepted.
    fn add_client(&mut self, stream: <Self::Listener as Listener>::Stream, peer: SocketAddr);
}

/// Accepts until the queue is empty, the back-off holds, or the listener is
/// closed. The poll is edge-triggered: no second event comes for
/// connections left behind.
pub fn accept_all<A: Acceptor>(acceptor: &mut A) {
    loop {
        let (listener, backoff, _) = acceptor.listening();
        let Some(listener) = listener.as_ref() else {
            return;
        };
        match backoff.on_accept(listener.accept(), Instant::now()) {
            Accepted::Client((stream, peer)) => acceptor.add_client(stream, peer),
            Accepted::Next => {}
            Accepted::Stop => return,
        }
    }
}

/// Shutdown's first step (SPEC): connections already in the accept queue
/// are served like the others; then the listener is closed.
pub fn stop_accepting<A: Acceptor>(acceptor: &mut A) {
    accept_all(acceptor);
    let (listener, _, registry) = acceptor.listening();
    if let Some(mut listener) = listener.take() {
        listener.deregister(registry);
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::VecDeque;

    use super::*;

    /// A listener that hands out a script of `accept` results, then
    /// `WouldBlock` (an empty queue).
    struct Scripted {
        results: RefCell<VecDeque<io::Result<u32>>>,
        deregistered: bool,
    }

    impl Listener for Scripted {
        type Stream = u32;

        fn accept(&self) -> io::Result<(u32, SocketAddr)> {
            let next = self.results.borrow_mut().pop_front();
            let peer = SocketAddr::from(([127, 0, 0, 1], 1));
            next.unwrap_or(Err(io::ErrorKind::WouldBlock.into()))
                .map(|n| (n, peer))
        }

        fn deregister(&mut self, _: &Registry) {
            self.deregistered = true;
        }
    }

    struct Fake {
        listener: Option<Scripted>,
        backoff: AcceptBackoff,
        poll: mio::Poll,
        added: Vec<u32>,
    }

    impl Acceptor for Fake {
        type Listener = Scripted;

        fn listening(&mut self) -> (&mut Option<Scripted>, &mut AcceptBackoff, &Registry) {
            (&mut self.listener, &mut self.backoff, self.poll.registry())
        }

        fn add_client(&mut self, stream: u32, _: SocketAddr) {
            self.added.push(stream);
        }
    }

    fn fake(script: Vec<io::Result<u32>>) -> Fake {
        Fake {
            listener: Some(Scripted {
                results: RefCell::new(script.into()),
                deregistered: false,
            }),
            backoff: AcceptBackoff::default(),
            poll: mio::Poll::new().unwrap(),
            added: Vec::new(),
        }
    }

    #[test]
    fn accepts_until_the_queue_is_empty_skipping_a_connection_that_failed_alone() {
        let aborted = io::Error::from(io::ErrorKind::ConnectionAborted);
        let mut a = fake(vec![Ok(1), Err(aborted), Ok(2)]);
        accept_all(&mut a);
        assert_eq!(a.added, vec![1, 2]);
        assert!(a.listener.as_ref().is_some_and(|l| !l.deregistered));
    }

    #[test]
    fn descriptor_exhaustion_stops_the_loop_and_holds_accepting() {
        let emfile = io::Error::from_raw_os_error(libc::EMFILE);
        let mut a = fake(vec![Ok(1), Err(emfile), Ok(2)]);
        accept_all(&mut a);
        assert_eq!(a.added, vec![1], "the rest waits for the back-off");
        assert!(a.backoff.deadline().is_some());
    }

    #[test]
    fn stopping_accepts_what_waits_then_closes_the_listener() {
        let mut a = fake(vec![Ok(1), Ok(2)]);
        stop_accepting(&mut a);
        assert_eq!(a.added, vec![1, 2]);
        assert!(a.listener.is_none());
        accept_all(&mut a);
        assert_eq!(a.added, vec![1, 2], "nothing more once closed");
    }
}
