//! Every acknowledged line comes back from the WAL as it went in: arbitrary line
//! protocol (backslashes before anything, tabs, NUL, newlines, floats at and past the
//! edges) written, logged, replayed after a restart, and compared row for row.

use super::*;
use arrow::compute::concat_batches;
use arrow::record_batch::RecordBatch;
use proptest::prelude::*;

/// Pieces names and values are made of: each special character bare and escaped.
const PIECES: &[&str] = &[
    "a", "b", "é", "\\", "\\\\", " ", "\\ ", ",", "\\,", "=", "\\=", "\t", "\\\t", "\0", "\\\0",
    "\n", "\\\n", "\r", "\"", "\\\"",
];

const FLOATS: &[&str] = &[
    "1.5",
    "-0.0",
    "0.1",
    "1e-320",
    "4.9e-324",
    "1.7976931348623157e308",
    "1e308",
    "1e999",
    "-1e999",
    "2e308",
];

fn name() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(PIECES), 1..4).prop_map(|p| p.concat())
}

fn field_value() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(FLOATS).prop_map(str::to_string),
        any::<i64>().prop_map(|v| format!("{v}i")),
        name().prop_map(|text| format!("\"{text}\"")),
        Just("t".to_string()),
    ]
}

fn line() -> impl Strategy<Value = String> {
    (
        name(),
        prop::collection::vec((name(), name()), 0..3),
        prop::collection::vec((name(), field_value()), 1..3),
        0_i64..1_000,
    )
        .prop_map(|(table, tags, fields, time)| {
            let tags: String = tags.iter().map(|(k, v)| format!(",{k}={v}")).collect();
            let fields: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("{table}{tags} {} {time}", fields.join(","))
        })
}

/// Every table's rows, one batch each, in name order.
fn all_rows(buffer: &WriteBuffer) -> Vec<(String, RecordBatch)> {
    let Some(database) = buffer.catalog().database("db") else {
        return Vec::new();
    };
    database
        .tables
        .keys()
        .map(|table| {
            let data = buffer.table_data("db", table).expect("listed");
            let rows = concat_batches(&data.schema, &data.batches).expect("one schema");
            (table.clone(), rows)
        })
        .collect()
}

fn written_and_replayed(body: &str) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let (buffer, _) = super::tests::open(dir.path()).await;
        let request = WriteRequest {
            no_sync: true,
            ..super::tests::request("db", body)
        };
        // Bad lines are refused, with or without good ones: either way, what was
        // acknowledged must come back.
        let _ = buffer.write_lp(request).await;
        buffer.flush().await.expect("flushed");
        let before = all_rows(&buffer);
        drop(buffer);
        let (reopened, recovery) = super::tests::open(dir.path()).await;
        prop_assert_eq!(&recovery.problems, &[]);
        prop_assert_eq!(all_rows(&reopened), before);
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn acknowledged_lines_come_back_from_the_wal_as_they_went_in(
        lines in prop::collection::vec(line(), 1..12)
    ) {
        written_and_replayed(&lines.join("\n"))?;
    }
}

#[tokio::test]
async fn lines_that_cannot_be_stored_exactly_are_refused_at_write() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (buffer, _) = super::tests::open(dir.path()).await;
    let body = "m f=1e999 1\nm,t=a\\\nb f=1 2\nm f=2 3";
    let outcome = buffer
        .write_lp(WriteRequest {
            no_sync: true,
            ..super::tests::request("db", body)
        })
        .await
        .expect("the good line is written");
    assert_eq!(outcome.lines_written, 1);
    let refused: Vec<_> = outcome.errors.iter().map(|e| e.line_number).collect();
    assert_eq!(refused, [1, 2]);
    assert!(
        outcome.errors[0]
            .error_message
            .contains("not a finite number")
    );
}
