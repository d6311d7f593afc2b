//! WAL triggers never lose a flush: a slow plugin under a burst, a `kill -9` while a
//! trigger is behind, `error_behavior` disable then enable, and the WAL retention.

use crate::server::{TestServer, plugin_dir_with};
use serde_json::{Value, json};
use std::path::Path;

/// Copies every row of `src` to `dst`, as it is (so a row delivered twice is one point),
/// pausing PAUSE seconds per call; counts its calls in `calls`.
const COPY: &str = r#"
import time

PAUSE = 0

def process_writes(influxdb3_local, table_batches, args=None):
    rows = 0
    for batch in table_batches:
        if batch["table_name"] != "src":
            continue
        for row in batch["rows"]:
            influxdb3_local.write(LineBuilder("dst").tag("w", row["w"]).int64_field("v", row["v"]).time_ns(row["time"]))
            rows += 1
    influxdb3_local.write(LineBuilder("calls").int64_field("rows", rows))
    time.sleep(PAUSE)
"#;

/// Fails every call.
const BROKEN: &str = r#"
def process_writes(influxdb3_local, table_batches, args=None):
    raise Exception("broken on purpose")
"#;

/// A server on `dir` whose `copy.py` pauses `pause` seconds a call.
fn start(dir: &Path, flags: &[&str], pause: &str) -> TestServer {
    let copy = COPY.replace("PAUSE = 0", &format!("PAUSE = {pause}"));
    let plugins = plugin_dir_with(dir, &[("copy.py", &copy), ("broken.py", BROKEN)]);
    let plugins = plugins.to_str().expect("utf-8").to_string();
    let mut all = vec![
        "--plugin-dir",
        plugins.as_str(),
        "--wal-flush-interval",
        "5ms",
        "--max-http-request-size",
        "1000000",
    ];
    all.extend_from_slice(flags);
    TestServer::start_with(dir, &all)
}

/// A new server on `dir` with database `db` and its trigger `copy` of `src` rows, whose
/// plugin pauses `pause` seconds a call.
fn copying(dir: &Path, flags: &[&str], pause: &str) -> TestServer {
    let server = start(dir, flags, pause);
    server.create_database("db");
    server.add_trigger("copy", "table:src", "copy.py", Value::Null, "log");
    server
}

/// Waits until the plugin has copied some rows.
fn some_copied(server: &TestServer) {
    server.eventually("db", "SELECT count(*) AS n FROM dst", |rows| {
        rows[0]["n"].as_u64().is_some_and(|n| n > 0)
    });
}

/// The ERROR lines of trigger `copy`, once there is one.
fn errors_of_copy(server: &TestServer) -> Value {
    server.eventually(
        "db",
        "SELECT log_text FROM system.processing_engine_logs \
         WHERE trigger_name = 'copy' AND log_level = 'ERROR'",
        |rows| rows.as_array().is_some_and(|r| !r.is_empty()),
    )
}

/// Writes `batches` batches of `lines` rows of `src` from `writers` threads at once;
/// row `v` of writer `w` is `v` at time `v`, so every row is its own point. Returns the
/// rows acknowledged.
fn burst(server: &TestServer, writers: u64, batches: u64, lines: u64) -> u64 {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                scope.spawn(move || {
                    for batch in 0..batches {
                        let first = batch * lines;
                        let body: String = (first..first + lines)
                            .map(|v| format!("src,w={w} v={v}i {}\n", v + 1))
                            .collect();
                        let answer = server.post("/api/v3/write_lp?db=db", &[], body.as_bytes());
                        assert_eq!(answer.status, 204, "{}", answer.text());
                    }
                    batches * lines
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("writer")).sum()
    })
}

/// The rows of `dst`, and the sum of their values.
fn copied(server: &TestServer) -> (u64, u64) {
    let rows = server.query("db", "SELECT count(*) AS n, sum(v) AS s FROM dst");
    (
        rows[0]["n"].as_u64().unwrap_or(0),
        rows[0]["s"].as_u64().unwrap_or(0),
    )
}

fn wait_for_copies(server: &TestServer, expected: u64) -> Value {
    server.eventually("db", "SELECT count(*) AS n FROM dst", |rows| {
        rows[0]["n"].as_u64() == Some(expected)
    })
}

/// The sum of `v` over `writers` writers of `rows` rows each, numbered from 0.
fn sum_of(writers: u64, rows: u64) -> u64 {
    writers * rows * (rows - 1) / 2
}

#[test]
fn a_slow_wal_plugin_under_a_burst_receives_every_row() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Flushes of at most 500 lines: a burst makes far more of them than the plugin,
    // pausing 50 ms a call, runs through one by one.
    let server = copying(dir.path(), &["--wal-max-pending-lines", "500"], "0.05");

    let (writers, batches, lines) = (4, 25, 400);
    let acknowledged = burst(&server, writers, batches, lines);
    assert_eq!(acknowledged, writers * batches * lines);
    wait_for_copies(&server, acknowledged);
    assert_eq!(
        copied(&server),
        (acknowledged, sum_of(writers, batches * lines))
    );

    // Fewer calls than flushes: those that waited were merged.
    let calls = server.query("db", "SELECT count(*) AS n, sum(rows) AS rows FROM calls");
    assert_eq!(calls[0]["rows"].as_u64(), Some(acknowledged), "{calls}");
    let flushes = acknowledged / 500;
    assert!(
        calls[0]["n"].as_u64().is_some_and(|n| n < flushes),
        "{calls}: not fewer calls than the {flushes} flushes or more"
    );
    let metrics = server.get("/metrics", &[]).text();
    assert!(
        !metrics.contains("sluice_plugin_skipped_flushes_total{"),
        "{metrics}"
    );
}

#[test]
fn kill_9_while_a_wal_trigger_is_behind_loses_no_acknowledged_row() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Snapshots during the burst: the WAL files they cover stay for the trigger.
    let flags = [
        "--wal-max-pending-lines",
        "200",
        "--wal-rows-per-call",
        "200",
        "--snapshot-rows",
        "2000",
    ];
    // 0.3 s a call of at most 200 rows: 30 s for what the burst writes in a moment.
    let server = copying(dir.path(), &flags, "0.3");
    let acknowledged = burst(&server, 2, 10, 1_000);
    some_copied(&server);
    crate::server::wait_for_manifests(&dir.path().join("data"), 1);
    let (before, _) = copied(&server);
    assert!(
        before < acknowledged,
        "not behind: {before} of {acknowledged}"
    );
    // How far behind it is, in view.
    let lag = server.query(
        "db",
        "SELECT wal_cursor, wal_head, lag_flushes, lag_rows, lag_seconds \
         FROM system.processing_engine_wal_triggers WHERE trigger_name = 'copy'",
    );
    let number = |column: &str| lag[0][column].as_f64().unwrap_or(-1.0);
    assert!(number("wal_cursor") < number("wal_head"), "{lag}");
    assert!(
        number("lag_flushes") >= 1.0 && number("lag_seconds") >= 0.0,
        "{lag}"
    );
    assert!(
        number("lag_rows") >= 200.0 && number("lag_rows") <= 20_000.0,
        "{lag}"
    );
    let metrics = server.get("/metrics", &[]).text();
    assert!(
        metrics.contains(r#"sluice_plugin_wal_lag_flushes{database="db",trigger="copy"}"#)
            && metrics.contains(r#"sluice_plugin_wal_lag_rows{database="db",trigger="copy"}"#),
        "{metrics}"
    );
    server.kill();

    // Resumed from its cursor, faster now; rows delivered twice are one point each.
    let server = start(dir.path(), &flags, "0");
    wait_for_copies(&server, acknowledged);
    assert_eq!(copied(&server), (acknowledged, sum_of(2, 10 * 1_000)));
    server.eventually(
        "db",
        "SELECT lag_flushes, lag_rows FROM system.processing_engine_wal_triggers",
        |rows| rows == &json!([{"lag_flushes": 0, "lag_rows": 0}]),
    );
    // What it read back from the WAL files after the restart is charged to it.
    let usage = server.query(
        "db",
        "SELECT wal_read_cpu_time_ms FROM system.processing_engine_usage \
         WHERE trigger_name = 'copy' AND hour IS NULL",
    );
    assert!(
        usage[0]["wal_read_cpu_time_ms"]
            .as_f64()
            .is_some_and(|ms| ms > 0.0),
        "{usage}"
    );
    let metrics = server.get("/metrics", &[]).text();
    assert!(
        metrics
            .contains(r#"sluice_plugin_wal_read_cpu_seconds_total{database="db",trigger="copy"}"#),
        "{metrics}"
    );
}

#[test]
fn a_trigger_disabled_by_a_failure_gets_the_failed_flush_again_when_enabled() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(dir.path(), &[], "0");
    server.create_database("db");
    let plugin = dir.path().join("plugins/fragile.py");
    std::fs::write(&plugin, BROKEN).expect("written");
    server.add_trigger("fragile", "table:src", "fragile.py", Value::Null, "disable");
    assert_eq!(burst(&server, 1, 1, 10), 10);
    server.eventually(
        "db",
        "SELECT disabled FROM system.processing_engine_triggers WHERE trigger_name = 'fragile'",
        |rows| rows == &json!([{"disabled": true}]),
    );

    // Fixed, then enabled: the flush it failed on comes again.
    std::fs::write(&plugin, COPY).expect("written");
    // Its instances went with the disable: the fixed code is what runs.
    let enable = "/api/v3/configure/processing_engine_trigger/enable?db=db&trigger_name=fragile";
    assert_eq!(server.post(enable, &[], b"").status, 200);
    wait_for_copies(&server, 10);
    assert_eq!(copied(&server), (10, sum_of(1, 10)));

    // Disabled by its owner, a trigger starts again at the WAL's head: what was written
    // meanwhile is not delivered.
    let disable = "/api/v3/configure/processing_engine_trigger/disable?db=db&trigger_name=fragile";
    assert_eq!(server.post(disable, &[], b"").status, 200);
    let body = "src,w=9 v=1000i 1000\n";
    assert_eq!(
        server
            .post("/api/v3/write_lp?db=db", &[], body.as_bytes())
            .status,
        204
    );
    assert_eq!(server.post(enable, &[], b"").status, 200);
    let body = "src,w=9 v=2000i 2000\n";
    assert_eq!(
        server
            .post("/api/v3/write_lp?db=db", &[], body.as_bytes())
            .status,
        204
    );
    wait_for_copies(&server, 11);
    let values = server.query("db", "SELECT v FROM dst WHERE w = '9'");
    assert_eq!(values, json!([{"v": 2000}]));
}

#[test]
fn a_trigger_behind_the_wal_retention_skips_flushes_and_says_which() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Nothing kept past a snapshot, and a snapshot every 100 rows.
    let flags = [
        "--wal-retention-mib",
        "0",
        "--snapshot-rows",
        "100",
        "--wal-max-pending-lines",
        "100",
        "--wal-rows-per-call",
        "100",
    ];
    let server = copying(dir.path(), &flags, "0.5");
    let acknowledged = burst(&server, 1, 10, 100);
    some_copied(&server);
    crate::server::wait_for_manifests(&dir.path().join("data"), 1);
    server.kill();

    // After the restart nothing is in memory: what the snapshots' trimming removed is
    // skipped, each flush named; the rest arrives.
    let server = start(dir.path(), &flags, "0");
    let skipped = errors_of_copy(&server);
    let first = skipped[0]["log_text"].as_str().expect("text");
    assert!(
        first.contains("skipped: their WAL files were removed before the trigger came to them")
            && first.contains("rows of table src, from 1970-01-01T00:")
            && first.ends_with(" to 1970-01-01T00:16:40Z"),
        "{skipped}"
    );
    let outcomes = server.query(
        "db",
        "SELECT outcome, error FROM system.processing_engine_invocations \
         WHERE trigger_name = 'copy' AND outcome = 'skipped'",
    );
    assert_eq!(outcomes[0]["error"].as_str(), Some(first), "{outcomes}");
    let metrics = server.get("/metrics", &[]).text();
    assert!(
        metrics.contains(r#"sluice_plugin_skipped_flushes_total{database="db",trigger="copy"}"#),
        "{metrics}"
    );
    let (rows, _) = copied(&server);
    assert!(rows < acknowledged, "nothing was skipped: {rows}");
}

#[test]
fn a_trigger_asked_to_start_at_the_earliest_flush_gets_what_the_wal_still_holds() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(dir.path(), &[], "0");
    server.create_database("db");
    assert_eq!(burst(&server, 1, 2, 10), 20);

    let mut body = crate::server::trigger_body("late", "table:src", "copy.py", Value::Null, "log");
    body["trigger_settings"]["wal_start"] = json!("earliest");
    let created = server.create_trigger(&body);
    assert_eq!(created.status, 200, "{}", created.text());
    wait_for_copies(&server, 20);
    assert_eq!(copied(&server), (20, sum_of(1, 20)));

    // Only a WAL trigger reads the WAL.
    let mut body = crate::server::trigger_body("ask", "request:ask", "copy.py", Value::Null, "log");
    body["trigger_settings"]["wal_start"] = json!("earliest");
    let refused = server.create_trigger(&body);
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert!(
        refused
            .text()
            .contains("wal_start applies only to WAL triggers"),
        "{}",
        refused.text()
    );
}

/// The WAL files in `dir`'s data directory, oldest first.
fn wal_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = crate::server::files_ending(&dir.join("data/wal"), ".wal");
    files.sort();
    files
}

#[test]
fn a_damaged_wal_file_under_a_cursor_delivers_what_is_before_the_damage_and_says_so() {
    let dir = tempfile::tempdir().expect("temp dir");
    let flags = [
        "--wal-max-pending-lines",
        "100",
        "--wal-rows-per-call",
        "100",
    ];
    // Half a second a call (under the default wall time of a call): behind at the kill.
    let server = copying(dir.path(), &flags, "0.5");
    assert_eq!(burst(&server, 1, 5, 100), 500);
    server.kill();

    // The last file of the burst, cut in its last record: 100 rows, one record.
    let last = wal_files(dir.path()).pop().expect("a WAL file");
    let length = std::fs::metadata(&last).expect("exists").len();
    let file = std::fs::File::options()
        .write(true)
        .open(&last)
        .expect("opens");
    file.set_len(length - 5).expect("truncated");
    drop(file);

    let server = start(dir.path(), &flags, "0");
    let named = errors_of_copy(&server);
    assert!(
        named[0]["log_text"]
            .as_str()
            .is_some_and(|text| text.contains("skipped in part: its WAL file is damaged")),
        "{named}"
    );
    // The other four flushes arrive whole; the server and its writes go on.
    wait_for_copies(&server, 400);
    assert_eq!(
        server
            .post("/api/v3/write_lp?db=db", &[], b"src,w=7 v=1i 5000")
            .status,
        204
    );
    wait_for_copies(&server, 401);
}

#[test]
fn an_unreadable_cursors_file_is_set_aside_and_its_triggers_start_at_the_head() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = copying(dir.path(), &[], "0");
    assert_eq!(burst(&server, 1, 1, 10), 10);
    wait_for_copies(&server, 10);
    server.kill();

    let cursors = dir.path().join("data/wal-trigger-cursors.json");
    std::fs::write(&cursors, b"{\"version\": 1, \"cursors\": {\"1\"").expect("damaged");
    let server = start(dir.path(), &[], "0");
    assert!(
        dir.path()
            .join("data/wal-trigger-cursors.unreadable")
            .exists()
    );
    let body = "src,w=8 v=7i 7000\n";
    assert_eq!(
        server
            .post("/api/v3/write_lp?db=db", &[], body.as_bytes())
            .status,
        204
    );
    wait_for_copies(&server, 11);
}

/// A thread of the server: its name, its nice value, and the CPU it has used, in clock
/// ticks (`/proc/<pid>/task/<tid>/stat`).
struct ServerThread {
    name: String,
    nice: i64,
    cpu_ticks: u64,
}

fn threads_of(server: &TestServer) -> Vec<ServerThread> {
    let tasks = std::fs::read_dir(format!("/proc/{}/task", server.pid())).expect("tasks");
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("stat")).ok())
        .filter_map(|stat| {
            // `pid (name) state ppid …`: the name may hold spaces and parentheses.
            let (head, rest) = stat.rsplit_once(')')?;
            let name = head.split_once('(')?.1.to_string();
            // Fields from the third (`state`) on: utime and stime are the 14th and 15th,
            // nice the 19th.
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let number = |field: usize| fields.get(field - 3)?.parse::<i64>().ok();
            Some(ServerThread {
                name,
                nice: number(19)?,
                cpu_ticks: u64::try_from(number(14)? + number(15)?).ok()?,
            })
        })
        .collect()
}

#[test]
#[cfg(target_os = "linux")]
fn wal_plugins_run_on_threads_nicer_than_the_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = copying(dir.path(), &[], "0");
    let own_nice = {
        let threads = threads_of(&server);
        threads.iter().find(|t| t.name == "sluice").map(|t| t.nice)
    }
    .expect("the server's main thread");

    let acknowledged = burst(&server, 2, 10, 2_000);
    wait_for_copies(&server, acknowledged);

    // The kernel shows 15 characters of a thread's name.
    let (background, others): (Vec<_>, Vec<_>) = threads_of(&server)
        .into_iter()
        .partition(|t| t.name == "sluice-backgrou");
    assert!(!background.is_empty(), "no background thread");
    // None of the server's other threads was started by one of them, or lowered.
    for thread in &others {
        assert_eq!(thread.nice, own_nice, "{}", thread.name);
    }
    for thread in &background {
        assert_eq!(thread.nice, (own_nice + 10).min(19), "{}", thread.name);
    }
    // Copying 40,000 rows takes the plugin a good part of a second of CPU: if its calls
    // ran anywhere else, these threads would have none to show.
    let ticks: u64 = background.iter().map(|t| t.cpu_ticks).sum();
    assert!(
        ticks >= 10,
        "the background threads used {ticks} ticks of CPU for 40,000 rows"
    );
}
