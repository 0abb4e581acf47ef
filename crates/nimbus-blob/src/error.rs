//! The one error type every blob operation returns.

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

impl BlobError {
    pub(crate) fn no_such_object(container: &str, object: &str) -> Self {
        BlobError::NoSuchObject {
            container: container.into(),
            object: object.into(),
        }
    }
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
