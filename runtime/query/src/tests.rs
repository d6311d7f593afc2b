//! SQL behaviour, case by case: each query with the rows it must return.

use super::*;
use datafusion::arrow::util::pretty::pretty_format_batches;
use sluice_storage::WriteRequest;

/// Written first, then snapshotted to Parquet.
const PERSISTED: &str = "\
cpu,host=a,region=west usage=10.0,count=1i,ok=true 3600000000000
cpu,host=a,region=west usage=20.0,count=2i,ok=false 3660000000000
mem,host=a free=5u 3600000000000
";

/// Written after the snapshot: stays in the buffer.
const BUFFERED: &str = "\
cpu,host=b,region=east usage=30.0,count=3i,ok=true 7200000000000
cpu,host=b,region=east usage=50.0,count=4i,ok=true 7260000000000
";

/// Writes `body` (nanosecond times) to database `db`, and flushes it.
pub(crate) async fn write(storage: &Arc<WriteBuffer>, body: &str) {
    let request = WriteRequest {
        database: "db",
        body,
        precision: sluice_lp::Precision::Nanosecond,
        accept_partial: false,
        no_sync: true,
        default_time_ns: 0,
        create_database: true,
    };
    storage.write_lp(request).await.expect("written");
    storage.flush().await.expect("flushed");
}

/// Every query runs over a table whose rows are split between Parquet and the buffer.
async fn engine() -> (QueryEngine, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = sluice_storage::StorageConfig::local(dir.path()).expect("config");
    let (storage, _) = WriteBuffer::open(config).await.expect("opens");
    for (body, snapshot) in [(PERSISTED, true), (BUFFERED, false)] {
        write(&storage, body).await;
        if snapshot {
            assert_eq!(storage.snapshot().await, Ok(2));
        }
    }
    let cpu = storage.table_data("db", "cpu").expect("cpu");
    assert_eq!(
        (cpu.files.len(), cpu.batches.len()),
        (1, 1),
        "split between Parquet and the buffer"
    );
    (QueryEngine::new(storage), dir)
}

async fn rows(engine: &QueryEngine, sql: &str, params: Vec<(String, ScalarValue)>) -> String {
    let output = engine
        .sql("db", sql, params)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    pretty_format_batches(&output.batches)
        .expect("formats")
        .to_string()
}

fn table(lines: &[&str]) -> String {
    lines.join("\n")
}

#[tokio::test]
async fn the_queries_of_the_plugin_library_work() {
    let (engine, _dir) = engine().await;
    let cases: Vec<(&str, Vec<&str>)> = vec![
        (
            "SELECT DATE_BIN(INTERVAL '1 hour', time, '1970-01-01T00:00:00Z') AS hour, host, avg(usage) AS avg \
             FROM cpu GROUP BY hour, host ORDER BY hour",
            vec![
                "+---------------------+------+------+",
                "| hour                | host | avg  |",
                "+---------------------+------+------+",
                "| 1970-01-01T01:00:00 | a    | 15.0 |",
                "| 1970-01-01T02:00:00 | b    | 40.0 |",
                "+---------------------+------+------+",
            ],
        ),
        (
            "SELECT count(*) AS n FROM cpu WHERE time >= '1970-01-01T02:00:00Z'",
            vec!["+---+", "| n |", "+---+", "| 2 |", "+---+"],
        ),
        (
            "SELECT count(*) AS n FROM cpu WHERE time < '1970-01-01 01:30:00+00:00'",
            vec!["+---+", "| n |", "+---+", "| 2 |", "+---+"],
        ),
        (
            "SELECT count(*) AS n FROM cpu WHERE time > now() - INTERVAL '5 minutes'",
            vec!["+---+", "| n |", "+---+", "| 0 |", "+---+"],
        ),
        (
            "SELECT host, first_value(usage ORDER BY time) AS first, median(usage) AS median, \
             approx_median(usage) AS approx FROM cpu GROUP BY host ORDER BY host",
            vec![
                "+------+-------+--------+--------+",
                "| host | first | median | approx |",
                "+------+-------+--------+--------+",
                "| a    | 10.0  | 15.0   | 15.0   |",
                "| b    | 30.0  | 40.0   | 40.0   |",
                "+------+-------+--------+--------+",
            ],
        ),
        (
            "SELECT round(stddev(usage), 3) AS sd, round(var(usage), 6) AS v FROM cpu",
            vec![
                "+--------+------------+",
                "| sd     | v          |",
                "+--------+------------+",
                "| 17.078 | 291.666667 |",
                "+--------+------------+",
            ],
        ),
        (
            "SELECT upper(host) AS h FROM cpu GROUP BY h ORDER BY h",
            vec!["+---+", "| h |", "+---+", "| A |", "| B |", "+---+"],
        ),
        (
            "SELECT \"region\", count FROM 'cpu' WHERE \"host\" = 'b' ORDER BY count",
            vec![
                "+--------+-------+",
                "| region | count |",
                "+--------+-------+",
                "| east   | 3     |",
                "| east   | 4     |",
                "+--------+-------+",
            ],
        ),
        (
            "SELECT free, time FROM mem",
            vec![
                "+------+---------------------+",
                "| free | time                |",
                "+------+---------------------+",
                "| 5    | 1970-01-01T01:00:00 |",
                "+------+---------------------+",
            ],
        ),
    ];
    for (sql, expected) in cases {
        assert_eq!(rows(&engine, sql, vec![]).await, table(&expected), "{sql}");
    }
}

#[tokio::test]
async fn parameters_bind_by_name_including_times() {
    let (engine, _dir) = engine().await;
    let params = vec![
        ("host".to_string(), ScalarValue::Utf8(Some("a".into()))),
        (
            "since".to_string(),
            ScalarValue::Utf8(Some("1970-01-01T01:01:00Z".into())),
        ),
        (
            "ns".to_string(),
            ScalarValue::Utf8(Some("3600000000000".into())),
        ),
    ];
    let sql = "SELECT count FROM cpu WHERE host = $host AND time >= $since \
               AND time > to_timestamp_nanos(arrow_cast($ns, 'Int64'))";
    assert_eq!(
        rows(&engine, sql, params).await,
        table(&[
            "+-------+",
            "| count |",
            "+-------+",
            "| 2     |",
            "+-------+"
        ])
    );

    let missing = engine
        .sql("db", "SELECT * FROM cpu WHERE host = $host", vec![])
        .await;
    let message = missing.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains("No value found for placeholder with name $host"),
        "{message}"
    );
}

#[tokio::test]
async fn information_schema_and_show_tables_describe_influx_types() {
    let (engine, _dir) = engine().await;
    let sql = "SELECT column_name, data_type FROM information_schema.columns \
               WHERE table_name = 'cpu' ORDER BY ordinal_position";
    assert_eq!(
        rows(&engine, sql, vec![]).await,
        table(&[
            "+-------------+-------------------------+",
            "| column_name | data_type               |",
            "+-------------+-------------------------+",
            "| host        | Dictionary(Int32, Utf8) |",
            "| region      | Dictionary(Int32, Utf8) |",
            "| usage       | Float64                 |",
            "| count       | Int64                   |",
            "| ok          | Boolean                 |",
            "| time        | Timestamp(ns)           |",
            "+-------------+-------------------------+",
        ])
    );
    let shown = rows(&engine, "SHOW TABLES", vec![]).await;
    assert!(
        shown.contains("| public        | iox                | cpu"),
        "{shown}"
    );
    assert!(
        shown.contains("| public        | iox                | mem"),
        "{shown}"
    );
}

#[tokio::test]
async fn errors_say_what_is_wrong() {
    let (engine, _dir) = engine().await;
    let unknown_table = engine
        .sql("db", "SELECT foo FROM not_here", vec![])
        .await
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        unknown_table.as_deref(),
        Some("Error during planning: table 'public.iox.not_here' not found")
    );
    assert!(matches!(
        engine.sql("nope", "SELECT 1", vec![]).await,
        Err(QueryError::DatabaseNotFound(_))
    ));
    assert!(matches!(
        engine.sql("db", "SELEC 1", vec![]).await,
        Err(QueryError::Plan(_))
    ));
}

#[tokio::test]
async fn a_query_may_only_read() {
    let (engine, dir) = engine().await;
    let outside = dir.path().join("copied.csv");
    let outside = outside.display();
    for (sql, refused) in [
        (
            format!("COPY (SELECT 1) TO '{outside}' STORED AS CSV"),
            "DML not supported: COPY",
        ),
        (
            format!("EXPLAIN ANALYZE COPY (SELECT 1) TO '{outside}'"),
            "DML not supported: COPY",
        ),
        (
            "INSERT INTO cpu (host) VALUES ('x')".into(),
            "DML not supported: Insert Into",
        ),
        (
            "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/'".into(),
            "DDL not supported: CreateExternalTable",
        ),
        ("CREATE TABLE t (a INT)".into(), "DDL not supported"),
        ("CREATE VIEW v AS SELECT 1".into(), "DDL not supported"),
        ("DROP TABLE cpu".into(), "DDL not supported"),
        (
            "SET datafusion.execution.batch_size = 1".into(),
            "Statement not supported: SetVariable",
        ),
        ("PREPARE p AS SELECT 1".into(), "Statement not supported"),
    ] {
        let error = engine.sql("db", &sql, vec![]).await.expect_err(&sql);
        assert!(
            matches!(error, QueryError::NotAllowed(_)),
            "{sql}: {error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains(refused) && message.ends_with("(a query may only read)"),
            "{sql}: {message}"
        );
    }
    assert!(!dir.path().join("copied.csv").exists());
    // A file named as a table is not read either, and the error names no server path.
    let error = engine
        .sql("db", "SELECT * FROM '/etc/hostname'", vec![])
        .await
        .expect_err("no file tables");
    assert!(matches!(error, QueryError::Plan(_)), "{error:?}");
    assert!(
        !error
            .to_string()
            .contains(&dir.path().display().to_string()),
        "{error}"
    );
    // Reading stays possible.
    assert!(
        rows(&engine, "SELECT count(*) AS n FROM cpu", vec![])
            .await
            .contains("| 4 |")
    );
}

/// An engine over `engine`'s storage with other limits.
fn limited(engine: &QueryEngine, limits: QueryLimits) -> QueryEngine {
    QueryEngine::with_limits(Arc::clone(&engine.storage), limits)
}

#[tokio::test]
async fn a_query_gets_its_memory_and_no_more() {
    let (engine, _dir) = engine().await;
    let small = limited(
        &engine,
        QueryLimits {
            query_memory_bytes: 1 << 20,
            ..QueryLimits::default()
        },
    );
    let distinct = "SELECT count(DISTINCT value) AS n FROM generate_series(1, 2000000)";
    let error = small
        .sql("db", distinct, vec![])
        .await
        .expect_err("over 1 MiB");
    assert!(matches!(error, QueryError::Limit(_)), "{error:?}");
    assert!(
        error
            .to_string()
            .contains("query memory limit of 1 MiB exceeded"),
        "{error}"
    );
    // Within the default, the same query runs.
    assert!(
        rows(&engine, distinct, vec![]).await.contains("2000000"),
        "runs within the default"
    );

    // The server's pool is shared: when it is smaller than one query's bound, the
    // query is told the server is busy.
    let busy = limited(
        &engine,
        QueryLimits {
            server_memory_bytes: 1 << 20,
            ..QueryLimits::default()
        },
    );
    let error = busy
        .sql("db", distinct, vec![])
        .await
        .expect_err("pool too small");
    assert!(matches!(error, QueryError::Busy(_)), "{error:?}");
}

#[tokio::test]
async fn a_query_ends_when_its_time_is_up() {
    let (engine, _dir) = engine().await;
    let hasty = limited(
        &engine,
        QueryLimits {
            timeout: std::time::Duration::from_millis(200),
            ..QueryLimits::default()
        },
    );
    // A query of 10^11 rows would run for hours: the outer bound only keeps a broken
    // deadline from hanging the suite.
    let query = hasty.sql(
        "db",
        "SELECT count(*) FROM generate_series(1, 100000000000)",
        vec![],
    );
    let error = tokio::time::timeout(std::time::Duration::from_secs(300), query)
        .await
        .expect("the query stopped at its deadline")
        .expect_err("too slow");
    assert!(matches!(error, QueryError::Limit(_)), "{error:?}");
    assert_eq!(error.to_string(), "query time limit of 200ms exceeded");
}

#[tokio::test]
async fn functions_that_build_much_from_little_are_bounded() {
    let (engine, _dir) = engine().await;
    for (sql, function) in [
        ("SELECT repeat('x', 2000000000) AS s", "repeat"),
        ("SELECT lpad('', 100000000, 'ab') AS s", "lpad"),
        ("SELECT range(10000000000) AS r", "range"),
        (
            "SELECT generate_series(TIMESTAMP '1970-01-01', TIMESTAMP '2200-01-01', INTERVAL '1 minute')",
            "generate_series",
        ),
        ("SELECT array_repeat(1, 100000000) AS a", "array_repeat"),
        ("SELECT repeat(host, 40000000) FROM cpu", "repeat"),
    ] {
        let error = engine.sql("db", sql, vec![]).await.expect_err(sql);
        assert!(matches!(error, QueryError::Limit(_)), "{sql}: {error:?}");
        assert!(
            error
                .to_string()
                .starts_with(&format!("{function} would build"))
                && error
                    .to_string()
                    .ends_with("more than the 64 MiB a function may build at once"),
            "{sql}: {error}"
        );
    }
    assert!(
        rows(&engine, "SELECT length(repeat('ab', 1000)) AS n", vec![])
            .await
            .contains("| 2000 |")
    );
    assert!(
        rows(&engine, "SELECT cardinality(range(1, 11)) AS n", vec![])
            .await
            .contains("| 10 |")
    );
}

#[tokio::test]
async fn values_written_into_a_query_or_built_by_one_are_bounded() {
    let (engine, _dir) = engine().await;
    for (sql, why) in [
        (
            "SELECT arrow_cast(repeat('x', 100000), 'LargeUtf8') AS s \
             FROM generate_series(1, 8192)",
            "the query holds a value of",
        ),
        (
            "SELECT length(repeat(repeat(host, 2000), 1000)) AS n FROM cpu",
            "length was given a value of 1 MiB",
        ),
    ] {
        let error = engine.sql("db", sql, vec![]).await.expect_err(sql);
        assert!(matches!(error, QueryError::Limit(_)), "{sql}: {error:?}");
        assert!(error.to_string().contains(why), "{sql}: {error}");
    }
}

#[tokio::test]
async fn sources_stop_while_the_server_is_short_of_memory() {
    let (engine, _dir) = engine().await;
    let starved = limited(
        &engine,
        QueryLimits {
            process_memory_bytes: 1,
            ..QueryLimits::default()
        },
    );
    // The first sample of the process's memory.
    let waited = std::time::Instant::now();
    while watch::RESIDENT.load(std::sync::atomic::Ordering::Relaxed) == 0 {
        assert!(
            waited.elapsed() < std::time::Duration::from_secs(60),
            "no sample"
        );
        tokio::time::sleep(watch::SAMPLE_EVERY).await;
    }
    for sql in [
        "SELECT count(*) FROM cpu",
        "SELECT count(*) FROM generate_series(1, 10)",
    ] {
        let error = starved.sql("db", sql, vec![]).await.expect_err(sql);
        assert!(matches!(error, QueryError::Busy(_)), "{sql}: {error:?}");
        assert!(error.to_string().contains("short of memory"), "{error}");
    }
    assert!(
        rows(&engine, "SELECT count(*) AS n FROM cpu", vec![])
            .await
            .contains("| 4 |")
    );
}

/// Rows of `sql` on `db` read by a query that may read only its system tables.
async fn system_tables_only(engine: &QueryEngine, sql: &str) -> Result<usize, QueryError> {
    let mut stream = engine
        .stream("db", Readable::SystemTables, sql, vec![])
        .await?;
    let mut rows = 0;
    while let Some(batch) = stream.next().await {
        rows += batch?.num_rows();
    }
    Ok(rows)
}

#[tokio::test]
async fn a_query_that_may_read_only_system_tables_reads_none_of_the_databases() {
    let (engine, _dir) = engine().await;
    let refused = "the token may read only the system tables of database `db`: reading \
                   table `cpu` needs the read permission on it";
    for sql in [
        "SELECT * FROM cpu",
        "SELECT * FROM iox.cpu",
        "SELECT * FROM public.iox.cpu",
        "SELECT count(*) FROM system.processing_engine_logs WHERE 1 IN (SELECT 1 FROM cpu)",
    ] {
        match system_tables_only(&engine, sql).await {
            Err(QueryError::Forbidden(message)) => assert_eq!(message, refused, "{sql}"),
            other => panic!("{sql}: {other:?}"),
        }
    }
    // What the database holds is not even listed.
    let listed = system_tables_only(
        &engine,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'iox'",
    )
    .await;
    assert!(matches!(listed, Ok(0)), "{listed:?}");
    let triggers =
        system_tables_only(&engine, "SELECT * FROM system.processing_engine_triggers").await;
    assert!(triggers.is_ok(), "{triggers:?}");
}

#[tokio::test]
async fn a_query_whose_rows_are_not_read_still_ends_on_time() {
    let (engine, _dir) = engine().await;
    let hasty = limited(
        &engine,
        QueryLimits {
            timeout: std::time::Duration::from_millis(300),
            ..QueryLimits::default()
        },
    );
    let mut stream = hasty
        .stream(
            "db",
            Readable::All,
            "SELECT value FROM generate_series(1, 100000000000)",
            vec![],
        )
        .await
        .expect("starts");
    assert!(matches!(stream.next().await, Some(Ok(_))));
    // The reader stalls; the query's time runs out meanwhile.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let mut read = 0;
    let ended = loop {
        match stream.next().await {
            Some(Ok(_)) => read += 1,
            other => break other,
        }
    };
    assert!(read <= 2, "{read} batches made while nobody read");
    assert!(
        matches!(&ended, Some(Err(QueryError::Limit(m))) if m == "query time limit of 300ms exceeded"),
        "{ended:?}"
    );
}

#[tokio::test]
async fn a_query_that_panics_while_running_ends_with_an_error_not_as_if_complete() {
    use datafusion::arrow::datatypes::Schema;
    use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
    let schema = Arc::new(Schema::empty());
    let first = RecordBatch::new_empty(Arc::clone(&schema));
    let rows = futures::stream::iter([Ok(first)]).chain(futures::stream::once(async {
        panic!("an operator's bug");
    }));
    let batches: SendableRecordBatchStream =
        Box::pin(RecordBatchStreamAdapter::new(Arc::clone(&schema), rows));
    let server: Arc<dyn MemoryPool> =
        Arc::new(datafusion::execution::memory_pool::UnboundedMemoryPool::default());
    let timeout = std::time::Duration::from_secs(10);
    let mut stream = QueryStream::start(
        schema,
        batches,
        tokio::time::Instant::now() + timeout,
        timeout,
        Arc::new(QueryPool::new(server, 1 << 20)),
    );
    assert!(matches!(stream.next().await, Some(Ok(_))));
    assert!(matches!(
        stream.next().await,
        Some(Err(QueryError::Internal))
    ));
}
