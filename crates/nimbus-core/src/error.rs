use std::time::Duration;

use crate::event::GuestError;
use crate::report::Report;

/// Everything that can go wrong across the host core's API.
///
/// Variants that describe a finished invocation carry its [`Report`]: the
/// usage record (already written to the ledger) and the guest's captured logs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No tenant or function by that name; the string names what was missing.
    #[error("{0} not found")]
    NotFound(String),

    /// A tenant or function name that Nimbus does not accept.
    #[error("invalid {kind} name {name:?}: {reason}")]
    InvalidName {
        kind: &'static str,
        name: String,
        reason: &'static str,
    },

    /// `add_tenant` for a name that is already registered.
    #[error("tenant `{0}` already exists")]
    TenantExists(String),

    /// Limits that cannot be honoured (e.g. memory above the pool's slot size).
    #[error("invalid limits for tenant `{tenant}`: {reason}")]
    InvalidLimits { tenant: String, reason: String },

    /// `deploy` refused the bytes; the message says why.
    #[error("invalid component: {0}")]
    InvalidComponent(String),

    /// The invocation used its whole fuel budget.
    #[error("out of fuel: the invocation used its whole budget of {budget} fuel")]
    OutOfFuel { budget: u64, report: Box<Report> },

    /// The guest tried to grow linear memory past the tenant's limit.
    #[error("memory limit exceeded: the guest tried to grow past {limit} bytes of linear memory")]
    MemoryLimitExceeded { limit: u64, report: Box<Report> },

    /// The invocation ran past its wall-clock deadline (instantiation included).
    #[error("timeout: the invocation did not finish within {timeout:?}")]
    Timeout {
        timeout: Duration,
        report: Box<Report>,
    },

    /// The guest exhausted the wasm stack.
    #[error("trap: stack overflow (the wasm stack limit is {limit} bytes)")]
    StackOverflow { limit: usize, report: Box<Report> },

    /// Any other trap: a guest panic, an out-of-bounds access, a failed
    /// instantiation. The message is wasmtime's, without guest backtraces.
    #[error("trap: {message}")]
    Trap {
        message: String,
        report: Box<Report>,
    },

    /// The guest returned its WIT `error` on purpose.
    #[error("guest error: {error}")]
    Guest {
        error: GuestError,
        report: Box<Report>,
    },

    /// Refused before running: the tenant (or the host) is at its
    /// concurrency limit. Retry later.
    #[error("throttled: {reason}")]
    Throttled { reason: String, report: Box<Report> },

    /// The usage record of a finished invocation could not be written; the
    /// invocation's result is withheld rather than handed out unbilled.
    #[error("usage ledger write failed: {0}")]
    Ledger(#[source] std::io::Error),

    /// An event invoke of an HTTP function, or the other way round.
    #[error("wrong kind of invocation: {0}")]
    WrongKind(String),

    /// The function (or the version asked for) is still loading after a
    /// restart: retry shortly.
    #[error("{0}")]
    Loading(String),

    /// The version could not be loaded (its component is missing from the
    /// registry, or no longer compiles); the message says why.
    #[error("{0}")]
    Unavailable(String),

    /// The change conflicts with what is there (a version an alias points
    /// at, a rollback with nothing to go back to).
    #[error("{0}")]
    Conflict(String),

    /// An alias's routing that cannot be honoured.
    #[error("invalid alias routing: {0}")]
    InvalidRouting(String),

    /// The deployment registry could not be read or written: the change
    /// was not made.
    #[error("deployment registry: {0}")]
    Registry(String),

    /// The host could not be built with the given configuration.
    #[error("host configuration: {0}")]
    Config(String),
}

impl Error {
    /// The report of the invocation this error ended, if it ran (or was
    /// throttled) rather than being refused up front.
    pub fn report(&self) -> Option<&Report> {
        match self {
            Error::OutOfFuel { report, .. }
            | Error::MemoryLimitExceeded { report, .. }
            | Error::Timeout { report, .. }
            | Error::StackOverflow { report, .. }
            | Error::Trap { report, .. }
            | Error::Guest { report, .. }
            | Error::Throttled { report, .. } => Some(report),
            _ => None,
        }
    }
}
