//! The host's public face: tenants, the deployed functions, their logs,
//! and the services triggers and gateways reach through it. Deploying is in
//! `deploy.rs`, invoking in `invoke.rs`.

use std::sync::Arc;

use dashmap::DashMap;
use nimbus_blob::BlobBackend;
use nimbus_queue::QueueBackend;
use uuid::Uuid;

use crate::error::Error;
use crate::event::Event;
use crate::function::{FunctionHandle, Invocation};
use crate::limits::Limits;
use crate::logs::InvocationLogs;
use crate::runtime::Runtime;
use crate::tenant::{Tenant, check_name};

pub(crate) struct HostInner {
    pub(crate) runtime: Arc<Runtime>,
    pub(crate) registry: prometheus::Registry,
    pub(crate) tenants: DashMap<Arc<str>, Arc<Tenant>>,
    pub(crate) functions: DashMap<(Arc<str>, Arc<str>), FunctionHandle>,
}

/// An embeddable, multi-tenant function host. Cheap to clone.
#[derive(Clone)]
pub struct Host {
    pub(crate) inner: Arc<HostInner>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("tenants", &self.inner.tenants.len())
            .field("functions", &self.inner.functions.len())
            .finish_non_exhaustive()
    }
}

impl Host {
    pub(crate) fn new(runtime: Arc<Runtime>, registry: prometheus::Registry) -> Self {
        Self {
            inner: Arc::new(HostInner {
                runtime,
                registry,
                tenants: DashMap::new(),
                functions: DashMap::new(),
            }),
        }
    }

    /// The registry Nimbus's metric families are registered in.
    pub fn registry(&self) -> &prometheus::Registry {
        &self.inner.registry
    }

    /// The registry in Prometheus text exposition format.
    pub fn metrics_text(&self) -> String {
        prometheus::TextEncoder::new()
            .encode_to_string(&self.inner.registry.gather())
            .unwrap_or_else(|e| format!("# metrics encoding failed: {e}\n"))
    }

    /// Registers a tenant. Its functions get `limits`; nothing else is granted.
    pub fn add_tenant(&self, name: &str, limits: Limits) -> Result<(), Error> {
        check_name("tenant", name)?;
        self.inner.runtime.check_limits(name, &limits)?;
        let tenant = Arc::new(Tenant::new(name, limits));
        match self.inner.tenants.entry(tenant.name.clone()) {
            dashmap::Entry::Occupied(_) => Err(Error::TenantExists(name.to_string())),
            dashmap::Entry::Vacant(v) => {
                v.insert(tenant);
                Ok(())
            }
        }
    }

    /// The limits a tenant was registered with.
    pub fn tenant_limits(&self, tenant: &str) -> Result<Limits, Error> {
        Ok(self.tenant(tenant)?.limits)
    }

    pub(crate) fn tenant(&self, name: &str) -> Result<Arc<Tenant>, Error> {
        self.inner
            .tenants
            .get(name)
            .map(|t| t.clone())
            .ok_or_else(|| Error::NotFound(format!("tenant `{name}`")))
    }

    /// The current version of a deployed function.
    pub fn function(&self, tenant: &str, name: &str) -> Result<FunctionHandle, Error> {
        self.inner
            .functions
            .get(&(Arc::from(tenant), Arc::from(name)))
            .map(|f| f.clone())
            .ok_or_else(|| Error::NotFound(format!("function `{name}` of tenant `{tenant}`")))
    }

    /// Names of a tenant's deployed functions, sorted.
    pub fn functions(&self, tenant: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .inner
            .functions
            .iter()
            .filter(|e| &*e.key().0 == tenant)
            .map(|e| e.key().1.to_string())
            .collect();
        names.sort();
        names
    }

    /// Logs of the function's most recent invocations (the last 100 of
    /// those kept: see [`Self::invocation_logs_tail`]), oldest first, or of
    /// one invocation. Blocking: waits for the logs of invocations that
    /// have finished to be committed, then reads them.
    pub fn invocation_logs(
        &self,
        tenant: &str,
        function: &str,
        invocation_id: Option<Uuid>,
    ) -> Vec<InvocationLogs> {
        self.inner
            .runtime
            .logs
            .list(tenant, function, invocation_id, 100)
    }

    /// Logs of the function's last `limit` invocations, oldest first. Kept
    /// are the invocations that wrote output or did not succeed: per
    /// function the last 1000, of the last 7 days, and at most 4 MiB of
    /// output, in `<data_dir>/logs.redb` (in memory without a data
    /// directory). Blocking, as [`Self::invocation_logs`].
    pub fn invocation_logs_tail(
        &self,
        tenant: &str,
        function: &str,
        limit: usize,
    ) -> Vec<InvocationLogs> {
        self.inner.runtime.logs.list(tenant, function, None, limit)
    }

    /// The logs of each of the function's invocations from now on, as soon
    /// as they are committed (what [`Self::invocation_logs`] would then
    /// show). A receiver that falls behind by more than 256 entries gets
    /// `RecvError::Lagged` and goes on with the newest.
    pub fn follow_logs(
        &self,
        tenant: &str,
        function: &str,
    ) -> tokio::sync::broadcast::Receiver<Arc<InvocationLogs>> {
        self.inner.runtime.logs.subscribe(tenant, function)
    }

    /// Deletes the kept logs of a function (those of invocations that
    /// finished before the call included). Blocking.
    pub fn delete_function_logs(&self, tenant: &str, function: &str) {
        self.inner.runtime.logs.delete_function(tenant, function);
    }

    /// Deletes the kept logs of every function of a tenant. Blocking.
    pub fn delete_tenant_logs(&self, tenant: &str) {
        self.inner.runtime.logs.delete_tenant(tenant);
    }

    /// Removes a function; in-flight invocations finish.
    pub fn remove_function(&self, tenant: &str, name: &str) -> Result<(), Error> {
        self.inner
            .functions
            .remove(&(Arc::from(tenant), Arc::from(name)))
            .map(|_| ())
            .ok_or_else(|| Error::NotFound(format!("function `{name}` of tenant `{tenant}`")))
    }

    /// The blob store behind `wasi:blobstore` and the storage API.
    pub fn blob_store(&self) -> Arc<dyn BlobBackend> {
        self.inner.runtime.services.blob.clone()
    }

    /// The durable queues behind `wasmcloud:messaging` and queue triggers.
    pub fn queue_store(&self) -> Arc<dyn QueueBackend> {
        self.inner.runtime.services.queues.clone()
    }

    /// From now on, every object written to `tenant`'s `container` (by a
    /// guest or through [`Self::blob_store`] with an event depth) persists an
    /// object-created event with the object. Counted: each call is undone
    /// by one [`Self::unwatch_container`].
    pub fn watch_container(&self, tenant: &str, container: &str) {
        self.inner
            .runtime
            .services
            .subscriptions
            .add(tenant, container);
    }

    pub fn unwatch_container(&self, tenant: &str, container: &str) {
        self.inner
            .runtime
            .services
            .subscriptions
            .remove(tenant, container);
    }

    /// Whether writes to `tenant`'s `container` raise object-created events.
    pub fn is_watched(&self, tenant: &str, container: &str) -> bool {
        self.inner
            .runtime
            .services
            .subscriptions
            .watched(tenant, container)
    }

    /// Invokes the current version of `tenant`'s `function`.
    pub async fn invoke(
        &self,
        tenant: &str,
        function: &str,
        event: Event,
    ) -> Result<Invocation, Error> {
        self.function(tenant, function)?.invoke(event).await
    }
}
