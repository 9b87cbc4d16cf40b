//! A cron field as a bit set of allowed values.

/// Allowed values of one field; bit `n` set means value `n` matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FieldSet(u64);

impl FieldSet {
    pub const fn empty() -> Self {
        Self(0)
    }

    pub fn insert(&mut self, value: u32) {
        self.0 |= 1u64 << value;
    }

    pub fn contains(self, value: u32) -> bool {
        value < 64 && self.0 & (1u64 << value) != 0
    }

    /// The smallest member `>= value`.
    pub fn next_from(self, value: u32) -> Option<u32> {
        if value >= 64 {
            return None;
        }
        let masked = self.0 & (u64::MAX << value);
        (masked != 0).then(|| masked.trailing_zeros())
    }
}
