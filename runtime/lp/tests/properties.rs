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
        let mut line = escape(&measurement, &[',', ' ']);
        for (key, value) in &tags {
            line.push_str(&format!(",{}={}", escape(key, &[',', '=', ' ']), escape(value, &[',', '=', ' '])));
        }
        let rendered: Vec<String> = fields.iter().map(|(k, v)| format!("{}={}", escape(k, &[',', '=', ' ']), render(v))).collect();
        line.push(' ');
        line.push_str(&rendered.join(","));
        if let Some(ts) = timestamp {
            line.push_str(&format!(" {ts}"));
        }
        let parsed = parse(&line, Precision::Nanosecond, 7);
        prop_assert!(parsed.errors.is_empty(), "{line}: {:?}", parsed.errors);
        let got = &parsed.lines[0];
        prop_assert_eq!(&got.table, &measurement);
        prop_assert_eq!(got.tags.clone(), tags.into_iter().collect::<Vec<_>>());
        prop_assert_eq!(got.fields.clone(), fields.into_iter().collect::<Vec<_>>());
        prop_assert_eq!(got.time_ns, timestamp.unwrap_or(7));

        // Written back out, the line parses to itself.
        let mut written = String::new();
        got.write_to(&mut written);
        let reparsed = parse(&written, Precision::Nanosecond, 0);
        prop_assert!(reparsed.errors.is_empty(), "{written}: {:?}", reparsed.errors);
        prop_assert_eq!(&reparsed.lines[0], got);
    }
}
