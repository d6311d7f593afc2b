//! The pyo3 runtime runs the plugin API's calls on the machine's CPython, through the
//! same door and Python layer as the sandbox.

use sluice_engine::batches::table_batches;
use sluice_engine::cache::CacheStore;
use sluice_engine::dry_run::{DryRunHost, DryRunReport, dry_run};
use sluice_plugin_api::{HttpRequest, Limits, PluginCall, PluginRef};
use sluice_pyo3::Pyo3Runtime;
use std::sync::Arc;

fn host() -> Arc<DryRunHost> {
    Arc::new(DryRunHost::new(
        "db",
        &Limits::default(),
        Arc::new(CacheStore::default()),
        "tests",
    ))
}

fn plugin(dir: &tempfile::TempDir, name: &str, code: &str) -> PluginRef {
    std::fs::write(dir.path().join(name), code).expect("written");
    PluginRef::new(dir.path().to_path_buf(), name.to_string())
}

async fn run(plugin: &PluginRef, call: PluginCall, limits: &Limits) -> DryRunReport {
    let runtime = Pyo3Runtime::start(None).expect("the machine's Python starts");
    dry_run(&runtime, plugin, call, limits, host()).await
}

fn writes(lp: &str) -> PluginCall {
    let parsed = sluice_lp::parse(lp, sluice_lp::Precision::Nanosecond, 0);
    PluginCall::Writes {
        batches: table_batches(&parsed.lines).batches.into(),
        args: Some(vec![("factor".into(), "2".into())]),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wal_plugin_gets_its_rows_as_dicts_and_writes_lines() {
    let dir = tempfile::tempdir().expect("temp dir");
    let wal = plugin(
        &dir,
        "wal.py",
        r#"
import sys
def process_writes(influxdb3_local, table_batches, args=None):
    for batch in table_batches:
        for row in batch["rows"]:
            influxdb3_local.info(batch["table_name"], row)
            line = LineBuilder("doubled").tag("host", row["host"])
            line.float64_field("usage", row["usage"] * int(args["factor"]))
            influxdb3_local.write(line)
    influxdb3_local.warn("native", sys.implementation.name, hasattr(sys, "_emscripten_info"))
"#,
    );
    let report = run(
        &wal,
        writes("cpu,host=a usage=0.5 10\ncpu,host=b usage=1.25 20"),
        &Limits::default(),
    )
    .await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(
        report.log_lines,
        [
            "INFO: cpu {'host': 'a', 'usage': 0.5, 'time': 10}",
            "INFO: cpu {'host': 'b', 'usage': 1.25, 'time': 20}",
            "WARN: native cpython False",
        ]
    );
    assert_eq!(
        report.database_writes["db"],
        ["doubled,host=a usage=1.0", "doubled,host=b usage=2.5"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_plugin_answers_and_a_failure_names_its_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let request = plugin(
        &dir,
        "hook.py",
        r#"
def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
    if query_parameters.get("fail"):
        raise ValueError("asked to fail")
    return {"echo": request_body.decode(), "n": int(query_parameters["n"]) + 1}
"#,
    );
    let call = |query: Vec<(String, String)>| PluginCall::Request {
        request: HttpRequest {
            method: "POST".into(),
            path: "hook".into(),
            query,
            headers: vec![],
            body: b"hi".to_vec(),
        },
        args: None,
    };
    let report = run(
        &request,
        call(vec![("n".into(), "41".into())]),
        &Limits::default(),
    )
    .await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let response = report.response.expect("a response");
    assert_eq!(response.status, 200);
    assert_eq!(response.body, r#"{"echo": "hi", "n": 42}"#);
    let report = run(
        &request,
        call(vec![("fail".into(), "1".into())]),
        &Limits::default(),
    )
    .await;
    assert_eq!(
        report.errors,
        ["error executing plugin: ValueError: asked to fail (hook.py, line 4)"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_still_counts_what_it_can_enforce() {
    let dir = tempfile::tempdir().expect("temp dir");
    let chatty = plugin(
        &dir,
        "chatty.py",
        r#"
def process_scheduled_call(influxdb3_local, call_time, args=None):
    try:
        for i in range(100):
            influxdb3_local.info("line", i)
    except Exception:
        influxdb3_local.info("caught, and went on")
"#,
    );
    let limits = Limits {
        log_lines: 3,
        ..Limits::default()
    };
    let call = PluginCall::Schedule {
        call_time_ns: 1_700_000_000_000_000_000,
        args: None,
    };
    let report = run(&chatty, call, &limits).await;
    assert_eq!(report.log_lines.len(), 3, "{:?}", report.log_lines);
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    assert!(report.errors[0].contains("log"), "{:?}", report.errors);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_cache_value_cannot_ask_for_endless_work() {
    let dir = tempfile::tempdir().expect("temp dir");
    // What a tenant's plugin may put in its database's shared cache with the door itself,
    // past the check of `cache.put`, for an admin's pyo3 trigger to read.
    let reader = plugin(
        &dir,
        "reader.py",
        r#"
import pickle
from sluice_plugin_runtime import api
BOMBS = {
    "list of a range": b"cbuiltins\nlist\n(cbuiltins\nrange\n(I1000000000000\ntRtR.",
    "bytes of a size": b"cbuiltins\nbytes\n(I1000000000000\ntR.",
}
def process_scheduled_call(influxdb3_local, call_time, args=None):
    for name, bomb in BOMBS.items():
        try:
            api._shared_value(bomb)
            influxdb3_local.info(name, "built")
        except pickle.UnpicklingError as e:
            influxdb3_local.info(name, "refused:", e)
    influxdb3_local.info(api._shared_value(pickle.dumps({"a": [1, b"x"], "b": bytearray(b"y")})))
"#,
    );
    let call = PluginCall::Schedule {
        call_time_ns: 1_700_000_000_000_000_000,
        args: None,
    };
    let report = run(&reader, call, &Limits::default()).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(
        report.log_lines,
        [
            "INFO: list of a range refused: a value in the shared cache may hold only data \
             (builtin containers, numbers, text, bytes, dates and times, Decimal, Fraction and \
             collections types), not builtins.range",
            "INFO: bytes of a size refused: a value in the shared cache may not ask for a bytes \
             of a size",
            "INFO: {'a': [1, b'x'], 'b': bytearray(b'y')}",
        ]
    );
}
