//! A restart: the deployment registry's tenants and routes are in memory
//! as soon as the host is built; every recorded version then loads in the
//! background on the guest threads — from the compile cache when it holds
//! the artifact (no compiling, not even reading the component), compiled
//! otherwise — versions an alias points at first. A request for a version
//! still loading waits for it ([`Host::function_ready`]).

use std::collections::HashMap;
use std::sync::Arc;

use wasmtime::Engine;
use wasmtime::component::Component;

use crate::compile_cache::{CompileCache, load_by_digest};
use crate::deploy::{Built, compile, link, make_handle};
use crate::error::Error;
use crate::function::FunctionHandle;
use crate::host::Host;
use crate::registry::{Snapshot, VersionRecord};
use crate::runtime::GuestThreads;
use crate::state::check_imports;
use crate::versions::{FunctionState, Load, VersionCell};

/// Artifacts being loaded from the compile cache, by component sha256:
/// started while the host's other stores open, so a restart's first
/// response does not wait for the host to be built and then for them.
pub(crate) type Preloads = HashMap<String, tokio::task::JoinHandle<Option<Component>>>;

/// Starts loading, on the guest threads' blocking pool, the cached artifact
/// of every version in `snapshot`, aliased ones first, small before large.
pub(crate) fn preload(
    snapshot: &Snapshot,
    engine: &Engine,
    cache: Option<&Arc<CompileCache>>,
    guests: &GuestThreads,
) -> Preloads {
    let mut preloads = Preloads::new();
    let Some(cache) = cache else {
        return preloads;
    };
    let mut versions: Vec<(bool, &VersionRecord)> = snapshot
        .functions
        .iter()
        .flat_map(|f| {
            f.versions
                .iter()
                .map(move |v| (f.aliases_of(v.version).is_empty(), v))
        })
        .collect();
    versions.sort_by_key(|(unaliased, v)| (*unaliased, v.size));
    for (_, v) in versions {
        let Some(digest) = digest(&v.sha256) else {
            continue;
        };
        if preloads.contains_key(&v.sha256) {
            continue;
        }
        let (engine, cache) = (engine.clone(), cache.clone());
        let task = guests.handle().spawn_blocking(move || {
            let c = cache.load_digest(&engine, &digest)?;
            c.initialize_copy_on_write_image().ok()?;
            Some(c)
        });
        preloads.insert(v.sha256.clone(), task);
    }
    preloads
}

fn digest(hex: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if hex.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

pub(crate) struct Job {
    /// The artifact's preload, for the first version with its sha256.
    pub(crate) preload: Option<tokio::task::JoinHandle<Option<Component>>>,
    pub(crate) aliased: bool,
    pub(crate) tenant: String,
    pub(crate) function: String,
    pub(crate) version: VersionRecord,
    pub(crate) cell: Arc<VersionCell>,
}

impl Host {
    pub(crate) fn restore(&self, snap: Snapshot, mut preloads: Preloads) {
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
                    preload: preloads.remove(&v.sha256),
                    aliased: !f.aliases_of(v.version).is_empty(),
                    tenant: f.tenant.clone(),
                    function: f.name.clone(),
                    version: v.clone(),
                    cell,
                });
            }
            self.install(Arc::new(state));
        }
        self.spawn_loads(jobs, true);
    }

    /// Loads each job's version on the guest threads, aliased versions
    /// first (they serve requests), small before large (a cache miss
    /// compiles in this order). `restoring`: a restart's, counted in
    /// [`Host::restored`].
    pub(crate) fn spawn_loads(&self, mut jobs: Vec<Job>, restoring: bool) {
        jobs.sort_by_key(|j| (!j.aliased, j.version.size));
        self.inner.loading.send_modify(|n| *n += jobs.len());
        if restoring {
            self.inner.restoring.send_modify(|n| *n += jobs.len());
        }
        let guests = self.inner.runtime.guests.handle().clone();
        for mut job in jobs {
            let host = self.clone();
            guests.spawn(async move {
                let loaded = host.load_version(&mut job).await;
                if let Err(e) = &loaded {
                    tracing::error!(tenant = %job.tenant, function = %job.function, version = job.version.version, "not loaded: {e}");
                }
                job.cell.state.send_replace(match loaded {
                    Ok(h) => Load::Ready(h),
                    Err(e) => Load::Failed(e.to_string().into()),
                });
                host.inner.loading.send_modify(|n| *n -= 1);
                if restoring {
                    host.inner.restoring.send_modify(|n| *n -= 1);
                }
            });
        }
    }

    async fn load_version(&self, job: &mut Job) -> Result<FunctionHandle, Error> {
        let rt = self.inner.runtime.clone();
        let v = &job.version;
        let digest = digest(&v.sha256)
            .ok_or_else(|| Error::Registry(format!("bad sha256 {:?}", v.sha256)))?;
        let preloaded = match job.preload.take() {
            Some(task) => task.await.ok().flatten(),
            None => None,
        };
        if preloaded.is_some() {
            rt.metrics.cache_hit();
        }
        let cached = if preloaded.is_some() {
            preloaded
        } else {
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
