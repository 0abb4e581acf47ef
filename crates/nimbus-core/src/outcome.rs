//! Turning how a guest stopped into the invocation's outcome (the usage
//! record's `outcome`) and, for failures, the caller's [`Error`].

use wasmtime::Trap;

use crate::call::{Ended, Output};
use crate::error::Error;
use crate::event::GuestError;
use crate::limits::Limits;
use crate::report::Report;
use crate::usage::Outcome;

pub(crate) enum Failure {
    Guest(GuestError),
    OutOfFuel,
    Memory,
    Timeout,
    StackOverflow,
    Trap(String),
}

impl Failure {
    pub(crate) fn into_error(self, report: Box<Report>, limits: &Limits, stack: usize) -> Error {
        match self {
            Failure::Guest(error) => Error::Guest { error, report },
            Failure::OutOfFuel => Error::OutOfFuel {
                budget: limits.fuel,
                report,
            },
            Failure::Memory => Error::MemoryLimitExceeded {
                limit: limits.max_memory_bytes,
                report,
            },
            Failure::Timeout => Error::Timeout {
                timeout: limits.timeout,
                report,
            },
            Failure::StackOverflow => Error::StackOverflow {
                limit: stack,
                report,
            },
            Failure::Trap(message) => Error::Trap { message, report },
        }
    }
}

pub(crate) fn classify(ended: Ended, memory_refused: bool) -> (Outcome, Result<Output, Failure>) {
    match ended {
        Ended::Returned(Output::Event(Err(e))) => (Outcome::GuestError, Err(Failure::Guest(e))),
        Ended::Returned(output) => (Outcome::Success, Ok(output)),
        Ended::BadResponse(m) => (
            Outcome::GuestError,
            Err(Failure::Guest(GuestError::Failed(m))),
        ),
        Ended::TimedOut => (Outcome::Timeout, Err(Failure::Timeout)),
        Ended::Exited(0, Some(output)) => (Outcome::Success, Ok(output)),
        Ended::Exited(0, None) => (
            Outcome::GuestError,
            Err(Failure::Guest(GuestError::Failed(
                "the guest exited without a response".into(),
            ))),
        ),
        Ended::Exited(code, _) => (
            Outcome::GuestError,
            Err(Failure::Guest(GuestError::Failed(format!(
                "the guest exited with status {code}"
            )))),
        ),
        Ended::Failed(e) => match e.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => (Outcome::OutOfFuel, Err(Failure::OutOfFuel)),
            Some(Trap::StackOverflow) => (Outcome::StackOverflow, Err(Failure::StackOverflow)),
            // A guest whose allocation was refused aborts (a trap of its
            // own making): the refusal is the cause worth reporting.
            _ if memory_refused => (Outcome::MemoryLimit, Err(Failure::Memory)),
            Some(trap) => (Outcome::Trap, Err(Failure::Trap(trap.to_string()))),
            None => (Outcome::Trap, Err(Failure::Trap(format!("{e:#}")))),
        },
    }
}
