//! Invocation benchmarks: what Nimbus costs per call against bare wasmtime,
//! what a deploy costs, and why deadlines use fuel yields rather than epochs.
//!
//! `cargo bench --bench invoke` runs every group and then prints a summary
//! table read back from criterion's `estimates.json` files. A filter
//! (`cargo bench --bench invoke -- deploy`) runs only matching benchmarks;
//! the table then marks the others as not measured.
//!
//! Groups:
//! - `invoke_echo`: a warm invocation of the `echo` guest (16 bytes) through
//!   Nimbus (fuel, memory limiter, timeout, metrics, JSON-lines ledger) and
//!   through plain wasmtime (pooling allocator, no fuel, no epochs).
//! - `invoke_echo_breakdown`: cumulative steps between the two (Nimbus's
//!   pool config, fuel, store setup, spawn + timeout, bookkeeping, ledger),
//!   to see where the difference comes from; plus the ledger's parts alone.
//! - `deploy`: compiling a deploy, and the first invocation after one.
//! - `deadline_mechanism`: the `compute` guest (prime sieve below 200 000)
//!   with no metering, with fuel + async yields (Nimbus), and with fuel +
//!   epoch interruption.
//!
//! After criterion, the echo variants and the deadline configs are also run
//! interleaved (rotating order, short batches) and compared within each
//! round: on a shared 2-core machine, load from other processes shifts
//! sequential criterion runs by more than the differences measured here,
//! while the paired ratios stay put. Both tables are printed.

#[path = "common/paired.rs"]
mod paired;
#[path = "common/reports.rs"]
mod reports;
use paired::{PairedStat, paired};
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use criterion::{Criterion, SamplingMode};
use nimbus_bindings::{Event as WitEvent, FunctionPre};
use nimbus_core::{Event, FunctionHandle, Host, JsonLinesLedger, Limits, UsageRecord, UsageSink};
use tokio::runtime::Runtime;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter, Store,
};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

const TENANT: &str = "bench";
const ECHO_DATA: &[u8; 16] = b"0123456789abcdef";
const COMPUTE_DATA: &[u8] = b"200000";
/// Nimbus's defaults (`HostBuilder`, `Limits`), mirrored for plain wasmtime.
const FUEL: u64 = 1_000_000_000;
const FUEL_YIELD_INTERVAL: u64 = 1_000_000;

const G_INVOKE: &str = "invoke_echo";
const G_BREAKDOWN: &str = "invoke_echo_breakdown";
const G_DEPLOY: &str = "deploy";
const G_DEADLINE: &str = "deadline_mechanism";

// ---------------------------------------------------------------------------
// Plain wasmtime

/// Store data of a plain-wasmtime invocation.
struct Plain {
    wasi: WasiCtx,
    table: ResourceTable,
    /// Installed only by the Nimbus-like breakdown step.
    limiter: MemoryLimiter,
}

impl WasiView for Plain {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The same bookkeeping as Nimbus's limiter: a sum over memories, a peak.
struct MemoryLimiter {
    limit: usize,
    total: usize,
    peak: usize,
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
        Ok(true)
    }
}

/// How a plain-wasmtime store is metered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Metering {
    /// No fuel, no epochs: the baseline.
    None,
    /// Fuel with an async yield every `FUEL_YIELD_INTERVAL`: what Nimbus uses.
    FuelYield,
    /// Fuel for billing (no yields) plus epoch interruption that yields and
    /// re-arms one tick later: the alternative design.
    FuelEpoch,
    /// Everything Nimbus sets on a store (fuel + yields, memory limiter,
    /// hostcall fuel, resource-table cap, stdout and stderr captured, WASI
    /// options), without Nimbus's bookkeeping around it. Used with
    /// Nimbus's pool config.
    NimbusLike,
}

fn engine(metering: Metering, pool: PoolingAllocationConfig) -> Engine {
    let mut config = Config::new();
    config
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .wasm_component_model(true)
        .consume_fuel(metering != Metering::None)
        .epoch_interruption(metering == Metering::FuelEpoch);
    Engine::new(&config).expect("wasmtime engine")
}

/// The pool Nimbus builds from its default `PoolConfig`.
fn nimbus_pool() -> PoolingAllocationConfig {
    nimbus_core::PoolConfig::default()
        .pooling_allocation_config()
        .expect("the default pool")
}

/// Full WASI p2 plus the types-only interface, then compile and pre-link.
fn prepare(engine: &Engine, wasm: &[u8]) -> FunctionPre<Plain> {
    prepare_with(engine, wasm, false)
}

/// [`prepare`], optionally building the copy-on-write memory images now
/// rather than lazily at the first instantiation.
fn prepare_with(engine: &Engine, wasm: &[u8], init_cow_image: bool) -> FunctionPre<Plain> {
    let mut linker = Linker::<Plain>::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).expect("linking WASI");
    linker
        .instance(nimbus_bindings::TYPES_INTERFACE)
        .expect("linking the types interface");
    let component = Component::new(engine, wasm).expect("compiling the guest");
    if init_cow_image {
        component
            .initialize_copy_on_write_image()
            .expect("copy-on-write image");
    }
    let pre = linker
        .instantiate_pre(&component)
        .expect("pre-instantiating the guest");
    FunctionPre::new(pre).expect("the guest exports the handler")
}

/// One invocation in a fresh store and instance, as a host would do it.
async fn call_plain(
    pre: &FunctionPre<Plain>,
    metering: Metering,
    event: &WitEvent,
) -> nimbus_bindings::Response {
    let mut wasi = WasiCtx::builder();
    wasi.stdout(MemoryOutputPipe::new(1 << 20));
    if metering == Metering::NimbusLike {
        wasi.stderr(MemoryOutputPipe::new(1 << 20))
            .max_random_size(1 << 20)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
    }
    let mut table = ResourceTable::new();
    if metering == Metering::NimbusLike {
        table.set_max_capacity(10_000);
    }
    let state = Plain {
        wasi: wasi.build(),
        table,
        limiter: MemoryLimiter {
            limit: 128 << 20,
            total: 0,
            peak: 0,
        },
    };
    let mut store = Store::new(pre.engine(), state);
    match metering {
        Metering::None => {}
        Metering::FuelYield => {
            store.set_fuel(FUEL).expect("fuel");
            store
                .fuel_async_yield_interval(Some(FUEL_YIELD_INTERVAL))
                .expect("fuel yield interval");
        }
        Metering::FuelEpoch => {
            store.set_fuel(FUEL).expect("fuel");
            store.set_epoch_deadline(1);
            store.epoch_deadline_async_yield_and_update(1);
        }
        Metering::NimbusLike => {
            store.limiter(|s| &mut s.limiter);
            store.set_hostcall_fuel(16 << 20);
            store.set_fuel(FUEL).expect("fuel");
            store
                .fuel_async_yield_interval(Some(FUEL_YIELD_INTERVAL))
                .expect("fuel yield interval");
        }
    }
    let instance = pre
        .instantiate_async(&mut store)
        .await
        .expect("instantiate");
    let response = instance
        .nimbus_function_handler()
        .call_handle(&mut store, event)
        .await
        .expect("call")
        .expect("the guest succeeds");
    if metering == Metering::NimbusLike {
        // Nimbus reads these back for the usage record.
        black_box((store.get_fuel().ok(), store.data().limiter.peak));
    }
    response
}

fn wit_event(event: &Event) -> WitEvent {
    WitEvent {
        id: event.id.clone(),
        source: event.source.clone(),
        type_: event.ty.clone(),
        subject: event.subject.clone(),
        time: event.time.clone(),
        content_type: event.content_type.clone(),
        attributes: event.attributes.clone(),
        data: event.data.clone(),
    }
}

/// A usage sink that drops records: Nimbus minus its ledger write.
struct NullSink;

impl UsageSink for NullSink {
    fn record(&self, record: &UsageRecord) -> std::io::Result<()> {
        black_box(record);
        Ok(())
    }
}

/// Increments an engine's epoch every millisecond until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(1));
                engine.increment_epoch();
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------
// Setup

struct Setup {
    rt: Runtime,
    echo_wasm: Vec<u8>,
    compute_wasm: Vec<u8>,
    /// The Nimbus host under test: ledger file in `_dir`, default limits.
    host: Host,
    echo: FunctionHandle,
    echo_event: Event,
    echo_wit: WitEvent,
    /// The plain-wasmtime baseline for `echo`.
    baseline: FunctionPre<Plain>,
    _dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let guests = nimbus_guests::build_all().expect("building the sample guests");
    let echo_wasm = guests.bytes("echo");
    let compute_wasm = guests.bytes("compute");
    // One thread for the runtime, the same for Nimbus and the baseline.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let host = Host::builder()
        .ledger_path(dir.path().join("usage.jsonl"))
        .build()
        .expect("host");
    host.add_tenant(TENANT, Limits::default()).expect("tenant");
    let echo = rt
        .block_on(host.deploy(TENANT, "echo", &echo_wasm))
        .expect("deploying echo");
    let echo_event = Event::new("bench.echo", "/bench", ECHO_DATA.to_vec());
    let done = rt
        .block_on(echo.invoke(echo_event.clone()))
        .expect("echo works through Nimbus");
    assert_eq!(done.response.data, ECHO_DATA);
    let echo_wit = wit_event(&echo_event);
    let baseline = prepare(
        &engine(Metering::None, PoolingAllocationConfig::default()),
        &echo_wasm,
    );
    let check = rt.block_on(call_plain(&baseline, Metering::None, &echo_wit));
    assert_eq!(check.data, ECHO_DATA);
    Setup {
        rt,
        echo_wasm,
        compute_wasm,
        host,
        echo,
        echo_event,
        echo_wit,
        baseline,
        _dir: dir,
    }
}

/// The steps between the baseline and Nimbus.
struct Steps {
    nimbus_pool: FunctionPre<Plain>,
    fuel: FunctionPre<Plain>,
    nimbus_like: Arc<FunctionPre<Plain>>,
    /// Nimbus with usage records dropped instead of written.
    null_sink: FunctionHandle,
    /// Nimbus with its ledger file on tmpfs (if `/dev/shm` is there).
    tmpfs: Option<FunctionHandle>,
    _hosts: Vec<Host>,
    _tmpfs_dir: Option<tempfile::TempDir>,
}

fn nimbus_echo(s: &Setup, builder: nimbus_core::HostBuilder) -> (Host, FunctionHandle) {
    let host = builder.build().expect("host");
    host.add_tenant(TENANT, Limits::default()).expect("tenant");
    let echo =
        s.rt.block_on(host.deploy(TENANT, "echo", &s.echo_wasm))
            .expect("deploying echo");
    (host, echo)
}

fn steps(s: &Setup) -> Steps {
    let nimbus_pool_pre = prepare(&engine(Metering::None, nimbus_pool()), &s.echo_wasm);
    let fuel = prepare(&engine(Metering::FuelYield, nimbus_pool()), &s.echo_wasm);
    let nimbus_like = Arc::new(prepare(
        &engine(Metering::NimbusLike, nimbus_pool()),
        &s.echo_wasm,
    ));
    let (null_host, null_sink) = nimbus_echo(s, Host::builder().usage_sink(Arc::new(NullSink)));
    let mut hosts = vec![null_host];
    let tmpfs_dir = tempfile::tempdir_in("/dev/shm").ok();
    let tmpfs = tmpfs_dir.as_ref().map(|dir| {
        let (host, echo) = nimbus_echo(
            s,
            Host::builder().ledger_path(dir.path().join("usage.jsonl")),
        );
        hosts.push(host);
        echo
    });
    Steps {
        nimbus_pool: nimbus_pool_pre,
        fuel,
        nimbus_like,
        null_sink,
        tmpfs,
        _hosts: hosts,
        _tmpfs_dir: tmpfs_dir,
    }
}

/// What Nimbus wraps around a call: its own task, and a deadline.
async fn spawn_with_timeout(
    pre: Arc<FunctionPre<Plain>>,
    event: WitEvent,
) -> nimbus_bindings::Response {
    tokio::spawn(async move {
        let call = call_plain(&pre, Metering::NimbusLike, &event);
        tokio::time::timeout(Duration::from_secs(10), call).await
    })
    .await
    .expect("task")
    .expect("in time")
}

/// The echo variants, from the baseline to Nimbus; each step adds to the
/// one before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    Baseline,
    NimbusPool,
    FuelYield,
    NimbusStore,
    SpawnTimeout,
    NimbusNullSink,
    NimbusTmpfs,
    Nimbus,
}

impl Variant {
    const ALL: [Variant; 8] = [
        Variant::Baseline,
        Variant::NimbusPool,
        Variant::FuelYield,
        Variant::NimbusStore,
        Variant::SpawnTimeout,
        Variant::NimbusNullSink,
        Variant::NimbusTmpfs,
        Variant::Nimbus,
    ];

    fn label(self) -> &'static str {
        match self {
            Variant::Baseline => "wasmtime baseline (pooling, no fuel)",
            Variant::NimbusPool => "+ Nimbus's pool config (keep-resident…)",
            Variant::FuelYield => "+ fuel, async yield every 1M",
            Variant::NimbusStore => "+ Nimbus store setup (limiter, stderr…)",
            Variant::SpawnTimeout => "+ tokio::spawn + tokio::time::timeout",
            Variant::NimbusNullSink => "Nimbus, usage records dropped",
            Variant::NimbusTmpfs => "Nimbus, ledger file on tmpfs",
            Variant::Nimbus => "Nimbus, ledger file on disk (the real one)",
        }
    }

    /// Its criterion benchmark, if it has one.
    fn criterion_id(self) -> (&'static str, &'static str) {
        match self {
            Variant::Baseline => (G_INVOKE, "wasmtime_baseline"),
            Variant::NimbusPool => (G_BREAKDOWN, "wasmtime_nimbus_pool"),
            Variant::FuelYield => (G_BREAKDOWN, "wasmtime_fuel_yield"),
            Variant::NimbusStore => (G_BREAKDOWN, "wasmtime_nimbus_store"),
            Variant::SpawnTimeout => (G_BREAKDOWN, "wasmtime_nimbus_store_spawn_timeout"),
            Variant::NimbusNullSink => (G_BREAKDOWN, "nimbus_null_sink"),
            Variant::NimbusTmpfs => (G_BREAKDOWN, "nimbus_ledger_on_tmpfs"),
            Variant::Nimbus => (G_INVOKE, "nimbus"),
        }
    }

    /// One invocation; `false` if this variant is unavailable here.
    async fn run(self, s: &Setup, st: &Steps) -> bool {
        match self {
            Variant::Baseline => {
                black_box(call_plain(&s.baseline, Metering::None, &s.echo_wit.clone()).await);
            }
            Variant::NimbusPool => {
                let event = s.echo_wit.clone();
                black_box(call_plain(&st.nimbus_pool, Metering::None, &event).await);
            }
            Variant::FuelYield => {
                black_box(call_plain(&st.fuel, Metering::FuelYield, &s.echo_wit.clone()).await);
            }
            Variant::NimbusStore => {
                let event = s.echo_wit.clone();
                black_box(call_plain(&st.nimbus_like, Metering::NimbusLike, &event).await);
            }
            Variant::SpawnTimeout => {
                let call = spawn_with_timeout(st.nimbus_like.clone(), s.echo_wit.clone());
                black_box(call.await);
            }
            Variant::NimbusNullSink => {
                black_box(
                    st.null_sink
                        .invoke(s.echo_event.clone())
                        .await
                        .expect("invoke"),
                );
            }
            Variant::NimbusTmpfs => match &st.tmpfs {
                Some(f) => {
                    black_box(f.invoke(s.echo_event.clone()).await.expect("invoke"));
                }
                None => return false,
            },
            Variant::Nimbus => {
                black_box(s.echo.invoke(s.echo_event.clone()).await.expect("invoke"));
            }
        }
        true
    }
}

// ---------------------------------------------------------------------------
// Criterion groups

fn bench_invoke_echo(c: &mut Criterion, s: &Setup) {
    let mut g = c.benchmark_group(G_INVOKE);
    g.bench_function("nimbus", |b| {
        b.to_async(&s.rt)
            .iter(|| s.echo.invoke(s.echo_event.clone()))
    });
    g.bench_function("wasmtime_baseline", |b| {
        b.to_async(&s.rt)
            .iter(|| async { call_plain(&s.baseline, Metering::None, &s.echo_wit.clone()).await })
    });
    g.finish();
}

/// From the baseline to Nimbus in steps, plus the ledger's parts alone.
fn bench_breakdown(c: &mut Criterion, s: &Setup, st: &Steps) {
    // The ledger write alone, with a real record, to a file on disk.
    let dir = tempfile::tempdir().expect("temp dir");
    let ledger = JsonLinesLedger::open(dir.path().join("usage.jsonl")).expect("ledger");
    let record =
        s.rt.block_on(s.echo.invoke(s.echo_event.clone()))
            .expect("invoke")
            .usage;

    let mut g = c.benchmark_group(G_BREAKDOWN);
    for v in Variant::ALL {
        let (group, name) = v.criterion_id();
        if group != G_BREAKDOWN || !s.rt.block_on(v.run(s, st)) {
            continue;
        }
        g.bench_function(name, |b| b.to_async(&s.rt).iter(|| v.run(s, st)));
    }
    g.bench_function("ledger_record_only", |b| {
        b.iter(|| ledger.record(black_box(&record)).expect("ledger write"))
    });
    g.bench_function("usage_record_to_json", |b| {
        b.iter(|| serde_json::to_vec(black_box(&record)).expect("json"))
    });
    // Uuid::now_v7 + an RFC 3339 timestamp + small strings: roughly the
    // id and time bookkeeping Nimbus does per invocation.
    g.bench_function("event_new", |b| {
        b.iter(|| Event::new("bench.echo", "/bench", Vec::new()))
    });
    g.finish();
}

fn bench_deploy(c: &mut Criterion, s: &Setup) {
    let mut g = c.benchmark_group(G_DEPLOY);
    g.sample_size(10);
    g.sampling_mode(SamplingMode::Flat);
    g.measurement_time(Duration::from_secs(3));
    g.bench_function("compile", |b| {
        b.to_async(&s.rt)
            .iter(|| s.host.deploy(TENANT, "echo-deploy", &s.echo_wasm))
    });
    // Each iteration deploys (~25 ms, untimed) and times one invoke.
    // Criterion plans iterations from the wall time of the whole routine
    // (deploys included) and analyses only the returned (invoke) time, so
    // the budget below is mostly compile time: with flat sampling, 10
    // samples of ~8 deploy+invoke rounds, one warm-up round.
    g.warm_up_time(Duration::from_millis(1));
    g.measurement_time(Duration::from_secs(2));
    g.bench_function("first_invoke", |b| {
        b.to_async(&s.rt).iter_custom(|iters| async move {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let f = s
                    .host
                    .deploy(TENANT, "echo-first", &s.echo_wasm)
                    .await
                    .expect("deploy");
                let event = s.echo_event.clone();
                let start = Instant::now();
                black_box(f.invoke(event).await.expect("invoke"));
                timed += start.elapsed();
            }
            timed
        })
    });
    // The same in plain wasmtime, with and without building the
    // copy-on-write memory image before the first instantiation (wasmtime
    // builds it lazily, on the first instantiation of a new module).
    // And with Nimbus's pool config, to tell its share of Nimbus's figure.
    let default_pool = engine(Metering::None, PoolingAllocationConfig::default());
    let nimbus_pool = engine(Metering::None, nimbus_pool());
    for (name, engine, init_cow_image) in [
        ("first_call_plain", &default_pool, false),
        ("first_call_plain_cow_init", &default_pool, true),
        ("first_call_plain_nimbus_pool", &nimbus_pool, false),
    ] {
        g.bench_function(name, |b| {
            b.to_async(&s.rt).iter_custom(|iters| async move {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    let pre = prepare_with(engine, &s.echo_wasm, init_cow_image);
                    let start = Instant::now();
                    black_box(call_plain(&pre, Metering::None, &s.echo_wit).await);
                    timed += start.elapsed();
                }
                timed
            })
        });
    }
    g.finish();
}

const DEADLINE_CONFIGS: [(&str, &str, Metering); 3] = [
    ("no_metering", "no fuel, no epochs", Metering::None),
    (
        "fuel_yield_1m",
        "fuel + async yield every 1M fuel (Nimbus)",
        Metering::FuelYield,
    ),
    (
        "fuel_epoch_1ms",
        "fuel + epochs (yield per tick, 1 ms ticker)",
        Metering::FuelEpoch,
    ),
];

/// Returns the paired comparison if the group ran.
fn bench_deadline(c: &mut Criterion, s: &Setup, since: SystemTime) -> Option<Vec<PairedStat>> {
    let wit = WitEvent {
        data: COMPUTE_DATA.to_vec(),
        ..s.echo_wit.clone()
    };
    let pres: Vec<_> = DEADLINE_CONFIGS
        .iter()
        .map(|&(name, _, m)| {
            let pre = prepare(
                &engine(m, PoolingAllocationConfig::default()),
                &s.compute_wasm,
            );
            let out = s.rt.block_on(call_plain(&pre, m, &wit));
            assert_eq!(out.data, b"17984", "{name}: primes below 200000");
            (name, m, pre)
        })
        .collect();

    // Epochs tick every 1 ms from a background thread, as a deployment that
    // enforced deadlines with epochs would have to: with an epoch that
    // never moves we would measure only the instrumentation's checks and
    // none of the yields, understating that design, while the fuel config
    // does yield (every 1M fuel, ~0.3 ms of this guest). The ticker runs
    // through the whole group so every config sees the same wake-ups.
    let epoch_engine = pres
        .iter()
        .find(|(_, m, _)| *m == Metering::FuelEpoch)
        .map(|(_, _, pre)| pre.engine().clone())
        .expect("epoch config");
    let _ticker = EpochTicker::start(epoch_engine);

    let mut g = c.benchmark_group(G_DEADLINE);
    g.sample_size(50);
    for (name, m, pre) in &pres {
        g.bench_function(*name, |b| {
            b.to_async(&s.rt)
                .iter(|| async { call_plain(pre, *m, &wit.clone()).await })
        });
    }
    g.finish();

    // The paired comparison, still under the ticker.
    mean_ns(G_DEADLINE, DEADLINE_CONFIGS[0].0, since).ok()?;
    Some(paired(&s.rt, pres.len(), 41, 10, |i| {
        let (_, m, pre) = &pres[i];
        let wit = &wit;
        async move {
            black_box(call_plain(pre, *m, wit).await);
        }
    }))
}

// ---------------------------------------------------------------------------
// Paired comparison

/// The echo variants available here, paired.
fn paired_echo(s: &Setup, st: &Steps) -> Vec<(Variant, PairedStat)> {
    let available: Vec<Variant> = Variant::ALL
        .into_iter()
        .filter(|v| s.rt.block_on(v.run(s, st)))
        .collect();
    let stats = paired(&s.rt, available.len(), 101, 100, |i| {
        let v = available[i];
        async move {
            v.run(s, st).await;
        }
    });
    available.into_iter().zip(stats).collect()
}

// ---------------------------------------------------------------------------
// Summary

fn human(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

const W: usize = 46;

/// One table row: the time, and its ratio against `base` when both exist.
fn row(label: &str, value: &Result<f64, String>, base: Option<&Result<f64, String>>) {
    match (value, base) {
        (Ok(v), Some(Ok(b))) => println!("  {label:<W$} {:>10}  {:>6.2}×", human(*v), v / b),
        (Ok(v), _) => println!("  {label:<W$} {:>10}", human(*v)),
        (Err(why), _) => println!("  {label:<W$} {why}"),
    }
}

fn paired_row(label: &str, p: &PairedStat) {
    let [lo, mid, hi] = p.ratio;
    println!(
        "  {label:<W$} {:>10}  {mid:>6.2}×  ({lo:.2}–{hi:.2})",
        human(p.median_ns)
    );
}

struct Paired {
    echo: Option<Vec<(Variant, PairedStat)>>,
    deadline: Option<Vec<PairedStat>>,
}

fn summary(since: SystemTime, paired: &Paired) {
    let get = |g: &str, f: &str| mean_ns(g, f, since);
    println!();
    println!("==== Summary: criterion means (this run) ====");

    println!("\n[{G_INVOKE}] echo, 16 bytes, fresh instance per call; ratio vs baseline");
    let base = get(G_INVOKE, "wasmtime_baseline");
    let nimbus = get(G_INVOKE, "nimbus");
    row(Variant::Baseline.label(), &base, Some(&base));
    row("Nimbus FunctionHandle::invoke", &nimbus, Some(&base));
    if let (Ok(n), Ok(b)) = (&nimbus, &base) {
        let ratio = n / b;
        let verdict = if ratio <= 1.10 { "within" } else { "ABOVE" };
        println!(
            "  => Nimbus / baseline = {ratio:.3}× ({verdict} the 1.10× target), {}{} per call",
            if n >= b { "+" } else { "−" },
            human((n - b).abs())
        );
        println!("     (measured one after the other; the paired figure below is steadier)");
    }

    println!("\n[{G_BREAKDOWN}] steps from baseline to Nimbus (cumulative); ratio vs baseline");
    for v in Variant::ALL {
        let (g, f) = v.criterion_id();
        if g == G_BREAKDOWN {
            row(v.label(), &get(g, f), Some(&base));
        }
    }
    row(
        "JsonLinesLedger::record alone (file on disk)",
        &get(G_BREAKDOWN, "ledger_record_only"),
        None,
    );
    row(
        "  of which serde_json::to_vec(record)",
        &get(G_BREAKDOWN, "usage_record_to_json"),
        None,
    );
    row(
        "Event::new (Uuid::now_v7 + RFC 3339 time)",
        &get(G_BREAKDOWN, "event_new"),
        None,
    );

    println!("\n[{G_DEPLOY}] echo component");
    row(
        "deploy (validate + compile + pre-link)",
        &get(G_DEPLOY, "compile"),
        None,
    );
    row(
        "first invoke after deploy; vs warm Nimbus",
        &get(G_DEPLOY, "first_invoke"),
        Some(&nimbus),
    );
    row(
        "plain: first call after compile; vs warm",
        &get(G_DEPLOY, "first_call_plain"),
        Some(&base),
    );
    row(
        "  same, CoW image built at compile; vs warm",
        &get(G_DEPLOY, "first_call_plain_cow_init"),
        Some(&base),
    );
    row(
        "  same, Nimbus's pool config; vs warm, same",
        &get(G_DEPLOY, "first_call_plain_nimbus_pool"),
        Some(&get(G_BREAKDOWN, "wasmtime_nimbus_pool")),
    );

    println!("\n[{G_DEADLINE}] compute(200000), plain wasmtime; ratio vs no metering");
    let none = get(G_DEADLINE, DEADLINE_CONFIGS[0].0);
    for (name, label, _) in DEADLINE_CONFIGS {
        row(label, &get(G_DEADLINE, name), Some(&none));
    }

    println!();
    println!("==== Paired, interleaved (median per call; median ratio, p25–p75) ====");
    match &paired.echo {
        Some(echo) => {
            println!("\n[echo] 101 rounds × 100 calls per variant; ratio vs baseline");
            for (v, p) in echo {
                paired_row(v.label(), p);
            }
            let find = |want| echo.iter().find(|(v, _)| *v == want).map(|(_, p)| p);
            if let Some(p) = find(Variant::Nimbus) {
                let verdict = if p.ratio[1] <= 1.10 {
                    "within"
                } else {
                    "ABOVE"
                };
                println!(
                    "  => Nimbus / baseline = {:.3}× paired ({verdict} the 1.10× target)",
                    p.ratio[1]
                );
                if let Some(pool) = find(Variant::NimbusPool) {
                    println!(
                        "  => Nimbus / (baseline with Nimbus's pool config) ≈ {:.3}×: \
                         Nimbus's own per-call overhead, +{}",
                        p.ratio[1] / pool.ratio[1],
                        human(p.median_ns - pool.median_ns)
                    );
                }
            }
        }
        None => println!("\n[echo] not run ({G_INVOKE} was not measured)"),
    }
    match &paired.deadline {
        Some(d) => {
            println!("\n[compute(200000)] 41 rounds × 10 calls per config; ratio vs no metering");
            for ((_, label, _), p) in DEADLINE_CONFIGS.iter().zip(d) {
                paired_row(label, p);
            }
        }
        None => println!("\n[compute(200000)] not run ({G_DEADLINE} was not measured)"),
    }
    println!();
}

fn main() {
    let since = SystemTime::now();
    let s = setup();
    let st = steps(&s);
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();
    bench_invoke_echo(&mut c, &s);
    bench_breakdown(&mut c, &s, &st);
    // Paired only when criterion measured the group (a filter may skip it).
    let echo = mean_ns(G_INVOKE, "nimbus", since)
        .ok()
        .map(|_| paired_echo(&s, &st));
    bench_deploy(&mut c, &s);
    let deadline = bench_deadline(&mut c, &s, since);
    c.final_summary();
    summary(since, &Paired { echo, deadline });
}

/// The mean of one benchmark in ns, from this run only.
fn mean_ns(group: &str, function: &str, since: SystemTime) -> Result<f64, String> {
    reports::estimate_ns(group, function, since, "mean")
}
