//! The rollups' redb file and the ledger follower that fills it.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use nimbus_billing::{Quantities, StorageQuantities};
use nimbus_core::UsageRecord;
use nimbus_core::ledger::{LedgerTail, StorageSample, TailCursor};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

/// (tenant, function, hour since the epoch) → [`Bucket`] as JSON.
const HOURS: TableDefinition<(&str, &str, i64), &[u8]> = TableDefinition::new("hours");
/// (tenant, hour) → [`StorageQuantities`] as JSON.
const STORAGE: TableDefinition<(&str, i64), &[u8]> = TableDefinition::new("storage");
/// (tenant, invocation id) → [`Recent`] as JSON; UUIDv7 ids sort by time.
const RECENT: TableDefinition<(&str, u128), &[u8]> = TableDefinition::new("recent");
/// Cursors into the ledger directory.
const META: TableDefinition<&str, &str> = TableDefinition::new("meta");

const USAGE_CURSOR: &str = "usage_cursor";
const STORAGE_CURSOR: &str = "storage_cursor";
/// Recent invocations kept per tenant.
pub const RECENT_PER_TENANT: usize = 1000;
/// Bytes of ledger applied per transaction.
const CHUNK: usize = 4 << 20;
/// Commits are made durable at most this often; one a crash undoes is
/// applied again from the ledger, cursor and all.
const DURABLE_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum RollupError {
    #[error("usage rollups: {0}")]
    Store(String),
    #[error("usage rollups: reading the ledger: {0}")]
    Ledger(#[from] std::io::Error),
}

fn store_err(e: impl std::fmt::Display) -> RollupError {
    RollupError::Store(e.to_string())
}

/// One function's usage in one hour.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    pub quantities: Quantities,
    pub request_bytes: u128,
    pub response_bytes: u128,
}

impl Bucket {
    pub fn add_record(&mut self, r: &UsageRecord) {
        self.quantities.add_record(r);
        self.request_bytes += u128::from(r.request_bytes);
        self.response_bytes += u128::from(r.response_bytes);
    }

    pub fn merge(&mut self, other: &Bucket) {
        self.quantities.merge(&other.quantities);
        self.request_bytes += other.request_bytes;
        self.response_bytes += other.response_bytes;
    }
}

/// One recent invocation, as the console lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recent {
    pub invocation_id: String,
    pub function: String,
    pub function_version: u32,
    pub outcome: String,
    pub started_at: String,
    pub wall_duration_us: u64,
    pub billed_duration_ms: u64,
}

/// A tenant's rollups over a range: per function, per hour start (Unix
/// seconds), and its storage per hour.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantUsage {
    pub functions: BTreeMap<String, BTreeMap<i64, Bucket>>,
    pub storage: BTreeMap<i64, StorageQuantities>,
}

/// The rollups of one ledger directory.
pub struct Rollups {
    db: Database,
    usage: LedgerTail,
    storage: LedgerTail,
    /// One catch-up at a time: each reads its cursor and moves it.
    apply: Mutex<Option<Instant>>,
    /// Complete lines that are not records: never expected; logged and
    /// counted rather than stopping the rollups (`nimbus bill` refuses them).
    skipped: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Rollups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rollups")
            .field("ledger", &self.usage.path())
            .finish_non_exhaustive()
    }
}

fn hour_of(started_at: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(started_at)
        .ok()
        .map(|t| t.timestamp().div_euclid(3600))
}

impl Rollups {
    /// Opens (creating, and so rebuilding from the whole ledger) the
    /// rollups at `path` for the ledger directory `ledger`.
    pub fn open(path: &Path, ledger: &Path) -> Result<Self, RollupError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let db = Database::create(path).map_err(store_err)?;
        let txn = db.begin_write().map_err(store_err)?;
        {
            txn.open_table(HOURS).map_err(store_err)?;
            txn.open_table(STORAGE).map_err(store_err)?;
            txn.open_table(RECENT).map_err(store_err)?;
            txn.open_table(META).map_err(store_err)?;
        }
        txn.commit().map_err(store_err)?;
        Ok(Self {
            db,
            usage: LedgerTail::new(ledger),
            storage: LedgerTail::storage(ledger),
            apply: Mutex::new(None),
            skipped: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Lines of the ledger that were not records, left out.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Applies everything the ledger holds beyond the cursors. Returns the
    /// number of usage records applied.
    pub fn catch_up(&self) -> Result<u64, RollupError> {
        let mut last_durable = self.apply.lock().unwrap_or_else(PoisonError::into_inner);
        let mut applied = 0;
        loop {
            let n = self.apply_usage_chunk(&mut last_durable)?;
            let s = self.apply_storage_chunk(&mut last_durable)?;
            match n {
                Some(n) => applied += n,
                None if !s => return Ok(applied),
                None => {}
            }
        }
    }

    /// Keeps catching up every `every` on a thread of its own, for as long
    /// as the rollups live.
    pub fn follow(self: &Arc<Self>, every: Duration) {
        let weak = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("nimbus-usage-rollups".into())
            .spawn(move || {
                while let Some(rollups) = weak.upgrade() {
                    if let Err(e) = rollups.catch_up() {
                        tracing::warn!("{e}");
                    }
                    drop(rollups);
                    std::thread::sleep(every);
                }
            })
            .map(drop)
            .unwrap_or_else(|e| tracing::error!("usage rollups: no follower thread: {e}"));
    }

    fn durability(last_durable: &mut Option<Instant>) -> Durability {
        let now = Instant::now();
        if last_durable.is_none_or(|t| now.duration_since(t) >= DURABLE_EVERY) {
            *last_durable = Some(now);
            Durability::Immediate
        } else {
            Durability::None
        }
    }

    fn cursor(txn: &redb::WriteTransaction, key: &str) -> Result<TailCursor, RollupError> {
        let meta = txn.open_table(META).map_err(store_err)?;
        let got = meta.get(key).map_err(store_err)?;
        Ok(got
            .and_then(|v| TailCursor::parse(v.value()))
            .unwrap_or_default())
    }

    fn apply_usage_chunk(
        &self,
        last_durable: &mut Option<Instant>,
    ) -> Result<Option<u64>, RollupError> {
        let mut txn = self.db.begin_write().map_err(store_err)?;
        let cursor = Self::cursor(&txn, USAGE_CURSOR)?;
        let Some(chunk) = self.usage.read(&cursor, CHUNK)? else {
            return Ok(None);
        };
        let mut buckets: HashMap<(String, String, i64), Bucket> = HashMap::new();
        let mut recent: Vec<(String, u128, Recent)> = Vec::new();
        let mut n = 0;
        for line in chunk.lines.split(|b| *b == b'\n') {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let record: UsageRecord = match serde_json::from_slice(line) {
                Ok(r) => r,
                Err(e) => {
                    self.skipped
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::error!(file = %chunk.start.file, "usage rollups: a ledger line that is not a usage record, left out: {e}");
                    continue;
                }
            };
            let Some(hour) = hour_of(&record.started_at) else {
                self.skipped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::error!(started_at = %record.started_at, "usage rollups: a record without a valid started_at, left out");
                continue;
            };
            n += 1;
            buckets
                .entry((record.tenant.clone(), record.function.clone(), hour))
                .or_default()
                .add_record(&record);
            recent.push((
                record.tenant.clone(),
                record.invocation_id.as_u128(),
                Recent {
                    invocation_id: record.invocation_id.to_string(),
                    function: record.function.clone(),
                    function_version: record.function_version,
                    outcome: record.outcome.as_str().to_string(),
                    started_at: record.started_at.clone(),
                    wall_duration_us: record.wall_duration_us,
                    billed_duration_ms: record.billed_duration_ms,
                },
            ));
        }
        {
            let mut hours = txn.open_table(HOURS).map_err(store_err)?;
            for ((tenant, function, hour), add) in buckets {
                let key = (tenant.as_str(), function.as_str(), hour);
                let mut bucket: Bucket = match hours.get(key).map_err(store_err)? {
                    Some(v) => serde_json::from_slice(v.value()).map_err(store_err)?,
                    None => Bucket::default(),
                };
                bucket.merge(&add);
                let bytes = serde_json::to_vec(&bucket).map_err(store_err)?;
                hours.insert(key, bytes.as_slice()).map_err(store_err)?;
            }
            let mut table = txn.open_table(RECENT).map_err(store_err)?;
            let mut tenants: Vec<String> = Vec::new();
            for (tenant, id, r) in &recent {
                let bytes = serde_json::to_vec(r).map_err(store_err)?;
                table
                    .insert((tenant.as_str(), *id), bytes.as_slice())
                    .map_err(store_err)?;
                if !tenants.contains(tenant) {
                    tenants.push(tenant.clone());
                }
            }
            for tenant in tenants {
                prune_recent(&mut table, &tenant)?;
            }
            let mut meta = txn.open_table(META).map_err(store_err)?;
            meta.insert(USAGE_CURSOR, chunk.next.to_text().as_str())
                .map_err(store_err)?;
        }
        txn.set_durability(Self::durability(last_durable))
            .map_err(store_err)?;
        txn.commit().map_err(store_err)?;
        Ok(Some(n))
    }

    fn apply_storage_chunk(&self, last_durable: &mut Option<Instant>) -> Result<bool, RollupError> {
        let mut txn = self.db.begin_write().map_err(store_err)?;
        let cursor = Self::cursor(&txn, STORAGE_CURSOR)?;
        let Some(chunk) = self.storage.read(&cursor, CHUNK)? else {
            return Ok(false);
        };
        {
            let mut table = txn.open_table(STORAGE).map_err(store_err)?;
            for line in chunk.lines.split(|b| *b == b'\n') {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let Ok(sample) = serde_json::from_slice::<StorageSample>(line) else {
                    self.skipped
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::error!(file = %chunk.start.file, "usage rollups: a storage line that is not a sample, left out");
                    continue;
                };
                let Some(hour) = hour_of(&sample.sampled_at) else {
                    continue;
                };
                let key = (sample.tenant.as_str(), hour);
                let mut q: StorageQuantities = match table.get(key).map_err(store_err)? {
                    Some(v) => serde_json::from_slice(v.value()).map_err(store_err)?,
                    None => StorageQuantities::default(),
                };
                q.add_sample(sample.kv_bytes, sample.blob_bytes, sample.interval_s);
                let bytes = serde_json::to_vec(&q).map_err(store_err)?;
                table.insert(key, bytes.as_slice()).map_err(store_err)?;
            }
            let mut meta = txn.open_table(META).map_err(store_err)?;
            meta.insert(STORAGE_CURSOR, chunk.next.to_text().as_str())
                .map_err(store_err)?;
        }
        txn.set_durability(Self::durability(last_durable))
            .map_err(store_err)?;
        txn.commit().map_err(store_err)?;
        Ok(true)
    }

    /// A tenant's usage in the hours starting in `[from, to)`, after
    /// catching up with the ledger.
    pub fn query(
        &self,
        tenant: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        function: Option<&str>,
    ) -> Result<TenantUsage, RollupError> {
        self.catch_up()?;
        let (h0, h1) = (
            from.timestamp().div_euclid(3600),
            to.timestamp().div_euclid(3600) + i64::from(to.timestamp().rem_euclid(3600) > 0),
        );
        let txn = self.db.begin_read().map_err(store_err)?;
        let hours = txn.open_table(HOURS).map_err(store_err)?;
        let mut usage = TenantUsage::default();
        // Tuples order by their first element first: every key of `tenant`
        // is at or above (tenant, "", MIN) and below (tenant + "\0", "", MIN).
        let end = format!("{tenant}\0");
        for entry in hours
            .range((tenant, "", i64::MIN)..(end.as_str(), "", i64::MIN))
            .map_err(store_err)?
        {
            let (k, v) = entry.map_err(store_err)?;
            let (_, f, hour) = k.value();
            if hour < h0 || hour >= h1 || function.is_some_and(|want| want != f) {
                continue;
            }
            let bucket: Bucket = serde_json::from_slice(v.value()).map_err(store_err)?;
            usage
                .functions
                .entry(f.to_string())
                .or_default()
                .insert(hour * 3600, bucket);
        }
        let storage = txn.open_table(STORAGE).map_err(store_err)?;
        for entry in storage
            .range((tenant, h0)..(tenant, h1))
            .map_err(store_err)?
        {
            let (k, v) = entry.map_err(store_err)?;
            let q: StorageQuantities = serde_json::from_slice(v.value()).map_err(store_err)?;
            usage.storage.insert(k.value().1 * 3600, q);
        }
        Ok(usage)
    }

    /// A tenant's most recent invocations (of one function, if given),
    /// newest first, after catching up with the ledger.
    pub fn recent(
        &self,
        tenant: &str,
        function: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Recent>, RollupError> {
        self.catch_up()?;
        let txn = self.db.begin_read().map_err(store_err)?;
        let table = txn.open_table(RECENT).map_err(store_err)?;
        let mut out = Vec::new();
        for entry in table
            .range((tenant, 0u128)..=(tenant, u128::MAX))
            .map_err(store_err)?
            .rev()
        {
            let (_, v) = entry.map_err(store_err)?;
            let r: Recent = serde_json::from_slice(v.value()).map_err(store_err)?;
            if function.is_some_and(|f| f != r.function) {
                continue;
            }
            out.push(r);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }
}

fn prune_recent(
    table: &mut redb::Table<'_, (&'static str, u128), &'static [u8]>,
    tenant: &str,
) -> Result<(), RollupError> {
    let count = table
        .range((tenant, 0u128)..=(tenant, u128::MAX))
        .map_err(store_err)?
        .count();
    if count <= RECENT_PER_TENANT {
        return Ok(());
    }
    let old: Vec<u128> = table
        .range((tenant, 0u128)..=(tenant, u128::MAX))
        .map_err(store_err)?
        .take(count - RECENT_PER_TENANT)
        .filter_map(|e| e.ok().map(|(k, _)| k.value().1))
        .collect();
    for id in old {
        table.remove((tenant, id)).map_err(store_err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
