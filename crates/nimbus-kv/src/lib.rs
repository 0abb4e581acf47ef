//! Key-value storage behind `wasi:keyvalue`, per tenant.
//!
//! [`KvBackend`] is what the host calls; [`RedbKv`] is the embedded default
//! (a single file, crash-safe: a write returns only after its transaction is
//! committed and synced). A distributed backend implements the same trait.
//!
//! Namespacing: every key lives under a [`Namespace`] (tenant, store). The
//! stored key is the length-prefixed tenant, the length-prefixed store, then
//! the key — an injective encoding, so no choice of names in one tenant can
//! address another tenant's keys.

use std::ops::Bound;
use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

const KV: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");
/// Bytes stored per tenant (keys + values), updated in the same transaction
/// as the data, so it is exact after any crash.
const USAGE: TableDefinition<&str, u64> = TableDefinition::new("stored_bytes");

/// Largest key, bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Largest value, bytes.
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// Most keys one `list_keys` page returns.
pub const MAX_KEYS_PER_PAGE: usize = 1000;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KvError {
    /// A key or value over the limits above, or a bad name.
    #[error("{0}")]
    Invalid(String),
    /// An increment of a value that is not a decimal `u64`, or one that
    /// would overflow it.
    #[error("the value of key {0:?} is not a counter (a decimal u64 below 2^64 - delta)")]
    NotACounter(String),
    /// The tenant's storage quota would be exceeded; nothing was written.
    #[error("tenant `{tenant}` would store {would} bytes, over its quota of {quota} bytes")]
    QuotaExceeded {
        tenant: String,
        would: u64,
        quota: u64,
    },
    #[error("storage: {0}")]
    Storage(String),
}

macro_rules! storage_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for KvError {
            fn from(e: $t) -> Self {
                KvError::Storage(e.to_string())
            }
        }
    )*};
}
storage_errors!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Which tenant's which store.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Namespace {
    pub tenant: String,
    pub store: String,
    /// Most bytes (keys + values) the tenant may store in total; writes
    /// that would go over it fail and change nothing.
    pub quota: Option<u64>,
}

impl Namespace {
    pub fn new(tenant: impl Into<String>, store: impl Into<String>) -> Self {
        Self {
            tenant: tenant.into(),
            store: store.into(),
            quota: None,
        }
    }

    #[must_use]
    pub fn with_quota(mut self, bytes: u64) -> Self {
        self.quota = Some(bytes);
        self
    }

    fn prefix(&self) -> Vec<u8> {
        let mut p = tenant_prefix(&self.tenant);
        p.extend_from_slice(&(self.store.len() as u32).to_be_bytes());
        p.extend_from_slice(self.store.as_bytes());
        p
    }

    fn key(&self, key: &str) -> Result<Vec<u8>, KvError> {
        check_key(key)?;
        let mut k = self.prefix();
        k.extend_from_slice(key.as_bytes());
        Ok(k)
    }
}

/// The length-prefixed tenant that starts every key of its stores, and
/// only theirs (the encoding is injective).
fn tenant_prefix(tenant: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(8 + tenant.len());
    p.extend_from_slice(&(tenant.len() as u32).to_be_bytes());
    p.extend_from_slice(tenant.as_bytes());
    p
}

/// The first key after every key that starts with `prefix` (`None`: no
/// such key), so a range over the prefix ends where its keys do.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// A key within [`MAX_KEY_BYTES`]; every backend checks the same limits.
pub fn check_key(key: &str) -> Result<(), KvError> {
    if key.len() > MAX_KEY_BYTES {
        return Err(KvError::Invalid(format!(
            "key of {} bytes is over the limit of {MAX_KEY_BYTES} bytes",
            key.len()
        )));
    }
    Ok(())
}

/// A value within [`MAX_VALUE_BYTES`].
pub fn check_value(value: &[u8]) -> Result<(), KvError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(KvError::Invalid(format!(
            "value of {} bytes is over the limit of {MAX_VALUE_BYTES} bytes",
            value.len()
        )));
    }
    Ok(())
}

/// What `get_many` returns: per requested key, the pair if present.
pub type Found = Vec<Option<(String, Vec<u8>)>>;

/// A key-value backend. Methods block (they may sync to disk): call them
/// from a blocking context.
pub trait KvBackend: Send + Sync + 'static {
    /// Whether reads may wait (on a network, a disk): the host then runs
    /// them on its blocking pool as it does writes. The embedded default
    /// answers reads from memory, faster than handing them to a thread.
    fn reads_wait(&self) -> bool {
        false
    }
    fn get(&self, ns: &Namespace, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    fn set(&self, ns: &Namespace, key: &str, value: &[u8]) -> Result<(), KvError>;
    fn delete(&self, ns: &Namespace, key: &str) -> Result<(), KvError>;
    fn exists(&self, ns: &Namespace, key: &str) -> Result<bool, KvError> {
        Ok(self.get(ns, key)?.is_some())
    }
    /// Keys in order, starting `cursor` keys in; the next cursor if more remain.
    fn list_keys(
        &self,
        ns: &Namespace,
        cursor: Option<u64>,
    ) -> Result<(Vec<String>, Option<u64>), KvError>;
    /// Adds `delta` to the counter at `key` (absent counts as 0) atomically;
    /// returns the new value.
    fn increment(&self, ns: &Namespace, key: &str, delta: u64) -> Result<u64, KvError>;
    fn get_many(&self, ns: &Namespace, keys: &[String]) -> Result<Found, KvError> {
        keys.iter()
            .map(|k| Ok(self.get(ns, k)?.map(|v| (k.clone(), v))))
            .collect()
    }
    /// All or nothing.
    fn set_many(&self, ns: &Namespace, pairs: &[(String, Vec<u8>)]) -> Result<(), KvError>;
    /// All or nothing.
    fn delete_many(&self, ns: &Namespace, keys: &[String]) -> Result<(), KvError>;
    /// Bytes (keys + values) a tenant stores across all its stores.
    fn stored_bytes(&self, tenant: &str) -> Result<u64, KvError>;
    /// For deleting a tenant: every key of all its stores, and its stored
    /// bytes, in one transaction. Returns the keys removed.
    fn delete_tenant(&self, tenant: &str) -> Result<u64, KvError>;
}

type KvTable<'t> = redb::Table<'t, &'static [u8], &'static [u8]>;

/// A write transaction's table, counting how many bytes it adds or frees.
struct Tracked<'a, 't> {
    table: &'a mut KvTable<'t>,
    delta: i64,
    /// Length of the namespace prefix: bytes stored are counted as the
    /// guest sees them (its key and value), not the internal encoding.
    prefix: usize,
}

impl Tracked<'_, '_> {
    fn insert(&mut self, k: &[u8], v: &[u8]) -> Result<(), KvError> {
        let old = self.table.insert(k, v)?.map(|g| g.value().len());
        let key = k.len().saturating_sub(self.prefix);
        self.delta += (key + v.len()) as i64;
        if let Some(n) = old {
            self.delta -= (key + n) as i64;
        }
        Ok(())
    }

    fn remove(&mut self, k: &[u8]) -> Result<(), KvError> {
        if let Some(old) = self.table.remove(k)? {
            self.delta -= (k.len().saturating_sub(self.prefix) + old.value().len()) as i64;
        }
        Ok(())
    }
}

impl std::fmt::Debug for dyn KvBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KvBackend")
    }
}

/// The embedded default: one redb file.
#[derive(Debug)]
pub struct RedbKv {
    db: Database,
}

impl RedbKv {
    /// Opens (creating if needed) the database file at `path`.
    pub fn open(path: &Path) -> Result<Self, KvError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| KvError::Storage(format!("{}: {e}", parent.display())))?;
        }
        let db = Database::create(path)
            .map_err(|e| KvError::Storage(format!("{}: {e}", path.display())))?;
        let kv = Self { db };
        kv.init()?;
        Ok(kv)
    }

    /// Creates the tables, so readers never see them missing.
    fn init(&self) -> Result<(), KvError> {
        let txn = self.db.begin_write()?;
        txn.open_table(KV)?;
        txn.open_table(USAGE)?;
        txn.commit()?;
        Ok(())
    }

    /// A database in memory: nothing survives the process.
    pub fn in_memory() -> Result<Self, KvError> {
        let db = Database::builder().create_with_backend(redb::backends::InMemoryBackend::new())?;
        let kv = Self { db };
        kv.init()?;
        Ok(kv)
    }

    /// One write transaction in `ns`'s tenant: applies `f`, updates the
    /// tenant's stored bytes, and commits — unless that would exceed the
    /// quota, in which case the transaction is dropped (aborted).
    fn write<R>(
        &self,
        ns: &Namespace,
        f: impl FnOnce(&mut Tracked<'_, '_>) -> Result<R, KvError>,
    ) -> Result<R, KvError> {
        let txn = self.db.begin_write()?;
        let r = {
            let mut table = txn.open_table(KV)?;
            let mut tracked = Tracked {
                table: &mut table,
                delta: 0,
                prefix: ns.prefix().len(),
            };
            let r = f(&mut tracked)?;
            let delta = tracked.delta;
            let mut usage = txn.open_table(USAGE)?;
            let current = usage.get(ns.tenant.as_str())?.map_or(0, |g| g.value());
            let next = current.saturating_add_signed(delta);
            if let Some(quota) = ns.quota
                && delta > 0
                && next > quota
            {
                return Err(KvError::QuotaExceeded {
                    tenant: ns.tenant.clone(),
                    would: next,
                    quota,
                });
            }
            usage.insert(ns.tenant.as_str(), next)?;
            r
        };
        txn.commit()?;
        Ok(r)
    }
}

impl KvBackend for RedbKv {
    fn get(&self, ns: &Namespace, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let k = ns.key(key)?;
        let txn = self.db.begin_read()?;
        let table = txn.open_table(KV)?;
        Ok(table.get(k.as_slice())?.map(|v| v.value().to_vec()))
    }

    fn set(&self, ns: &Namespace, key: &str, value: &[u8]) -> Result<(), KvError> {
        let k = ns.key(key)?;
        check_value(value)?;
        self.write(ns, |t| t.insert(k.as_slice(), value))
    }

    fn delete(&self, ns: &Namespace, key: &str) -> Result<(), KvError> {
        let k = ns.key(key)?;
        self.write(ns, |t| t.remove(k.as_slice()))
    }

    fn list_keys(
        &self,
        ns: &Namespace,
        cursor: Option<u64>,
    ) -> Result<(Vec<String>, Option<u64>), KvError> {
        let prefix = ns.prefix();
        let skip = usize::try_from(cursor.unwrap_or(0)).unwrap_or(usize::MAX);
        let txn = self.db.begin_read()?;
        let table = txn.open_table(KV)?;
        let mut keys = Vec::new();
        let mut more = false;
        // Stop at the end of this namespace before skipping, so a large
        // cursor never walks other tenants' entries.
        let in_namespace = table.range(prefix.as_slice()..)?.take_while(|e| {
            e.as_ref()
                .map_or(true, |(k, _)| k.value().starts_with(prefix.as_slice()))
        });
        for entry in in_namespace.skip(skip) {
            let (k, _) = entry?;
            let key = k.value().get(prefix.len()..).unwrap_or_default();
            if keys.len() == MAX_KEYS_PER_PAGE {
                more = true;
                break;
            }
            keys.push(String::from_utf8_lossy(key).into_owned());
        }
        let next = more.then(|| (skip + keys.len()) as u64);
        Ok((keys, next))
    }

    fn increment(&self, ns: &Namespace, key: &str, delta: u64) -> Result<u64, KvError> {
        let k = ns.key(key)?;
        self.write(ns, |t| {
            // Counters are decimal text, as other wasi:keyvalue hosts store
            // them, so `get` reads them and `set` can seed them.
            let not_a_counter = || KvError::NotACounter(key.to_string());
            let current = match t.table.get(k.as_slice())? {
                None => 0,
                Some(v) => std::str::from_utf8(v.value())
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .ok_or_else(not_a_counter)?,
            };
            let next = current.checked_add(delta).ok_or_else(not_a_counter)?;
            t.insert(k.as_slice(), next.to_string().as_bytes())?;
            Ok(next)
        })
    }

    fn set_many(&self, ns: &Namespace, pairs: &[(String, Vec<u8>)]) -> Result<(), KvError> {
        let encoded = pairs
            .iter()
            .map(|(k, v)| {
                check_value(v)?;
                Ok((ns.key(k)?, v))
            })
            .collect::<Result<Vec<_>, KvError>>()?;
        self.write(ns, |t| {
            for (k, v) in &encoded {
                t.insert(k.as_slice(), v.as_slice())?;
            }
            Ok(())
        })
    }

    fn delete_many(&self, ns: &Namespace, keys: &[String]) -> Result<(), KvError> {
        let encoded = keys
            .iter()
            .map(|k| ns.key(k))
            .collect::<Result<Vec<_>, _>>()?;
        self.write(ns, |t| {
            for k in &encoded {
                t.remove(k.as_slice())?;
            }
            Ok(())
        })
    }

    fn stored_bytes(&self, tenant: &str) -> Result<u64, KvError> {
        let txn = self.db.begin_read()?;
        let usage = txn.open_table(USAGE)?;
        Ok(usage.get(tenant)?.map_or(0, |g| g.value()))
    }

    fn delete_tenant(&self, tenant: &str) -> Result<u64, KvError> {
        let start = tenant_prefix(tenant);
        let end = prefix_end(&start);
        let upper = end.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
        let txn = self.db.begin_write()?;
        let mut removed = 0;
        txn.open_table(KV)?.retain_in::<&[u8], _>(
            (Bound::Included(start.as_slice()), upper),
            |_, _| {
                removed += 1;
                false
            },
        )?;
        txn.open_table(USAGE)?.remove(tenant)?;
        txn.commit()?;
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_never_overlap() {
        let kv = RedbKv::in_memory().unwrap();
        let a = Namespace::new("ab", "c");
        let b = Namespace::new("a", "bc");
        kv.set(&a, "k", b"a").unwrap();
        assert_eq!(kv.get(&b, "k").unwrap(), None);
        assert_eq!(kv.list_keys(&b, None).unwrap().0, Vec::<String>::new());
        assert_eq!(kv.list_keys(&a, None).unwrap().0, ["k"]);
    }

    #[test]
    fn counters_and_limits() {
        let kv = RedbKv::in_memory().unwrap();
        let ns = Namespace::new("t", "s");
        assert_eq!(kv.increment(&ns, "n", 2).unwrap(), 2);
        assert_eq!(kv.increment(&ns, "n", 3).unwrap(), 5);
        assert_eq!(kv.get(&ns, "n").unwrap(), Some(b"5".to_vec()));
        kv.set(&ns, "seeded", b"41").unwrap();
        assert_eq!(kv.increment(&ns, "seeded", 1).unwrap(), 42);
        kv.set(&ns, "text", b"hi").unwrap();
        assert!(matches!(
            kv.increment(&ns, "text", 1),
            Err(KvError::NotACounter(_))
        ));
        kv.set(&ns, "max", u64::MAX.to_string().as_bytes()).unwrap();
        assert!(matches!(
            kv.increment(&ns, "max", 1),
            Err(KvError::NotACounter(_))
        ));
        let err = kv.set(&ns, &"k".repeat(2000), b"x").unwrap_err();
        assert!(err.to_string().contains("limit of 1024"), "{err}");
        let err = kv
            .set(&ns, "big", &vec![0; MAX_VALUE_BYTES + 1])
            .unwrap_err();
        assert!(err.to_string().contains("limit of 1048576"), "{err}");
    }

    #[test]
    fn list_pages_follow_the_cursor() {
        let kv = RedbKv::in_memory().unwrap();
        let ns = Namespace::new("t", "s");
        let pairs: Vec<(String, Vec<u8>)> =
            (0..2500).map(|i| (format!("k{i:05}"), vec![1])).collect();
        kv.set_many(&ns, &pairs).unwrap();
        let (first, next) = kv.list_keys(&ns, None).unwrap();
        assert_eq!(first.len(), MAX_KEYS_PER_PAGE);
        let (second, next) = kv.list_keys(&ns, next).unwrap();
        let (third, next) = kv.list_keys(&ns, next).unwrap();
        assert_eq!((second.len(), third.len(), next), (1000, 500, None));
        assert_eq!(third.last().map(String::as_str), Some("k02499"));
    }

    #[test]
    fn stored_bytes_are_exact_and_the_quota_holds() {
        let kv = RedbKv::in_memory().unwrap();
        let ns = Namespace::new("t", "s").with_quota(100);
        kv.set(&ns, "a", b"12345").unwrap();
        assert_eq!(kv.stored_bytes("t").unwrap(), 1 + 5);
        kv.set(&ns, "a", b"1").unwrap();
        let one = kv.stored_bytes("t").unwrap();
        let err = kv.set(&ns, "big", &[0; 99]).unwrap_err();
        assert!(
            matches!(err, KvError::QuotaExceeded { quota: 100, .. }),
            "{err}"
        );
        assert_eq!(kv.get(&ns, "big").unwrap(), None, "nothing written");
        assert_eq!(kv.stored_bytes("t").unwrap(), one);
        kv.delete(&ns, "a").unwrap();
        assert_eq!(kv.stored_bytes("t").unwrap(), 0);
        assert_eq!(kv.stored_bytes("other").unwrap(), 0);
    }

    #[test]
    fn delete_tenant_removes_all_its_stores_and_nothing_else() {
        let kv = RedbKv::in_memory().unwrap();
        let doomed = [Namespace::new("a", "s1"), Namespace::new("a", "s2")];
        // Keys just below `a`'s range, at its exclusive end, and past it.
        let kept = [
            Namespace::new("ab", "s1"),
            Namespace::new("", "as1"),
            Namespace::new("b", "a"),
        ];
        for ns in &doomed {
            kv.set_many(ns, &[("k".into(), b"v".to_vec()), ("l".into(), vec![])])
                .unwrap();
        }
        for ns in &kept {
            kv.set(ns, "k", b"kept").unwrap();
        }
        let kept_bytes: Vec<u64> = ["ab", "", "b"]
            .iter()
            .map(|t| kv.stored_bytes(t).unwrap())
            .collect();
        assert_eq!(kv.delete_tenant("a").unwrap(), 4);
        for ns in &doomed {
            assert_eq!(kv.get(ns, "k").unwrap(), None);
            assert!(kv.list_keys(ns, None).unwrap().0.is_empty());
        }
        assert_eq!(kv.stored_bytes("a").unwrap(), 0);
        for ns in &kept {
            assert_eq!(kv.get(ns, "k").unwrap(), Some(b"kept".to_vec()));
        }
        let after: Vec<u64> = ["ab", "", "b"]
            .iter()
            .map(|t| kv.stored_bytes(t).unwrap())
            .collect();
        assert_eq!(after, kept_bytes);
        // Nothing left to delete; the tenant starts again from zero.
        assert_eq!(kv.delete_tenant("a").unwrap(), 0);
        kv.set(&doomed[0], "n", b"1").unwrap();
        assert_eq!(kv.stored_bytes("a").unwrap(), 2);
    }

    #[test]
    fn prefix_end_bounds_exactly_the_prefixed_keys() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff]), None);
    }

    #[test]
    fn data_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.redb");
        let ns = Namespace::new("t", "s");
        RedbKv::open(&path).unwrap().set(&ns, "k", b"v").unwrap();
        assert_eq!(
            RedbKv::open(&path).unwrap().get(&ns, "k").unwrap(),
            Some(b"v".to_vec())
        );
    }
}
