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
//! - `invoke_echo_breakdown`: steps between the two, to see where Nimbus's
//!   extra time goes.
//! - `deploy`: compiling a deploy, and the first invocation after one.
//! - `deadline_mechanism`: the `compute` guest (prime sieve below 200 000)
//!   with no metering, with fuel + async yields (Nimbus), and with fuel +
//!   epoch interruption.

use std::hint::black_box;
use std::path::PathBuf;
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
    /// options), without Nimbus's bookkeeping around it.
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
    let (instances, cores, memories, tables) = (256, 16, 2, 8);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(instances)
        .max_core_instances_per_component(cores)
        .total_core_instances(instances * cores)
        .max_memories_per_component(memories)
        .total_memories(instances * memories)
        .max_tables_per_component(tables)
        .total_tables(instances * tables)
        .total_stacks(instances)
        .max_memory_size(4 << 30);
    pool
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
// Groups

struct Setup {
    rt: Runtime,
    echo_wasm: Vec<u8>,
    compute_wasm: Vec<u8>,
    /// The Nimbus host under test: ledger file in `_dir`, default limits.
    host: Host,
    echo: FunctionHandle,
    echo_event: Event,
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
    let baseline = prepare(
        &engine(Metering::None, PoolingAllocationConfig::default()),
        &echo_wasm,
    );
    let check = rt.block_on(call_plain(
        &baseline,
        Metering::None,
        &wit_event(&echo_event),
    ));
    assert_eq!(check.data, ECHO_DATA);
    Setup {
        rt,
        echo_wasm,
        compute_wasm,
        host,
        echo,
        echo_event,
        baseline,
        _dir: dir,
    }
}

fn bench_invoke_echo(c: &mut Criterion, s: &Setup) {
    let (baseline, wit) = (&s.baseline, wit_event(&s.echo_event));
    let mut g = c.benchmark_group(G_INVOKE);
    g.bench_function("nimbus", |b| {
        b.to_async(&s.rt)
            .iter(|| s.echo.invoke(s.echo_event.clone()))
    });
    g.bench_function("wasmtime_baseline", |b| {
        b.to_async(&s.rt)
            .iter(|| async { call_plain(baseline, Metering::None, &wit.clone()).await })
    });
    g.finish();
}

/// From the baseline to Nimbus in steps; each adds to the previous one.
fn bench_breakdown(c: &mut Criterion, s: &Setup) {
    let wit = wit_event(&s.echo_event);
    let fuel = prepare(
        &engine(Metering::FuelYield, PoolingAllocationConfig::default()),
        &s.echo_wasm,
    );
    let like = Arc::new(prepare(
        &engine(Metering::NimbusLike, nimbus_pool()),
        &s.echo_wasm,
    ));
    // Nimbus with records dropped instead of appended to a file.
    let null_host = Host::builder()
        .usage_sink(Arc::new(NullSink))
        .build()
        .expect("host");
    null_host
        .add_tenant(TENANT, Limits::default())
        .expect("tenant");
    let null_echo =
        s.rt.block_on(null_host.deploy(TENANT, "echo", &s.echo_wasm))
            .expect("deploying echo");
    // Nimbus with its ledger on tmpfs: the same work minus the disk
    // filesystem's share of the `write`.
    let shm = tempfile::tempdir_in("/dev/shm").ok().map(|dir| {
        let host = Host::builder()
            .ledger_path(dir.path().join("usage.jsonl"))
            .build()
            .expect("host");
        host.add_tenant(TENANT, Limits::default()).expect("tenant");
        let echo =
            s.rt.block_on(host.deploy(TENANT, "echo", &s.echo_wasm))
                .expect("deploying echo");
        (dir, host, echo)
    });
    // The ledger write alone, with a real record.
    let dir = tempfile::tempdir().expect("temp dir");
    let ledger = JsonLinesLedger::open(dir.path().join("usage.jsonl")).expect("ledger");
    let record =
        s.rt.block_on(s.echo.invoke(s.echo_event.clone()))
            .expect("invoke")
            .usage;

    let mut g = c.benchmark_group(G_BREAKDOWN);
    g.bench_function("wasmtime_fuel_yield", |b| {
        b.to_async(&s.rt)
            .iter(|| async { call_plain(&fuel, Metering::FuelYield, &wit.clone()).await })
    });
    g.bench_function("wasmtime_nimbus_store", |b| {
        b.to_async(&s.rt)
            .iter(|| async { call_plain(&like, Metering::NimbusLike, &wit.clone()).await })
    });
    g.bench_function("wasmtime_nimbus_store_spawn_timeout", |b| {
        b.to_async(&s.rt).iter(|| {
            let (like, event) = (like.clone(), wit.clone());
            async move {
                tokio::spawn(async move {
                    let call = call_plain(&like, Metering::NimbusLike, &event);
                    tokio::time::timeout(Duration::from_secs(10), call).await
                })
                .await
                .expect("task")
                .expect("in time")
            }
        })
    });
    g.bench_function("nimbus_null_sink", |b| {
        b.to_async(&s.rt)
            .iter(|| null_echo.invoke(s.echo_event.clone()))
    });
    if let Some((_, _, shm_echo)) = &shm {
        g.bench_function("nimbus_ledger_on_tmpfs", |b| {
            b.to_async(&s.rt)
                .iter(|| shm_echo.invoke(s.echo_event.clone()))
        });
    }
    g.bench_function("ledger_record_only", |b| {
        b.iter(|| ledger.record(black_box(&record)).expect("ledger write"))
    });
    g.bench_function("usage_record_to_json", |b| {
        b.iter(|| serde_json::to_vec(black_box(&record)).expect("json"))
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
    let engine = engine(Metering::None, PoolingAllocationConfig::default());
    let wit = wit_event(&s.echo_event);
    for (name, init_cow_image) in [
        ("first_call_plain", false),
        ("first_call_plain_cow_init", true),
    ] {
        g.bench_function(name, |b| {
            b.to_async(&s.rt).iter_custom(|iters| {
                let (engine, wit) = (&engine, &wit);
                async move {
                    let mut timed = Duration::ZERO;
                    for _ in 0..iters {
                        let pre = prepare_with(engine, &s.echo_wasm, init_cow_image);
                        let start = Instant::now();
                        black_box(call_plain(&pre, Metering::None, wit).await);
                        timed += start.elapsed();
                    }
                    timed
                }
            })
        });
    }
    g.finish();
}

fn bench_deadline(c: &mut Criterion, s: &Setup) {
    let wit = WitEvent {
        data: COMPUTE_DATA.to_vec(),
        ..wit_event(&s.echo_event)
    };
    let configs = [
        ("no_metering", Metering::None),
        ("fuel_yield_1m", Metering::FuelYield),
        ("fuel_epoch_1ms", Metering::FuelEpoch),
    ];
    let pres: Vec<_> = configs
        .iter()
        .map(|&(name, m)| {
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
    // enforced deadlines with epochs would have to do: with an epoch that
    // never moves we would measure only the instrumentation checks and none
    // of the yields, understating the design, while the fuel config does
    // yield (every 1M fuel). The ticker runs through the whole group so
    // every config sees the same background wake-ups.
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
}

// ---------------------------------------------------------------------------
// Paired check

/// Nimbus / baseline measured in alternating short batches, so that load
/// from anything else on the machine (a shared 2-core box) hits both alike.
/// Returns the 25th, 50th and 75th percentiles of the per-round ratios.
fn paired_ratio(s: &Setup) -> [f64; 3] {
    const ROUNDS: usize = 101;
    const BATCH: u32 = 200;
    let wit = wit_event(&s.echo_event);
    let nimbus = || async {
        let start = Instant::now();
        for _ in 0..BATCH {
            black_box(s.echo.invoke(s.echo_event.clone()).await.expect("invoke"));
        }
        start.elapsed().as_secs_f64()
    };
    let baseline = || async {
        let start = Instant::now();
        for _ in 0..BATCH {
            black_box(call_plain(&s.baseline, Metering::None, &wit.clone()).await);
        }
        start.elapsed().as_secs_f64()
    };
    let mut ratios: Vec<f64> = s.rt.block_on(async {
        let mut ratios = Vec::with_capacity(ROUNDS);
        for round in 0..ROUNDS {
            let (n, b) = if round % 2 == 0 {
                let n = nimbus().await;
                (n, baseline().await)
            } else {
                let b = baseline().await;
                (nimbus().await, b)
            };
            if std::env::var_os("PAIRED_DEBUG").is_some() {
                eprintln!("round {round}: nimbus {:.1} us/call, baseline {:.1} us/call", n * 1e6 / f64::from(BATCH), b * 1e6 / f64::from(BATCH));
            }
            ratios.push(n / b);
        }
        ratios
    });
    ratios.sort_by(f64::total_cmp);
    let at = |q: f64| ratios[((ratios.len() - 1) as f64 * q).round() as usize];
    [at(0.25), at(0.5), at(0.75)]
}

// ---------------------------------------------------------------------------
// Summary

/// Where criterion writes its reports, found the way criterion finds it
/// (`CRITERION_HOME`, else `<target dir>/criterion`).
fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("criterion")
}

/// The mean of one benchmark in ns, from this run only.
fn mean_ns(group: &str, function: &str, since: SystemTime) -> Result<f64, String> {
    let path = criterion_dir()
        .join(group)
        .join(function)
        .join("new")
        .join("estimates.json");
    let modified = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .map_err(|_| "not measured".to_string())?;
    if modified < since {
        return Err("not measured in this run".into());
    }
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    json["mean"]["point_estimate"]
        .as_f64()
        .ok_or_else(|| format!("{}: no mean.point_estimate", path.display()))
}

fn human(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// One table row: the time, and its ratio against `base` when both exist.
fn row(label: &str, value: &Result<f64, String>, base: Option<&Result<f64, String>>) {
    match (value, base) {
        (Ok(v), Some(Ok(b))) => println!("  {label:<46} {:>10}  {:>6.2}×", human(*v), v / b),
        (Ok(v), _) => println!("  {label:<46} {:>10}", human(*v)),
        (Err(why), _) => println!("  {label:<46} {why}"),
    }
}

fn summary(s: &Setup, since: SystemTime) {
    let get = |g: &str, f: &str| mean_ns(g, f, since);
    println!();
    println!("==== Summary (criterion mean per iteration) ====");

    println!("\n[{G_INVOKE}] echo, 16 bytes, fresh instance per call; ratio vs baseline");
    let base = get(G_INVOKE, "wasmtime_baseline");
    let nimbus = get(G_INVOKE, "nimbus");
    row("wasmtime baseline (pooling, no fuel)", &base, Some(&base));
    row("Nimbus FunctionHandle::invoke", &nimbus, Some(&base));
    if let (Ok(n), Ok(b)) = (&nimbus, &base) {
        let ratio = n / b;
        let verdict = if ratio <= 1.15 { "within" } else { "ABOVE" };
        println!(
            "  => Nimbus / baseline = {ratio:.3}× ({verdict} the 1.15× target), +{} per call",
            human(n - b)
        );
        let [p25, p50, p75] = paired_ratio(s);
        println!(
            "  => paired check, 101 alternating rounds of 200 calls each: \
             median {p50:.3}× (p25 {p25:.3}×, p75 {p75:.3}×)"
        );
    }

    println!("\n[{G_BREAKDOWN}] cumulative steps from baseline to Nimbus; ratio vs baseline");
    for (f, label) in [
        ("wasmtime_fuel_yield", "+ fuel, yield every 1M"),
        (
            "wasmtime_nimbus_store",
            "+ Nimbus store setup (limiter, stderr…)",
        ),
        (
            "wasmtime_nimbus_store_spawn_timeout",
            "+ tokio::spawn + tokio::time::timeout",
        ),
        ("nimbus_null_sink", "Nimbus, usage records dropped"),
        ("nimbus_ledger_on_tmpfs", "Nimbus, ledger file on tmpfs"),
    ] {
        row(label, &get(G_BREAKDOWN, f), Some(&base));
    }
    row(
        "Nimbus, ledger file on ext4 (invoke_echo)",
        &nimbus,
        Some(&base),
    );
    row(
        "JsonLinesLedger::record alone (ext4)",
        &get(G_BREAKDOWN, "ledger_record_only"),
        None,
    );
    row(
        "  of which serde_json::to_vec(record)",
        &get(G_BREAKDOWN, "usage_record_to_json"),
        None,
    );

    println!("\n[{G_DEPLOY}] echo component");
    row(
        "deploy (validate + compile + pre-link)",
        &get(G_DEPLOY, "compile"),
        None,
    );
    row(
        "first invoke after deploy; ratio vs warm",
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

    println!("\n[{G_DEADLINE}] compute(200000), plain wasmtime; ratio vs no metering");
    let none = get(G_DEADLINE, "no_metering");
    row("no fuel, no epochs", &none, Some(&none));
    row(
        "fuel + async yield every 1M fuel (Nimbus)",
        &get(G_DEADLINE, "fuel_yield_1m"),
        Some(&none),
    );
    row(
        "fuel + epochs (yield per tick, 1 ms ticker)",
        &get(G_DEADLINE, "fuel_epoch_1ms"),
        Some(&none),
    );
    println!();
}

fn main() {
    let since = SystemTime::now();
    let setup = setup();
    if std::env::var_os("PAIRED_DEBUG").is_some() {
        eprintln!("{:?}", paired_ratio(&setup));
        return;
    }
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();
    bench_invoke_echo(&mut c, &setup);
    bench_breakdown(&mut c, &setup);
    bench_deploy(&mut c, &setup);
    bench_deadline(&mut c, &setup);
    c.final_summary();
    summary(&setup, since);
}
