//! The object-created outbox: events written in the same transaction as
//! the object they announce, so a committed write always has its event
//! and an aborted one never does. Delivery removes them, oldest first.

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use crate::backend::ObjectCreated;
use crate::error::BlobError;
use crate::index::ObjectRecord;

/// Object-created events not yet delivered, by sequence number.
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("object_events");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const NEXT_EVENT: &str = "next_event_seq";

pub(crate) fn create_tables(tx: &WriteTransaction) -> Result<(), BlobError> {
    tx.open_table(EVENTS)?;
    tx.open_table(META)?;
    Ok(())
}

/// With `depth`, queues the event for `rec` having been written as
/// `container/key` at `time_ms`, in the write's own transaction.
pub(crate) fn record_write(
    tx: &WriteTransaction,
    tenant: &str,
    (container, key): (&str, &str),
    rec: &ObjectRecord,
    time_ms: u64,
    depth: Option<u32>,
) -> Result<(), BlobError> {
    let Some(depth) = depth else {
        return Ok(());
    };
    let event = ObjectCreated {
        seq: 0,
        tenant: tenant.into(),
        container: container.into(),
        key: key.into(),
        size: rec.size,
        content_type: rec.content_type.clone(),
        etag: rec.etag.clone(),
        time_ms,
        depth,
    };
    let mut meta = tx.open_table(META)?;
    let seq = meta.get(NEXT_EVENT)?.map(|v| v.value()).unwrap_or(0);
    meta.insert(NEXT_EVENT, seq + 1)?;
    let mut events = tx.open_table(EVENTS)?;
    events.insert(seq, serde_json::to_vec(&event)?.as_slice())?;
    Ok(())
}

/// Drops the tenant's undelivered events in `tx`, so no trigger runs for
/// a deleted tenant; returns how many.
pub(crate) fn forget_tenant(tx: &WriteTransaction, tenant: &str) -> Result<u64, BlobError> {
    let mut events = tx.open_table(EVENTS)?;
    let mut theirs = Vec::new();
    for row in events.iter()? {
        let (k, v) = row?;
        let e: ObjectCreated = serde_json::from_slice(v.value())?;
        if e.tenant == tenant {
            theirs.push(k.value());
        }
    }
    for seq in &theirs {
        events.remove(seq)?;
    }
    Ok(theirs.len() as u64)
}

pub(crate) fn pending(db: &Database, limit: usize) -> Result<Vec<ObjectCreated>, BlobError> {
    let tx = db.begin_read()?;
    let events = tx.open_table(EVENTS)?;
    let mut out = Vec::new();
    for row in events.iter()?.take(limit) {
        let (k, v) = row?;
        let mut e: ObjectCreated = serde_json::from_slice(v.value())?;
        e.seq = k.value();
        out.push(e);
    }
    Ok(out)
}

pub(crate) fn ack(db: &Database, seq: u64) -> Result<(), BlobError> {
    let tx = db.begin_write()?;
    tx.open_table(EVENTS)?.remove(seq)?;
    tx.commit()?;
    Ok(())
}
