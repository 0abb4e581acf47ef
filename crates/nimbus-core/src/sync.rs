//! Changes to the deployment registry that another writer made — another
//! node of a cluster sharing one registry — shown in this host's memory.
//!
//! A clustered registry watches its store and hands each change it did not
//! write itself to [`Host::apply_registry_change`]. Nothing is written back:
//! the registry already holds the change. A function's new versions load in
//! the background (from this node's compile cache, or fetched and compiled),
//! and a request for one still loading waits for it, as after a restart.

use std::sync::Arc;

use crate::host::Host;
use crate::registry::{FunctionRecord, RouteRecord, TenantRecord};
use crate::restore::Job;
use crate::versions::{FunctionState, VersionCell};

/// One key of the registry as it is now (`None`: deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryChange {
    Tenant {
        name: String,
        record: Option<TenantRecord>,
    },
    Function {
        tenant: String,
        name: String,
        record: Option<FunctionRecord>,
    },
    Route {
        host: Option<String>,
        path: String,
        record: Option<RouteRecord>,
    },
}

impl Host {
    /// Shows a change the registry already holds. Changes of one key must
    /// come in the order they were made; a change equal to what this host
    /// holds does nothing. `still_current` is asked under the host's change
    /// lock, after any change of this host's own that was under way: false
    /// (the registry has since seen a newer one) drops the change.
    pub async fn apply_registry_change(
        &self,
        change: RegistryChange,
        still_current: impl FnOnce() -> bool,
    ) {
        let _one_at_a_time = self.inner.changes.lock().await;
        if !still_current() {
            return;
        }
        match change {
            RegistryChange::Tenant {
                name,
                record: Some(record),
            } => {
                let same = self
                    .inner
                    .tenants
                    .get(name.as_str())
                    .is_some_and(|t| t.record == record);
                if !same {
                    tracing::info!(tenant = %name, "registry: tenant changed elsewhere");
                    self.apply_tenant(record);
                }
            }
            RegistryChange::Tenant { name, record: None } => {
                if self.inner.tenants.contains_key(name.as_str()) {
                    tracing::info!(tenant = %name, "registry: tenant deleted elsewhere");
                    // The node that deleted it deleted the shared data; this
                    // node's own (files, logs, local stores) goes here.
                    if let Err(e) = self.forget_tenant(&name).await {
                        tracing::error!(tenant = %name, "{e}");
                    }
                }
            }
            RegistryChange::Function {
                record: Some(record),
                ..
            } => self.apply_function(record),
            RegistryChange::Function {
                tenant,
                name,
                record: None,
            } => {
                let key = (Arc::from(tenant.as_str()), Arc::from(name.as_str()));
                if self.inner.functions.remove(&key).is_some() {
                    tracing::info!(%tenant, function = %name, "registry: function deleted elsewhere");
                    let host = self.clone();
                    let _ = tokio::task::spawn_blocking(move || {
                        host.delete_function_logs(&tenant, &name)
                    })
                    .await;
                }
            }
            RegistryChange::Route { host, path, record } => {
                let mut routes = self
                    .inner
                    .routes
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                routes.retain(|r| !(r.host == host && r.path == path));
                routes.extend(record);
                drop(routes);
                self.routes_changed();
            }
        }
    }

    fn apply_function(&self, record: FunctionRecord) {
        let previous = self.state(&record.tenant, &record.name);
        if previous.as_ref().is_some_and(|s| s.record == record) {
            return;
        }
        if !self.inner.tenants.contains_key(record.tenant.as_str()) {
            tracing::warn!(tenant = %record.tenant, function = %record.name, "registry: function of an unknown tenant, not loaded");
            return;
        }
        tracing::info!(tenant = %record.tenant, function = %record.name, "registry: function changed elsewhere");
        let mut next =
            previous.map_or_else(|| FunctionState::new(record.clone()), |s| (*s).clone());
        next.versions.retain(|n, _| record.version(*n).is_some());
        let mut jobs = Vec::new();
        for v in &record.versions {
            if next.versions.contains_key(&v.version) {
                continue;
            }
            let cell = VersionCell::loading();
            next.versions.insert(v.version, cell.clone());
            jobs.push(Job {
                preload: None,
                aliased: !record.aliases_of(v.version).is_empty(),
                tenant: record.tenant.clone(),
                function: record.name.clone(),
                version: v.clone(),
                cell,
            });
        }
        next.record = record;
        self.install(Arc::new(next));
        self.spawn_loads(jobs, false);
    }
}
