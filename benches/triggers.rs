//! Trigger throughput: how fast queue and object-created triggers feed a
//! function, against the same invocations made directly, in the same run;
//! and what the durable writes that feed them cost, against a bare redb
//! commit of the same bytes.
//!
//! `cargo bench --bench triggers` (20 s on a quiet disk, a couple of
//! minutes when other jobs load it) prints one table.
//! `TRIGGERS_BENCH_N=500` runs smaller rounds (the default is 2000);
//! `TRIGGERS_BENCH_POLL_MS=50` sets the triggers' poll interval (1 ms by
//! default here, see below).
//!
//! Everything is on disk as in production: each host is built with a
//! `data_dir` in a temporary directory under the target directory (not
//! `$TMPDIR`, which may be tmpfs), so `queues.redb`, `blobs/` and the usage
//! ledger sync to the same ext4 disk `nimbus serve` would use. The function
//! is the `echo` guest everywhere (tenant `bench`, default limits), so the
//! figures are the triggers' own cost per message rather than guest work.
//!
//! Measurements:
//! - **Queue trigger**, batch sizes 1 and 10: N messages are sent with
//!   `QueueStore::send`, then the trigger is started and timed until the
//!   queue is empty (`stats`: nothing visible, in flight or delayed — every
//!   message acked). Baseline: N invocations of `echo` through
//!   `FunctionHandle::invoke` on the same host, with the consumer's shape
//!   and concurrency: groups of 1 (or 10) run at once, each group awaited
//!   before the next starts.
//! - **Object-created trigger**: N objects are written with
//!   `spool`/`commit` into a watched container (`event_depth: Some(0)`,
//!   what the storage API does), then the dispatcher is started and timed
//!   until the outbox is empty (`pending_events`). Baseline: N direct
//!   invocations with the event of the same shape, at most 16 at once (the
//!   dispatcher's concurrency).
//! - **Durable writes**, paired and interleaved (benches/common/paired.rs):
//!   `QueueStore::send` of a 64-byte body against one redb commit inserting
//!   the same 64 bytes under a 16-byte key with `Durability::Immediate` in
//!   a database file beside it (the floor any durable enqueue pays), with
//!   `receive` of one message + `ack` (the consumer's store calls around
//!   each invocation at batch size 1) beside them; and a 1 KiB blob
//!   commit into a watched container with its event against the same
//!   commit into an unwatched one (the cost of persisting the event with
//!   the write).
//!
//! A trigger starts once per host (a stopped `Triggers` stays stopped, and
//! its metrics register once per registry), so every throughput round
//! builds a fresh host in its own data directory; the direct baseline runs
//! on that same host, before or after the trigger (alternating by round).
//! Rounds are repeated and the medians reported.
//!
//! `TriggerOptions::poll_interval` is 1 ms rather than the 50 ms default:
//! it is how long a trigger that found no new work sleeps before looking
//! again, so a short interval keeps the setting out of the figures and
//! leaves the per-message cost of the trigger machinery. A busy trigger
//! should not sleep at all (it receives the next batch, or fills the next
//! free delivery slot, at once), so `TRIGGERS_BENCH_POLL_MS=50` should give
//! the same figures; a run where it does not has found a trigger sleeping
//! while work is pending.
//!
//! At-least-once delivery allows duplicates, but a run without failures
//! should have none: invocations beyond N are counted and printed.

#[path = "common/paired.rs"]
mod paired;
#[path = "common/reports.rs"]
mod reports;
use paired::{PairedStat, paired};
use reports::target_dir;

use std::path::Path;
use std::time::{Duration, Instant};

use nimbus_core::nimbus_blob::WriteOptions;
use nimbus_core::nimbus_queue::{OutgoingMessage, QueueConfig, now_ms};
use nimbus_core::{Event, FunctionHandle, Host, JsonLinesLedger, Limits, Trigger};
use nimbus_guests::Guests;
use nimbus_triggers::{ObjectTrigger, QueueTrigger, TriggerOptions, Triggers};
use redb::{Database, Durability, TableDefinition};
use tokio::runtime::Runtime;
use tokio::task::JoinSet;

const TENANT: &str = "bench";
const QUEUE: &str = "jobs";
const WATCHED: &str = "uploads";
const UNWATCHED: &str = "plain";
/// Messages (or objects) per throughput round, unless `TRIGGERS_BENCH_N`.
const DEFAULT_N: usize = 2000;
/// Throughput rounds per scenario; the median is reported.
const ROUNDS: usize = 3;
/// The dispatcher's concurrency (`OBJECT_CONCURRENCY` in nimbus-triggers).
const OBJECT_CONCURRENCY: usize = 16;
/// Queue message body bytes.
const BODY_BYTES: usize = 64;
/// Object bytes.
const OBJECT_BYTES: usize = 1024;
/// How often the bench looks whether a trigger is done (a read
/// transaction; 2 ms and 20 ms gave the same figures).
const DONE_POLL: Duration = Duration::from_millis(2);
/// Rounds and calls per round of the paired write comparisons.
const PAIRED_SEND: (usize, u32) = (41, 20);
const PAIRED_COMMIT: (usize, u32) = (41, 10);

const FLOOR: TableDefinition<&[u8], &[u8]> = TableDefinition::new("floor");

// ---------------------------------------------------------------------------
// Setup

/// 1 ms, or `TRIGGERS_BENCH_POLL_MS` (e.g. 50, the default of
/// `TriggerOptions`, to see what the setting costs).
fn poll_interval() -> Duration {
    let ms = std::env::var("TRIGGERS_BENCH_POLL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    Duration::from_millis(ms)
}

fn options() -> TriggerOptions {
    TriggerOptions {
        poll_interval: poll_interval(),
        ..TriggerOptions::default()
    }
}

/// A host on disk in `dir`, with `echo` deployed as `bench/echo`.
fn host_in(rt: &Runtime, guests: &Guests, dir: &Path) -> (Host, FunctionHandle) {
    let host = Host::builder()
        .ledger_path(dir.join("usage.jsonl"))
        .data_dir(dir.join("data"))
        .build()
        .expect("host");
    host.add_tenant(TENANT, Limits::default()).expect("tenant");
    let echo = rt
        .block_on(host.deploy(TENANT, "echo", &guests.bytes("echo")))
        .expect("deploying echo");
    (host, echo)
}

fn body(i: usize) -> Vec<u8> {
    let mut b = format!("message {i:08} ").into_bytes();
    b.resize(BODY_BYTES, b'.');
    b
}

fn queue_event(i: usize) -> Event {
    Event::new(
        "nimbus.queue.message",
        format!("/queues/v1/{TENANT}/{QUEUE}"),
        body(i),
    )
    .subject(QUEUE)
    .attribute("queue", QUEUE)
    .attribute("receivecount", "1")
}

/// An event shaped like the dispatcher's (`object_event` in
/// nimbus-triggers): JSON data, subject and attributes.
fn object_event(i: usize) -> Event {
    let key = format!("in/{i:08}.bin");
    let etag = format!("{:032x}", i);
    let data = serde_json::json!({
        "container": WATCHED,
        "key": key,
        "size": OBJECT_BYTES,
        "content_type": "application/octet-stream",
        "etag": etag,
        "time": "2025-01-01T00:00:00.000Z",
    });
    Event::new(
        "nimbus.object.created",
        format!("/storage/v1/{TENANT}/{WATCHED}"),
        serde_json::to_vec(&data).expect("json"),
    )
    .content_type("application/json")
    .subject(key.clone())
    .attribute("container", WATCHED)
    .attribute("key", key)
    .attribute("size", OBJECT_BYTES.to_string())
    .attribute("etag", etag)
    .attribute("depth", "0")
}

fn put(host: &Host, container: &str, key: &str, event: bool) {
    let blob = host.blob_store();
    let mut spool = blob.spool(TENANT).expect("spool");
    spool.write(&[b'x'; OBJECT_BYTES]).expect("write");
    let opts = WriteOptions {
        quota: None,
        event_depth: event.then_some(0),
    };
    blob.commit(
        spool,
        container,
        key,
        Some("application/octet-stream".into()),
        opts,
    )
    .expect("commit");
}

/// One series of the host's exposition, 0 if absent.
fn metric(host: &Host, series: &str) -> f64 {
    host.metrics_text()
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Usage records of one trigger kind in the host's ledger.
fn records(dir: &Path, trigger: Trigger) -> usize {
    JsonLinesLedger::read(dir.join("usage.jsonl"))
        .expect("ledger")
        .iter()
        .filter(|r| r.trigger == trigger && r.outcome == nimbus_core::Outcome::Success)
        .count()
}

// ---------------------------------------------------------------------------
// Direct baselines

/// `events` invoked directly, `group` at once, each group awaited before
/// the next (the queue consumer's shape).
async fn direct_groups(echo: &FunctionHandle, events: Vec<Event>, group: usize) -> Duration {
    let start = Instant::now();
    let mut events = events.into_iter().peekable();
    while events.peek().is_some() {
        let mut running = JoinSet::new();
        for e in events.by_ref().take(group) {
            let f = echo.clone();
            running.spawn(async move { f.invoke(e).await.expect("invoke") });
        }
        while running.join_next().await.is_some() {}
    }
    start.elapsed()
}

/// `events` invoked directly, at most `window` at once (the object
/// dispatcher's shape).
async fn direct_window(echo: &FunctionHandle, events: Vec<Event>, window: usize) -> Duration {
    let start = Instant::now();
    let mut running = JoinSet::new();
    for e in events {
        if running.len() >= window {
            running.join_next().await;
        }
        let f = echo.clone();
        running.spawn(async move { f.invoke(e).await.expect("invoke") });
    }
    while running.join_next().await.is_some() {}
    start.elapsed()
}

// ---------------------------------------------------------------------------
// Throughput rounds

/// One round's times: the trigger draining N, and the N direct invocations;
/// and the trigger's invocations beyond N (at-least-once redeliveries).
#[derive(Debug, Clone, Copy)]
struct Round {
    trigger: Duration,
    direct: Duration,
    extra: usize,
}

fn queue_round(
    rt: &Runtime,
    guests: &Guests,
    dir: &Path,
    n: usize,
    batch: usize,
    round: usize,
) -> Round {
    let (host, echo) = host_in(rt, guests, dir);
    let triggers = Triggers::new(host.clone(), options()).expect("triggers");
    triggers
        .add_queue_trigger(QueueTrigger {
            tenant: TENANT.into(),
            function: "echo".into(),
            queue: QUEUE.into(),
            batch_size: batch,
            config: QueueConfig::default(),
        })
        .expect("queue trigger");
    let queues = host.queue_store();
    for i in 0..n {
        queues
            .send(TENANT, QUEUE, OutgoingMessage::new(body(i)), now_ms())
            .expect("send");
    }
    let direct = || {
        rt.block_on(direct_groups(
            &echo,
            (0..n).map(queue_event).collect(),
            batch,
        ))
    };
    let first = (round % 2 == 1).then(direct);
    let trigger = rt.block_on(async {
        let start = Instant::now();
        triggers.start();
        loop {
            let st = queues.stats(TENANT, QUEUE, now_ms()).expect("stats");
            if st.visible + st.in_flight + st.delayed == 0 {
                assert_eq!(st.dead, 0, "no message may fail");
                break;
            }
            tokio::time::sleep(DONE_POLL).await;
        }
        let took = start.elapsed();
        triggers.shutdown().await;
        took
    });
    let direct = first.unwrap_or_else(direct);
    let series = format!("{{tenant=\"{TENANT}\",queue=\"{QUEUE}\"}}");
    assert_eq!(
        metric(&host, &format!("nimbus_queue_deliveries_total{series}")),
        records(dir, Trigger::Queue) as f64
    );
    assert_eq!(
        metric(&host, &format!("nimbus_queue_retries_total{series}")),
        0.0
    );
    let extra = records(dir, Trigger::Queue) - n;
    Round {
        trigger,
        direct,
        extra,
    }
}

fn object_round(rt: &Runtime, guests: &Guests, dir: &Path, n: usize, round: usize) -> Round {
    let (host, echo) = host_in(rt, guests, dir);
    let triggers = Triggers::new(host.clone(), options()).expect("triggers");
    triggers
        .add_object_trigger(ObjectTrigger {
            tenant: TENANT.into(),
            function: "echo".into(),
            container: WATCHED.into(),
            prefix: String::new(),
            suffix: String::new(),
        })
        .expect("object trigger");
    for i in 0..n {
        put(&host, WATCHED, &format!("in/{i:08}.bin"), true);
    }
    let blob = host.blob_store();
    assert_eq!(blob.pending_events(n + 1).expect("outbox").len(), n);
    let direct = || {
        rt.block_on(direct_window(
            &echo,
            (0..n).map(object_event).collect(),
            OBJECT_CONCURRENCY,
        ))
    };
    let first = (round % 2 == 1).then(direct);
    let trigger = rt.block_on(async {
        let start = Instant::now();
        triggers.start();
        while !blob.pending_events(1).expect("outbox").is_empty() {
            tokio::time::sleep(DONE_POLL).await;
        }
        let took = start.elapsed();
        triggers.shutdown().await;
        took
    });
    let direct = first.unwrap_or_else(direct);
    let delivered = format!(
        "nimbus_object_events_total{{tenant=\"{TENANT}\",container=\"{WATCHED}\",result=\"delivered\"}}"
    );
    let invoked = records(dir, Trigger::Object);
    assert_eq!(metric(&host, &delivered), invoked as f64);
    assert!(invoked >= n, "{invoked} deliveries of {n} events");
    Round {
        trigger,
        direct,
        extra: invoked - n,
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Medians over rounds of each side.
#[derive(Debug, Clone, Copy)]
struct Throughput {
    trigger: Duration,
    direct: Duration,
    /// Median of the per-round ratios trigger / direct (time).
    ratio: f64,
    /// Redeliveries over all rounds.
    extra: usize,
}

fn throughput(rounds: Vec<Round>) -> Throughput {
    let mut ratios: Vec<f64> = rounds
        .iter()
        .map(|r| r.trigger.as_secs_f64() / r.direct.as_secs_f64())
        .collect();
    ratios.sort_by(f64::total_cmp);
    Throughput {
        trigger: median(rounds.iter().map(|r| r.trigger).collect()),
        direct: median(rounds.iter().map(|r| r.direct).collect()),
        ratio: ratios[ratios.len() / 2],
        extra: rounds.iter().map(|r| r.extra).sum(),
    }
}

// ---------------------------------------------------------------------------
// Durable writes, paired

/// `[floor, send, receive + ack]`: a bare durable redb commit of the body,
/// `QueueStore::send` of the same body, and what the queue consumer does
/// around each invocation at batch size 1 (`receive` of one message, then
/// `ack`).
fn paired_send(rt: &Runtime, host: &Host, dir: &Path) -> Vec<PairedStat> {
    let db = Database::create(dir.join("floor.redb")).expect("floor.redb");
    let queues = host.queue_store();
    let payload = body(0);
    let next = std::cell::Cell::new(0u128);
    let (rounds, batch) = PAIRED_SEND;
    // Enough for every receive, whatever the order of the variants.
    for _ in 0..rounds * batch as usize {
        queues
            .send(
                TENANT,
                "sent",
                OutgoingMessage::new(payload.clone()),
                now_ms(),
            )
            .expect("send");
    }
    paired(rt, 3, rounds, batch, |i| {
        let (db, queues, payload, next) = (&db, &queues, &payload, &next);
        async move {
            if i == 0 {
                let key = next.get().to_be_bytes();
                next.set(next.get() + 1);
                let mut tx = db.begin_write().expect("begin");
                tx.set_durability(Durability::Immediate)
                    .expect("durability");
                tx.open_table(FLOOR)
                    .expect("table")
                    .insert(key.as_slice(), payload.as_slice())
                    .expect("insert");
                tx.commit().expect("commit");
            } else if i == 1 {
                queues
                    .send(
                        TENANT,
                        "sent",
                        OutgoingMessage::new(payload.clone()),
                        now_ms(),
                    )
                    .expect("send");
            } else {
                let got = queues
                    .receive(TENANT, "sent", 1, now_ms())
                    .expect("receive");
                queues.ack(TENANT, "sent", &got[0].receipt).expect("ack");
            }
        }
    })
}

/// `[without, with]`: a 1 KiB blob commit into an unwatched container, and
/// into a watched one with its object-created event.
fn paired_commit(rt: &Runtime, host: &Host) -> Vec<PairedStat> {
    let blob = host.blob_store();
    blob.ensure_container(TENANT, UNWATCHED).expect("container");
    blob.ensure_container(TENANT, WATCHED).expect("container");
    host.watch_container(TENANT, WATCHED);
    let next = std::cell::Cell::new(0u64);
    let (rounds, batch) = PAIRED_COMMIT;
    paired(rt, 2, rounds, batch, |i| {
        let next = &next;
        async move {
            let key = format!("k{:08}", next.get());
            next.set(next.get() + 1);
            match i {
                0 => put(host, UNWATCHED, &key, false),
                _ => put(host, WATCHED, &key, true),
            }
        }
    })
}

// ---------------------------------------------------------------------------
// Report

fn rate(n: usize, d: Duration) -> String {
    let per_s = n as f64 / d.as_secs_f64();
    let s = format!("{per_s:.0}");
    // Thousands separated by a space, as in the README's tables.
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    format!("{out}/s")
}

fn micros(d: Duration, n: usize) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6 / n as f64)
}

fn throughput_row(label: &str, n: usize, t: &Throughput) {
    println!(
        "  {label:<34} {:>10} {:>10}   {:>10} {:>9}   {:>6.2}×",
        rate(n, t.trigger),
        micros(t.trigger, n),
        rate(n, t.direct),
        micros(t.direct, n),
        t.ratio
    );
    if t.extra > 0 {
        println!(
            "  {:<34} (+{} duplicate deliveries over {ROUNDS} rounds)",
            "", t.extra
        );
    }
}

fn paired_row(label: &str, p: &PairedStat) {
    let [lo, mid, hi] = p.ratio;
    println!(
        "  {label:<46} {:>10.1} µs   {mid:>5.2}×  ({lo:.2}–{hi:.2})",
        p.median_ns / 1e3
    );
}

fn main() {
    let n = std::env::var("TRIGGERS_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_N);
    let guests = nimbus_guests::build_all().expect("building the sample guests");
    // A multi-threaded runtime, as `nimbus serve` runs (one worker per core).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    std::fs::create_dir_all(target_dir()).expect("target dir");
    let tmp = tempfile::Builder::new()
        .prefix("nimbus-triggers-bench-")
        .tempdir_in(target_dir())
        .expect("temp dir");
    let started = Instant::now();

    let mut scenario = 0;
    let mut next_dir = || {
        scenario += 1;
        tmp.path().join(format!("host{scenario}"))
    };
    let mut q1 = Vec::new();
    let mut q10 = Vec::new();
    let mut obj = Vec::new();
    for round in 0..ROUNDS {
        q1.push(queue_round(&rt, &guests, &next_dir(), n, 1, round));
        q10.push(queue_round(&rt, &guests, &next_dir(), n, 10, round));
        obj.push(object_round(&rt, &guests, &next_dir(), n, round));
    }
    let (q1, q10, obj) = (throughput(q1), throughput(q10), throughput(obj));

    let dir = next_dir();
    let (host, _echo) = host_in(&rt, &guests, &dir);
    let send = paired_send(&rt, &host, &dir);
    let commit = paired_commit(&rt, &host);
    drop(host);

    println!();
    println!(
        "==== Triggers: {n} messages / objects per round, median of {ROUNDS} rounds; \
         echo guest; poll interval {:?}; data in {} ====",
        poll_interval(),
        tmp.path().display()
    );
    println!(
        "  {:<34} {:>21}   {:>20}   {:>7}",
        "", "trigger (drain)", "direct invoke", "time"
    );
    println!(
        "  {:<34} {:>10} {:>10}   {:>10} {:>9}   {:>7}",
        "", "rate", "per msg", "rate", "per msg", "ratio"
    );
    throughput_row("queue, batch 1 (concurrency 1)", n, &q1);
    throughput_row("queue, batch 10 (concurrency 10)", n, &q10);
    throughput_row("object-created (16 at once)", n, &obj);
    println!();
    let (r, b) = PAIRED_SEND;
    println!("  durable writes, paired ({r} rounds × {b}; median per call, ratio p25–p75)");
    paired_row(
        &format!("redb commit, {BODY_BYTES} B, Durability::Immediate (floor)"),
        &send[0],
    );
    paired_row(&format!("QueueStore::send, {BODY_BYTES} B"), &send[1]);
    paired_row("QueueStore::receive (1 message) + ack", &send[2]);
    let (r, b) = PAIRED_COMMIT;
    println!("  ({r} rounds × {b})");
    paired_row(
        &format!("blob commit {OBJECT_BYTES} B, unwatched (no event)"),
        &commit[0],
    );
    paired_row(
        &format!("blob commit {OBJECT_BYTES} B + object-created event"),
        &commit[1],
    );
    println!("\n  durable commits (each with an fsync) per message:");
    println!(
        "    queue:   send 1; trigger: receive 1 + ack 1 per batch \
         (2 at batch 1, 0.2 at batch 10)"
    );
    println!(
        "    objects: write: file and directory fsyncs + 1 redb commit, \
         which carries the event; trigger: ack 1"
    );
    println!("    direct invocations: none (the usage ledger is an O_APPEND write)");
    println!(
        "\n  total bench time {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
