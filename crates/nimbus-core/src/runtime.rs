//! Engine-wide state shared by the host and every function handle: the
//! wasmtime engine and linker, admission capacity, the usage sink, meters,
//! kept logs, and the services capabilities draw on.

use crate::admission::PoolAdmission;
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
    /// Host-wide instance slots (the pool's size), shared fairly.
    pub pool: Arc<PoolAdmission>,
    /// Who runs guest code next (fair CPU between tenants).
    pub cpu: CpuScheduler,
    /// The threads invocations run on, apart from the embedder's.
    pub guests: GuestThreads,
    /// Compilations running at once.
    pub compile_slots: Semaphore,
    /// Artifacts compiled before, by this host or an earlier one.
    pub compile_cache: Option<Arc<CompileCache>>,
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

/// The tokio runtime invocations run on: its own worker threads, one per
/// [`HostBuilder::guest_threads`](crate::HostBuilder::guest_threads), so the
/// embedder's threads — accepting connections, parsing, routing, the
/// storage API — are never busy in a guest's poll when a request arrives.
/// The kernel shares the cores between the two sets of threads; the
/// [`CpuScheduler`] shares the guest threads between tenants.
pub(crate) struct GuestThreads {
    handle: tokio::runtime::Handle,
    /// Taken on drop, to shut down without blocking.
    runtime: Option<tokio::runtime::Runtime>,
}

impl GuestThreads {
    pub fn new(threads: usize) -> std::io::Result<Self> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("nimbus-guest")
            .on_thread_start(crate::scheduler::mark_guest_thread)
            // New invocations arrive on the shared queue, while every
            // worker's own queue always holds a granted guest poll: checked
            // only every few polls (tokio's default), a new invocation
            // waits behind many slices of other tenants' guests (victim
            // p50 6.6 ms under memory bombs; 0.4 ms checking every poll).
            .global_queue_interval(1)
            .enable_all()
            .build()
            .map(|rt| Self {
                handle: rt.handle().clone(),
                runtime: Some(rt),
            })
    }

    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }
}

impl Drop for GuestThreads {
    fn drop(&mut self) {
        // The last handle may go away on one of these threads, or inside
        // the embedder's runtime: neither may block on the shutdown.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
