//! Plugins' outbound HTTP (issue 20): sent by the host, only to the destinations a
//! trigger is granted within the server's `--egress-allow`, HTTPS with the certificate
//! verified, each request bounded in time and size; plugin code uses `urllib.request`
//! unchanged.

use crate::server::{TestServer, plugin_dir_with, trigger_body};
use crate::support::root;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A server with database `db`, the plugins of `tests/plugins/egress` and the alerting
/// example's (`cpu_alert.py`, `notify_plugin.py`), its pip finding packages in the
/// test wheels only, started with `flags`.
fn server(dir: &Path, flags: &[&str]) -> TestServer {
    let read = |path: std::path::PathBuf| std::fs::read_to_string(path).expect("test plugin");
    let mut files: Vec<(String, String)> = std::fs::read_dir(root().join("tests/plugins/egress"))
        .expect("the test plugins")
        .map(|entry| entry.expect("a test plugin").path())
        .map(|path| {
            let name = path
                .file_name()
                .expect("a file")
                .to_string_lossy()
                .into_owned();
            (name, read(path))
        })
        .collect();
    for example in ["cpu_alert.py", "notify_plugin.py"] {
        files.push((
            example.into(),
            read(root().join("examples/python").join(example)),
        ));
    }
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, c)| (n.as_str(), c.as_str()))
        .collect();
    let plugins = plugin_dir_with(dir, &files);
    let plugins = plugins.to_str().expect("utf-8 path").to_string();
    let server = TestServer::start_with_env(
        dir,
        &[&["--plugin-dir", plugins.as_str()][..], flags].concat(),
        &[
            ("PIP_FIND_LINKS", sluice_test_wheels::WHEELS_DIR),
            ("PIP_NO_INDEX", "1"),
        ],
    );
    server.create_database("db");
    server
}

/// Installs `package` on `server` from the test wheels, asserting success.
fn install(server: &TestServer, package: &str) {
    let installed = server.cli(&["install", "package", package]);
    assert!(
        installed.status.success(),
        "{}",
        crate::support::text(&installed)
    );
}

/// A port free a moment ago, for a server that must know its own port before it starts.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
    listener.local_addr().expect("bound").port()
}

/// Creates request trigger `name` of `fetch.py` granted `hosts`, with `limits`.
fn add_fetch(server: &TestServer, name: &str, hosts: &[&str], limits: Value) {
    let mut body = trigger_body(
        name,
        &format!("request:{name}"),
        "fetch.py",
        Value::Null,
        "log",
    );
    body["allowed_hosts"] = json!(hosts);
    if !limits.is_null() {
        body["limits"] = limits;
    }
    let response = server.create_trigger(&body);
    assert_eq!(response.status, 200, "{}", response.text());
}

/// What `fetch.py` of trigger `name` got for `url`: `{status, body}` or `{error}`.
fn fetch(server: &TestServer, name: &str, url: &str) -> Value {
    fetch_times(server, name, url, 1)
}

/// What `fetch.py` of trigger `name` got the last of `times` times it fetched `url`, in
/// one call.
fn fetch_times(server: &TestServer, name: &str, url: &str, times: u32) -> Value {
    let target = format!("/api/v3/engine/{name}?url={}&times={times}", encode(url));
    let response = server.get(&target, &[]);
    assert_eq!(response.status, 200, "{}", response.text());
    response.json()
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A destination for plugins' requests on a loopback port, plain or TLS with the test
/// certificate of `tests/fixtures/tls`: `/ok` answers `ok`, `/big` 64 KiB, `/slow` the
/// same after 5 s, `/redirect?to=URL` a 302 to URL. It remembers the paths asked for.
/// Its threads end with the test process.
struct Destination {
    port: u16,
    asked: Arc<Mutex<Vec<String>>>,
}

impl Destination {
    fn plain() -> Self {
        Self::start(None)
    }

    fn tls() -> Self {
        let fixtures = root().join("tests/fixtures/tls");
        let read = |name: &str| std::fs::read(fixtures.join(name)).expect("test certificate");
        let certificate = rustls::pki_types::CertificateDer::from(read("server.der"));
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(read("server-key.der").into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![certificate], key)
            .expect("the test certificate");
        Self::start(Some(Arc::new(config)))
    }

    fn start(tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
        let port = listener.local_addr().expect("bound").port();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let remembered = Arc::clone(&asked);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (tls, asked) = (tls.clone(), Arc::clone(&remembered));
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                    match tls {
                        None => answer(stream, &asked),
                        Some(config) => {
                            let Ok(connection) = rustls::ServerConnection::new(config) else {
                                return;
                            };
                            answer(rustls::StreamOwned::new(connection, stream), &asked);
                        }
                    }
                });
            }
        });
        Self { port, asked }
    }

    fn asked(&self) -> Vec<String> {
        self.asked.lock().expect("not poisoned").clone()
    }
}

/// Reads one request from `stream` and answers it, closing the connection.
fn answer<S: Read + Write>(stream: S, asked: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let target = line
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let mut length = 0;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    asked.lock().expect("not poisoned").push(target.clone());
    let (status, extra, body) = match target.split_once('?') {
        Some(("/redirect", query)) => (
            "302 Found",
            format!(
                "Location: {}\r\n",
                query.strip_prefix("to=").unwrap_or_default()
            ),
            Vec::new(),
        ),
        _ => match target.as_str() {
            "/ok" => ("200 OK", String::new(), b"ok".to_vec()),
            "/big" => ("200 OK", String::new(), vec![b'x'; 64 << 10]),
            "/slow" => {
                std::thread::sleep(Duration::from_secs(5));
                ("200 OK", String::new(), b"late".to_vec())
            }
            _ => ("404 Not Found", String::new(), Vec::new()),
        },
    };
    let stream = reader.get_mut();
    let head = format!(
        "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
    let _ = stream.flush();
}

/// The issue's case: WAL plugins post alerts to a request trigger on the same server
/// through its own API, granted, with urllib.request (the example) and with requests;
/// the same plugin without the grant gets an error naming the destination and the
/// grant, and sends nothing.
#[test]
fn a_granted_wal_plugin_alerts_through_the_servers_own_api_and_an_ungranted_one_cannot() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let own = format!("localhost:{port}");
    let server = server(
        dir.path(),
        &[
            "--http-bind",
            &format!("127.0.0.1:{port}"),
            "--egress-allow",
            &own,
        ],
    );
    install(&server, "requests");
    let mut notify = trigger_body(
        "notify",
        "request:notify",
        "notify_plugin.py",
        Value::Null,
        "log",
    );
    notify["public"] = json!(true);
    assert_eq!(server.create_trigger(&notify).status, 200);
    let url = format!("http://{own}/api/v3/engine/notify");
    for (name, table, plugin, hosts) in [
        ("alerter", "cpu", "cpu_alert.py", vec![own.clone()]),
        (
            "with_requests",
            "mem",
            "alert_requests.py",
            vec![own.clone()],
        ),
        ("ungranted", "gpu", "cpu_alert.py", vec![]),
    ] {
        let mut body = trigger_body(
            name,
            &format!("table:{table}"),
            plugin,
            json!({"url": url}),
            "log",
        );
        body["allowed_hosts"] = json!(hosts);
        let response = server.create_trigger(&body);
        assert_eq!(response.status, 200, "{}", response.text());
    }
    let lines =
        b"cpu,host=a usage=95\nmem,host=b usage=97\ngpu,host=c usage=99\ncpu,host=d usage=5\n";
    let written = server.post("/api/v3/write_lp?db=db", &[], lines);
    assert_eq!(written.status, 204, "{}", written.text());

    server.eventually(
        "db",
        "SELECT host, usage FROM alerts ORDER BY host",
        |rows| *rows == json!([{"host": "a", "usage": 95.0}, {"host": "b", "usage": 97.0}]),
    );
    let refusal = server.eventually(
        "db",
        "SELECT log_text FROM system.processing_engine_logs WHERE trigger_name = 'ungranted' AND log_level = 'ERROR'",
        |rows| rows.as_array().is_some_and(|rows| !rows.is_empty()),
    );
    let refusal = refusal.to_string();
    assert!(
        refusal.contains(&format!(
            "http://{own} is not granted to trigger 'ungranted'"
        )) && refusal.contains("--allow-host"),
        "{refusal}"
    );
    // Nothing reached the notification endpoint from the ungranted trigger.
    let alerts = server.query("db", "SELECT host FROM alerts ORDER BY host");
    assert_eq!(alerts, json!([{"host": "a"}, {"host": "b"}]));
    // A call's record is kept once it has returned, which may be after its alert
    // arrived.
    let expected = json!([
        {"trigger_name": "alerter", "http_requests": 1},
        {"trigger_name": "ungranted", "http_requests": 0},
        {"trigger_name": "with_requests", "http_requests": 1}
    ]);
    server.eventually(
        "db",
        "SELECT trigger_name, http_requests FROM system.processing_engine_invocations \
         WHERE trigger_name IN ('alerter', 'ungranted', 'with_requests') ORDER BY trigger_name",
        |calls| *calls == expected,
    );
    let metrics = server.get("/metrics", &[]).text();
    assert!(
        metrics.contains(r#"sluice_plugin_http_requests_total{database="db",trigger="alerter"} 1"#),
        "{metrics}"
    );
    let triggers = server.query(
        "db",
        "SELECT trigger_name, allowed_hosts FROM system.processing_engine_triggers \
         WHERE trigger_name = 'alerter'",
    );
    assert_eq!(
        triggers,
        json!([{"trigger_name": "alerter", "allowed_hosts": own}])
    );
}

/// A grant names a host, not whatever it resolves to: the address of a granted name, a
/// port or a scheme it does not name, and a redirect to another destination are refused
/// before anything is sent there.
#[test]
fn only_the_granted_destination_is_reached() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (granted, other) = (Destination::plain(), Destination::plain());
    let allow = format!("http://localhost:{},localhost:{}", granted.port, other.port);
    let server = server(dir.path(), &["--egress-allow", &allow]);
    add_fetch(
        &server,
        "fetch",
        &[&format!("http://localhost:{}", granted.port)],
        Value::Null,
    );

    let ok = fetch(
        &server,
        "fetch",
        &format!("http://localhost:{}/ok", granted.port),
    );
    assert_eq!(ok, json!({"status": 200, "body": "ok"}));
    for url in [
        format!("http://127.0.0.1:{}/ok", granted.port),
        format!("http://localhost:{}/ok", other.port),
        format!("https://localhost:{}/ok", granted.port),
        format!(
            "http://localhost:{}/redirect?to=http://localhost:{}/ok",
            granted.port, other.port
        ),
    ] {
        let refused = fetch(&server, "fetch", &url)["error"].to_string();
        assert!(
            refused.contains("is not granted to trigger 'fetch'"),
            "{url}: {refused}"
        );
    }
    // A request line whose target would name another host or port in a URL.
    let mut raw = trigger_body("raw", "request:raw", "raw_target.py", Value::Null, "log");
    raw["allowed_hosts"] = json!([format!("http://localhost:{}", granted.port)]);
    assert_eq!(server.create_trigger(&raw).status, 200);
    for target in [
        format!("@127.0.0.1:{}/ok", other.port),
        format!("@localhost:{}/ok", other.port),
        "0/ok".to_string(),
    ] {
        let query = format!(
            "/api/v3/engine/raw?host=localhost&port={}&target={}",
            granted.port,
            encode(&target)
        );
        let answer = server.get(&query, &[]).json();
        let refused = answer["error"].to_string();
        assert!(refused.contains("request target"), "{target}: {answer}");
    }
    // httpx, which has sockets of its own, goes through the host too, and follows a
    // redirect only to where the trigger is granted.
    install(&server, "httpx");
    let mut httpx = trigger_body(
        "httpx",
        "request:httpx",
        "fetch_httpx.py",
        Value::Null,
        "log",
    );
    httpx["allowed_hosts"] = json!([format!("http://localhost:{}", granted.port)]);
    assert_eq!(server.create_trigger(&httpx).status, 200);
    let base = format!("http://localhost:{}", granted.port);
    let ok = fetch(&server, "httpx", &format!("{base}/ok"));
    assert_eq!(ok, json!({"status": 200, "body": "ok"}));
    let with_asyncio = format!(
        "/api/v3/engine/httpx?async=1&url={}",
        encode(&format!("{base}/ok"))
    );
    let ok = server.get(&with_asyncio, &[]).json();
    assert_eq!(ok, json!({"status": 200, "body": "ok"}), "AsyncClient");
    let away = format!("{base}/redirect?to=http://localhost:{}/ok", other.port);
    let refused = fetch(&server, "httpx", &away)["error"].to_string();
    assert!(
        refused.contains("ConnectError") && refused.contains("is not granted to trigger 'httpx'"),
        "{refused}"
    );

    assert!(other.asked().is_empty(), "{:?}", other.asked());
    let redirect = format!("/redirect?to=http://localhost:{}/ok", other.port);
    assert_eq!(
        granted.asked(),
        [
            "/ok".to_string(),
            redirect.clone(),
            "/ok".to_string(),
            "/ok".to_string(),
            redirect
        ]
    );
}

/// Grants are checked at create: malformed ones and ones outside the server's list are
/// refused with 400, whoever asks.
#[test]
fn a_grant_outside_the_servers_list_or_malformed_is_refused_at_create() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = server(
        dir.path(),
        &["--egress-allow", "*.example.com:443,localhost:8181"],
    );
    for (hosts, wanted) in [
        (json!(["hooks.slack.com"]), "a port is required"),
        (json!(["*:443"]), "wildcard"),
        (
            json!(["hooks.slack.com:443"]),
            "not within the server's egress allow-list",
        ),
        (
            json!(["*.com:443"]),
            "not within the server's egress allow-list",
        ),
        (
            json!(["localhost:8182"]),
            "not within the server's egress allow-list",
        ),
    ] {
        let mut body = trigger_body("t", "request:t", "fetch.py", Value::Null, "log");
        body["allowed_hosts"] = hosts.clone();
        let response = server.create_trigger(&body);
        assert_eq!(response.status, 400, "{hosts}: {}", response.text());
        assert!(
            response.text().contains(wanted),
            "{hosts}: {}",
            response.text()
        );
    }
    let mut body = trigger_body("t", "request:t", "fetch.py", Value::Null, "log");
    body["allowed_hosts"] = json!(["https://api.example.com:443", "localhost:8181"]);
    let response = server.create_trigger(&body);
    assert_eq!(response.status, 200, "{}", response.text());
    // The command line's --allow-host asks the same, and a bad grant gets the same 400.
    let create = |name: &str, grant: &str| {
        server.cli(&[
            "create",
            "trigger",
            "-d",
            "db",
            "--trigger-spec",
            &format!("request:{name}"),
            "--path",
            "fetch.py",
            "--allow-host",
            grant,
            name,
        ])
    };
    let created = create("by_cli", "localhost:8181");
    assert!(
        created.status.success(),
        "{}",
        crate::support::text(&created)
    );
    let refused = create("refused", "localhost");
    let refused = crate::support::text(&refused);
    assert!(
        refused.contains("400") && refused.contains("a port is required"),
        "{refused}"
    );
    let shown = server.query(
        "db",
        "SELECT trigger_name, allowed_hosts FROM system.processing_engine_triggers ORDER BY trigger_name",
    );
    assert_eq!(
        shown,
        json!([
            {"trigger_name": "by_cli", "allowed_hosts": "localhost:8181"},
            {"trigger_name": "t", "allowed_hosts": "https://api.example.com:443,localhost:8181"}
        ])
    );

    // A server without a list grants nothing.
    let bare_dir = tempfile::tempdir().expect("temp dir");
    let bare = self::server(bare_dir.path(), &[]);
    let response = bare.create_trigger(&body);
    assert_eq!(response.status, 400, "{}", response.text());
    assert!(
        response
            .text()
            .contains("allow-list (--egress-allow) is empty"),
        "{}",
        response.text()
    );
}

/// HTTPS: the host does TLS and verifies the certificate against the machine's roots
/// and `--egress-ca-file`; a certificate that does not verify fails the request.
#[test]
fn https_is_verified_by_the_host() {
    let destination = Destination::tls();
    let allow = format!("localhost:{}", destination.port);
    let url = format!("https://localhost:{}/ok", destination.port);
    let ca = root().join("tests/fixtures/tls/ca.pem");

    let dir = tempfile::tempdir().expect("temp dir");
    let trusting = server(
        dir.path(),
        &[
            "--egress-allow",
            &allow,
            "--egress-ca-file",
            ca.to_str().expect("utf-8"),
        ],
    );
    add_fetch(&trusting, "fetch", &[&allow], Value::Null);
    assert_eq!(
        fetch(&trusting, "fetch", &url),
        json!({"status": 200, "body": "ok"})
    );
    // requests, whose HTTPS urllib3 refuses without `ssl`, through the host's TLS.
    install(&trusting, "requests");
    let name = "fetch_requests";
    let mut body = trigger_body(
        name,
        "request:fetch_requests",
        "fetch_requests.py",
        Value::Null,
        "log",
    );
    body["allowed_hosts"] = json!([allow]);
    assert_eq!(trusting.create_trigger(&body).status, 200);
    assert_eq!(
        fetch(&trusting, name, &url),
        json!({"status": 200, "body": "ok"})
    );
    drop(trusting);

    let other_dir = tempfile::tempdir().expect("temp dir");
    let untrusting = server(other_dir.path(), &["--egress-allow", &allow]);
    add_fetch(&untrusting, "fetch", &[&allow], Value::Null);
    let failed = fetch(&untrusting, "fetch", &url)["error"].to_string();
    assert!(failed.contains("certificate"), "{failed}");
    assert_eq!(
        destination.asked(),
        ["/ok", "/ok"],
        "the unverified server got no request"
    );
}

/// A response over the trigger's size bound, one slower than its time-out, a request
/// body over its bound and a request past its count fail the request with an error
/// naming the bound; the plugin goes on and the server too.
#[test]
fn responses_are_bounded_in_size_and_time() {
    let dir = tempfile::tempdir().expect("temp dir");
    let destination = Destination::plain();
    let allow = format!("localhost:{}", destination.port);
    let server = server(dir.path(), &["--egress-allow", &allow]);
    add_fetch(
        &server,
        "fetch",
        &[&allow],
        json!({
            "max_http_response_bytes": 1000,
            "max_http_request_bytes": 100,
            "http_timeout": "1s",
            "max_http_requests": 3
        }),
    );
    let base = format!("http://localhost:{}", destination.port);
    let big = fetch(&server, "fetch", &format!("{base}/big"))["error"].to_string();
    assert!(big.contains("over the limit of 1000 bytes"), "{big}");
    let slow = fetch(&server, "fetch", &format!("{base}/slow"))["error"].to_string();
    assert!(
        slow.contains("timed out") || slow.contains("no whole response within 1s"),
        "{slow}"
    );
    assert_eq!(
        fetch(&server, "fetch", &format!("{base}/ok")),
        json!({"status": 200, "body": "ok"})
    );
    let url = encode(&format!("{base}/ok"));
    let posted = server
        .get(
            &format!("/api/v3/engine/fetch?url={url}&post_bytes=101"),
            &[],
        )
        .json();
    let posted = posted["error"].to_string();
    assert!(
        posted.contains("its body (101 bytes) is over the limit of 100 bytes"),
        "{posted}"
    );
    let fits = server
        .get(
            &format!("/api/v3/engine/fetch?url={url}&post_bytes=100"),
            &[],
        )
        .json();
    assert_eq!(fits, json!({"status": 200, "body": "ok"}));
    assert_eq!(destination.asked().len(), 4, "the big body was not sent");
    let many = fetch_times(&server, "fetch", &format!("{base}/ok"), 4)["error"].to_string();
    assert!(
        many.contains("limit of 3 HTTP requests per invocation"),
        "{many}"
    );
}
