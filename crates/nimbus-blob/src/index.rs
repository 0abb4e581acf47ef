//! The metadata index in redb: containers, objects (name → file, size,
//! content type, etag) and per-tenant stored bytes, with the key encoding
//! and the quota accounting every write shares.

use std::collections::HashSet;
use std::ops::Bound;

use redb::{
    AccessGuard, Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};
use serde::{Deserialize, Serialize};

use crate::backend::{ContainerMeta, ObjectMeta};
use crate::error::BlobError;

pub(crate) const CONTAINERS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("containers");
pub(crate) const OBJECTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("objects");
/// Object bytes stored per tenant, updated in the write's transaction so it
/// is exact after any crash.
const USAGE: TableDefinition<&str, u64> = TableDefinition::new("stored_bytes");

/// Creates the index's tables, so readers never find one missing.
pub(crate) fn create_tables(tx: &WriteTransaction) -> Result<(), BlobError> {
    tx.open_table(CONTAINERS)?;
    tx.open_table(OBJECTS)?;
    tx.open_table(USAGE)?;
    Ok(())
}

#[derive(Serialize, Deserialize)]
pub(crate) struct ObjectRecord {
    pub(crate) file: String,
    pub(crate) size: u64,
    pub(crate) created_at_ms: u64,
    pub(crate) content_type: Option<String>,
    pub(crate) etag: String,
}

impl ObjectRecord {
    pub(crate) fn meta(&self, container: &str, name: &str) -> ObjectMeta {
        ObjectMeta {
            container: container.into(),
            name: name.into(),
            size: self.size,
            created_at_ms: self.created_at_ms,
            content_type: self.content_type.clone(),
            etag: self.etag.clone(),
        }
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) struct ContainerRecord {
    pub(crate) created_at_ms: u64,
}

impl ContainerRecord {
    pub(crate) fn meta(&self, name: String) -> ContainerMeta {
        ContainerMeta {
            name,
            created_at_ms: self.created_at_ms,
        }
    }
}

/// Length-prefixed tenant: a prefix of exactly that tenant's container
/// keys.
pub(crate) fn tenant_prefix(tenant: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + tenant.len());
    push_part(&mut k, tenant);
    k
}

/// Length-prefixed (tenant, container): injective, and a prefix of exactly
/// that container's object keys.
pub(crate) fn container_key(tenant: &str, container: &str) -> Vec<u8> {
    let mut k = tenant_prefix(tenant);
    push_part(&mut k, container);
    k
}

fn push_part(k: &mut Vec<u8>, part: &str) {
    k.extend_from_slice(&(part.len() as u32).to_be_bytes());
    k.extend_from_slice(part.as_bytes());
}

pub(crate) fn object_key(tenant: &str, container: &str, name: &str) -> Vec<u8> {
    let mut k = container_key(tenant, container);
    k.extend_from_slice(name.as_bytes());
    k
}

/// [`BlobError::NoSuchContainer`] unless the container exists.
pub(crate) fn require_container(
    containers: &impl ReadableTable<&'static [u8], &'static [u8]>,
    tenant: &str,
    container: &str,
) -> Result<(), BlobError> {
    if containers
        .get(container_key(tenant, container).as_slice())?
        .is_none()
    {
        return Err(BlobError::NoSuchContainer(container.into()));
    }
    Ok(())
}

pub(crate) fn read_object(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    key: &[u8],
) -> Result<Option<ObjectRecord>, BlobError> {
    decode_object(table.get(key)?)
}

/// Removes an object's record, returning it if there was one.
pub(crate) fn take_object(
    objects: &mut redb::Table<&'static [u8], &'static [u8]>,
    key: &[u8],
) -> Result<Option<ObjectRecord>, BlobError> {
    decode_object(objects.remove(key)?)
}

fn decode_object(
    value: Option<AccessGuard<'_, &'static [u8]>>,
) -> Result<Option<ObjectRecord>, BlobError> {
    Ok(value
        .map(|v| serde_json::from_slice(v.value()))
        .transpose()?)
}

/// Records that a write replaced `removed` bytes of the tenant's objects
/// with `added`. Refused, before anything changes, if that grows the total
/// past `quota`; a write that shrinks it is always allowed, so a tenant over
/// a lowered quota can still delete and overwrite its way back under.
pub(crate) fn charge(
    tx: &WriteTransaction,
    tenant: &str,
    removed: u64,
    added: u64,
    quota: Option<u64>,
) -> Result<(), BlobError> {
    let mut usage = tx.open_table(USAGE)?;
    let current = usage.get(tenant)?.map(|v| v.value()).unwrap_or(0);
    let would = current.saturating_sub(removed) + added;
    if let Some(quota) = quota
        && added > removed
        && would > quota
    {
        return Err(BlobError::QuotaExceeded {
            tenant: tenant.into(),
            would,
            quota,
        });
    }
    usage.insert(tenant, would)?;
    Ok(())
}

/// Removes the tenant's containers, objects and stored bytes in `tx`;
/// returns the files of the removed objects, for the caller to delete once
/// `tx` has committed.
pub(crate) fn forget_tenant(tx: &WriteTransaction, tenant: &str) -> Result<Vec<String>, BlobError> {
    let start = tenant_prefix(tenant);
    let end = prefix_end(&start);
    let range = || {
        let upper = end.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
        (Bound::Included(start.as_slice()), upper)
    };
    tx.open_table(CONTAINERS)?
        .retain_in::<&[u8], _>(range(), |_, _| false)?;
    let mut files = Vec::new();
    let mut bad = None;
    tx.open_table(OBJECTS)?
        .retain_in::<&[u8], _>(range(), |_, v| {
            match serde_json::from_slice::<ObjectRecord>(v) {
                Ok(rec) => files.push(rec.file),
                Err(e) => bad = Some(e),
            }
            false
        })?;
    // A record that does not decode names a file we could not delete:
    // abort rather than forget it.
    if let Some(e) = bad {
        return Err(e.into());
    }
    tx.open_table(USAGE)?.remove(tenant)?;
    Ok(files)
}

/// The first key after every key that starts with `prefix` (`None`: no
/// such key), so a range over the prefix ends where its keys do.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

pub(crate) fn stored_bytes(db: &Database, tenant: &str) -> Result<u64, BlobError> {
    let tx = db.begin_read()?;
    let usage = tx.open_table(USAGE)?;
    Ok(usage.get(tenant)?.map(|v| v.value()).unwrap_or(0))
}

/// Every file some object's metadata refers to.
pub(crate) fn live_files(db: &Database) -> Result<HashSet<String>, BlobError> {
    let tx = db.begin_read()?;
    let objects = tx.open_table(OBJECTS)?;
    let mut live = HashSet::new();
    for row in objects.iter()? {
        let (_, v) = row?;
        let rec: ObjectRecord = serde_json::from_slice(v.value())?;
        live.insert(rec.file);
    }
    Ok(live)
}
