//! The acceptor of `--reactors N`: one thread that owns the listener, the
//! signals and the periodic count, and hands accepted connections to the
//! loops round-robin (a channel and a `mio::Waker` per loop). It never
//! touches a client's bytes, so its timer is never late because a loop is
//! busy, and it outlives every loop (it exits once they all finished).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Poll, Registry, Waker};

use super::Msg;
use crate::accept;
use crate::config::ServerConfig;
use crate::handlers::Traits;
use crate::server_core::census::Census;
use crate::server_core::lifecycle::{Command, Lifecycle, Phase};
use crate::signals::ShutdownSignals;
use crate::status::{self, Status};
use crate::timers::AcceptBackoff;
use crate::trace::Trace;

use crate::net::tokens::{LISTENER, SIGNALS, WAKE};

/// After shutdown began, the shortest poll timeout: the lifecycle's
/// deadlines stay in the past once its own phases are over, and the
/// acceptor only waits for the loops then.
const MIN_WAIT_AFTER_SHUTDOWN: Duration = Duration::from_millis(10);

/// A loop as the acceptor sees it.
pub struct Link {
    pub tx: Sender<Msg>,
    pub waker: Arc<Waker>,
}

/// See the module doc.
pub struct Acceptor {
    poll: Poll,
    /// `None` once shutdown began.
    listener: Option<TcpListener>,
    signals: ShutdownSignals,
    /// Reports, accept back-off, the drain's announcements: the loops run
    /// their own lifecycle for their own clients.
    life: Lifecycle,
    census: Arc<Census>,
    links: Vec<Link>,
    /// Connections accepted in this wakeup, per loop, sent in one message.
    batches: Vec<Vec<(TcpStream, SocketAddr)>>,
    /// The loop the next connection goes to.
    next: usize,
    /// Loops still running.
    alive: Arc<AtomicUsize>,
    /// `--max-clients` (as fitted to the descriptor limit).
    max_clients: usize,
    /// `--trace`: hand-outs, signals and lifecycle steps, as `[acceptor]`.
    trace: Trace,
}

/// What the acceptor is given.
pub struct AcceptorSetup {
    pub listener: std::net::TcpListener,
    /// The handler's (its name for the first line, its shutdown policy).
    pub traits: &'static Traits,
    pub status: Status,
    pub signals: ShutdownSignals,
    pub census: Arc<Census>,
    /// One per loop, by index.
    pub links: Vec<Link>,
    /// Loops still running: the acceptor exits once it is 0.
    pub alive: Arc<AtomicUsize>,
}

impl Acceptor {
    /// Registers the listener and the signals, then prints the
    /// `Listening on` line. Returns the waker a finishing loop calls.
    pub fn new(setup: AcceptorSetup, config: &ServerConfig) -> io::Result<(Self, Arc<Waker>)> {
        let AcceptorSetup {
            listener,
            traits,
            status,
            mut signals,
            census,
            links,
            alive,
        } = setup;
        let (poll, listener) = crate::net::poll_with_listener(listener, &mut signals)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        // With --udp, the socket itself is served by loop 0 (`reactors::run`).
        status.listening(listener.local_addr()?, traits.name, config.udp);
        let batches = links.iter().map(|_| Vec::new()).collect();
        let acceptor = Acceptor {
            poll,
            listener: Some(listener),
            signals,
            life: Lifecycle::new(Instant::now(), config, traits.shutdown),
            census,
            links,
            batches,
            next: 0,
            alive,
            max_clients: config.max_clients,
            trace: Trace::for_threads(config.trace),
        };
        Ok((acceptor, waker))
    }

    /// Until every loop has finished.
    ///
    /// # Errors
    /// A failing `poll`.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(256);
        while self.alive.load(Ordering::Acquire) > 0 {
            let now = Instant::now();
            let timeout = self.life.poll_timeout().map(|deadline| {
                let wait = deadline.saturating_duration_since(now);
                if self.life.phase() == Phase::Running {
                    wait
                } else {
                    wait.max(MIN_WAIT_AFTER_SHUTDOWN)
                }
            });
            if let Err(e) = self.poll.poll(&mut events, timeout)
                && e.kind() != io::ErrorKind::Interrupted
            {
                self.stop_now();
                return Err(e);
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => accept::accept_all(&mut self),
                    SIGNALS => self.handle_signals(),
                    _ => {} // WAKE: a loop finished; checked above.
                }
            }
            let running = self.alive.load(Ordering::Acquire);
            if running < self.links.len() && self.life.phase() == Phase::Running {
                // A loop stopped on an error (its clients are gone, its
                // error is returned): the others stop too, at once.
                status::diag(format_args!("an event loop failed: stopping every loop"));
                self.stop_now();
            }
            self.life
                .handle_timeout(Instant::now(), self.census.count());
            self.run_commands();
            self.send_batches();
        }
        Ok(())
    }

    /// Every signal counts; the loops are told after the listen queue was
    /// handed out, so they serve those clients like the others.
    fn handle_signals(&mut self) {
        let count = self.signals.take();
        if count == 0 {
            return;
        }
        self.trace.signals(count);
        let now = Instant::now();
        for _ in 0..count {
            self.life.handle_signal(now);
        }
        self.run_commands();
        self.send_batches();
        self.forward(count);
    }

    /// As three signals: stop accepting, close every client, stop waiting.
    fn stop_now(&mut self) {
        let now = Instant::now();
        for _ in 0..3 {
            self.life.handle_signal(now);
        }
        self.run_commands();
        self.send_batches();
        self.forward(3);
    }

    /// `count` signals for every loop (three: stop now, whatever the phase).
    fn forward(&self, count: usize) {
        for link in &self.links {
            if link.tx.send(Msg::Signals(count)).is_ok() {
                let _ = link.waker.wake();
            }
        }
    }

    fn run_commands(&mut self) {
        while let Some(command) = self.life.poll_command() {
            self.trace.command(&command);
            match command {
                Command::StopAccepting => accept::stop_accepting(self),
                Command::AnnounceDrain { timeout } => self.census.draining(timeout),
                Command::ReportCount => self.census.report(),
                Command::Accept => accept::accept_all(self),
                Command::Diagnostic(line) => status::diag(format_args!("{line}")),
                // The loops do these for their own clients.
                Command::NotifyHandler | Command::CloseAll { .. } | Command::KillAll => {}
            }
        }
    }

    /// One message and one wake per loop per wakeup.
    fn send_batches(&mut self) {
        for (index, (batch, link)) in self.batches.iter_mut().zip(&self.links).enumerate() {
            if batch.is_empty() {
                continue;
            }
            let clients = std::mem::take(batch);
            let n = clients.len();
            self.census.handed_out(n);
            self.trace.handed(n, index);
            if link.tx.send(Msg::Clients(clients)).is_ok() {
                let _ = link.waker.wake();
            } else {
                self.census.settled(n);
            }
        }
    }
}

impl accept::Acceptor for Acceptor {
    type Listener = TcpListener;

    fn listening(&mut self) -> (&mut Option<TcpListener>, &mut AcceptBackoff, &Registry) {
        let backoff = self.life.accept_backoff();
        (&mut self.listener, backoff, self.poll.registry())
    }

    /// Each connection goes to the next loop in turn (round-robin: with
    /// SO_REUSEPORT the kernel would hash the 4-tuple, and a few clients
    /// could all land on one loop).
    fn add_client(&mut self, stream: TcpStream, peer: SocketAddr) {
        // Past --max-clients the refusal is made here: accepted connections
        // waiting for a loop would otherwise hold the descriptors the
        // server's own file writes need.
        let waiting: usize = self.batches.iter().map(Vec::len).sum();
        if self.census.tcp_in_use() + waiting >= self.max_clients {
            status::refuse_too_many_clients(&stream, self.max_clients);
            return;
        }
        self.batches[self.next].push((stream, peer));
        self.next = (self.next + 1) % self.batches.len();
    }
}
