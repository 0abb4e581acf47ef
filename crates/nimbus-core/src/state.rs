//! The store data of one invocation, composed of every registered
//! capability's state; and the registry that links, checks, grants,
//! prepares and finishes them all in one place.
//!
//! Adding a capability: write its module under `capabilities/` and add one
//! line to the `capabilities!` list at the bottom of this file.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use wasmtime::ResourceLimiter;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi_http::WasiHttpCtxView;

use crate::capabilities::blob::Blob;
use crate::capabilities::config::Config;
use crate::capabilities::context::Context;
use crate::capabilities::kv::Kv;
use crate::capabilities::logging::Logging;
use crate::capabilities::messaging::Messaging;
use crate::capabilities::outbound_http::OutboundHttp;
use crate::capabilities::wasi::Wasi;
use crate::capability::{Capability, DeployCx, Holds, InvokeCx, bare};
use crate::error::Error;
use crate::limits::FunctionConfig;
use crate::logs::Logs;
use crate::usage::UsageRecord;

/// Store data of one invocation; dropped with the store when it ends.
pub(crate) struct InvocationState {
    /// Every resource the guest holds, whichever capability made it.
    pub(crate) table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) caps: Capabilities,
}

impl InvocationState {
    /// The `wasi:http` view, for handing an HTTP function its request.
    pub(crate) fn http(&mut self) -> WasiHttpCtxView<'_> {
        self.caps.outbound_http.view(&mut self.table)
    }
}

/// Types-only; imported by every event function because `handler` uses it.
const FUNCTION_TYPES: &str = "nimbus:function/types";

/// The linker every component is instantiated with: the function world's
/// types plus every capability's interfaces. Whether a function may use
/// them is decided per function (grants), not here.
pub(crate) fn linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<InvocationState>> {
    let mut linker = Linker::new(engine);
    linker.instance(nimbus_bindings::TYPES_INTERFACE)?;
    add_capabilities(&mut linker)?;
    Ok(linker)
}

/// Checks a component's imports: each must be an interface some capability
/// provides (else the component is refused). Returns notes on the imports
/// the function's grants leave nothing to reach, whose calls will be denied.
pub(crate) fn check_imports<'a>(
    imports: impl IntoIterator<Item = &'a str>,
    spec: &FunctionConfig,
) -> Result<Vec<String>, String> {
    let mut notes = Vec::new();
    for import in imports {
        if bare(import) == FUNCTION_TYPES {
            continue;
        }
        match check_import(spec, import) {
            Some(note) => notes.extend(note),
            None => {
                return Err(format!(
                    "the component imports `{import}`, which Nimbus does not grant \
                     (granted: {})",
                    provided_packages().join(", ")
                ));
            }
        }
    }
    Ok(notes)
}

/// The packages capabilities provide (`wasi:io`, …), for error messages.
fn provided_packages() -> Vec<&'static str> {
    let mut packages: Vec<&str> = Vec::new();
    for interface in INTERFACES.iter().flat_map(|i| i.iter()) {
        let package = interface.split('/').next().unwrap_or(interface);
        if !packages.contains(&package) {
            packages.push(package);
        }
    }
    packages
}

/// Enforces the tenant's memory limit over all of an instance's memories and
/// records the peak.
pub(crate) struct MemoryLimiter {
    pub(crate) limit: usize,
    total: usize,
    pub(crate) peak: usize,
    /// A growth was refused: a later trap is the guest's reaction to it.
    pub(crate) refused: bool,
    /// The tenant's running total, which this instance's memory is part of
    /// until the limiter is dropped with the instance's state.
    tenant: Arc<AtomicU64>,
}

impl MemoryLimiter {
    pub(crate) fn new(limit: u64, tenant: Arc<AtomicU64>) -> Self {
        Self {
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            total: 0,
            peak: 0,
            refused: false,
            tenant,
        }
    }
}

impl Drop for MemoryLimiter {
    fn drop(&mut self) {
        self.tenant.fetch_sub(self.total as u64, Relaxed);
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.total - current.min(self.total) + desired;
        if total > self.limit {
            self.refused = true;
            return Ok(false);
        }
        // Growth only: a memory never shrinks.
        self.tenant
            .fetch_add(total.saturating_sub(self.total) as u64, Relaxed);
        self.total = total;
        self.peak = self.peak.max(total);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables are bounded by the pool's slot size.
        Ok(true)
    }
}

/// Generates, from the list of capabilities, the state and grant structs and
/// the loops over them, so nothing else names a capability.
macro_rules! capabilities {
    ($($field:ident: $cap:ty),* $(,)?) => {
        /// Every capability's per-invocation state.
        pub(crate) struct Capabilities {
            $(pub(crate) $field: $cap,)*
        }

        /// What deploy made of a function's grants, one per capability.
        pub(crate) struct Grants {
            $($field: <$cap as Capability>::Grant,)*
        }

        $(impl Holds<$cap> for InvocationState {
            fn parts(&mut self) -> (&mut $cap, &mut ResourceTable) {
                (&mut self.caps.$field, &mut self.table)
            }
        })*

        const INTERFACES: &[&[&str]] = &[$(<$cap as Capability>::INTERFACES,)*];

        fn add_capabilities(l: &mut Linker<InvocationState>) -> wasmtime::Result<()> {
            $(<$cap as Capability>::add_to_linker(l)?;)*
            Ok(())
        }

        /// `None`: no capability provides the import.
        /// `None`: no capability provides the import; `Some(note)`: what
        /// the function is not granted.
        fn check_import(spec: &FunctionConfig, import: &str) -> Option<Option<String>> {
            let bare = bare(import);
            $(if <$cap as Capability>::INTERFACES.contains(&bare) {
                return Some(<$cap as Capability>::ungranted(spec, import));
            })*
            None
        }

        impl Grants {
            /// In registration order; the first refusal wins.
            pub(crate) async fn resolve(cx: &DeployCx<'_>) -> Result<Self, Error> {
                Ok(Self {
                    $($field: <$cap as Capability>::grant(cx).await?,)*
                })
            }
        }

        impl Capabilities {
            pub(crate) fn prepare(grants: &Grants, cx: &InvokeCx<'_>) -> wasmtime::Result<Self> {
                Ok(Self {
                    $($field: <$cap as Capability>::prepare(&grants.$field, cx)?,)*
                })
            }

            pub(crate) fn finish(self, usage: &mut UsageRecord, logs: &mut Logs) {
                $(self.$field.finish(usage, logs);)*
            }
        }
    };
}

capabilities! {
    context: Context,
    wasi: Wasi,
    outbound_http: OutboundHttp,
    config: Config,
    logging: Logging,
    kv: Kv,
    messaging: Messaging,
    blob: Blob,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_sums_memories_and_refuses_past_the_limit() {
        let tenant = Arc::new(AtomicU64::new(5));
        let mut l = MemoryLimiter::new(3 << 16, tenant.clone());
        assert!(l.memory_growing(0, 1 << 16, None).unwrap());
        assert!(l.memory_growing(0, 1 << 16, None).unwrap());
        assert!(l.memory_growing(1 << 16, 3 << 16, None).is_ok_and(|ok| !ok));
        assert!(l.refused);
        assert_eq!(l.peak, 2 << 16);
        // The tenant's total holds this instance's memory until it ends.
        assert_eq!(tenant.load(Relaxed), 5 + (2 << 16));
        drop(l);
        assert_eq!(tenant.load(Relaxed), 5);
    }
}
