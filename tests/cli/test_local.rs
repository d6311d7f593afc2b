//! `sluice test … --local`: the plugin test commands without a server.

use crate::support::{json, sluice, text};
use serde_json::json;

#[test]
fn wal_plugin_reports_logs_and_writes_under_the_database() {
    let report = json(sluice().args([
        "test",
        "wal_plugin",
        "--local",
        "examples/python/wal_plugin.py",
        "-d",
        "mydb",
        "--lp",
        "cpu,host=a usage=0.5 1\ncpu,host=b usage=0.7 2\nmem,host=a free=3i 3",
        "--input-arguments",
        "double_count_table=cpu,unused=x=y",
    ]));
    assert_eq!(
        report,
        json!({
            "log_lines": [
                "INFO: cpu: 4 rows, first row {'host': 'a', 'usage': 0.5, 'time': 1}",
                "INFO: mem: 1 rows, first row {'host': 'a', 'free': 3, 'time': 3}",
            ],
            "database_writes": {"mydb": [
                "write_reports,table_name=cpu row_count=4i",
                "write_reports,table_name=mem row_count=1i",
            ]},
            "errors": [],
        })
    );
}

#[test]
fn wal_plugin_reads_line_protocol_from_a_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("input.lp");
    std::fs::write(&file, "mem,host=z free=1i 5\n").expect("write");
    let report = json(
        sluice()
            .args([
                "test",
                "wal_plugin",
                "--local",
                "examples/python/wal_plugin.py",
                "--file",
            ])
            .arg(&file),
    );
    assert_eq!(
        report["database_writes"]["test_db"],
        json!(["write_reports,table_name=mem row_count=1i"])
    );
}

#[test]
fn schedule_plugin_reports_the_trigger_time() {
    let report = json(sluice().args([
        "test",
        "schedule_plugin",
        "--local",
        "examples/python/schedule_plugin.py",
        "--call-time",
        "2025-06-17T13:02:35Z",
        "--input-arguments",
        "region=us-east",
    ]));
    assert_eq!(report["trigger_time"], "2025-06-17T13:02:35Z");
    assert_eq!(
        report["log_lines"],
        json!(["INFO: called for 2025-06-17T13:02:35 (run 1) with {'region': 'us-east'}"])
    );
    let next = json(sluice().args([
        "test",
        "schedule_plugin",
        "--local",
        "examples/python/schedule_plugin.py",
        "--schedule",
        "0 0 * * * *",
    ]));
    let time = next["trigger_time"].as_str().expect("a trigger time");
    assert!(time.ends_with(":00:00Z"), "{time}");
}

#[test]
fn request_plugin_reports_the_response() {
    let report = json(sluice().args([
        "test",
        "request_plugin",
        "--local",
        "examples/python/request_plugin.py",
        "--query",
        "name=slu%69ce&x=1+2",
        "--header",
        "Content-Type: application/json",
        "--header",
        "Authorization: Bearer secret",
        "--body",
        r#"{"hello": "world"}"#,
    ]));
    assert_eq!(report["log_lines"], json!(["INFO: request with 1 headers"]));
    assert_eq!(report["response"]["status"], 200);
    assert_eq!(
        report["response"]["headers"],
        json!({"Content-Type": "application/json"})
    );
    let body: serde_json::Value =
        serde_json::from_str(report["response"]["body"].as_str().expect("text body"))
            .expect("JSON body");
    assert_eq!(
        body,
        json!({"query": {"name": "sluice", "x": "1 2"}, "body": {"hello": "world"}, "content_type": "application/json"})
    );
}

#[test]
fn plugin_failures_are_reported_not_crashed() {
    let report = json(sluice().args([
        "test",
        "wal_plugin",
        "--local",
        "examples/hostile/infinite_loop.py",
        "--lp",
        "m f=1i",
        "--cpu-time",
        "100ms",
    ]));
    assert_eq!(
        report["errors"],
        json!(["error executing plugin: CPU time limit of 100ms exceeded"])
    );
    let report = json(sluice().args([
        "test",
        "wal_plugin",
        "--local",
        "examples/python/missing.py",
        "--lp",
        "m f=1i",
    ]));
    assert_eq!(
        report["errors"],
        json!(["error executing plugin: Plugin not found: missing.py"])
    );
}

#[test]
fn bad_input_is_refused_with_a_clear_message() {
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "test",
                "wal_plugin",
                "--local",
                "examples/python/wal_plugin.py",
            ],
            "either --lp or --file must be provided",
        ),
        (
            &[
                "test",
                "wal_plugin",
                "--local",
                "examples/python/wal_plugin.py",
                "--lp",
                "not line protocol",
            ],
            "invalid line protocol input: line 1",
        ),
        (
            &[
                "test",
                "wal_plugin",
                "--local",
                "examples/python/wal_plugin.py",
                "--lp",
                "m f=1",
                "--input-arguments",
                "novalue",
            ],
            "must be formatted as \"key=value\"",
        ),
        (
            &[
                "test",
                "wal_plugin",
                "examples/python/wal_plugin.py",
                "--lp",
                "m f=1",
                "--host",
                "http://127.0.0.1:1",
            ],
            "cannot reach the server at http://127.0.0.1:1",
        ),
        (
            &[
                "test",
                "request_plugin",
                "examples/python/request_plugin.py",
            ],
            "runs only with --local",
        ),
        (
            &[
                "test",
                "schedule_plugin",
                "--local",
                "examples/python/schedule_plugin.py",
                "--schedule",
                "* * * * *",
            ],
            "invalid cron expression",
        ),
        (
            &[
                "test",
                "wal_plugin",
                "--local",
                "examples/python/wal_plugin.py",
                "--lp",
                "m f=1",
                "--wall-time",
                "0s",
            ],
            "a time limit must be at least 1ms, not `0s`",
        ),
        (
            &[
                "test",
                "wal_plugin",
                "--local",
                "examples/python/wal_plugin.py",
                "--lp",
                "m f=1",
                "--cpu-time",
                "500us",
            ],
            "a time limit must be at least 1ms, not `500us`",
        ),
    ];
    for (args, expected) in cases {
        let output = sluice().args(*args).output().expect("sluice runs");
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", text(&output));
        assert!(
            String::from_utf8_lossy(&output.stderr).contains(expected),
            "{args:?}: {}",
            text(&output)
        );
    }
}

#[test]
fn the_compiled_runtime_is_cached_across_runs() {
    let cache = tempfile::tempdir().expect("temp dir");
    let run = || {
        sluice()
            .env("SLUICE_CACHE_DIR", cache.path())
            .env("SLUICE_LOG", "info")
            .args([
                "test",
                "schedule_plugin",
                "--local",
                "examples/python/schedule_plugin.py",
            ])
            .output()
            .expect("sluice runs")
    };
    let first = run();
    assert!(first.status.success(), "{}", text(&first));
    let said = String::from_utf8_lossy(&first.stderr);
    for step in [
        "pre-initialising the Python runtime",
        "compiling the Python runtime",
    ] {
        assert!(said.contains(step), "{}", text(&first));
    }
    let names: Vec<String> = std::fs::read_dir(cache.path())
        .expect("cache dir")
        .map(|entry| {
            entry
                .expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let compiled = names.iter().filter(|name| name.ends_with(".cwasm")).count();
    assert_eq!(compiled, 1, "one compiled artifact is cached: {names:?}");
    let library = names.iter().find(|name| name.starts_with("python-"));
    let library = cache.path().join(library.expect("the runtime's library"));
    for file in ["python315.zip", "sluice-runtime.zip"] {
        assert!(library.join(file).is_file(), "{file} in {names:?}");
    }
    let second = run();
    assert!(second.status.success(), "{}", text(&second));
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(
        !said.contains("compiling") && !said.contains("pre-initialising"),
        "made again: {}",
        text(&second)
    );
}
