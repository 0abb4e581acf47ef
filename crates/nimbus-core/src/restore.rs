//! A restart: the deployment registry's tenants and routes are in memory
//! as soon as the host is built; every recorded version then loads in the
//! background on the guest threads — from the compile cache when it holds
//! the artifact (no compiling, not even reading the component), compiled
//! otherwise — versions an alias points at first. A request for a version
//! still loading waits for it ([`Host::function_ready`]).

use std::sync::Arc;

use crate::compile_cache::load_by_digest;
use crate::deploy::{Built, compile, link, make_handle};
use crate::error::Error;
use crate::function::FunctionHandle;
use crate::host::Host;
use crate::registry::VersionRecord;
use crate::state::check_imports;
use crate::versions::{FunctionState, Load, VersionCell};

struct Job {
    aliased: bool,
    tenant: String,
    function: String,
    version: VersionRecord,
    cell: Arc<VersionCell>,
}

impl Host {
    pub(crate) fn restore(&self) -> Result<(), Error> {
        let snap = self
            .inner
            .deployments
            .load()
            .map_err(|e| Error::Registry(e.0))?;
        for t in snap.tenants {
            self.apply_tenant(t);
        }
        *self
            .inner
            .routes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = snap.routes;
        let mut jobs = Vec::new();
        for f in snap.functions {
            if !self.inner.tenants.contains_key(f.tenant.as_str()) {
                tracing::warn!(tenant = %f.tenant, function = %f.name, "registry: function of an unknown tenant, not loaded");
                continue;
            }
            let mut state = FunctionState::new(f.clone());
            for v in &f.versions {
                let cell = VersionCell::loading();
                state.versions.insert(v.version, cell.clone());
                jobs.push(Job {
                    aliased: !f.aliases_of(v.version).is_empty(),
                    tenant: f.tenant.clone(),
                    function: f.name.clone(),
                    version: v.clone(),
                    cell,
                });
            }
            self.install(Arc::new(state));
        }
        // Aliased versions first (they serve requests), small before large (a
        // cache miss compiles in this order).
        jobs.sort_by_key(|j| (!j.aliased, j.version.size));
        self.inner.loading.send_modify(|n| *n += jobs.len());
        let guests = self.inner.runtime.guests.handle().clone();
        for job in jobs {
            let host = self.clone();
            guests.spawn(async move {
                let loaded = host.load_version(&job).await;
                if let Err(e) = &loaded {
                    tracing::error!(tenant = %job.tenant, function = %job.function, version = job.version.version, "not loaded: {e}");
                }
                job.cell.state.send_replace(match loaded {
                    Ok(h) => Load::Ready(h),
                    Err(e) => Load::Failed(e.to_string().into()),
                });
                host.inner.loading.send_modify(|n| *n -= 1);
            });
        }
        Ok(())
    }

    async fn load_version(&self, job: &Job) -> Result<FunctionHandle, Error> {
        let rt = self.inner.runtime.clone();
        let v = &job.version;
        let mut digest = [0u8; 32];
        for (i, byte) in digest.iter_mut().enumerate() {
            *byte = v
                .sha256
                .get(2 * i..2 * i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| Error::Registry(format!("bad sha256 {:?}", v.sha256)))?;
        }
        let cached = {
            let rt = rt.clone();
            tokio::task::spawn_blocking(move || {
                let c = load_by_digest(
                    &rt.engine,
                    rt.compile_cache.as_deref(),
                    &digest,
                    &rt.metrics,
                )?;
                c.initialize_copy_on_write_image().ok()?;
                Some(c)
            })
            .await
            .ok()
            .flatten()
        };
        let component = match cached {
            Some(c) => c,
            None => {
                let sha = v.sha256.clone();
                let bytes = self
                    .registry_call(move |r| r.component(&sha))
                    .await?
                    .ok_or_else(|| {
                        Error::Unavailable(format!(
                            "the registry has no component with sha256 {}",
                            v.sha256
                        ))
                    })?;
                compile(&rt, bytes).await?
            }
        };
        let imports: Vec<String> = component
            .component_type()
            .imports(&rt.engine)
            .map(|(n, _)| n.to_string())
            .collect();
        let ungranted =
            check_imports(imports.iter().map(String::as_str), &v.config).unwrap_or_default();
        let tenant = self.tenant(&job.tenant)?;
        let (kind, grants) = link(&rt, &tenant.name, &job.function, &component, &v.config).await?;
        // The tenant as it is now: its limits may have changed meanwhile.
        let tenant = self.tenant(&job.tenant)?;
        Ok(make_handle(
            &rt,
            tenant,
            &job.function,
            v.version,
            Built {
                component,
                kind,
                grants,
                config: v.config.clone(),
                ungranted,
            },
        ))
    }
}
