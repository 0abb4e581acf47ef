//! Queue triggers: one consumer per trigger receives batches, runs each
//! message concurrently, acks a batch's successes together and nacks each
//! failure (the queue store decides between a retry and the dead letters).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use nimbus_core::nimbus_queue::{self, Delivery, Nack, Receipt};
use nimbus_core::prometheus::proto::{
    self,
    MetricType::{COUNTER, GAUGE},
};
use nimbus_core::{Cause, Event, Host, Trigger};
use tokio::task::{JoinHandle, JoinSet};

use crate::dispatch::{self, Counters, Next, Stop, lock};
use crate::metrics::{Family, Source};
use crate::spec::{QueueTrigger, TriggerError, TriggerOptions};

/// How much longer than the poll interval a consumer waits after a failed
/// receive, so a broken store is not hammered.
const RECEIVE_ERROR_BACKOFF: u32 = 20;

#[derive(Debug)]
pub(crate) struct Queues {
    host: Host,
    triggers: Mutex<Vec<QueueTrigger>>,
    /// (tenant, queue, deliveries|retries|dead_lettered)
    counts: Counters,
    poll: Duration,
}

impl Queues {
    pub(crate) fn new(host: Host, options: &TriggerOptions) -> Self {
        Self {
            host,
            triggers: Mutex::default(),
            counts: Counters::default(),
            poll: options.poll_interval,
        }
    }

    pub(crate) fn add(&self, t: QueueTrigger) -> Result<(), TriggerError> {
        let name = format!("queue trigger of {}/{}", t.tenant, t.function);
        if t.batch_size == 0 || t.batch_size > 100 {
            return Err(TriggerError::Invalid(format!(
                "{name}: batch_size {} is outside 1..=100",
                t.batch_size
            )));
        }
        if let Ok(f) = self.host.function(&t.tenant, &t.function) {
            let timeout = f.limits().timeout;
            if t.config.visibility_timeout <= timeout {
                return Err(TriggerError::Invalid(format!(
                    "{name}: visibility timeout {:?} must exceed the function's timeout {timeout:?}, \
                     or messages would be delivered again while still running",
                    t.config.visibility_timeout
                )));
            }
        }
        self.host
            .queue_store()
            .configure(&t.tenant, &t.queue, t.config.clone())
            .map_err(|e| TriggerError::Invalid(format!("{name}: {e}")))?;
        lock(&self.triggers).push(t);
        Ok(())
    }

    pub(crate) fn start(self: &Arc<Self>, stop: &Stop) -> Vec<JoinHandle<()>> {
        dispatch::spawn_each(&self.triggers, stop, |t, stop| {
            self.clone().consume(t, stop)
        })
    }

    async fn consume(self: Arc<Self>, t: QueueTrigger, mut stop: Stop) {
        while !stop.requested() {
            let next = self.round(&t).await;
            if !stop.pace(next).await {
                break;
            }
        }
    }

    /// Receives one batch and runs it to the end.
    async fn round(self: &Arc<Self>, t: &QueueTrigger) -> Next {
        let queues = self.host.queue_store();
        // `receive` is a durable write even when it finds nothing; a read
        // first keeps an idle consumer from syncing the disk every poll.
        let now = nimbus_queue::now_ms();
        match queues.next_visible_at_ms(&t.tenant, &t.queue) {
            Ok(Some(at)) if at <= now => {}
            Ok(next) => {
                let poll = self.poll;
                return Next::After(
                    next.map_or(poll, |at| poll.min(Duration::from_millis(at - now))),
                );
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
        let received =
            dispatch::blocking(move || q.receive(&tenant, &queue, n, nimbus_queue::now_ms())).await;
        let batch = match received {
            Ok(b) if b.is_empty() => return Next::After(self.poll),
            Ok(b) => b,
            Err(e) => {
                tracing::error!(tenant = %t.tenant, queue = %t.queue, error = %e, "receiving");
                return Next::After(self.poll * RECEIVE_ERROR_BACKOFF);
            }
        };
        let mut running = JoinSet::new();
        for d in batch {
            self.counts.add(&t.tenant, &t.queue, "deliveries");
            let (this, t) = (self.clone(), t.clone());
            running.spawn(async move { this.process(&t, d).await });
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
            let (tenant, queue) = (t.tenant.clone(), t.queue.clone());
            match dispatch::blocking(move || queues.ack_many(&tenant, &queue, &done)).await {
                Ok(answers) => {
                    for e in answers.into_iter().filter_map(Result::err) {
                        // Redelivered after its visibility timeout.
                        tracing::warn!(queue = %t.queue, error = %e, "ack failed");
                    }
                }
                Err(e) => tracing::warn!(queue = %t.queue, error = %e, "ack failed"),
            }
        }
        Next::Now
    }

    /// Runs one message; failures are nacked here, a success's receipt is
    /// returned for the batch's ack.
    async fn process(&self, t: &QueueTrigger, d: Delivery) -> Option<Receipt> {
        let invoked = dispatch::invoke(
            &self.host,
            &t.tenant,
            &t.function,
            queue_event(t, &d),
            Cause::new(Trigger::Queue),
        )
        .await;
        let error = match invoked {
            Ok(()) => return Some(d.receipt),
            Err(e) => e.to_string(),
        };
        let queues = self.host.queue_store();
        let (tenant, queue, receipt, why) =
            (t.tenant.clone(), t.queue.clone(), d.receipt, error.clone());
        let nacked = dispatch::blocking(move || {
            queues.nack(&tenant, &queue, &receipt, &why, nimbus_queue::now_ms())
        })
        .await;
        match nacked {
            Ok(Nack::Retry) => {
                self.counts.add(&t.tenant, &t.queue, "retries");
                tracing::info!(queue = %t.queue, id = %d.id, %error, "message failed; will retry");
            }
            Ok(Nack::DeadLetter) => {
                self.counts.add(&t.tenant, &t.queue, "dead_lettered");
                tracing::warn!(queue = %t.queue, id = %d.id, %error, "message dead-lettered");
            }
            Err(e) => tracing::warn!(queue = %t.queue, id = %d.id, error = %e, "nack failed"),
        }
        None
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
    e.time = Some(dispatch::rfc3339_ms(d.sent_at_ms));
    e
}

const LABELS: &[&str] = &["tenant", "queue"];

pub(crate) const FAMILIES: &[Family] = &[
    Family::new(
        GAUGE,
        "nimbus_queue_depth",
        "Messages in a queue (visible, in flight or waiting for a retry), dead letters excluded.",
        LABELS,
    ),
    Family::new(
        GAUGE,
        "nimbus_queue_oldest_message_age_seconds",
        "Age of the oldest message still in a queue.",
        LABELS,
    ),
    Family::new(
        GAUGE,
        "nimbus_queue_dead_letters",
        "Messages in a queue's dead-letter list.",
        LABELS,
    ),
    Family::new(
        COUNTER,
        "nimbus_queue_deliveries_total",
        "Messages handed to a queue trigger's function.",
        LABELS,
    ),
    Family::new(
        COUNTER,
        "nimbus_queue_retries_total",
        "Failed deliveries that will be retried after backoff.",
        LABELS,
    ),
    Family::new(
        COUNTER,
        "nimbus_queue_dead_lettered_total",
        "Messages moved to the dead-letter list by a failed delivery.",
        LABELS,
    ),
];

/// The counted families, after the three read from the store.
const COUNTED: [&str; 3] = ["deliveries", "retries", "dead_lettered"];

impl Source for Queues {
    /// Every queue the store knows, not only those with a trigger.
    fn samples(&self) -> Vec<Vec<proto::Metric>> {
        let mut series: Vec<Vec<proto::Metric>> = FAMILIES.iter().map(|_| Vec::new()).collect();
        let queues = self.host.queue_store();
        let now = nimbus_queue::now_ms();
        let mut known = queues.queues().unwrap_or_default();
        known.sort();
        for (tenant, queue) in &known {
            let l = [("tenant", tenant.as_str()), ("queue", queue.as_str())];
            if let Ok(st) = queues.stats(tenant, queue, now) {
                let depth = st.visible + st.in_flight + st.delayed;
                let age = st
                    .oldest_sent_at_ms
                    .map_or(0.0, |t| now.saturating_sub(t) as f64 / 1e3);
                for (i, value) in [depth as f64, age, st.dead as f64].into_iter().enumerate() {
                    series[i].push(FAMILIES[i].sample(&l, value));
                }
            }
            for (i, what) in COUNTED.into_iter().enumerate() {
                let n = self.counts.get(tenant, queue, what);
                series[3 + i].push(FAMILIES[3 + i].sample(&l, n as f64));
            }
        }
        series
    }
}
