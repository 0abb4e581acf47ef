//! Object bytes on disk: one file per stored version, named by a fresh
//! UUID and reached only through a `cap_std` capability to its tenant's
//! directory, so no container or object name ever becomes a path.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use cap_std::ambient_authority;
use cap_std::fs::Dir;

use crate::error::BlobError;
use crate::names::check_tenant;

/// Bytes being written as a future object: a file in the tenant's blob
/// directory that no metadata refers to yet. Dropping it uncommitted
/// removes the file.
#[derive(Debug)]
pub struct Spool {
    /// `None` for an [unnamed](Spool::unnamed) spool.
    dir: Option<Arc<Dir>>,
    file_name: String,
    file: Option<std::fs::File>,
    written: u64,
    limit: u64,
    tenant: String,
}

impl Spool {
    /// A spool over `file`, which no directory names (an anonymous
    /// temporary file), for a backend that keeps object bytes elsewhere
    /// and reads the spool back with [`Self::contents`] on commit: dropping
    /// it removes nothing, and a crash leaves nothing behind.
    pub fn unnamed(tenant: &str, file: std::fs::File, limit: u64) -> Result<Spool, BlobError> {
        check_tenant(tenant)?;
        Ok(Spool {
            dir: None,
            file_name: String::new(),
            file: Some(file),
            written: 0,
            limit,
            tenant: tenant.into(),
        })
    }

    /// The bytes written so far, from the first, as a file of their own to
    /// read (the spool keeps its own handle).
    pub fn contents(&mut self) -> Result<std::fs::File, BlobError> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| BlobError::Storage("spool already committed".into()))?;
        file.flush()?;
        let mut reader = match &self.dir {
            Some(dir) => dir.open(&self.file_name)?.into_std(),
            None => file.try_clone()?,
        };
        reader.seek(SeekFrom::Start(0))?;
        Ok(reader)
    }

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

    /// The file the object's metadata will name.
    pub(crate) fn file_name(&self) -> &str {
        &self.file_name
    }

    /// Makes the bytes and the file's directory entry durable: both must
    /// be on disk before any metadata points at the file.
    pub(crate) fn sync(&mut self) -> Result<(), BlobError> {
        if let Some(file) = self.file.as_mut() {
            file.flush()?;
            file.sync_all()?;
        }
        if let Some(dir) = &self.dir {
            dir.open(".")?.into_std().sync_all()?;
        }
        Ok(())
    }

    /// Called once the metadata naming the file has committed: the file
    /// now belongs to the object, so dropping the spool must not remove it.
    pub(crate) fn keep(mut self) {
        self.file = None;
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        if self.file.take().is_some()
            && let Some(dir) = &self.dir
        {
            let _ = dir.remove_file(&self.file_name);
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
    /// A reader of `len` bytes of `file` from where it stands, out of an
    /// object of `size` bytes: for a backend that fetches the range into a
    /// local file of its own.
    pub fn from_file(file: std::fs::File, len: u64, size: u64) -> ObjectReader {
        ObjectReader {
            file,
            remaining: len,
            size,
        }
    }

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

/// The `data` directory: one subdirectory per tenant, holding its object
/// files.
#[derive(Debug)]
pub(crate) struct ObjectFiles {
    data: Dir,
    /// One capability per tenant directory, opened once.
    tenants: Mutex<HashMap<String, Arc<Dir>>>,
}

impl ObjectFiles {
    pub(crate) fn open(data: &Path) -> Result<Self, BlobError> {
        std::fs::create_dir_all(data)?;
        Ok(Self {
            data: Dir::open_ambient_dir(data, ambient_authority())?,
            tenants: Mutex::default(),
        })
    }

    fn tenant_dir(&self, tenant: &str) -> Result<Arc<Dir>, BlobError> {
        check_tenant(tenant)?;
        let mut dirs = self
            .tenants
            .lock()
            .map_err(|_| BlobError::Storage("tenant directory cache poisoned".into()))?;
        if let Some(d) = dirs.get(tenant) {
            return Ok(d.clone());
        }
        self.data.create_dir_all(tenant)?;
        let d = Arc::new(self.data.open_dir(tenant)?);
        dirs.insert(tenant.to_string(), d.clone());
        Ok(d)
    }

    /// A new, empty object file for `tenant`, refusing bytes past `limit`.
    pub(crate) fn spool(&self, tenant: &str, limit: u64) -> Result<Spool, BlobError> {
        let dir = self.tenant_dir(tenant)?;
        let file_name = uuid::Uuid::now_v7().simple().to_string();
        let file = dir.create(&file_name)?.into_std();
        Ok(Spool {
            dir: Some(dir),
            file_name,
            file: Some(file),
            written: 0,
            limit,
            tenant: tenant.into(),
        })
    }

    /// Opens `len` bytes from `start` of an object file of `size` bytes.
    pub(crate) fn reader(
        &self,
        tenant: &str,
        file: &str,
        start: u64,
        len: u64,
        size: u64,
    ) -> Result<ObjectReader, BlobError> {
        let mut file = self.tenant_dir(tenant)?.open(file)?.into_std();
        file.seek(SeekFrom::Start(start.min(size)))?;
        Ok(ObjectReader {
            file,
            remaining: len,
            size,
        })
    }

    /// Removes files of versions the metadata no longer refers to.
    pub(crate) fn remove(&self, tenant: &str, files: &[String]) {
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

    /// Removes every object file not in `live` (writes a crash cut off).
    pub(crate) fn sweep(&self, live: &HashSet<String>) -> Result<(), BlobError> {
        for entry in self.data.entries()? {
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
}
