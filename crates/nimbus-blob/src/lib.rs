//! Blob storage behind `wasi:blobstore` and the storage HTTP API, per tenant.
//!
//! [`BlobBackend`] is what the host calls; [`FsBlobs`] is the embedded
//! default. Object bytes are files named by a fresh UUID under
//! `<root>/data/<tenant>/`, opened only through a `cap_std` capability to
//! that directory: no container or object name ever becomes a path, so no
//! name can reach another tenant's files. Metadata (name → file, size,
//! content type, etag), per-tenant stored bytes and the object-created
//! outbox live in one redb database and change in one transaction.
//!
//! A write is streamed into a [`Spool`] (the future object file) and made
//! visible by [`BlobBackend::commit`]: the file is synced, then the
//! metadata transaction commits durably. A crash before the commit leaves
//! an unreferenced file, removed the next time the store opens; after it,
//! the object and (when requested) its object-created event are both
//! there — the event is persisted with the write, never after it.

use std::collections::HashSet;
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

const CONTAINERS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("containers");
const OBJECTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("objects");
/// Object bytes stored per tenant, updated in the write's transaction so it
/// is exact after any crash.
const USAGE: TableDefinition<&str, u64> = TableDefinition::new("stored_bytes");
/// Object-created events not yet delivered, by sequence number.
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("object_events");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const NEXT_EVENT: &str = "next_event_seq";

/// Longest object name, bytes (S3's limit).
pub const MAX_NAME_BYTES: usize = 1024;
/// Default largest object, bytes.
pub const DEFAULT_MAX_OBJECT_BYTES: u64 = 256 << 20;
/// Most names one listing page returns.
pub const MAX_LIST_PAGE: usize = 1000;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlobError {
    /// A bad container or object name, range or size.
    #[error("{0}")]
    Invalid(String),
    #[error("container `{0}` does not exist")]
    NoSuchContainer(String),
    #[error("container `{0}` already exists")]
    ContainerExists(String),
    #[error("object `{object}` does not exist in container `{container}`")]
    NoSuchObject { container: String, object: String },
    /// The object would be larger than the store's object size limit.
    #[error("object is over the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    /// The tenant's storage quota would be exceeded; nothing was written.
    #[error(
        "tenant `{tenant}` would store {would} bytes of objects, over its quota of {quota} bytes"
    )]
    QuotaExceeded {
        tenant: String,
        would: u64,
        quota: u64,
    },
    #[error("storage: {0}")]
    Storage(String),
}

macro_rules! storage_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for BlobError {
            fn from(e: $t) -> Self {
                BlobError::Storage(e.to_string())
            }
        }
    )*};
}
storage_errors!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    std::io::Error,
    serde_json::Error
);

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

#[derive(Serialize, Deserialize)]
struct ObjectRecord {
    file: String,
    size: u64,
    created_at_ms: u64,
    content_type: Option<String>,
    etag: String,
}

#[derive(Serialize, Deserialize)]
struct ContainerRecord {
    created_at_ms: u64,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Container names: 1–63 of `[a-z0-9._-]`, starting with a letter or digit
/// (S3's rule, minus the dots-in-a-row subtleties).
pub fn check_container_name(name: &str) -> Result<(), BlobError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(BlobError::Invalid(format!(
            "bad container name {:?}: use 1 to 63 of a-z 0-9 . _ -, starting with a letter or digit",
            truncate(name)
        )))
    }
}

/// Object names: any UTF-8 of 1 to [`MAX_NAME_BYTES`] bytes without NUL.
pub fn check_object_name(name: &str) -> Result<(), BlobError> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES || name.contains('\0') {
        return Err(BlobError::Invalid(format!(
            "bad object name {:?} ({} bytes): use 1 to {MAX_NAME_BYTES} bytes of UTF-8 without NUL",
            truncate(name),
            name.len()
        )));
    }
    Ok(())
}

fn check_tenant(tenant: &str) -> Result<(), BlobError> {
    let ok = !tenant.is_empty()
        && tenant.len() <= 63
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(BlobError::Invalid(format!(
            "bad tenant name {:?}",
            truncate(tenant)
        )))
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

/// Length-prefixed (tenant, container): injective, and a prefix of exactly
/// that container's object keys.
fn container_key(tenant: &str, container: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + tenant.len() + container.len());
    for part in [tenant, container] {
        k.extend_from_slice(&(part.len() as u32).to_be_bytes());
        k.extend_from_slice(part.as_bytes());
    }
    k
}

fn object_key(tenant: &str, container: &str, name: &str) -> Vec<u8> {
    let mut k = container_key(tenant, container);
    k.extend_from_slice(name.as_bytes());
    k
}

/// Bytes being written as a future object: a file in the tenant's blob
/// directory that no metadata refers to yet. Dropping it uncommitted
/// removes the file.
#[derive(Debug)]
pub struct Spool {
    dir: Arc<Dir>,
    file_name: String,
    file: Option<std::fs::File>,
    written: u64,
    limit: u64,
    tenant: String,
}

impl Spool {
    /// Appends bytes; fails (and keeps failing) past the object size limit.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), BlobError> {
        let next = self.written + bytes.len() as u64;
        if next > self.limit {
            return Err(BlobError::TooLarge { limit: self.limit });
        }
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| BlobError::Storage("spool already committed".into()))?;
        file.write_all(bytes)?;
        self.written = next;
        Ok(())
    }

    pub fn len(&self) -> u64 {
        self.written
    }

    pub fn is_empty(&self) -> bool {
        self.written == 0
    }

    pub fn tenant(&self) -> &str {
        &self.tenant
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = self.dir.remove_file(&self.file_name);
        }
    }
}

/// A byte range of one stored object, open for reading. It holds the
/// object's file open, so it reads the version it was opened on even if
/// the object is replaced or deleted meanwhile.
#[derive(Debug)]
pub struct ObjectReader {
    file: std::fs::File,
    remaining: u64,
    size: u64,
}

impl ObjectReader {
    /// Size of the whole object.
    pub fn object_size(&self) -> u64 {
        self.size
    }

    /// Bytes left in the range.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Up to `max` next bytes; empty at the end of the range.
    pub fn read(&mut self, max: usize) -> Result<Vec<u8>, BlobError> {
        let n = (max as u64).min(self.remaining) as usize;
        let mut buf = vec![0; n];
        let mut filled = 0;
        while filled < n {
            let got = self.file.read(&mut buf[filled..])?;
            if got == 0 {
                return Err(BlobError::Storage(
                    "object file is shorter than its recorded size".into(),
                ));
            }
            filled += got;
        }
        self.remaining -= n as u64;
        Ok(buf)
    }

    /// Skips up to `n` bytes; returns how many were skipped.
    pub fn skip(&mut self, n: u64) -> Result<u64, BlobError> {
        let n = n.min(self.remaining);
        self.file.seek(SeekFrom::Current(n as i64))?;
        self.remaining -= n;
        Ok(n)
    }
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
    /// order, at most `limit` (capped at [`MAX_LIST_PAGE`]).
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
        .ok_or_else(|| BlobError::NoSuchObject {
            container: src.0.into(),
            object: src.1.into(),
        })?;
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

/// The embedded default: files through cap-std, metadata in redb.
#[derive(Debug, Clone)]
pub struct FsBlobs {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Database,
    data: Dir,
    max_object_bytes: u64,
    /// One capability per tenant directory, opened once.
    tenants: std::sync::Mutex<std::collections::HashMap<String, Arc<Dir>>>,
}

impl FsBlobs {
    /// Opens (creating) the store under `root`, removing files a crash left
    /// unreferenced.
    pub fn open(root: &Path) -> Result<Self, BlobError> {
        Self::open_with_limit(root, DEFAULT_MAX_OBJECT_BYTES)
    }

    pub fn open_with_limit(root: &Path, max_object_bytes: u64) -> Result<Self, BlobError> {
        std::fs::create_dir_all(root.join("data"))?;
        let db = Database::create(root.join("blobs.redb"))?;
        {
            let tx = db.begin_write()?;
            tx.open_table(CONTAINERS)?;
            tx.open_table(OBJECTS)?;
            tx.open_table(USAGE)?;
            tx.open_table(EVENTS)?;
            tx.open_table(META)?;
            tx.commit()?;
        }
        let data = Dir::open_ambient_dir(root.join("data"), ambient_authority())?;
        let blobs = FsBlobs {
            inner: Arc::new(Inner {
                db,
                data,
                max_object_bytes,
                tenants: Default::default(),
            }),
        };
        blobs.sweep()?;
        Ok(blobs)
    }

    fn tenant_dir(&self, tenant: &str) -> Result<Arc<Dir>, BlobError> {
        check_tenant(tenant)?;
        let mut dirs = self
            .inner
            .tenants
            .lock()
            .map_err(|_| BlobError::Storage("tenant directory cache poisoned".into()))?;
        if let Some(d) = dirs.get(tenant) {
            return Ok(d.clone());
        }
        self.inner.data.create_dir_all(tenant)?;
        let d = Arc::new(self.inner.data.open_dir(tenant)?);
        dirs.insert(tenant.to_string(), d.clone());
        Ok(d)
    }

    /// Removes object files no metadata refers to (writes a crash cut off).
    fn sweep(&self) -> Result<(), BlobError> {
        let tx = self.inner.db.begin_read()?;
        let objects = tx.open_table(OBJECTS)?;
        let mut live = HashSet::new();
        for row in objects.iter()? {
            let (_, v) = row?;
            let rec: ObjectRecord = serde_json::from_slice(v.value())?;
            live.insert(rec.file);
        }
        drop(objects);
        drop(tx);
        for entry in self.inner.data.entries()? {
            let entry = entry?;
            let Ok(tenant) = entry.file_name().into_string() else {
                continue;
            };
            // Not a tenant's directory (e.g. `lost+found`): not ours to sweep.
            if !entry.file_type()?.is_dir() || check_tenant(&tenant).is_err() {
                continue;
            }
            let dir = self.tenant_dir(&tenant)?;
            for file in dir.entries()? {
                let file = file?;
                let name = file.file_name().to_string_lossy().into_owned();
                if !live.contains(&name) {
                    tracing::info!(tenant, file = name, "removing unreferenced blob file");
                    dir.remove_file(&name)?;
                }
            }
        }
        Ok(())
    }

    fn read_object(
        table: &impl ReadableTable<&'static [u8], &'static [u8]>,
        key: &[u8],
    ) -> Result<Option<ObjectRecord>, BlobError> {
        match table.get(key)? {
            Some(v) => Ok(Some(serde_json::from_slice(v.value())?)),
            None => Ok(None),
        }
    }

    fn meta(container: &str, name: &str, rec: &ObjectRecord) -> ObjectMeta {
        ObjectMeta {
            container: container.into(),
            name: name.into(),
            size: rec.size,
            created_at_ms: rec.created_at_ms,
            content_type: rec.content_type.clone(),
            etag: rec.etag.clone(),
        }
    }

    fn remove_files(&self, tenant: &str, files: &[String]) {
        if files.is_empty() {
            return;
        }
        if let Ok(dir) = self.tenant_dir(tenant) {
            for f in files {
                // A leftover file is reclaimed by the sweep at next open.
                if let Err(e) = dir.remove_file(f) {
                    tracing::warn!(tenant, file = %f, error = %e, "could not remove replaced blob file");
                }
            }
        }
    }

    fn push_event(tx: &redb::WriteTransaction, event: &ObjectCreated) -> Result<(), BlobError> {
        let mut meta = tx.open_table(META)?;
        let seq = meta.get(NEXT_EVENT)?.map(|v| v.value()).unwrap_or(0);
        meta.insert(NEXT_EVENT, seq + 1)?;
        let mut events = tx.open_table(EVENTS)?;
        events.insert(seq, serde_json::to_vec(event)?.as_slice())?;
        Ok(())
    }

    fn sync_dir(dir: &Dir) -> Result<(), BlobError> {
        // The new file's directory entry must be durable before metadata
        // points at it.
        dir.open(".")?.into_std().sync_all()?;
        Ok(())
    }
}

fn usage_after(
    usage: &redb::Table<&str, u64>,
    tenant: &str,
    removed: u64,
    added: u64,
    quota: Option<u64>,
) -> Result<u64, BlobError> {
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
    Ok(would)
}

impl BlobBackend for FsBlobs {
    fn create_container(&self, tenant: &str, container: &str) -> Result<ContainerMeta, BlobError> {
        check_tenant(tenant)?;
        check_container_name(container)?;
        let tx = self.inner.db.begin_write()?;
        let created_at_ms = now_ms();
        {
            let mut t = tx.open_table(CONTAINERS)?;
            let key = container_key(tenant, container);
            if t.get(key.as_slice())?.is_some() {
                return Err(BlobError::ContainerExists(container.into()));
            }
            let rec = serde_json::to_vec(&ContainerRecord { created_at_ms })?;
            t.insert(key.as_slice(), rec.as_slice())?;
        }
        tx.commit()?;
        Ok(ContainerMeta {
            name: container.into(),
            created_at_ms,
        })
    }

    fn ensure_container(&self, tenant: &str, container: &str) -> Result<ContainerMeta, BlobError> {
        match self.container(tenant, container)? {
            Some(c) => Ok(c),
            None => match self.create_container(tenant, container) {
                Err(BlobError::ContainerExists(_)) => self
                    .container(tenant, container)?
                    .ok_or_else(|| BlobError::NoSuchContainer(container.into())),
                other => other,
            },
        }
    }

    fn container(&self, tenant: &str, container: &str) -> Result<Option<ContainerMeta>, BlobError> {
        check_container_name(container)?;
        let tx = self.inner.db.begin_read()?;
        let t = tx.open_table(CONTAINERS)?;
        Ok(match t.get(container_key(tenant, container).as_slice())? {
            Some(v) => {
                let rec: ContainerRecord = serde_json::from_slice(v.value())?;
                Some(ContainerMeta {
                    name: container.into(),
                    created_at_ms: rec.created_at_ms,
                })
            }
            None => None,
        })
    }

    fn delete_container(&self, tenant: &str, container: &str) -> Result<(), BlobError> {
        check_container_name(container)?;
        let ckey = container_key(tenant, container);
        let tx = self.inner.db.begin_write()?;
        let mut files = Vec::new();
        {
            let mut containers = tx.open_table(CONTAINERS)?;
            if containers.remove(ckey.as_slice())?.is_none() {
                return Err(BlobError::NoSuchContainer(container.into()));
            }
            let mut objects = tx.open_table(OBJECTS)?;
            let mut keys = Vec::new();
            let mut freed = 0;
            for row in objects.range(ckey.as_slice()..)? {
                let (k, v) = row?;
                if !k.value().starts_with(&ckey) {
                    break;
                }
                let rec: ObjectRecord = serde_json::from_slice(v.value())?;
                freed += rec.size;
                files.push(rec.file);
                keys.push(k.value().to_vec());
            }
            for k in keys {
                objects.remove(k.as_slice())?;
            }
            let mut usage = tx.open_table(USAGE)?;
            let left = usage_after(&usage, tenant, freed, 0, None)?;
            usage.insert(tenant, left)?;
        }
        tx.commit()?;
        self.remove_files(tenant, &files);
        Ok(())
    }

    fn containers(&self, tenant: &str) -> Result<Vec<ContainerMeta>, BlobError> {
        let mut prefix = (tenant.len() as u32).to_be_bytes().to_vec();
        prefix.extend_from_slice(tenant.as_bytes());
        let tx = self.inner.db.begin_read()?;
        let t = tx.open_table(CONTAINERS)?;
        let mut out = Vec::new();
        for row in t.range(prefix.as_slice()..)? {
            let (k, v) = row?;
            let k = k.value();
            if !k.starts_with(&prefix) {
                break;
            }
            let name = String::from_utf8_lossy(&k[prefix.len() + 4..]).into_owned();
            let rec: ContainerRecord = serde_json::from_slice(v.value())?;
            out.push(ContainerMeta {
                name,
                created_at_ms: rec.created_at_ms,
            });
        }
        Ok(out)
    }

    fn spool(&self, tenant: &str) -> Result<Spool, BlobError> {
        let dir = self.tenant_dir(tenant)?;
        let file_name = uuid::Uuid::now_v7().simple().to_string();
        let file = dir.create(&file_name)?.into_std();
        Ok(Spool {
            dir,
            file_name,
            file: Some(file),
            written: 0,
            limit: self.inner.max_object_bytes,
            tenant: tenant.into(),
        })
    }

    fn commit(
        &self,
        mut spool: Spool,
        container: &str,
        name: &str,
        content_type: Option<String>,
        options: WriteOptions,
    ) -> Result<ObjectMeta, BlobError> {
        check_container_name(container)?;
        check_object_name(name)?;
        let tenant = spool.tenant.clone();
        if let Some(file) = spool.file.as_mut() {
            file.flush()?;
            file.sync_all()?;
        }
        Self::sync_dir(&spool.dir)?;
        let rec = ObjectRecord {
            file: spool.file_name.clone(),
            size: spool.written,
            created_at_ms: now_ms(),
            content_type,
            etag: spool.file_name.clone(),
        };
        let key = object_key(&tenant, container, name);
        let tx = self.inner.db.begin_write()?;
        let replaced;
        {
            let containers = tx.open_table(CONTAINERS)?;
            if containers
                .get(container_key(&tenant, container).as_slice())?
                .is_none()
            {
                return Err(BlobError::NoSuchContainer(container.into()));
            }
            let mut objects = tx.open_table(OBJECTS)?;
            let old = Self::read_object(&objects, &key)?;
            let mut usage = tx.open_table(USAGE)?;
            let total = usage_after(
                &usage,
                &tenant,
                old.as_ref().map_or(0, |o| o.size),
                rec.size,
                options.quota,
            )?;
            usage.insert(tenant.as_str(), total)?;
            objects.insert(key.as_slice(), serde_json::to_vec(&rec)?.as_slice())?;
            replaced = old.map(|o| o.file);
            if let Some(depth) = options.event_depth {
                Self::push_event(
                    &tx,
                    &ObjectCreated {
                        seq: 0,
                        tenant: tenant.clone(),
                        container: container.into(),
                        key: name.into(),
                        size: rec.size,
                        content_type: rec.content_type.clone(),
                        etag: rec.etag.clone(),
                        time_ms: rec.created_at_ms,
                        depth,
                    },
                )?;
            }
        }
        tx.commit()?;
        // The file now belongs to the object: the spool must not remove it.
        spool.file = None;
        self.remove_files(&tenant, &replaced.into_iter().collect::<Vec<_>>());
        Ok(Self::meta(container, name, &rec))
    }

    fn head(
        &self,
        tenant: &str,
        container: &str,
        name: &str,
    ) -> Result<Option<ObjectMeta>, BlobError> {
        check_container_name(container)?;
        check_object_name(name)?;
        let tx = self.inner.db.begin_read()?;
        let objects = tx.open_table(OBJECTS)?;
        Ok(
            Self::read_object(&objects, &object_key(tenant, container, name))?
                .map(|rec| Self::meta(container, name, &rec)),
        )
    }

    fn open(
        &self,
        tenant: &str,
        container: &str,
        name: &str,
        start: u64,
        end: u64,
    ) -> Result<ObjectReader, BlobError> {
        check_container_name(container)?;
        check_object_name(name)?;
        let rec = {
            let tx = self.inner.db.begin_read()?;
            let objects = tx.open_table(OBJECTS)?;
            Self::read_object(&objects, &object_key(tenant, container, name))?
        };
        let Some(rec) = rec else {
            if self.container(tenant, container)?.is_none() {
                return Err(BlobError::NoSuchContainer(container.into()));
            }
            return Err(BlobError::NoSuchObject {
                container: container.into(),
                object: name.into(),
            });
        };
        let len = if rec.size == 0 {
            0
        } else {
            if start >= rec.size {
                return Err(BlobError::Invalid(format!(
                    "start offset {start} is past the end of `{name}` ({} bytes)",
                    rec.size
                )));
            }
            let end = end.min(rec.size - 1);
            if end < start {
                return Err(BlobError::Invalid(format!(
                    "end offset {end} is before start offset {start}"
                )));
            }
            end - start + 1
        };
        let dir = self.tenant_dir(tenant)?;
        let mut file = dir.open(&rec.file)?.into_std();
        file.seek(SeekFrom::Start(start.min(rec.size)))?;
        Ok(ObjectReader {
            file,
            remaining: len,
            size: rec.size,
        })
    }

    fn list(
        &self,
        tenant: &str,
        container: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ObjectMeta>, BlobError> {
        check_container_name(container)?;
        let ckey = container_key(tenant, container);
        let mut start = ckey.clone();
        start.extend_from_slice(prefix.as_bytes());
        let lower = match after {
            Some(after) if after.as_bytes() >= prefix.as_bytes() => {
                Bound::Excluded(object_key(tenant, container, after))
            }
            _ => Bound::Included(start.clone()),
        };
        let tx = self.inner.db.begin_read()?;
        if tx.open_table(CONTAINERS)?.get(ckey.as_slice())?.is_none() {
            return Err(BlobError::NoSuchContainer(container.into()));
        }
        let objects = tx.open_table(OBJECTS)?;
        let lower = match &lower {
            Bound::Included(k) => Bound::Included(k.as_slice()),
            Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
            Bound::Unbounded => Bound::Unbounded,
        };
        let mut out = Vec::new();
        for row in objects.range::<&[u8]>((lower, Bound::Unbounded))? {
            if out.len() >= limit.min(MAX_LIST_PAGE) {
                break;
            }
            let (k, v) = row?;
            let k = k.value();
            if !k.starts_with(&start) {
                break;
            }
            let name = String::from_utf8_lossy(&k[ckey.len()..]).into_owned();
            let rec: ObjectRecord = serde_json::from_slice(v.value())?;
            out.push(Self::meta(container, &name, &rec));
        }
        Ok(out)
    }

    fn delete(&self, tenant: &str, container: &str, name: &str) -> Result<bool, BlobError> {
        check_container_name(container)?;
        check_object_name(name)?;
        let key = object_key(tenant, container, name);
        let tx = self.inner.db.begin_write()?;
        let removed;
        {
            if tx
                .open_table(CONTAINERS)?
                .get(container_key(tenant, container).as_slice())?
                .is_none()
            {
                return Err(BlobError::NoSuchContainer(container.into()));
            }
            let mut objects = tx.open_table(OBJECTS)?;
            removed = match objects.remove(key.as_slice())? {
                Some(v) => Some(serde_json::from_slice::<ObjectRecord>(v.value())?),
                None => None,
            };
            if let Some(rec) = &removed {
                let mut usage = tx.open_table(USAGE)?;
                let left = usage_after(&usage, tenant, rec.size, 0, None)?;
                usage.insert(tenant, left)?;
            }
        }
        tx.commit()?;
        let existed = removed.is_some();
        self.remove_files(
            tenant,
            &removed.map(|r| r.file).into_iter().collect::<Vec<_>>(),
        );
        Ok(existed)
    }

    fn rename(
        &self,
        tenant: &str,
        src: (&str, &str),
        dest: (&str, &str),
        options: WriteOptions,
    ) -> Result<(), BlobError> {
        for (c, n) in [src, dest] {
            check_container_name(c)?;
            check_object_name(n)?;
        }
        if src == dest {
            return Ok(());
        }
        let tx = self.inner.db.begin_write()?;
        let replaced;
        {
            let containers = tx.open_table(CONTAINERS)?;
            for c in [src.0, dest.0] {
                if containers
                    .get(container_key(tenant, c).as_slice())?
                    .is_none()
                {
                    return Err(BlobError::NoSuchContainer(c.into()));
                }
            }
            let mut objects = tx.open_table(OBJECTS)?;
            let rec = match objects.remove(object_key(tenant, src.0, src.1).as_slice())? {
                Some(v) => serde_json::from_slice::<ObjectRecord>(v.value())?,
                None => {
                    return Err(BlobError::NoSuchObject {
                        container: src.0.into(),
                        object: src.1.into(),
                    });
                }
            };
            let dkey = object_key(tenant, dest.0, dest.1);
            let old = Self::read_object(&objects, &dkey)?;
            if let Some(old) = &old {
                let mut usage = tx.open_table(USAGE)?;
                let left = usage_after(&usage, tenant, old.size, 0, None)?;
                usage.insert(tenant, left)?;
            }
            objects.insert(dkey.as_slice(), serde_json::to_vec(&rec)?.as_slice())?;
            if let Some(depth) = options.event_depth {
                Self::push_event(
                    &tx,
                    &ObjectCreated {
                        seq: 0,
                        tenant: tenant.into(),
                        container: dest.0.into(),
                        key: dest.1.into(),
                        size: rec.size,
                        content_type: rec.content_type.clone(),
                        etag: rec.etag.clone(),
                        time_ms: now_ms(),
                        depth,
                    },
                )?;
            }
            replaced = old.map(|o| o.file);
        }
        tx.commit()?;
        self.remove_files(tenant, &replaced.into_iter().collect::<Vec<_>>());
        Ok(())
    }

    fn stored_bytes(&self, tenant: &str) -> Result<u64, BlobError> {
        let tx = self.inner.db.begin_read()?;
        let usage = tx.open_table(USAGE)?;
        Ok(usage.get(tenant)?.map(|v| v.value()).unwrap_or(0))
    }

    fn pending_events(&self, limit: usize) -> Result<Vec<ObjectCreated>, BlobError> {
        let tx = self.inner.db.begin_read()?;
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

    fn ack_event(&self, seq: u64) -> Result<(), BlobError> {
        let tx = self.inner.db.begin_write()?;
        tx.open_table(EVENTS)?.remove(seq)?;
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(b: &FsBlobs, t: &str, c: &str, n: &str, data: &[u8]) -> ObjectMeta {
        let mut s = b.spool(t).unwrap();
        s.write(data).unwrap();
        b.commit(s, c, n, Some("text/plain".into()), WriteOptions::default())
            .unwrap()
    }

    fn get(b: &FsBlobs, t: &str, c: &str, n: &str) -> Vec<u8> {
        let mut r = b.open(t, c, n, 0, u64::MAX).unwrap();
        let mut out = Vec::new();
        loop {
            let chunk = r.read(7).unwrap();
            if chunk.is_empty() {
                return out;
            }
            out.extend(chunk);
        }
    }

    fn files(root: &Path, tenant: &str) -> usize {
        std::fs::read_dir(root.join("data").join(tenant))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    #[test]
    fn round_trip_ranges_and_replace() {
        let dir = tempfile::tempdir().unwrap();
        let b = FsBlobs::open(dir.path()).unwrap();
        b.create_container("a", "pics").unwrap();
        let m1 = put(&b, "a", "pics", "x/y.txt", b"hello world");
        assert_eq!(m1.size, 11);
        assert_eq!(get(&b, "a", "pics", "x/y.txt"), b"hello world");
        let mut r = b.open("a", "pics", "x/y.txt", 6, 8).unwrap();
        assert_eq!(r.read(100).unwrap(), b"wor");
        assert!(b.open("a", "pics", "x/y.txt", 11, 20).is_err());
        let m2 = put(&b, "a", "pics", "x/y.txt", b"bye");
        assert_ne!(m1.etag, m2.etag);
        assert_eq!(get(&b, "a", "pics", "x/y.txt"), b"bye");
        assert_eq!(b.stored_bytes("a").unwrap(), 3);
        // The replaced version's file is gone.
        assert_eq!(files(dir.path(), "a"), 1);
    }

    #[test]
    fn reader_keeps_its_version() {
        let dir = tempfile::tempdir().unwrap();
        let b = FsBlobs::open(dir.path()).unwrap();
        b.create_container("a", "c").unwrap();
        put(&b, "a", "c", "k", b"first");
        let mut r = b.open("a", "c", "k", 0, u64::MAX).unwrap();
        assert!(b.delete("a", "c", "k").unwrap());
        assert_eq!(r.read(100).unwrap(), b"first");
        assert!(!b.delete("a", "c", "k").unwrap());
        assert!(matches!(
            b.open("a", "c", "k", 0, 1),
            Err(BlobError::NoSuchObject { .. })
        ));
    }

    #[test]
    fn tenants_and_containers_are_separate() {
        let dir = tempfile::tempdir().unwrap();
        let b = FsBlobs::open(dir.path()).unwrap();
        b.create_container("a", "bc").unwrap();
        b.create_container("ab", "c").unwrap();
        put(&b, "a", "bc", "k", b"tenant a");
        assert!(b.head("ab", "c", "k").unwrap().is_none());
        assert!(b.list("ab", "c", "", None, 10).unwrap().is_empty());
        assert!(matches!(
            b.open("b", "bc", "k", 0, 1),
            Err(BlobError::NoSuchContainer(_))
        ));
        assert!(b.spool("../a").is_err());
        assert!(check_container_name("../x").is_err());
        assert!(check_container_name("Up").is_err());
        assert_eq!(b.containers("a").unwrap().len(), 1);
        assert_eq!(b.containers("ab").unwrap()[0].name, "c");
    }

    #[test]
    fn listing_pages_and_prefixes() {
        let dir = tempfile::tempdir().unwrap();
        let b = FsBlobs::open(dir.path()).unwrap();
        b.create_container("a", "c").unwrap();
        for n in ["a/1", "a/2", "a/3", "b/1", "ab"] {
            put(&b, "a", "c", n, n.as_bytes());
        }
        let names = |v: Vec<ObjectMeta>| v.into_iter().map(|m| m.name).collect::<Vec<_>>();
        assert_eq!(
            names(b.list("a", "c", "a/", None, 10).unwrap()),
            ["a/1", "a/2", "a/3"]
        );
        assert_eq!(
            names(b.list("a", "c", "a/", Some("a/1"), 1).unwrap()),
            ["a/2"]
        );
        assert_eq!(
            names(b.list("a", "c", "", Some("a/3"), 10).unwrap()),
            ["ab", "b/1"]
        );
    }

    #[test]
    fn quota_and_size_limit_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let b = FsBlobs::open_with_limit(dir.path(), 10).unwrap();
        b.create_container("a", "c").unwrap();
        let mut s = b.spool("a").unwrap();
        assert!(matches!(
            s.write(&[0; 11]),
            Err(BlobError::TooLarge { limit: 10 })
        ));
        drop(s);
        let mut s = b.spool("a").unwrap();
        s.write(&[1; 8]).unwrap();
        let opts = WriteOptions {
            quota: Some(5),
            event_depth: Some(0),
        };
        assert!(matches!(
            b.commit(s, "c", "k", None, opts),
            Err(BlobError::QuotaExceeded { .. })
        ));
        assert!(b.head("a", "c", "k").unwrap().is_none());
        assert!(b.pending_events(10).unwrap().is_empty());
        assert_eq!(files(dir.path(), "a"), 0);
        assert_eq!(b.stored_bytes("a").unwrap(), 0);
    }

    #[test]
    fn events_persist_with_the_write_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let b = FsBlobs::open(dir.path()).unwrap();
            b.create_container("a", "up").unwrap();
            let mut s = b.spool("a").unwrap();
            s.write(b"img").unwrap();
            b.commit(
                s,
                "up",
                "p.png",
                Some("image/png".into()),
                WriteOptions {
                    quota: None,
                    event_depth: Some(2),
                },
            )
            .unwrap();
            put(&b, "a", "up", "quiet", b"no event");
            // An uncommitted spool left behind by a "crash".
            let mut s = b.spool("a").unwrap();
            s.write(b"partial").unwrap();
            std::mem::forget(s);
            assert_eq!(files(dir.path(), "a"), 3);
        }
        std::fs::create_dir_all(dir.path().join("data/lost+found")).unwrap();
        let b = FsBlobs::open(dir.path()).unwrap();
        assert_eq!(files(dir.path(), "a"), 2, "the orphan was swept");
        let ev = b.pending_events(10).unwrap();
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].key, "p.png");
        assert_eq!(ev[0].size, 3);
        assert_eq!(ev[0].depth, 2);
        assert_eq!(ev[0].content_type.as_deref(), Some("image/png"));
        b.ack_event(ev[0].seq).unwrap();
        assert!(b.pending_events(10).unwrap().is_empty());
        assert_eq!(get(&b, "a", "up", "p.png"), b"img");
    }

    #[test]
    fn copy_rename_and_delete_container() {
        let dir = tempfile::tempdir().unwrap();
        let b = FsBlobs::open(dir.path()).unwrap();
        b.create_container("a", "c1").unwrap();
        b.create_container("a", "c2").unwrap();
        put(&b, "a", "c1", "k", b"data");
        copy_object(&b, "a", ("c1", "k"), ("c2", "k2"), WriteOptions::default()).unwrap();
        assert_eq!(get(&b, "a", "c2", "k2"), b"data");
        b.rename("a", ("c2", "k2"), ("c1", "moved"), WriteOptions::default())
            .unwrap();
        assert!(b.head("a", "c2", "k2").unwrap().is_none());
        assert_eq!(get(&b, "a", "c1", "moved"), b"data");
        assert_eq!(b.stored_bytes("a").unwrap(), 8);
        assert!(matches!(
            b.create_container("a", "c1"),
            Err(BlobError::ContainerExists(_))
        ));
        b.delete_container("a", "c1").unwrap();
        assert_eq!(b.stored_bytes("a").unwrap(), 0);
        assert_eq!(files(dir.path(), "a"), 0);
        assert!(b.container("a", "c1").unwrap().is_none());
    }
}
