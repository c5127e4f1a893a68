//! Datagrams in batches: one `recvmmsg` takes up to a batch of datagrams
//! from a UDP socket, one `sendmmsg` hands it up to a batch, each to its own
//! address, and a run of equal datagrams to one address as one segmented
//! message (UDP GSO: [`segments`]). Both servers' `--udp` sockets and
//! loadgen's `--udp` clients use it; the system calls go through `nix`, so
//! there is no `unsafe` here.
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

use nix::sys::socket::{
    ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg,
};

use super::segments;

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

/// Datagrams one [`Sender::send`] looks at: [`MAX_BATCH`] messages of up
/// to this many datagrams in all.
const MAX_CALL_DATAGRAMS: usize = 256;

/// Headers for one `sendmmsg`, allocated once, and what the kernel has
/// said about segmenting (UDP GSO, see [`segments`]).
pub struct Sender {
    /// For calls without a control message.
    plain: MultiHeaders<SockaddrStorage>,
    /// For calls with one (`UDP_SEGMENT`): its room in every header.
    segmented: MultiHeaders<SockaddrStorage>,
    /// Datagrams at most this long may be sent as one segmented message
    /// (0: none). The kernel's refusals lower it: `EMSGSIZE` (the segment
    /// does not fit the route's MTU) to below that size, anything else
    /// that says it cannot segment to 0.
    max_segment: usize,
    /// The call's datagrams (address and length), its messages and their
    /// addresses: reused from call to call.
    shapes: Vec<(Option<SocketAddr>, usize)>,
    messages: Vec<segments::Message>,
    addrs: Vec<Option<SockaddrStorage>>,
}

impl Default for Sender {
    fn default() -> Self {
        Sender::new()
    }
}

impl Sender {
    /// A sender that groups runs of equal datagrams to one peer.
    pub fn new() -> Self {
        Sender::with_max_segment(segments::MAX_PAYLOAD)
    }

    /// A sender that sends every datagram as its own message.
    pub fn one_by_one() -> Self {
        Sender::with_max_segment(0)
    }

    fn with_max_segment(max_segment: usize) -> Self {
        Sender {
            plain: MultiHeaders::preallocate(MAX_BATCH, None),
            segmented: MultiHeaders::preallocate(MAX_BATCH, Some(nix::cmsg_space!(u16))),
            max_segment,
            shapes: Vec::with_capacity(MAX_CALL_DATAGRAMS),
            messages: Vec::with_capacity(MAX_BATCH),
            addrs: Vec::with_capacity(MAX_BATCH),
        }
    }

    /// One `sendmmsg` of the front of `datagrams`, each to its address
    /// (`None`: a connected socket's peer); runs of equal datagrams to one
    /// peer go as one segmented message each. `Ok(n)`: the first `n`
    /// datagrams went out; fewer than given means the next one would block
    /// or fails, which the next call reports.
    ///
    /// # Errors
    /// The first datagram's error (`WouldBlock` when the socket's buffer is
    /// full).
    pub fn send<'d>(
        &mut self,
        socket: &impl AsRawFd,
        datagrams: impl IntoIterator<Item = (Option<SocketAddr>, &'d [u8])>,
    ) -> io::Result<usize> {
        self.shapes.clear();
        let shapes = &mut self.shapes;
        let iovs: Vec<IoSlice<'d>> = datagrams
            .into_iter()
            .take(MAX_CALL_DATAGRAMS)
            .map(|(to, bytes)| {
                shapes.push((to, bytes.len()));
                IoSlice::new(bytes)
            })
            .collect();
        let size = self.plan(self.max_segment);
        match (size, self.send_planned(socket, &iovs, size)) {
            (Some(size), Err(e)) if e.kind() != io::ErrorKind::WouldBlock => {
                // Whatever the cause, the plain call says it per datagram.
                self.refused(&e, usize::from(size));
                self.plan(0);
                self.send_planned(socket, &iovs, None)
            }
            (_, sent) => sent,
        }
    }

    /// Plans the call's messages from [`Sender::shapes`]; its segment size.
    fn plan(&mut self, max_segment: usize) -> Option<u16> {
        self.messages.clear();
        segments::plan(&self.shapes, max_segment, MAX_BATCH, &mut self.messages)
    }

    /// Lowers [`Sender::max_segment`] after the kernel refused a call
    /// segmented at `size` with `e`.
    fn refused(&mut self, e: &io::Error, size: usize) {
        use nix::errno::Errno;
        match e.raw_os_error().map(Errno::from_raw) {
            Some(Errno::EMSGSIZE) => self.max_segment = self.max_segment.min(size - 1),
            Some(Errno::EINVAL | Errno::EIO | Errno::ENOPROTOOPT | Errno::EOPNOTSUPP) => {
                self.max_segment = 0;
            }
            _ => {}
        }
    }

    /// One `sendmmsg` of the planned messages over `iovs` (with
    /// `UDP_SEGMENT` = `size` if given); the datagrams the messages sent
    /// hold.
    fn send_planned(
        &mut self,
        socket: &impl AsRawFd,
        iovs: &[IoSlice<'_>],
        size: Option<u16>,
    ) -> io::Result<usize> {
        if self.messages.is_empty() {
            return Ok(0);
        }
        let slices: Vec<&[IoSlice<'_>]> = self
            .messages
            .iter()
            .map(|m| &iovs[m.start..m.end])
            .collect();
        self.addrs.clear();
        let shapes = &self.shapes;
        self.addrs.extend(
            self.messages
                .iter()
                .map(|m| shapes[m.start].0.map(SockaddrStorage::from)),
        );
        let sent = match &size {
            None => sendmmsg(
                socket.as_raw_fd(),
                &mut self.plain,
                &slices,
                &self.addrs,
                [],
                MsgFlags::MSG_DONTWAIT,
            )?
            .count(),
            Some(size) => sendmmsg(
                socket.as_raw_fd(),
                &mut self.segmented,
                &slices,
                &self.addrs,
                [ControlMessage::UdpGsoSegments(size)],
                MsgFlags::MSG_DONTWAIT,
            )?
            .count(),
        };
        Ok(self.messages[..sent]
            .iter()
            .map(segments::Message::datagrams)
            .sum())
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
    fn runs_of_equal_datagrams_go_out_segmented_and_arrive_one_by_one() {
        let server = socket("127.0.0.1:0");
        let client = socket("127.0.0.1:0");
        let other = socket("127.0.0.1:0");
        let (to_client, to_other) = (client.local_addr().ok(), other.local_addr().ok());
        // 100 equal to one peer (two segmented messages: 64, 36), a shorter
        // one ending the second run, an empty one, 3 to another peer.
        let mut want: Vec<(Option<SocketAddr>, Vec<u8>)> = (0..100u8)
            .map(|i| (to_client, vec![b'a' + i % 26; 40]))
            .collect();
        want.push((to_client, b"short".to_vec()));
        want.push((to_client, Vec::new()));
        want.extend((0..3u8).map(|i| (to_other, vec![b'0' + i; 40])));
        let datagrams = || want.iter().map(|(to, d)| (*to, d.as_slice()));
        // One call takes them all: 5 messages. One by one, a call is 64.
        assert_eq!(
            Sender::one_by_one()
                .send(&server, datagrams())
                .expect("send"),
            64
        );
        let mut rx = Receiver::new(64, 64);
        let from = server.local_addr().ok();
        let first: Vec<_> = receive(&mut rx, &client, 64, 64);
        assert_eq!(first.len(), 64);
        assert_eq!(Sender::new().send(&server, datagrams()).expect("send"), 105);
        let mut got = receive(&mut rx, &client, 102, 64);
        got.extend(receive(&mut rx, &other, 3, 64));
        let want: Vec<_> = want.iter().map(|(_, d)| (d.clone(), from)).collect();
        assert_eq!(got, want);
        let err = rx.recv(&client, 8).expect_err("nothing more");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn the_kernels_refusals_lower_what_is_segmented() {
        let errno = |e: nix::errno::Errno| io::Error::from_raw_os_error(e as i32);
        let mut tx = Sender::new();
        tx.refused(&errno(nix::errno::Errno::EAGAIN), 1000);
        assert_eq!(
            tx.max_segment,
            segments::MAX_PAYLOAD,
            "not about segmenting"
        );
        tx.refused(&errno(nix::errno::Errno::EMSGSIZE), 2000);
        assert_eq!(tx.max_segment, 1999, "over the route's MTU");
        tx.refused(&errno(nix::errno::Errno::EMSGSIZE), 3000);
        assert_eq!(tx.max_segment, 1999, "never raised");
        tx.refused(&errno(nix::errno::Errno::EIO), 100);
        assert_eq!(tx.max_segment, 0, "the device cannot segment");
    }

    #[test]
    fn nothing_to_send_is_no_call() {
        let server = socket("127.0.0.1:0");
        assert_eq!(Sender::new().send(&server, []).expect("no call"), 0);
    }
}
