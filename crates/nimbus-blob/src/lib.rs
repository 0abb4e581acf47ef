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
//!
//! Modules, each depending only on those above it: `error`; `names` (name
//! rules); `files` (object files, spools, readers, the sweep); `backend`
//! (the trait and its types); `index` (redb metadata, keys, quota
//! accounting); `outbox` (object-created events); `listing`; `fs` (the
//! [`FsBlobs`] backend tying them together).

mod backend;
mod error;
mod files;
mod fs;
mod index;
mod listing;
mod names;
mod outbox;
#[cfg(test)]
mod tests;

pub use backend::{
    BlobBackend, ContainerMeta, ObjectCreated, ObjectMeta, WriteOptions, copy_object, now_ms,
};
pub use error::BlobError;
pub use files::{ObjectReader, Spool};
pub use fs::{DEFAULT_MAX_OBJECT_BYTES, FsBlobs};
pub use listing::MAX_LIST_PAGE;
pub use names::{MAX_NAME_BYTES, check_container_name, check_object_name, check_tenant};
