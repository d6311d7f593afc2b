use super::*;
use arrow::array::AsArray;
use arrow::datatypes::Int64Type;

fn request<'a>(database: &'a str, body: &'a str) -> WriteRequest<'a> {
    WriteRequest { database, body, precision: Precision::Nanosecond, accept_partial: true, no_sync: false, default_time_ns: 42 }
}

fn rows(buffer: &WriteBuffer, database: &str, table: &str) -> Vec<i64> {
    let Some((_, batches)) = buffer.table_batches(database, table) else { return Vec::new() };
    batches
        .iter()
        .flat_map(|b| b.column_by_name("f").expect("f").as_primitive::<Int64Type>().values().to_vec())
        .collect()
}

#[tokio::test]
async fn acknowledged_writes_are_queryable_and_survive_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (buffer, _) = WriteBuffer::open(dir.path()).expect("opens");
    let flusher = buffer.spawn_flusher(Duration::from_millis(5));
    let outcome = buffer.write_lp(request("db", "m f=1i 1\nm f=2i")).await.expect("written");
    assert_eq!(outcome, WriteOutcome { lines_written: 2, errors: vec![] });
    assert_eq!(rows(&buffer, "db", "m"), [1, 2]);
    flusher.abort();
    drop(buffer);

    let (reopened, recovery) = WriteBuffer::open(dir.path()).expect("reopens");
    assert_eq!((recovery.files, recovery.rows), (1, 2));
    assert_eq!(rows(&reopened, "db", "m"), [1, 2]);
    let (_, batches) = reopened.table_batches("db", "m").expect("table");
    let times = batches[0].column_by_name("time").expect("time");
    assert_eq!(times.as_primitive::<arrow::datatypes::TimestampNanosecondType>().values(), &[1, 42]);
    assert!(reopened.catalog().database("db").is_some());
}

#[tokio::test]
async fn no_sync_writes_return_at_once_and_appear_after_the_flush() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (buffer, _) = WriteBuffer::open(dir.path()).expect("opens");
    let outcome = buffer.write_lp(WriteRequest { no_sync: true, ..request("db", "m f=7i") }).await.expect("queued");
    assert_eq!(outcome.lines_written, 1);
    assert!(rows(&buffer, "db", "m").is_empty(), "not queryable before the flush");
    buffer.flush().await.expect("flushes");
    assert_eq!(rows(&buffer, "db", "m"), [7]);
}

#[tokio::test]
async fn invalid_lines_follow_accept_partial() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (buffer, _) = WriteBuffer::open(dir.path()).expect("opens");
    let body = "m f=1i\n\nbad line\nm f=1.5\nm f=3i";
    let refused = buffer.write_lp(WriteRequest { accept_partial: false, no_sync: true, ..request("db", body) }).await;
    let Err(WriteError::Rejected(errors)) = refused else { panic!("expected a rejection, got {refused:?}") };
    assert_eq!(errors[0].line_number, 3);

    let outcome = buffer.write_lp(WriteRequest { no_sync: true, ..request("db", body) }).await.expect("partial");
    assert_eq!(outcome.lines_written, 2);
    let refused: Vec<(usize, &str)> = outcome.errors.iter().map(|e| (e.line_number, e.original_line.as_str())).collect();
    assert_eq!(refused, [(3, "bad line"), (4, "m f=1.5")]);
    assert!(outcome.errors[1].error_message.contains("expected integer, got float"));

    assert!(matches!(buffer.write_lp(request("db", "nonsense")).await, Err(WriteError::Empty(_))));
    assert!(matches!(buffer.write_lp(request("bad db", "m f=1i")).await, Err(WriteError::InvalidDatabaseName(_))));
}

#[tokio::test]
async fn a_wal_file_cut_short_replays_its_valid_prefix() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (buffer, _) = WriteBuffer::open(dir.path()).expect("opens");
    buffer.write_lp(WriteRequest { no_sync: true, ..request("a", "m f=1i 1") }).await.expect("queued");
    buffer.write_lp(WriteRequest { no_sync: true, ..request("b", "m f=2i 2") }).await.expect("queued");
    buffer.flush().await.expect("flushes");
    drop(buffer);
    let wal = std::fs::read_dir(dir.path().join("wal")).expect("wal dir").next().expect("a file").expect("entry").path();
    let length = std::fs::metadata(&wal).expect("exists").len();
    std::fs::File::options().write(true).open(&wal).expect("opens").set_len(length - 2).expect("truncates");

    let (reopened, recovery) = WriteBuffer::open(dir.path()).expect("starts despite the damage");
    assert_eq!(recovery.rows, 1);
    assert_eq!(recovery.damage.len(), 1);
    assert!(recovery.damage[0].contains("record 2 is truncated"), "{:?}", recovery.damage);
    assert_eq!(rows(&reopened, "a", "m"), [1]);
    assert!(rows(&reopened, "b", "m").is_empty());
}
