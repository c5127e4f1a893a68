//! A connection's queued output: bytes not yet accepted by the kernel.
//!
//! Small replies are appended to one owned chunk (kept and reused once sent,
//! so a steady stream of replies allocates nothing); a shared broadcast
//! buffer is queued by reference, so N recipients hold one copy. Writes go out
//! with `write_vectored`, so a queue of many chunks costs one syscall.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::sync::Arc;

/// Owned chunks grow to this size before a new one is started.
const CHUNK_BYTES: usize = 64 * 1024;
/// A shared buffer smaller than this is copied: cheaper than a chunk of its own.
const COPY_SHARED_BELOW_BYTES: usize = 512;
/// Slices handed to one `writev` call (Linux allows 1024).
const MAX_IOVECS: usize = 64;
/// An emptied owned chunk with more capacity than this is freed, not kept.
const KEEP_CAPACITY_BYTES: usize = 16 * 1024;

#[derive(Debug)]
enum Chunk {
    Owned(Vec<u8>),
    Shared(Arc<[u8]>),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Owned(v) => v,
            Chunk::Shared(s) => s,
        }
    }
}

/// How a flush ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flushed {
    /// Everything queued was written.
    All,
    /// The socket would block: wait for WRITABLE.
    Blocked,
    /// The byte budget for this turn is spent; bytes remain and the socket
    /// may still take them (fairness: serve other clients first).
    Budget,
}

/// See the module doc.
#[derive(Debug, Default)]
pub struct OutBuf {
    chunks: VecDeque<Chunk>,
    /// Bytes of the front chunk already written; advanced instead of
    /// shifting memory on each partial write.
    sent: usize,
    /// Bytes queued and not yet written, for `--max-pending`.
    pending: usize,
    /// An emptied owned chunk kept for reuse.
    spare: Option<Vec<u8>>,
}

impl OutBuf {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes queued and not yet written.
    pub fn pending(&self) -> usize {
        self.pending
    }

    pub fn is_empty(&self) -> bool {
        self.pending == 0
    }

    /// Queues a copy of `bytes`.
    pub fn push_slice(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.pending += bytes.len();
        if let Some(Chunk::Owned(tail)) = self.chunks.back_mut()
            && tail.len() + bytes.len() <= CHUNK_BYTES.max(tail.capacity())
        {
            tail.extend_from_slice(bytes);
            return;
        }
        let mut chunk = self.spare.take().unwrap_or_default();
        chunk.extend_from_slice(bytes);
        self.chunks.push_back(Chunk::Owned(chunk));
    }

    /// Queues a shared buffer without copying it (unless it is tiny).
    pub fn push_shared(&mut self, bytes: &Arc<[u8]>) {
        if bytes.len() < COPY_SHARED_BELOW_BYTES {
            self.push_slice(bytes);
        } else {
            self.pending += bytes.len();
            self.chunks.push_back(Chunk::Shared(Arc::clone(bytes)));
        }
    }

    /// Writes queued bytes to `w` until they are all written, `w` would
    /// block, or about `budget` bytes went out.
    ///
    /// # Errors
    /// Any write error other than `WouldBlock`/`Interrupted`; a write of 0
    /// bytes is `WriteZero` (the peer is gone).
    pub fn flush_to<W: Write>(&mut self, w: &mut W, budget: usize) -> io::Result<Flushed> {
        let mut written_total = 0;
        while self.pending > 0 {
            if written_total >= budget {
                return Ok(Flushed::Budget);
            }
            let result = if self.chunks.len() == 1 {
                w.write(&self.chunks[0].bytes()[self.sent..])
            } else {
                let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
                let mut n = 0;
                for (i, chunk) in self.chunks.iter().take(MAX_IOVECS).enumerate() {
                    let bytes = chunk.bytes();
                    slices[n] = IoSlice::new(if i == 0 { &bytes[self.sent..] } else { bytes });
                    n += 1;
                }
                w.write_vectored(&slices[..n])
            };
            match result {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    written_total += n;
                    self.advance(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flushed::Blocked),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Flushed::All)
    }

    /// Drops everything queued (the connection is gone).
    pub fn clear(&mut self) {
        self.chunks.clear();
        self.sent = 0;
        self.pending = 0;
    }

    /// Frees every allocation, for a connection going idle.
    pub fn shrink(&mut self) {
        if self.is_empty() {
            self.chunks = VecDeque::new();
            self.spare = None;
        }
    }

    fn advance(&mut self, mut n: usize) {
        self.pending -= n;
        while n > 0 {
            let front_len = self.chunks[0].bytes().len() - self.sent;
            if n < front_len {
                self.sent += n;
                return;
            }
            n -= front_len;
            self.sent = 0;
            if let Some(Chunk::Owned(mut v)) = self.chunks.pop_front()
                && v.capacity() <= KEEP_CAPACITY_BYTES
            {
                v.clear();
                self.spare = Some(v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_io::Zero;

    /// A writer that takes at most `step` bytes per call and blocks after
    /// `limit` bytes in all.
    struct Trickle {
        got: Vec<u8>,
        step: usize,
        limit: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.got.len() >= self.limit {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.step).min(self.limit - self.got.len());
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn partial_writes_resume_where_they_stopped() {
        let mut out = OutBuf::new();
        let shared: Arc<[u8]> = Arc::from(vec![b's'; 1000]);
        out.push_slice(b"hello ");
        out.push_shared(&shared);
        out.push_slice(b" world\n");
        let expected = [&b"hello "[..], &shared[..], b" world\n"].concat();
        assert_eq!(out.pending(), expected.len());

        let mut w = Trickle {
            got: Vec::new(),
            step: 7,
            limit: 500,
        };
        assert_eq!(out.flush_to(&mut w, usize::MAX).unwrap(), Flushed::Blocked);
        assert_eq!(out.pending(), expected.len() - 500);
        w.limit = usize::MAX;
        assert_eq!(out.flush_to(&mut w, usize::MAX).unwrap(), Flushed::All);
        assert_eq!(w.got, expected);
        assert!(out.is_empty());
    }

    #[test]
    fn budget_stops_a_flush_early() {
        let mut out = OutBuf::new();
        out.push_slice(&[1; 100]);
        let mut w = Trickle {
            got: Vec::new(),
            step: 10,
            limit: usize::MAX,
        };
        assert_eq!(out.flush_to(&mut w, 30).unwrap(), Flushed::Budget);
        assert_eq!(out.pending(), 70);
    }

    #[test]
    fn a_zero_write_means_the_peer_is_gone() {
        let mut out = OutBuf::new();
        out.push_slice(b"x");
        let err = out.flush_to(&mut Zero, usize::MAX).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WriteZero);
    }

    #[test]
    fn a_shared_buffer_is_not_copied() {
        let shared: Arc<[u8]> = Arc::from(vec![b'x'; 4096]);
        let mut bufs: Vec<OutBuf> = (0..10).map(|_| OutBuf::new()).collect();
        for b in &mut bufs {
            b.push_shared(&shared);
        }
        assert_eq!(Arc::strong_count(&shared), 11);
    }

    #[test]
    fn replies_reuse_one_allocation() {
        let mut out = OutBuf::new();
        let mut w = Trickle {
            got: Vec::new(),
            step: usize::MAX,
            limit: usize::MAX,
        };
        out.push_slice(b"first\n");
        out.flush_to(&mut w, usize::MAX).unwrap();
        let spare_ptr = out.spare.as_ref().map(|v| v.as_ptr());
        out.push_slice(b"second\n");
        match out.chunks.front() {
            Some(Chunk::Owned(v)) => assert_eq!(Some(v.as_ptr()), spare_ptr),
            other => panic!("unexpected {other:?}"),
        }
    }
}
