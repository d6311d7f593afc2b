//! The real server on a loopback port: writes, queries, durability, bad input.

use crate::http::{Response, request};
use crate::support::sluice;
use serde_json::json;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

/// `sluice serve` on 127.0.0.1 with a port of its own; killed on drop.
pub struct TestServer {
    child: Child,
    pub address: SocketAddr,
}

impl TestServer {
    pub fn start(data_dir: &Path) -> Self {
        let address_file = data_dir.join("address");
        let _ = std::fs::remove_file(&address_file);
        let child = sluice()
            .args(["serve", "--http-bind", "127.0.0.1:0", "--wal-flush-interval", "10ms", "--max-http-request-size", "4096"])
            .arg("--data-dir")
            .arg(data_dir.join("data"))
            .arg("--tcp-listener-file-path")
            .arg(&address_file)
            .env("SLUICE_LOG", "warn")
            .spawn()
            .expect("sluice serve starts");
        let started = Instant::now();
        let address = loop {
            if let Ok(text) = std::fs::read_to_string(&address_file) {
                if let Ok(address) = text.parse() {
                    break address;
                }
            }
            assert!(started.elapsed() < Duration::from_secs(60), "the server did not start");
            std::thread::sleep(Duration::from_millis(20));
        };
        Self { child, address }
    }

    pub fn post(&self, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        request(self.address, "POST", target, headers, body)
    }

    pub fn get(&self, target: &str, headers: &[(&str, &str)]) -> Response {
        request(self.address, "GET", target, headers, b"")
    }

    pub fn query(&self, db: &str, sql: &str) -> serde_json::Value {
        let body = json!({"db": db, "q": sql}).to_string();
        let response = self.post("/api/v3/query_sql", &[("content-type", "application/json")], body.as_bytes());
        assert_eq!(response.status, 200, "{}", response.text());
        response.json()
    }

    /// `kill -9`: no flush, no goodbye.
    pub fn kill(mut self) {
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

#[test]
fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start(dir.path());
    for batch in 0..20 {
        let body: String = (0..50).map(|i| format!("cpu,host=h{} usage={}i {}\n", i % 3, batch * 50 + i, batch * 50 + i)).collect();
        let response = server.post("/api/v3/write_lp?db=mydb&precision=ns", &[], body.as_bytes());
        assert_eq!(response.status, 204, "{}", response.text());
    }
    assert_eq!(server.query("mydb", "SELECT count(*) AS n FROM cpu"), json!([{"n": 1000}]));
    server.kill();

    let restarted = TestServer::start(dir.path());
    assert_eq!(
        restarted.query("mydb", "SELECT count(*) AS n, sum(usage) AS total, count(DISTINCT host) AS hosts FROM cpu"),
        json!([{"n": 1000, "total": 499500, "hosts": 3}])
    );
}

#[test]
fn queries_answer_in_every_format() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start(dir.path());
    let response = server.post("/api/v3/write_lp?db=db", &[], b"cpu,host=a usage=0.5 1700000000\ncpu,host=b usage=1.5 1700000001");
    assert_eq!(response.status, 204, "{}", response.text());
    let sql = "SELECT host, usage, time FROM cpu ORDER BY host";
    let q = |format: &str| server.get(&format!("/api/v3/query_sql?db=db&format={format}&q={}", encode(sql)), &[]);
    let json_rows = q("json");
    assert_eq!(json_rows.header("content-type"), Some("application/json"));
    assert_eq!(
        json_rows.json(),
        json!([{"host": "a", "usage": 0.5, "time": "2023-11-14T22:13:20"}, {"host": "b", "usage": 1.5, "time": "2023-11-14T22:13:21"}])
    );
    assert_eq!(q("jsonl").text(), "{\"host\":\"a\",\"usage\":0.5,\"time\":\"2023-11-14T22:13:20\"}\n{\"host\":\"b\",\"usage\":1.5,\"time\":\"2023-11-14T22:13:21\"}\n");
    assert_eq!(q("csv").text(), "host,usage,time\na,0.5,2023-11-14T22:13:20\nb,1.5,2023-11-14T22:13:21\n");
    assert!(q("pretty").text().contains("| a    | 0.5   | 2023-11-14T22:13:20 |"), "{}", q("pretty").text());
    let by_accept = server.get(&format!("/api/v3/query_sql?db=db&q={}", encode(sql)), &[("accept", "text/csv")]);
    assert_eq!(by_accept.header("content-type"), Some("text/csv"));
    let empty = server.get(&format!("/api/v3/query_sql?db=db&q={}", encode("SELECT * FROM cpu WHERE host = 'z'")), &[]);
    assert_eq!(empty.text(), "[]");
    let with_params = json!({"db": "db", "q": "SELECT usage FROM cpu WHERE host = $h", "params": {"h": "b"}}).to_string();
    let response = server.post("/api/v3/query_sql", &[("content-type", "application/json")], with_params.as_bytes());
    assert_eq!(response.json(), json!([{"usage": 1.5}]));
    assert_eq!(server.get("/health", &[]).text(), "OK");
}

#[test]
fn bad_input_gets_the_right_status_and_nothing_is_lost() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start(dir.path());
    let ok = server.post("/api/v3/write_lp?db=db", &[], b"m f=1i 1");
    assert_eq!(ok.status, 204);

    let partial = server.post("/api/v3/write_lp?db=db", &[], b"m f=2i 2\nm f=oops 3\nm f=2.5 4");
    assert_eq!(partial.status, 400);
    let body = partial.json();
    assert_eq!(body["error"], "partial write of line protocol occurred");
    assert_eq!(body["data"][0]["line_number"], 2);
    assert_eq!(body["data"][1]["original_line"], "m f=2.5 4");

    let cases: &[(&str, &[(&str, &str)], &[u8], u16)] = &[
        ("/api/v3/write_lp", &[], b"m f=1i", 400),
        ("/api/v3/write_lp?db=db&precision=minutes", &[], b"m f=1i", 400),
        ("/api/v3/write_lp?db=bad%20name", &[], b"m f=1i", 400),
        ("/api/v3/write_lp?db=db&accept_partial=false", &[], b"m f=3i 5\nbroken", 400),
        ("/api/v3/write_lp?db=db", &[], b"\n\n", 400),
        ("/api/v3/write_lp?db=db", &[("content-encoding", "br")], b"m f=1i", 415),
        ("/api/v3/write_lp?db=db", &[("content-encoding", "gzip")], b"not gzip", 400),
        ("/api/v3/write_lp?db=db", &[], &[b'm'; 5000], 413),
        ("/api/v3/configure/database", &[], b"{\"db\": \"x\"}", 415),
        ("/api/v3/configure/database", &[("content-type", "application/json")], b"{\"db\": ", 400),
        ("/api/v3/query_sql", &[("content-type", "application/json")], b"{\"db\": \"nope\", \"q\": \"SELECT 1\"}", 404),
        ("/api/v3/query_sql", &[("content-type", "application/json")], b"{\"db\": \"db\", \"q\": \"SELEC\"}", 400),
        ("/api/v3/query_sql", &[("content-type", "application/json")], b"{\"db\": \"db\"}", 400),
        ("/api/v3/query_sql", &[("content-type", "application/json")], b"{\"db\": \"db\", \"q\": \"SELECT * FROM m WHERE f = $x\"}", 400),
        ("/no/such/route", &[], b"", 404),
    ];
    for (target, headers, body, status) in cases {
        let response = server.post(target, headers, body);
        assert_eq!(response.status, *status, "{target}: {}", response.text());
    }
    let mut gzipped = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gzipped, b"m f=9i 9").expect("compresses");
    let response = server.post("/api/v3/write_lp?db=db", &[("content-encoding", "gzip")], &gzipped.finish().expect("done"));
    assert_eq!(response.status, 204, "{}", response.text());

    assert_eq!(server.query("db", "SELECT f FROM m ORDER BY time"), json!([{"f": 1}, {"f": 2}, {"f": 9}]));
}

#[test]
fn databases_are_created_listed_and_deleted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start(dir.path());
    let json_type = [("content-type", "application/json")];
    assert_eq!(server.post("/api/v3/configure/database", &json_type, b"{\"db\": \"one\"}").status, 200);
    assert_eq!(server.post("/api/v3/configure/database", &json_type, b"{\"db\": \"one\"}").status, 409);
    assert_eq!(server.post("/api/v3/configure/database", &json_type, b"{\"db\": \"_bad\"}").status, 400);
    assert_eq!(server.get("/api/v3/configure/database?format=json", &[]).json(), json!([{"iox::database": "one"}]));
    let deleted = request(server.address, "DELETE", "/api/v3/configure/database?db=one", &[], b"");
    assert_eq!(deleted.status, 200);
    let again = request(server.address, "DELETE", "/api/v3/configure/database?db=one", &[], b"");
    assert_eq!(again.status, 404);
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
