//! How a loop takes part in the server. The loop calls its [`Membership`]
//! unconditionally (admit a client, a client left, how many it serves,
//! the server-wide lines, what other threads left for it) and never asks
//! whether it is alone: [`Alone`] is the whole server; a loop among N gets
//! another implementation from the layer that runs N of them.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use mio::net::TcpStream;

use crate::handlers::{ClientId, Handler, Outbox};
use crate::limits::output_total::OutputTotal;
use crate::server_core::census::Census;
use crate::status::{self, Status};

/// A server-wide line that some loop must print.
#[derive(Clone, Copy, Debug)]
pub enum Announcement<'a> {
    /// The periodic `Number of connected clients = N`.
    Count,
    /// SPEC's drain line.
    Drain { timeout: Duration },
    /// A lifecycle diagnostic (e.g. the accept back-off).
    Diagnostic(&'a str),
}

/// What other threads left for this loop, taken on its waker's event.
#[derive(Default)]
pub struct Wake {
    /// Accepted connections to serve.
    pub clients: Vec<(TcpStream, SocketAddr)>,
    /// Shutdown signals caught elsewhere, counted.
    pub signals: usize,
    /// Something shared failed (a store): the loop stops.
    pub failure: Option<io::Error>,
}

/// See the module doc.
pub trait Membership: Send {
    /// A new client (a connection or a UDP peer): its id and status line,
    /// and the handler's `on_connect` (its actions left in `out`). `max`:
    /// the `--max-clients` of a connection, `None` for a UDP peer (which
    /// takes no place: `--max-udp-peers` limits them where the socket is).
    /// `None` back: over `max`.
    fn admit(
        &mut self,
        peer: SocketAddr,
        max: Option<usize>,
        handler: &mut dyn Handler,
        out: &mut Outbox,
    ) -> Option<ClientId>;

    /// A connection handed over in a [`Wake`] is about to be admitted: it
    /// no longer counts as in transit (it is counted as a client next).
    fn settle(&mut self) {}

    /// A connection was removed: its disconnect line.
    fn leave(&mut self, id: ClientId);

    /// A UDP peer was forgotten: its disconnect line.
    fn leave_udp_peer(&mut self, id: ClientId);

    /// The clients a drain on this loop waits for; `here`: this loop's own
    /// connections.
    fn serving(&self, here: usize) -> usize;

    /// Prints `what` if this loop speaks for the server.
    fn announce(&self, what: Announcement<'_>);

    /// What other threads left for this loop (actions for its clients go
    /// into `out`).
    fn take_wake(&mut self, out: &mut Outbox) -> Wake;

    /// The output queued for all clients of the server
    /// (`--max-output-total`), which this loop's clients are charged to.
    fn output_total(&self) -> OutputTotal;
}

/// Admits a client to `census` and tells the handler (the step every
/// membership with a handler of its own takes).
pub fn admit_to(
    census: &Census,
    peer: SocketAddr,
    max: Option<usize>,
    handler: &mut dyn Handler,
    out: &mut Outbox,
) -> Option<ClientId> {
    let id = census.admit(max)?;
    handler.on_connect(id, peer, out);
    Some(id)
}

/// The loop is the whole server: it counts its clients and prints every
/// line itself.
pub struct Alone {
    census: Census,
    output_total: OutputTotal,
}

impl Alone {
    pub fn new(status: Status, output_total: OutputTotal) -> Self {
        Alone {
            census: Census::new(status),
            output_total,
        }
    }
}

impl Membership for Alone {
    fn admit(
        &mut self,
        peer: SocketAddr,
        max: Option<usize>,
        handler: &mut dyn Handler,
        out: &mut Outbox,
    ) -> Option<ClientId> {
        admit_to(&self.census, peer, max, handler, out)
    }

    fn leave(&mut self, id: ClientId) {
        self.census.leave(id);
    }

    fn leave_udp_peer(&mut self, id: ClientId) {
        self.census.leave_udp_peer(id);
    }

    fn serving(&self, _here: usize) -> usize {
        self.census.count()
    }

    fn announce(&self, what: Announcement<'_>) {
        match what {
            Announcement::Count => self.census.report(),
            Announcement::Drain { timeout } => self.census.draining(timeout),
            Announcement::Diagnostic(line) => status::diag(format_args!("{line}")),
        }
    }

    fn take_wake(&mut self, _out: &mut Outbox) -> Wake {
        Wake::default()
    }

    fn output_total(&self) -> OutputTotal {
        self.output_total.clone()
    }
}
