//! The encoding of the guest's messages to the host: little-endian numbers, `str` and
//! `bytes` as a u32 length then the bytes, `opt<T>` as a byte (0 or 1) then T, `list<T>`
//! as a u32 count then the items. (The host answers in `marshal`'s format instead.)
//!
//! A message from the guest is untrusted: [`Reader`] checks every length against what is
//! left and fails, never panics, on a short or malformed message.

/// A message from the guest, read front to back.
pub struct Reader<'a> {
    bytes: &'a [u8],
}

/// Why a message could not be read: the guest sent something the protocol does not allow.
#[derive(Debug)]
pub struct Malformed(pub &'static str);

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed message from the runtime: {}", self.0)
    }
}

impl std::error::Error for Malformed {}

/// A value read from a guest's message, or why it could not be.
pub type Read<T> = Result<T, Malformed>;

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    fn take(&mut self, len: usize) -> Read<&'a [u8]> {
        if len > self.bytes.len() {
            return Err(Malformed("shorter than its lengths say"));
        }
        let (taken, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Read<[u8; N]> {
        let taken = self.take(N)?;
        let mut array = [0; N];
        array.copy_from_slice(taken);
        Ok(array)
    }

    pub fn u8(&mut self) -> Read<u8> {
        Ok(self.array::<1>()?[0])
    }

    pub fn bool(&mut self) -> Read<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Malformed("a flag that is neither 0 nor 1")),
        }
    }

    pub fn u16(&mut self) -> Read<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub fn u32(&mut self) -> Read<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub fn f64(&mut self) -> Read<f64> {
        Ok(f64::from_le_bytes(self.array()?))
    }

    pub fn bytes(&mut self) -> Read<&'a [u8]> {
        let len = self.u32()?;
        self.take(usize::try_from(len).map_err(|_| Malformed("a length past the address space"))?)
    }

    pub fn str(&mut self) -> Read<&'a str> {
        std::str::from_utf8(self.bytes()?).map_err(|_| Malformed("a string that is not UTF-8"))
    }

    pub fn string(&mut self) -> Read<String> {
        self.str().map(str::to_string)
    }

    pub fn opt<T>(&mut self, item: impl FnOnce(&mut Self) -> Read<T>) -> Read<Option<T>> {
        if self.bool()? {
            item(self).map(Some)
        } else {
            Ok(None)
        }
    }

    /// A list, each item read by `item`. The count is checked against the bytes left (an
    /// item takes at least one), so a forged count cannot make the host reserve memory.
    pub fn list<T>(&mut self, mut item: impl FnMut(&mut Self) -> Read<T>) -> Read<Vec<T>> {
        let count = usize::try_from(self.u32()?).unwrap_or(usize::MAX);
        if count > self.bytes.len() {
            return Err(Malformed("more items than bytes"));
        }
        (0..count).map(|_| item(self)).collect()
    }

    pub fn pairs(&mut self) -> Read<Vec<(String, String)>> {
        self.list(|r| Ok((r.string()?, r.string()?)))
    }

    /// Checks that nothing is left over.
    pub fn end(&self) -> Read<()> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(Malformed("bytes left over at its end"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forged_length_or_count_is_refused_not_trusted() {
        // A string claiming 4 GiB in a message of 6 bytes.
        let forged = [0xff, 0xff, 0xff, 0xff, b'a', b'b'];
        assert!(Reader::new(&forged).str().is_err());
        // A list claiming 4 billion items.
        assert!(Reader::new(&forged).list(|r| r.u8()).is_err());
        // A flag of 2, a string that is not UTF-8, bytes left over.
        assert!(Reader::new(&[2]).bool().is_err());
        assert!(Reader::new(&[1, 0, 0, 0, 0xff]).str().is_err());
        let mut r = Reader::new(&[1, 2]);
        r.u8().expect("readable");
        assert!(r.end().is_err());
    }
}
