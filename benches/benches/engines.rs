//! Both engines side by side: the same plugins in the WebAssembly sandbox and on the pyo3
//! runtime (the machine's CPython in the server's process, as the upstream engine runs
//! plugins), each on a server of its own on a loopback port, driven over HTTP, in one run.
//!
//! `cargo bench -p sluice-benches --bench engines`
//!
//! Every plugin's output is checked before it is timed. The workloads, the same for both:
//!
//! - a trivial request plugin: p50 and p99 latency at concurrency 1, throughput at 1, 8
//!   and 64 (a `run_async` trigger);
//! - a row-transform WAL plugin: 100,000 rows written in 10,000-row batches, one row
//!   written back per row; rows per second until every row written back is queryable;
//! - a request plugin that runs an aggregate query over 1,000,000 rows: time per call;
//! - a CPU-bound pure-Python loop (200,000 iterations): time per call at concurrency 1,
//!   throughput at concurrency 2;
//! - 1,000 request triggers of 1,000 distinct plugin files, each called once: the first
//!   call's time, and the resident memory the server keeps per trigger afterwards.
//!
//! It prints one table, each figure for both engines and their ratio (sandbox ÷ pyo3;
//! above 1 the sandbox is faster where more is better, slower where less is), then the
//! same as JSON. It refuses to run unoptimised, and ends by itself (a few minutes on two
//! cores).

use sluice_catalog::{Runtime, Trigger};
use sluice_plugin_api::PluginExecutor;
use sluice_pyo3::Pyo3Runtime;
use sluice_sandbox::{Sandbox, SandboxConfig};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "common/load.rs"]
mod load;
#[path = "common/server.rs"]
mod server;

use load::{get, load, percentile, write_rows};

const TRIVIAL: &str = "def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):\n    return 'ok'\n";

/// The loop of the issue's measurement: 200,000 iterations of integer arithmetic.
const CPU_BOUND: &str = "def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):\n    total = 0\n    for i in range(200000):\n        total += i * i\n    return str(total)\n";
const CPU_ITERATIONS: u128 = 200_000;

const AGGREGATE: &str = r#"
def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
    rows = influxdb3_local.query("SELECT host, count(*) AS n, avg(f) AS mean FROM big GROUP BY host ORDER BY host")
    return {"hosts": len(rows), "rows": sum(row["n"] for row in rows)}
"#;
const AGGREGATE_ROWS: usize = 1_000_000;

const TRANSFORM_ROWS: usize = 100_000;
const DISTINCT_TRIGGERS: usize = 1_000;

/// Waits of the bench for the server (rows to arrive), at most.
const PATIENCE: Duration = Duration::from_secs(300);

/// Whether more of a figure is better.
#[derive(Clone, Copy)]
enum Better {
    More,
    Less,
}

struct Figure {
    name: &'static str,
    unit: &'static str,
    better: Better,
    wasm: f64,
    pyo3: f64,
}

/// One engine's figures, by name, in order.
type Figures = Vec<(&'static str, &'static str, Better, f64)>;

/// Waits until `SELECT count(*)` of `table` is `rows`.
async fn wait_for_rows(host: &str, database: &str, table: &str, rows: usize) {
    let client = reqwest::Client::new();
    let url = format!(
        "{host}/api/v3/query_sql?db={database}&format=json&q=SELECT%20count(*)%20AS%20n%20FROM%20{table}"
    );
    let started = Instant::now();
    let expected = format!("[{{\"n\":{rows}}}]");
    loop {
        if let Ok(response) = client.get(&url).send().await
            && let Ok(body) = response.text().await
            && body.trim() == expected
        {
            return;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "{table} did not reach {rows} rows"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The process's resident memory, in bytes.
fn resident() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|kib| kib.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// A trigger of the bench on `runtime`.
fn trigger(runtime: Runtime, name: &str, spec: &str, plugin: &str) -> Trigger {
    let mut trigger = server::trigger(name, spec, plugin, true);
    if spec.starts_with("table:") {
        // One flush at a time, as the default trigger.
        trigger.trigger_settings.run_async = false;
    }
    trigger.runtime = runtime;
    trigger
}

/// Every figure of one engine: a server with the bench's triggers on `runtime`, run by
/// `executors`.
async fn measure(
    runtime: Runtime,
    executors: (Arc<Sandbox>, Option<Arc<dyn PluginExecutor>>),
) -> Figures {
    let mut figures = Figures::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let triggers = [
        (
            "bench",
            trigger(runtime, "trivial", "request:trivial", "trivial.py"),
        ),
        ("bench", trigger(runtime, "cpu", "request:cpu", "cpu.py")),
        (
            "bench",
            trigger(runtime, "aggregate", "request:aggregate", "aggregate.py"),
        ),
        (
            "bench",
            trigger(runtime, "transform", "table:raw", "transform.py"),
        ),
    ];
    let plugins = [
        ("trivial.py", TRIVIAL),
        ("cpu.py", CPU_BOUND),
        ("aggregate.py", AGGREGATE),
        ("transform.py", server::TRANSFORM),
    ];
    let (host, _storage, _engine) = server::start_with(
        dir.path(),
        executors.clone(),
        &plugins,
        &triggers,
        server::Instances::WarmShared,
    )
    .await;
    let engine = |path: &str| format!("{host}/api/v3/engine/{path}");

    let (p50, p99, one) = load(&engine("trivial"), Some("ok"), 1, 2_000).await;
    figures.push((
        "trivial request, p50 at concurrency 1",
        "ms",
        Better::Less,
        p50,
    ));
    figures.push((
        "trivial request, p99 at concurrency 1",
        "ms",
        Better::Less,
        p99,
    ));
    figures.push(("trivial request, concurrency 1", "req/s", Better::More, one));
    for (name, concurrency) in [
        ("trivial request, concurrency 8", 8),
        ("trivial request, concurrency 64", 64),
    ] {
        let (_, _, rate) = load(&engine("trivial"), Some("ok"), concurrency, 6_400).await;
        figures.push((name, "req/s", Better::More, rate));
    }

    let sum_of_squares = (CPU_ITERATIONS - 1) * CPU_ITERATIONS * (2 * CPU_ITERATIONS - 1) / 6;
    let expected = sum_of_squares.to_string();
    let (p50, _, _) = load(&engine("cpu"), Some(&expected), 1, 20).await;
    figures.push(("CPU-bound loop, time per call", "ms", Better::Less, p50));
    let (_, _, two) = load(&engine("cpu"), Some(&expected), 2, 40).await;
    figures.push(("CPU-bound loop, concurrency 2", "req/s", Better::More, two));

    let started = Instant::now();
    write_rows(&host, "bench", "raw", TRANSFORM_ROWS).await;
    wait_for_rows(&host, "bench", "cooked", TRANSFORM_ROWS).await;
    let rate = TRANSFORM_ROWS as f64 / started.elapsed().as_secs_f64();
    figures.push((
        "WAL row transform, end to end",
        "rows/s",
        Better::More,
        rate,
    ));

    write_rows(&host, "bench", "big", AGGREGATE_ROWS).await;
    wait_for_rows(&host, "bench", "big", AGGREGATE_ROWS).await;
    let expected = format!("{{\"hosts\": 10, \"rows\": {AGGREGATE_ROWS}}}");
    let (p50, _, _) = load(&engine("aggregate"), Some(&expected), 1, 10).await;
    figures.push((
        "aggregate over 1,000,000 rows, time per call",
        "ms",
        Better::Less,
        p50,
    ));

    figures.extend(distinct_triggers(runtime, executors).await);
    figures
}

/// The first calls of [`DISTINCT_TRIGGERS`] triggers of as many plugin files, and the
/// memory the server keeps for them.
async fn distinct_triggers(
    runtime: Runtime,
    executors: (Arc<Sandbox>, Option<Arc<dyn PluginExecutor>>),
) -> Figures {
    let dir = tempfile::tempdir().expect("temp dir");
    let names: Vec<String> = (0..DISTINCT_TRIGGERS).map(|i| format!("t{i}")).collect();
    let code: Vec<String> = names
        .iter()
        .map(|name| TRIVIAL.replace("'ok'", &format!("'{name}'")))
        .collect();
    let files: Vec<String> = names.iter().map(|name| format!("{name}.py")).collect();
    let plugins: Vec<(&str, &str)> = files
        .iter()
        .zip(&code)
        .map(|(file, code)| (file.as_str(), code.as_str()))
        .collect();
    let triggers: Vec<(&str, Trigger)> = names
        .iter()
        .zip(&files)
        .map(|(name, file)| {
            (
                "many",
                trigger(runtime, name, &format!("request:{name}"), file),
            )
        })
        .collect();
    let (host, _storage, _engine) = server::start_with(
        dir.path(),
        executors,
        &plugins,
        &triggers,
        server::Instances::WarmShared,
    )
    .await;
    let client = reqwest::Client::new();
    let before = resident();
    let mut latencies = Vec::with_capacity(names.len());
    for name in &names {
        let sent = Instant::now();
        let body = get(&client, &format!("{host}/api/v3/engine/{name}")).await;
        latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(body, *name);
    }
    let kept = resident().saturating_sub(before) as f64 / DISTINCT_TRIGGERS as f64 / 1024.0;
    latencies.sort_by(f64::total_cmp);
    vec![
        (
            "1,000 triggers, first call p50",
            "ms",
            Better::Less,
            percentile(&latencies, 0.5),
        ),
        (
            "1,000 triggers, first call p99",
            "ms",
            Better::Less,
            percentile(&latencies, 0.99),
        ),
        (
            "1,000 triggers, memory kept per trigger",
            "KiB",
            Better::Less,
            kept,
        ),
    ]
}

fn table(figures: &[Figure]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| figure | sandbox (wasm) | pyo3 | sandbox ÷ pyo3 | the sandbox is |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|");
    for f in figures {
        let ratio = f.wasm / f.pyo3;
        let verdict = match (f.better, ratio >= 1.0) {
            (Better::More, true) | (Better::Less, false) => "ahead",
            _ => "behind",
        };
        let _ = writeln!(
            out,
            "| {} | {:.2} {} | {:.2} {} | {ratio:.2} | {verdict} |",
            f.name, f.wasm, f.unit, f.pyo3, f.unit
        );
    }
    out
}

fn json(figures: &[Figure]) -> String {
    let items: Vec<String> = figures
        .iter()
        .map(|f| {
            format!(
                "{{\"figure\": \"{}\", \"unit\": \"{}\", \"wasm\": {:.4}, \"pyo3\": {:.4}, \"wasm_over_pyo3\": {:.4}}}",
                f.name,
                f.unit,
                f.wasm,
                f.pyo3,
                f.wasm / f.pyo3
            )
        })
        .collect();
    format!("[\n  {}\n]", items.join(",\n  "))
}

#[tokio::main]
async fn main() {
    if cfg!(debug_assertions) {
        eprintln!(
            "the engines bench measures optimised builds only: run it with `cargo bench -p \
             sluice-benches --bench engines`"
        );
        std::process::exit(2);
    }
    let sandbox = Arc::new(
        tokio::task::spawn_blocking(|| Sandbox::new(SandboxConfig::default()))
            .await
            .expect("joined")
            .expect("the sandbox starts"),
    );
    let pyo3: Arc<dyn PluginExecutor> =
        Arc::new(Pyo3Runtime::start(None).expect("the machine's Python starts"));
    eprintln!("sandbox (wasm)...");
    let wasm = measure(Runtime::Wasm, (Arc::clone(&sandbox), None)).await;
    eprintln!("pyo3...");
    let native = measure(Runtime::Pyo3, (sandbox, Some(pyo3))).await;
    let figures: Vec<Figure> = wasm
        .into_iter()
        .zip(native)
        .map(|((name, unit, better, wasm), (_, _, _, pyo3))| Figure {
            name,
            unit,
            better,
            wasm,
            pyo3,
        })
        .collect();
    println!("{}", table(&figures));
    println!("{}", json(&figures));
}
