//! The engine, configured as the sandbox's (fuel, epoch interruption, the pooling allocator
//! with copy-on-write images) plus the exception-handling proposal the module uses, and the
//! module's entry points: `host_alloc(len)` for a buffer and `turn(ptr, len)`, which runs
//! Python source in the instance's interpreter.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, InstancePre, Linker, Module,
    PoolingAllocationConfig, Store,
};
use wasmtime_wasi::p1;

use crate::door::{self, Guest};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// Where the module looks for its standard library zip.
const STDLIB_GUEST: &str = "/usr/local/lib";
/// The module's own name for itself, which its `sys.prefix` is derived from.
const ARGV0: &str = "/usr/local/bin/python.wasm";

/// A trivial request plugin loaded from source and called once: what the sandbox bench's
/// `fresh_instance_call` does through the componentize-py runtime.
pub const TRIVIAL_PLUGIN: &str = "\
def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
    return {'ok': 1}
_response = process_request(None, {}, {}, b'')
assert _response == {'ok': 1}
";

pub fn engine(pooled: bool) -> anyhow::Result<Engine> {
    let mut config = Config::new();
    config
        .wasm_exceptions(true)
        .wasm_gc(true)
        .wasm_function_references(true)
        .consume_fuel(true)
        .epoch_interruption(true)
        .memory_init_cow(true);
    if pooled {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_memories(512)
            .total_tables(256)
            .total_core_instances(256)
            .total_gc_heaps(256)
            .table_elements(1 << 16)
            .max_core_instance_size(4 << 20)
            .max_memory_size(1 << 30);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    Ok(Engine::new(&config)?)
}

pub fn linker(engine: &Engine) -> anyhow::Result<Linker<Guest>> {
    let mut linker = Linker::new(engine);
    p1::add_to_linker_sync(&mut linker, |guest: &mut Guest| &mut guest.wasi)?;
    linker.func_wrap("host", "call", door::call)?;
    Ok(linker)
}

/// Where `run --sdk DIR` mounts DIR, read-only; it goes first on `sys.path`.
pub const SDK_GUEST: &str = "/sdk";

pub fn store(engine: &Engine, stdlib: &Path) -> anyhow::Result<Store<Guest>> {
    store_with(engine, stdlib, false, None)
}

/// A store whose guest writes its standard output and error to the probe's if `output`,
/// and sees `sdk` at [`SDK_GUEST`].
pub fn store_with(
    engine: &Engine,
    stdlib: &Path,
    output: bool,
    sdk: Option<&Path>,
) -> anyhow::Result<Store<Guest>> {
    let mut wasi = WasiCtxBuilder::new();
    if output {
        wasi.inherit_stdout().inherit_stderr();
    }
    if let Some(sdk) = sdk {
        wasi.preopened_dir(sdk, SDK_GUEST, FsPerms::ReadOnly)?;
    }
    wasi.args(&[ARGV0])
        .env("TMPDIR", "/tmp")
        .env("PYTHONTZPATH", "")
        .preopened_dir(stdlib, STDLIB_GUEST, FsPerms::ReadOnly)?;
    let mut store = Store::new(
        engine,
        Guest {
            wasi: wasi.build_p1(),
            batch: std::sync::Arc::default(),
        },
    );
    store.set_fuel(u64::MAX / 2)?;
    store.set_epoch_deadline(1_000);
    Ok(store)
}

/// Runs `source` in the instance's interpreter; its status (0 when it raised nothing).
pub fn turn(
    store: &mut Store<Guest>,
    instance: &wasmtime::Instance,
    source: &str,
) -> anyhow::Result<i32> {
    let len = i32::try_from(source.len())?;
    let alloc = instance.get_typed_func::<i32, i32>(&mut *store, "host_alloc")?;
    let at = alloc.call(&mut *store, len)?;
    let memory = instance
        .get_memory(&mut *store, "memory")
        .context("no exported memory")?;
    memory.write(&mut *store, usize::try_from(at)?, source.as_bytes())?;
    let turn = instance.get_typed_func::<(i32, i32), i32>(&mut *store, "turn")?;
    Ok(turn.call(&mut *store, (at, len))?)
}

/// Where the probe keeps `module` compiled: beside it, as `.cwasm`.
pub fn compiled_path(module: &Path) -> PathBuf {
    module.with_extension("cwasm")
}

/// A compiled module ready to instantiate, with its stdlib directory.
pub struct Runtime {
    pub engine: Engine,
    pub pre: InstancePre<Guest>,
    pub stdlib: PathBuf,
}

impl Runtime {
    /// Compiles `module` (a minute for 100 MB), or reads it compiled from `<module>.cwasm`.
    pub fn load(module: &Path, stdlib: &Path) -> anyhow::Result<Self> {
        let engine = engine(true)?;
        let compiled = compiled_path(module);
        // SAFETY: the file is this probe's own output, written below for this engine.
        let module = match unsafe { Module::deserialize_file(&engine, &compiled) } {
            Ok(module) => module,
            Err(_) => {
                let started = Instant::now();
                let source = module;
                let module = Module::from_file(&engine, source)?;
                eprintln!("compiled {} in {:?}", source.display(), started.elapsed());
                std::fs::write(&compiled, module.serialize()?)?;
                module
            }
        };
        let pre = linker(&engine)?.instantiate_pre(&module)?;
        Ok(Self {
            engine,
            pre,
            stdlib: stdlib.to_path_buf(),
        })
    }
}
