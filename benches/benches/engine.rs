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
//!   time and fuel the plugin's calls took.
//!
//! Each runs warm twice: `warm`, the engine alone, and `warm_shared`, as `sluice serve`
//! runs it, with the database quotas, the fair turns for instances and the CPU turns:
//! the difference is what sharing the server between tenants costs a call.
//!
//! `cargo bench -p sluice-benches --bench engine -- FILTER` runs only the measurements
//! whose name contains FILTER.

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use sluice_catalog::{Catalog, Quotas};
use sluice_engine::ProcessingEngine;
use sluice_engine::cache::CacheStore;
use sluice_engine::cursors::Cursors;
use sluice_engine::fair::FairTurns;
use sluice_engine::invoke::Invoker;
use sluice_engine::manager::{DEFAULT_ROWS_PER_CALL, WalFeed};
use sluice_engine::plugin_dir::PluginAreas;
use sluice_plugin_api::Limits;
use sluice_query::wal_feed::{FlushFeed, StorageWal};
use sluice_query::{PluginDatabase, QueryEngine};
use sluice_sandbox::{Sandbox, SandboxConfig};
use sluice_storage::{StorageConfig, WriteBuffer};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "common/server.rs"]
mod server;

const TRIVIAL: &str = "def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):\n    return 'ok'\n";
const CPU_BOUND: &str = "def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):\n    total = 0\n    for i in range(300000):\n        total += i * i\n    return str(total)\n";
const TRANSFORM: &str = r#"
def process_writes(influxdb3_local, table_batches, args=None):
    for batch in table_batches:
        if batch["table_name"] != "raw":
            continue
        for row in batch["rows"]:
            influxdb3_local.write(LineBuilder("cooked").tag("host", row["host"]).float64_field("celsius", (row["f"] - 32) / 1.8).time_ns(row["time"]))
"#;

/// A server on a loopback port with the bench triggers; returns its address.
async fn server(
    dir: &Path,
    sandbox: Arc<Sandbox>,
    (warm, shared): (bool, bool),
) -> (String, Arc<WriteBuffer>, Arc<ProcessingEngine>) {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).expect("plugin dir");
    for (name, code) in [
        ("trivial.py", TRIVIAL),
        ("cpu.py", CPU_BOUND),
        ("transform.py", TRANSFORM),
    ] {
        std::fs::write(plugins.join(name), code).expect("plugin written");
    }
    let (storage, _) = WriteBuffer::open(StorageConfig::local(dir.join("data")).expect("config"))
        .await
        .expect("opens");
    let catalog: Arc<Catalog> = Arc::clone(storage.catalog());
    catalog.create_database("bench").expect("database");
    catalog.create_database("bench_async").expect("database");
    for t in [
        server::trigger("trivial", "request:trivial", "trivial.py", false),
        // `run_async`: a synchronous request trigger serves one request at a time.
        server::trigger("cpu", "request:cpu", "cpu.py", true),
        server::trigger("transform", "table:raw", "transform.py", false),
    ] {
        catalog.create_trigger("bench", t).expect("trigger");
    }
    // The same transform, with `run_async`: flushes may be processed side by side.
    let transform = server::trigger("transform", "table:raw", "transform.py", true);
    catalog
        .create_trigger("bench_async", transform)
        .expect("trigger");
    let database = PluginDatabase {
        storage: Arc::clone(&storage),
        query: QueryEngine::new(Arc::clone(&storage)),
    };
    let mut invoker = Invoker::new(
        sandbox,
        Arc::new(database),
        Arc::new(CacheStore::default()),
        Arc::new(PluginAreas::new(
            plugins,
            dir.join("plugin-areas"),
            dir.join("plugin-environments"),
        )),
        Limits::default(),
        warm,
    );
    if shared {
        // As `sluice serve` runs it: quotas, fair turns for instances and the CPU.
        let config = SandboxConfig::default();
        invoker = invoker
            .with_quotas(Arc::clone(&catalog), Quotas::DEFAULT)
            .with_fair_turns(FairTurns::new(
                config.max_instances as usize,
                config.instance_wait,
            ))
            .with_cpu_turns(FairTurns::cpu(
                tokio::runtime::Handle::current().metrics().num_workers(),
                config.epoch_tick,
            ));
    }
    let versions = storage.catalog_store().subscribe();
    let feed = WalFeed {
        wal: Arc::new(StorageWal(Arc::downgrade(&storage))),
        cursors: Cursors::in_memory(),
        rows_per_call: DEFAULT_ROWS_PER_CALL,
    };
    let engine = ProcessingEngine::start(catalog, versions, Arc::new(invoker), |_, _| Ok(()), feed);
    storage.set_flush_observer(Arc::new(FlushFeed(Arc::clone(&engine.triggers))));
    storage.spawn_flusher(Duration::from_millis(10), 10_000);
    (server::serve(&storage, &engine).await, storage, engine)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// `total` GET requests to `url` from `concurrency` clients: (p50 ms, p99 ms, requests/s).
async fn load(url: &str, concurrency: usize, total: usize) -> (f64, f64, f64) {
    let client = reqwest::Client::new();
    // Warm-up: the first call of each client may load an instance.
    for _ in 0..concurrency * 2 {
        client
            .get(url)
            .send()
            .await
            .expect("sent")
            .error_for_status()
            .expect("200");
    }
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url) = (client.clone(), url.to_string());
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(total / concurrency);
                for _ in 0..total / concurrency {
                    let sent = Instant::now();
                    let response = client.get(&url).send().await.expect("sent");
                    assert!(response.status().is_success(), "{}", response.status());
                    response.bytes().await.expect("body");
                    latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await.expect("worker"));
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    (
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.len() as f64 / seconds,
    )
}

/// Rows per second through the transform trigger of `database`.
async fn wal_transform(host: &str, storage: &Arc<WriteBuffer>, database: &str) -> f64 {
    let client = reqwest::Client::new();
    let rows = 100_000;
    let started = Instant::now();
    for batch in 0..10 {
        let body: String = (0..10_000)
            .map(|i| {
                format!(
                    "raw,host=h{} f={} {}\n",
                    i % 10,
                    50 + i % 40,
                    1_700_000_000_000_000_000_i64 + (batch * 10_000 + i) as i64
                )
            })
            .collect();
        let response = client
            .post(format!("{host}/api/v3/write_lp?db={database}"))
            .body(body)
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 204);
    }
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
        if done == Some(rows) {
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
    for (mode, warm, shared, total) in [
        ("fresh", false, false, 400),
        ("warm", true, false, 4_000),
        ("warm_shared", true, true, 4_000),
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        let (host, storage, engine) =
            server(dir.path(), Arc::clone(&sandbox), (warm, shared)).await;
        for concurrency in [1, 8] {
            if !wanted("request/trivial") {
                break;
            }
            let (p50, p99, rate) =
                load(&format!("{host}/api/v3/engine/trivial"), concurrency, total).await;
            println!(
                "request/trivial/{mode}/concurrency_{concurrency}: p50 {p50:.2} ms, p99 {p99:.2} ms, {rate:.0} req/s ({total} requests)"
            );
        }
        if warm && wanted("request/cpu_bound") {
            let (_, _, one) = load(&format!("{host}/api/v3/engine/cpu"), 1, 100).await;
            let (_, _, two) = load(&format!("{host}/api/v3/engine/cpu"), 2, 100).await;
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
            let fuel: u64 = calls.iter().map(|r| r.fuel_used).sum();
            // Fuel is a count of WebAssembly instructions: fuel per nanosecond is how fast
            // this machine ran the plugin during the run.
            println!(
                "wal/row_transform/{kind}: {rate:.0} rows/s end to end (100000 rows); {} plugin calls took {plugin_ms:.0} ms ({:.1} µs and {} fuel per row, {:.1} fuel per ns)",
                calls.len(),
                plugin_ms * 1000.0 / 100_000.0,
                fuel / 100_000,
                fuel as f64 / (plugin_ms * 1e6)
            );
        }
    }
}
