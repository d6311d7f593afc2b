//! The server survives what its clients send: attacks on its stack, its memory and its
//! connections, against the real binary.

use crate::server::{TestServer, files_ending, plugin_dir_with, trigger_body, wait_for_manifests};
use crate::support::text;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

/// A request plugin that runs the query in `?q=` and says what happened.
const QUERYING_PLUGIN: &str = r#"
def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
    try:
        return {"rows": influxdb3_local.query(request_body.decode())}
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}"}
"#;

fn sql(server: &TestServer, sql: &str) -> crate::http::Response {
    let body = json!({"db": "db", "q": sql}).to_string();
    server.post(
        "/api/v3/query_sql",
        &[("content-type", "application/json")],
        body.as_bytes(),
    )
}

#[test]
fn sql_text_cannot_crash_the_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plugins = plugin_dir_with(dir.path(), &[("querying.py", QUERYING_PLUGIN)]);
    let server = TestServer::start_with(
        dir.path(),
        &[
            "--plugin-dir",
            plugins.to_str().expect("utf-8"),
            "--max-http-request-size",
            "8388608",
        ],
    );
    let written = server.post("/api/v3/write_lp?db=db", &[], b"cpu v=1 1\ncpu v=2 2");
    assert_eq!(written.status, 204, "{}", written.text());
    let created = server.create_trigger(&trigger_body(
        "querying",
        "request:querying",
        "querying.py",
        json!({}),
        "log",
    ));
    assert_eq!(created.status, 200, "{}", created.text());

    // Chains the parser builds in a loop, each link a level deeper: before this bound,
    // 2,000 `+` terms overflowed a thread's stack and aborted the process.
    let deep = [
        format!("SELECT 1{} AS x", " + 1".repeat(20_000)),
        format!(
            "SELECT v FROM cpu WHERE {}",
            vec!["v <> 3"; 5_000].join(" OR ")
        ),
        vec!["SELECT 1 AS x"; 3_000].join(" UNION ALL "),
        format!("SELECT v{} FROM cpu", "::double".repeat(5_000)),
    ];
    for query in &deep {
        let answer = sql(&server, query);
        assert_eq!(answer.status, 400, "{}", answer.text());
        let error = answer.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            error.contains("levels deep") && error.contains("may nest at most 1000"),
            "{error}"
        );
    }
    // A plugin's query is planned on a query thread, not on the plugin's own stack.
    let answer = server.post("/api/v3/engine/querying", &[], deep[0].as_bytes());
    assert_eq!(answer.status, 200, "{}", answer.text());
    let error = answer.json()["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(error.contains("may nest at most 1000"), "{error}");

    // WITH queries that each name the one before twice: a plan that doubles per link.
    let links: String = (1..40)
        .map(|i| {
            format!(
                ", t{i} AS (SELECT * FROM t{0} UNION ALL SELECT * FROM t{0})",
                i - 1
            )
        })
        .collect();
    let doubling = format!("WITH t0 AS (SELECT 1 AS x){links} SELECT count(*) FROM t39");
    let answer = sql(&server, &doubling);
    assert_eq!(answer.status, 400, "{}", answer.text());
    assert!(
        answer.text().contains("names its WITH queries 79 times"),
        "{}",
        answer.text()
    );

    // Text too long to take at all.
    let long = format!("SELECT '{}'", "x".repeat(2 << 20));
    let answer = sql(&server, &long);
    assert_eq!(answer.status, 400, "{}", answer.text());
    assert!(
        answer.text().contains("may be at most 256 KiB"),
        "{}",
        answer.text()
    );

    // Just within the bound, on the query threads' stacks: each shape runs, over HTTP
    // and in a plugin.
    let within = [
        format!("SELECT 1{} AS x", " + 1".repeat(990)),
        format!(
            "SELECT v FROM cpu WHERE {} ORDER BY v",
            vec!["v <> 3"; 495].join(" AND ")
        ),
        vec!["SELECT 1 AS x"; 240].join(" UNION ALL "),
    ];
    let expected = [
        json!([{"x": 991}]),
        json!([{"v": 1.0}, {"v": 2.0}]),
        json!(240),
    ];
    for (query, expected) in within.iter().zip(expected) {
        let answer = sql(&server, query);
        assert_eq!(answer.status, 200, "{}", answer.text());
        let rows: Value = answer.json();
        if let Some(count) = expected.as_u64() {
            assert_eq!(rows.as_array().map(Vec::len), Some(count as usize));
        } else {
            assert_eq!(rows, expected);
        }
        let answer = server.post("/api/v3/engine/querying", &[], query.as_bytes());
        assert_eq!(answer.status, 200, "{}", answer.text());
        assert!(answer.json()["rows"].is_array(), "{}", answer.text());
    }

    // The server is still there, and answers as before.
    assert_eq!(
        server.query("db", "SELECT v FROM cpu ORDER BY time"),
        json!([{"v": 1.0}, {"v": 2.0}])
    );
}

/// Removes every version of the catalog, and the test's copy of the admin token it held.
fn lose_catalog(dir: &Path) {
    for entry in dir.join("data").read_dir().expect("data dir").flatten() {
        if entry.file_name().to_string_lossy().starts_with("catalog") {
            std::fs::remove_file(entry.path()).expect("removed");
        }
    }
    std::fs::remove_file(dir.join("admin-token")).expect("token copy removed");
}

#[test]
fn a_lost_or_damaged_catalog_deletes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let server = TestServer::start_with(dir.path(), &["--snapshot-rows", "2"]);
    let written = server.post(
        "/api/v3/write_lp?db=a",
        &[],
        b"cpu v=1 1\ncpu v=2 2\nmem v=3 3",
    );
    assert_eq!(written.status, 204, "{}", written.text());
    wait_for_manifests(&data, 1);
    // A change after the rows: the catalog's current version has `b`, the one before
    // has not.
    server.create_database("b");
    server.kill();
    let parquet = files_ending(&data, ".parquet");
    assert_eq!(parquet.len(), 2, "{parquet:?}");
    let rows = "SELECT (SELECT count(*) FROM cpu) + (SELECT count(*) FROM mem) AS n";

    // A damaged catalog: start-up takes the version before, and says so.
    std::fs::write(data.join("catalog"), b"SLUICECT damaged").expect("damaged");
    let server = TestServer::start(dir.path());
    assert_eq!(server.query("a", rows), json!([{"n": 3}]));
    let problems = server.query(
        "_internal",
        "SELECT kind, detail FROM system.storage_problems",
    );
    let detail = problems[0]["detail"].as_str().unwrap_or_default();
    assert_eq!(problems[0]["kind"], "catalog", "{problems}");
    assert!(
        detail.contains("catalog is damaged") && detail.contains("using catalog.1"),
        "{detail}"
    );
    server.kill();
    let saved_catalog = std::fs::read(data.join("catalog")).expect("catalog");
    let saved_token = std::fs::read(dir.path().join("admin-token")).expect("token");

    // Every version lost: the Parquet files stay, listed as unreferenced, not queried.
    lose_catalog(dir.path());
    let server = TestServer::start(dir.path());
    let listed = server.cli(&["show", "storage-problems", "--format", "json"]);
    assert!(listed.status.success(), "{}", text(&listed));
    let listed: Value = serde_json::from_slice(&listed.stdout).expect("JSON");
    let kinds: Vec<_> = listed
        .as_array()
        .expect("rows")
        .iter()
        .map(|p| p["kind"].clone())
        .collect();
    assert_eq!(
        kinds,
        [json!("unreferenced"), json!("unreferenced")],
        "{listed}"
    );
    assert!(parquet.iter().all(|file| file.exists()));
    server.kill();

    // The catalog back: every row is there.
    std::fs::write(data.join("catalog"), &saved_catalog).expect("restored");
    std::fs::write(dir.path().join("admin-token"), &saved_token).expect("restored");
    let server = TestServer::start(dir.path());
    assert_eq!(server.query("a", rows), json!([{"n": 3}]));
    server.kill();

    // Lost for good: only the admin's command removes the files.
    lose_catalog(dir.path());
    let server = TestServer::start(dir.path());
    let removed = server.cli(&["delete", "unreferenced-files"]);
    assert!(removed.status.success(), "{}", text(&removed));
    assert!(String::from_utf8_lossy(&removed.stdout).contains("2 unreferenced files removed"));
    assert!(parquet.iter().all(|file| !file.exists()));
    let left = server.query(
        "_internal",
        "SELECT count(*) AS n FROM system.storage_problems",
    );
    assert_eq!(left, json!([{"n": 0}]));
}

#[test]
fn sigterm_keeps_acknowledged_writes_and_stops_despite_idle_clients() {
    let dir = tempfile::tempdir().expect("temp dir");
    // No flush before the signal: the acknowledged `no_sync` lines are only in memory.
    let server = TestServer::start_with(
        dir.path(),
        &["--wal-flush-interval", "1h", "--shutdown-timeout", "1s"],
    );
    for batch in 0..5 {
        let body: String = (0..20)
            .map(|i| format!("cpu v={i} {}\n", batch * 20 + i))
            .collect();
        let answer = server.post("/api/v3/write_lp?db=db&no_sync=true", &[], body.as_bytes());
        assert_eq!(answer.status, 204, "{}", answer.text());
    }
    // A client that sent half a request and waits: it must not hold the server up.
    let mut idle = std::net::TcpStream::connect(server.address).expect("connects");
    std::io::Write::write_all(
        &mut idle,
        b"POST /api/v3/write_lp?db=db HTTP/1.1\r\nHost: x\r\n",
    )
    .expect("half a request");
    let status = server.terminate();
    assert!(status.success(), "{status}");

    let restarted = TestServer::start(dir.path());
    assert_eq!(
        restarted.query("db", "SELECT count(*) AS n FROM cpu"),
        json!([{"n": 100}])
    );
}

#[test]
fn any_valid_name_works_after_a_snapshot_and_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let long = "x".repeat(300);
    let tables = [
        "température",
        "温度",
        "a%b",
        "a#b",
        "a?b",
        "with space",
        "..",
        "=h0",
        long.as_str(),
    ];
    let body: String = tables
        .iter()
        .enumerate()
        .map(|(i, table)| format!("{} v={i}i {i}\n", table.replace(' ', "\\ ")))
        .collect();
    let server = TestServer::start_with(
        dir.path(),
        &["--snapshot-rows", "1", "--max-http-request-size", "65536"],
    );
    let answer = server.post("/api/v3/write_lp?db=names", &[], body.as_bytes());
    assert_eq!(answer.status, 204, "{}", answer.text());
    // A v1 write with a retention policy: database `db/rp`.
    let answer = server.post("/write?db=db&rp=rp", &[], b"cpu v=42i 1");
    assert_eq!(answer.status, 204, "{}", answer.text());
    // A flush while a snapshot runs starts none: a write to another database now and
    // then makes sure a later one does.
    let started = Instant::now();
    let ours = |dir: &str| files_ending(&data.join("sluice/dbs").join(dir), ".parquet").len();
    while ours("names") < tables.len() || ours("=64622f7270") < 1 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not every table was snapshotted"
        );
        std::thread::sleep(Duration::from_millis(50));
        let _ = server.post("/api/v3/write_lp?db=nudge", &[], b"nudge v=1i 1");
    }
    let check = |server: &TestServer| {
        for (i, table) in tables.iter().enumerate() {
            let sql = format!("SELECT v FROM \"{table}\"");
            assert_eq!(server.query("names", &sql), json!([{"v": i}]), "{table}");
        }
        assert_eq!(
            server.query("db/rp", "SELECT v FROM cpu"),
            json!([{"v": 42}])
        );
    };
    check(&server);
    // The snapshot the last nudge started may still be writing its files; killed
    // halfway, it would leave a file no manifest lists, which start-up reports.
    wait_for_snapshots_to_settle(&server);
    server.kill();
    let restarted = TestServer::start(dir.path());
    check(&restarted);
    let problems = restarted.query(
        "_internal",
        "SELECT kind, object, detail FROM system.storage_problems",
    );
    assert_eq!(problems, json!([]));
}

/// Snapshots ended so far, whatever their outcome, from `/metrics`.
fn snapshots_ended(server: &TestServer) -> u64 {
    server
        .get("/metrics", &[])
        .text()
        .lines()
        .filter(|line| line.starts_with("sluice_storage_snapshots_total{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Waits until no snapshot has ended for a second: none runs, with no writes coming.
fn wait_for_snapshots_to_settle(server: &TestServer) {
    let started = Instant::now();
    let mut ended = snapshots_ended(server);
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let now = snapshots_ended(server);
        if now == ended {
            return;
        }
        ended = now;
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "snapshots never settled"
        );
    }
}

fn gzip(text: &str) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut encoder, text.as_bytes()).expect("compressed");
    encoder.finish().expect("compressed")
}

#[test]
fn bodies_are_read_whole_and_answered_in_bounded_json() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start_with(dir.path(), &["--max-http-request-size", "4000000"]);

    // A gzip body of several members, as `gzip` writes appended files: every member.
    let mut members = gzip("m f=1i 1\n");
    members.extend(gzip("m f=2i 2\n"));
    members.extend(gzip("m f=3i 3\n"));
    let answer = server.post(
        "/api/v3/write_lp?db=db",
        &[("content-encoding", "gzip")],
        &members,
    );
    assert_eq!(answer.status, 204, "{}", answer.text());
    assert_eq!(
        server.query("db", "SELECT sum(f) AS s FROM m"),
        json!([{"s": 6}])
    );

    // 50,000 lines whose type conflicts: the first 100 listed, and how many more.
    let conflicting: String = (0..50_000)
        .map(|i| format!("m f=\"s\" {}\n", i + 10))
        .collect();
    let answer = server.post("/api/v3/write_lp?db=db", &[], conflicting.as_bytes());
    assert_eq!(answer.status, 400, "{}", answer.text());
    let body = answer.json();
    assert_eq!(body["error"], "incoming write was empty");
    assert_eq!(body["data"].as_array().map(Vec::len), Some(100));
    assert_eq!(body["data"][99]["line_number"], 100);
    assert_eq!(body["lines_not_listed"], 49_900);
    // With good lines among them: written, the rest reported the same way.
    let mixed = format!("m f=4i 4\n{conflicting}");
    let answer = server.post("/api/v3/write_lp?db=db", &[], mixed.as_bytes());
    assert_eq!(answer.status, 400, "{}", answer.text());
    assert_eq!(
        answer.json()["error"],
        "partial write of line protocol occurred"
    );
    assert_eq!(answer.json()["lines_not_listed"], 49_900);
    assert_eq!(
        server.query("db", "SELECT sum(f) AS s FROM m"),
        json!([{"s": 10}])
    );

    // Over the size limit before decoding: JSON too, like every error.
    let answer = server.post("/api/v3/write_lp?db=db", &[], &vec![b'm'; 4_100_000]);
    assert_eq!(answer.status, 413, "{}", answer.text());
    assert!(answer.json()["error"].is_string(), "{}", answer.text());
}

/// Reads until the server closes `stream`; what it sent before.
fn read_to_close(stream: &mut std::net::TcpStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout set");
    let mut answer = Vec::new();
    std::io::Read::read_to_end(stream, &mut answer).expect("closed by the server, not timed out");
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn idle_and_slow_clients_cannot_hold_the_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start_with(
        dir.path(),
        &[
            "--max-http-connections",
            "4",
            "--http-header-timeout",
            "1s",
            "--http-body-timeout",
            "1s",
        ],
    );
    // Every slot taken by a client that says nothing, and one that sends half its
    // headers: the server closes them once the header time has passed.
    let mut idle: Vec<std::net::TcpStream> = (0..4)
        .map(|_| std::net::TcpStream::connect(server.address).expect("connects"))
        .collect();
    std::io::Write::write_all(&mut idle[0], b"GET /health HTTP/1.1\r\n").expect("half");
    // Meanwhile a real client waits in the queue, and is served when a slot frees.
    let written = server.post("/api/v3/write_lp?db=db", &[], b"m f=1i 1");
    assert_eq!(written.status, 204, "{}", written.text());
    for stream in &mut idle {
        read_to_close(stream);
    }

    // A body that stops coming: 408, in JSON.
    let mut slow = std::net::TcpStream::connect(server.address).expect("connects");
    let head = format!(
        "POST /api/v3/write_lp?db=db HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Length: 100\r\n\r\nm f=2i 2",
        server.token()
    );
    std::io::Write::write_all(&mut slow, head.as_bytes()).expect("half a body");
    let answer = read_to_close(&mut slow);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("the request body paused for more than 1s"),
        "{answer}"
    );
    // Nothing of it was written; the server answers as before.
    assert_eq!(
        server.query("db", "SELECT sum(f) AS s FROM m"),
        json!([{"s": 1}])
    );
}

#[test]
fn kill_9_during_ingest_and_snapshots_loses_no_acknowledged_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut acknowledged = 0_u64;
    // Snapshots every few hundred rows, so that kills land inside them too.
    let flags = ["--snapshot-rows", "300", "--wal-flush-interval", "5ms"];
    // The long variant: `SLUICE_KILL_ROUNDS=200 cargo test --test cli kill_9`.
    let rounds: u64 = std::env::var("SLUICE_KILL_ROUNDS")
        .ok()
        .and_then(|rounds| rounds.parse().ok())
        .unwrap_or(4);
    for round in 0..rounds {
        let server = TestServer::start_with(dir.path(), &flags);
        let (address, token) = (server.address, server.token().to_string());
        let writer = std::thread::spawn(move || {
            let mut batches = 0_u64;
            loop {
                let first = (round * 1_000 + batches) * 100;
                let body: String = (first..first + 100)
                    .map(|v| format!("cpu v={v}i {v}\n"))
                    .collect();
                let auth = format!("Bearer {token}");
                let answer = std::panic::catch_unwind(|| {
                    crate::http::request(
                        address,
                        "POST",
                        "/api/v3/write_lp?db=db",
                        &[("authorization", &auth)],
                        body.as_bytes(),
                    )
                    .status
                });
                match answer {
                    Ok(204) => batches += 1,
                    _ => return batches,
                }
            }
        });
        // A different moment each round.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::from(d.subsec_nanos()));
        std::thread::sleep(Duration::from_millis(200 + nanos % 600));
        server.kill();
        acknowledged += writer.join().expect("writer") * 100;
    }
    let server = TestServer::start(dir.path());
    let rows = server.query(
        "db",
        "SELECT count(*) AS n, count(DISTINCT v) AS distinct_values FROM cpu",
    );
    let (n, distinct) = (rows[0]["n"].as_u64(), rows[0]["distinct_values"].as_u64());
    // Every acknowledged line, once; at most one batch per round in flight at the kill.
    assert_eq!(n, distinct, "{rows}");
    let n = n.expect("a count");
    assert!(
        n >= acknowledged && n <= acknowledged + 100 * rounds,
        "{n} rows, {acknowledged} acknowledged"
    );
    assert!(
        !files_ending(&dir.path().join("data"), ".parquet").is_empty(),
        "no snapshot ran: the kills did not land among them"
    );
    let problems = server.query(
        "_internal",
        "SELECT kind, detail FROM system.storage_problems",
    );
    // A WAL file cut short by a kill, or a snapshot's file whose manifest a kill
    // stopped (kept as unreferenced), is expected; nothing else.
    for problem in problems.as_array().expect("rows") {
        assert!(
            problem["kind"] == "wal" || problem["kind"] == "unreferenced",
            "{problems}"
        );
    }
}

/// Flips the byte at `at` (from the end when negative) of `file`.
fn flip_byte(file: &Path, at: i64) {
    let mut bytes = std::fs::read(file).expect("file");
    let index = if at < 0 {
        bytes.len() - at.unsigned_abs() as usize
    } else {
        at as usize
    };
    bytes[index] ^= 0xff;
    std::fs::write(file, bytes).expect("damaged");
}

#[test]
fn damage_is_named_at_start_and_everything_else_answers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let write = |server: &TestServer, body: &str| {
        let answer = server.post("/api/v3/write_lp?db=db", &[], body.as_bytes());
        assert_eq!(answer.status, 204, "{}", answer.text());
    };
    // Two snapshots: tables a to d, then e and f.
    let server = TestServer::start_with(dir.path(), &["--snapshot-rows", "2"]);
    write(&server, "a v=1i 1\nb v=2i 2\nc v=3i 3\nd v=4i 4");
    wait_for_manifests(&data, 1);
    write(&server, "e v=5i 5\nf v=6i 6");
    wait_for_manifests(&data, 2);
    server.kill();
    // Three WAL files: g, h, i.
    let server = TestServer::start(dir.path());
    for body in ["g v=7i 7", "h v=8i 8", "i v=9i 9"] {
        write(&server, body);
    }
    server.kill();

    let parquet = |table: &str| {
        let found = files_ending(&data.join("sluice/dbs/db").join(table), ".parquet");
        assert_eq!(found.len(), 1, "{table}: {found:?}");
        found[0].clone()
    };
    std::fs::remove_file(parquet("a")).expect("deleted");
    let truncated = parquet("b");
    let length = std::fs::metadata(&truncated).expect("file").len();
    std::fs::File::options()
        .write(true)
        .open(&truncated)
        .and_then(|file| file.set_len(length - 10))
        .expect("truncated");
    flip_byte(&parquet("c"), -1);
    let mut manifests = files_ending(&data.join("sluice/snapshots"), ".json");
    manifests.sort();
    std::fs::write(&manifests[1], b"{ not a manifest").expect("damaged");
    let mut wal = files_ending(&data.join("wal"), "");
    wal.sort();
    assert_eq!(wal.len(), 3, "{wal:?}");
    flip_byte(&wal[1], -3);

    let server = TestServer::start(dir.path());
    let problems = server.query(
        "_internal",
        "SELECT kind, table_name FROM system.storage_problems ORDER BY kind, table_name",
    );
    assert_eq!(
        problems,
        // (A null is left out of a JSON row.)
        json!([
            {"kind": "manifest"},
            {"kind": "parquet", "table_name": "a"},
            {"kind": "parquet", "table_name": "b"},
            {"kind": "parquet", "table_name": "c"},
            {"kind": "unreferenced"},
            {"kind": "unreferenced"},
            {"kind": "wal"},
        ])
    );
    // A database sees its own problems.
    let own = server.query("db", "SELECT count(*) AS n FROM system.storage_problems");
    assert_eq!(own, json!([{"n": 3}]));
    // The undamaged tables answer; the damaged ones answer without the lost rows.
    for (table, expected) in [
        ("d", json!([{"v": 4}])),
        ("g", json!([{"v": 7}])),
        ("i", json!([{"v": 9}])),
    ] {
        assert_eq!(
            server.query("db", &format!("SELECT v FROM {table}")),
            expected,
            "{table}"
        );
    }
    for table in ["a", "b", "c", "e", "f", "h"] {
        assert_eq!(
            server.query("db", &format!("SELECT v FROM {table}")),
            json!([]),
            "{table}"
        );
    }
}

#[test]
fn the_rows_in_memory_are_bounded_in_bytes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    // Snapshots by rows or age would not come for a long time: only the bytes start them.
    let server = TestServer::start_with(
        dir.path(),
        &[
            "--buffer-memory-mib",
            "1",
            "--max-columns-per-table",
            "100",
            "--snapshot-rows",
            "10000000",
            "--snapshot-interval",
            "1h",
            "--max-http-request-size",
            "4000000",
        ],
    );
    // A table may not grow past its columns.
    let wide: String = (0..120)
        .map(|i| format!("f{i}=1i"))
        .collect::<Vec<_>>()
        .join(",");
    let answer = server.post(
        "/api/v3/write_lp?db=db",
        &[],
        format!("wide {wide} 1").as_bytes(),
    );
    assert_eq!(answer.status, 400, "{}", answer.text());
    assert!(
        answer
            .text()
            .contains("would have 121 columns; a table may have at most 100"),
        "{}",
        answer.text()
    );
    // A write that alone would take more than the bound: 413, nothing written.
    let fields: String = (0..90)
        .map(|i| format!("f{i}=1i"))
        .collect::<Vec<_>>()
        .join(",");
    let huge: String = (0..2_000).map(|t| format!("huge {fields} {t}\n")).collect();
    let answer = server.post("/api/v3/write_lp?db=db", &[], huge.as_bytes());
    assert_eq!(answer.status, 413, "{}", answer.text());
    assert!(
        answer.text().contains("--buffer-memory-mib"),
        "{}",
        answer.text()
    );

    // Writes that fill the bound in turn: snapshots start early and make room; a write
    // refused meanwhile gets 503 and `Retry-After`, and succeeds when retried.
    let mut refused = 0;
    for batch in 0..40 {
        let body: String = (0..2_000)
            .map(|i| format!("cpu,host=h{} v={i}i {}\n", i % 10, batch * 2_000 + i))
            .collect();
        let started = Instant::now();
        loop {
            let answer = server.post("/api/v3/write_lp?db=db", &[], body.as_bytes());
            if answer.status == 204 {
                break;
            }
            assert_eq!(answer.status, 503, "{}", answer.text());
            assert_eq!(answer.header("retry-after"), Some("1"));
            refused += 1;
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "no room was made"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    assert_eq!(
        server.query("db", "SELECT count(*) AS n FROM cpu"),
        json!([{"n": 80_000}]),
        "refused {refused} times"
    );
    assert!(
        !files_ending(&data, ".parquet").is_empty(),
        "no snapshot started"
    );
    let metrics = server.get("/metrics", &[]).text();
    let refusals = format!("sluice_storage_writes_refused_for_memory_total {refused}");
    assert!(
        metrics.contains(r#"sluice_storage_snapshots_total{outcome="written"}"#)
            && metrics.contains("sluice_storage_buffer_bytes")
            && metrics.contains(&refusals),
        "{metrics}"
    );
}

#[test]
fn request_bodies_share_a_bounded_memory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start_with(
        dir.path(),
        &[
            "--max-http-body-memory-mib",
            "1",
            "--max-http-request-size",
            "600000",
            "--http-body-timeout",
            "10s",
        ],
    );
    // 42,857 points of 14 bytes each, and two empty lines.
    let body: Vec<u8> = (100_000..142_857)
        .map(|time| format!("m f=1i {time}\n"))
        .collect::<String>()
        .into_bytes()
        .into_iter()
        .chain(*b"\n\n")
        .collect();
    assert_eq!(body.len(), 600_000);
    let head = format!(
        "POST /api/v3/write_lp?db=db HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Length: 600000\r\nConnection: close\r\n\r\n",
        server.token()
    );
    // A client holds more than half of the bodies' memory, pausing mid-body.
    let mut slow = std::net::TcpStream::connect(server.address).expect("connects");
    std::io::Write::write_all(&mut slow, head.as_bytes()).expect("head");
    std::io::Write::write_all(&mut slow, &body[..500_000]).expect("most of the body");
    let rest = body[500_000..].to_vec();
    let sending = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(3_000));
        std::io::Write::write_all(&mut slow, &rest).expect("the rest");
        read_to_close(&mut slow)
    });
    // Time for the server to take in what was sent, on a busy machine too.
    std::thread::sleep(Duration::from_millis(1_000));
    // Another body that does not fit beside it: 503, at once.
    let mut second = std::net::TcpStream::connect(server.address).expect("connects");
    std::io::Write::write_all(&mut second, head.as_bytes()).expect("head");
    let _ = std::io::Write::write_all(&mut second, &body);
    let answer = read_to_close(&mut second);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    // The first is written whole.
    let first = sending.join().expect("sender");
    assert!(first.starts_with("HTTP/1.1 204"), "{first}");
    assert_eq!(
        server.query("db", "SELECT count(*) AS n FROM m"),
        json!([{"n": 42_857}])
    );
    // A request that needs no token may not send much.
    let answer = crate::http::request(
        server.address,
        "POST",
        "/api/v3/configure/token/admin",
        &[],
        &vec![b'x'; 100_000],
    );
    assert_eq!(answer.status, 413, "{}", answer.text());
}

#[test]
fn a_point_written_again_is_one_point_in_memory_in_parquet_and_after_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let server = TestServer::start_with(dir.path(), &["--snapshot-rows", "3"]);
    let write = |server: &TestServer, body: &str| {
        let written = server.post("/api/v3/write_lp?db=db", &[], body.as_bytes());
        assert_eq!(written.status, 204, "{}", written.text());
    };
    let all = "SELECT host, usage, idle FROM cpu ORDER BY host";
    // A point repeated in one body, then snapshotted: the file holds it once.
    write(
        &server,
        "cpu,host=a usage=1,idle=9 100\ncpu,host=b usage=1 100\ncpu,host=a usage=2 100",
    );
    wait_for_manifests(&data, 1);
    // A retry after a time-out, then a write of another field of a persisted point.
    write(&server, "cpu,host=b usage=1 100");
    assert_eq!(
        server.query("db", "SELECT count(*) AS n FROM cpu"),
        json!([{"n": 2}])
    );
    write(&server, "cpu,host=b idle=4 100");
    write(&server, "cpu,host=c usage=3 200");
    wait_for_manifests(&data, 2);
    let merged = json!([
        {"host": "a", "usage": 2.0, "idle": 9.0},
        {"host": "b", "usage": 1.0, "idle": 4.0},
        {"host": "c", "usage": 3.0},
    ]);
    assert_eq!(server.query("db", all), merged);
    // A filter on a field sees the point's latest value only.
    assert_eq!(
        server.query("db", "SELECT host FROM cpu WHERE usage = 1"),
        json!([{"host": "b"}])
    );

    server.kill();
    let server = TestServer::start_with(dir.path(), &["--snapshot-rows", "3"]);
    assert_eq!(server.query("db", all), merged);
    write(&server, "cpu,host=a idle=1 100");
    assert_eq!(
        server.query("db", "SELECT usage, idle FROM cpu WHERE host = 'a'"),
        json!([{"usage": 2.0, "idle": 1.0}])
    );
    // Times at both ends of what a timestamp holds, repeated.
    write(
        &server,
        "cpu,host=z usage=1 -9223372036854775000\ncpu,host=z usage=2 9223372036854775000\n\
         cpu,host=z usage=3 9223372036854775000\ncpu,host=z usage=4 -9223372036854775000",
    );
    let ends = "SELECT usage FROM cpu WHERE host = 'z' ORDER BY time";
    assert_eq!(
        server.query("db", ends),
        json!([{"usage": 4.0}, {"usage": 3.0}])
    );
    wait_for_manifests(&data, 3);
    assert_eq!(
        server.query("db", ends),
        json!([{"usage": 4.0}, {"usage": 3.0}])
    );
}
