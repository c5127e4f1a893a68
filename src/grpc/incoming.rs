//! The connections `queue-grpc-server` serves: its own accept stream for
//! tonic (`serve_with_incoming`), which keeps SPEC's limits that tonic's
//! `TcpIncoming` does not.
//!
//! - At most `--max-clients` connections: one more is accepted, sent an
//!   HTTP/2 GOAWAY saying `too many clients`, and closed (a diagnostic on
//!   stderr), as the line servers send their error line.
//! - Running out of descriptors (EMFILE, ENFILE, ...) stops accepting for
//!   100 ms, with one diagnostic, instead of spinning: tonic's own loop
//!   retries a failed accept at once, and the listener stays readable.
//! - A connection that sent nothing for the idle timeout (5 minutes) is
//!   closed, whatever it left pending.
//! - Each connection carries its [`ReplyBudget`] to the service, through
//!   tonic's connect info.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use futures_core::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;
use tonic::transport::server::Connected;

use super::budget::ReplyBudget;
use crate::status;
use crate::timers::{AcceptBackoff, AfterError};

/// What a connection past `--max-clients` gets before the close: the
/// server's (empty) SETTINGS, which HTTP/2 requires first, then GOAWAY
/// with no stream processed, REFUSED_STREAM (safe to retry) and the reason
/// as debug data, which gRPC clients show.
const TOO_MANY_CLIENTS_GOAWAY: &[u8] = &[
    0, 0, 0, 0x4, 0, 0, 0, 0, 0, // SETTINGS, empty
    0, 0, 24, 0x7, 0, 0, 0, 0, 0, // GOAWAY, 8 + 16 bytes, stream 0
    0, 0, 0, 0, // last stream id: none
    0, 0, 0, 0x7, // REFUSED_STREAM
    b't', b'o', b'o', b' ', b'm', b'a', b'n', b'y', b' ', b'c', b'l', b'i', b'e', b'n', b't', b's',
];

/// The accept stream handed to tonic.
pub struct Incoming {
    listener: TcpListener,
    /// Connections open now, shared with each [`Conn`]'s slot.
    open: Arc<AtomicUsize>,
    limits: ConnLimits,
    backoff: AcceptBackoff,
    /// While descriptors are exhausted: when to accept again.
    retry: Option<Pin<Box<Sleep>>>,
}

/// The per-connection limits (SPEC "queue over gRPC").
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// `--max-clients`.
    pub max_clients: usize,
    /// A connection that sent nothing for this long is closed.
    pub idle_timeout: Duration,
    /// Replies one connection may hold unsent ([`ReplyBudget`]).
    pub replies_per_connection: usize,
}

impl Incoming {
    pub fn new(listener: TcpListener, limits: ConnLimits) -> Self {
        Incoming {
            listener,
            open: Arc::new(AtomicUsize::new(0)),
            limits,
            backoff: AcceptBackoff::default(),
            retry: None,
        }
    }

    /// A new connection past `--max-clients`: the diagnostic, then the
    /// GOAWAY (best effort: the socket is new, its send buffer empty) and
    /// our FIN; the diagnostic is out before the peer can see the close.
    fn refuse(&self, stream: &TcpStream) {
        status::too_many_clients(self.limits.max_clients);
        let _ = stream.try_write(TOO_MANY_CLIENTS_GOAWAY);
        let _ = socket2::SockRef::from(stream).shutdown(std::net::Shutdown::Write);
    }
}

impl Stream for Incoming {
    type Item = io::Result<Conn>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(retry) = &mut this.retry {
                ready!(retry.as_mut().poll(cx));
                this.retry = None;
            }
            match ready!(this.listener.poll_accept(cx)) {
                Ok((stream, _)) => {
                    this.backoff.accepted();
                    if this.open.load(Ordering::Relaxed) >= this.limits.max_clients {
                        this.refuse(&stream);
                        continue;
                    }
                    // Small replies must not wait for Nagle and delayed ACKs.
                    let _ = stream.set_nodelay(true);
                    return Poll::Ready(Some(Ok(Conn::new(stream, this))));
                }
                Err(e) => match this.backoff.error(&e, Instant::now()) {
                    AfterError::Next => {}
                    AfterError::Stop => {
                        this.retry = Some(Box::pin(tokio::time::sleep(AcceptBackoff::RETRY)));
                    }
                },
            }
        }
    }
}

/// One accepted connection: the socket, its place in the count, its idle
/// timer and its reply budget.
pub struct Conn {
    stream: TcpStream,
    info: ConnInfo,
    /// Fires when nothing was received for `idle_timeout`.
    idle: Pin<Box<Sleep>>,
    idle_timeout: Duration,
    _slot: Slot,
}

/// What the service sees of the connection a call came on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub replies: ReplyBudget,
}

/// A connection's place in the count; given back when the connection is
/// dropped (closed), whoever closes it.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Conn {
    fn new(stream: TcpStream, incoming: &Incoming) -> Self {
        incoming.open.fetch_add(1, Ordering::Relaxed);
        let idle_timeout = incoming.limits.idle_timeout;
        Conn {
            stream,
            info: ConnInfo {
                replies: ReplyBudget::new(incoming.limits.replies_per_connection),
            },
            idle: Box::pin(tokio::time::sleep(idle_timeout)),
            idle_timeout,
            _slot: Slot(Arc::clone(&incoming.open)),
        }
    }

    /// Whether the idle timer has fired; registers `cx` for it otherwise.
    /// Polled wherever the connection waits (for input or for room to
    /// write), so a peer that neither sends nor reads is closed too.
    fn idle_expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.idle.as_mut().poll(cx).is_ready()
    }

    fn idle_error(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "nothing received for {} s; closing the connection",
                self.idle_timeout.as_secs()
            ),
        )
    }
}

impl Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    let next = tokio::time::Instant::now() + this.idle_timeout;
                    this.idle.as_mut().reset(next);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if this.idle_expired(cx) => Poll::Ready(Err(this.idle_error())),
            other => other,
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_write(cx, buf) {
            Poll::Pending if this.idle_expired(cx) => Poll::Ready(Err(this.idle_error())),
            other => other,
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_write_vectored(cx, bufs) {
            Poll::Pending if this.idle_expired(cx) => Poll::Ready(Err(this.idle_error())),
            other => other,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
