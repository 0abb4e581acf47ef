//! The dead-letter table: listing what was given up on, and redriving it
//! back into the queue.

use std::collections::HashSet;

use redb::ReadableTable;

use crate::keys::QueueKey;
use crate::store::QueueStore;
use crate::tables::{BODIES, DEAD, DeadRecord, from_json};
use crate::types::{DeadLetter, MessageId, QueueError};

impl QueueStore {
    /// Up to `limit` dead letters, in send order (ids are UUIDv7).
    pub fn dead_letters(
        &self,
        tenant: &str,
        queue: &str,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, QueueError> {
        let q = QueueKey::new(tenant, queue)?;
        let txn = self.read_existing(&q, tenant, queue)?;
        let dead = txn.open_table(DEAD)?;
        let bodies = txn.open_table(BODIES)?;
        let (first, last) = q.message_bounds();
        let mut out = Vec::new();
        for entry in dead.range(first.as_slice()..=last.as_slice())?.take(limit) {
            let (key, value) = entry?;
            let id = q.message_id(key.value())?;
            let rec: DeadRecord = from_json("dead-letter record", value.value())?;
            let body = bodies
                .get(key.value())?
                .map(|b| b.value().to_vec())
                .ok_or_else(|| QueueError::Corrupt(format!("dead letter {id} has no body")))?;
            out.push(rec.into_dead_letter(id, body));
        }
        Ok(out)
    }

    /// Moves dead letters back into the queue, receivable at `now_ms` with
    /// their receive count reset to 0 (their id and send order kept): the
    /// listed ones (ids not in the dead-letter table are skipped), or all
    /// with `None`. Returns how many moved.
    pub fn redrive(
        &self,
        tenant: &str,
        queue: &str,
        ids: Option<&[MessageId]>,
        now_ms: u64,
    ) -> Result<usize, QueueError> {
        let q = QueueKey::new(tenant, queue)?;
        let moved = self.write_existing(&q, tenant, queue, |_, _, t| {
            let targets: Vec<MessageId> = match ids {
                Some(ids) => {
                    let mut seen = HashSet::new();
                    ids.iter().copied().filter(|id| seen.insert(*id)).collect()
                }
                None => {
                    let (first, last) = q.message_bounds();
                    t.dead
                        .range(first.as_slice()..=last.as_slice())?
                        .map(|entry| q.message_id(entry?.0.value()))
                        .collect::<Result<_, _>>()?
                }
            };
            let mut moved = 0;
            for id in targets {
                let dead: DeadRecord = match t.dead.remove(q.message(id).as_slice())? {
                    Some(guard) => from_json("dead-letter record", guard.value())?,
                    None => continue,
                };
                t.put(&q, id, &dead.redriven(now_ms))?;
                moved += 1;
            }
            Ok(moved)
        })?;
        if moved > 0 {
            tracing::info!(tenant, queue, moved, "dead letters redriven");
        }
        Ok(moved)
    }
}
