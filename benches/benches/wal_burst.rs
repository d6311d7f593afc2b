//! A WAL trigger under a burst: 1,000,000 rows written by 4 writers in 10,000-line
//! batches to `raw`, each row transformed into one row of `cooked` by a WAL trigger.
//!
//! `cargo bench -p sluice-benches --bench wal_burst`
//!
//! Runs alternate, twice: into a database without a trigger (the baseline), then into
//! one with the transform trigger. For each: the time until every write is acknowledged;
//! with the trigger, the rows per second from the first write until all 1,000,000
//! transformed rows are queryable (checked exact: not one missing, not one more) and the
//! flushes the trigger skipped (must be 0); for each, the process's peak resident memory
//! during the run (`VmHWM`, reset before it: the server runs in the bench's process, the
//! writers beside it).

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use sluice_query::QueryEngine;
use sluice_sandbox::{Sandbox, SandboxConfig};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "common/server.rs"]
mod server;

const WRITERS: u64 = 4;
const BATCHES_PER_WRITER: u64 = 25;
const LINES_PER_BATCH: u64 = 10_000;
const ROWS: u64 = WRITERS * BATCHES_PER_WRITER * LINES_PER_BATCH;

/// Writes the burst to `database`; returns when every write is acknowledged.
async fn burst(host: &str, database: &str) {
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let url = format!("{host}/api/v3/write_lp?db={database}");
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                for batch in 0..BATCHES_PER_WRITER {
                    let first = (writer * BATCHES_PER_WRITER + batch) * LINES_PER_BATCH;
                    let body: String = (first..first + LINES_PER_BATCH)
                        .map(|row| {
                            format!(
                                "raw,host=h{writer} f={} {}\n",
                                50 + row % 40,
                                1_700_000_000_000_000_000 + row
                            )
                        })
                        .collect();
                    let response = client.post(&url).body(body).send().await.expect("sent");
                    assert_eq!(response.status(), 204, "a write failed");
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("writer");
    }
}

/// The rows of `cooked` in `database`.
async fn cooked(query: &QueryEngine, database: &str) -> i64 {
    let output = query
        .sql(database, "SELECT count(*) AS n FROM cooked", Vec::new())
        .await
        .ok();
    output
        .as_ref()
        .and_then(|o| o.batches.first())
        .map_or(0, |b| b.column(0).as_primitive::<Int64Type>().value(0))
}

/// Forgets the process's peak resident memory, so the next reading is this run's.
fn reset_peak_memory() {
    std::fs::write("/proc/self/clear_refs", "5").expect("resets VmHWM (Linux)");
}

/// The process's peak resident memory since the last reset, in MiB.
fn peak_memory_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kib / 1024.0
}

#[tokio::main]
async fn main() {
    if cfg!(debug_assertions) {
        eprintln!("refusing to measure an unoptimised build: run `cargo bench`");
        std::process::exit(2);
    }
    let sandbox = Arc::new(
        tokio::task::spawn_blocking(|| Sandbox::new(SandboxConfig::default()))
            .await
            .expect("joined")
            .expect("sandbox"),
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let triggers: Vec<(&str, _)> = ["with_trigger_1", "with_trigger_2"]
        .into_iter()
        .map(|database| {
            let trigger = server::trigger("transform", "table:raw", "transform.py", false);
            (database, trigger)
        })
        .collect();
    let plugins = [("transform.py", server::TRANSFORM)];
    let (host, storage, engine) = server::start(
        dir.path(),
        sandbox,
        &plugins,
        &triggers,
        server::Instances::WarmShared,
    )
    .await;
    let query = QueryEngine::new(Arc::clone(&storage));
    for round in 1..=2 {
        for with_trigger in [false, true] {
            let database = if with_trigger {
                format!("with_trigger_{round}")
            } else {
                format!("without_trigger_{round}")
            };
            reset_peak_memory();
            let started = Instant::now();
            burst(&host, &database).await;
            let acknowledged = started.elapsed();
            let mut line = format!(
                "round {round}, {}: {ROWS} rows acknowledged in {:.2} s",
                if with_trigger {
                    "with the trigger"
                } else {
                    "without a trigger"
                },
                acknowledged.as_secs_f64()
            );
            if with_trigger {
                let done = transformed(&query, &database, started).await;
                let rate = ROWS as f64 / done.as_secs_f64();
                let skipped = skipped(&engine);
                line += &format!(
                    "; all {ROWS} transformed rows queryable after {:.2} s: {rate:.0} rows/s end to end; {skipped} flushes skipped",
                    done.as_secs_f64()
                );
                assert_eq!(skipped, 0, "the trigger skipped flushes");
            }
            println!("{line}; peak RSS {:.0} MiB", peak_memory_mib());
        }
    }
}

/// Waits until every row of the burst is transformed in `database` (at most 10 minutes);
/// returns the time since `started`. Checks that no more rows appear than were written.
async fn transformed(query: &QueryEngine, database: &str, started: Instant) -> Duration {
    loop {
        let rows = cooked(query, database).await;
        assert!(
            rows <= ROWS as i64,
            "{rows} transformed rows, more than written"
        );
        if rows == ROWS as i64 {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the trigger did not finish: {rows} rows"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The flushes WAL triggers skipped, as `/metrics` counts them.
fn skipped(engine: &sluice_engine::ProcessingEngine) -> u64 {
    engine
        .records
        .metrics()
        .encode()
        .lines()
        .filter(|line| line.starts_with("sluice_plugin_skipped_flushes_total{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}
