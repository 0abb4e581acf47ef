//! Blob throughput: 4 MiB objects written and read by a guest through
//! `wasi:blobstore` and Nimbus's host side, against the same backend
//! (`FsBlobs`) called natively from Rust, in the same run.
//!
//! `cargo bench --bench blob` runs both groups (under a minute) and prints a
//! summary: criterion's medians, then a paired, interleaved re-run (see
//! benches/common/paired.rs) whose per-round ratios are the steadier figure.
//! A filter (`cargo bench --bench blob -- blob_get`) runs only matching
//! benchmarks.
//!
//! One `FsBlobs` store, `blobs/` in the host's data directory (a temporary
//! directory under the target directory, on disk rather than tmpfs, so each
//! commit's fsync costs what it costs in production), serves both sides: the
//! host is built with that backend, and the native calls go to the same
//! object, tenant `bench`, container `bench`.
//!
//! Variants, the first of each group being the baseline its paired ratios
//! are taken against:
//! - `blob_put`: build the 4 MiB test pattern, stream it in 64 KiB writes
//!   into a spool, commit (file fsync, directory fsync, redb commit).
//!   `native`: the same work in Rust, `FsBlobs::spool` + `Spool::write` +
//!   `commit`; `native_io_only`: the same with a pattern built once;
//!   `guest`: `blob-store`'s `put bench put-guest 4194304 65536`, one
//!   invocation.
//! - `blob_get`: read a 4 MiB object (from the page cache). `native`: the
//!   same work as the guest's `get` in Rust — `FsBlobs::head`, `open`,
//!   `ObjectReader::read` in 64 KiB chunks, check the pattern, hash it
//!   (FNV-1a); `native_io_only`: without the check and the hash; `guest`:
//!   `get bench obj` (`object-info`, `get-data`, `consume-async`, blocking
//!   reads of 16 KiB, check, hash); `guest_cat`: `cat bench obj`
//!   (`consume-sync` of the whole object into guest memory, returned as the
//!   response: no guest compute), to compare with `native_io_only`.
//!
//! The pattern and the hash are guest compute (wasm), not blob I/O: for
//! reads they are most of the time, so `guest_cat` against `native_io_only`
//! is the read path's own cost.

#[path = "common/paired.rs"]
mod paired;
#[path = "common/reports.rs"]
mod reports;
use paired::{PairedStat, paired};
use reports::target_dir;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, SamplingMode, Throughput};
use nimbus_core::nimbus_blob::{BlobBackend, FsBlobs, WriteOptions};
use nimbus_core::{Event, FunctionConfig, FunctionHandle, Host, Limits};
use tokio::runtime::Runtime;

const TENANT: &str = "bench";
const CONTAINER: &str = "bench";
/// Object size: 4 MiB.
const N: u64 = 4 << 20;
/// Bytes per write (both sides) and per native read.
const CHUNK: usize = 64 << 10;
/// The object both `get` variants read.
const OBJ: &str = "obj";

const G_PUT: &str = "blob_put";
const G_GET: &str = "blob_get";

// ---------------------------------------------------------------------------
// Setup

struct Setup {
    rt: Runtime,
    /// The backend, shared by the host and the native calls.
    blobs: Arc<FsBlobs>,
    /// `blob-store` deployed as `bench/blobs`, granted container `bench`.
    guest: FunctionHandle,
    quota: u64,
    /// The pattern, built once for the I/O-only put.
    prebuilt: Vec<u8>,
    _host: Host,
    dir: tempfile::TempDir,
}

/// The guest's test pattern: byte `i` is `(i * 31 + 7) % 251`.
fn pattern(n: u64) -> Vec<u8> {
    (0..n).map(|i| ((i * 31 + 7) % 251) as u8).collect()
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn setup() -> Setup {
    let guests = nimbus_guests::build_all().expect("building the sample guests");
    // One thread for the runtime, as in benches/invoke.rs and kv.rs.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    // Under the target directory rather than $TMPDIR, which may be tmpfs.
    std::fs::create_dir_all(target_dir()).expect("target dir");
    let dir = tempfile::Builder::new()
        .prefix("nimbus-blob-bench-")
        .tempdir_in(target_dir())
        .expect("temp dir");
    let data_dir = dir.path().join("data");
    // The store the host would open in its data directory; opened here so
    // the native calls can share it (redb locks a database to one opener).
    let blobs = Arc::new(FsBlobs::open(&data_dir.join("blobs")).expect("blob store"));
    let host = Host::builder()
        .ledger_path(dir.path().join("usage.jsonl"))
        .data_dir(&data_dir)
        .blob_backend(blobs.clone())
        .build()
        .expect("host");
    let limits = Limits::default();
    host.add_tenant(TENANT, limits).expect("tenant");
    let config = FunctionConfig {
        blob_containers: vec![CONTAINER.into()],
        ..Default::default()
    };
    let guest = rt
        .block_on(host.deploy_with(TENANT, "blobs", &guests.bytes("blob-store"), config))
        .expect("deploying blob-store");
    let s = Setup {
        rt,
        blobs,
        guest,
        quota: limits.max_blob_bytes,
        prebuilt: pattern(N),
        _host: host,
        dir,
    };

    // Both sides see the same data: the guest reads what native code wrote,
    // native code reads what the guest wrote.
    native_put(&s, OBJ, None);
    let expected = format!("ok {N} {:016x}", fnv1a(&pattern(N)));
    assert_eq!(guest_run(&s, &format!("get {CONTAINER} {OBJ}")), expected);
    assert_eq!(
        guest_run(&s, &format!("put {CONTAINER} put-guest {N} {CHUNK}")),
        format!("ok {N}")
    );
    assert_eq!(
        native_get(&s, "put-guest", true),
        (N as usize, fnv1a(&pattern(N)))
    );
    assert_eq!(native_get(&s, "put-guest", false).0, N as usize);
    native_put(&s, "put-native", Some(&s.prebuilt));
    assert_eq!(native_get(&s, "put-native", true).1, fnv1a(&pattern(N)));
    s
}

fn command(text: &str) -> Event {
    Event::new("bench.blob", "/bench", text.as_bytes().to_vec())
}

/// One invocation outside the timed loops, its response as text.
fn guest_run(s: &Setup, text: &str) -> String {
    let done =
        s.rt.block_on(s.guest.invoke(command(text)))
            .unwrap_or_else(|e| panic!("`{text}`: {e}"));
    String::from_utf8(done.response.data).expect("UTF-8 response")
}

async fn guest_call(s: &Setup, text: &str) {
    let done = s.guest.invoke(command(text)).await.expect("invoke");
    assert!(done.response.data.starts_with(b"ok "), "{text}");
    black_box(done);
}

/// What the guest's `put` does, natively: the pattern (or `prebuilt`),
/// 64 KiB writes into a spool, commit (with the tenant's quota, as the host
/// passes it).
fn native_put(s: &Setup, name: &str, prebuilt: Option<&[u8]>) {
    let built;
    let data = match prebuilt {
        Some(d) => d,
        None => {
            built = pattern(N);
            &built
        }
    };
    let mut spool = s.blobs.spool(TENANT).expect("spool");
    for chunk in data.chunks(CHUNK) {
        spool.write(chunk).expect("spool write");
    }
    let options = WriteOptions {
        quota: Some(s.quota),
        event_depth: None,
    };
    let meta = s
        .blobs
        .commit(spool, CONTAINER, name, None, options)
        .expect("commit");
    assert_eq!(meta.size, N);
}

/// What the guest's `get` does, natively: the whole object, read in 64 KiB
/// chunks, then (with `check`) checked against the pattern and hashed.
fn native_get(s: &Setup, name: &str, check: bool) -> (usize, u64) {
    let size = s
        .blobs
        .head(TENANT, CONTAINER, name)
        .expect("head")
        .expect("the object exists")
        .size;
    let mut reader = s
        .blobs
        .open(TENANT, CONTAINER, name, 0, size - 1)
        .expect("open");
    let mut data = Vec::new();
    loop {
        let chunk = reader.read(CHUNK).expect("read");
        if chunk.is_empty() {
            break;
        }
        data.extend(chunk);
    }
    if !check {
        return (data.len(), 0);
    }
    let matches = data
        .iter()
        .zip(0u64..)
        .all(|(&b, i)| b == ((i * 31 + 7) % 251) as u8);
    assert!(matches, "not the pattern");
    (data.len(), fnv1a(&data))
}

// ---------------------------------------------------------------------------
// Variants

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    NativePut,
    NativePutIo,
    GuestPut,
    NativeGet,
    NativeGetIo,
    GuestGet,
    GuestCat,
}

impl Variant {
    /// The baseline (same work, native) first: paired ratios are against it.
    const PUT: [Variant; 3] = [Variant::NativePut, Variant::NativePutIo, Variant::GuestPut];
    const GET: [Variant; 4] = [
        Variant::NativeGet,
        Variant::NativeGetIo,
        Variant::GuestGet,
        Variant::GuestCat,
    ];

    fn label(self) -> &'static str {
        match self {
            Variant::NativePut => "native, same work (pattern + put)",
            Variant::NativePutIo => "native, I/O only: spool + commit",
            Variant::GuestPut => "guest, wasi:blobstore put (Nimbus)",
            Variant::NativeGet => "native, same work (get, check, hash)",
            Variant::NativeGetIo => "native, I/O only: open + read",
            Variant::GuestGet => "guest, wasi:blobstore get (Nimbus)",
            Variant::GuestCat => "guest, cat: consume-sync, no compute",
        }
    }

    fn criterion_id(self) -> (&'static str, &'static str) {
        match self {
            Variant::NativePut => (G_PUT, "native"),
            Variant::NativePutIo => (G_PUT, "native_io_only"),
            Variant::GuestPut => (G_PUT, "guest"),
            Variant::NativeGet => (G_GET, "native"),
            Variant::NativeGetIo => (G_GET, "native_io_only"),
            Variant::GuestGet => (G_GET, "guest"),
            Variant::GuestCat => (G_GET, "guest_cat"),
        }
    }

    /// One 4 MiB write or read.
    async fn run(self, s: &Setup) {
        match self {
            Variant::NativePut => native_put(s, "put-native", None),
            Variant::NativePutIo => native_put(s, "put-native", Some(&s.prebuilt)),
            Variant::GuestPut => {
                guest_call(s, &format!("put {CONTAINER} put-guest {N} {CHUNK}")).await
            }
            Variant::NativeGet => {
                black_box(native_get(s, OBJ, true));
            }
            Variant::NativeGetIo => {
                black_box(native_get(s, OBJ, false));
            }
            Variant::GuestGet => guest_call(s, &format!("get {CONTAINER} {OBJ}")).await,
            Variant::GuestCat => {
                let done = s
                    .guest
                    .invoke(command(&format!("cat {CONTAINER} {OBJ}")))
                    .await
                    .expect("invoke");
                assert_eq!(done.response.data.len() as u64, N);
                black_box(done);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Criterion groups

fn bench_group(c: &mut Criterion, s: &Setup, group: &str, variants: &[Variant]) {
    // An iteration is a 4 MiB transfer (a synced commit for puts): few,
    // long samples.
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Bytes(N));
    g.sample_size(10);
    g.sampling_mode(SamplingMode::Flat);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
    for &v in variants {
        g.bench_function(v.criterion_id().1, |b| b.to_async(&s.rt).iter(|| v.run(s)));
    }
    g.finish();
}

// ---------------------------------------------------------------------------
// Paired comparison

/// Rounds and transfers per round of each paired comparison.
const PAIRED_PUT: (usize, u32) = (25, 1);
const PAIRED_GET: (usize, u32) = (31, 3);

/// Per variant: its median time per transfer (ns) and its median ratio
/// against the group's first variant, with p25 and p75.
type Figures = Vec<(Variant, f64, [f64; 3])>;

/// The group's variants paired, if criterion measured the group (a filter
/// may skip it).
fn paired_group(
    s: &Setup,
    variants: &[Variant],
    (rounds, batch): (usize, u32),
    since: SystemTime,
) -> Option<Figures> {
    let (group, function) = variants[0].criterion_id();
    median_ns(group, function, since).ok()?;
    let stats: Vec<PairedStat> =
        paired(&s.rt, variants.len(), rounds, batch, |i| variants[i].run(s));
    Some(
        variants
            .iter()
            .zip(stats)
            .map(|(&v, p)| (v, p.median_ns, p.ratio))
            .collect(),
    )
}

// ---------------------------------------------------------------------------
// Summary

/// Throughput of one 4 MiB transfer taking `ns`, in MB/s (10^6 bytes).
fn mb_per_s(ns: f64) -> f64 {
    N as f64 / 1e6 / (ns / 1e9)
}

const W: usize = 38;

/// The comparisons worth a line: (guest, native) variant pairs.
const VERDICTS: [(Variant, Variant); 4] = [
    (Variant::GuestPut, Variant::NativePut),
    (Variant::GuestPut, Variant::NativePutIo),
    (Variant::GuestGet, Variant::NativeGet),
    (Variant::GuestCat, Variant::NativeGetIo),
];

/// `guest / native` time ratios for the pairs of `VERDICTS` both present,
/// from `ratio` (guest and native figures of one variant each).
fn verdicts(variants: &[Variant], ratio: impl Fn(Variant, Variant) -> Option<f64>) {
    for (guest, native) in VERDICTS {
        if !(variants.contains(&guest) && variants.contains(&native)) {
            continue;
        }
        if let Some(r) = ratio(guest, native) {
            println!(
                "  => {} / {}: {r:.2}× the time, {:.0}% of the throughput",
                guest.criterion_id().1,
                native.criterion_id().1,
                100.0 / r
            );
        }
    }
}

fn criterion_table(title: &str, variants: &[Variant], since: SystemTime) {
    println!("\n{title}");
    let time = |v: Variant| {
        let (g, f) = v.criterion_id();
        median_ns(g, f, since)
    };
    for &v in variants {
        match time(v) {
            Ok(ns) => println!(
                "  {:<W$} {:>9.2} ms  {:>7.0} MB/s",
                v.label(),
                ns / 1e6,
                mb_per_s(ns)
            ),
            Err(why) => println!("  {:<W$} {why}", v.label()),
        }
    }
    verdicts(variants, |g, n| Some(time(g).ok()? / time(n).ok()?));
}

fn paired_table(title: &str, variants: &[Variant], figures: &Option<Figures>) {
    println!("\n{title}");
    let Some(figures) = figures else {
        println!("  not run (the group was not measured)");
        return;
    };
    for (v, ns, [lo, mid, hi]) in figures {
        println!(
            "  {:<W$} {:>9.2} ms  {:>7.0} MB/s  {mid:>5.2}×  ({lo:.2}–{hi:.2})",
            v.label(),
            ns / 1e6,
            mb_per_s(*ns)
        );
    }
    // Ratios against the baseline were taken within rounds; between two
    // other variants, the quotient of their median ratios.
    let ratio = |v: Variant| figures.iter().find(|f| f.0 == v).map(|f| f.2[1]);
    verdicts(variants, |g, n| Some(ratio(g)? / ratio(n)?));
}

fn summary(s: &Setup, since: SystemTime, put: &Option<Figures>, get: &Option<Figures>) {
    println!();
    println!(
        "==== Summary: criterion medians (this run), one 4 MiB object per iteration ====\n\
         (one FsBlobs store for both sides: {}; every put is a synced commit)",
        s.dir.path().join("data/blobs").display()
    );
    let put_title = format!("[{G_PUT}] write 4 MiB in 64 KiB writes + commit");
    let get_title = format!("[{G_GET}] read 4 MiB");
    criterion_table(&put_title, &Variant::PUT, since);
    criterion_table(&get_title, &Variant::GET, since);

    println!();
    println!(
        "==== Paired, interleaved (median per transfer; median ratio vs the first, p25–p75) ===="
    );
    let (r, b) = PAIRED_PUT;
    let put_title = format!("{put_title}: {r} rounds × {b} per variant");
    paired_table(&put_title, &Variant::PUT, put);
    let (r, b) = PAIRED_GET;
    let get_title = format!("{get_title}: {r} rounds × {b} per variant");
    paired_table(&get_title, &Variant::GET, get);
    println!();
}

fn main() {
    let since = SystemTime::now();
    let s = setup();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    bench_group(&mut c, &s, G_PUT, &Variant::PUT);
    let put = paired_group(&s, &Variant::PUT, PAIRED_PUT, since);
    bench_group(&mut c, &s, G_GET, &Variant::GET);
    let get = paired_group(&s, &Variant::GET, PAIRED_GET, since);
    c.final_summary();
    summary(&s, since, &put, &get);
}

/// The median of one benchmark in ns, from this run only.
fn median_ns(group: &str, function: &str, since: SystemTime) -> Result<f64, String> {
    reports::estimate_ns(group, function, since, "median")
}
