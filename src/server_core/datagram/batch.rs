//! Datagrams in batches: one `recvmmsg` takes up to a batch of datagrams
//! from a UDP socket, one `sendmmsg` hands it up to a batch, each to its own
//! address. Both servers' `--udp` sockets and loadgen's `--udp` clients use
//! it; the system calls go through `nix`, so there is no `unsafe` here.
//!
//! Why a short batch means "drained" (the servers rely on it to stay at the
//! syscall floor in ping-pong): on a non-blocking socket the kernel's
//! `recvmmsg` receives until the batch is full or the queue is empty
//! (`EAGAIN`, which it swallows once it has one datagram). So fewer
//! datagrams than asked for means the queue was empty a moment ago, and a
//! datagram queued since then wakes the socket's waiters again: Linux's
//! epoll queues an edge-triggered (mio) event on every arrival, not only
//! when the queue goes from empty to non-empty. Asking once more just to
//! hear `EAGAIN` would be one wasted call per wakeup. (The other way a
//! batch ends early is an error after some datagrams, which the kernel
//! keeps for the next call; a UDP socket that is not connected hears of no
//! ICMP errors without `IP_RECVERR`, which nothing here sets.)
//!
//! The headers are reused from call to call, and with them the address
//! length the kernel wrote back into each: that fits, because all senders
//! to one socket come in its own family's size (an IPv6 socket reports
//! IPv4 peers as mapped IPv6 addresses).

use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};

/// Datagrams per `recvmmsg` or `sendmmsg` at most.
pub const MAX_BATCH: usize = 64;
/// The servers' receive batch: with the default `--max-line` a slot is
/// 64 KiB, so 2 MiB of buffers (touched only as far as datagrams fill
/// them). Their send batches are [`MAX_BATCH`]: a [`Sender`] has no buffers
/// of its own, the replies are where they were queued.
pub const SERVER_RECV_BATCH: usize = 32;

/// One datagram received: its length and sender.
#[derive(Debug, Clone, Copy)]
struct Got {
    len: usize,
    from: Option<SocketAddr>,
}

/// Buffers for one `recvmmsg`, allocated once.
pub struct Receiver {
    /// `slots` buffers of `slot_len` bytes, one after the other.
    bufs: Vec<u8>,
    /// One datagram's room: a longer one is cut to this (callers size it so
    /// that a cut datagram is one they refuse anyway).
    slot_len: usize,
    /// The kernel's headers (and the senders' addresses), reused.
    headers: MultiHeaders<SockaddrStorage>,
    /// What the last [`Receiver::recv`] got, slot by slot.
    got: Vec<Got>,
    /// Datagrams one call can take.
    slots: usize,
}

/// A receiver with no room: a placeholder (it allocates nothing) while a
/// batch taken out of its owner is handled; it receives nothing.
impl Default for Receiver {
    fn default() -> Self {
        Receiver {
            bufs: Vec::new(),
            slot_len: 0,
            headers: MultiHeaders::preallocate(0, None),
            got: Vec::new(),
            slots: 0,
        }
    }
}

impl Receiver {
    /// Room for `slots` (at most [`MAX_BATCH`]) datagrams of up to
    /// `slot_len` bytes each.
    pub fn new(slots: usize, slot_len: usize) -> Self {
        let slots = slots.clamp(1, MAX_BATCH);
        Receiver {
            bufs: vec![0; slots * slot_len],
            slot_len,
            headers: MultiHeaders::preallocate(slots, None),
            got: Vec::with_capacity(slots),
            slots,
        }
    }

    /// Datagrams one call can take.
    pub fn capacity(&self) -> usize {
        self.slots
    }

    /// One `recvmmsg` of up to `max` datagrams (at most
    /// [`Receiver::capacity`]). `Ok(n)`: `n >= 1` datagrams, read with
    /// [`Receiver::get`]; fewer than `max` means the socket was empty (see
    /// the module doc). `WouldBlock` when there was none. (`Ok(0)` from
    /// the [`Default`] placeholder only.)
    ///
    /// # Errors
    /// The socket's error, as `recvmmsg` reports it.
    pub fn recv(&mut self, socket: &impl AsRawFd, max: usize) -> io::Result<usize> {
        self.got.clear();
        if self.capacity() == 0 {
            return Ok(0);
        }
        let max = max.clamp(1, self.capacity());
        let mut chunks = self.bufs.chunks_mut(self.slot_len);
        let mut iovs: [[IoSliceMut<'_>; 1]; MAX_BATCH] =
            std::array::from_fn(|_| [IoSliceMut::new(chunks.next().unwrap_or_default())]);
        let received = recvmmsg(
            socket.as_raw_fd(),
            &mut self.headers,
            iovs.iter_mut().take(max),
            MsgFlags::MSG_DONTWAIT,
            None,
        )?;
        for message in received {
            self.got.push(Got {
                len: message.bytes,
                from: message.address.and_then(|a| socket_addr(&a)),
            });
        }
        Ok(self.got.len())
    }

    /// Datagram `i` of the last [`Receiver::recv`]: its bytes (cut to the
    /// slot's length) and its sender (`None` only for a family other than
    /// IPv4 and IPv6, which a UDP socket does not deliver).
    ///
    /// # Panics
    /// If `i` is not below what the last `recv` returned.
    pub fn get(&self, i: usize) -> (&[u8], Option<SocketAddr>) {
        let got = self.got[i];
        let start = i * self.slot_len;
        (&self.bufs[start..start + got.len], got.from)
    }
}

/// Headers for one `sendmmsg`, allocated once.
pub struct Sender {
    headers: MultiHeaders<SockaddrStorage>,
}

impl Default for Sender {
    fn default() -> Self {
        Sender::new()
    }
}

impl Sender {
    pub fn new() -> Self {
        Sender {
            headers: MultiHeaders::preallocate(MAX_BATCH, None),
        }
    }

    /// One `sendmmsg` of the first [`MAX_BATCH`] of `datagrams`, each to
    /// its address (`None`: a connected socket's peer). `Ok(n)`: the first
    /// `n` went out; fewer than given means the next one would block or
    /// fails, which the next call reports.
    ///
    /// # Errors
    /// The first datagram's error (`WouldBlock` when the socket's buffer is
    /// full).
    pub fn send<'d>(
        &mut self,
        socket: &impl AsRawFd,
        datagrams: impl IntoIterator<Item = (Option<SocketAddr>, &'d [u8])>,
    ) -> io::Result<usize> {
        let mut iovs: [[IoSlice<'d>; 1]; MAX_BATCH] = [[IoSlice::new(&[])]; MAX_BATCH];
        let mut addrs: [Option<SockaddrStorage>; MAX_BATCH] = [None; MAX_BATCH];
        let mut n = 0;
        for ((to, bytes), (iov, addr)) in datagrams
            .into_iter()
            .zip(iovs.iter_mut().zip(addrs.iter_mut()))
        {
            *iov = [IoSlice::new(bytes)];
            *addr = to.map(SockaddrStorage::from);
            n += 1;
        }
        if n == 0 {
            return Ok(0);
        }
        let sent = sendmmsg(
            socket.as_raw_fd(),
            &mut self.headers,
            &iovs[..n],
            &addrs[..n],
            [],
            MsgFlags::MSG_DONTWAIT,
        )?;
        Ok(sent.count())
    }
}

/// A kernel socket address as std's, for IPv4 and IPv6.
fn socket_addr(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    addr.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6((*v6).into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::Duration;

    /// A socket on `addr`'s loopback that blocks up to 10 s in `peek`
    /// (`recv` here never blocks: it passes `MSG_DONTWAIT`).
    fn socket(addr: &str) -> UdpSocket {
        let s = UdpSocket::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s
    }

    /// Receives until `want` datagrams came, each call taking at most
    /// `max`; what came, in order. Waits in `peek` between calls: loopback
    /// delivery may lag the send when the kernel defers its softirq work.
    fn receive(
        rx: &mut Receiver,
        socket: &UdpSocket,
        want: usize,
        max: usize,
    ) -> Vec<(Vec<u8>, Option<SocketAddr>)> {
        let mut got = Vec::new();
        while got.len() < want {
            socket.peek(&mut [0; 1]).expect("a datagram within 10 s");
            let n = rx.recv(socket, max).expect("recvmmsg");
            assert!(n >= 1 && n <= max.min(rx.capacity()), "{n}");
            got.extend((0..n).map(|i| {
                let (bytes, from) = rx.get(i);
                (bytes.to_vec(), from)
            }));
        }
        got
    }

    #[test]
    fn a_batch_goes_out_in_one_call_each_to_its_address_and_comes_back_in_order() {
        let server = socket("127.0.0.1:0");
        let client = socket("127.0.0.1:0");
        let other = socket("127.0.0.1:0");
        let to_client = client.local_addr().ok();
        let to_other = other.local_addr().ok();
        let sent = Sender::new()
            .send(
                &server,
                [
                    (to_client, &b"one"[..]),
                    (to_other, b"two"),
                    (to_client, b""),
                    (to_client, b"four"),
                ],
            )
            .expect("sendmmsg");
        assert_eq!(sent, 4);
        let mut rx = Receiver::new(8, 16);
        let from = server.local_addr().ok();
        assert_eq!(
            receive(&mut rx, &client, 3, 8),
            vec![
                (b"one".to_vec(), from),
                (vec![], from),
                (b"four".to_vec(), from)
            ]
        );
        let err = rx.recv(&client, 8).expect_err("empty");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(
            receive(&mut rx, &other, 1, 8),
            vec![(b"two".to_vec(), from)]
        );
    }

    #[test]
    fn a_call_takes_at_most_its_batch_and_long_datagrams_are_cut_to_the_slot() {
        let server = socket("127.0.0.1:0");
        let client = socket("127.0.0.1:0");
        let to = client.local_addr().ok();
        let long: Vec<Vec<u8>> = (0..5u8).map(|i| vec![b'a' + i; 40]).collect();
        let datagrams = long.iter().map(|d| (to, d.as_slice()));
        assert_eq!(Sender::new().send(&server, datagrams).expect("send"), 5);
        let mut rx = Receiver::new(3, 10);
        assert_eq!(rx.capacity(), 3);
        let got = receive(&mut rx, &client, 5, 100);
        let cut: Vec<Vec<u8>> = got.into_iter().map(|(bytes, _)| bytes).collect();
        let want: Vec<Vec<u8>> = long.iter().map(|d| d[..10].to_vec()).collect();
        assert_eq!(cut, want);
    }

    #[test]
    fn a_connected_socket_sends_without_addresses_and_ipv6_senders_are_kept() {
        // Fails, saying so, where there is no IPv6 loopback.
        let server = socket("[::1]:0");
        let client = socket("[::1]:0");
        client
            .connect(server.local_addr().expect("addr"))
            .expect("connect");
        let sent = Sender::new()
            .send(&client, [(None, &b"a"[..]), (None, b"b")])
            .expect("send");
        assert_eq!(sent, 2);
        let mut rx = Receiver::new(4, 8);
        let from = client.local_addr().ok();
        assert_eq!(
            receive(&mut rx, &server, 2, 4),
            vec![(b"a".to_vec(), from), (b"b".to_vec(), from)]
        );
    }

    #[test]
    fn nothing_to_send_is_no_call() {
        let server = socket("127.0.0.1:0");
        assert_eq!(Sender::new().send(&server, []).expect("no call"), 0);
    }
}
