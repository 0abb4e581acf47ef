//! Invocations in flight at once: `INFLIGHT` (10 000) concurrent invocations
//! of the `sleep` guest, each waiting `SLEEP_MS` (5 000) in a host call
//! (wasi clocks), on one Nimbus host — admitted, completed and each billed —
//! and the same number of fresh instances sleeping in plain wasmtime with the
//! same pool, as the baseline. Each side runs in a process of its own (this
//! binary re-executed), so the resident memory one leaves behind is not the
//! other's. Printed: the machine, the peak resident memory above the idle
//! process per in-flight instance, each side, and their ratio.
//!
//!   cargo bench --bench inflight                  # INFLIGHT=10000 SLEEP_MS=5000
//!
//! Not run by CI (10 000 instances for 5 s, and two processes).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nimbus_bindings::{Event as WitEvent, FunctionPre};
use nimbus_core::{Event, Host, JsonLinesLedger, Limits, Outcome, PoolConfig};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

const TENANT: &str = "bench";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Resident memory of this process, bytes (`VmRSS`).
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The largest linear memory of an instance (`POOL_MEMORY_MIB`, 64): the
/// pool reserves this much address space per memory slot, so 4 GiB (the
/// default of `[pool] max_memory_bytes`) × 2 memories × 10 000 instances
/// is 80 TiB of the 128 TiB a process has.
fn memory_bytes() -> u64 {
    (env_usize("POOL_MEMORY_MIB", 64) as u64) << 20
}

/// The pool both sides use: `n` instances, one memory and a few tables
/// each, the sleep guest's needs with room to spare.
fn pool(n: u32) -> PoolConfig {
    PoolConfig {
        max_instances: n,
        max_memory_bytes: memory_bytes(),
        max_core_instances_per_component: 16,
        max_memories_per_component: 2,
        max_tables_per_component: 8,
        ..PoolConfig::default()
    }
}

/// What one side measured.
struct Run {
    peak_in_flight: usize,
    idle_rss: u64,
    peak_rss: u64,
    completed: usize,
    billed: usize,
    wall: Duration,
}

impl Run {
    fn print(&self, side: &str) {
        println!(
            "RESULT {side} {} {} {} {} {} {}",
            self.peak_in_flight,
            self.idle_rss,
            self.peak_rss,
            self.completed,
            self.billed,
            self.wall.as_millis()
        );
    }
}

/// Samples resident memory and `in_flight` every 50 ms until `done`.
fn sampler(
    in_flight: Arc<dyn Fn() -> usize + Send + Sync>,
    done: Arc<AtomicUsize>,
    total: usize,
) -> std::thread::JoinHandle<(usize, u64)> {
    std::thread::spawn(move || {
        let (mut peak_n, mut peak_rss) = (0, 0);
        while done.load(Ordering::SeqCst) < total {
            peak_n = peak_n.max(in_flight());
            peak_rss = peak_rss.max(rss());
            std::thread::sleep(Duration::from_millis(50));
        }
        (peak_n, peak_rss)
    })
}

fn nimbus_side(n: usize, sleep_ms: u64, wasm: &[u8]) -> Run {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let ledger = dir.path().join("usage.jsonl");
    let host = Host::builder()
        .pool(pool(u32::try_from(n).expect("INFLIGHT fits u32")))
        .ledger_path(&ledger)
        .build()
        .expect("host");
    let limits = Limits {
        max_concurrency: u32::try_from(n).expect("fits"),
        timeout: Duration::from_millis(sleep_ms * 4 + 60_000),
        max_memory_bytes: memory_bytes(),
        max_tenant_memory_bytes: u64::MAX,
        ..Limits::default()
    };
    host.add_tenant(TENANT, limits).expect("tenant");
    let f = rt
        .block_on(host.deploy(TENANT, "sleep", wasm))
        .expect("deploying sleep");
    let idle_rss = rss();
    let done = Arc::new(AtomicUsize::new(0));
    let metrics_host = host.clone();
    let gauge: Arc<dyn Fn() -> usize + Send + Sync> = Arc::new(move || {
        metrics_host
            .metrics_text()
            .lines()
            .find(|l| l.starts_with("nimbus_invocations_in_flight{") && l.contains("\"sleep\""))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .map_or(0, |v| v as usize)
    });
    let sampling = sampler(gauge, done.clone(), n);
    let started = Instant::now();
    let completed = rt.block_on(async {
        let mut tasks = Vec::with_capacity(n);
        for _ in 0..n {
            let (f, done) = (f.clone(), done.clone());
            let data = sleep_ms.to_string().into_bytes();
            tasks.push(tokio::spawn(async move {
                let r = f.invoke(Event::new("bench.sleep", "/bench", data)).await;
                done.fetch_add(1, Ordering::SeqCst);
                r.is_ok_and(|i| i.usage.outcome == Outcome::Success)
            }));
        }
        let mut ok = 0;
        for t in tasks {
            ok += usize::from(t.await.unwrap_or(false));
        }
        ok
    });
    let wall = started.elapsed();
    let (peak_in_flight, peak_rss) = sampling.join().expect("sampler");
    let billed = JsonLinesLedger::read(&ledger)
        .expect("ledger")
        .iter()
        .filter(|r| r.outcome == Outcome::Success && r.function == "sleep")
        .count();
    Run {
        peak_in_flight,
        idle_rss,
        peak_rss,
        completed,
        billed,
        wall,
    }
}

struct Plain {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for Plain {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

fn wasmtime_side(n: usize, sleep_ms: u64, wasm: &[u8]) -> Run {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let pooling = pool(u32::try_from(n).expect("fits"))
        .pooling_allocation_config()
        .expect("pool");
    let mut config = Config::new();
    config
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling))
        .wasm_component_model(true);
    let engine = Engine::new(&config).expect("engine");
    let mut linker = Linker::<Plain>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).expect("WASI");
    linker
        .instance(nimbus_bindings::TYPES_INTERFACE)
        .expect("types interface");
    let component = Component::new(&engine, wasm).expect("compile");
    // As Nimbus does at deploy: the copy-on-write image made once, before
    // the first instantiation, rather than by whichever comes first.
    component
        .initialize_copy_on_write_image()
        .expect("copy-on-write image");
    let pre = Arc::new(
        FunctionPre::new(linker.instantiate_pre(&component).expect("pre")).expect("handler"),
    );
    let idle_rss = rss();
    let done = Arc::new(AtomicUsize::new(0));
    let live = Arc::new(AtomicUsize::new(0));
    let gauge_live = live.clone();
    let gauge: Arc<dyn Fn() -> usize + Send + Sync> =
        Arc::new(move || gauge_live.load(Ordering::SeqCst));
    let sampling = sampler(gauge, done.clone(), n);
    let started = Instant::now();
    let completed = rt.block_on(async {
        let mut tasks = Vec::with_capacity(n);
        for _ in 0..n {
            let (pre, done, live) = (pre.clone(), done.clone(), live.clone());
            let event = WitEvent {
                id: "sleep".into(),
                source: "/bench".into(),
                type_: "bench.sleep".into(),
                subject: None,
                time: None,
                content_type: None,
                attributes: Vec::new(),
                data: sleep_ms.to_string().into_bytes(),
            };
            tasks.push(tokio::spawn(async move {
                let state = Plain {
                    wasi: WasiCtx::builder().build(),
                    table: ResourceTable::new(),
                };
                let mut store = Store::new(pre.engine(), state);
                let ok = match pre.instantiate_async(&mut store).await {
                    Ok(instance) => {
                        live.fetch_add(1, Ordering::SeqCst);
                        let r = instance
                            .nimbus_function_handler()
                            .call_handle(&mut store, &event)
                            .await;
                        live.fetch_sub(1, Ordering::SeqCst);
                        matches!(r, Ok(Ok(_)))
                    }
                    Err(_) => false,
                };
                done.fetch_add(1, Ordering::SeqCst);
                ok
            }));
        }
        let mut ok = 0;
        for t in tasks {
            ok += usize::from(t.await.unwrap_or(false));
        }
        ok
    });
    let wall = started.elapsed();
    let (peak_in_flight, peak_rss) = sampling.join().expect("sampler");
    Run {
        peak_in_flight,
        idle_rss,
        peak_rss,
        completed,
        billed: 0,
        wall,
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:").map(|v| v.trim().to_string()))
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpu}, {cores} cores, {mem} RAM, Linux {}", kernel.trim())
}

fn parse(out: &str) -> Option<Vec<u64>> {
    let line = out.lines().find(|l| l.starts_with("RESULT "))?;
    line.split(' ').skip(2).map(|v| v.parse().ok()).collect()
}

fn main() {
    let n = env_usize("INFLIGHT", 10_000);
    let sleep_ms = env_usize("SLEEP_MS", 5_000) as u64;
    let mut args = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--bench"));
    if let Some(side) = args.next().filter(|a| a == "nimbus" || a == "wasmtime") {
        let wasm = std::fs::read(std::env::var("SLEEP_WASM").expect("SLEEP_WASM")).expect("wasm");
        let run = if side == "nimbus" {
            nimbus_side(n, sleep_ms, &wasm)
        } else {
            wasmtime_side(n, sleep_ms, &wasm)
        };
        run.print(&side);
        return;
    }
    let guests = nimbus_guests::build_all().expect("building the sample guests");
    let wasm = guests.path("sleep");
    println!("machine: {}", machine());
    println!("{n} invocations of the sleep guest at once, each {sleep_ms} ms in a host call");
    let exe = std::env::current_exe().expect("current exe");
    let mut results = Vec::new();
    for side in ["wasmtime", "nimbus"] {
        let out = std::process::Command::new(&exe)
            .arg(side)
            .env("SLEEP_WASM", wasm)
            .env("INFLIGHT", n.to_string())
            .env("SLEEP_MS", sleep_ms.to_string())
            .output()
            .expect("run a side");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let Some(v) = parse(&text).filter(|_| out.status.success()) else {
            eprintln!(
                "{side} failed: {}\n{text}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            std::process::exit(1);
        };
        results.push((side, v));
    }
    println!(
        "{:<9} {:>10} {:>10} {:>10} {:>12} {:>12} {:>14}",
        "side", "peak live", "completed", "billed", "idle RSS", "peak RSS", "RSS/instance"
    );
    let mut per = Vec::new();
    for (side, v) in &results {
        let (peak_n, idle, peak, done, billed, wall) = (v[0], v[1], v[2], v[3], v[4], v[5]);
        let per_instance = peak.saturating_sub(idle) as f64 / peak_n.max(1) as f64;
        per.push(per_instance);
        println!(
            "{side:<9} {peak_n:>10} {done:>10} {billed:>10} {:>9.0} MiB {:>9.0} MiB {:>10.1} KiB   ({wall} ms)",
            idle as f64 / 1048576.0,
            peak as f64 / 1048576.0,
            per_instance / 1024.0
        );
    }
    println!(
        "resident memory per in-flight instance, nimbus / wasmtime: {:.2}x",
        per[1] / per[0].max(1.0)
    );
    let nimbus = &results[1].1;
    let all = nimbus[0] as usize == n && nimbus[3] as usize == n && nimbus[4] as usize == n;
    println!(
        "target: {n} in flight, completed and billed: {}",
        if all { "met" } else { "NOT met" }
    );
}
