//! What every trigger shares: invoking through the host, the stop signal
//! and the pacing of polling loops, store calls off the async threads, and
//! the counters behind the trigger metrics. Depends on no other module of
//! the crate, so each trigger can use it without knowing the others.

use std::any::Any;
use std::fmt::Display;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use dashmap::DashMap;
use nimbus_core::{Cause, Event, Host};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A poisoned lock only means another task panicked while holding it; the
/// trigger lists it guards stay consistent, so keep serving them.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Starts one runner per trigger added so far, each with its own view of
/// the stop signal.
pub(crate) fn spawn_each<T, F>(
    triggers: &Mutex<Vec<T>>,
    stop: &Stop,
    run: impl Fn(T, Stop) -> F,
) -> Vec<JoinHandle<()>>
where
    T: Clone,
    F: Future<Output = ()> + Send + 'static,
{
    lock(triggers)
        .iter()
        .map(|t| tokio::spawn(run(t.clone(), stop.clone())))
        .collect()
}

/// Invokes `tenant/function` as a trigger does: looked up at each delivery,
/// so a redeploy takes effect on the next event and a missing function is
/// an ordinary failed delivery.
pub(crate) async fn invoke(
    host: &Host,
    tenant: &str,
    function: &str,
    event: Event,
    cause: Cause,
) -> Result<(), nimbus_core::Error> {
    host.function(tenant, function)?
        .invoke_with(event, cause)
        .await
        .map(|_| ())
}

/// Runs a store call on the blocking pool (the stores sync the disk); a
/// panic in it is reported like any other error.
pub(crate) async fn blocking<R, E>(
    f: impl FnOnce() -> Result<R, E> + Send + 'static,
) -> Result<R, String>
where
    R: Send + 'static,
    E: Display + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// What a polling loop does after one round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// There may be more work: go again at once.
    Now,
    /// Nothing to do for a while.
    After(Duration),
    /// The loop is over.
    Stop,
}

/// The triggers' stop signal as one runner sees it.
///
/// It also holds the whole trigger set: started triggers keep running (and
/// reporting metrics) until a shutdown, even once every `Triggers` handle
/// is dropped.
#[derive(Debug, Clone)]
pub(crate) struct Stop {
    rx: watch::Receiver<bool>,
    _owner: Arc<dyn Any + Send + Sync>,
}

impl Stop {
    pub(crate) fn new(rx: watch::Receiver<bool>, owner: Arc<dyn Any + Send + Sync>) -> Self {
        Self { rx, _owner: owner }
    }

    pub(crate) fn requested(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once a shutdown is signalled.
    pub(crate) async fn changed(&mut self) {
        let _ = self.rx.changed().await;
    }

    /// Sleeps, or returns `true` early if the triggers are stopping.
    pub(crate) async fn sleep(&mut self, d: Duration) -> bool {
        if self.requested() {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => self.requested(),
            _ = self.rx.changed() => true,
        }
    }

    /// Waits as a loop's round asked; `false` once the loop should end.
    pub(crate) async fn pace(&mut self, next: Next) -> bool {
        match next {
            Next::Now => !self.requested(),
            Next::After(d) => !self.sleep(d).await,
            Next::Stop => false,
        }
    }
}

/// Event counts per (tenant, name, label), read at scrape time.
#[derive(Debug, Default)]
pub(crate) struct Counters(DashMap<(String, String, &'static str), AtomicU64>);

impl Counters {
    pub(crate) fn add(&self, a: &str, b: &str, what: &'static str) {
        self.0
            .entry((a.to_string(), b.to_string(), what))
            .or_default()
            .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn get(&self, a: &str, b: &str, what: &'static str) -> u64 {
        self.0
            .get(&(a.to_string(), b.to_string(), what))
            .map_or(0, |n| n.load(Ordering::Relaxed))
    }

    /// Every count, sorted so that scrapes list series in a stable order.
    pub(crate) fn sorted(&self) -> Vec<((String, String, &'static str), u64)> {
        let mut all: Vec<_> = self
            .0
            .iter()
            .map(|e| (e.key().clone(), e.value().load(Ordering::Relaxed)))
            .collect();
        all.sort();
        all
    }
}

/// Event times as CloudEvents carry them: RFC 3339, UTC, milliseconds.
pub(crate) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub(crate) fn rfc3339_ms(ms: u64) -> String {
    rfc3339(
        Utc.timestamp_millis_opt(ms as i64)
            .single()
            .unwrap_or_default(),
    )
}
