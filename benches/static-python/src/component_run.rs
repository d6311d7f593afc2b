//! The component shape, measured as the core module is: a fresh instance's first call, and
//! a line of Python with its output.

use std::path::Path;
use std::time::Instant;

use anyhow::ensure;
use wasmtime::component::{Component, InstancePre, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::guest::TRIVIAL_PLUGIN;

pub struct State {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

pub struct Runtime {
    engine: Engine,
    pre: InstancePre<State>,
    stdlib: std::path::PathBuf,
}

fn engine() -> anyhow::Result<Engine> {
    let mut config = Config::new();
    config
        .wasm_exceptions(true)
        .wasm_gc(true)
        .wasm_function_references(true)
        .consume_fuel(true)
        .epoch_interruption(true)
        .memory_init_cow(true);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_memories(512)
        .total_tables(512)
        .total_core_instances(1024)
        .total_component_instances(256)
        .total_gc_heaps(256)
        .table_elements(1 << 16)
        .max_core_instance_size(4 << 20)
        .max_component_instance_size(4 << 20)
        .max_memory_size(1 << 30);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Ok(Engine::new(&config)?)
}

impl Runtime {
    /// `snapshot` as a component (kept beside it as `.component.wasm`), compiled (kept as
    /// `.component.cwasm`).
    pub fn load(snapshot: &Path, stdlib: &Path) -> anyhow::Result<Self> {
        let engine = engine()?;
        let wasm_path = snapshot.with_extension("component.wasm");
        let compiled = snapshot.with_extension("component.cwasm");
        // SAFETY: the file is this probe's own output, written below for this engine.
        let component = match unsafe { Component::deserialize_file(&engine, &compiled) } {
            Ok(component) => component,
            Err(_) => {
                let started = Instant::now();
                let wasm = crate::component::build(&std::fs::read(snapshot)?)?;
                std::fs::write(&wasm_path, &wasm)?;
                eprintln!(
                    "componentized in {:?} ({} MB)",
                    started.elapsed(),
                    wasm.len() >> 20
                );
                let started = Instant::now();
                let component = Component::new(&engine, &wasm)?;
                eprintln!("compiled in {:?}", started.elapsed());
                std::fs::write(&compiled, component.serialize()?)?;
                component
            }
        };
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        linker
            .instance("sluice:runtime/door")?
            .func_wrap("call", |_, (frame,): (Vec<u8>,)| Ok((frame,)))?;
        let pre = linker.instantiate_pre(&component)?;
        Ok(Self {
            engine,
            pre,
            stdlib: stdlib.to_path_buf(),
        })
    }

    fn store(&self, output: bool) -> anyhow::Result<Store<State>> {
        let mut wasi = WasiCtxBuilder::new();
        if output {
            wasi.inherit_stdout().inherit_stderr();
        }
        wasi.args(&["/usr/local/bin/python.wasm"])
            .env("TMPDIR", "/tmp")
            .env("PYTHONTZPATH", "")
            .preopened_dir(&self.stdlib, "/usr/local/lib", FsPerms::ReadOnly)?;
        let mut store = Store::new(
            &self.engine,
            State {
                wasi: wasi.build(),
                table: ResourceTable::new(),
            },
        );
        store.set_fuel(u64::MAX / 2)?;
        store.set_epoch_deadline(1_000);
        Ok(store)
    }
}

fn turn(
    store: &mut Store<State>,
    instance: &wasmtime::component::Instance,
    source: &str,
) -> anyhow::Result<i32> {
    let turn = instance.get_typed_func::<(&str,), (i32,)>(&mut *store, "turn")?;
    let (status,) = turn.call(&mut *store, (source,))?;
    Ok(status)
}

pub fn fresh(runtime: &Runtime, iterations: usize) -> anyhow::Result<()> {
    let mut instantiated = Vec::with_capacity(iterations);
    let mut returned = Vec::with_capacity(iterations);
    let mut dropped = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let started = Instant::now();
        let mut store = runtime.store(false)?;
        let instance = runtime.pre.instantiate(&mut store)?;
        instantiated.push(started.elapsed());
        let status = turn(&mut store, &instance, TRIVIAL_PLUGIN)?;
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

pub fn run(runtime: &Runtime, source: &str) -> anyhow::Result<()> {
    let mut store = runtime.store(true)?;
    let instance = runtime.pre.instantiate(&mut store)?;
    let status = turn(&mut store, &instance, source)?;
    ensure!(status == 0, "the source failed with status {status}");
    Ok(())
}
