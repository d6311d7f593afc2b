//! The client commands (`write`, `query`, `create|delete|show database`) against the
//! real server.

use crate::server::TestServer;
use crate::support::{sluice, text};
use std::io::Write;
use std::process::{Command, Output, Stdio};

/// Runs `sluice ARGS --host URL` with `stdin` on standard input.
fn run(server: &TestServer, args: &[&str], stdin: &str) -> Output {
    let mut child = sluice()
        .args(args)
        .args(["--host", &server.url()])
        .env("INFLUXDB3_AUTH_TOKEN", server.token())
        .env_remove("INFLUXDB3_DATABASE_NAME")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sluice runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("writes stdin");
    child.wait_with_output().expect("finishes")
}

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "{}", text(output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn write_and_query_from_the_command_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start(dir.path());
    assert_eq!(
        stdout(&run(
            &server,
            &[
                "write",
                "-d",
                "db",
                "--precision",
                "s",
                "cpu,host=a usage=1i 1"
            ],
            ""
        )),
        "success\n"
    );
    assert_eq!(
        stdout(&run(
            &server,
            &["write", "-d", "db", "--precision", "s"],
            "cpu,host=b usage=2i 2\n"
        )),
        "success\n"
    );
    let file = dir.path().join("lines.lp");
    std::fs::write(&file, "cpu,host=c usage=3i 3\n").expect("writes");
    let file_arg = file.to_string_lossy().into_owned();
    assert_eq!(
        stdout(&run(
            &server,
            &["write", "-d", "db", "--precision", "s", "--file", &file_arg],
            ""
        )),
        "success\n"
    );

    let sql = "SELECT host, usage FROM cpu ORDER BY host";
    let pretty = stdout(&run(&server, &["query", "-d", "db", sql], ""));
    assert!(pretty.contains("| c    | 3     |"), "{pretty}");
    assert_eq!(
        stdout(&run(
            &server,
            &["query", "-d", "db", "--format", "csv", sql],
            ""
        )),
        "host,usage\na,1\nb,2\nc,3\n"
    );
    let json = stdout(&run(
        &server,
        &[
            "query",
            "-d",
            "db",
            "--format",
            "json",
            "SELECT count(*) AS n FROM cpu",
        ],
        "",
    ));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&json).expect("JSON"),
        serde_json::json!([{"n": 3}])
    );
    let out = dir.path().join("rows.parquet");
    let out_arg = out.to_string_lossy().into_owned();
    stdout(&run(
        &server,
        &[
            "query", "-d", "db", "--format", "parquet", "-o", &out_arg, sql,
        ],
        "",
    ));
    assert!(std::fs::read(&out).expect("written").starts_with(b"PAR1"));

    let bad_line = run(
        &server,
        &["write", "-d", "db", "--no-partial", "cpu usage=oops"],
        "",
    );
    assert!(!bad_line.status.success());
    assert!(
        String::from_utf8_lossy(&bad_line.stderr)
            .contains("400 Bad Request: line protocol parsing error"),
        "{}",
        text(&bad_line)
    );
    let unknown = run(&server, &["query", "-d", "nope", "SELECT 1"], "");
    assert!(
        String::from_utf8_lossy(&unknown.stderr)
            .contains("404 Not Found: database not found: nope"),
        "{}",
        text(&unknown)
    );
    let no_parquet_file = run(
        &server,
        &["query", "-d", "db", "--format", "parquet", sql],
        "",
    );
    assert!(
        String::from_utf8_lossy(&no_parquet_file.stderr).contains("give --output FILE"),
        "{}",
        text(&no_parquet_file)
    );
}

#[test]
fn databases_from_the_command_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start(dir.path());
    assert_eq!(
        stdout(&run(&server, &["create", "database", "alpha"], "")),
        "Database \"alpha\" created successfully\n"
    );
    let exists = run(&server, &["create", "database", "alpha"], "");
    assert!(
        String::from_utf8_lossy(&exists.stderr).contains("409 Conflict"),
        "{}",
        text(&exists)
    );
    let listed = stdout(&run(&server, &["show", "databases"], ""));
    assert!(
        listed.contains("| iox::database |") && listed.contains("| alpha         |"),
        "{listed}"
    );

    let declined = run(&server, &["delete", "database", "alpha"], "no\n");
    assert!(!declined.status.success(), "{}", text(&declined));
    assert!(
        stdout(&run(
            &server,
            &["show", "databases", "--format", "json"],
            ""
        ))
        .contains("alpha")
    );
    assert!(
        stdout(&run(&server, &["delete", "database", "alpha"], "yes\n"))
            .contains("Database \"alpha\" deleted successfully")
    );
    assert_eq!(
        stdout(&run(
            &server,
            &["show", "databases", "--format", "json"],
            ""
        )),
        "[]\n"
    );

    let unreachable = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["show", "databases", "--host", "http://127.0.0.1:9"])
        .output()
        .expect("runs");
    assert!(
        String::from_utf8_lossy(&unreachable.stderr)
            .contains("cannot reach the server at http://127.0.0.1:9")
    );
}
