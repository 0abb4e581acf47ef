//! Object bodies: an `outgoing-value` spools the guest's writes to a file
//! until `finish` commits it; an `incoming-value` reads an open object
//! range, counting bytes for the usage record.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use nimbus_bindings::blob::types;
use nimbus_bindings::{IncomingValue, OutgoingValue};
use nimbus_blob::{ObjectReader, Spool};
use wasmtime::component::Resource;
use wasmtime_wasi::p2::{
    DynInputStream, DynOutputStream, InputStream, OutputStream, Pollable, StreamError, StreamResult,
};

use super::{BlobView, MAX_SYNC_READ_BYTES, READ_CHUNK, WRITE_BUDGET, blocking, err};

impl types::Host for BlobView<'_> {}

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

impl types::HostOutgoingValue for BlobView<'_> {
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

impl types::HostIncomingValue for BlobView<'_> {
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
