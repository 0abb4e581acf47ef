//! Nimbus on NATS JetStream: several `nimbus serve` nodes sharing one NATS
//! cluster, the way wasmCloud runs on NATS, instead of a consensus layer of
//! our own.
//!
//! This crate holds the connection ([`Cluster`], from a [`ClusterConfig`])
//! and the cluster-wide pieces built on it. So far: the **usage stream**
//! ([`UsageStream`]), which carries every node's usage records into one
//! JetStream stream holding exactly one record per answered invocation,
//! **key-value** ([`NatsKv`], a `KvBackend` on a JetStream KV bucket:
//! compare-and-set writes, a cluster-wide quota), and the **deployment
//! registry** ([`NatsRegistry`]: records in a KV bucket, components in an
//! object store by sha256, every node watching for the others' changes).
//!
//! Names keep tenants apart injectively: tenant and function names are
//! `[a-z0-9_-]` (checked by `nimbus-core`), which NATS subject tokens take
//! as they are, so `usage.<tenant>.<invocation id>` never lets two tenants'
//! subjects meet.

mod blob;
mod blocking;
mod bucket;
mod kv;
mod logs;
mod queue;
mod registry;
mod schedule;
mod usage;

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub use blob::NatsBlobs;
pub use kv::NatsKv;
pub use logs::NatsLogs;
pub use queue::NatsQueues;
pub use registry::{NatsRegistry, RegistryWatch};
pub use schedule::NatsTickClaims;
pub use usage::{UsageStream, UsageStreamMetrics, cursor_path};

/// The `[cluster]` section of `nimbus.toml` (and [`Cluster::connect`]'s
/// argument for embedders).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// NATS server URLs (`nats://host:4222`); any one is enough to join, the
    /// client learns the others from the cluster.
    pub urls: Vec<String>,
    /// A NATS `.creds` file (JWT and nkey seed), when the servers ask for one.
    #[serde(default)]
    pub credentials: Option<PathBuf>,
    /// This node's name: the NATS connection name, and how its records and
    /// metrics say which node answered. Defaults to the host name.
    #[serde(default)]
    pub node: Option<String>,
    /// JetStream replicas for every stream and bucket Nimbus creates (1 for
    /// a single server, 3 for a three-server cluster).
    #[serde(default = "default_replicas")]
    pub replicas: usize,
    /// `max_bytes` of the usage stream. When it is full the server refuses
    /// new records and they wait in each node's local ledger (counted in
    /// `nimbus_usage_stream_lag_bytes`); nothing is dropped.
    #[serde(default = "default_usage_max_bytes")]
    pub usage_stream_max_bytes: i64,
    /// `max_bytes` of the key-value bucket (every tenant's stores; each
    /// tenant's own quota is `max_kv_bytes`).
    #[serde(default = "default_kv_max_bytes")]
    pub kv_max_bytes: i64,
    /// `max_bytes` of the registry's records (tenants, functions, routes).
    #[serde(default = "default_registry_max_bytes")]
    pub registry_max_bytes: i64,
    /// `max_bytes` of the components' object store (every version's bytes
    /// once per sha256).
    #[serde(default = "default_components_max_bytes")]
    pub components_max_bytes: i64,
    /// `max_bytes` of the queues' stream, and of the dead letters' (a full
    /// one refuses sends; nothing is dropped).
    #[serde(default = "default_queues_max_bytes")]
    pub queues_max_bytes: i64,
    /// `max_bytes` of the blobs' object store (every tenant's objects; each
    /// tenant's own quota is `max_blob_bytes`). A full one refuses writes.
    #[serde(default = "default_blobs_max_bytes")]
    pub blobs_max_bytes: i64,
    /// `max_bytes` of the invocation logs' stream (every function's last
    /// 1000 invocations; when full, the oldest logs go first).
    #[serde(default = "default_logs_max_bytes")]
    pub logs_max_bytes: i64,
}

fn default_logs_max_bytes() -> i64 {
    256 << 20
}

fn default_blobs_max_bytes() -> i64 {
    2 << 30
}

fn default_queues_max_bytes() -> i64 {
    1 << 30
}

fn default_registry_max_bytes() -> i64 {
    64 << 20
}

fn default_components_max_bytes() -> i64 {
    2 << 30
}

// Every stream's `max_bytes` is reserved on its servers when it is made
// (a server refuses a stream it has no room for: error 10047), so the
// defaults stay modest — about 10 GiB together — and a deployment sizes
// them to its disks.
fn default_replicas() -> usize {
    1
}

fn default_usage_max_bytes() -> i64 {
    1 << 30
}

fn default_kv_max_bytes() -> i64 {
    1 << 30
}

impl ClusterConfig {
    /// A config for these URLs with every other field at its default.
    pub fn new(urls: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            urls: urls.into_iter().map(Into::into).collect(),
            credentials: None,
            node: None,
            replicas: default_replicas(),
            usage_stream_max_bytes: default_usage_max_bytes(),
            kv_max_bytes: default_kv_max_bytes(),
            registry_max_bytes: default_registry_max_bytes(),
            components_max_bytes: default_components_max_bytes(),
            queues_max_bytes: default_queues_max_bytes(),
            blobs_max_bytes: default_blobs_max_bytes(),
            logs_max_bytes: default_logs_max_bytes(),
        }
    }

    /// The node name: the configured one, else the host name.
    pub fn node_name(&self) -> String {
        self.node.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "nimbus".to_string())
        })
    }

    fn check(&self) -> Result<(), ClusterError> {
        if self.urls.is_empty() {
            return Err(ClusterError::Config(
                "cluster.urls: at least one NATS URL is needed".into(),
            ));
        }
        if !(1..=5).contains(&self.replicas) {
            return Err(ClusterError::Config(format!(
                "cluster.replicas: {} is not between 1 and 5 (JetStream's limit)",
                self.replicas
            )));
        }
        if self.usage_stream_max_bytes <= 0 {
            return Err(ClusterError::Config(
                "cluster.usage_stream_max_bytes: must be above 0".into(),
            ));
        }
        for (name, v) in [
            ("kv_max_bytes", self.kv_max_bytes),
            ("registry_max_bytes", self.registry_max_bytes),
            ("components_max_bytes", self.components_max_bytes),
            ("queues_max_bytes", self.queues_max_bytes),
            ("blobs_max_bytes", self.blobs_max_bytes),
            ("logs_max_bytes", self.logs_max_bytes),
        ] {
            if v <= 0 {
                return Err(ClusterError::Config(format!(
                    "cluster.{name}: must be above 0"
                )));
            }
        }
        Ok(())
    }
}

/// What can go wrong joining or using the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{0}")]
    Config(String),
    #[error("connecting to NATS at {urls}: {source}")]
    Connect {
        urls: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("JetStream: {0}")]
    JetStream(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A node's connection to the NATS cluster.
#[derive(Clone)]
pub struct Cluster {
    config: ClusterConfig,
    client: async_nats::Client,
    jetstream: async_nats::jetstream::Context,
    /// Failed JetStream calls, by the part of Nimbus that made them.
    errors: prometheus::IntCounterVec,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("config", &self.config)
            .field("connected", &self.connected())
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Connects to the cluster. Returns at once even when no server answers
    /// yet: the client keeps trying in the background, so a node starts
    /// (and serves what needs no NATS) while NATS is down, and catches up
    /// when it returns.
    pub async fn connect(config: ClusterConfig) -> Result<Self, ClusterError> {
        config.check()?;
        let mut options = async_nats::ConnectOptions::new()
            .name(config.node_name())
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(2));
        if let Some(creds) = &config.credentials {
            options = options.credentials_file(creds).await.map_err(|e| {
                ClusterError::Config(format!("cluster.credentials: {}: {e}", creds.display()))
            })?;
        }
        let urls = config.urls.join(",");
        let addrs: Vec<async_nats::ServerAddr> = config
            .urls
            .iter()
            .map(|u| {
                u.parse()
                    .map_err(|e| ClusterError::Config(format!("cluster.urls: {u:?}: {e}")))
            })
            .collect::<Result<_, _>>()?;
        let client = options
            .connect(addrs)
            .await
            .map_err(|e| ClusterError::Connect {
                urls,
                source: Box::new(e),
            })?;
        let jetstream = async_nats::jetstream::new(client.clone());
        let errors = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "nimbus_jetstream_errors_total",
                "JetStream calls that failed (NATS unreachable, no leader, timed out), by the \
                 part of Nimbus that made them: kv, blobs, queues, schedules, registry, logs, usage.",
            ),
            &["component"],
        )
        .map_err(|e| ClusterError::Config(format!("metric: {e}")))?;
        Ok(Self {
            config,
            client,
            jetstream,
            errors,
        })
    }

    /// Registers the cluster's own metrics (`nimbus_jetstream_errors_total`).
    pub fn register_metrics(&self, registry: &prometheus::Registry) -> Result<(), String> {
        registry
            .register(Box::new(self.errors.clone()))
            .map_err(|e| format!("registering cluster metrics: {e}"))
    }

    /// Counts a failed JetStream call of `component`.
    pub(crate) fn api_error(&self, component: &str) {
        self.errors.with_label_values(&[component]).inc();
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    pub fn jetstream(&self) -> &async_nats::jetstream::Context {
        &self.jetstream
    }

    /// Whether the client is connected to a server right now.
    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }
}
