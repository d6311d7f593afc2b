//! Tenants on one server (issue 17): tokens with `manage` on their databases create,
//! change, test and delete their own triggers, and nothing of another database.

use crate::server::{TestServer, plugin_dir_with, trigger_body};
use crate::support::{root, text};
use serde_json::{Value, json};

/// A server with databases `a` and `b`, the plugins of `tests/plugins/tenants/` and
/// `tests/plugins/engine/remembers.py`.
fn server(dir: &std::path::Path) -> TestServer {
    server_with(dir, &[])
}

/// [`server`] with more `serve` flags.
fn server_with(dir: &std::path::Path, flags: &[&str]) -> TestServer {
    let read = |path: &str| std::fs::read_to_string(root().join(path)).expect("test plugin");
    let plugins = plugin_dir_with(
        dir,
        &[
            ("peek.py", &read("tests/plugins/tenants/peek.py")),
            ("slow.py", &read("tests/plugins/tenants/slow.py")),
            ("hoard.py", &read("tests/plugins/tenants/hoard.py")),
            (
                "late_writer.py",
                &read("tests/plugins/tenants/late_writer.py"),
            ),
            ("writer.py", &read("tests/plugins/tenants/writer.py")),
            ("dice.py", &read("tests/plugins/tenants/dice.py")),
            ("remembers.py", &read("tests/plugins/engine/remembers.py")),
        ],
    );
    let plugins = plugins.to_str().expect("utf-8 path").to_string();
    let all = [&["--plugin-dir", plugins.as_str()][..], flags].concat();
    let server = TestServer::start_with(dir, &all);
    server.create_database("a");
    server.create_database("b");
    server
}

/// A token made with `sluice create token --permission PERMISSION`.
fn token(server: &TestServer, name: &str, permission: &str) -> String {
    server.create_token(name, &[permission])
}

/// Sends `body` (JSON) to `target` with `token`; the status and the answer's text.
fn send(
    server: &TestServer,
    token: &str,
    method: &str,
    target: &str,
    body: &Value,
) -> (u16, String) {
    let bearer = format!("Bearer {token}");
    let response = server.send(
        method,
        target,
        &[
            ("authorization", &bearer),
            ("content-type", "application/json"),
        ],
        body.to_string().as_bytes(),
    );
    (response.status, response.text())
}

fn trigger_on(db: &str, name: &str, spec: &str, plugin: &str) -> Value {
    let mut body = trigger_body(name, spec, plugin, Value::Null, "log");
    body["db"] = json!(db);
    body
}

const TRIGGER: &str = "/api/v3/configure/processing_engine_trigger";

/// `sluice update database -d DATABASE QUOTA VALUE`, asserting success.
fn set_quota(server: &TestServer, database: &str, quota: &str, value: &str) {
    let set = server.cli(&["update", "database", "-d", database, quota, value]);
    assert!(set.status.success(), "{}", text(&set));
}

#[test]
fn a_manage_token_runs_its_own_databases_triggers_and_no_one_elses() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = server(dir.path());
    let tenant_a = token(&server, "tenant-a", "db:a:read,write,manage");
    let reader_a = token(&server, "reader-a", "db:a:read,write");
    let tenant_b = token(&server, "tenant-b", "db:b:read,write,manage");
    let listed = server.cli(&["show", "tokens"]);
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("db:a:read,write,manage"),
        "{}",
        text(&listed)
    );

    // Its own database: create, disable, enable, call.
    let memo = trigger_on("a", "memo", "request:a/memo", "remembers.py");
    assert_eq!(send(&server, &tenant_a, "POST", TRIGGER, &memo).0, 200);
    for verb in ["disable", "enable"] {
        let target = format!("{TRIGGER}/{verb}?db=a&trigger_name=memo");
        assert_eq!(send(&server, &tenant_a, "POST", &target, &json!({})).0, 200);
    }
    let called = send(
        &server,
        &tenant_a,
        "GET",
        "/api/v3/engine/a/memo",
        &Value::Null,
    );
    assert_eq!(called.0, 200, "{}", called.1);

    // Anything of another database, or without manage: 403, naming the permission.
    let forbidden = |(status, body): (u16, String)| {
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("manage"), "{body}");
    };
    forbidden(send(
        &server,
        &tenant_a,
        "POST",
        TRIGGER,
        &trigger_on("b", "x", "request:x", "remembers.py"),
    ));
    forbidden(send(
        &server,
        &reader_a,
        "POST",
        TRIGGER,
        &trigger_on("a", "x", "request:x", "remembers.py"),
    ));
    let on_a = format!("{TRIGGER}?db=a&trigger_name=memo&force=true");
    forbidden(send(&server, &tenant_b, "DELETE", &on_a, &Value::Null));
    let disable_a = format!("{TRIGGER}/disable?db=a&trigger_name=memo");
    forbidden(send(&server, &tenant_b, "POST", &disable_a, &json!({})));
    let test_on_a = json!({"filename": "peek.py", "database": "a", "input_lp": "t n=1i", "input_arguments": {"db": "a"}});
    forbidden(send(
        &server,
        &tenant_b,
        "POST",
        "/api/v3/plugin_test/wal",
        &test_on_a,
    ));

    // A path in use is refused without naming the database that has it; names are bounded.
    let taken = trigger_on("b", "secret_name", "request:taken", "remembers.py");
    assert_eq!(send(&server, &tenant_b, "POST", TRIGGER, &taken).0, 200);
    let (status, body) = send(
        &server,
        &tenant_a,
        "POST",
        TRIGGER,
        &trigger_on("a", "mine", "request:taken", "remembers.py"),
    );
    assert_eq!(status, 409, "{body}");
    assert!(
        body.contains("another trigger") && !body.contains("'b'") && !body.contains("secret_name"),
        "{body}"
    );
    let long = "n".repeat(300);
    let (status, body) = send(
        &server,
        &tenant_a,
        "POST",
        TRIGGER,
        &trigger_on("a", &long, "request:long", "remembers.py"),
    );
    assert_eq!(status, 400, "{body}");

    // Its triggers' limits may be tightened, never loosened.
    let mut greedy = trigger_on("a", "greedy", "request:a/greedy", "remembers.py");
    greedy["limits"] = json!({"cpu_time": "1000h"});
    let (status, body) = send(&server, &tenant_a, "POST", TRIGGER, &greedy);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("CPU time limit over the server's"), "{body}");
    greedy["limits"] = json!({"cpu_time": "100ms"});
    assert_eq!(send(&server, &tenant_a, "POST", TRIGGER, &greedy).0, 200);

    // A trigger reaches no further than its creator.
    let mut granted = trigger_on("a", "peek", "table:t", "peek.py");
    granted["granted_databases"] = json!(["b"]);
    let (status, body) = send(&server, &tenant_a, "POST", TRIGGER, &granted);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("may not grant database `b`"), "{body}");

    // A test run on its own database, whose plugin names another: refused inside.
    server.post("/api/v3/write_lp?db=b", &[], b"secrets value=1i 1");
    let mut peek_b = test_on_a.clone();
    peek_b["input_arguments"] = json!({"db": "b"});
    let (status, report) = send(
        &server,
        &tenant_a,
        "POST",
        "/api/v3/plugin_test/wal",
        &peek_b,
    );
    assert_eq!(status, 200, "{report}");
    assert!(report.contains("not reachable from a test run"), "{report}");
    assert!(!report.contains("read ["), "{report}");

    // Still the admin's: databases, tokens, packages, plugin files.
    for (method, target) in [
        ("POST", "/api/v3/configure/database"),
        ("POST", "/api/v3/configure/token"),
        (
            "POST",
            "/api/v3/configure/plugin_environment/install_packages",
        ),
        ("POST", "/api/v3/plugins/files"),
    ] {
        let (status, body) = send(&server, &tenant_a, method, target, &json!({"db": "c"}));
        assert_eq!(status, 403, "{target}: {body}");
    }

    // And its own trigger goes with it; the other tenant's database never changed.
    assert_eq!(
        send(&server, &tenant_a, "DELETE", &on_a, &Value::Null).0,
        200
    );
    let rows = server.query("b", "SELECT count(*) AS n FROM secrets");
    assert_eq!(rows, json!([{"n": 1}]));
    let triggers = server.query(
        "a",
        "SELECT trigger_name FROM system.processing_engine_triggers",
    );
    assert_eq!(triggers, json!([{"trigger_name": "greedy"}]), "memo went");
}

/// Issue 17, point 4: a request trigger answers tokens that may read or invoke its
/// database, or anyone when created public; a caller without a valid token learns
/// nothing of the others.
/// A test run is charged to its database: a tenant's on a database not created yet would
/// share one identity (its turns, CPU and caches) with every other tenant's such runs, so
/// that one tenant flooding them would have another's refused.
#[test]
fn a_tenants_test_run_needs_its_database_to_exist() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = server(dir.path());
    let tenant_c = token(&server, "tenant-c", "db:c:read,write,manage");
    let test_on_c = json!({"filename": "peek.py", "database": "c", "input_lp": "t n=1i", "input_arguments": {"db": "c"}});
    let (status, body) = send(
        &server,
        &tenant_c,
        "POST",
        "/api/v3/plugin_test/wal",
        &test_on_c,
    );
    assert_eq!(status, 404, "{body}");
    assert!(
        body.contains("database 'c' does not exist") && body.contains("a write to it creates it"),
        "{body}"
    );

    // Its first write creates it; then the same run goes through.
    let bearer = format!("Bearer {tenant_c}");
    let wrote = server.post(
        "/api/v3/write_lp?db=c",
        &[("authorization", &bearer)],
        b"secrets value=1i 1",
    );
    assert_eq!(wrote.status, 204, "{}", wrote.text());
    let (status, report) = send(
        &server,
        &tenant_c,
        "POST",
        "/api/v3/plugin_test/wal",
        &test_on_c,
    );
    assert_eq!(status, 200, "{report}");
    assert!(report.contains("read ["), "{report}");

    // The admin's runs may still name any database, as upstream's.
    let mut on_nothing = test_on_c.clone();
    on_nothing["database"] = json!("never_made");
    let tested = server.post(
        "/api/v3/plugin_test/wal",
        &[("content-type", "application/json")],
        on_nothing.to_string().as_bytes(),
    );
    assert_eq!(tested.status, 200, "{}", tested.text());
}

#[test]
fn request_triggers_answer_their_databases_callers_or_anyone_when_public() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = server(dir.path());
    let tenant_a = token(&server, "tenant-a", "db:a:read,write,manage");
    let invoker = token(&server, "invoker-a", "db:a:invoke");
    let tenant_b = token(&server, "tenant-b", "db:b:read,write,manage");
    let private = trigger_on("a", "private", "request:a/private", "remembers.py");
    assert_eq!(send(&server, &tenant_a, "POST", TRIGGER, &private).0, 200);
    let mut open = trigger_on("a", "open", "request:a/open", "remembers.py");
    open["public"] = json!(true);
    assert_eq!(send(&server, &tenant_a, "POST", TRIGGER, &open).0, 200);
    let mut public_wal = trigger_on("a", "wal", "table:t", "remembers.py");
    public_wal["public"] = json!(true);
    let (status, body) = send(&server, &tenant_a, "POST", TRIGGER, &public_wal);
    assert_eq!(
        (status, body.contains("only a request trigger")),
        (400, true),
        "{body}"
    );
    let listed = server.query(
        "a",
        "SELECT trigger_name, public FROM system.processing_engine_triggers ORDER BY trigger_name",
    );
    assert_eq!(
        listed,
        json!([{"trigger_name": "open", "public": true}, {"trigger_name": "private", "public": false}])
    );

    let call = |path: &str, authorization: Option<&str>| {
        let headers: Vec<(&str, &str)> = authorization
            .map(|value| vec![("authorization", value)])
            .unwrap_or_default();
        let response = crate::http::request(
            server.address,
            "GET",
            &format!("/api/v3/engine/{path}"),
            &headers,
            b"",
        );
        response.status
    };
    let bearer = |token: &str| format!("Bearer {token}");
    let stale = "Bearer apiv3_0000000000000000000000000000000000000000000000000000000000000000";
    assert_eq!(call("a/open", None), 200, "public: no token needed");
    // Without a token, a body of at most 64 KiB.
    let big = crate::http::request(
        server.address,
        "POST",
        "/api/v3/engine/a/open",
        &[],
        &vec![b'x'; 100 << 10],
    );
    assert_eq!(big.status, 413, "{}", big.text());
    assert_eq!(call("a/open", Some(stale)), 200);
    assert_eq!(call("a/private", None), 401);
    assert_eq!(call("a/private", Some(stale)), 401);
    assert_eq!(call("nowhere", None), 401, "nothing learnt without a token");
    assert_eq!(call("a/private", Some(&bearer(&invoker))), 200);
    assert_eq!(call("a/private", Some(&bearer(&tenant_b))), 403);
    assert_eq!(call("nowhere", Some(&bearer(&tenant_b))), 404);
    // Invoking is not reading.
    let query = json!({"db": "a", "q": "SELECT 1"});
    let (status, body) = send(&server, &invoker, "POST", "/api/v3/query_sql", &query);
    assert_eq!(status, 403, "{body}");

    // No longer public: anonymous callers are refused again.
    let delete = format!("{TRIGGER}?db=a&trigger_name=open&force=true");
    assert_eq!(
        send(&server, &tenant_a, "DELETE", &delete, &Value::Null).0,
        200
    );
    open["public"] = json!(false);
    assert_eq!(send(&server, &tenant_a, "POST", TRIGGER, &open).0, 200);
    assert_eq!(call("a/open", None), 401);
}

/// A status and its body as JSON (`null` when it is not JSON).
fn parsed((status, body): (u16, String)) -> (u16, Value) {
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// A request plugin answering with `text`.
fn answering(text: &str) -> String {
    format!(
        "def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):\n    return {{\"code\": \"{text}\"}}\n"
    )
}

/// Issue 17, point 3: each database has its own plugin area, beside the shared plugins
/// the admin keeps; a tenant uploads and changes only its own.
#[test]
fn a_tenants_plugins_live_in_its_databases_own_area() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = server(dir.path());
    let tenant_a = token(&server, "tenant-a", "db:a:read,write,manage");
    let tenant_b = token(&server, "tenant-b", "db:b:read,write,manage");
    let upload = |token: &str, target: &str, name: &str, code: &str| {
        let body = json!({"plugin_name": name, "content": code});
        send(&server, token, "POST", target, &body)
    };
    let files = "/api/v3/plugins/files";
    // The same name in two areas: two plugins.
    assert_eq!(
        upload(
            &tenant_a,
            &format!("{files}?db=a"),
            "own.py",
            &answering("a")
        )
        .0,
        200
    );
    assert_eq!(
        upload(
            &tenant_b,
            &format!("{files}?db=b"),
            "own.py",
            &answering("b")
        )
        .0,
        200
    );
    for (db, token) in [("a", &tenant_a), ("b", &tenant_b)] {
        let trigger = trigger_on(db, "own", &format!("request:{db}/own"), "own.py");
        assert_eq!(send(&server, token, "POST", TRIGGER, &trigger).0, 200);
        let called = send(
            &server,
            token,
            "GET",
            &format!("/api/v3/engine/{db}/own"),
            &Value::Null,
        );
        assert_eq!(parsed(called), (200, json!({"code": db})));
    }
    // A shared plugin runs for a tenant, but only the admin changes it.
    let shared = trigger_on("a", "shared", "request:a/shared", "remembers.py");
    assert_eq!(send(&server, &tenant_a, "POST", TRIGGER, &shared).0, 200);
    let refused = |(status, body): (u16, String), why: &str| {
        assert_eq!(status, 403, "{body}");
        assert!(body.contains(why), "{body}");
    };
    let update = |token: &str, db: &str, trigger: &str, code: &str| {
        let body = json!({"plugin_name": trigger, "content": code});
        send(&server, token, "PUT", &format!("{files}?db={db}"), &body)
    };
    refused(
        update(&tenant_a, "a", "shared", &answering("x")),
        "needs the admin token",
    );
    refused(
        upload(&tenant_a, files, "remembers.py", &answering("x")),
        "needs the admin token",
    );
    // Another tenant's area: neither written nor changed.
    refused(
        upload(
            &tenant_a,
            &format!("{files}?db=b"),
            "own.py",
            &answering("x"),
        ),
        "manage",
    );
    refused(update(&tenant_a, "b", "own", &answering("x")), "manage");
    for escaping in ["../b/own.py", "../../plugins/remembers.py", "/etc/own.py"] {
        let (status, body) = upload(&tenant_a, &format!("{files}?db=a"), escaping, "x = 1");
        assert_eq!(status, 400, "{escaping}: {body}");
    }
    // Its own plugin, changed by its trigger's name.
    assert_eq!(update(&tenant_a, "a", "own", &answering("a2")).0, 200);
    let called = send(
        &server,
        &tenant_a,
        "GET",
        "/api/v3/engine/a/own",
        &Value::Null,
    );
    assert_eq!(parsed(called), (200, json!({"code": "a2"})));
    let called = send(
        &server,
        &tenant_b,
        "GET",
        "/api/v3/engine/b/own",
        &Value::Null,
    );
    assert_eq!(parsed(called), (200, json!({"code": "b"})));
    let listed = server.query(
        "a",
        "SELECT plugin_name, file_path FROM system.plugin_files ORDER BY plugin_name",
    );
    assert_eq!(
        listed,
        json!([{"plugin_name": "own", "file_path": "own.py"}, {"plugin_name": "shared", "file_path": "remembers.py"}])
    );

    // A database deleted takes its area along; created again, it has none.
    let deleted = server.send("DELETE", "/api/v3/configure/database?db=a", &[], b"");
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    server.create_database("a");
    let again = trigger_on("a", "own", "request:a/own", "own.py");
    let (status, body) = send(&server, &tenant_a, "POST", TRIGGER, &again);
    assert_eq!(status, 404, "{body}");
    let areas: Vec<_> = std::fs::read_dir(dir.path().join("data/plugin-areas"))
        .expect("the areas")
        .flatten()
        .map(|entry| entry.file_name())
        .collect();
    assert_eq!(areas.len(), 1, "only b's is left: {areas:?}");
}

/// Issue 17, point 7: quotas per database, the server's defaults and a database's own;
/// exceeding one is refused naming it, and nothing of another tenant changes.
#[test]
fn quotas_bound_each_database_and_only_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = server_with(dir.path(), &["--max-triggers-per-database", "2"]);
    let tenant_a = token(&server, "tenant-a", "db:a:read,write,manage");
    let tenant_b = token(&server, "tenant-b", "db:b:read,write,manage");
    let update = |args: &[&str]| server.cli(&[&["update", "database", "-d", "a"], args].concat());
    for (bad, why) in [("0", "from 1 to 10000, not 0"), ("10001", "not 10001")] {
        let refused = update(&["--max-triggers", bad]);
        assert!(
            text(&refused).contains("400 Bad Request") && text(&refused).contains(why),
            "{}",
            text(&refused)
        );
    }
    assert!(!update(&["--max-triggers", "-1"]).status.success());
    let set = update(&[
        "--max-triggers",
        "1",
        "--max-plugin-bytes",
        "10000",
        "--max-concurrent-invocations",
        "1",
    ]);
    assert!(set.status.success(), "{}", text(&set));
    // Quotas are the admin's to set.
    let own = json!({"db": "a", "quotas": {"triggers": 100}});
    let (status, body) = send(
        &server,
        &tenant_a,
        "PUT",
        "/api/v3/configure/database",
        &own,
    );
    assert_eq!(status, 403, "{body}");

    // Triggers: a's own quota of 1, b's the server's 2.
    // Calls of a run_async trigger overlap: only the quota holds them back.
    let mut slow = trigger_on("a", "slow", "request:a/slow", "slow.py");
    slow["trigger_settings"]["run_async"] = json!(true);
    assert_eq!(send(&server, &tenant_a, "POST", TRIGGER, &slow).0, 200);
    let (status, body) = send(
        &server,
        &tenant_a,
        "POST",
        TRIGGER,
        &trigger_on("a", "more", "request:a/more", "slow.py"),
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("max-triggers quota is 1"), "{body}");
    for name in ["b1", "b2"] {
        let trigger = trigger_on("b", name, &format!("request:{name}"), "slow.py");
        assert_eq!(send(&server, &tenant_b, "POST", TRIGGER, &trigger).0, 200);
    }
    let (status, body) = send(
        &server,
        &tenant_b,
        "POST",
        TRIGGER,
        &trigger_on("b", "b3", "request:b3", "slow.py"),
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("max-triggers quota is 2"), "{body}");

    // Plugin bytes: a's area holds at most 10,000, each file charged whole 4 KiB blocks
    // (so a quota of bytes bounds the number of files too).
    let upload = |name: &str, bytes: usize| {
        let body = json!({"plugin_name": name, "content": "#".repeat(bytes)});
        send(
            &server,
            &tenant_a,
            "POST",
            "/api/v3/plugins/files?db=a",
            &body,
        )
    };
    assert_eq!(upload("one.py", 3000).0, 200);
    assert_eq!(upload("two.py", 1).0, 200);
    let (status, body) = upload("three.py", 1);
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("would hold 12288 bytes (each file charged in whole blocks of 4 KiB): its max-plugin-bytes quota is 10000"),
        "{body}"
    );
    assert_eq!(upload("one.py", 3500).0, 200, "a replaced file counts once");

    // One invocation of a at a time: the second call at once is refused; b's run on.
    let address = server.address;
    let call = move |path: &'static str, token: String| {
        std::thread::spawn(move || {
            let bearer = format!("Bearer {token}");
            let response = crate::http::request(
                address,
                "GET",
                &format!("/api/v3/engine/{path}?seconds=2"),
                &[("authorization", &bearer)],
                b"",
            );
            (response.status, response.text())
        })
    };
    let first = call("a/slow", tenant_a.clone());
    std::thread::sleep(std::time::Duration::from_millis(500));
    let second = call("a/slow", tenant_a.clone());
    let others = [call("b1", tenant_b.clone()), call("b2", tenant_b.clone())];
    let (status, body) = second.join().expect("second call");
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("max-concurrent-invocations 1"), "{body}");
    assert!(!body.contains("'a'"), "the database is not named: {body}");
    assert_eq!(first.join().expect("first call").0, 200);
    for other in others {
        let (status, body) = other.join().expect("b's call");
        assert_eq!(status, 200, "{body}");
    }
    let logged = server.query(
        "a",
        "SELECT count(*) AS n FROM system.processing_engine_logs WHERE log_text LIKE '%max-concurrent-invocations%'",
    );
    assert_eq!(logged, json!([{"n": 1}]));
}

/// Issue 17, point 7: one invocation writes at most its database's quota of lines,
/// batched and immediate writes together; past it the call fails, naming the quota, and
/// none of its batched rows is written. Another database's quota is its own.
#[test]
fn an_invocation_writes_no_more_lines_than_its_databases_quota() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = server(dir.path());
    set_quota(&server, "a", "--max-writes-per-invocation", "5");
    for db in ["a", "b"] {
        let trigger = trigger_on(db, "writer", &format!("request:{db}/writer"), "writer.py");
        assert_eq!(
            send(&server, server.token(), "POST", TRIGGER, &trigger).0,
            200
        );
    }
    let call = |db: &str, query: &str| {
        let response = server.get(&format!("/api/v3/engine/{db}/writer?{query}"), &[]);
        (response.status, response.text())
    };
    let rows = |db: &str| server.query(db, "SELECT count(*) AS n FROM out")[0]["n"].clone();

    assert_eq!(call("a", "lines=5").0, 200);
    assert_eq!(rows("a"), json!(5));
    for query in ["lines=6", "lines=6&sync=1"] {
        let (status, body) = call("a", query);
        assert_eq!(status, 500, "{body}");
        assert!(
            body.contains(
                "database 'a' allows 5 lines written per invocation (its \
                           max-writes-per-invocation quota)"
            ),
            "{body}"
        );
    }
    // The batched call wrote nothing; the immediate one, the five lines before the quota.
    assert_eq!(rows("a"), json!(10));
    assert_eq!(call("b", "lines=50").0, 200, "b has the server's quota");
    assert_eq!(rows("b"), json!(50));
    let logged = server.query(
        "a",
        "SELECT count(*) AS n FROM system.processing_engine_logs \
         WHERE log_level = 'ERROR' AND log_text LIKE '%max-writes-per-invocation%'",
    );
    assert_eq!(logged, json!([{"n": 2}]));
}

/// Issue 17, point 2: a token that manages its database without reading it reads the
/// database's system tables, and none of its data, and nothing of another database.
#[test]
fn a_manage_only_token_reads_its_system_tables_and_no_data() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = server(dir.path());
    let manager = token(&server, "manager-a", "db:a:manage");
    server.post("/api/v3/write_lp?db=a", &[], b"secrets value=1i 1");
    let memo = trigger_on("a", "memo", "request:a/memo", "remembers.py");
    assert_eq!(send(&server, &manager, "POST", TRIGGER, &memo).0, 200);
    let query = |db: &str, sql: &str| {
        let body = json!({"db": db, "q": sql, "format": "json"});
        send(&server, &manager, "POST", "/api/v3/query_sql", &body)
    };

    let (status, body) = query(
        "a",
        "SELECT trigger_name FROM system.processing_engine_triggers",
    );
    assert_eq!(
        (status, body.as_str()),
        (200, r#"[{"trigger_name":"memo"}]"#)
    );
    let (status, body) = query("a", "SHOW TABLES");
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("secrets"), "{body}");
    for sql in [
        "SELECT * FROM secrets",
        "SELECT * FROM system.processing_engine_logs WHERE log_text IN (SELECT CAST(value AS VARCHAR) FROM secrets)",
    ] {
        let (status, body) = query("a", sql);
        assert_eq!(status, 403, "{sql}: {body}");
        assert!(body.contains("needs the read permission"), "{body}");
    }
    let (status, body) = query("b", "SELECT * FROM system.processing_engine_triggers");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("may not query database `b`"), "{body}");
}

/// Issue 17, point 7: the caches of one database's triggers and its shared cache share
/// its quota; another database's are not held back.
#[test]
fn a_databases_caches_share_its_quota() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = server(dir.path());
    set_quota(&server, "a", "--max-cache-bytes", "100000");
    let tenant_a = token(&server, "tenant-a", "db:a:read,write,manage");
    let tenant_b = token(&server, "tenant-b", "db:b:read,write,manage");
    for (db, token, name) in [
        ("a", &tenant_a, "a1"),
        ("a", &tenant_a, "a2"),
        ("b", &tenant_b, "b1"),
    ] {
        let trigger = trigger_on(db, name, &format!("request:{name}"), "hoard.py");
        assert_eq!(send(&server, token, "POST", TRIGGER, &trigger).0, 200);
    }
    let hoard = |token: &str, trigger: &str, query: &str| {
        let target = format!("/api/v3/engine/{trigger}?{query}");
        let (status, body) = send(&server, token, "GET", &target, &Value::Null);
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<Value>(&body).unwrap_or(Value::Null)
    };
    assert_eq!(hoard(&tenant_a, "a1", "bytes=60000")["outcome"], "stored");
    let refused = hoard(&tenant_a, "a2", "bytes=30000&shared=1");
    assert_eq!(refused["outcome"], "stored", "{refused}");
    let refused = hoard(&tenant_a, "a2", "bytes=20000");
    assert_eq!(refused["outcome"], "refused", "{refused}");
    let error = refused["error"].as_str().unwrap_or_default();
    assert!(error.contains("max-cache-bytes quota"), "{error}");
    // The server's default for b: far more.
    assert_eq!(hoard(&tenant_b, "b1", "bytes=200000")["outcome"], "stored");
    // What each database's caches hold, for billing.
    let held = |db: &str| {
        let rows = server.query(db, "SELECT cache_bytes FROM system.processing_engine_cache");
        rows[0]["cache_bytes"].as_u64().unwrap_or_default()
    };
    assert!((90_000..=100_000).contains(&held("a")), "{}", held("a"));
    assert!(held("b") >= 200_000, "{}", held("b"));
    // And for the operator, labelled by database.
    let metrics = server.get("/metrics", &[]).text();
    let gauge = |db: &str| {
        let prefix = format!("sluice_plugin_cache_bytes{{database=\"{db}\"}} ");
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(&prefix)?.parse::<u64>().ok())
    };
    assert_eq!(
        (gauge("a"), gauge("b")),
        (Some(held("a")), Some(held("b"))),
        "{metrics}"
    );
}

/// A call still running when its database is deleted and created again under its name
/// writes nothing into the new database, which may be another tenant's.
#[test]
fn a_call_outliving_its_database_never_writes_into_the_next_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = server(dir.path());
    let mut late = trigger_on("a", "late", "request:a/late", "late_writer.py");
    late["trigger_settings"]["run_async"] = json!(true);
    assert_eq!(server.create_trigger(&late).status, 200);
    let (address, token) = (server.address, server.token().to_string());
    let call = std::thread::spawn(move || {
        let bearer = format!("Bearer {token}");
        let response = crate::http::request(
            address,
            "GET",
            "/api/v3/engine/a/late?seconds=3",
            &[("authorization", &bearer)],
            b"",
        );
        (response.status, response.text())
    });
    std::thread::sleep(std::time::Duration::from_millis(1000));
    let deleted = server.send("DELETE", "/api/v3/configure/database?db=a", &[], b"");
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    server.create_database("a");
    let (status, body) = call.join().expect("the call");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("was deleted while the plugin ran"), "{body}");
    let tables = server.query("a", "SHOW TABLES");
    assert!(!tables.to_string().contains("late"), "{tables}");
}

/// Every instance starts from one image, which holds `random`'s state too: a tenant that
/// could predict another's numbers from its own could guess its tokens and nonces. Each
/// instance draws its own seed, whichever tenant's it is and however it was made (a spare
/// or a fresh one).
#[test]
fn instances_of_different_tenants_draw_different_random_numbers() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = server(dir.path());
    let mut drawn = Vec::new();
    for db in ["a", "b"] {
        let body = trigger_on(db, "dice", &format!("request:{db}/dice"), "dice.py");
        let created = server.create_trigger(&body);
        assert_eq!(created.status, 200, "{}", created.text());
        for _ in 0..2 {
            let called = server.get(&format!("/api/v3/engine/{db}/dice"), &[]);
            assert_eq!(called.status, 200, "{}", called.text());
            drawn.push(called.text());
        }
    }
    let distinct: std::collections::HashSet<_> = drawn.iter().collect();
    assert_eq!(
        distinct.len(),
        drawn.len(),
        "numbers drawn twice: {drawn:?}"
    );
}
