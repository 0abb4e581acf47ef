//! What the host calls: the [`BlobBackend`] trait, the metadata it hands
//! out, and helpers that work over any backend.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::BlobError;
use crate::files::{ObjectReader, Spool};

/// A container's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerMeta {
    pub name: String,
    pub created_at_ms: u64,
}

/// An object's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub container: String,
    pub name: String,
    pub size: u64,
    pub created_at_ms: u64,
    pub content_type: Option<String>,
    /// Changes on every write of the object (the stored version's id).
    pub etag: String,
}

/// An object write waiting to be delivered to the functions subscribed to
/// its container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectCreated {
    /// Position in the outbox; [`BlobBackend::ack_event`] takes it.
    #[serde(skip)]
    pub seq: u64,
    pub tenant: String,
    pub container: String,
    pub key: String,
    pub size: u64,
    pub content_type: Option<String>,
    pub etag: String,
    pub time_ms: u64,
    /// How many object-created invocations led to this write (0 for a
    /// write that no trigger caused): the loop guard's input.
    pub depth: u32,
}

/// Where a write comes from, and whether it should raise an event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// Tenant's quota on stored object bytes.
    pub quota: Option<u64>,
    /// Persist an object-created event with the write, at this depth.
    pub event_depth: Option<u32>,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A blob backend. Methods block (they may sync to disk): call them from
/// a blocking context. Names are checked by the backend.
pub trait BlobBackend: Send + Sync + std::fmt::Debug + 'static {
    /// Creates a container; an error if it exists.
    fn create_container(&self, tenant: &str, container: &str) -> Result<ContainerMeta, BlobError>;
    /// Creates a container unless it exists.
    fn ensure_container(&self, tenant: &str, container: &str) -> Result<ContainerMeta, BlobError>;
    fn container(&self, tenant: &str, container: &str) -> Result<Option<ContainerMeta>, BlobError>;
    /// Deletes a container and every object in it.
    fn delete_container(&self, tenant: &str, container: &str) -> Result<(), BlobError>;
    fn containers(&self, tenant: &str) -> Result<Vec<ContainerMeta>, BlobError>;

    /// Starts a write for `tenant`.
    fn spool(&self, tenant: &str) -> Result<Spool, BlobError>;
    /// Makes the spooled bytes the object `container/name`, replacing any
    /// previous version, durably; with `event_depth` the object-created
    /// event is persisted in the same transaction.
    fn commit(
        &self,
        spool: Spool,
        container: &str,
        name: &str,
        content_type: Option<String>,
        options: WriteOptions,
    ) -> Result<ObjectMeta, BlobError>;
    fn head(
        &self,
        tenant: &str,
        container: &str,
        name: &str,
    ) -> Result<Option<ObjectMeta>, BlobError>;
    /// Opens bytes `start..=end` (end clamped to the last byte).
    fn open(
        &self,
        tenant: &str,
        container: &str,
        name: &str,
        start: u64,
        end: u64,
    ) -> Result<ObjectReader, BlobError>;
    /// Objects whose names start with `prefix`, after `after`, in name
    /// order, at most `limit` (capped at [`MAX_LIST_PAGE`](crate::MAX_LIST_PAGE)).
    fn list(
        &self,
        tenant: &str,
        container: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ObjectMeta>, BlobError>;
    /// Deletes an object; `false` if there was none.
    fn delete(&self, tenant: &str, container: &str, name: &str) -> Result<bool, BlobError>;
    /// Renames an object within the tenant (metadata only).
    fn rename(
        &self,
        tenant: &str,
        src: (&str, &str),
        dest: (&str, &str),
        options: WriteOptions,
    ) -> Result<(), BlobError>;
    /// Object bytes the tenant stores.
    fn stored_bytes(&self, tenant: &str) -> Result<u64, BlobError>;
    /// For deleting a tenant: its containers, objects, stored bytes and
    /// undelivered events (so no trigger runs for it). A spool committed
    /// afterwards fails as into a missing container. Returns the objects
    /// removed.
    fn delete_tenant(&self, tenant: &str) -> Result<u64, BlobError>;

    /// Undelivered object-created events, oldest first.
    fn pending_events(&self, limit: usize) -> Result<Vec<ObjectCreated>, BlobError>;
    /// Marks an event delivered (or given up on): removes it from the outbox.
    fn ack_event(&self, seq: u64) -> Result<(), BlobError>;
}

/// Copies an object through a spool (any backend).
pub fn copy_object(
    backend: &dyn BlobBackend,
    tenant: &str,
    src: (&str, &str),
    dest: (&str, &str),
    options: WriteOptions,
) -> Result<ObjectMeta, BlobError> {
    let meta = backend
        .head(tenant, src.0, src.1)?
        .ok_or_else(|| BlobError::no_such_object(src.0, src.1))?;
    if backend.container(tenant, dest.0)?.is_none() {
        return Err(BlobError::NoSuchContainer(dest.0.into()));
    }
    let mut reader = backend.open(tenant, src.0, src.1, 0, u64::MAX)?;
    let mut spool = backend.spool(tenant)?;
    loop {
        let chunk = reader.read(1 << 16)?;
        if chunk.is_empty() {
            break;
        }
        spool.write(&chunk)?;
    }
    backend.commit(spool, dest.0, dest.1, meta.content_type, options)
}
