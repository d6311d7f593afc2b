//! The line-protocol grammar, by hand, one pass over the bytes of each line.
//!
//! It accepts what InfluxDB's own parser (the `influxdb-line-protocol` crate) accepts
//! and reads it the same way: the property tests compare the two on generated lines.
//! It exists because it is about ten times faster: the combinator parser builds and
//! drops an error value for every alternative it tries (an integer before a float, a
//! float before a string), which made parsing the most expensive step of ingest.
//!
//! Every delimiter is ASCII and no byte of a multi-byte UTF-8 character is ASCII, so
//! cutting the text at delimiter positions always cuts between characters.

use crate::FieldValue;

/// A line's parts, before precision is applied.
pub(crate) struct RawLine {
    pub table: String,
    pub tags: Vec<(String, String)>,
    pub fields: Vec<(String, FieldValue)>,
    pub timestamp: Option<i64>,
}

/// Where the line that starts at `start` ends: at the first newline that is not inside
/// a quoted field value. Quotes count only after the first space (in the field set),
/// and only where a value starts, as InfluxDB splits lines.
pub(crate) fn line_end(bytes: &[u8], start: usize) -> usize {
    scan_line(bytes, start).0
}

/// Whether the line that starts at `start` runs to the end of `bytes` inside a quoted
/// value or after an escaping backslash: text appended after a newline would go on
/// with it.
pub(crate) fn runs_on(bytes: &[u8], start: usize) -> bool {
    scan_line(bytes, start).1
}

/// The end of the line that starts at `start`, and whether it is open there.
fn scan_line(bytes: &[u8], start: usize) -> (usize, bool) {
    let (mut escaped, mut in_fields, mut quoted) = (false, false, false);
    let (mut equals, mut commas) = (0_usize, 0_usize);
    for (offset, &byte) in bytes[start..].iter().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match byte {
            b'\\' => escaped = true,
            b' ' => in_fields = true,
            b'=' if in_fields && !quoted => equals += 1,
            b',' if in_fields && !quoted => commas += 1,
            b'"' if in_fields && equals > commas => quoted = !quoted,
            b'\n' if !quoted => return (start + offset, false),
            _ => {}
        }
    }
    (bytes.len(), quoted || escaped)
}

/// Which characters end a name and which may be escaped in it.
struct NameRules {
    what: &'static str,
    ends_at: fn(u8) -> bool,
    escapable: fn(u8) -> bool,
}

fn whitespace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n')
}

const MEASUREMENT: NameRules = NameRules {
    what: "measurement",
    ends_at: |b| whitespace(b) || b == b',' || b == 0,
    escapable: |b| matches!(b, b',' | b' ' | b'\\'),
};
const TAG_KEY: NameRules = NameRules {
    what: "tag key",
    ends_at: |b| whitespace(b) || b == b'=',
    escapable: |b| matches!(b, b',' | b'=' | b' ' | b'\\'),
};
const TAG_VALUE: NameRules = NameRules {
    what: "tag value",
    ends_at: |b| whitespace(b) || b == b',',
    escapable: |b| matches!(b, b',' | b'=' | b' ' | b'\\'),
};
const FIELD_KEY: NameRules = NameRules {
    what: "field key",
    ends_at: |b| whitespace(b) || b == b'=',
    escapable: |b| matches!(b, b',' | b'=' | b' ' | b'\\'),
};

/// A cursor over one line.
struct Cursor<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn rest(&self) -> &'a str {
        &self.text[self.at..]
    }

    fn skip_spaces(&mut self) -> usize {
        let start = self.at;
        while self.peek() == Some(b' ') {
            self.at += 1;
        }
        self.at - start
    }

    /// A name up to its end character; escapes resolved. A backslash keeps the
    /// character after it in the name, whatever it is.
    fn name(&mut self, rules: &NameRules) -> Result<String, String> {
        let start = self.at;
        let mut unescaped: Option<String> = None;
        let mut copied_to = start;
        while let Some(byte) = self.peek() {
            if byte == b'\\' {
                let Some(next) = self.bytes.get(self.at + 1).copied() else {
                    return Err("Measurements, tag keys and values, and field keys may not end with a backslash".into());
                };
                let out = unescaped.get_or_insert_with(String::new);
                out.push_str(&self.text[copied_to..self.at]);
                if (rules.escapable)(next) {
                    out.push(char::from(next));
                    self.at += 2;
                } else {
                    // Not an escape: the backslash and the whole next character stay.
                    let width = self.text[self.at + 1..]
                        .chars()
                        .next()
                        .map_or(1, char::len_utf8);
                    out.push_str(&self.text[self.at..self.at + 1 + width]);
                    self.at += 1 + width;
                }
                copied_to = self.at;
            } else if (rules.ends_at)(byte) {
                break;
            } else {
                self.at += 1;
            }
        }
        if self.at == start {
            return Err(format!("missing {}", rules.what));
        }
        Ok(match unescaped {
            Some(mut out) => {
                out.push_str(&self.text[copied_to..self.at]);
                out
            }
            None => self.text[start..self.at].to_string(),
        })
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
        self.at - start
    }

    /// A field value: integer (`1i`), unsigned (`1u`), float, string or boolean.
    fn field_value(&mut self) -> Result<FieldValue, String> {
        match self.peek() {
            Some(b'"') => self.string().map(FieldValue::String),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't' | b'T' | b'f' | b'F') => {
                let start = self.at;
                while self.peek().is_some_and(|b| b.is_ascii_alphabetic()) {
                    self.at += 1;
                }
                match &self.text[start..self.at] {
                    "t" | "T" | "true" | "True" | "TRUE" => Ok(FieldValue::Bool(true)),
                    "f" | "F" | "false" | "False" | "FALSE" => Ok(FieldValue::Bool(false)),
                    other => Err(format!("invalid field value '{other}'")),
                }
            }
            _ => Err(format!("invalid field value at '{}'", preview(self.rest()))),
        }
    }

    fn number(&mut self) -> Result<FieldValue, String> {
        let start = self.at;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.at += 1;
        }
        if self.digits() == 0 {
            return Err(format!(
                "invalid field value at '{}'",
                preview(&self.text[start..])
            ));
        }
        match self.peek() {
            Some(b'i') => {
                let text = &self.text[start..self.at];
                self.at += 1;
                return text
                    .parse()
                    .map(FieldValue::I64)
                    .map_err(|_| format!("Unable to parse integer value '{text}'"));
            }
            Some(b'u') if !negative => {
                let text = &self.text[start..self.at];
                self.at += 1;
                return text
                    .parse()
                    .map(FieldValue::U64)
                    .map_err(|_| format!("Unable to parse unsigned integer value '{text}'"));
            }
            _ => {}
        }
        // A fraction and an exponent count only when complete: `1.` and `1e` are not
        // floats, and what is left over fails as trailing content.
        if self.peek() == Some(b'.') && self.bytes.get(self.at + 1).is_some_and(u8::is_ascii_digit)
        {
            self.at += 1;
            self.digits();
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            let mark = self.at;
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if self.digits() == 0 {
                self.at = mark;
            }
        }
        let text = &self.text[start..self.at];
        text.parse()
            .map(FieldValue::F64)
            .map_err(|_| format!("Unable to parse floating-point value '{text}'"))
    }

    /// A quoted string: `\"` is a quote, `\\` a backslash, any other backslash stays.
    fn string(&mut self) -> Result<String, String> {
        self.at += 1;
        let mut out = String::new();
        let mut copied_to = self.at;
        loop {
            match self.peek() {
                None => {
                    return Err(
                        "unterminated string field value: a closing quote is missing".into(),
                    );
                }
                Some(b'"') => {
                    out.push_str(&self.text[copied_to..self.at]);
                    self.at += 1;
                    return Ok(out);
                }
                Some(b'\\') if matches!(self.bytes.get(self.at + 1), Some(b'"' | b'\\')) => {
                    out.push_str(&self.text[copied_to..self.at]);
                    self.at += 1;
                    copied_to = self.at;
                    self.at += 1;
                }
                Some(_) => self.at += 1,
            }
        }
    }
}

fn preview(text: &str) -> &str {
    let end = text.char_indices().nth(20).map_or(text.len(), |(i, _)| i);
    &text[..end]
}

/// Parses one line (no leading whitespace, not a comment, not empty).
pub(crate) fn line(text: &str) -> Result<RawLine, String> {
    let mut cursor = Cursor {
        text,
        bytes: text.as_bytes(),
        at: 0,
    };
    let table = cursor.name(&MEASUREMENT).map_err(|e| {
        if e.starts_with("missing") {
            "Invalid measurement was provided".into()
        } else {
            e
        }
    })?;
    let mut tags = Vec::new();
    while cursor.peek() == Some(b',') {
        cursor.at += 1;
        let malformed = |e: String| {
            if e.starts_with("missing") {
                "Tag Set Malformed".to_string()
            } else {
                e
            }
        };
        let key = cursor.name(&TAG_KEY).map_err(malformed)?;
        if cursor.peek() != Some(b'=') {
            return Err(format!("Tag Set Malformed: tag key '{key}' has no value"));
        }
        cursor.at += 1;
        let value = cursor.name(&TAG_VALUE).map_err(malformed)?;
        tags.push((key, value));
    }
    if cursor.skip_spaces() == 0 {
        return Err(match cursor.peek() {
            None => "No fields were provided".into(),
            Some(_) => format!(
                "expected a space before the fields, found '{}'",
                preview(cursor.rest())
            ),
        });
    }
    let mut fields = Vec::new();
    loop {
        let key = cursor.name(&FIELD_KEY).map_err(|e| {
            if fields.is_empty() && e.starts_with("missing") {
                "No fields were provided".into()
            } else {
                e
            }
        })?;
        if cursor.peek() != Some(b'=') {
            return Err(format!("field '{key}' has no value: expected '='"));
        }
        cursor.at += 1;
        let value = cursor.field_value()?;
        fields.push((key, value));
        match cursor.peek() {
            Some(b',') => {
                cursor.at += 1;
                // InfluxDB's parser accepts one trailing comma after a single field.
                if fields.len() == 1 && matches!(cursor.peek(), None | Some(b' ')) {
                    break;
                }
            }
            None | Some(b' ') => break,
            Some(_) => {
                return Err(format!(
                    "Could not parse entire line. Found trailing content: '{}'",
                    preview(cursor.rest())
                ));
            }
        }
    }
    cursor.skip_spaces();
    let mut timestamp = None;
    if cursor.peek().is_some() {
        let start = cursor.at;
        if cursor.peek() == Some(b'-') {
            cursor.at += 1;
        }
        if cursor.digits() > 0 {
            let digits = &text[start..cursor.at];
            timestamp = Some(
                digits
                    .parse()
                    .map_err(|_| format!("Unable to parse timestamp value '{digits}'"))?,
            );
            cursor.skip_spaces();
        } else {
            cursor.at = start;
        }
        if cursor.peek().is_some() {
            return Err(format!(
                "Could not parse entire line. Found trailing content: '{}'",
                preview(cursor.rest())
            ));
        }
    }
    Ok(RawLine {
        table,
        tags,
        fields,
        timestamp,
    })
}
