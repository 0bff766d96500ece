//! The bounds-checked byte reader under kvik's own small binary formats
//! (membership encodings, forwarded requests, snapshot streams). Every read
//! checks what is left, so bytes from a peer or a damaged file give an
//! error, never a panic; counts are checked against what is left before
//! anything is allocated for them.

use std::ops::Range;

/// Why a read failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// Fewer bytes than the format needs.
    Truncated,
    /// A count above its limit.
    TooMany(&'static str),
    /// Bytes that break the format.
    Invalid(&'static str),
}

/// Reads little-endian fields from the front of a byte slice.
pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, at: 0 }
    }

    /// Bytes not read yet.
    pub fn left(&self) -> usize {
        self.bytes.len() - self.at
    }

    /// The next `n` bytes' position in the slice.
    pub fn take_range(&mut self, n: usize) -> Result<Range<usize>, WireError> {
        if self.left() < n {
            return Err(WireError::Truncated);
        }
        let r = self.at..self.at + n;
        self.at += n;
        Ok(r)
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let r = self.take_range(n)?;
        Ok(&self.bytes[r])
    }

    pub fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    pub fn u32(&mut self) -> Result<usize, WireError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
    }

    pub fn u64(&mut self) -> Result<u64, WireError> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    pub fn i64(&mut self) -> Result<i64, WireError> {
        Ok(self.u64()? as i64)
    }

    /// A u32 count of at most `max` items that fits in what is left at
    /// `item_bytes_min` bytes each, so a hostile count allocates nothing.
    pub fn count(
        &mut self,
        max: usize,
        item_bytes_min: usize,
        what: &'static str,
    ) -> Result<usize, WireError> {
        let n = self.u32()?;
        if n > max {
            return Err(WireError::TooMany(what));
        }
        if n.saturating_mul(item_bytes_min) > self.left() {
            return Err(WireError::Truncated);
        }
        Ok(n)
    }

    /// A u32 length, then that many bytes.
    pub fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.u32()?;
        self.take(n)
    }

    /// A u32 length of at most `max_bytes`, then that much UTF-8.
    pub fn text(&mut self, max_bytes: usize) -> Result<String, WireError> {
        let n = self.u32()?;
        if n > max_bytes {
            return Err(WireError::TooMany("text bytes"));
        }
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| WireError::Invalid("text is not UTF-8"))
    }

    /// Succeeds only if every byte was read.
    pub fn finish(self) -> Result<(), WireError> {
        if self.left() == 0 {
            Ok(())
        } else {
            Err(WireError::Invalid("trailing bytes"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_bounded() {
        let b = [1u8, 2, 0, 0, 0, 7, 7];
        let mut r = Reader::new(&b);
        assert_eq!(r.u8(), Ok(1));
        assert_eq!(r.bytes(), Ok(&[7u8, 7][..]));
        r.finish().unwrap();
        let mut r = Reader::new(&b[..4]);
        assert_eq!(r.u8(), Ok(1));
        assert_eq!(r.u32(), Err(WireError::Truncated));
        // A count that the remaining bytes cannot hold is refused.
        let b = [100u8, 0, 0, 0, 1];
        assert_eq!(
            Reader::new(&b).count(1000, 1, "x"),
            Err(WireError::Truncated)
        );
        assert_eq!(
            Reader::new(&b).count(10, 1, "x"),
            Err(WireError::TooMany("x"))
        );
        assert!(Reader::new(&[1]).finish().is_err());
    }
}
