//! `wasi:blobstore` for guests: the tenant's containers, only those granted
//! to the function, on a [`BlobBackend`].
//!
//! Writes stream into a spool file through the value's output stream and
//! become visible on `outgoing-value.finish`, atomically (the backend
//! commits file and metadata together); a value dropped unfinished is
//! discarded, as the interface says. Reads stream from an open file range.
//! Metadata reads are served inline (redb reads take microseconds); writes,
//! which sync to disk, run on the blocking pool.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use nimbus_bindings::blob::{blobstore, container, types};
use nimbus_bindings::{BlobContainer, BlobNames, IncomingValue, OutgoingValue};
use nimbus_blob::{BlobBackend, BlobError, WriteOptions};
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use crate::capability::{Capability, DeployCx, Holds, InvokeCx, note_ungranted};
use crate::error::Error;
use crate::limits::FunctionConfig;
use crate::logs::Logs;
use crate::services::Subscriptions;
use crate::usage::{Trigger, UsageRecord};

/// `outgoing-value` and `incoming-value`: streamed object bodies.
mod values;

/// Largest object `incoming-value-consume-sync` returns in one list; larger
/// ones must be read as a stream.
pub const MAX_SYNC_READ_BYTES: u64 = 16 << 20;
/// Most bytes one stream read returns.
const READ_CHUNK: usize = 1 << 16;
/// Most bytes one `check-write` admits (the guest writes in chunks of this).
const WRITE_BUDGET: usize = 1 << 20;

/// An invocation's blob access: its tenant's containers, the ones its
/// function was granted, and what it did.
pub(crate) struct Blob {
    backend: Arc<dyn BlobBackend>,
    tenant: Arc<str>,
    granted: Arc<[String]>,
    /// The tenant's `max_blob_bytes`.
    quota: u64,
    /// Object-created events raised by this invocation's writes carry this
    /// depth (the trigger's depth + 1): the loop guard's input.
    event_depth: u32,
    /// Containers whose writes raise object-created events.
    notify: Subscriptions,
    bytes_read: Arc<AtomicU64>,
    bytes_written: u64,
    ops: u64,
    denied: u64,
}

impl Capability for Blob {
    type Grant = Arc<[String]>;
    const INTERFACES: &'static [&'static str] = &[
        "wasi:blobstore/blobstore",
        "wasi:blobstore/container",
        "wasi:blobstore/types",
    ];

    fn add_to_linker<T: Holds<Self>>(l: &mut Linker<T>) -> wasmtime::Result<()> {
        fn view<T: Holds<Blob>>(t: &mut T) -> BlobView<'_> {
            let (blob, table) = t.parts();
            BlobView { blob, table }
        }
        blobstore::add_to_linker::<T, BlobHost>(l, view)?;
        container::add_to_linker::<T, BlobHost>(l, view)?;
        types::add_to_linker::<T, BlobHost>(l, view)
    }

    fn ungranted(spec: &FunctionConfig, import: &str) -> Option<String> {
        note_ungranted(
            !spec.blob_containers.is_empty(),
            import,
            "blob containers",
            "blob_containers",
        )
    }

    /// Granted containers exist from deploy on, the way a serverless
    /// template declares its buckets next to its functions.
    async fn grant(cx: &DeployCx<'_>) -> Result<Self::Grant, Error> {
        for container in &cx.spec.blob_containers {
            let b = cx.services.blob.clone();
            let (t, c) = (cx.tenant.clone(), container.clone());
            tokio::task::spawn_blocking(move || b.ensure_container(&t, &c))
                .await
                .map_err(|e| Error::Config(format!("blob store task: {e}")))?
                .map_err(|e| {
                    Error::Config(format!(
                        "function `{}`: blob container grant `{container}`: {e}",
                        cx.function
                    ))
                })?;
        }
        Ok(cx.spec.blob_containers.clone().into())
    }

    fn prepare(granted: &Self::Grant, cx: &InvokeCx<'_>) -> wasmtime::Result<Self> {
        Ok(Blob {
            backend: cx.services.blob.clone(),
            tenant: cx.tenant.clone(),
            granted: granted.clone(),
            quota: cx.limits.max_blob_bytes,
            // Only a chain of object-triggered invocations deepens: a write
            // from an HTTP, queue or scheduled run starts one.
            event_depth: if cx.cause.trigger == Trigger::Object {
                cx.cause.depth + 1
            } else {
                0
            },
            notify: cx.services.subscriptions.clone(),
            bytes_read: Default::default(),
            bytes_written: 0,
            ops: 0,
            denied: 0,
        })
    }

    fn finish(self, usage: &mut UsageRecord, _logs: &mut Logs) {
        usage.blob_operations += self.ops;
        usage.blob_bytes_read += self.bytes_read.load(Ordering::Relaxed);
        usage.blob_bytes_written += self.bytes_written;
        usage.denied_calls += self.denied;
    }
}

struct BlobHost;
impl HasData for BlobHost {
    type Data<'a> = BlobView<'a>;
}

/// What a checked copy or move runs with: backend, tenant, write options.
type Transfer = (Arc<dyn BlobBackend>, Arc<str>, WriteOptions);

/// What `wasi:blobstore` host functions see of the store.
pub(crate) struct BlobView<'a> {
    blob: &'a mut Blob,
    table: &'a mut ResourceTable,
}

impl Blob {
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

    /// Checks both ends of a copy or move and counts it: the backend, the
    /// tenant and the write options for the destination.
    fn transfer(
        &mut self,
        src: &blobstore::ObjectId,
        dest: &blobstore::ObjectId,
    ) -> Result<Transfer, String> {
        self.check(&src.container)?;
        self.check(&dest.container)?;
        self.ops += 1;
        let options = self.options(&dest.container);
        Ok((self.backend.clone(), self.tenant.clone(), options))
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

impl BlobView<'_> {
    fn container_name(&self, c: &Resource<BlobContainer>) -> wasmtime::Result<String> {
        Ok(self.table.get(c)?.name.clone())
    }
}

impl blobstore::Host for BlobView<'_> {
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
        let (b, t, options) = match self.blob.transfer(&src, &dest) {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
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
        let (b, t, options) = match self.blob.transfer(&src, &dest) {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
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

impl container::Host for BlobView<'_> {}

impl container::HostContainer for BlobView<'_> {
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

impl container::HostStreamObjectNames for BlobView<'_> {
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
