//! The host's messages to the guest: each one Python value in CPython's `marshal` format,
//! which the guest turns into its objects with one `marshal.loads`, in C.
//!
//! Reading the same values field by field in Python cost more than the rest of a trivial
//! call (`BENCHMARKS.md`, "The call's messages"). Only the oldest parts of the format are
//! written, those every version of it reads the same way (version 2 and later): `None`,
//! booleans, integers, `str`, `bytes`, tuples and lists, no references. The values
//! are the host's own: what a tenant sent travels inside them as the contents of a `str`
//! or `bytes`, after its length, and cannot change their shape.

use sluice_plugin_api::{Column, ColumnValues};
use std::collections::HashMap;

/// One value in `marshal`'s format, written front to back: a container's items follow its
/// header ([`Marshal::tuple`], [`Marshal::list`]).
#[derive(Default)]
pub(crate) struct Marshal {
    bytes: Vec<u8>,
}

/// `marshal`'s type codes.
const NONE: u8 = b'N';
const TRUE: u8 = b'T';
const FALSE: u8 = b'F';
const INT: u8 = b'i';
const LONG: u8 = b'l';
const BYTES: u8 = b's';
const STR: u8 = b'u';
const TUPLE: u8 = b'(';
const LIST: u8 = b'[';

/// The size written for a `str`, `bytes` or container past 2 GiB: one `marshal` refuses.
const OVERSIZED: i32 = -1;

/// An integer past 32 bits is written in digits of this many bits, least significant first.
const LONG_DIGIT_BITS: u32 = 15;

impl Marshal {
    pub(crate) fn finish(self) -> Vec<u8> {
        self.bytes
    }

    pub(crate) fn none(&mut self) -> &mut Self {
        self.bytes.push(NONE);
        self
    }

    pub(crate) fn bool(&mut self, value: bool) -> &mut Self {
        self.bytes.push(if value { TRUE } else { FALSE });
        self
    }

    pub(crate) fn int(&mut self, value: i64) -> &mut Self {
        if let Ok(small) = i32::try_from(value) {
            self.bytes.push(INT);
            self.bytes.extend_from_slice(&small.to_le_bytes());
            return self;
        }
        let mut magnitude = value.unsigned_abs();
        let mut digits = Vec::with_capacity(5);
        while magnitude != 0 {
            let digit = magnitude & ((1 << LONG_DIGIT_BITS) - 1);
            digits.push(u16::try_from(digit).expect("15 bits fit"));
            magnitude >>= LONG_DIGIT_BITS;
        }
        // The count of digits, negative for a negative number.
        let count = i32::try_from(digits.len()).expect("at most 5 digits");
        self.bytes.push(LONG);
        let signed = if value < 0 { -count } else { count };
        self.bytes.extend_from_slice(&signed.to_le_bytes());
        for digit in digits {
            self.bytes.extend_from_slice(&digit.to_le_bytes());
        }
        self
    }

    pub(crate) fn bytes(&mut self, value: &[u8]) -> &mut Self {
        self.sized(BYTES, value.len());
        self.bytes.extend_from_slice(value);
        self
    }

    pub(crate) fn str(&mut self, value: &str) -> &mut Self {
        self.sized(STR, value.len());
        self.bytes.extend_from_slice(value.as_bytes());
        self
    }

    /// The header of a tuple of `len` items, which the caller writes next.
    pub(crate) fn tuple(&mut self, len: usize) -> &mut Self {
        self.sized(TUPLE, len)
    }

    /// The header of a list of `len` items, which the caller writes next.
    pub(crate) fn list(&mut self, len: usize) -> &mut Self {
        self.sized(LIST, len)
    }

    /// A type code and a size. `marshal` reads sizes as signed 32-bit numbers. The host's
    /// messages are built from what it holds, far below 2 GiB; a size past that is written
    /// as -1, which `marshal.loads` refuses ("bad marshal data"), failing the call: an
    /// answer is loaded whole or not at all, never cut short and read on as structure.
    fn sized(&mut self, code: u8, len: usize) -> &mut Self {
        let len = i32::try_from(len).unwrap_or(OVERSIZED);
        self.bytes.push(code);
        self.bytes.extend_from_slice(&len.to_le_bytes());
        self
    }

    /// `value` written by `item`, or `None`.
    pub(crate) fn opt<T>(
        &mut self,
        value: Option<T>,
        item: impl FnOnce(&mut Self, T),
    ) -> &mut Self {
        match value {
            Some(value) => item(self, value),
            None => {
                self.none();
            }
        }
        self
    }

    /// A list of `(name, value)` tuples.
    pub(crate) fn pairs(&mut self, pairs: &[(String, String)]) -> &mut Self {
        self.list(pairs.len());
        for (name, value) in pairs {
            self.tuple(2).str(name).str(value);
        }
        self
    }

    /// A column as the guest's `columns.py` reads it, a tuple `(name, kind, payload,
    /// present)`: the kind's name; numbers as little-endian bytes (8 a row), booleans a
    /// byte a row, strings as a pair of their distinct values and a u32 index a row; then
    /// which rows have a value, a byte a row, or `None` if all do.
    pub(crate) fn column(&mut self, column: &Column) -> &mut Self {
        self.tuple(4).str(&column.name);
        match &column.values {
            ColumnValues::Tag(v) => self.str("tag").dictionary(v),
            ColumnValues::String(v) => self.str("string").dictionary(v),
            ColumnValues::Int(v) => self.str("int").numbers(v, |x| x.to_le_bytes()),
            ColumnValues::UInt(v) => self.str("uint").numbers(v, |x| x.to_le_bytes()),
            ColumnValues::Float(v) => self.str("float").numbers(v, |x| x.to_le_bytes()),
            ColumnValues::Boolean(v) => self.str("boolean").flags(v),
            ColumnValues::Time(v) => self.str("time").numbers(v, |x| x.to_le_bytes()),
        };
        self.opt(column.present.as_ref(), |m, flags| {
            m.flags(flags);
        })
    }

    /// Booleans as `bytes`, one a row.
    fn flags(&mut self, flags: &[bool]) -> &mut Self {
        self.sized(BYTES, flags.len());
        self.bytes.extend(flags.iter().map(|f| u8::from(*f)));
        self
    }

    fn numbers<T: Copy>(&mut self, values: &[T], to_bytes: fn(T) -> [u8; 8]) -> &mut Self {
        self.sized(BYTES, values.len() * 8);
        self.bytes.reserve(values.len() * 8);
        for value in values {
            self.bytes.extend_from_slice(&to_bytes(*value));
        }
        self
    }

    /// Strings with their repeats folded: a tuple of the list of distinct values, in
    /// first-seen order, and the `bytes` of a little-endian u32 index a row.
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
        self.tuple(2).list(values.len());
        for value in values {
            self.str(value);
        }
        self.bytes(&indices)
    }
}

/// What the machine's Python makes of `message`: the `repr` of `marshal.loads`.
#[cfg(test)]
pub(crate) fn loaded(message: &[u8]) -> String {
    python_loads(message).unwrap_or_else(|error| panic!("marshal.loads refused it: {error}"))
}

/// The `repr` of `marshal.loads(message)` in the machine's Python, or its error.
#[cfg(test)]
fn python_loads(message: &[u8]) -> Result<String, String> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let load = "import marshal, sys; print(repr(marshal.loads(sys.stdin.buffer.read())), end='')";
    let mut python = Command::new(std::env::var("PYTHON").unwrap_or("python3".into()))
        .args(["-c", load])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (the build needs it too)");
    let mut stdin = python.stdin.take().expect("piped");
    stdin.write_all(message).expect("written");
    drop(stdin);
    let output = python.wait_with_output().expect("python3 ends");
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).expect("UTF-8");
    if output.status.success() {
        Ok(text(output.stdout))
    } else {
        Err(text(output.stderr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_load_as_the_python_objects_they_stand_for() {
        let mut m = Marshal::default();
        m.tuple(11)
            .none()
            .bool(true)
            .bool(false)
            .int(-7)
            .int(1_700_000_000_000_000_000)
            .int(i64::MIN)
            .int(i64::from(i32::MAX) + 1)
            .str("héllo \0 \u{1F600}")
            .bytes(b"\x00\xff")
            .pairs(&[("a".into(), "1".into())]);
        m.list(0);
        let message = m.finish();
        assert_eq!(
            loaded(&message),
            "(None, True, False, -7, 1700000000000000000, -9223372036854775808, 2147483648, \
             'héllo \\x00 😀', b'\\x00\\xff', [('a', '1')], [])"
        );
    }

    #[test]
    fn columns_load_as_columns_py_reads_them() {
        let mut m = Marshal::default();
        m.list(3)
            .column(&Column {
                name: "host".into(),
                values: ColumnValues::Tag(vec!["a".into(), "b".into(), "a".into()]),
                present: Some(vec![true, false, true]),
            })
            .column(&Column::dense("n", ColumnValues::Int(vec![-2, 258])))
            .column(&Column::dense(
                "ok",
                ColumnValues::Boolean(vec![true, false]),
            ));
        assert_eq!(
            loaded(&m.finish()),
            "[('host', 'tag', (['a', 'b'], b'\\x00\\x00\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00'), b'\\x01\\x00\\x01'), \
             ('n', 'int', b'\\xfe\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x02\\x01\\x00\\x00\\x00\\x00\\x00\\x00', None), \
             ('ok', 'boolean', b'\\x01\\x00', None)]"
        );
    }

    #[test]
    fn a_size_past_2_gib_is_refused_not_cut_short() {
        let mut m = Marshal::default();
        m.tuple(2).sized(BYTES, 1 << 31);
        // What a tenant sent, which a size cut short would have read on as structure.
        m.bytes.extend_from_slice(b"N");
        m.none();
        let error = python_loads(&m.finish()).expect_err("refused");
        assert!(error.contains("bad marshal data"), "{error}");
    }
}
