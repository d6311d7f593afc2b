//! Line protocol in, owned rows out, with an error per bad line that quotes it.
//!
//! The tokenising is `influxdb-line-protocol`'s (the parser InfluxDB itself uses); this
//! crate adds what a server needs around it: timestamp precision, a default time for
//! lines without one, line numbers, and owned values that outlive the request body.
//!
//! ```
//! use sluice_lp::{parse, FieldValue, Precision};
//! let parsed = parse("cpu,host=a usage=0.5 10\ncpu usage=oops 11", Precision::Second, 0);
//! assert_eq!(parsed.lines[0].time_ns, 10_000_000_000);
//! assert_eq!(parsed.lines[0].fields[0].1, FieldValue::F64(0.5));
//! assert_eq!(parsed.errors[0].line_number, 2);
//! ```

use influxdb_line_protocol::FieldValue as Parsed;
use std::fmt;
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
    /// Invalid lines in input order.
    pub errors: Vec<LineError>,
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
        escape_into(out, &self.table, &[',', ' ']);
        for (key, value) in &self.tags {
            out.push(',');
            escape_into(out, key, &[',', '=', ' ']);
            out.push('=');
            escape_into(out, value, &[',', '=', ' ']);
        }
        for (i, (key, value)) in self.fields.iter().enumerate() {
            out.push(if i == 0 { ' ' } else { ',' });
            escape_into(out, key, &[',', '=', ' ']);
            out.push('=');
            match value {
                FieldValue::I64(v) => out.push_str(&format!("{v}i")),
                FieldValue::U64(v) => out.push_str(&format!("{v}u")),
                FieldValue::F64(v) => out.push_str(&format!("{v:?}")),
                FieldValue::String(v) => {
                    out.push('"');
                    escape_into(out, v, &['"']);
                    out.push('"');
                }
                FieldValue::Bool(v) => out.push_str(if *v { "t" } else { "f" }),
            }
        }
        out.push_str(&format!(" {}", self.time_ns));
    }
}

fn escape_into(out: &mut String, text: &str, special: &[char]) {
    for c in text.chars() {
        if c == '\\' || special.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
}

/// Parses `input`; lines without a timestamp get `default_time_ns`. Blank lines and
/// `#` comments are skipped.
pub fn parse(input: &str, precision: Precision, default_time_ns: i64) -> ParsedBody {
    let mut parsed = ParsedBody::default();
    for (index, raw) in input.split('\n').enumerate() {
        let text = raw.trim_end_matches('\r');
        if text.trim().is_empty() || text.trim_start().starts_with('#') {
            continue;
        }
        let error = |message: String| LineError {
            line_number: index + 1,
            original_line: text.to_string(),
            message,
        };
        let mut lines = influxdb_line_protocol::parse_lines(text);
        match lines.next() {
            Some(Ok(line)) => match owned(line, precision, default_time_ns) {
                Ok(line) => parsed.lines.push(line),
                Err(message) => parsed.errors.push(error(message)),
            },
            Some(Err(e)) => parsed.errors.push(error(e.to_string())),
            None => {}
        }
    }
    parsed
}

fn owned(
    line: influxdb_line_protocol::ParsedLine<'_>,
    precision: Precision,
    default_time_ns: i64,
) -> Result<Line, String> {
    let time_ns = match line.timestamp {
        Some(ts) => precision
            .to_nanos(ts)
            .ok_or_else(|| format!("timestamp {ts} is out of range for precision {precision}"))?,
        None => default_time_ns,
    };
    let tags = line
        .series
        .tag_set
        .map(|tags| {
            tags.into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .unwrap_or_default();
    let fields = line
        .field_set
        .into_iter()
        .map(|(key, value)| {
            let value = match value {
                Parsed::I64(v) => FieldValue::I64(v),
                Parsed::U64(v) => FieldValue::U64(v),
                Parsed::F64(v) => FieldValue::F64(v),
                Parsed::String(v) => FieldValue::String(v.to_string()),
                Parsed::Boolean(v) => FieldValue::Bool(v),
            };
            (key.to_string(), value)
        })
        .collect();
    Ok(Line {
        table: line.series.measurement.to_string(),
        tags,
        fields,
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
