use super::*;

const S: Duration = Duration::from_secs(1);

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn ids() -> impl FnMut() -> ClientId {
    let mut next = 0;
    move || {
        next += 1;
        ClientId(next)
    }
}

#[test]
fn a_peer_is_a_client_until_it_is_silent_for_the_idle_time() {
    let t0 = Instant::now();
    let mut peers = Peers::new(10 * S, 100);
    let mut next = ids();
    assert_eq!(peers.admit(addr(1), t0, &mut next), Admit::New(ClientId(1)));
    assert_eq!(
        peers.admit(addr(2), t0 + S, &mut next),
        Admit::New(ClientId(2))
    );
    // Peer 1 speaks again: its deadline moves, lazily.
    assert_eq!(
        peers.admit(addr(1), t0 + 5 * S, &mut next),
        Admit::Known(ClientId(1))
    );
    assert_eq!(peers.addr(ClientId(2)), Some(addr(2)));
    assert_eq!(peers.poll_timeout(), Some(t0 + 10 * S));
    assert_eq!(peers.poll_expired(t0 + 10 * S), None, "1 was seen at 5 s");
    assert_eq!(peers.poll_timeout(), Some(t0 + 11 * S));
    assert_eq!(peers.poll_expired(t0 + 11 * S), Some(ClientId(2)));
    assert_eq!(peers.poll_expired(t0 + 11 * S), None);
    assert_eq!(peers.len(), 1);
    assert_eq!(peers.poll_expired(t0 + 15 * S), Some(ClientId(1)));
    assert!(peers.is_empty());
    assert_eq!(peers.poll_timeout(), None);
    // Back after being forgotten: a new client with a new id.
    assert_eq!(
        peers.admit(addr(1), t0 + 16 * S, &mut next),
        Admit::New(ClientId(3))
    );
}

#[test]
fn peers_due_in_one_late_wakeup_expire_in_the_order_they_fell_silent() {
    let t0 = Instant::now();
    let ms = Duration::from_millis(1);
    let mut peers = Peers::new(10 * S, 100);
    let mut next = ids();
    for port in 1..=3 {
        peers.admit(addr(port), t0 + ms * u32::from(port), &mut next);
    }
    // 1 and 2 speak again after 3's first datagram.
    peers.admit(addr(1), t0 + 5 * ms, &mut next);
    peers.admit(addr(2), t0 + 6 * ms, &mut next);
    let late = t0 + 11 * S;
    let order: Vec<u64> = std::iter::from_fn(|| peers.poll_expired(late))
        .map(|id| id.0)
        .collect();
    assert_eq!(order, vec![3, 1, 2]);
}

#[test]
fn max_udp_peers_refuses_new_peers_only() {
    let t0 = Instant::now();
    let mut peers = Peers::new(S, 2);
    let mut next = ids();
    peers.admit(addr(1), t0, &mut next);
    peers.admit(addr(2), t0, &mut next);
    assert!(peers.is_full());
    assert_eq!(
        peers.admit(addr(1), t0, || unreachable!()),
        Admit::Known(ClientId(1))
    );
    assert_eq!(peers.admit(addr(3), t0, || unreachable!()), Admit::Refused);
    assert_eq!(peers.len(), 2);
    // A place freed is a place again.
    assert!(peers.forget(ClientId(2)));
    assert_eq!(peers.admit(addr(3), t0, &mut next), Admit::New(ClientId(3)));
}

#[test]
fn forgotten_peers_leave_no_live_entry_and_the_heap_stays_bounded() {
    let t0 = Instant::now();
    let mut peers = Peers::new(60 * S, 100);
    let mut next = ids();
    for port in 0..10_000u16 {
        let Admit::New(id) = peers.admit(addr(port), t0, &mut next) else {
            panic!("new peer");
        };
        assert!(peers.forget(id));
        assert!(!peers.forget(id));
    }
    assert!(peers.is_empty());
    assert!(peers.expiry.len() <= 64 + 1, "{}", peers.expiry.len());
    assert_eq!(peers.poll_expired(t0 + 61 * S), None);
}

#[test]
fn drain_forgets_everyone_in_id_order() {
    let t0 = Instant::now();
    let mut peers = Peers::new(S, 100);
    let mut next = ids();
    for port in [9, 3, 7] {
        peers.admit(addr(port), t0, &mut next);
    }
    assert_eq!(peers.drain(), vec![ClientId(1), ClientId(2), ClientId(3)]);
    assert!(peers.is_empty() && peers.poll_timeout().is_none());
}

#[test]
fn lines_lose_one_terminator_each_way_echo_keeps_everything() {
    assert_eq!(message(b"b\r\n", true), b"b");
    assert_eq!(message(b"b\n\n", true), b"b\n");
    assert_eq!(message(b"b", true), b"b");
    assert_eq!(message(b"hi\r\n", false), b"hi\r\n");
    assert_eq!(
        reply(b"\n\tPlease give the username and pin number.\n\n", true, 1),
        b"\n\tPlease give the username and pin number.\n"
    );
    assert_eq!(reply(b"True\n", true, 4), b"True");
    assert_eq!(reply(b"hi\n", false, 3), b"hi\n");
}

#[test]
fn no_reply_is_over_512_bytes_or_three_times_its_request() {
    assert_eq!(reply_cap(0), 512);
    assert_eq!(reply_cap(170), 512);
    assert_eq!(reply_cap(171), 513);
    assert_eq!(reply_cap(usize::MAX), usize::MAX);
    let item = vec![b'x'; 65_000];
    // A 4-byte `peek` answered with a 65,000-byte item: refused.
    assert_eq!(reply(&item, true, 4), REPLY_TOO_LARGE);
    // 512 bytes whatever the request; the line's `\n` is not counted.
    let mut line = vec![b'x'; 512];
    line.push(b'\n');
    assert_eq!(reply(&line, true, 1), &line[..512]);
    assert_eq!(reply(&line, false, 1), REPLY_TOO_LARGE);
    // Three times the request, exactly.
    assert_eq!(reply(&item[..3000], false, 1000), &item[..3000]);
    assert_eq!(reply(&item[..3001], false, 1000), REPLY_TOO_LARGE);
    assert!(REPLY_TOO_LARGE.len() <= MIN_REPLY_CAP);
}

#[test]
fn max_line_counts_without_the_terminator_and_the_buffer_never_hides_a_long_one() {
    assert!(!is_too_long(b"1234\r\n", 4));
    assert!(is_too_long(b"12345", 4));
    let len = recv_buffer_len(4);
    assert_eq!(len, 7);
    // A datagram cut to the buffer's length is too long, whatever its end.
    assert!(is_too_long(b"12345\r\n", 4) && is_too_long(&b"1234\r\n\n"[..len], 4));
    assert_eq!(recv_buffer_len(usize::MAX), MAX_DATAGRAM_BYTES);
}

#[test]
fn replies_are_bounded_sent_in_order_in_batches_and_dropped_on_errors() {
    let mut q = Replies::new();
    let big = vec![0u8; 1024 * 1024];
    let mut taken = 0;
    while q.push(addr(1), &big) {
        taken += 1;
    }
    assert_eq!(taken, 3, "4 MiB holds three 1 MiB replies with overhead");
    assert_eq!(q.take_dropped(), (1, None));
    assert!(q.push(addr(2), b"small"));
    let mut sent = Vec::new();
    let mut calls = 0;
    let flushed = q.flush(|pending| {
        calls += 1;
        match calls {
            1 => Err(io::ErrorKind::Interrupted.into()),
            // Takes two of the four (the socket's buffer filled up).
            2 => {
                sent.extend(pending.take(2).map(|(to, b)| (b.len(), to)));
                Ok(2)
            }
            3 => Err(io::Error::other("no route")),
            _ => Err(io::ErrorKind::WouldBlock.into()),
        }
    });
    assert_eq!(flushed, Drained::Blocked);
    assert_eq!(sent, vec![(1024 * 1024, Some(addr(1))); 2]);
    assert_eq!(q.take_dropped(), (1, Some(io::ErrorKind::Other)));
    assert!(q.push(addr(3), &big), "room again");
    let mut order = Vec::new();
    let flushed = q.flush(|pending| {
        let batch: Vec<_> = pending.map(|(to, b)| (to, b.len())).collect();
        order.extend(batch.iter().copied());
        Ok(batch.len())
    });
    assert_eq!(flushed, Drained::Empty);
    assert_eq!(
        order,
        vec![(Some(addr(2)), 5), (Some(addr(3)), 1024 * 1024)]
    );
    assert!(q.is_empty());
    assert_eq!(q.charged, 0);
}

#[test]
fn the_throttle_prints_once_per_period_and_counts_the_rest() {
    let t0 = Instant::now();
    let mut t = Throttle::default();
    assert_eq!(t.hit(t0), Some(0));
    assert_eq!(t.hit(t0), None);
    assert_eq!(t.hit(t0 + S / 2), None);
    assert_eq!(t.hit(t0 + S), Some(2));
    assert_eq!(t.hit(t0 + 3 * S), Some(0));
}
