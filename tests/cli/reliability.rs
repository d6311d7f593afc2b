//! The server survives what its clients send: attacks on its stack, its memory and its
//! connections, against the real binary.

use crate::server::{TestServer, plugin_dir_with, trigger_body};
use serde_json::{Value, json};

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
        &dir.path().join("data"),
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

    // Text too long to take at all.
    let long = format!("SELECT '{}'", "x".repeat(2 << 20));
    let answer = sql(&server, &long);
    assert_eq!(answer.status, 400, "{}", answer.text());
    assert!(
        answer.text().contains("may be at most 1024 KiB"),
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
