//! The host: one engine, tenants, deployed functions, and the invocation path.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use dashmap::DashMap;
use http_body_util::BodyExt;
use nimbus_bindings::FunctionPre;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;
use uuid::Uuid;
use wasmtime::component::{Component, HasData, HasSelf, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter, Store,
    Trap,
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::error::Error;
use crate::event::{Event, GuestError, Response};
use crate::limits::{FunctionConfig, Limits, host_allowed};
use crate::logs::{CapturedStream, EntrySink, InvocationLogs, Logs};
use crate::metrics::{FunctionMeters, Metrics};
use nimbus_bindings::KvBucket;
use nimbus_bindings::kv::{atomics, batch, store as kvstore};
use nimbus_blob::{BlobBackend, FsBlobs};
use nimbus_kv::{KvBackend, KvError, Namespace, RedbKv};
use nimbus_queue::{QueueBackend, QueueStore};

use crate::blob::BlobAccess;
use crate::messaging::MessagingAccess;
use wasmtime::component::Resource;

use crate::usage::{JsonLinesLedger, Outcome, Trigger, UsageRecord, UsageSink, billed_ms};

/// What caused an invocation: the trigger, and for object-created events
/// how many triggered invocations led to it (the loop guard's input).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cause {
    pub trigger: Trigger,
    /// 0 unless the invocation handles an object written by a triggered
    /// invocation: then that invocation's depth + 1.
    pub depth: u32,
}

impl Cause {
    pub fn new(trigger: Trigger) -> Self {
        Self { trigger, depth: 0 }
    }
}

/// Sizes of the pooling allocator, which pre-reserves a slot per concurrent
/// instance so instantiation is a few microseconds and never an `mmap` storm.
///
/// `max_instances` is also the host-wide concurrency cap: an invocation that
/// would exceed it is throttled rather than failing inside wasmtime.
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
        }
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
    max_http_response_bytes: usize,
    registry: Option<prometheus::Registry>,
    sink: Option<Arc<dyn UsageSink>>,
    ledger_path: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    kv: Option<Arc<dyn KvBackend>>,
    blob: Option<Arc<dyn BlobBackend>>,
    queues: Option<Arc<dyn QueueBackend>>,
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
            max_http_response_bytes: 6 << 20,
            registry: None,
            sink: None,
            ledger_path: None,
            data_dir: None,
            kv: None,
            blob: None,
            queues: None,
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

    /// Captured stdout and stderr per invocation, bytes per stream (default
    /// 1 MiB). Output past it is dropped and counted in [`Logs::dropped_bytes`].
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

    /// Send usage records to a custom sink instead of a ledger file.
    pub fn usage_sink(mut self, sink: Arc<dyn UsageSink>) -> Self {
        self.sink = Some(sink);
        self
    }

    /// Builds the engine and linker. Without a sink or a ledger path, records
    /// go to `nimbus-usage.jsonl` in the current directory.
    pub fn build(self) -> Result<Host, Error> {
        let p = self.pool;
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
            .table_keep_resident(p.table_keep_resident);

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
        let linker = guest_linker(&engine).map_err(|e| Error::Config(format!("linker: {e:#}")))?;

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
        let kv: Arc<dyn KvBackend> = match (self.kv, &self.data_dir) {
            (Some(kv), _) => kv,
            (None, Some(dir)) => {
                let path = dir.join("kv.redb");
                Arc::new(
                    RedbKv::open(&path)
                        .map_err(|e| Error::Config(format!("key-value store: {e}")))?,
                )
            }
            (None, None) => Arc::new(
                RedbKv::in_memory().map_err(|e| Error::Config(format!("key-value store: {e}")))?,
            ),
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
        let blob: Arc<dyn BlobBackend> = match self.blob {
            Some(b) => b,
            None => Arc::new(
                FsBlobs::open(&data_root.join("blobs"))
                    .map_err(|e| Error::Config(format!("blob store: {e}")))?,
            ),
        };
        std::fs::create_dir_all(&data_root)
            .map_err(|e| Error::Config(format!("data dir {}: {e}", data_root.display())))?;
        let queues: Arc<dyn QueueBackend> = match self.queues {
            Some(q) => q,
            None => Arc::new(
                QueueStore::open(&data_root.join("queues.redb"))
                    .map_err(|e| Error::Config(format!("queue store: {e}")))?,
            ),
        };
        let registry = self.registry.unwrap_or_default();
        let metrics = Arc::new(Metrics::new(kv.clone(), blob.clone()));
        registry
            .register(Box::new(SharedMetrics(metrics.clone())))
            .map_err(|e| Error::Config(format!("registering metrics: {e}")))?;

        let runtime = Arc::new(Runtime {
            engine,
            linker,
            sink,
            metrics,
            capacity: Arc::new(Semaphore::new(p.max_instances as usize)),
            compile_slots: Semaphore::new(compile_parallelism()),
            max_instances: p.max_instances,
            pool_max_memory: p.max_memory_bytes,
            max_wasm_stack: self.max_wasm_stack,
            max_component_bytes: self.max_component_bytes,
            fuel_yield_interval: self.fuel_yield_interval,
            hostcall_fuel: self.hostcall_fuel,
            max_resource_handles: self.max_resource_handles,
            max_random_bytes: self.max_random_bytes,
            max_log_bytes: self.max_log_bytes,
            max_http_response_bytes: self.max_http_response_bytes,
            logs: LogStore::default(),
            kv,
            blob,
            queues,
            subscriptions: Default::default(),
            data_dir: self.data_dir,
            _scratch: scratch,
        });
        Ok(Host {
            inner: Arc::new(HostInner {
                runtime,
                registry,
                tenants: DashMap::new(),
                functions: DashMap::new(),
            }),
        })
    }
}

/// Compilation is CPU-bound and tenant-controlled: leave a core for
/// invocations.
fn compile_parallelism() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
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

/// The interfaces granted to every guest. Notably absent: filesystem and
/// sockets (a component importing them is refused at deploy).
const GRANTED_INTERFACES: &[&str] = &[
    // Types-only; imported by every function because `handler` uses it.
    "nimbus:function/types",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    // For standard `wasi:http/proxy` guests. Outbound requests are denied
    // (see `OutboundHttp`) unless their host is granted to the function.
    "wasi:http/types",
    "wasi:http/outgoing-handler",
    // Backend services. Config is further checked against the function's
    // grant at deploy.
    "wasi:config/store",
    "wasi:logging/logging",
    // Checked against the function's directory grant at deploy.
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    // Checked against the function's kv grant at deploy.
    "wasi:keyvalue/store",
    "wasi:keyvalue/atomics",
    "wasi:keyvalue/batch",
    // Checked against the function's blob container grant at deploy.
    "wasi:blobstore/blobstore",
    "wasi:blobstore/container",
    "wasi:blobstore/types",
    // Checked against the function's topic grant at deploy.
    "wasmcloud:messaging/producer",
    "wasmcloud:messaging/types",
];

/// The config interface, refused at deploy to functions granted no keys.
const CONFIG_INTERFACE: &str = "wasi:config/store";

struct HasTable;
impl HasData for HasTable {
    type Data<'a> = &'a mut ResourceTable;
}

fn guest_linker(engine: &Engine) -> wasmtime::Result<Linker<InvocationState>> {
    use wasmtime_wasi::cli::WasiCli;
    use wasmtime_wasi::cli::WasiCliView as _;
    use wasmtime_wasi::clocks::WasiClocks;
    use wasmtime_wasi::clocks::WasiClocksView as _;
    use wasmtime_wasi::p2::bindings::{cli, clocks, random};
    use wasmtime_wasi::random::WasiRandom;
    use wasmtime_wasi_io::bindings::wasi::io;

    type S = InvocationState;
    let mut linker = Linker::<S>::new(engine);
    let l = &mut linker;
    io::error::add_to_linker::<S, HasTable>(l, |s| &mut s.table)?;
    io::poll::add_to_linker::<S, HasTable>(l, |s| &mut s.table)?;
    io::streams::add_to_linker::<S, HasTable>(l, |s| &mut s.table)?;
    clocks::wall_clock::add_to_linker::<S, WasiClocks>(l, S::clocks)?;
    clocks::monotonic_clock::add_to_linker::<S, WasiClocks>(l, S::clocks)?;
    random::random::add_to_linker::<S, WasiRandom>(l, |s| s.wasi.random())?;
    random::insecure::add_to_linker::<S, WasiRandom>(l, |s| s.wasi.random())?;
    random::insecure_seed::add_to_linker::<S, WasiRandom>(l, |s| s.wasi.random())?;
    cli::environment::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::exit::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::stdin::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::stdout::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::stderr::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::terminal_input::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::terminal_output::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::terminal_stdin::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::terminal_stdout::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::terminal_stderr::add_to_linker::<S, WasiCli>(l, S::cli)?;
    l.instance(nimbus_bindings::TYPES_INTERFACE)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(l)?;
    nimbus_bindings::config::add_to_linker::<S, HasSelf<S>>(l, |s| s)?;
    nimbus_bindings::logging::add_to_linker::<S, HasSelf<S>>(l, |s| s)?;
    {
        use wasmtime_wasi::filesystem::WasiFilesystem;
        use wasmtime_wasi::filesystem::WasiFilesystemView as _;
        use wasmtime_wasi::p2::bindings::filesystem;
        filesystem::types::add_to_linker::<S, WasiFilesystem>(l, S::filesystem)?;
        filesystem::preopens::add_to_linker::<S, WasiFilesystem>(l, S::filesystem)?;
    }
    kvstore::add_to_linker::<S, HasSelf<S>>(l, |s| s)?;
    atomics::add_to_linker::<S, HasSelf<S>>(l, |s| s)?;
    batch::add_to_linker::<S, HasSelf<S>>(l, |s| s)?;
    {
        use nimbus_bindings::blob::{blobstore, container, types};
        use nimbus_bindings::messaging::{producer, types as msg_types};
        blobstore::add_to_linker::<S, HasSelf<S>>(l, |s| s)?;
        container::add_to_linker::<S, HasSelf<S>>(l, |s| s)?;
        types::add_to_linker::<S, HasSelf<S>>(l, |s| s)?;
        msg_types::add_to_linker::<S, HasSelf<S>>(l, |s| s)?;
        producer::add_to_linker::<S, HasSelf<S>>(l, |s| s)?;
    }
    Ok(linker)
}

/// Store data of one invocation; dropped with the store when it ends.
pub(crate) struct InvocationState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: OutboundHttp,
    pub(crate) table: ResourceTable,
    limiter: MemoryLimiter,
    /// The function's granted `wasi:config/store` values.
    config: Arc<BTreeMap<String, String>>,
    /// `wasi:logging` entries of this invocation.
    entries: EntrySink,
    kv: KvAccess,
    pub(crate) blob: BlobAccess,
    pub(crate) messaging: MessagingAccess,
}

/// Most key-value buckets one invocation may hold open.
const MAX_OPEN_BUCKETS: u32 = 64;

/// An invocation's key-value access: its tenant's namespace, the stores its
/// function was granted, and what it did.
struct KvAccess {
    backend: Arc<dyn KvBackend>,
    tenant: Arc<str>,
    granted: Arc<[String]>,
    /// The tenant's `max_kv_bytes`.
    quota: u64,
    open: u32,
    reads: u64,
    writes: u64,
    denied: u64,
}

impl InvocationState {
    /// Runs one backend operation and counts it.
    async fn kv_op<R: Send + 'static>(
        &mut self,
        bucket: &Resource<KvBucket>,
        write: bool,
        op: impl FnOnce(&dyn KvBackend, &Namespace) -> Result<R, KvError> + Send + 'static,
    ) -> wasmtime::Result<Result<R, kvstore::Error>> {
        let store = self.table.get(bucket)?.store.clone();
        let kv = &mut self.kv;
        if write {
            kv.writes += 1;
        } else {
            kv.reads += 1;
        }
        let backend = kv.backend.clone();
        let ns = Namespace::new(&*kv.tenant, store).with_quota(kv.quota);
        // Writes sync to disk (~0.15 ms here) and go to the blocking pool so
        // they never stall a runtime worker. Reads are served from redb's
        // cache in well under a microsecond; handing them to another thread
        // would cost 40× the read itself (measured: benches/kv.rs).
        let result = if write {
            tokio::task::spawn_blocking(move || op(&*backend, &ns)).await?
        } else {
            op(&*backend, &ns)
        };
        Ok(result.map_err(|e| kvstore::Error::Other(e.to_string())))
    }
}

impl kvstore::Host for InvocationState {
    async fn open(
        &mut self,
        identifier: String,
    ) -> wasmtime::Result<Result<Resource<KvBucket>, kvstore::Error>> {
        if !self.kv.granted.contains(&identifier) {
            self.kv.denied += 1;
            let shown: String = identifier.chars().take(64).collect();
            tracing::info!(store = %shown, "key-value store not granted");
            return Ok(Err(kvstore::Error::AccessDenied));
        }
        if self.kv.open >= MAX_OPEN_BUCKETS {
            return Ok(Err(kvstore::Error::Other(format!(
                "at most {MAX_OPEN_BUCKETS} buckets may be open at once"
            ))));
        }
        self.kv.open += 1;
        Ok(Ok(self.table.push(KvBucket { store: identifier })?))
    }
}

impl kvstore::HostBucket for InvocationState {
    async fn get(
        &mut self,
        bucket: Resource<KvBucket>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, kvstore::Error>> {
        self.kv_op(&bucket, false, move |kv, ns| kv.get(ns, &key))
            .await
    }

    async fn set(
        &mut self,
        bucket: Resource<KvBucket>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), kvstore::Error>> {
        self.kv_op(&bucket, true, move |kv, ns| kv.set(ns, &key, &value))
            .await
    }

    async fn delete(
        &mut self,
        bucket: Resource<KvBucket>,
        key: String,
    ) -> wasmtime::Result<Result<(), kvstore::Error>> {
        self.kv_op(&bucket, true, move |kv, ns| kv.delete(ns, &key))
            .await
    }

    async fn exists(
        &mut self,
        bucket: Resource<KvBucket>,
        key: String,
    ) -> wasmtime::Result<Result<bool, kvstore::Error>> {
        self.kv_op(&bucket, false, move |kv, ns| kv.exists(ns, &key))
            .await
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<KvBucket>,
        cursor: Option<u64>,
    ) -> wasmtime::Result<Result<kvstore::KeyResponse, kvstore::Error>> {
        let page = self
            .kv_op(&bucket, false, move |kv, ns| kv.list_keys(ns, cursor))
            .await?;
        Ok(page.map(|(keys, cursor)| kvstore::KeyResponse { keys, cursor }))
    }

    async fn drop(&mut self, bucket: Resource<KvBucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        self.kv.open = self.kv.open.saturating_sub(1);
        Ok(())
    }
}

impl atomics::Host for InvocationState {
    async fn increment(
        &mut self,
        bucket: Resource<KvBucket>,
        key: String,
        delta: u64,
    ) -> wasmtime::Result<Result<u64, kvstore::Error>> {
        self.kv_op(&bucket, true, move |kv, ns| kv.increment(ns, &key, delta))
            .await
    }
}

impl batch::Host for InvocationState {
    async fn get_many(
        &mut self,
        bucket: Resource<KvBucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<Option<(String, Vec<u8>)>>, kvstore::Error>> {
        self.kv_op(&bucket, false, move |kv, ns| kv.get_many(ns, &keys))
            .await
    }

    async fn set_many(
        &mut self,
        bucket: Resource<KvBucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> wasmtime::Result<Result<(), kvstore::Error>> {
        self.kv_op(&bucket, true, move |kv, ns| kv.set_many(ns, &key_values))
            .await
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<KvBucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<(), kvstore::Error>> {
        self.kv_op(&bucket, true, move |kv, ns| kv.delete_many(ns, &keys))
            .await
    }
}

impl nimbus_bindings::config::Host for InvocationState {
    async fn get(&mut self, key: String) -> Result<Option<String>, nimbus_bindings::config::Error> {
        Ok(self.config.get(&key).cloned())
    }

    async fn get_all(&mut self) -> Result<Vec<(String, String)>, nimbus_bindings::config::Error> {
        Ok(self
            .config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}

impl nimbus_bindings::logging::Host for InvocationState {
    async fn log(
        &mut self,
        level: nimbus_bindings::logging::Level,
        context: String,
        message: String,
    ) {
        use nimbus_bindings::logging::Level;
        let name = match level {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
            Level::Critical => "critical",
        };
        // The invocation's span carries tenant, function and invocation id.
        match level {
            Level::Trace => tracing::trace!(target: "nimbus::guest", %context, "{message}"),
            Level::Debug => tracing::debug!(target: "nimbus::guest", %context, "{message}"),
            Level::Info => tracing::info!(target: "nimbus::guest", %context, "{message}"),
            Level::Warn => tracing::warn!(target: "nimbus::guest", %context, "{message}"),
            Level::Error | Level::Critical => {
                tracing::error!(target: "nimbus::guest", level = name, %context, "{message}")
            }
        }
        self.entries.push(name, context, message);
    }
}

impl WasiHttpView for InvocationState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Outbound HTTP from guests: only to the function's granted hosts. Anything
/// else fails with `HTTP-request-denied`, an error the guest can handle, and
/// is counted.
struct OutboundHttp {
    allowed: Arc<[String]>,
    sent: u64,
    denied: u64,
    /// Body bytes sent and received, counted as they stream (the bodies
    /// outlive the hook call).
    bytes_sent: Arc<std::sync::atomic::AtomicU64>,
    bytes_received: Arc<std::sync::atomic::AtomicU64>,
}

/// `body`, counting its data bytes into `counter` as they pass.
fn counted(
    body: wasmtime_wasi_http::WasiBody,
    counter: Arc<std::sync::atomic::AtomicU64>,
) -> wasmtime_wasi_http::WasiBody {
    body.map_frame(move |frame| {
        if let Some(data) = frame.data_ref() {
            counter.fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
        frame
    })
    .boxed_unsync()
}

type SendResult = Result<
    (
        http::Response<wasmtime_wasi_http::WasiBody>,
        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ),
    wasmtime_wasi_http::Error,
>;

impl WasiHttpHooks for OutboundHttp {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        let uri = request.uri();
        let host = uri.host().unwrap_or_default().to_string();
        let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        if !host_allowed(&self.allowed, &host, port) {
            self.denied += 1;
            tracing::info!(%host, port, "outbound HTTP denied: host not granted");
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        self.sent += 1;
        let request = request.map(|b| counted(b, self.bytes_sent.clone()));
        let received = self.bytes_received.clone();
        Box::new(async move {
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(|b| counted(b.boxed_unsync(), received)),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

impl WasiView for InvocationState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Enforces the tenant's memory limit over all of an instance's memories and
/// records the peak.
struct MemoryLimiter {
    limit: usize,
    total: usize,
    peak: usize,
    refused: bool,
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

impl Runtime {
    fn check_limits(&self, tenant: &str, limits: &Limits) -> Result<(), Error> {
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

/// Engine-wide state shared by the host and every function handle.
struct Runtime {
    engine: Engine,
    linker: Linker<InvocationState>,
    sink: Arc<dyn UsageSink>,
    metrics: Arc<Metrics>,
    capacity: Arc<Semaphore>,
    compile_slots: Semaphore,
    max_instances: u32,
    pool_max_memory: u64,
    max_wasm_stack: usize,
    max_component_bytes: usize,
    fuel_yield_interval: u64,
    hostcall_fuel: usize,
    max_resource_handles: usize,
    max_random_bytes: u64,
    max_log_bytes: usize,
    max_http_response_bytes: usize,
    logs: LogStore,
    kv: Arc<dyn KvBackend>,
    blob: Arc<dyn BlobBackend>,
    queues: Arc<dyn QueueBackend>,
    /// (tenant, container) pairs some function subscribes to: writes there
    /// persist an object-created event with the object.
    subscriptions: crate::blob::Subscriptions,
    data_dir: Option<PathBuf>,
    /// Backs blobs and queues when there is no data_dir.
    _scratch: Option<tempfile::TempDir>,
}

/// The most recent invocations' logs per function, for the admin API.
#[derive(Default)]
struct LogStore {
    by_function: DashMap<(Arc<str>, Arc<str>), KeptLogs>,
}

#[derive(Default)]
struct KeptLogs {
    invocations: VecDeque<InvocationLogs>,
    bytes: usize,
}

/// Invocations whose logs are kept per function, and the most bytes of
/// output kept per function: a guest that floods its logs on every
/// invocation cannot make the host hold 100 × its per-invocation cap.
const KEPT_INVOCATION_LOGS: usize = 100;
const KEPT_LOG_BYTES: usize = 4 << 20;

fn log_size(l: &InvocationLogs) -> usize {
    l.logs.stdout.len()
        + l.logs.stderr.len()
        + l.logs
            .entries
            .iter()
            .map(|e| e.context.len() + e.message.len())
            .sum::<usize>()
}

impl LogStore {
    fn keep(&self, tenant: &Arc<str>, function: &Arc<str>, entry: InvocationLogs) {
        let mut kept = self
            .by_function
            .entry((tenant.clone(), function.clone()))
            .or_default();
        kept.bytes += log_size(&entry);
        kept.invocations.push_back(entry);
        while kept.invocations.len() > KEPT_INVOCATION_LOGS
            || (kept.bytes > KEPT_LOG_BYTES && kept.invocations.len() > 1)
        {
            if let Some(old) = kept.invocations.pop_front() {
                kept.bytes -= log_size(&old);
            }
        }
    }
}

struct Tenant {
    name: Arc<str>,
    limits: Limits,
    slots: Arc<Semaphore>,
}

struct HostInner {
    runtime: Arc<Runtime>,
    registry: prometheus::Registry,
    tenants: DashMap<Arc<str>, Arc<Tenant>>,
    functions: DashMap<(Arc<str>, Arc<str>), FunctionHandle>,
}

/// An embeddable, multi-tenant function host. Cheap to clone.
#[derive(Clone)]
pub struct Host {
    inner: Arc<HostInner>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("tenants", &self.inner.tenants.len())
            .field("functions", &self.inner.functions.len())
            .finish_non_exhaustive()
    }
}

/// A deployed function. Cheap to clone; keeps its compiled component alive
/// even if the function is replaced or removed, so in-flight invocations
/// finish on the version they started with.
#[derive(Clone)]
pub struct FunctionHandle {
    inner: Arc<FunctionInner>,
}

struct FunctionInner {
    runtime: Arc<Runtime>,
    tenant: Arc<Tenant>,
    name: Arc<str>,
    kind: Kind,
    /// The tenant's limits with this function's overrides applied.
    limits: Limits,
    /// This function's own concurrency slots, if it overrides the tenant's.
    slots: Option<Arc<Semaphore>>,
    config: Arc<BTreeMap<String, String>>,
    outbound_hosts: Arc<[String]>,
    kv_stores: Arc<[String]>,
    blob_containers: Arc<[String]>,
    topics: Arc<[String]>,
    /// The tenant's directory, preopened at `/data`, if granted.
    directory: Option<PathBuf>,
    meters: Arc<FunctionMeters>,
}

/// Which world a deployed component serves, with its pre-instantiation.
enum Kind {
    /// `nimbus:function/handler`: CloudEvents in, response out.
    Event(FunctionPre<InvocationState>),
    /// `wasi:http/incoming-handler`: a standard `wasi:http/proxy` guest.
    Http(ProxyPre<InvocationState>),
}

/// Prefix of the export that makes a component an HTTP function (any 0.2.x).
const HTTP_HANDLER_PREFIX: &str = "wasi:http/incoming-handler@0.2.";

/// What an invocation is given.
enum Input {
    Event(Event),
    Http(http::Request<Bytes>),
}

/// What a guest produced when it returned normally.
enum Output {
    Event(Result<Response, GuestError>),
    Http(http::Response<Bytes>),
}

impl std::fmt::Debug for FunctionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionHandle")
            .field("tenant", &self.inner.tenant.name)
            .field("function", &self.inner.name)
            .finish()
    }
}

/// A finished invocation's bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Already written to the usage sink when you see it.
    pub usage: UsageRecord,
    pub logs: Logs,
}

/// A successful invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub response: Response,
    pub usage: UsageRecord,
    pub logs: Logs,
}

/// A successful invocation of an HTTP function: the guest's response, body
/// buffered.
#[derive(Debug)]
pub struct HttpInvocation {
    pub response: http::Response<Bytes>,
    pub usage: UsageRecord,
    pub logs: Logs,
}

/// Tenant and function names: 1–63 of `[a-z0-9_-]`, starting with a letter
/// or digit. They appear in URLs, metric labels and file names, so nothing
/// that needs escaping in any of them.
fn check_name(kind: &'static str, name: &str) -> Result<(), Error> {
    let reason = if name.is_empty() {
        Some("must not be empty")
    } else if name.len() > 63 {
        Some("must be at most 63 characters")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        Some("may contain only a-z, 0-9, '-' and '_'")
    } else if !name.as_bytes()[0].is_ascii_alphanumeric() {
        Some("must start with a letter or digit")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidName {
            kind,
            name: name.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

const WASM_MAGIC: &[u8; 4] = b"\0asm";
const CORE_MODULE_VERSION: [u8; 4] = [1, 0, 0, 0];

impl Host {
    pub fn builder() -> HostBuilder {
        HostBuilder::default()
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

    /// Registers a tenant. Its functions get `limits`; nothing else is granted.
    pub fn add_tenant(&self, name: &str, limits: Limits) -> Result<(), Error> {
        check_name("tenant", name)?;
        self.inner.runtime.check_limits(name, &limits)?;
        let tenant = Arc::new(Tenant {
            name: name.into(),
            limits,
            slots: Arc::new(Semaphore::new(limits.max_concurrency as usize)),
        });
        match self.inner.tenants.entry(tenant.name.clone()) {
            dashmap::Entry::Occupied(_) => Err(Error::TenantExists(name.to_string())),
            dashmap::Entry::Vacant(v) => {
                v.insert(tenant);
                Ok(())
            }
        }
    }

    /// The limits a tenant was registered with.
    pub fn tenant_limits(&self, tenant: &str) -> Result<Limits, Error> {
        Ok(self.tenant(tenant)?.limits)
    }

    fn tenant(&self, name: &str) -> Result<Arc<Tenant>, Error> {
        self.inner
            .tenants
            .get(name)
            .map(|t| t.clone())
            .ok_or_else(|| Error::NotFound(format!("tenant `{name}`")))
    }

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
        let invalid = |m: String| Err(Error::InvalidComponent(m));
        if bytes.len() > rt.max_component_bytes {
            return invalid(format!(
                "the component is {} bytes, above the limit of {} bytes",
                bytes.len(),
                rt.max_component_bytes
            ));
        }
        if bytes.len() < 8 || &bytes[..4] != WASM_MAGIC {
            return invalid(
                "not a WebAssembly binary (it does not start with the `\\0asm` magic number)"
                    .into(),
            );
        }
        if bytes[4..8] == CORE_MODULE_VERSION {
            return invalid(
                "this is a core WebAssembly module, not a component; build for \
                 `wasm32-wasip2` or wrap it with `wasm-tools component new`"
                    .into(),
            );
        }

        let component = {
            let _slot = rt
                .compile_slots
                .acquire()
                .await
                .map_err(|_| Error::Config("compiler closed".into()))?;
            let engine = rt.engine.clone();
            let owned = bytes.to_vec();
            // Building the copy-on-write memory images here, off the
            // invocation path, halves the first invocation's latency
            // (measured: benches/invoke.rs, group `deploy`).
            tokio::task::spawn_blocking(move || -> wasmtime::Result<Component> {
                let component = Component::new(&engine, &owned)?;
                component.initialize_copy_on_write_image()?;
                wasmtime::Result::Ok(component)
            })
            .await
            .map_err(|e| Error::InvalidComponent(format!("compilation panicked: {e}")))?
            .map_err(|e| Error::InvalidComponent(format!("failed to compile: {e:#}")))?
        };

        let ty = component.component_type();
        for (import, _) in ty.imports(&rt.engine) {
            let bare = import.split('@').next().unwrap_or(import);
            if bare.starts_with("wasi:filesystem/") && !spec.directory {
                return invalid(format!(
                    "the component imports `{import}`, but function `{name}` is not granted \
                     a directory (set its directory grant)"
                ));
            }
            if bare.starts_with("wasi:keyvalue/") && spec.kv_stores.is_empty() {
                return invalid(format!(
                    "the component imports `{import}`, but function `{name}` is granted no \
                     key-value stores (declare them in its kv_stores)"
                ));
            }
            if bare.starts_with("wasi:blobstore/") && spec.blob_containers.is_empty() {
                return invalid(format!(
                    "the component imports `{import}`, but function `{name}` is granted no \
                     blob containers (declare them in its blob_containers)"
                ));
            }
            if bare.starts_with("wasmcloud:messaging/") && spec.topics.is_empty() {
                return invalid(format!(
                    "the component imports `{import}`, but function `{name}` is granted no \
                     topics (declare them in its topics)"
                ));
            }
            if bare == CONFIG_INTERFACE && spec.config.is_empty() {
                return invalid(format!(
                    "the component imports `{import}`, but function `{name}` is granted no \
                     config keys (declare them in its config)"
                ));
            }
            if !GRANTED_INTERFACES.contains(&bare) {
                return invalid(format!(
                    "the component imports `{import}`, which Nimbus does not grant \
                     (granted: wasi:io, wasi:clocks, wasi:random, and wasi:cli \
                     environment/exit/stdio/terminal)"
                ));
            }
        }
        let handler = nimbus_bindings::HANDLER_INTERFACE;
        let exports: Vec<String> = ty.exports(&rt.engine).map(|(n, _)| n.to_string()).collect();
        let exports_any = |prefix: &str| exports.iter().any(|n| n.starts_with(prefix));
        let is_event = exports_any(handler.rsplit_once('.').map_or(handler, |(p, _)| p));
        let is_http = exports_any(HTTP_HANDLER_PREFIX);
        if !is_event && !is_http {
            return invalid(format!(
                "the component does not export `{handler}` or `{HTTP_HANDLER_PREFIX}x` \
                 (it exports: {})",
                if exports.is_empty() {
                    "nothing".to_string()
                } else {
                    exports.join(", ")
                }
            ));
        }
        let directory = if spec.directory {
            let Some(data_dir) = &rt.data_dir else {
                return invalid(format!(
                    "function `{name}` is granted a directory, but the host has no data_dir"
                ));
            };
            let dir = data_dir.join("files").join(&*tenant.name);
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::Config(format!("{}: {e}", dir.display())))?;
            Some(dir)
        } else {
            None
        };
        for topic in &spec.topics {
            nimbus_queue::check_queue_name(topic)
                .map_err(|e| Error::Config(format!("function `{name}`: topic grant: {e}")))?;
        }
        // Granted containers exist from deploy on, the way a serverless
        // template declares its buckets next to its functions.
        for container in &spec.blob_containers {
            let (b, t, c) = (rt.blob.clone(), tenant.name.clone(), container.clone());
            tokio::task::spawn_blocking(move || b.ensure_container(&t, &c))
                .await
                .map_err(|e| Error::Config(format!("blob store task: {e}")))?
                .map_err(|e| {
                    Error::Config(format!(
                        "function `{name}`: blob container grant `{container}`: {e}"
                    ))
                })?;
        }
        let pre = rt
            .linker
            .instantiate_pre(&component)
            .map_err(|e| Error::InvalidComponent(format!("cannot link its imports: {e:#}")))?;
        let kind = if is_event {
            Kind::Event(FunctionPre::new(pre).map_err(|e| {
                Error::InvalidComponent(format!("its `{handler}` export does not match: {e:#}"))
            })?)
        } else {
            Kind::Http(ProxyPre::new(pre).map_err(|e| {
                Error::InvalidComponent(format!(
                    "its `wasi:http/incoming-handler` export does not match: {e:#}"
                ))
            })?)
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
                config: Arc::new(spec.config),
                outbound_hosts: spec.outbound_hosts.into(),
                kv_stores: spec.kv_stores.into(),
                blob_containers: spec.blob_containers.into(),
                topics: spec.topics.into(),
                directory,
                meters,
            }),
        };
        self.inner
            .functions
            .insert((tenant.name.clone(), name.into()), handle.clone());
        tracing::info!(tenant = %tenant.name, function = name, "deployed");
        Ok(handle)
    }

    /// The current version of a deployed function.
    pub fn function(&self, tenant: &str, name: &str) -> Result<FunctionHandle, Error> {
        self.inner
            .functions
            .get(&(Arc::from(tenant), Arc::from(name)))
            .map(|f| f.clone())
            .ok_or_else(|| Error::NotFound(format!("function `{name}` of tenant `{tenant}`")))
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

    /// Logs of the function's most recent invocations (up to 100 and 4 MiB
    /// of output; those that succeeded without writing anything are not
    /// kept), oldest first, or of one invocation.
    pub fn invocation_logs(
        &self,
        tenant: &str,
        function: &str,
        invocation_id: Option<Uuid>,
    ) -> Vec<InvocationLogs> {
        let key = (Arc::from(tenant), Arc::from(function));
        self.inner
            .runtime
            .logs
            .by_function
            .get(&key)
            .map(|kept| {
                kept.invocations
                    .iter()
                    .filter(|l| invocation_id.is_none_or(|id| l.invocation_id == id))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Removes a function; in-flight invocations finish.
    pub fn remove_function(&self, tenant: &str, name: &str) -> Result<(), Error> {
        self.inner
            .functions
            .remove(&(Arc::from(tenant), Arc::from(name)))
            .map(|_| ())
            .ok_or_else(|| Error::NotFound(format!("function `{name}` of tenant `{tenant}`")))
    }

    /// The blob store behind `wasi:blobstore` and the storage API.
    pub fn blob_store(&self) -> Arc<dyn BlobBackend> {
        self.inner.runtime.blob.clone()
    }

    /// The durable queues behind `wasmcloud:messaging` and queue triggers.
    pub fn queue_store(&self) -> Arc<dyn QueueBackend> {
        self.inner.runtime.queues.clone()
    }

    /// From now on, every object written to `tenant`'s `container` (by a
    /// guest or through [`Self::blob_store`] with an event depth) persists an
    /// object-created event with the object. Counted: each call is undone
    /// by one [`Self::unwatch_container`].
    pub fn watch_container(&self, tenant: &str, container: &str) {
        self.inner.runtime.subscriptions.add(tenant, container);
    }

    pub fn unwatch_container(&self, tenant: &str, container: &str) {
        self.inner.runtime.subscriptions.remove(tenant, container);
    }

    /// Whether writes to `tenant`'s `container` raise object-created events.
    pub fn is_watched(&self, tenant: &str, container: &str) -> bool {
        self.inner.runtime.subscriptions.watched(tenant, container)
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

/// Why the guest stopped, before it is turned into an outcome.
enum Ended {
    Returned(Output),
    Failed(wasmtime::Error),
    /// The guest returned but its HTTP response cannot be delivered.
    BadResponse(String),
    TimedOut,
}

impl FunctionHandle {
    pub fn tenant(&self) -> &str {
        &self.inner.tenant.name
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Whether this is a `wasi:http/proxy` function (use [`Self::invoke_http`]).
    pub fn is_http(&self) -> bool {
        matches!(self.inner.kind, Kind::Http(_))
    }

    /// Runs one invocation of an event function in a fresh instance.
    ///
    /// The invocation runs on its own tokio task: if the caller stops
    /// waiting, it still finishes (or hits its deadline) and its usage record
    /// is still written. Must be called within a tokio runtime.
    pub async fn invoke(&self, event: Event) -> Result<Invocation, Error> {
        self.invoke_with(event, Cause::default()).await
    }

    /// [`Self::invoke`] on behalf of a trigger: the usage record carries
    /// `cause.trigger`, and objects the guest writes raise events at
    /// `cause.depth + 1`.
    pub async fn invoke_with(&self, event: Event, cause: Cause) -> Result<Invocation, Error> {
        if self.is_http() {
            return Err(self.wrong_kind("an HTTP function: call it with invoke_http"));
        }
        let (output, report) = self.spawn(Input::Event(event), cause).await?;
        match output {
            Output::Event(Ok(response)) => Ok(Invocation {
                response,
                usage: report.usage,
                logs: report.logs,
            }),
            Output::Event(Err(error)) => Err(Error::Guest { error, report }),
            Output::Http(_) => Err(Error::Config("event function produced HTTP output".into())),
        }
    }

    /// Runs one invocation of a `wasi:http/proxy` function with `request`
    /// (its body already read). The response body is buffered, up to the
    /// host's `max_http_response_bytes`, so the invocation ends — and is
    /// billed — when the guest has produced all of it.
    pub async fn invoke_http(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<HttpInvocation, Error> {
        if !self.is_http() {
            return Err(self.wrong_kind("an event function: call it with invoke"));
        }
        let (output, report) = self
            .spawn(Input::Http(request), Cause::new(Trigger::Http))
            .await?;
        match output {
            Output::Http(response) => Ok(HttpInvocation {
                response,
                usage: report.usage,
                logs: report.logs,
            }),
            Output::Event(_) => Err(Error::Config("HTTP function produced event output".into())),
        }
    }

    /// Refuses an invocation before it runs (e.g. a gateway's rate limit):
    /// writes its throttled usage record, counts it, and returns the
    /// [`Error::Throttled`] to hand back.
    pub fn throttle(&self, reason: impl Into<String>, request_bytes: u64, cause: Cause) -> Error {
        self.throttled(Uuid::now_v7(), reason.into(), request_bytes, cause)
    }

    fn throttled(
        &self,
        invocation_id: Uuid,
        reason: String,
        request_bytes: u64,
        cause: Cause,
    ) -> Error {
        let mut usage = self.usage(
            invocation_id,
            Outcome::Throttled,
            0,
            0,
            None,
            SystemTime::now(),
        );
        usage.request_bytes = request_bytes;
        usage.trigger = cause.trigger;
        match self.finish(usage, Logs::default()) {
            Ok(report) => {
                tracing::info!(%reason, "throttled");
                Error::Throttled { reason, report }
            }
            Err(e) => e,
        }
    }

    /// The limits invocations of this function run under.
    pub fn limits(&self) -> Limits {
        self.inner.limits
    }

    fn wrong_kind(&self, what: &str) -> Error {
        Error::WrongKind(format!(
            "function `{}` of tenant `{}` is {what}",
            self.inner.name, self.inner.tenant.name
        ))
    }

    async fn spawn(&self, input: Input, cause: Cause) -> Result<(Output, Box<Report>), Error> {
        let this = self.clone();
        let invocation_id = Uuid::now_v7();
        let span = tracing::info_span!(
            "invocation",
            tenant = %self.inner.tenant.name,
            function = %self.inner.name,
            invocation_id = %invocation_id,
        );
        tokio::spawn(async move { this.run(invocation_id, input, cause).await }.instrument(span))
            .await
            .unwrap_or_else(|e| {
                // Only reachable if the invocation task panicked: a host bug.
                Err(Error::Config(format!("invocation task failed: {e}")))
            })
    }

    async fn run(
        &self,
        invocation_id: Uuid,
        input: Input,
        cause: Cause,
    ) -> Result<(Output, Box<Report>), Error> {
        let f = &*self.inner;
        let rt = &*f.runtime;
        let limits = f.limits;
        let started_at = SystemTime::now();
        let start = Instant::now();
        let request_bytes = match &input {
            Input::Http(r) => r.body().len() as u64,
            Input::Event(_) => 0,
        };

        let admitted = admit(f, &rt.capacity, rt.max_instances);
        let _permits = match admitted {
            Ok(p) => p,
            Err(reason) => return Err(self.throttled(invocation_id, reason, request_bytes, cause)),
        };
        let _in_flight = f.meters.enter();

        let stdout = CapturedStream::new(rt.max_log_bytes);
        let stderr = CapturedStream::new(rt.max_log_bytes);
        let mut wasi = WasiCtx::builder();
        wasi.stdout(stdout.clone())
            .stderr(stderr.clone())
            .max_random_size(rt.max_random_bytes)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        let preopen = match &f.directory {
            Some(dir) => wasi
                .preopened_dir(dir, "/data", wasmtime_wasi::FsPerms::ReadWrite)
                .map(|_| ()),
            None => Ok(()),
        };
        let mut table = ResourceTable::new();
        table.set_max_capacity(rt.max_resource_handles);
        let state = InvocationState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            hooks: OutboundHttp {
                allowed: f.outbound_hosts.clone(),
                sent: 0,
                denied: 0,
                bytes_sent: Default::default(),
                bytes_received: Default::default(),
            },
            config: f.config.clone(),
            entries: EntrySink::new(rt.max_log_bytes),
            kv: KvAccess {
                backend: rt.kv.clone(),
                tenant: f.tenant.name.clone(),
                granted: f.kv_stores.clone(),
                quota: limits.max_kv_bytes,
                open: 0,
                reads: 0,
                writes: 0,
                denied: 0,
            },
            blob: BlobAccess {
                backend: rt.blob.clone(),
                tenant: f.tenant.name.clone(),
                granted: f.blob_containers.clone(),
                quota: limits.max_blob_bytes,
                // Only a chain of object-triggered invocations deepens:
                // a write from an HTTP, queue or scheduled run starts one.
                event_depth: if cause.trigger == Trigger::Object {
                    cause.depth + 1
                } else {
                    0
                },
                notify: rt.subscriptions.clone(),
                bytes_read: Default::default(),
                bytes_written: 0,
                ops: 0,
                denied: 0,
            },
            messaging: MessagingAccess {
                queues: rt.queues.clone(),
                tenant: f.tenant.name.clone(),
                granted: f.topics.clone(),
                published: 0,
                denied: 0,
            },
            table,
            limiter: MemoryLimiter {
                limit: usize::try_from(limits.max_memory_bytes).unwrap_or(usize::MAX),
                total: 0,
                peak: 0,
                refused: false,
            },
        };
        let mut store = Store::new(&rt.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_hostcall_fuel(rt.hostcall_fuel);
        // A directory that cannot be opened fails the invocation (a trap
        // outcome naming the error), never the host.
        let fuel_setup = preopen.and_then(|()| {
            store
                .set_fuel(limits.fuel)
                .and_then(|()| store.fuel_async_yield_interval(Some(rt.fuel_yield_interval)))
        });

        let ended = match fuel_setup {
            Err(e) => Ended::Failed(e),
            Ok(()) => {
                let call = call_guest(&f.kind, &mut store, input, rt.max_http_response_bytes);
                match tokio::time::timeout(limits.timeout, call).await {
                    Ok(ended) => ended,
                    Err(_) => Ended::TimedOut,
                }
            }
        };

        let fuel_left = store.get_fuel().unwrap_or(0);
        let fuel_consumed = limits.fuel.saturating_sub(fuel_left);
        let state = store.into_data();
        let (peak, memory_refused) = (state.limiter.peak as u64, state.limiter.refused);
        let (outbound_sent, outbound_denied) = (state.hooks.sent, state.hooks.denied);
        let load = |n: &std::sync::atomic::AtomicU64| n.load(std::sync::atomic::Ordering::Relaxed);
        let outbound_bytes = (
            load(&state.hooks.bytes_sent),
            load(&state.hooks.bytes_received),
        );
        let kv = &state.kv;
        let (kv_reads, kv_writes, kv_denied) = (kv.reads, kv.writes, kv.denied);
        let blob = &state.blob;
        let blob_read = blob.bytes_read.load(std::sync::atomic::Ordering::Relaxed);
        let (blob_written, blob_ops, blob_denied) = (blob.bytes_written, blob.ops, blob.denied);
        let (published, msg_denied) = (state.messaging.published, state.messaging.denied);
        let entries = state.entries;

        let (outcome, result) = classify(ended, memory_refused);
        let mut usage = self.usage(
            invocation_id,
            outcome,
            fuel_consumed,
            peak,
            Some(start.elapsed()),
            started_at,
        );
        usage.request_bytes = request_bytes;
        usage.trigger = cause.trigger;
        usage.outbound_requests = outbound_sent;
        (usage.outbound_bytes_sent, usage.outbound_bytes_received) = outbound_bytes;
        usage.denied_calls = outbound_denied + kv_denied + blob_denied + msg_denied;
        usage.kv_reads = kv_reads;
        usage.kv_writes = kv_writes;
        usage.blob_operations = blob_ops;
        usage.blob_bytes_read = blob_read;
        usage.blob_bytes_written = blob_written;
        usage.messages_published = published;
        if let Ok(Output::Http(response)) = &result {
            usage.response_bytes = response.body().len() as u64;
        }
        let (out, out_dropped) = stdout.take();
        let (err, err_dropped) = stderr.take();
        let logs = Logs {
            stdout: out,
            stderr: err,
            entries: entries.entries,
            dropped_bytes: out_dropped + err_dropped + entries.dropped,
        };
        let report = self.finish(usage, logs)?;
        tracing::debug!(outcome = %outcome, fuel = fuel_consumed, "invocation finished");
        match result {
            Ok(output) => Ok((output, report)),
            Err(failure) => Err(failure.into_error(report, &limits, rt.max_wasm_stack)),
        }
    }

    fn usage(
        &self,
        invocation_id: Uuid,
        outcome: Outcome,
        fuel_consumed: u64,
        peak_memory_bytes: u64,
        wall: Option<Duration>,
        started_at: SystemTime,
    ) -> UsageRecord {
        let wall_us = wall.map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        let billed = if wall.is_some() {
            billed_ms(wall_us)
        } else {
            0
        };
        UsageRecord {
            invocation_id,
            tenant: self.inner.tenant.name.to_string(),
            function: self.inner.name.to_string(),
            outcome,
            fuel_consumed,
            peak_memory_bytes,
            wall_duration_us: wall_us,
            billed_duration_ms: billed,
            memory_byte_ms: peak_memory_bytes.saturating_mul(billed),
            started_at: humantime::format_rfc3339_micros(started_at).to_string(),
            request_bytes: 0,
            response_bytes: 0,
            outbound_requests: 0,
            outbound_bytes_sent: 0,
            outbound_bytes_received: 0,
            denied_calls: 0,
            kv_reads: 0,
            kv_writes: 0,
            blob_operations: 0,
            blob_bytes_read: 0,
            blob_bytes_written: 0,
            messages_published: 0,
            trigger: Trigger::Direct,
        }
    }

    /// Writes the record, then counts it: metrics never run ahead of the
    /// ledger, so the two agree exactly.
    fn finish(&self, usage: UsageRecord, logs: Logs) -> Result<Box<Report>, Error> {
        if let Err(e) = self.inner.runtime.sink.record(&usage) {
            tracing::error!(error = %e, invocation_id = %usage.invocation_id, "usage record not written");
            return Err(Error::Ledger(e));
        }
        self.inner.meters.observe(&usage);
        let wrote = !(logs.stdout.is_empty() && logs.stderr.is_empty() && logs.entries.is_empty());
        if wrote || usage.outcome != Outcome::Success {
            let f = &self.inner;
            f.runtime.logs.keep(
                &f.tenant.name,
                &f.name,
                InvocationLogs {
                    invocation_id: usage.invocation_id,
                    tenant: usage.tenant.clone(),
                    function: usage.function.clone(),
                    outcome: usage.outcome,
                    started_at: usage.started_at.clone(),
                    logs: logs.clone(),
                },
            );
        }
        Ok(Box::new(Report { usage, logs }))
    }
}

/// Takes a function slot (if it has its own), a tenant slot and a host
/// slot, or says which limit was hit.
fn admit(
    f: &FunctionInner,
    capacity: &Arc<Semaphore>,
    max_instances: u32,
) -> Result<[Option<OwnedSemaphorePermit>; 3], String> {
    let own = match &f.slots {
        Some(slots) => Some(slots.clone().try_acquire_owned().map_err(|_| {
            format!(
                "function `{}` is at its limit of {} concurrent invocations",
                f.name, f.limits.max_concurrency
            )
        })?),
        None => None,
    };
    let tenant = &f.tenant;
    let t = tenant.slots.clone().try_acquire_owned().map_err(|_| {
        format!(
            "tenant `{}` is at its limit of {} concurrent invocations",
            tenant.name, tenant.limits.max_concurrency
        )
    })?;
    let h = capacity.clone().try_acquire_owned().map_err(|_| {
        format!("the host is at its capacity of {max_instances} concurrent instances")
    })?;
    Ok([own, Some(t), Some(h)])
}

enum Failure {
    Guest(GuestError),
    OutOfFuel,
    Memory,
    Timeout,
    StackOverflow,
    Trap(String),
}

impl Failure {
    fn into_error(self, report: Box<Report>, limits: &Limits, stack: usize) -> Error {
        match self {
            Failure::Guest(error) => Error::Guest { error, report },
            Failure::OutOfFuel => Error::OutOfFuel {
                budget: limits.fuel,
                report,
            },
            Failure::Memory => Error::MemoryLimitExceeded {
                limit: limits.max_memory_bytes,
                report,
            },
            Failure::Timeout => Error::Timeout {
                timeout: limits.timeout,
                report,
            },
            Failure::StackOverflow => Error::StackOverflow {
                limit: stack,
                report,
            },
            Failure::Trap(message) => Error::Trap { message, report },
        }
    }
}

fn classify(ended: Ended, memory_refused: bool) -> (Outcome, Result<Output, Failure>) {
    match ended {
        Ended::Returned(Output::Event(Err(e))) => (Outcome::GuestError, Err(Failure::Guest(e))),
        Ended::Returned(output) => (Outcome::Success, Ok(output)),
        Ended::BadResponse(m) => (
            Outcome::GuestError,
            Err(Failure::Guest(GuestError::Failed(m))),
        ),
        Ended::TimedOut => (Outcome::Timeout, Err(Failure::Timeout)),
        Ended::Failed(e) => match e.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => (Outcome::OutOfFuel, Err(Failure::OutOfFuel)),
            Some(Trap::StackOverflow) => (Outcome::StackOverflow, Err(Failure::StackOverflow)),
            // A guest whose allocation was refused aborts (a trap of its
            // own making): the refusal is the cause worth reporting.
            _ if memory_refused => (Outcome::MemoryLimit, Err(Failure::Memory)),
            Some(trap) => (Outcome::Trap, Err(Failure::Trap(trap.to_string()))),
            None => (Outcome::Trap, Err(Failure::Trap(format!("{e:#}")))),
        },
    }
}

/// Instantiates and calls the guest. Runs inside the invocation's deadline.
async fn call_guest(
    kind: &Kind,
    store: &mut Store<InvocationState>,
    input: Input,
    max_response_bytes: usize,
) -> Ended {
    match (kind, input) {
        (Kind::Event(pre), Input::Event(event)) => {
            let call = async {
                let instance = pre.instantiate_async(&mut *store).await?;
                instance
                    .nimbus_function_handler()
                    .call_handle(&mut *store, &event.into_wit())
                    .await
            };
            match call.await {
                Ok(r) => Ended::Returned(Output::Event(
                    r.map(Response::from).map_err(GuestError::from),
                )),
                Err(e) => Ended::Failed(e),
            }
        }
        (Kind::Http(pre), Input::Http(request)) => {
            call_http(pre, store, request, max_response_bytes).await
        }
        _ => Ended::BadResponse("input does not match the function's kind".into()),
    }
}

async fn call_http(
    pre: &ProxyPre<InvocationState>,
    store: &mut Store<InvocationState>,
    request: http::Request<Bytes>,
    max_response_bytes: usize,
) -> Ended {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let request = request.map(|b| {
        http_body_util::Full::new(b)
            .map_err(|never| -> wasmtime_wasi_http::Error { match never {} })
    });
    let setup = (|| {
        let req = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, request)?;
        let out = store.data_mut().http().new_response_outparam(tx)?;
        wasmtime::Result::Ok((req, out))
    })();
    let (req, out) = match setup {
        Ok(v) => v,
        Err(e) => return Ended::Failed(e),
    };

    // The guest may stream its body after setting the response, so collect
    // concurrently with the call; a bounded body channel would otherwise
    // stall the guest.
    let collect = collect_response(rx, max_response_bytes);
    tokio::pin!(collect);
    let mut response = None;
    let called = {
        let guest = async {
            let proxy = pre.instantiate_async(&mut *store).await?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut *store, req, out)
                .await
        };
        tokio::pin!(guest);
        loop {
            tokio::select! {
                r = &mut guest => break r,
                c = &mut collect, if response.is_none() => response = Some(c),
            }
        }
    };
    if let Err(e) = called {
        return Ended::Failed(e);
    }
    let response = match response {
        Some(r) => r,
        None => {
            // The guest returned without finishing its response: drop what
            // it left behind (an unset outparam, an unfinished body) so the
            // collection ends instead of waiting for the deadline.
            store.data_mut().table = ResourceTable::new();
            collect.await
        }
    };
    match response {
        Ok(r) => Ended::Returned(Output::Http(r)),
        Err(m) => Ended::BadResponse(m),
    }
}

async fn collect_response(
    rx: tokio::sync::oneshot::Receiver<Result<http::Response<HyperOutgoingBody>, ErrorCode>>,
    max_bytes: usize,
) -> Result<http::Response<Bytes>, String> {
    let response = match rx.await {
        Ok(Ok(r)) => r,
        Ok(Err(code)) => return Err(format!("the guest answered with error {code:?}")),
        Err(_) => return Err("the guest returned without setting a response".into()),
    };
    let (parts, mut body) = response.into_parts();
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("the guest's response body failed: {e}"))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > max_bytes {
                return Err(format!(
                    "the response body exceeds the limit of {max_bytes} bytes"
                ));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(http::Response::from_parts(parts, Bytes::from(buf)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("tenant", "acme-1_x").is_ok());
        for bad in ["", "Acme", "a/b", "-x", "a b", &"x".repeat(64)] {
            let err = check_name("tenant", bad).unwrap_err();
            assert!(matches!(err, Error::InvalidName { .. }), "{bad:?}");
        }
    }

    #[test]
    fn kept_logs_are_bounded_by_count_and_bytes() {
        let store = LogStore::default();
        let (t, f): (Arc<str>, Arc<str>) = ("t".into(), "f".into());
        let entry = |bytes: usize| InvocationLogs {
            invocation_id: Uuid::now_v7(),
            tenant: "t".into(),
            function: "f".into(),
            outcome: Outcome::Success,
            started_at: String::new(),
            logs: Logs {
                stdout: vec![b'x'; bytes],
                ..Logs::default()
            },
        };
        for _ in 0..10 {
            store.keep(&t, &f, entry(1 << 20));
        }
        let kept = store.by_function.get(&(t.clone(), f.clone())).unwrap();
        assert_eq!(kept.invocations.len(), 4);
        assert_eq!(kept.bytes, 4 << 20);
        drop(kept);
        for _ in 0..150 {
            store.keep(&t, &f, entry(1));
        }
        let kept = store.by_function.get(&(t, f)).unwrap();
        assert_eq!(kept.invocations.len(), KEPT_INVOCATION_LOGS);
        assert_eq!(kept.bytes, KEPT_INVOCATION_LOGS);
    }

    #[test]
    fn limiter_sums_memories_and_refuses_past_the_limit() {
        let mut l = MemoryLimiter {
            limit: 3 << 16,
            total: 0,
            peak: 0,
            refused: false,
        };
        assert!(l.memory_growing(0, 1 << 16, None).unwrap());
        assert!(l.memory_growing(0, 1 << 16, None).unwrap());
        assert!(l.memory_growing(1 << 16, 3 << 16, None).is_ok_and(|ok| !ok));
        assert!(l.refused);
        assert_eq!(l.peak, 2 << 16);
    }
}
