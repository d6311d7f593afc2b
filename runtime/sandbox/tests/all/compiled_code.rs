//! File plugins' compiled code, kept by the sandbox so that a fresh instance loads a
//! plugin without compiling it: a load served from it must behave as one that compiled,
//! only a load of the same file of the same directory may be served from it, and only a
//! load may hand code over.

use crate::support::*;
use sluice_engine::dry_run::{DryRunReport, dry_run};
use sluice_plugin_api::{Limits, PluginRef};
use sluice_sandbox::{CodeCacheStats, Sandbox};

/// A sandbox of its own, so that its cache counts only this test's loads, and what its
/// cache held before them: the sandbox's own warm-up plugin, compiled and loaded once as
/// it learnt which pages a call touches.
struct OwnSandbox {
    sandbox: Sandbox,
    before: CodeCacheStats,
}

impl OwnSandbox {
    async fn new() -> Self {
        let sandbox = own_sandbox(2);
        sandbox.learn_touched_pages().await;
        let before = sandbox.code_cache_stats();
        assert_eq!(
            (before.entries, before.hits, before.misses),
            (1, 1, 1),
            "the warm-up plugin, compiled once, loaded once"
        );
        Self { sandbox, before }
    }

    /// Runs `process_writes` of `plugin` on a fresh instance.
    async fn run_fresh(&self, plugin: &PluginRef) -> DryRunReport {
        dry_run(
            &self.sandbox,
            plugin,
            writes_call("m f=1i", None),
            &Limits::default(),
            host(),
        )
        .await
    }

    /// The cache's entries, hits and misses since the sandbox learnt.
    fn counts(&self) -> (usize, u64, u64) {
        let CodeCacheStats {
            entries,
            hits,
            misses,
            ..
        } = self.sandbox.code_cache_stats();
        (
            entries - self.before.entries,
            hits - self.before.hits,
            misses - self.before.misses,
        )
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_plugin_compiles_once_and_its_later_instances_run_the_same_code() {
    let own = OwnSandbox::new().await;
    let dir = PluginDir::new();
    let plugin = dir.plugin(
        "raises.py",
        "from __future__ import annotations\n\
         def helper() -> None:\n    raise ValueError('bad value')\n\n\
         def process_writes(api, b, args=None):\n    \
             api.info(f'{__name__} {__file__} {helper.__code__.co_firstlineno}')\n    \
             helper()\n",
    );
    let first = own.run_fresh(&plugin).await;
    assert_eq!(
        first.errors,
        ["error executing plugin: ValueError: bad value (raises.py, line 3)"]
    );
    assert_eq!(info_lines(&first), ["raises raises.py 2"]);
    assert_eq!(own.counts(), (1, 0, 1), "compiled and kept");
    for _ in 0..2 {
        let again = own.run_fresh(&plugin).await;
        assert_eq!(again.errors, first.errors);
        assert_eq!(again.log_lines, first.log_lines);
    }
    assert_eq!(own.counts(), (1, 2, 1), "loaded as kept");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edited_plugin_is_compiled_anew() {
    let own = OwnSandbox::new().await;
    let dir = PluginDir::new();
    let say =
        |word: &str| format!("def process_writes(api, b, args=None):\n    api.info('{word}')\n");
    let plugin = dir.plugin("says.py", &say("one"));
    assert_eq!(info_lines(&ok(own.run_fresh(&plugin).await)), ["one"]);
    dir.file("says.py", &say("two"));
    assert_eq!(info_lines(&ok(own.run_fresh(&plugin).await)), ["two"]);
    assert_eq!(own.counts(), (2, 0, 2));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_file_in_another_directory_is_compiled_for_itself() {
    let own = OwnSandbox::new().await;
    let code = "def process_writes(api, b, args=None):\n    api.info('same')\n";
    let (one, other) = (PluginDir::new(), PluginDir::new());
    for dir in [&one, &other] {
        let plugin = dir.plugin("same.py", code);
        assert_eq!(info_lines(&ok(own.run_fresh(&plugin).await)), ["same"]);
    }
    assert_eq!(own.counts(), (2, 0, 2));
}

#[tokio::test(flavor = "multi_thread")]
async fn packages_and_files_that_do_not_compile_keep_nothing() {
    let own = OwnSandbox::new().await;
    let dir = PluginDir::new();
    dir.file(
        "pkg/__init__.py",
        "def process_writes(api, b, args=None):\n    api.info('package')\n",
    );
    let package = dir.reference("pkg");
    assert_eq!(info_lines(&ok(own.run_fresh(&package).await)), ["package"]);
    let broken = dir.plugin("broken.py", "def process_writes(:\n");
    for _ in 0..2 {
        let report = own.run_fresh(&broken).await;
        assert!(
            report.errors[0].contains("SyntaxError"),
            "{:?}",
            report.errors
        );
    }
    assert_eq!(own.counts(), (0, 0, 2));
}

/// A plugin hands over, during its call, code of its own making as if a load had compiled
/// it: the call stops, nothing is kept, and the next instance runs the file's code.
#[tokio::test(flavor = "multi_thread")]
async fn a_call_cannot_hand_over_code_for_later_loads() {
    let own = OwnSandbox::new().await;
    let dir = PluginDir::new();
    let plugin = dir.plugin(
        "plants.py",
        "import marshal\n\
         from sluice_plugin_runtime import door\n\
         PLANTED = \"def process_writes(api, b, args=None):\\n    api.info('planted')\\n\"\n\
         def process_writes(api, b, args=None):\n    \
             api.info('real')\n    \
             if args:\n        \
                 door.finish_load(marshal.dumps(compile(PLANTED, __file__, 'exec')))\n",
    );
    let planting = dry_run(
        &own.sandbox,
        &plugin,
        writes_call("m f=1i", args(&[("plant", "1")])),
        &Limits::default(),
        host(),
    )
    .await;
    assert_eq!(planting.errors.len(), 1, "{planting:?}");
    assert_eq!(own.counts(), (1, 0, 1), "only the load's code was kept");
    let next = ok(own.run_fresh(&plugin).await);
    assert_eq!(info_lines(&next), ["real"]);
    assert_eq!(own.counts(), (1, 1, 1));
}
