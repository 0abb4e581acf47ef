//! [`QueueStore`]: the queues in one redb file.
//!
//! Tables (every key starts with the queue key, see [`crate::keys`]):
//! - `queues`: queue key → its names and config (JSON). A queue exists once
//!   configured or sent to.
//! - `messages`: queue key + id → the message's small, mutable record
//!   (JSON): counts, state, times, current delivery.
//! - `bodies`: queue key + id → the body, written once at send and removed
//!   at ack: receives, nacks and dead-lettering rewrite only the small record.
//! - `ready`: queue key + visible-at + send sequence → id: the readiness
//!   index, so `receive` reads the first entries of a range — O(batch), not
//!   O(queue length) — in FIFO order of (visible-at, send order).
//! - `dead_letters`: queue key + id → the dead letter's record (JSON); its
//!   body stays in `bodies`.
//! - `meta`: the store-wide sequence that orders sends and numbers
//!   deliveries.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::keys::{QueueKey, ReadyEntry, State};
use crate::{
    DeadLetter, Delivery, MessageId, Nack, OutgoingMessage, QueueConfig, QueueError, QueueStats,
    Receipt, millis,
};

type Bytes = &'static [u8];

const QUEUES: TableDefinition<Bytes, Bytes> = TableDefinition::new("queues");
const MESSAGES: TableDefinition<Bytes, Bytes> = TableDefinition::new("messages");
const BODIES: TableDefinition<Bytes, Bytes> = TableDefinition::new("bodies");
const READY: TableDefinition<Bytes, Bytes> = TableDefinition::new("ready");
const DEAD: TableDefinition<Bytes, Bytes> = TableDefinition::new("dead_letters");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const NEXT_SEQ: &str = "next_seq";

#[derive(Debug, Serialize, Deserialize)]
struct QueueRecord {
    tenant: String,
    queue: String,
    config: QueueConfig,
}

#[derive(Debug, Serialize, Deserialize)]
struct MessageRecord {
    /// Send order (redrive keeps it).
    seq: u64,
    sent_at_ms: u64,
    visible_at_ms: u64,
    receive_count: u32,
    /// The current delivery's number while in flight, else 0: a receipt
    /// is valid only while it names this number.
    delivery: u64,
    state: State,
    content_type: Option<String>,
    metadata: Vec<(String, String)>,
    /// The last nack's error.
    last_error: Option<String>,
}

impl MessageRecord {
    fn ready_entry(&self, id: MessageId) -> ReadyEntry {
        ReadyEntry {
            id,
            state: self.state,
            sent_at_ms: self.sent_at_ms,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct DeadRecord {
    seq: u64,
    sent_at_ms: u64,
    dead_at_ms: u64,
    receive_count: u32,
    content_type: Option<String>,
    metadata: Vec<(String, String)>,
    last_error: String,
}

fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, QueueError> {
    serde_json::to_vec(value).map_err(|e| QueueError::Storage(format!("encoding a record: {e}")))
}

fn from_json<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, QueueError> {
    serde_json::from_slice(bytes).map_err(|e| QueueError::Corrupt(format!("{what}: {e}")))
}

fn get_json<T: DeserializeOwned>(
    table: &impl ReadableTable<Bytes, Bytes>,
    key: &[u8],
    what: &str,
) -> Result<Option<T>, QueueError> {
    table
        .get(key)?
        .map(|v| from_json(what, v.value()))
        .transpose()
}

/// The queue's config; [`QueueError::UnknownQueue`] if it does not exist.
fn existing_config(
    queues: &impl ReadableTable<Bytes, Bytes>,
    q: &QueueKey,
    tenant: &str,
    queue: &str,
) -> Result<QueueConfig, QueueError> {
    match get_json::<QueueRecord>(queues, q.as_bytes(), "queue record")? {
        Some(r) => Ok(r.config),
        None => Err(QueueError::UnknownQueue {
            tenant: tenant.to_string(),
            queue: queue.to_string(),
        }),
    }
}

/// Takes `n` consecutive numbers from the store-wide sequence (starts at 1,
/// so 0 can mean "none").
fn take_seq(txn: &WriteTransaction, n: u64) -> Result<u64, QueueError> {
    let mut meta = txn.open_table(META)?;
    let first = meta.get(NEXT_SEQ)?.map_or(1, |g| g.value());
    let next = first
        .checked_add(n)
        .ok_or_else(|| QueueError::Storage("message sequence exhausted".into()))?;
    meta.insert(NEXT_SEQ, next)?;
    Ok(first)
}

/// The per-message tables of one write transaction, with the moves between
/// them, each keeping the readiness index in step with the records.
struct Tables<'t> {
    messages: redb::Table<'t, Bytes, Bytes>,
    bodies: redb::Table<'t, Bytes, Bytes>,
    ready: redb::Table<'t, Bytes, Bytes>,
    dead: redb::Table<'t, Bytes, Bytes>,
}

impl<'t> Tables<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Self, QueueError> {
        Ok(Self {
            messages: txn.open_table(MESSAGES)?,
            bodies: txn.open_table(BODIES)?,
            ready: txn.open_table(READY)?,
            dead: txn.open_table(DEAD)?,
        })
    }

    fn message(&self, q: &QueueKey, id: MessageId) -> Result<Option<MessageRecord>, QueueError> {
        get_json(&self.messages, &q.message(id), "message record")
    }

    fn body(&self, q: &QueueKey, id: MessageId) -> Result<Vec<u8>, QueueError> {
        let body = self.bodies.get(q.message(id).as_slice())?;
        body.map(|b| b.value().to_vec())
            .ok_or_else(|| QueueError::Corrupt(format!("message {id} has no body")))
    }

    /// Writes the record and its readiness entry (the old entry must have
    /// been removed with [`Self::unready`]).
    fn put(&mut self, q: &QueueKey, id: MessageId, rec: &MessageRecord) -> Result<(), QueueError> {
        self.messages
            .insert(q.message(id).as_slice(), to_json(rec)?.as_slice())?;
        self.ready.insert(
            q.ready(rec.visible_at_ms, rec.seq).as_slice(),
            rec.ready_entry(id).encode().as_slice(),
        )?;
        Ok(())
    }

    fn unready(&mut self, q: &QueueKey, rec: &MessageRecord) -> Result<(), QueueError> {
        self.ready
            .remove(q.ready(rec.visible_at_ms, rec.seq).as_slice())?;
        Ok(())
    }

    /// The message a receipt names, if the receipt is its current delivery.
    fn in_flight(&self, q: &QueueKey, receipt: &Receipt) -> Result<MessageRecord, QueueError> {
        match self.message(q, receipt.id)? {
            Some(rec) if rec.state == State::InFlight && rec.delivery == receipt.delivery => {
                Ok(rec)
            }
            _ => Err(QueueError::StaleReceipt(*receipt)),
        }
    }

    /// Deletes the message everywhere.
    fn delete(
        &mut self,
        q: &QueueKey,
        id: MessageId,
        rec: &MessageRecord,
    ) -> Result<(), QueueError> {
        self.unready(q, rec)?;
        let key = q.message(id);
        self.messages.remove(key.as_slice())?;
        self.bodies.remove(key.as_slice())?;
        Ok(())
    }

    /// Moves the message to the dead-letter table; its body stays put.
    fn dead_letter(
        &mut self,
        q: &QueueKey,
        id: MessageId,
        rec: MessageRecord,
        last_error: String,
        now_ms: u64,
    ) -> Result<(), QueueError> {
        self.unready(q, &rec)?;
        let key = q.message(id);
        self.messages.remove(key.as_slice())?;
        let dead = DeadRecord {
            seq: rec.seq,
            sent_at_ms: rec.sent_at_ms,
            dead_at_ms: now_ms,
            receive_count: rec.receive_count,
            content_type: rec.content_type,
            metadata: rec.metadata,
            last_error,
        };
        self.dead
            .insert(key.as_slice(), to_json(&dead)?.as_slice())?;
        Ok(())
    }
}

/// Durable queues for every tenant, in one redb file. Cheap to clone (the
/// clones share the database); open a file once per process — a second
/// `open` of the same file fails while the first is alive.
///
/// Every method blocks; mutations return only after their transaction is
/// synced to disk.
#[derive(Debug, Clone)]
pub struct QueueStore {
    db: Arc<Database>,
}

impl QueueStore {
    /// Opens (creating if needed, with its parent directories) the queue
    /// database at `path`.
    pub fn open(path: &Path) -> Result<Self, QueueError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| QueueError::Storage(format!("{}: {e}", parent.display())))?;
        }
        let db = Database::create(path)
            .map_err(|e| QueueError::Storage(format!("{}: {e}", path.display())))?;
        let store = Self { db: Arc::new(db) };
        // Create every table up front, so readers never find one missing.
        store.write(|txn| {
            Tables::open(txn)?;
            txn.open_table(QUEUES)?;
            txn.open_table(META)?;
            Ok(())
        })?;
        Ok(store)
    }

    /// One durable write transaction: `f`'s changes are committed and
    /// synced if it succeeds, discarded if it fails.
    fn write<R>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<R, QueueError>,
    ) -> Result<R, QueueError> {
        let mut txn = self.db.begin_write()?;
        // redb's default, set anyway: the contract of this crate is that a
        // mutation has reached the disk when the call returns.
        txn.set_durability(Durability::Immediate)?;
        let r = f(&txn)?;
        txn.commit()?;
        Ok(r)
    }

    /// Creates the queue, or changes its config. Messages already in the
    /// queue keep their current timers; the new config applies from their
    /// next receive or nack.
    pub fn configure(
        &self,
        tenant: &str,
        queue: &str,
        config: QueueConfig,
    ) -> Result<(), QueueError> {
        let q = QueueKey::new(tenant, queue)?;
        config.validate()?;
        let record = QueueRecord {
            tenant: tenant.to_string(),
            queue: queue.to_string(),
            config,
        };
        self.write(|txn| {
            let mut queues = txn.open_table(QUEUES)?;
            queues.insert(q.as_bytes(), to_json(&record)?.as_slice())?;
            Ok(())
        })
    }

    /// The queue's config: the default if it was never configured.
    pub fn config(&self, tenant: &str, queue: &str) -> Result<QueueConfig, QueueError> {
        let q = QueueKey::new(tenant, queue)?;
        let txn = self.db.begin_read()?;
        let queues = txn.open_table(QUEUES)?;
        let record = get_json::<QueueRecord>(&queues, q.as_bytes(), "queue record")?;
        Ok(record.map(|r| r.config).unwrap_or_default())
    }

    /// Appends a message (creating the queue with the default config if
    /// needed); it is on disk when this returns.
    pub fn send(
        &self,
        tenant: &str,
        queue: &str,
        msg: OutgoingMessage,
        now_ms: u64,
    ) -> Result<MessageId, QueueError> {
        let q = QueueKey::new(tenant, queue)?;
        let size = msg.size();
        let id = MessageId::new();
        self.write(|txn| {
            let mut queues = txn.open_table(QUEUES)?;
            let config = match get_json::<QueueRecord>(&queues, q.as_bytes(), "queue record")? {
                Some(r) => r.config,
                None => {
                    let record = QueueRecord {
                        tenant: tenant.to_string(),
                        queue: queue.to_string(),
                        config: QueueConfig::default(),
                    };
                    queues.insert(q.as_bytes(), to_json(&record)?.as_slice())?;
                    record.config
                }
            };
            if size > config.max_message_bytes {
                return Err(too_large(queue, size, config.max_message_bytes));
            }
            let seq = take_seq(txn, 1)?;
            let mut t = Tables::open(txn)?;
            let key = q.message(id);
            if t.messages.get(key.as_slice())?.is_some() {
                // A UUIDv7 collision: astronomically unlikely, but never
                // overwrite a message.
                return Err(QueueError::Storage(format!(
                    "message id {id} already in use"
                )));
            }
            t.bodies.insert(key.as_slice(), msg.body.as_slice())?;
            let rec = MessageRecord {
                seq,
                sent_at_ms: now_ms,
                visible_at_ms: now_ms,
                receive_count: 0,
                delivery: 0,
                state: State::Ready,
                content_type: msg.content_type,
                metadata: msg.metadata,
                last_error: None,
            };
            t.put(&q, id, &rec)
        })?;
        tracing::trace!(tenant, queue, %id, "message sent");
        Ok(id)
    }

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
            let txn = self.db.begin_read()?;
            existing_config(&txn.open_table(QUEUES)?, &q, tenant, queue)?;
            return Ok(Vec::new());
        }
        let mut dead_lettered = Vec::new();
        let deliveries = self.write(|txn| {
            let config = existing_config(&txn.open_table(QUEUES)?, &q, tenant, queue)?;
            let mut t = Tables::open(txn)?;
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
        self.write(|txn| {
            existing_config(&txn.open_table(QUEUES)?, &q, tenant, queue)?;
            let mut t = Tables::open(txn)?;
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
        self.write(|txn| {
            existing_config(&txn.open_table(QUEUES)?, &q, tenant, queue)?;
            let mut t = Tables::open(txn)?;
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
        let (outcome, receive_count) = self.write(|txn| {
            let config = existing_config(&txn.open_table(QUEUES)?, &q, tenant, queue)?;
            let mut t = Tables::open(txn)?;
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
        let txn = self.db.begin_read()?;
        existing_config(&txn.open_table(QUEUES)?, &q, tenant, queue)?;
        let ready = txn.open_table(READY)?;
        let (first, last) = (q.ready(0, 0), q.ready(u64::MAX, u64::MAX));
        let mut range = ready.range(first.as_slice()..=last.as_slice())?;
        range
            .next()
            .transpose()?
            .map(|(key, _)| q.ready_visible_at(key.value()))
            .transpose()
    }

    /// Up to `limit` dead letters, in send order (ids are UUIDv7).
    pub fn dead_letters(
        &self,
        tenant: &str,
        queue: &str,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, QueueError> {
        let q = QueueKey::new(tenant, queue)?;
        let txn = self.db.begin_read()?;
        existing_config(&txn.open_table(QUEUES)?, &q, tenant, queue)?;
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
            out.push(DeadLetter {
                id,
                body,
                content_type: rec.content_type,
                metadata: rec.metadata,
                receive_count: rec.receive_count,
                last_error: rec.last_error,
                sent_at_ms: rec.sent_at_ms,
                dead_at_ms: rec.dead_at_ms,
            });
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
        let moved = self.write(|txn| {
            existing_config(&txn.open_table(QUEUES)?, &q, tenant, queue)?;
            let mut t = Tables::open(txn)?;
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
                let rec = MessageRecord {
                    seq: dead.seq,
                    sent_at_ms: dead.sent_at_ms,
                    visible_at_ms: now_ms,
                    receive_count: 0,
                    delivery: 0,
                    state: State::Ready,
                    content_type: dead.content_type,
                    metadata: dead.metadata,
                    last_error: None,
                };
                t.put(&q, id, &rec)?;
                moved += 1;
            }
            Ok(moved)
        })?;
        if moved > 0 {
            tracing::info!(tenant, queue, moved, "dead letters redriven");
        }
        Ok(moved)
    }

    /// Counts the queue's messages by state at `now_ms`. Reads the whole
    /// readiness index of the queue (fixed-size entries, no records):
    /// O(queue length), for metrics and dashboards, not per message.
    pub fn stats(&self, tenant: &str, queue: &str, now_ms: u64) -> Result<QueueStats, QueueError> {
        let q = QueueKey::new(tenant, queue)?;
        let txn = self.db.begin_read()?;
        existing_config(&txn.open_table(QUEUES)?, &q, tenant, queue)?;
        let ready = txn.open_table(READY)?;
        let mut stats = QueueStats::default();
        let (first, last) = (q.ready(0, 0), q.ready(u64::MAX, u64::MAX));
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

    /// Every (tenant, queue) that exists (was configured or sent to),
    /// sorted.
    pub fn queues(&self) -> Result<Vec<(String, String)>, QueueError> {
        let txn = self.db.begin_read()?;
        let queues = txn.open_table(QUEUES)?;
        let mut out = Vec::with_capacity(usize::try_from(queues.len()?).unwrap_or(0));
        for entry in queues.iter()? {
            let (_, value) = entry?;
            let record: QueueRecord = from_json("queue record", value.value())?;
            out.push((record.tenant, record.queue));
        }
        out.sort();
        Ok(out)
    }
}

fn too_large(queue: &str, size: usize, limit: usize) -> QueueError {
    QueueError::TooLarge {
        queue: queue.to_string(),
        size,
        limit,
    }
}
