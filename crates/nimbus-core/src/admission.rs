//! Fair shares of the host-wide instance pool.
//!
//! While the pool has room, any tenant takes a slot. When it is full:
//! - a tenant holding its share or more — the pool divided equally among
//!   the tenants that hold or wait for slots — is refused at once;
//! - a tenant under its share waits, up to [`PoolConfig::admission_wait`]
//!   (and never past its own timeout), and each freed slot goes to the
//!   waiting tenant holding the fewest, oldest request first.
//!
//! Running invocations are never ended to make room: a tenant that filled
//! an idle pool gives slots back as its invocations end, and they go to the
//! others until the shares are even.
//!
//! [`PoolConfig::admission_wait`]: crate::PoolConfig::admission_wait

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;

#[derive(Debug)]
pub(crate) struct PoolAdmission {
    max: usize,
    wait: Duration,
    state: Mutex<State>,
    /// `waiting.len()`, published for the metrics scrape.
    waiting_gauge: Arc<AtomicI64>,
}

#[derive(Debug, Default)]
struct State {
    free: usize,
    held: HashMap<Arc<str>, usize>,
    /// By arrival: the oldest waiter of the neediest tenant is served first.
    waiting: BTreeMap<u64, Waiter>,
    arrivals: u64,
}

#[derive(Debug)]
struct Waiter {
    tenant: Arc<str>,
    grant: oneshot::Sender<PoolSlot>,
}

/// One instance slot, given back when dropped.
#[derive(Debug)]
pub(crate) struct PoolSlot {
    /// None once handed back without counting (a grant nobody took).
    pool: Option<Arc<PoolAdmission>>,
    tenant: Arc<str>,
}

impl Drop for PoolSlot {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            pool.release(&self.tenant);
        }
    }
}

impl State {
    /// Tenants holding or waiting for slots, counting `tenant` itself.
    fn active(&self, tenant: &str) -> usize {
        let mut names: Vec<&str> = self
            .held
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(t, _)| &**t)
            .chain(self.waiting.values().map(|w| &*w.tenant))
            .chain(std::iter::once(tenant))
            .collect();
        names.sort_unstable();
        names.dedup();
        names.len()
    }

    fn held(&self, tenant: &str) -> usize {
        self.held.get(tenant).copied().unwrap_or(0)
    }

    fn give_back(&mut self, tenant: &str) {
        if let Some(n) = self.held.get_mut(tenant) {
            *n -= 1;
            if *n == 0 {
                self.held.remove(tenant);
            }
        }
    }
}

impl PoolAdmission {
    pub fn new(max: usize, wait: Duration, waiting_gauge: Arc<AtomicI64>) -> Arc<Self> {
        Arc::new(Self {
            max,
            wait,
            waiting_gauge,
            state: Mutex::new(State {
                free: max,
                ..State::default()
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for `tenant`, or why not. `timeout` is the invocation's own:
    /// it does not wait longer than that for a slot.
    pub async fn acquire(
        self: &Arc<Self>,
        tenant: &Arc<str>,
        timeout: Duration,
    ) -> Result<PoolSlot, String> {
        let (seq, granted) = {
            let mut state = self.lock();
            // Freed slots are handed to waiters, so a free one means
            // nobody waits.
            if state.free > 0 {
                state.free -= 1;
                *state.held.entry(tenant.clone()).or_default() += 1;
                return Ok(self.slot(tenant));
            }
            let held = state.held(tenant);
            let share = self.max / state.active(tenant);
            if held >= share.max(1) || self.wait.is_zero() {
                return Err(self.refusal(tenant, held, share, false));
            }
            let (tx, rx) = oneshot::channel();
            let seq = state.arrivals;
            state.arrivals += 1;
            state.waiting.insert(
                seq,
                Waiter {
                    tenant: tenant.clone(),
                    grant: tx,
                },
            );
            self.waiting_gauge.fetch_add(1, Relaxed);
            (seq, rx)
        };
        let mut granted = granted;
        if let Ok(Ok(slot)) = tokio::time::timeout(self.wait.min(timeout), &mut granted).await {
            return Ok(slot);
        }
        let mut state = self.lock();
        if state.waiting.remove(&seq).is_none() {
            // release() took it off the list, and the gauge with it.
            // Granted as the wait ran out: the slot is in the channel.
            drop(state);
            return granted
                .try_recv()
                .map_err(|_| "the instance pool lost a granted slot".to_string());
        }
        self.waiting_gauge.fetch_sub(1, Relaxed);
        let held = state.held(tenant);
        let share = self.max / state.active(tenant);
        Err(self.refusal(tenant, held, share, true))
    }

    fn slot(self: &Arc<Self>, tenant: &Arc<str>) -> PoolSlot {
        PoolSlot {
            pool: Some(self.clone()),
            tenant: tenant.clone(),
        }
    }

    fn refusal(&self, tenant: &str, held: usize, share: usize, waited: bool) -> String {
        let mut reason = format!(
            "the host is at its capacity of {} concurrent instances",
            self.max
        );
        if waited {
            reason += &format!(
                "; no slot was freed for tenant `{tenant}` within {} ms",
                self.wait.as_millis()
            );
        } else if share < self.max {
            reason += &format!(
                ", and tenant `{tenant}` holds {held}, its fair share while other tenants wait"
            );
        }
        reason
    }

    /// Gives `tenant`'s slot back: to the oldest waiter of the tenant
    /// holding the fewest, or to the free count.
    fn release(self: &Arc<Self>, tenant: &Arc<str>) {
        let mut state = self.lock();
        state.give_back(tenant);
        loop {
            let next = state
                .waiting
                .iter()
                .min_by_key(|(seq, w)| (state.held(&w.tenant), **seq))
                .map(|(seq, _)| *seq);
            let Some(w) = next.and_then(|seq| state.waiting.remove(&seq)) else {
                state.free += 1;
                return;
            };
            self.waiting_gauge.fetch_sub(1, Relaxed);
            *state.held.entry(w.tenant.clone()).or_default() += 1;
            let slot = self.slot(&w.tenant);
            match w.grant.send(slot) {
                Ok(()) => return,
                Err(mut slot) => {
                    // The waiter went away (its caller stopped waiting):
                    // the slot is not its after all, and dropping it must
                    // not release it a second time.
                    slot.pool = None;
                    state.give_back(&w.tenant);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Arc<str> {
        s.into()
    }

    async fn until_waiting(pool: &PoolAdmission, n: usize) {
        for _ in 0..100_000 {
            if pool.lock().waiting.len() >= n {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("{n} waiters never queued");
    }

    #[tokio::test]
    async fn a_full_pool_refuses_the_tenant_at_its_share_and_serves_the_one_below_it() {
        let pool = PoolAdmission::new(4, Duration::from_secs(5), Arc::default());
        let (a, b) = (name("a"), name("b"));
        let long = Duration::from_secs(5);
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(pool.acquire(&a, long).await.expect("room"));
        }
        // Alone, `a` holds the whole pool: refused at once.
        let err = pool.acquire(&a, long).await.unwrap_err();
        assert!(err.contains("capacity of 4"), "{err}");

        // `b` waits; while it does, `a`'s share is 2 and it holds 4.
        let waiting = tokio::spawn({
            let (pool, b) = (pool.clone(), b.clone());
            async move { pool.acquire(&b, long).await }
        });
        until_waiting(&pool, 1).await;
        assert_eq!(pool.waiting_gauge.load(Relaxed), 1);
        let err = pool.acquire(&a, long).await.unwrap_err();
        assert!(err.contains("holds 4, its fair share"), "{err}");

        // The slot `a` frees goes to `b`.
        held.pop();
        let slot = waiting.await.unwrap().expect("granted");
        assert_eq!(&*slot.tenant, "b");
        assert_eq!(pool.waiting_gauge.load(Relaxed), 0);
        assert_eq!(pool.lock().held(&a), 3);
        drop(slot);
        drop(held);
        let state = pool.lock();
        assert_eq!(state.free, 4);
        assert!(state.held.is_empty());
    }

    #[tokio::test]
    async fn a_freed_slot_goes_to_the_waiting_tenant_holding_fewest() {
        let pool = PoolAdmission::new(4, Duration::from_secs(5), Arc::default());
        let (a, b, c) = (name("a"), name("b"), name("c"));
        let long = Duration::from_secs(5);
        let a1 = pool.acquire(&a, long).await.unwrap();
        let a2 = pool.acquire(&a, long).await.unwrap();
        let _a3 = pool.acquire(&a, long).await.unwrap();
        let _b1 = pool.acquire(&b, long).await.unwrap();
        // `b` (holding 1, under its share of 2) queues before `c` (holding 0).
        let mut queued = Vec::new();
        for t in [&b, &c] {
            let (p, t) = (pool.clone(), t.clone());
            queued.push(tokio::spawn(async move { p.acquire(&t, long).await }));
            let n = queued.len();
            until_waiting(&pool, n).await;
        }
        drop(a1);
        let c_slot = queued.pop().unwrap().await.unwrap().expect("c first");
        assert_eq!(&*c_slot.tenant, "c");
        drop(a2);
        let b_slot = queued.pop().unwrap().await.unwrap().expect("then b");
        assert_eq!(&*b_slot.tenant, "b");
    }

    #[tokio::test]
    async fn a_waiter_that_times_out_is_refused_and_leaves_no_trace() {
        let pool = PoolAdmission::new(2, Duration::from_millis(20), Arc::default());
        let (a, b) = (name("a"), name("b"));
        let _held = [
            pool.acquire(&a, Duration::MAX).await.unwrap(),
            pool.acquire(&a, Duration::MAX).await.unwrap(),
        ];
        let err = pool.acquire(&b, Duration::MAX).await.unwrap_err();
        assert!(
            err.contains("no slot was freed for tenant `b` within 20 ms"),
            "{err}"
        );
        let state = pool.lock();
        assert!(state.waiting.is_empty());
        assert_eq!(pool.waiting_gauge.load(Relaxed), 0);
        assert_eq!(state.held(&b), 0);
    }
}
