//! Deploying a function: validate the bytes, compile them off the async
//! runtime, check the component's imports against its grants and its
//! exports against the worlds Nimbus serves, resolve the grants, and
//! publish the new version (`versions.rs` has versions and aliases).

use std::sync::Arc;

use nimbus_bindings::FunctionPre;
use tokio::sync::Semaphore;
use wasmtime::component::Component;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use sha2::{Digest, Sha256};

use crate::capability::DeployCx;
use crate::compile_cache::load_or_compile;
use crate::error::Error;
use crate::function::{FunctionHandle, FunctionInner, Kind};
use crate::host::Host;
use crate::inspect::inspect;
use crate::limits::FunctionConfig;
use crate::registry::{FunctionRecord, VersionRecord, Weighted};
use crate::runtime::Runtime;
use crate::state::{Grants, check_imports};
use crate::tenant::{Tenant, check_name};
use crate::versions::{FunctionState, LIVE, Selector, VersionCell, move_alias, prune};

const WASM_MAGIC: &[u8; 4] = b"\0asm";
const CORE_MODULE_VERSION: [u8; 4] = [1, 0, 0, 0];

/// Prefix of the export that makes a component an HTTP function (any 0.2.x).
const HTTP_HANDLER_PREFIX: &str = "wasi:http/incoming-handler@0.2.";

impl Host {
    /// Validates and compiles `bytes` (off the async runtime), publishes
    /// them as the tenant's function `name`'s next version and points its
    /// `live` alias at it. In-flight invocations of the previous version
    /// finish on it.
    ///
    /// Refused with [`Error::InvalidComponent`], naming the problem: bytes
    /// over the size limit, not wasm, a core module rather than a component,
    /// no `nimbus:function/handler` export (or the wrong signature), or an
    /// import the host does not grant. Only wasm is accepted: a precompiled
    /// artifact is never loaded from tenant input.
    pub async fn deploy(
        &self,
        tenant: &str,
        name: &str,
        bytes: &[u8],
    ) -> Result<FunctionHandle, Error> {
        self.deploy_with(tenant, name, bytes, FunctionConfig::default())
            .await
    }

    /// [`Self::deploy`] with per-function limit overrides and grants
    /// ([`FunctionConfig`], or just [`crate::FunctionLimits`]).
    pub async fn deploy_with(
        &self,
        tenant: &str,
        name: &str,
        bytes: &[u8],
        spec: impl Into<FunctionConfig>,
    ) -> Result<FunctionHandle, Error> {
        self.publish(tenant, name, bytes, spec, LIVE).await
    }

    /// [`Self::deploy_with`], pointing `alias` (created if new) at the
    /// version rather than `live`. Bytes and config identical to the
    /// newest version's publish nothing new: the alias moves to that
    /// version.
    pub async fn publish(
        &self,
        tenant: &str,
        name: &str,
        bytes: &[u8],
        spec: impl Into<FunctionConfig>,
        alias: &str,
    ) -> Result<FunctionHandle, Error> {
        self.publish_inner(tenant, name, bytes, spec.into(), alias, false)
            .await
    }

    /// What a config file does at each start: publishes `bytes` as a new
    /// version moving `live` only if they (or the config) differ from the
    /// newest version; otherwise aliases stay where they are (a rollback
    /// made through the admin API outlives the restart).
    pub async fn declare_function(
        &self,
        tenant: &str,
        name: &str,
        bytes: &[u8],
        spec: impl Into<FunctionConfig>,
    ) -> Result<FunctionHandle, Error> {
        self.publish_inner(tenant, name, bytes, spec.into(), LIVE, true)
            .await
    }

    async fn publish_inner(
        &self,
        tenant: &str,
        name: &str,
        bytes: &[u8],
        spec: FunctionConfig,
        alias: &str,
        declared: bool,
    ) -> Result<FunctionHandle, Error> {
        let tenant_now = self.tenant(tenant)?;
        check_name("function", name)?;
        check_name("alias", alias)?;
        let rt = self.inner.runtime.clone();
        let limits = spec.limits.apply(tenant_now.limits);
        rt.check_limits(&tenant_now.name, &limits)?;
        check_bytes(bytes, rt.max_component_bytes).map_err(Error::InvalidComponent)?;
        let sha = hex(&Sha256::digest(bytes));
        if let Some(newest) = self
            .state(tenant, name)
            .and_then(|s| s.record.versions.last().cloned())
            && newest.sha256 == sha
            && newest.config == spec
        {
            let v = newest.version;
            if !declared {
                self.set_alias(
                    tenant,
                    name,
                    alias,
                    vec![Weighted {
                        version: v,
                        weight: 100,
                    }],
                )
                .await?;
            }
            let wait = limits.timeout.max(std::time::Duration::from_secs(60));
            return self
                .function_ready(tenant, name, &Selector::Version(v), wait)
                .await;
        }
        // Everything the bytes can tell is checked before Cranelift runs.
        let interface = inspect(bytes).map_err(Error::InvalidComponent)?;
        let ungranted = check_imports(interface.imports.iter().map(String::as_str), &spec)
            .map_err(Error::InvalidComponent)?;
        world(&interface.exports).map_err(Error::InvalidComponent)?;
        let component = compile(&rt, bytes.to_vec()).await?;
        let (kind, grants) = link(&rt, &tenant_now.name, name, &component, &spec).await?;

        let _one_at_a_time = self.inner.changes.lock().await;
        let previous = self.state(tenant, name);
        let mut record = previous.as_ref().map_or_else(
            || FunctionRecord {
                tenant: tenant.to_string(),
                name: name.to_string(),
                public: false,
                next_version: 1,
                versions: Vec::new(),
                aliases: Default::default(),
            },
            |s| s.record.clone(),
        );
        let version = record.next_version;
        record.next_version += 1;
        record.versions.push(VersionRecord {
            version,
            sha256: sha.clone(),
            size: bytes.len() as u64,
            created_at: now_rfc3339(),
            config: spec.clone(),
        });
        move_alias(
            &mut record,
            alias,
            vec![Weighted {
                version,
                weight: 100,
            }],
        );
        prune(&mut record);
        let (saved, owned) = (record.clone(), bytes.to_vec());
        self.registry_call(move |r| r.put_function(&saved, Some((&sha, &owned))))
            .await?;

        // The tenant as it is now: its limits may have changed meanwhile.
        let tenant = self.tenant(tenant)?;
        let handle = make_handle(
            &rt,
            tenant,
            name,
            version,
            Built {
                component,
                kind,
                grants,
                config: spec,
                ungranted,
            },
        );
        let mut next =
            previous.map_or_else(|| FunctionState::new(record.clone()), |s| (*s).clone());
        next.versions
            .insert(version, VersionCell::ready(handle.clone()));
        next.versions.retain(|n, _| record.version(*n).is_some());
        next.record = record;
        self.install(Arc::new(next));
        tracing::info!(tenant = %handle.tenant(), function = name, version, alias, "deployed");
        for note in handle.ungranted_imports() {
            tracing::warn!(tenant = %handle.tenant(), function = name, "{note}");
        }
        Ok(handle)
    }
}

/// A version compiled and linked, ready to become a handle.
pub(crate) struct Built {
    pub(crate) component: Component,
    pub(crate) kind: Kind,
    pub(crate) grants: Arc<Grants>,
    pub(crate) config: FunctionConfig,
    pub(crate) ungranted: Vec<String>,
}

/// Compiles `bytes` (or loads them from the compile cache) on the blocking
/// pool, at most [`crate::runtime::compile_parallelism`] at a time.
pub(crate) async fn compile(rt: &Arc<Runtime>, bytes: Vec<u8>) -> Result<Component, Error> {
    let _slot = rt
        .compile_slots
        .acquire()
        .await
        .map_err(|_| Error::Config("compiler closed".into()))?;
    let rt = rt.clone();
    tokio::task::spawn_blocking(move || -> wasmtime::Result<Component> {
        let cache = rt.compile_cache.as_deref();
        let component = load_or_compile(&rt.engine, cache, &bytes, &rt.metrics)?;
        // Building the copy-on-write memory images here, off the
        // invocation path, halves the first invocation's latency
        // (measured: benches/invoke.rs, group `deploy`), for a
        // loaded artifact as for a compiled one.
        component.initialize_copy_on_write_image()?;
        wasmtime::Result::Ok(component)
    })
    .await
    .map_err(|e| Error::InvalidComponent(format!("compilation panicked: {e}")))?
    .map_err(|e| Error::InvalidComponent(format!("failed to compile: {e:#}")))
}

/// Resolves the grants and pre-links `component` for the worlds it exports.
pub(crate) async fn link(
    rt: &Arc<Runtime>,
    tenant: &Arc<str>,
    name: &str,
    component: &Component,
    spec: &FunctionConfig,
) -> Result<(Kind, Arc<Grants>), Error> {
    let exports: Vec<String> = component
        .component_type()
        .exports(&rt.engine)
        .map(|(n, _)| n.to_string())
        .collect();
    let world = world(&exports).map_err(Error::InvalidComponent)?;
    let grants = Grants::resolve(&DeployCx {
        services: &rt.services,
        tenant,
        function: name,
        spec,
    })
    .await?;
    let pre = rt
        .linker
        .instantiate_pre(component)
        .map_err(|e| Error::InvalidComponent(format!("cannot link its imports: {e:#}")))?;
    let handler = nimbus_bindings::HANDLER_INTERFACE;
    let event = |pre| {
        FunctionPre::new(pre).map_err(|e| {
            Error::InvalidComponent(format!("its `{handler}` export does not match: {e:#}"))
        })
    };
    let http = |pre| {
        ProxyPre::new(pre).map_err(|e| {
            Error::InvalidComponent(format!(
                "its `wasi:http/incoming-handler` export does not match: {e:#}"
            ))
        })
    };
    let kind = match world {
        World::Event => Kind::Event(event(pre)?),
        World::Http => Kind::Http(http(pre)?),
        World::Both => Kind::Both {
            event: event(pre.clone())?,
            http: http(pre)?,
        },
    };
    Ok((kind, Arc::new(grants)))
}

/// The handle of `version` of `tenant`'s `name`.
pub(crate) fn make_handle(
    rt: &Arc<Runtime>,
    tenant: Arc<Tenant>,
    name: &str,
    version: u32,
    built: Built,
) -> FunctionHandle {
    let meters = rt.metrics.function(&tenant.name, name);
    let version_invocations = meters.version(version);
    let limits = built.config.limits.apply(tenant.limits);
    FunctionHandle {
        inner: Arc::new(FunctionInner {
            runtime: rt.clone(),
            tenant,
            name: name.into(),
            version,
            kind: built.kind,
            component: built.component,
            limits,
            slots: built
                .config
                .limits
                .max_concurrency
                .map(|n| Arc::new(Semaphore::new(n as usize))),
            config: built.config,
            grants: built.grants,
            meters,
            version_invocations,
            ungranted: built.ungranted,
        }),
    }
}

impl FunctionHandle {
    /// The same version under `tenant` as it is now (after its limits
    /// changed): nothing is compiled or linked again.
    pub(crate) fn rebuilt(&self, tenant: Arc<Tenant>) -> FunctionHandle {
        let f = &self.inner;
        let limits = f.config.limits.apply(tenant.limits);
        FunctionHandle {
            inner: Arc::new(FunctionInner {
                runtime: f.runtime.clone(),
                tenant,
                name: f.name.clone(),
                version: f.version,
                kind: f.kind.clone(),
                component: f.component.clone(),
                config: f.config.clone(),
                limits,
                slots: f.slots.clone(),
                grants: f.grants.clone(),
                meters: f.meters.clone(),
                version_invocations: f.version_invocations.clone(),
                ungranted: f.ungranted.clone(),
            }),
        }
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

pub(crate) fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// What can be told from the bytes alone, before compiling.
fn check_bytes(bytes: &[u8], max_bytes: usize) -> Result<(), String> {
    if bytes.len() > max_bytes {
        return Err(format!(
            "the component is {} bytes, above the limit of {max_bytes} bytes",
            bytes.len(),
        ));
    }
    if bytes.len() < 8 || &bytes[..4] != WASM_MAGIC {
        return Err(
            "not a WebAssembly binary (it does not start with the `\\0asm` magic number)".into(),
        );
    }
    if bytes[4..8] == CORE_MODULE_VERSION {
        return Err(
            "this is a core WebAssembly module, not a component; build for \
             `wasm32-wasip2` or wrap it with `wasm-tools component new`"
                .into(),
        );
    }
    Ok(())
}

/// Which world a component's exports serve.
enum World {
    Event,
    Http,
    Both,
}

fn world(exports: &[String]) -> Result<World, String> {
    let handler = nimbus_bindings::HANDLER_INTERFACE;
    let exports_any = |prefix: &str| exports.iter().any(|n| n.starts_with(prefix));
    let event = exports_any(handler.rsplit_once('.').map_or(handler, |(p, _)| p));
    match (event, exports_any(HTTP_HANDLER_PREFIX)) {
        (true, true) => return Ok(World::Both),
        (true, false) => return Ok(World::Event),
        (false, true) => return Ok(World::Http),
        (false, false) => {}
    }
    Err(format!(
        "the component does not export `{handler}` or `{HTTP_HANDLER_PREFIX}x` (it exports: {})",
        if exports.is_empty() {
            "nothing".to_string()
        } else {
            exports.join(", ")
        }
    ))
}
