//! Property tests: no input makes the parser panic, and every line written with the
//! escaping rules parses back to what was written.

use proptest::prelude::*;
use sluice_lp::{FieldValue, Precision, parse};

fn escape(text: &str, special: &[char]) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c == '\\' || special.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn name() -> impl Strategy<Value = String> {
    // Names may hold the characters that need escaping, but not newlines, and may not
    // start with `#` (a comment) or end in a backslash (it would escape the separator).
    "[a-zA-Z_][a-zA-Z0-9_ ,=\\-\\.éü]{0,12}[a-zA-Z0-9]"
}

fn field_value() -> impl Strategy<Value = FieldValue> {
    prop_oneof![
        any::<i64>().prop_map(FieldValue::I64),
        any::<u64>().prop_map(FieldValue::U64),
        (-1.0e12f64..1.0e12).prop_map(FieldValue::F64),
        "[a-zA-Z0-9 ,=\"\\\\é]{0,16}".prop_map(FieldValue::String),
        any::<bool>().prop_map(FieldValue::Bool),
    ]
}

fn render(value: &FieldValue) -> String {
    match value {
        FieldValue::I64(v) => format!("{v}i"),
        FieldValue::U64(v) => format!("{v}u"),
        FieldValue::F64(v) => format!("{v:?}"),
        FieldValue::String(v) => format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")),
        FieldValue::Bool(v) => v.to_string(),
    }
}

/// A line of these parts, escaped as line protocol requires.
fn line_text(
    measurement: &str,
    tags: &[(String, String)],
    fields: &[(String, FieldValue)],
    timestamp: Option<i64>,
) -> String {
    let mut line = escape(measurement, &[',', ' ']);
    for (key, value) in tags {
        line.push_str(&format!(
            ",{}={}",
            escape(key, &[',', '=', ' ']),
            escape(value, &[',', '=', ' '])
        ));
    }
    let rendered: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}={}", escape(k, &[',', '=', ' ']), render(v)))
        .collect();
    line.push(' ');
    line.push_str(&rendered.join(","));
    if let Some(ts) = timestamp {
        line.push_str(&format!(" {ts}"));
    }
    line
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_input_never_panics(input in "\\PC{0,200}", precision in 0usize..5) {
        let precision = [Precision::Auto, Precision::Second, Precision::Millisecond, Precision::Microsecond, Precision::Nanosecond][precision];
        let parsed = parse(&input, precision, 0);
        for error in &parsed.errors {
            prop_assert!(error.line_number >= 1);
        }
    }

    #[test]
    fn lp_like_input_never_panics(parts in proptest::collection::vec("[a-z]{1,3}|[ ,=\"\\\\\n]|[0-9]{1,20}[iu]?|t|f", 0..40)) {
        let input: String = parts.concat();
        let _ = parse(&input, Precision::Auto, 0);
    }

    #[test]
    fn escaped_lines_round_trip(
        measurement in name(),
        tags in proptest::collection::btree_map(name(), name(), 0..4),
        fields in proptest::collection::btree_map(name(), field_value(), 1..4),
        timestamp in proptest::option::of(-1_000_000_000_000_000_000i64..4_000_000_000_000_000_000),
    ) {
        let tags: Vec<_> = tags.into_iter().collect();
        let fields: Vec<_> = fields.into_iter().collect();
        let line = line_text(&measurement, &tags, &fields, timestamp);
        let parsed = parse(&line, Precision::Nanosecond, 7);
        prop_assert!(parsed.errors.is_empty(), "{line}: {:?}", parsed.errors);
        let got = &parsed.lines[0];
        prop_assert_eq!(&got.table, &measurement);
        prop_assert_eq!(&got.tags, &tags);
        prop_assert_eq!(&got.fields, &fields);
        prop_assert_eq!(got.time_ns, timestamp.unwrap_or(7));

        // Written back out, the line parses to itself.
        let mut written = String::new();
        got.write_to(&mut written);
        let reparsed = parse(&written, Precision::Nanosecond, 0);
        prop_assert!(reparsed.errors.is_empty(), "{written}: {:?}", reparsed.errors);
        prop_assert_eq!(&reparsed.lines[0], got);
    }
}

/// A line's table, tags, fields and timestamp.
type LineParts = (
    String,
    Vec<(String, String)>,
    Vec<(String, FieldValue)>,
    Option<i64>,
);

/// A line as InfluxDB's own parser reads it, in this crate's terms.
fn reference(line: &influxdb_line_protocol::ParsedLine<'_>) -> LineParts {
    use influxdb_line_protocol::FieldValue as Theirs;
    let tags = line
        .series
        .tag_set
        .iter()
        .flatten()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let fields = line
        .field_set
        .iter()
        .map(|(k, v)| {
            let value = match v {
                Theirs::I64(v) => FieldValue::I64(*v),
                Theirs::U64(v) => FieldValue::U64(*v),
                Theirs::F64(v) => FieldValue::F64(*v),
                Theirs::String(v) => FieldValue::String(v.to_string()),
                Theirs::Boolean(v) => FieldValue::Bool(*v),
            };
            (k.to_string(), value)
        })
        .collect();
    (
        line.series.measurement.to_string(),
        tags,
        fields,
        line.timestamp,
    )
}

/// Checks that every line InfluxDB's parser accepts in `input` is accepted here and
/// read the same way.
fn agrees_with_influxdb(input: &str) -> Result<(), TestCaseError> {
    let theirs: Vec<_> = influxdb_line_protocol::parse_lines(input).collect();
    let ours = parse(input, Precision::Nanosecond, i64::MIN);
    prop_assert_eq!(
        theirs.len(),
        ours.lines.len() + ours.errors.len(),
        "a different number of lines in {:?}",
        input
    );
    let mut accepted = ours.lines.iter();
    let mut ours_in_order: Vec<Option<&sluice_lp::Line>> = Vec::new();
    let mut numbers = ours.line_numbers.iter().peekable();
    let mut errors = ours.errors.iter().peekable();
    while numbers.peek().is_some() || errors.peek().is_some() {
        match (numbers.peek(), errors.peek()) {
            (Some(&&n), Some(e)) if e.line_number < n => {
                errors.next();
                ours_in_order.push(None);
            }
            (Some(_), _) => {
                numbers.next();
                ours_in_order.push(accepted.next());
            }
            (None, Some(_)) => {
                errors.next();
                ours_in_order.push(None);
            }
            (None, None) => unreachable!(),
        }
    }
    for (their, our) in theirs.iter().zip(ours_in_order) {
        let Ok(their) = their else { continue };
        let Some(our) = our else {
            return Err(TestCaseError::fail(format!(
                "InfluxDB accepts a line of {input:?} that is refused here: {:?}",
                ours.errors
            )));
        };
        let (table, tags, fields, timestamp) = reference(their);
        prop_assert_eq!(&our.table, &table);
        prop_assert_eq!(&our.tags, &tags);
        prop_assert_eq!(&our.fields, &fields);
        prop_assert_eq!(our.time_ns, timestamp.unwrap_or(i64::MIN));
    }
    Ok(())
}

/// Pieces of line protocol, valid and not: names, escapes, quotes, numbers of every
/// shape, booleans, separators and newlines.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z]{1,3}",
        Just(" ".to_string()),
        Just(",".to_string()),
        Just("=".to_string()),
        Just("\"".to_string()),
        Just("\\".to_string()),
        Just("\n".to_string()),
        Just("\t".to_string()),
        Just("é".to_string()),
        "-?[0-9]{1,20}(\\.[0-9]{0,3})?([eE][-+]?[0-9]{0,3})?[iu]?",
        "t|T|true|True|TRUE|f|F|false|False|FALSE",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn generated_lines_are_read_as_influxdb_reads_them(
        measurement in name(),
        tags in proptest::collection::vec((name(), name()), 0..4),
        fields in proptest::collection::vec((name(), field_value()), 1..4),
        timestamp in proptest::option::of(any::<i64>()),
    ) {
        let line = line_text(&measurement, &tags, &fields, timestamp);
        prop_assert!(influxdb_line_protocol::parse_lines(&line).all(|l| l.is_ok()), "the generator made a line InfluxDB refuses: {line}");
        agrees_with_influxdb(&line)?;
    }

    #[test]
    fn every_line_influxdb_accepts_is_accepted_alike(pieces in proptest::collection::vec(piece(), 1..30)) {
        // Lines with a measurement, a space and a field are likelier to be valid.
        let input = format!("m{} f=1", pieces.concat());
        agrees_with_influxdb(&input)?;
        agrees_with_influxdb(&pieces.concat())?;
    }
}

/// Lines of line protocol, valid or not, with quotes, escapes and newlines.
fn lp_like() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        "[a-z]{1,3}|[ ,=\"\\\\\n#]|[0-9]{1,20}[iu]?|t|f|m,t=a f=1 2|m f=\"a",
        0..30,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    /// A body parsed in parts, then appended, is the body parsed whole, wherever it is
    /// cut, unless a part ends open.
    #[test]
    fn parts_appended_are_the_whole_parsed(first in lp_like(), second in lp_like()) {
        let mut appended = parse(&first, Precision::Nanosecond, 5);
        let whole = parse(&format!("{first}\n{second}"), Precision::Nanosecond, 5);
        if appended.ends_open {
            // The first part's last line goes on into the second.
            prop_assert!(first.contains(['"', '\\']));
        } else {
            appended.append(parse(&second, Precision::Nanosecond, 5));
            prop_assert_eq!(appended, whole);
        }
    }
}

#[test]
fn a_body_ends_open_inside_a_quoted_value_or_after_a_backslash() {
    let ends_open = |text: &str| parse(text, Precision::Nanosecond, 0).ends_open;
    assert!(ends_open("m f=\"a"));
    assert!(ends_open("m,t=a f=1\nm f=\"a\nb"));
    assert!(ends_open("m f=1 2\\"));
    assert!(ends_open("# a b=\"c"));
    assert!(!ends_open("m f=\"a\""));
    assert!(!ends_open("m f=\"a\"\n"));
    assert!(!ends_open("m,t=\"a f=1"));
    assert!(!ends_open(""));
}
