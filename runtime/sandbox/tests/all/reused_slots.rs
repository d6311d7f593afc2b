//! An instance slot used again: the next instance there, another tenant's maybe, starts
//! from the runtime's image and finds nothing of the instance before, whatever it wrote.
//! (A way of resetting slots that keeps their pages resident, wasmtime's `PAGEMAP_SCAN`
//! reset, was measured and not kept: it leaves a written page the kernel has swapped out
//! or is moving as it was; `BENCHMARKS.md`, "The slot's pages kept".)

use crate::support::*;
use sluice_engine::dry_run::dry_run;
use sluice_plugin_api::{Limits, PluginCall};

#[tokio::test(flavor = "multi_thread")]
async fn the_next_instance_in_a_slot_finds_nothing_of_the_one_before() {
    // One slot: every instance takes the one the instance before used.
    let sandbox = own_sandbox(1);
    let dir = PluginDir::new();
    // It leaves its mark in a module of the image, in the interpreter's state, and in
    // a megabyte of the heap; then says what it found of the marks of the one before.
    let plugin = dir.plugin(
        "marks.py",
        "import json, sys\n\
         def process_scheduled_call(api, call_time, args=None):\n    \
             found = [getattr(json, 'MARK', None), getattr(sys, 'MARK', None),\n             \
                      sys.modules.get('mark_module') is not None, sys.getrecursionlimit()]\n    \
             api.info(repr(found))\n    \
             json.MARK = sys.MARK = args['mark']\n    \
             sys.modules['mark_module'] = json\n    \
             sys.setrecursionlimit(567)\n    \
             global HEAP\n    \
             HEAP = bytearray(args['mark'].encode()) * (1 << 20)\n",
    );
    let mark = async |round: usize| {
        let call = PluginCall::Schedule {
            call_time_ns: 0,
            args: args(&[("mark", &format!("secret {round}"))]),
        };
        let report = ok(dry_run(&sandbox, &plugin, call, &Limits::default(), host()).await);
        info_lines(&report)
    };
    let untouched = mark(0).await;
    assert_eq!(untouched.len(), 1);
    assert!(
        untouched[0].starts_with("[None, None, False, "),
        "{untouched:?}"
    );
    for round in 1..10 {
        assert_eq!(mark(round).await, untouched, "round {round}");
    }
}
