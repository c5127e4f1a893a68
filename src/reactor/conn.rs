//! One client connection of the reactor, and how far a read must go.

use std::time::Instant;

use mio::Interest;
use mio::net::TcpStream;

use crate::handlers::ClientId;
use crate::outbuf::OutBuf;
use crate::server::session::{Gates, Session};

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ConnState {
    /// Reading and writing.
    Open,
    /// No more input is handled (EOF, or the handler or a limit closed it);
    /// queued output is flushed, then our side is shut.
    Closing,
    /// Our FIN is sent; reading and discarding until the client closes too
    /// or `until` (see [`crate::server::session::LINGER`]).
    Lingering { until: Instant },
    /// Gone; removed from the slab after this loop pass.
    Dead,
}

/// One client connection.
pub(super) struct Conn {
    pub(super) stream: TcpStream,
    /// SPEC's client number, for status lines and handler events.
    pub(super) id: ClientId,
    /// Framing, the idle-flush deadline: the shared input rules.
    pub(super) session: Session,
    /// Why it is not read from (handler, `--max-pending`).
    pub(super) gates: Gates,
    pub(super) out: OutBuf,
    pub(super) state: ConnState,
    /// The interest currently registered with the poller, so we reregister
    /// only when it changes.
    pub(super) interest: Interest,
    /// True until the handler has been told this client is gone (or closed
    /// it itself, or shutdown closed everyone), so `on_disconnect` is called
    /// at most once.
    pub(super) handler_knows: bool,
    /// On the `dirty` list already.
    pub(super) dirty: bool,
    /// Bytes discarded while lingering.
    pub(super) discarded: usize,
}

impl Conn {
    pub(super) fn new(stream: TcpStream, id: ClientId, session: Session) -> Self {
        Conn {
            stream,
            id,
            session,
            gates: Gates::default(),
            out: OutBuf::new(),
            state: ConnState::Open,
            interest: Interest::READABLE,
            handler_knows: true,
            dirty: false,
            discarded: 0,
        }
    }

    pub(super) fn may_read(&self) -> bool {
        self.state == ConnState::Open && self.gates.open()
    }
}

/// How far a read pass must go before it may stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Drain {
    /// Until `WouldBlock` or EOF: no event will announce what is left.
    ToEnd,
    /// A read that returns less than asked for ends the pass. On Linux's
    /// edge-triggered epoll this is safe and saves one `read` per wakeup
    /// (nginx does the same): the short read emptied the socket, data that
    /// arrives later raises a new edge, and a FIN that arrived before the
    /// event was reported shows as `is_read_closed`, in which case the
    /// caller asks for `ToEnd`. Elsewhere mio promises only the drain rule.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    ShortReadEnds,
}
