//! Pre-initialisation with wasmtime's wizer: the module instrumented, instantiated, warmed
//! up by loading and calling the trivial plugin, and its memory and globals written out as a
//! new module.

use std::path::Path;
use std::time::Instant;

use anyhow::ensure;
use wasmtime::{Instance, Store, Val};
use wasmtime_wizer::{InstanceState, SnapshotVal, ValType, Wizer};

use crate::door::Guest;
use crate::guest;

pub fn write(
    module: &Path,
    stdlib: &Path,
    output: &Path,
    preload: &[String],
) -> anyhow::Result<()> {
    let wasm = std::fs::read(module)?;
    let wizer = Wizer::new();
    let (context, instrumented) = wizer.instrument(&wasm)?;
    let engine = guest::engine(false)?;
    let started = Instant::now();
    let instrumented = wasmtime::Module::new(&engine, &instrumented)?;
    eprintln!(
        "compiled the instrumented module in {:?}",
        started.elapsed()
    );
    let mut store = guest::store(&engine, stdlib)?;
    let instance = guest::linker(&engine)?.instantiate(&mut store, &instrumented)?;
    // As wizer runs a reactor: libc's start, then the module's own initialisation (CPython
    // started, the standard library's bootstrap imported); both are gone from the snapshot.
    for entry in ["_initialize", "wizer.initialize"] {
        if let Ok(start) = instance.get_typed_func::<(), ()>(&mut store, entry) {
            start.call(&mut store, ())?;
        }
    }
    for _ in 0..3 {
        let status = guest::turn(&mut store, &instance, guest::TRIVIAL_PLUGIN)?;
        ensure!(
            status == 0,
            "the warm-up plugin failed with status {status}"
        );
    }
    // As the sandbox's runtime ends its pre-initialisation: the collector leaves the
    // snapshot's objects alone, so that it writes none of their pages in an instance.
    for name in preload {
        let status = guest::turn(&mut store, &instance, &format!("import {name}"))?;
        ensure!(status == 0, "importing {name} failed with status {status}");
    }
    let status = guest::turn(
        &mut store,
        &instance,
        "import gc; gc.collect(); gc.freeze()",
    )?;
    ensure!(status == 0, "gc.freeze() failed with status {status}");
    let mut state = Running {
        store: &mut store,
        instance,
    };
    let snapshot = block_on(wizer.snapshot(&context, &mut state))?;
    std::fs::write(output, snapshot)?;
    // A compiled copy of an earlier snapshot written here would be measured in its place.
    match std::fs::remove_file(guest::compiled_path(output)) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error.into()),
        _ => Ok(()),
    }
}

struct Running<'a> {
    store: &'a mut Store<Guest>,
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
            other => panic!("wizer asked for global {name}, which is {other:?}"),
        }
    }

    async fn memory_contents(&mut self, name: &str, contents: impl FnOnce(&[u8]) + Send) {
        let memory = self.instance.get_memory(&mut *self.store, name);
        let memory = memory.unwrap_or_else(|| panic!("wizer asked for memory {name}"));
        contents(memory.data(&*self.store))
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
