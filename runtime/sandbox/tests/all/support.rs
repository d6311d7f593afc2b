//! Shared set-up: one sandbox per test binary, plugin directories, and one-call helpers.

use sluice_engine::batches::table_batches;
use sluice_engine::cache::CacheStore;
use sluice_engine::dry_run::{DryRunHost, DryRunReport, dry_run};
use sluice_plugin_api::{HttpRequest, Limits, PluginCall, PluginRef, TriggerArguments};
use sluice_sandbox::{Sandbox, SandboxConfig};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// The process-wide sandbox (compiling the runtime once per binary at most).
pub fn sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(|| Sandbox::new(SandboxConfig::default()).expect("sandbox starts"))
}

/// A sandbox of the test's own, with room for `instances` instances: what it counts,
/// keeps and reuses is the test's alone.
pub fn own_sandbox(instances: u32) -> Sandbox {
    Sandbox::new(SandboxConfig {
        max_instances: instances,
        ..SandboxConfig::default()
    })
    .expect("sandbox starts")
}

/// A temporary plugin directory.
pub struct PluginDir {
    dir: tempfile::TempDir,
}

impl PluginDir {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `code` to `name` (creating parent directories) and returns a reference.
    pub fn plugin(&self, name: &str, code: &str) -> PluginRef {
        self.file(name, code);
        self.reference(name)
    }

    pub fn file(&self, name: &str, contents: &str) {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
        std::fs::write(path, contents).expect("write plugin");
    }

    pub fn reference(&self, name: &str) -> PluginRef {
        PluginRef::new(self.dir.path().to_path_buf(), name.to_string())
    }
}

/// A reference to one of the repository's example plugins.
pub fn example(relative: &str) -> PluginRef {
    let examples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let path = examples.join(relative);
    PluginRef::new(
        path.parent().expect("has a parent").to_path_buf(),
        path.file_name()
            .expect("file name")
            .to_string_lossy()
            .into_owned(),
    )
}

pub fn args(pairs: &[(&str, &str)]) -> TriggerArguments {
    Some(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

pub fn host() -> Arc<DryRunHost> {
    Arc::new(DryRunHost::new(
        "db",
        &Limits::default(),
        Arc::new(CacheStore::default()),
        "tests",
    ))
}

pub fn writes_call(lp: &str, args: TriggerArguments) -> PluginCall {
    let parsed = sluice_lp::parse(lp, sluice_lp::Precision::Nanosecond, 0);
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    PluginCall::Writes {
        batches: table_batches(&parsed.lines).batches.into(),
        args,
    }
}

/// Runs `call` on a fresh instance with `limits` and a fresh dry-run host.
pub async fn run_with(plugin: &PluginRef, call: PluginCall, limits: &Limits) -> DryRunReport {
    dry_run(sandbox(), plugin, call, limits, host()).await
}

pub async fn run(plugin: &PluginRef, call: PluginCall) -> DryRunReport {
    run_with(plugin, call, &Limits::default()).await
}

/// Runs `process_writes` on `lp` with default limits.
pub async fn wal(plugin: &PluginRef, lp: &str) -> DryRunReport {
    run(plugin, writes_call(lp, None)).await
}

pub fn request(
    method: &str,
    query: &[(&str, &str)],
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpRequest {
    let pairs = |p: &[(&str, &str)]| {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    HttpRequest {
        method: method.into(),
        path: "test".into(),
        query: pairs(query),
        headers: pairs(headers),
        body: body.to_vec(),
    }
}

/// The log lines without the level prefix of INFO lines, for compact assertions.
pub fn info_lines(report: &DryRunReport) -> Vec<String> {
    report
        .log_lines
        .iter()
        .map(|l| l.strip_prefix("INFO: ").unwrap_or(l).to_string())
        .collect()
}

/// Asserts the run succeeded and returns its report.
pub fn ok(report: DryRunReport) -> DryRunReport {
    assert!(
        report.errors.is_empty(),
        "unexpected errors: {:?} (logs {:?})",
        report.errors,
        report.log_lines
    );
    report
}

/// A plugin that must keep working after a hostile one.
pub async fn assert_healthy() {
    let dir = PluginDir::new();
    let plugin = dir.plugin("healthy.py", "def process_writes(api, batches, args=None):\n    api.info('healthy', len(batches[0]['rows']))\n");
    let report = ok(wal(&plugin, "m f=1i 1\nm f=2i 2").await);
    assert_eq!(report.log_lines, vec!["INFO: healthy 2"]);
}
