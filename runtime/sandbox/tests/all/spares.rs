//! Spare instances: the runtime started and warmed up ahead of a call, which then only
//! loads its plugin. A spare must serve any plugin exactly as a fresh instance would, and
//! keep nothing of its warm-up.

use crate::support::*;
use sluice_engine::dry_run::{DryRunReport, dry_run};
use sluice_engine::spares::SpareMaker;
use sluice_plugin_api::{
    HostServices, InstanceStats, Limits, PluginCall, PluginExecutor, PluginRef,
};
use sluice_sandbox::Sandbox;
use std::sync::Arc;

/// A sandbox of its own, so that no other test takes its spares.
fn sandbox_for_spares() -> Sandbox {
    own_sandbox(4)
}

async fn with_one_spare(sandbox: &Sandbox) {
    let maker: Arc<dyn HostServices> = Arc::new(SpareMaker::new(None));
    sandbox.make_spares(1, &maker).await;
    assert_eq!(stats(sandbox).spare, 1);
}

fn stats(sandbox: &Sandbox) -> InstanceStats {
    sandbox
        .instance_stats()
        .expect("the sandbox counts its instances")
}

/// Runs `call` on `plugin` in a spare, checking that it did.
async fn in_a_spare(sandbox: &Sandbox, plugin: &PluginRef, call: PluginCall) -> DryRunReport {
    with_one_spare(sandbox).await;
    let taken = stats(sandbox).spares_taken;
    let report = dry_run(sandbox, plugin, call, &Limits::default(), host()).await;
    assert_eq!(
        stats(sandbox).spares_taken,
        taken + 1,
        "the call took the spare"
    );
    assert_eq!(stats(sandbox).spare, 0);
    report
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spare_sees_the_package_plugins_files_and_the_installed_packages() {
    let sandbox = sandbox_for_spares();
    let dir = PluginDir::new();
    dir.file(".packages/greeting.py", "WORD = 'installed'\n");
    dir.file("pkg/__init__.py", "from .helper import word\nfrom greeting import WORD\n\ndef process_writes(api, batches, args=None):\n    api.info(word(), WORD, open(__file__.replace('__init__.py', 'data.txt')).read())\n");
    dir.file("pkg/helper.py", "def word():\n    return 'relative'\n");
    dir.file("pkg/data.txt", "from its directory");
    let report = ok(in_a_spare(&sandbox, &dir.reference("pkg"), writes_call("m f=1i", None)).await);
    assert_eq!(
        report.log_lines,
        vec!["INFO: relative installed from its directory".to_string()]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spare_keeps_nothing_of_its_warm_up() {
    let sandbox = sandbox_for_spares();
    let dir = PluginDir::new();
    // The warm-up plugin answers requests; this one does not: the call must say so.
    let plugin = dir.plugin(
        "no_request.py",
        "import sys\n\ndef process_writes(api, batches, args=None):\n    api.info(sorted(m for m in sys.modules if 'warm' in m))\n",
    );
    let report = in_a_spare(
        &sandbox,
        &plugin,
        PluginCall::Request {
            request: request("GET", &[], &[], b""),
            args: None,
        },
    )
    .await;
    assert_eq!(report.errors.len(), 1, "{report:?}");
    assert!(
        report.errors[0].contains("the process_request function is not present in the plugin"),
        "{report:?}"
    );
    let report = ok(in_a_spare(&sandbox, &plugin, writes_call("m f=1i", None)).await);
    assert_eq!(report.log_lines, vec!["INFO: []".to_string()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_with_less_memory_than_a_spare_holds_gets_a_fresh_instance() {
    let sandbox = sandbox_for_spares();
    with_one_spare(&sandbox).await;
    let dir = PluginDir::new();
    let plugin = dir.plugin(
        "small.py",
        "def process_writes(api, batches, args=None):\n    pass\n",
    );
    let limits = Limits {
        memory_bytes: 1 << 20,
        ..Limits::default()
    };
    let report = dry_run(
        &sandbox,
        &plugin,
        writes_call("m f=1i", None),
        &limits,
        host(),
    )
    .await;
    // As on a fresh instance: the runtime alone is over the limit.
    assert_eq!(report.errors.len(), 1, "{report:?}");
    assert!(report.errors[0].contains("memory"), "{report:?}");
    let stats = stats(&sandbox);
    assert_eq!((stats.spare, stats.spares_taken), (0, 0));
}
