//! The pages a call touches, mapped ahead in each fresh instance: learnt from the
//! sandbox's own warm-up plugin, never from a tenant's plugin, which could otherwise make
//! every later instance copy the pages it wrote.

use crate::support::*;
use sluice_engine::dry_run::dry_run;
use sluice_plugin_api::{Limits, PluginCall};

#[tokio::test(flavor = "multi_thread")]
async fn the_pages_mapped_ahead_are_the_sandboxs_own_not_the_first_plugins() {
    let sandbox = own_sandbox(2);
    assert_eq!(sandbox.pages_mapped_ahead(), None, "nothing learnt yet");
    let dir = PluginDir::new();
    // The first plugin the sandbox runs writes 16 MiB, and says what it read back.
    let plugin = dir.plugin(
        "writes_much.py",
        "def process_scheduled_call(api, call_time, args=None):\n    \
             heap = b'w' * (16 << 20)\n    \
             api.info(f'{len(heap)} {heap[-1:]}')\n",
    );
    for _ in 0..2 {
        let call = PluginCall::Schedule {
            call_time_ns: 0,
            args: None,
        };
        let report = ok(dry_run(&sandbox, &plugin, call, &Limits::default(), host()).await);
        assert_eq!(info_lines(&report), ["16777216 b'w'"]);
    }
    let (written, read) = sandbox
        .pages_mapped_ahead()
        .expect("learnt by the first instance");
    assert!(written > 0 && read > 0, "{written} written, {read} read");
    assert!(
        written * 4096 < 4 << 20,
        "{written} pages written: the plugin's 16 MiB are not among them"
    );
}
