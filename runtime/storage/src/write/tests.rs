use super::*;
use crate::ProblemKind;
use arrow::array::AsArray;
use arrow::datatypes::Int64Type;

pub(super) fn request<'a>(database: &'a str, body: &'a str) -> WriteRequest<'a> {
    WriteRequest {
        database,
        body,
        precision: Precision::Nanosecond,
        accept_partial: true,
        no_sync: false,
        default_time_ns: 42,
        create_database: true,
    }
}

pub(super) async fn open(dir: &std::path::Path) -> (Arc<WriteBuffer>, Recovery) {
    WriteBuffer::open(StorageConfig::local(dir).expect("config"))
        .await
        .expect("opens")
}

fn rows(buffer: &WriteBuffer, database: &str, table: &str) -> Vec<i64> {
    let Some(data) = buffer.table_data(database, table) else {
        return Vec::new();
    };
    data.batches
        .iter()
        .flat_map(|b| {
            b.column_by_name("f")
                .expect("f")
                .as_primitive::<Int64Type>()
                .values()
                .to_vec()
        })
        .collect()
}

#[tokio::test]
async fn acknowledged_writes_are_queryable_and_survive_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (buffer, _) = open(dir.path()).await;
    let flusher = buffer.spawn_flusher(Duration::from_millis(5), 1_000);
    let outcome = buffer
        .write_lp(request("db", "m f=1i 1\nm f=2i"))
        .await
        .expect("written");
    assert_eq!(
        outcome,
        WriteOutcome {
            lines_written: 2,
            errors: vec![]
        }
    );
    assert_eq!(rows(&buffer, "db", "m"), [1, 2]);
    flusher.abort();
    drop(buffer);

    let (reopened, recovery) = open(dir.path()).await;
    assert_eq!((recovery.files, recovery.rows), (1, 2));
    assert_eq!(rows(&reopened, "db", "m"), [1, 2]);
    let batches = reopened.table_data("db", "m").expect("table").batches;
    let times = batches[0].column_by_name("time").expect("time");
    assert_eq!(
        times
            .as_primitive::<arrow::datatypes::TimestampNanosecondType>()
            .values(),
        &[1, 42]
    );
    assert!(reopened.catalog().database("db").is_some());
}

#[tokio::test]
async fn no_sync_writes_return_at_once_and_appear_after_the_flush() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (buffer, _) = open(dir.path()).await;
    let outcome = buffer
        .write_lp(WriteRequest {
            no_sync: true,
            ..request("db", "m f=7i")
        })
        .await
        .expect("queued");
    assert_eq!(outcome.lines_written, 1);
    assert!(
        rows(&buffer, "db", "m").is_empty(),
        "not queryable before the flush"
    );
    buffer.flush().await.expect("flushes");
    assert_eq!(rows(&buffer, "db", "m"), [7]);
}

#[tokio::test]
async fn invalid_lines_follow_accept_partial() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (buffer, _) = open(dir.path()).await;
    let body = "m f=1i\n\nbad line\nm f=1.5\nm f=3i";
    let refused = buffer
        .write_lp(WriteRequest {
            accept_partial: false,
            no_sync: true,
            ..request("db", body)
        })
        .await;
    let Err(WriteError::Rejected(errors)) = refused else {
        panic!("expected a rejection, got {refused:?}")
    };
    assert_eq!(errors[0].line_number, 3);

    let outcome = buffer
        .write_lp(WriteRequest {
            no_sync: true,
            ..request("db", body)
        })
        .await
        .expect("partial");
    assert_eq!(outcome.lines_written, 2);
    let refused: Vec<(usize, &str)> = outcome
        .errors
        .iter()
        .map(|e| (e.line_number, e.original_line.as_str()))
        .collect();
    assert_eq!(refused, [(3, "bad line"), (4, "m f=1.5")]);
    assert!(
        outcome.errors[1]
            .error_message
            .contains("expected integer, got float")
    );

    assert!(matches!(
        buffer.write_lp(request("db", "nonsense")).await,
        Err(WriteError::Empty(_))
    ));
    assert!(matches!(
        buffer.write_lp(request("bad db", "m f=1i")).await,
        Err(WriteError::InvalidDatabaseName(_))
    ));
}

#[tokio::test]
async fn a_wal_file_cut_short_replays_its_valid_prefix() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (buffer, _) = open(dir.path()).await;
    buffer
        .write_lp(WriteRequest {
            no_sync: true,
            ..request("a", "m f=1i 1")
        })
        .await
        .expect("queued");
    buffer
        .write_lp(WriteRequest {
            no_sync: true,
            ..request("b", "m f=2i 2")
        })
        .await
        .expect("queued");
    buffer.flush().await.expect("flushes");
    drop(buffer);
    let wal = std::fs::read_dir(dir.path().join("wal"))
        .expect("wal dir")
        .next()
        .expect("a file")
        .expect("entry")
        .path();
    let length = std::fs::metadata(&wal).expect("exists").len();
    std::fs::File::options()
        .write(true)
        .open(&wal)
        .expect("opens")
        .set_len(length - 2)
        .expect("truncates");

    let (reopened, recovery) = open(dir.path()).await;
    assert_eq!(recovery.rows, 1);
    assert_eq!(recovery.problems.len(), 1);
    let problem = &recovery.problems[0];
    assert_eq!(problem.kind, crate::ProblemKind::Wal);
    assert!(
        problem.detail.contains("record 2 is truncated"),
        "{problem:?}"
    );
    assert_eq!(reopened.problems(), recovery.problems);
    assert_eq!(rows(&reopened, "a", "m"), [1]);
    assert!(rows(&reopened, "b", "m").is_empty());
}

fn wal_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("wal"))
        .expect("wal dir")
        .map(|e| e.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "wal"))
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn a_snapshot_moves_rows_to_parquet_removes_the_wal_and_survives_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (buffer, _) = open(dir.path()).await;
    buffer
        .write_lp(WriteRequest {
            no_sync: true,
            ..request("db", "m f=1i 1\nm f=2i 2\nn f=3i 3")
        })
        .await
        .expect("queued");
    buffer.flush().await.expect("flushes");
    assert_eq!(wal_files(dir.path()).len(), 1);
    assert_eq!(buffer.snapshot().await, Ok(2), "one file per table");
    assert!(
        wal_files(dir.path()).is_empty(),
        "covered WAL files are removed"
    );
    let m = buffer.table_data("db", "m").expect("table");
    assert_eq!((m.batches.len(), m.files.len(), m.files[0].rows), (0, 1, 2));
    assert_eq!((m.files[0].min_time_ns, m.files[0].max_time_ns), (1, 2));

    buffer
        .write_lp(WriteRequest {
            no_sync: true,
            ..request("db", "m f=4i 4")
        })
        .await
        .expect("queued");
    buffer.flush().await.expect("flushes");
    drop(buffer);

    let (reopened, recovery) = open(dir.path()).await;
    assert_eq!(
        (recovery.parquet_files, recovery.files, recovery.rows),
        (2, 1, 1)
    );
    let m = reopened.table_data("db", "m").expect("table");
    assert_eq!((rows(&reopened, "db", "m"), m.files.len()), (vec![4], 1));
    let next = reopened
        .write_lp(WriteRequest {
            no_sync: true,
            ..request("db", "m f=5i 5")
        })
        .await;
    assert!(next.is_ok());
    reopened.flush().await.expect("flushes");
    let newest = wal_files(dir.path()).pop().expect("a WAL file");
    assert!(
        newest.ends_with("00000000000000000003.wal"),
        "sequences never go back: {newest:?}"
    );
}

/// Records each flush's sequence, and needs the WAL files from `needed` on.
struct Reader {
    flushed: Mutex<Vec<u64>>,
    needed: AtomicU64,
}

impl FlushObserver for Reader {
    fn flushed(&self, sequence: u64, _: FlushedRows) {
        lock(&self.flushed).push(sequence);
    }

    fn oldest_needed(&self) -> Option<u64> {
        Some(self.needed.load(Ordering::SeqCst))
    }
}

#[tokio::test]
async fn wal_files_a_reader_needs_outlive_their_snapshot_within_the_retention() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = StorageConfig::local(dir.path()).expect("config");
    let flush = |buffer: Arc<WriteBuffer>, body: &'static str| async move {
        let queued = buffer.write_lp(WriteRequest {
            no_sync: true,
            ..request("a", body)
        });
        queued.await.expect("queued");
        buffer
            .write_lp(WriteRequest {
                no_sync: true,
                ..request("b", "m f=0i 0")
            })
            .await
            .expect("queued");
        buffer.flush().await.expect("flushes");
    };
    // Room for two of the three files.
    config.wal_retention_bytes = 150;
    let (buffer, _) = WriteBuffer::open(config).await.expect("opens");
    let reader = Arc::new(Reader {
        flushed: Mutex::default(),
        needed: AtomicU64::new(1),
    });
    buffer.set_flush_observer(Arc::clone(&reader) as Arc<dyn FlushObserver>);
    for body in ["m f=1i 1", "m f=2i 2", "m f=3i 3"] {
        flush(Arc::clone(&buffer), body).await;
    }
    assert_eq!(*lock(&reader.flushed), [1, 2, 3]);
    assert_eq!(buffer.wal_head(), 3);
    let sizes: Vec<u64> = wal_files(dir.path())
        .iter()
        .map(|f| std::fs::metadata(f).expect("exists").len())
        .collect();
    assert!(
        sizes.iter().all(|&size| size > 50 && size <= 75),
        "{sizes:?}"
    );

    // Read back with the rows of one database only.
    let LoggedFlush::Rows { rows, damage } = buffer.read_flush(2, "a").expect("reads") else {
        panic!("not read back");
    };
    assert_eq!(damage, None);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, "a");
    assert_eq!(rows[0].1[0].time_ns, 2);

    // Covered by a snapshot, needed from 1 on: the oldest goes for want of room, and
    // says what it held of each database.
    buffer.snapshot().await.expect("snapshots");
    assert_eq!(wal_files(dir.path()).len(), 2);
    let removed = |database| match buffer.read_flush(1, database).expect("reads") {
        LoggedFlush::Removed(rows) => rows,
        other => panic!("{other:?}"),
    };
    let rows = |time_ns| {
        vec![RemovedRows {
            table: "m".into(),
            rows: 1,
            min_time_ns: time_ns,
            max_time_ns: time_ns,
        }]
    };
    assert_eq!(removed("a"), Some(rows(1)));
    assert_eq!(removed("b"), Some(rows(0)));
    assert!(
        matches!(
            buffer.read_flush(1, "c").expect("reads"),
            LoggedFlush::Rows { rows, .. } if rows.is_empty()
        ),
        "nothing of a database without rows in it was lost"
    );
    assert!(matches!(
        buffer.read_flush(2, "a").expect("reads"),
        LoggedFlush::Rows { .. }
    ));

    // Needed from 3 on: 2 goes, 3 stays though its snapshot covers it.
    reader.needed.store(3, Ordering::SeqCst);
    flush(Arc::clone(&buffer), "m f=4i 4").await;
    buffer.snapshot().await.expect("snapshots");
    let left: Vec<String> = wal_files(dir.path())
        .iter()
        .map(|f| {
            f.file_stem()
                .expect("stem")
                .to_string_lossy()
                .trim_start_matches('0')
                .to_string()
        })
        .collect();
    assert_eq!(left, ["3", "4"]);
    assert!(
        matches!(
            buffer.read_flush(1, "a").expect("reads"),
            LoggedFlush::Missing
        ),
        "its note went when no reader needed it"
    );
}

#[tokio::test]
async fn wal_files_a_snapshot_covers_are_not_replayed_twice() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (buffer, _) = open(dir.path()).await;
    buffer
        .write_lp(WriteRequest {
            no_sync: true,
            ..request("db", "m f=1i 1")
        })
        .await
        .expect("queued");
    buffer.flush().await.expect("flushes");
    let wal = wal_files(dir.path()).pop().expect("a WAL file");
    let saved = std::fs::read(&wal).expect("reads");
    buffer.snapshot().await.expect("snapshots");
    drop(buffer);
    // A crash after the manifest was stored but before the WAL file was removed.
    std::fs::write(&wal, saved).expect("restores");
    let (reopened, recovery) = open(dir.path()).await;
    assert_eq!((recovery.covered_files, recovery.rows), (1, 0));
    assert!(rows(&reopened, "db", "m").is_empty());
    assert_eq!(
        reopened.table_data("db", "m").expect("table").files[0].rows,
        1
    );
}

#[tokio::test]
async fn a_deleted_database_stays_deleted_across_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (buffer, _) = open(dir.path()).await;
    buffer
        .write_lp(WriteRequest {
            no_sync: true,
            ..request("gone", "m f=1i 1")
        })
        .await
        .expect("queued");
    buffer
        .write_lp(WriteRequest {
            no_sync: true,
            ..request("kept", "m f=2i 2")
        })
        .await
        .expect("queued");
    buffer.flush().await.expect("flushes");
    buffer.snapshot().await.expect("snapshots");
    buffer
        .write_lp(WriteRequest {
            no_sync: true,
            ..request("gone", "m f=3i 3")
        })
        .await
        .expect("queued");
    buffer.flush().await.expect("flushes");
    buffer.delete_database("gone").await.expect("deletes");
    assert!(buffer.table_data("gone", "m").is_none());
    assert!(matches!(
        buffer.delete_database("gone").await,
        Err(CatalogError::DatabaseNotFound(_))
    ));
    // A writer that may not create databases (a trigger of the deleted database) is
    // refused, and the database stays deleted.
    let late = buffer
        .write_lp(WriteRequest {
            create_database: false,
            no_sync: true,
            ..request("gone", "m f=4i 4")
        })
        .await;
    assert!(
        matches!(&late, Err(WriteError::DatabaseNotFound(name)) if name == "gone"),
        "{:?}",
        late.map(|o| o.lines_written)
    );
    assert_eq!(buffer.catalog().database_names(), ["kept"]);
    buffer
        .write_lp(WriteRequest {
            create_database: false,
            no_sync: true,
            ..request("kept", "m f=5i 5")
        })
        .await
        .expect("an existing database takes the write");
    drop(buffer);

    let (reopened, recovery) = open(dir.path()).await;
    assert_eq!(recovery.parquet_files, 1);
    // The deleted database's files left the manifests before they left the store.
    assert_eq!(recovery.problems, []);
    assert_eq!(reopened.catalog().database_names(), ["kept"]);
    assert!(
        !dir.path()
            .join(crate::DEFAULT_NODE_ID)
            .join("dbs")
            .join("gone")
            .join("m")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some())
    );
}

#[tokio::test]
async fn created_databases_and_tables_are_persisted_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (buffer, _) = open(dir.path()).await;
    buffer.create_database("empty").expect("creates");
    buffer
        .create_table(
            "empty",
            "t",
            &["host".into()],
            &[("v".into(), ColumnType::Float)],
        )
        .expect("creates");
    drop(buffer);
    let (reopened, _) = open(dir.path()).await;
    let schema = reopened.table_data("empty", "t").expect("the table").schema;
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["host", "v", "time"]);
}

#[tokio::test]
async fn a_catalog_change_that_cannot_be_persisted_is_not_made() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (buffer, _) = open(dir.path()).await;
    // The catalog is written to `catalog.tmp` first: a directory there makes that fail.
    let blocker = dir.path().join("catalog.tmp");
    std::fs::create_dir(&blocker).expect("blocker");
    assert!(matches!(
        buffer.create_database("lost"),
        Err(CatalogError::Io(_))
    ));
    assert!(!buffer.catalog().has_database("lost"));
    std::fs::remove_dir(&blocker).expect("unblocked");
    buffer.create_database("kept").expect("creates");
    drop(buffer);
    let (reopened, _) = open(dir.path()).await;
    assert!(reopened.catalog().has_database("kept"));
    assert!(!reopened.catalog().has_database("lost"));
}

#[tokio::test]
async fn a_full_batch_is_flushed_without_waiting_for_the_interval() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (buffer, _) = open(dir.path()).await;
    // The interval never comes during the test: only the line limit can flush.
    let flusher = buffer.spawn_flusher(Duration::from_secs(3600), 3);
    let first = tokio::time::timeout(
        Duration::from_secs(60),
        buffer.write_lp(request("db", "m f=1i 1\nm f=2i 2\nm f=3i 3")),
    );
    first
        .await
        .expect("the write was flushed when the batch was full")
        .expect("written");
    assert_eq!(rows(&buffer, "db", "m"), [1, 2, 3]);
    // Below the limit a write waits; a later one that fills the batch flushes both.
    let waiting = tokio::spawn({
        let buffer = Arc::clone(&buffer);
        async move { buffer.write_lp(request("db", "m f=4i 4")).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !waiting.is_finished(),
        "one line is below the limit of three"
    );
    let second = tokio::time::timeout(
        Duration::from_secs(60),
        buffer.write_lp(request("db", "m f=5i 5\nm f=6i 6")),
    );
    second
        .await
        .expect("flushed at the limit")
        .expect("written");
    waiting
        .await
        .expect("joined")
        .expect("written by the same flush");
    assert_eq!(rows(&buffer, "db", "m"), [1, 2, 3, 4, 5, 6]);
    flusher.abort();
}

#[tokio::test]
async fn nothing_found_at_start_is_deleted_and_everything_wrong_is_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (buffer, _) = open(dir.path()).await;
    let lines = "m f=1i 1\nn f=2i 2";
    let write = WriteRequest {
        no_sync: true,
        ..request("a", lines)
    };
    buffer.write_lp(write).await.expect("queued");
    buffer.flush().await.expect("flushed");
    assert_eq!(buffer.snapshot().await, Ok(2));
    drop(buffer);
    let catalog = dir.path().join("catalog");
    let saved = std::fs::read(&catalog).expect("catalog");
    let tables = dir
        .path()
        .join(crate::DEFAULT_NODE_ID)
        .join("dbs")
        .join("a");
    let parquet = |table: &str| {
        let mut files: Vec<_> = tables
            .join(table)
            .read_dir()
            .expect("dir")
            .flatten()
            .collect();
        assert_eq!(files.len(), 1);
        files.remove(0).path()
    };

    // Every version of the catalog lost: the Parquet files stay, named, not queried.
    for entry in dir.path().read_dir().expect("dir").flatten() {
        if entry.file_name().to_string_lossy().starts_with("catalog") {
            std::fs::remove_file(entry.path()).expect("removed");
        }
    }
    let (reopened, recovery) = open(dir.path()).await;
    assert!(reopened.catalog().database_names().is_empty());
    let kinds: Vec<_> = recovery
        .problems
        .iter()
        .map(|p| (p.kind, p.table.clone()))
        .collect();
    assert_eq!(
        kinds,
        [
            (ProblemKind::Unreferenced, Some("m".into())),
            (ProblemKind::Unreferenced, Some("n".into()))
        ]
    );
    assert!(parquet("m").exists() && parquet("n").exists());
    drop(reopened);

    // The catalog back: every row is there again.
    std::fs::write(&catalog, &saved).expect("restored");
    let (reopened, recovery) = open(dir.path()).await;
    assert_eq!((recovery.parquet_files, recovery.problems.len()), (2, 0));
    drop(reopened);

    // A truncated file is named and left out; a file nothing lists is kept until the
    // admin removes it, and only it.
    let truncated = parquet("n");
    let length = std::fs::metadata(&truncated).expect("file").len();
    std::fs::File::options()
        .write(true)
        .open(&truncated)
        .and_then(|file| file.set_len(length / 2))
        .expect("truncated");
    let stray = tables.join("m").join("stray.parquet");
    std::fs::copy(parquet("m"), &stray).expect("copied");
    let (reopened, recovery) = open(dir.path()).await;
    assert_eq!(recovery.parquet_files, 1);
    let found: Vec<_> = recovery
        .problems
        .iter()
        .map(|p| (p.kind, p.object.clone()))
        .collect();
    let on_store = |path: &std::path::Path| {
        path.strip_prefix(dir.path())
            .expect("under the store")
            .display()
            .to_string()
    };
    assert_eq!(
        found,
        [
            (ProblemKind::Parquet, on_store(&truncated)),
            (ProblemKind::Unreferenced, on_store(&stray)),
        ]
    );
    assert!(
        recovery.problems[0]
            .detail
            .contains("where its manifest lists")
    );
    assert_eq!(reopened.table_data("a", "m").expect("m").files.len(), 1);
    assert!(reopened.table_data("a", "n").expect("n").files.is_empty());
    assert_eq!(
        reopened.remove_unreferenced().await,
        Ok(vec![on_store(&stray)])
    );
    assert!(!stray.exists() && truncated.exists());
    let left: Vec<_> = reopened.problems().iter().map(|p| p.kind).collect();
    assert_eq!(left, [ProblemKind::Parquet]);
}

#[tokio::test]
async fn writes_past_the_memory_bound_wait_for_a_snapshot_to_make_room() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = StorageConfig::local(dir.path()).expect("config");
    config.limits.memory_bytes = 64 << 10;
    config.limits.max_columns_per_table = 3;
    let (buffer, _) = WriteBuffer::open(config).await.expect("opens");
    let queued = |body: &'static str| WriteRequest {
        no_sync: true,
        ..request("db", body)
    };
    let wide = buffer.write_lp(queued("w a=1i,b=2i,c=3i 1")).await;
    assert!(
        matches!(&wide, Err(WriteError::Empty(e)) if e[0].error_message.contains("at most 3")),
        "{wide:?}"
    );
    let body: &'static str = Box::leak(
        (0..500)
            .map(|i| format!("m f={i}i {i}\n"))
            .collect::<String>()
            .into_boxed_str(),
    );
    // Pending writes count: without a flush, the bound is reached.
    let mut accepted = 0;
    let refusal = loop {
        match buffer.write_lp(queued(body)).await {
            Ok(_) => accepted += 1,
            Err(refusal) => break refusal,
        }
        assert!(accepted < 100, "never refused");
    };
    assert!(accepted >= 2, "{accepted}");
    assert!(
        matches!(&refusal, WriteError::Busy(m) if m.contains("--buffer-memory-mib")),
        "{refusal:?}"
    );
    buffer.flush().await.expect("flushed");
    assert!(buffer.snapshot().await.expect("snapshotted") > 0);
    buffer.write_lp(queued(body)).await.expect("room again");
}

#[tokio::test]
async fn a_table_that_cannot_be_snapshotted_stays_in_the_wal_and_the_others_go_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (buffer, _) = open(dir.path()).await;
    let write = WriteRequest {
        no_sync: true,
        ..request("db", "good f=1i 1\nbad f=2i 2")
    };
    buffer.write_lp(write).await.expect("queued");
    buffer.flush().await.expect("flushed");
    // A file where the table's directory would go: its Parquet file cannot be written.
    let tables = dir
        .path()
        .join(crate::DEFAULT_NODE_ID)
        .join("dbs")
        .join("db");
    std::fs::create_dir_all(&tables).expect("dir");
    std::fs::write(tables.join("bad"), b"in the way").expect("blocker");
    let wal_files = || {
        std::fs::read_dir(dir.path().join("wal"))
            .expect("wal")
            .count()
    };

    assert_eq!(buffer.snapshot().await, Ok(1));
    let table = |buffer: &WriteBuffer, name: &str| {
        let data = buffer.table_data("db", name).expect("table");
        (data.files.len(), rows(buffer, "db", name))
    };
    assert_eq!(table(&buffer, "good"), (1, vec![]));
    assert_eq!(table(&buffer, "bad"), (0, vec![2]));
    assert_eq!(
        wal_files(),
        1,
        "the WAL keeps the rows of the table left out"
    );
    let metrics = buffer.metrics();
    assert!(
        metrics.contains("sluice_storage_tables_left_out_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"sluice_storage_snapshots_total{outcome="partial"} 1"#),
        "{metrics}"
    );
    drop(buffer);

    // After a restart: each row once, from Parquet or from the WAL.
    let (reopened, recovery) = open(dir.path()).await;
    // Nothing wrong but the blocker, which is not a file of the store's.
    let found: Vec<_> = recovery
        .problems
        .iter()
        .map(|p| (p.kind, p.object.as_str()))
        .collect();
    assert_eq!(found, [(ProblemKind::Unreferenced, "sluice/dbs/db/bad")]);
    assert_eq!(table(&reopened, "good"), (1, vec![]));
    assert_eq!(table(&reopened, "bad"), (0, vec![2]));

    // Once it can be written, the next snapshot writes it, and the WAL goes.
    std::fs::remove_file(tables.join("bad")).expect("unblocked");
    assert_eq!(reopened.snapshot().await, Ok(1));
    assert_eq!(table(&reopened, "bad"), (1, vec![]));
    assert_eq!(wal_files(), 0);
    drop(reopened);
    let (reopened, _) = open(dir.path()).await;
    assert_eq!(table(&reopened, "good"), (1, vec![]));
    assert_eq!(table(&reopened, "bad"), (1, vec![]));
}
