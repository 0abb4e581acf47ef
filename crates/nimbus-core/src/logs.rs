//! Per-invocation capture of the guest's stdout and stderr, and the logs
//! of recent invocations kept per function for the admin API.
//!
//! The guest never sees the host's own stdio. What it writes is kept in
//! memory up to a cap per stream. The write that reaches the cap is kept as
//! far as it fits and the stream is then closed: further writes fail at
//! once with `closed` (a Rust `println!` panics, a Python `print` raises),
//! their bytes counted as dropped. A guest that ignores the failures and
//! keeps writing is ended, as a trap naming the stream, after
//! [`REFUSED_WRITES_BEFORE_TRAP`] refused writes: a flood costs a bounded
//! number of host calls, not the rest of its fuel or timeout.
//!
//! # Kept logs
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

use std::collections::HashSet;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use dashmap::DashMap;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::io::AsyncWrite;
use tokio::sync::broadcast;
use uuid::Uuid;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi_io::poll::Pollable;
use wasmtime_wasi_io::streams::{OutputStream, StreamError};

use crate::usage::{Outcome, UsageRecord};

/// What a guest wrote during one invocation.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Logs {
    #[serde(serialize_with = "lossy", deserialize_with = "text")]
    pub stdout: Vec<u8>,
    #[serde(serialize_with = "lossy", deserialize_with = "text")]
    pub stderr: Vec<u8>,
    /// Structured entries from `wasi:logging`, in order.
    pub entries: Vec<LogEntry>,
    /// Bytes written past the per-stream cap and dropped (0 if nothing was).
    pub dropped_bytes: u64,
}

fn lossy<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(bytes))
}

fn text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    <String as serde::Deserialize>::deserialize(d).map(String::into_bytes)
}

/// The levels of `wasi:logging`, as [`LogEntry::level`] names them.
const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "critical"];

/// One `wasi:logging/logging.log` call.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LogEntry {
    /// `trace`, `debug`, `info`, `warn`, `error` or `critical`.
    pub level: &'static str,
    pub context: String,
    pub message: String,
    /// RFC 3339, UTC.
    pub time: String,
}

/// The logs of one finished invocation, as kept for the admin API.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InvocationLogs {
    pub invocation_id: Uuid,
    pub tenant: String,
    pub function: String,
    /// The version of the function that ran (the usage record's
    /// `function_version`; a number in JSON, as everywhere in the admin API).
    #[serde(default)]
    pub version: u32,
    pub outcome: Outcome,
    pub started_at: String,
    pub logs: Logs,
    /// A Lambda-style summary of the invocation:
    /// `REPORT RequestId: <id> Version: <v> Duration: 1.23 ms Billed Duration:
    /// 2 ms Fuel: 12345 Max Memory Used: 1 MB Outcome: success` (memory in
    /// MiB, rounded up).
    #[serde(default)]
    pub report: String,
}

impl InvocationLogs {
    /// The entry kept for an invocation's usage record and logs.
    pub(crate) fn new(usage: &UsageRecord, logs: &Logs) -> Self {
        Self {
            invocation_id: usage.invocation_id,
            tenant: usage.tenant.clone(),
            function: usage.function.clone(),
            version: usage.function_version,
            report: report_line(usage),
            outcome: usage.outcome,
            started_at: usage.started_at.clone(),
            logs: logs.clone(),
        }
    }
}

/// The `REPORT` line of an invocation: the wall duration with two decimals,
/// the billed duration, fuel, the peak memory in MiB rounded up.
fn report_line(u: &UsageRecord) -> String {
    format!(
        "REPORT RequestId: {} Version: {} Duration: {:.2} ms Billed Duration: {} ms \
         Fuel: {} Max Memory Used: {} MB Outcome: {}",
        u.invocation_id,
        u.function_version,
        u.wall_duration_us as f64 / 1000.0,
        u.billed_duration_ms,
        u.fuel_consumed,
        u.peak_memory_bytes.div_ceil(1 << 20),
        u.outcome,
    )
}

/// Structured log entries of one invocation, capped like the streams.
#[derive(Debug)]
pub(crate) struct EntrySink {
    pub(crate) entries: Vec<LogEntry>,
    bytes: usize,
    cap: usize,
    pub(crate) dropped: u64,
    refused: u64,
}

impl EntrySink {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            entries: Vec::new(),
            bytes: 0,
            cap,
            dropped: 0,
            refused: 0,
        }
    }

    /// Whether an entry of `size` bytes would be kept; past the cap it is
    /// counted as dropped, and after [`REFUSED_WRITES_BEFORE_TRAP`] dropped
    /// entries this is the trap that ends the invocation.
    pub(crate) fn admit(&mut self, size: usize) -> wasmtime::Result<bool> {
        if self.bytes + size <= self.cap {
            return Ok(true);
        }
        self.dropped += size as u64;
        self.refused += 1;
        if self.refused >= REFUSED_WRITES_BEFORE_TRAP {
            wasmtime::bail!(
                "the function kept logging after its {}-byte log cap was reached \
                 ({} entries dropped)",
                self.cap,
                self.refused
            );
        }
        Ok(false)
    }

    /// Keeps an entry [`Self::admit`] admitted.
    pub(crate) fn push(&mut self, level: &'static str, context: String, message: String) {
        self.bytes += context.len() + message.len();
        self.entries.push(LogEntry {
            level,
            context,
            message,
            time: humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string(),
        });
    }
}

/// A [`LogEntry`] as read back, its level any string.
#[derive(serde::Deserialize)]
struct StoredEntry {
    level: String,
    context: String,
    message: String,
    time: String,
}

/// Written by hand: a derive would tie the `&'static` level to the input.
impl<'de> serde::Deserialize<'de> for LogEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let e = StoredEntry::deserialize(d)?;
        let level = LEVELS
            .into_iter()
            .find(|l| *l == e.level)
            .ok_or_else(|| serde::de::Error::unknown_variant(&e.level, &LEVELS))?;
        Ok(LogEntry {
            level,
            context: e.context,
            message: e.message,
            time: e.time,
        })
    }
}

impl Logs {
    /// Whether any output was dropped because a stream reached its cap.
    pub fn truncated(&self) -> bool {
        self.dropped_bytes > 0
    }
}

/// Writes (and write checks) refused on a closed stream before the
/// invocation is ended.
pub const REFUSED_WRITES_BEFORE_TRAP: u64 = 100;

#[derive(Debug)]
struct Capture {
    name: &'static str,
    buf: Vec<u8>,
    cap: usize,
    dropped: u64,
    closed: bool,
    refused: u64,
}

impl Capture {
    /// Keeps what fits; a write that does not fit closes the stream.
    fn push(&mut self, bytes: &[u8]) -> Result<(), StreamError> {
        if self.closed {
            self.dropped += bytes.len() as u64;
            return Err(self.refuse());
        }
        let room = self.cap.saturating_sub(self.buf.len());
        let keep = bytes.len().min(room);
        self.buf.extend_from_slice(&bytes[..keep]);
        if keep < bytes.len() {
            self.dropped += (bytes.len() - keep) as u64;
            self.closed = true;
        }
        Ok(())
    }

    fn check(&mut self) -> Result<usize, StreamError> {
        if self.closed {
            Err(self.refuse())
        } else {
            Ok(WRITE_BUDGET)
        }
    }

    fn refuse(&mut self) -> StreamError {
        self.refused += 1;
        if self.refused >= REFUSED_WRITES_BEFORE_TRAP {
            StreamError::trap(&format!(
                "the function kept writing to {} after its {}-byte output cap closed it \
                 ({} writes refused)",
                self.name, self.cap, self.refused
            ))
        } else {
            StreamError::Closed
        }
    }
}

/// One captured output stream, shared between the WASI context and the host.
#[derive(Debug, Clone)]
pub(crate) struct CapturedStream(Arc<Mutex<Capture>>);

/// Advertised write budget per `check-write`; it only shapes the guest's
/// write chunks, the cap is enforced in [`Capture::push`].
const WRITE_BUDGET: usize = 64 * 1024;

impl CapturedStream {
    /// `name` (`stdout`, `stderr`) is what a refused flood's trap names.
    pub(crate) fn new(name: &'static str, cap: usize) -> Self {
        Self(Arc::new(Mutex::new(Capture {
            name,
            buf: Vec::new(),
            cap,
            dropped: 0,
            closed: false,
            refused: 0,
        })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Capture> {
        // A poisoned lock only means another writer panicked mid-push; the
        // buffer is still a valid prefix, so keep capturing.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, bytes: &[u8]) -> Result<(), StreamError> {
        self.lock().push(bytes)
    }

    /// Takes what was captured and how many bytes were dropped.
    pub(crate) fn take(&self) -> (Vec<u8>, u64) {
        let mut c = self.lock();
        (std::mem::take(&mut c.buf), std::mem::take(&mut c.dropped))
    }
}

impl IsTerminal for CapturedStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedStream {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl OutputStream for CapturedStream {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.push(&bytes)
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        self.lock().check()
    }
}

#[async_trait::async_trait]
impl Pollable for CapturedStream {
    async fn ready(&mut self) {}
}

impl AsyncWrite for CapturedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(match self.push(buf) {
            Ok(()) => Ok(buf.len()),
            Err(e) => Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, e)),
        })
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

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
        self.read(tenant, function, invocation_id, limit)
            .unwrap_or_else(|e| {
                tracing::error!(tenant, function, error = %e, "reading invocation logs failed");
                Vec::new()
            })
    }

    /// Each of the function's entries from now on, once it is committed.
    pub(crate) fn subscribe(
        &self,
        tenant: &str,
        function: &str,
    ) -> broadcast::Receiver<Arc<InvocationLogs>> {
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
    }

    /// Removes every entry of the tenant's functions (those queued before
    /// the call too).
    pub(crate) fn delete_tenant(&self, tenant: &str) {
        let p = prefix(tenant, None);
        self.wait_for_writer(|done| Msg::Delete(p, done));
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

fn write_batch(shared: &Shared, batch: Vec<Msg>) {
    let committed = commit(&shared.db, &batch);
    let mut answers = Vec::new();
    let mut lost = 0;
    for m in batch {
        match m {
            Msg::Keep(entry, size) => {
                shared.queued_bytes.fetch_sub(size, Ordering::Relaxed);
                if committed.is_err() {
                    lost += 1;
                    continue;
                }
                let p = prefix(&entry.tenant, Some(&entry.function));
                let abandoned = shared.followers.get(&p).is_some_and(|followers| {
                    // Sending fails only when no receiver is left.
                    followers.send(Arc::from(entry)).is_err()
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
mod tests {
    use super::*;

    #[test]
    fn caps_and_counts_dropped_bytes() {
        let s = CapturedStream::new("stdout", 4);
        s.push(b"abc").unwrap();
        s.push(b"defg").unwrap();
        assert!(matches!(s.push(b"h"), Err(StreamError::Closed)));
        let (buf, dropped) = s.take();
        assert_eq!(buf, b"abcd");
        assert_eq!(dropped, 4);
    }

    #[test]
    fn writing_on_past_the_cap_traps_after_a_bounded_number_of_refusals() {
        let mut s = CapturedStream::new("stderr", 1);
        s.push(b"ab").unwrap();
        for _ in 1..REFUSED_WRITES_BEFORE_TRAP {
            assert!(matches!(s.check_write(), Err(StreamError::Closed)));
        }
        match s.push(b"c") {
            Err(StreamError::Trap(e)) => {
                let e = e.to_string();
                assert!(e.contains("stderr") && e.contains("1-byte"), "{e}");
            }
            other => panic!("not a trap: {other:?}"),
        }
    }

    #[test]
    fn log_entries_past_the_cap_are_dropped_then_trap() {
        let mut sink = EntrySink::new(5);
        assert!(sink.admit(5).unwrap());
        sink.push("info", "c".into(), "abcd".into());
        for _ in 1..REFUSED_WRITES_BEFORE_TRAP {
            assert!(!sink.admit(1).unwrap());
        }
        let e = sink.admit(1).unwrap_err().to_string();
        assert!(e.contains("kept logging after its 5-byte log cap"), "{e}");
        assert_eq!(sink.entries.len(), 1);
        assert_eq!(sink.dropped, REFUSED_WRITES_BEFORE_TRAP);
    }

    fn record(id: Uuid, tenant: &str, function: &str) -> UsageRecord {
        UsageRecord {
            wall_duration_us: 1234,
            billed_duration_ms: 2,
            fuel_consumed: 12345,
            peak_memory_bytes: (1 << 20) + 1,
            started_at: "2026-01-01T00:00:00.000000Z".into(),
            function_version: 3,
            ..UsageRecord::new(id, tenant, function, Outcome::Success)
        }
    }

    fn printed(text: &str) -> Logs {
        Logs {
            stdout: text.as_bytes().to_vec(),
            ..Logs::default()
        }
    }

    fn memory_store() -> LogStore {
        LogStore::open(None, &prometheus::Registry::new())
    }

    fn ids(kept: &[InvocationLogs]) -> Vec<Uuid> {
        kept.iter().map(|l| l.invocation_id).collect()
    }

    #[test]
    fn the_report_line_is_lambdas() {
        let id = Uuid::now_v7();
        let l = InvocationLogs::new(&record(id, "t", "f"), &printed("hi"));
        assert_eq!(
            l.report,
            format!(
                "REPORT RequestId: {id} Version: 3 Duration: 1.23 ms Billed Duration: 2 ms \
                 Fuel: 12345 Max Memory Used: 2 MB Outcome: success"
            )
        );
        assert_eq!(l.version, 3);
        // And the entry reads back as it was written.
        let json = serde_json::to_vec(&l).unwrap();
        assert_eq!(serde_json::from_slice::<InvocationLogs>(&json).unwrap(), l);
    }

    #[test]
    fn log_retention_keeps_the_last_invocations_their_bytes_and_a_week() {
        let store = memory_store();
        let mut kept = Vec::new();
        for _ in 0..(KEPT_INVOCATIONS + 10) {
            let id = Uuid::now_v7();
            kept.push(id);
            store.keep(&record(id, "t", "f"), &printed("x"));
        }
        let all = store.list("t", "f", None, usize::MAX);
        assert_eq!(ids(&all), kept[10..], "the last 1000, oldest first");
        let tail = store.list("t", "f", None, 3);
        assert_eq!(ids(&tail), kept[kept.len() - 3..]);
        let one = store.list("t", "f", Some(kept[500]), 100);
        assert_eq!(ids(&one), [kept[500]]);
        assert!(store.list("t", "f", Some(kept[0]), 100).is_empty());

        // 4 MiB of output per function: the newest that fit.
        let big = Logs {
            stdout: vec![b'x'; 1 << 20],
            ..Logs::default()
        };
        let mut kept = Vec::new();
        for _ in 0..6 {
            let id = Uuid::now_v7();
            kept.push(id);
            store.keep(&record(id, "t", "big"), &big);
        }
        assert_eq!(ids(&store.list("t", "big", None, 100)), kept[2..]);
        // The newest is kept whatever its size.
        let huge = Logs {
            stdout: vec![b'y'; 5 << 20],
            ..Logs::default()
        };
        let id = Uuid::now_v7();
        store.keep(&record(id, "t", "big"), &huge);
        assert_eq!(ids(&store.list("t", "big", None, 100)), [id]);

        // Older than a week: never shown, removed at the next write.
        let old = |days: u64| {
            let at = SystemTime::now() - Duration::from_secs(days * 24 * 3600);
            let d = at.duration_since(SystemTime::UNIX_EPOCH).unwrap();
            Uuid::new_v7(uuid::Timestamp::from_unix(
                uuid::NoContext,
                d.as_secs(),
                d.subsec_nanos(),
            ))
        };
        let (week_old, day_old) = (old(8), old(1));
        store.keep(&record(week_old, "t", "aging"), &printed("old"));
        store.keep(&record(day_old, "t", "aging"), &printed("recent"));
        assert_eq!(ids(&store.list("t", "aging", None, 100)), [day_old]);
        assert!(store.list("t", "aging", Some(week_old), 100).is_empty());
        let txn = store.shared.db.begin_read().unwrap();
        let sizes = txn.open_table(SIZES).unwrap();
        let p = prefix("t", Some("aging"));
        assert!(sizes.get(key(&p, week_old).as_slice()).unwrap().is_none());
        let stats = txn.open_table(STATS).unwrap();
        assert_eq!(stats.get(p.as_slice()).unwrap().unwrap().value(), (1, 6));
    }

    #[test]
    fn kept_logs_survive_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let registry = prometheus::Registry::new();
        let store = LogStore::open(Some(dir.path()), &registry);
        let id = Uuid::now_v7();
        store.keep(&record(id, "t", "f"), &printed("before the restart\n"));
        let before = store.list("t", "f", None, 100);
        assert_eq!(ids(&before), [id]);
        drop(store);
        assert!(dir.path().join("logs.redb").is_file());

        let store = LogStore::open(Some(dir.path()), &prometheus::Registry::new());
        let after = store.list("t", "f", None, 100);
        assert_eq!(after, before);
        assert_eq!(after[0].logs.stdout, b"before the restart\n");
        assert!(
            after[0]
                .report
                .starts_with(&format!("REPORT RequestId: {id} "))
        );
        // The stats came back too: retention goes on counting.
        for _ in 0..KEPT_INVOCATIONS {
            store.keep(&record(Uuid::now_v7(), "t", "f"), &printed("x"));
        }
        let all = store.list("t", "f", None, usize::MAX);
        assert_eq!(all.len() as u64, KEPT_INVOCATIONS);
        assert!(all.iter().all(|l| l.invocation_id != id));
    }

    #[test]
    fn an_unreadable_file_falls_back_to_memory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs.redb");
        std::fs::write(&path, vec![0x5a; 64 << 10]).unwrap();
        let store = LogStore::open(Some(dir.path()), &prometheus::Registry::new());
        let id = Uuid::now_v7();
        store.keep(&record(id, "t", "f"), &printed("kept in memory"));
        assert_eq!(ids(&store.list("t", "f", None, 100)), [id]);
        drop(store);
        assert_eq!(std::fs::read(&path).unwrap(), vec![0x5a; 64 << 10]);
    }

    #[test]
    fn deleting_a_tenant_or_a_function_removes_only_theirs() {
        let store = memory_store();
        for (t, f) in [("t", "f"), ("t", "g"), ("tt", "f"), ("u", "f")] {
            for _ in 0..3 {
                store.keep(&record(Uuid::now_v7(), t, f), &printed(t));
            }
        }
        store.delete_tenant("t");
        assert!(store.list("t", "f", None, 100).is_empty());
        assert!(store.list("t", "g", None, 100).is_empty());
        assert_eq!(store.list("tt", "f", None, 100).len(), 3);
        assert_eq!(store.list("u", "f", None, 100).len(), 3);
        store.delete_function("u", "f");
        assert!(store.list("u", "f", None, 100).is_empty());
        assert_eq!(store.list("tt", "f", None, 100).len(), 3);
        let txn = store.shared.db.begin_read().unwrap();
        let stats = txn.open_table(STATS).unwrap();
        let left: Vec<Vec<u8>> = stats
            .iter()
            .unwrap()
            .map(|e| e.unwrap().0.value().to_vec())
            .collect();
        assert_eq!(left, [prefix("tt", Some("f"))]);
        let sizes = txn.open_table(SIZES).unwrap();
        assert_eq!(redb::ReadableTableMetadata::len(&sizes).unwrap(), 3);
    }

    #[tokio::test]
    async fn followers_get_each_entry_once_it_is_committed() {
        let store = memory_store();
        let mut rx = store.subscribe("t", "f");
        let mut other = store.subscribe("t", "g");
        let id = Uuid::now_v7();
        store.keep(&record(id, "t", "f"), &printed("followed"));
        let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("an entry in time")
            .unwrap();
        assert_eq!(got.invocation_id, id);
        assert_eq!(got.logs.stdout, b"followed");
        // Committed before it was sent: a read that does not wait for the
        // writer finds it.
        assert_eq!(ids(&store.read("t", "f", None, 100).unwrap()), [id]);
        assert!(other.try_recv().is_err(), "another function's follower");
        drop(rx);
        store.keep(&record(Uuid::now_v7(), "t", "f"), &printed("nobody"));
        store.list("t", "f", None, 1);
        assert!(!store.shared.followers.contains_key(&prefix("t", Some("f"))));
    }

    #[test]
    fn keep_never_waits_for_a_stuck_writer_and_counts_what_it_drops() {
        let registry = prometheus::Registry::new();
        let store = LogStore::open(None, &registry);
        // A write transaction held here stalls the writer at its next one.
        store.keep(&record(Uuid::now_v7(), "t", "f"), &printed("first"));
        store.list("t", "f", None, 1);
        let held = store.shared.db.begin_write().unwrap();
        let n = 3 * QUEUE_ENTRIES;
        let start = Instant::now();
        for _ in 0..n {
            store.keep(&record(Uuid::now_v7(), "t", "f"), &printed("x"));
        }
        let took = start.elapsed();
        assert!(took < Duration::from_secs(1), "{took:?}");
        let dropped = store.shared.dropped.get();
        assert!(
            dropped >= (n - QUEUE_ENTRIES - MAX_BATCH) as u64,
            "{dropped} dropped"
        );
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        assert!(
            text.contains(&format!("nimbus_logs_dropped_total {dropped}")),
            "{text}"
        );
        held.abort().unwrap();
        let kept = store.list("t", "f", None, usize::MAX);
        let written = 1 + n as u64 - dropped;
        assert_eq!(kept.len() as u64, written.min(KEPT_INVOCATIONS));
    }
}
