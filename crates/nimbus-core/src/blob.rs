//! `wasi:blobstore` for guests: the tenant's containers, only those granted
//! to the function, on a [`BlobBackend`].
//!
//! Writes stream into a spool file through the value's output stream and
//! become visible on `outgoing-value.finish`, atomically (the backend
//! commits file and metadata together); a value dropped unfinished is
//! discarded, as the interface says. Reads stream from an open file range.
//! Metadata reads are served inline (redb reads take microseconds); writes,
//! which sync to disk, run on the blocking pool.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use nimbus_bindings::blob::{blobstore, container, types};
use nimbus_bindings::{BlobContainer, BlobNames, IncomingValue, OutgoingValue};
use nimbus_blob::{BlobBackend, BlobError, ObjectReader, Spool, WriteOptions};
use wasmtime::component::Resource;
use wasmtime_wasi::p2::{
    DynInputStream, DynOutputStream, InputStream, OutputStream, Pollable, StreamError, StreamResult,
};

use crate::host::InvocationState;

/// Largest object `incoming-value-consume-sync` returns in one list; larger
/// ones must be read as a stream.
pub const MAX_SYNC_READ_BYTES: u64 = 16 << 20;
/// Most bytes one stream read returns.
const READ_CHUNK: usize = 1 << 16;
/// Most bytes one `check-write` admits (the guest writes in chunks of this).
const WRITE_BUDGET: usize = 1 << 20;

/// The (tenant, container) pairs object-created triggers watch, with how
/// many subscriptions each has: writes there persist an event.
#[derive(Debug, Default, Clone)]
pub(crate) struct Subscriptions(Arc<dashmap::DashMap<TenantContainer, usize>>);

type TenantContainer = (Arc<str>, Arc<str>);

impl Subscriptions {
    pub fn watched(&self, tenant: &str, container: &str) -> bool {
        self.0
            .get(&(Arc::from(tenant), Arc::from(container)))
            .is_some_and(|n| *n > 0)
    }

    pub fn add(&self, tenant: &str, container: &str) {
        *self
            .0
            .entry((Arc::from(tenant), Arc::from(container)))
            .or_default() += 1;
    }

    pub fn remove(&self, tenant: &str, container: &str) {
        let key = (Arc::from(tenant), Arc::from(container));
        self.0.remove_if_mut(&key, |_, n| {
            *n = n.saturating_sub(1);
            *n == 0
        });
    }
}

/// An invocation's blob access: its tenant's containers, the ones its
/// function was granted, and what it did.
pub(crate) struct BlobAccess {
    pub backend: Arc<dyn BlobBackend>,
    pub tenant: Arc<str>,
    pub granted: Arc<[String]>,
    /// The tenant's `max_blob_bytes`.
    pub quota: u64,
    /// Object-created events raised by this invocation's writes carry this
    /// depth (the trigger's depth + 1): the loop guard's input.
    pub event_depth: u32,
    /// Containers whose writes raise object-created events.
    pub notify: Subscriptions,
    pub bytes_read: Arc<AtomicU64>,
    pub bytes_written: u64,
    pub ops: u64,
    pub denied: u64,
}

impl BlobAccess {
    fn check(&mut self, container: &str) -> Result<(), String> {
        if self.granted.iter().any(|g| g == container) {
            Ok(())
        } else {
            self.denied += 1;
            let shown: String = container.chars().take(64).collect();
            tracing::info!(container = %shown, "blob container not granted");
            Err(format!(
                "permission denied: container {shown:?} is not granted to this function"
            ))
        }
    }

    fn options(&self, container: &str) -> WriteOptions {
        WriteOptions {
            quota: Some(self.quota),
            event_depth: self
                .notify
                .watched(&self.tenant, container)
                .then_some(self.event_depth),
        }
    }
}

fn err(e: BlobError) -> String {
    e.to_string()
}

async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> Result<R, BlobError> + Send + 'static,
) -> wasmtime::Result<Result<R, String>> {
    Ok(tokio::task::spawn_blocking(f).await?.map_err(err))
}

impl InvocationState {
    fn container_name(&self, c: &Resource<BlobContainer>) -> wasmtime::Result<String> {
        Ok(self.table.get(c)?.name.clone())
    }
}

impl blobstore::Host for InvocationState {
    async fn create_container(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<Resource<BlobContainer>, String>> {
        if let Err(e) = self.blob.check(&name) {
            return Ok(Err(e));
        }
        self.blob.ops += 1;
        let (b, t, n) = (
            self.blob.backend.clone(),
            self.blob.tenant.clone(),
            name.clone(),
        );
        Ok(match blocking(move || b.create_container(&t, &n)).await? {
            Ok(_) => Ok(self.table.push(BlobContainer { name })?),
            Err(e) => Err(e),
        })
    }

    async fn get_container(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<Resource<BlobContainer>, String>> {
        if let Err(e) = self.blob.check(&name) {
            return Ok(Err(e));
        }
        self.blob.ops += 1;
        Ok(
            match self.blob.backend.container(&self.blob.tenant, &name) {
                Ok(Some(_)) => Ok(self.table.push(BlobContainer { name })?),
                Ok(None) => Err(err(BlobError::NoSuchContainer(name))),
                Err(e) => Err(err(e)),
            },
        )
    }

    async fn delete_container(&mut self, name: String) -> wasmtime::Result<Result<(), String>> {
        if let Err(e) = self.blob.check(&name) {
            return Ok(Err(e));
        }
        self.blob.ops += 1;
        let (b, t) = (self.blob.backend.clone(), self.blob.tenant.clone());
        blocking(move || b.delete_container(&t, &name)).await
    }

    async fn container_exists(&mut self, name: String) -> wasmtime::Result<Result<bool, String>> {
        if let Err(e) = self.blob.check(&name) {
            return Ok(Err(e));
        }
        self.blob.ops += 1;
        Ok(self
            .blob
            .backend
            .container(&self.blob.tenant, &name)
            .map(|c| c.is_some())
            .map_err(err))
    }

    async fn copy_object(
        &mut self,
        src: blobstore::ObjectId,
        dest: blobstore::ObjectId,
    ) -> wasmtime::Result<Result<(), String>> {
        for c in [&src.container, &dest.container] {
            if let Err(e) = self.blob.check(c) {
                return Ok(Err(e));
            }
        }
        self.blob.ops += 1;
        let options = self.blob.options(&dest.container);
        let (b, t) = (self.blob.backend.clone(), self.blob.tenant.clone());
        let copied = blocking(move || {
            nimbus_blob::copy_object(
                &*b,
                &t,
                (&src.container, &src.object),
                (&dest.container, &dest.object),
                options,
            )
        })
        .await?;
        Ok(copied.map(|meta| {
            self.blob.bytes_written += meta.size;
            self.blob.bytes_read.fetch_add(meta.size, Ordering::Relaxed);
        }))
    }

    async fn move_object(
        &mut self,
        src: blobstore::ObjectId,
        dest: blobstore::ObjectId,
    ) -> wasmtime::Result<Result<(), String>> {
        for c in [&src.container, &dest.container] {
            if let Err(e) = self.blob.check(c) {
                return Ok(Err(e));
            }
        }
        self.blob.ops += 1;
        let options = self.blob.options(&dest.container);
        let (b, t) = (self.blob.backend.clone(), self.blob.tenant.clone());
        blocking(move || {
            b.rename(
                &t,
                (&src.container, &src.object),
                (&dest.container, &dest.object),
                options,
            )
        })
        .await
    }
}

impl container::Host for InvocationState {}

impl container::HostContainer for InvocationState {
    async fn name(
        &mut self,
        c: Resource<BlobContainer>,
    ) -> wasmtime::Result<Result<String, String>> {
        Ok(Ok(self.container_name(&c)?))
    }

    async fn info(
        &mut self,
        c: Resource<BlobContainer>,
    ) -> wasmtime::Result<Result<container::ContainerMetadata, String>> {
        let name = self.container_name(&c)?;
        self.blob.ops += 1;
        Ok(
            match self.blob.backend.container(&self.blob.tenant, &name) {
                Ok(Some(m)) => Ok(container::ContainerMetadata {
                    name: m.name,
                    created_at: m.created_at_ms,
                }),
                Ok(None) => Err(err(BlobError::NoSuchContainer(name))),
                Err(e) => Err(err(e)),
            },
        )
    }

    async fn get_data(
        &mut self,
        c: Resource<BlobContainer>,
        name: String,
        start: u64,
        end: u64,
    ) -> wasmtime::Result<Result<Resource<IncomingValue>, String>> {
        let container = self.container_name(&c)?;
        self.blob.ops += 1;
        Ok(
            match self
                .blob
                .backend
                .open(&self.blob.tenant, &container, &name, start, end)
            {
                Ok(reader) => Ok(self.table.push(IncomingValue { reader })?),
                Err(e) => Err(err(e)),
            },
        )
    }

    async fn write_data(
        &mut self,
        c: Resource<BlobContainer>,
        name: String,
        data: Resource<OutgoingValue>,
    ) -> wasmtime::Result<Result<(), String>> {
        let container = self.container_name(&c)?;
        if let Err(e) = nimbus_blob::check_object_name(&name) {
            return Ok(Err(err(e)));
        }
        let value = self.table.get_mut(&data)?;
        if value.target.is_some() {
            return Ok(Err(
                "write-data was already called for this outgoing-value".into()
            ));
        }
        value.target = Some((container, name));
        Ok(Ok(()))
    }

    async fn list_objects(
        &mut self,
        c: Resource<BlobContainer>,
    ) -> wasmtime::Result<Result<Resource<BlobNames>, String>> {
        let container = self.container_name(&c)?;
        Ok(Ok(self.table.push(BlobNames {
            container,
            after: None,
            done: false,
        })?))
    }

    async fn delete_object(
        &mut self,
        c: Resource<BlobContainer>,
        name: String,
    ) -> wasmtime::Result<Result<(), String>> {
        let container = self.container_name(&c)?;
        self.blob.ops += 1;
        let (b, t) = (self.blob.backend.clone(), self.blob.tenant.clone());
        Ok(blocking(move || b.delete(&t, &container, &name))
            .await?
            .map(|_| ()))
    }

    async fn delete_objects(
        &mut self,
        c: Resource<BlobContainer>,
        names: Vec<String>,
    ) -> wasmtime::Result<Result<(), String>> {
        let container = self.container_name(&c)?;
        self.blob.ops += names.len() as u64;
        let (b, t) = (self.blob.backend.clone(), self.blob.tenant.clone());
        blocking(move || {
            for name in &names {
                b.delete(&t, &container, name)?;
            }
            Ok(())
        })
        .await
    }

    async fn has_object(
        &mut self,
        c: Resource<BlobContainer>,
        name: String,
    ) -> wasmtime::Result<Result<bool, String>> {
        let container = self.container_name(&c)?;
        self.blob.ops += 1;
        Ok(self
            .blob
            .backend
            .head(&self.blob.tenant, &container, &name)
            .map(|m| m.is_some())
            .map_err(err))
    }

    async fn object_info(
        &mut self,
        c: Resource<BlobContainer>,
        name: String,
    ) -> wasmtime::Result<Result<container::ObjectMetadata, String>> {
        let container = self.container_name(&c)?;
        self.blob.ops += 1;
        Ok(
            match self.blob.backend.head(&self.blob.tenant, &container, &name) {
                Ok(Some(m)) => Ok(container::ObjectMetadata {
                    name: m.name,
                    container: m.container,
                    created_at: m.created_at_ms,
                    size: m.size,
                }),
                Ok(None) => Err(err(BlobError::NoSuchObject {
                    container,
                    object: name,
                })),
                Err(e) => Err(err(e)),
            },
        )
    }

    async fn clear(&mut self, c: Resource<BlobContainer>) -> wasmtime::Result<Result<(), String>> {
        let container = self.container_name(&c)?;
        self.blob.ops += 1;
        let (b, t) = (self.blob.backend.clone(), self.blob.tenant.clone());
        blocking(move || {
            loop {
                let page = b.list(&t, &container, "", None, nimbus_blob::MAX_LIST_PAGE)?;
                if page.is_empty() {
                    return Ok(());
                }
                for m in page {
                    b.delete(&t, &container, &m.name)?;
                }
            }
        })
        .await
    }

    async fn drop(&mut self, c: Resource<BlobContainer>) -> wasmtime::Result<()> {
        self.table.delete(c)?;
        Ok(())
    }
}

impl container::HostStreamObjectNames for InvocationState {
    async fn read_stream_object_names(
        &mut self,
        names: Resource<BlobNames>,
        len: u64,
    ) -> wasmtime::Result<Result<(Vec<String>, bool), String>> {
        let (container, after, done) = {
            let n = self.table.get(&names)?;
            (n.container.clone(), n.after.clone(), n.done)
        };
        if done {
            return Ok(Ok((Vec::new(), true)));
        }
        self.blob.ops += 1;
        // One more than asked tells whether the listing ends here, so ask
        // for at most one less than the backend's page: with a full page
        // of `MAX_LIST_PAGE`, a longer listing would read as ended.
        let want = usize::try_from(len)
            .unwrap_or(usize::MAX)
            .min(nimbus_blob::MAX_LIST_PAGE - 1);
        let page = match self.blob.backend.list(
            &self.blob.tenant,
            &container,
            "",
            after.as_deref(),
            want + 1,
        ) {
            Ok(p) => p,
            Err(e) => return Ok(Err(err(e))),
        };
        let end = page.len() <= want;
        let out: Vec<String> = page.into_iter().take(want).map(|m| m.name).collect();
        let n = self.table.get_mut(&names)?;
        if let Some(last) = out.last() {
            n.after = Some(last.clone());
        }
        n.done = end;
        Ok(Ok((out, end)))
    }

    async fn skip_stream_object_names(
        &mut self,
        names: Resource<BlobNames>,
        num: u64,
    ) -> wasmtime::Result<Result<(u64, bool), String>> {
        let mut skipped = 0;
        loop {
            let want = (num - skipped).min(nimbus_blob::MAX_LIST_PAGE as u64);
            if want == 0 {
                let done = self.table.get(&names)?.done;
                return Ok(Ok((skipped, done)));
            }
            let (page, end) = match container::HostStreamObjectNames::read_stream_object_names(
                self,
                Resource::new_borrow(names.rep()),
                want,
            )
            .await?
            {
                Ok(p) => p,
                Err(e) => return Ok(Err(e)),
            };
            skipped += page.len() as u64;
            if end {
                return Ok(Ok((skipped, true)));
            }
        }
    }

    async fn drop(&mut self, names: Resource<BlobNames>) -> wasmtime::Result<()> {
        self.table.delete(names)?;
        Ok(())
    }
}

impl types::Host for InvocationState {}

/// The output stream of an outgoing value: appends to its spool.
struct SpoolStream {
    spool: Arc<Mutex<Option<Spool>>>,
}

impl OutputStream for SpoolStream {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        let mut spool = self
            .spool
            .lock()
            .map_err(|_| StreamError::trap("blob spool poisoned"))?;
        match spool.as_mut() {
            Some(s) => s
                .write(&bytes)
                .map_err(|e| StreamError::LastOperationFailed(wasmtime::format_err!("{e}"))),
            None => Err(StreamError::Closed),
        }
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        let spool = self
            .spool
            .lock()
            .map_err(|_| StreamError::trap("blob spool poisoned"))?;
        if spool.is_some() {
            Ok(WRITE_BUDGET)
        } else {
            Err(StreamError::Closed)
        }
    }
}

#[async_trait::async_trait]
impl Pollable for SpoolStream {
    async fn ready(&mut self) {}
}

/// The input stream of an incoming value: reads its object range, counting
/// the bytes for the invocation's usage record.
struct ObjectStream {
    reader: ObjectReader,
    read: Arc<AtomicU64>,
}

impl InputStream for ObjectStream {
    fn read(&mut self, size: usize) -> StreamResult<bytes::Bytes> {
        if self.reader.remaining() == 0 {
            return Err(StreamError::Closed);
        }
        let chunk = self
            .reader
            .read(size.min(READ_CHUNK))
            .map_err(|e| StreamError::LastOperationFailed(wasmtime::format_err!("{e}")))?;
        self.read.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        Ok(chunk.into())
    }

    fn skip(&mut self, n: usize) -> StreamResult<usize> {
        if self.reader.remaining() == 0 {
            return Err(StreamError::Closed);
        }
        self.reader
            .skip(n as u64)
            .map(|s| s as usize)
            .map_err(|e| StreamError::LastOperationFailed(wasmtime::format_err!("{e}")))
    }
}

#[async_trait::async_trait]
impl Pollable for ObjectStream {
    async fn ready(&mut self) {}
}

impl types::HostOutgoingValue for InvocationState {
    async fn new_outgoing_value(&mut self) -> wasmtime::Result<Resource<OutgoingValue>> {
        // A spool that cannot be created (disk full) shows on the first
        // write as a failed stream operation, which the guest can handle.
        let spool = self.blob.backend.spool(&self.blob.tenant).ok();
        Ok(self.table.push(OutgoingValue {
            spool: Arc::new(Mutex::new(spool)),
            body_taken: false,
            target: None,
        })?)
    }

    async fn outgoing_value_write_body(
        &mut self,
        value: Resource<OutgoingValue>,
    ) -> wasmtime::Result<Result<Resource<DynOutputStream>, ()>> {
        let v = self.table.get_mut(&value)?;
        if v.body_taken {
            return Ok(Err(()));
        }
        v.body_taken = true;
        let stream: DynOutputStream = Box::new(SpoolStream {
            spool: v.spool.clone(),
        });
        Ok(Ok(self.table.push(stream)?))
    }

    async fn finish(
        &mut self,
        value: Resource<OutgoingValue>,
    ) -> wasmtime::Result<Result<(), String>> {
        let v = self.table.delete(value)?;
        let Some((container, name)) = v.target else {
            return Ok(Err(
                "finish called before container.write-data named the object: nothing written"
                    .into(),
            ));
        };
        let spool = v
            .spool
            .lock()
            .map_err(|_| wasmtime::format_err!("blob spool poisoned"))?
            .take();
        let Some(spool) = spool else {
            return Ok(Err("the value's spool could not be created".into()));
        };
        if let Err(e) = self.blob.check(&container) {
            return Ok(Err(e));
        }
        self.blob.ops += 1;
        let options = self.blob.options(&container);
        let b = self.blob.backend.clone();
        let committed = blocking(move || b.commit(spool, &container, &name, None, options)).await?;
        Ok(committed.map(|meta| self.blob.bytes_written += meta.size))
    }

    async fn drop(&mut self, value: Resource<OutgoingValue>) -> wasmtime::Result<()> {
        // Unfinished: the spool (and its file) is dropped with it.
        self.table.delete(value)?;
        Ok(())
    }
}

impl types::HostIncomingValue for InvocationState {
    async fn incoming_value_consume_sync(
        &mut self,
        value: Resource<IncomingValue>,
    ) -> wasmtime::Result<Result<Vec<u8>, String>> {
        let mut v = self.table.delete(value)?;
        let len = v.reader.remaining();
        if len > MAX_SYNC_READ_BYTES {
            return Ok(Err(format!(
                "{len} bytes is over the {MAX_SYNC_READ_BYTES}-byte limit of incoming-value-consume-sync: use incoming-value-consume-async"
            )));
        }
        let len = usize::try_from(len)?;
        Ok(
            match tokio::task::spawn_blocking(move || v.reader.read(len)).await? {
                Ok(bytes) => {
                    self.blob
                        .bytes_read
                        .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    Ok(bytes)
                }
                Err(e) => Err(err(e)),
            },
        )
    }

    async fn incoming_value_consume_async(
        &mut self,
        value: Resource<IncomingValue>,
    ) -> wasmtime::Result<Result<Resource<DynInputStream>, String>> {
        let v = self.table.delete(value)?;
        let stream: DynInputStream = Box::new(ObjectStream {
            reader: v.reader,
            read: self.blob.bytes_read.clone(),
        });
        Ok(Ok(self.table.push(stream)?))
    }

    async fn size(&mut self, value: Resource<IncomingValue>) -> wasmtime::Result<u64> {
        Ok(self.table.get(&value)?.reader.remaining())
    }

    async fn drop(&mut self, value: Resource<IncomingValue>) -> wasmtime::Result<()> {
        self.table.delete(value)?;
        Ok(())
    }
}
