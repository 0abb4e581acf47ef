//! Per-invocation capture of the guest's stdout and stderr and of its
//! `wasi:logging` entries, and what an invocation's logs are
//! ([`InvocationLogs`], with its Lambda `REPORT` line).
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
//! The logs kept per function are in `log_store.rs`.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
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

pub(crate) use crate::log_store::LogStore;

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
}
