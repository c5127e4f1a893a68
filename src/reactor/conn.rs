//! One client connection of the reactor, and how far a read must go.

use mio::Interest;
use mio::net::TcpStream;

use crate::handlers::ClientId;
use crate::outbuf::OutBuf;
use crate::server_core::ending::Ending;
use crate::server_core::session::{Gates, Session};

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
    /// Open, closing, lingering or dead, and whether the handler must
    /// still hear of its end.
    pub(super) ending: Ending,
    /// The interest currently registered with the poller, so we reregister
    /// only when it changes.
    pub(super) interest: Interest,
    /// On the `dirty` list already.
    pub(super) dirty: bool,
}

impl Conn {
    pub(super) fn new(stream: TcpStream, id: ClientId, session: Session) -> Self {
        Conn {
            stream,
            id,
            session,
            gates: Gates::default(),
            out: OutBuf::new(),
            ending: Ending::new(),
            interest: Interest::READABLE,
            dirty: false,
        }
    }

    pub(super) fn may_read(&self) -> bool {
        self.ending.is_open() && self.gates.open()
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
