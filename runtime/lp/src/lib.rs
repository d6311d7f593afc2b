//! Line protocol in, owned rows out, with an error per bad line that quotes it.
//!
//! The grammar is InfluxDB's, parsed by hand in one pass (the `parser` module says why); around
//! it this crate adds what a server needs: timestamp precision, a default time for lines
//! without one, line numbers, and owned values that outlive the request body.
//!
//! ```
//! use sluice_lp::{parse, FieldValue, Precision};
//! let parsed = parse("cpu,host=a usage=0.5 10\ncpu usage=oops 11", Precision::Second, 0);
//! assert_eq!(parsed.lines[0].time_ns, 10_000_000_000);
//! assert_eq!(parsed.lines[0].fields[0].1, FieldValue::F64(0.5));
//! assert_eq!(parsed.errors[0].line_number, 2);
//! ```

mod parser;

use std::fmt::{self, Write as _};
use std::str::FromStr;

/// A field's value.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// `12i`
    I64(i64),
    /// `12u`
    U64(u64),
    /// `1.5`
    F64(f64),
    /// `"text"`
    String(String),
    /// `t`, `true`, `f`, `false`, ...
    Bool(bool),
}

/// One valid line.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// The measurement, unescaped.
    pub table: String,
    /// Tags in line order, unescaped.
    pub tags: Vec<(String, String)>,
    /// Fields in line order.
    pub fields: Vec<(String, FieldValue)>,
    /// Nanoseconds since the Unix epoch, after precision conversion.
    pub time_ns: i64,
}

/// Why one line was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line_number}: {message}: {original_line}")]
pub struct LineError {
    /// 1-based line number in the input.
    pub line_number: usize,
    /// The line as given.
    pub original_line: String,
    /// What is wrong with it.
    pub message: String,
}

/// The outcome of parsing a body: the valid lines and an error per invalid one.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ParsedBody {
    /// Valid lines in input order.
    pub lines: Vec<Line>,
    /// The 1-based input line number each valid line starts on.
    pub line_numbers: Vec<usize>,
    /// Invalid lines in input order.
    pub errors: Vec<LineError>,
    /// Lines of input, counting those inside quoted string values: the line numbers of
    /// a body appended to this one start after them.
    pub input_lines: usize,
    /// The input's last line runs to its end inside a quoted value or after an escaping
    /// backslash: text appended after a newline would go on with it.
    pub ends_open: bool,
}

impl ParsedBody {
    /// Appends `next`, parsed from the text that follows this one's after a newline: the
    /// outcome is the parse of the two texts joined by `\n`, unless this one
    /// [`ends_open`](Self::ends_open) (then only parsing the joined text tells).
    pub fn append(&mut self, next: ParsedBody) {
        let offset = self.input_lines;
        self.lines.extend(next.lines);
        self.line_numbers
            .extend(next.line_numbers.into_iter().map(|number| number + offset));
        self.errors
            .extend(next.errors.into_iter().map(|error| LineError {
                line_number: error.line_number + offset,
                ..error
            }));
        self.input_lines += next.input_lines;
        self.ends_open = next.ends_open;
    }
}

/// The unit of timestamps in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// Guessed from the magnitude of each timestamp.
    #[default]
    Auto,
    /// Seconds.
    Second,
    /// Milliseconds.
    Millisecond,
    /// Microseconds.
    Microsecond,
    /// Nanoseconds.
    Nanosecond,
}

/// An unknown precision name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid precision `{0}`: expected auto, s, ms, us or ns")]
pub struct PrecisionError(String);

impl FromStr for Precision {
    type Err = PrecisionError;

    /// Accepts `auto`, `s`/`second`, `ms`/`millisecond`, `us`/`u`/`microsecond`,
    /// `ns`/`n`/`nanosecond`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "auto" => Self::Auto,
            "s" | "second" => Self::Second,
            "ms" | "millisecond" => Self::Millisecond,
            "us" | "u" | "microsecond" => Self::Microsecond,
            "ns" | "n" | "nanosecond" => Self::Nanosecond,
            other => return Err(PrecisionError(other.to_string())),
        })
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Second => "s",
            Self::Millisecond => "ms",
            Self::Microsecond => "us",
            Self::Nanosecond => "ns",
        })
    }
}

impl Precision {
    /// Converts a timestamp in this precision to nanoseconds; `None` on overflow.
    pub fn to_nanos(self, timestamp: i64) -> Option<i64> {
        let unit = match self {
            Self::Auto => return Self::guess(timestamp).to_nanos(timestamp),
            Self::Second => 1_000_000_000,
            Self::Millisecond => 1_000_000,
            Self::Microsecond => 1_000,
            Self::Nanosecond => 1,
        };
        timestamp.checked_mul(unit)
    }

    /// The precision a timestamp most plausibly has, judged by its magnitude around
    /// the present era.
    fn guess(timestamp: i64) -> Self {
        match timestamp.unsigned_abs() {
            0..5_000_000_000 => Self::Second,
            5_000_000_000..5_000_000_000_000 => Self::Millisecond,
            5_000_000_000_000..5_000_000_000_000_000 => Self::Microsecond,
            _ => Self::Nanosecond,
        }
    }
}

impl Line {
    /// Appends this line to `out` as line protocol with its nanosecond timestamp,
    /// escaped so that [`parse`] reads back the same line.
    pub fn write_to(&self, out: &mut String) {
        escape_into(out, &self.table, b", ");
        for (key, value) in &self.tags {
            out.push(',');
            escape_into(out, key, b",= ");
            out.push('=');
            escape_into(out, value, b",= ");
        }
        for (i, (key, value)) in self.fields.iter().enumerate() {
            out.push(if i == 0 { ' ' } else { ',' });
            escape_into(out, key, b",= ");
            out.push('=');
            // Writing to a String cannot fail: the results of `write!` are ignored.
            match value {
                FieldValue::I64(v) => {
                    let _ = write!(out, "{v}i");
                }
                FieldValue::U64(v) => {
                    let _ = write!(out, "{v}u");
                }
                FieldValue::F64(v) => {
                    let _ = write!(out, "{v:?}");
                }
                FieldValue::String(v) => {
                    out.push('"');
                    escape_into(out, v, b"\"");
                    out.push('"');
                }
                FieldValue::Bool(v) => out.push_str(if *v { "t" } else { "f" }),
            }
        }
        let _ = write!(out, " {}", self.time_ns);
    }
}

/// Refuses a line the WAL could not give back as it is: the WAL stores lines as
/// [`Line::write_to`] renders them, and replay parses that text again. A float that is
/// not finite (`1e999` reads as infinity) has no text that parses; and a name or value
/// holding a backslash or a control character (a tab, NUL or newline after a
/// backslash) may render to text that parses otherwise, so such a line is rendered and
/// parsed again here, and refused unless it comes back equal. Lines without either
/// (nearly all) cost a scan of their bytes.
///
/// # Errors
///
/// What cannot be stored, for the line's error.
pub fn check_storable(line: &Line) -> Result<(), String> {
    for (key, value) in &line.fields {
        if let FieldValue::F64(v) = value
            && !v.is_finite()
        {
            return Err(format!(
                "field '{key}' is not a finite number (a float must be within ±1.8e308)"
            ));
        }
    }
    let risky = |text: &str| text.bytes().any(|b| b == b'\\' || b < 0x20);
    let strings = std::iter::once(line.table.as_str())
        .chain(line.tags.iter().flat_map(|(k, v)| [k.as_str(), v.as_str()]))
        .chain(line.fields.iter().flat_map(|(key, value)| {
            let text = match value {
                FieldValue::String(text) => text.as_str(),
                _ => "",
            };
            [key.as_str(), text]
        }));
    if !strings.into_iter().any(risky) {
        return Ok(());
    }
    let mut text = String::new();
    line.write_to(&mut text);
    let back = parse(&text, Precision::Nanosecond, line.time_ns);
    if back.errors.is_empty() && back.lines.len() == 1 && back.lines[0] == *line {
        Ok(())
    } else {
        Err(
            "the line holds a backslash or control character (tab, NUL, newline) that \
             line protocol cannot store exactly"
                .into(),
        )
    }
}

/// Appends `text` with a backslash before each backslash and each of `special` (all
/// ASCII, so working on bytes never splits a character).
fn escape_into(out: &mut String, text: &str, special: &[u8]) {
    let needs_escape = |b: &u8| *b == b'\\' || special.contains(b);
    if !text.as_bytes().iter().any(needs_escape) {
        out.push_str(text);
        return;
    }
    let mut copied_to = 0;
    for (at, byte) in text.bytes().enumerate() {
        if needs_escape(&byte) {
            out.push_str(&text[copied_to..at]);
            out.push('\\');
            copied_to = at;
        }
    }
    out.push_str(&text[copied_to..]);
}

/// The lines of `input` as [`parse`] splits them, without their newline: a newline
/// inside a quoted field value does not end a line.
///
/// ```
/// let text = "a f=\"x\ny\"\nb f=1i";
/// assert_eq!(sluice_lp::lines(text).collect::<Vec<_>>(), ["a f=\"x\ny\"", "b f=1i"]);
/// ```
pub fn lines(input: &str) -> impl Iterator<Item = &str> {
    let bytes = input.as_bytes();
    let mut start = 0;
    std::iter::from_fn(move || {
        if start > bytes.len() {
            return None;
        }
        let end = parser::line_end(bytes, start);
        let line = &input[start..end];
        start = end + 1;
        Some(line)
    })
}

/// Parses `input`; lines without a timestamp get `default_time_ns`. Blank lines and
/// `#` comments are skipped; a line may end in `\r\n`. A quoted string value may hold
/// newlines: the line then goes on past them, as in InfluxDB.
pub fn parse(input: &str, precision: Precision, default_time_ns: i64) -> ParsedBody {
    let mut parsed = ParsedBody::default();
    let mut line_number = 1;
    let mut last_line = "";
    for raw in lines(input) {
        last_line = raw;
        let number = line_number;
        line_number += 1 + raw.bytes().filter(|&b| b == b'\n').count();
        let text = raw.strip_suffix('\r').unwrap_or(raw);
        let body = text.trim_start_matches([' ', '\t']);
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        let line = parser::line(body).and_then(|raw| with_time(raw, precision, default_time_ns));
        match line {
            Ok(line) => {
                parsed.lines.push(line);
                parsed.line_numbers.push(number);
            }
            Err(message) => parsed.errors.push(LineError {
                line_number: number,
                original_line: text.to_string(),
                message,
            }),
        }
    }
    parsed.input_lines = line_number - 1;
    // The last line ends where the input does.
    parsed.ends_open = parser::runs_on(input.as_bytes(), input.len() - last_line.len());
    parsed
}

fn with_time(
    raw: parser::RawLine,
    precision: Precision,
    default_time_ns: i64,
) -> Result<Line, String> {
    let time_ns = match raw.timestamp {
        Some(ts) => precision
            .to_nanos(ts)
            .ok_or_else(|| format!("timestamp {ts} is out of range for precision {precision}"))?,
        None => default_time_ns,
    };
    Ok(Line {
        table: raw.table,
        tags: raw.tags,
        fields: raw.fields,
        time_ns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_escapes_types_and_precisions() {
        let body = "my\\ table,ta\\,g=v\\=1 i=1i,u=2u,f=1.5,s=\"a \\\"q\\\"\",b=true 3\n\n# note\nbad line";
        let parsed = parse(body, Precision::Millisecond, 7);
        assert_eq!(parsed.lines.len(), 1);
        let line = &parsed.lines[0];
        assert_eq!(line.table, "my table");
        assert_eq!(line.tags, vec![("ta,g".to_string(), "v=1".to_string())]);
        assert_eq!(
            line.fields,
            vec![
                ("i".into(), FieldValue::I64(1)),
                ("u".into(), FieldValue::U64(2)),
                ("f".into(), FieldValue::F64(1.5)),
                ("s".into(), FieldValue::String("a \"q\"".into())),
                ("b".into(), FieldValue::Bool(true)),
            ]
        );
        assert_eq!(line.time_ns, 3_000_000);
        assert_eq!(parsed.errors.len(), 1);
        assert_eq!(parsed.errors[0].line_number, 4);
        assert_eq!(parsed.errors[0].original_line, "bad line");
    }

    #[test]
    fn strings_may_span_lines_and_line_numbers_follow_the_input() {
        let parsed = parse(
            "m s=\"a\nb\" 1\r\n\n  m f=1 2\nm f=",
            Precision::Nanosecond,
            0,
        );
        assert_eq!(
            parsed.lines[0].fields,
            vec![("s".to_string(), FieldValue::String("a\nb".into()))]
        );
        assert_eq!(parsed.lines[1].time_ns, 2);
        assert_eq!(parsed.line_numbers, vec![1, 4]);
        assert_eq!(parsed.errors[0].line_number, 5);
        assert_eq!(parsed.errors[0].original_line, "m f=");
    }

    #[test]
    fn missing_timestamp_takes_the_default_and_auto_guesses() {
        let parsed = parse(
            "m f=1\nm f=2 1700000000\nm f=3 1700000000000000000",
            Precision::Auto,
            42,
        );
        let times: Vec<i64> = parsed.lines.iter().map(|l| l.time_ns).collect();
        assert_eq!(
            times,
            vec![42, 1_700_000_000_000_000_000, 1_700_000_000_000_000_000]
        );
    }

    #[test]
    fn precision_names_and_aliases() {
        for (name, precision) in [
            ("auto", Precision::Auto),
            ("u", Precision::Microsecond),
            ("n", Precision::Nanosecond),
            ("second", Precision::Second),
        ] {
            assert_eq!(name.parse::<Precision>(), Ok(precision));
        }
        assert!("minutes".parse::<Precision>().is_err());
        assert_eq!(Precision::Second.to_nanos(i64::MAX), None);
    }
}
