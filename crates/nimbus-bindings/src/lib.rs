//! Host-side bindings for the `nimbus:function@0.1.0` package in `wit/`.
//!
//! This is the only `bindgen!` in the workspace. It binds the
//! `service-function` world — the event-function world plus the backend
//! services a function may be granted (`wasi:config/store`,
//! `wasi:logging/logging`). WASI 0.2 imports reuse `wasmtime_wasi`'s
//! generated types (`with:`), so the host links the standard WASI
//! implementation rather than a second copy of its bindings.

mod generated {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "nimbus:function/service-function",
        imports: {
            // Key-value calls can fail on the host side (a full resource
            // table, a backend task that died): those trap rather than
            // being squeezed into the guest-visible error.
            "wasi:keyvalue/store": async | trappable,
            "wasi:keyvalue/atomics": async | trappable,
            "wasi:keyvalue/batch": async | trappable,
            "wasi:blobstore": async | trappable,
            "wasmcloud:messaging": async | trappable,
            // A guest that logs on past its cap is ended (see nimbus-core's
            // logs.rs), which needs a trap from `log`.
            "wasi:logging/logging": async | trappable,
            default: async,
        },
        exports: { default: async },
        with: {
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
            "wasi:random": wasmtime_wasi::p2::bindings::random,
            "wasi:cli": wasmtime_wasi::p2::bindings::cli,
            "wasi:keyvalue/store.bucket": crate::KvBucket,
            "wasi:blobstore/container.container": crate::BlobContainer,
            "wasi:blobstore/container.stream-object-names": crate::BlobNames,
            "wasi:blobstore/types.outgoing-value": crate::OutgoingValue,
            "wasi:blobstore/types.incoming-value": crate::IncomingValue,
            "wasmcloud:messaging/types.client": crate::MessagingClient,
            "wasmcloud:messaging/types.message": crate::Message,
        },
        require_store_data_send: true,
    });
}

pub use generated::exports::nimbus::function::handler;
pub use generated::nimbus::function::context;
pub use generated::nimbus::function::types::{Error as GuestError, Event, Response};
pub use generated::wasi::config::store as config;
pub use generated::wasi::logging::logging;

/// `wasi:keyvalue` host traits (`store`, `atomics`, `batch`).
pub mod kv {
    pub use super::generated::wasi::keyvalue::{atomics, batch, store};
}

/// `wasi:blobstore` host traits (`blobstore`, `container`, `types`).
pub mod blob {
    pub use super::generated::wasi::blobstore::{blobstore, container, types};
}

/// `wasmcloud:messaging` host traits (`producer`, `types`).
pub mod messaging {
    pub use super::generated::wasmcloud::messaging::{producer, types};
}

/// A `wasi:blobstore/container.container`: a granted container of the
/// invocation's tenant.
#[derive(Debug)]
pub struct BlobContainer {
    pub name: String,
}

/// A `stream-object-names`: a listing read page by page from the backend.
#[derive(Debug)]
pub struct BlobNames {
    pub container: String,
    /// The last name returned; the next page starts after it.
    pub after: Option<String>,
    pub done: bool,
}

/// A `wasi:blobstore/types.outgoing-value`: bytes spooled to disk by its
/// output stream, committed by `finish` to where `write-data` pointed it.
#[derive(Debug)]
pub struct OutgoingValue {
    /// Shared with the output stream while the guest holds it.
    pub spool: std::sync::Arc<std::sync::Mutex<Option<nimbus_blob::Spool>>>,
    pub body_taken: bool,
    /// Set by `container.write-data`: the container and object name.
    pub target: Option<(String, String)>,
}

/// A `wasi:blobstore/types.incoming-value`: an open range of an object.
#[derive(Debug)]
pub struct IncomingValue {
    pub reader: nimbus_blob::ObjectReader,
}

/// A `wasmcloud:messaging/types.client`.
#[derive(Debug)]
pub struct MessagingClient {
    pub name: String,
}

/// A `wasmcloud:messaging/types.message` built by the guest.
#[derive(Debug, Default)]
pub struct Message {
    pub data: Vec<u8>,
    pub content_type: Option<String>,
    pub metadata: Vec<(String, String)>,
    pub topic: Option<String>,
}

/// A `wasi:keyvalue/store.bucket` handed to a guest: an open, granted store
/// of the invocation's tenant.
#[derive(Debug)]
pub struct KvBucket {
    pub store: String,
}
pub use generated::{ServiceFunction as Function, ServiceFunctionPre as FunctionPre};

/// The fully qualified name of the interface every function must export.
pub const HANDLER_INTERFACE: &str = "nimbus:function/handler@0.1.0";

/// The types-only interface functions import alongside the handler.
pub const TYPES_INTERFACE: &str = "nimbus:function/types@0.1.0";
