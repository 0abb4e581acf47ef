//! Host-side bindings for the `nimbus:function@0.1.0` world in `wit/`.
//!
//! This is the only `bindgen!` in the workspace. WASI imports of the world
//! reuse `wasmtime_wasi`'s generated types (`with:`), so the host links the
//! standard WASI implementation rather than a second copy of its bindings.

mod generated {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "nimbus:function/function",
        imports: { default: async },
        exports: { default: async },
        with: {
            "wasi": wasmtime_wasi::p2::bindings,
        },
        require_store_data_send: true,
    });
}

pub use generated::exports::nimbus::function::handler;
pub use generated::nimbus::function::types::{Error as GuestError, Event, Response};
pub use generated::{Function, FunctionPre};

/// The fully qualified name of the interface every function must export.
pub const HANDLER_INTERFACE: &str = "nimbus:function/handler@0.1.0";

/// The types-only interface functions import alongside the handler.
pub const TYPES_INTERFACE: &str = "nimbus:function/types@0.1.0";
