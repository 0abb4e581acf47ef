//! [`QueueStore`]: the queues in one redb file — opening it, transactions,
//! queue configs and sending. Its other methods are split by concern into
//! `delivery.rs`, `dead_letters.rs` and `stats.rs`, which build on the
//! transaction helpers here; the schema is in `tables.rs`.

use std::path::Path;
use std::sync::Arc;

use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    WriteTransaction,
};

use crate::keys::{QueueKey, tenant_range};
use crate::tables::{
    MessageRecord, QUEUES, QueueRecord, Tables, create_all, existing_config, from_json, get_json,
    take_seq, to_json,
};
use crate::types::{MessageId, OutgoingMessage, QueueConfig, QueueError};

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
        store.write(create_all)?;
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

    /// A durable write to a queue that must already exist
    /// ([`QueueError::UnknownQueue`] otherwise): `f` gets the transaction,
    /// the queue's config and its per-message tables.
    pub(crate) fn write_existing<R>(
        &self,
        q: &QueueKey,
        tenant: &str,
        queue: &str,
        f: impl FnOnce(&WriteTransaction, QueueConfig, &mut Tables<'_>) -> Result<R, QueueError>,
    ) -> Result<R, QueueError> {
        self.write(|txn| {
            let config = existing_config(&txn.open_table(QUEUES)?, q, tenant, queue)?;
            let mut t = Tables::open(txn)?;
            f(txn, config, &mut t)
        })
    }

    /// A read of a queue that must already exist
    /// ([`QueueError::UnknownQueue`] otherwise).
    pub(crate) fn read_existing(
        &self,
        q: &QueueKey,
        tenant: &str,
        queue: &str,
    ) -> Result<ReadTransaction, QueueError> {
        let txn = self.db.begin_read()?;
        existing_config(&txn.open_table(QUEUES)?, q, tenant, queue)?;
        Ok(txn)
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
                return Err(QueueError::TooLarge {
                    queue: queue.to_string(),
                    size,
                    limit: config.max_message_bytes,
                });
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
            let rec = MessageRecord::ready(seq, now_ms, now_ms, msg.content_type, msg.metadata);
            t.put(&q, id, &rec)
        })?;
        tracing::trace!(tenant, queue, %id, "message sent");
        Ok(id)
    }

    /// Deletes every queue of the tenant (config, messages in any state,
    /// dead letters, index rows) in one durable transaction, so no consumer
    /// sees the tenant half gone. Returns the messages removed, dead letters
    /// included.
    pub fn delete_tenant(&self, tenant: &str) -> Result<u64, QueueError> {
        let (start, end) = tenant_range(tenant)?;
        let range = start.as_slice()..end.as_slice();
        let removed = self.write(|txn| {
            let mut t = Tables::open(txn)?;
            let mut removed = 0;
            let mut count = |_: &[u8], _: &[u8]| {
                removed += 1;
                false
            };
            t.messages.retain_in(range.clone(), &mut count)?;
            t.dead.retain_in(range.clone(), &mut count)?;
            t.bodies.retain_in(range.clone(), |_, _| false)?;
            t.ready.retain_in(range.clone(), |_, _| false)?;
            txn.open_table(QUEUES)?
                .retain_in(range.clone(), |_, _| false)?;
            Ok(removed)
        })?;
        tracing::info!(tenant, removed, "queue tenant deleted");
        Ok(removed)
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
