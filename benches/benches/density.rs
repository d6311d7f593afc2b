//! Many triggers on one server: what each costs in memory when idle, and whether every
//! one answers when there are far more of them than instances.
//!
//! `cargo bench -p sluice-benches --bench density` (`-- TRIGGERS` for another count than
//! 1,000)
//!
//! One server in this process, on a loopback port, with `TRIGGERS` request triggers
//! spread over a hundred databases, a budget of 200 instances and an idle time of 5 s:
//!
//! 1. the process's resident memory before the triggers, with them (never called), and
//!    after every trigger was called once, round-robin (each call a cold one: the budget
//!    holds a fifth of them), and once their instances were dropped as idle: the cost of
//!    an idle trigger is the difference over the count;
//! 2. those cold calls: failures, p50 and p99;
//! 3. every trigger called round-robin at concurrency 8 for 10 s (a working set five
//!    times the budget): failures, calls per second, p50 and p99.

use sluice_catalog::Catalog;
use sluice_engine::ProcessingEngine;
use sluice_engine::cache::CacheStore;
use sluice_engine::fair::FairTurns;
use sluice_engine::invoke::Invoker;
use sluice_engine::plugin_dir::PluginAreas;
use sluice_plugin_api::Limits;
use sluice_query::{PluginDatabase, QueryEngine};
use sluice_sandbox::{Sandbox, SandboxConfig};
use sluice_storage::{StorageConfig, WriteBuffer};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[path = "common/server.rs"]
mod server;

const TRIVIAL: &str = "def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):\n    return 'ok'\n";
const DATABASES: usize = 100;
const INSTANCES: u32 = 200;
const IDLE_TIME: Duration = Duration::from_secs(5);
const CONCURRENCY: usize = 8;
const LOAD_TIME: Duration = Duration::from_secs(10);

/// The process's resident memory, in bytes.
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|kib| kib.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// A server with its sandbox; returns its URL and catalog.
async fn server(dir: &std::path::Path) -> (String, Arc<Catalog>, Arc<ProcessingEngine>) {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).expect("plugin dir");
    std::fs::write(plugins.join("trivial.py"), TRIVIAL).expect("plugin written");
    let config = SandboxConfig {
        max_instances: INSTANCES,
        idle_time: IDLE_TIME,
        ..SandboxConfig::default()
    };
    let wait = config.instance_wait;
    let sandbox = Arc::new(Sandbox::new(config).expect("sandbox"));
    let (storage, _) = WriteBuffer::open(StorageConfig::local(dir.join("data")).expect("config"))
        .await
        .expect("opens");
    let catalog: Arc<Catalog> = Arc::clone(storage.catalog());
    let database = PluginDatabase {
        storage: Arc::clone(&storage),
        query: QueryEngine::new(Arc::clone(&storage)),
    };
    let invoker = Invoker::new(
        sandbox,
        Arc::new(database),
        Arc::new(CacheStore::default()),
        Arc::new(PluginAreas::new(
            plugins,
            dir.join("plugin-areas"),
            dir.join("plugin-environments"),
        )),
        Limits::default(),
        true,
    )
    .with_fair_turns(FairTurns::new(INSTANCES as usize, wait));
    let versions = storage.catalog_store().subscribe();
    let engine =
        ProcessingEngine::start(Arc::clone(&catalog), versions, Arc::new(invoker), |_, _| {
            Ok(())
        });
    storage.spawn_flusher(Duration::from_millis(10), 10_000);
    (server::serve(&storage, &engine).await, catalog, engine)
}

/// One call of `name`: its latency in ms, or `None` when it failed.
async fn call(client: &reqwest::Client, host: &str, name: &str) -> Option<f64> {
    let sent = Instant::now();
    let response = client
        .get(format!("{host}/api/v3/engine/{name}"))
        .send()
        .await
        .ok()?;
    let ok = response.status().is_success();
    response.bytes().await.ok()?;
    ok.then(|| sent.elapsed().as_secs_f64() * 1000.0)
}

fn summary(label: &str, mut latencies: Vec<f64>, failures: usize, seconds: f64) {
    latencies.sort_by(f64::total_cmp);
    if latencies.is_empty() {
        println!("{label}: every call failed ({failures})");
        return;
    }
    println!(
        "{label}: {} calls, {failures} failed, {:.0} calls/s, p50 {:.2} ms, p99 {:.2} ms",
        latencies.len(),
        latencies.len() as f64 / seconds,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if cfg!(debug_assertions) {
        eprintln!("refusing to measure an unoptimised build: run `cargo bench`");
        std::process::exit(2);
    }
    let count: usize = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse().ok())
        .unwrap_or(1_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let (host, catalog, engine) = server(dir.path()).await;
    let names: Vec<String> = (0..count).map(|i| format!("t{i}")).collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = resident_bytes();
    for database in 0..DATABASES {
        catalog
            .create_database(&format!("db{database}"))
            .expect("database");
    }
    for (index, name) in names.iter().enumerate() {
        catalog
            .create_trigger(
                &format!("db{}", index % DATABASES),
                server::trigger(name, &format!("request:{name}"), "trivial.py", false),
            )
            .expect("trigger");
    }
    engine.triggers.settled().await;
    let created = resident_bytes();

    let client = reqwest::Client::new();
    let started = Instant::now();
    let (mut cold, mut failed) = (Vec::with_capacity(count), 0);
    for name in &names {
        match call(&client, &host, name).await {
            Some(ms) => cold.push(ms),
            None => failed += 1,
        }
    }
    summary(
        &format!("{count} triggers, each called once (cold)"),
        cold,
        failed,
        started.elapsed().as_secs_f64(),
    );
    let called = resident_bytes();
    tokio::time::sleep(IDLE_TIME + Duration::from_secs(3)).await;
    let idle = resident_bytes();
    let per_trigger = |after: u64| after.saturating_sub(before) as f64 / count as f64 / 1024.0;
    println!(
        "resident memory: {:.1} MiB before the triggers; {:.1} MiB with {count} never called \
         ({:.1} KiB each); {:.1} MiB after one call each, {INSTANCES} instances warm; {:.1} MiB \
         once idle ({:.1} KiB per trigger; aim 64)",
        mib(before),
        mib(created),
        per_trigger(created),
        mib(called),
        mib(idle),
        per_trigger(idle),
    );

    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (client, host, names, next) = (
                client.clone(),
                host.clone(),
                names.clone(),
                Arc::clone(&next),
            );
            tokio::spawn(async move {
                let (mut latencies, mut failed) = (Vec::new(), 0);
                while started.elapsed() < LOAD_TIME {
                    let name = &names[next.fetch_add(1, Ordering::Relaxed) % names.len()];
                    match call(&client, &host, name).await {
                        Some(ms) => latencies.push(ms),
                        None => failed += 1,
                    }
                }
                (latencies, failed)
            })
        })
        .collect();
    let (mut latencies, mut failed) = (Vec::new(), 0);
    for worker in workers {
        let (some, failures) = worker.await.expect("worker");
        latencies.extend(some);
        failed += failures;
    }
    summary(
        &format!("{count} triggers round-robin at concurrency {CONCURRENCY}"),
        latencies,
        failed,
        started.elapsed().as_secs_f64(),
    );
}
