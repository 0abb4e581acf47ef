//! Key-value benchmarks: what an operation costs from a guest, through
//! `wasi:keyvalue` and Nimbus's host side, against the same backend
//! (`RedbKv`) called natively from Rust, in the same run.
//!
//! `cargo bench --bench kv` runs every group and then prints a summary table
//! read back from criterion's `estimates.json` files. A filter
//! (`cargo bench --bench kv -- kv_get`) runs only matching benchmarks; the
//! table then marks the others as not measured.
//!
//! One `RedbKv` database file, `kv.redb` in the host's data directory (a
//! temporary directory under the target directory, on disk rather than
//! tmpfs, so each write's fsync costs what it costs in production), serves
//! both sides: the host is built with that backend, and the native calls go
//! to the same object, in the same namespace (tenant `bench`, store `s`).
//!
//! Groups:
//! - `kv_get`: 1000 gets of one existing 8-byte value per iteration: by the
//!   `kv-counter` guest (`bench-get`, one invocation, so instantiation is
//!   amortized), natively, and natively with each get on the blocking pool
//!   (`spawn_blocking`, as the host runs every backend call); plus the
//!   invocation alone (`bench-get` of 0 gets).
//! - `kv_set`: 100 sets of 8-byte values (keys `k0`..`k99`) per iteration,
//!   each a synced commit: guest (`bench-set`), native, and native on the
//!   blocking pool.
//!
//! After criterion, each group's variants are also run interleaved (rotating
//! order, short batches) and compared within each round, as in
//! benches/invoke.rs: load from other processes and disk write-back shift
//! sequential criterion runs more than the paired ratios.

#[path = "common/paired.rs"]
mod paired;
#[path = "common/reports.rs"]
mod reports;
use paired::{PairedStat, paired};
use reports::target_dir;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, SamplingMode};
use nimbus_core::{Event, FunctionConfig, FunctionHandle, Host, Limits};
use nimbus_kv::{KvBackend, Namespace, RedbKv};
use tokio::runtime::Runtime;

const TENANT: &str = "bench";
const STORE: &str = "s";
/// The key `bench-get` reads; `bench-set` writes `k0`, `k1`, ….
const KEY: &str = "k";
const VALUE: &[u8; 8] = b"00000042";
/// Gets per iteration (per guest invocation).
const N_GET: u32 = 1000;
/// Sets per iteration (per guest invocation).
const N_SET: u32 = 100;

const G_GET: &str = "kv_get";
const G_SET: &str = "kv_set";

// ---------------------------------------------------------------------------
// Setup

struct Setup {
    rt: Runtime,
    /// The backend, shared by the host and the native calls.
    kv: Arc<RedbKv>,
    ns: Namespace,
    /// `kv-counter` deployed as `bench/kv`, granted store `s`.
    guest: FunctionHandle,
    _host: Host,
    dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let guests = nimbus_guests::build_all().expect("building the sample guests");
    // One thread for the runtime, as in benches/invoke.rs; backend calls go
    // to tokio's blocking pool either way.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    // Under the target directory rather than $TMPDIR, which may be tmpfs.
    std::fs::create_dir_all(target_dir()).expect("target dir");
    let dir = tempfile::Builder::new()
        .prefix("nimbus-kv-bench-")
        .tempdir_in(target_dir())
        .expect("temp dir");
    let data_dir = dir.path().join("data");
    // The file the host would open in its data directory; opened here so the
    // native calls can share it (redb locks a database file to one opener).
    let kv = Arc::new(RedbKv::open(&data_dir.join("kv.redb")).expect("kv.redb"));
    let host = Host::builder()
        .ledger_path(dir.path().join("usage.jsonl"))
        .data_dir(&data_dir)
        .kv_backend(kv.clone())
        .build()
        .expect("host");
    host.add_tenant(TENANT, Limits::default()).expect("tenant");
    let config = FunctionConfig {
        kv_stores: vec![STORE.into()],
        ..Default::default()
    };
    let guest = rt
        .block_on(host.deploy_with(TENANT, "kv", &guests.bytes("kv-counter"), config))
        .expect("deploying kv-counter");
    let ns = Namespace::new(TENANT, STORE);
    kv.set(&ns, KEY, VALUE).expect("seeding the key");
    let s = Setup {
        rt,
        kv,
        ns,
        guest,
        _host: host,
        dir,
    };

    // Both sides see the same data: the guest reads the seeded key, native
    // code reads what the guest wrote.
    for n in [0, 3, N_GET] {
        assert_eq!(guest_run(&s, "bench-get", n), n.to_string());
    }
    assert_eq!(guest_run(&s, "bench-set", N_SET), N_SET.to_string());
    let last = N_SET - 1;
    assert_eq!(
        s.kv.get(&s.ns, &format!("{KEY}{last}")).expect("get"),
        Some(format!("{last:08}").into_bytes())
    );
    s
}

fn command(verb: &str, n: u32) -> Event {
    Event::new(
        "bench.kv",
        "/bench",
        format!("{verb} {STORE} {KEY} {n}").into_bytes(),
    )
}

async fn guest_call(s: &Setup, event: Event) {
    black_box(s.guest.invoke(event).await.expect("invoke"));
}

/// One invocation outside the timed loops, its response as text.
fn guest_run(s: &Setup, verb: &str, n: u32) -> String {
    let done =
        s.rt.block_on(s.guest.invoke(command(verb, n)))
            .unwrap_or_else(|e| panic!("`{verb} {n}`: {e}"));
    String::from_utf8(done.response.data).expect("UTF-8 response")
}

fn native_gets(s: &Setup, n: u32) {
    for _ in 0..n {
        let v = s.kv.get(&s.ns, KEY).expect("get");
        assert!(black_box(v).is_some());
    }
}

fn native_sets(s: &Setup, n: u32) {
    for i in 0..n {
        let value = format!("{i:08}");
        s.kv.set(&s.ns, &format!("{KEY}{i}"), value.as_bytes())
            .expect("set");
    }
}

/// The native calls, each on the blocking pool and awaited, as the host's
/// `kv_op` runs them (with the same `Arc` clone and `Namespace` per call).
async fn blocking_gets(s: &Setup, n: u32) {
    for _ in 0..n {
        let (kv, ns) = (s.kv.clone(), Namespace::new(TENANT, STORE));
        let v = tokio::task::spawn_blocking(move || kv.get(&ns, KEY))
            .await
            .expect("task")
            .expect("get");
        assert!(black_box(v).is_some());
    }
}

async fn blocking_sets(s: &Setup, n: u32) {
    for i in 0..n {
        let (kv, ns) = (s.kv.clone(), Namespace::new(TENANT, STORE));
        let (key, value) = (format!("{KEY}{i}"), format!("{i:08}"));
        tokio::task::spawn_blocking(move || kv.set(&ns, &key, value.as_bytes()))
            .await
            .expect("task")
            .expect("set");
    }
}

// ---------------------------------------------------------------------------
// Variants

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    NativeGet,
    BlockingGet,
    GuestGet,
    GuestEmpty,
    NativeSet,
    BlockingSet,
    GuestSet,
}

impl Variant {
    const GET: [Variant; 3] = [Variant::NativeGet, Variant::BlockingGet, Variant::GuestGet];
    const SET: [Variant; 3] = [Variant::NativeSet, Variant::BlockingSet, Variant::GuestSet];

    fn label(self) -> &'static str {
        match self {
            Variant::NativeGet => "native RedbKv::get",
            Variant::BlockingGet => "native, each get via spawn_blocking",
            Variant::GuestGet => "guest, wasi:keyvalue get (Nimbus)",
            Variant::GuestEmpty => "the invocation alone (bench-get of 0)",
            Variant::NativeSet => "native RedbKv::set",
            Variant::BlockingSet => "native, each set via spawn_blocking",
            Variant::GuestSet => "guest, wasi:keyvalue set (Nimbus)",
        }
    }

    fn criterion_id(self) -> (&'static str, &'static str) {
        match self {
            Variant::NativeGet => (G_GET, "native"),
            Variant::BlockingGet => (G_GET, "native_spawn_blocking"),
            Variant::GuestGet => (G_GET, "guest"),
            Variant::GuestEmpty => (G_GET, "guest_invocation_only"),
            Variant::NativeSet => (G_SET, "native"),
            Variant::BlockingSet => (G_SET, "native_spawn_blocking"),
            Variant::GuestSet => (G_SET, "guest"),
        }
    }

    /// Operations per iteration, to turn an iteration's time into per-op.
    fn ops(self) -> u32 {
        match self {
            Variant::NativeGet | Variant::BlockingGet | Variant::GuestGet => N_GET,
            Variant::GuestEmpty => 1,
            Variant::NativeSet | Variant::BlockingSet | Variant::GuestSet => N_SET,
        }
    }

    /// One iteration: `ops()` operations (one invocation for the guest).
    async fn run(self, s: &Setup) {
        match self {
            Variant::NativeGet => native_gets(s, N_GET),
            Variant::BlockingGet => blocking_gets(s, N_GET).await,
            Variant::GuestGet => guest_call(s, command("bench-get", N_GET)).await,
            Variant::GuestEmpty => guest_call(s, command("bench-get", 0)).await,
            Variant::NativeSet => native_sets(s, N_SET),
            Variant::BlockingSet => blocking_sets(s, N_SET).await,
            Variant::GuestSet => guest_call(s, command("bench-set", N_SET)).await,
        }
    }
}

// ---------------------------------------------------------------------------
// Criterion groups

fn bench_get(c: &mut Criterion, s: &Setup) {
    let mut g = c.benchmark_group(G_GET);
    g.sample_size(30);
    g.measurement_time(Duration::from_secs(4));
    for v in [
        Variant::NativeGet,
        Variant::BlockingGet,
        Variant::GuestGet,
        Variant::GuestEmpty,
    ] {
        g.bench_function(v.criterion_id().1, |b| b.to_async(&s.rt).iter(|| v.run(s)));
    }
    g.finish();
}

fn bench_set(c: &mut Criterion, s: &Setup) {
    // An iteration is 100 synced commits: few, long samples.
    let mut g = c.benchmark_group(G_SET);
    g.sample_size(10);
    g.sampling_mode(SamplingMode::Flat);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(5));
    for v in Variant::SET {
        g.bench_function(v.criterion_id().1, |b| b.to_async(&s.rt).iter(|| v.run(s)));
    }
    g.finish();
}

// ---------------------------------------------------------------------------
// Paired comparison (as in benches/invoke.rs)

/// Rounds and calls per round of each paired comparison.
const PAIRED_GET: (usize, u32) = (31, 5);
const PAIRED_SET: (usize, u32) = (51, 1);

/// The group's variants paired, if criterion measured the group (a filter
/// may skip it).
fn paired_group(
    s: &Setup,
    variants: [Variant; 3],
    (rounds, batch): (usize, u32),
    since: SystemTime,
) -> Option<Vec<(Variant, PairedStat)>> {
    let (group, function) = variants[0].criterion_id();
    median_ns(group, function, since).ok()?;
    let stats = paired(&s.rt, variants.len(), rounds, batch, |i| variants[i].run(s));
    Some(variants.into_iter().zip(stats).collect())
}

// ---------------------------------------------------------------------------
// Summary

/// A variant's criterion median, per operation.
fn per_op(v: Variant, since: SystemTime) -> Result<f64, String> {
    let (group, function) = v.criterion_id();
    median_ns(group, function, since).map(|ns| ns / f64::from(v.ops()))
}

fn micros(ns: f64) -> String {
    format!("{:.3} µs", ns / 1e3)
}

const W: usize = 42;

/// One table row: per-op time, and its ratio against `base` when both exist.
fn row(label: &str, value: &Result<f64, String>, base: Option<&Result<f64, String>>) {
    match (value, base) {
        (Ok(v), Some(Ok(b))) => println!("  {label:<W$} {:>12}  {:>7.2}×", micros(*v), v / b),
        (Ok(v), _) => println!("  {label:<W$} {:>12}", micros(*v)),
        (Err(why), _) => println!("  {label:<W$} {why}"),
    }
}

/// `guest / native` and the difference per op, the cost of the crossing.
fn verdict(op: &str, guest: f64, native: f64) {
    println!(
        "  => guest / native = {:.2}×, {}{} per {op}",
        guest / native,
        if guest >= native { "+" } else { "−" },
        micros((guest - native).abs())
    );
}

fn criterion_table(title: &str, op: &str, variants: [Variant; 3], since: SystemTime) {
    println!("\n{title}");
    let native = per_op(variants[0], since);
    for v in variants {
        row(v.label(), &per_op(v, since), Some(&native));
    }
    if let (Ok(g), Ok(n)) = (per_op(variants[2], since), &native) {
        verdict(op, g, *n);
    }
}

fn paired_table(title: &str, op: &str, stats: &Option<Vec<(Variant, PairedStat)>>) {
    println!("\n{title}");
    let Some(stats) = stats else {
        println!("  not run (the group was not measured)");
        return;
    };
    for (v, p) in stats {
        let [lo, mid, hi] = p.ratio;
        let ns = p.median_ns / f64::from(v.ops());
        println!(
            "  {:<W$} {:>12}  {mid:>7.2}×  ({lo:.2}–{hi:.2})",
            v.label(),
            micros(ns)
        );
    }
    if let (Some((native, n)), Some((guest, g))) = (stats.first(), stats.last()) {
        let per = |v: &Variant, p: &PairedStat| p.median_ns / f64::from(v.ops());
        println!(
            "  => guest / native = {:.2}× paired (median of per-round ratios), {}{} per {op}",
            g.ratio[1],
            if per(guest, g) >= per(native, n) {
                "+"
            } else {
                "−"
            },
            micros((per(guest, g) - per(native, n)).abs())
        );
    }
}

fn summary(s: &Setup, since: SystemTime, paired: &PairedGroups) {
    println!();
    println!(
        "==== Summary: criterion medians (this run), per operation; ratio vs native ====\n\
         (one redb file for both sides: {}; every set is a synced commit)",
        s.dir.path().join("data/kv.redb").display()
    );
    criterion_table(
        &format!("[{G_GET}] {N_GET} gets of one 8-byte value per iteration / invocation"),
        "get",
        Variant::GET,
        since,
    );
    let empty = median_ns(G_GET, Variant::GuestEmpty.criterion_id().1, since);
    match &empty {
        Ok(ns) => println!(
            "  {:<W$} {:>12}  per invocation, {} of it per get",
            Variant::GuestEmpty.label(),
            micros(*ns),
            micros(ns / f64::from(N_GET))
        ),
        Err(why) => println!("  {:<W$} {why}", Variant::GuestEmpty.label()),
    }
    criterion_table(
        &format!("[{G_SET}] {N_SET} sets of 8-byte values per iteration / invocation"),
        "set",
        Variant::SET,
        since,
    );

    println!();
    println!("==== Paired, interleaved (median per op; median ratio vs native, p25–p75) ====");
    let (r, b) = PAIRED_GET;
    paired_table(
        &format!("[{G_GET}] {r} rounds × {b} iterations of {N_GET} gets per variant"),
        "get",
        &paired.get,
    );
    let (r, b) = PAIRED_SET;
    paired_table(
        &format!("[{G_SET}] {r} rounds × {b} iteration of {N_SET} sets per variant"),
        "set",
        &paired.set,
    );
    println!();
}

struct PairedGroups {
    get: Option<Vec<(Variant, PairedStat)>>,
    set: Option<Vec<(Variant, PairedStat)>>,
}

fn main() {
    let since = SystemTime::now();
    let s = setup();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();
    bench_get(&mut c, &s);
    let get = paired_group(&s, Variant::GET, PAIRED_GET, since);
    bench_set(&mut c, &s);
    let set = paired_group(&s, Variant::SET, PAIRED_SET, since);
    c.final_summary();
    summary(&s, since, &PairedGroups { get, set });
}

/// The median of one benchmark in ns, from this run only.
fn median_ns(group: &str, function: &str, since: SystemTime) -> Result<f64, String> {
    reports::estimate_ns(group, function, since, "median")
}
