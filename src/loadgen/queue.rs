//! The queue workload's shared parts, for the driver in [`super::grpc`]:
//! the line protocol's connection (`--handler queue`), so the line `queue`
//! handler and `queue-grpc-server` run the very same workload (put then pop
//! per step, every answer checked); and the queue's [`Room`], so loadgen's
//! defaults (50 clients) work against a server's defaults (10 slots).
//!
//! Why a room: each client puts an item, then pops one. With more clients
//! than slots, a `put` on the full queue answers `False` and the step cannot
//! be checked. So before the run loadgen finds the capacity (up to
//! `--clients`) and lets at most that many clients between their `put` and
//! their `pop` ([`Slots`]); the rest wait their turn, which is not timed.
//! Every `put` must then answer `True` and every `pop` an item.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpSocket;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::RunError;
use super::grpc::QueueConn;

/// One TCP connection speaking `put ITEM` / `pop` / `size` lines.
pub struct LineConn {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    line: String,
    /// Bytes written and read, for the report.
    sent: u64,
    received: u64,
}

impl LineConn {
    /// Sends `request` and returns the answer line without its `\n`.
    async fn ask(&mut self, request: &[u8]) -> Result<&str, String> {
        self.writer
            .write_all(request)
            .await
            .map_err(|e| format!("send: {}", crate::net::os_reason(&e)))?;
        self.sent += request.len() as u64;
        self.line.clear();
        let n = self
            .reader
            .read_line(&mut self.line)
            .await
            .map_err(|e| format!("receive: {}", crate::net::os_reason(&e)))?;
        self.received += n as u64;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        Ok(self.line.trim_end_matches('\n'))
    }
}

impl QueueConn for LineConn {
    async fn open(addr: SocketAddr) -> io::Result<Self> {
        // Spread over loopback source addresses like every other mode
        // (the clients are numbered in the order they connect).
        static NEXT_CLIENT: AtomicUsize = AtomicUsize::new(0);
        let index = NEXT_CLIENT.fetch_add(1, Ordering::Relaxed);
        let socket = super::connect::client_socket(addr, index, true)?;
        let stream = TcpSocket::from_std_stream(socket.into())
            .connect(addr)
            .await?;
        stream.set_nodelay(true)?;
        let (read, writer) = stream.into_split();
        Ok(LineConn {
            reader: BufReader::new(read),
            writer,
            line: String::new(),
            sent: 0,
            received: 0,
        })
    }

    async fn put(&mut self, item: String) -> Result<bool, String> {
        let request = format!("put {item}\n");
        match self.ask(request.as_bytes()).await? {
            "True" => Ok(true),
            "False" => Ok(false),
            other => Err(format!("put answered {other:?}")),
        }
    }

    async fn pop(&mut self) -> Result<Option<String>, String> {
        match self.ask(b"pop\n").await? {
            "None" => Ok(None),
            item => Ok(Some(item.to_string())),
        }
    }

    async fn size(&mut self) -> Result<u64, String> {
        let answer = self.ask(b"size\n").await?;
        answer
            .parse()
            .map_err(|_| format!("size answered {answer:?}"))
    }

    fn bytes(&self) -> Option<(u64, u64)> {
        Some((self.sent, self.received))
    }
}

/// The queue's room for this run, found by [`Room::prepare`]: how many
/// clients may hold an item at once, and the items that were queued
/// before the run (taken out, put back by [`Room::restore`]).
#[derive(Debug)]
pub struct Room {
    /// At most this many clients between their `put` and their `pop`
    /// (the queue's capacity, or `--clients` if that is smaller).
    pub slots: Arc<Slots>,
    /// The queue's items at the start, in order.
    held: Vec<String>,
}

impl Room {
    /// Readies the queue at `addr` for a run of `clients` clients, over a
    /// connection of its own: takes out the items already queued
    /// (remembered, in order), then finds the capacity by putting up to
    /// `clients` probe items until one answers `False`, and pops them again.
    ///
    /// # Errors
    /// No connection; a call that fails or answers out of protocol; a queue
    /// that takes no item at all (size 0).
    pub async fn prepare<C: QueueConn>(addr: SocketAddr, clients: usize) -> Result<Room, RunError> {
        let fail = |what: &str, e: String| RunError::Io(io::Error::other(format!("{what}: {e}")));
        let mut conn = C::open(addr).await?;
        let queued = conn.size().await.map_err(|e| fail("size", e))?;
        let mut held = Vec::new();
        while (held.len() as u64) < queued {
            match conn.pop().await.map_err(|e| fail("pop", e))? {
                Some(item) => held.push(item),
                // Someone else popped meanwhile.
                None => break,
            }
        }
        if !held.is_empty() {
            eprintln!(
                "note: the queue held {} items: taken out for the run, put back after it",
                held.len()
            );
        }
        let mut room = 0;
        while room < clients {
            if !conn
                .put(format!("lg-probe-{room}"))
                .await
                .map_err(|e| fail("put", e))?
            {
                break;
            }
            room += 1;
        }
        for n in 0..room {
            let item = conn.pop().await.map_err(|e| fail("pop", e))?;
            if item.as_deref() != Some(format!("lg-probe-{n}").as_str()) {
                return Err(fail("pop", format!("answered {item:?} for probe item {n}")));
            }
        }
        let room = Room {
            slots: Arc::new(Slots::new(room)),
            held,
        };
        if room.slots.size() == 0 {
            room.put_back(&mut conn).await?;
            return Err(RunError::Io(io::Error::other(
                "the queue takes no items (its size is 0)",
            )));
        }
        Ok(room)
    }

    /// Puts the items [`Room::prepare`] took out back, in their order (a
    /// connection is opened only if there are any).
    ///
    /// # Errors
    /// No connection; a `put` that fails or answers `False` (the items not
    /// put back are named).
    pub async fn restore<C: QueueConn>(self, addr: SocketAddr) -> Result<(), RunError> {
        if self.held.is_empty() {
            return Ok(());
        }
        let mut conn = C::open(addr).await?;
        self.put_back(&mut conn).await
    }

    async fn put_back<C: QueueConn>(&self, conn: &mut C) -> Result<(), RunError> {
        for (n, item) in self.held.iter().enumerate() {
            match conn.put(item.clone()).await {
                Ok(true) => {}
                answer => {
                    let why = answer.map_or_else(|e| e, |_| "the queue is full".into());
                    return Err(RunError::Io(io::Error::other(format!(
                        "could not put back the queue's items {:?}: {why}",
                        &self.held[n..]
                    ))));
                }
            }
        }
        Ok(())
    }
}

/// A counting gate for tasks on any thread and runtime: at most `size`
/// holders at once, the waiting ones served in order. (tokio's `Semaphore`
/// would do, but its `sync` feature belongs to the gRPC build.)
#[derive(Debug)]
pub struct Slots {
    size: usize,
    state: Mutex<GateState>,
}

#[derive(Debug, Default)]
struct GateState {
    free: usize,
    next_ticket: u64,
    /// Waiting acquirers, oldest first.
    waiting: VecDeque<(u64, Waker)>,
    /// Tickets a release handed a slot to, not yet polled.
    granted: HashSet<u64>,
}

impl Slots {
    pub fn new(size: usize) -> Slots {
        Slots {
            size,
            state: Mutex::new(GateState {
                free: size,
                ..GateState::default()
            }),
        }
    }

    /// How many may hold a slot at once.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Waits for a slot; it is freed when the returned guard drops.
    pub fn acquire(&self) -> Acquire<'_> {
        Acquire {
            slots: self,
            ticket: None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn release(&self) {
        let mut s = self.lock();
        match s.waiting.pop_front() {
            Some((ticket, waker)) => {
                s.granted.insert(ticket);
                drop(s);
                waker.wake();
            }
            None => s.free += 1,
        }
    }
}

/// [`Slots::acquire`]'s future.
pub struct Acquire<'a> {
    slots: &'a Slots,
    ticket: Option<u64>,
}

/// A held slot of [`Slots`].
pub struct SlotGuard<'a>(&'a Slots);

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        self.0.release();
    }
}

impl<'a> Future for Acquire<'a> {
    type Output = SlotGuard<'a>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<SlotGuard<'a>> {
        let slots = self.slots;
        let mut s = slots.lock();
        match self.ticket {
            Some(t) if s.granted.remove(&t) => {}
            Some(t) => {
                if let Some(entry) = s.waiting.iter_mut().find(|(w, _)| *w == t) {
                    entry.1.clone_from(cx.waker());
                }
                return Poll::Pending;
            }
            None if s.free > 0 && s.waiting.is_empty() => s.free -= 1,
            None => {
                let t = s.next_ticket;
                s.next_ticket += 1;
                s.waiting.push_back((t, cx.waker().clone()));
                drop(s);
                self.ticket = Some(t);
                return Poll::Pending;
            }
        }
        drop(s);
        self.ticket = None;
        Poll::Ready(SlotGuard(slots))
    }
}

impl Drop for Acquire<'_> {
    fn drop(&mut self) {
        let Some(t) = self.ticket else { return };
        let mut s = self.slots.lock();
        if s.granted.remove(&t) {
            // Handed a slot it will never use: pass it on.
            drop(s);
            self.slots.release();
        } else {
            s.waiting.retain(|(w, _)| *w != t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    #[test]
    fn slots_admit_at_most_their_size_and_serve_everyone() {
        let slots = Arc::new(Slots::new(3));
        let (now, peak, done) = (
            Rc::new(Cell::new(0)),
            Rc::new(Cell::new(0)),
            Rc::new(Cell::new(0)),
        );
        let local = tokio::task::LocalSet::new();
        for _ in 0..20 {
            let (slots, now, peak, done) = (slots.clone(), now.clone(), peak.clone(), done.clone());
            local.spawn_local(async move {
                for _ in 0..5 {
                    let _held = slots.acquire().await;
                    now.set(now.get() + 1);
                    peak.set(peak.get().max(now.get()));
                    tokio::task::yield_now().await;
                    now.set(now.get() - 1);
                }
                done.set(done.get() + 1);
            });
        }
        runtime().block_on(local);
        assert_eq!((peak.get(), done.get()), (3, 20));
        assert_eq!(slots.lock().free, 3);
    }

    #[test]
    fn a_dropped_waiter_passes_its_slot_on() {
        runtime().block_on(async {
            let slots = Slots::new(1);
            let held = slots.acquire().await;
            let mut first = Box::pin(slots.acquire());
            let waker = std::task::Waker::noop();
            assert!(
                first
                    .as_mut()
                    .poll(&mut Context::from_waker(waker))
                    .is_pending()
            );
            drop(held); // hands the slot to `first`
            drop(first); // which never takes it: passed on
            let _again = slots.acquire().await;
            assert_eq!(slots.lock().free, 0);
        });
    }
}
