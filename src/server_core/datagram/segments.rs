//! Which datagrams of a send batch go out as one segmented message (UDP
//! GSO, `UDP_SEGMENT`): the pure plan behind [`super::batch::Sender`].
//!
//! A run of datagrams to one address, all `size` bytes long but the last
//! (which may be shorter, never empty), can leave as one message whose
//! payload the kernel cuts into those datagrams again, every
//! `size` bytes. The receiver sees exactly the datagrams we queued, in
//! order; what is saved is the sender's trip through the UDP and IP layers
//! (and, on loopback, the receiving side's), once per run instead of once
//! per datagram.
//!
//! One `sendmmsg` carries one control message for all its messages, so a
//! call has one segment size: it takes runs of that size, and single
//! datagrams no longer than it (a message no longer than the segment size
//! is sent as it is). A run of another size waits for the next call.

use std::net::SocketAddr;

/// Datagrams in one segmented message at most (the kernel's
/// `UDP_MAX_SEGMENTS` is 64 on older kernels, 128 on newer).
pub const MAX_SEGMENTS: usize = 64;
/// A segmented message's payload at most: one IPv4 datagram's worth, the
/// kernel's limit for the whole message before it is cut.
pub const MAX_PAYLOAD: usize = 65_507;

/// One message of a call: datagrams `start..end` of the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message {
    pub start: usize,
    pub end: usize,
}

impl Message {
    pub fn datagrams(&self) -> usize {
        self.end - self.start
    }
}

/// Splits the front of `batch` (each datagram's address and length) into
/// at most `max_messages` messages for one call, appended to `out`, runs
/// grouped where `max_segment` allows (0: never). Returns the call's
/// segment size (`None`: no run, send without the control message).
pub fn plan(
    batch: &[(Option<SocketAddr>, usize)],
    max_segment: usize,
    max_messages: usize,
    out: &mut Vec<Message>,
) -> Option<u16> {
    let mut size: Option<usize> = None;
    let mut longest_single = 0;
    let mut i = 0;
    while i < batch.len() && out.len() < max_messages {
        let end = run_end(batch, i, max_segment);
        let len = batch[i].1;
        if end - i >= 2 {
            match size {
                Some(s) if s != len => break,
                None if longest_single > len => break,
                _ => size = Some(len),
            }
        } else {
            if size.is_some_and(|s| len > s) {
                break;
            }
            longest_single = longest_single.max(len);
        }
        out.push(Message { start: i, end });
        i = end;
    }
    // `size` came from a run no longer than `MAX_PAYLOAD`, so it fits.
    size.and_then(|s| u16::try_from(s).ok())
}

/// Where the run starting at `i` ends (`i + 1`: a single datagram).
fn run_end(batch: &[(Option<SocketAddr>, usize)], i: usize, max_segment: usize) -> usize {
    let (to, size) = batch[i];
    if size == 0 || size > max_segment {
        return i + 1;
    }
    let mut end = i + 1;
    let mut total = size;
    while end < batch.len() && end - i < MAX_SEGMENTS {
        let (next_to, len) = batch[end];
        if next_to != to || len == 0 || len > size || total + len > MAX_PAYLOAD {
            break;
        }
        total += len;
        end += 1;
        if len < size {
            break; // a shorter one ends its run
        }
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> Option<SocketAddr> {
        Some(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    /// The plan as (segment size, [datagram count per message]).
    fn shape(
        batch: &[(Option<SocketAddr>, &[u8])],
        max_segment: usize,
    ) -> (Option<u16>, Vec<usize>) {
        let lens: Vec<_> = batch.iter().map(|(to, d)| (*to, d.len())).collect();
        let mut out = Vec::new();
        let size = plan(&lens, max_segment, 64, &mut out);
        let mut at = 0;
        for m in &out {
            assert_eq!(m.start, at, "messages cover the batch in order");
            at = m.end;
        }
        (size, out.iter().map(Message::datagrams).collect())
    }

    #[test]
    fn equal_datagrams_to_one_peer_are_one_message_and_a_shorter_one_ends_it() {
        let b = [
            (addr(1), &b"abc"[..]),
            (addr(1), b"def"),
            (addr(1), b"gh"),
            (addr(1), b"ijk"),
        ];
        assert_eq!(shape(&b, 1500), (Some(3), vec![3, 1]));
    }

    #[test]
    fn peers_sizes_and_empty_datagrams_split_runs() {
        let b = [
            (addr(1), &b"aa"[..]),
            (addr(1), b"bb"),
            (addr(2), b"cc"),
            (addr(2), b"dd"),
            (addr(2), b""),
            (addr(2), b"e"),
        ];
        assert_eq!(shape(&b, 1500), (Some(2), vec![2, 2, 1, 1]));
    }

    #[test]
    fn a_call_has_one_segment_size_and_singles_no_longer_than_it() {
        // A run of 3-byte datagrams, then one of 2-byte ones: next call.
        let b = [
            (addr(1), &b"abc"[..]),
            (addr(1), b"abc"),
            (addr(2), b"ab"),
            (addr(2), b"ab"),
        ];
        assert_eq!(shape(&b, 1500), (Some(3), vec![2]));
        assert_eq!(shape(&b[2..], 1500), (Some(2), vec![2]));
        // A single longer than the call's size waits too.
        let b = [(addr(1), &b"ab"[..]), (addr(1), b"ab"), (addr(2), b"abc")];
        assert_eq!(shape(&b, 1500), (Some(2), vec![2]));
        // A run longer than the singles before it joins them.
        let b = [(addr(2), &b"a"[..]), (addr(1), b"ab"), (addr(1), b"ab")];
        assert_eq!(shape(&b, 1500), (Some(2), vec![1, 2]));
        // A run shorter than a single before it does not.
        let b = [(addr(2), &b"abc"[..]), (addr(1), b"ab"), (addr(1), b"ab")];
        assert_eq!(shape(&b, 1500), (None, vec![1]));
    }

    #[test]
    fn runs_stop_at_the_segment_and_payload_limits() {
        let d = [7u8; 1000];
        let b: Vec<_> = (0..70).map(|_| (addr(1), &d[..])).collect();
        // At most MAX_SEGMENTS datagrams a message: 64, then 6.
        assert_eq!(shape(&b, 1500), (Some(1000), vec![64, 6]));
        let big = [7u8; 30_000];
        let b: Vec<_> = (0..3).map(|_| (addr(1), &big[..])).collect();
        assert_eq!(shape(&b, 65_507), (Some(30_000), vec![2, 1]));
    }

    #[test]
    fn no_grouping_past_max_segment_and_none_at_zero() {
        let b = [(addr(1), &b"abc"[..]), (addr(1), b"abc")];
        assert_eq!(shape(&b, 2), (None, vec![1, 1]));
        assert_eq!(shape(&b, 0), (None, vec![1, 1]));
        assert_eq!(shape(&[], 1500), (None, vec![]));
    }
}
