//! The real server on a loopback port: writes, queries, durability, bad input.

use crate::http::{Response, request};
use crate::support::sluice;
use serde_json::json;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Output};
use std::time::{Duration, Instant};

/// `sluice serve` on 127.0.0.1 with a port of its own, authentication on and the admin
/// token (created at the first start in `data_dir`) sent with every request; killed on
/// drop.
pub struct TestServer {
    child: Child,
    pub address: SocketAddr,
    token: String,
}

impl TestServer {
    pub fn start(data_dir: &Path) -> Self {
        Self::start_with(data_dir, &[])
    }

    /// Starts with more `serve` flags.
    pub fn start_with(data_dir: &Path, flags: &[&str]) -> Self {
        Self::start_with_env(data_dir, flags, &[])
    }

    /// Starts with more `serve` flags and environment variables.
    pub fn start_with_env(data_dir: &Path, flags: &[&str], env: &[(&str, &str)]) -> Self {
        let mut server = Self::spawn(data_dir, flags, env);
        let token_file = data_dir.join("admin-token");
        server.token = match std::fs::read_to_string(&token_file) {
            Ok(token) => token,
            Err(_) => {
                let created = request(
                    server.address,
                    "POST",
                    "/api/v3/configure/token/admin",
                    &[],
                    b"",
                );
                assert_eq!(created.status, 201, "{}", created.text());
                let token = created.json()["token"]
                    .as_str()
                    .expect("a token")
                    .to_string();
                std::fs::write(&token_file, &token).expect("keeps the token for restarts");
                token
            }
        };
        server
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The admin token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Starts `sluice serve` and waits until it listens; creates no token.
    pub fn start_without_token(data_dir: &Path, flags: &[&str]) -> Self {
        Self::spawn(data_dir, flags, &[])
    }

    fn spawn(data_dir: &Path, flags: &[&str], env: &[(&str, &str)]) -> Self {
        let address_file = data_dir.join("address");
        let _ = std::fs::remove_file(&address_file);
        // A port of its own, quick flushes, small bodies so that tests of the bound need
        // not send much, and its plugins' /tmp in its own directory (not the machine's
        // /dev/shm, where a server killed would leave it), unless the test sets its own.
        let plugin_tmp = data_dir.join("plugin-tmp");
        std::fs::create_dir_all(&plugin_tmp).expect("plugin tmp dir");
        let plugin_tmp = plugin_tmp.to_str().expect("utf-8 path");
        let defaults = [
            ("--http-bind", "127.0.0.1:0"),
            ("--wal-flush-interval", "10ms"),
            ("--max-http-request-size", "4096"),
            ("--plugin-tmp-dir", plugin_tmp),
        ]
        .into_iter()
        .filter(|(flag, _)| !flags.contains(flag))
        .flat_map(|(flag, value)| [flag, value]);
        let mut child = sluice()
            .arg("serve")
            .args(defaults)
            .args(flags)
            .arg("--data-dir")
            .arg(data_dir.join("data"))
            .arg("--tcp-listener-file-path")
            .arg(&address_file)
            .env("SLUICE_LOG", "warn")
            .envs(env.iter().copied())
            .spawn()
            .expect("sluice serve starts");
        let started = Instant::now();
        let address = loop {
            if let Some(address) = std::fs::read_to_string(&address_file)
                .ok()
                .and_then(|text| text.parse().ok())
            {
                break address;
            }
            // Generous: a server makes the Python runtime on its first start of a
            // version (pre-initialised and compiled: about three minutes on 2 cores), which
            // on a busy machine, beside other tests waiting for it, can take longer.
            assert!(
                started.elapsed() < Duration::from_secs(900),
                "the server did not start"
            );
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the server exited on start: {status}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Self {
            child,
            address,
            token: String::new(),
        }
    }

    /// Sends a request with the admin token, unless `headers` carry an `authorization`.
    pub fn send(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let bearer = format!("Bearer {}", self.token);
        let mut all = headers.to_vec();
        if !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("authorization"))
        {
            all.push(("authorization", &bearer));
        }
        request(self.address, method, target, &all, body)
    }

    pub fn post(&self, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        self.send("POST", target, headers, body)
    }

    /// The server's URL, for `--host`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// `sluice ARGS --host … --token …`: the command line against this server.
    pub fn cli(&self, args: &[&str]) -> Output {
        sluice()
            .args(args)
            .args(["--host", &self.url(), "--token", self.token()])
            .output()
            .expect("sluice runs")
    }

    pub fn get(&self, target: &str, headers: &[(&str, &str)]) -> Response {
        self.send("GET", target, headers, b"")
    }

    pub fn query(&self, db: &str, sql: &str) -> serde_json::Value {
        let body = json!({"db": db, "q": sql}).to_string();
        let response = self.post(
            "/api/v3/query_sql",
            &[("content-type", "application/json")],
            body.as_bytes(),
        );
        assert_eq!(response.status, 200, "{}", response.text());
        response.json()
    }

    /// Polls `sql` on `db` until `done` holds for its rows (`null` while the query fails,
    /// e.g. before its table exists); returns them. Gives up after 60 s: what it waits
    /// for may include a plugin's first instance on a busy machine.
    pub fn eventually(
        &self,
        db: &str,
        sql: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let started = Instant::now();
        loop {
            let body = json!({"db": db, "q": sql}).to_string();
            let response = self.post(
                "/api/v3/query_sql",
                &[("content-type", "application/json")],
                body.as_bytes(),
            );
            let rows = if response.status == 200 {
                response.json()
            } else {
                serde_json::Value::Null
            };
            if done(&rows) {
                return rows;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "still {rows} for {sql} on {db} ({}: {})",
                response.status,
                response.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A database token named `name` with `permissions` (`db:NAMES:ACTIONS` each), made
    /// with `sluice create token`.
    pub fn create_token(&self, name: &str, permissions: &[&str]) -> String {
        let mut args = vec!["create", "token", "--name", name];
        for permission in permissions {
            args.extend(["--permission", permission]);
        }
        let output = self.cli(&args);
        assert!(output.status.success(), "{}", crate::support::text(&output));
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .find_map(|line| line.strip_prefix("Token: "))
            .expect("a token line")
            .to_string()
    }

    /// Creates database `name`, asserting success.
    pub fn create_database(&self, name: &str) {
        let body = json!({"db": name}).to_string();
        let response = self.post(
            "/api/v3/configure/database",
            &[("content-type", "application/json")],
            body.as_bytes(),
        );
        assert_eq!(response.status, 200, "{}", response.text());
    }

    /// `POST /api/v3/configure/processing_engine_trigger` with `body`.
    pub fn create_trigger(&self, body: &serde_json::Value) -> Response {
        self.post(
            "/api/v3/configure/processing_engine_trigger",
            &[("content-type", "application/json")],
            body.to_string().as_bytes(),
        )
    }

    /// Creates a trigger on database `db`, asserting success.
    pub fn add_trigger(
        &self,
        name: &str,
        spec: &str,
        plugin: &str,
        arguments: serde_json::Value,
        error_behavior: &str,
    ) {
        let response =
            self.create_trigger(&trigger_body(name, spec, plugin, arguments, error_behavior));
        assert_eq!(response.status, 200, "{}", response.text());
    }

    /// `kill -TERM`, as `systemd` and `docker stop` send; waits for the server to exit
    /// (at most 60 s) and returns how it exited.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success());
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("waits") {
                return status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the server did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `kill -9`: no flush, no goodbye.
    pub fn kill(mut self) {
        self.stop();
    }

    /// Stops the server at once (`kill -9`); what is left of it does nothing.
    pub fn stop(&mut self) {
        self.child.kill().expect("killed");
        self.child.wait().expect("reaped");
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plugin directory `plugins` in `dir` holding `files` (name, code); its path.
pub fn plugin_dir_with(dir: &Path, files: &[(&str, &str)]) -> PathBuf {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).expect("plugin dir");
    for (name, code) in files {
        std::fs::write(plugins.join(name), code).expect("plugin written");
    }
    plugins
}

/// A trigger-create request on database `db`, as upstream's clients send it.
pub fn trigger_body(
    name: &str,
    spec: &str,
    plugin: &str,
    arguments: serde_json::Value,
    error_behavior: &str,
) -> serde_json::Value {
    json!({
        "db": "db",
        "plugin_filename": plugin,
        "trigger_name": name,
        "trigger_specification": spec,
        "trigger_settings": {"run_async": false, "error_behavior": error_behavior},
        "trigger_arguments": arguments,
        "disabled": false,
    })
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start(dir.path());
    for batch in 0..20 {
        let body: String = (0..50)
            .map(|i| {
                format!(
                    "cpu,host=h{} usage={}i {}\n",
                    i % 3,
                    batch * 50 + i,
                    batch * 50 + i
                )
            })
            .collect();
        let response = server.post(
            "/api/v3/write_lp?db=mydb&precision=ns",
            &[],
            body.as_bytes(),
        );
        assert_eq!(response.status, 204, "{}", response.text());
    }
    assert_eq!(
        server.query("mydb", "SELECT count(*) AS n FROM cpu"),
        json!([{"n": 1000}])
    );
    server.kill();

    let restarted = TestServer::start(dir.path());
    assert_eq!(
        restarted.query(
            "mydb",
            "SELECT count(*) AS n, sum(usage) AS total, count(DISTINCT host) AS hosts FROM cpu"
        ),
        json!([{"n": 1000, "total": 499500, "hosts": 3}])
    );
}

#[test]
fn queries_answer_in_every_format() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start(dir.path());
    let response = server.post(
        "/api/v3/write_lp?db=db",
        &[],
        b"cpu,host=a usage=0.5 1700000000\ncpu,host=b usage=1.5 1700000001",
    );
    assert_eq!(response.status, 204, "{}", response.text());
    let sql = "SELECT host, usage, time FROM cpu ORDER BY host";
    let q = |format: &str| {
        server.get(
            &format!("/api/v3/query_sql?db=db&format={format}&q={}", encode(sql)),
            &[],
        )
    };
    let json_rows = q("json");
    assert_eq!(json_rows.header("content-type"), Some("application/json"));
    assert_eq!(
        json_rows.json(),
        json!([{"host": "a", "usage": 0.5, "time": "2023-11-14T22:13:20"}, {"host": "b", "usage": 1.5, "time": "2023-11-14T22:13:21"}])
    );
    assert_eq!(
        q("jsonl").text(),
        "{\"host\":\"a\",\"usage\":0.5,\"time\":\"2023-11-14T22:13:20\"}\n{\"host\":\"b\",\"usage\":1.5,\"time\":\"2023-11-14T22:13:21\"}\n"
    );
    assert_eq!(
        q("csv").text(),
        "host,usage,time\na,0.5,2023-11-14T22:13:20\nb,1.5,2023-11-14T22:13:21\n"
    );
    assert!(
        q("pretty")
            .text()
            .contains("| a    | 0.5   | 2023-11-14T22:13:20 |"),
        "{}",
        q("pretty").text()
    );
    let by_accept = server.get(
        &format!("/api/v3/query_sql?db=db&q={}", encode(sql)),
        &[("accept", "text/csv")],
    );
    assert_eq!(by_accept.header("content-type"), Some("text/csv"));
    let empty = server.get(
        &format!(
            "/api/v3/query_sql?db=db&q={}",
            encode("SELECT * FROM cpu WHERE host = 'z'")
        ),
        &[],
    );
    assert_eq!(empty.text(), "[]");
    let with_params =
        json!({"db": "db", "q": "SELECT usage FROM cpu WHERE host = $h", "params": {"h": "b"}})
            .to_string();
    let response = server.post(
        "/api/v3/query_sql",
        &[("content-type", "application/json")],
        with_params.as_bytes(),
    );
    assert_eq!(response.json(), json!([{"usage": 1.5}]));
    assert_eq!(server.get("/health", &[]).text(), "OK");
    let preflight = request(server.address, "OPTIONS", "/api/v3/write_lp", &[], b"");
    assert_eq!(
        (
            preflight.status,
            preflight.header("access-control-allow-origin")
        ),
        (204, Some("*"))
    );
}

#[test]
fn bad_input_gets_the_right_status_and_nothing_is_lost() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start(dir.path());
    let ok = server.post("/api/v3/write_lp?db=db", &[], b"m f=1i 1");
    assert_eq!(ok.status, 204);

    let partial = server.post(
        "/api/v3/write_lp?db=db",
        &[],
        b"m f=2i 2\nm f=oops 3\nm f=2.5 4",
    );
    assert_eq!(partial.status, 400);
    let body = partial.json();
    assert_eq!(body["error"], "partial write of line protocol occurred");
    assert_eq!(body["data"][0]["line_number"], 2);
    assert_eq!(body["data"][1]["original_line"], "m f=2.5 4");

    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [u8], u16);
    let cases: &[Case] = &[
        ("/api/v3/write_lp", &[], b"m f=1i", 400),
        (
            "/api/v3/write_lp?db=db&precision=minutes",
            &[],
            b"m f=1i",
            400,
        ),
        ("/api/v3/write_lp?db=bad%20name", &[], b"m f=1i", 400),
        (
            "/api/v3/write_lp?db=db&accept_partial=false",
            &[],
            b"m f=3i 5\nbroken",
            400,
        ),
        ("/api/v3/write_lp?db=db", &[], b"\n\n", 400),
        (
            "/api/v3/write_lp?db=db",
            &[("content-encoding", "br")],
            b"m f=1i",
            415,
        ),
        (
            "/api/v3/write_lp?db=db",
            &[("content-encoding", "gzip")],
            b"not gzip",
            400,
        ),
        ("/api/v3/write_lp?db=db", &[], &[b'm'; 5000], 413),
        ("/api/v3/configure/database", &[], b"{\"db\": \"x\"}", 415),
        (
            "/api/v3/configure/database",
            &[("content-type", "application/json")],
            b"{\"db\": ",
            400,
        ),
        (
            "/api/v3/query_sql",
            &[("content-type", "application/json")],
            b"{\"db\": \"nope\", \"q\": \"SELECT 1\"}",
            404,
        ),
        (
            "/api/v3/query_sql",
            &[("content-type", "application/json")],
            b"{\"db\": \"db\", \"q\": \"SELEC\"}",
            400,
        ),
        (
            "/api/v3/query_sql",
            &[("content-type", "application/json")],
            b"{\"db\": \"db\"}",
            400,
        ),
        (
            "/api/v3/query_sql",
            &[("content-type", "application/json")],
            b"{\"db\": \"db\", \"q\": \"SELECT * FROM m WHERE f = $x\"}",
            400,
        ),
        ("/no/such/route", &[], b"", 404),
    ];
    for (target, headers, body, status) in cases {
        let response = server.post(target, headers, body);
        assert_eq!(response.status, *status, "{target}: {}", response.text());
    }
    let mut gzipped = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gzipped, b"m f=9i 9").expect("compresses");
    let response = server.post(
        "/api/v3/write_lp?db=db",
        &[("content-encoding", "gzip")],
        &gzipped.finish().expect("done"),
    );
    assert_eq!(response.status, 204, "{}", response.text());

    let v2 = server.post("/api/v2/write?bucket=db", &[], b"m f=oops");
    assert_eq!(v2.status, 400);
    assert_eq!(v2.json()["code"], "invalid", "{}", v2.text());
    assert!(
        v2.json()["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("line protocol parsing error")),
        "{}",
        v2.text()
    );
    let v2_ok = server.post("/api/v2/write?bucket=db&precision=s", &[], b"m f=10i 1000");
    assert_eq!(v2_ok.status, 204, "{}", v2_ok.text());

    assert_eq!(
        server.query("db", "SELECT f FROM m ORDER BY time"),
        json!([{"f": 1}, {"f": 2}, {"f": 9}, {"f": 10}])
    );
}

#[test]
fn databases_are_created_listed_and_deleted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start(dir.path());
    let json_type = [("content-type", "application/json")];
    assert_eq!(
        server
            .post(
                "/api/v3/configure/database",
                &json_type,
                b"{\"db\": \"one\"}"
            )
            .status,
        200
    );
    assert_eq!(
        server
            .post(
                "/api/v3/configure/database",
                &json_type,
                b"{\"db\": \"one\"}"
            )
            .status,
        409
    );
    assert_eq!(
        server
            .post(
                "/api/v3/configure/database",
                &json_type,
                b"{\"db\": \"_bad\"}"
            )
            .status,
        400
    );
    assert_eq!(
        server
            .get("/api/v3/configure/database?format=json", &[])
            .json(),
        json!([{"iox::database": "one"}])
    );
    let deleted = server.send("DELETE", "/api/v3/configure/database?db=one", &[], b"");
    assert_eq!(deleted.status, 200);
    let again = server.send("DELETE", "/api/v3/configure/database?db=one", &[], b"");
    assert_eq!(again.status, 404);
}

/// Waits (at most 60 s) until the data directory `data` holds `count` snapshot
/// manifests.
pub fn wait_for_manifests(data: &Path, count: usize) {
    let started = Instant::now();
    while files_ending(&data.join("sluice/snapshots"), ".json").len() < count {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no snapshot was written"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Files under `dir` (recursively) whose name ends with `suffix`.
pub fn files_ending(dir: &Path, suffix: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_ending(&path, suffix));
        } else if path.to_string_lossy().ends_with(suffix) {
            found.push(path);
        }
    }
    found
}

#[test]
fn snapshots_move_rows_to_parquet_and_every_row_is_seen_once_after_kill_9() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let server = TestServer::start_with(dir.path(), &["--snapshot-rows", "200"]);
    for batch in 0..10 {
        let body: String = (0..100)
            .map(|i| {
                format!(
                    "cpu,host=h{} usage={}i {}\n",
                    i % 4,
                    batch * 100 + i,
                    batch * 100 + i
                )
            })
            .collect();
        let response = server.post(
            "/api/v3/write_lp?db=mydb&precision=ns",
            &[],
            body.as_bytes(),
        );
        assert_eq!(response.status, 204, "{}", response.text());
    }
    // The manifest is written after the snapshot's Parquet files: wait for it.
    wait_for_manifests(&data, 1);
    let totals = json!([{"n": 1000, "total": 499500}]);
    assert_eq!(
        server.query("mydb", "SELECT count(*) AS n, sum(usage) AS total FROM cpu"),
        totals
    );
    server.kill();

    assert!(
        !files_ending(&data, ".parquet").is_empty(),
        "snapshots are Parquet files"
    );
    let restarted = TestServer::start(dir.path());
    assert_eq!(
        restarted.query("mydb", "SELECT count(*) AS n, sum(usage) AS total FROM cpu"),
        totals
    );
    let by_host = restarted.query(
        "mydb",
        "SELECT host, count(*) AS n FROM cpu GROUP BY host ORDER BY host",
    );
    assert_eq!(by_host[3], json!({"host": "h3", "n": 250}));
}

#[test]
fn the_memory_object_store_serves_snapshotted_rows() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start_with(
        dir.path(),
        &["--object-store", "memory", "--snapshot-rows", "1"],
    );
    assert_eq!(
        server
            .post("/api/v3/write_lp?db=db", &[], b"m f=1i 1\nm f=2i 2")
            .status,
        204
    );
    assert_eq!(
        server
            .post("/api/v3/write_lp?db=db", &[], b"m f=3i 3")
            .status,
        204
    );
    assert_eq!(
        server.query("db", "SELECT sum(f) AS s FROM m"),
        json!([{"s": 6}])
    );
    assert!(
        files_ending(&dir.path().join("data"), ".parquet").is_empty(),
        "nothing on disk"
    );
}

#[test]
fn s3_without_a_bucket_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = sluice()
        .args([
            "serve",
            "--object-store",
            "s3",
            "--http-bind",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .env_remove("INFLUXDB3_BUCKET")
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("needs a bucket (--bucket)"), "{stderr}");
}

#[test]
fn tables_are_created_with_their_columns() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start(dir.path());
    let json_type = [("content-type", "application/json")];
    assert_eq!(
        server
            .post(
                "/api/v3/configure/database",
                &json_type,
                b"{\"db\": \"db\"}"
            )
            .status,
        200
    );
    let table = json!({"db": "db", "table": "weather", "tags": ["city"], "fields": [{"name": "temp", "type": "float64"}, {"name": "note", "type": "utf8"}]});
    let create = |body: &serde_json::Value| {
        server.post(
            "/api/v3/configure/table",
            &json_type,
            body.to_string().as_bytes(),
        )
    };
    assert_eq!(create(&table).status, 200);
    assert_eq!(create(&table).status, 409);
    assert_eq!(create(&json!({"db": "nope", "table": "t"})).status, 404);
    assert_eq!(
        create(&json!({"db": "db", "table": "t", "fields": [{"name": "x", "type": "decimal"}]}))
            .status,
        400
    );
    assert_eq!(
        create(&json!({"db": "db", "table": "t", "tags": ["time"]})).status,
        400
    );
    let columns = server.query(
        "db",
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'weather' ORDER BY ordinal_position",
    );
    assert_eq!(
        columns,
        json!([
            {"column_name": "city", "data_type": "Dictionary(Int32, Utf8)"},
            {"column_name": "temp", "data_type": "Float64"},
            {"column_name": "note", "data_type": "Utf8"},
            {"column_name": "time", "data_type": "Timestamp(ns)"}
        ])
    );
    assert_eq!(
        server.query("db", "SELECT count(*) AS n FROM weather"),
        json!([{"n": 0}])
    );
    let conflict = server.post(
        "/api/v3/write_lp?db=db&accept_partial=false",
        &[],
        b"weather,city=x temp=1i",
    );
    assert_eq!(
        conflict.status,
        400,
        "the declared type holds: {}",
        conflict.text()
    );
}

#[test]
fn parquet_results_read_back_as_the_rows() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start(dir.path());
    assert_eq!(
        server
            .post(
                "/api/v3/write_lp?db=db",
                &[],
                b"cpu,host=a usage=0.5 1\ncpu,host=b usage=1.5 2"
            )
            .status,
        204
    );
    let sql = encode("SELECT host, usage FROM cpu ORDER BY host");
    for response in [
        server.get(
            &format!("/api/v3/query_sql?db=db&format=parquet&q={sql}"),
            &[],
        ),
        server.get(
            &format!("/api/v3/query_sql?db=db&q={sql}"),
            &[("accept", "application/vnd.apache.parquet")],
        ),
    ] {
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(
            response.header("content-type"),
            Some("application/vnd.apache.parquet")
        );
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            bytes::Bytes::from(response.body),
        )
        .expect("a Parquet file")
        .build()
        .expect("a reader");
        let batches: Vec<_> = reader.collect::<Result<_, _>>().expect("rows");
        let text = arrow::util::pretty::pretty_format_batches(&batches)
            .expect("formats")
            .to_string();
        assert!(
            text.contains("| a    | 0.5   |") && text.contains("| b    | 1.5   |"),
            "{text}"
        );
    }
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
