//! One bounded NDJSON line reader over any [`std::io::Read`].
//!
//! It hands out [`Piece`]s: chunks of whole lines (so a job can parse
//! chunks on every core), each with the number of its first line, or one
//! line longer than the limit, which the reader has read through to its
//! newline without keeping it. Memory stays within about `max_bytes` (the
//! chunk size asked for) whatever the input: a line of any length is
//! dropped piece by piece, and every call either hands something out or
//! reaches the end of the stream.

use std::io::{self, Read};

/// Longest line taken unless a job chooses its own limit.
pub const DEFAULT_MAX_LINE: usize = 1 << 20;

/// What to do with a last line that has no newline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LastLine {
    /// The stream is complete: it is a line like any other.
    Take,
    /// A writer may still be on it: it is neither handed out nor counted
    /// (a later read from the same offset sees it again).
    Wait,
}

/// What [`LineReader::next_piece`] hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Whole lines, each ending with `\n` except perhaps the stream's last.
    Lines {
        /// Number of the first line (the first line of the stream is 1,
        /// unless the reader was told otherwise).
        first_line: u64,
        /// How many lines `bytes` holds.
        lines: u64,
        bytes: Vec<u8>,
    },
    /// A line longer than `limit` bytes (its newline not counted), read
    /// through and dropped: a malformed line.
    Overlong {
        line: u64,
        limit: usize,
        /// Bytes of the stream it took, newline included.
        bytes: u64,
    },
}

impl Piece {
    /// Lines this piece covers.
    pub fn lines(&self) -> u64 {
        match self {
            Piece::Lines { lines, .. } => *lines,
            Piece::Overlong { .. } => 1,
        }
    }

    /// Bytes of the stream this piece covers (what a byte cursor advances by).
    pub fn consumed(&self) -> u64 {
        match self {
            Piece::Lines { bytes, .. } => bytes.len() as u64,
            Piece::Overlong { bytes, .. } => *bytes,
        }
    }

    /// For an overlong line, the problem as a malformed line's sample says it.
    pub fn problem(&self) -> Option<String> {
        match self {
            Piece::Lines { .. } => None,
            Piece::Overlong { limit, .. } => Some(format!("line longer than {limit} bytes")),
        }
    }
}

/// Reads whole lines from `reader` in bounded memory.
#[derive(Debug)]
pub struct LineReader<R> {
    reader: R,
    max_line: usize,
    last_line: LastLine,
    /// Bytes read and not yet handed out; they start at a line's start.
    buf: Vec<u8>,
    at_end: bool,
    /// A last line without newline is waited for: nothing more comes.
    waiting: bool,
    next_line: u64,
    offset: u64,
}

impl<R: Read> LineReader<R> {
    /// A reader taking lines of up to [`DEFAULT_MAX_LINE`] bytes, a last
    /// line without newline included, numbering lines from 1.
    pub fn new(reader: R) -> Self {
        Self {
            reader,
            max_line: DEFAULT_MAX_LINE,
            last_line: LastLine::Take,
            buf: Vec::new(),
            at_end: false,
            waiting: false,
            next_line: 1,
            offset: 0,
        }
    }

    /// Lines longer than `bytes` (newline not counted) are malformed.
    pub fn max_line(mut self, bytes: usize) -> Self {
        self.max_line = bytes.max(1);
        self
    }

    /// What to do with a last line without newline.
    pub fn last_line(mut self, last_line: LastLine) -> Self {
        self.last_line = last_line;
        self
    }

    /// The number the stream's first line gets (a read resumed mid-file).
    pub fn first_line(mut self, number: u64) -> Self {
        self.next_line = number;
        self
    }

    /// Bytes handed out or read through so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next whole lines, at most `max_lines` of them in at most
    /// `max_bytes` bytes (raised to one longest line if smaller), or the
    /// next overlong line. `None` at the end of the stream, when
    /// `max_lines` is 0, and before a last line that is waited for.
    pub fn next_piece(&mut self, max_bytes: usize, max_lines: u64) -> io::Result<Option<Piece>> {
        if max_lines == 0 || self.waiting {
            return Ok(None);
        }
        let max_bytes = max_bytes.max(self.max_line + 1);
        self.fill(max_bytes)?;
        if self.buf.is_empty() {
            return Ok(None);
        }
        let window = self.buf.len().min(max_bytes);
        let mut cut = 0;
        let mut lines = 0u64;
        let mut overlong_next = false;
        for newline in memchr::memchr_iter(b'\n', &self.buf[..window]) {
            if newline - cut > self.max_line {
                overlong_next = true;
                break;
            }
            cut = newline + 1;
            lines += 1;
            if lines == max_lines {
                break;
            }
        }
        if !overlong_next && lines < max_lines {
            let tail = window - cut;
            let is_stream_end = self.at_end && window == self.buf.len();
            if tail > self.max_line {
                overlong_next = true;
            } else if tail > 0 && is_stream_end {
                match self.last_line {
                    LastLine::Take => {
                        cut = window;
                        lines += 1;
                    }
                    LastLine::Wait if lines == 0 => {
                        self.waiting = true;
                        return Ok(None);
                    }
                    LastLine::Wait => {}
                }
            }
        }
        if lines > 0 {
            return Ok(Some(self.hand_out(cut, lines)));
        }
        if overlong_next {
            return self.read_through_overlong();
        }
        // Unreachable with a buffer filled to `max_bytes` or to the end;
        // say "nothing" rather than loop.
        Ok(None)
    }

    /// Reads until `buf` holds `target` bytes or the stream ends.
    fn fill(&mut self, target: usize) -> io::Result<()> {
        if self.at_end || self.buf.len() >= target {
            return Ok(());
        }
        let mut filled = self.buf.len();
        self.buf.resize(target, 0);
        let result = loop {
            if filled == target {
                break Ok(());
            }
            match self.reader.read(&mut self.buf[filled..]) {
                Ok(0) => {
                    self.at_end = true;
                    break Ok(());
                }
                Ok(n) => filled += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => break Err(err),
            }
        };
        self.buf.truncate(filled);
        result
    }

    /// The first `cut` bytes (`lines` whole lines) as a piece.
    fn hand_out(&mut self, cut: usize, lines: u64) -> Piece {
        // Copy the smaller part: the rest of a chunk is usually one partial
        // line, but a line limit may cut a chunk early.
        let bytes = if cut >= self.buf.len() - cut {
            let rest = self.buf.split_off(cut);
            std::mem::replace(&mut self.buf, rest)
        } else {
            let bytes = self.buf[..cut].to_vec();
            self.buf.drain(..cut);
            bytes
        };
        let piece = Piece::Lines {
            first_line: self.next_line,
            lines,
            bytes,
        };
        self.next_line += lines;
        self.offset += cut as u64;
        piece
    }

    /// The line at the start of `buf` is too long: drops it through its
    /// newline (or the end of the stream), reading on in pieces of the
    /// buffer's size.
    fn read_through_overlong(&mut self) -> io::Result<Option<Piece>> {
        let chunk = self.buf.len().max(self.max_line + 1);
        let mut dropped = 0u64;
        loop {
            if let Some(newline) = memchr::memchr(b'\n', &self.buf) {
                dropped += newline as u64 + 1;
                self.buf.drain(..=newline);
                break;
            }
            dropped += self.buf.len() as u64;
            self.buf.clear();
            if self.at_end {
                if self.last_line == LastLine::Wait {
                    // Still being written, perhaps: it is judged once it
                    // has its newline or the stream is taken as complete.
                    self.waiting = true;
                    return Ok(None);
                }
                break;
            }
            self.fill(chunk)?;
        }
        let piece = Piece::Overlong {
            line: self.next_line,
            limit: self.max_line,
            bytes: dropped,
        };
        self.next_line += 1;
        self.offset += dropped;
        Ok(Some(piece))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A reader that returns at most `step` bytes per read (lines split
    /// across reads).
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(out.len()).min(self.data.len());
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    /// Every piece of `reader`, `max_bytes` and `max_lines` per call.
    fn pieces<R: Read>(mut reader: LineReader<R>, max_bytes: usize) -> Vec<Piece> {
        let mut out = Vec::new();
        while let Some(piece) = reader.next_piece(max_bytes, u64::MAX).unwrap() {
            out.push(piece);
            assert!(out.len() < 10_000, "the reader does not move on");
        }
        out
    }

    /// `(first line, text)` of line pieces and `(line, "overlong")` of the others.
    fn summary(pieces: &[Piece]) -> Vec<(u64, String)> {
        pieces
            .iter()
            .map(|piece| match piece {
                Piece::Lines {
                    first_line, bytes, ..
                } => (*first_line, String::from_utf8_lossy(bytes).into_owned()),
                Piece::Overlong { line, .. } => (*line, "overlong".into()),
            })
            .collect()
    }

    #[test]
    fn empty_input_has_no_pieces() {
        assert!(pieces(LineReader::new(&b""[..]), 64).is_empty());
    }

    #[test]
    fn lines_split_across_reads_come_out_whole_and_numbered() {
        let text = b"one\ntwo\nthree\nfour\n";
        let reader = LineReader::new(Trickle {
            data: text,
            step: 3,
        })
        .max_line(8);
        let got = pieces(reader, 9);
        let mut joined = Vec::new();
        let mut next = 1;
        for piece in &got {
            let Piece::Lines {
                first_line,
                lines,
                bytes,
            } = piece
            else {
                panic!("{piece:?}")
            };
            assert_eq!(*first_line, next);
            assert!(bytes.ends_with(b"\n"), "whole lines only: {piece:?}");
            assert_eq!(*lines, memchr::memchr_iter(b'\n', bytes).count() as u64);
            next += lines;
            joined.extend_from_slice(bytes);
        }
        assert_eq!(joined, text);
        assert_eq!(next, 5);
    }

    #[test]
    fn a_last_line_without_newline_is_taken_or_waited_for() {
        let got = pieces(LineReader::new(&b"a\nb"[..]), 64);
        assert_eq!(summary(&got), [(1, "a\nb".to_string())]);
        assert_eq!(got[0].lines(), 2);

        let mut reader = LineReader::new(&b"a\nb"[..]).last_line(LastLine::Wait);
        let first = reader.next_piece(64, u64::MAX).unwrap().unwrap();
        assert_eq!(summary(&[first]), [(1, "a\n".to_string())]);
        assert_eq!(reader.next_piece(64, u64::MAX).unwrap(), None);
        assert_eq!(reader.offset(), 2, "the half-written line is not covered");
    }

    #[test]
    fn an_overlong_line_is_reported_and_read_through_in_bounded_memory() {
        let long = "x".repeat(10_000);
        let text = format!("ok1\n{long}\nok3\n");
        let reader = LineReader::new(Trickle {
            data: text.as_bytes(),
            step: 7,
        })
        .max_line(16);
        let got = pieces(reader, 32);
        assert_eq!(
            summary(&got),
            [
                (1, "ok1\n".to_string()),
                (2, "overlong".to_string()),
                (3, "ok3\n".to_string())
            ]
        );
        assert_eq!(got[1].consumed(), 10_001);
        assert_eq!(
            got[1].problem().as_deref(),
            Some("line longer than 16 bytes")
        );
        let total: u64 = got.iter().map(Piece::consumed).sum();
        assert_eq!(total, text.len() as u64);
    }

    #[test]
    fn a_line_over_the_limit_inside_a_big_chunk_is_malformed_too() {
        // The chunk could hold it, but the limit is the limit.
        let text = format!("a\n{}\nb\n", "y".repeat(20));
        let got = pieces(LineReader::new(text.as_bytes()).max_line(10), 1 << 20);
        assert_eq!(
            summary(&got),
            [
                (1, "a\n".to_string()),
                (2, "overlong".to_string()),
                (3, "b\n".to_string())
            ]
        );
    }

    #[test]
    fn a_line_exactly_at_the_limit_is_a_line() {
        let text = format!("{}\n", "z".repeat(10));
        let got = pieces(LineReader::new(text.as_bytes()).max_line(10), 11);
        assert_eq!(summary(&got), [(1, text)]);
    }

    #[test]
    fn an_overlong_line_at_the_end_of_the_stream() {
        let text = format!("a\n{}", "q".repeat(100));
        let got = pieces(LineReader::new(text.as_bytes()).max_line(10), 16);
        assert_eq!(
            summary(&got),
            [(1, "a\n".to_string()), (2, "overlong".to_string())]
        );
        assert_eq!(got[1].consumed(), 100);

        // Not yet complete: waited for, not skipped half-way.
        let mut reader = LineReader::new(text.as_bytes())
            .max_line(10)
            .last_line(LastLine::Wait);
        assert_eq!(reader.next_piece(16, u64::MAX).unwrap().unwrap().lines(), 1);
        assert_eq!(reader.next_piece(16, u64::MAX).unwrap(), None);
        assert_eq!(reader.offset(), 2);
    }

    #[test]
    fn max_lines_cuts_a_chunk_and_the_rest_follows() {
        let mut reader = LineReader::new(&b"1\n2\n3\n4\n5"[..]).first_line(11);
        let first = reader.next_piece(64, 2).unwrap().unwrap();
        assert_eq!(summary(&[first]), [(11, "1\n2\n".to_string())]);
        assert_eq!(reader.next_piece(64, 0).unwrap(), None);
        let rest = reader.next_piece(64, 10).unwrap().unwrap();
        assert_eq!(summary(&[rest]), [(13, "3\n4\n5".to_string())]);
        assert_eq!(reader.offset(), 9);
    }

    #[test]
    fn a_read_error_is_returned() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk on fire"))
            }
        }
        let err = LineReader::new(Broken).next_piece(64, 1).unwrap_err();
        assert_eq!(err.to_string(), "disk on fire");
    }
}
