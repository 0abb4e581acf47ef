//! Cron schedules: one runner per schedule sleeps until the next tick in
//! its time zone, persists the tick, and starts a run unless the previous
//! one is still going.

use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use nimbus_core::prometheus::proto::{self, MetricType::COUNTER};
use nimbus_core::{Cause, Event, Host, Trigger};
use redb::{Database, ReadableDatabase, TableDefinition};
use tokio::task::{JoinHandle, JoinSet};

use crate::dispatch::{self, Counters, Stop, lock};
use crate::metrics::{Family, Source};
use crate::spec::{ScheduleTrigger, TriggerError};

const LAST_TICKS: TableDefinition<&str, i64> = TableDefinition::new("schedule_last_tick");

/// A schedule as declared, parsed once when added.
#[derive(Debug, Clone)]
struct Schedule {
    spec: ScheduleTrigger,
    cron: croner::Cron,
    tz: Tz,
}

#[derive(Debug)]
pub(crate) struct Schedules {
    host: Host,
    entries: Mutex<Vec<Schedule>>,
    /// (tenant, function, runs|skipped)
    counts: Counters,
    /// Last ticks; without it missed ticks cannot be detected.
    state: Option<Database>,
}

impl Schedules {
    pub(crate) fn open(host: Host, state_path: Option<&Path>) -> Result<Self, TriggerError> {
        let state = match state_path {
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
        Ok(Self {
            host,
            entries: Mutex::default(),
            counts: Counters::default(),
            state,
        })
    }

    pub(crate) fn add(&self, t: ScheduleTrigger) -> Result<(), TriggerError> {
        let name = format!("schedule of {}/{}", t.tenant, t.function);
        let cron = croner::Cron::from_str(&t.cron)
            .map_err(|e| TriggerError::Invalid(format!("{name}: cron {:?}: {e}", t.cron)))?;
        let tz = match &t.timezone {
            None => chrono_tz::UTC,
            Some(z) => Tz::from_str(z)
                .map_err(|_| TriggerError::Invalid(format!("{name}: unknown time zone {z:?}")))?,
        };
        lock(&self.entries).push(Schedule { spec: t, cron, tz });
        Ok(())
    }

    pub(crate) fn start(self: &Arc<Self>, stop: &Stop) -> Vec<JoinHandle<()>> {
        dispatch::spawn_each(&self.entries, stop, |s, stop| self.clone().run(s, stop))
    }

    async fn run(self: Arc<Self>, s: Schedule, mut stop: Stop) {
        let key = tick_key(&s.spec);
        let mut runs = Runs {
            schedules: self.clone(),
            spec: s.spec.clone(),
            running: Arc::new(AtomicBool::new(false)),
            tasks: JoinSet::new(),
        };
        if s.spec.catch_up
            && let Some(last) = self.last_tick(&key)
            && let Ok(next) = s
                .cron
                .find_next_occurrence(&last.with_timezone(&s.tz), false)
            && next.with_timezone(&Utc) <= Utc::now()
        {
            tracing::info!(tenant = %s.spec.tenant, function = %s.spec.function, missed = %next, "running a tick missed while down");
            self.save_tick(&key, Utc::now());
            runs.start(next.with_timezone(&Utc));
        }
        loop {
            while runs.tasks.try_join_next().is_some() {}
            let now = Utc::now().with_timezone(&s.tz);
            let next = match s.cron.find_next_occurrence(&now, false) {
                Ok(n) => n.with_timezone(&Utc),
                Err(e) => {
                    tracing::error!(tenant = %s.spec.tenant, function = %s.spec.function, error = %e, "no next tick; schedule stops");
                    break;
                }
            };
            let wait = (next - Utc::now()).to_std().unwrap_or_default();
            if stop.sleep(wait).await {
                break;
            }
            self.save_tick(&key, next);
            runs.start(next);
        }
        while runs.tasks.join_next().await.is_some() {}
    }

    fn last_tick(&self, key: &str) -> Option<DateTime<Utc>> {
        let db = self.state.as_ref()?;
        let tx = db.begin_read().ok()?;
        let table = tx.open_table(LAST_TICKS).ok()?;
        let ms = table.get(key).ok()??.value();
        Utc.timestamp_millis_opt(ms).single()
    }

    fn save_tick(&self, key: &str, at: DateTime<Utc>) {
        let Some(db) = &self.state else { return };
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
}

/// The cron is part of the key: a schedule whose expression changed starts
/// afresh instead of catching up a tick of the old one.
fn tick_key(s: &ScheduleTrigger) -> String {
    format!("{}\u{0}{}\u{0}{}", s.tenant, s.function, s.cron)
}

/// One schedule's runs. `running` is cleared by the run itself, so a tick
/// right after a run ends is not skipped while its task awaits reaping.
struct Runs {
    schedules: Arc<Schedules>,
    spec: ScheduleTrigger,
    running: Arc<AtomicBool>,
    tasks: JoinSet<()>,
}

impl Runs {
    fn start(&mut self, tick: DateTime<Utc>) {
        let (s, counts) = (&self.spec, &self.schedules.counts);
        if self.running.swap(true, Ordering::AcqRel) {
            counts.add(&s.tenant, &s.function, "skipped");
            tracing::warn!(tenant = %s.tenant, function = %s.function, %tick, "tick skipped: the previous run is still going");
            return;
        }
        counts.add(&s.tenant, &s.function, "runs");
        let (schedules, s, running) = (
            self.schedules.clone(),
            self.spec.clone(),
            self.running.clone(),
        );
        self.tasks.spawn(async move {
            let invoked = dispatch::invoke(
                &schedules.host,
                &s.tenant,
                &s.function,
                tick_event(&s, tick),
                Cause::new(Trigger::Schedule),
            )
            .await;
            if let Err(e) = invoked {
                tracing::warn!(tenant = %s.tenant, function = %s.function, %tick, error = %e, "scheduled run failed");
            }
            running.store(false, Ordering::Release);
        });
    }
}

fn tick_event(s: &ScheduleTrigger, tick: DateTime<Utc>) -> Event {
    let time = dispatch::rfc3339(tick);
    let data = serde_json::json!({
        "scheduled_time": time,
        "cron": s.cron,
        "timezone": s.timezone.as_deref().unwrap_or("UTC"),
    });
    let mut event = Event::new(
        "nimbus.schedule.tick",
        format!("/schedules/{}/{}", s.tenant, s.function),
        serde_json::to_vec(&data).unwrap_or_default(),
    )
    .content_type("application/json");
    event.time = Some(time);
    event
}

const LABELS: &[&str] = &["tenant", "function"];

pub(crate) const FAMILIES: &[Family] = &[
    Family::new(
        COUNTER,
        "nimbus_schedule_runs_total",
        "Scheduled runs started.",
        LABELS,
    ),
    Family::new(
        COUNTER,
        "nimbus_schedule_skipped_total",
        "Ticks skipped because the previous run was still going.",
        LABELS,
    ),
];

impl Source for Schedules {
    fn samples(&self) -> Vec<Vec<proto::Metric>> {
        let mut series: Vec<Vec<proto::Metric>> = FAMILIES.iter().map(|_| Vec::new()).collect();
        let mut schedules: Vec<(String, String)> = lock(&self.entries)
            .iter()
            .map(|s| (s.spec.tenant.clone(), s.spec.function.clone()))
            .collect();
        schedules.sort();
        schedules.dedup();
        for (tenant, function) in schedules {
            let l = [("tenant", tenant.as_str()), ("function", function.as_str())];
            for (i, what) in ["runs", "skipped"].into_iter().enumerate() {
                let n = self.counts.get(&tenant, &function, what);
                series[i].push(FAMILIES[i].sample(&l, n as f64));
            }
        }
        series
    }
}
