//! Per-invocation capture of the guest's stdout and stderr, and the logs
//! of recent invocations kept per function for the admin API.
//!
//! The guest never sees the host's own stdio. What it writes is kept in
//! memory up to a cap per stream; past the cap bytes are counted and dropped,
//! and the guest keeps running (a log flood is stopped by fuel or deadline,
//! not by a surprise trap on a write).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use dashmap::DashMap;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi_io::poll::Pollable;
use wasmtime_wasi_io::streams::{OutputStream, StreamError};

/// What a guest wrote during one invocation.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Logs {
    #[serde(serialize_with = "lossy")]
    pub stdout: Vec<u8>,
    #[serde(serialize_with = "lossy")]
    pub stderr: Vec<u8>,
    /// Structured entries from `wasi:logging`, in order.
    pub entries: Vec<LogEntry>,
    /// Bytes written past the per-stream cap and dropped (0 if nothing was).
    pub dropped_bytes: u64,
}

fn lossy<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(bytes))
}

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
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InvocationLogs {
    pub invocation_id: uuid::Uuid,
    pub tenant: String,
    pub function: String,
    pub outcome: crate::usage::Outcome,
    pub started_at: String,
    pub logs: Logs,
}

/// Structured log entries of one invocation, capped like the streams.
#[derive(Debug)]
pub(crate) struct EntrySink {
    pub(crate) entries: Vec<LogEntry>,
    bytes: usize,
    cap: usize,
    pub(crate) dropped: u64,
}

impl EntrySink {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            entries: Vec::new(),
            bytes: 0,
            cap,
            dropped: 0,
        }
    }

    pub(crate) fn push(&mut self, level: &'static str, context: String, message: String) {
        let size = context.len() + message.len();
        if self.bytes + size > self.cap {
            self.dropped += size as u64;
            return;
        }
        self.bytes += size;
        self.entries.push(LogEntry {
            level,
            context,
            message,
            time: humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string(),
        });
    }
}

impl Logs {
    /// Whether any output was dropped because a stream reached its cap.
    pub fn truncated(&self) -> bool {
        self.dropped_bytes > 0
    }
}

#[derive(Debug)]
struct Capture {
    buf: Vec<u8>,
    cap: usize,
    dropped: u64,
}

impl Capture {
    fn push(&mut self, bytes: &[u8]) {
        let room = self.cap.saturating_sub(self.buf.len());
        let keep = bytes.len().min(room);
        self.buf.extend_from_slice(&bytes[..keep]);
        self.dropped += (bytes.len() - keep) as u64;
    }
}

/// One captured output stream, shared between the WASI context and the host.
#[derive(Debug, Clone)]
pub(crate) struct CapturedStream(Arc<Mutex<Capture>>);

/// Advertised write budget per `check-write`; it only shapes the guest's
/// write chunks, the cap is enforced in [`Capture::push`].
const WRITE_BUDGET: usize = 64 * 1024;

impl CapturedStream {
    pub(crate) fn new(cap: usize) -> Self {
        Self(Arc::new(Mutex::new(Capture {
            buf: Vec::new(),
            cap,
            dropped: 0,
        })))
    }

    fn push(&self, bytes: &[u8]) {
        // A poisoned lock only means another writer panicked mid-push; the
        // buffer is still a valid prefix, so keep capturing.
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(bytes);
    }

    /// Takes what was captured and how many bytes were dropped.
    pub(crate) fn take(&self) -> (Vec<u8>, u64) {
        let mut c = self.0.lock().unwrap_or_else(PoisonError::into_inner);
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
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(WRITE_BUDGET)
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
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The most recent invocations' logs per function, for the admin API.
#[derive(Default)]
pub(crate) struct LogStore {
    pub(crate) by_function: DashMap<(Arc<str>, Arc<str>), KeptLogs>,
}

#[derive(Default)]
pub(crate) struct KeptLogs {
    pub(crate) invocations: VecDeque<InvocationLogs>,
    bytes: usize,
}

/// Invocations whose logs are kept per function, and the most bytes of
/// output kept per function: a guest that floods its logs on every
/// invocation cannot make the host hold 100 × its per-invocation cap.
const KEPT_INVOCATION_LOGS: usize = 100;
const KEPT_LOG_BYTES: usize = 4 << 20;

fn log_size(l: &InvocationLogs) -> usize {
    l.logs.stdout.len()
        + l.logs.stderr.len()
        + l.logs
            .entries
            .iter()
            .map(|e| e.context.len() + e.message.len())
            .sum::<usize>()
}

impl LogStore {
    pub(crate) fn keep(&self, tenant: &Arc<str>, function: &Arc<str>, entry: InvocationLogs) {
        let mut kept = self
            .by_function
            .entry((tenant.clone(), function.clone()))
            .or_default();
        kept.bytes += log_size(&entry);
        kept.invocations.push_back(entry);
        while kept.invocations.len() > KEPT_INVOCATION_LOGS
            || (kept.bytes > KEPT_LOG_BYTES && kept.invocations.len() > 1)
        {
            if let Some(old) = kept.invocations.pop_front() {
                kept.bytes -= log_size(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_and_counts_dropped_bytes() {
        let s = CapturedStream::new(4);
        s.push(b"abc");
        s.push(b"defg");
        let (buf, dropped) = s.take();
        assert_eq!(buf, b"abcd");
        assert_eq!(dropped, 3);
    }

    #[test]
    fn kept_logs_are_bounded_by_count_and_bytes() {
        let store = LogStore::default();
        let (t, f): (Arc<str>, Arc<str>) = ("t".into(), "f".into());
        let entry = |bytes: usize| InvocationLogs {
            invocation_id: uuid::Uuid::now_v7(),
            tenant: "t".into(),
            function: "f".into(),
            outcome: crate::usage::Outcome::Success,
            started_at: String::new(),
            logs: Logs {
                stdout: vec![b'x'; bytes],
                ..Logs::default()
            },
        };
        for _ in 0..10 {
            store.keep(&t, &f, entry(1 << 20));
        }
        let kept = store.by_function.get(&(t.clone(), f.clone())).unwrap();
        assert_eq!(kept.invocations.len(), 4);
        assert_eq!(kept.bytes, 4 << 20);
        drop(kept);
        for _ in 0..150 {
            store.keep(&t, &f, entry(1));
        }
        let kept = store.by_function.get(&(t, f)).unwrap();
        assert_eq!(kept.invocations.len(), KEPT_INVOCATION_LOGS);
        assert_eq!(kept.bytes, KEPT_INVOCATION_LOGS);
    }
}
