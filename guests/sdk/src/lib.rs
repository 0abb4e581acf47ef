//! Bindings for the `nimbus:function@0.1.0` world, shared by every guest so
//! that the WIT is parsed and bound in one place.
//!
//! ```ignore
//! use nimbus_guest::{Event, Guest, HandlerError, Response};
//! struct Echo;
//! impl Guest for Echo {
//!     fn handle(event: Event) -> Result<Response, HandlerError> {
//!         Ok(Response { content_type: event.content_type, data: event.data })
//!     }
//! }
//! nimbus_guest::export!(Echo);
//! ```

wit_bindgen::generate!({
    path: "../../wit",
    // The superset world: a guest imports only the services it calls, so
    // one that uses neither config nor logging is a plain `function`.
    world: "nimbus:function/service-function",
    generate_all,
    pub_export_macro: true,
    default_bindings_module: "nimbus_guest",
});

pub use exports::nimbus::function::handler::Guest;
pub use nimbus::function::types::{Error as HandlerError, Event, Response};

/// `wasi:blobstore`: the blob containers granted to this function.
pub use wasi::blobstore;
/// `wasi:config/store`: the configuration values granted to this function.
pub use wasi::config::store as config;
/// `wasi:io/streams`: the streams that carry blob bodies.
pub use wasi::io::streams;
/// `wasi:keyvalue`: the key-value stores granted to this function.
pub use wasi::keyvalue;
/// `wasi:logging/logging`: structured logs kept with the invocation.
pub use wasi::logging::logging;
/// `wasmcloud:messaging`: publishing to the queue topics granted to this function.
pub use wasmcloud::messaging;

impl Event {
    /// The value of extension attribute `name`, if the producer set it.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}
