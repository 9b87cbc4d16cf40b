//! Keeps the head and the tail of a stream within a byte budget, because the
//! start says what a program was doing and the end says how it failed.

use std::collections::VecDeque;

#[derive(Debug)]
pub struct BoundedCapture {
    head: Vec<u8>,
    tail: VecDeque<u8>,
    head_limit: usize,
    tail_limit: usize,
    total: u64,
}

impl BoundedCapture {
    pub fn new(limit: usize) -> Self {
        let head_limit = limit / 2;
        Self {
            head: Vec::new(),
            tail: VecDeque::new(),
            head_limit,
            tail_limit: limit - head_limit,
            total: 0,
        }
    }

    pub fn push(&mut self, mut bytes: &[u8]) {
        self.total += bytes.len() as u64;
        let room = self.head_limit.saturating_sub(self.head.len());
        let into_head = room.min(bytes.len());
        self.head.extend_from_slice(&bytes[..into_head]);
        bytes = &bytes[into_head..];
        if bytes.len() >= self.tail_limit {
            self.tail.clear();
            self.tail.extend(&bytes[bytes.len() - self.tail_limit..]);
            return;
        }
        let overflow = (self.tail.len() + bytes.len()).saturating_sub(self.tail_limit);
        self.tail.drain(..overflow);
        self.tail.extend(bytes);
    }

    pub fn total_bytes(&self) -> u64 {
        self.total
    }

    /// The kept text; a visible marker says how much was left out.
    pub fn render(&self) -> String {
        let kept = (self.head.len() + self.tail.len()) as u64;
        let mut text = String::from_utf8_lossy(&self.head).into_owned();
        if self.total > kept {
            text.push_str(&format!("\n[… {} bytes truncated …]\n", self.total - kept));
        }
        let tail: Vec<u8> = self.tail.iter().copied().collect();
        text.push_str(&String::from_utf8_lossy(&tail));
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_output_is_kept_whole() {
        let mut capture = BoundedCapture::new(100);
        capture.push(b"hello ");
        capture.push(b"world");
        assert_eq!(capture.render(), "hello world");
    }

    #[test]
    fn large_output_keeps_head_and_tail_with_marker() {
        let mut capture = BoundedCapture::new(10);
        for chunk in [b"AAAAA".as_slice(), b"BBBBBBBBBB", b"CCCCC"] {
            capture.push(chunk);
        }
        assert_eq!(capture.total_bytes(), 20);
        assert_eq!(capture.render(), "AAAAA\n[… 10 bytes truncated …]\nCCCCC");
    }

    #[test]
    fn tail_slides_over_many_small_pushes() {
        let mut capture = BoundedCapture::new(4);
        for byte in b"abcdefgh" {
            capture.push(&[*byte]);
        }
        assert_eq!(capture.render(), "ab\n[… 4 bytes truncated …]\ngh");
    }
}
