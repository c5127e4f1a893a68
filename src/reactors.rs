//! `--reactors N`: N single-threaded event loops, one thread each, each
//! with its own `mio::Poll` and `Slab` and owning its connections, and one
//! acceptor thread (the acceptor) that hands connections out round-robin
//! and owns the listener, the signals and the periodic count.
//!
//! What holds for any N, and how:
//! - ids and counts: one [`Census`] (a mutex taken per connect and
//!   disconnect): ids from 1, never reused; every status line shows the
//!   total and is printed whole, in the order the total changed;
//!   `--max-clients` is a limit on the total;
//! - one periodic line, one drain line: the acceptor prints them;
//! - `--max-output-total`: one [`OutputTotal`] (an atomic) counts every
//!   loop's queued output; each loop holds back its own clients, and the
//!   fall back under half wakes every loop;
//! - signals: the acceptor catches them and passes each one on to every
//!   loop (after the connections it accepted before), so every loop runs
//!   the same [`Lifecycle`](crate::server_core::lifecycle::Lifecycle) steps for
//!   its own clients; it exits once every loop has finished;
//! - handler state, as the handler's [`Sharing`] says:
//!   - `PerLoop` (echo, ledger): a part per loop, called with no lock
//!     ([`crate::handlers::sharing`]), merged at the end (the ledger's
//!     balances by addition, into one exact log); a store (the journal) is
//!     one, shared behind a mutex taken only to append a batch and to sync
//!     (never with a socket call), replayed at start into the first part;
//!   - `Shared` (presence, queue, sink, atm, menu): one handler behind a
//!     mutex (the hub), actions routed to the loop that owns each client,
//!     in the order the calls were made.
//! - each loop is a plain [`crate::reactor`] loop whose
//!   [`Membership`] is this layer's worker.
//!
//! - `--udp`: the first loop owns the one UDP socket; its peers are admitted
//!   through the census and served like any client of that loop.
//!
//! `--reactors 1` does not come here: it is the single loop of
//! [`crate::reactor`], with no lock, atomic or channel added.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;

use mio::net::TcpStream;
use mio::{Poll, Waker};

use crate::handlers::{ClientId, Finish, Handler, Outbox, Sharded, Sharing};
use crate::limits::output_total::OutputTotal;
use crate::net::tokens::WAKE;
use crate::reactor::{self, Announcement, Membership, Wake};
use crate::server_core::Setup;
use crate::server_core::durable::Durable;
use crate::stdout::StdoutWriter;
use crate::store::Store;

mod acceptor;
mod hub;

use crate::server_core::census::Census;
use acceptor::{Acceptor, AcceptorSetup, Link};
use hub::{Hub, HubProxy};

/// What the acceptor sends a loop.
pub enum Msg {
    /// Accepted connections, to admit.
    Clients(Vec<(TcpStream, SocketAddr)>),
    /// Shutdown signals, counted (every signal counts).
    Signals(usize),
}

/// A loop's part in the whole: its index, its inbox, the census, and the
/// shared handler if there is one.
pub struct Worker {
    index: usize,
    rx: Receiver<Msg>,
    census: Arc<Census>,
    hub: Option<Arc<Hub>>,
    /// The process's one output total (`--max-output-total`).
    output_total: OutputTotal,
}

impl Worker {
    /// Actions naming `id` are dropped from now on.
    fn forget(&self, id: ClientId) {
        if let Some(hub) = &self.hub {
            hub.forget(id);
        }
    }
}

impl Membership for Worker {
    /// The census admits (its id and line are server-wide); a shared
    /// handler hears of it through the hub, in the same step.
    fn admit(
        &mut self,
        peer: SocketAddr,
        max: Option<usize>,
        handler: &mut dyn Handler,
        out: &mut Outbox,
    ) -> Option<ClientId> {
        match &self.hub {
            Some(hub) => hub.connect(self.index, peer, &self.census, max, out),
            None => reactor::admit_to(&self.census, peer, max, handler, out),
        }
    }

    fn settle(&mut self) {
        self.census.settled(1);
    }

    fn leave(&mut self, id: ClientId) {
        self.forget(id);
        self.census.leave(id);
    }

    fn leave_udp_peer(&mut self, id: ClientId) {
        self.forget(id);
        self.census.leave_udp_peer(id);
    }

    /// Each loop drains its own clients.
    fn serving(&self, here: usize) -> usize {
        here
    }

    /// The acceptor speaks for the server, once, with the totals.
    fn announce(&self, _: Announcement<'_>) {}

    fn take_wake(&mut self, out: &mut Outbox) -> Wake {
        let mut wake = Wake::default();
        for message in self.rx.try_iter() {
            match message {
                Msg::Clients(clients) => wake.clients.extend(clients),
                Msg::Signals(count) => wake.signals += count,
            }
        }
        if let Some(hub) = &self.hub {
            wake.failure = hub.take_mailbox(self.index, out);
        }
        wake
    }

    fn output_total(&self) -> OutputTotal {
        self.output_total.clone()
    }
}

/// The one store of a sharded handler (the ledger's journal), behind a
/// mutex held for one append or one sync.
struct SharedStore(Arc<Mutex<Box<dyn Store>>>);

impl Store for SharedStore {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .put(bytes)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).sync()
    }
    // `finish` stays the default: each loop ends its own `Durable`, but the
    // one store behind them is finished once, by `Plan::finish`.
}

/// How the handler's state is split over the loops, and how it is put
/// back together at the end: the handler says which ([`Sharing`]).
enum Plan {
    /// A handler per loop, merged at the end, and the one store the
    /// loops share, finished once after every loop has synced.
    PerLoop(
        Box<dyn FnOnce() -> Finish + Send>,
        Option<Arc<Mutex<Box<dyn Store>>>>,
    ),
    /// One handler behind a lock.
    Shared(Arc<Hub>),
}

impl Plan {
    /// The handler and store of each loop, from the handler and store as
    /// `--reactors 1` would run them (the ledger's journal replayed).
    fn split(
        mut handler: Box<dyn Handler>,
        store: Option<Box<dyn Store>>,
        wakers: &[Arc<Waker>],
    ) -> (Plan, Vec<LoopParts>) {
        let n = wakers.len();
        let sharded = match handler.traits().sharing {
            Sharing::PerLoop => handler.split(n),
            Sharing::Shared => None,
        };
        if let Some(Sharded { parts, merge }) = sharded {
            // One store (the ledger's journal), shared by every loop.
            let store = store.map(|s| Arc::new(Mutex::new(s)));
            let loops = parts
                .into_iter()
                .map(|h| {
                    let s = store
                        .as_ref()
                        .map(|s| Box::new(SharedStore(s.clone())) as Box<dyn Store>);
                    (h, s)
                })
                .collect();
            return (Plan::PerLoop(merge, store), loops);
        }
        let hub = Arc::new(Hub::new(handler, Durable::new(store), wakers.to_vec()));
        let loops = (0..n)
            .map(|i| {
                let h: Box<dyn Handler> = Box::new(HubProxy::new(hub.clone(), i));
                (h, None)
            })
            .collect();
        (Plan::Shared(hub), loops)
    }

    /// Once every loop has finished: one handler's files and lines.
    fn finish(self) -> io::Result<Finish> {
        match self {
            Plan::PerLoop(merge, store) => {
                if let Some(store) = store {
                    let mut store = store.lock().unwrap_or_else(PoisonError::into_inner);
                    store
                        .finish()
                        .map_err(|e| io::Error::new(e.kind(), format!("store: {e}")))?;
                }
                Ok(merge())
            }
            Plan::Shared(hub) => hub.finish(),
        }
    }
}

/// A loop's handler and store.
type LoopParts = (Box<dyn Handler>, Option<Box<dyn Store>>);

/// Runs `config.reactors` loops and the acceptor on `listener` until a
/// shutdown signal and SPEC's shutdown, then returns what the (merged)
/// handler leaves to write and print.
///
/// # Errors
/// Set-up failures, a failing `poll`, a failing store (as with one loop).
pub fn run(
    listener: std::net::TcpListener,
    mut udp: Option<std::net::UdpSocket>,
    setup: Setup,
) -> io::Result<Finish> {
    let Setup {
        mut config,
        handler,
        store,
        status,
        signals,
    } = setup;
    let n = config.reactors.max(1);
    let traits = handler.traits();
    let mut polls = Vec::with_capacity(n);
    let mut wakers = Vec::with_capacity(n);
    for _ in 0..n {
        let poll = Poll::new()?;
        wakers.push(Arc::new(Waker::new(poll.registry(), WAKE)?));
        polls.push(poll);
    }
    let (plan, parts) = Plan::split(handler, store, &wakers);
    // One total for the process: a loop over it wakes the others when it
    // falls back, since their held clients raise no event of their own.
    let output_total = OutputTotal::new(config.max_output_total_bytes);
    output_total.wake_on_fall(&wakers);
    let census = Arc::new(Census::new(status));
    let alive = Arc::new(AtomicUsize::new(n));
    let mut links = Vec::with_capacity(n);
    let mut inboxes = Vec::with_capacity(n);
    for waker in &wakers {
        let (tx, rx) = mpsc::channel();
        links.push(Link {
            tx,
            waker: waker.clone(),
        });
        inboxes.push(rx);
    }
    let (acceptor, acceptor_waker) = Acceptor::new(
        AcceptorSetup {
            listener,
            traits,
            status,
            signals,
            census: census.clone(),
            links,
            alive: alive.clone(),
        },
        &config,
    )?;
    // The acceptor prints the periodic count, once, with the total.
    config.report_every = None;
    // One writer for every loop: the sink's turns pass from a client of one
    // loop to a client of another, and its queue keeps them in order.
    let stdout = StdoutWriter::new(config.max_pending_bytes)?;
    let mut threads = Vec::with_capacity(n);
    for (index, (((poll, rx), (handler, store)), waker)) in polls
        .into_iter()
        .zip(inboxes)
        .zip(parts)
        .zip(wakers)
        .enumerate()
    {
        let worker = Worker {
            index,
            rx,
            census: census.clone(),
            hub: match &plan {
                Plan::Shared(hub) => Some(hub.clone()),
                _ => None,
            },
            output_total: output_total.clone(),
        };
        let config = config.clone();
        // `--udp`: one socket, served by the first loop; its peers are
        // admitted through the census like any client.
        let udp = if index == 0 { udp.take() } else { None };
        // Before the acceptor starts: a burst of clients can use up every
        // descriptor before a loop's thread has run (then it could not
        // start, and a failing loop stops the server).
        let parts = reactor::LoopParts {
            poll,
            udp,
            stdout: stdout.clone(),
            waker,
            config,
            handler,
            store,
            member: Box::new(worker),
        };
        let (alive, acceptor_waker) = (alive.clone(), acceptor_waker.clone());
        let thread = thread::Builder::new()
            .name(format!("reactor-{index}"))
            .spawn(move || {
                let result = reactor::run_loop(parts);
                alive.fetch_sub(1, Ordering::Release);
                let _ = acceptor_waker.wake();
                result
            })?;
        threads.push(thread);
    }
    let mut failure = acceptor.run().err();
    for thread in threads {
        match thread.join() {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                failure.get_or_insert(e);
            }
            Err(_) => {
                failure.get_or_insert(io::Error::other("an event loop panicked"));
            }
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    plan.finish()
}
