//! Object-created triggers: one dispatcher reads the blob store's event
//! outbox, delivers each event to every matching trigger (retrying with
//! backoff), and only then removes it from the outbox.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use nimbus_core::nimbus_blob::ObjectCreated;
use nimbus_core::prometheus::proto::{self, MetricType::COUNTER};
use nimbus_core::{Cause, Event, GuestError, Host, Trigger};
use tokio::task::{Id, JoinError, JoinHandle, JoinSet};

use crate::dispatch::{self, Counters, Next, Stop, lock};
use crate::metrics::{Family, Source};
use crate::spec::{ObjectTrigger, TriggerError, TriggerOptions};

/// Most object events delivered at once.
const CONCURRENCY: usize = 16;

/// Events read from the outbox at once.
const READ_BATCH: usize = 256;

#[derive(Debug)]
pub(crate) struct Objects {
    host: Host,
    triggers: Mutex<Vec<ObjectTrigger>>,
    /// (tenant, container, delivered|failed|loop_dropped)
    counts: Counters,
    options: TriggerOptions,
}

impl Objects {
    pub(crate) fn new(host: Host, options: &TriggerOptions) -> Self {
        Self {
            host,
            triggers: Mutex::default(),
            counts: Counters::default(),
            options: options.clone(),
        }
    }

    pub(crate) fn add(&self, t: ObjectTrigger) -> Result<(), TriggerError> {
        let name = format!("object trigger of {}/{}", t.tenant, t.function);
        nimbus_core::nimbus_blob::check_container_name(&t.container)
            .map_err(|e| TriggerError::Invalid(format!("{name}: container: {e}")))?;
        self.host
            .blob_store()
            .ensure_container(&t.tenant, &t.container)
            .map_err(|e| {
                TriggerError::Invalid(format!("{name}: container `{}`: {e}", t.container))
            })?;
        self.host.watch_container(&t.tenant, &t.container);
        lock(&self.triggers).push(t);
        Ok(())
    }

    /// One dispatcher serves every object trigger, triggers added later
    /// included; none runs while there are no triggers.
    pub(crate) fn start(self: &Arc<Self>, stop: Stop) -> Option<JoinHandle<()>> {
        if lock(&self.triggers).is_empty() {
            return None;
        }
        Some(tokio::spawn(self.clone().dispatch(stop)))
    }

    async fn dispatch(self: Arc<Self>, mut stop: Stop) {
        let mut outbox = Outbox::default();
        loop {
            let next = self.round(&mut outbox, &mut stop).await;
            if !stop.pace(next).await {
                break;
            }
        }
        // Let deliveries in progress finish; unacked events stay in the outbox.
        while outbox.running.join_next().await.is_some() {}
    }

    /// Reads the outbox once and starts every event not already running.
    async fn round(self: &Arc<Self>, outbox: &mut Outbox, stop: &mut Stop) -> Next {
        outbox.reap();
        if stop.requested() {
            return Next::Stop;
        }
        let settled_before_read = std::mem::take(&mut outbox.settled);
        let b = self.host.blob_store();
        let events = dispatch::blocking(move || b.pending_events(READ_BATCH))
            .await
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "reading object events");
                Vec::new()
            });
        for seq in settled_before_read {
            outbox.in_flight.remove(&seq);
        }
        let fresh: Vec<ObjectCreated> = events
            .into_iter()
            .filter(|ev| !outbox.in_flight.contains(&ev.seq))
            .collect();
        if fresh.is_empty() {
            return Next::After(self.options.poll_interval);
        }
        // Start the whole read, taking a slot as soon as one frees rather
        // than sleeping a poll interval and reading the outbox again.
        for ev in fresh {
            while outbox.running.len() >= CONCURRENCY {
                tokio::select! {
                    Some(done) = outbox.running.join_next_with_id() => outbox.settle(done),
                    _ = stop.changed() => return Next::Stop,
                }
            }
            if stop.requested() {
                return Next::Stop;
            }
            let seq = ev.seq;
            outbox.in_flight.insert(seq);
            let (this, stop) = (self.clone(), stop.clone());
            let task = outbox.running.spawn(async move {
                if this.deliver(ev, stop).await {
                    let b = this.host.blob_store();
                    if let Err(e) = dispatch::blocking(move || b.ack_event(seq)).await {
                        tracing::error!(error = %e, seq, "acking object event");
                    }
                }
                seq
            });
            outbox.tasks.insert(task.id(), seq);
        }
        Next::Now
    }

    /// Delivers one event to every matching trigger; `false` if the triggers
    /// are stopping and the event must stay in the outbox.
    async fn deliver(&self, ev: ObjectCreated, mut stop: Stop) -> bool {
        let matching: Vec<ObjectTrigger> = lock(&self.triggers)
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
        if ev.depth > self.options.max_event_depth {
            tracing::warn!(
                tenant = %ev.tenant, container = %ev.container, key = %ev.key, depth = ev.depth,
                max = self.options.max_event_depth,
                "object event dropped by the loop guard: too many triggered writes in a chain"
            );
            self.counts.add(&ev.tenant, &ev.container, "loop_dropped");
            return true;
        }
        for t in matching {
            let outcome = self.deliver_to(&t, &ev, &mut stop).await;
            match outcome {
                Some(result) => self.counts.add(&ev.tenant, &ev.container, result),
                None => return false,
            }
        }
        true
    }

    /// Runs one trigger for one event, retrying with exponential backoff.
    /// The result to count, or `None` if the triggers stopped during a
    /// backoff.
    async fn deliver_to(
        &self,
        t: &ObjectTrigger,
        ev: &ObjectCreated,
        stop: &mut Stop,
    ) -> Option<&'static str> {
        let cause = Cause {
            trigger: Trigger::Object,
            depth: ev.depth,
        };
        let mut attempt = 1;
        loop {
            let invoked =
                dispatch::invoke(&self.host, &t.tenant, &t.function, object_event(ev), cause).await;
            let e = match invoked {
                Ok(()) => return Some("delivered"),
                Err(e) => e,
            };
            // The guest said the object is not something it can take: the
            // same object would be refused again.
            if matches!(
                &e,
                nimbus_core::Error::Guest {
                    error: GuestError::InvalidInput(_),
                    ..
                }
            ) {
                tracing::warn!(
                    tenant = %t.tenant, function = %t.function, key = %ev.key,
                    error = %e, "object refused by the function as invalid input; not retried"
                );
                return Some("failed");
            }
            if attempt >= self.options.object_attempts {
                tracing::error!(
                    tenant = %t.tenant, function = %t.function, key = %ev.key, attempt,
                    error = %e, "object event not delivered; giving up"
                );
                return Some("failed");
            }
            tracing::info!(
                tenant = %t.tenant, function = %t.function, key = %ev.key, attempt,
                error = %e, "object event delivery failed; retrying"
            );
            if stop
                .sleep(self.options.object_retry_base * 2u32.pow(attempt - 1))
                .await
            {
                return None;
            }
            attempt += 1;
        }
    }
}

/// The dispatcher's view of the outbox between reads.
///
/// An event leaves `in_flight` only once a read that began after its
/// delivery finished (acked, or given up on) has been made: a read that
/// began before its ack committed still lists it, and would start it again.
#[derive(Default)]
struct Outbox {
    in_flight: HashSet<u64>,
    /// The event each delivery task carries, to settle it even if it panics.
    tasks: HashMap<Id, u64>,
    /// Finished since the last read began.
    settled: Vec<u64>,
    running: JoinSet<u64>,
}

impl Outbox {
    fn reap(&mut self) {
        while let Some(done) = self.running.try_join_next_with_id() {
            self.settle(done);
        }
    }

    /// Records a finished delivery (even one whose task panicked) as settled.
    fn settle(&mut self, done: Result<(Id, u64), JoinError>) {
        let id = match &done {
            Ok((id, _)) => *id,
            Err(e) => {
                tracing::error!(error = %e, "object event delivery failed");
                e.id()
            }
        };
        if let Some(seq) = self.tasks.remove(&id) {
            self.settled.push(seq);
        }
    }
}

fn object_event(ev: &ObjectCreated) -> Event {
    let time = dispatch::rfc3339_ms(ev.time_ms);
    let data = serde_json::json!({
        "container": ev.container,
        "key": ev.key,
        "size": ev.size,
        "content_type": ev.content_type,
        "etag": ev.etag,
        "time": time,
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
    e.time = Some(time);
    e
}

pub(crate) const FAMILIES: &[Family] = &[Family::new(
    COUNTER,
    "nimbus_object_events_total",
    "Object-created events by result (delivered, failed, loop_dropped).",
    &["tenant", "container", "result"],
)];

impl Source for Objects {
    fn samples(&self) -> Vec<Vec<proto::Metric>> {
        let events = self
            .counts
            .sorted()
            .into_iter()
            .map(|((tenant, container, result), n)| {
                FAMILIES[0].sample(
                    &[
                        ("tenant", &tenant),
                        ("container", &container),
                        ("result", result),
                    ],
                    n as f64,
                )
            })
            .collect();
        vec![events]
    }
}
