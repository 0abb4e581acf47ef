//! The deployment registry on JetStream, shared by every node:
//! [`NatsRegistry`] implements `nimbus_core::DeploymentRegistry`, and
//! [`NatsRegistry::watch`] shows every other node's changes in this node's
//! host within milliseconds.
//!
//! Records are JSON documents in the KV bucket `NIMBUS_REGISTRY`:
//! `t.<tenant>`, `f.<tenant>.<function>` (tenant and function names are
//! `[a-z0-9_-]`, valid key tokens as they are, so no two tenants' keys meet)
//! and `r.h<hex host>.p<hex path>` for routes (any bytes, injectively).
//! Component bytes are in the object store `NIMBUS_COMPONENTS`, named by
//! their sha256; each node compiles a component once and keeps the artifact
//! in its own compile cache.
//!
//! Every write is a compare-and-set on the revision this node last saw of
//! the key, so a change made on another node at the same moment is refused
//! with an error saying so, not overwritten — unless it made the same
//! change (every node of a cluster declares the same config file when it
//! starts; only `created_at` differs), which counts as done. On a 2.9
//! cluster with replicas > 1 the server may accept two such writes (see
//! `bucket.rs`); the watch then brings every node to the later one.
//!
//! A tenant's deletion is several keys (its functions, routes, then the
//! tenant), not one transaction: a node dying in the middle leaves the
//! tenant with fewer functions, and deleting it again finishes. Components
//! no function refers to are swept after each change, once they are a
//! minute old: a deploy on another node that uploaded the same bytes a
//! moment ago has not written its record yet.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream::consumer::push::OrderedConfig;
use async_nats::jetstream::consumer::{DeliverPolicy, ReplayPolicy};
use async_nats::jetstream::kv::{Operation, Store};
use async_nats::jetstream::object_store::{self, ObjectStore};
use bytes::Bytes;
use futures_util::StreamExt;
use nimbus_core::{
    DeploymentRegistry, FunctionRecord, Host, RegistryChange, RegistryError, RouteRecord, Snapshot,
    TenantRecord,
};
use prometheus::{IntCounter, IntGauge, Opts};
use tokio::io::AsyncReadExt;
use tokio::sync::OnceCell;

use crate::Cluster;
use crate::bucket::{self, hex};

mod backend;
mod mirror;

/// The records' bucket.
pub const BUCKET: &str = "NIMBUS_REGISTRY";
/// The components' object store.
pub const COMPONENTS: &str = "NIMBUS_COMPONENTS";
/// A registry call waiting longer fails (an 18 MB upload takes well under
/// a second on loopback; a cluster electing a leader takes a few).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Components no record refers to are kept this long before the sweep.
const SWEEP_GRACE_SECS: i64 = 60;

/// The deployment registry on the cluster.
pub struct NatsRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    cluster: Cluster,
    runtime: tokio::runtime::Handle,
    records: OnceCell<Store>,
    components: OnceCell<ObjectStore>,
    /// The newest revision this node has seen of each key (loaded, written
    /// or watched): writes expect it, the watch skips what is not newer.
    revisions: Mutex<HashMap<String, u64>>,
    /// The bucket's last revision when `load` read it: the watch starts
    /// after it.
    loaded_at: AtomicU64,
    sweeping: AtomicBool,
    metrics: WatchMetrics,
    /// This node's copy of the records, to start from while NATS is away.
    mirror: Option<mirror::Mirror>,
}

#[derive(Clone)]
struct WatchMetrics {
    applied: IntCounter,
    lag: IntGauge,
    watching: IntGauge,
    errors: IntCounter,
}

impl WatchMetrics {
    fn new() -> Self {
        let counter = |name: &str, help: &str| {
            IntCounter::with_opts(Opts::new(name, help))
                .unwrap_or_else(|e| panic!("static metric {name}: {e}"))
        };
        let gauge = |name: &str, help: &str| {
            IntGauge::with_opts(Opts::new(name, help))
                .unwrap_or_else(|e| panic!("static metric {name}: {e}"))
        };
        Self {
            applied: counter(
                "nimbus_registry_changes_applied_total",
                "Registry changes made on other nodes that this node applied.",
            ),
            lag: gauge(
                "nimbus_registry_watch_lag",
                "Registry changes the watch has yet to deliver to this node (0: up to date).",
            ),
            watching: gauge(
                "nimbus_registry_watching",
                "1 while this node's watch of the cluster registry is running.",
            ),
            errors: counter(
                "nimbus_registry_errors_total",
                "Failed JetStream calls of the registry (writes, reads, the watch).",
            ),
        }
    }

    fn register(&self, registry: &prometheus::Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self.applied.clone()))?;
        registry.register(Box::new(self.lag.clone()))?;
        registry.register(Box::new(self.watching.clone()))?;
        registry.register(Box::new(self.errors.clone()))
    }
}

impl std::fmt::Debug for NatsRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsRegistry")
            .field("bucket", &BUCKET)
            .finish_non_exhaustive()
    }
}

fn fail(e: impl std::fmt::Display) -> RegistryError {
    RegistryError(format!("NATS: {e}"))
}

/// How long a registry call goes on retrying NATS failures (within
/// [`CALL_TIMEOUT`]): a fresh cluster electing its JetStream leaders, or
/// one replacing a dead leader, answers "no responders" for seconds, and a
/// node starting then must wait, not exit.
const RETRY_FOR: Duration = Duration::from_secs(20);

/// How long a node with a copy of the registry waits for NATS when it
/// starts before it starts from the copy: starting from it is safe (the
/// watch catches up), so a short wait, not [`RETRY_FOR`].
pub const MIRROR_AFTER: Duration = Duration::from_secs(5);

/// `call` until it succeeds, is refused for a reason retrying cannot
/// change (a conflict), or [`RETRY_FOR`] has passed.
async fn retry<T, Fut>(what: &str, mut call: impl FnMut() -> Fut) -> Result<T, RegistryError>
where
    Fut: Future<Output = Result<T, RegistryError>>,
{
    let started = std::time::Instant::now();
    let mut wait = Duration::from_millis(100);
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if e.0.starts_with(RegistryError::CONFLICT) => return Err(e),
            Err(e) if started.elapsed() + wait < RETRY_FOR => {
                tracing::debug!("registry: {what}: {e}; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(e),
        }
    }
}

fn tenant_key(name: &str) -> String {
    format!("t.{name}")
}

fn function_key(tenant: &str, name: &str) -> String {
    format!("f.{tenant}.{name}")
}

fn route_key(host: Option<&str>, path: &str) -> String {
    format!(
        "r.h{}.p{}",
        hex(host.unwrap_or("").as_bytes()),
        hex(path.as_bytes())
    )
}

/// Records equal but for when they were made: what two nodes declaring
/// the same config write.
fn same_tenant(a: &TenantRecord, b: &TenantRecord) -> bool {
    TenantRecord {
        created_at: String::new(),
        ..a.clone()
    } == TenantRecord {
        created_at: String::new(),
        ..b.clone()
    }
}

fn same_function(a: &FunctionRecord, b: &FunctionRecord) -> bool {
    let plain = |f: &FunctionRecord| {
        let mut f = f.clone();
        for v in &mut f.versions {
            v.created_at.clear();
        }
        f
    };
    plain(a) == plain(b)
}

fn parse<T: serde::de::DeserializeOwned>(
    key: &str,
    value: Option<&[u8]>,
) -> Result<Option<T>, String> {
    value
        .map(serde_json::from_slice)
        .transpose()
        .map_err(|e| format!("registry key {key}: {e}"))
}

/// What a key of the bucket holds, decoded; `None` for a key that is not
/// Nimbus's (left alone).
fn decode(key: &str, value: Option<&[u8]>) -> Option<Result<RegistryChange, String>> {
    let mut parts = key.splitn(3, '.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("t"), Some(name), None) => {
            Some(parse(key, value).map(|record| RegistryChange::Tenant {
                name: name.to_string(),
                record,
            }))
        }
        (Some("f"), Some(tenant), Some(name)) => {
            Some(parse(key, value).map(|record| RegistryChange::Function {
                tenant: tenant.to_string(),
                name: name.to_string(),
                record,
            }))
        }
        (Some("r"), Some(host), Some(path)) => {
            let unhex = |s: &str, tag: char| -> Option<String> {
                String::from_utf8(bucket::unhex(s.strip_prefix(tag)?)?).ok()
            };
            let (Some(host), Some(path)) = (unhex(host, 'h'), unhex(path, 'p')) else {
                return Some(Err(format!("registry key {key}: not a route key")));
            };
            Some(parse(key, value).map(|record| RegistryChange::Route {
                host: Some(host).filter(|h| !h.is_empty()),
                path,
                record,
            }))
        }
        _ => None,
    }
}

impl NatsRegistry {
    /// A registry on `cluster`, running its NATS calls on the current tokio
    /// runtime. Buckets are created on first use if they are not there.
    pub fn new(cluster: &Cluster) -> Self {
        Self::build(cluster, None)
    }

    /// [`Self::new`], keeping a copy of the records at `path` (e.g.
    /// `<data_dir>/registry-mirror.json`): a node that cannot reach NATS
    /// within [`MIRROR_AFTER`] when it starts loads that copy instead of
    /// failing, and its watch catches up once NATS answers.
    pub fn with_mirror(cluster: &Cluster, path: impl Into<std::path::PathBuf>) -> Self {
        Self::build(cluster, Some(mirror::Mirror::new(path.into())))
    }

    fn build(cluster: &Cluster, mirror: Option<mirror::Mirror>) -> Self {
        Self {
            inner: Arc::new(Inner {
                cluster: cluster.clone(),
                runtime: tokio::runtime::Handle::current(),
                records: OnceCell::new(),
                components: OnceCell::new(),
                revisions: Mutex::default(),
                loaded_at: AtomicU64::new(0),
                sweeping: AtomicBool::new(false),
                metrics: WatchMetrics::new(),
                mirror,
            }),
        }
    }

    /// Registers the registry's metrics (watch lag, applied changes,
    /// errors) in `registry`.
    pub fn register_metrics(&self, registry: &prometheus::Registry) -> Result<(), String> {
        self.inner
            .metrics
            .register(registry)
            .map_err(|e| format!("registering registry metrics: {e}"))
    }

    fn block<T: Send + 'static>(
        &self,
        f: impl Future<Output = Result<T, RegistryError>> + Send + 'static,
    ) -> Result<T, RegistryError> {
        let errors = self.inner.metrics.errors.clone();
        let r = crate::blocking::block(&self.inner.runtime, CALL_TIMEOUT, f, |e| {
            RegistryError(format!("NATS: {e}"))
        });
        if let Err(e) = &r
            && !e.0.starts_with(RegistryError::CONFLICT)
        {
            errors.inc();
            self.inner.cluster.api_error("registry");
        }
        r
    }

    /// Shows every change another node makes in `host`, from the revision
    /// `load` read on, until the returned watch is dropped. A watch that
    /// breaks (NATS gone) starts again from where it was.
    pub fn watch(&self, host: Host) -> RegistryWatch {
        let inner = self.inner.clone();
        let task = self.inner.runtime.spawn(async move {
            let mut from = inner.loaded_at.load(Ordering::SeqCst) + 1;
            loop {
                if let Err(e) = inner.watch_from(&host, &mut from).await {
                    inner.metrics.errors.inc();
                    tracing::warn!("registry watch: {e}; starting again");
                }
                inner.metrics.watching.set(0);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        RegistryWatch { task }
    }
}

use std::future::Future;

/// See [`NatsRegistry::watch`].
#[derive(Debug)]
pub struct RegistryWatch {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RegistryWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Inner {
    async fn records(&self) -> Result<Store, RegistryError> {
        self.records
            .get_or_try_init(|| async {
                let config = self.cluster.config();
                bucket::open_kv(
                    self.cluster.jetstream(),
                    bucket::kv_stream(
                        BUCKET,
                        "Nimbus deployment registry",
                        config.registry_max_bytes,
                        config.replicas,
                    ),
                )
                .await
                .map_err(fail)
            })
            .await
            .cloned()
    }

    async fn components(&self) -> Result<ObjectStore, RegistryError> {
        self.components
            .get_or_try_init(|| async {
                let js = self.cluster.jetstream();
                if let Ok(store) = js.get_object_store(COMPONENTS).await {
                    return Ok(store);
                }
                js.create_object_store(object_store::Config {
                    bucket: COMPONENTS.into(),
                    description: Some("Nimbus components, by sha256".into()),
                    max_bytes: self.cluster.config().components_max_bytes,
                    num_replicas: self.cluster.config().replicas,
                    ..Default::default()
                })
                .await
                .map_err(|e| fail(format!("creating object store {COMPONENTS}: {e}")))
            })
            .await
            .cloned()
    }

    fn seen(&self, key: &str) -> Option<u64> {
        self.revisions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .copied()
    }

    /// Records `revision` of `key`; false if one as new was seen already.
    fn observe(&self, key: &str, revision: u64) -> bool {
        let mut seen = self
            .revisions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match seen.get(key) {
            Some(r) if *r >= revision => false,
            _ => {
                seen.insert(key.to_string(), revision);
                true
            }
        }
    }

    /// Every key's value as it is now, with its revision; also where the
    /// stream was before reading, for the watch to start after.
    async fn read_all(&self) -> Result<(u64, Vec<(String, u64, Option<Bytes>)>), RegistryError> {
        retry("reading the registry", || self.read_all_once()).await
    }

    async fn read_all_once(
        &self,
    ) -> Result<(u64, Vec<(String, u64, Option<Bytes>)>), RegistryError> {
        let store = self.records().await?;
        let last = store
            .stream
            .get_info()
            .await
            .map_err(fail)?
            .state
            .last_sequence;
        let consumer = store
            .stream
            .create_consumer(OrderedConfig {
                deliver_subject: self.cluster.client().new_inbox(),
                filter_subject: format!("{}>", store.prefix),
                replay_policy: ReplayPolicy::Instant,
                deliver_policy: DeliverPolicy::LastPerSubject,
                ..Default::default()
            })
            .await
            .map_err(fail)?;
        let mut found = Vec::new();
        if consumer.cached_info().num_pending == 0 {
            return Ok((last, found));
        }
        let mut messages = consumer.messages().await.map_err(fail)?;
        while let Some(m) = messages.next().await {
            let m = m.map_err(fail)?;
            let info = m.info().map_err(fail)?;
            let (sequence, pending) = (info.stream_sequence, info.pending);
            let deleted = m
                .headers
                .as_ref()
                .and_then(|h| h.get("KV-Operation"))
                .is_some_and(|op| op.as_str() == "DEL" || op.as_str() == "PURGE");
            if let Some(key) = m.subject.strip_prefix(store.prefix.as_str()) {
                found.push((
                    key.to_string(),
                    sequence,
                    (!deleted).then(|| m.payload.clone()),
                ));
            }
            if pending == 0 {
                break;
            }
        }
        Ok((last, found))
    }

    /// The records to start from: NATS's, or, when NATS does not answer
    /// and there is one, this node's copy.
    async fn read_for_load(&self) -> Result<(u64, mirror::Records), RegistryError> {
        let Some(mirror) = &self.mirror else {
            return self.read_all().await;
        };
        // Read first: with no copy (a new node) there is nothing to fall
        // back on, so it waits out a fresh cluster's leader election.
        let copy = mirror.read().unwrap_or_else(|e| {
            tracing::warn!("registry: {e}");
            None
        });
        let Some((revision, records)) = copy else {
            let (last, entries) = self.read_all().await?;
            mirror.replace(last, &entries);
            return Ok((last, entries));
        };
        match tokio::time::timeout(MIRROR_AFTER, self.read_all()).await {
            Ok(Ok((last, entries))) => {
                mirror.replace(last, &entries);
                Ok((last, entries))
            }
            failed => {
                let e = match failed {
                    Ok(Err(e)) => e.0,
                    _ => format!("NATS: no answer within {}s", MIRROR_AFTER.as_secs()),
                };
                tracing::warn!(
                    path = %mirror.path().display(),
                    revision,
                    "registry: {e}; starting from this node's copy of the registry \
                     (changes made meanwhile arrive once NATS answers)"
                );
                Ok((revision, records))
            }
        }
    }

    async fn load(&self) -> Result<Snapshot, RegistryError> {
        let (last, entries) = self.read_for_load().await?;
        let mut snap = Snapshot::default();
        for (key, revision, value) in entries {
            self.observe(&key, revision);
            let Some(change) = decode(&key, value.as_deref()) else {
                continue;
            };
            match change.map_err(RegistryError)? {
                RegistryChange::Tenant {
                    record: Some(t), ..
                } => snap.tenants.push(t),
                RegistryChange::Function {
                    record: Some(f), ..
                } => snap.functions.push(f),
                RegistryChange::Route {
                    record: Some(r), ..
                } => snap.routes.push(r),
                _ => {}
            }
        }
        snap.tenants.sort_by(|a, b| a.name.cmp(&b.name));
        snap.functions
            .sort_by(|a, b| (&a.tenant, &a.name).cmp(&(&b.tenant, &b.name)));
        self.loaded_at.store(last, Ordering::SeqCst);
        Ok(snap)
    }

    /// Writes `value` at `key` if nobody changed it since this node last
    /// saw it; if someone did, `same` decides whether what is there now is
    /// this change already.
    async fn put(
        &self,
        key: &str,
        value: Vec<u8>,
        what: &str,
        same: impl Fn(&[u8]) -> bool,
    ) -> Result<(), RegistryError> {
        // A retry after a write whose answer was lost finds the key moved:
        // `same` then sees this very change there.
        retry(what, || self.put_once(key, value.clone(), what, &same)).await
    }

    async fn put_once(
        &self,
        key: &str,
        value: Vec<u8>,
        what: &str,
        same: &impl Fn(&[u8]) -> bool,
    ) -> Result<(), RegistryError> {
        let store = self.records().await?;
        let written = match self.seen(key) {
            Some(r) => store.update(key, value.into(), r).await.map_err(|e| {
                let raced = crate::kv::raced(&e);
                (raced, e.to_string())
            }),
            None => store.create(key, value.into()).await.map_err(|e| {
                use async_nats::jetstream::kv::CreateErrorKind;
                (e.kind() == CreateErrorKind::AlreadyExists, e.to_string())
            }),
        };
        match written {
            Ok(revision) => {
                self.observe(key, revision);
                Ok(())
            }
            Err((true, _)) => {
                let now = store.entry(key).await.map_err(fail)?;
                match now {
                    Some(e) if e.operation == Operation::Put && same(&e.value) => Ok(()),
                    _ => Err(RegistryError::conflict(format!(
                        "{what} was changed on another node at the same time; this node \
                         now loads that change, try again"
                    ))),
                }
            }
            Err((false, e)) => Err(fail(format!("writing {what}: {e}"))),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), RegistryError> {
        retry(key, || self.delete_once(key)).await
    }

    async fn delete_once(&self, key: &str) -> Result<(), RegistryError> {
        let store = self.records().await?;
        store.delete(key).await.map_err(fail)?;
        // The next write of the key is a create (over the tombstone).
        self.revisions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
        Ok(())
    }

    async fn put_component(&self, sha256: &str, bytes: Vec<u8>) -> Result<(), RegistryError> {
        retry(sha256, || self.put_component_once(sha256, bytes.clone())).await
    }

    async fn put_component_once(&self, sha256: &str, bytes: Vec<u8>) -> Result<(), RegistryError> {
        let store = self.components().await?;
        if store.info(sha256).await.is_ok_and(|i| !i.deleted) {
            return Ok(());
        }
        store
            .put(sha256, &mut bytes.as_slice())
            .await
            .map_err(|e| fail(format!("uploading component {sha256}: {e}")))?;
        Ok(())
    }

    async fn component(&self, sha256: &str) -> Result<Option<Vec<u8>>, RegistryError> {
        retry(sha256, || self.component_once(sha256)).await
    }

    async fn component_once(&self, sha256: &str) -> Result<Option<Vec<u8>>, RegistryError> {
        let store = self.components().await?;
        let mut object = match store.get(sha256).await {
            Ok(o) => o,
            Err(e) if e.kind() == object_store::GetErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(fail(format!("reading component {sha256}: {e}"))),
        };
        let mut bytes = Vec::with_capacity(object.info().size);
        object
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| fail(format!("reading component {sha256}: {e}")))?;
        Ok(Some(bytes))
    }

    /// Removes the components no function refers to, older than the grace.
    async fn sweep(&self) -> Result<(), RegistryError> {
        let (_, entries) = self.read_all().await?;
        let mut used = BTreeSet::new();
        for (key, _, value) in entries {
            if let Some(Ok(RegistryChange::Function {
                record: Some(f), ..
            })) = decode(&key, value.as_deref())
            {
                used.extend(f.versions.into_iter().map(|v| v.sha256));
            }
        }
        let store = self.components().await?;
        let mut list = store.list().await.map_err(fail)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let mut unused = Vec::new();
        while let Some(info) = list.next().await {
            let info = info.map_err(fail)?;
            let old = info
                .modified
                .is_some_and(|m| now - m.unix_timestamp() > SWEEP_GRACE_SECS);
            if !info.deleted && old && !used.contains(&info.name) {
                unused.push(info.name);
            }
        }
        for name in unused {
            store.delete(&name).await.map_err(fail)?;
            tracing::info!(sha256 = %name, "registry: unused component removed");
        }
        Ok(())
    }

    fn sweep_later(self: &Arc<Self>) {
        if self.sweeping.swap(true, Ordering::SeqCst) {
            return;
        }
        let inner = self.clone();
        self.runtime.spawn(async move {
            if let Err(e) = inner.sweep().await {
                tracing::warn!("registry: sweeping components: {e}");
            }
            inner.sweeping.store(false, Ordering::SeqCst);
        });
    }

    async fn watch_from(&self, host: &Host, from: &mut u64) -> Result<(), RegistryError> {
        let store = self.records().await?;
        let mut watch = store.watch_all_from_revision(*from).await.map_err(fail)?;
        self.metrics.watching.set(1);
        while let Some(entry) = watch.next().await {
            let entry = entry.map_err(fail)?;
            *from = entry.revision + 1;
            self.metrics.lag.set(entry.delta as i64);
            let value = (entry.operation == Operation::Put).then_some(&entry.value[..]);
            if let Some(mirror) = &self.mirror {
                mirror.record(&entry.key, entry.revision, value, entry.delta == 0);
            }
            let change = match decode(&entry.key, value) {
                None => continue,
                Some(Err(e)) => {
                    tracing::warn!("registry watch: {e}");
                    continue;
                }
                Some(Ok(c)) => c,
            };
            let (key, revision) = (entry.key.clone(), entry.revision);
            let mut applied = false;
            // Checked under the host's change lock: a write of this node
            // that got there first is newer than this entry.
            host.apply_registry_change(change, || {
                applied = self.observe(&key, revision);
                applied
            })
            .await;
            if applied {
                self.metrics.applied.inc();
            }
        }
        Err(RegistryError("the watch ended".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_decode_to_what_they_name_and_routes_round_trip() {
        let key = route_key(Some("api.example.com"), "/a b/ü");
        match decode(&key, None) {
            Some(Ok(RegistryChange::Route { host, path, record })) => {
                assert_eq!(host.as_deref(), Some("api.example.com"));
                assert_eq!(path, "/a b/ü");
                assert!(record.is_none());
            }
            other => panic!("{other:?}"),
        }
        match decode(&route_key(None, "/x"), None) {
            Some(Ok(RegistryChange::Route { host, .. })) => assert_eq!(host, None),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            decode("f.acme.resize", None),
            Some(Ok(RegistryChange::Function { tenant, name, record: None }))
                if tenant == "acme" && name == "resize"
        ));
        assert!(matches!(
            decode("t.acme", None),
            Some(Ok(RegistryChange::Tenant { name, record: None })) if name == "acme"
        ));
        assert!(decode("other.key", None).is_none());
        let err = decode("t.acme", Some(b"{not json")).unwrap().unwrap_err();
        assert!(err.contains("registry key t.acme"), "{err}");
    }
}
