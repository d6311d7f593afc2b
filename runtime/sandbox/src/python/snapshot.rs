//! Pre-initialisation with wasmtime's wizer: `python.wasm` instrumented, instantiated
//! under WASI preview 1 with its library at [`LIBRARY_GUEST_DIR`], CPython's allocator
//! chosen ([`allocator`]), CPython started, the guest layer imported (`app`, which ends
//! by freezing the garbage collector), and the instance's memory and globals written out
//! as a new module.
//!
//! Everything imported here is in every instance from its start. The host's door is not
//! open yet: a host call now fails.

use super::{ENVIRONMENT, LIBRARY_GUEST_DIR, allocator};
use std::path::Path;
use wasmtime::{Config, Engine, Instance, Linker, Module, Store, Val};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};
use wasmtime_wizer::{InstanceState, SnapshotVal, ValType, Wizer};

/// The runtime's own name for itself, from which CPython derives `sys.prefix` and so
/// finds its library at `/usr/local/lib/python315.zip`.
const ARGV0: &str = "/usr/local/bin/python.wasm";

/// What pre-initialisation runs: the guest layer put first on the path and imported, and
/// the entry of every call bound in `__main__`.
const SET_UP: &str = "\
import sys
sys.path.insert(0, '/usr/local/lib/sluice-runtime.zip')
import app
_sluice_serve = app.serve
del app, sys
";

/// At most this much of what the runtime printed goes into an error.
const OUTPUT_KEPT: usize = 64 << 10;

struct Initialising {
    wasi: WasiP1Ctx,
}

/// `python` pre-initialised, with its library in `library` (the host directory behind
/// [`LIBRARY_GUEST_DIR`]).
pub(super) fn snapshot(python: &[u8], library: &Path) -> wasmtime::Result<Vec<u8>> {
    let wizer = Wizer::new();
    let (context, instrumented) = wizer.instrument(python)?;
    let mut config = Config::new();
    config
        .wasm_exceptions(true)
        .wasm_gc(true)
        .wasm_function_references(true);
    let engine = Engine::new(&config)?;
    let module = Module::new(&engine, &instrumented)?;
    let mut linker = Linker::new(&engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |state: &mut Initialising| &mut state.wasi)?;
    linker.func_wrap(
        "host",
        "call",
        |_: wasmtime::Caller<'_, Initialising>,
         _: i32,
         _: i32,
         _: i32,
         _: i32|
         -> wasmtime::Result<i32> {
            wasmtime::bail!("the host is not reachable while the runtime is pre-initialised")
        },
    )?;
    let output = MemoryOutputPipe::new(OUTPUT_KEPT);
    let mut wasi = WasiCtxBuilder::new();
    wasi.args(&[ARGV0])
        .envs(&ENVIRONMENT)
        .stdout(output.clone())
        .stderr(output.clone())
        .preopened_dir(library, LIBRARY_GUEST_DIR, FsPerms::ReadOnly)?;
    let mut store = Store::new(
        &engine,
        Initialising {
            wasi: wasi.build_p1(),
        },
    );
    let instance = linker.instantiate(&mut store, &module)?;
    let Some(memory) = instance.get_memory(&mut store, "memory") else {
        wasmtime::bail!("the runtime exports no memory");
    };
    allocator::choose_mimalloc(python, memory.data_mut(&mut store))?;
    // As wizer runs a reactor: libc's start, then the module's own initialisation
    // (CPython started, the standard library's bootstrap imported).
    for entry in ["_initialize", "wizer.initialize"] {
        if let Ok(start) = instance.get_typed_func::<(), ()>(&mut store, entry) {
            start.call(&mut store, ())?;
        }
    }
    let status = turn(&mut store, &instance, SET_UP)?;
    if status != 0 {
        wasmtime::bail!(
            "the guest layer failed to load ({status}):\n{}",
            String::from_utf8_lossy(&output.contents())
        );
    }
    let mut state = Running {
        store: &mut store,
        instance,
    };
    block_on(wizer.snapshot(&context, &mut state))
}

/// Runs `source` in the instance's interpreter; its status (0 when it raised nothing).
fn turn(
    store: &mut Store<Initialising>,
    instance: &Instance,
    source: &str,
) -> wasmtime::Result<i32> {
    let len = i32::try_from(source.len())?;
    let alloc = instance.get_typed_func::<i32, i32>(&mut *store, "host_alloc")?;
    let at = alloc.call(&mut *store, len)?;
    let Some(memory) = instance.get_memory(&mut *store, "memory") else {
        wasmtime::bail!("the runtime exports no memory");
    };
    memory.write(&mut *store, usize::try_from(at)?, source.as_bytes())?;
    let turn = instance.get_typed_func::<(i32, i32), i32>(&mut *store, "turn")?;
    turn.call(&mut *store, (at, len))
}

/// The instance as wizer reads it for the snapshot.
struct Running<'a> {
    store: &'a mut Store<Initialising>,
    instance: Instance,
}

impl InstanceState for Running<'_> {
    async fn global_get(&mut self, name: &str, _: ValType) -> SnapshotVal {
        let global = self.instance.get_global(&mut *self.store, name);
        match global.map(|global| global.get(&mut *self.store)) {
            Some(Val::I32(x)) => SnapshotVal::I32(x),
            Some(Val::I64(x)) => SnapshotVal::I64(x),
            Some(Val::F32(x)) => SnapshotVal::F32(x),
            Some(Val::F64(x)) => SnapshotVal::F64(x),
            Some(Val::V128(x)) => SnapshotVal::V128(x.as_u128()),
            // wizer asks only for the globals it instrumented, numbers all.
            _ => SnapshotVal::I32(0),
        }
    }

    async fn memory_contents(&mut self, name: &str, contents: impl FnOnce(&[u8]) + Send) {
        match self.instance.get_memory(&mut *self.store, name) {
            Some(memory) => contents(memory.data(&*self.store)),
            None => contents(&[]),
        }
    }
}

/// The snapshot's future never waits: `Running` answers at once.
fn block_on<F: Future>(future: F) -> F::Output {
    use std::task::{Context, Poll, Waker};
    let mut context = Context::from_waker(Waker::noop());
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
    }
}
