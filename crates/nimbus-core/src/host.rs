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
use crate::logs::InvocationLogs;
use crate::registry::{DeploymentRegistry, RouteRecord};
use crate::runtime::Runtime;
use crate::tenant::Tenant;
use crate::versions::{FunctionState, Selector};

pub(crate) struct HostInner {
    pub(crate) runtime: Arc<Runtime>,
    pub(crate) registry: prometheus::Registry,
    pub(crate) tenants: DashMap<Arc<str>, Arc<Tenant>>,
    /// Tenants `add_tenant` registered in this process (a second call is
    /// refused); tenants restored from the registry may be declared again.
    pub(crate) declared: DashMap<Arc<str>, ()>,
    pub(crate) functions: DashMap<(Arc<str>, Arc<str>), Arc<FunctionState>>,
    /// Where deployments are recorded before they show in memory.
    pub(crate) deployments: Arc<dyn DeploymentRegistry>,
    /// Registry changes, one at a time, so none is lost to another.
    pub(crate) changes: tokio::sync::Mutex<()>,
    /// Versions (and declared functions) loading now.
    pub(crate) loading: tokio::sync::watch::Sender<usize>,
    /// Of those, the registry's versions a restart is loading.
    pub(crate) restoring: tokio::sync::watch::Sender<usize>,
    /// Gateway routes created through the admin API.
    pub(crate) routes: std::sync::RwLock<Vec<RouteRecord>>,
    /// Bumped by every change of `routes`, so a gateway notices one made
    /// elsewhere (another node of a cluster) without being told.
    pub(crate) routes_generation: std::sync::atomic::AtomicU64,
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
    pub(crate) fn new(
        runtime: Arc<Runtime>,
        registry: prometheus::Registry,
        deployments: Arc<dyn DeploymentRegistry>,
    ) -> Self {
        Self {
            inner: Arc::new(HostInner {
                runtime,
                registry,
                tenants: DashMap::new(),
                declared: DashMap::new(),
                functions: DashMap::new(),
                deployments,
                changes: tokio::sync::Mutex::new(()),
                loading: tokio::sync::watch::Sender::new(0),
                restoring: tokio::sync::watch::Sender::new(0),
                routes: std::sync::RwLock::new(Vec::new()),
                routes_generation: std::sync::atomic::AtomicU64::new(0),
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

    pub(crate) fn tenant(&self, name: &str) -> Result<Arc<Tenant>, Error> {
        self.inner
            .tenants
            .get(name)
            .map(|t| t.clone())
            .ok_or_else(|| Error::NotFound(format!("tenant `{name}`")))
    }

    /// The version of a deployed function its `live` alias points at (for
    /// a split, the one this call is routed to).
    pub fn function(&self, tenant: &str, name: &str) -> Result<FunctionHandle, Error> {
        self.function_at(tenant, name, &Selector::Live)
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

    /// Removes a function, every version and alias; in-flight invocations
    /// finish.
    pub async fn remove_function(&self, tenant: &str, name: &str) -> Result<(), Error> {
        let _one_at_a_time = self.inner.changes.lock().await;
        let key = (Arc::from(tenant), Arc::from(name));
        if !self.inner.functions.contains_key(&key) {
            return Err(Error::NotFound(format!(
                "function `{name}` of tenant `{tenant}`"
            )));
        }
        let (t, n) = (tenant.to_string(), name.to_string());
        self.registry_call(move |r| r.delete_function(&t, &n))
            .await?;
        self.inner.functions.remove(&key);
        let (host, t, n) = (self.clone(), tenant.to_string(), name.to_string());
        let _ = tokio::task::spawn_blocking(move || host.delete_function_logs(&t, &n)).await;
        Ok(())
    }

    /// Changes with every change of [`Self::routes`].
    pub fn routes_generation(&self) -> u64 {
        self.inner
            .routes_generation
            .load(std::sync::atomic::Ordering::Acquire)
    }

    pub(crate) fn routes_changed(&self) {
        self.inner
            .routes_generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Routes created through the admin API (recorded in the registry).
    pub fn routes(&self) -> Vec<RouteRecord> {
        self.inner
            .routes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Adds a route (replacing one with the same host and path), recorded.
    pub async fn put_route(&self, route: RouteRecord) -> Result<(), Error> {
        self.tenant(&route.tenant)?;
        let _one_at_a_time = self.inner.changes.lock().await;
        let saved = route.clone();
        self.registry_call(move |r| r.put_route(&saved)).await?;
        let mut routes = self
            .inner
            .routes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        routes.retain(|r| !(r.host == route.host && r.path == route.path));
        routes.push(route);
        drop(routes);
        self.routes_changed();
        Ok(())
    }

    /// Removes the route with that host and path.
    pub async fn delete_route(&self, host: Option<&str>, path: &str) -> Result<(), Error> {
        let _one_at_a_time = self.inner.changes.lock().await;
        let (h, p) = (host.map(String::from), path.to_string());
        if !self
            .registry_call(move |r| r.delete_route(h.as_deref(), &p))
            .await?
        {
            return Err(Error::NotFound(format!("route {path}")));
        }
        self.inner
            .routes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|r| !(r.host.as_deref() == host && r.path == path));
        self.routes_changed();
        Ok(())
    }

    /// The blob store behind `wasi:blobstore` and the storage API.
    pub fn blob_store(&self) -> Arc<dyn BlobBackend> {
        self.inner.runtime.services.blob.clone()
    }

    /// Each tenant's stored bytes now, key-value and blobs: what storage is
    /// billed from ([`crate::ledger::StorageSample`]). A tenant a backend
    /// cannot answer for is left out (logged), never reported as empty.
    /// Blocking (the backends may wait on disk or the network).
    pub fn stored_bytes(&self) -> Vec<(String, u64, u64)> {
        let services = &self.inner.runtime.services;
        let mut tenants: Vec<String> = self
            .inner
            .tenants
            .iter()
            .map(|t| t.key().to_string())
            .collect();
        tenants.sort();
        tenants
            .into_iter()
            .filter_map(|t| {
                let kv = services.kv.stored_bytes(&t);
                let blob = services.blob.stored_bytes(&t);
                match (kv, blob) {
                    (Ok(kv), Ok(blob)) => Some((t, kv, blob)),
                    (kv, blob) => {
                        tracing::warn!(tenant = %t, kv = ?kv.err(), blob = ?blob.err(), "storage sample: a backend did not answer");
                        None
                    }
                }
            })
            .collect()
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
