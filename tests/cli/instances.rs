//! The sandbox's instances as a budget, not a cap (issue 18): a call without a warm
//! instance evicts the least recently used idle one rather than fail, idle instances go
//! after their idle time, and only when every instance is running a call does a call
//! wait, then get 503 with `Retry-After` (a schedule or WAL trigger's is tried again).

use crate::server::{TestServer, plugin_dir_with, trigger_body};
use crate::support::root;
use serde_json::Value;
use std::time::{Duration, Instant};

/// A server with database `db`, `slow.py` (answers after `?seconds=`), `remembers.py`
/// and `ticks.py` (a schedule plugin writing a row), started with `flags`.
fn server(dir: &std::path::Path, flags: &[&str]) -> TestServer {
    let read = |path: &str| std::fs::read_to_string(root().join(path)).expect("test plugin");
    let plugins = plugin_dir_with(
        dir,
        &[
            ("slow.py", &read("tests/plugins/tenants/slow.py")),
            ("remembers.py", &read("tests/plugins/engine/remembers.py")),
            ("ticks.py", &read("tests/plugins/security/beta_schedule.py")),
        ],
    );
    let plugins = plugins.to_str().expect("utf-8 path").to_string();
    let server = TestServer::start_with(
        dir,
        &[&["--plugin-dir", plugins.as_str()][..], flags].concat(),
    );
    server.create_database("db");
    server
}

/// The value of the engine's metric `name` (without its prefix, with its labels), if it
/// is shown.
fn metric(server: &TestServer, name: &str) -> Option<u64> {
    seconds_metric(server, name).map(|value| value as u64)
}

/// The value of the engine's metric `name`, a number of seconds, if it is shown.
fn seconds_metric(server: &TestServer, name: &str) -> Option<f64> {
    let text = server.get("/metrics", &[]).text();
    let prefix = format!("sluice_plugin_{name} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix)?.parse::<f64>().ok())
}

#[test]
fn more_triggers_than_instances_all_answer() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = server(dir.path(), &["--max-instances", "2"]);
    let names: Vec<String> = (0..5).map(|i| format!("memo{i}")).collect();
    for name in &names {
        add_remembers(&server, name);
    }
    // Twice round: each call after the second needs an instance another trigger holds.
    for _ in 0..2 {
        for name in &names {
            let response = server.get(&format!("/api/v3/engine/{name}"), &[]);
            assert_eq!(response.status, 200, "{name}: {}", response.text());
        }
    }
    assert_eq!(metric(&server, "instances_capacity"), Some(2));
    assert!(metric(&server, "instances_live").is_some_and(|live| live <= 2));
    let evicted = metric(&server, "instances_evicted_total").unwrap_or_default();
    assert!(evicted >= 8, "{evicted} evicted");
    assert_eq!(metric(&server, "instance_waits_refused_total"), Some(0));
}

#[test]
fn idle_instances_are_dropped_after_their_idle_time() {
    let dir = tempfile::tempdir().expect("temp dir");
    // No spares: they are alive, idle or not.
    let server = server(
        dir.path(),
        &["--instance-idle-time", "1s", "--spare-instances", "0"],
    );
    server.add_trigger("memo", "request:memo", "remembers.py", Value::Null, "log");
    assert_eq!(server.get("/api/v3/engine/memo", &[]).status, 200);
    assert_eq!(
        metric(&server, "instances_idle"),
        Some(1),
        "kept warm after the call"
    );
    let started = Instant::now();
    while metric(&server, "instances_idle") != Some(0) {
        assert!(started.elapsed() < Duration::from_secs(30), "never dropped");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(metric(&server, "instances_live"), Some(0));
    assert_eq!(metric(&server, "instances_expired_total"), Some(1));
    // The trigger still answers, on a fresh instance, which loads the plugin's code as
    // the first instance compiled it. (The sandbox's own warm-up plugin, compiled once
    // and loaded once while the server learnt which pages a call touches, counts too.)
    let misses = metric(&server, "compiled_code_misses_total");
    let hits = metric(&server, "compiled_code_hits_total").unwrap_or_default();
    assert_eq!(misses, Some(2), "the plugin's and the warm-up's");
    assert_eq!(server.get("/api/v3/engine/memo", &[]).status, 200);
    assert_eq!(metric(&server, "compiled_code_misses_total"), misses);
    assert_eq!(metric(&server, "compiled_code_hits_total"), Some(hits + 1));
    assert!(metric(&server, "compiled_code_bytes").is_some_and(|bytes| bytes > 0));
}

#[test]
fn a_call_that_finds_every_instance_running_waits_then_gets_503() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = server(
        dir.path(),
        &["--max-instances", "1", "--instance-wait", "300ms"],
    );
    server.add_trigger("slow", "request:slow", "slow.py", Value::Null, "log");
    server.add_trigger("memo", "request:memo", "remembers.py", Value::Null, "log");
    server.add_trigger("ticks", "every:1s", "ticks.py", Value::Null, "log");
    let address = server.address;
    let token = server.token().to_string();
    let slow = std::thread::spawn(move || {
        let bearer = format!("Bearer {token}");
        let target = "/api/v3/engine/slow?seconds=4";
        crate::http::request(address, "GET", target, &[("authorization", &bearer)], b"").status
    });
    // Once the slow call holds the only instance, another call waits its bound, then
    // hears why, and when to try again.
    let started = Instant::now();
    let refused = loop {
        let response = server.get("/api/v3/engine/memo", &[]);
        if response.status == 503 {
            break response;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "never refused: {} {}",
            response.status,
            response.text()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(refused.header("retry-after").is_some(), "no Retry-After");
    let text = refused.text();
    assert!(
        text.contains("every one of the server's 1 plugin instances was running a call for 300ms"),
        "{text}"
    );
    assert!(!text.contains("trap"), "{text}");
    assert_eq!(slow.join().expect("slow call"), 200);
    assert_eq!(server.get("/api/v3/engine/memo", &[]).status, 200);
    // The schedule trigger's calls that found no instance were tried again, not lost.
    server.eventually("db", "SELECT count(*) AS n FROM ticks", |rows| {
        rows[0]["n"].as_i64().is_some_and(|n| n >= 1)
    });
    let logged = server.query(
        "db",
        "SELECT count(*) AS n FROM system.processing_engine_logs \
         WHERE trigger_name = 'memo' AND log_text LIKE 'request plugin not run: every one%'",
    );
    assert!(logged[0]["n"].as_i64().is_some_and(|n| n >= 1), "{logged}");
    let not_started = metric(
        &server,
        r#"calls_not_started_total{database="db",trigger="memo"}"#,
    );
    assert!(not_started.is_some_and(|n| n >= 1), "{not_started:?}");
}

/// A flood of one database's calls waits behind itself: when every instance is busy, the
/// next free one goes to the other database's call, which never fails.
#[test]
fn a_flood_of_one_database_never_fails_another_databases_call() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = server(
        dir.path(),
        &["--max-instances", "2", "--instance-wait", "6s"],
    );
    server.create_database("quiet");
    let mut flood = trigger_body("flood", "request:flood", "slow.py", Value::Null, "log");
    flood["trigger_settings"]["run_async"] = serde_json::json!(true);
    let created = server.post(
        "/api/v3/configure/processing_engine_trigger",
        &[("content-type", "application/json")],
        flood.to_string().as_bytes(),
    );
    assert_eq!(created.status, 200, "{}", created.text());
    let mut memo = trigger_body(
        "memo",
        "request:quiet/memo",
        "remembers.py",
        Value::Null,
        "log",
    );
    memo["db"] = serde_json::json!("quiet");
    let created = server.post(
        "/api/v3/configure/processing_engine_trigger",
        &[("content-type", "application/json")],
        memo.to_string().as_bytes(),
    );
    assert_eq!(created.status, 200, "{}", created.text());
    // Warm the quiet database's trigger, so that its calls need only a turn.
    assert_eq!(server.get("/api/v3/engine/quiet/memo", &[]).status, 200);

    // Sixteen callers (the database's quota of calls at once) keep calling the flooding
    // trigger until the quiet calls are done.
    let (address, token) = (server.address, server.token().to_string());
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooding: Vec<_> = (0..16)
        .map(|_| {
            let (token, done) = (token.clone(), std::sync::Arc::clone(&done));
            std::thread::spawn(move || {
                let bearer = format!("Bearer {token}");
                let target = "/api/v3/engine/flood?seconds=1.5";
                let started = Instant::now();
                let mut statuses = Vec::new();
                while !done.load(std::sync::atomic::Ordering::Relaxed)
                    && started.elapsed() < Duration::from_secs(30)
                {
                    let headers = [("authorization", bearer.as_str())];
                    statuses
                        .push(crate::http::request(address, "GET", target, &headers, b"").status);
                }
                statuses
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    // In one line, each of these would wait behind fourteen flooding calls (10.5 s).
    for _ in 0..3 {
        let response = server.get("/api/v3/engine/quiet/memo", &[]);
        assert_eq!(response.status, 200, "{}", response.text());
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let statuses: Vec<u16> = flooding
        .into_iter()
        .flat_map(|caller| caller.join().expect("flooding caller"))
        .collect();
    assert!(
        statuses.iter().all(|status| [200, 503].contains(status)),
        "{statuses:?}"
    );
    assert!(statuses.contains(&200), "{statuses:?}");
    // The flood waited in the queue, and the operator sees for how long.
    let flood = r#"{database="db",trigger="flood"}"#;
    let queued = metric(&server, &format!("calls_queued_total{flood}"));
    assert!(queued.is_some_and(|n| n >= 1), "{queued:?}");
    let waited = seconds_metric(&server, &format!("queue_seconds_total{flood}"));
    assert!(waited.is_some_and(|seconds| seconds > 0.0), "{waited:?}");
}

/// Adds request trigger `name` of `remembers.py`, answering at `/api/v3/engine/<name>`.
fn add_remembers(server: &TestServer, name: &str) {
    server.add_trigger(
        name,
        &format!("request:{name}"),
        "remembers.py",
        Value::Null,
        "log",
    );
}

/// Adds request trigger `name` of `remembers.py` and calls it once, which must answer 200.
fn add_and_call(server: &TestServer, name: &str) {
    add_remembers(server, name);
    let response = server.get(&format!("/api/v3/engine/{name}"), &[]);
    assert_eq!(response.status, 200, "{name}: {}", response.text());
}

/// Waits until the engine's metric `name` is `value`.
fn wait_for_metric(server: &TestServer, name: &str, value: u64) {
    let started = Instant::now();
    while metric(server, name) != Some(value) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{name} never reached {value}: {:?}",
            metric(server, name)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A call without a warm instance loads its plugin into a spare instance the server made
/// beforehand, and the server makes the next one.
#[test]
fn a_call_without_a_warm_instance_takes_a_spare_and_the_server_makes_another() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = server(dir.path(), &["--spare-instances", "1"]);
    wait_for_metric(&server, "instances_spare", 1);
    for (round, name) in ["first", "second"].into_iter().enumerate() {
        add_and_call(&server, name);
        assert_eq!(
            metric(&server, "instances_spares_taken_total"),
            Some(round as u64 + 1)
        );
        // Made again in the background.
        wait_for_metric(&server, "instances_spares_made_total", round as u64 + 2);
        wait_for_metric(&server, "instances_spare", 1);
    }
    // Each trigger has an instance of its own now: the next calls take no spare.
    assert_eq!(server.get("/api/v3/engine/first", &[]).status, 200);
    assert_eq!(metric(&server, "instances_spares_taken_total"), Some(2));
}

/// Bounds that cannot run an instance are refused at start, naming them.
#[test]
fn instance_bounds_that_cannot_work_are_refused_at_start() {
    for (flag, value, says) in [
        ("--max-instances", "0", "0 is not in 1..=10000"),
        (
            "--instance-memory-budget",
            "1000",
            "1000 is not in 16777216..",
        ),
        (
            "--instance-wait",
            "0s",
            "the duration must be more than zero",
        ),
    ] {
        let refused = crate::support::sluice()
            .args(["serve", flag, value])
            .output()
            .expect("sluice runs");
        assert!(!refused.status.success());
        let text = crate::support::text(&refused);
        assert!(text.contains(says), "{flag} {value}: {text}");
    }
    // Spares that would hold every instance.
    let dir = tempfile::tempdir().expect("temp dir");
    let plugins = plugin_dir_with(dir.path(), &[]);
    let refused = crate::support::sluice()
        .args([
            "serve",
            "--http-bind",
            "127.0.0.1:0",
            "--max-instances",
            "4",
        ])
        .args(["--spare-instances", "4", "--plugin-dir"])
        .arg(&plugins)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .expect("sluice runs");
    assert!(!refused.status.success());
    let text = crate::support::text(&refused);
    assert!(
        text.contains("--spare-instances 4 would leave no instance for calls: it must be below --max-instances (4)"),
        "{text}"
    );
}

/// Issue 18, point 5: a `run_async` trigger runs at most its `--max-concurrency` calls at
/// once; a request beyond it is answered 429, naming the bound.
#[test]
fn a_trigger_runs_no_more_calls_at_once_than_its_max_concurrency() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = server(dir.path(), &[]);
    let create = |extra: &[&str]| {
        let args = [
            &[
                "create",
                "trigger",
                "-d",
                "db",
                "--trigger-spec",
                "request:capped",
            ][..],
            &["--path", "slow.py", "--run-asynchronous"],
            extra,
            &["capped"],
        ]
        .concat();
        server.cli(&args)
    };
    let refused = create(&["--max-concurrency", "0"]);
    assert!(
        crate::support::text(&refused).contains("max_concurrency must be from 1 to 1024, not 0"),
        "{}",
        crate::support::text(&refused)
    );
    let created = create(&["--max-concurrency", "1"]);
    assert!(
        created.status.success(),
        "{}",
        crate::support::text(&created)
    );
    let shown = server.query(
        "db",
        "SELECT max_concurrency FROM system.processing_engine_triggers",
    );
    assert_eq!(shown, serde_json::json!([{"max_concurrency": 1}]));
    // Warm, so that the long call below starts at once.
    assert_eq!(
        server.get("/api/v3/engine/capped?seconds=0", &[]).status,
        200
    );
    let (address, token) = (server.address, server.token().to_string());
    let first = std::thread::spawn(move || {
        let bearer = format!("Bearer {token}");
        let target = "/api/v3/engine/capped?seconds=3";
        crate::http::request(address, "GET", target, &[("authorization", &bearer)], b"").status
    });
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let refused = loop {
        let response = server.get("/api/v3/engine/capped?seconds=0", &[]);
        if response.status == 429 {
            break response;
        }
        assert_eq!(response.status, 200, "{}", response.text());
        assert!(started.elapsed() < Duration::from_secs(3), "never refused");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        refused.text().contains("max_concurrency 1"),
        "{}",
        refused.text()
    );
    assert_eq!(first.join().expect("first call"), 200);
    assert_eq!(
        server.get("/api/v3/engine/capped?seconds=0", &[]).status,
        200
    );
}

/// One mapping of the Python runtime's memory image in the server, from
/// `/proc/<pid>/smaps`.
#[derive(Debug)]
struct ImageMapping {
    /// Its pages mapped, in KiB: read from the image (shared) or copied (its own).
    rss_kib: u64,
    /// Its own pages, in KiB: those the instance wrote.
    anonymous_kib: u64,
    /// Registered with the server's userfaultfd (`uw`), which turns fault-around off.
    page_by_page: bool,
}

/// The image mappings of process `pid`: its private, writable mappings of the compiled
/// runtime (`.cwasm`) or of wasmtime's image `memfd`.
fn image_mappings(pid: u32) -> Vec<ImageMapping> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).expect("smaps");
    let mut found = Vec::new();
    let mut current: Option<ImageMapping> = None;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        if !first.ends_with(':') {
            // A mapping's first line; its path is the rest of the line.
            found.extend(current.take());
            let path = line.strip_suffix(" (deleted)").unwrap_or(line);
            let image = path.ends_with(".cwasm") || path.ends_with(" /memfd:wasm-memory-image");
            current = (fields.next() == Some("rw-p") && image).then_some(ImageMapping {
                rss_kib: 0,
                anonymous_kib: 0,
                page_by_page: false,
            });
            continue;
        }
        let Some(mapping) = current.as_mut() else {
            continue;
        };
        let kib = |value: Option<&str>| value.and_then(|v| v.parse().ok()).unwrap_or(0);
        match first {
            "Rss:" => mapping.rss_kib = kib(fields.next()),
            "Anonymous:" => mapping.anonymous_kib = kib(fields.next()),
            "VmFlags:" => mapping.page_by_page = fields.any(|flag| flag == "uw"),
            _ => {}
        }
    }
    found.extend(current);
    found
}

/// The image mappings of `server` that hold a warm instance (it wrote to them), after
/// calling each of `triggers` (request triggers of `remembers.py`, made here) once.
fn warm_images_after_calls(server: &TestServer, triggers: &[&str]) -> Vec<ImageMapping> {
    for name in triggers {
        add_and_call(server, name);
    }
    image_mappings(server.pid())
        .into_iter()
        .filter(|mapping| mapping.anonymous_kib > 0)
        .collect()
}

/// A warm instance maps only the pages of the runtime's memory image it touches (issue
/// 18, point 3). With Linux's fault-around, a trivial plugin's warm instance mapped
/// about 9.8 MiB of the image, and RSS counts those pages once per instance.
#[test]
fn a_warm_instance_maps_only_the_image_pages_it_touches() {
    let dir = tempfile::tempdir().expect("temp dir");
    // No spares: only the calls' instances are alive, each the first in its slot.
    let page_by_page = server(dir.path(), &["--spare-instances", "0"]);
    let warm = warm_images_after_calls(&page_by_page, &["memo0", "memo1", "memo2", "memo3"]);
    assert_eq!(
        warm.len(),
        4,
        "one image mapping per warm instance: {warm:?}"
    );
    for mapping in &warm {
        assert!(
            mapping.page_by_page,
            "registered with the server's userfaultfd before its plugin loaded (is \
             userfaultfd allowed here? Linux 6.7 or later): {mapping:?}"
        );
        assert!(
            mapping.rss_kib <= 4096,
            "a warm instance maps at most 4 MiB of the image: {mapping:?}"
        );
    }
    let most_page_by_page = warm.iter().map(|mapping| mapping.rss_kib).max();
    drop(page_by_page);

    // With fault-around kept, the same instance maps more than twice as much.
    let dir = tempfile::tempdir().expect("temp dir");
    let fault_around = server(
        dir.path(),
        &["--spare-instances", "0", "--image-fault-around"],
    );
    let warm = warm_images_after_calls(&fault_around, &["memo"]);
    assert_eq!(warm.len(), 1, "{warm:?}");
    assert!(!warm[0].page_by_page, "{warm:?}");
    assert!(
        warm[0].rss_kib > 2 * most_page_by_page.unwrap_or(0),
        "{warm:?}, page by page at most {most_page_by_page:?} KiB"
    );
}
