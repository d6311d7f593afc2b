//! The state each plugin's store carries: its WASI context, its files and memory, and
//! the current call's ([`CallState`], shared with the pyo3 runtime).

use crate::files::OpenFiles;
use crate::output::CapturedOutput;
use crate::scratch::Scratch;
use crate::store_limits::MemoryLimiter;
use sluice_door::CallState;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Everything a plugin's store holds.
pub(crate) struct HostState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) files: OpenFiles,
    /// Its `/tmp`, and what the call has written there.
    pub(crate) scratch: Scratch,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) stdout: CapturedOutput,
    pub(crate) stderr: CapturedOutput,
    pub(crate) call: CallState,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
