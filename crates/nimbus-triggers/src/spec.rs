//! What a trigger is declared with, and how declaring one can fail: the
//! types the trigger modules and the public API share.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nimbus_core::nimbus_queue::QueueConfig;

use crate::claims::{LocalTickClaims, TickClaims};

/// Run `function` when an object is written to `container`, if its key
/// starts with `prefix` and ends with `suffix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectTrigger {
    pub tenant: String,
    pub function: String,
    pub container: String,
    pub prefix: String,
    pub suffix: String,
}

/// Run `function` for each message of `queue`.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueTrigger {
    pub tenant: String,
    pub function: String,
    pub queue: String,
    /// Messages received at once and processed concurrently.
    pub batch_size: usize,
    pub config: QueueConfig,
}

/// Run `function` on a cron schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleTrigger {
    pub tenant: String,
    pub function: String,
    /// `min hour dom month dow`, or with a leading seconds field.
    pub cron: String,
    /// An IANA zone such as `Europe/Paris`; UTC when absent.
    pub timezone: Option<String>,
    /// Run once at start if a tick was missed while the server was down.
    pub catch_up: bool,
}

#[derive(Debug, Clone)]
pub struct TriggerOptions {
    /// Object events deeper than this are dropped (the loop guard).
    pub max_event_depth: u32,
    /// Delivery attempts per object event and trigger.
    pub object_attempts: u32,
    /// First retry delay of an object event; doubles per attempt.
    pub object_retry_base: Duration,
    /// How often idle dispatchers look for new work.
    pub poll_interval: Duration,
    /// Where schedules persist their last tick; without it, missed ticks
    /// cannot be detected.
    pub state_path: Option<PathBuf>,
    /// Which node runs a schedule's tick when several run the schedule
    /// (see [`TickClaims`]); [`LocalTickClaims`], every tick this node's,
    /// when it runs alone.
    pub tick_claims: Arc<dyn TickClaims>,
}

impl Default for TriggerOptions {
    fn default() -> Self {
        Self {
            max_event_depth: 3,
            object_attempts: 3,
            object_retry_base: Duration::from_secs(1),
            poll_interval: Duration::from_millis(50),
            state_path: None,
            tick_claims: Arc::new(LocalTickClaims),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TriggerError {
    /// A trigger that cannot work as declared; the message names the field.
    #[error("{0}")]
    Invalid(String),
    #[error("trigger state: {0}")]
    Storage(String),
}
