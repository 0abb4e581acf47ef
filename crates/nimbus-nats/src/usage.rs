//! The cluster-wide usage stream: every node's usage records, one per
//! answered invocation, in the JetStream stream `NIMBUS_USAGE`.
//!
//! Records are not published from the invocation path. Each node keeps
//! writing its local JSON-lines ledger exactly as it does alone (a record
//! written before the caller sees the result; kill -9 loses nothing
//! reported finished), and a task tails that file and publishes what it has
//! not yet published, resuming from a cursor file beside the ledger. So the
//! ledger is the stream's outbox: a node whose NATS is down, or that dies
//! between writing a record and publishing it, publishes the record later,
//! and an invocation never waits for NATS.
//!
//! Publishing again what the stream already holds (a cursor written just
//! before a crash lags the stream) duplicates nothing, twice over: each
//! message carries `Nats-Msg-Id` = the invocation id (the server drops a
//! repeat within its two-minute duplicate window), and its subject is
//! `usage.<tenant>.<invocation id>` in a stream keeping at most one message
//! per subject with discard-new-per-subject (nats-server 2.9), so a repeat
//! is refused (error 10077) for as long as the first is kept.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use prometheus::{IntCounter, IntGauge, Opts, Registry};
use serde::Deserialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use nimbus_core::ledger::{LedgerTail, TailCursor};

use crate::{Cluster, ClusterError};

/// The stream's name.
pub const STREAM: &str = "NIMBUS_USAGE";
/// Subjects: `usage.<tenant>.<invocation id>`.
const SUBJECTS: &str = "usage.>";
/// JetStream's "maximum messages per subject exceeded": with
/// discard-new-per-subject, the record is already in the stream.
const PER_SUBJECT_LIMIT: u64 = 10077;
/// How much of the ledger one pass reads and publishes before it moves the
/// cursor (a record is about 600 bytes).
const CHUNK: usize = 1 << 20;
/// How often a caught-up publisher looks at the ledger again.
const POLL: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// The cursor file beside `ledger`: the byte offset up to which its records
/// are in the stream.
pub fn cursor_path(ledger: &Path) -> PathBuf {
    let mut name = ledger.file_name().unwrap_or_default().to_os_string();
    name.push(".stream-cursor");
    ledger.with_file_name(name)
}

/// The publisher's metrics, registered on the host's registry.
#[derive(Clone)]
pub struct UsageStreamMetrics {
    /// Records the stream acknowledged (or already held).
    pub published: IntCounter,
    /// Ledger bytes not yet in the stream.
    pub lag_bytes: IntGauge,
    /// Failed publishes and stream set-up calls (each retried).
    pub errors: IntCounter,
    /// Complete ledger lines that are not usage records (never expected).
    pub skipped: IntCounter,
    /// 1 while connected to a NATS server.
    pub connected: IntGauge,
}

impl UsageStreamMetrics {
    fn new(registry: &Registry) -> Result<Self, ClusterError> {
        let m = Self {
            published: IntCounter::with_opts(Opts::new(
                "nimbus_usage_stream_published_total",
                "Usage records this node published to the cluster's usage stream.",
            ))
            .map_err(metric_error)?,
            lag_bytes: IntGauge::with_opts(Opts::new(
                "nimbus_usage_stream_lag_bytes",
                "Bytes of this node's ledger not yet in the cluster's usage stream.",
            ))
            .map_err(metric_error)?,
            errors: IntCounter::with_opts(Opts::new(
                "nimbus_usage_stream_errors_total",
                "Failed JetStream calls of the usage stream publisher (each retried).",
            ))
            .map_err(metric_error)?,
            skipped: IntCounter::with_opts(Opts::new(
                "nimbus_usage_stream_skipped_total",
                "Ledger lines that are not usage records, left out of the stream.",
            ))
            .map_err(metric_error)?,
            connected: IntGauge::with_opts(Opts::new(
                "nimbus_cluster_connected",
                "1 while this node is connected to a NATS server.",
            ))
            .map_err(metric_error)?,
        };
        for c in [&m.published, &m.errors, &m.skipped] {
            registry
                .register(Box::new(c.clone()))
                .map_err(metric_error)?;
        }
        for g in [&m.lag_bytes, &m.connected] {
            registry
                .register(Box::new(g.clone()))
                .map_err(metric_error)?;
        }
        Ok(m)
    }
}

fn metric_error(e: prometheus::Error) -> ClusterError {
    ClusterError::JetStream(format!("registering the usage stream's metrics: {e}"))
}

impl std::fmt::Debug for UsageStreamMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageStreamMetrics")
            .field("published", &self.published.get())
            .field("lag_bytes", &self.lag_bytes.get())
            .finish_non_exhaustive()
    }
}

/// The running publisher of one node's ledger.
#[derive(Debug)]
pub struct UsageStream {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    metrics: UsageStreamMetrics,
}

impl UsageStream {
    /// Starts publishing `ledger` (from its cursor) to the cluster's usage
    /// stream, creating the stream if it is not there. Returns at once; the
    /// stream is set up, and records published, whenever NATS answers.
    pub fn start(
        cluster: &Cluster,
        ledger: PathBuf,
        registry: &Registry,
    ) -> Result<Self, ClusterError> {
        let metrics = UsageStreamMetrics::new(registry)?;
        let (stop, stopped) = watch::channel(false);
        let publisher = Publisher {
            cluster: cluster.clone(),
            cursor_file: cursor_path(&ledger),
            tail: LedgerTail::new(&ledger),
            metrics: metrics.clone(),
            stopped,
        };
        let task = tokio::spawn(publisher.run());
        Ok(Self {
            stop,
            task,
            metrics,
        })
    }

    pub fn metrics(&self) -> &UsageStreamMetrics {
        &self.metrics
    }

    /// Publishes what the ledger holds now (waiting at most `within`), then
    /// stops. What is left is published by the node's next start.
    pub async fn stop(self, within: Duration) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(within, &mut task).await.is_err() {
            task.abort();
        }
    }
}

struct Publisher {
    cluster: Cluster,
    tail: LedgerTail,
    cursor_file: PathBuf,
    metrics: UsageStreamMetrics,
    stopped: watch::Receiver<bool>,
}

/// What a pass over the ledger did.
enum Pass {
    /// Published (or skipped) everything up to this cursor.
    Advanced(TailCursor),
    /// Nothing new (or only a line still being written).
    CaughtUp,
}

impl Publisher {
    async fn run(mut self) {
        let mut cursor = read_cursor(&self.cursor_file);
        let mut stream_ready = false;
        let mut backoff = POLL;
        loop {
            self.metrics
                .connected
                .set(i64::from(self.cluster.connected()));
            let stopping = *self.stopped.borrow();
            let result = if stream_ready {
                self.pass(&cursor).await
            } else {
                match ensure_stream(&self.cluster).await {
                    Ok(()) => {
                        stream_ready = true;
                        continue;
                    }
                    Err(e) => Err(e),
                }
            };
            let caught_up = matches!(result, Ok(Pass::CaughtUp));
            match result {
                Ok(Pass::Advanced(to)) => {
                    cursor = to;
                    backoff = POLL;
                    if let Err(e) = write_cursor(&self.cursor_file, &cursor) {
                        // The stream has the records; a stale cursor only
                        // means publishing them again, which duplicates
                        // nothing (see the module docs).
                        tracing::warn!(path = %self.cursor_file.display(), "usage stream: cannot write the cursor: {e}");
                    }
                    continue;
                }
                Ok(Pass::CaughtUp) => {
                    backoff = POLL;
                    if stopping {
                        return;
                    }
                }
                Err(e) => {
                    self.metrics.errors.inc();
                    self.cluster.api_error("usage");
                    tracing::warn!("usage stream: {e}; retrying in {backoff:?}");
                    if stopping {
                        return;
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = self.stopped.changed() => {}
            }
            if !caught_up {
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }

    /// Publishes the complete records after `cursor`, up to about [`CHUNK`]
    /// bytes, following the ledger's rotation.
    async fn pass(&self, cursor: &TailCursor) -> Result<Pass, ClusterError> {
        let tail = self.tail.clone();
        let from = cursor.clone();
        let read = tokio::task::spawn_blocking(move || {
            // A single-file ledger replaced by a shorter file: publish it
            // from the start (what the stream holds already is refused as
            // a repeat).
            if from.file.is_empty() {
                let len = std::fs::metadata(tail.path()).map_or(0, |m| m.len());
                if len < from.offset {
                    return Ok(Err(()));
                }
            }
            tail.read(&from, CHUNK).map(Ok)
        })
        .await
        .map_err(|e| ClusterError::JetStream(format!("reading the ledger: {e}")))??;
        let chunk = match read {
            Err(()) => {
                tracing::warn!(ledger = %self.tail.path().display(), "usage stream: the ledger is shorter than the cursor; publishing it from the start");
                return Ok(Pass::Advanced(TailCursor::default()));
            }
            Ok(None) => {
                self.metrics.lag_bytes.set(0);
                return Ok(Pass::CaughtUp);
            }
            Ok(Some(chunk)) => chunk,
        };
        // What is not in the stream yet, this chunk included, whether or
        // not the publishing below succeeds.
        let behind = chunk.lag_bytes + chunk.lines.len() as u64;
        self.metrics
            .lag_bytes
            .set(i64::try_from(behind).unwrap_or(i64::MAX));
        let js = self.cluster.jetstream();
        let mut acks = Vec::new();
        let mut offset = chunk.start.offset;
        let body = &chunk.lines[..chunk.lines.len().saturating_sub(1)];
        for line in body.split(|b| *b == b'\n') {
            let at = offset;
            offset += line.len() as u64 + 1;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let Ok(key) = serde_json::from_slice::<RecordKey>(line) else {
                self.metrics.skipped.inc();
                tracing::error!(ledger = %self.tail.path().display(), file = %chunk.start.file, offset = at, "usage stream: a ledger line that is not a usage record; left out");
                continue;
            };
            let subject = format!("usage.{}.{}", key.tenant, key.invocation_id);
            let message = jetstream::message::PublishMessage::build()
                .payload(Bytes::copy_from_slice(line))
                .message_id(&key.invocation_id);
            let ack = js
                .send_publish(subject, message)
                .await
                .map_err(|e| ClusterError::JetStream(format!("publishing a usage record: {e}")))?;
            acks.push(ack);
        }
        let sent = acks.len() as u64;
        for ack in acks {
            match ack.await {
                Ok(_) => {}
                Err(e) if api_code(&e) == Some(PER_SUBJECT_LIMIT) => {}
                Err(e) => {
                    return Err(ClusterError::JetStream(format!(
                        "a usage record was not acknowledged: {e}"
                    )));
                }
            }
        }
        self.metrics.published.inc_by(sent);
        self.metrics
            .lag_bytes
            .set(i64::try_from(chunk.lag_bytes).unwrap_or(i64::MAX));
        Ok(Pass::Advanced(chunk.next))
    }
}

/// The two fields the subject and message id are made of.
#[derive(Deserialize)]
struct RecordKey {
    invocation_id: String,
    tenant: String,
}

fn read_cursor(path: &Path) -> TailCursor {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| TailCursor::parse(&s))
        .unwrap_or_default()
}

fn write_cursor(path: &Path, cursor: &TailCursor) -> std::io::Result<()> {
    let tmp = path.with_extension("stream-cursor.tmp");
    std::fs::write(&tmp, cursor.to_text())?;
    std::fs::rename(tmp, path)
}

fn api_code(e: &jetstream::context::PublishError) -> Option<u64> {
    let source = std::error::Error::source(e)?;
    source
        .downcast_ref::<jetstream::Error>()
        .map(|e| e.error_code().0)
}

/// Creates the usage stream if it is not there.
async fn ensure_stream(cluster: &Cluster) -> Result<(), ClusterError> {
    let config = cluster.config();
    cluster
        .jetstream()
        .get_or_create_stream(stream::Config {
            name: STREAM.to_string(),
            description: Some("Nimbus usage records, one per answered invocation".into()),
            subjects: vec![SUBJECTS.to_string()],
            max_messages_per_subject: 1,
            discard: stream::DiscardPolicy::New,
            discard_new_per_subject: true,
            max_bytes: config.usage_stream_max_bytes,
            num_replicas: config.replicas,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| ClusterError::JetStream(format!("creating stream {STREAM}: {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cursor_sits_beside_the_ledger() {
        assert_eq!(
            cursor_path(Path::new("/var/lib/nimbus/usage.jsonl")),
            Path::new("/var/lib/nimbus/usage.jsonl.stream-cursor")
        );
    }

    #[test]
    fn the_cursor_round_trips_and_reads_the_old_form() {
        let dir = tempfile::tempdir().unwrap();
        let cursor = cursor_path(&dir.path().join("usage.jsonl"));
        assert_eq!(read_cursor(&cursor), TailCursor::default());
        std::fs::write(&cursor, "8").unwrap();
        assert_eq!(read_cursor(&cursor).offset, 8);
        let at = TailCursor {
            file: "nimbus-usage-2026-12-02.3".into(),
            offset: 1234,
        };
        write_cursor(&cursor, &at).unwrap();
        assert_eq!(read_cursor(&cursor), at);
    }
}
