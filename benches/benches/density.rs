//! Many triggers on one server: what each costs in memory when idle, whether every one
//! answers when there are far more of them than instances, and whether a tenant that
//! floods its triggers slows another's.
//!
//! `cargo bench -p sluice-benches --bench density` (`-- TRIGGERS` for another count than
//! 10,000)
//!
//! One server in this process, on a loopback port, with `TRIGGERS` triggers over a tenth
//! as many databases: 90% request triggers, 5% `every:10s` schedules and 5% WAL
//! triggers (`all_tables`), a budget of 200 instances and an idle time of 5 s. The
//! clients run on threads of their own, outside the server's two worker threads.
//!
//! 1. the process's memory before the triggers, with them (enabled, the request ones
//!    never called), after every request trigger was called once, round-robin (each
//!    call a cold one), and once their instances were dropped as idle: the cost of an
//!    idle trigger is the difference over the count. Memory is given twice: resident
//!    (RSS, which counts a page of the Python runtime's image once per instance mapping
//!    it) and unique (the process's private pages, what the machine actually spends);
//! 2. those cold calls: failures, p50 and p99, and how many loaded their plugin into
//!    one of the 2 spare instances the server keeps ready (as `sluice serve` does;
//!    `DENSITY_SPARES=0` for none);
//!    then 150 other triggers, idle, called one at a time 20 ms apart: cold calls as
//!    they come to a server that is not busy, and how many found a spare ready;
//! 3. the first 1,000 request triggers called round-robin at concurrency 8 for 30 s (a
//!    working set five times the budget): failures, calls per second, p50 and p99;
//! 4. the noisy neighbour: tenant B calls its trivial request trigger at concurrency 1
//!    for 10 s alone, then for 10 s while tenant A calls its 50 `run_async` triggers,
//!    which spin until their wall time (1 s), at concurrency 64: B's p50 and p99 in
//!    both, their ratio and B's failures; A's calls by status.

use sluice_catalog::{Catalog, Quotas};
use sluice_engine::ProcessingEngine;
use sluice_engine::cache::CacheStore;
use sluice_engine::cursors::Cursors;
use sluice_engine::fair::FairTurns;
use sluice_engine::invoke::Invoker;
use sluice_engine::manager::{DEFAULT_ROWS_PER_CALL, WalFeed};
use sluice_engine::plugin_dir::PluginAreas;
use sluice_plugin_api::{LimitOverrides, Limits, PluginExecutor};
use sluice_query::wal_feed::StorageWal;
use sluice_query::{PluginDatabase, QueryEngine};
use sluice_sandbox::{Sandbox, SandboxConfig};
use sluice_storage::{StorageConfig, WriteBuffer};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[path = "common/server.rs"]
mod server;

/// Answers every kind of trigger at once.
const TRIVIAL: &str = "\
def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
    return 'ok'

def process_scheduled_call(influxdb3_local, call_time, args=None):
    pass

def process_writes(influxdb3_local, table_batches, args=None):
    pass
";
/// Spins until its wall time runs out.
const SPIN: &str = "\
def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
    while True:
        pass
";
const WORKER_THREADS: usize = 2;
const TRIGGERS_PER_DATABASE: usize = 10;
const INSTANCES: u32 = 200;
const IDLE_TIME: Duration = Duration::from_secs(5);
const CONCURRENCY: usize = 8;
const WORKING_SET: usize = 1_000;
const LOAD_TIME: Duration = Duration::from_secs(30);
const NOISY_TRIGGERS: usize = 50;
const NOISY_CONCURRENCY: usize = 64;
const NOISY_WALL_TIME_MS: u64 = 1_000;
const NEIGHBOUR_TIME: Duration = Duration::from_secs(10);
/// Spare instances kept ready, as `sluice serve` does by default; `DENSITY_SPARES`
/// sets another count (0 to compare without).
const SPARES: usize = 2;
const OCCASIONAL_CALLS: usize = 150;
const OCCASIONAL_GAP: Duration = Duration::from_millis(20);

/// The process's memory now: resident and unique (private), in bytes.
fn memory() -> (u64, u64) {
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap_or_default();
    let field = |name: &str| {
        rollup
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|kib| kib.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    };
    (
        field("Rss:"),
        field("Private_Clean:") + field("Private_Dirty:"),
    )
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// A server with its sandbox; returns its URL, catalog, engine and sandbox.
async fn server(
    dir: &std::path::Path,
) -> (String, Arc<Catalog>, Arc<ProcessingEngine>, Arc<Sandbox>) {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).expect("plugin dir");
    std::fs::write(plugins.join("trivial.py"), TRIVIAL).expect("plugin written");
    std::fs::write(plugins.join("spin.py"), SPIN).expect("plugin written");
    let config = SandboxConfig {
        max_instances: INSTANCES,
        idle_time: IDLE_TIME,
        ..SandboxConfig::default()
    };
    let (wait, tick) = (config.instance_wait, config.epoch_tick);
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
        Arc::clone(&sandbox) as Arc<dyn PluginExecutor>,
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
    .with_quotas(Arc::clone(&catalog), Quotas::DEFAULT)
    .with_fair_turns(FairTurns::new(INSTANCES as usize, wait))
    .with_cpu_turns(FairTurns::cpu(WORKER_THREADS, tick));
    let spares = std::env::var("DENSITY_SPARES")
        .ok()
        .and_then(|count| count.parse().ok())
        .unwrap_or(SPARES);
    println!("{spares} spare instances");
    invoker.keep_spares(spares);
    let versions = storage.catalog_store().subscribe();
    let feed = WalFeed {
        wal: Arc::new(StorageWal(Arc::downgrade(&storage))),
        cursors: Cursors::in_memory(),
        rows_per_call: DEFAULT_ROWS_PER_CALL,
    };
    let engine = ProcessingEngine::start(
        Arc::clone(&catalog),
        versions,
        Arc::new(invoker),
        |_, _| Ok(()),
        feed,
    );
    storage.spawn_flusher(Duration::from_millis(10), 10_000);
    (
        server::serve(&storage, &engine).await,
        catalog,
        engine,
        sandbox,
    )
}

/// Calls that loaded their plugin into a spare instance so far.
fn spares_taken(sandbox: &Sandbox) -> u64 {
    sandbox
        .instance_stats()
        .map_or(0, |stats| stats.spares_taken)
}

/// One call of `name`: its status, and its latency in ms.
async fn call(client: &reqwest::Client, host: &str, name: &str) -> (u16, f64) {
    let sent = Instant::now();
    let status = match client
        .get(format!("{host}/api/v3/engine/{name}"))
        .send()
        .await
    {
        Ok(response) => {
            let status = response.status().as_u16();
            match response.bytes().await {
                Ok(_) => status,
                Err(_) => 0,
            }
        }
        Err(_) => 0,
    };
    (status, sent.elapsed().as_secs_f64() * 1000.0)
}

/// Calls `names` round-robin from `concurrency` clients for `time` (or, with `None`,
/// each name once), each client waiting `gap` before each call, on a thread of their
/// own; the latencies of the calls answered 200, in ms, and the other calls' count by
/// status (0: no answer).
fn load(
    host: &str,
    names: Vec<String>,
    concurrency: usize,
    time: Option<Duration>,
    gap: Duration,
) -> (Vec<f64>, BTreeMap<u16, usize>) {
    let host = host.to_string();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("client runtime");
        runtime.block_on(async move {
            let client = reqwest::Client::new();
            let names = Arc::new(names);
            let next = Arc::new(AtomicUsize::new(0));
            let started = Instant::now();
            let workers: Vec<_> = (0..concurrency)
                .map(|_| {
                    let (client, host, names, next) = (
                        client.clone(),
                        host.clone(),
                        Arc::clone(&names),
                        Arc::clone(&next),
                    );
                    tokio::spawn(async move {
                        let (mut latencies, mut others) = (Vec::new(), BTreeMap::new());
                        loop {
                            let index = next.fetch_add(1, Ordering::Relaxed);
                            let done = match time {
                                Some(time) => started.elapsed() >= time,
                                None => index >= names.len(),
                            };
                            if done {
                                break;
                            }
                            if !gap.is_zero() {
                                tokio::time::sleep(gap).await;
                            }
                            match call(&client, &host, &names[index % names.len()]).await {
                                (200, ms) => latencies.push(ms),
                                (status, _) => *others.entry(status).or_insert(0) += 1,
                            }
                        }
                        (latencies, others)
                    })
                })
                .collect();
            let (mut latencies, mut others) = (Vec::new(), BTreeMap::new());
            for worker in workers {
                let (some, statuses) = worker.await.expect("worker");
                latencies.extend(some);
                for (status, count) in statuses {
                    *others.entry(status).or_insert(0) += count;
                }
            }
            latencies.sort_by(f64::total_cmp);
            (latencies, others)
        })
    })
    .join()
    .expect("client thread")
}

/// Prints a load's figures; returns its p99 in ms.
fn summary(label: &str, latencies: &[f64], others: &BTreeMap<u16, usize>, seconds: f64) -> f64 {
    let failed: usize = others.values().sum();
    if latencies.is_empty() {
        println!("{label}: every call failed {others:?}");
        return f64::NAN;
    }
    let p99 = percentile(latencies, 0.99);
    println!(
        "{label}: {} calls, {failed} failed {others:?}, {:.0} calls/s, p50 {:.2} ms, p99 {:.2} ms",
        latencies.len(),
        latencies.len() as f64 / seconds,
        percentile(latencies, 0.5),
        p99,
    );
    p99
}

/// The kind of trigger `index` is: 90% request, 5% schedule, 5% WAL.
fn spec(index: usize, name: &str) -> String {
    match index % 20 {
        18 => "every:10s".to_string(),
        19 => "all_tables".to_string(),
        _ => format!("request:{name}"),
    }
}

fn memory_line(label: &str, (rss, unique): (u64, u64), (rss0, unique0): (u64, u64), per: usize) {
    let each = |after: u64, before: u64| after.saturating_sub(before) as f64 / per as f64 / 1024.0;
    println!(
        "{label}: resident {:.1} MiB ({:.1} KiB each of {per}), unique {:.1} MiB ({:.1} KiB each)",
        mib(rss),
        each(rss, rss0),
        mib(unique),
        each(unique, unique0),
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
        .unwrap_or(10_000);
    let databases = count.div_ceil(TRIGGERS_PER_DATABASE);
    let dir = tempfile::tempdir().expect("temp dir");
    let (host, catalog, engine, sandbox) = server(dir.path()).await;
    // One call, and the wait for its instance to expire: the sandbox gives the memory
    // freed by expired instances back, so the baseline is taken after it did once.
    catalog.create_database("warmup").expect("database");
    catalog
        .create_trigger(
            "warmup",
            server::trigger("warmup", "request:warmup", "trivial.py", false),
        )
        .expect("trigger");
    engine.triggers.settled().await;
    load(&host, vec!["warmup".to_string()], 1, None, Duration::ZERO);
    tokio::time::sleep(IDLE_TIME + Duration::from_secs(3)).await;
    let before = memory();
    for database in 0..databases {
        catalog
            .create_database(&format!("db{database}"))
            .expect("database");
    }
    let mut requests = Vec::new();
    for index in 0..count {
        let name = format!("t{index}");
        let spec = spec(index, &name);
        if spec.starts_with("request:") {
            requests.push(name.clone());
        }
        catalog
            .create_trigger(
                &format!("db{}", index % databases),
                server::trigger(&name, &spec, "trivial.py", false),
            )
            .expect("trigger");
    }
    engine.triggers.settled().await;
    let created = memory();
    memory_line(
        &format!("{count} enabled triggers over {databases} databases, none called yet"),
        created,
        before,
        count,
    );

    let started = Instant::now();
    let taken = spares_taken(&sandbox);
    let (cold, others) = load(&host, requests.clone(), 1, None, Duration::ZERO);
    summary(
        &format!(
            "{} request triggers, each called once (cold; {} into a spare instance)",
            requests.len(),
            spares_taken(&sandbox) - taken
        ),
        &cold,
        &others,
        started.elapsed().as_secs_f64(),
    );
    let called = memory();
    memory_line(
        &format!("after one call each, {INSTANCES} instances warm (per warm instance)"),
        called,
        created,
        INSTANCES as usize,
    );
    tokio::time::sleep(IDLE_TIME + Duration::from_secs(3)).await;
    memory_line(
        "once their instances were dropped as idle (per trigger; aim 64 KiB)",
        memory(),
        before,
        count,
    );

    let occasional: Vec<String> = requests
        .iter()
        .skip(WORKING_SET)
        .take(OCCASIONAL_CALLS)
        .cloned()
        .collect();
    let started = Instant::now();
    let taken = spares_taken(&sandbox);
    let (latencies, others) = load(&host, occasional, 1, None, OCCASIONAL_GAP);
    summary(
        &format!(
            "{OCCASIONAL_CALLS} idle triggers called one at a time, {} ms apart (cold; {} into a spare instance)",
            OCCASIONAL_GAP.as_millis(),
            spares_taken(&sandbox) - taken
        ),
        &latencies,
        &others,
        started.elapsed().as_secs_f64(),
    );

    let working_set: Vec<String> = requests.iter().take(WORKING_SET).cloned().collect();
    let started = Instant::now();
    let (latencies, others) = load(
        &host,
        working_set,
        CONCURRENCY,
        Some(LOAD_TIME),
        Duration::ZERO,
    );
    summary(
        &format!(
            "{WORKING_SET} triggers round-robin at concurrency {CONCURRENCY} for {}s",
            LOAD_TIME.as_secs()
        ),
        &latencies,
        &others,
        started.elapsed().as_secs_f64(),
    );

    noisy_neighbour(&host, &catalog, &engine).await;
}

/// Tenant B's latency alone and while tenant A floods spinning triggers.
async fn noisy_neighbour(host: &str, catalog: &Catalog, engine: &ProcessingEngine) {
    catalog.create_database("tenant_a").expect("database");
    catalog.create_database("tenant_b").expect("database");
    let mut noisy = Vec::new();
    for index in 0..NOISY_TRIGGERS {
        let name = format!("spin{index}");
        let mut trigger = server::trigger(&name, &format!("request:{name}"), "spin.py", true);
        trigger.limits = LimitOverrides {
            wall_time_ms: Some(NOISY_WALL_TIME_MS),
            cpu_time_ms: Some(NOISY_WALL_TIME_MS),
            ..LimitOverrides::default()
        };
        catalog
            .create_trigger("tenant_a", trigger)
            .expect("trigger");
        noisy.push(name);
    }
    catalog
        .create_trigger(
            "tenant_b",
            server::trigger("quiet", "request:quiet", "trivial.py", false),
        )
        .expect("trigger");
    engine.triggers.settled().await;
    let quiet = vec!["quiet".to_string()];

    let started = Instant::now();
    let (alone, others) = load(host, quiet.clone(), 1, Some(NEIGHBOUR_TIME), Duration::ZERO);
    let alone_p99 = summary(
        "tenant B alone, concurrency 1",
        &alone,
        &others,
        started.elapsed().as_secs_f64(),
    );
    let flood = {
        let host = host.to_string();
        std::thread::spawn(move || {
            load(
                &host,
                noisy,
                NOISY_CONCURRENCY,
                Some(NEIGHBOUR_TIME + Duration::from_secs(1)),
                Duration::ZERO,
            )
        })
    };
    // Once the flood holds its instances.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let (beside, others) = load(host, quiet, 1, Some(NEIGHBOUR_TIME), Duration::ZERO);
    let beside_p99 = summary(
        &format!(
            "tenant B beside tenant A's flood of {NOISY_TRIGGERS} spinning triggers at concurrency {NOISY_CONCURRENCY}"
        ),
        &beside,
        &others,
        started.elapsed().as_secs_f64(),
    );
    let (flooded, statuses) = flood.join().expect("flood");
    println!(
        "tenant A: {} calls answered 200, the others by status {statuses:?}",
        flooded.len()
    );
    println!(
        "tenant B's p99 beside the flood / alone: {:.2} (aim <= 2)",
        beside_p99 / alone_p99
    );
}
