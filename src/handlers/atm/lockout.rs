//! The atm's lockout (SPEC "atm"): who may try a PIN now, I/O-free and
//! clock-free (every call is given `now`).
//!
//! Two rules, both per source IP address, so an attacker locks only
//! itself out and never the owner at another address:
//! - per NAME and address: [`MAX_WRONG_IN_A_ROW`] wrong credentials in a
//!   row lock that NAME for that address for [`LOCK_TIME`]; a right one
//!   resets the count. A NAME with no account counts exactly like one, so
//!   no reply tells whether a NAME exists;
//! - per address: at most [`MAX_WRONG_PER_WINDOW`] wrong credentials in any
//!   [`WINDOW`] across all NAMEs (the last ones' times are kept, so the rule
//!   holds for every window, not only for aligned minutes); the one that
//!   reaches the limit locks every NAME for that address for [`LOCK_TIME`].
//!
//! Memory is bounded whatever the addresses and NAMEs: a NAME is kept as a
//! 64-bit keyed hash (process-random key: nobody can aim for a collision),
//! and each table holds at most its capacity, the oldest entry forgotten
//! first. IPv4-mapped IPv6 addresses count as the IPv4 address.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Wrong credentials in a row for one NAME from one address that lock it.
pub const MAX_WRONG_IN_A_ROW: u32 = 5;
/// Wrong credentials one address may send in any [`WINDOW`], all NAMEs
/// together; the one that reaches it locks the address.
pub const MAX_WRONG_PER_WINDOW: usize = 20;
/// The span [`MAX_WRONG_PER_WINDOW`] is counted over.
pub const WINDOW: Duration = Duration::from_secs(60);
/// How long a lock lasts.
pub const LOCK_TIME: Duration = Duration::from_secs(60);
/// (NAME, address) pairs remembered at most. Enough that an attacker
/// cannot get its own lock forgotten within [`LOCK_TIME`] by making new
/// pairs: at 20 a minute per address, and with UDP's `--max-udp-peers`
/// (1,024) peers at a time, that takes well over a minute.
pub const MAX_PAIRS: usize = 32_768;
/// Addresses remembered at most. Likewise: UDP brings at most
/// `--max-udp-peers` new addresses per `--udp-idle`, TCP needs real ones.
pub const MAX_ADDRESSES: usize = 4_096;

/// What a wrong credential did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Failure {
    /// It locked this NAME for this address.
    pub name_locked: bool,
    /// It locked every NAME for this address.
    pub address_locked: bool,
}

/// One NAME tried from one address.
#[derive(Debug, Clone, Copy)]
struct Pair {
    /// Wrong credentials in a row (since the last right one or lock).
    wrong: u32,
    locked_until: Option<Instant>,
}

/// One address's recent wrong credentials.
#[derive(Debug)]
struct Address {
    /// Times of its wrong credentials within the last [`WINDOW`], oldest
    /// first, at most [`MAX_WRONG_PER_WINDOW`]: milliseconds since
    /// [`Lockout::epoch`] (half the size of an `Instant`).
    recent: VecDeque<u64>,
    locked_until: Option<Instant>,
}

impl Default for Address {
    fn default() -> Self {
        Address {
            // Exactly the most it holds: no growth by doubling.
            recent: VecDeque::with_capacity(MAX_WRONG_PER_WINDOW),
            locked_until: None,
        }
    }
}

/// A map that forgets its oldest entry (by insertion) beyond `capacity`.
#[derive(Debug)]
struct Bounded<K, V> {
    capacity: usize,
    map: HashMap<K, (u64, V)>,
    /// Keys in insertion order with the stamp they were inserted under; a
    /// key removed or re-inserted since leaves a stale element, skipped.
    order: VecDeque<(K, u64)>,
    next_stamp: u64,
}

impl<K: Copy + Eq + Hash, V> Bounded<K, V> {
    fn new(capacity: usize) -> Self {
        Bounded {
            capacity,
            map: HashMap::new(),
            order: VecDeque::new(),
            next_stamp: 0,
        }
    }

    fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key).map(|(_, v)| v)
    }

    fn remove(&mut self, key: &K) {
        self.map.remove(key);
        self.compact();
    }

    /// The entry for `key`, inserted with `make` if absent (forgetting the
    /// oldest entry if the table is full).
    fn entry(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        if !self.map.contains_key(&key) {
            while self.map.len() >= self.capacity {
                let Some((old, stamp)) = self.order.pop_front() else {
                    break;
                };
                if self.map.get(&old).is_some_and(|(s, _)| *s == stamp) {
                    self.map.remove(&old);
                }
            }
            let stamp = self.next_stamp;
            self.next_stamp += 1;
            self.map.insert(key, (stamp, make()));
            self.order.push_back((key, stamp));
            self.compact();
        }
        &mut self.map.get_mut(&key).expect("just inserted").1
    }

    /// Drops stale order elements once they are a third of the whole.
    fn compact(&mut self) {
        if self.order.len() > self.map.len() + self.map.len() / 2 + 64 {
            let map = &self.map;
            self.order
                .retain(|(k, stamp)| map.get(k).is_some_and(|(s, _)| s == stamp));
        }
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

/// See the module doc.
#[derive(Debug)]
pub struct Lockout {
    /// Keys NAMEs into [`Lockout::pairs`].
    hasher: RandomState,
    /// The first `now` seen: what [`Address::recent`] counts from.
    epoch: Option<Instant>,
    pairs: Bounded<(u64, IpAddr), Pair>,
    addresses: Bounded<IpAddr, Address>,
}

impl Default for Lockout {
    fn default() -> Self {
        Lockout::new()
    }
}

impl Lockout {
    pub fn new() -> Self {
        Lockout::with_capacity(MAX_PAIRS, MAX_ADDRESSES)
    }

    /// Tables of the given capacities (tests use small ones).
    pub fn with_capacity(pairs: usize, addresses: usize) -> Self {
        Lockout {
            hasher: RandomState::new(),
            epoch: None,
            pairs: Bounded::new(pairs.max(1)),
            addresses: Bounded::new(addresses.max(1)),
        }
    }

    /// `now` in milliseconds since the epoch (set at the first call).
    fn millis(&mut self, now: Instant) -> u64 {
        let epoch = *self.epoch.get_or_insert(now);
        u64::try_from(now.saturating_duration_since(epoch).as_millis()).unwrap_or(u64::MAX)
    }

    fn key(&self, name: &[u8], addr: IpAddr) -> (u64, IpAddr) {
        (self.hasher.hash_one(name), addr.to_canonical())
    }

    /// Whether `name` is locked for `addr` at `now` (by its own lock or by
    /// the address's): then no PIN is even looked at.
    pub fn is_locked(&self, name: &[u8], addr: IpAddr, now: Instant) -> bool {
        let locked = |until: Option<Instant>| until.is_some_and(|t| now < t);
        self.addresses
            .get(&addr.to_canonical())
            .is_some_and(|a| locked(a.locked_until))
            || self
                .pairs
                .get(&self.key(name, addr))
                .is_some_and(|p| locked(p.locked_until))
    }

    /// The right PIN for `name` from `addr`: its count starts again.
    pub fn succeeded(&mut self, name: &[u8], addr: IpAddr) {
        let key = self.key(name, addr);
        self.pairs.remove(&key);
    }

    /// Wrong credentials for `name` (an account or not) from `addr` at
    /// `now`, which [`Lockout::is_locked`] said was not locked.
    pub fn failed(&mut self, name: &[u8], addr: IpAddr, now: Instant) -> Failure {
        let key = self.key(name, addr);
        let pair = self.pairs.entry(key, || Pair {
            wrong: 0,
            locked_until: None,
        });
        if pair.locked_until.is_some_and(|t| t <= now) {
            // A lock that ran out: a fresh count.
            *pair = Pair {
                wrong: 0,
                locked_until: None,
            };
        }
        pair.wrong += 1;
        let name_locked = pair.wrong >= MAX_WRONG_IN_A_ROW;
        if name_locked {
            *pair = Pair {
                wrong: 0,
                locked_until: Some(now + LOCK_TIME),
            };
        }
        let at = self.millis(now);
        let window = u64::try_from(WINDOW.as_millis()).unwrap_or(u64::MAX);
        let address = self.addresses.entry(key.1, Address::default);
        while address
            .recent
            .front()
            .is_some_and(|t| at.saturating_sub(*t) >= window)
        {
            address.recent.pop_front();
        }
        address.recent.push_back(at);
        let address_locked = address.recent.len() >= MAX_WRONG_PER_WINDOW;
        if address_locked {
            address.recent.clear();
            address.locked_until = Some(now + LOCK_TIME);
        }
        Failure {
            name_locked,
            address_locked,
        }
    }

    /// Entries held: (pairs, addresses).
    pub fn len(&self) -> (usize, usize) {
        (self.pairs.len(), self.addresses.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == (0, 0)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    /// `n` wrong credentials for `name` from `addr` at `now`; the last's outcome.
    fn fail_n(l: &mut Lockout, name: &str, addr: IpAddr, now: Instant, n: usize) -> Failure {
        let mut last = Failure::default();
        for _ in 0..n {
            assert!(
                !l.is_locked(name.as_bytes(), addr, now),
                "{name} locked early"
            );
            last = l.failed(name.as_bytes(), addr, now);
        }
        last
    }

    #[test]
    fn five_in_a_row_lock_the_name_for_that_address_only_for_60_s() {
        let t0 = Instant::now();
        let mut l = Lockout::new();
        let out = fail_n(&mut l, "charles", ip(1), t0, 4);
        assert_eq!(out, Failure::default());
        let fifth = l.failed(b"charles", ip(1), t0);
        assert_eq!(
            fifth,
            Failure {
                name_locked: true,
                address_locked: false
            }
        );
        assert!(l.is_locked(b"charles", ip(1), t0));
        assert!(l.is_locked(b"charles", ip(1), t0 + 59 * S));
        assert!(!l.is_locked(b"charles", ip(2), t0), "the owner elsewhere");
        assert!(!l.is_locked(b"ada", ip(1), t0), "other NAMEs");
        assert!(!l.is_locked(b"charles", ip(1), t0 + 60 * S));
        // After the lock, a fresh count of five.
        let out = fail_n(&mut l, "charles", ip(1), t0 + 60 * S, 4);
        assert!(!out.name_locked);
        assert!(l.failed(b"charles", ip(1), t0 + 61 * S).name_locked);
    }

    #[test]
    fn a_right_pin_resets_the_count() {
        let t0 = Instant::now();
        let mut l = Lockout::new();
        fail_n(&mut l, "charles", ip(1), t0, 4);
        l.succeeded(b"charles", ip(1));
        assert!(!fail_n(&mut l, "charles", ip(1), t0, 4).name_locked);
        assert!(l.failed(b"charles", ip(1), t0).name_locked);
    }

    #[test]
    fn twenty_wrong_in_any_minute_lock_every_name_for_the_address() {
        let t0 = Instant::now();
        let mut l = Lockout::new();
        // 19 spread over 50 s, on different NAMEs (none reaches five).
        for i in 0..19u32 {
            let out = l.failed(format!("n{i}").as_bytes(), ip(1), t0 + S * (i * 50) / 19);
            assert_eq!(out, Failure::default(), "{i}");
        }
        // At 59 s all 19 are within the last minute: the 20th locks...
        let at = t0 + 59 * S;
        assert!(l.failed(b"x", ip(1), at).address_locked);
        assert!(l.is_locked(b"anything", ip(1), at + S));
        assert!(l.is_locked(b"charles", ip(1), at + 59 * S));
        assert!(!l.is_locked(b"charles", ip(1), at + 60 * S));
        assert!(!l.is_locked(b"charles", ip(2), at), "other addresses");
        // ...and after the lock the count starts again.
        let out = fail_n(&mut l, "y", ip(1), at + 60 * S, 1);
        assert_eq!(out, Failure::default());
    }

    #[test]
    fn the_window_slides() {
        let t0 = Instant::now();
        let mut l = Lockout::new();
        // 10 at 0 s, 10 at 61 s: never 20 in one minute.
        for i in 0..10u32 {
            assert!(
                !l.failed(format!("a{i}").as_bytes(), ip(1), t0)
                    .address_locked
            );
        }
        for i in 0..10u32 {
            let out = l.failed(format!("b{i}").as_bytes(), ip(1), t0 + 61 * S);
            assert!(!out.address_locked, "{i}");
        }
        // 9 more at 62 s: 19 in the last minute; the 10th makes 20.
        for i in 0..9u32 {
            assert!(
                !l.failed(format!("c{i}").as_bytes(), ip(1), t0 + 62 * S)
                    .address_locked
            );
        }
        assert!(l.failed(b"d", ip(1), t0 + 62 * S).address_locked);
    }

    #[test]
    fn ipv4_mapped_addresses_are_the_ipv4_address() {
        let t0 = Instant::now();
        let mut l = Lockout::new();
        let mapped = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped());
        fail_n(&mut l, "charles", mapped, t0, 4);
        assert!(l.failed(b"charles", ip(1), t0).name_locked);
        assert!(l.is_locked(b"charles", mapped, t0));
        assert!(!l.is_locked(b"charles", IpAddr::V6(Ipv6Addr::LOCALHOST), t0));
    }

    #[test]
    fn tables_are_bounded_and_forget_the_oldest_first() {
        let t0 = Instant::now();
        let mut l = Lockout::with_capacity(8, 4);
        // Address 1 locks "old" first; then many other pairs and addresses.
        fail_n(&mut l, "old", ip(1), t0, 4);
        assert!(l.failed(b"old", ip(1), t0).name_locked);
        for i in 0..1000u32 {
            let addr = IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + i));
            l.failed(format!("n{i}").as_bytes(), addr, t0 + S);
            let (pairs, addresses) = l.len();
            assert!(pairs <= 8 && addresses <= 4, "{pairs} {addresses}");
        }
        assert!(!l.is_locked(b"old", ip(1), t0 + S), "the oldest went first");
        assert!(l.pairs.order.len() <= 8 + 4 + 64);
        // The newest are still there.
        let newest = IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + 999));
        fail_n(&mut l, "n999", newest, t0 + S, 3);
        assert!(l.failed(b"n999", newest, t0 + S).name_locked);
    }

    #[test]
    #[ignore = "a measurement: prints the tables' memory at full size"]
    fn memory_at_full_size() {
        fn rss_kib() -> u64 {
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
            line.split_whitespace().nth(1).unwrap().parse().unwrap()
        }
        let before = rss_kib();
        let t0 = Instant::now();
        let mut l = Lockout::new();
        for i in 0..(4 * MAX_PAIRS as u32) {
            let addr = IpAddr::V6(Ipv6Addr::from(u128::from(i % (2 * MAX_ADDRESSES as u32))));
            // 20 per address: every address's window full.
            l.failed(&i.to_le_bytes(), addr, t0 + S * (i / 40_000));
        }
        assert_eq!(l.len(), (MAX_PAIRS, MAX_ADDRESSES));
        eprintln!("lockout tables full: {} KiB", rss_kib() - before);
    }

    #[test]
    fn resets_leave_no_growing_order_queue() {
        let t0 = Instant::now();
        let mut l = Lockout::with_capacity(8, 4);
        for _ in 0..10_000 {
            l.failed(b"charles", ip(1), t0);
            l.succeeded(b"charles", ip(1));
        }
        assert_eq!(l.len().0, 0);
        assert!(l.pairs.order.len() <= 64 + 1, "{}", l.pairs.order.len());
    }
}
