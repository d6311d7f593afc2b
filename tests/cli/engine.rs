//! Request triggers on the real server: `/api/v3/engine/<path>` runs the plugin in the
//! sandbox, on the real database, and answers with what it returned.

use crate::server::TestServer;
use serde_json::{Value, json};
use std::path::Path;

/// Counts calls per caller: writes a row with `write_sync`, reads the count back with a
/// parameterised query, and batches one more row with `write` (written after success).
const COUNTER: &str = r#"
def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
    who = query_parameters.get("who", "nobody")
    influxdb3_local.write_sync(LineBuilder("hits").tag("who", who).int64_field("n", 1), False)
    rows = influxdb3_local.query("SELECT count(*) AS n FROM hits WHERE who = $who", {"who": who})
    influxdb3_local.write(LineBuilder("audit").tag("who", who).int64_field("n", rows[0]["n"]))
    influxdb3_local.info(f"{who} called")
    return {"who": who, "count": rows[0]["n"], "limit": args["limit"]}, 201
"#;

const FAILING: &str = r#"
def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
    influxdb3_local.write(LineBuilder("never").int64_field("n", 1))
    raise Exception("boom")
"#;

fn trigger(server: &TestServer, name: &str, path: &str, plugin: &str, arguments: Value) {
    let body = json!({
        "db": "db", "plugin_filename": plugin, "trigger_name": name,
        "trigger_specification": format!("request:{path}"),
        "trigger_settings": {"run_async": false, "error_behavior": "log"},
        "trigger_arguments": arguments, "disabled": false,
    });
    let response = server.post(
        "/api/v3/configure/processing_engine_trigger",
        &[("content-type", "application/json")],
        body.to_string().as_bytes(),
    );
    assert_eq!(response.status, 200, "{}", response.text());
}

fn plugins(dir: &Path) -> String {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).expect("plugin dir");
    std::fs::write(plugins.join("counter.py"), COUNTER).expect("written");
    std::fs::write(plugins.join("failing.py"), FAILING).expect("written");
    let echo =
        std::fs::read_to_string(crate::support::root().join("examples/python/request_plugin.py"))
            .expect("example");
    std::fs::write(plugins.join("echo.py"), echo).expect("written");
    plugins.to_string_lossy().into_owned()
}

#[test]
fn request_triggers_run_their_plugins_on_the_database() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plugin_dir = plugins(dir.path());
    let server = TestServer::start_with(dir.path(), &["--plugin-dir", &plugin_dir]);
    assert_eq!(
        server
            .post(
                "/api/v3/configure/database",
                &[("content-type", "application/json")],
                br#"{"db": "db"}"#
            )
            .status,
        200
    );
    trigger(&server, "echo", "echo", "echo.py", Value::Null);
    trigger(
        &server,
        "counter",
        "hooks/count",
        "counter.py",
        json!({"limit": "5"}),
    );
    trigger(&server, "failing", "boom", "failing.py", Value::Null);

    let echoed = server.post(
        "/api/v3/engine/echo?name=sl%C3%BCice&x=a+b",
        &[("content-type", "application/json")],
        br#"{"hello": "world"}"#,
    );
    assert_eq!(echoed.status, 200, "{}", echoed.text());
    assert_eq!(echoed.header("content-type"), Some("application/json"));
    assert_eq!(
        echoed.json(),
        json!({"query": {"name": "slüice", "x": "a b"}, "body": {"hello": "world"}, "content_type": "application/json"})
    );

    for expected in 1..=2 {
        let counted = server.get("/api/v3/engine/hooks/count?who=ann", &[]);
        assert_eq!(counted.status, 201, "{}", counted.text());
        assert_eq!(
            counted.json(),
            json!({"who": "ann", "count": expected, "limit": "5"})
        );
    }
    // The batched writes were written before the answer.
    assert_eq!(
        server.query("db", "SELECT who, n FROM audit ORDER BY n"),
        json!([{"who": "ann", "n": 1}, {"who": "ann", "n": 2}])
    );

    let failed = server.get("/api/v3/engine/boom", &[]);
    assert_eq!(failed.status, 500);
    assert!(
        failed.json()["error"]
            .as_str()
            .unwrap_or_default()
            .contains("boom"),
        "{}",
        failed.text()
    );
    let tables = server.query(
        "db",
        "SELECT table_name FROM information_schema.tables WHERE table_name = 'never'",
    );
    assert_eq!(
        tables,
        json!([]),
        "a failed invocation's batched writes are discarded"
    );

    assert_eq!(server.get("/api/v3/engine/nope", &[]).status, 404);
    assert_eq!(
        server
            .post(
                "/api/v3/configure/processing_engine_trigger/disable?db=db&trigger_name=echo",
                &[],
                b""
            )
            .status,
        200
    );
    assert_eq!(
        server.get("/api/v3/engine/echo", &[]).status,
        404,
        "a disabled trigger serves nothing"
    );
    assert_eq!(
        server
            .post(
                "/api/v3/configure/processing_engine_trigger/enable?db=db&trigger_name=echo",
                &[],
                b""
            )
            .status,
        200
    );
    assert_eq!(server.get("/api/v3/engine/echo", &[]).status, 200);
    let anonymous = crate::http::request(server.address, "GET", "/api/v3/engine/echo", &[], b"");
    assert_eq!(anonymous.status, 401, "engine paths need a token");
}
