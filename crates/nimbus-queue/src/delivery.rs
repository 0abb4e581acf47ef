//! Receiving and answering deliveries: the visibility timeout, receipts,
//! acks and nacks with their backoff.

use redb::ReadableTable;

use crate::keys::{QueueKey, ReadyEntry, State};
use crate::store::QueueStore;
use crate::tables::{READY, take_seq};
use crate::types::{Delivery, Nack, QueueError, Receipt, millis};

impl QueueStore {
    /// Receives up to `max` messages visible at `now_ms`, oldest first,
    /// hiding each for the visibility timeout. A message whose visibility
    /// timeout expired is receivable again — unless it has already been
    /// received `max_receive_count` times: then it is dead-lettered here
    /// instead of delivered (and does not count toward `max`).
    pub fn receive(
        &self,
        tenant: &str,
        queue: &str,
        max: usize,
        now_ms: u64,
    ) -> Result<Vec<Delivery>, QueueError> {
        let q = QueueKey::new(tenant, queue)?;
        if max == 0 {
            self.read_existing(&q, tenant, queue)?;
            return Ok(Vec::new());
        }
        let mut dead_lettered = Vec::new();
        let deliveries = self.write_existing(&q, tenant, queue, |txn, config, t| {
            // Decide from a snapshot of the first ready entries, then apply:
            // entries written back below can never be picked twice.
            let mut plan = Vec::new();
            let mut delivering = 0;
            let first = q.ready(0, 0);
            let last = q.ready(now_ms, u64::MAX);
            for entry in t.ready.range(first.as_slice()..=last.as_slice())? {
                let (key, value) = entry?;
                let id = ReadyEntry::decode(value.value())?.id;
                let rec = t.message(&q, id)?.ok_or_else(|| {
                    QueueError::Corrupt(format!("readiness entry for missing message {id}"))
                })?;
                if key.value() != q.ready(rec.visible_at_ms, rec.seq).as_slice() {
                    return Err(QueueError::Corrupt(format!(
                        "readiness entry disagrees with message {id}"
                    )));
                }
                let give_up = rec.receive_count >= config.max_receive_count;
                if !give_up {
                    delivering += 1;
                }
                plan.push((id, rec, give_up));
                if delivering == max {
                    break;
                }
            }
            let mut delivery = take_seq(txn, delivering as u64)?;
            let hidden_until = now_ms.saturating_add(millis(config.visibility_timeout));
            let mut out = Vec::with_capacity(delivering);
            for (id, mut rec, give_up) in plan {
                if give_up {
                    let error = match (rec.state, &rec.last_error) {
                        (State::InFlight, _) => format!(
                            "visibility timeout expired after {} receives",
                            rec.receive_count
                        ),
                        // Only reachable after max_receive_count was lowered.
                        (_, Some(e)) => e.clone(),
                        (_, None) => format!(
                            "received {} times, max_receive_count is {}",
                            rec.receive_count, config.max_receive_count
                        ),
                    };
                    dead_lettered.push((id, rec.receive_count, error.clone()));
                    t.dead_letter(&q, id, rec, error, now_ms)?;
                    continue;
                }
                t.unready(&q, &rec)?;
                rec.receive_count = rec.receive_count.saturating_add(1);
                rec.delivery = delivery;
                rec.state = State::InFlight;
                rec.visible_at_ms = hidden_until;
                t.put(&q, id, &rec)?;
                out.push(Delivery {
                    id,
                    receipt: Receipt { id, delivery },
                    body: t.body(&q, id)?,
                    content_type: rec.content_type,
                    metadata: rec.metadata,
                    receive_count: rec.receive_count,
                    sent_at_ms: rec.sent_at_ms,
                });
                delivery += 1;
            }
            Ok(out)
        })?;
        for (id, receive_count, error) in dead_lettered {
            tracing::warn!(tenant, queue, %id, receive_count, error, "message dead-lettered");
        }
        Ok(deliveries)
    }

    /// Done with a delivery: deletes the message. Refused with
    /// [`QueueError::StaleReceipt`] if the receipt is no longer the
    /// message's current delivery (it was delivered again, nacked, acked or
    /// dead-lettered since). An expired receipt whose message has not been
    /// received again is still accepted.
    pub fn ack(&self, tenant: &str, queue: &str, receipt: &Receipt) -> Result<(), QueueError> {
        let q = QueueKey::new(tenant, queue)?;
        self.write_existing(&q, tenant, queue, |_, _, t| {
            let rec = t.in_flight(&q, receipt)?;
            t.delete(&q, receipt.id, &rec)
        })
    }

    /// Acks several deliveries in one durable commit (a consumer's batch):
    /// one fsync instead of one per message. Each receipt gets its own
    /// answer — a stale one is reported and the others still commit.
    pub fn ack_many(
        &self,
        tenant: &str,
        queue: &str,
        receipts: &[Receipt],
    ) -> Result<Vec<Result<(), QueueError>>, QueueError> {
        let q = QueueKey::new(tenant, queue)?;
        self.write_existing(&q, tenant, queue, |_, _, t| {
            let mut out = Vec::with_capacity(receipts.len());
            for receipt in receipts {
                match t.in_flight(&q, receipt) {
                    Ok(rec) => {
                        t.delete(&q, receipt.id, &rec)?;
                        out.push(Ok(()));
                    }
                    Err(e @ QueueError::StaleReceipt(_)) => out.push(Err(e)),
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        })
    }

    /// The delivery failed with `error`. If the message has been received
    /// `max_receive_count` times it is dead-lettered ([`Nack::DeadLetter`]);
    /// otherwise it is receivable again after
    /// `min(backoff_base * 2^(receive_count - 1), backoff_max)`
    /// ([`Nack::Retry`]). Receipts are checked as by [`Self::ack`].
    pub fn nack(
        &self,
        tenant: &str,
        queue: &str,
        receipt: &Receipt,
        error: &str,
        now_ms: u64,
    ) -> Result<Nack, QueueError> {
        let q = QueueKey::new(tenant, queue)?;
        let id = receipt.id;
        let (outcome, receive_count) = self.write_existing(&q, tenant, queue, |_, config, t| {
            let mut rec = t.in_flight(&q, receipt)?;
            let receive_count = rec.receive_count;
            if receive_count >= config.max_receive_count {
                t.dead_letter(&q, id, rec, error.to_string(), now_ms)?;
                return Ok((Nack::DeadLetter, receive_count));
            }
            t.unready(&q, &rec)?;
            rec.visible_at_ms = now_ms.saturating_add(config.backoff_ms(receive_count));
            rec.state = State::Delayed;
            rec.delivery = 0;
            rec.last_error = Some(error.to_string());
            t.put(&q, id, &rec)?;
            Ok((Nack::Retry, receive_count))
        })?;
        if outcome == Nack::DeadLetter {
            tracing::warn!(tenant, queue, %id, receive_count, error, "message dead-lettered");
        }
        Ok(outcome)
    }

    /// The earliest time a message in the queue is (or was) receivable —
    /// what a consumer loop sleeps until; `None` if the queue is empty.
    /// In the past means receivable now.
    pub fn next_visible_at_ms(&self, tenant: &str, queue: &str) -> Result<Option<u64>, QueueError> {
        let q = QueueKey::new(tenant, queue)?;
        let txn = self.read_existing(&q, tenant, queue)?;
        let ready = txn.open_table(READY)?;
        let (first, last) = q.ready_bounds();
        let mut range = ready.range(first.as_slice()..=last.as_slice())?;
        range
            .next()
            .transpose()?
            .map(|(key, _)| q.ready_visible_at(key.value()))
            .transpose()
    }
}
