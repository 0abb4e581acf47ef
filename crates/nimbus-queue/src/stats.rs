//! Counting a queue's messages by state, from the readiness index alone.

use crate::keys::{QueueKey, ReadyEntry, State};
use crate::store::QueueStore;
use crate::tables::{DEAD, READY};
use crate::types::{QueueError, QueueStats};

impl QueueStore {
    /// Counts the queue's messages by state at `now_ms`. Reads the whole
    /// readiness index of the queue (fixed-size entries, no records):
    /// O(queue length), for metrics and dashboards, not per message.
    pub fn stats(&self, tenant: &str, queue: &str, now_ms: u64) -> Result<QueueStats, QueueError> {
        let q = QueueKey::new(tenant, queue)?;
        let txn = self.read_existing(&q, tenant, queue)?;
        let ready = txn.open_table(READY)?;
        let mut stats = QueueStats::default();
        let (first, last) = q.ready_bounds();
        for entry in ready.range(first.as_slice()..=last.as_slice())? {
            let (key, value) = entry?;
            let visible_at = q.ready_visible_at(key.value())?;
            let entry = ReadyEntry::decode(value.value())?;
            let count = match entry.state {
                _ if visible_at <= now_ms => &mut stats.visible,
                State::InFlight => &mut stats.in_flight,
                // A send stamped later than `now_ms` counts as delayed too.
                State::Delayed | State::Ready => &mut stats.delayed,
            };
            *count += 1;
            stats.oldest_sent_at_ms = Some(
                stats
                    .oldest_sent_at_ms
                    .map_or(entry.sent_at_ms, |t| t.min(entry.sent_at_ms)),
            );
        }
        let dead = txn.open_table(DEAD)?;
        let (first, last) = q.message_bounds();
        for entry in dead.range(first.as_slice()..=last.as_slice())? {
            entry?;
            stats.dead += 1;
        }
        Ok(stats)
    }
}
