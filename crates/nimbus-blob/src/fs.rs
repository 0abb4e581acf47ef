//! [`FsBlobs`], the embedded default backend: it ties the object files to
//! the metadata index, one durable redb transaction per change.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable};

use crate::backend::{BlobBackend, ContainerMeta, ObjectCreated, ObjectMeta, WriteOptions, now_ms};
use crate::error::BlobError;
use crate::files::{ObjectFiles, ObjectReader, Spool};
use crate::index::{
    CONTAINERS, ContainerRecord, OBJECTS, ObjectRecord, charge, container_key, object_key,
    read_object, require_container, take_object,
};
use crate::names::{check_container_name, check_names, check_tenant};
use crate::{index, listing, outbox};

/// Default largest object, bytes.
pub const DEFAULT_MAX_OBJECT_BYTES: u64 = 256 << 20;

/// The embedded default: files through cap-std, metadata in redb.
#[derive(Debug, Clone)]
pub struct FsBlobs {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Database,
    files: ObjectFiles,
    max_object_bytes: u64,
}

impl FsBlobs {
    /// Opens (creating) the store under `root`, removing files a crash left
    /// unreferenced.
    pub fn open(root: &Path) -> Result<Self, BlobError> {
        Self::open_with_limit(root, DEFAULT_MAX_OBJECT_BYTES)
    }

    pub fn open_with_limit(root: &Path, max_object_bytes: u64) -> Result<Self, BlobError> {
        let files = ObjectFiles::open(&root.join("data"))?;
        let db = Database::create(root.join("blobs.redb"))?;
        {
            let tx = db.begin_write()?;
            index::create_tables(&tx)?;
            outbox::create_tables(&tx)?;
            tx.commit()?;
        }
        files.sweep(&index::live_files(&db)?)?;
        Ok(FsBlobs {
            inner: Arc::new(Inner {
                db,
                files,
                max_object_bytes,
            }),
        })
    }

    fn db(&self) -> &Database {
        &self.inner.db
    }
}

impl BlobBackend for FsBlobs {
    fn create_container(&self, tenant: &str, container: &str) -> Result<ContainerMeta, BlobError> {
        check_tenant(tenant)?;
        check_container_name(container)?;
        let tx = self.db().begin_write()?;
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
        let tx = self.db().begin_read()?;
        let t = tx.open_table(CONTAINERS)?;
        Ok(match t.get(container_key(tenant, container).as_slice())? {
            Some(v) => {
                let rec: ContainerRecord = serde_json::from_slice(v.value())?;
                Some(rec.meta(container.into()))
            }
            None => None,
        })
    }

    fn delete_container(&self, tenant: &str, container: &str) -> Result<(), BlobError> {
        check_container_name(container)?;
        let ckey = container_key(tenant, container);
        let tx = self.db().begin_write()?;
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
            charge(&tx, tenant, freed, 0, None)?;
        }
        tx.commit()?;
        self.inner.files.remove(tenant, &files);
        Ok(())
    }

    fn containers(&self, tenant: &str) -> Result<Vec<ContainerMeta>, BlobError> {
        listing::containers(self.db(), tenant)
    }

    fn spool(&self, tenant: &str) -> Result<Spool, BlobError> {
        self.inner.files.spool(tenant, self.inner.max_object_bytes)
    }

    fn commit(
        &self,
        mut spool: Spool,
        container: &str,
        name: &str,
        content_type: Option<String>,
        options: WriteOptions,
    ) -> Result<ObjectMeta, BlobError> {
        check_names(container, name)?;
        let tenant = spool.tenant().to_string();
        spool.sync()?;
        let rec = ObjectRecord {
            file: spool.file_name().into(),
            size: spool.len(),
            created_at_ms: now_ms(),
            content_type,
            etag: spool.file_name().into(),
        };
        let key = object_key(&tenant, container, name);
        let tx = self.db().begin_write()?;
        let replaced;
        {
            require_container(&tx.open_table(CONTAINERS)?, &tenant, container)?;
            let mut objects = tx.open_table(OBJECTS)?;
            let old = read_object(&objects, &key)?;
            let old_size = old.as_ref().map_or(0, |o| o.size);
            charge(&tx, &tenant, old_size, rec.size, options.quota)?;
            objects.insert(key.as_slice(), serde_json::to_vec(&rec)?.as_slice())?;
            replaced = old.map(|o| o.file);
            let at = (container, name);
            outbox::record_write(
                &tx,
                &tenant,
                at,
                &rec,
                rec.created_at_ms,
                options.event_depth,
            )?;
        }
        tx.commit()?;
        spool.keep();
        self.inner.files.remove(&tenant, replaced.as_slice());
        Ok(rec.meta(container, name))
    }

    fn head(
        &self,
        tenant: &str,
        container: &str,
        name: &str,
    ) -> Result<Option<ObjectMeta>, BlobError> {
        check_names(container, name)?;
        let tx = self.db().begin_read()?;
        let objects = tx.open_table(OBJECTS)?;
        Ok(read_object(&objects, &object_key(tenant, container, name))?
            .map(|rec| rec.meta(container, name)))
    }

    fn open(
        &self,
        tenant: &str,
        container: &str,
        name: &str,
        start: u64,
        end: u64,
    ) -> Result<ObjectReader, BlobError> {
        check_names(container, name)?;
        let rec = {
            let tx = self.db().begin_read()?;
            let objects = tx.open_table(OBJECTS)?;
            read_object(&objects, &object_key(tenant, container, name))?
        };
        let Some(rec) = rec else {
            if self.container(tenant, container)?.is_none() {
                return Err(BlobError::NoSuchContainer(container.into()));
            }
            return Err(BlobError::no_such_object(container, name));
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
        self.inner
            .files
            .reader(tenant, &rec.file, start, len, rec.size)
    }

    fn list(
        &self,
        tenant: &str,
        container: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ObjectMeta>, BlobError> {
        listing::objects(self.db(), tenant, container, prefix, after, limit)
    }

    fn delete(&self, tenant: &str, container: &str, name: &str) -> Result<bool, BlobError> {
        check_names(container, name)?;
        let key = object_key(tenant, container, name);
        let tx = self.db().begin_write()?;
        let removed;
        {
            require_container(&tx.open_table(CONTAINERS)?, tenant, container)?;
            let mut objects = tx.open_table(OBJECTS)?;
            removed = take_object(&mut objects, &key)?;
            if let Some(rec) = &removed {
                charge(&tx, tenant, rec.size, 0, None)?;
            }
        }
        tx.commit()?;
        let removed = removed.map(|rec| rec.file);
        self.inner.files.remove(tenant, removed.as_slice());
        Ok(removed.is_some())
    }

    fn rename(
        &self,
        tenant: &str,
        src: (&str, &str),
        dest: (&str, &str),
        options: WriteOptions,
    ) -> Result<(), BlobError> {
        for (c, n) in [src, dest] {
            check_names(c, n)?;
        }
        if src == dest {
            return Ok(());
        }
        let tx = self.db().begin_write()?;
        let replaced;
        {
            let containers = tx.open_table(CONTAINERS)?;
            for c in [src.0, dest.0] {
                require_container(&containers, tenant, c)?;
            }
            let mut objects = tx.open_table(OBJECTS)?;
            let rec = take_object(&mut objects, &object_key(tenant, src.0, src.1))?
                .ok_or_else(|| BlobError::no_such_object(src.0, src.1))?;
            let dkey = object_key(tenant, dest.0, dest.1);
            let old = read_object(&objects, &dkey)?;
            if let Some(old) = &old {
                charge(&tx, tenant, old.size, 0, None)?;
            }
            objects.insert(dkey.as_slice(), serde_json::to_vec(&rec)?.as_slice())?;
            outbox::record_write(&tx, tenant, dest, &rec, now_ms(), options.event_depth)?;
            replaced = old.map(|o| o.file);
        }
        tx.commit()?;
        self.inner.files.remove(tenant, replaced.as_slice());
        Ok(())
    }

    fn stored_bytes(&self, tenant: &str) -> Result<u64, BlobError> {
        index::stored_bytes(self.db(), tenant)
    }

    fn delete_tenant(&self, tenant: &str) -> Result<u64, BlobError> {
        check_tenant(tenant)?;
        // Containers go in the same transaction as the objects, so a spool
        // committed later finds none and cannot bring one back.
        let tx = self.db().begin_write()?;
        let files = index::forget_tenant(&tx, tenant)?;
        let events = outbox::forget_tenant(&tx, tenant)?;
        tx.commit()?;
        // The directory stays: in-flight spools write into it.
        self.inner.files.remove(tenant, &files);
        tracing::info!(tenant, objects = files.len(), events, "blob tenant deleted");
        Ok(files.len() as u64)
    }

    fn pending_events(&self, limit: usize) -> Result<Vec<ObjectCreated>, BlobError> {
        outbox::pending(self.db(), limit)
    }

    fn ack_event(&self, seq: u64) -> Result<(), BlobError> {
        outbox::ack(self.db(), seq)
    }
}
