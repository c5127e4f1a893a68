//! The threaded server's supervisor: accepts, catches signals, and carries
//! out the shared lifecycle's commands.

use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Instant;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Waker};

use super::client::{Client, ClientState};
use super::udp::UdpThread;
use super::{Core, Registered, Server, lock};
use crate::accept::{self, Acceptor};
use crate::handlers::{Datagrams, Finish, Outbox, ServerStats};
use crate::limits::output_total::OutputTotal;
use crate::server_core::Setup;
use crate::server_core::census::Census;
use crate::server_core::durable::Durable;
use crate::server_core::ending::{Cause, Ending};
use crate::server_core::lifecycle::{Command, Lifecycle};
use crate::signals::ShutdownSignals;
use crate::status;
use crate::stdout::{FlushDeadline, Waiter};
use crate::timers::AcceptBackoff;

use crate::net::tokens::{LISTENER, SIGNALS, WAKE};

/// Reader stacks: the handler runs on them. Small, so 10,000 idle
/// connections fit in memory (only touched pages count anyway).
const READER_STACK_BYTES: usize = 128 * 1024;

pub(super) struct Supervisor {
    server: Arc<Server>,
    poll: Poll,
    /// `None` once shutdown began.
    listener: Option<TcpListener>,
    signals: ShutdownSignals,
    /// The `--udp` socket's thread.
    udp: Option<UdpThread>,
    /// Phases, signals, reports, accept back-off: the shared rules.
    life: Lifecycle,
    /// The supervisor's own outbox (on_connect, on_shutdown).
    out: Outbox,
    /// How long shutdown waits for the stdout writer's queue.
    flush: FlushDeadline,
}

impl Supervisor {
    pub(super) fn new(
        listener: TcpListener,
        udp: Option<std::net::UdpSocket>,
        setup: Setup,
    ) -> io::Result<Self> {
        let Setup {
            config,
            handler,
            store,
            status,
            mut signals,
        } = setup;
        let poll = Poll::new()?;
        listener.set_nonblocking(true)?;
        poll.registry().register(
            &mut SourceFd(&listener.as_raw_fd()),
            LISTENER,
            Interest::READABLE,
        )?;
        signals.register(poll.registry(), SIGNALS)?;
        let waker = Waker::new(poll.registry(), WAKE)?;
        let stdout = crate::stdout::StdoutWriter::new(config.max_pending_bytes)?;
        let addr = listener.local_addr()?;
        let traits = handler.traits();
        status.listening(addr, traits.name, udp.is_some());
        let life = Lifecycle::new(Instant::now(), &config, traits.shutdown);
        let server = Arc::new(Server {
            framing: traits.framing,
            datagram_is_line: traits.datagrams == Datagrams::Lines,
            slow_policy: traits.slow,
            core: Mutex::new(Core {
                handler,
                registry: HashMap::new(),
            }),
            persisting: store.is_some(),
            durable: Mutex::new(Durable::new(store)),
            fatal: Mutex::new(None),
            census: Census::new(status),
            table: Mutex::new(HashMap::new()),
            flushing: Mutex::new(HashMap::new()),
            open: AtomicUsize::new(0),
            stdout,
            cut_partial_lines: AtomicU64::new(0),
            waker,
            trace: crate::trace::Trace::for_threads(config.trace),
            output_total: OutputTotal::new(config.max_output_total_bytes),
            config,
        });
        let udp = match udp {
            Some(socket) => Some(UdpThread::spawn(&server, socket)?),
            None => None,
        };
        Ok(Supervisor {
            server,
            poll,
            listener: Some(listener),
            signals,
            udp,
            life,
            out: Outbox::new(),
            flush: FlushDeadline::default(),
        })
    }

    /// Every client, TCP and UDP.
    fn clients(&self) -> usize {
        self.server.census.count()
    }

    /// Connections still flushing or lingering, connected ones included.
    fn open(&self) -> usize {
        self.server.open.load(Ordering::SeqCst)
    }

    pub(super) fn run(mut self) -> io::Result<Finish> {
        let mut events = Events::with_capacity(256);
        // The stdout writer wakes the supervisor once its queue is written.
        let server = Arc::downgrade(&self.server);
        let flushed: Waiter = Arc::new(move || {
            if let Some(server) = server.upgrade() {
                let _ = server.waker.wake();
            }
        });
        loop {
            let now = Instant::now();
            let timeout = [self.life.poll_timeout(), self.flush.wake_at(now)]
                .into_iter()
                .flatten()
                .min()
                .map(|t| t.saturating_duration_since(now));
            // A signal landing during poll is an empty wakeup.
            if let Err(e) = self.poll.poll(&mut events, timeout)
                && e.kind() != io::ErrorKind::Interrupted
            {
                return Err(e);
            }
            self.server.trace.pass(&events, timeout);
            for event in events.iter() {
                match event.token() {
                    LISTENER => accept::accept_all(&mut self),
                    SIGNALS => {
                        // Every signal counts: two in one wakeup are a
                        // first and a second.
                        let now = Instant::now();
                        let count = self.signals.take();
                        self.server.trace.signals(count);
                        for _ in 0..count {
                            self.flush.on_signal(now, self.server.config.drain_timeout);
                            self.life.handle_signal(now);
                        }
                        self.run_commands();
                    }
                    _ => {}
                }
            }
            if let Some(e) = lock(&self.server.fatal).take() {
                status::diag(format_args!("store failed: resetting every client"));
                for client in self.snapshot() {
                    client.abandon();
                }
                return Err(e);
            }
            let now = Instant::now();
            self.life.handle_timeout(now, self.clients());
            self.run_commands();
            self.server.trace.pass_end();
            if self.life.is_done(self.open(), now)
                && self.flush.settled(&self.server.stdout, now, &flushed)
            {
                break;
            }
        }
        let cut = self.server.cut_partial_lines.load(Ordering::Relaxed);
        if cut > 0 {
            status::cut_partial_lines(cut);
        }
        let stats = ServerStats {
            cut_partial_lines: cut,
        };
        // The durable lock is released before `fatal` is taken.
        let finished = lock(&self.server.durable).finish();
        if let Err(e) = finished {
            // A failure a handler call already reported is the first cause.
            let first = lock(&self.server.fatal).take();
            return Err(first.unwrap_or(e));
        }
        FlushDeadline::finish(&self.server.stdout)?;
        Ok(self.server.core().handler.finish(&stats))
    }

    /// Carries out what the lifecycle asks for.
    fn run_commands(&mut self) {
        while let Some(command) = self.life.poll_command() {
            self.server.trace.command(&command);
            match command {
                Command::StopAccepting => accept::stop_accepting(self),
                Command::NotifyHandler => {
                    let mut out = std::mem::take(&mut self.out);
                    self.server
                        .with_handler(None, &mut out, |handler, out| handler.on_shutdown(out));
                    self.out = out;
                }
                Command::AnnounceDrain { timeout } => self.server.census.draining(timeout),
                Command::CloseAll { cut } => {
                    if let Some(udp) = &self.udp {
                        udp.close();
                    }
                    self.close_all(cut);
                }
                Command::KillAll => {
                    if let Some(udp) = &self.udp {
                        udp.kill();
                    }
                    for client in self.open_clients() {
                        client.kill_at_shutdown();
                    }
                }
                Command::ReportCount => self.server.census.report(),
                Command::Accept => accept::accept_all(self),
                Command::Diagnostic(line) => status::diag(format_args!("{line}")),
            }
        }
    }

    /// Tells every client's reader to handle what it already received and
    /// close (see [`Cause::Shutdown`]); shutting the read side wakes a reader
    /// blocked in `read` and makes later reads return at once. The handler
    /// heard that everyone goes in `on_shutdown`: no `on_disconnect` follows
    /// for clients closed here (as on the reactor).
    fn close_all(&mut self, cut: bool) {
        {
            let mut core = self.server.core();
            for reg in core.registry.values_mut() {
                reg.ending.close(Cause::Shutdown { cut });
            }
        }
        for client in self.snapshot() {
            let mut st = client.state();
            if st.stop.is_some() {
                continue;
            }
            client.request_stop(&mut st, Cause::Shutdown { cut });
            drop(st);
            let _ = client.stream.shutdown(Shutdown::Read);
        }
    }

    fn snapshot(&self) -> Vec<Arc<Client>> {
        lock(&self.server.table).values().cloned().collect()
    }

    /// Every client whose connection is still open: connected, or leaving
    /// with output still being flushed.
    fn open_clients(&self) -> Vec<Arc<Client>> {
        let mut clients = self.snapshot();
        clients.extend(lock(&self.server.flushing).values().cloned());
        clients
    }
}

impl Acceptor for Supervisor {
    type Listener = TcpListener;

    fn listening(&mut self) -> (&mut Option<TcpListener>, &mut AcceptBackoff, &Registry) {
        let backoff = self.life.accept_backoff();
        (&mut self.listener, backoff, self.poll.registry())
    }

    fn add_client(&mut self, stream: TcpStream, peer: SocketAddr) {
        let server = &self.server;
        // accept(2) does not pass O_NONBLOCK on; make sure anyway.
        if let Err(e) = stream.set_nonblocking(false) {
            status::diag(format_args!("accept: {e}; dropping connection"));
            return;
        }
        let _ = stream.set_nodelay(true);
        // Until what it sends is durable, a death of the process must reset
        // this connection, not close it (see `net::set_reset_on_close`).
        let reset_on_close = server.persisting;
        if reset_on_close && let Err(e) = crate::net::set_reset_on_close(&stream, true) {
            status::diag(format_args!("accept: SO_LINGER: {e}; dropping connection"));
            return;
        }
        // Its id and its line; TCP clients only count against
        // `--max-clients` (UDP peers have `--max-udp-peers`).
        let max = server.config.max_clients;
        let Some(id) = server.census.admit(Some(max)) else {
            status::refuse_too_many_clients(&stream, max);
            return;
        };
        let client = Arc::new(Client {
            id,
            stream,
            max_pending: server.config.max_pending_bytes,
            slow_policy: server.slow_policy,
            output_total: server.output_total.clone(),
            state: Mutex::new(ClientState {
                reset_on_close,
                ..ClientState::new(&server.output_total)
            }),
            readable: Condvar::new(),
            writable: Condvar::new(),
            trace: server.trace.clone(),
        });
        server.trace.accepted(id, peer);
        {
            let mut table = lock(&server.table);
            table.insert(id, Arc::clone(&client));
            server.open.fetch_add(1, Ordering::SeqCst);
        }
        // Registered and announced before its reader starts, so pauses
        // from on_connect (the sink's waiters) hold from the first read.
        lock(&server.core).registry.insert(
            id,
            Registered {
                client: Arc::clone(&client),
                ending: Ending::new(),
            },
        );
        server.with_handler(None, &mut self.out, |handler, out| {
            handler.on_connect(id, peer, out)
        });
        let reader_server = Arc::clone(server);
        let reader_client = Arc::clone(&client);
        let spawned = thread::Builder::new()
            .name(format!("client-{id}"))
            .stack_size(READER_STACK_BYTES)
            .spawn(move || reader_server.serve(&reader_client));
        if let Err(e) = spawned {
            status::dropped_error(id, &format_args!("cannot start a thread: {e}; closing"));
            server.end_client(&client, &mut server.reader(), Cause::Dropped);
        }
    }
}
