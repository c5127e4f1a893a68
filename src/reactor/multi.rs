//! `--reactors N`: N single-threaded event loops, one thread each, each
//! with its own `mio::Poll` and `Slab` and owning its connections, and one
//! acceptor thread ([`supervisor`]) that hands connections out round-robin
//! and owns the listener, the signals and the periodic count.
//!
//! What holds for any N, and how:
//! - ids and counts: one [`census::Census`] (a mutex taken per connect and
//!   disconnect): ids from 1, never reused; every status line shows the
//!   total and is printed whole, in the order the total changed;
//!   `--max-clients` is a limit on the total;
//! - one periodic line, one drain line: the acceptor prints them;
//! - signals: the acceptor catches them and passes each one on to every
//!   loop (after the connections it accepted before), so every loop runs
//!   the same [`Lifecycle`](crate::server::lifecycle::Lifecycle) steps for
//!   its own clients; it exits once every loop has finished;
//! - handler state, per handler:
//!   - echo: a handler per loop ([`shard`]): it has no shared state;
//!   - ledger: a ledger per loop, merged by addition at the end into one
//!     exact log; one journal, shared behind a mutex taken only to append
//!     a batch and to sync (never with a socket call), replayed at start
//!     into the first loop's ledger;
//!   - presence, queue, sink, atm, menu: one handler behind a mutex
//!     ([`hub`]), actions routed to the loop that owns each client, in the
//!     order the calls were made.
//!
//! - `--udp`: the first loop owns the one UDP socket; its peers are admitted
//!   through the census and served like any client of that loop.
//!
//! `--reactors 1` does not come here: it is the single loop of
//! [`crate::reactor`], with no lock, atomic or channel added.

use std::any::Any;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Poll, Waker};

use super::{Reactor, WAKE};
use crate::config::{HandlerKind, ServerConfig};
use crate::handlers::echo::Echo;
use crate::handlers::ledger::Ledger;
use crate::handlers::{Built, ClientId, Finish, Handler, Outbox};
use crate::server::durable::Durable;
use crate::status::{RawStdout, Status};
use crate::store::Store;

pub mod census;
mod hub;
mod shard;
mod supervisor;

use census::Census;
use hub::{Hub, HubProxy};
use shard::{Shard, Slot};
use supervisor::{Link, Supervisor};

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
}

impl Worker {
    /// A new client on this loop: its id and status line, and the
    /// handler's `on_connect` (its actions left in `out`). `max`: the
    /// `--max-clients` of a TCP client, `None` for a UDP peer (limited by
    /// `--max-udp-peers` where the socket is). `None` back: over `max`.
    pub(super) fn admit(
        &mut self,
        peer: SocketAddr,
        max: Option<usize>,
        handler: &mut dyn Handler,
        out: &mut Outbox,
    ) -> Option<ClientId> {
        match &self.hub {
            Some(hub) => hub.connect(self.index, peer, &self.census, max, out),
            None => {
                let id = self.census.admit(max)?;
                handler.on_connect(id, peer, out);
                Some(id)
            }
        }
    }

    /// A client was removed from this loop.
    pub(super) fn leave(&self, id: ClientId) {
        if let Some(hub) = &self.hub {
            hub.forget(id);
        }
        self.census.leave(id);
    }

    /// A UDP peer was forgotten by this loop.
    pub(super) fn leave_udp_peer(&self, id: ClientId) {
        if let Some(hub) = &self.hub {
            hub.forget(id);
        }
        self.census.leave_udp_peer(id);
    }
}

impl Reactor {
    /// The acceptor or another loop has something for this loop: clients
    /// to admit, signals, actions for its clients.
    pub(super) fn handle_wake(&mut self) {
        let Some(worker) = self.multi.as_deref_mut() else {
            return;
        };
        let messages: Vec<Msg> = worker.rx.try_iter().collect();
        let (index, hub, census) = (worker.index, worker.hub.clone(), worker.census.clone());
        for message in messages {
            match message {
                Msg::Clients(clients) => {
                    for (stream, peer) in clients {
                        // Settled first: counted twice for a moment, a
                        // client would be refused a place it has.
                        census.settled(1);
                        self.add_client(stream, peer);
                    }
                }
                Msg::Signals(count) => {
                    let now = Instant::now();
                    for _ in 0..count {
                        self.life.handle_signal(now);
                    }
                    self.run_commands();
                }
            }
        }
        if let Some(hub) = hub {
            if let Some(e) = hub.take_mailbox(index, &mut self.outbox) {
                self.fatal.get_or_insert(e);
            }
            self.apply_actions();
        }
    }
}

/// One loop's thread: its own poll (with its waker registered already).
fn run_worker(
    poll: Poll,
    config: ServerConfig,
    (handler, store): (Box<dyn Handler>, Option<Box<dyn Store>>),
    status: Status,
    (worker, udp, stdout): (Worker, Option<std::net::UdpSocket>, RawStdout),
) -> io::Result<Finish> {
    let udp = super::udp::Udp::serve(udp, poll.registry(), &config, &*handler)?;
    let parts = (poll, None, None, udp);
    Reactor::with_parts(
        parts,
        stdout,
        config,
        handler,
        store,
        status,
        Some(Box::new(worker)),
    )?
    .run()
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
}

/// How the handler's state is split over the loops, and how it is put
/// back together at the end.
enum Plan {
    Echo(Slot<Echo>),
    Ledger(Slot<Ledger>),
    Shared(Arc<Hub>),
}

impl Plan {
    /// The handler and store of each loop.
    fn split(config: &ServerConfig, built: Built, wakers: &[Arc<Waker>]) -> (Plan, Vec<LoopParts>) {
        let n = wakers.len();
        match config.handler {
            HandlerKind::Echo => {
                let slot: Slot<Echo> = shard::empty_slot(n);
                let loops = (0..n)
                    .map(|i| {
                        let echo = Echo::new(config.upper).with_max_messages(config.max_messages);
                        let h: Box<dyn Handler> = Box::new(Shard::new(echo, i, slot.clone()));
                        (h, None)
                    })
                    .collect();
                (Plan::Echo(slot), loops)
            }
            HandlerKind::Ledger => {
                let any: Box<dyn Any> = built.handler;
                let replayed = *any
                    .downcast::<Ledger>()
                    .expect("--handler ledger builds a Ledger");
                let store = built.store.map(|s| Arc::new(Mutex::new(s)));
                let slot: Slot<Ledger> = shard::empty_slot(n);
                let mut ledgers: Vec<Ledger> = (1..n).map(|_| replayed.shard()).collect();
                ledgers.insert(0, replayed);
                let loops = ledgers
                    .into_iter()
                    .enumerate()
                    .map(|(i, ledger)| {
                        let h: Box<dyn Handler> = Box::new(Shard::new(ledger, i, slot.clone()));
                        let s = store
                            .as_ref()
                            .map(|s| Box::new(SharedStore(s.clone())) as Box<dyn Store>);
                        (h, s)
                    })
                    .collect();
                (Plan::Ledger(slot), loops)
            }
            _ => {
                let durable = Durable::new(built.store);
                let hub = Arc::new(Hub::new(built.handler, durable, wakers.to_vec()));
                let loops = (0..n)
                    .map(|i| {
                        let h: Box<dyn Handler> = Box::new(HubProxy::new(hub.clone(), i));
                        (h, None)
                    })
                    .collect();
                (Plan::Shared(hub), loops)
            }
        }
    }

    /// Once every loop has finished: one handler's files and lines.
    fn finish(self) -> io::Result<Finish> {
        match self {
            Plan::Echo(slot) => {
                let (mut echoes, stats) = shard::collect(&slot);
                Ok(echoes
                    .first_mut()
                    .map(|e| e.finish(&stats))
                    .unwrap_or_default())
            }
            Plan::Ledger(slot) => {
                let (ledgers, stats) = shard::collect(&slot);
                let mut ledgers = ledgers.into_iter();
                let Some(mut merged) = ledgers.next() else {
                    return Ok(Finish::default());
                };
                for ledger in ledgers {
                    merged.absorb(ledger);
                }
                Ok(merged.finish(&stats))
            }
            Plan::Shared(hub) => hub.finish(),
        }
    }
}

/// A loop's handler and store.
type LoopParts = (Box<dyn Handler>, Option<Box<dyn Store>>);

/// Runs `config.reactors` loops and the acceptor on `listener` until a
/// shutdown signal and SPEC's shutdown, then returns what the (merged)
/// handler leaves to write and print. `built`: the handler and store as
/// `--reactors 1` would run them (the ledger's journal replayed).
///
/// # Errors
/// Set-up failures, a failing `poll`, a failing store (as with one loop).
pub fn run(
    listener: std::net::TcpListener,
    mut udp: Option<std::net::UdpSocket>,
    mut config: ServerConfig,
    built: Built,
    status: Status,
) -> io::Result<Finish> {
    let n = config.reactors.max(1);
    let name = built.handler.name();
    let policy = built.handler.shutdown_policy();
    let mut polls = Vec::with_capacity(n);
    let mut wakers = Vec::with_capacity(n);
    for _ in 0..n {
        let poll = Poll::new()?;
        wakers.push(Arc::new(Waker::new(poll.registry(), WAKE)?));
        polls.push(poll);
    }
    let (plan, parts) = Plan::split(&config, built, &wakers);
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
    let (supervisor, acceptor) = Supervisor::new(
        listener,
        &config,
        (name, policy),
        status,
        census.clone(),
        (links, alive.clone()),
    )?;
    // The acceptor prints the periodic count, once, with the total.
    config.report_every = None;
    let mut threads = Vec::with_capacity(n);
    for (index, ((poll, rx), loop_parts)) in polls.into_iter().zip(inboxes).zip(parts).enumerate() {
        let worker = Worker {
            index,
            rx,
            census: census.clone(),
            hub: match &plan {
                Plan::Shared(hub) => Some(hub.clone()),
                _ => None,
            },
        };
        let config = config.clone();
        // `--udp`: one socket, served by the first loop; its peers are
        // admitted through the census like any client.
        let udp = if index == 0 { udp.take() } else { None };
        // Before the acceptor starts: a burst of clients can use up every
        // descriptor before a loop's thread has run (then it could not
        // start, and a failing loop stops the server).
        let stdout = RawStdout::new()?;
        let (alive, acceptor) = (alive.clone(), acceptor.clone());
        let thread = thread::Builder::new()
            .name(format!("reactor-{index}"))
            .spawn(move || {
                let result = run_worker(poll, config, loop_parts, status, (worker, udp, stdout));
                alive.fetch_sub(1, Ordering::Release);
                let _ = acceptor.wake();
                result
            })?;
        threads.push(thread);
    }
    let supervised = supervisor.run();
    let mut failure = supervised.err();
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
