//! Each plugin instance's `/tmp` on the real server: empty when a call starts, nothing
//! left on the host when it ends, bounded per call and for the server, and no tenant's
//! files in sight of another's.

use crate::server::{TestServer, plugin_dir_with, trigger_body};
use crate::support::root;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

/// A server running `scratch.py`, with databases `a` and `b`, started with `flags`.
fn server(dir: &Path, flags: &[&str]) -> TestServer {
    let server = server_with(dir, flags);
    server.create_database("a");
    server.create_database("b");
    server
}

/// A server as [`server`] makes, the plugins' `/tmp` made in `tmp_root` (created).
fn server_in(dir: &Path, tmp_root: &Path) -> TestServer {
    std::fs::create_dir(tmp_root).expect("tmp root");
    server(dir, &tmp_flags(tmp_root))
}

fn tmp_flags(tmp_root: &Path) -> [&str; 2] {
    ["--plugin-tmp-dir", tmp_root.to_str().expect("utf-8")]
}

/// A server running `scratch.py` from the plugin directory in `dir`, started with
/// `flags`.
fn server_with(dir: &Path, flags: &[&str]) -> TestServer {
    let code =
        std::fs::read_to_string(root().join("tests/plugins/tmp/scratch.py")).expect("test plugin");
    let plugins = plugin_dir_with(dir, &[("scratch.py", &code)]);
    let plugins = plugins.to_str().expect("utf-8 path").to_string();
    TestServer::start_with(
        dir,
        &[&["--plugin-dir", plugins.as_str()][..], flags].concat(),
    )
}

/// Adds the request trigger `name` on database `db`, running `scratch.py`.
fn add_scratch(server: &TestServer, db: &str, name: &str, limits: Value) {
    let mut body = trigger_body(
        name,
        &format!("request:{name}"),
        "scratch.py",
        Value::Null,
        "log",
    );
    body["db"] = json!(db);
    if !limits.is_null() {
        body["limits"] = limits;
    }
    let response = server.create_trigger(&body);
    assert_eq!(response.status, 200, "{}", response.text());
}

/// What `scratch.py` of trigger `name` answered for `query`.
fn scratch(server: &TestServer, name: &str, query: &str) -> Value {
    let response = server.get(&format!("/api/v3/engine/{name}?{query}"), &[]);
    assert_eq!(response.status, 200, "{}", response.text());
    response.json()
}

/// The regular files anywhere below `dir`.
fn files_below(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable") {
            let entry = entry.expect("entry");
            if entry.file_type().expect("type").is_dir() {
                pending.push(entry.path());
            } else {
                found.push(entry.path());
            }
        }
    }
    found
}

/// The warnings the log of trigger `name` in `db` holds.
fn warnings(server: &TestServer, db: &str, name: &str) -> Vec<String> {
    let rows = server.query(
        db,
        &format!(
            "SELECT log_text FROM system.processing_engine_logs \
             WHERE trigger_name = '{name}' AND log_level = 'WARN'"
        ),
    );
    rows.as_array()
        .expect("rows")
        .iter()
        .filter_map(|row| row["log_text"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn each_call_finds_tmp_empty_and_leaves_nothing_on_the_host() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tmp_root = dir.path().join("plugin-tmp");
    let server = server_in(dir.path(), &tmp_root);
    add_scratch(&server, "a", "scratch", Value::Null);
    add_scratch(&server, "a", "small", json!({"max_tmp_bytes": 20_480}));
    for _ in 0..3 {
        let answer = scratch(&server, "scratch", "write=100000");
        assert_eq!(answer, json!({"before": [], "write": "ok"}));
        assert_eq!(files_below(&tmp_root), Vec::<std::path::PathBuf>::new());
    }
    // Each call is charged what it wrote: the file's page, the 25 pages its bytes touch,
    // and, in the first call of an instance, Python's probe of the directory (a file of
    // 4 bytes: two pages).
    let written = 26 * 4096;
    server.eventually(
        "a",
        "SELECT tmp_bytes FROM system.processing_engine_invocations \
         WHERE trigger_name = 'scratch'",
        |rows| {
            rows.as_array().is_some_and(|rows| {
                rows.len() == 3
                    && rows.iter().all(|row| {
                        row["tmp_bytes"]
                            .as_u64()
                            .is_some_and(|bytes| (written..=written + 8192).contains(&bytes))
                    })
            })
        },
    );
    let metrics = server.get("/metrics", &[]).text();
    let total = metrics
        .lines()
        .find_map(|line| {
            line.strip_prefix(r#"sluice_plugin_tmp_bytes_total{database="a",trigger="scratch"} "#)
        })
        .and_then(|value| value.parse::<u64>().ok());
    assert!(total.is_some_and(|total| total >= 3 * written), "{total:?}");
    // The trigger's own limit, 20 KiB: a file counts a page and the pages of its bytes
    // (and Python's tempfile writes a file of 4 bytes once, to find a writable
    // directory: two pages).
    assert_eq!(
        scratch(&server, "small", "write=4000"),
        json!({"before": [], "write": "ok"})
    );
    assert_eq!(
        scratch(&server, "small", "write=17000"),
        json!({"before": [], "write": "ENOSPC"})
    );
    let said = warnings(&server, "a", "small");
    assert!(
        said.iter()
            .any(|text| text.contains("/tmp is full") && text.contains("20 KiB")),
        "{said:?}"
    );
    assert_eq!(files_below(&tmp_root), Vec::<std::path::PathBuf>::new());
    // A server that stopped leaves its directory to the next one, which removes it.
    assert!(server.terminate().success());
    let before_restart = server_dirs(&tmp_root);
    assert_eq!(before_restart.len(), 1, "{before_restart:?}");
    let server = server_with(dir.path(), &tmp_flags(&tmp_root));
    assert_eq!(
        scratch(&server, "scratch", "write=10"),
        json!({"before": [], "write": "ok"})
    );
    let after_restart = server_dirs(&tmp_root);
    assert_eq!(after_restart.len(), 1, "{after_restart:?}");
    assert_ne!(after_restart, before_restart);
}

/// A file a plugin keeps open past its call holds its bytes on the host whatever its
/// name: the instance runs no other call (each call finds no file kept by an earlier
/// one), and its name is gone from the host when the call ends.
#[test]
fn an_instance_keeping_a_tmp_file_open_runs_no_other_call() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tmp_root = dir.path().join("plugin-tmp");
    let server = server_in(dir.path(), &tmp_root);
    add_scratch(&server, "a", "keeper", Value::Null);
    for _ in 0..3 {
        assert_eq!(
            scratch(&server, "keeper", "write=500000&keep=1"),
            json!({"before": [], "kept": false, "write": "ok"})
        );
        assert_eq!(files_below(&tmp_root), Vec::<std::path::PathBuf>::new());
    }
}

/// The names in `tmp_root`: one directory per server.
fn server_dirs(tmp_root: &Path) -> Vec<std::ffi::OsString> {
    std::fs::read_dir(tmp_root)
        .expect("readable")
        .map(|entry| entry.expect("entry").file_name())
        .collect()
}

/// One database's calls holding their `/tmp` full take no more than the server's
/// budget; another database's call then finds no room (and is told why), never the
/// first one's files, and has room once those calls end.
#[test]
fn tenants_share_the_servers_tmp_budget_and_never_see_each_others_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tmp_root = dir.path().join("plugin-tmp");
    std::fs::create_dir(&tmp_root).expect("tmp root");
    let server = server(
        dir.path(),
        &[
            &["--plugin-tmp-budget", "1048576"][..],
            &tmp_flags(&tmp_root),
        ]
        .concat(),
    );
    add_scratch(&server, "a", "holder", Value::Null);
    add_scratch(&server, "b", "other", Value::Null);
    let address = server.address;
    let token = server.token().to_string();
    let holder = std::thread::spawn(move || {
        let bearer = format!("Bearer {token}");
        let target = "/api/v3/engine/holder?write=900000&hold=6";
        let response =
            crate::http::request(address, "GET", target, &[("authorization", &bearer)], b"");
        assert_eq!(response.status, 200, "{}", response.text());
        response.json()
    });
    // Once the holder's file is written whole on the host (its pages were counted
    // before), the other database's write finds the budget spent.
    let started = Instant::now();
    while !files_below(&tmp_root)
        .iter()
        .any(|file| std::fs::metadata(file).is_ok_and(|meta| meta.len() == 900_000))
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the holder never wrote its file"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let answer = scratch(&server, "other", "write=300000");
    assert_eq!(answer, json!({"before": [], "write": "ENOSPC"}));
    let said = warnings(&server, "b", "other");
    assert!(
        said.iter()
            .any(|text| text.contains("the server's plugins may hold 1 MiB")),
        "{said:?}"
    );
    assert_eq!(
        holder.join().expect("holder"),
        json!({"before": [], "write": "ok"})
    );
    assert_eq!(
        scratch(&server, "other", "write=300000"),
        json!({"before": [], "write": "ok"})
    );
}
