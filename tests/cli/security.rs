//! The security regression suite: attacks on the real server, authentication on, two
//! tenants. `alpha`'s tokens and plugins attack (the plugins are in
//! `tests/plugins/security/`); after each attack `beta`'s WAL, schedule and request
//! triggers must still answer, and the server must start again and answer as before.

use crate::http::{Response, request};
use crate::server::{TestServer, trigger_body};
use crate::support::{root, sluice, text};
use serde_json::{Value, json};
use std::cell::Cell;
use std::path::{Path, PathBuf};

/// The server with its two tenants.
struct Tenants {
    dir: tempfile::TempDir,
    flags: Vec<String>,
    server: TestServer,
    /// May read `alpha`: the attacker's token.
    alpha_read: String,
    /// May read, write and manage `alpha`: the attacker's tenant token.
    alpha_owner: String,
    /// May read `beta`.
    beta_read: String,
    /// May write `beta`, not read it.
    beta_write: String,
    /// Rows written to `beta.events` so far.
    events: Cell<u64>,
}

/// Copies the suite's plugins into a plugin directory in `dir`; its path.
fn plugins(dir: &Path) -> PathBuf {
    let source = root().join("tests/plugins/security");
    let plugins = dir.join("plugins");
    for name in [
        "attacker.py",
        "reader.py",
        "beta_wal.py",
        "beta_schedule.py",
        "beta_request.py",
        "hoarder/__init__.py",
    ] {
        let target = plugins.join(name);
        std::fs::create_dir_all(target.parent().expect("a parent")).expect("plugin dir");
        std::fs::copy(source.join(name), target).expect("plugin copied");
    }
    // What `install package` would have put there: every plugin may read it.
    std::fs::create_dir_all(plugins.join(".packages/shared")).expect("packages");
    std::fs::write(plugins.join(".packages/shared/__init__.py"), "").expect("package");
    plugins
}

impl Tenants {
    fn start(flags: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let plugin_dir = plugins(dir.path());
        let mut all = vec![
            "--plugin-dir".to_string(),
            plugin_dir.to_string_lossy().into_owned(),
        ];
        all.extend(flags.iter().map(|f| f.to_string()));
        let server = start(dir.path(), &all);
        server.create_database("alpha");
        server.create_database("beta");
        let alpha_read = token(&server, "alpha-read", "alpha", "read");
        let beta_read = token(&server, "beta-read", "beta", "read");
        let beta_write = token(&server, "beta-write", "beta", "write");
        // `alpha`'s own triggers are created by `alpha`'s token, and reach only what it
        // may; the one granted `beta` is the admin's, narrowed to it.
        let alpha_owner = token(&server, "alpha-owner", "alpha", "read,write,manage");
        for (db, name, spec, plugin, granted) in [
            ("beta", "beta_wal", "table:events", "beta_wal.py", json!([])),
            (
                "beta",
                "beta_tick",
                "every:1s",
                "beta_schedule.py",
                json!([]),
            ),
            (
                "beta",
                "beta_hello",
                "request:beta_hello",
                "beta_request.py",
                json!([]),
            ),
            (
                "alpha",
                "attack",
                "request:alpha_attack",
                "attacker.py",
                json!([]),
            ),
            (
                "alpha",
                "hoard",
                "request:alpha_hoard",
                "hoarder",
                json!([]),
            ),
            // Granted `beta`: what a value in the shared cache could reach through it.
            (
                "alpha",
                "read",
                "request:alpha_read",
                "reader.py",
                json!(["beta"]),
            ),
        ] {
            let mut body = trigger_body(name, spec, plugin, Value::Null, "log");
            body["db"] = json!(db);
            let by_alpha = db == "alpha" && granted == json!([]);
            body["granted_databases"] = granted;
            let created = if by_alpha {
                let bearer = format!("Bearer {alpha_owner}");
                server.send(
                    "POST",
                    "/api/v3/configure/processing_engine_trigger",
                    &[
                        ("authorization", &bearer),
                        ("content-type", "application/json"),
                    ],
                    body.to_string().as_bytes(),
                )
            } else {
                server.create_trigger(&body)
            };
            assert_eq!(created.status, 200, "{name}: {}", created.text());
        }
        let tenants = Self {
            dir,
            flags: all,
            server,
            alpha_read,
            alpha_owner,
            beta_read,
            beta_write,
            events: Cell::new(0),
        };
        tenants.assert_beta_answers();
        tenants
    }

    /// GET `/api/v3/engine/<path>?<query>` with `token`.
    fn call(&self, path: &str, query: &str, token: &str) -> Response {
        let bearer = format!("Bearer {token}");
        request(
            self.server.address,
            "GET",
            &format!("/api/v3/engine/{path}?{query}"),
            &[("authorization", &bearer)],
            b"",
        )
    }

    /// Runs `attack` (with more query parameters) as `alpha`; what the plugin answered.
    fn attack(&self, attack: &str, more: &str) -> Value {
        let answer = self.call(
            "alpha_attack",
            &format!("attack={attack}&{more}"),
            &self.alpha_read,
        );
        assert_eq!(answer.status, 200, "{attack}: {}", answer.text());
        answer.json()
    }

    /// SQL as `token`, with its status and answer.
    fn sql(&self, token: &str, db: &str, sql: &str) -> Response {
        let bearer = format!("Bearer {token}");
        let body = json!({"db": db, "q": sql}).to_string();
        request(
            self.server.address,
            "POST",
            "/api/v3/query_sql",
            &[
                ("authorization", &bearer),
                ("content-type", "application/json"),
            ],
            body.as_bytes(),
        )
    }

    /// `beta`'s triggers answer: a write reaches its WAL trigger, its schedule trigger
    /// ticks, and its request trigger answers its reader with every row written.
    fn assert_beta_answers(&self) {
        let written = self.events.get() + 1;
        self.events.set(written);
        let bearer = format!("Bearer {}", self.beta_write);
        let line = format!("events,src=test v={written}i {written}");
        let answer = request(
            self.server.address,
            "POST",
            "/api/v3/write_lp?db=beta",
            &[("authorization", &bearer)],
            line.as_bytes(),
        );
        assert_eq!(answer.status, 204, "{}", answer.text());
        self.server
            .eventually("beta", "SELECT sum(rows) AS n FROM events_seen", |rows| {
                rows[0]["n"] == json!(written)
            });
        let ticks = |rows: &Value| rows[0]["n"].as_u64().unwrap_or(0);
        let before = ticks(&self.server.eventually(
            "beta",
            "SELECT count(*) AS n FROM ticks",
            |rows| ticks(rows) > 0,
        ));
        self.server
            .eventually("beta", "SELECT count(*) AS n FROM ticks", |rows| {
                ticks(rows) > before
            });
        let hello = self.call("beta_hello", "", &self.beta_read);
        assert_eq!(hello.status, 200, "{}", hello.text());
        assert_eq!(hello.json(), json!({"events": written}));
    }

    /// Stops the server and starts it again on the same data, which must answer as
    /// before.
    fn restart(&mut self) {
        self.server.stop();
        self.server = start(self.dir.path(), &self.flags);
        self.assert_beta_answers();
    }

    /// The log lines of `db`'s triggers.
    fn logs(&self, db: &str) -> Vec<String> {
        let rows = self.server.query(
            db,
            "SELECT log_text FROM system.processing_engine_logs ORDER BY event_time",
        );
        rows.as_array()
            .expect("rows")
            .iter()
            .map(|row| row["log_text"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// The plugin directory.
    fn plugin_dir(&self) -> PathBuf {
        self.dir.path().join("plugins")
    }
}

fn start(dir: &Path, flags: &[String]) -> TestServer {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    TestServer::start_with(dir, &flags)
}

/// A token named `name` that may do `actions` (comma-separated) on `db`.
fn token(server: &TestServer, name: &str, db: &str, actions: &str) -> String {
    let actions: Vec<&str> = actions.split(',').collect();
    let body = json!({
        "token_name": name,
        "permissions": [{"resource_type": "db", "resource_names": [db], "actions": actions}],
    })
    .to_string();
    let created = server.post(
        "/api/v3/configure/token",
        &[("content-type", "application/json")],
        body.as_bytes(),
    );
    assert_eq!(created.status, 201, "{}", created.text());
    created.json()["token"]
        .as_str()
        .expect("a token")
        .to_string()
}

fn refused(outcome: &Value, why: &str) {
    assert_eq!(outcome["outcome"], "refused", "{outcome}");
    let error = outcome["error"].as_str().unwrap_or_default();
    assert!(error.contains(why), "expected `{why}` in {outcome}");
}

/// The peak resident memory of process `pid`, in bytes.
fn peak_memory(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|kib| {
            kib.trim()
                .trim_end_matches(" kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kib| kib << 10)
        .expect("VmHWM")
}

/// The descriptors process `pid` holds open.
fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd directory")
        .count()
}

#[test]
fn sql_only_reads_whoever_sends_it_and_within_its_bounds() {
    let mut tenants = Tenants::start(&["--query-memory-limit-mib", "4", "--query-timeout", "3s"]);
    let data = tenants.dir.path().join("data");
    let victim = tenants.plugin_dir().join("beta_request.py");
    let original = std::fs::read(&victim).expect("beta's plugin");
    let planted = tenants.dir.path().join("planted.csv");
    let written = tenants
        .server
        .post("/api/v3/write_lp?db=alpha", &[], b"cpu,host=a v=1i 1");
    assert_eq!(written.status, 204, "{}", written.text());

    // Over HTTP, with a token that may only read.
    for (sql, why) in [
        (
            format!("COPY (SELECT 1) TO '{}' STORED AS CSV", planted.display()),
            "DML not supported: COPY",
        ),
        (
            format!("COPY (SELECT 1) TO '{}' STORED AS CSV", victim.display()),
            "DML not supported: COPY",
        ),
        (
            "CREATE EXTERNAL TABLE stolen STORED AS CSV LOCATION '/etc/'".to_string(),
            "DDL not supported: CreateExternalTable",
        ),
        (
            "INSERT INTO cpu (host) VALUES ('x')".to_string(),
            "DML not supported",
        ),
        (
            "SET datafusion.execution.batch_size = 1".to_string(),
            "Statement not supported",
        ),
    ] {
        let answer = tenants.sql(&tenants.alpha_read, "alpha", &sql);
        assert_eq!(answer.status, 400, "{sql}: {}", answer.text());
        let error = answer.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            error.contains(why) && error.ends_with("(a query may only read)"),
            "{sql}: {error}"
        );
    }
    // An error never shows a server path.
    let cwd = std::env::current_dir().expect("cwd");
    for sql in [
        "SELECT * FROM '/etc/passwd'",
        "SELECT * FROM 'events.parquet'",
        "SELECT * FROM no_such_table",
    ] {
        let answer = tenants.sql(&tenants.alpha_read, "alpha", sql);
        assert_eq!(answer.status, 400, "{sql}: {}", answer.text());
        for path in [data.display().to_string(), cwd.display().to_string()] {
            assert!(!answer.text().contains(&path), "{sql}: {}", answer.text());
        }
    }

    // What a query may spend: memory, time, and what one function call may build.
    for (sql, why) in [
        (
            "SELECT max(n) AS n FROM (SELECT row_number() OVER (ORDER BY value DESC) AS n \
             FROM generate_series(1, 5000000))",
            "query memory limit of 4 MiB exceeded",
        ),
        (
            "SELECT count(*) AS n FROM generate_series(1, 100000000000)",
            "query time limit of 3s exceeded",
        ),
        (
            "SELECT repeat('x', 2000000000) AS s",
            "repeat would build 1 GiB in one call",
        ),
    ] {
        let answer = tenants.sql(&tenants.alpha_read, "alpha", sql);
        assert_eq!(answer.status, 400, "{sql}: {}", answer.text());
        assert!(answer.text().contains(why), "{sql}: {}", answer.text());
    }

    // From a plugin: another tenant's plugin, a snapshot manifest, any file.
    for path in [
        victim.clone(),
        data.join("sluice/snapshots/9999.json"),
        planted.clone(),
    ] {
        let outcome = tenants.attack("copy_to", &format!("path={}", path.display()));
        refused(&outcome, "DML not supported: COPY (a query may only read)");
    }
    let outcome = tenants.attack("external_table", "path=/etc/");
    refused(&outcome, "DDL not supported: CreateExternalTable");

    // From the command line.
    let copy = sluice()
        .args(["query", "-d", "alpha", "--host", &tenants.server.url()])
        .args(["--token", &tenants.alpha_read])
        .arg(format!("COPY (SELECT 1) TO '{}'", planted.display()))
        .output()
        .expect("sluice runs");
    assert!(!copy.status.success(), "{}", text(&copy));
    assert!(
        text(&copy).contains("a query may only read"),
        "{}",
        text(&copy)
    );

    assert!(!planted.exists());
    assert_eq!(std::fs::read(&victim).expect("beta's plugin"), original);
    tenants.assert_beta_answers();
    tenants.restart();
}

#[test]
fn request_triggers_answer_only_tokens_that_may_read_their_database() {
    let tenants = Tenants::start(&[]);
    for (token, status) in [
        (tenants.alpha_read.as_str(), 403),
        (tenants.beta_write.as_str(), 403),
        ("apiv3_not-a-token", 401),
        (tenants.beta_read.as_str(), 200),
        (tenants.server.token(), 200),
    ] {
        let answer = tenants.call("beta_hello", "", token);
        assert_eq!(answer.status, status, "{}", answer.text());
        if status == 403 {
            assert!(
                answer
                    .text()
                    .contains("needs read or invoke permission on the trigger's database")
                    && !answer.text().contains("beta"),
                "{}",
                answer.text()
            );
        }
    }
    tenants.assert_beta_answers();
}

#[test]
fn host_work_for_a_plugin_stays_within_its_limits() {
    let mut tenants = Tenants::start(&["--max-shared-cache-bytes", "8388608"]);
    let pid = tenants.server.pid();

    // A query of about a gigabyte stops at the result bound.
    let outcome = tenants.attack("huge_result", "");
    refused(&outcome, "query result limit of 64 MiB exceeded");
    let peak = peak_memory(pid);
    assert!(peak < 2 << 30, "the server reached {} MiB", peak >> 20);

    // A long log line is cut; a flood of them stops the call at the log bytes.
    assert_eq!(tenants.attack("long_line", "")["outcome"], "done");
    let longest = tenants
        .logs("alpha")
        .into_iter()
        .max_by_key(String::len)
        .expect("a log line");
    assert!(longest.len() < 65 << 10, "{} bytes kept", longest.len());
    assert!(longest.ends_with("more bytes cut: a log line holds at most 64 KiB]"));
    let flood = tenants.call("alpha_attack", "attack=log_flood", &tenants.alpha_read);
    assert_eq!(flood.status, 500, "{}", flood.text());
    assert!(
        flood.text().contains("log limit of 4 MiB exceeded"),
        "{}",
        flood.text()
    );

    // Cache values, a trigger's cache and a database's shared cache are bounded.
    refused(
        &tenants.attack("big_value", ""),
        "cache value limit of 16 MiB exceeded: the value is",
    );
    let own = tenants.attack("fill_cache", "");
    refused(
        &own,
        "cache limit of 64 MiB exceeded: the trigger's cache holds",
    );
    assert_eq!(own["stored"], 63, "{own}");
    let shared = tenants.attack("fill_cache", "global=1");
    refused(
        &shared,
        "cache limit of 8 MiB exceeded: the database's shared cache holds",
    );
    assert_eq!(shared["stored"], 7, "{shared}");

    // Each call starts with the whole memory budget, whatever the one before held.
    for call in 0..4 {
        let outcome = tenants.attack("grow", "mib=150");
        assert_eq!(outcome["outcome"], "done", "call {call}: {outcome}");
    }

    tenants.assert_beta_answers();
    tenants.restart();
}

#[test]
fn open_files_are_bounded_and_given_back() {
    let mut tenants = Tenants::start(&[]);
    let pid = tenants.server.pid();
    let hoard = |count: u32| {
        let answer = tenants.call(
            "alpha_hoard",
            &format!("count={count}"),
            &tenants.alpha_read,
        );
        assert_eq!(answer.status, 200, "{}", answer.text());
        answer.json()
    };
    // The first call loads the plugin's code; what the server holds then is the baseline.
    assert_eq!(hoard(1)["held"], 1);
    let baseline = open_descriptors(pid);

    let hoarded = hoard(5_000);
    let held = hoarded["held"].as_u64().expect("held");
    assert_eq!(held, 64, "{hoarded}");
    assert!(
        hoarded["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("OSError")),
        "{hoarded}"
    );
    assert!(
        tenants
            .logs("alpha")
            .iter()
            .any(|line| line.starts_with("open files limit of 64 reached")),
        "the log names the limit"
    );
    // An instance that keeps files open between calls is not kept: its files are closed
    // when the call ends, and the next call starts on a fresh instance.
    let now = open_descriptors(pid);
    assert!(
        now <= baseline + 8,
        "{baseline} descriptors before, {now} after"
    );
    let again = hoard(10);
    assert_eq!(
        (again["opened"].as_u64(), again["held"].as_u64()),
        (Some(10), Some(10)),
        "{again}"
    );
    tenants.assert_beta_answers();
    tenants.restart();
}

#[test]
fn a_plugin_sees_only_its_own_code_and_the_packages() {
    let tenants = Tenants::start(&[]);
    let seen = tenants.attack("peek", "");
    for what in [
        "other plugin",
        "plugin directory",
        "repository copies",
        "host file",
    ] {
        assert_eq!(seen[what]["outcome"], "refused", "{what}: {seen}");
    }
    assert_eq!(
        seen["packages"],
        json!({"outcome": "done", "value": ["shared"]})
    );
    tenants.assert_beta_answers();
}

#[test]
fn shared_cache_values_cannot_carry_code_from_one_trigger_to_another() {
    let tenants = Tenants::start(&[]);
    assert_eq!(tenants.attack("poison_cache", "")["outcome"], "done");
    let answer = tenants.call("alpha_read", "", &tenants.alpha_read);
    assert_eq!(answer.status, 200, "{}", answer.text());
    refused(
        &answer.json(),
        "UnpicklingError: a value in the shared cache may hold only data",
    );
    assert!(
        answer.text().contains("not builtins.exec"),
        "{}",
        answer.text()
    );
    tenants.assert_beta_answers();
    let tables = tenants.server.query("beta", "SHOW TABLES");
    assert!(!tables.to_string().contains("pwned"), "{tables}");
}

/// Issue 17, point 10: `alpha`'s tenant token, which manages `alpha`, tries every way
/// into `beta`: each is refused, and `beta`'s triggers answer throughout.
#[test]
fn a_tenant_that_manages_its_database_reaches_nothing_of_another() {
    let mut tenants = Tenants::start(&[]);
    let owner = format!("Bearer {}", tenants.alpha_owner);
    let send = |method: &str, target: &str, body: Value| {
        request(
            tenants.server.address,
            method,
            target,
            &[
                ("authorization", &owner),
                ("content-type", "application/json"),
            ],
            body.to_string().as_bytes(),
        )
    };
    let mut on_beta = trigger_body("x", "request:x", "beta_request.py", Value::Null, "log");
    on_beta["db"] = json!("beta");
    let mut granted_beta = trigger_body("y", "request:y", "attacker.py", Value::Null, "log");
    granted_beta["db"] = json!("alpha");
    granted_beta["granted_databases"] = json!(["beta"]);
    let trigger = "/api/v3/configure/processing_engine_trigger";
    let attempts = [
        ("create a trigger on beta", send("POST", trigger, on_beta)),
        (
            "grant beta to its own trigger",
            send("POST", trigger, granted_beta),
        ),
        (
            "disable beta's trigger",
            send(
                "POST",
                &format!("{trigger}/disable?db=beta&trigger_name=beta_hello"),
                json!({}),
            ),
        ),
        (
            "delete beta's trigger",
            send(
                "DELETE",
                &format!("{trigger}?db=beta&trigger_name=beta_wal&force=true"),
                Value::Null,
            ),
        ),
        (
            "upload into beta's area",
            send(
                "POST",
                "/api/v3/plugins/files?db=beta",
                json!({"plugin_name": "x.py", "content": "x = 1"}),
            ),
        ),
        (
            "upload over a shared plugin beta runs",
            send(
                "POST",
                "/api/v3/plugins/files",
                json!({"plugin_name": "beta_request.py", "content": "x = 1"}),
            ),
        ),
        (
            "change beta's trigger's code",
            send(
                "PUT",
                "/api/v3/plugins/files?db=beta",
                json!({"plugin_name": "beta_hello", "content": "x = 1"}),
            ),
        ),
        (
            "install into beta's environment",
            send(
                "POST",
                "/api/v3/configure/plugin_environment/install_packages?db=beta",
                json!({"packages": ["six"]}),
            ),
        ),
        (
            "install into the shared environment",
            send(
                "POST",
                "/api/v3/configure/plugin_environment/install_packages",
                json!({"packages": ["six"]}),
            ),
        ),
        (
            "test a plugin on beta",
            send(
                "POST",
                "/api/v3/plugin_test/wal",
                json!({"filename": "attacker.py", "database": "beta", "input_lp": "t n=1i"}),
            ),
        ),
        (
            "set beta's quotas",
            send(
                "PUT",
                "/api/v3/configure/database",
                json!({"db": "beta", "quotas": {"triggers": 1}}),
            ),
        ),
        (
            "call beta's request trigger",
            tenants.call("beta_hello", "", &tenants.alpha_owner),
        ),
    ];
    for (what, answer) in attempts {
        assert_eq!(answer.status, 403, "{what}: {}", answer.text());
    }
    for table in [
        "processing_engine_logs",
        "processing_engine_usage",
        "processing_engine_triggers",
        "plugin_files",
    ] {
        let answer = tenants.sql(
            &tenants.alpha_owner,
            "beta",
            &format!("SELECT * FROM system.{table}"),
        );
        assert_eq!(answer.status, 403, "{table}: {}", answer.text());
    }
    // Its plugins reach nothing of beta's either.
    for attack in ["cross_query", "cross_write"] {
        refused(&tenants.attack(attack, ""), "of database 'alpha' may not");
    }
    // Its own quota exhausted, beta's triggers are not held back.
    let full = json!({"db": "alpha", "quotas": {"triggers": 3, "concurrent_invocations": 1}});
    let set = tenants.server.send(
        "PUT",
        "/api/v3/configure/database",
        &[("content-type", "application/json")],
        full.to_string().as_bytes(),
    );
    assert_eq!(set.status, 200, "{}", set.text());
    let mut one_more = trigger_body("z", "request:z", "attacker.py", Value::Null, "log");
    one_more["db"] = json!("alpha");
    let answer = send("POST", trigger, one_more);
    assert_eq!(answer.status, 403, "{}", answer.text());
    assert!(
        answer.text().contains("max-triggers quota is 3"),
        "{}",
        answer.text()
    );
    tenants.assert_beta_answers();
    tenants.restart();
    let tables = tenants.server.query("beta", "SHOW TABLES");
    assert!(!tables.to_string().contains("pwned"), "{tables}");
}

/// Issue 17, point 5: `alpha`'s trigger, created with `alpha`'s token, reaches nothing of
/// `beta`.
#[test]
fn a_tenants_trigger_reaches_no_other_tenants_database() {
    let tenants = Tenants::start(&[]);
    for attack in ["cross_query", "cross_write"] {
        refused(&tenants.attack(attack, ""), "of database 'alpha' may not");
    }
    tenants.assert_beta_answers();
    let tables = tenants.server.query("beta", "SHOW TABLES");
    assert!(!tables.to_string().contains("pwned"), "{tables}");
}

#[test]
fn one_databases_logs_never_push_out_anothers() {
    let tenants = Tenants::start(&[]);
    tenants.server.eventually(
        "beta",
        "SELECT count(*) AS n FROM system.processing_engine_logs WHERE log_text = 'beta tick'",
        |rows| rows[0]["n"].as_u64().unwrap_or(0) > 0,
    );
    for _ in 0..3 {
        assert_eq!(tenants.attack("log_many", "lines=4000")["outcome"], "done");
    }
    let alpha = tenants.logs("alpha");
    assert_eq!(
        alpha.len(),
        10_000,
        "a database keeps its newest 10,000 lines"
    );
    assert_eq!(alpha.last().map(String::as_str), Some("alpha line 3999"));
    assert!(tenants.logs("beta").iter().any(|line| line == "beta tick"));
    tenants.assert_beta_answers();
}

#[test]
fn installs_and_repository_fetches_stay_inside_their_bounds() {
    let repository = redirecting_repository();
    let tenants = Tenants::start(&["--plugin-repo", &repository]);
    let post = |path: &str, body: Value| {
        tenants.server.post(
            path,
            &[("content-type", "application/json")],
            body.to_string().as_bytes(),
        )
    };
    // Files, whatever they are called, never reach pip.
    for package in [
        "evil.tbz",
        "evil.tar.lzma",
        "./evil",
        "evil @ file:///tmp/evil.whl",
    ] {
        let answer = post(
            "/api/v3/configure/plugin_environment/install_packages",
            json!({"packages": [package]}),
        );
        assert_eq!(answer.status, 400, "{package}: {}", answer.text());
        assert!(
            answer.text().contains("is not a package name"),
            "{}",
            answer.text()
        );
    }
    // A requirements file: from the plugin directory only, and never quoted.
    let outside = tenants.dir.path().join("requirements.txt");
    std::fs::write(&outside, "SECRET-VALUE\n").expect("written");
    let inside = tenants.plugin_dir().join("requirements.txt");
    std::fs::write(&inside, "requests\n./SECRET-VALUE\n").expect("written");
    for (location, why) in [
        (
            outside.display().to_string(),
            "it is outside the plugin directory",
        ),
        (
            "../requirements.txt".to_string(),
            "it is outside the plugin directory",
        ),
        (
            "/etc/passwd".to_string(),
            "it is outside the plugin directory",
        ),
        (inside.display().to_string(), "line 2 is not a package name"),
        (
            "requirements.txt".to_string(),
            "line 2 is not a package name",
        ),
    ] {
        let answer = post(
            "/api/v3/configure/plugin_environment/install_requirements",
            json!({"requirements_location": location}),
        );
        assert_eq!(answer.status, 400, "{location}: {}", answer.text());
        assert!(answer.text().contains(why), "{location}: {}", answer.text());
        assert!(!answer.text().contains("SECRET"), "{}", answer.text());
        assert!(!answer.text().contains("root:"), "{}", answer.text());
    }
    // `gh:` paths stay under the repository, however they are spelt.
    for path in [
        "gh:%2e%2e/%2e%2e/outside.py",
        "gh:..\\..\\outside.py",
        "gh:%252e%252e/outside.py",
        "gh:/etc/passwd",
    ] {
        let mut body = trigger_body("fetched", "request:fetched", path, Value::Null, "log");
        body["db"] = json!("alpha");
        let answer = tenants.server.create_trigger(&body);
        assert_eq!(answer.status, 400, "{path}: {}", answer.text());
        assert!(
            answer.text().contains("Path traversal detected"),
            "{}",
            answer.text()
        );
    }
    // A redirect out of the repository is not followed.
    let mut body = trigger_body(
        "fetched",
        "request:fetched",
        "gh:moved.py",
        Value::Null,
        "log",
    );
    body["db"] = json!("alpha");
    let answer = tenants.server.create_trigger(&body);
    assert_eq!(answer.status, 502, "{}", answer.text());
    assert!(
        answer.text().contains("redirected outside"),
        "{}",
        answer.text()
    );
    assert!(!tenants.plugin_dir().join(".repository/moved.py").exists());
    tenants.assert_beta_answers();
}

/// A plugin repository on a loopback port whose only answer is a redirect to a plugin
/// on another server; its URL.
fn redirecting_repository() -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
    let url = format!(
        "http://{}/plugins/",
        listener.local_addr().expect("address")
    );
    std::thread::spawn(move || {
        for stream in listener.incoming().take(10).flatten() {
            let mut reader = BufReader::new(&stream);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let _ = (&stream).write_all(
                b"HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:9/elsewhere/moved.py\r\n\
                  content-length: 0\r\nconnection: close\r\n\r\n",
            );
        }
    });
    url
}
