//! The invocation logs kept per function, for the admin API.
//!
//! The logs of every invocation that wrote something or did not succeed are
//! kept in [`LogStore`]: a redb file, `<data_dir>/logs.redb`, when the host
//! has a data directory (a redb database in memory otherwise, or when the
//! file cannot be opened — an error is logged and the host runs on). Per
//! function it keeps at most
//!
//! - the last [`KEPT_INVOCATIONS`] (1000) invocations,
//! - of the last [`KEPT_FOR`] (7 days), by the time in the invocation id
//!   (a UUIDv7),
//! - and [`KEPT_LOG_BYTES`] (4 MiB) of output (stdout, stderr, the entries'
//!   context and message; the newest invocation is kept whatever its size).
//!
//! The invocation path only hands an entry to a bounded queue
//! ([`LogStore::keep`] never waits): one writer thread commits everything
//! queued in one transaction (durability `Immediate`, so a committed entry
//! survives `kill -9`), prunes the functions it wrote to, and only then
//! publishes the entries to followers ([`LogStore::subscribe`]). With the
//! queue full ([`QUEUE_ENTRIES`] entries or [`QUEUE_BYTES`] of output), an
//! entry is dropped and counted in `nimbus_logs_dropped_total`. Reads
//! ([`LogStore::list`]) first wait for what was queued before them to be
//! committed, so an invocation's logs can be read as soon as its result is
//! returned, and show only committed entries.
//!
//! Entries are stored as the JSON the admin API shows, keyed by the
//! length-prefixed tenant, the length-prefixed function and the invocation
//! id (big-endian: time order); output that is not UTF-8 is kept lossily.
//!
//! With a [`LogReplica`] (a cluster's shared copy), the writer also hands it
//! each committed batch, after the followers; reads merge the replica's
//! entries with the local ones (or show the local ones alone, with a
//! warning, when the replica fails), follows subscribe to the replica, and
//! deletes reach it after the local delete.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};

use dashmap::DashMap;
use std::time::{Duration, Instant, SystemTime};

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::logs::{InvocationLogs, Logs};
use crate::usage::UsageRecord;

/// Invocations whose logs are kept per function: the newest.
pub(crate) const KEPT_INVOCATIONS: u64 = 1000;
/// How long an invocation's logs are kept, from its start.
pub(crate) const KEPT_FOR: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// The most bytes of output kept per function: a guest that floods its
/// logs on every invocation cannot make the host hold 1000 × its
/// per-invocation cap.
pub(crate) const KEPT_LOG_BYTES: u64 = 4 << 20;
/// Entries waiting for the writer, at most (a full queue drops the entry).
pub(crate) const QUEUE_ENTRIES: usize = 1024;
/// Bytes of output waiting for the writer, at most (an entry alone in the
/// queue is taken whatever its size).
pub(crate) const QUEUE_BYTES: usize = 64 << 20;
/// Messages the writer takes into one transaction.
const MAX_BATCH: usize = 512;
/// How often the writer removes what is older than [`KEPT_FOR`] in
/// functions that were not written to (the functions it writes to are
/// pruned in the same transaction).
const SWEEP_EVERY: Duration = Duration::from_secs(60 * 60);
/// The longest a read or a delete waits for the writer.
const WRITER_WAIT: Duration = Duration::from_secs(5);
/// Entries a follower may fall behind by before it is told it lagged.
const FOLLOW_BUFFER: usize = 256;

/// A copy of the logs elsewhere (a cluster's shared stream), so every node
/// of a cluster shows the logs of invocations any node ran. The local store
/// stays the first, durable copy: the writer hands the replica what it has
/// committed, and reads, follows and deletes go to the replica too.
pub trait LogReplica: Send + Sync + 'static {
    /// Entries the local store just committed, oldest first. Called on the
    /// writer thread, which every invocation's logs wait behind: queue them
    /// and return, never wait for the network.
    fn replicate(&self, entries: Vec<Arc<InvocationLogs>>);
    /// The function's entries, oldest first: the last `limit`, or the one
    /// of `invocation_id`. Blocking.
    fn list(
        &self,
        tenant: &str,
        function: &str,
        invocation_id: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<InvocationLogs>, String>;
    /// Each of the function's entries replicated from now on, by any node.
    /// May block until the subscription is in place, so that nothing
    /// replicated after it returns is missed.
    fn subscribe(
        &self,
        tenant: &str,
        function: &str,
    ) -> Result<broadcast::Receiver<Arc<InvocationLogs>>, String>;
    /// Removes the function's entries (`None`: every function's of the
    /// tenant), those still queued here included. Blocking.
    fn delete(&self, tenant: &str, function: Option<&str>) -> Result<(), String>;
}

impl std::fmt::Debug for dyn LogReplica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogReplica")
    }
}

/// Every kept invocation's logs as JSON, by [`key`].
const LOGS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("invocation_logs");
/// The output bytes of each entry of [`LOGS`] (its [`log_size`]), by the same key.
const SIZES: TableDefinition<&[u8], u64> = TableDefinition::new("invocation_log_bytes");
/// Per function (by [`prefix`]): (entries, output bytes) kept.
const STATS: TableDefinition<&[u8], (u64, u64)> = TableDefinition::new("function_log_stats");

fn log_size(l: &InvocationLogs) -> usize {
    l.logs.stdout.len()
        + l.logs.stderr.len()
        + l.logs
            .entries
            .iter()
            .map(|e| e.context.len() + e.message.len())
            .sum::<usize>()
}

fn push_name(k: &mut Vec<u8>, name: &str) {
    k.extend_from_slice(&u32::try_from(name.len()).unwrap_or(u32::MAX).to_be_bytes());
    k.extend_from_slice(name.as_bytes());
}

/// The length-prefixed tenant, then (for one function's entries) the
/// length-prefixed function: an injective encoding, so one name's range
/// never holds another's keys.
fn prefix(tenant: &str, function: Option<&str>) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + tenant.len() + function.map_or(0, str::len) + 16);
    push_name(&mut k, tenant);
    if let Some(f) = function {
        push_name(&mut k, f);
    }
    k
}

/// A function's prefix, then the invocation id (big-endian: a UUIDv7's
/// bytes sort by its time).
fn key(prefix: &[u8], id: Uuid) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(id.as_bytes());
    k
}

/// The last key a function's prefix can have.
fn last_key(prefix: &[u8]) -> Vec<u8> {
    key(prefix, Uuid::max())
}

/// The first key past every key starting with `prefix` (`None`: none is).
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

/// When the invocation of a key started, in ms since the epoch (`None`
/// unless its id is a UUIDv7: such an entry never expires by age).
fn started_ms(key: &[u8]) -> Option<u64> {
    let id = Uuid::from_slice(key.get(key.len().checked_sub(16)?..)?).ok()?;
    let (secs, nanos) = id.get_timestamp()?.to_unix();
    Some(secs * 1000 + u64::from(nanos) / 1_000_000)
}

/// Entries of invocations that started before this (ms since the epoch)
/// are past [`KEPT_FOR`].
fn expiry_cutoff_ms() -> u64 {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(now.saturating_sub(KEPT_FOR).as_millis()).unwrap_or(u64::MAX)
}

fn expired(key: &[u8], cutoff_ms: u64) -> bool {
    started_ms(key).is_some_and(|ms| ms < cutoff_ms)
}

enum Msg {
    /// An entry to store; its [`log_size`].
    Keep(Box<InvocationLogs>, usize),
    /// Remove every entry under a prefix (a tenant's or a function's), then
    /// answer.
    Delete(Vec<u8>, std::sync::mpsc::Sender<()>),
    /// Answer once everything sent before is committed.
    Flush(std::sync::mpsc::Sender<()>),
}

struct Shared {
    db: Database,
    /// Followers of a function, by its [`prefix`].
    followers: DashMap<Vec<u8>, broadcast::Sender<Arc<InvocationLogs>>>,
    /// Output bytes of the entries in the queue.
    queued_bytes: AtomicUsize,
    /// `nimbus_logs_dropped_total`.
    dropped: prometheus::IntCounter,
    /// Set once, right after the store opens (before any entry is kept).
    replica: OnceLock<Arc<dyn LogReplica>>,
}

/// The kept logs of recent invocations, per function: see the module doc.
pub(crate) struct LogStore {
    shared: Arc<Shared>,
    queue: Option<SyncSender<Msg>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}

impl LogStore {
    /// The store of a host: `<data_dir>/logs.redb` if there is a data
    /// directory and the file opens, in memory otherwise. Registers
    /// `nimbus_logs_dropped_total` in `registry`.
    pub(crate) fn open(data_dir: Option<&Path>, registry: &prometheus::Registry) -> Self {
        let db = data_dir
            .and_then(|dir| {
                let path = dir.join("logs.redb");
                open_file(&path)
                    .inspect_err(|e| {
                        tracing::error!(
                            path = %path.display(),
                            error = %e,
                            "cannot open the invocation log store: keeping invocation logs \
                             in memory until the host restarts"
                        );
                    })
                    .ok()
            })
            .unwrap_or_else(in_memory);
        let dropped = prometheus::IntCounter::new(
            "nimbus_logs_dropped_total",
            "Invocation logs dropped (never stored) because the log writer was behind.",
        )
        .unwrap_or_else(|e| unreachable!("a valid metric definition: {e}"));
        if let Err(e) = registry.register(Box::new(dropped.clone())) {
            tracing::warn!(error = %e, "nimbus_logs_dropped_total not registered");
        }
        let shared = Arc::new(Shared {
            db,
            followers: DashMap::new(),
            queued_bytes: AtomicUsize::new(0),
            dropped,
            replica: OnceLock::new(),
        });
        let (queue, rx) = std::sync::mpsc::sync_channel(QUEUE_ENTRIES);
        let writer_shared = shared.clone();
        let writer = std::thread::Builder::new()
            .name("nimbus-logs".into())
            .spawn(move || write_loop(&writer_shared, &rx))
            .inspect_err(|e| tracing::error!(error = %e, "the invocation log writer did not start"))
            .ok();
        Self {
            queue: writer.is_some().then_some(queue),
            shared,
            writer,
        }
    }

    /// From now on, committed entries are also handed to `replica`, and
    /// reads, follows and deletes go to it too.
    pub(crate) fn set_replica(&self, replica: Arc<dyn LogReplica>) {
        if self.shared.replica.set(replica).is_err() {
            tracing::warn!("a second invocation log replica was ignored");
        }
    }

    /// Hands an invocation's logs to the writer; never waits. With the
    /// queue full the entry is dropped and counted.
    pub(crate) fn keep(&self, usage: &UsageRecord, logs: &Logs) {
        let entry = InvocationLogs::new(usage, logs);
        let size = log_size(&entry);
        let queued = self.shared.queued_bytes.fetch_add(size, Ordering::Relaxed);
        let sent = match &self.queue {
            Some(q) if queued + size <= QUEUE_BYTES || queued == 0 => {
                match q.try_send(Msg::Keep(Box::new(entry), size)) {
                    Ok(()) => true,
                    Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
                }
            }
            _ => false,
        };
        if !sent {
            self.shared.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            self.shared.dropped.inc();
            let n = self.shared.dropped.get();
            if n == 1 || n.is_multiple_of(1000) {
                tracing::warn!(
                    invocation_id = %usage.invocation_id,
                    tenant = %usage.tenant,
                    function = %usage.function,
                    dropped = n,
                    "invocation logs dropped: the log writer is behind"
                );
            }
        }
    }

    /// The function's committed entries, oldest first: the last `limit`,
    /// or the one of `invocation_id`. Waits (up to 5 s) for the entries
    /// queued before the call to be committed.
    pub(crate) fn list(
        &self,
        tenant: &str,
        function: &str,
        invocation_id: Option<Uuid>,
        limit: usize,
    ) -> Vec<InvocationLogs> {
        self.wait_for_writer(Msg::Flush);
        let local = self
            .read(tenant, function, invocation_id, limit)
            .unwrap_or_else(|e| {
                tracing::error!(tenant, function, error = %e, "reading invocation logs failed");
                Vec::new()
            });
        let Some(replica) = self.shared.replica.get() else {
            return local;
        };
        match replica.list(tenant, function, invocation_id, limit) {
            // Merged with the local entries: this node's own entries show
            // at once, even those the replica has not been sent yet (NATS
            // down, or just slower than this read).
            Ok(shared) => merge(local, shared, limit),
            Err(e) => {
                tracing::warn!(
                    tenant, function, error = %e,
                    "reading the shared invocation logs failed: showing this node's own"
                );
                local
            }
        }
    }

    /// Each of the function's entries from now on, once it is committed.
    pub(crate) fn subscribe(
        &self,
        tenant: &str,
        function: &str,
    ) -> broadcast::Receiver<Arc<InvocationLogs>> {
        if let Some(replica) = self.shared.replica.get() {
            match replica.subscribe(tenant, function) {
                Ok(rx) => return rx,
                Err(e) => tracing::warn!(
                    tenant, function, error = %e,
                    "following the shared invocation logs failed: following this node's own"
                ),
            }
        }
        self.shared
            .followers
            .entry(prefix(tenant, Some(function)))
            .or_insert_with(|| broadcast::channel(FOLLOW_BUFFER).0)
            .subscribe()
    }

    /// Removes the function's entries (those queued before the call too).
    pub(crate) fn delete_function(&self, tenant: &str, function: &str) {
        let p = prefix(tenant, Some(function));
        self.wait_for_writer(|done| Msg::Delete(p, done));
        self.delete_replicated(tenant, Some(function));
    }

    /// Removes every entry of the tenant's functions (those queued before
    /// the call too).
    pub(crate) fn delete_tenant(&self, tenant: &str) {
        let p = prefix(tenant, None);
        self.wait_for_writer(|done| Msg::Delete(p, done));
        self.delete_replicated(tenant, None);
    }

    /// After the local delete, so that the writer hands the replica nothing
    /// of the deleted entries once they are gone there.
    fn delete_replicated(&self, tenant: &str, function: Option<&str>) {
        if let Some(replica) = self.shared.replica.get()
            && let Err(e) = replica.delete(tenant, function)
        {
            tracing::error!(
                tenant, function, error = %e,
                "deleting the shared invocation logs failed"
            );
        }
    }

    /// Sends the writer a message that it answers once it has committed
    /// everything before it, and waits for the answer. Without a writer a
    /// delete is applied here.
    fn wait_for_writer(&self, msg: impl FnOnce(std::sync::mpsc::Sender<()>) -> Msg) {
        let (done, answered) = std::sync::mpsc::channel();
        let msg = msg(done);
        let unsent = match &self.queue {
            Some(q) => q.send(msg).err().map(|e| e.0),
            None => Some(msg),
        };
        match unsent {
            None => {
                if answered.recv_timeout(WRITER_WAIT).is_err() {
                    tracing::warn!("the invocation log writer did not answer in time");
                }
            }
            Some(msg @ Msg::Delete(..)) => {
                if let Err(e) = commit(&self.shared.db, &[msg]) {
                    tracing::error!(error = %e, "deleting invocation logs failed");
                }
            }
            Some(_) => {}
        }
    }

    fn read(
        &self,
        tenant: &str,
        function: &str,
        invocation_id: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<InvocationLogs>, redb::Error> {
        let txn = self.shared.db.begin_read()?;
        let table = txn.open_table(LOGS)?;
        let p = prefix(tenant, Some(function));
        let cutoff = expiry_cutoff_ms();
        let parse = |k: &[u8], v: &[u8]| match serde_json::from_slice::<InvocationLogs>(v) {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::warn!(tenant, function, error = %e, key = ?k, "an unreadable invocation log entry");
                None
            }
        };
        if let Some(id) = invocation_id {
            let k = key(&p, id);
            return Ok(match table.get(k.as_slice())? {
                Some(v) if !expired(&k, cutoff) && limit > 0 => {
                    parse(&k, v.value()).into_iter().collect()
                }
                _ => Vec::new(),
            });
        }
        let last = last_key(&p);
        let mut newest_first = Vec::new();
        for entry in table.range(p.as_slice()..=last.as_slice())?.rev() {
            if newest_first.len() >= limit {
                break;
            }
            let (k, v) = entry?;
            if expired(k.value(), cutoff) {
                break;
            }
            newest_first.extend(parse(k.value(), v.value()));
        }
        newest_first.reverse();
        Ok(newest_first)
    }
}

impl Drop for LogStore {
    /// Lets the writer commit what is queued and close the file, so a host
    /// built next on the same data directory can open it.
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(w) = self.writer.take()
            && w.join().is_err()
        {
            tracing::error!("the invocation log writer panicked");
        }
    }
}

fn open_file(path: &Path) -> Result<Database, redb::Error> {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(redb::StorageError::from)?;
    }
    let db = Database::create(path)?;
    init(&db)?;
    Ok(db)
}

fn in_memory() -> Database {
    // Memory only: nothing that can fail short of allocation.
    let db = Database::builder()
        .create_with_backend(redb::backends::InMemoryBackend::new())
        .unwrap_or_else(|e| unreachable!("an in-memory redb database: {e}"));
    init(&db).unwrap_or_else(|e| unreachable!("an in-memory redb database: {e}"));
    db
}

/// Creates the tables, so readers never find them missing.
fn init(db: &Database) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    txn.open_table(LOGS)?;
    txn.open_table(SIZES)?;
    txn.open_table(STATS)?;
    txn.commit()?;
    Ok(())
}

/// The writer: each round, everything queued (up to [`MAX_BATCH`]
/// messages) in one transaction, then the followers, then the answers.
fn write_loop(shared: &Shared, rx: &Receiver<Msg>) {
    let mut last_sweep = Instant::now();
    if let Err(e) = sweep(&shared.db) {
        tracing::error!(error = %e, "pruning invocation logs failed");
    }
    loop {
        let first = match rx.recv_timeout(SWEEP_EVERY.saturating_sub(last_sweep.elapsed())) {
            Ok(m) => Some(m),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        if let Some(first) = first {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            write_batch(shared, batch);
        }
        if last_sweep.elapsed() >= SWEEP_EVERY {
            last_sweep = Instant::now();
            if let Err(e) = sweep(&shared.db) {
                tracing::error!(error = %e, "pruning invocation logs failed");
            }
        }
    }
}

/// The last `limit` of both, by invocation id (a UUIDv7: time order), each
/// once.
fn merge(
    local: Vec<InvocationLogs>,
    shared: Vec<InvocationLogs>,
    limit: usize,
) -> Vec<InvocationLogs> {
    let mut all: std::collections::BTreeMap<Uuid, InvocationLogs> =
        std::collections::BTreeMap::new();
    for l in shared.into_iter().chain(local) {
        all.entry(l.invocation_id).or_insert(l);
    }
    let skip = all.len().saturating_sub(limit);
    all.into_values().skip(skip).collect()
}

fn write_batch(shared: &Shared, batch: Vec<Msg>) {
    let committed = commit(&shared.db, &batch);
    let mut answers = Vec::new();
    let mut lost = 0;
    let replica = shared.replica.get();
    let mut replicated = Vec::new();
    for m in batch {
        match m {
            Msg::Keep(entry, size) => {
                shared.queued_bytes.fetch_sub(size, Ordering::Relaxed);
                if committed.is_err() {
                    lost += 1;
                    continue;
                }
                let p = prefix(&entry.tenant, Some(&entry.function));
                let entry: Arc<InvocationLogs> = Arc::from(entry);
                if replica.is_some() {
                    replicated.push(entry.clone());
                }
                let abandoned = shared.followers.get(&p).is_some_and(|followers| {
                    // Sending fails only when no receiver is left.
                    followers.send(entry).is_err()
                });
                if abandoned {
                    shared
                        .followers
                        .remove_if(&p, |_, f| f.receiver_count() == 0);
                }
            }
            Msg::Delete(_, done) | Msg::Flush(done) => answers.push(done),
        }
    }
    if let Err(e) = committed {
        shared.dropped.inc_by(lost);
        tracing::error!(error = %e, lost, "writing invocation logs failed");
    }
    if let Some(replica) = replica
        && !replicated.is_empty()
    {
        replica.replicate(replicated);
    }
    for done in answers {
        let _ = done.send(());
    }
}

/// Applies the batch's entries and deletes, in order, in one transaction,
/// and prunes the functions written to.
fn commit(db: &Database, batch: &[Msg]) -> Result<(), redb::Error> {
    if batch.iter().all(|m| matches!(m, Msg::Flush(_))) {
        return Ok(());
    }
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    {
        let mut logs = txn.open_table(LOGS)?;
        let mut sizes = txn.open_table(SIZES)?;
        let mut stats = txn.open_table(STATS)?;
        let mut touched: HashSet<Vec<u8>> = HashSet::new();
        for m in batch {
            match m {
                Msg::Keep(entry, size) => {
                    let json = match serde_json::to_vec(entry) {
                        Ok(j) => j,
                        Err(e) => {
                            tracing::error!(invocation_id = %entry.invocation_id, error = %e, "invocation logs not serialized");
                            continue;
                        }
                    };
                    let p = prefix(&entry.tenant, Some(&entry.function));
                    let k = key(&p, entry.invocation_id);
                    let size = *size as u64;
                    let (mut count, mut bytes) =
                        stats.get(p.as_slice())?.map_or((0, 0), |g| g.value());
                    match sizes.insert(k.as_slice(), size)? {
                        Some(old) => bytes = bytes.saturating_sub(old.value()),
                        None => count += 1,
                    }
                    bytes += size;
                    logs.insert(k.as_slice(), json.as_slice())?;
                    stats.insert(p.as_slice(), (count, bytes))?;
                    touched.insert(p);
                }
                Msg::Delete(p, _) => {
                    let end = prefix_end(p);
                    let upper = end
                        .as_deref()
                        .map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
                    let range = || (std::ops::Bound::Included(p.as_slice()), upper);
                    logs.retain_in::<&[u8], _>(range(), |_, _| false)?;
                    sizes.retain_in::<&[u8], _>(range(), |_, _| false)?;
                    stats.retain_in::<&[u8], _>(range(), |_, _| false)?;
                    touched.retain(|t| !t.starts_with(p));
                }
                Msg::Flush(_) => {}
            }
        }
        let cutoff = expiry_cutoff_ms();
        for p in &touched {
            prune(&mut logs, &mut sizes, &mut stats, p, cutoff)?;
        }
    }
    txn.commit()?;
    Ok(())
}

/// Removes the function's oldest entries while it keeps more than
/// [`KEPT_INVOCATIONS`] or [`KEPT_LOG_BYTES`] (but never its newest), or
/// they are past [`KEPT_FOR`]. Returns how many it removed.
fn prune(
    logs: &mut redb::Table<'_, &'static [u8], &'static [u8]>,
    sizes: &mut redb::Table<'_, &'static [u8], u64>,
    stats: &mut redb::Table<'_, &'static [u8], (u64, u64)>,
    p: &[u8],
    cutoff_ms: u64,
) -> Result<u64, redb::Error> {
    let Some((mut count, mut bytes)) = stats.get(p)?.map(|g| g.value()) else {
        return Ok(0);
    };
    let last = last_key(p);
    let mut removed = 0;
    while count > 0 {
        let oldest = sizes
            .range(p..=last.as_slice())?
            .next()
            .transpose()?
            .map(|(k, v)| (k.value().to_vec(), v.value()));
        let Some((k, size)) = oldest else {
            count = 0;
            break;
        };
        let over = count > KEPT_INVOCATIONS || (bytes > KEPT_LOG_BYTES && count > 1);
        if !over && !expired(&k, cutoff_ms) {
            break;
        }
        logs.remove(k.as_slice())?;
        sizes.remove(k.as_slice())?;
        count -= 1;
        bytes = bytes.saturating_sub(size);
        removed += 1;
    }
    if count == 0 {
        stats.remove(p)?;
    } else if removed > 0 {
        stats.insert(p, (count, bytes))?;
    }
    Ok(removed)
}

/// Removes what is past [`KEPT_FOR`] in every function.
fn sweep(db: &Database) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    let mut removed = 0;
    {
        let mut logs = txn.open_table(LOGS)?;
        let mut sizes = txn.open_table(SIZES)?;
        let mut stats = txn.open_table(STATS)?;
        let functions = stats
            .iter()?
            .map(|e| e.map(|(k, _)| k.value().to_vec()))
            .collect::<Result<Vec<_>, _>>()?;
        let cutoff = expiry_cutoff_ms();
        for p in &functions {
            removed += prune(&mut logs, &mut sizes, &mut stats, p, cutoff)?;
        }
    }
    if removed > 0 {
        txn.commit()?;
    } else {
        txn.abort()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
