//! Processing-engine triggers on the real server: create, enable, disable and delete over
//! HTTP and from the command line, kept across a restart and shown in the system tables.
//! (Running the plugins they name is the dispatcher's part.)

use crate::server::{TestServer, trigger_body};
use crate::support::{root, sluice, text};
use serde_json::{Value, json};

fn plugin_dir() -> String {
    root()
        .join("examples/python")
        .to_string_lossy()
        .into_owned()
}

fn triggers(server: &TestServer) -> Value {
    server.query("db", "SELECT trigger_name, plugin_filename, trigger_specification, disabled, error_behavior FROM system.processing_engine_triggers ORDER BY trigger_name")
}

#[test]
fn triggers_over_http_with_upstream_answers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start_with(dir.path(), &["--plugin-dir", &plugin_dir()]);
    let create = |body: &Value| server.create_trigger(body);
    let create_body_of = |name: &str, spec: &str, plugin: &str| {
        trigger_body(name, spec, plugin, json!({"threshold": "10"}), "log")
    };
    assert_eq!(
        create(&create_body_of("t", "table:cpu", "wal_plugin.py")).status,
        404,
        "no database yet"
    );
    server.create_database("db");

    let created = create(&create_body_of("wal", "table:cpu", "wal_plugin.py"));
    assert_eq!((created.status, created.text()), (200, String::new()));
    assert_eq!(
        create(&create_body_of("wal", "all_tables", "wal_plugin.py")).status,
        409,
        "names are unique"
    );
    assert_eq!(
        create(&create_body_of(
            "hook",
            "request:alert",
            "request_plugin.py"
        ))
        .status,
        200
    );
    let same_path = create(&create_body_of(
        "hook2",
        "request:alert",
        "request_plugin.py",
    ));
    assert_eq!(same_path.status, 409);
    assert_eq!(
        same_path.json()["error"],
        "request path 'alert' is already served by trigger 'hook' of database 'db'"
    );

    let bad_spec = create(&create_body_of("x", "every:abc", "wal_plugin.py"));
    assert_eq!(
        (bad_spec.status, bad_spec.json()["error"].clone()),
        (
            400,
            json!("failed to parse trigger from every:abc: couldn't parse to duration")
        )
    );
    let too_fast = create(&create_body_of("x", "every:0s", "wal_plugin.py"));
    assert_eq!(too_fast.status, 400);
    let missing = create(&create_body_of("x", "all_tables", "nope.py"));
    assert_eq!(
        (missing.status, missing.json()["error"].clone()),
        (404, json!("Plugin error: Plugin not found: nope.py"))
    );
    let traversal = create(&create_body_of("x", "all_tables", "../secrets.py"));
    assert_eq!(traversal.status, 400);
    assert!(
        traversal.json()["error"]
            .as_str()
            .unwrap_or_default()
            .contains("Path traversal detected"),
        "{}",
        traversal.text()
    );
    let mut incomplete = create_body_of("x", "all_tables", "wal_plugin.py");
    incomplete
        .as_object_mut()
        .expect("object")
        .remove("disabled");
    assert_eq!(
        create(&incomplete).status,
        400,
        "every field but the arguments is required"
    );

    assert_eq!(
        triggers(&server),
        json!([
            {"trigger_name": "hook", "plugin_filename": "request_plugin.py", "trigger_specification": "{\"request_path\":{\"path\":\"alert\"}}", "disabled": false, "error_behavior": "log"},
            {"trigger_name": "wal", "plugin_filename": "wal_plugin.py", "trigger_specification": "{\"single_table_wal_write\":{\"table_name\":\"cpu\"}}", "disabled": false, "error_behavior": "log"},
        ])
    );
    assert_eq!(
        server.query(
            "db",
            "SELECT * FROM system.processing_engine_trigger_arguments WHERE trigger_name = 'wal'"
        ),
        json!([{"trigger_name": "wal", "argument_key": "threshold", "argument_value": "10"}])
    );

    // Enabling or disabling twice is no error; deleting an enabled trigger needs force.
    for _ in 0..2 {
        assert_eq!(
            server
                .post(
                    "/api/v3/configure/processing_engine_trigger/disable?db=db&trigger_name=wal",
                    &[],
                    b""
                )
                .status,
            200
        );
    }
    assert_eq!(triggers(&server)[1]["disabled"], true);
    assert_eq!(
        server
            .post(
                "/api/v3/configure/processing_engine_trigger/enable?db=db&trigger_name=nope",
                &[],
                b""
            )
            .status,
        404
    );
    assert_eq!(
        server
            .post(
                "/api/v3/configure/processing_engine_trigger/enable?db=db",
                &[],
                b""
            )
            .status,
        400
    );
    let running = server.send(
        "DELETE",
        "/api/v3/configure/processing_engine_trigger?db=db&trigger_name=hook",
        &[],
        b"",
    );
    assert_eq!(
        (running.status, running.json()["error"].clone()),
        (
            409,
            json!("Cannot delete running plugin hook. Disable it first or use --force.")
        )
    );
    let forced = server.send(
        "DELETE",
        "/api/v3/configure/processing_engine_trigger?db=db&trigger_name=hook&force=true",
        &[],
        b"",
    );
    assert_eq!(forced.status, 200);
    let by_body = json!({"db": "db", "trigger_name": "wal"}).to_string();
    let deleted = server.send(
        "DELETE",
        "/api/v3/configure/processing_engine_trigger",
        &[("content-type", "application/json")],
        by_body.as_bytes(),
    );
    assert_eq!(
        deleted.status, 200,
        "a disabled trigger is deleted without force"
    );
    assert_eq!(triggers(&server), json!([]));
}

#[test]
fn triggers_from_the_command_line_survive_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let flags = ["--plugin-dir", &plugin_dir()];
    let server = TestServer::start_with(dir.path(), &flags);
    let run = |server: &TestServer, args: &[&str]| {
        let output = sluice()
            .args(args)
            .args(["--host", &server.url(), "--token", server.token()])
            .output()
            .expect("sluice runs");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            text(&output),
        )
    };
    assert!(run(&server, &["create", "database", "db"]).0);
    let (ok, stdout, all) = run(
        &server,
        &[
            "create",
            "trigger",
            "-d",
            "db",
            "every",
            "--trigger-spec",
            "every:90m",
            "--path",
            "schedule_plugin.py",
            "--trigger-arguments",
            "a=1,b=x=y",
            "--error-behavior",
            "retry",
            "--disabled",
        ],
    );
    assert!(ok, "{all}");
    assert_eq!(stdout, "Trigger every created successfully\n");
    let (ok, _, all) = run(
        &server,
        &[
            "create",
            "trigger",
            "-d",
            "db",
            "bad",
            "--trigger-spec",
            "cron:* * * * *",
            "--path",
            "schedule_plugin.py",
        ],
    );
    assert!(
        !ok && all.contains("failed to parse trigger from cron:* * * * *"),
        "{all}"
    );

    drop(server);
    let server = TestServer::start_with(dir.path(), &flags);
    let rows = server.query("db", "SELECT trigger_specification, disabled, error_behavior FROM system.processing_engine_triggers");
    assert_eq!(
        rows,
        json!([{"trigger_specification": "{\"every\":{\"duration\":{\"secs\":5400,\"nanos\":0}}}", "disabled": true, "error_behavior": "retry"}])
    );
    let arguments = server.query("db", "SELECT argument_key, argument_value FROM system.processing_engine_trigger_arguments ORDER BY argument_key");
    assert_eq!(
        arguments,
        json!([{"argument_key": "a", "argument_value": "1"}, {"argument_key": "b", "argument_value": "x=y"}])
    );

    assert_eq!(
        run(&server, &["enable", "trigger", "-d", "db", "every"]).1,
        "Trigger every enabled successfully\n"
    );
    let (ok, _, all) = run(&server, &["delete", "trigger", "-d", "db", "every"]);
    assert!(
        !ok && all.contains("409 Conflict: Cannot delete running plugin every"),
        "{all}"
    );
    assert_eq!(
        run(&server, &["disable", "trigger", "-d", "db", "every"]).1,
        "Trigger every disabled successfully\n"
    );
    assert_eq!(
        run(&server, &["delete", "trigger", "-d", "db", "every"]).1,
        "Trigger every deleted successfully\n"
    );
}

#[test]
fn restricted_servers_refuse_other_kinds_of_trigger() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start_with(
        dir.path(),
        &[
            "--plugin-dir",
            &plugin_dir(),
            "--restrict-plugin-triggers-to",
            "request,schedule",
        ],
    );
    server.create_database("db");
    let refused = server.create_trigger(&trigger_body(
        "wal",
        "all_tables",
        "wal_plugin.py",
        Value::Null,
        "log",
    ));
    assert_eq!(refused.status, 400);
    assert_eq!(
        refused.json(),
        json!({"error": "invalid request: server is configured to reject WalRows plugin triggers"})
    );
    server.add_trigger(
        "hook",
        "request:hook",
        "request_plugin.py",
        Value::Null,
        "log",
    );
    server.add_trigger("tick", "every:1h", "schedule_plugin.py", Value::Null, "log");
}
