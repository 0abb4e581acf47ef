//! Engine-wide state shared by the host and every function handle: the
//! wasmtime engine and linker, admission capacity, the usage sink, meters,
//! kept logs, and the services capabilities draw on.

use crate::scheduler::CpuScheduler;
use std::sync::Arc;

use tokio::sync::Semaphore;
use wasmtime::Engine;
use wasmtime::component::Linker;

use crate::compile_cache::CompileCache;
use crate::error::Error;
use crate::limits::Limits;
use crate::logs::LogStore;
use crate::metrics::Metrics;
use crate::services::Services;
use crate::state::InvocationState;
use crate::usage::UsageSink;

pub(crate) struct Runtime {
    pub engine: Engine,
    pub linker: Linker<InvocationState>,
    pub sink: Arc<dyn UsageSink>,
    pub metrics: Arc<Metrics>,
    /// Host-wide instance slots (the pool's size).
    pub capacity: Arc<Semaphore>,
    /// Who runs guest code next (fair CPU between tenants).
    pub cpu: CpuScheduler,
    /// Compilations running at once.
    pub compile_slots: Semaphore,
    /// Artifacts compiled before, by this host or an earlier one.
    pub compile_cache: Option<Arc<CompileCache>>,
    pub max_instances: u32,
    pub pool_max_memory: u64,
    pub max_wasm_stack: usize,
    pub max_component_bytes: usize,
    pub fuel_yield_interval: u64,
    pub hostcall_fuel: usize,
    pub max_resource_handles: usize,
    pub max_http_response_bytes: usize,
    pub logs: LogStore,
    pub services: Services,
    /// Backs blobs and queues when there is no data_dir.
    pub _scratch: Option<tempfile::TempDir>,
}

impl Runtime {
    pub fn check_limits(&self, tenant: &str, limits: &Limits) -> Result<(), Error> {
        let bad = |reason: String| Error::InvalidLimits {
            tenant: tenant.to_string(),
            reason,
        };
        if limits.max_memory_bytes > self.pool_max_memory {
            return Err(bad(format!(
                "max_memory_bytes {} is above the host's per-instance maximum of {}",
                limits.max_memory_bytes, self.pool_max_memory
            )));
        }
        if limits.fuel == 0 || limits.timeout.is_zero() || limits.max_concurrency == 0 {
            return Err(bad(
                "fuel, timeout and max_concurrency must be greater than zero".into(),
            ));
        }
        Ok(())
    }
}

/// Compilation is CPU-bound and tenant-controlled: leave a core for
/// invocations.
pub(crate) fn compile_parallelism() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}
