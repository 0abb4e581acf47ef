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
//!   skipped (logged and counted), never run twice at once. Several nodes
//!   running the same schedule run each tick once between them: a tick is
//!   run by the node whose claim on it wins ([`TickClaims`]); a node still
//!   running the previous tick does not claim, leaving the tick to another.

// One module per kind of trigger, owning its validation, state, runners and
// metrics, so that a change to one kind stays in one file. They share only
// `dispatch` (invocation, stop signal, counters) and `metrics` (the one
// collector they report through), never each other.

mod claims;
mod dispatch;
mod metrics;
mod object;
mod queue;
mod schedule;
mod spec;

pub use claims::{Claim, ClaimFuture, LocalTickClaims, TickClaims};
pub use spec::{ObjectTrigger, QueueTrigger, ScheduleTrigger, TriggerError, TriggerOptions};

use std::sync::{Arc, Mutex};

use nimbus_core::Host;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use dispatch::{Stop, lock};
use metrics::TriggerMetrics;
use object::Objects;
use queue::Queues;
use schedule::Schedules;

#[derive(Debug)]
struct Inner {
    objects: Arc<Objects>,
    queues: Arc<Queues>,
    schedules: Arc<Schedules>,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// The triggers of one host. Add triggers, then [`Self::start`]; stop with
/// [`Self::shutdown`], which lets running invocations finish.
#[derive(Debug, Clone)]
pub struct Triggers {
    inner: Arc<Inner>,
}

impl Triggers {
    /// Registers the trigger metrics in the host's registry.
    pub fn new(host: Host, options: TriggerOptions) -> Result<Self, TriggerError> {
        let schedules = Arc::new(Schedules::open(
            host.clone(),
            options.state_path.as_deref(),
            options.tick_claims.clone(),
        )?);
        let objects = Arc::new(Objects::new(host.clone(), &options));
        let queues = Arc::new(Queues::new(host.clone(), &options));
        let metrics = TriggerMetrics::new(&[
            (queue::FAMILIES, queues.clone() as Arc<dyn metrics::Source>),
            (object::FAMILIES, objects.clone()),
            (schedule::FAMILIES, schedules.clone()),
        ]);
        host.registry()
            .register(Box::new(metrics))
            .map_err(|e| TriggerError::Storage(format!("registering metrics: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                objects,
                queues,
                schedules,
                stop: watch::channel(false).0,
                tasks: Mutex::default(),
            }),
        })
    }

    /// Watches the container from now on: writes there persist events.
    pub fn add_object_trigger(&self, t: ObjectTrigger) -> Result<(), TriggerError> {
        self.inner.objects.add(t)
    }

    /// Configures the queue (persisted) and consumes it once started.
    pub fn add_queue_trigger(&self, t: QueueTrigger) -> Result<(), TriggerError> {
        self.inner.queues.add(t)
    }

    pub fn add_schedule(&self, t: ScheduleTrigger) -> Result<(), TriggerError> {
        self.inner.schedules.add(t)
    }

    /// Starts the dispatchers on the current tokio runtime.
    pub fn start(&self) {
        let stop = Stop::new(self.inner.stop.subscribe(), self.inner.clone());
        let mut tasks = lock(&self.inner.tasks);
        tasks.extend(self.inner.objects.start(stop.clone()));
        tasks.extend(self.inner.queues.start(&stop));
        tasks.extend(self.inner.schedules.start(&stop));
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
