//! Usage records: one per invocation, whatever its outcome, and the sinks
//! (ledgers) they are written to. A bill is made from the ledger; the
//! Prometheus counters are updated only after the record is written, so the
//! two always agree.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// How an invocation ended. Serialized in `snake_case`; also the `outcome`
/// label of `nimbus_invocations_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outcome {
    Success,
    GuestError,
    OutOfFuel,
    MemoryLimit,
    Timeout,
    StackOverflow,
    Trap,
    Throttled,
}

impl Outcome {
    /// Every outcome, in the order metrics expose them.
    pub const ALL: [Outcome; 8] = [
        Outcome::Success,
        Outcome::GuestError,
        Outcome::OutOfFuel,
        Outcome::MemoryLimit,
        Outcome::Timeout,
        Outcome::StackOverflow,
        Outcome::Trap,
        Outcome::Throttled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::GuestError => "guest_error",
            Outcome::OutOfFuel => "out_of_fuel",
            Outcome::MemoryLimit => "memory_limit",
            Outcome::Timeout => "timeout",
            Outcome::StackOverflow => "stack_overflow",
            Outcome::Trap => "trap",
            Outcome::Throttled => "throttled",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The billing record of one invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// UUIDv7: unique, time-ordered; downstream consumers deduplicate on it.
    pub invocation_id: Uuid,
    pub tenant: String,
    pub function: String,
    /// The function version that ran (0 in records written before Nimbus
    /// kept versions).
    #[serde(default)]
    pub function_version: u32,
    pub outcome: Outcome,
    /// Fuel consumed by the guest (0 when throttled).
    pub fuel_consumed: u64,
    /// Largest total linear memory the instance held, in bytes.
    pub peak_memory_bytes: u64,
    /// Wall time from admission to completion, instantiation included.
    pub wall_duration_us: u64,
    /// CPU time the invocation took on the threads that ran it, µs:
    /// instantiating, running the guest, the host calls it made on those
    /// threads, page faults, and freeing the instance. Time waiting (on a
    /// timer, a socket, another task) is not in it. 0 when throttled.
    #[serde(default)]
    pub cpu_us: u64,
    /// Wall time rounded up to the next millisecond (as Lambda bills); 0
    /// only for throttled invocations, which never ran.
    pub billed_duration_ms: u64,
    /// `peak_memory_bytes × billed_duration_ms`, in byte-milliseconds.
    pub memory_byte_ms: u64,
    /// When the invocation was admitted, RFC 3339 (UTC, microseconds).
    pub started_at: String,
    /// HTTP functions: request body bytes received (0 for events).
    #[serde(default)]
    pub request_bytes: u64,
    /// HTTP functions: response body bytes returned (0 for events).
    #[serde(default)]
    pub response_bytes: u64,
    /// Outbound HTTP requests sent to granted hosts.
    #[serde(default)]
    pub outbound_requests: u64,
    /// Outbound HTTP request body bytes sent.
    #[serde(default)]
    pub outbound_bytes_sent: u64,
    /// Outbound HTTP response body bytes received (as far as the guest
    /// read them, or the body arrived before the invocation ended).
    #[serde(default)]
    pub outbound_bytes_received: u64,
    /// Calls refused because the name was not granted (e.g. outbound HTTP to
    /// a host not on the allow-list).
    #[serde(default)]
    pub denied_calls: u64,
    /// Key-value reads (get, exists, list-keys, get-many).
    #[serde(default)]
    pub kv_reads: u64,
    /// Key-value writes (set, delete, increment, set-many, delete-many).
    #[serde(default)]
    pub kv_writes: u64,
    /// Blob store calls (container and object operations).
    #[serde(default)]
    pub blob_operations: u64,
    /// Object bytes the guest read.
    #[serde(default)]
    pub blob_bytes_read: u64,
    /// Object bytes the guest wrote (committed objects only).
    #[serde(default)]
    pub blob_bytes_written: u64,
    /// Messages published to the tenant's queues.
    #[serde(default)]
    pub messages_published: u64,
    /// What started the invocation: `direct`, `http`, `object`, `queue` or
    /// `schedule`.
    #[serde(default)]
    pub trigger: Trigger,
    /// The status the guest passed to `wasi:cli/exit`, if it ended that way
    /// (0: success with what it had produced; otherwise a guest error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

impl UsageRecord {
    /// A record with every count at zero, for `trigger` direct: what an
    /// invocation starts from before it is measured.
    pub fn new(invocation_id: Uuid, tenant: &str, function: &str, outcome: Outcome) -> Self {
        Self {
            invocation_id,
            tenant: tenant.to_string(),
            function: function.to_string(),
            function_version: 0,
            outcome,
            fuel_consumed: 0,
            peak_memory_bytes: 0,
            wall_duration_us: 0,
            cpu_us: 0,
            billed_duration_ms: 0,
            memory_byte_ms: 0,
            started_at: String::new(),
            request_bytes: 0,
            response_bytes: 0,
            outbound_requests: 0,
            outbound_bytes_sent: 0,
            outbound_bytes_received: 0,
            denied_calls: 0,
            kv_reads: 0,
            kv_writes: 0,
            blob_operations: 0,
            blob_bytes_read: 0,
            blob_bytes_written: 0,
            messages_published: 0,
            trigger: Trigger::Direct,
            exit_code: None,
        }
    }
}

/// What caused an invocation: the trigger, and for object-created events
/// how many triggered invocations led to it (the loop guard's input).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cause {
    pub trigger: Trigger,
    /// 0 unless the invocation handles an object written by a triggered
    /// invocation: then that invocation's depth + 1.
    pub depth: u32,
}

impl Cause {
    pub fn new(trigger: Trigger) -> Self {
        Self { trigger, depth: 0 }
    }
}

/// What started an invocation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// Called from Rust (`FunctionHandle::invoke`) or `nimbus run`.
    #[default]
    Direct,
    /// A request through the HTTP gateway.
    Http,
    /// An object-created event from the blob store.
    Object,
    /// A message from a durable queue.
    Queue,
    /// A cron schedule.
    Schedule,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Direct => "direct",
            Trigger::Http => "http",
            Trigger::Object => "object",
            Trigger::Queue => "queue",
            Trigger::Schedule => "schedule",
        }
    }
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where usage records go. Called once per invocation, before the caller
/// sees the result; an error withholds that result (see [`crate::Error::Ledger`]).
pub trait UsageSink: Send + Sync + 'static {
    fn record(&self, record: &UsageRecord) -> std::io::Result<()>;
}

/// The default sink: one JSON object per line, appended to a file.
///
/// Each record is written with a single `write` call on an `O_APPEND` file
/// before the invocation's result is returned, so a crash of the process
/// loses nothing already reported as finished. With [`Self::sync_each`] the
/// data is also `fdatasync`ed, which extends that to power loss at the price
/// of a disk flush per invocation.
#[derive(Debug)]
pub struct JsonLinesLedger {
    path: PathBuf,
    file: Mutex<File>,
    sync_each: bool,
}

impl JsonLinesLedger {
    /// Opens (creating if needed) the ledger at `path` for appending.
    pub fn open(path: impl AsRef<Path>) -> std::io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(Self {
            path,
            file: Mutex::new(file),
            sync_each: false,
        })
    }

    /// Also `fdatasync` after every record.
    #[must_use]
    pub fn sync_each(mut self, enable: bool) -> Self {
        self.sync_each = enable;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads every record of a ledger file. A torn last line (the process died
    /// mid-write, before the record was acknowledged) is skipped; any other
    /// malformed line is an error naming its line number.
    pub fn read(path: impl AsRef<Path>) -> std::io::Result<Vec<UsageRecord>> {
        let path = path.as_ref();
        let file = BufReader::new(File::open(path)?);
        let lines: Vec<String> = file.lines().collect::<Result<_, _>>()?;
        let mut records = Vec::with_capacity(lines.len());
        for (i, line) in lines.iter().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str(line) {
                Ok(r) => records.push(r),
                Err(_) if i + 1 == lines.len() => break,
                Err(e) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{}: line {}: {e}", path.display(), i + 1),
                    ));
                }
            }
        }
        Ok(records)
    }
}

impl UsageSink for JsonLinesLedger {
    fn record(&self, record: &UsageRecord) -> std::io::Result<()> {
        // A record is 600-800 bytes: sized once, not grown from 128 (three
        // reallocations and copies).
        let mut line = Vec::with_capacity(1024);
        serde_json::to_writer(&mut line, record)?;
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        file.write_all(&line)?;
        if self.sync_each {
            file.sync_data()?;
        }
        Ok(())
    }
}

/// Keeps records in memory: for tests and embedders that forward records
/// elsewhere themselves.
#[derive(Debug, Default)]
pub struct MemoryLedger {
    records: Mutex<Vec<UsageRecord>>,
}

impl MemoryLedger {
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of every record so far, in completion order.
    pub fn records(&self) -> Vec<UsageRecord> {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl UsageSink for MemoryLedger {
    fn record(&self, record: &UsageRecord) -> std::io::Result<()> {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(record.clone());
        Ok(())
    }
}

/// Milliseconds billed for a wall duration: rounded up, at least 1.
pub(crate) fn billed_ms(wall_us: u64) -> u64 {
    wall_us.div_ceil(1000).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn billing_rounds_up_to_whole_milliseconds() {
        assert_eq!(billed_ms(0), 1);
        assert_eq!(billed_ms(1), 1);
        assert_eq!(billed_ms(1000), 1);
        assert_eq!(billed_ms(1001), 2);
        assert_eq!(billed_ms(2_500_000), 2500);
    }

    fn record(n: u64) -> UsageRecord {
        UsageRecord {
            fuel_consumed: n,
            peak_memory_bytes: 65536,
            wall_duration_us: 10,
            billed_duration_ms: 1,
            memory_byte_ms: 65536,
            started_at: "2026-01-01T00:00:00.000000Z".into(),
            ..UsageRecord::new(Uuid::now_v7(), "t", "f", Outcome::Success)
        }
    }

    #[test]
    fn ledger_round_trips_and_skips_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/usage.jsonl");
        let ledger = JsonLinesLedger::open(&path).unwrap();
        ledger.record(&record(1)).unwrap();
        ledger.record(&record(2)).unwrap();
        drop(ledger);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"invocation_id\":\"01").unwrap();
        let read = JsonLinesLedger::read(&path).unwrap();
        assert_eq!(
            read.iter().map(|r| r.fuel_consumed).collect::<Vec<_>>(),
            [1, 2]
        );
    }

    #[test]
    fn ledger_rejects_corruption_in_the_middle() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.jsonl");
        std::fs::write(&path, "garbage\n{}\n").unwrap();
        let err = JsonLinesLedger::read(&path).unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
    }
}
