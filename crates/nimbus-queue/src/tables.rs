//! The queues' redb schema, its records, and the moves between tables.
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

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::keys::{QueueKey, ReadyEntry, State};
use crate::types::{DeadLetter, MessageId, QueueConfig, QueueError, Receipt};

pub(crate) type Bytes = &'static [u8];

pub(crate) const QUEUES: TableDefinition<Bytes, Bytes> = TableDefinition::new("queues");
const MESSAGES: TableDefinition<Bytes, Bytes> = TableDefinition::new("messages");
pub(crate) const BODIES: TableDefinition<Bytes, Bytes> = TableDefinition::new("bodies");
pub(crate) const READY: TableDefinition<Bytes, Bytes> = TableDefinition::new("ready");
pub(crate) const DEAD: TableDefinition<Bytes, Bytes> = TableDefinition::new("dead_letters");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const NEXT_SEQ: &str = "next_seq";

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct QueueRecord {
    pub(crate) tenant: String,
    pub(crate) queue: String,
    pub(crate) config: QueueConfig,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct MessageRecord {
    /// Send order (redrive keeps it).
    pub(crate) seq: u64,
    pub(crate) sent_at_ms: u64,
    pub(crate) visible_at_ms: u64,
    pub(crate) receive_count: u32,
    /// The current delivery's number while in flight, else 0: a receipt
    /// is valid only while it names this number.
    pub(crate) delivery: u64,
    pub(crate) state: State,
    pub(crate) content_type: Option<String>,
    pub(crate) metadata: Vec<(String, String)>,
    /// The last nack's error.
    pub(crate) last_error: Option<String>,
}

impl MessageRecord {
    /// A message as sent or redriven: receivable from `visible_at_ms`, with
    /// no receive (and so no failure) counted yet.
    pub(crate) fn ready(
        seq: u64,
        sent_at_ms: u64,
        visible_at_ms: u64,
        content_type: Option<String>,
        metadata: Vec<(String, String)>,
    ) -> Self {
        Self {
            seq,
            sent_at_ms,
            visible_at_ms,
            receive_count: 0,
            delivery: 0,
            state: State::Ready,
            content_type,
            metadata,
            last_error: None,
        }
    }

    fn ready_entry(&self, id: MessageId) -> ReadyEntry {
        ReadyEntry {
            id,
            state: self.state,
            sent_at_ms: self.sent_at_ms,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct DeadRecord {
    seq: u64,
    sent_at_ms: u64,
    dead_at_ms: u64,
    receive_count: u32,
    content_type: Option<String>,
    metadata: Vec<(String, String)>,
    last_error: String,
}

impl DeadRecord {
    pub(crate) fn into_dead_letter(self, id: MessageId, body: Vec<u8>) -> DeadLetter {
        DeadLetter {
            id,
            body,
            content_type: self.content_type,
            metadata: self.metadata,
            receive_count: self.receive_count,
            last_error: self.last_error,
            sent_at_ms: self.sent_at_ms,
            dead_at_ms: self.dead_at_ms,
        }
    }

    /// Back in the queue as if just sent at `now_ms`, but keeping its send
    /// time and place in the send order.
    pub(crate) fn redriven(self, now_ms: u64) -> MessageRecord {
        MessageRecord::ready(
            self.seq,
            self.sent_at_ms,
            now_ms,
            self.content_type,
            self.metadata,
        )
    }
}

pub(crate) fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, QueueError> {
    serde_json::to_vec(value).map_err(|e| QueueError::Storage(format!("encoding a record: {e}")))
}

pub(crate) fn from_json<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, QueueError> {
    serde_json::from_slice(bytes).map_err(|e| QueueError::Corrupt(format!("{what}: {e}")))
}

pub(crate) fn get_json<T: DeserializeOwned>(
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
pub(crate) fn existing_config(
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
pub(crate) fn take_seq(txn: &WriteTransaction, n: u64) -> Result<u64, QueueError> {
    let mut meta = txn.open_table(META)?;
    let first = meta.get(NEXT_SEQ)?.map_or(1, |g| g.value());
    let next = first
        .checked_add(n)
        .ok_or_else(|| QueueError::Storage("message sequence exhausted".into()))?;
    meta.insert(NEXT_SEQ, next)?;
    Ok(first)
}

/// Creates every table, so readers never find one missing.
pub(crate) fn create_all(txn: &WriteTransaction) -> Result<(), QueueError> {
    Tables::open(txn)?;
    txn.open_table(QUEUES)?;
    txn.open_table(META)?;
    Ok(())
}

/// The per-message tables of one write transaction, with the moves between
/// them, each keeping the readiness index in step with the records.
pub(crate) struct Tables<'t> {
    pub(crate) messages: redb::Table<'t, Bytes, Bytes>,
    pub(crate) bodies: redb::Table<'t, Bytes, Bytes>,
    pub(crate) ready: redb::Table<'t, Bytes, Bytes>,
    pub(crate) dead: redb::Table<'t, Bytes, Bytes>,
}

impl<'t> Tables<'t> {
    pub(crate) fn open(txn: &'t WriteTransaction) -> Result<Self, QueueError> {
        Ok(Self {
            messages: txn.open_table(MESSAGES)?,
            bodies: txn.open_table(BODIES)?,
            ready: txn.open_table(READY)?,
            dead: txn.open_table(DEAD)?,
        })
    }

    pub(crate) fn message(
        &self,
        q: &QueueKey,
        id: MessageId,
    ) -> Result<Option<MessageRecord>, QueueError> {
        get_json(&self.messages, &q.message(id), "message record")
    }

    pub(crate) fn body(&self, q: &QueueKey, id: MessageId) -> Result<Vec<u8>, QueueError> {
        let body = self.bodies.get(q.message(id).as_slice())?;
        body.map(|b| b.value().to_vec())
            .ok_or_else(|| QueueError::Corrupt(format!("message {id} has no body")))
    }

    /// Writes the record and its readiness entry (the old entry must have
    /// been removed with [`Self::unready`]).
    pub(crate) fn put(
        &mut self,
        q: &QueueKey,
        id: MessageId,
        rec: &MessageRecord,
    ) -> Result<(), QueueError> {
        self.messages
            .insert(q.message(id).as_slice(), to_json(rec)?.as_slice())?;
        self.ready.insert(
            q.ready(rec.visible_at_ms, rec.seq).as_slice(),
            rec.ready_entry(id).encode().as_slice(),
        )?;
        Ok(())
    }

    pub(crate) fn unready(&mut self, q: &QueueKey, rec: &MessageRecord) -> Result<(), QueueError> {
        self.ready
            .remove(q.ready(rec.visible_at_ms, rec.seq).as_slice())?;
        Ok(())
    }

    /// The message a receipt names, if the receipt is its current delivery.
    pub(crate) fn in_flight(
        &self,
        q: &QueueKey,
        receipt: &Receipt,
    ) -> Result<MessageRecord, QueueError> {
        match self.message(q, receipt.id)? {
            Some(rec) if rec.state == State::InFlight && rec.delivery == receipt.delivery => {
                Ok(rec)
            }
            _ => Err(QueueError::StaleReceipt(*receipt)),
        }
    }

    /// Deletes the message everywhere.
    pub(crate) fn delete(
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
    pub(crate) fn dead_letter(
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
