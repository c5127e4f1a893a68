//! `--max-output-total`: the output queued for all clients of the process
//! together, and the switch that says whether reading must stop.
//!
//! Every [`OutBuf`](crate::outbuf::OutBuf) of a client is charged to one
//! [`OutputTotal`] (an atomic shared by every loop or thread): it adds what
//! is queued and subtracts what the kernel took or what was dropped with a
//! connection. When the total passes the limit the total is *over*: a
//! server stops reading from every client that has output queued (clients
//! with nothing queued are still served), and a handler whose slow policy
//! is to drop (presence) drops its largest holder instead. It stays over
//! until the total is at most half the limit (hysteresis, as for
//! `--max-pending`, so reading does not flap). Paused input stays in the
//! kernel: nothing a client sent is lost.
//!
//! How a waiting reader learns the total fell: the one loop sees it after
//! its own flush; `--reactors N` loops are woken (their wakers, fired once
//! by whoever brings the total down); threaded readers look again every
//! [`RECHECK`]. [`RECHECK`] also bounds a loop's sleep while it holds
//! clients back, in case a fall raced with the rise.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mio::Waker;

use crate::handlers::ClientId;
use crate::status;

/// How often a reader held back by the total looks again, at most.
pub const RECHECK: Duration = Duration::from_millis(50);

/// See the module doc. Cloning gives another handle on the same total.
#[derive(Clone, Debug)]
pub struct OutputTotal {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// Bytes queued in every output buffer charged here.
    bytes: AtomicUsize,
    /// `--max-output-total`.
    limit: usize,
    /// Passed the limit and not yet back to half of it: clients with output
    /// queued are not read from.
    over: AtomicBool,
    /// Loops to wake when the total falls back (`--reactors N`): a loop
    /// holding clients back may have no event of its own to wake it.
    wakers: Mutex<Vec<Arc<Waker>>>,
    /// Shared buffers queued (broadcasts), by address: how many queues
    /// hold each. One copy is in memory, so it counts once.
    shared: Mutex<HashMap<usize, usize>>,
}

impl OutputTotal {
    pub fn new(limit: usize) -> Self {
        OutputTotal {
            shared: Arc::new(Shared {
                bytes: AtomicUsize::new(0),
                limit,
                over: AtomicBool::new(false),
                wakers: Mutex::new(Vec::new()),
                shared: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Wakes these loops whenever the total falls back under half.
    pub fn wake_on_fall(&self, wakers: &[Arc<Waker>]) {
        let mut mine = self
            .shared
            .wakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        mine.extend(wakers.iter().cloned());
    }

    /// Bytes queued for all clients now.
    pub fn bytes(&self) -> usize {
        self.shared.bytes.load(Ordering::Relaxed)
    }

    pub fn limit(&self) -> usize {
        self.shared.limit
    }

    /// `n` more bytes were queued.
    pub fn add(&self, n: usize) {
        let s = &*self.shared;
        let now = s.bytes.fetch_add(n, Ordering::Relaxed) + n;
        if now > s.limit && !s.over.load(Ordering::Relaxed) {
            s.over.store(true, Ordering::SeqCst);
        }
    }

    /// `n` queued bytes were written or dropped.
    pub fn sub(&self, n: usize) {
        let s = &*self.shared;
        let now = s.bytes.fetch_sub(n, Ordering::Relaxed) - n;
        if now <= s.limit / 2 && s.over.load(Ordering::Relaxed) {
            self.fall();
        }
    }

    /// A queue took a shared buffer: its bytes count if no queue held it.
    pub fn hold_shared(&self, buf: &Arc<[u8]>) {
        let mut shared = self.shared_queues();
        let holders = shared.entry(buf.as_ptr() as usize).or_insert(0);
        *holders += 1;
        // Counted under the lock, so a last let-go racing with a new hold
        // of the same buffer cannot take it off before it is put on.
        if *holders == 1 {
            self.add(buf.len());
        }
    }

    /// A queue let go of a shared buffer (written, cleared, dropped): its
    /// bytes leave the total with the last one.
    pub fn let_go_shared(&self, buf: &Arc<[u8]>) {
        let mut shared = self.shared_queues();
        let key = buf.as_ptr() as usize;
        match shared.get_mut(&key) {
            Some(holders) if *holders > 1 => *holders -= 1,
            Some(_) => {
                shared.remove(&key);
                self.sub(buf.len());
            }
            None => debug_assert!(false, "a shared buffer let go of twice"),
        }
    }

    fn shared_queues(&self) -> std::sync::MutexGuard<'_, HashMap<usize, usize>> {
        self.shared
            .shared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// SPEC's rule for one client: not read from now if it has output
    /// queued (`pending` bytes) while the total is over. A client with
    /// nothing queued is always served. Both servers ask this.
    pub fn holds(&self, pending: usize) -> bool {
        pending > 0 && self.holds_back()
    }

    /// Whether clients with output queued must not be read from now.
    pub fn holds_back(&self) -> bool {
        let s = &*self.shared;
        if !s.over.load(Ordering::Relaxed) {
            return false;
        }
        // A rise that raced with a fall can leave the switch on with the
        // total low: whoever looks next turns it off.
        if self.bytes() <= s.limit / 2 {
            self.fall();
            return false;
        }
        true
    }

    /// Past the limit itself (a dropping handler drops its largest holder
    /// while this holds).
    pub fn over_limit(&self) -> bool {
        self.bytes() > self.shared.limit
    }

    /// Back under half: the switch goes off, once, and the loops are woken.
    fn fall(&self) {
        let s = &*self.shared;
        if s.over
            .compare_exchange(true, false, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            let wakers = s.wakers.lock().unwrap_or_else(PoisonError::into_inner);
            for waker in wakers.iter() {
                let _ = waker.wake();
            }
        }
    }
}

/// The diagnostic for a client dropped as the largest holder while the
/// total was over (the `--max-pending` drop's counterpart).
pub fn dropped_largest(id: ClientId, pending: usize, total: &OutputTotal) {
    status::diag(format_args!(
        "client {id}: dropped, {pending} bytes of output pending, the most of any client, with {} queued for all (over --max-output-total {})",
        total.bytes(),
        total.limit()
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_past_the_limit_until_back_to_half() {
        let total = OutputTotal::new(100);
        total.add(100);
        assert!(!total.holds_back() && !total.over_limit(), "at the limit");
        total.add(1);
        assert!(total.holds_back() && total.over_limit());
        total.sub(30);
        assert!(total.holds_back(), "71: under the limit, not under half");
        assert!(!total.over_limit());
        total.sub(21);
        assert!(!total.holds_back(), "50: half");
        total.add(30);
        assert!(!total.holds_back(), "80: rising again, not over yet");
        assert_eq!(total.bytes(), 80);
    }

    #[test]
    fn a_switch_left_on_with_the_total_low_goes_off_when_asked() {
        let total = OutputTotal::new(100);
        total.shared.over.store(true, Ordering::SeqCst);
        total.add(10);
        assert!(!total.holds_back());
        assert!(!total.shared.over.load(Ordering::SeqCst));
    }

    #[test]
    fn clones_share_the_total() {
        let a = OutputTotal::new(10);
        let b = a.clone();
        a.add(11);
        assert!(b.holds_back());
        b.sub(11);
        assert!(!a.holds_back());
        assert_eq!(a.bytes(), 0);
    }

    #[test]
    fn the_fall_wakes_the_loops() {
        let mut poll = mio::Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), mio::Token(7)).unwrap());
        let total = OutputTotal::new(10);
        total.wake_on_fall(&[waker]);
        total.add(20);
        total.sub(15);
        let mut events = mio::Events::with_capacity(4);
        poll.poll(&mut events, Some(Duration::from_secs(5)))
            .unwrap();
        assert!(events.iter().any(|e| e.token() == mio::Token(7)));
    }
}
