//! The seed 001 queue itself, with no protocol around it: a bounded FIFO
//! with `put`, `peek`, `pop` and `size`, and the one rule for what an item
//! may be. Both front ends drive this same type: the line handler
//! ([`crate::handlers::queue`]) and the gRPC server (`crate::grpc`, with the `grpc` feature).
//!
//! Items are generic over `T: AsRef<[u8]>`: the line protocol keeps the
//! bytes a client sent (`Box<[u8]>`, any bytes but whitespace), gRPC keeps
//! the `string` its messages carry (`String`, always UTF-8). The rules are
//! the same for both because they look at the item's bytes only.
//!
//! Memory: at most `capacity` items of at most [`MAX_ITEM_BYTES`] each.

use std::collections::VecDeque;

/// Longest item, in bytes (SPEC "queue over gRPC": longer gets
/// `INVALID_ARGUMENT`). The line protocol's default `--max-line` (65,536,
/// the command word included) keeps its items under this already.
pub const MAX_ITEM_BYTES: usize = 64 * 1024;

/// Initial allocation at most: a huge capacity must not reserve memory for
/// items that may never come.
const INITIAL_ITEMS: usize = 64;

/// Why an item was refused; the queue is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidItem {
    /// No bytes at all.
    Empty,
    /// Holds ASCII whitespace (space, tab, `\n`, `\r`, form feed): the bytes
    /// that separate words on the line protocol, so an item never could.
    Whitespace,
    /// More than [`MAX_ITEM_BYTES`].
    TooLong,
}

impl InvalidItem {
    /// The reason, as a client is told it (no `error:` prefix).
    pub fn reason(self) -> &'static str {
        match self {
            InvalidItem::Empty => "the item is empty",
            InvalidItem::Whitespace => "the item holds whitespace",
            InvalidItem::TooLong => "the item is longer than 65536 bytes",
        }
    }
}

/// Checks `item` against the queue's one rule: 1 to [`MAX_ITEM_BYTES`]
/// bytes, none of them ASCII whitespace.
///
/// # Errors
/// The first rule the item breaks.
pub fn check_item(item: &[u8]) -> Result<(), InvalidItem> {
    if item.is_empty() {
        Err(InvalidItem::Empty)
    } else if item.len() > MAX_ITEM_BYTES {
        Err(InvalidItem::TooLong)
    } else if item.iter().any(u8::is_ascii_whitespace) {
        Err(InvalidItem::Whitespace)
    } else {
        Ok(())
    }
}

/// One bounded FIFO queue, oldest item first.
#[derive(Debug)]
pub struct BoundedQueue<T> {
    /// Never longer than `capacity`.
    items: VecDeque<T>,
    /// 0 is allowed: every `put` answers `false`.
    capacity: usize,
}

impl<T: AsRef<[u8]>> BoundedQueue<T> {
    pub fn new(capacity: usize) -> Self {
        BoundedQueue {
            items: VecDeque::with_capacity(capacity.min(INITIAL_ITEMS)),
            capacity,
        }
    }

    /// Adds `item` at the end: `Ok(true)` if added, `Ok(false)` if the queue
    /// was full (nothing changes).
    ///
    /// # Errors
    /// An item that breaks [`check_item`]'s rule; nothing changes.
    pub fn put(&mut self, item: T) -> Result<bool, InvalidItem> {
        check_item(item.as_ref())?;
        if self.items.len() < self.capacity {
            self.items.push_back(item);
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// The oldest item, left in place; `None` when empty.
    pub fn peek(&self) -> Option<&T> {
        self.items.front()
    }

    /// Removes and returns the oldest item; `None` when empty.
    pub fn pop(&mut self) -> Option<T> {
        self.items.pop_front()
    }

    /// How many items are queued.
    pub fn size(&self) -> usize {
        self.items.len()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_bounded_and_full_put_changes_nothing() {
        let mut q: BoundedQueue<String> = BoundedQueue::new(2);
        assert_eq!(q.put("a".into()), Ok(true));
        assert_eq!(q.put("b".into()), Ok(true));
        assert_eq!(q.put("c".into()), Ok(false));
        assert_eq!(q.size(), 2);
        assert_eq!(q.peek().map(String::as_str), Some("a"));
        assert_eq!(q.pop().as_deref(), Some("a"));
        assert_eq!(q.pop().as_deref(), Some("b"));
        assert_eq!(q.pop(), None);
        assert_eq!(q.peek(), None);
        assert_eq!(q.size(), 0);
    }

    #[test]
    fn capacity_zero_refuses_every_put() {
        let mut q: BoundedQueue<Box<[u8]>> = BoundedQueue::new(0);
        assert_eq!(q.put(b"x"[..].into()), Ok(false));
        assert_eq!(q.size(), 0);
    }

    #[test]
    fn invalid_items_are_refused_and_change_nothing() {
        let mut q: BoundedQueue<Vec<u8>> = BoundedQueue::new(5);
        q.put(b"keep".to_vec()).unwrap();
        let too_long = vec![b'x'; MAX_ITEM_BYTES + 1];
        let cases: [(&[u8], InvalidItem); 7] = [
            (b"", InvalidItem::Empty),
            (b"a b", InvalidItem::Whitespace),
            (b"a\tb", InvalidItem::Whitespace),
            (b"ab\n", InvalidItem::Whitespace),
            (b"\r", InvalidItem::Whitespace),
            (b"a\x0cb", InvalidItem::Whitespace),
            (&too_long, InvalidItem::TooLong),
        ];
        for (item, why) in cases {
            assert_eq!(q.put(item.to_vec()), Err(why), "{item:?}");
        }
        assert_eq!(q.size(), 1);
        assert_eq!(q.peek().map(Vec::as_slice), Some(&b"keep"[..]));
    }

    #[test]
    fn the_longest_item_and_any_non_space_bytes_are_accepted() {
        let mut q: BoundedQueue<Vec<u8>> = BoundedQueue::new(3);
        assert_eq!(q.put(vec![b'x'; MAX_ITEM_BYTES]), Ok(true));
        assert_eq!(q.put(b"\xff\x00\x0b".to_vec()), Ok(true));
        assert_eq!(q.put("\u{a0}\u{e9}".as_bytes().to_vec()), Ok(true));
    }
}
