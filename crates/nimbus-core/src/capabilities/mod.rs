//! One module per capability; each implements [`crate::capability::Capability`]
//! and is registered in `state.rs`.

pub(crate) mod blob;
pub(crate) mod config;
pub(crate) mod context;
pub(crate) mod kv;
pub(crate) mod logging;
pub(crate) mod messaging;
pub(crate) mod outbound_http;
pub(crate) mod wasi;
