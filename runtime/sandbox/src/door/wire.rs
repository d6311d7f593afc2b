//! The encoding of the door's messages: little-endian numbers, `str` and `bytes` as a u32
//! length then the bytes, `opt<T>` as a byte (0 or 1) then T, `list<T>` as a u32 count then
//! the items.
//!
//! A message from the guest is untrusted: [`Reader`] checks every length against what is
//! left and fails, never panics, on a short or malformed message.

use sluice_plugin_api::{Column, ColumnValues};
use std::collections::HashMap;

/// A message from the guest, read front to back.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
}

/// Why a message could not be read: the guest sent something the protocol does not allow.
#[derive(Debug)]
pub(crate) struct Malformed(pub(crate) &'static str);

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed message from the runtime: {}", self.0)
    }
}

impl std::error::Error for Malformed {}

pub(crate) type Read<T> = Result<T, Malformed>;

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
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

    pub(crate) fn u8(&mut self) -> Read<u8> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn bool(&mut self) -> Read<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Malformed("a flag that is neither 0 nor 1")),
        }
    }

    pub(crate) fn u16(&mut self) -> Read<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Read<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn f64(&mut self) -> Read<f64> {
        Ok(f64::from_le_bytes(self.array()?))
    }

    pub(crate) fn bytes(&mut self) -> Read<&'a [u8]> {
        let len = self.u32()?;
        self.take(usize::try_from(len).map_err(|_| Malformed("a length past the address space"))?)
    }

    pub(crate) fn str(&mut self) -> Read<&'a str> {
        std::str::from_utf8(self.bytes()?).map_err(|_| Malformed("a string that is not UTF-8"))
    }

    pub(crate) fn string(&mut self) -> Read<String> {
        self.str().map(str::to_string)
    }

    pub(crate) fn opt<T>(&mut self, item: impl FnOnce(&mut Self) -> Read<T>) -> Read<Option<T>> {
        if self.bool()? {
            item(self).map(Some)
        } else {
            Ok(None)
        }
    }

    /// A list, each item read by `item`. The count is checked against the bytes left (an
    /// item takes at least one), so a forged count cannot make the host reserve memory.
    pub(crate) fn list<T>(&mut self, mut item: impl FnMut(&mut Self) -> Read<T>) -> Read<Vec<T>> {
        let count = usize::try_from(self.u32()?).unwrap_or(usize::MAX);
        if count > self.bytes.len() {
            return Err(Malformed("more items than bytes"));
        }
        (0..count).map(|_| item(self)).collect()
    }

    pub(crate) fn pairs(&mut self) -> Read<Vec<(String, String)>> {
        self.list(|r| Ok((r.string()?, r.string()?)))
    }

    /// Checks that nothing is left over.
    pub(crate) fn end(&self) -> Read<()> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(Malformed("bytes left over at its end"))
        }
    }
}

/// A message to the guest, written front to back.
#[derive(Default)]
pub(crate) struct Writer {
    bytes: Vec<u8>,
}

impl Writer {
    pub(crate) fn finish(self) -> Vec<u8> {
        self.bytes
    }

    pub(crate) fn u8(&mut self, value: u8) -> &mut Self {
        self.bytes.push(value);
        self
    }

    pub(crate) fn bool(&mut self, value: bool) -> &mut Self {
        self.u8(u8::from(value))
    }

    pub(crate) fn u16(&mut self, value: u16) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }

    pub(crate) fn u32(&mut self, value: u32) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }

    pub(crate) fn i64(&mut self, value: i64) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }

    /// A length or a count: the host's messages are built from what it holds, far below
    /// 4 GiB; one that is not saturates, and the guest then fails to read the message.
    fn len(&mut self, len: usize) -> &mut Self {
        self.u32(u32::try_from(len).unwrap_or(u32::MAX))
    }

    pub(crate) fn bytes(&mut self, value: &[u8]) -> &mut Self {
        self.len(value.len());
        self.bytes.extend_from_slice(value);
        self
    }

    pub(crate) fn str(&mut self, value: &str) -> &mut Self {
        self.bytes(value.as_bytes())
    }

    pub(crate) fn opt<T>(
        &mut self,
        value: Option<T>,
        item: impl FnOnce(&mut Self, T),
    ) -> &mut Self {
        self.bool(value.is_some());
        if let Some(value) = value {
            item(self, value);
        }
        self
    }

    pub(crate) fn list<T>(
        &mut self,
        items: impl ExactSizeIterator<Item = T>,
        mut item: impl FnMut(&mut Self, T),
    ) -> &mut Self {
        self.len(items.len());
        for value in items {
            item(self, value);
        }
        self
    }

    pub(crate) fn pairs(&mut self, pairs: &[(String, String)]) -> &mut Self {
        self.list(pairs.iter(), |w, (name, value)| {
            w.str(name).str(value);
        })
    }

    /// A column, in the compact encodings the guest's `columns.py` reads: a kind byte,
    /// then numbers as little-endian bytes (8 a row), booleans a byte a row, strings as
    /// their distinct values then a u32 index a row; then which rows have a value, a
    /// byte a row, if not all do.
    pub(crate) fn column(&mut self, column: &Column) -> &mut Self {
        self.str(&column.name);
        match &column.values {
            ColumnValues::Tag(v) => self.u8(0).dictionary(v),
            ColumnValues::String(v) => self.u8(1).dictionary(v),
            ColumnValues::Int(v) => self.u8(2).numbers(v, |x| x.to_le_bytes()),
            ColumnValues::UInt(v) => self.u8(3).numbers(v, |x| x.to_le_bytes()),
            ColumnValues::Float(v) => self.u8(4).numbers(v, |x| x.to_le_bytes()),
            ColumnValues::Boolean(v) => {
                self.u8(5).len(v.len());
                self.bytes.extend(v.iter().map(|b| u8::from(*b)));
                &mut *self
            }
            ColumnValues::Time(v) => self.u8(6).numbers(v, |x| x.to_le_bytes()),
        };
        self.opt(column.present.as_ref(), |w, flags| {
            w.len(flags.len());
            w.bytes.extend(flags.iter().map(|f| u8::from(*f)));
        })
    }

    fn numbers<T: Copy>(&mut self, values: &[T], to_bytes: fn(T) -> [u8; 8]) -> &mut Self {
        self.len(values.len() * 8);
        self.bytes.reserve(values.len() * 8);
        for value in values {
            self.bytes.extend_from_slice(&to_bytes(*value));
        }
        self
    }

    /// Strings with their repeats folded: the distinct values in first-seen order, then
    /// a little-endian u32 index a row.
    fn dictionary(&mut self, strings: &[String]) -> &mut Self {
        let mut positions: HashMap<&str, u32> = HashMap::new();
        let mut values = Vec::new();
        let mut indices = Vec::with_capacity(strings.len() * 4);
        for string in strings {
            let next = u32::try_from(values.len()).unwrap_or(u32::MAX);
            let index = *positions.entry(string).or_insert_with(|| {
                values.push(string.as_str());
                next
            });
            indices.extend_from_slice(&index.to_le_bytes());
        }
        self.list(values.iter(), |w, value| {
            w.str(value);
        });
        self.bytes(&indices)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_fold_and_numbers_are_little_endian() {
        let mut w = Writer::default();
        w.column(&Column {
            name: "host".into(),
            values: ColumnValues::Tag(vec!["a".into(), "b".into(), "a".into()]),
            present: Some(vec![true, false, true]),
        });
        let bytes = w.finish();
        let mut r = Reader::new(&bytes);
        assert_eq!(r.str().expect("readable"), "host");
        assert_eq!(r.u8().expect("readable"), 0);
        let values = r.list(|r| r.string()).expect("readable");
        assert_eq!(values, vec!["a", "b"]);
        assert_eq!(
            r.bytes().expect("readable"),
            [0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            r.opt(|r| r.bytes()).expect("readable"),
            Some(&[1, 0, 1][..])
        );
        r.end().expect("readable");

        let mut w = Writer::default();
        w.column(&Column::dense("n", ColumnValues::Int(vec![-2, 258])));
        let bytes = w.finish();
        let mut r = Reader::new(&bytes);
        assert_eq!(r.str().expect("readable"), "n");
        assert_eq!(r.u8().expect("readable"), 2);
        assert_eq!(
            r.bytes().expect("readable"),
            [(-2i64).to_le_bytes(), 258i64.to_le_bytes()].concat()
        );
        assert_eq!(r.opt(|r| r.bytes()).expect("readable"), None);
    }

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
