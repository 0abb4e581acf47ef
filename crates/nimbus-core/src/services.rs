//! What capabilities draw on: the host's backends and host-wide caps. Built
//! once by the [`crate::HostBuilder`]; capabilities see it at deploy and at
//! the start of each invocation.

use std::path::PathBuf;
use std::sync::Arc;

use nimbus_blob::BlobBackend;
use nimbus_kv::KvBackend;
use nimbus_queue::QueueBackend;

pub(crate) struct Services {
    pub kv: Arc<dyn KvBackend>,
    pub blob: Arc<dyn BlobBackend>,
    pub queues: Arc<dyn QueueBackend>,
    /// (tenant, container) pairs some function subscribes to: writes there
    /// persist an object-created event with the object.
    pub subscriptions: Subscriptions,
    /// Where tenant directories live (`<data_dir>/files/<tenant>`); none
    /// means no function may be granted one.
    pub data_dir: Option<PathBuf>,
    /// Bytes kept per captured stream (stdout, stderr, log entries).
    pub max_log_bytes: usize,
    /// Most bytes one `wasi:random` call may ask for.
    pub max_random_bytes: u64,
}

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
