//! Key-value on a JetStream KV bucket, `NIMBUS_KV`, shared by every node:
//! [`NatsKv`] implements [`KvBackend`].
//!
//! Keys: `<tenant>.s<hex store>.k<hex key>`. Tenant names are
//! `[a-z0-9_-]`, valid as they are; store and key bytes are hex-encoded, so
//! any key is a valid NATS key, the encoding is injective (no two
//! (tenant, store, key) triples meet), and the byte order of keys is kept
//! for listing. Each tenant's stored bytes (guest key + value, counted as
//! the embedded backend counts them) live in `<tenant>.usage`.
//!
//! Every write is a compare-and-set on the key's revision, retried on
//! conflict, so increments from any number of nodes are exact. The quota is
//! cluster-wide: a write first reserves its growth in the tenant's usage
//! (itself a compare-and-set that refuses to pass the quota), then writes
//! the key; a write that loses its race gives the reservation back. A node
//! killed between the two leaves the usage counted high, never low: the
//! quota can be under-used after a crash, never exceeded.
//!
//! Unlike the embedded backend, `set_many` and `delete_many` are not atomic
//! here: nats-server 2.9 has no multi-key transaction. They check every key
//! and value and the quota for the whole batch before writing any, so bad
//! input or a full quota changes nothing; a NATS failure in the middle can
//! leave part of a batch written (retrying the call completes it).

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::consumer::push::OrderedConfig;
use async_nats::jetstream::consumer::{DeliverPolicy, ReplayPolicy};
use async_nats::jetstream::kv::{self, Operation, Store};
use async_nats::jetstream::stream;
use bytes::Bytes;
use nimbus_kv::{
    Found, KvBackend, KvError, MAX_KEY_BYTES, MAX_KEYS_PER_PAGE, MAX_VALUE_BYTES, Namespace,
    check_key, check_value,
};
use tokio::sync::OnceCell;

use crate::Cluster;
use crate::bucket::{self, hex, unhex};

/// The bucket's name.
pub const BUCKET: &str = "NIMBUS_KV";
/// Waiting for NATS longer than this fails the guest's call (the guest
/// sees a storage error) instead of holding its invocation.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Key-value on the cluster's `NIMBUS_KV` bucket.
pub struct NatsKv {
    cluster: Cluster,
    /// `max_bytes` of the bucket.
    max_bytes: i64,
    store: OnceCell<Store>,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for NatsKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsKv")
            .field("bucket", &BUCKET)
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

/// What a compare-and-set write does with the value it found.
enum Change {
    Put(Vec<u8>),
    Delete,
}

impl NatsKv {
    /// A backend on `cluster`, running its NATS calls on the current tokio
    /// runtime. The bucket is created on first use if it is not there
    /// (NATS may be down when the node starts).
    pub fn new(cluster: &Cluster, max_bytes: i64) -> Self {
        Self {
            cluster: cluster.clone(),
            max_bytes,
            store: OnceCell::new(),
            runtime: tokio::runtime::Handle::current(),
        }
    }

    fn block<T: Send + 'static>(
        &self,
        f: impl Future<Output = Result<T, KvError>> + Send + 'static,
    ) -> Result<T, KvError> {
        let r = crate::blocking::block(&self.runtime, CALL_TIMEOUT, f, KvError::Storage);
        if let Err(KvError::Storage(_)) = &r {
            self.cluster.api_error("kv");
        }
        r
    }

    fn handle(&self) -> Handle {
        Handle {
            cluster: self.cluster.clone(),
            max_bytes: self.max_bytes,
            // OnceCell is not Clone across tasks without an Arc; the store
            // itself is cheap to clone once initialised.
            store: self.store.get().cloned(),
        }
    }

    fn with<T: Send + 'static, F, Fut>(&self, f: F) -> Result<T, KvError>
    where
        F: FnOnce(Store) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, KvError>> + Send + 'static,
    {
        let handle = self.handle();
        let store = match handle.store.clone() {
            Some(s) => s,
            None => {
                let s = self.block(async move { handle.open().await })?;
                let _ = self.store.set(s.clone());
                s
            }
        };
        self.block(f(store))
    }
}

/// What a call needs on the runtime.
struct Handle {
    cluster: Cluster,
    max_bytes: i64,
    store: Option<Store>,
}

impl Handle {
    async fn open(self) -> Result<Store, KvError> {
        // Lost updates would be silent; refusing is not.
        bucket::check_clustered_cas(
            &self.cluster,
            "key-value",
            "can accept two writes that expect the same revision",
        )
        .map_err(storage)?;
        let config = bucket::kv_stream(
            BUCKET,
            "Nimbus key-value, every tenant's stores",
            self.max_bytes,
            self.cluster.config().replicas,
        );
        bucket::open_kv(
            self.cluster.jetstream(),
            stream::Config {
                max_message_size: i32::try_from(MAX_VALUE_BYTES + MAX_KEY_BYTES * 2 + 256)
                    .unwrap_or(i32::MAX),
                ..config
            },
        )
        .await
        .map_err(storage)
    }
}

fn storage(e: impl std::fmt::Display) -> KvError {
    let e = format!("NATS: {e}");
    tracing::warn!("key-value: {e}");
    KvError::Storage(e)
}

fn ns_prefix(ns: &Namespace) -> String {
    format!("{}.s{}", ns.tenant, hex(ns.store.as_bytes()))
}

fn encode(ns: &Namespace, key: &str) -> Result<String, KvError> {
    check_key(key)?;
    Ok(format!("{}.k{}", ns_prefix(ns), hex(key.as_bytes())))
}

fn usage_key(tenant: &str) -> String {
    format!("{tenant}.usage")
}

/// The key's value (if it holds one) and its revision (if it has any,
/// deleted or not: a compare-and-set starts from it).
async fn current(store: &Store, key: &str) -> Result<(Option<Bytes>, Option<u64>), KvError> {
    match store.entry(key).await.map_err(storage)? {
        Some(e) if e.operation == Operation::Put => Ok((Some(e.value), Some(e.revision))),
        Some(e) => Ok((None, Some(e.revision))),
        None => Ok((None, None)),
    }
}

/// Writes `value` at `key` if its revision is still `revision`; `false` if
/// another writer got there first.
async fn put_if(
    store: &Store,
    key: &str,
    value: Vec<u8>,
    revision: Option<u64>,
) -> Result<bool, KvError> {
    let result = match revision {
        Some(r) => store
            .update(key, value.into(), r)
            .await
            .map(|_| ())
            .map_err(|e| {
                (e.kind() != kv::UpdateErrorKind::WrongLastRevision && !raced(&e))
                    .then(|| storage(e))
            }),
        None => store
            .create(key, value.into())
            .await
            .map(|_| ())
            .map_err(|e| {
                (e.kind() != kv::CreateErrorKind::AlreadyExists && !raced(&e)).then(|| storage(e))
            }),
    };
    match result {
        Ok(()) => Ok(true),
        Err(None) => Ok(false),
        Err(Some(e)) => Err(e),
    }
}

/// Whether `e` is JetStream refusing a write because the key moved on
/// since the revision it expected: "wrong last sequence", 10071, and from
/// nats-server 2.11 also 10164, which async-nats 0.51 reports as `Other`.
pub(crate) fn raced(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(e) = source {
        if let Some(js) = e.downcast_ref::<async_nats::jetstream::Error>() {
            return matches!(js.error_code().0, 10071 | 10164);
        }
        source = e.source();
    }
    false
}

/// Adds `delta` to the tenant's stored bytes; refuses growth past `quota`.
async fn adjust_usage(
    store: &Store,
    tenant: &str,
    delta: i64,
    quota: Option<u64>,
) -> Result<(), KvError> {
    if delta == 0 {
        return Ok(());
    }
    let key = usage_key(tenant);
    loop {
        let (value, revision) = current(store, &key).await?;
        let used: u64 = value
            .as_deref()
            .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
            .unwrap_or(0);
        let would = used.saturating_add_signed(delta);
        if delta > 0
            && let Some(quota) = quota
            && would > quota
        {
            return Err(KvError::QuotaExceeded {
                tenant: tenant.to_string(),
                would,
                quota,
            });
        }
        if put_if(store, &key, would.to_string().into_bytes(), revision).await? {
            return Ok(());
        }
    }
}

fn size(key: &str, value: Option<&[u8]>) -> i64 {
    value.map_or(0, |v| (key.len() + v.len()) as i64)
}

/// A compare-and-set write of one key, retried until it is not raced;
/// returns the value the key holds after it.
async fn modify(
    store: &Store,
    ns: &Namespace,
    key: &str,
    change: impl Fn(Option<&[u8]>) -> Result<Change, KvError>,
) -> Result<Option<Vec<u8>>, KvError> {
    let encoded = encode(ns, key)?;
    loop {
        let (old, revision) = current(store, &encoded).await?;
        let new = match change(old.as_deref())? {
            Change::Put(v) => Some(v),
            Change::Delete if old.is_none() => return Ok(None),
            Change::Delete => None,
        };
        let delta = size(key, new.as_deref()) - size(key, old.as_deref());
        adjust_usage(store, &ns.tenant, delta, ns.quota).await?;
        let written = match &new {
            Some(v) => put_if(store, &encoded, v.clone(), revision).await,
            None => store
                .delete_expect_revision(&encoded, revision)
                .await
                .map(|()| true)
                .or_else(|e| {
                    if e.kind() == kv::DeleteErrorKind::WrongLastRevision || raced(&e) {
                        Ok(false)
                    } else {
                        Err(storage(e))
                    }
                }),
        };
        match written {
            Ok(true) => return Ok(new),
            Ok(false) => adjust_usage(store, &ns.tenant, -delta, None).await?,
            Err(e) => {
                adjust_usage(store, &ns.tenant, -delta, None).await?;
                return Err(e);
            }
        }
    }
}

/// The keys under `prefix.` holding a value, as stored (encoded), sorted.
async fn keys_under(
    store: &Store,
    client: &async_nats::Client,
    prefix: &str,
) -> Result<Vec<String>, KvError> {
    use futures_util::StreamExt;
    let consumer = store
        .stream
        .create_consumer(OrderedConfig {
            deliver_subject: client.new_inbox(),
            filter_subject: format!("{}{prefix}.>", store.prefix),
            headers_only: true,
            replay_policy: ReplayPolicy::Instant,
            deliver_policy: DeliverPolicy::LastPerSubject,
            ..Default::default()
        })
        .await
        .map_err(storage)?;
    let mut keys = Vec::new();
    if consumer.cached_info().num_pending == 0 {
        return Ok(keys);
    }
    let mut messages = consumer.messages().await.map_err(storage)?;
    while let Some(m) = messages.next().await {
        let m = m.map_err(storage)?;
        let deleted = m
            .headers
            .as_ref()
            .and_then(|h| h.get("KV-Operation"))
            .is_some_and(|op| op.as_str() == "DEL" || op.as_str() == "PURGE");
        if !deleted && let Some(key) = m.subject.strip_prefix(store.prefix.as_str()) {
            keys.push(key.to_string());
        }
        if m.info().map_err(storage)?.pending == 0 {
            break;
        }
    }
    keys.sort();
    Ok(keys)
}

impl KvBackend for NatsKv {
    fn reads_wait(&self) -> bool {
        true
    }

    fn get(&self, ns: &Namespace, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let encoded = encode(ns, key)?;
        self.with(
            move |store| async move { Ok(current(&store, &encoded).await?.0.map(|v| v.to_vec())) },
        )
    }

    fn set(&self, ns: &Namespace, key: &str, value: &[u8]) -> Result<(), KvError> {
        check_value(value)?;
        let (ns, key, value) = (ns.clone(), key.to_string(), value.to_vec());
        self.with(move |store| async move {
            modify(&store, &ns, &key, |_| Ok(Change::Put(value.clone()))).await?;
            Ok(())
        })
    }

    fn delete(&self, ns: &Namespace, key: &str) -> Result<(), KvError> {
        let (ns, key) = (ns.clone(), key.to_string());
        self.with(move |store| async move {
            modify(&store, &ns, &key, |_| Ok(Change::Delete)).await?;
            Ok(())
        })
    }

    fn list_keys(
        &self,
        ns: &Namespace,
        cursor: Option<u64>,
    ) -> Result<(Vec<String>, Option<u64>), KvError> {
        let prefix = ns_prefix(ns);
        let client = self.cluster.client().clone();
        let all =
            self.with(move |store| async move { keys_under(&store, &client, &prefix).await })?;
        let start = usize::try_from(cursor.unwrap_or(0)).unwrap_or(usize::MAX);
        let page: Vec<String> = all
            .iter()
            .skip(start)
            .take(MAX_KEYS_PER_PAGE)
            .filter_map(|k| {
                let hex = k.rsplit_once(".k")?.1;
                String::from_utf8(unhex(hex)?).ok()
            })
            .collect();
        let next = start + MAX_KEYS_PER_PAGE;
        Ok((page, (next < all.len()).then_some(next as u64)))
    }

    fn increment(&self, ns: &Namespace, key: &str, delta: u64) -> Result<u64, KvError> {
        let (ns, key) = (ns.clone(), key.to_string());
        let name = key.clone();
        let value = self.with(move |store| async move {
            modify(&store, &ns, &key, |old| {
                let n: u64 = match old {
                    None => 0,
                    Some(v) => std::str::from_utf8(v)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| KvError::NotACounter(key.clone()))?,
                };
                let n = n
                    .checked_add(delta)
                    .ok_or_else(|| KvError::NotACounter(key.clone()))?;
                Ok(Change::Put(n.to_string().into_bytes()))
            })
            .await
        })?;
        value
            .as_deref()
            .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
            .ok_or(KvError::NotACounter(name))
    }

    fn get_many(&self, ns: &Namespace, keys: &[String]) -> Result<Found, KvError> {
        let encoded: Vec<(String, String)> = keys
            .iter()
            .map(|k| Ok((k.clone(), encode(ns, k)?)))
            .collect::<Result<_, KvError>>()?;
        self.with(move |store| async move {
            let mut found = Vec::with_capacity(encoded.len());
            for (key, e) in encoded {
                found.push(current(&store, &e).await?.0.map(|v| (key, v.to_vec())));
            }
            Ok(found)
        })
    }

    fn set_many(&self, ns: &Namespace, pairs: &[(String, Vec<u8>)]) -> Result<(), KvError> {
        for (k, v) in pairs {
            encode(ns, k)?;
            check_value(v)?;
        }
        let (ns, pairs) = (ns.clone(), pairs.to_vec());
        self.with(move |store| async move {
            // The whole batch's growth is checked against the quota first,
            // so a batch the quota cannot take writes nothing.
            if let Some(quota) = ns.quota {
                let mut growth = 0i64;
                for (k, v) in &pairs {
                    let old = current(&store, &encode(&ns, k)?).await?.0;
                    growth += size(k, Some(v)) - size(k, old.as_deref());
                }
                let used = stored(&store, &ns.tenant).await?;
                let would = used.saturating_add_signed(growth);
                if growth > 0 && would > quota {
                    return Err(KvError::QuotaExceeded {
                        tenant: ns.tenant.clone(),
                        would,
                        quota,
                    });
                }
            }
            for (k, v) in pairs {
                modify(&store, &ns, &k, |_| Ok(Change::Put(v.clone()))).await?;
            }
            Ok(())
        })
    }

    fn delete_many(&self, ns: &Namespace, keys: &[String]) -> Result<(), KvError> {
        for k in keys {
            encode(ns, k)?;
        }
        let (ns, keys) = (ns.clone(), keys.to_vec());
        self.with(move |store| async move {
            for k in keys {
                modify(&store, &ns, &k, |_| Ok(Change::Delete)).await?;
            }
            Ok(())
        })
    }

    fn stored_bytes(&self, tenant: &str) -> Result<u64, KvError> {
        // Asked by every metrics scrape: without NATS, a request would wait
        // out its timeout for each tenant and the scrape would time out.
        if !self.cluster.connected() {
            return Err(KvError::Storage("NATS disconnected".into()));
        }
        let tenant = tenant.to_string();
        self.with(move |store| async move { stored(&store, &tenant).await })
    }

    fn delete_tenant(&self, tenant: &str) -> Result<u64, KvError> {
        let tenant = tenant.to_string();
        let client = self.cluster.client().clone();
        self.with(move |store| async move {
            let data = format!("{tenant}.s");
            let mut removed = 0;
            for key in keys_under(&store, &client, &tenant).await? {
                store.purge(&key).await.map_err(storage)?;
                if key.starts_with(&data) {
                    removed += 1;
                }
            }
            Ok(removed)
        })
    }
}

async fn stored(store: &Store, tenant: &str) -> Result<u64, KvError> {
    Ok(current(store, &usage_key(tenant))
        .await?
        .0
        .as_deref()
        .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
        .unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_valid_nats_keys_and_never_meet_across_namespaces() {
        let a = Namespace::new("acme", "s.1");
        let b = Namespace::new("acme", "s");
        let k1 = encode(&a, "x").unwrap();
        let k2 = encode(&b, "1.x").unwrap();
        assert_ne!(k1, k2);
        for k in [&k1, &k2, &encode(&a, "").unwrap()] {
            assert!(
                k.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(&c)),
                "{k}"
            );
            assert!(!k.contains(".."), "{k}");
        }
        assert!(usage_key("acme") != ns_prefix(&Namespace::new("acme", "usage")));
    }
}
