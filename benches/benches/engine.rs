//! The processing engine end to end, over HTTP against the server's own router, with
//! plugins running in the real sandbox.
//!
//! `cargo bench -p sluice-benches --bench engine`
//!
//! - `request/trivial`: a request plugin that returns a string, at concurrency 1 and 8,
//!   on fresh instances (a new sandbox instance per call, the baseline) and on the
//!   trigger's warm instances (the default): median latency and requests per second.
//! - `request/cpu_bound`: a plugin that spins for a while, on a `run_async` trigger, at
//!   concurrency 1 and 2: with two cores, twice the throughput at concurrency 2 means
//!   both are used.
//! - `wal/row_transform/sync|async`: 100,000 rows written in 10,000-row batches to a
//!   table whose WAL trigger writes one transformed row per row to another table; rows
//!   per second from the first write until every transformed row is queryable, with a
//!   trigger that takes one flush at a time (the default) and with `run_async`; and the
//!   wall and CPU time the plugin's calls took.
//!
//! Each runs warm twice: `warm`, the engine alone, and `warm_shared`, as `sluice serve`
//! runs it, with the database quotas, the fair turns for instances and the CPU turns:
//! the difference is what sharing the server between tenants costs a call.
//!
//! `cargo bench -p sluice-benches --bench engine -- FILTER` runs only the measurements
//! whose name contains FILTER.

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use sluice_engine::ProcessingEngine;
use sluice_query::QueryEngine;
use sluice_sandbox::{Sandbox, SandboxConfig};
use sluice_storage::WriteBuffer;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "common/load.rs"]
mod load;
#[path = "common/server.rs"]
mod server;

use load::load;

const TRIVIAL: &str = "def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):\n    return 'ok'\n";
const CPU_BOUND: &str = "def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):\n    total = 0\n    for i in range(300000):\n        total += i * i\n    return str(total)\n";

/// A server on a loopback port with the bench triggers; returns its address.
async fn server(
    dir: &Path,
    sandbox: Arc<Sandbox>,
    instances: server::Instances,
) -> (String, Arc<WriteBuffer>, Arc<ProcessingEngine>) {
    let triggers = [
        (
            "bench",
            server::trigger("trivial", "request:trivial", "trivial.py", false),
        ),
        // `run_async`: a synchronous request trigger serves one request at a time.
        (
            "bench",
            server::trigger("cpu", "request:cpu", "cpu.py", true),
        ),
        (
            "bench",
            server::trigger("transform", "table:raw", "transform.py", false),
        ),
        // The same transform, with `run_async`: flushes may be processed side by side.
        (
            "bench_async",
            server::trigger("transform", "table:raw", "transform.py", true),
        ),
    ];
    let plugins = [
        ("trivial.py", TRIVIAL),
        ("cpu.py", CPU_BOUND),
        ("transform.py", server::TRANSFORM),
    ];
    server::start(dir, sandbox, &plugins, &triggers, instances).await
}

/// Rows per second through the transform trigger of `database`.
async fn wal_transform(host: &str, storage: &Arc<WriteBuffer>, database: &str) -> f64 {
    let rows = 100_000;
    let started = Instant::now();
    load::write_rows(host, database, "raw", rows).await;
    let engine = QueryEngine::new(Arc::clone(storage));
    loop {
        let output = engine
            .sql(database, "SELECT count(*) AS n FROM cooked", Vec::new())
            .await
            .ok();
        let done = output
            .as_ref()
            .and_then(|o| o.batches.first())
            .map(|b| b.column(0).as_primitive::<Int64Type>().value(0));
        if done == Some(rows as i64) {
            return rows as f64 / started.elapsed().as_secs_f64();
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the transform did not finish: {done:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::main]
async fn main() {
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_default();
    let wanted = |name: &str| name.contains(filter.as_str());
    let sandbox = Arc::new(
        tokio::task::spawn_blocking(|| Sandbox::new(SandboxConfig::default()))
            .await
            .expect("joined")
            .expect("sandbox"),
    );
    for (mode, instances, total) in [
        ("fresh", server::Instances::Fresh, 400),
        ("warm", server::Instances::Warm, 4_000),
        ("warm_shared", server::Instances::WarmShared, 4_000),
    ] {
        let warm = instances != server::Instances::Fresh;
        let dir = tempfile::tempdir().expect("temp dir");
        let (host, storage, engine) = server(dir.path(), Arc::clone(&sandbox), instances).await;
        for concurrency in [1, 8] {
            if !wanted("request/trivial") {
                break;
            }
            let (p50, p99, rate) = load(
                &format!("{host}/api/v3/engine/trivial"),
                None,
                concurrency,
                total,
            )
            .await;
            println!(
                "request/trivial/{mode}/concurrency_{concurrency}: p50 {p50:.2} ms, p99 {p99:.2} ms, {rate:.0} req/s ({total} requests)"
            );
        }
        if warm && wanted("request/cpu_bound") {
            let (_, _, one) = load(&format!("{host}/api/v3/engine/cpu"), None, 1, 100).await;
            let (_, _, two) = load(&format!("{host}/api/v3/engine/cpu"), None, 2, 100).await;
            println!(
                "request/cpu_bound/{mode}: {one:.1} req/s at concurrency 1, {two:.1} at 2 ({:.2}x)",
                two / one
            );
        }
        for (database, kind) in [("bench", "sync"), ("bench_async", "async")] {
            if !warm || !wanted(&format!("wal/row_transform/{kind}")) {
                continue;
            }
            let rate = wal_transform(&host, &storage, database).await;
            // A call's record is kept just after its writes are queryable: let the last
            // one land.
            tokio::time::sleep(Duration::from_millis(500)).await;
            // Where the time went: the plugin's calls, instantiation included.
            let calls: Vec<_> = engine
                .records
                .invocations(storage.catalog().database_id(database).expect("exists"))
                .into_iter()
                .filter(|r| r.trigger == "transform")
                .collect();
            let plugin_ms: f64 = calls.iter().map(|r| r.duration_ns as f64 / 1e6).sum();
            let cpu_ms: f64 = calls.iter().map(|r| r.cpu_ns as f64 / 1e6).sum();
            println!(
                "wal/row_transform/{kind}: {rate:.0} rows/s end to end (100000 rows); {} plugin calls took {plugin_ms:.0} ms, {cpu_ms:.0} ms of CPU ({:.1} µs and {:.1} µs of CPU per row)",
                calls.len(),
                plugin_ms * 1000.0 / 100_000.0,
                cpu_ms * 1000.0 / 100_000.0,
            );
        }
    }
}
