//! The invocation path, in order: admission (function, tenant and host
//! slots) → a fresh store with every capability's state → the call (event
//! or HTTP, under fuel and a deadline) → the outcome → the usage record →
//! the sink (ledger) → the meters and kept logs.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tokio::sync::OwnedSemaphorePermit;
use tracing::Instrument;
use uuid::Uuid;
use wasmtime::Store;
use wasmtime::component::ResourceTable;

use crate::admission::{PoolAdmission, PoolSlot};
use crate::call::{Ended, Input, Output, call_guest};
use crate::capability::InvokeCx;
use crate::error::Error;
use crate::event::Event;
use crate::function::{FunctionHandle, FunctionInner, HttpInvocation, Invocation};
use crate::logs::Logs;
use crate::outcome::classify;
use crate::report::Report;
use crate::scheduler::{CpuUse, run_fairly, thread_cpu};
use crate::state::{Capabilities, InvocationState, MemoryLimiter};
use crate::usage::{Cause, Outcome, Trigger, UsageRecord, billed_ms};

impl FunctionHandle {
    /// Runs one invocation of an event function in a fresh instance.
    ///
    /// The invocation runs on its own tokio task: if the caller stops
    /// waiting, it still finishes (or hits its deadline) and its usage record
    /// is still written. Must be called within a tokio runtime.
    pub async fn invoke(&self, event: Event) -> Result<Invocation, Error> {
        self.invoke_with(event, Cause::default()).await
    }

    /// [`Self::invoke`] on behalf of a trigger: the usage record carries
    /// `cause.trigger`, and objects the guest writes raise events at
    /// `cause.depth + 1`.
    pub async fn invoke_with(&self, event: Event, cause: Cause) -> Result<Invocation, Error> {
        if !self.handles_events() {
            return Err(self.wrong_kind("an HTTP function: call it with invoke_http"));
        }
        let (output, report) = self.spawn(Input::Event(event), cause).await?;
        match output {
            Output::Event(Ok(response)) => Ok(Invocation {
                response,
                usage: report.usage,
                logs: report.logs,
            }),
            Output::Event(Err(error)) => Err(Error::Guest { error, report }),
            Output::Http(_) => Err(Error::Config("event function produced HTTP output".into())),
        }
    }

    /// Runs one invocation of a `wasi:http/proxy` function with `request`
    /// (its body already read). The response body is buffered, up to the
    /// host's `max_http_response_bytes`, so the invocation ends — and is
    /// billed — when the guest has produced all of it.
    pub async fn invoke_http(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<HttpInvocation, Error> {
        if !self.is_http() {
            return Err(self.wrong_kind("an event function: call it with invoke"));
        }
        let (output, report) = self
            .spawn(Input::Http(request), Cause::new(Trigger::Http))
            .await?;
        match output {
            Output::Http(response) => Ok(HttpInvocation {
                response,
                usage: report.usage,
                logs: report.logs,
            }),
            Output::Event(_) => Err(Error::Config("HTTP function produced event output".into())),
        }
    }

    /// Refuses an invocation before it runs (e.g. a gateway's rate limit):
    /// writes its throttled usage record, counts it, and returns the
    /// [`Error::Throttled`] to hand back.
    pub fn throttle(&self, reason: impl Into<String>, request_bytes: u64, cause: Cause) -> Error {
        self.throttled(Uuid::now_v7(), reason.into(), request_bytes, cause)
    }

    fn throttled(
        &self,
        invocation_id: Uuid,
        reason: String,
        request_bytes: u64,
        cause: Cause,
    ) -> Error {
        let mut usage = self.usage(
            invocation_id,
            Outcome::Throttled,
            0,
            0,
            None,
            SystemTime::now(),
        );
        usage.request_bytes = request_bytes;
        usage.trigger = cause.trigger;
        match self.finish(usage, Logs::default()) {
            Ok(report) => {
                tracing::info!(%reason, "throttled");
                Error::Throttled { reason, report }
            }
            Err(e) => e,
        }
    }

    fn wrong_kind(&self, what: &str) -> Error {
        Error::WrongKind(format!(
            "function `{}` of tenant `{}` is {what}",
            self.inner.name, self.inner.tenant.name
        ))
    }

    async fn spawn(&self, input: Input, cause: Cause) -> Result<(Output, Box<Report>), Error> {
        let this = self.clone();
        let invocation_id = Uuid::now_v7();
        let span = tracing::info_span!(
            "invocation",
            tenant = %self.inner.tenant.name,
            function = %self.inner.name,
            invocation_id = %invocation_id,
        );
        let task = async move { this.run(invocation_id, input, cause).await }.instrument(span);
        let rt = &self.inner.runtime;
        crate::scheduler::start(&rt.cpu, rt.guests.handle(), task)
            .await
            .unwrap_or_else(|e| {
                // Only reachable if the invocation task panicked: a host bug.
                Err(Error::Config(format!("invocation task failed: {e}")))
            })
    }

    async fn run(
        &self,
        invocation_id: Uuid,
        input: Input,
        cause: Cause,
    ) -> Result<(Output, Box<Report>), Error> {
        let f = &*self.inner;
        let rt = &*f.runtime;
        let limits = f.limits;
        let started_at = SystemTime::now();
        let start = Instant::now();
        let request_bytes = match &input {
            Input::Http(r) => r.body().len() as u64,
            Input::Event(_) => 0,
        };

        let admitted = admit(f, &rt.pool).await;
        let _permits = match admitted {
            Ok(p) => p,
            Err(reason) => return Err(self.throttled(invocation_id, reason, request_bytes, cause)),
        };
        let _in_flight = f.meters.enter();

        let ran = execute(f, invocation_id, input, cause).await;

        let exit_code = match &ran.ended {
            Ended::Exited(code, _) => Some(*code),
            _ => None,
        };
        let (outcome, result) = classify(ran.ended, ran.memory_refused);
        let mut usage = self.usage(
            invocation_id,
            outcome,
            ran.fuel_consumed,
            ran.peak_memory,
            Some(start.elapsed()),
            started_at,
        );
        usage.request_bytes = request_bytes;
        usage.cpu_us = u64::try_from(ran.cpu.as_micros()).unwrap_or(u64::MAX);
        usage.trigger = cause.trigger;
        usage.exit_code = exit_code;
        let mut logs = Logs::default();
        if let Some(caps) = ran.caps {
            caps.finish(&mut usage, &mut logs);
        }
        if let Ok(Output::Http(response)) = &result {
            usage.response_bytes = response.body().len() as u64;
        }
        let report = self.finish(usage, logs)?;
        tracing::debug!(outcome = %outcome, fuel = report.usage.fuel_consumed, "invocation finished");
        match result {
            Ok(output) => Ok((output, report)),
            Err(failure) => Err(failure.into_error(report, &limits, rt.max_wasm_stack)),
        }
    }

    fn usage(
        &self,
        invocation_id: Uuid,
        outcome: Outcome,
        fuel_consumed: u64,
        peak_memory_bytes: u64,
        wall: Option<Duration>,
        started_at: SystemTime,
    ) -> UsageRecord {
        let wall_us = wall.map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        let billed = if wall.is_some() {
            billed_ms(wall_us)
        } else {
            0
        };
        UsageRecord {
            fuel_consumed,
            peak_memory_bytes,
            wall_duration_us: wall_us,
            billed_duration_ms: billed,
            memory_byte_ms: peak_memory_bytes.saturating_mul(billed),
            started_at: humantime::format_rfc3339_micros(started_at).to_string(),
            function_version: self.inner.version,
            ..UsageRecord::new(
                invocation_id,
                &self.inner.tenant.name,
                &self.inner.name,
                outcome,
            )
        }
    }

    /// Writes the record, then counts it: metrics never run ahead of the
    /// ledger, so the two agree exactly.
    fn finish(&self, usage: UsageRecord, logs: Logs) -> Result<Box<Report>, Error> {
        if let Err(e) = self.inner.runtime.sink.record(&usage) {
            tracing::error!(error = %e, invocation_id = %usage.invocation_id, "usage record not written");
            return Err(Error::Ledger(e));
        }
        self.inner.meters.observe(&usage);
        self.inner
            .version_invocations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let wrote = !(logs.stdout.is_empty() && logs.stderr.is_empty() && logs.entries.is_empty());
        if wrote || usage.outcome != Outcome::Success {
            self.inner.runtime.logs.keep(&usage, &logs);
        }
        Ok(Box::new(Report { usage, logs }))
    }
}

/// What is left when the guest has stopped and its store is gone.
struct Ran {
    ended: Ended,
    /// CPU time on the threads that ran it (`on_cpu_clock`), freeing the
    /// instance included.
    cpu: Duration,
    fuel_consumed: u64,
    peak_memory: u64,
    memory_refused: bool,
    /// Every capability's state, to finish into the usage record; none if
    /// they could not be prepared.
    caps: Option<Capabilities>,
}

/// Builds a fresh store with every capability's state and calls the guest
/// in it, under fuel and the deadline (instantiation included).
async fn execute(f: &FunctionInner, invocation_id: Uuid, input: Input, cause: Cause) -> Ran {
    let rt = &*f.runtime;
    let limits = f.limits;
    // One instant for the guest's `remaining-ms` and the host's timeout.
    let deadline = tokio::time::Instant::now() + limits.timeout;
    let caps = Capabilities::prepare(
        &f.grants,
        &InvokeCx {
            services: &rt.services,
            tenant: &f.tenant.name,
            function: &f.name,
            version: f.version,
            invocation_id,
            deadline,
            limits: &limits,
            cause,
        },
    );
    let caps = match caps {
        Ok(caps) => caps,
        // A capability that cannot be prepared (e.g. a directory that
        // cannot be opened) fails the invocation as a trap naming the
        // error, never the host.
        Err(e) => {
            return Ran {
                ended: Ended::Failed(e),
                cpu: Duration::ZERO,
                fuel_consumed: 0,
                peak_memory: 0,
                memory_refused: false,
                caps: None,
            };
        }
    };
    let mut table = ResourceTable::new();
    table.set_max_capacity(rt.max_resource_handles);
    let state = InvocationState {
        table,
        limiter: MemoryLimiter::new(limits.max_memory_bytes, f.tenant.memory.clone()),
        caps,
    };
    let mut store = Store::new(&rt.engine, state);
    store.limiter(|s| &mut s.limiter);
    store.set_hostcall_fuel(rt.hostcall_fuel);
    let fuel_setup = store
        .set_fuel(limits.fuel)
        .and_then(|()| store.fuel_async_yield_interval(Some(rt.fuel_yield_interval)));
    let mut cpu = CpuUse::default();
    let mut store = Some(store);
    let (ended, freed) = match fuel_setup {
        Err(e) => (Ended::Failed(e), None),
        Ok(()) => {
            let store = &mut store;
            let call = async move {
                let Some(s) = store.as_mut() else {
                    unreachable!("the store is taken only here")
                };
                let ended = call_guest(&f.kind, s, input, rt.max_http_response_bytes).await;
                // Freeing the instance resets its pool slot (memset,
                // madvise): done in the poll that finished the guest,
                // on its token, so the CPU it takes is measured with the
                // guest's (and charged to the tenant: a guest that dirtied
                // a lot of memory pays for cleaning it) without reading
                // the thread's clock once more.
                (ended, store.take().map(free))
            };
            let tenant = &f.tenant;
            let fair = run_fairly(
                &rt.cpu,
                &tenant.name,
                tenant.limits.cpu_weight,
                call,
                &mut cpu,
            );
            match tokio::time::timeout_at(deadline, fair).await {
                Ok(done) => done,
                Err(_) => (Ended::TimedOut, None),
            }
        }
    };
    // Not freed above (its deadline ended it mid-call, or it never ran):
    // freed here, measured on its own.
    let (fuel_left, state) = match (freed, store) {
        (Some(freed), _) => freed,
        (None, Some(store)) => {
            let before = thread_cpu();
            let freed = free(store);
            cpu.total += thread_cpu().saturating_sub(before);
            freed
        }
        (None, None) => unreachable!("a store is freed in the call or after it"),
    };
    let fuel_consumed = limits.fuel.saturating_sub(fuel_left);
    let cpu = cpu.total;
    Ran {
        ended,
        cpu,
        fuel_consumed,
        peak_memory: state.limiter.peak as u64,
        memory_refused: state.limiter.refused,
        caps: Some(state.caps),
    }
}

/// The fuel left in `store`, and its data once the store (and with it the
/// instance) is gone.
fn free(store: Store<InvocationState>) -> (u64, InvocationState) {
    (store.get_fuel().unwrap_or(0), store.into_data())
}

/// Takes a function slot (if it has its own), a tenant slot and a slot in
/// the host's pool, or says which limit was hit. Only the last may wait
/// (see [`PoolAdmission`]).
async fn admit(
    f: &FunctionInner,
    pool: &Arc<PoolAdmission>,
) -> Result<(Option<OwnedSemaphorePermit>, OwnedSemaphorePermit, PoolSlot), String> {
    let own = match &f.slots {
        Some(slots) => Some(slots.clone().try_acquire_owned().map_err(|_| {
            format!(
                "function `{}` is at its limit of {} concurrent invocations",
                f.name, f.limits.max_concurrency
            )
        })?),
        None => None,
    };
    let tenant = &f.tenant;
    let held = tenant.memory.load(Relaxed);
    let cap = tenant.limits.max_tenant_memory_bytes;
    if held >= cap {
        return Err(format!(
            "tenant `{}` holds {held} bytes of linear memory in running instances, \
             at its limit of {cap}",
            tenant.name
        ));
    }
    let t = tenant.slots.clone().try_acquire_owned().map_err(|_| {
        format!(
            "tenant `{}` is at its limit of {} concurrent invocations",
            tenant.name, tenant.limits.max_concurrency
        )
    })?;
    let slot = pool.acquire(&tenant.name, f.limits.timeout).await?;
    Ok((own, t, slot))
}
