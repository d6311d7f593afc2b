//! The database end to end: acknowledged ingest over HTTP, and an aggregate over rows
//! split between the buffer and Parquet.
//!
//! `cargo bench -p sluice-benches --bench database`
//!
//! - Ingest: the HTTP API on a loopback port, 8 writers each sending 10,000-line
//!   batches to `/api/v3/write_lp` until 1,000,000 lines are acknowledged (each answer
//!   waits for the WAL flush), at several `--wal-flush-interval` settings, with the
//!   default `--wal-max-pending-lines` (a flush starts when 10,000 lines wait) and
//!   without it (only the interval flushes).
//! - Query: 10,000,000 rows (100 hosts, one row every 10 ms), half snapshotted to
//!   Parquet and half in the buffer; `DATE_BIN` + `avg` grouped by host. Then the
//!   same with one point of the first hour written again: while it is in the buffer,
//!   and once it is snapshotted.
//!
//! Prints one line per measurement; each is the median of several runs.

use sluice_http::{AppState, Authentication, router};
use sluice_lp::Precision;
use sluice_query::QueryEngine;
use sluice_storage::{SnapshotPolicy, StorageConfig, WriteBuffer, WriteRequest};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WRITERS: usize = 8;
const BATCH_LINES: usize = 10_000;
const INGEST_LINES: usize = 1_000_000;
const QUERY_ROWS: usize = 10_000_000;
const HOSTS: usize = 100;
const START_NS: i64 = 1_700_000_000_000_000_000;
/// `sluice serve`'s default `--wal-max-pending-lines`.
const MAX_PENDING_LINES: usize = 10_000;

/// Lines `first..first + count` of the generated data set.
fn lines(first: usize, count: usize) -> String {
    let mut body = String::with_capacity(count * 80);
    for i in first..first + count {
        let time = START_NS + i as i64 * 10_000_000;
        body.push_str(&format!(
            "cpu,host=host{},region=r{} usage={},count={}i {time}\n",
            i % HOSTS,
            i % 7,
            (i % 1000) as f64 * 0.1,
            i
        ));
    }
    body
}

async fn open(dir: &std::path::Path, policy: SnapshotPolicy) -> Arc<WriteBuffer> {
    let mut config = StorageConfig::local(dir).expect("storage config");
    config.policy = policy;
    WriteBuffer::open(config).await.expect("opens").0
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// One ingest run: lines per second, acknowledged.
async fn ingest_once(flush: Duration, max_pending_lines: usize, batches: &Arc<Vec<String>>) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let storage = open(dir.path(), SnapshotPolicy::default()).await;
    let flusher = storage.spawn_flusher(flush, max_pending_lines);
    let state = AppState {
        storage: Arc::clone(&storage),
        query: QueryEngine::new(Arc::clone(&storage)),
        max_request_bytes: 64 << 20,
        body_timeout: std::time::Duration::from_secs(30),
        body_memory: Arc::new(tokio::sync::Semaphore::new(1 << 20)),
        authentication: Authentication::Disabled,
        plugin_dir: None,
        plugin_repo: None,
        allowed_triggers: None,
        engine: None,
        virtual_env: None,
        package_manager: sluice_http::packages::PackageManager::Disabled,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let address = listener.local_addr().expect("address");
    let server = tokio::spawn(async move { axum::serve(listener, router(state)).await });
    let client = reqwest::Client::new();
    let url = format!("http://{address}/api/v3/write_lp?db=bench&precision=ns");
    let started = Instant::now();
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (client, url, batches) = (client.clone(), url.clone(), Arc::clone(batches));
            tokio::spawn(async move {
                for batch in batches.iter().skip(writer).step_by(WRITERS) {
                    let response = client
                        .post(&url)
                        .body(batch.clone())
                        .send()
                        .await
                        .expect("sent");
                    assert_eq!(
                        response.status(),
                        204,
                        "{}",
                        response.text().await.unwrap_or_default()
                    );
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("writer finished");
    }
    let seconds = started.elapsed().as_secs_f64();
    flusher.abort();
    server.abort();
    INGEST_LINES as f64 / seconds
}

async fn ingest() {
    let batches: Arc<Vec<String>> = Arc::new(
        (0..INGEST_LINES / BATCH_LINES)
            .map(|b| lines(b * BATCH_LINES, BATCH_LINES))
            .collect(),
    );
    let settings = [
        (1000, MAX_PENDING_LINES),
        (1000, usize::MAX),
        (100, usize::MAX),
        (10, usize::MAX),
    ];
    for (flush_ms, max_pending_lines) in settings {
        let flush = Duration::from_millis(flush_ms);
        let mut runs = Vec::new();
        for _ in 0..3 {
            runs.push(ingest_once(flush, max_pending_lines, &batches).await);
        }
        let limit = if max_pending_lines == usize::MAX {
            "no_line_limit".to_string()
        } else {
            format!("{max_pending_lines}_lines")
        };
        println!(
            "ingest/http/8_writers/10k_line_batches/flush_{flush_ms}ms_or_{limit}: {:.0} lines/s (median of 3; runs {:?})",
            median(runs.clone()),
            runs.iter().map(|r| r.round()).collect::<Vec<_>>()
        );
    }
}

async fn write_rows(storage: &Arc<WriteBuffer>, first: usize, count: usize) {
    for start in (first..first + count).step_by(100_000) {
        let body = lines(start, 100_000.min(first + count - start));
        let request = WriteRequest {
            database: "bench",
            body: &body,
            precision: Precision::Nanosecond,
            accept_partial: false,
            no_sync: true,
            default_time_ns: 0,
            create_database: true,
        };
        storage.write_lp(request).await.expect("written");
        storage.flush().await.expect("flushed");
    }
}

async fn query() {
    let dir = tempfile::tempdir().expect("temp dir");
    let storage = open(
        dir.path(),
        SnapshotPolicy {
            rows: usize::MAX,
            interval: Duration::MAX,
        },
    )
    .await;
    let loading = Instant::now();
    write_rows(&storage, 0, QUERY_ROWS / 2).await;
    storage.snapshot().await.expect("snapshot");
    write_rows(&storage, QUERY_ROWS / 2, QUERY_ROWS / 2).await;
    let data = storage.table_data("bench", "cpu").expect("table");
    let in_buffer: usize = data.batches.iter().map(|b| b.num_rows()).sum();
    let in_parquet: u64 = data.files.iter().map(|f| f.rows).sum();
    println!(
        "query/setup: {in_parquet} rows in {} Parquet file(s) ({} MB), {in_buffer} rows in the buffer, loaded in {:.1} s",
        data.files.len(),
        data.files.iter().map(|f| f.size_bytes).sum::<u64>() / 1_000_000,
        loading.elapsed().as_secs_f64()
    );
    let engine = QueryEngine::new(Arc::clone(&storage));
    let runs = time_query(&engine).await;
    print_runs("10M_rows", &runs);

    // A point of the first hour written again, late: the rows of the moment it
    // overlaps are merged point by point, in the buffer and once it is snapshotted.
    write_rows(&storage, 0, 1).await;
    let runs = time_query(&engine).await;
    print_runs("10M_rows_one_late_point_in_the_buffer", &runs);
    storage.snapshot().await.expect("snapshot");
    let runs = time_query(&engine).await;
    print_runs("10M_rows_one_late_point_snapshotted", &runs);
}

/// The aggregate, run 7 times: milliseconds per run, and the groups it returned.
async fn time_query(engine: &QueryEngine) -> (Vec<f64>, usize) {
    let sql = "SELECT DATE_BIN(INTERVAL '1 hour', time, '1970-01-01T00:00:00Z') AS hour, host, avg(usage) AS usage \
               FROM cpu GROUP BY hour, host";
    let mut runs = Vec::new();
    let mut groups = 0;
    for _ in 0..7 {
        let started = Instant::now();
        let output = engine
            .sql("bench", sql, Vec::new())
            .await
            .expect("query runs");
        runs.push(started.elapsed().as_secs_f64() * 1000.0);
        groups = output.batches.iter().map(|b| b.num_rows()).sum::<usize>();
    }
    (runs, groups)
}

fn print_runs(case: &str, (runs, groups): &(Vec<f64>, usize)) {
    println!(
        "query/date_bin_avg_by_host/{case}: {:.0} ms (median of 7; min {:.0} ms; {groups} groups)",
        median(runs.clone()),
        runs.iter().copied().fold(f64::MAX, f64::min)
    );
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument picks one part.
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if "ingest".contains(filter.as_str()) {
        runtime.block_on(ingest());
    }
    if "query".contains(filter.as_str()) {
        runtime.block_on(query());
    }
}
