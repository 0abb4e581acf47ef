//! Fair CPU between tenants.
//!
//! A guest runs only while its invocation holds a run token, and there is
//! one token more than the threads that run guests
//! ([`HostBuilder::guest_threads`], default: the machine's cores), which are
//! threads of their own, apart from the embedder's. An invocation takes a
//! token for one slice — [`SLICE`] of wall time, checked at its fuel
//! yields, or one fuel-yield interval when others are waiting — or until
//! its next host call that waits, and gives it back after, charging the
//! CPU time it took on its thread (`CLOCK_THREAD_CPUTIME_ID`:
//! instantiation, page faults and host-call work count, not only fuel) to
//! its tenant's virtual time, divided by the tenant's `cpu_weight`. A
//! released token goes to the waiting tenant with the least virtual time; a
//! tenant alone takes every token. So tenants competing for the CPU get it
//! in proportion to their weights however many invocations each runs at
//! once, and the embedder's threads are never inside a guest when a
//! request arrives.
//!
//! Within a tenant, the token goes to its oldest invocation: run to
//! completion rather than round robin, so a burst does not leave every
//! invocation half done and holding an instance (and a pool slot) longer.
//!
//! A tenant that was idle starts again at the current virtual time, not its
//! old one: idling banks no credit.
//!
//! [`HostBuilder::guest_threads`]: crate::HostBuilder::guest_threads

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::AtomicU8;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

/// How long an invocation may run on its token while others wait for one,
/// checked at its fuel yields. Short enough that a waiting tenant's
/// request is not held up for long behind other tenants' guests.
const SLICE: Duration = Duration::from_micros(200);

/// A poll that ran this long on a guest thread gives the core up to the
/// kernel afterwards, so the embedder's threads (which share the cores)
/// get to run between long guest polls, not only at the end of the
/// kernel's own time slice.
const YIELD_CORE_AFTER: Duration = Duration::from_micros(50);

thread_local! {
    /// Whether this thread is one of the guest threads: only they give the
    /// core up after a long poll ([`YIELD_CORE_AFTER`]). On an embedder's
    /// thread the poll is the embedder's own work, and a `sched_yield` per
    /// invocation there was a context switch for nothing.
    static GUEST_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Set during a poll when the invocation had to wait for a token or
    /// gave its token up at the end of a slice: the moment to move it off
    /// the embedder's threads (see [`start`]).
    static CONTENDED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

#[derive(Debug)]
pub(crate) struct CpuScheduler {
    state: Mutex<State>,
    arrivals: std::sync::atomic::AtomicU64,
    /// Invocations queued for a token: read without the lock, to tell
    /// whether a running one should give its token up.
    waiting: AtomicUsize,
}

#[derive(Debug)]
struct State {
    free: usize,
    /// Virtual time of the last grant: where a tenant that was idle resumes.
    now: u128,
    tenants: HashMap<Arc<str>, Queue>,
}

#[derive(Debug, Default)]
struct Queue {
    /// CPU nanoseconds charged, divided by the weight.
    vtime: u128,
    /// By the invocation's arrival order: the oldest runs first.
    waiting: BTreeMap<u64, Arc<Waiter>>,
}

#[derive(Debug)]
struct Waiter {
    slot: Mutex<Slot>,
}

#[derive(Debug)]
enum Slot {
    Waiting(Waker),
    Granted,
    Cancelled,
}

impl Waiter {
    fn lock(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl CpuScheduler {
    pub(crate) fn new(tokens: usize) -> Self {
        Self {
            state: Mutex::new(State {
                // One more than the threads: a token handed to a woken
                // invocation is unused until tokio polls it, and meanwhile
                // a thread should not sit idle for want of one.
                free: tokens.max(1) + 1,
                now: 0,
                tenants: HashMap::new(),
            }),
            arrivals: std::sync::atomic::AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Ready once this invocation holds a token; `ticket` remembers its
    /// place in the queue between polls.
    fn poll_acquire(
        &self,
        tenant: &Arc<str>,
        seq: u64,
        ticket: &mut Option<Arc<Waiter>>,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        if let Some(w) = ticket {
            let mut slot = w.lock();
            match &mut *slot {
                Slot::Granted => {
                    drop(slot);
                    *ticket = None;
                    return Poll::Ready(());
                }
                Slot::Waiting(waker) => {
                    waker.clone_from(cx.waker());
                    return Poll::Pending;
                }
                Slot::Cancelled => unreachable!("a ticket is cancelled only when dropped"),
            }
        }
        let mut state = self.lock();
        // Tokens are handed to waiters as they are released, so a free
        // token means nobody is waiting.
        if state.free > 0 {
            state.free -= 1;
            return Poll::Ready(());
        }
        self.enqueue_locked(&mut state, tenant, seq, ticket, cx.waker());
        CONTENDED.set(true);
        Poll::Pending
    }

    /// Queues an invocation that is ready to run again (it yielded), so
    /// the token it is about to give back can go to whoever is owed it —
    /// possibly itself.
    fn enqueue(
        &self,
        tenant: &Arc<str>,
        seq: u64,
        ticket: &mut Option<Arc<Waiter>>,
        waker: &Waker,
    ) {
        self.enqueue_locked(&mut self.lock(), tenant, seq, ticket, waker);
        CONTENDED.set(true);
    }

    fn has_free_token(&self) -> bool {
        self.lock().free > 0
    }

    fn enqueue_locked(
        &self,
        state: &mut State,
        tenant: &Arc<str>,
        seq: u64,
        ticket: &mut Option<Arc<Waiter>>,
        waker: &Waker,
    ) {
        let now = state.now;
        let queue = state.tenants.entry(tenant.clone()).or_default();
        if queue.waiting.is_empty() {
            queue.vtime = queue.vtime.max(now);
        }
        let w = Arc::new(Waiter {
            slot: Mutex::new(Slot::Waiting(waker.clone())),
        });
        queue.waiting.insert(seq, w.clone());
        self.waiting.fetch_add(1, Relaxed);
        *ticket = Some(w);
    }

    /// Gives a token back, charging `cpu / weight` to `tenant`, and hands it
    /// to the waiting tenant with the least virtual time.
    fn release(&self, tenant: &Arc<str>, weight: u32, cpu: Duration) {
        let mut state = self.lock();
        let charge = cpu.as_nanos() / u128::from(weight.max(1));
        let now = state.now;
        let q = state.tenants.entry(tenant.clone()).or_default();
        q.vtime = q.vtime.max(now) + charge;
        let released = q.vtime;
        loop {
            let next = state
                .tenants
                .values_mut()
                .filter(|q| !q.waiting.is_empty())
                .min_by_key(|q| q.vtime)
                .and_then(|q| q.waiting.pop_first().map(|(_, w)| (w, q.vtime)));
            let Some((w, vtime)) = next else {
                // Uncontended: the clock follows whoever runs, so a tenant
                // that used idle cores is not made to wait, when another
                // arrives, for the newcomer to catch up with all it ran.
                state.now = state.now.max(released);
                state.free += 1;
                return;
            };
            self.waiting.fetch_sub(1, Relaxed);
            let mut slot = w.lock();
            if let Slot::Waiting(waker) = std::mem::replace(&mut *slot, Slot::Granted) {
                drop(slot);
                state.now = state.now.max(vtime);
                waker.wake();
                return;
            }
            // Cancelled while queued: try the next.
            *slot = Slot::Cancelled;
        }
    }

    /// A ticket whose invocation went away (its deadline): out of the
    /// queue, or its token back if it had been granted one.
    fn cancel(&self, tenant: &Arc<str>, seq: u64, weight: u32, ticket: Arc<Waiter>) {
        let granted = {
            let mut slot = ticket.lock();
            let granted = matches!(*slot, Slot::Granted);
            *slot = Slot::Cancelled;
            granted
        };
        if granted {
            self.release(tenant, weight, Duration::ZERO);
        } else if let Some(q) = self.lock().tenants.get_mut(tenant)
            && q.waiting.remove(&seq).is_some()
        {
            self.waiting.fetch_sub(1, Relaxed);
        }
    }
}

/// Runs an invocation task to its end, wherever it is best run. While a
/// token is free the guests are not competing, and the task starts on the
/// caller's runtime, as a plain `tokio::spawn`: no hand-off between
/// threads (each costs a wake-up and a context switch). The first time it
/// has to wait for a token, or gives its token up at the end of a slice,
/// the rest of it moves to the guest threads, so the embedder's threads
/// spend at most a slice in a guest whenever guests compete. When no token
/// is free it starts on the guest threads.
///
/// Moving is sound because every future re-registers its waker each time
/// it is polled: the guest task polls it at once, and the scheduler's
/// ticket, timers and I/O then wake the guest task.
pub(crate) async fn start<T: Send + 'static>(
    sched: &CpuScheduler,
    guests: &tokio::runtime::Handle,
    task: impl Future<Output = T> + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    if !sched.has_free_token() {
        return guests.spawn(task).await;
    }
    let guests = guests.clone();
    let mut task = Some(Box::pin(task));
    let mut moved: Option<tokio::task::JoinHandle<T>> = None;
    tokio::spawn(std::future::poll_fn(move |cx| {
        if let Some(rest) = &mut moved {
            return pin!(rest).poll(cx);
        }
        let Some(fut) = task.as_mut() else {
            unreachable!("polled after it ended")
        };
        CONTENDED.set(false);
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            return Poll::Ready(Ok(out));
        }
        if CONTENDED.replace(false)
            && let Some(fut) = task.take()
        {
            let mut rest = guests.spawn(fut);
            let polled = pin!(&mut rest).poll(cx);
            moved = Some(rest);
            return polled;
        }
        Poll::Pending
    }))
    .await?
}

/// Marks the calling thread as a guest thread (the guest runtime's
/// `on_thread_start`).
pub(crate) fn mark_guest_thread() {
    GUEST_THREAD.set(true);
}

/// The CPU time an invocation took on the threads that polled it.
#[derive(Debug, Default)]
pub(crate) struct CpuUse {
    pub total: Duration,
}

/// This thread's CPU clock. Per thread, not per process: the other
/// worker threads run other tenants' invocations.
pub(crate) fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// Tells, after a poll, whether the future woke itself during it (a fuel
/// yield, or a wake racing the poll): then it is ready to run again and
/// waits in the scheduler's queue, not tokio's. Wakes after the poll (I/O,
/// timers) go straight to the task.
struct Watch {
    task: Waker,
    state: AtomicU8,
}

const POLLING: u8 = 0;
const WOKEN_IN_POLL: u8 = 1;
const AFTER_POLL: u8 = 2;

impl Wake for Watch {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self
            .state
            .compare_exchange(POLLING, WOKEN_IN_POLL, AcqRel, Acquire)
            == Err(AFTER_POLL)
        {
            self.task.wake_by_ref();
        }
    }
}

/// Runs `fut` one slice at a time under `sched`, adding each slice's CPU
/// time to `cpu`. Only the scheduler decides who runs next: with as many
/// tokens as threads a token is nearly always free, so an invocation that
/// yielded queues for it again rather than being re-polled by tokio.
pub(crate) async fn run_fairly<F: Future>(
    sched: &CpuScheduler,
    tenant: &Arc<str>,
    weight: u32,
    fut: F,
    cpu: &mut CpuUse,
) -> F::Output {
    struct Ticket<'a> {
        sched: &'a CpuScheduler,
        tenant: &'a Arc<str>,
        seq: u64,
        weight: u32,
        waiting: Option<Arc<Waiter>>,
    }
    impl Drop for Ticket<'_> {
        fn drop(&mut self) {
            if let Some(w) = self.waiting.take() {
                self.sched.cancel(self.tenant, self.seq, self.weight, w);
            }
        }
    }
    /// Holds the token for one poll; gives it back even if the poll panics.
    struct Token<'a> {
        sched: &'a CpuScheduler,
        tenant: &'a Arc<str>,
        weight: u32,
        start: Duration,
        cpu: &'a mut CpuUse,
    }
    impl Drop for Token<'_> {
        fn drop(&mut self) {
            let now = thread_cpu();
            let used = now.saturating_sub(self.start);
            self.cpu.total += used;
            self.sched.release(self.tenant, self.weight, used);
            if used > YIELD_CORE_AFTER && GUEST_THREAD.get() {
                std::thread::yield_now();
            }
        }
    }

    let mut fut = pin!(fut);
    let seq = sched.arrivals.fetch_add(1, Relaxed);
    let mut ticket = Ticket {
        sched,
        tenant,
        seq,
        weight,
        waiting: None,
    };
    std::future::poll_fn(|cx| {
        if sched
            .poll_acquire(tenant, seq, &mut ticket.waiting, cx)
            .is_pending()
        {
            return Poll::Pending;
        }
        let watch = Arc::new(Watch {
            task: cx.waker().clone(),
            state: AtomicU8::new(POLLING),
        });
        let waker = Waker::from(watch.clone());
        let token = Token {
            sched,
            tenant,
            weight,
            start: thread_cpu(),
            cpu: &mut *cpu,
        };
        let slice_start = std::time::Instant::now();
        loop {
            let polled = fut.as_mut().poll(&mut Context::from_waker(&waker));
            if polled.is_ready() {
                drop(token);
                return polled;
            }
            // Woken during the poll (a fuel yield): ready to go on. Within
            // its slice, and while nobody waits for a token, it does so at
            // once, without a round trip through tokio.
            if watch
                .state
                .compare_exchange(WOKEN_IN_POLL, POLLING, AcqRel, Acquire)
                .is_ok()
            {
                if slice_start.elapsed() < SLICE && sched.waiting.load(Relaxed) == 0 {
                    continue;
                }
                watch.state.store(AFTER_POLL, Release);
                sched.enqueue(tenant, seq, &mut ticket.waiting, cx.waker());
            } else if watch.state.swap(AFTER_POLL, AcqRel) == WOKEN_IN_POLL {
                sched.enqueue(tenant, seq, &mut ticket.waiting, cx.waker());
            }
            drop(token);
            return Poll::Pending;
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Relaxed);
        }
    }

    /// `new(1)` has two tokens; these tests reason about one.
    fn hold_the_spare_token(s: &CpuScheduler, cx: &mut Context<'_>) {
        let mut spare = None;
        assert!(s.poll_acquire(&"z".into(), 99, &mut spare, cx).is_ready());
    }

    #[test]
    fn a_released_token_goes_to_the_tenant_with_the_least_virtual_time() {
        let s = CpuScheduler::new(1);
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let wakes = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let (mut ta, mut ta2, mut tb) = (None, None, None);
        hold_the_spare_token(&s, &mut cx);
        assert!(s.poll_acquire(&a, 0, &mut ta, &mut cx).is_ready());
        // The one token is taken: a second of a's and one of b's wait.
        assert!(s.poll_acquire(&a, 1, &mut ta2, &mut cx).is_pending());
        assert!(s.poll_acquire(&b, 2, &mut tb, &mut cx).is_pending());
        // a used 1 ms: b (at 0) is next, though a queued first.
        s.release(&a, 1, Duration::from_millis(1));
        assert_eq!(wakes.0.load(Relaxed), 1);
        assert!(s.poll_acquire(&b, 2, &mut tb, &mut cx).is_ready());
        assert!(s.poll_acquire(&a, 1, &mut ta2, &mut cx).is_pending());
        // b used 3 ms: a (1 ms) is next.
        s.release(&b, 1, Duration::from_millis(3));
        assert!(s.poll_acquire(&a, 1, &mut ta2, &mut cx).is_ready());
        s.release(&a, 1, Duration::ZERO);
        assert_eq!(s.lock().free, 1);
    }

    #[test]
    fn cpu_used_while_uncontended_is_not_held_against_a_tenant() {
        let s = CpuScheduler::new(1);
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let waker = Waker::from(Arc::new(Count(AtomicUsize::new(0))));
        let mut cx = Context::from_waker(&waker);
        let (mut ta, mut tb) = (None, None);
        hold_the_spare_token(&s, &mut cx);
        // `a` alone runs 100 ms, nobody waiting.
        assert!(s.poll_acquire(&a, 0, &mut ta, &mut cx).is_ready());
        s.release(&a, 1, Duration::from_millis(100));
        // Then `b` arrives while `a` runs on.
        assert!(s.poll_acquire(&a, 0, &mut ta, &mut cx).is_ready());
        assert!(s.poll_acquire(&b, 1, &mut tb, &mut cx).is_pending());
        s.enqueue(&a, 0, &mut ta, &waker);
        s.release(&a, 1, Duration::from_millis(1));
        assert!(s.poll_acquire(&b, 1, &mut tb, &mut cx).is_ready());
        // `b` used 2 ms against `a`'s 1 since: `a` is next, not `b` again
        // until it has caught up with a's 100 ms.
        assert!(s.poll_acquire(&b, 2, &mut tb, &mut cx).is_pending());
        s.release(&b, 1, Duration::from_millis(2));
        assert!(s.poll_acquire(&a, 0, &mut ta, &mut cx).is_ready());
    }

    #[test]
    fn within_a_tenant_the_oldest_invocation_runs_first() {
        let s = CpuScheduler::new(1);
        let a: Arc<str> = "a".into();
        let waker = Waker::from(Arc::new(Count(AtomicUsize::new(0))));
        let mut cx = Context::from_waker(&waker);
        let (mut t0, mut t1, mut t9, mut t5) = (None, None, None, None);
        // Two tokens (one per thread, and one in transit).
        assert!(s.poll_acquire(&a, 0, &mut t0, &mut cx).is_ready());
        assert!(s.poll_acquire(&a, 1, &mut t1, &mut cx).is_ready());
        assert!(s.poll_acquire(&a, 9, &mut t9, &mut cx).is_pending());
        assert!(s.poll_acquire(&a, 5, &mut t5, &mut cx).is_pending());
        s.release(&a, 1, Duration::from_millis(1));
        assert!(s.poll_acquire(&a, 5, &mut t5, &mut cx).is_ready());
        assert!(s.poll_acquire(&a, 9, &mut t9, &mut cx).is_pending());
    }

    #[test]
    fn weight_divides_the_charge_and_a_cancelled_grant_returns_its_token() {
        let s = CpuScheduler::new(1);
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let waker = Waker::from(Arc::new(Count(AtomicUsize::new(0))));
        let mut cx = Context::from_waker(&waker);
        let (mut t0, mut ta, mut tb) = (None, None, None);
        hold_the_spare_token(&s, &mut cx);
        assert!(s.poll_acquire(&a, 0, &mut t0, &mut cx).is_ready());
        assert!(s.poll_acquire(&b, 1, &mut tb, &mut cx).is_pending());
        // a weighs 4: 4 ms cost it 1 ms, b at 0 is still next.
        s.release(&a, 4, Duration::from_millis(4));
        assert!(s.poll_acquire(&a, 2, &mut ta, &mut cx).is_pending());
        // b's grant is dropped before b polls: the token goes on to a.
        let granted = tb.take().expect("queued");
        s.cancel(&b, 1, 1, granted);
        assert!(s.poll_acquire(&a, 2, &mut ta, &mut cx).is_ready());
        s.release(&a, 4, Duration::ZERO);
        assert_eq!(s.lock().free, 1);
    }
}
