//! Host bindings generated from `guest-sdk/wit/plugin.wit`.

wasmtime::component::bindgen!({
    path: "../../guest-sdk/wit",
    world: "python-runtime",
    imports: { default: async | trappable },
    exports: { default: async },
});

pub use exports::sluice::plugin::loader;
pub use sluice::plugin::host;
pub use sluice::plugin::types;
