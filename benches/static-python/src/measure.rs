//! The two measurements: a fresh instance's first call, and a warm instance's memory.

use std::time::Instant;

use anyhow::{Context, ensure};

use crate::guest::{self, Runtime, TRIVIAL_PLUGIN};

pub fn fresh(runtime: &Runtime, iterations: usize) -> anyhow::Result<()> {
    let mut returned = Vec::with_capacity(iterations);
    let mut dropped = Vec::with_capacity(iterations);
    let mut instantiated = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let started = Instant::now();
        let mut store = guest::store(&runtime.engine, &runtime.stdlib)?;
        let instance = runtime.pre.instantiate(&mut store)?;
        instantiated.push(started.elapsed());
        let status = guest::turn(&mut store, &instance, TRIVIAL_PLUGIN)?;
        returned.push(started.elapsed());
        ensure!(status == 0, "the plugin failed with status {status}");
        drop(store);
        dropped.push(started.elapsed());
    }
    for (what, times) in [
        ("instantiated", &mut instantiated),
        ("first call returned", &mut returned),
        ("... and the instance dropped", &mut dropped),
    ] {
        times.sort();
        let at = |q: usize| times[times.len() * q / 100];
        println!(
            "{what:<30} p10 {:>9.3?}  p50 {:>9.3?}  p90 {:>9.3?}",
            at(10),
            at(50),
            at(90)
        );
    }
    Ok(())
}

pub fn rows(runtime: &Runtime, rows: u32, iterations: usize) -> anyhow::Result<()> {
    // With the guest's output: a traceback explains a failed turn.
    let mut store = guest::store_with(&runtime.engine, &runtime.stdlib, true, None)?;
    store.data_mut().batch = std::sync::Arc::new(crate::door::wal_batch(rows));
    let instance = runtime.pre.instantiate(&mut store)?;
    let status = guest::turn(&mut store, &instance, &crate::door::guest_setup())?;
    ensure!(
        status == 0,
        "the plugin's set-up failed with status {status}"
    );
    let deliver = format!("_deliver({rows})");
    let mut times = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        store.set_fuel(u64::MAX / 2)?;
        let started = Instant::now();
        let status = guest::turn(&mut store, &instance, &deliver)?;
        times.push(started.elapsed());
        ensure!(
            status == 0,
            "delivering the rows failed with status {status}"
        );
    }
    times.sort();
    for q in [10, 50, 90] {
        let time = times[times.len() * q / 100];
        println!(
            "p{q}: {time:>9.3?} per batch of {rows} rows = {:.0} rows/s",
            f64::from(rows) / time.as_secs_f64()
        );
    }
    Ok(())
}

pub fn run(
    runtime: &Runtime,
    source: &str,
    fuel: Option<u64>,
    sdk: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let mut store = guest::store_with(&runtime.engine, &runtime.stdlib, true, sdk)?;
    let source = match sdk {
        Some(_) => format!(
            "import sys; sys.path.insert(0, {:?})\n{source}",
            guest::SDK_GUEST
        ),
        None => source.to_string(),
    };
    let instance = runtime.pre.instantiate(&mut store)?;
    if let Some(fuel) = fuel {
        store.set_fuel(fuel)?;
    }
    let started = Instant::now();
    let status = guest::turn(&mut store, &instance, &source);
    eprintln!("ran for {:?}", started.elapsed());
    let status = status?;
    ensure!(status == 0, "the source failed with status {status}");
    Ok(())
}

pub fn memory(runtime: &Runtime, instances: usize) -> anyhow::Result<()> {
    let mut warm = Vec::with_capacity(instances + 1);
    let mut warm_up = |count: usize| -> anyhow::Result<()> {
        for _ in 0..count {
            let mut store = guest::store(&runtime.engine, &runtime.stdlib)?;
            let instance = runtime.pre.instantiate(&mut store)?;
            ensure!(guest::turn(&mut store, &instance, TRIVIAL_PLUGIN)? == 0);
            warm.push(store);
        }
        Ok(())
    };
    // One first, so that the host's one-off allocations are not counted.
    warm_up(1)?;
    let before = Rollup::read()?;
    warm_up(instances)?;
    let after = Rollup::read()?;
    let per = |of: fn(&Rollup) -> i64| (of(&after) - of(&before)) / instances as i64;
    println!(
        "per warm instance: resident {} KiB, private dirty {} KiB, shared clean {} KiB",
        per(|r| r.rss),
        per(|r| r.private_dirty),
        per(|r| r.shared_clean)
    );
    Ok(())
}

/// The process's memory, in KiB, from `/proc/self/smaps_rollup`.
struct Rollup {
    rss: i64,
    private_dirty: i64,
    shared_clean: i64,
}

impl Rollup {
    fn read() -> anyhow::Result<Self> {
        let text = std::fs::read_to_string("/proc/self/smaps_rollup")?;
        let field = |name: &str| -> anyhow::Result<i64> {
            let line = text.lines().find(|line| line.starts_with(name));
            let value = line.and_then(|line| line.split_whitespace().nth(1));
            Ok(value
                .with_context(|| format!("no {name} in smaps_rollup"))?
                .parse()?)
        };
        Ok(Self {
            rss: field("Rss:")?,
            private_dirty: field("Private_Dirty:")?,
            shared_clean: field("Shared_Clean:")?,
        })
    }
}
