//! Deploying a function: validate the bytes, compile them off the async
//! runtime, check the component's imports against its grants and its
//! exports against the worlds Nimbus serves, resolve the grants, and
//! install the new version.

use std::sync::Arc;

use nimbus_bindings::FunctionPre;
use tokio::sync::Semaphore;
use wasmtime::component::Component;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::capability::DeployCx;
use crate::compile_cache::load_or_compile;
use crate::error::Error;
use crate::function::{FunctionHandle, FunctionInner, Kind};
use crate::host::Host;
use crate::inspect::inspect;
use crate::limits::FunctionConfig;
use crate::state::{Grants, check_imports};
use crate::tenant::check_name;

const WASM_MAGIC: &[u8; 4] = b"\0asm";
const CORE_MODULE_VERSION: [u8; 4] = [1, 0, 0, 0];

/// Prefix of the export that makes a component an HTTP function (any 0.2.x).
const HTTP_HANDLER_PREFIX: &str = "wasi:http/incoming-handler@0.2.";

impl Host {
    /// Validates and compiles `bytes` (off the async runtime), and makes it
    /// tenant's function `name`, replacing any previous version. In-flight
    /// invocations of the old version finish on it.
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
        let spec = spec.into();
        let overrides = spec.limits;
        let tenant = self.tenant(tenant)?;
        check_name("function", name)?;
        let rt = self.inner.runtime.clone();
        let limits = overrides.apply(tenant.limits);
        rt.check_limits(&tenant.name, &limits)?;
        check_bytes(bytes, rt.max_component_bytes).map_err(Error::InvalidComponent)?;
        // Everything the bytes can tell is checked before Cranelift runs.
        let interface = inspect(bytes).map_err(Error::InvalidComponent)?;
        let ungranted = check_imports(interface.imports.iter().map(String::as_str), &spec)
            .map_err(Error::InvalidComponent)?;
        let kind = world(&interface.exports).map_err(Error::InvalidComponent)?;

        let component = {
            let _slot = rt
                .compile_slots
                .acquire()
                .await
                .map_err(|_| Error::Config("compiler closed".into()))?;
            let rt = rt.clone();
            let owned = bytes.to_vec();
            tokio::task::spawn_blocking(move || -> wasmtime::Result<Component> {
                let cache = rt.compile_cache.as_deref();
                let component = load_or_compile(&rt.engine, cache, &owned, &rt.metrics)?;
                // Building the copy-on-write memory images here, off the
                // invocation path, halves the first invocation's latency
                // (measured: benches/invoke.rs, group `deploy`), for a
                // loaded artifact as for a compiled one.
                component.initialize_copy_on_write_image()?;
                wasmtime::Result::Ok(component)
            })
            .await
            .map_err(|e| Error::InvalidComponent(format!("compilation panicked: {e}")))?
            .map_err(|e| Error::InvalidComponent(format!("failed to compile: {e:#}")))?
        };

        let grants = Grants::resolve(&DeployCx {
            services: &rt.services,
            tenant: &tenant.name,
            function: name,
            spec: &spec,
        })
        .await?;
        let pre = rt
            .linker
            .instantiate_pre(&component)
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
        let kind = match kind {
            World::Event => Kind::Event(event(pre)?),
            World::Http => Kind::Http(http(pre)?),
            World::Both => Kind::Both {
                event: event(pre.clone())?,
                http: http(pre)?,
            },
        };

        let meters = rt.metrics.function(&tenant.name, name);
        let handle = FunctionHandle {
            inner: Arc::new(FunctionInner {
                runtime: rt,
                tenant: tenant.clone(),
                name: name.into(),
                kind,
                limits,
                slots: overrides
                    .max_concurrency
                    .map(|n| Arc::new(Semaphore::new(n as usize))),
                grants,
                meters,
                ungranted,
            }),
        };
        self.inner
            .functions
            .insert((tenant.name.clone(), name.into()), handle.clone());
        tracing::info!(tenant = %tenant.name, function = name, "deployed");
        for note in handle.ungranted_imports() {
            tracing::warn!(tenant = %tenant.name, function = name, "{note}");
        }
        Ok(handle)
    }
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
