//! Cutting a byte stream into lines, with bounded memory.
//!
//! The framer keeps only the bytes of the line not finished yet. Complete
//! lines are handed out straight from the buffer the caller just read into,
//! so a connection that is not in the middle of a line holds no buffer at all,
//! and a line is copied only when it straddles two reads.

use std::ops::ControlFlow;
use std::time::Duration;

/// SPEC: interactive handlers treat bytes that sat this long with no newline
/// after them as a complete message.
pub const IDLE_FLUSH: Duration = Duration::from_millis(50);

/// A buffer with more spare capacity than this is given back once its line is
/// done, so one huge line does not pin memory for the connection's life.
const KEEP_CAPACITY_BYTES: usize = 16 * 1024;

/// A line (complete or not) passed `--max-line`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineTooLong;

/// Per-connection framing state. See the module doc.
#[derive(Debug, Default)]
pub struct LineFramer {
    /// Bytes after the last `\n` seen: the start of an unfinished line. At
    /// most `max_line + 1` bytes (room for a `\r` awaiting its `\n`).
    partial: Vec<u8>,
}

impl LineFramer {
    pub fn new() -> Self {
        Self::default()
    }

    /// True while bytes of an unfinished line are held.
    pub fn has_partial(&self) -> bool {
        !self.partial.is_empty()
    }

    /// Bytes of the unfinished line held.
    pub fn partial_len(&self) -> usize {
        self.partial.len()
    }

    /// Feeds bytes just read. Calls `emit` with every line they complete, in
    /// order and with its terminator (`\n` or `\r\n`); `emit` returns
    /// `Break` to drop the rest (the connection is closing).
    ///
    /// # Errors
    /// [`LineTooLong`] as soon as a line's content (terminator not counted)
    /// passes `max_line`, finished or not. The lines before it were emitted;
    /// the framer is then empty and the rest of `data` is dropped.
    pub fn push(
        &mut self,
        data: &[u8],
        max_line: usize,
        mut emit: impl FnMut(&[u8]) -> ControlFlow<()>,
    ) -> Result<(), LineTooLong> {
        let mut rest = data;
        if !self.partial.is_empty() {
            match memchr::memchr(b'\n', rest) {
                Some(i) => {
                    let (head, tail) = rest.split_at(i + 1);
                    rest = tail;
                    if self.partial.len() + head.len() > max_line + 2 {
                        return Err(self.too_long());
                    }
                    self.partial.extend_from_slice(head);
                    if content_len(&self.partial) > max_line {
                        return Err(self.too_long());
                    }
                    let flow = emit(&self.partial);
                    self.reset();
                    if flow.is_break() {
                        return Ok(());
                    }
                }
                None => {
                    if !partial_fits(
                        self.partial.len() + rest.len(),
                        self.partial.last(),
                        rest,
                        max_line,
                    ) {
                        return Err(self.too_long());
                    }
                    self.partial.extend_from_slice(rest);
                    return Ok(());
                }
            }
        }
        // The common case: whole lines inside the bytes just read, no copy.
        while let Some(i) = memchr::memchr(b'\n', rest) {
            let (line, tail) = rest.split_at(i + 1);
            if content_len(line) > max_line {
                return Err(self.too_long());
            }
            if emit(line).is_break() {
                return Ok(());
            }
            rest = tail;
        }
        if !partial_fits(rest.len(), None, rest, max_line) {
            return Err(self.too_long());
        }
        self.partial.extend_from_slice(rest);
        Ok(())
    }

    /// Hands out the unfinished line, if any, as a message without
    /// terminator: the tail at EOF, or a message flushed by the idle rule.
    /// Returns whether there was one.
    ///
    /// # Errors
    /// [`LineTooLong`] if the unfinished line is over `max_line`: the framer
    /// holds one byte more while it is a `\r` that a `\n` may follow, and
    /// with no `\n` that `\r` is content (SPEC drops it only before `\n`).
    pub fn flush(
        &mut self,
        max_line: usize,
        emit: impl FnOnce(&[u8]),
    ) -> Result<bool, LineTooLong> {
        if self.partial.is_empty() {
            return Ok(false);
        }
        if self.partial.len() > max_line {
            return Err(self.too_long());
        }
        emit(&self.partial);
        self.reset();
        Ok(true)
    }

    /// Drops the unfinished line (a drain cut it off). Returns whether there
    /// was one.
    pub fn discard(&mut self) -> bool {
        let had = !self.partial.is_empty();
        self.reset();
        had
    }

    fn too_long(&mut self) -> LineTooLong {
        self.partial = Vec::new();
        LineTooLong
    }

    fn reset(&mut self) {
        if self.partial.capacity() > KEEP_CAPACITY_BYTES {
            self.partial = Vec::new();
        } else {
            self.partial.clear();
        }
    }
}

/// Length of a complete line without its `\n` or `\r\n`.
fn content_len(line: &[u8]) -> usize {
    match line {
        [.., b'\r', b'\n'] => line.len() - 2,
        [.., b'\n'] => line.len() - 1,
        _ => line.len(),
    }
}

/// Whether an unfinished line of `len` bytes can still become a line of at
/// most `max_line` content bytes: one extra byte is allowed if it is a `\r`
/// that a `\n` may follow.
fn partial_fits(len: usize, held_last: Option<&u8>, new: &[u8], max_line: usize) -> bool {
    if len <= max_line {
        return true;
    }
    let last = new.last().or(held_last);
    len == max_line + 1 && last == Some(&b'\r')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `chunks` then EOF; returns the messages, or the error.
    fn frame(chunks: &[&[u8]], max_line: usize) -> Result<Vec<Vec<u8>>, LineTooLong> {
        let mut framer = LineFramer::new();
        let mut lines = Vec::new();
        for chunk in chunks {
            framer.push(chunk, max_line, |line| {
                lines.push(line.to_vec());
                ControlFlow::Continue(())
            })?;
        }
        framer.flush(max_line, |tail| lines.push(tail.to_vec()))?;
        Ok(lines)
    }

    #[test]
    fn lines_keep_their_terminators() {
        let lines = frame(&[b"a\nb\r\nc"], 100).unwrap();
        assert_eq!(
            lines,
            vec![b"a\n".to_vec(), b"b\r\n".to_vec(), b"c".to_vec()]
        );
    }

    #[test]
    fn a_line_split_across_reads_is_one_line() {
        let lines = frame(&[b"Marc cre", b"dit $2\nMa", b"rc debit $1\n"], 100).unwrap();
        assert_eq!(
            lines,
            vec![b"Marc credit $2\n".to_vec(), b"Marc debit $1\n".to_vec()]
        );
    }

    #[test]
    fn crlf_split_between_reads() {
        let lines = frame(&[b"abc\r", b"\n"], 3).unwrap();
        assert_eq!(lines, vec![b"abc\r\n".to_vec()]);
    }

    #[test]
    fn empty_lines_are_lines() {
        let lines = frame(&[b"\n\r\n"], 1).unwrap();
        assert_eq!(lines, vec![b"\n".to_vec(), b"\r\n".to_vec()]);
    }

    #[test]
    fn max_line_counts_content_only() {
        assert!(frame(&[b"abcd\n"], 4).is_ok());
        assert!(frame(&[b"abcd\r\n"], 4).is_ok());
        assert_eq!(frame(&[b"abcde\n"], 4), Err(LineTooLong));
        assert_eq!(frame(&[b"ab", b"cde\n"], 4), Err(LineTooLong));
    }

    #[test]
    fn an_unfinished_line_is_refused_before_its_newline_arrives() {
        let mut framer = LineFramer::new();
        let ok = |_: &[u8]| ControlFlow::Continue(());
        assert_eq!(framer.push(b"abcd", 4, ok), Ok(()));
        assert_eq!(
            framer.push(b"\r", 4, ok),
            Ok(()),
            "a \\r may be the start of \\r\\n"
        );
        assert_eq!(framer.push(b"x", 4, ok), Err(LineTooLong));
        assert!(!framer.has_partial(), "memory is released at the error");
        let mut framer = LineFramer::new();
        assert_eq!(framer.push(&[b'x'; 5], 4, ok), Err(LineTooLong));
    }

    #[test]
    fn lines_before_a_too_long_line_are_delivered() {
        let mut framer = LineFramer::new();
        let mut lines = Vec::new();
        let result = framer.push(b"ok\ntoolong\n", 4, |line| {
            lines.push(line.to_vec());
            ControlFlow::Continue(())
        });
        assert_eq!(result, Err(LineTooLong));
        assert_eq!(lines, vec![b"ok\n".to_vec()]);
    }

    #[test]
    fn break_drops_the_rest() {
        let mut framer = LineFramer::new();
        let mut lines = 0;
        framer
            .push(b"a\nb\nc", 10, |_| {
                lines += 1;
                ControlFlow::Break(())
            })
            .unwrap();
        assert_eq!(lines, 1);
    }

    #[test]
    fn flush_hands_out_the_tail_once() {
        let mut framer = LineFramer::new();
        framer
            .push(b"hello", 10, |_| ControlFlow::Continue(()))
            .unwrap();
        assert!(framer.has_partial());
        let mut got = Vec::new();
        assert_eq!(framer.flush(10, |m| got.extend_from_slice(m)), Ok(true));
        assert_eq!(got, b"hello");
        assert_eq!(framer.flush(10, |_| panic!("nothing left")), Ok(false));
    }

    #[test]
    fn a_tail_ending_in_a_lone_cr_counts_the_cr() {
        // Found by the framer fuzz target: `abcd\r` fits while a `\n` may
        // follow, but as a last line (EOF or idle flush) it is 5 bytes.
        assert_eq!(frame(&[b"abcd\r"], 4), Err(LineTooLong));
        assert_eq!(
            frame(&[b"abcd\r\n"], 4).unwrap(),
            vec![b"abcd\r\n".to_vec()]
        );
        assert_eq!(frame(&[b"abc\r"], 4).unwrap(), vec![b"abc\r".to_vec()]);
    }

    #[test]
    fn a_huge_line_does_not_pin_its_buffer() {
        let mut framer = LineFramer::new();
        let big = vec![b'x'; 100_000];
        framer
            .push(&big, 200_000, |_| ControlFlow::Continue(()))
            .unwrap();
        framer
            .push(b"\n", 200_000, |_| ControlFlow::Continue(()))
            .unwrap();
        assert_eq!(framer.partial.capacity(), 0);
    }

    proptest! {
        #[test]
        fn any_chunking_gives_the_same_lines(
            data in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), Just(b'a'), any::<u8>()], 0..400),
            cuts in proptest::collection::vec(0usize..400, 0..20),
            max_line in 1usize..40,
        ) {
            let whole = frame(&[&data], max_line);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            cuts.sort_unstable();
            let mut chunks: Vec<&[u8]> = Vec::new();
            let mut at = 0;
            for cut in cuts {
                chunks.push(&data[at..cut]);
                at = cut;
            }
            chunks.push(&data[at..]);
            prop_assert_eq!(frame(&chunks, max_line), whole);
        }

        #[test]
        fn nothing_is_lost_when_lines_fit(
            lines in proptest::collection::vec(proptest::collection::vec(b'a'..=b'z', 0..30), 0..20),
            crlf in any::<bool>(),
            last_unterminated in any::<bool>(),
        ) {
            let mut data = Vec::new();
            for (i, line) in lines.iter().enumerate() {
                data.extend_from_slice(line);
                let last = i + 1 == lines.len();
                if !(last && last_unterminated) {
                    data.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
                }
            }
            let got = frame(&[&data], 30).unwrap();
            let contents: Vec<Vec<u8>> = got.iter().map(|l| crate::handlers::strip_terminator(l).to_vec()).collect();
            let mut expected = lines.clone();
            if last_unterminated && expected.last().is_some_and(|l| l.is_empty()) {
                expected.pop(); // an empty tail at EOF is no line
            }
            prop_assert_eq!(contents, expected);
            prop_assert_eq!(got.concat(), data);
        }

        #[test]
        fn a_line_over_the_limit_always_errors(len in 5usize..200, max_line in 1usize..5) {
            let mut data = vec![b'x'; len];
            data.push(b'\n');
            prop_assert_eq!(frame(&[&data], max_line), Err(LineTooLong));
        }
    }
}
