//! Cron schedules: one runner per schedule sleeps until the next tick in
//! its time zone, claims the tick (see [`TickClaims`]: with several nodes,
//! one of them wins each tick), persists it, and starts a run unless the
//! previous one is still going.

use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use nimbus_core::prometheus::proto::{self, MetricType::COUNTER};
use nimbus_core::{Cause, Event, Host, Trigger};
use redb::{Database, ReadableDatabase, TableDefinition};
use tokio::task::{JoinHandle, JoinSet};

use crate::claims::{Claim, TickClaims};
use crate::dispatch::{self, Counters, Stop, lock};
use crate::metrics::{Family, Source};
use crate::spec::{ScheduleTrigger, TriggerError};

const LAST_TICKS: TableDefinition<&str, i64> = TableDefinition::new("schedule_last_tick");

/// One attempt at a claim waits until the tick's window closes, within
/// these bounds.
const CLAIM_ATTEMPT: Duration = Duration::from_secs(5);
const CLAIM_ATTEMPT_MIN: Duration = Duration::from_millis(500);
/// Backoff between claim attempts that could not be decided.
const CLAIM_RETRY_FIRST: Duration = Duration::from_millis(50);
const CLAIM_RETRY_MAX: Duration = Duration::from_secs(2);
/// A tick due less than this long ago is still run after the previous one
/// was handled late (a claim retried up to the next tick must not make the
/// runner miss that tick); a runner further behind (a stalled process)
/// goes on from now instead of replaying every tick it slept through.
const LATE: chrono::TimeDelta = chrono::TimeDelta::seconds(1);

/// A schedule as declared, parsed once when added.
#[derive(Debug, Clone)]
struct Schedule {
    spec: ScheduleTrigger,
    cron: croner::Cron,
    tz: Tz,
}

impl Schedule {
    /// The tick after `t`.
    fn after(&self, t: DateTime<Utc>) -> Result<DateTime<Utc>, croner::errors::CronError> {
        self.cron
            .find_next_occurrence(&t.with_timezone(&self.tz), false)
            .map(|n| n.with_timezone(&Utc))
    }
}

#[derive(Debug)]
pub(crate) struct Schedules {
    host: Host,
    entries: Mutex<Vec<Schedule>>,
    /// (tenant, function, runs|skipped|claimed_elsewhere|unclaimed)
    counts: Counters,
    /// Last ticks; without it missed ticks cannot be detected.
    state: Option<Database>,
    claims: Arc<dyn TickClaims>,
}

impl Schedules {
    pub(crate) fn open(
        host: Host,
        state_path: Option<&Path>,
        claims: Arc<dyn TickClaims>,
    ) -> Result<Self, TriggerError> {
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
            claims,
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
        let mut handled = Utc::now();
        // The latest missed tick, not the first: every node that was down
        // over it claims the same tick whatever its own last one, so the
        // cluster catches up once; and it is the youngest, the likeliest
        // to be within the claims' retention.
        if s.spec.catch_up
            && let Some(last) = self.last_tick(&key)
            && let Ok(missed) = s
                .cron
                .find_previous_occurrence(&handled.with_timezone(&s.tz), true)
            && missed.with_timezone(&Utc) > last
        {
            let missed = missed.with_timezone(&Utc);
            tracing::info!(tenant = %s.spec.tenant, function = %s.spec.function, %missed, "claiming a tick missed while down");
            self.tick(&s, &key, &mut runs, missed, &mut stop).await;
        }
        loop {
            while runs.tasks.try_join_next().is_some() {}
            let now = Utc::now();
            let from = if now - handled > LATE { now } else { handled };
            let next = match s.after(from) {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(tenant = %s.spec.tenant, function = %s.spec.function, error = %e, "no next tick; schedule stops");
                    break;
                }
            };
            let wait = (next - Utc::now()).to_std().unwrap_or_default();
            if stop.sleep(wait).await {
                break;
            }
            self.tick(&s, &key, &mut runs, next, &mut stop).await;
            handled = next;
        }
        while runs.tasks.join_next().await.is_some() {}
    }

    /// Handles one due tick. A node whose previous run is still going does
    /// not claim it, so that another node, idle, can run it.
    async fn tick(
        &self,
        s: &Schedule,
        key: &str,
        runs: &mut Runs,
        tick: DateTime<Utc>,
        stop: &mut Stop,
    ) {
        let (tenant, function) = (&s.spec.tenant, &s.spec.function);
        if runs.busy() {
            self.save_tick(key, tick);
            self.counts.add(tenant, function, "skipped");
            tracing::warn!(%tenant, %function, %tick, "tick skipped: the previous run is still going");
            return;
        }
        let claim = claim(&*self.claims, s, tick, stop).await;
        // Persisted whoever won: the last tick says which ticks this node
        // has dealt with, so that only ticks missed while it was down are
        // caught up.
        self.save_tick(key, tick);
        match claim {
            Ok(Claim::Won) => runs.start(tick),
            Ok(Claim::Lost { holder }) => {
                self.counts.add(tenant, function, "claimed_elsewhere");
                tracing::debug!(%tenant, %function, %tick, %holder, "tick claimed by another node");
            }
            Err(e) => {
                self.counts.add(tenant, function, "unclaimed");
                tracing::warn!(%tenant, %function, %tick, error = %e, "tick not run: its claim could not be decided before the next tick");
            }
        }
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

/// Claims `tick`, retrying an undecided claim until the tick's window
/// closes (see [`TickClaims`]). The first attempt is made even when the
/// window has already closed (the runner was late): a node on time has
/// claimed the tick if it ran, so only retries are bounded.
async fn claim(
    claims: &dyn TickClaims,
    s: &Schedule,
    tick: DateTime<Utc>,
    stop: &mut Stop,
) -> Result<Claim, String> {
    let retention = claims
        .retention()
        .map(|r| chrono::TimeDelta::from_std(r).unwrap_or(chrono::TimeDelta::MAX));
    let mut closes = s.after(tick).unwrap_or(tick);
    if let Some(r) = retention {
        if Utc::now() - tick >= r {
            return Err("the tick is older than its claims are kept".into());
        }
        closes = closes.min(tick.checked_add_signed(r).unwrap_or(closes));
    }
    let mut backoff = CLAIM_RETRY_FIRST;
    loop {
        let left = (closes - Utc::now()).to_std().unwrap_or_default();
        let limit = left.clamp(CLAIM_ATTEMPT_MIN, CLAIM_ATTEMPT);
        let attempt = claims.claim(&s.spec.tenant, &s.spec.function, tick.timestamp());
        let error = match tokio::time::timeout(limit, attempt).await {
            Ok(Ok(claim)) => return Ok(claim),
            Ok(Err(e)) => e,
            Err(_) => format!("no answer within {limit:?}"),
        };
        let left = (closes - Utc::now()).to_std().unwrap_or_default();
        if left.is_zero() || stop.sleep(backoff.min(left)).await {
            return Err(error);
        }
        backoff = (backoff * 2).min(CLAIM_RETRY_MAX);
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
    fn busy(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    fn start(&mut self, tick: DateTime<Utc>) {
        let s = &self.spec;
        self.running.store(true, Ordering::Release);
        self.schedules.counts.add(&s.tenant, &s.function, "runs");
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
    Family::new(
        COUNTER,
        "nimbus_schedule_claimed_elsewhere_total",
        "Ticks another node claimed first, and ran.",
        LABELS,
    ),
    Family::new(
        COUNTER,
        "nimbus_schedule_unclaimed_total",
        "Ticks not run because their claim could not be decided before the tick's window closed.",
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
            for (i, what) in ["runs", "skipped", "claimed_elsewhere", "unclaimed"]
                .into_iter()
                .enumerate()
            {
                let n = self.counts.get(&tenant, &function, what);
                series[i].push(FAMILIES[i].sample(&l, n as f64));
            }
        }
        series
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use super::*;
    use crate::claims::ClaimFuture;

    /// Answers `Err` to its first `failures` claims, then `answer`;
    /// counts the calls.
    #[derive(Debug)]
    struct Flaky {
        failures: u32,
        answer: Claim,
        calls: AtomicU32,
        retention: Option<Duration>,
    }

    impl Flaky {
        fn new(failures: u32, answer: Claim) -> Self {
            Self {
                failures,
                answer,
                calls: AtomicU32::new(0),
                retention: None,
            }
        }
    }

    impl TickClaims for Flaky {
        fn claim<'a>(&'a self, _: &'a str, _: &'a str, _: i64) -> ClaimFuture<'a> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            let answer = if n < self.failures {
                Err("NATS is down".to_string())
            } else {
                Ok(self.answer.clone())
            };
            Box::pin(std::future::ready(answer))
        }

        fn retention(&self) -> Option<Duration> {
            self.retention
        }
    }

    fn every_second() -> Schedule {
        Schedule {
            spec: ScheduleTrigger {
                tenant: "t".into(),
                function: "f".into(),
                cron: "* * * * * *".into(),
                timezone: None,
                catch_up: true,
            },
            cron: croner::Cron::from_str("* * * * * *").unwrap(),
            tz: chrono_tz::UTC,
        }
    }

    fn stop() -> (tokio::sync::watch::Sender<bool>, Stop) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        (tx, Stop::new(rx, Arc::new(())))
    }

    /// A tick due now, on a whole second as cron ticks are.
    fn due() -> DateTime<Utc> {
        Utc.timestamp_opt(Utc::now().timestamp(), 0).unwrap()
    }

    fn yearly() -> Schedule {
        Schedule {
            cron: croner::Cron::from_str("0 0 0 1 1 *").unwrap(),
            ..every_second()
        }
    }

    #[tokio::test]
    async fn an_undecided_claim_is_retried_within_the_tick_window() {
        let (_tx, mut stop) = stop();
        let claims = Flaky::new(3, Claim::Won);
        let got = claim(&claims, &yearly(), due(), &mut stop).await;
        assert_eq!(got, Ok(Claim::Won));
        assert_eq!(claims.calls.load(Ordering::SeqCst), 4);

        let lost = Claim::Lost {
            holder: "node-b".into(),
        };
        let claims = Flaky::new(1, lost.clone());
        let got = claim(&claims, &yearly(), due(), &mut stop).await;
        assert_eq!(got, Ok(lost));
    }

    #[tokio::test]
    async fn a_claim_still_undecided_when_the_next_tick_is_due_is_given_up() {
        let (_tx, mut stop) = stop();
        let claims = Flaky::new(u32::MAX, Claim::Won);
        let tick = due();
        let got = claim(&claims, &every_second(), tick, &mut stop).await;
        assert_eq!(got, Err("NATS is down".to_string()));
        let now = Utc::now();
        assert!(now >= tick + chrono::TimeDelta::seconds(1), "gave up early");
        assert!(
            now < tick + chrono::TimeDelta::seconds(3),
            "retried past the window: {now}"
        );
        assert!(claims.calls.load(Ordering::SeqCst) >= 2);
    }

    #[tokio::test]
    async fn a_tick_older_than_the_claims_retention_is_never_claimed() {
        let (_tx, mut stop) = stop();
        let mut claims = Flaky::new(0, Claim::Won);
        claims.retention = Some(Duration::from_secs(60));
        let old = due() - chrono::TimeDelta::seconds(61);
        let got = claim(&claims, &every_second(), old, &mut stop).await;
        assert!(got.is_err(), "{got:?}");
        assert_eq!(claims.calls.load(Ordering::SeqCst), 0);
        // A late tick within the retention still gets its one attempt.
        let late = due() - chrono::TimeDelta::seconds(5);
        assert_eq!(
            claim(&claims, &every_second(), late, &mut stop).await,
            Ok(Claim::Won)
        );
    }

    #[tokio::test]
    async fn stopping_ends_the_retries() {
        let (tx, mut stop) = stop();
        let claims = Flaky::new(u32::MAX, Claim::Won);
        let tick = due();
        let stopping = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let _ = tx.send(true);
        });
        let started = std::time::Instant::now();
        assert!(claim(&claims, &yearly(), tick, &mut stop).await.is_err());
        assert!(started.elapsed() < Duration::from_secs(2));
        stopping.await.unwrap();
    }
}
