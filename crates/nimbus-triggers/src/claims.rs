//! Who runs a schedule's tick when several nodes run the same schedule:
//! the one whose claim on the tick wins. Embedded, this node is the only
//! one, so every claim wins; a cluster plugs in a shared store (NATS
//! JetStream in `nimbus-nats`) through [`TriggerOptions::tick_claims`].
//!
//! [`TriggerOptions::tick_claims`]: crate::TriggerOptions::tick_claims

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// The answer to a claim on a tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This node runs the tick.
    Won,
    /// Another node claimed it first; `holder` says which, for the logs.
    Lost { holder: String },
}

/// What [`TickClaims::claim`] returns: boxed so that the trait stays
/// object-safe (the options hold it as `Arc<dyn TickClaims>`).
pub type ClaimFuture<'a> = Pin<Box<dyn Future<Output = Result<Claim, String>> + Send + 'a>>;

/// Decides which node runs each tick of each schedule, so that a tick runs
/// exactly once however many nodes run the schedule.
///
/// A schedule claims a tick when it comes due and runs it only on
/// [`Claim::Won`]. An `Err` means the claim could not be decided (its store
/// unreachable); the schedule then tries again, with backoff, until the
/// tick's window closes — the next tick of the schedule, or the end of
/// [`Self::retention`] if that comes first — and if it is still undecided,
/// skips the tick, logs it and counts it (`nimbus_schedule_unclaimed_total`).
/// Running it anyway could run it twice (another node's claim may have
/// won), so an outage of the claims' store costs ticks, never duplicates.
/// A claim that timed out but was stored nevertheless is its claimer's:
/// implementations recognise their own claim when they retry it.
///
/// A node catching up a tick missed while it was down claims it the same
/// way, so a tick another node ran meanwhile is not run again.
pub trait TickClaims: Send + Sync + fmt::Debug {
    /// Claims the tick of `tenant/function` due at `tick_unix_secs` (cron
    /// ticks fall on whole seconds, so the second names the tick). Every
    /// node asks with the same three values for the same tick: the claim
    /// must be keyed by them alone. Retrying after an `Err` must not lose
    /// a claim that was in fact stored by the failed attempt.
    fn claim<'a>(
        &'a self,
        tenant: &'a str,
        function: &'a str,
        tick_unix_secs: i64,
    ) -> ClaimFuture<'a>;

    /// How long a claim is remembered, if not forever. A tick older than
    /// this is never claimed: its claim may have expired after another
    /// node ran it, and winning it again would run it twice.
    fn retention(&self) -> Option<Duration> {
        None
    }
}

/// The embedded default: this node is the only one running its schedules,
/// so it wins every claim. (Which ticks it already ran across a restart is
/// the schedule's own persisted last tick, as without a cluster.)
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalTickClaims;

impl TickClaims for LocalTickClaims {
    fn claim<'a>(&'a self, _: &'a str, _: &'a str, _: i64) -> ClaimFuture<'a> {
        Box::pin(std::future::ready(Ok(Claim::Won)))
    }
}
