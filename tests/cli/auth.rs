//! Authentication against the real server: the admin token, database tokens, where
//! clients put tokens, and tokens surviving a restart.

use crate::http::request;
use crate::server::TestServer;
use crate::support::{sluice, text};
use base64::Engine as _;
use serde_json::json;

/// Runs `sluice ARGS --host URL [--token TOKEN]` and returns its stdout, asserting success.
fn cli(server: &TestServer, token: Option<&str>, args: &[&str]) -> Result<String, String> {
    let mut command = sluice();
    command
        .args(args)
        .args(["--host", &server.url()])
        .env_remove("INFLUXDB3_AUTH_TOKEN");
    if let Some(token) = token {
        command.args(["--token", token]);
    }
    let output = command.output().expect("sluice runs");
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(text(&output))
    }
}

/// The token printed by `sluice create token`.
fn printed_token(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("Token: "))
        .expect("a token line")
        .to_string()
}

#[test]
fn requests_need_a_token_that_allows_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start_without_token(dir.path(), &[]);
    let address = server.address;
    let write = |headers: &[(&str, &str)]| {
        request(
            address,
            "POST",
            "/api/v3/write_lp?db=mydb",
            headers,
            b"cpu,host=a usage=1i 1",
        )
    };

    // No admin token yet: only health checks and creating the admin token are open.
    let refused = write(&[]);
    assert_eq!(refused.status, 401);
    assert_eq!(
        refused.json(),
        json!({"error": "the request was not authenticated"})
    );
    assert_eq!(refused.header("www-authenticate"), Some("Bearer"));
    assert_eq!(request(address, "GET", "/health", &[], b"").status, 200);
    assert_eq!(request(address, "GET", "/ping", &[], b"").status, 200);
    assert_eq!(
        request(address, "GET", "/api/v3/configure/token", &[], b"").status,
        401
    );
    let created = request(address, "POST", "/api/v3/configure/token/admin", &[], b"");
    assert_eq!(created.status, 201, "{}", created.text());
    let admin = created.json()["token"]
        .as_str()
        .expect("a token")
        .to_string();
    let again = request(address, "POST", "/api/v3/configure/token/admin", &[], b"");
    assert_eq!(
        (again.status, again.json()),
        (409, json!({"error": "token name already exists, _admin"}))
    );

    // Every way clients send a token.
    let bearer = format!("Bearer {admin}");
    assert_eq!(write(&[("authorization", &bearer)]).status, 204);
    assert_eq!(
        write(&[("authorization", &format!("Token {admin}"))]).status,
        204
    );
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("user:{admin}"))
    );
    assert_eq!(write(&[("authorization", &basic)]).status, 204);
    let v1 = request(
        address,
        "POST",
        &format!("/write?db=mydb&p={admin}"),
        &[],
        b"cpu,host=b usage=2i 2",
    );
    assert_eq!(v1.status, 204, "{}", v1.text());
    assert_eq!(
        write(&[("authorization", "Bearer apiv3_not_a_token")]).status,
        401
    );
    assert_eq!(
        write(&[("authorization", "Bearer ünïcode")]).status,
        401,
        "a header that is not ASCII is no token"
    );

    // Database tokens allow exactly what they grant.
    let token_request = |body: serde_json::Value| {
        let response = request(
            address,
            "POST",
            "/api/v3/configure/token",
            &[
                ("authorization", &bearer),
                ("content-type", "application/json"),
            ],
            body.to_string().as_bytes(),
        );
        assert_eq!(response.status, 201, "{}", response.text());
        format!(
            "Bearer {}",
            response.json()["token"].as_str().expect("a token")
        )
    };
    let reader = token_request(
        json!({"token_name": "reader", "permissions": [{"resource_type": "db", "resource_names": ["mydb"], "actions": ["read"]}]}),
    );
    let writer = token_request(
        json!({"token_name": "writer", "permissions": [{"resource_type": "db", "resource_names": ["*"], "actions": ["write"]}]}),
    );
    let query = |auth: &str, db: &str| {
        let body = json!({"db": db, "q": "SELECT count(*) AS n FROM cpu"}).to_string();
        request(
            address,
            "POST",
            "/api/v3/query_sql",
            &[
                ("authorization", auth),
                ("content-type", "application/json"),
            ],
            body.as_bytes(),
        )
    };
    // Host `a`'s point, written three times with three kinds of credentials, is one.
    assert_eq!(query(&reader, "mydb").json(), json!([{"n": 2}]));
    let other = query(&reader, "other");
    assert_eq!(
        (other.status, other.json()),
        (
            403,
            json!({"error": "the token may not query database `other`: that needs the read permission on it"})
        )
    );
    assert_eq!(write(&[("authorization", &reader)]).status, 403);
    assert_eq!(write(&[("authorization", &writer)]).status, 204);
    assert_eq!(query(&writer, "mydb").status, 403);
    let v2 = request(
        address,
        "POST",
        "/api/v2/write?bucket=mydb",
        &[("authorization", &reader)],
        b"cpu usage=3i 3",
    );
    assert_eq!(v2.status, 403);
    assert_eq!(v2.json()["code"], "forbidden");
    let admin_only = request(
        address,
        "GET",
        "/api/v3/configure/database",
        &[("authorization", &writer)],
        b"",
    );
    assert_eq!(
        (admin_only.status, admin_only.json()),
        (403, json!({"error": "this request needs the admin token"}))
    );

    let bad = request(
        address,
        "POST",
        "/api/v3/configure/token",
        &[("authorization", &bearer), ("content-type", "application/json")],
        br#"{"token_name": "x", "permissions": [{"resource_type": "db", "resource_names": ["mydb"], "actions": ["delete"]}]}"#,
    );
    assert_eq!(
        (bad.status, bad.json()),
        (
            400,
            json!({"error": "unknown action `delete`: expected read, write, manage or invoke"})
        )
    );
}

#[test]
fn tokens_from_the_command_line_survive_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start_without_token(dir.path(), &[]);
    let admin = printed_token(
        &cli(&server, None, &["create", "token", "--admin"]).expect("admin token created"),
    );
    let twice = cli(&server, None, &["create", "token", "--admin"]).expect_err("only once");
    assert!(
        twice.contains("409 Conflict: token name already exists, _admin"),
        "{twice}"
    );
    cli(
        &server,
        Some(&admin),
        &["write", "-d", "metrics", "cpu usage=1i 1"],
    )
    .expect("admin writes");

    let reader = printed_token(
        &cli(
            &server,
            Some(&admin),
            &[
                "create",
                "token",
                "--name",
                "dash",
                "--permission",
                "db:metrics:read",
                "--expiry",
                "30d",
            ],
        )
        .expect("created"),
    );
    let count = cli(
        &server,
        Some(&reader),
        &[
            "query",
            "-d",
            "metrics",
            "--format",
            "csv",
            "SELECT count(*) AS n FROM cpu",
        ],
    );
    assert_eq!(count.expect("the reader queries"), "n\n1\n");
    let denied = cli(
        &server,
        Some(&reader),
        &["write", "-d", "metrics", "cpu usage=2i 2"],
    )
    .expect_err("read only");
    assert!(
        denied.contains("403 Forbidden: the token may not write to database `metrics`"),
        "{denied}"
    );
    let bad = cli(
        &server,
        Some(&admin),
        &[
            "create",
            "token",
            "--name",
            "x",
            "--permission",
            "metrics:read",
        ],
    )
    .expect_err("bad flag");
    assert!(bad.contains("expected db:NAMES:ACTIONS"), "{bad}");

    let listed = cli(&server, Some(&admin), &["show", "tokens"]).expect("listed");
    assert!(
        listed.contains("| _admin |") && listed.contains("db:metrics:read"),
        "{listed}"
    );
    assert!(!listed.contains(&reader[6..]), "secrets are never listed");

    // Restart: tokens are in the catalog, stored hashed.
    drop(server);
    let catalog = std::fs::read(dir.path().join("data/catalog")).expect("the catalog file");
    assert!(
        !String::from_utf8_lossy(&catalog).contains(&admin[6..]),
        "the catalog holds hashes only"
    );
    let server = TestServer::start_without_token(dir.path(), &[]);
    cli(
        &server,
        Some(&reader),
        &["query", "-d", "metrics", "SELECT 1"],
    )
    .expect("the reader still works");
    cli(
        &server,
        Some(&admin),
        &["delete", "token", "--token-name", "dash"],
    )
    .expect("deleted");
    let revoked = cli(
        &server,
        Some(&reader),
        &["query", "-d", "metrics", "SELECT 1"],
    )
    .expect_err("revoked");
    assert!(
        revoked.contains("401 Unauthorized: the request was not authenticated"),
        "{revoked}"
    );

    let new_admin = printed_token(
        &cli(
            &server,
            Some(&admin),
            &["create", "token", "--admin", "--regenerate"],
        )
        .expect("regenerated"),
    );
    assert!(
        cli(&server, Some(&admin), &["show", "databases"]).is_err(),
        "the old admin token stops working"
    );
    assert!(
        cli(&server, Some(&new_admin), &["show", "databases"])
            .expect("listed")
            .contains("metrics")
    );
}

/// Issue 18, point 6: a Prometheus scraper reads `/metrics` with a token that may do
/// nothing else.
#[test]
fn a_metrics_token_reads_the_metrics_and_nothing_else() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start(dir.path());
    server.create_database("db");
    let scraper = server.create_token("scraper", &["system:metrics:read"]);
    let reader = server.create_token("reader", &["db:db:read"]);
    let get = |token: &str, target: &str| {
        let bearer = format!("Bearer {token}");
        server.get(target, &[("authorization", &bearer)])
    };
    let scraped = get(&scraper, "/metrics");
    assert_eq!(scraped.status, 200, "{}", scraped.text());
    assert!(scraped.text().contains("# EOF"), "{}", scraped.text());
    let refused = get(&reader, "/metrics");
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert!(
        refused.text().contains("system:metrics:read"),
        "{}",
        refused.text()
    );
    for target in [
        "/api/v3/query_sql?db=db&q=SELECT%201",
        "/api/v3/configure/database",
    ] {
        assert_eq!(get(&scraper, target).status, 403, "{target}");
    }
    let listed = server.cli(&["show", "tokens"]);
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("system:metrics:read"),
        "{}",
        crate::support::text(&listed)
    );
    let bad = server.cli(&[
        "create",
        "token",
        "--name",
        "x",
        "--permission",
        "system:tokens:read",
    ]);
    assert!(!bad.status.success());
}

#[test]
fn without_auth_every_request_is_served() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start_without_token(dir.path(), &["--without-auth"]);
    let address = server.address;
    assert_eq!(
        request(address, "POST", "/api/v3/write_lp?db=db", &[], b"m f=1i 1").status,
        204
    );
    assert_eq!(
        request(
            address,
            "GET",
            "/api/v3/configure/database?format=json",
            &[],
            b""
        )
        .json(),
        json!([{"iox::database": "db"}])
    );
}
