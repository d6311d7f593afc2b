//! The cost of running a plugin in the sandbox.
//!
//! `cargo bench -p sluice-benches --bench sandbox`
//!
//! - `fresh_instance_call`: from nothing to the first call returning, for a trivial
//!   plugin: instantiate the cached Python runtime, load the plugin, call it.
//!   The plugin's code compiled by the first call's load comes from the sandbox's cache
//!   of compiled code, as it does for a trigger whose instance was dropped.
//! - `fresh_instance_first_call`: the same up to the call's return, as a call without a
//!   warm instance runs in the server, whose instance then stays warm: the instance is
//!   dropped after the measurement.
//! - `fresh_instance_call_compiling`: the same for a plugin whose code changed since the
//!   last call (a comment added), so that its load compiles it.
//! - `instantiate_and_load`: `fresh_instance_call` without the call.
//! - `spare_instance_call`: the first call of a trivial plugin loaded into a spare
//!   instance (the runtime instantiated and warmed up beforehand, untimed), as a call
//!   without a warm instance runs when `sluice serve` has a spare ready.
//! - `warm_instance_call`: one call on an instance that is already loaded.
//! - `tmp_file_call`: the same for a plugin that writes a file of 4 KiB in `/tmp`: the
//!   file's writes counted, and the directory emptied when the call ends.
//! - `wal_batch_10k_rows`: deliver 10,000 rows (3 tags, 3 fields, time) to a plugin
//!   that counts them, on a warm instance; throughput is in rows.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sluice_benches::{NullHost, Plugins, TRIVIAL, wal_batch};
use sluice_engine::spares::SpareMaker;
use sluice_plugin_api::{HostServices, Limits, PluginCall, PluginExecutor};
use sluice_sandbox::{Sandbox, SandboxConfig};
use std::sync::Arc;

fn sandbox_benches(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let sandbox = Sandbox::new(SandboxConfig::default()).expect("sandbox");
    runtime.block_on(sandbox.learn_touched_pages());
    if let Some((written, read)) = sandbox.pages_mapped_ahead() {
        eprintln!("pages mapped ahead in a fresh instance: {written} written, {read} read");
    }
    let plugins = Plugins::new().expect("plugins");
    let limits = Limits::default();
    let host: Arc<NullHost> = Arc::new(NullHost);
    let trivial = plugins.get("trivial.py");
    let schedule = || PluginCall::Schedule {
        call_time_ns: 1_700_000_000_000_000_000,
        args: None,
    };

    c.bench_function("fresh_instance_call", |b| {
        b.iter(|| {
            runtime
                .block_on(sandbox.run(&trivial, schedule(), &limits, host.clone()))
                .expect("call succeeds")
        })
    });

    c.bench_function("fresh_instance_first_call", |b| {
        b.iter_batched(
            || (),
            |()| {
                runtime.block_on(async {
                    let mut instance = sandbox
                        .instantiate(&trivial, &limits)
                        .await
                        .expect("instance");
                    instance
                        .call(schedule(), &limits, host.clone())
                        .await
                        .expect("call succeeds");
                    instance
                })
            },
            BatchSize::PerIteration,
        )
    });

    let mut edits = 0_u64;
    c.bench_function("fresh_instance_call_compiling", |b| {
        b.iter_batched(
            || {
                edits += 1;
                let code = format!("{TRIVIAL}# edit {edits}\n");
                plugins.write("edited.py", &code).expect("plugin written")
            },
            |edited| {
                runtime
                    .block_on(sandbox.run(&edited, schedule(), &limits, host.clone()))
                    .expect("call succeeds")
            },
            BatchSize::PerIteration,
        )
    });

    let maker: Arc<dyn HostServices> = Arc::new(SpareMaker::new(None));
    c.bench_function("spare_instance_call", |b| {
        b.iter_batched(
            || runtime.block_on(sandbox.make_spares(1, &maker)),
            |()| {
                runtime
                    .block_on(sandbox.run(&trivial, schedule(), &limits, host.clone()))
                    .expect("call succeeds")
            },
            BatchSize::PerIteration,
        )
    });
    // Every call above (none when the bench is filtered out) loaded its plugin into the
    // spare made for it.
    let stats = sandbox
        .instance_stats()
        .expect("the sandbox counts its instances");
    assert_eq!(stats.spares_taken, stats.spares_made);

    c.bench_function("instantiate_and_load", |b| {
        b.iter(|| {
            runtime
                .block_on(sandbox.instantiate(&trivial, &limits))
                .expect("instance")
        })
    });

    let mut warm = runtime
        .block_on(sandbox.instantiate(&trivial, &limits))
        .expect("instance");
    c.bench_function("warm_instance_call", |b| {
        b.iter(|| {
            runtime
                .block_on(warm.call(schedule(), &limits, host.clone()))
                .expect("call succeeds")
        })
    });

    let mut writer = runtime
        .block_on(sandbox.instantiate(&plugins.get("tmp_file.py"), &limits))
        .expect("instance");
    c.bench_function("tmp_file_call", |b| {
        b.iter(|| {
            runtime
                .block_on(writer.call(schedule(), &limits, host.clone()))
                .expect("call succeeds")
        })
    });

    let rows = 10_000;
    let batches: std::sync::Arc<[_]> = vec![wal_batch(rows)].into();
    let mut counter = runtime
        .block_on(sandbox.instantiate(&plugins.get("count_rows.py"), &limits))
        .expect("instance");
    let mut group = c.benchmark_group("wal_batch");
    group.throughput(Throughput::Elements(rows as u64));
    group.sample_size(30);
    group.bench_function("10k_rows", |b| {
        b.iter(|| {
            let call = PluginCall::Writes {
                batches: batches.clone(),
                args: None,
            };
            runtime
                .block_on(counter.call(call, &limits, host.clone()))
                .expect("call succeeds")
        })
    });
    group.finish();
}

criterion_group!(benches, sandbox_benches);
criterion_main!(benches);
