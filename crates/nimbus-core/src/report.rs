//! What every finished invocation leaves, success or not.

use crate::logs::Logs;
use crate::usage::UsageRecord;

/// A finished invocation's bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Already written to the usage sink when you see it.
    pub usage: UsageRecord,
    pub logs: Logs,
}
