//! Blobs on JetStream, shared by every node: [`NatsBlobs`] implements
//! [`BlobBackend`].
//!
//! - Object bytes and metadata are in the object store `NIMBUS_BLOBS`, one
//!   object per (tenant, container, name), named `<tenant>/<container>/<name>`:
//!   neither tenant (`[a-z0-9_-]`) nor container names (`[a-z0-9._-]`) hold
//!   a `/`, so the name is injective, and the object store base64-encodes
//!   it into its subject, so any object name is a valid one. Content type,
//!   creation time, the write's event depth and (after a rename) the etag
//!   are the object's metadata; the etag is otherwise the version's nuid.
//! - Containers (`<tenant>.c.<hex container>`, JSON) and each tenant's
//!   stored bytes (`<tenant>.usage`) are in the KV bucket
//!   `NIMBUS_BLOB_META`. The quota is cluster-wide: a write reserves its
//!   bytes in the usage by compare-and-set (refusing to pass the quota)
//!   before it writes, and gives back the replaced version's bytes only
//!   after; a node killed in between leaves usage counted high, never low.
//! - Object-created events are the object store's own metadata messages
//!   (`$O.NIMBUS_BLOBS.M.>` of stream `OBJ_NIMBUS_BLOBS`): the write *is*
//!   its event, so there is no window between the two. One durable pull
//!   consumer, `nimbus_object_events`, shared by every node, hands each to
//!   one node's object trigger; the trigger's `ack_event` acks it, and a
//!   node that dies holding one has it redelivered to another after
//!   [`ACK_WAIT`]. Deletions, and writes no trigger watched (no event
//!   depth in their metadata), are acked unread.
//!
//! What differs from the embedded backend: the metadata stream keeps the
//! last message per object, so two writes of one key before the first's
//! event is read raise one event (the second's); listing a container reads
//! the metadata of every object in the bucket (the object store's subjects
//! are base64 of the whole name, which no subject filter can narrow to a
//! container); concurrent writes of one key through two nodes can leave
//! the usage off by the difference of their sizes; and deleting a
//! container or tenant is not atomic (its record goes first, so no write
//! lands in it meanwhile; a node killed midway leaves objects that a
//! container of the same name created later would show).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io::{Seek, SeekFrom, Write};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::push::OrderedConfig;
use async_nats::jetstream::consumer::{self, DeliverPolicy, PullConsumer, ReplayPolicy};
use async_nats::jetstream::kv::{self, Operation};
use async_nats::jetstream::object_store::{self, ObjectInfo, ObjectMetadata, ObjectStore};
use async_nats::jetstream::{Message, stream};
use bytes::Bytes;
use futures_util::StreamExt;
use nimbus_blob::{
    BlobBackend, BlobError, ContainerMeta, DEFAULT_MAX_OBJECT_BYTES, MAX_LIST_PAGE, ObjectCreated,
    ObjectMeta, ObjectReader, Spool, WriteOptions, check_container_name, check_object_name,
    check_tenant, now_ms,
};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::sync::OnceCell;

use crate::Cluster;
use crate::bucket::{self, hex, unhex};

mod backend;
use crate::kv::raced;

/// The object store holding every tenant's objects.
pub const BUCKET: &str = "NIMBUS_BLOBS";
/// Containers and per-tenant stored bytes.
pub const META_BUCKET: &str = "NIMBUS_BLOB_META";
/// The durable consumer of object-created events, shared by every node.
pub const EVENTS_CONSUMER: &str = "nimbus_object_events";
/// How long an event fetched by a node that stops answering waits before
/// another node gets it. A live node extends it every third of it while
/// the event is being delivered, however long its retries take.
pub const ACK_WAIT: Duration = Duration::from_secs(10);
/// Events a node holds undelivered at most: the rest stay with the
/// consumer for the other nodes.
const MAX_HELD: usize = 64;
/// Metadata calls.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Calls moving an object's bytes (up to the object size limit).
const DATA_TIMEOUT: Duration = Duration::from_secs(300);

// Object metadata keys.
const CONTENT_TYPE: &str = "nimbus-content-type";
const CREATED_AT: &str = "nimbus-created-at-ms";
const EVENT_DEPTH: &str = "nimbus-event-depth";
const ETAG: &str = "nimbus-etag";

/// Blobs on the cluster's `NIMBUS_BLOBS` object store.
#[derive(Clone)]
pub struct NatsBlobs {
    inner: Arc<Inner>,
}

struct Inner {
    cluster: Cluster,
    max_bytes: i64,
    max_object_bytes: u64,
    stores: OnceCell<Stores>,
    runtime: tokio::runtime::Handle,
    /// Events this node fetched and has not acked, by stream sequence.
    held: Mutex<BTreeMap<u64, Held>>,
}

impl std::fmt::Debug for NatsBlobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsBlobs")
            .field("bucket", &BUCKET)
            .field("max_bytes", &self.inner.max_bytes)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
struct Stores {
    objects: ObjectStore,
    meta: kv::Store,
    events: PullConsumer,
}

struct Held {
    message: Message,
    event: ObjectCreated,
}

#[derive(Serialize, Deserialize)]
struct ContainerRecord {
    created_at_ms: u64,
}

impl NatsBlobs {
    /// A backend on `cluster`, running its NATS calls on the current tokio
    /// runtime. Its buckets and consumer are created on first use if they
    /// are not there (NATS may be down when the node starts).
    pub fn new(cluster: &Cluster, max_bytes: i64) -> Self {
        Self {
            inner: Arc::new(Inner {
                cluster: cluster.clone(),
                max_bytes,
                max_object_bytes: DEFAULT_MAX_OBJECT_BYTES,
                stores: OnceCell::new(),
                runtime: tokio::runtime::Handle::current(),
                held: Mutex::default(),
            }),
        }
    }

    /// Runs `f` with the stores on the runtime, waiting at most `limit`.
    fn with<T: Send + 'static, F, Fut>(&self, limit: Duration, f: F) -> Result<T, BlobError>
    where
        F: FnOnce(Arc<Inner>, Stores) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, BlobError>> + Send + 'static,
    {
        let inner = self.inner.clone();
        let r = crate::blocking::block(
            &self.inner.runtime,
            limit,
            async move {
                let stores = inner.stores().await?;
                f(inner, stores).await
            },
            BlobError::Storage,
        );
        if let Err(BlobError::Storage(_)) = &r {
            self.inner.cluster.api_error("blobs");
        }
        r
    }
}

impl Inner {
    async fn stores(self: &Arc<Self>) -> Result<Stores, BlobError> {
        self.stores
            .get_or_try_init(|| async {
                let stores = self.open().await?;
                tokio::spawn(keep_alive(Arc::downgrade(self)));
                Ok(stores)
            })
            .await
            .cloned()
    }

    async fn open(&self) -> Result<Stores, BlobError> {
        let js = self.cluster.jetstream();
        let replicas = self.cluster.config().replicas;
        // The quota counter is a compare-and-set: lost updates would
        // silently let tenants past their quota.
        bucket::check_clustered_cas(
            &self.cluster,
            "blob storage",
            "can accept two writes that expect the same revision",
        )
        .map_err(storage)?;
        let meta = bucket::open_kv(
            js,
            bucket::kv_stream(
                META_BUCKET,
                "Nimbus blob containers and stored bytes",
                256 << 20,
                replicas,
            ),
        )
        .await
        .map_err(storage)?;
        let objects = match js.get_object_store(BUCKET).await {
            Ok(store) => store,
            Err(_) => {
                let created = js
                    .create_object_store(object_store::Config {
                        bucket: BUCKET.into(),
                        description: Some("Nimbus blobs, every tenant's objects".into()),
                        max_bytes: self.max_bytes,
                        num_replicas: replicas,
                        storage: stream::StorageType::File,
                        ..Default::default()
                    })
                    .await;
                match created {
                    Ok(store) => store,
                    // Another node created it first.
                    Err(e) => js
                        .get_object_store(BUCKET)
                        .await
                        .map_err(|_| storage(format!("creating object store {BUCKET}: {e}")))?,
                }
            }
        };
        let stream = js
            .get_stream(format!("OBJ_{BUCKET}"))
            .await
            .map_err(|e| storage(format!("opening stream OBJ_{BUCKET}: {e}")))?;
        // Every metadata message from the first: created with the bucket (or
        // before this node's first write), it misses no write.
        let events = stream
            .get_or_create_consumer(
                EVENTS_CONSUMER,
                consumer::pull::Config {
                    durable_name: Some(EVENTS_CONSUMER.into()),
                    description: Some("Nimbus object-created events".into()),
                    filter_subject: format!("$O.{BUCKET}.M.>"),
                    deliver_policy: DeliverPolicy::All,
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: ACK_WAIT,
                    max_ack_pending: 10_000,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| storage(format!("creating consumer {EVENTS_CONSUMER}: {e}")))?;
        Ok(Stores {
            objects,
            meta,
            events,
        })
    }

    fn held(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Held>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Tells the server, every third of [`ACK_WAIT`], that the events this
/// node holds are still being delivered, so a delivery retrying for longer
/// is not handed to another node too. Ends with the backend.
async fn keep_alive(inner: Weak<Inner>) {
    loop {
        tokio::time::sleep(ACK_WAIT / 3).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let messages: Vec<Message> = inner.held().values().map(|h| h.message.clone()).collect();
        drop(inner);
        for m in messages {
            if let Err(e) = m.ack_with(AckKind::Progress).await {
                tracing::debug!("object event progress: {e}");
            }
        }
    }
}

fn storage(e: impl std::fmt::Display) -> BlobError {
    let e = format!("NATS: {e}");
    tracing::warn!("blobs: {e}");
    BlobError::Storage(e)
}

fn container_key(tenant: &str, container: &str) -> String {
    format!("{tenant}.c.{}", hex(container.as_bytes()))
}

fn usage_key(tenant: &str) -> String {
    format!("{tenant}.usage")
}

fn object_name(tenant: &str, container: &str, name: &str) -> String {
    format!("{tenant}/{container}/{name}")
}

/// (tenant, container, name) of a stored object's name.
fn split_name(stored: &str) -> Option<(&str, &str, &str)> {
    let (tenant, rest) = stored.split_once('/')?;
    let (container, name) = rest.split_once('/')?;
    Some((tenant, container, name))
}

fn check_names(container: &str, name: &str) -> Result<(), BlobError> {
    check_container_name(container)?;
    check_object_name(name)
}

fn no_such_object(container: &str, name: &str) -> BlobError {
    BlobError::NoSuchObject {
        container: container.into(),
        object: name.into(),
    }
}

fn etag(info: &ObjectInfo) -> String {
    info.metadata
        .get(ETAG)
        .cloned()
        .unwrap_or_else(|| info.nuid.clone())
}

fn created_at_ms(info: &ObjectInfo) -> u64 {
    info.metadata
        .get(CREATED_AT)
        .and_then(|v| v.parse().ok())
        .or_else(|| {
            info.modified
                .map(|t| u64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0))
        })
        .unwrap_or(0)
}

fn meta_of(info: &ObjectInfo, container: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        container: container.into(),
        name: name.into(),
        size: info.size as u64,
        created_at_ms: created_at_ms(info),
        content_type: info.metadata.get(CONTENT_TYPE).cloned(),
        etag: etag(info),
    }
}

/// The event a metadata message announces, if it announces one.
fn event_of(info: &ObjectInfo, seq: u64) -> Option<ObjectCreated> {
    if info.deleted {
        return None;
    }
    let depth = info.metadata.get(EVENT_DEPTH)?.parse().ok()?;
    let (tenant, container, key) = split_name(&info.name)?;
    Some(ObjectCreated {
        seq,
        tenant: tenant.into(),
        container: container.into(),
        key: key.into(),
        size: info.size as u64,
        content_type: info.metadata.get(CONTENT_TYPE).cloned(),
        etag: etag(info),
        time_ms: created_at_ms(info),
        depth,
    })
}

/// The metadata a write stores with its bytes.
fn write_metadata(
    content_type: Option<String>,
    options: &WriteOptions,
    etag: Option<String>,
) -> HashMap<String, String> {
    let mut m = HashMap::new();
    m.insert(CREATED_AT.to_string(), now_ms().to_string());
    if let Some(ct) = content_type {
        m.insert(CONTENT_TYPE.to_string(), ct);
    }
    if let Some(depth) = options.event_depth {
        m.insert(EVENT_DEPTH.to_string(), depth.to_string());
    }
    if let Some(etag) = etag {
        m.insert(ETAG.to_string(), etag);
    }
    m
}

/// The live version of a stored object.
async fn info(objects: &ObjectStore, stored: &str) -> Result<Option<ObjectInfo>, BlobError> {
    match objects.info(stored).await {
        Ok(i) if i.deleted => Ok(None),
        Ok(i) => Ok(Some(i)),
        Err(e) if e.kind() == object_store::InfoErrorKind::NotFound => Ok(None),
        Err(e) => Err(storage(e)),
    }
}

async fn container_record(
    meta: &kv::Store,
    tenant: &str,
    container: &str,
) -> Result<Option<ContainerMeta>, BlobError> {
    match meta
        .entry(container_key(tenant, container))
        .await
        .map_err(storage)?
    {
        Some(e) if e.operation == Operation::Put => {
            let rec: ContainerRecord =
                serde_json::from_slice(&e.value).map_err(|e| storage(e.to_string()))?;
            Ok(Some(ContainerMeta {
                name: container.into(),
                created_at_ms: rec.created_at_ms,
            }))
        }
        _ => Ok(None),
    }
}

async fn require_container(
    meta: &kv::Store,
    tenant: &str,
    container: &str,
) -> Result<(), BlobError> {
    match container_record(meta, tenant, container).await? {
        Some(_) => Ok(()),
        None => Err(BlobError::NoSuchContainer(container.into())),
    }
}

/// The usage counter's value and revision.
async fn usage(meta: &kv::Store, tenant: &str) -> Result<(u64, Option<u64>), BlobError> {
    match meta.entry(usage_key(tenant)).await.map_err(storage)? {
        Some(e) if e.operation == Operation::Put => Ok((
            std::str::from_utf8(&e.value)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            Some(e.revision),
        )),
        Some(e) => Ok((0, Some(e.revision))),
        None => Ok((0, None)),
    }
}

/// Writes `value` at `key` if its revision is still `revision`; `false` if
/// another writer got there first.
async fn put_if(
    meta: &kv::Store,
    key: &str,
    value: Bytes,
    revision: Option<u64>,
) -> Result<bool, BlobError> {
    match revision {
        Some(r) => match meta.update(key, value, r).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision || raced(&e) => Ok(false),
            Err(e) => Err(storage(e)),
        },
        None => match meta.create(key, value).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists || raced(&e) => Ok(false),
            Err(e) => Err(storage(e)),
        },
    }
}

/// Adds `added` bytes to the tenant's usage, refused (changing nothing)
/// if the write, once it has replaced `replaced` bytes, would grow the
/// total past `quota`. The replaced bytes are not taken off here: only
/// [`release`] does, after the write, so a crash between counts high.
async fn reserve(
    meta: &kv::Store,
    tenant: &str,
    added: u64,
    replaced: u64,
    quota: Option<u64>,
) -> Result<(), BlobError> {
    if added == 0 {
        return Ok(());
    }
    loop {
        let (used, revision) = usage(meta, tenant).await?;
        let would = used.saturating_sub(replaced) + added;
        if let Some(quota) = quota
            && added > replaced
            && would > quota
        {
            return Err(BlobError::QuotaExceeded {
                tenant: tenant.into(),
                would,
                quota,
            });
        }
        let next = (used + added).to_string();
        if put_if(meta, &usage_key(tenant), next.into(), revision).await? {
            return Ok(());
        }
    }
}

/// Takes `n` bytes off the tenant's usage.
async fn release(meta: &kv::Store, tenant: &str, n: u64) -> Result<(), BlobError> {
    if n == 0 {
        return Ok(());
    }
    loop {
        let (used, revision) = usage(meta, tenant).await?;
        let next = used.saturating_sub(n).to_string();
        if put_if(meta, &usage_key(tenant), next.into(), revision).await? {
            return Ok(());
        }
    }
}

/// The KV entries under `prefix.` holding a value, sorted by key.
async fn entries_under(
    meta: &kv::Store,
    client: &async_nats::Client,
    prefix: &str,
) -> Result<Vec<(String, Bytes)>, BlobError> {
    let consumer = meta
        .stream
        .create_consumer(OrderedConfig {
            deliver_subject: client.new_inbox(),
            filter_subject: format!("{}{prefix}.>", meta.prefix),
            replay_policy: ReplayPolicy::Instant,
            deliver_policy: DeliverPolicy::LastPerSubject,
            ..Default::default()
        })
        .await
        .map_err(storage)?;
    let mut out = Vec::new();
    if consumer.cached_info().num_pending == 0 {
        return Ok(out);
    }
    let mut messages = consumer.messages().await.map_err(storage)?;
    while let Some(m) = messages.next().await {
        let m = m.map_err(storage)?;
        let deleted = m
            .headers
            .as_ref()
            .and_then(|h| h.get("KV-Operation"))
            .is_some_and(|op| op.as_str() == "DEL" || op.as_str() == "PURGE");
        if !deleted && let Some(key) = m.subject.strip_prefix(meta.prefix.as_str()) {
            out.push((key.to_string(), m.payload.clone()));
        }
        if m.info().map_err(storage)?.pending == 0 {
            break;
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Every live object whose stored name starts with `prefix`, sorted by
/// name. Reads the whole bucket's metadata (see the module's notes).
async fn objects_under(objects: &ObjectStore, prefix: &str) -> Result<Vec<ObjectInfo>, BlobError> {
    let mut list = objects.list().await.map_err(storage)?;
    let mut out = Vec::new();
    while let Some(info) = list.next().await {
        let info = info.map_err(storage)?;
        if info.name.starts_with(prefix) {
            out.push(info);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Deletes every object under `prefix`, returning the bytes and objects
/// removed.
async fn delete_under(objects: &ObjectStore, prefix: &str) -> Result<(u64, u64), BlobError> {
    let (mut bytes, mut count) = (0, 0);
    for info in objects_under(objects, prefix).await? {
        match objects.delete(&info.name).await {
            Ok(()) => {}
            // Deleted meanwhile, by another node.
            Err(e) if e.kind() == object_store::DeleteErrorKind::NotFound => continue,
            Err(e) => return Err(storage(e)),
        }
        bytes += info.size as u64;
        count += 1;
    }
    Ok((bytes, count))
}

/// Writes `data` as the object `stored` with `metadata`, charging
/// `size` bytes against `quota` first; gives back the version it replaced.
#[allow(clippy::too_many_arguments)]
async fn put_object(
    stores: &Stores,
    tenant: &str,
    container: &str,
    stored: String,
    metadata: HashMap<String, String>,
    size: u64,
    quota: Option<u64>,
    data: &mut (impl tokio::io::AsyncRead + Unpin),
) -> Result<ObjectInfo, BlobError> {
    require_container(&stores.meta, tenant, container).await?;
    let replaced = info(&stores.objects, &stored)
        .await?
        .map_or(0, |i| i.size as u64);
    reserve(&stores.meta, tenant, size, replaced, quota).await?;
    let put = stores
        .objects
        .put(
            ObjectMetadata {
                name: stored.clone(),
                metadata,
                ..Default::default()
            },
            data,
        )
        .await;
    use object_store::PutErrorKind as Kind;
    let written = match put {
        Ok(info) => info,
        // The new version is stored (and announced); only the old one's
        // chunks were left behind, as bytes no metadata refers to.
        Err(e) if e.kind() == Kind::PurgeOldChunks => {
            tracing::warn!(object = %stored, "blobs: replaced chunks not purged: {e}");
            info(&stores.objects, &stored)
                .await?
                .ok_or_else(|| storage(format!("object {stored} vanished after its write")))?
        }
        Err(e) => {
            // Written or not is unknown unless it failed before its
            // metadata went out: the reservation stays unless it certainly
            // did not land (counted high, never low).
            if matches!(
                e.kind(),
                Kind::InvalidName | Kind::ReadChunks | Kind::PublishChunks
            ) {
                release(&stores.meta, tenant, size).await?;
            }
            return Err(storage(e));
        }
    };
    release(&stores.meta, tenant, replaced).await?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_injective_and_keys_valid() {
        let a = object_name("acme", "c", "x/y");
        let b = object_name("acme", "c.x", "y");
        assert_ne!(a, b);
        assert_eq!(split_name(&a), Some(("acme", "c", "x/y")));
        assert_eq!(split_name(&b), Some(("acme", "c.x", "y")));
        for k in [container_key("acme", "a.b-c_d"), usage_key("acme")] {
            assert!(
                k.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(&c)),
                "{k}"
            );
        }
        assert_ne!(container_key("acme", "usage"), usage_key("acme"));
    }

    #[test]
    fn only_writes_with_a_depth_are_events() {
        let mut info = ObjectInfo {
            name: "acme/in/k".into(),
            description: None,
            metadata: write_metadata(
                Some("text/plain".into()),
                &WriteOptions {
                    quota: None,
                    event_depth: Some(2),
                },
                None,
            ),
            headers: None,
            options: None,
            bucket: BUCKET.into(),
            nuid: "N1".into(),
            size: 3,
            chunks: 1,
            modified: None,
            digest: None,
            deleted: false,
        };
        let ev = event_of(&info, 7).expect("an event");
        assert_eq!(
            (ev.seq, ev.depth, ev.etag.as_str(), ev.key.as_str()),
            (7, 2, "N1", "k")
        );
        assert_eq!(ev.content_type.as_deref(), Some("text/plain"));
        info.deleted = true;
        assert!(event_of(&info, 8).is_none());
        info.deleted = false;
        info.metadata.remove(EVENT_DEPTH);
        assert!(event_of(&info, 9).is_none());
    }
}
