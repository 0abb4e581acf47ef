//! What a capability is: everything a guest can reach beyond pure
//! computation (WASI, outbound HTTP, key-value, blobs, messaging, config,
//! logging) is one type implementing [`Capability`], in its own module under
//! `capabilities/`, registered with one line in `state.rs`.
//!
//! A capability owns, in one place: the WIT interfaces it links, how a
//! component's import of them is checked against the function's grant at
//! deploy, what the grant resolves to (shared by every invocation of that
//! deployment), the per-invocation state its host functions see, and what
//! that state adds to the usage record and the logs when the invocation
//! ends. Host functions reach only their own slice of the store (through
//! [`Holds`]) plus the invocation's resource table, the way wasmtime's
//! `WasiView` and Spin's factors keep capabilities apart.

use std::future::Future;
use std::sync::Arc;

use wasmtime::component::{Linker, ResourceTable};

use crate::error::Error;
use crate::limits::{FunctionConfig, Limits};
use crate::logs::Logs;
use crate::services::Services;
use crate::usage::{Cause, UsageRecord};

/// One capability's per-invocation state (the implementing type itself).
pub(crate) trait Capability: Sized + Send + 'static {
    /// What deploy made of the function's grant, shared by its invocations.
    type Grant: Send + Sync + 'static;

    /// Interfaces this capability links, without a version
    /// (`wasi:keyvalue/store`). A component's import of one of them is
    /// checked by [`Self::check_import`]; an import no capability lists is
    /// refused at deploy.
    const INTERFACES: &'static [&'static str];

    /// Links [`Self::INTERFACES`] into `linker`; host functions reach this
    /// capability's state through [`Holds`].
    fn add_to_linker<T: Holds<Self>>(linker: &mut Linker<T>) -> wasmtime::Result<()>;

    /// At deploy, for each import in [`Self::INTERFACES`]: a note when the
    /// function is granted nothing the import could reach. Not a refusal:
    /// componentize-py and componentize-js import every interface of their
    /// world whether the code calls it or not, so such calls are denied at
    /// run time (the interface's own error, counted in `denied_calls`) and
    /// the deploy reports the note.
    fn ungranted(_spec: &FunctionConfig, _import: &str) -> Option<String> {
        None
    }

    /// At deploy: validates the function's grant and prepares what it needs
    /// (directories, containers).
    fn grant(cx: &DeployCx<'_>) -> impl Future<Output = Result<Self::Grant, Error>> + Send;

    /// At the start of each invocation. An `Err` fails that invocation (a
    /// trap outcome naming the error), never the host.
    fn prepare(grant: &Self::Grant, cx: &InvokeCx<'_>) -> wasmtime::Result<Self>;

    /// When the invocation has ended: what it did, into the usage record
    /// (counts) and the logs (output).
    fn finish(self, usage: &mut UsageRecord, logs: &mut Logs);
}

/// Store data holding capability `C`'s state beside the invocation's
/// resource table (shared by every capability: a blob stream is read
/// through `wasi:io`).
pub(crate) trait Holds<C>: Send + 'static {
    fn parts(&mut self) -> (&mut C, &mut ResourceTable);
}

/// What a capability sees when a function is deployed.
pub(crate) struct DeployCx<'a> {
    pub services: &'a Services,
    pub tenant: &'a Arc<str>,
    pub function: &'a str,
    pub spec: &'a FunctionConfig,
}

/// What a capability sees when an invocation starts.
pub(crate) struct InvokeCx<'a> {
    pub services: &'a Services,
    pub tenant: &'a Arc<str>,
    pub function: &'a Arc<str>,
    pub version: u32,
    pub invocation_id: uuid::Uuid,
    /// When the invocation's wall-clock budget runs out (the same instant
    /// the host's timeout fires at).
    pub deadline: tokio::time::Instant,
    /// The function's limits (tenant limits with its overrides).
    pub limits: &'a Limits,
    pub cause: Cause,
}

/// The bare interface name of an import: `wasi:io/streams@0.2.6` →
/// `wasi:io/streams`.
pub(crate) fn bare(import: &str) -> &str {
    import.split('@').next().unwrap_or(import)
}

/// The usual note on an import whose grant is empty: `what` the function
/// is granted none of, and the `key` that grants it.
pub(crate) fn note_ungranted(granted: bool, import: &str, what: &str, key: &str) -> Option<String> {
    (!granted).then(|| {
        format!(
            "`{import}` is imported but no {what} are granted (declare them in `{key}`); \
             its calls will be denied"
        )
    })
}
