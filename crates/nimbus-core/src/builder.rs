//! Building a [`Host`]: the pooling allocator, the engine, the linker, the
//! usage sink and the backends, each with its default.

use std::path::PathBuf;
use std::sync::Arc;

use nimbus_blob::{BlobBackend, FsBlobs};
use nimbus_kv::{KvBackend, RedbKv};
use nimbus_queue::{QueueBackend, QueueStore};
use tokio::sync::Semaphore;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::admission::PoolAdmission;
use crate::compile_cache::CompileCache;
use crate::error::Error;
use crate::host::Host;
use crate::logs::LogStore;
use crate::metrics::Metrics;
use crate::registry::{DeploymentRegistry, RedbRegistry};
use crate::runtime::{GuestThreads, Runtime, compile_parallelism};
use crate::services::Services;
use crate::usage::{JsonLinesLedger, UsageSink};

/// Sizes of the pooling allocator, which pre-reserves a slot per concurrent
/// instance so instantiation is a few microseconds and never an `mmap` storm.
///
/// `max_instances` is also the host-wide concurrency cap, shared fairly
/// between tenants (see `admission_wait`): an invocation that gets no slot
/// is throttled rather than failing inside wasmtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    /// Component instances alive at once (default 256).
    pub max_instances: u32,
    /// Largest linear memory of any instance, bytes (default 4 GiB). Tenant
    /// memory limits must not exceed it.
    pub max_memory_bytes: u64,
    /// Core instances inside one component (default 16).
    pub max_core_instances_per_component: u32,
    /// Memories inside one component (default 2).
    pub max_memories_per_component: u32,
    /// Tables inside one component (default 8).
    pub max_tables_per_component: u32,
    /// Bytes of each linear memory reset with `memset` and kept mapped when
    /// an instance ends, instead of `madvise`d away (default 4 MiB). Keeps
    /// page faults and cross-core TLB shootdowns off the per-invocation path
    /// (about 2× HTTP throughput for small guests; README, "Benchmarks"), at
    /// the price of up to this much resident memory per used pool slot.
    pub memory_keep_resident: usize,
    /// The same for tables (default 64 KiB).
    pub table_keep_resident: usize,
    /// Find the pages an instance dirtied with Linux's `PAGEMAP_SCAN`
    /// (kernel 6.7+; ignored elsewhere) and reset only those, up to
    /// `memory_keep_resident` bytes, wherever they are in the memory
    /// (default on). Without it the keep-resident bytes are the lowest
    /// addresses, all reset, and every other dirtied page is `madvise`d away
    /// and faults in again on the next invocation.
    pub pagemap_scan: bool,
    /// How long an invocation waits for a slot when every instance is in
    /// use (default 1 s; never past its own timeout). Only a tenant below
    /// its fair share of the pool waits — the pool divided equally among
    /// the tenants holding or waiting for slots — and freed slots go to the
    /// waiting tenant holding the fewest; one at its share or above is
    /// refused at once. Zero refuses at once whenever the pool is full.
    pub admission_wait: std::time::Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_instances: 256,
            max_memory_bytes: 4 << 30,
            max_core_instances_per_component: 16,
            max_memories_per_component: 2,
            max_tables_per_component: 8,
            memory_keep_resident: 4 << 20,
            table_keep_resident: 64 << 10,
            pagemap_scan: true,
            admission_wait: std::time::Duration::from_secs(1),
        }
    }
}

impl PoolConfig {
    /// wasmtime's pooling allocator as a host with this config sets it up:
    /// for embedders and benchmarks that compare against plain wasmtime on
    /// the same pool.
    pub fn pooling_allocation_config(&self) -> Result<PoolingAllocationConfig, Error> {
        let p = self;
        let mut pool = PoolingAllocationConfig::default();
        let max_memory = usize::try_from(p.max_memory_bytes)
            .map_err(|_| Error::Config("pool max_memory_bytes does not fit in usize".into()))?;
        pool.total_component_instances(p.max_instances)
            .max_core_instances_per_component(p.max_core_instances_per_component)
            .total_core_instances(p.max_instances * p.max_core_instances_per_component)
            .max_memories_per_component(p.max_memories_per_component)
            .total_memories(p.max_instances * p.max_memories_per_component)
            .max_tables_per_component(p.max_tables_per_component)
            .total_tables(p.max_instances * p.max_tables_per_component)
            .total_stacks(p.max_instances)
            .max_memory_size(max_memory)
            .linear_memory_keep_resident(p.memory_keep_resident)
            .table_keep_resident(p.table_keep_resident)
            .pagemap_scan(if p.pagemap_scan {
                Enabled::Auto
            } else {
                Enabled::No
            });
        Ok(pool)
    }
}

impl Host {
    pub fn builder() -> HostBuilder {
        HostBuilder::default()
    }
}

/// Builds a [`Host`]. Every default is listed on its setter.
#[derive(Debug)]
#[must_use]
pub struct HostBuilder {
    pool: PoolConfig,
    max_wasm_stack: usize,
    max_component_bytes: usize,
    fuel_yield_interval: u64,
    hostcall_fuel: usize,
    max_resource_handles: usize,
    max_random_bytes: u64,
    max_log_bytes: usize,
    guest_threads: usize,
    max_http_response_bytes: usize,
    registry: Option<prometheus::Registry>,
    sink: Option<Arc<dyn UsageSink>>,
    deployments: Option<Arc<dyn DeploymentRegistry>>,
    ledger_path: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    compile_cache: Option<PathBuf>,
    kv: Option<Arc<dyn KvBackend>>,
    blob: Option<Arc<dyn BlobBackend>>,
    queues: Option<Arc<dyn QueueBackend>>,
    log_replica: Option<Arc<dyn crate::LogReplica>>,
}

impl std::fmt::Debug for dyn UsageSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UsageSink")
    }
}

impl Default for HostBuilder {
    fn default() -> Self {
        Self {
            pool: PoolConfig::default(),
            max_wasm_stack: 512 << 10,
            max_component_bytes: 32 << 20,
            fuel_yield_interval: 1_000_000,
            hostcall_fuel: 16 << 20,
            max_resource_handles: 10_000,
            max_random_bytes: 1 << 20,
            max_log_bytes: 1 << 20,
            guest_threads: std::thread::available_parallelism().map_or(1, usize::from),
            max_http_response_bytes: 6 << 20,
            registry: None,
            sink: None,
            deployments: None,
            ledger_path: None,
            data_dir: None,
            compile_cache: None,
            kv: None,
            blob: None,
            queues: None,
            log_replica: None,
        }
    }
}

impl HostBuilder {
    /// Pooling allocator sizes (see [`PoolConfig`]).
    pub fn pool(mut self, pool: PoolConfig) -> Self {
        self.pool = pool;
        self
    }

    /// Wasm stack per invocation, bytes (default 512 KiB). Deeper recursion
    /// traps as a stack overflow. Engine-wide, so the same for every tenant.
    pub fn max_wasm_stack(mut self, bytes: usize) -> Self {
        self.max_wasm_stack = bytes;
        self
    }

    /// Largest component `deploy` accepts, bytes (default 32 MiB): compile
    /// time grows with size, and compiling is the one step a tenant can make
    /// expensive.
    pub fn max_component_bytes(mut self, bytes: usize) -> Self {
        self.max_component_bytes = bytes;
        self
    }

    /// Fuel between async yields of a running guest (default 1 000 000,
    /// roughly 50–100 µs of wasm). Each yield lets tokio run other tasks and
    /// lets the wall-clock deadline cancel a guest that never calls the host.
    pub fn fuel_yield_interval(mut self, fuel: u64) -> Self {
        self.fuel_yield_interval = fuel.max(1);
        self
    }

    /// Bytes a guest may pass to the host in one call (wasmtime's hostcall
    /// fuel; default 16 MiB, wasmtime's own is 128 MiB).
    pub fn hostcall_fuel(mut self, bytes: usize) -> Self {
        self.hostcall_fuel = bytes;
        self
    }

    /// Resource handles (streams, pollables…) one invocation may hold
    /// (default 10 000; wasmtime's own is 1 000 000).
    pub fn max_resource_handles(mut self, n: usize) -> Self {
        self.max_resource_handles = n;
        self
    }

    /// Largest `get-random-bytes` request, bytes (default 1 MiB; wasmtime's
    /// own is 64 MiB). Larger requests trap.
    pub fn max_random_bytes(mut self, n: u64) -> Self {
        self.max_random_bytes = n;
        self
    }

    /// Threads that run guests, host-wide (default: the machine's cores).
    /// Invocations run on these, apart from the embedder's tokio workers,
    /// which stay free for the front end; tenants competing for them get
    /// CPU in proportion to [`Limits::cpu_weight`](crate::Limits::cpu_weight).
    pub fn guest_threads(mut self, n: usize) -> Self {
        self.guest_threads = n.max(1);
        self
    }

    /// Captured stdout and stderr per invocation, bytes per stream (default
    /// 1 MiB). Output past it is dropped and counted in [`Logs::dropped_bytes`];
    /// the stream is closed there, and a guest that keeps writing is ended
    /// after [`crate::REFUSED_WRITES_BEFORE_TRAP`] refused writes.
    pub fn max_log_bytes(mut self, n: usize) -> Self {
        self.max_log_bytes = n;
        self
    }

    /// Largest response body an HTTP function may return, bytes (default
    /// 6 MiB, Lambda's synchronous payload limit). Responses are buffered
    /// so the whole invocation, body included, is metered and billed.
    pub fn max_http_response_bytes(mut self, n: usize) -> Self {
        self.max_http_response_bytes = n;
        self
    }

    /// Register Nimbus's metrics in the embedder's registry instead of a
    /// fresh one.
    pub fn registry(mut self, registry: prometheus::Registry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Append usage records as JSON lines to this file (the default sink).
    pub fn ledger_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.ledger_path = Some(path.into());
        self
    }

    /// Where embedded backends keep their data (`kv.redb` for key-value).
    /// Without it (and without [`Self::kv_backend`]) key-value stores live in
    /// memory and do not survive the process.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Keep compiled components in `dir` and load them from there when the
    /// same bytes are deployed again, by this host or a later one (default:
    /// none, every deploy compiles). An 18 MB Python component compiles in
    /// seconds and loads in milliseconds. Entries are keyed by the sha256 of
    /// the component and of the engine's configuration, and checked against
    /// their own digest before loading; a corrupt or incompatible entry is
    /// compiled again, never an error. Several hosts, in one process or
    /// many, may share a directory. Nothing is ever evicted.
    pub fn compile_cache(mut self, dir: impl Into<PathBuf>) -> Self {
        self.compile_cache = Some(dir.into());
        self
    }

    /// Use this key-value backend (e.g. a distributed one) instead of the
    /// embedded redb database.
    pub fn kv_backend(mut self, kv: Arc<dyn KvBackend>) -> Self {
        self.kv = Some(kv);
        self
    }

    /// Use this blob backend instead of the embedded one (files under
    /// `<data_dir>/blobs`).
    pub fn blob_backend(mut self, blob: Arc<dyn BlobBackend>) -> Self {
        self.blob = Some(blob);
        self
    }

    /// Use this queue backend (messaging and queue triggers) instead of the
    /// embedded one (`<data_dir>/queues.redb`).
    pub fn queue_backend(mut self, queues: Arc<dyn QueueBackend>) -> Self {
        self.queues = Some(queues);
        self
    }

    /// Also keep invocation logs in this replica (a cluster's shared copy),
    /// which reads and follows then go to: see [`crate::LogReplica`].
    /// The local store (`<data_dir>/logs.redb`) stays the first copy.
    pub fn log_replica(mut self, replica: Arc<dyn crate::LogReplica>) -> Self {
        self.log_replica = Some(replica);
        self
    }

    /// Send usage records to a custom sink instead of a ledger file.
    /// Where tenants, functions, versions, aliases and routes are recorded
    /// (default: `<data_dir>/registry.redb`, or in memory without a data
    /// dir). A host built on a registry that holds deployments restores
    /// them: tenants at once, versions in the background.
    pub fn deployment_registry(mut self, registry: Arc<dyn DeploymentRegistry>) -> Self {
        self.deployments = Some(registry);
        self
    }

    pub fn usage_sink(mut self, sink: Arc<dyn UsageSink>) -> Self {
        self.sink = Some(sink);
        self
    }

    /// Builds the engine and linker. Without a sink or a ledger path, records
    /// go to `nimbus-usage.jsonl` in the current directory.
    pub fn build(self) -> Result<Host, Error> {
        let p = self.pool;
        let pool = p.pooling_allocation_config()?;
        let mut config = Config::new();
        config
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .consume_fuel(true)
            // Deadlines come from fuel yields plus a tokio timeout, not
            // epochs: fuel is needed for billing anyway, and fuel+epochs
            // costs far more than fuel alone (see README, "Deadlines").
            .epoch_interruption(false)
            .max_wasm_stack(self.max_wasm_stack)
            .wasm_component_model(true);
        let engine =
            Engine::new(&config).map_err(|e| Error::Config(format!("wasmtime engine: {e:#}")))?;
        let linker =
            crate::state::linker(&engine).map_err(|e| Error::Config(format!("linker: {e:#}")))?;

        let sink: Arc<dyn UsageSink> =
            match (self.sink, self.ledger_path) {
                (Some(sink), _) => sink,
                (None, path) => {
                    let path = path.unwrap_or_else(|| PathBuf::from("nimbus-usage.jsonl"));
                    Arc::new(JsonLinesLedger::open(&path).map_err(|e| {
                        Error::Config(format!("usage ledger {}: {e}", path.display()))
                    })?)
                }
            };
        // Without a data_dir, blobs and queues live in a private temporary
        // directory removed with the host, like the in-memory kv store.
        let scratch = match &self.data_dir {
            Some(_) => None,
            None => Some(
                tempfile::Builder::new()
                    .prefix("nimbus-data-")
                    .tempdir()
                    .map_err(|e| Error::Config(format!("temporary data directory: {e}")))?,
            ),
        };
        let data_root = match (&self.data_dir, &scratch) {
            (Some(d), _) => d.clone(),
            (None, Some(t)) => t.path().to_path_buf(),
            (None, None) => PathBuf::from("."),
        };
        std::fs::create_dir_all(&data_root)
            .map_err(|e| Error::Config(format!("data dir {}: {e}", data_root.display())))?;
        let compile_cache = match &self.compile_cache {
            Some(dir) => Some(Arc::new(CompileCache::open(dir, &engine).map_err(|e| {
                Error::Config(format!("compile cache {}: {e}", dir.display()))
            })?)),
            None => None,
        };
        let guests = GuestThreads::new(self.guest_threads)
            .map_err(|e| Error::Config(format!("starting the guest threads: {e}")))?;
        let registry = self.registry.unwrap_or_default();
        // The embedded stores open at once, each on its own thread: every
        // open syncs its file twice, and one by one they were most of a
        // restart's time to its first response (`benches/restart.sh`). The
        // registry's thread also starts loading the recorded versions'
        // artifacts meanwhile.
        let data_dir = self.data_dir.clone();
        let (kv, blob, queues, (deployments, snapshot, preloads), logs) =
            std::thread::scope(|s| {
                let kv = s.spawn(|| -> Result<Arc<dyn KvBackend>, Error> {
                    let fail = |e| Error::Config(format!("key-value store: {e}"));
                    Ok(match (self.kv, &data_dir) {
                        (Some(kv), _) => kv,
                        (None, Some(dir)) => {
                            Arc::new(RedbKv::open(&dir.join("kv.redb")).map_err(fail)?)
                        }
                        (None, None) => Arc::new(RedbKv::in_memory().map_err(fail)?),
                    })
                });
                let blob = s.spawn(|| -> Result<Arc<dyn BlobBackend>, Error> {
                    Ok(match self.blob {
                        Some(b) => b,
                        None => Arc::new(
                            FsBlobs::open(&data_root.join("blobs"))
                                .map_err(|e| Error::Config(format!("blob store: {e}")))?,
                        ),
                    })
                });
                let queues = s.spawn(|| -> Result<Arc<dyn QueueBackend>, Error> {
                    Ok(match self.queues {
                        Some(q) => q,
                        None => Arc::new(
                            QueueStore::open(&data_root.join("queues.redb"))
                                .map_err(|e| Error::Config(format!("queue store: {e}")))?,
                        ),
                    })
                });
                let deployments = s.spawn(|| {
                    let fail = |e: crate::registry::RegistryError| Error::Config(e.to_string());
                    let d: Arc<dyn DeploymentRegistry> = match (self.deployments, &data_dir) {
                        (Some(d), _) => d,
                        (None, Some(dir)) => {
                            Arc::new(RedbRegistry::open(&dir.join("registry.redb")).map_err(fail)?)
                        }
                        (None, None) => Arc::new(RedbRegistry::in_memory().map_err(fail)?),
                    };
                    let snapshot = d.load().map_err(fail)?;
                    let preloads = crate::restore::preload(
                        &snapshot,
                        &engine,
                        compile_cache.as_ref(),
                        &guests,
                    );
                    Ok::<_, Error>((d, snapshot, preloads))
                });
                let logs = s.spawn(|| LogStore::open(data_dir.as_deref(), &registry));
                let panicked = |_| Error::Config("opening a store panicked".into());
                Ok::<_, Error>((
                    kv.join().map_err(panicked)??,
                    blob.join().map_err(panicked)??,
                    queues.join().map_err(panicked)??,
                    deployments.join().map_err(panicked)??,
                    logs.join().map_err(panicked)?,
                ))
            })?;
        if let Some(replica) = self.log_replica {
            logs.set_replica(replica);
        }
        let metrics = Arc::new(Metrics::new(kv.clone(), blob.clone()));
        registry
            .register(Box::new(SharedMetrics(metrics.clone())))
            .map_err(|e| Error::Config(format!("registering metrics: {e}")))?;

        let pool = PoolAdmission::new(
            p.max_instances as usize,
            p.admission_wait,
            metrics.pool_waiting.clone(),
        );
        let runtime = Arc::new(Runtime {
            engine,
            linker,
            sink,
            metrics,
            pool,
            cpu: crate::scheduler::CpuScheduler::new(self.guest_threads),
            guests,
            compile_slots: Semaphore::new(compile_parallelism()),
            compile_cache,
            pool_max_memory: p.max_memory_bytes,
            max_wasm_stack: self.max_wasm_stack,
            max_component_bytes: self.max_component_bytes,
            fuel_yield_interval: self.fuel_yield_interval,
            hostcall_fuel: self.hostcall_fuel,
            max_resource_handles: self.max_resource_handles,
            max_http_response_bytes: self.max_http_response_bytes,
            logs,
            services: Services {
                kv,
                blob,
                queues,
                subscriptions: Default::default(),
                data_dir: self.data_dir,
                max_log_bytes: self.max_log_bytes,
                max_random_bytes: self.max_random_bytes,
            },
            _scratch: scratch,
        });
        let host = Host::new(runtime, registry, deployments);
        host.restore(snapshot, preloads);
        Ok(host)
    }
}

/// Lets the registry own a handle while the host keeps its own.
struct SharedMetrics(Arc<Metrics>);

impl prometheus::core::Collector for SharedMetrics {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.0.desc()
    }
    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.0.collect()
    }
}
