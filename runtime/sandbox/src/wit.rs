//! Host bindings generated from `guest-sdk/wit/runtime.wit`.

use crate::host::HostState;

wasmtime::component::bindgen!({
    path: "../../guest-sdk/wit/runtime.wit",
    world: "python",
    imports: { default: async | trappable },
    exports: { default: async },
});

impl sluice::runtime::door::Host for HostState {
    async fn call(&mut self, message: Vec<u8>) -> wasmtime::Result<Vec<u8>> {
        Ok(self.call.door(message).await?)
    }
}
