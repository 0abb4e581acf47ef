//! Event triggers: what runs a function besides an HTTP request or a direct
//! call. Every trigger invokes through [`FunctionHandle::invoke_with`], so
//! it gets the same fresh instance, limits, billing and logs as any other
//! invocation; its usage record names the trigger.
//!
//! - **Object created** ([`ObjectTrigger`]): a write to a watched blob
//!   container persists an event in the same transaction as the object
//!   (see `nimbus_blob`); the dispatcher delivers it to every matching
//!   trigger and only then removes it, so an acknowledged write has its
//!   event delivered at least once even across a crash. Failed deliveries
//!   are retried (3 attempts, exponential backoff), then logged and
//!   counted as failed; a guest's `invalid-input` error is final (the same
//!   object would be refused again) and is not retried. **Loop guard:** an object written by an invocation
//!   that an object event started carries that event's depth + 1; events
//!   deeper than `max_event_depth` (default 3) are dropped with a warning
//!   and counted (`result="loop_dropped"`), so a function writing into the
//!   container it listens to runs a bounded number of times.
//! - **Queue** ([`QueueTrigger`]): a consumer per queue receives batches,
//!   invokes once per message (a batch runs concurrently), acks on success
//!   and nacks on failure — retried after backoff until `max_receive_count`,
//!   then dead-lettered. A message is deleted only after its function
//!   succeeded; one whose consumer died reappears after its visibility
//!   timeout, which must exceed the function's timeout.
//! - **Schedule** ([`ScheduleTrigger`]): cron expressions (5 fields, or 6
//!   with seconds) in UTC or a named time zone. The last tick is persisted;
//!   with `catch_up` a tick missed while the server was down runs once at
//!   start. A tick that comes while the previous run is still going is
//!   skipped (logged and counted), never run twice at once.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use dashmap::DashMap;
use nimbus_core::nimbus_blob::ObjectCreated;
use nimbus_core::nimbus_queue::{Delivery, Nack, QueueConfig, QueueError};
use nimbus_core::prometheus::core::{Collector, Desc};
use nimbus_core::prometheus::proto;
use nimbus_core::{Cause, Event, Host, Trigger};
use redb::{Database, ReadableDatabase, TableDefinition};
use tokio::sync::watch;
use tokio::task::JoinSet;

const LAST_TICKS: TableDefinition<&str, i64> = TableDefinition::new("schedule_last_tick");

/// Run `function` when an object is written to `container`, if its key
/// starts with `prefix` and ends with `suffix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectTrigger {
    pub tenant: String,
    pub function: String,
    pub container: String,
    pub prefix: String,
    pub suffix: String,
}

/// Run `function` for each message of `queue`.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueTrigger {
    pub tenant: String,
    pub function: String,
    pub queue: String,
    /// Messages received at once and processed concurrently.
    pub batch_size: usize,
    pub config: QueueConfig,
}

/// Run `function` on a cron schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleTrigger {
    pub tenant: String,
    pub function: String,
    /// `min hour dom month dow`, or with a leading seconds field.
    pub cron: String,
    /// An IANA zone such as `Europe/Paris`; UTC when absent.
    pub timezone: Option<String>,
    /// Run once at start if a tick was missed while the server was down.
    pub catch_up: bool,
}

#[derive(Debug, Clone)]
pub struct TriggerOptions {
    /// Object events deeper than this are dropped (the loop guard).
    pub max_event_depth: u32,
    /// Delivery attempts per object event and trigger.
    pub object_attempts: u32,
    /// First retry delay of an object event; doubles per attempt.
    pub object_retry_base: Duration,
    /// How often idle dispatchers look for new work.
    pub poll_interval: Duration,
    /// Where schedules persist their last tick; without it, missed ticks
    /// cannot be detected.
    pub state_path: Option<PathBuf>,
}

impl Default for TriggerOptions {
    fn default() -> Self {
        Self {
            max_event_depth: 3,
            object_attempts: 3,
            object_retry_base: Duration::from_secs(1),
            poll_interval: Duration::from_millis(50),
            state_path: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TriggerError {
    /// A trigger that cannot work as declared; the message names the field.
    #[error("{0}")]
    Invalid(String),
    #[error("trigger state: {0}")]
    Storage(String),
}

/// Counters per (tenant, name, label).
#[derive(Debug, Default)]
struct Counters(DashMap<(String, String, &'static str), AtomicU64>);

impl Counters {
    fn add(&self, a: &str, b: &str, what: &'static str) {
        self.0
            .entry((a.to_string(), b.to_string(), what))
            .or_default()
            .fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self, a: &str, b: &str, what: &'static str) -> u64 {
        self.0
            .get(&(a.to_string(), b.to_string(), what))
            .map_or(0, |n| n.load(Ordering::Relaxed))
    }
}

#[derive(Debug)]
struct Inner {
    host: Host,
    options: TriggerOptions,
    objects: Mutex<Vec<ObjectTrigger>>,
    queues: Mutex<Vec<QueueTrigger>>,
    schedules: Mutex<Vec<(ScheduleTrigger, croner::Cron, chrono_tz::Tz)>>,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// (tenant, queue, deliveries|retries|dead_lettered)
    queue_counts: Counters,
    /// (tenant, container, delivered|failed|loop_dropped)
    object_counts: Counters,
    /// (tenant, function, runs|skipped)
    schedule_counts: Counters,
    state: Option<Database>,
}

/// The triggers of one host. Add triggers, then [`Self::start`]; stop with
/// [`Self::shutdown`], which lets running invocations finish.
#[derive(Debug, Clone)]
pub struct Triggers {
    inner: Arc<Inner>,
}

fn invalid(m: String) -> TriggerError {
    TriggerError::Invalid(m)
}

fn rfc3339_ms(ms: u64) -> String {
    Utc.timestamp_millis_opt(ms as i64)
        .single()
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Triggers {
    /// Registers the trigger metrics in the host's registry.
    pub fn new(host: Host, options: TriggerOptions) -> Result<Self, TriggerError> {
        let state = match &options.state_path {
            Some(p) => {
                if let Some(dir) = p.parent() {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| TriggerError::Storage(format!("{}: {e}", dir.display())))?;
                }
                let db = Database::create(p)
                    .map_err(|e| TriggerError::Storage(format!("{}: {e}", p.display())))?;
                Some(db)
            }
            None => None,
        };
        let inner = Arc::new(Inner {
            host: host.clone(),
            options,
            objects: Mutex::default(),
            queues: Mutex::default(),
            schedules: Mutex::default(),
            stop: watch::channel(false).0,
            tasks: Mutex::default(),
            queue_counts: Counters::default(),
            object_counts: Counters::default(),
            schedule_counts: Counters::default(),
            state,
        });
        host.registry()
            .register(Box::new(TriggerMetrics::new(Arc::downgrade(&inner))))
            .map_err(|e| TriggerError::Storage(format!("registering metrics: {e}")))?;
        Ok(Self { inner })
    }

    /// Watches the container from now on: writes there persist events.
    pub fn add_object_trigger(&self, t: ObjectTrigger) -> Result<(), TriggerError> {
        nimbus_core::nimbus_blob::check_container_name(&t.container).map_err(|e| {
            invalid(format!(
                "object trigger of {}/{}: container: {e}",
                t.tenant, t.function
            ))
        })?;
        self.inner
            .host
            .blob_store()
            .ensure_container(&t.tenant, &t.container)
            .map_err(|e| {
                invalid(format!(
                    "object trigger of {}/{}: container `{}`: {e}",
                    t.tenant, t.function, t.container
                ))
            })?;
        self.inner.host.watch_container(&t.tenant, &t.container);
        lock(&self.inner.objects).push(t);
        Ok(())
    }

    /// Configures the queue (persisted) and consumes it once started.
    pub fn add_queue_trigger(&self, t: QueueTrigger) -> Result<(), TriggerError> {
        let name = format!("queue trigger of {}/{}", t.tenant, t.function);
        if t.batch_size == 0 || t.batch_size > 100 {
            return Err(invalid(format!(
                "{name}: batch_size {} is outside 1..=100",
                t.batch_size
            )));
        }
        if let Ok(f) = self.inner.host.function(&t.tenant, &t.function) {
            let timeout = f.limits().timeout;
            if t.config.visibility_timeout <= timeout {
                return Err(invalid(format!(
                    "{name}: visibility timeout {:?} must exceed the function's timeout {timeout:?}, \
                     or messages would be delivered again while still running",
                    t.config.visibility_timeout
                )));
            }
        }
        self.inner
            .host
            .queue_store()
            .configure(&t.tenant, &t.queue, t.config.clone())
            .map_err(|e| invalid(format!("{name}: {e}")))?;
        lock(&self.inner.queues).push(t);
        Ok(())
    }

    pub fn add_schedule(&self, t: ScheduleTrigger) -> Result<(), TriggerError> {
        let name = format!("schedule of {}/{}", t.tenant, t.function);
        let cron = croner::Cron::from_str(&t.cron)
            .map_err(|e| invalid(format!("{name}: cron {:?}: {e}", t.cron)))?;
        let tz = match &t.timezone {
            None => chrono_tz::UTC,
            Some(z) => chrono_tz::Tz::from_str(z)
                .map_err(|_| invalid(format!("{name}: unknown time zone {z:?}")))?,
        };
        lock(&self.inner.schedules).push((t, cron, tz));
        Ok(())
    }

    /// Starts the dispatchers on the current tokio runtime.
    pub fn start(&self) {
        let mut tasks = lock(&self.inner.tasks);
        if !lock(&self.inner.objects).is_empty() {
            tasks.push(tokio::spawn(dispatch_objects(self.inner.clone())));
        }
        for q in lock(&self.inner.queues).iter() {
            tasks.push(tokio::spawn(consume_queue(self.inner.clone(), q.clone())));
        }
        for (s, cron, tz) in lock(&self.inner.schedules).iter() {
            tasks.push(tokio::spawn(run_schedule(
                self.inner.clone(),
                s.clone(),
                cron.clone(),
                *tz,
            )));
        }
    }

    /// Stops taking new work and waits for running invocations to finish.
    pub async fn shutdown(&self) {
        let _ = self.inner.stop.send(true);
        let tasks: Vec<_> = lock(&self.inner.tasks).drain(..).collect();
        for t in tasks {
            let _ = t.await;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Sleeps, or returns `true` early if the triggers are stopping.
async fn stopped_during(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

/// Most object events delivered at once.
const OBJECT_CONCURRENCY: usize = 16;

async fn dispatch_objects(inner: Arc<Inner>) {
    let mut stop = inner.stop.subscribe();
    let blob = inner.host.blob_store();
    // Events started and not yet known to be gone from the outbox. A
    // delivery's event leaves this set only once a read that began after
    // the delivery finished (acked, or given up on) has been made: a read
    // that began before its ack committed still lists it, and would start
    // it again.
    let mut in_flight: HashSet<u64> = HashSet::new();
    let mut tasks: HashMap<tokio::task::Id, u64> = HashMap::new();
    let mut settled: Vec<u64> = Vec::new();
    let mut running = JoinSet::new();
    'dispatch: loop {
        while let Some(done) = running.try_join_next_with_id() {
            settle(&mut tasks, &mut settled, done);
        }
        if *stop.borrow() {
            break;
        }
        let settled_before_read = std::mem::take(&mut settled);
        let b = blob.clone();
        let pending = tokio::task::spawn_blocking(move || b.pending_events(256)).await;
        let events = match pending {
            Ok(Ok(events)) => events,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "reading object events");
                Vec::new()
            }
            Err(e) => {
                tracing::error!(error = %e, "object event reader failed");
                Vec::new()
            }
        };
        for seq in settled_before_read {
            in_flight.remove(&seq);
        }
        let fresh: Vec<ObjectCreated> = events
            .into_iter()
            .filter(|ev| !in_flight.contains(&ev.seq))
            .collect();
        if fresh.is_empty() {
            if stopped_during(&mut stop, inner.options.poll_interval).await {
                break;
            }
            continue;
        }
        // Start the whole read, taking a slot as soon as one frees rather
        // than sleeping a poll interval and reading the outbox again.
        for ev in fresh {
            while running.len() >= OBJECT_CONCURRENCY {
                tokio::select! {
                    Some(done) = running.join_next_with_id() => {
                        settle(&mut tasks, &mut settled, done);
                    }
                    _ = stop.changed() => break 'dispatch,
                }
            }
            if *stop.borrow() {
                break 'dispatch;
            }
            let seq = ev.seq;
            in_flight.insert(seq);
            let inner = inner.clone();
            let task = running.spawn(async move {
                if deliver_object(&inner, ev).await {
                    let b = inner.host.blob_store();
                    match tokio::task::spawn_blocking(move || b.ack_event(seq)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => tracing::error!(error = %e, seq, "acking object event"),
                        Err(e) => tracing::error!(error = %e, seq, "acking object event"),
                    }
                }
                seq
            });
            tasks.insert(task.id(), seq);
        }
    }
    // Let deliveries in progress finish; unacked events stay in the outbox.
    while running.join_next().await.is_some() {}
}

/// Records a finished delivery (even one whose task panicked) as settled.
fn settle(
    tasks: &mut HashMap<tokio::task::Id, u64>,
    settled: &mut Vec<u64>,
    done: Result<(tokio::task::Id, u64), tokio::task::JoinError>,
) {
    let id = match &done {
        Ok((id, _)) => *id,
        Err(e) => {
            tracing::error!(error = %e, "object event delivery failed");
            e.id()
        }
    };
    if let Some(seq) = tasks.remove(&id) {
        settled.push(seq);
    }
}

fn object_event(ev: &ObjectCreated) -> Event {
    let data = serde_json::json!({
        "container": ev.container,
        "key": ev.key,
        "size": ev.size,
        "content_type": ev.content_type,
        "etag": ev.etag,
        "time": rfc3339_ms(ev.time_ms),
    });
    let mut e = Event::new(
        "nimbus.object.created",
        format!("/storage/v1/{}/{}", ev.tenant, ev.container),
        serde_json::to_vec(&data).unwrap_or_default(),
    )
    .content_type("application/json")
    .subject(ev.key.clone())
    .attribute("container", ev.container.clone())
    .attribute("key", ev.key.clone())
    .attribute("size", ev.size.to_string())
    .attribute("etag", ev.etag.clone())
    .attribute("depth", ev.depth.to_string());
    if let Some(ct) = &ev.content_type {
        e = e.attribute("objectcontenttype", ct.clone());
    }
    // One id per object version, so a redelivered event has the same id.
    e.id = format!("object-{}", ev.etag);
    e.time = Some(rfc3339_ms(ev.time_ms));
    e
}

/// Delivers one event to every matching trigger; `false` if the triggers
/// are stopping and the event must stay in the outbox.
async fn deliver_object(inner: &Inner, ev: ObjectCreated) -> bool {
    let matching: Vec<ObjectTrigger> = lock(&inner.objects)
        .iter()
        .filter(|t| {
            t.tenant == ev.tenant
                && t.container == ev.container
                && ev.key.starts_with(&t.prefix)
                && ev.key.ends_with(&t.suffix)
        })
        .cloned()
        .collect();
    if matching.is_empty() {
        return true;
    }
    if ev.depth > inner.options.max_event_depth {
        tracing::warn!(
            tenant = %ev.tenant, container = %ev.container, key = %ev.key, depth = ev.depth,
            max = inner.options.max_event_depth,
            "object event dropped by the loop guard: too many triggered writes in a chain"
        );
        inner
            .object_counts
            .add(&ev.tenant, &ev.container, "loop_dropped");
        return true;
    }
    let mut stop = inner.stop.subscribe();
    for t in matching {
        let mut attempt = 1;
        loop {
            let outcome = match inner.host.function(&t.tenant, &t.function) {
                Ok(f) => f
                    .invoke_with(
                        object_event(&ev),
                        Cause {
                            trigger: Trigger::Object,
                            depth: ev.depth,
                        },
                    )
                    .await
                    .map(|_| ())
                    .map_err(|e| {
                        let permanent = matches!(
                            &e,
                            nimbus_core::Error::Guest {
                                error: nimbus_core::GuestError::InvalidInput(_),
                                ..
                            }
                        );
                        (e.to_string(), permanent)
                    }),
                Err(e) => Err((e.to_string(), false)),
            };
            match outcome {
                Ok(()) => {
                    inner
                        .object_counts
                        .add(&ev.tenant, &ev.container, "delivered");
                    break;
                }
                // The guest said the object is not something it can take:
                // the same object would be refused again.
                Err((e, true)) => {
                    tracing::warn!(
                        tenant = %t.tenant, function = %t.function, key = %ev.key,
                        error = %e, "object refused by the function as invalid input; not retried"
                    );
                    inner.object_counts.add(&ev.tenant, &ev.container, "failed");
                    break;
                }
                Err((e, _)) if attempt < inner.options.object_attempts => {
                    tracing::info!(
                        tenant = %t.tenant, function = %t.function, key = %ev.key, attempt,
                        error = %e, "object event delivery failed; retrying"
                    );
                    let delay = inner.options.object_retry_base * 2u32.pow(attempt - 1);
                    if stopped_during(&mut stop, delay).await {
                        return false;
                    }
                    attempt += 1;
                }
                Err((e, _)) => {
                    tracing::error!(
                        tenant = %t.tenant, function = %t.function, key = %ev.key, attempt,
                        error = %e, "object event not delivered; giving up"
                    );
                    inner.object_counts.add(&ev.tenant, &ev.container, "failed");
                    break;
                }
            }
        }
    }
    true
}

async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> Result<R, QueueError> + Send + 'static,
) -> Result<R, String> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

fn queue_event(t: &QueueTrigger, d: &Delivery) -> Event {
    let mut e = Event::new(
        "nimbus.queue.message",
        format!("/queues/v1/{}/{}", t.tenant, t.queue),
        d.body.clone(),
    )
    .subject(t.queue.clone())
    .attribute("queue", t.queue.clone())
    .attribute("receivecount", d.receive_count.to_string());
    for (k, v) in &d.metadata {
        e = e.attribute(k.clone(), v.clone());
    }
    e.content_type = d.content_type.clone();
    // The message id: stable across redeliveries, for idempotent consumers.
    e.id = d.id.to_string();
    e.time = Some(rfc3339_ms(d.sent_at_ms));
    e
}

async fn consume_queue(inner: Arc<Inner>, t: QueueTrigger) {
    let mut stop = inner.stop.subscribe();
    let queues = inner.host.queue_store();
    let poll = inner.options.poll_interval;
    loop {
        if *stop.borrow() {
            break;
        }
        // `receive` is a durable write even when it finds nothing; a read
        // first keeps an idle consumer from syncing the disk every poll.
        let now = nimbus_core::nimbus_queue::now_ms();
        match queues.next_visible_at_ms(&t.tenant, &t.queue) {
            Ok(Some(at)) if at <= now => {}
            Ok(next) => {
                let wait = next.map_or(poll, |at| poll.min(Duration::from_millis(at - now)));
                if stopped_during(&mut stop, wait).await {
                    break;
                }
                continue;
            }
            // Let `receive` report it (and back off).
            Err(_) => {}
        }
        let (q, tenant, queue, n) = (
            queues.clone(),
            t.tenant.clone(),
            t.queue.clone(),
            t.batch_size,
        );
        let batch = match blocking(move || {
            q.receive(&tenant, &queue, n, nimbus_core::nimbus_queue::now_ms())
        })
        .await
        {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(tenant = %t.tenant, queue = %t.queue, error = %e, "receiving");
                if stopped_during(&mut stop, poll * 20).await {
                    break;
                }
                continue;
            }
        };
        if batch.is_empty() {
            if stopped_during(&mut stop, poll).await {
                break;
            }
            continue;
        }
        let mut running = JoinSet::new();
        for d in batch {
            inner.queue_counts.add(&t.tenant, &t.queue, "deliveries");
            let (inner, t) = (inner.clone(), t.clone());
            running.spawn(async move { process_message(&inner, &t, d).await });
        }
        // Successes are acked together, one durable commit per batch
        // instead of one per message (measured: benches/triggers.rs). A
        // crash before it redelivers them: at least once.
        let mut done = Vec::new();
        while let Some(r) = running.join_next().await {
            if let Ok(Some(receipt)) = r {
                done.push(receipt);
            }
        }
        if !done.is_empty() {
            let (q, tenant, queue) = (queues.clone(), t.tenant.clone(), t.queue.clone());
            match blocking(move || q.ack_many(&tenant, &queue, &done)).await {
                Ok(answers) => {
                    for e in answers.into_iter().filter_map(Result::err) {
                        // Redelivered after its visibility timeout.
                        tracing::warn!(queue = %t.queue, error = %e, "ack failed");
                    }
                }
                Err(e) => tracing::warn!(queue = %t.queue, error = %e, "ack failed"),
            }
        }
    }
}

/// Runs one message; failures are nacked here, a success's receipt is
/// returned for the batch's ack.
async fn process_message(
    inner: &Inner,
    t: &QueueTrigger,
    d: Delivery,
) -> Option<nimbus_core::nimbus_queue::Receipt> {
    let result = match inner.host.function(&t.tenant, &t.function) {
        Ok(f) => f
            .invoke_with(queue_event(t, &d), Cause::new(Trigger::Queue))
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let queues = inner.host.queue_store();
    let (tenant, queue, receipt) = (t.tenant.clone(), t.queue.clone(), d.receipt);
    match result {
        Ok(()) => Some(receipt),
        Err(error) => {
            let why = error.clone();
            let nacked = blocking(move || {
                queues.nack(
                    &tenant,
                    &queue,
                    &receipt,
                    &why,
                    nimbus_core::nimbus_queue::now_ms(),
                )
            })
            .await;
            match nacked {
                Ok(Nack::Retry) => {
                    inner.queue_counts.add(&t.tenant, &t.queue, "retries");
                    tracing::info!(queue = %t.queue, id = %d.id, %error, "message failed; will retry");
                }
                Ok(Nack::DeadLetter) => {
                    inner.queue_counts.add(&t.tenant, &t.queue, "dead_lettered");
                    tracing::warn!(queue = %t.queue, id = %d.id, %error, "message dead-lettered");
                }
                Err(e) => tracing::warn!(queue = %t.queue, id = %d.id, error = %e, "nack failed"),
            }
            None
        }
    }
}

fn tick_key(s: &ScheduleTrigger) -> String {
    format!("{}\u{0}{}\u{0}{}", s.tenant, s.function, s.cron)
}

fn last_tick(inner: &Inner, key: &str) -> Option<DateTime<Utc>> {
    let db = inner.state.as_ref()?;
    let tx = db.begin_read().ok()?;
    let table = tx.open_table(LAST_TICKS).ok()?;
    let ms = table.get(key).ok()??.value();
    Utc.timestamp_millis_opt(ms).single()
}

fn save_tick(inner: &Inner, key: &str, at: DateTime<Utc>) {
    let Some(db) = &inner.state else { return };
    let saved = (|| -> Result<(), redb::Error> {
        let tx = db.begin_write()?;
        tx.open_table(LAST_TICKS)?
            .insert(key, at.timestamp_millis())?;
        tx.commit()?;
        Ok(())
    })();
    if let Err(e) = saved {
        tracing::error!(error = %e, "saving schedule tick");
    }
}

async fn run_schedule(
    inner: Arc<Inner>,
    s: ScheduleTrigger,
    cron: croner::Cron,
    tz: chrono_tz::Tz,
) {
    let mut stop = inner.stop.subscribe();
    let key = tick_key(&s);
    let running = Arc::new(AtomicBool::new(false));
    let mut runs = JoinSet::new();
    if s.catch_up
        && let Some(last) = last_tick(&inner, &key)
        && let Ok(next) = cron.find_next_occurrence(&last.with_timezone(&tz), false)
        && next.with_timezone(&Utc) <= Utc::now()
    {
        tracing::info!(tenant = %s.tenant, function = %s.function, missed = %next, "running a tick missed while down");
        let at = Utc::now();
        save_tick(&inner, &key, at);
        start_run(&inner, &s, &running, &mut runs, next.with_timezone(&Utc));
    }
    loop {
        while runs.try_join_next().is_some() {}
        let now = Utc::now().with_timezone(&tz);
        let next = match cron.find_next_occurrence(&now, false) {
            Ok(n) => n.with_timezone(&Utc),
            Err(e) => {
                tracing::error!(tenant = %s.tenant, function = %s.function, error = %e, "no next tick; schedule stops");
                break;
            }
        };
        let wait = (next - Utc::now()).to_std().unwrap_or_default();
        if stopped_during(&mut stop, wait).await {
            break;
        }
        save_tick(&inner, &key, next);
        start_run(&inner, &s, &running, &mut runs, next);
    }
    while runs.join_next().await.is_some() {}
}

fn start_run(
    inner: &Arc<Inner>,
    s: &ScheduleTrigger,
    running: &Arc<AtomicBool>,
    runs: &mut JoinSet<()>,
    tick: DateTime<Utc>,
) {
    if running.swap(true, Ordering::AcqRel) {
        inner.schedule_counts.add(&s.tenant, &s.function, "skipped");
        tracing::warn!(tenant = %s.tenant, function = %s.function, %tick, "tick skipped: the previous run is still going");
        return;
    }
    inner.schedule_counts.add(&s.tenant, &s.function, "runs");
    let (inner, s, running) = (inner.clone(), s.clone(), running.clone());
    runs.spawn(async move {
        let data = serde_json::json!({
            "scheduled_time": tick.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "cron": s.cron,
            "timezone": s.timezone.as_deref().unwrap_or("UTC"),
        });
        let mut event = Event::new(
            "nimbus.schedule.tick",
            format!("/schedules/{}/{}", s.tenant, s.function),
            serde_json::to_vec(&data).unwrap_or_default(),
        )
        .content_type("application/json");
        event.time = Some(tick.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        let result = match inner.host.function(&s.tenant, &s.function) {
            Ok(f) => f
                .invoke_with(event, Cause::new(Trigger::Schedule))
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = result {
            tracing::warn!(tenant = %s.tenant, function = %s.function, %tick, error = %e, "scheduled run failed");
        }
        running.store(false, Ordering::Release);
    });
}

/// Queue, object-event and schedule metrics, read at scrape time.
struct TriggerMetrics {
    inner: std::sync::Weak<Inner>,
    descs: Vec<Desc>,
}

struct Fam {
    name: &'static str,
    help: &'static str,
    kind: proto::MetricType,
    labels: &'static [&'static str],
}

const FAMILIES: &[Fam] = &[
    Fam {
        name: "nimbus_queue_depth",
        help: "Messages in a queue (visible, in flight or waiting for a retry), dead letters excluded.",
        kind: proto::MetricType::GAUGE,
        labels: &["tenant", "queue"],
    },
    Fam {
        name: "nimbus_queue_oldest_message_age_seconds",
        help: "Age of the oldest message still in a queue.",
        kind: proto::MetricType::GAUGE,
        labels: &["tenant", "queue"],
    },
    Fam {
        name: "nimbus_queue_dead_letters",
        help: "Messages in a queue's dead-letter list.",
        kind: proto::MetricType::GAUGE,
        labels: &["tenant", "queue"],
    },
    Fam {
        name: "nimbus_queue_deliveries_total",
        help: "Messages handed to a queue trigger's function.",
        kind: proto::MetricType::COUNTER,
        labels: &["tenant", "queue"],
    },
    Fam {
        name: "nimbus_queue_retries_total",
        help: "Failed deliveries that will be retried after backoff.",
        kind: proto::MetricType::COUNTER,
        labels: &["tenant", "queue"],
    },
    Fam {
        name: "nimbus_queue_dead_lettered_total",
        help: "Messages moved to the dead-letter list by a failed delivery.",
        kind: proto::MetricType::COUNTER,
        labels: &["tenant", "queue"],
    },
    Fam {
        name: "nimbus_object_events_total",
        help: "Object-created events by result (delivered, failed, loop_dropped).",
        kind: proto::MetricType::COUNTER,
        labels: &["tenant", "container", "result"],
    },
    Fam {
        name: "nimbus_schedule_runs_total",
        help: "Scheduled runs started.",
        kind: proto::MetricType::COUNTER,
        labels: &["tenant", "function"],
    },
    Fam {
        name: "nimbus_schedule_skipped_total",
        help: "Ticks skipped because the previous run was still going.",
        kind: proto::MetricType::COUNTER,
        labels: &["tenant", "function"],
    },
];

impl TriggerMetrics {
    fn new(inner: std::sync::Weak<Inner>) -> Self {
        let descs = FAMILIES
            .iter()
            .filter_map(|f| {
                Desc::new(
                    f.name.into(),
                    f.help.into(),
                    f.labels.iter().map(|l| l.to_string()).collect(),
                    Default::default(),
                )
                .ok()
            })
            .collect();
        Self { inner, descs }
    }
}

fn sample(kind: proto::MetricType, labels: &[(&str, &str)], value: f64) -> proto::Metric {
    let mut m = proto::Metric::default();
    m.set_label(
        labels
            .iter()
            .map(|(k, v)| {
                let mut l = proto::LabelPair::default();
                l.set_name(k.to_string());
                l.set_value(v.to_string());
                l
            })
            .collect(),
    );
    if kind == proto::MetricType::COUNTER {
        let mut c = proto::Counter::default();
        c.set_value(value);
        m.set_counter(c);
    } else {
        let mut g = proto::Gauge::default();
        g.set_value(value);
        m.set_gauge(g);
    }
    m
}

impl Collector for TriggerMetrics {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<proto::MetricFamily> {
        let Some(inner) = self.inner.upgrade() else {
            return Vec::new();
        };
        let mut series: Vec<Vec<proto::Metric>> = FAMILIES.iter().map(|_| Vec::new()).collect();
        let queues = inner.host.queue_store();
        let now = nimbus_core::nimbus_queue::now_ms();
        let mut known = queues.queues().unwrap_or_default();
        known.sort();
        for (tenant, queue) in &known {
            let l = [("tenant", tenant.as_str()), ("queue", queue.as_str())];
            if let Ok(st) = queues.stats(tenant, queue, now) {
                let depth = st.visible + st.in_flight + st.delayed;
                series[0].push(sample(proto::MetricType::GAUGE, &l, depth as f64));
                let age = st
                    .oldest_sent_at_ms
                    .map_or(0.0, |t| now.saturating_sub(t) as f64 / 1e3);
                series[1].push(sample(proto::MetricType::GAUGE, &l, age));
                series[2].push(sample(proto::MetricType::GAUGE, &l, st.dead as f64));
            }
            for (i, what) in [(3, "deliveries"), (4, "retries"), (5, "dead_lettered")] {
                let n = inner.queue_counts.get(tenant, queue, what);
                series[i].push(sample(proto::MetricType::COUNTER, &l, n as f64));
            }
        }
        let mut objects: Vec<_> = inner
            .object_counts
            .0
            .iter()
            .map(|e| (e.key().clone(), e.value().load(Ordering::Relaxed)))
            .collect();
        objects.sort();
        for ((tenant, container, result), n) in objects {
            series[6].push(sample(
                proto::MetricType::COUNTER,
                &[
                    ("tenant", &tenant),
                    ("container", &container),
                    ("result", result),
                ],
                n as f64,
            ));
        }
        let mut schedules: Vec<(String, String)> = lock(&inner.schedules)
            .iter()
            .map(|(s, _, _)| (s.tenant.clone(), s.function.clone()))
            .collect();
        schedules.sort();
        schedules.dedup();
        for (tenant, function) in schedules {
            let l = [("tenant", tenant.as_str()), ("function", function.as_str())];
            for (i, what) in [(7, "runs"), (8, "skipped")] {
                let n = inner.schedule_counts.get(&tenant, &function, what);
                series[i].push(sample(proto::MetricType::COUNTER, &l, n as f64));
            }
        }
        FAMILIES
            .iter()
            .zip(series)
            .filter(|(_, m)| !m.is_empty())
            .map(|(f, metrics)| {
                let mut fam = proto::MetricFamily::default();
                fam.set_name(f.name.into());
                fam.set_help(f.help.into());
                fam.set_field_type(f.kind);
                fam.set_metric(metrics);
                fam
            })
            .collect()
    }
}
