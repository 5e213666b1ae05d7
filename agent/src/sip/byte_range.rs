//! Byte ranges into a message's raw bytes: the parser records where things
//! are instead of copying them (zero-copy).

/// A half-open byte range `start..end` into [`super::SipMessage::raw`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ByteRange {
    pub start: u32,
    pub end: u32,
}

impl ByteRange {
    pub fn new(start: usize, end: usize) -> ByteRange {
        ByteRange {
            start: start as u32,
            end: end.max(start) as u32,
        }
    }

    /// `sub` is a subslice of `base`, which starts at `base_offset` in raw.
    pub fn of(base: &[u8], base_offset: usize, sub: &[u8]) -> ByteRange {
        let off = (sub.as_ptr() as usize).saturating_sub(base.as_ptr() as usize);
        ByteRange::new(base_offset + off, base_offset + off + sub.len())
    }

    pub fn get(self, raw: &[u8]) -> &[u8] {
        raw.get(self.start as usize..self.end as usize)
            .unwrap_or(&[])
    }

    pub fn len(self) -> usize {
        (self.end - self.start) as usize
    }

    pub fn is_empty(self) -> bool {
        self.start == self.end
    }
}
