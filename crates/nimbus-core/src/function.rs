//! A deployed function: its compiled component, limits and resolved
//! grants, and the results of invoking it. The invocation path itself is in
//! `invoke.rs`.

use std::sync::Arc;

use bytes::Bytes;
use nimbus_bindings::FunctionPre;
use tokio::sync::Semaphore;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::event::Response;
use crate::limits::Limits;
use crate::logs::Logs;
use crate::metrics::FunctionMeters;
use crate::runtime::Runtime;
use crate::state::{Grants, InvocationState};
use crate::tenant::Tenant;
use crate::usage::UsageRecord;

/// A deployed function. Cheap to clone; keeps its compiled component alive
/// even if the function is replaced or removed, so in-flight invocations
/// finish on the version they started with.
#[derive(Clone)]
pub struct FunctionHandle {
    pub(crate) inner: Arc<FunctionInner>,
}

pub(crate) struct FunctionInner {
    pub runtime: Arc<Runtime>,
    pub tenant: Arc<Tenant>,
    pub name: Arc<str>,
    /// The immutable version this handle runs (1, 2, …).
    pub version: u32,
    pub kind: Kind,
    /// Kept to rebuild the handle when the tenant's limits change.
    pub component: wasmtime::component::Component,
    pub config: crate::limits::FunctionConfig,
    /// The tenant's limits with this function's overrides applied.
    pub limits: Limits,
    /// This function's own concurrency slots, if it overrides the tenant's.
    pub slots: Option<Arc<Semaphore>>,
    /// What each capability made of the function's grants.
    pub grants: Arc<Grants>,
    pub meters: Arc<FunctionMeters>,
    /// This version's invocations, for `nimbus_function_version_invocations_total`.
    pub version_invocations: Arc<std::sync::atomic::AtomicU64>,
    /// Deploy's notes on imports nothing is granted for.
    pub ungranted: Vec<String>,
}

/// Which world a deployed component serves, with its pre-instantiation.
#[derive(Clone)]
pub(crate) enum Kind {
    /// `nimbus:function/handler`: CloudEvents in, response out.
    Event(FunctionPre<InvocationState>),
    /// `wasi:http/incoming-handler`: a standard `wasi:http/proxy` guest.
    Http(ProxyPre<InvocationState>),
    /// Both exports (the SDKs' `app` world): HTTP requests go to
    /// `incoming-handler`, trigger events to `handler`, as one Lambda
    /// function serves its URL and its event sources.
    Both {
        event: FunctionPre<InvocationState>,
        http: ProxyPre<InvocationState>,
    },
}

impl std::fmt::Debug for FunctionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionHandle")
            .field("tenant", &self.inner.tenant.name)
            .field("function", &self.inner.name)
            .field("version", &self.inner.version)
            .finish()
    }
}

impl FunctionHandle {
    pub fn tenant(&self) -> &str {
        &self.inner.tenant.name
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The immutable version this handle runs.
    pub fn version(&self) -> u32 {
        self.inner.version
    }

    /// `"http"`, `"event"` or `"http+event"`: which exports it serves.
    pub fn kind(&self) -> &'static str {
        match (self.is_http(), self.handles_events()) {
            (true, true) => "http+event",
            (true, false) => "http",
            _ => "event",
        }
    }

    /// Whether this function serves HTTP requests with its
    /// `wasi:http/incoming-handler` export (use [`Self::invoke_http`]).
    pub fn is_http(&self) -> bool {
        matches!(self.inner.kind, Kind::Http(_) | Kind::Both { .. })
    }

    /// Whether this function takes events with its `nimbus:function/handler`
    /// export (use [`Self::invoke`]); a component may export both.
    pub fn handles_events(&self) -> bool {
        matches!(self.inner.kind, Kind::Event(_) | Kind::Both { .. })
    }

    /// Imports the function's grants leave nothing to reach, one note each
    /// (naming the import and the key that grants it): their calls are
    /// denied at run time. Empty when every import is usable.
    pub fn ungranted_imports(&self) -> &[String] {
        &self.inner.ungranted
    }

    /// The limits invocations of this function run under.
    pub fn limits(&self) -> Limits {
        self.inner.limits
    }
}

/// A successful invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub response: Response,
    pub usage: UsageRecord,
    pub logs: Logs,
}

/// A successful invocation of an HTTP function: the guest's response, body
/// buffered.
#[derive(Debug)]
pub struct HttpInvocation {
    pub response: http::Response<Bytes>,
    pub usage: UsageRecord,
    pub logs: Logs,
}
