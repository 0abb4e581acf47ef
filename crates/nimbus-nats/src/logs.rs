//! Invocation logs shared by every node: [`NatsLogs`], the host's
//! [`LogReplica`], on the JetStream stream `NIMBUS_LOGS`.
//!
//! Each node keeps its local log store as it is, the first and durable
//! copy; its writer hands [`NatsLogs`] what it committed, which queues it
//! in memory and publishes it from a background task, one message per
//! invocation on `logs.<tenant>.<function>` (tenant and function names are
//! `[a-z0-9_-]`, valid subject tokens) with `Nats-Msg-Id` = the invocation
//! id. The stream keeps what the local store keeps: the last 1000 messages
//! per subject, for 7 days.
//!
//! The outbox is memory only. A failed publish (NATS down, no leader) is
//! retried, oldest first, until it is acknowledged, so what a node kept
//! while NATS was away reaches the stream when NATS returns; a repeat of a
//! publish whose answer was lost is dropped by the server's duplicate
//! window. What this does not cover: a node stopped or killed with entries
//! still queued, an outage long enough to fill the outbox ([`OUTBOX_BYTES`],
//! oldest dropped), and an entry larger than the server's `max_payload`.
//! Those entries stay in the node's own store, and the node's reads merge
//! its own entries with the stream's, so it still shows them; the other
//! nodes do not.
//!
//! Reads scan the subject's headers (at most 1000 messages) with an
//! ordered consumer to find the sequences wanted, then read only those:
//! the last `limit` by invocation id (read from the first one's sequence
//! on), or the one message whose `Nats-Msg-Id` is the invocation id. Follow is an ordered push
//! consumer on the subject delivering what arrives from then on. Deleting
//! purges the subject (or the tenant's `logs.<tenant>.>`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream::consumer::push::OrderedConfig;
use async_nats::jetstream::consumer::{DeliverPolicy, ReplayPolicy};
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use futures_util::StreamExt;
use nimbus_core::uuid::Uuid;
use nimbus_core::{InvocationLogs, LogReplica};
use tokio::sync::{Notify, OnceCell, broadcast};

use crate::Cluster;

/// The stream's name.
pub const STREAM: &str = "NIMBUS_LOGS";
/// What the local store keeps per function, so the cluster's view is the
/// same size as a single node's.
const MAX_PER_SUBJECT: i64 = 1000;
const MAX_AGE: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// The longest a read, follow or delete waits for NATS before the host
/// falls back to its own store.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes of entries waiting to be published, at most: past it the oldest
/// are dropped from the outbox (they stay in the local store).
const OUTBOX_BYTES: usize = 64 << 20;
/// Publishes in flight at once.
const BATCH: usize = 64;
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Entries a follower may fall behind by before it is told it lagged (as
/// the local store's followers).
const FOLLOW_BUFFER: usize = 256;
/// How often a follow's task looks whether its receiver is gone while no
/// entry arrives.
const FOLLOW_CHECK: Duration = Duration::from_secs(5);

struct Queued {
    /// Position in the outbox, so that a publish pass removes exactly what
    /// it published even if a delete removed entries meanwhile.
    seq: u64,
    entry: Arc<InvocationLogs>,
    size: usize,
}

#[derive(Default)]
struct Outbox {
    entries: VecDeque<Queued>,
    bytes: usize,
    next_seq: u64,
    dropped: u64,
}

struct Inner {
    cluster: Cluster,
    max_bytes: i64,
    runtime: tokio::runtime::Handle,
    stream: OnceCell<stream::Stream>,
    outbox: Mutex<Outbox>,
    wake: Notify,
}

/// The cluster's shared invocation logs: see the module doc.
#[derive(Clone)]
pub struct NatsLogs {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for NatsLogs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsLogs")
            .field("stream", &STREAM)
            .finish_non_exhaustive()
    }
}

impl NatsLogs {
    /// Logs on `cluster`, in a stream of at most `max_bytes` (created on
    /// first use: NATS may be down when the node starts). Starts the
    /// publishing task on the current Tokio runtime.
    pub fn new(cluster: &Cluster, max_bytes: i64) -> Self {
        let inner = Arc::new(Inner {
            cluster: cluster.clone(),
            max_bytes,
            runtime: tokio::runtime::Handle::current(),
            stream: OnceCell::new(),
            outbox: Mutex::new(Outbox::default()),
            wake: Notify::new(),
        });
        // The task holds the outbox only weakly: dropping the last
        // `NatsLogs` ends it.
        inner.runtime.spawn(publish_loop(Arc::downgrade(&inner)));
        Self { inner }
    }

    fn block<T: Send + 'static>(
        &self,
        f: impl Future<Output = Result<T, String>> + Send + 'static,
    ) -> Result<T, String> {
        // Without a connection a call would wait out its timeout for
        // nothing: the host falls back to its own store at once instead.
        if !self.inner.cluster.connected() {
            return Err("NATS: not connected".into());
        }
        crate::blocking::block(&self.inner.runtime, CALL_TIMEOUT, f, |e| e).inspect_err(|_| {
            self.inner.cluster.api_error("logs");
        })
    }
}

impl Inner {
    async fn stream(&self) -> Result<&stream::Stream, String> {
        self.stream
            .get_or_try_init(|| async {
                self.cluster
                    .jetstream()
                    .get_or_create_stream(stream::Config {
                        name: STREAM.into(),
                        description: Some("Nimbus invocation logs, every node's".into()),
                        subjects: vec!["logs.>".into()],
                        max_messages_per_subject: MAX_PER_SUBJECT,
                        max_age: MAX_AGE,
                        max_bytes: self.max_bytes,
                        discard: stream::DiscardPolicy::Old,
                        duplicate_window: Duration::from_secs(120),
                        num_replicas: self.cluster.config().replicas,
                        storage: stream::StorageType::File,
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| format!("NATS: creating stream {STREAM}: {e}"))
            })
            .await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Outbox> {
        self.outbox.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn subject(tenant: &str, function: &str) -> String {
    format!("logs.{tenant}.{function}")
}

fn approx_size(l: &InvocationLogs) -> usize {
    // The JSON's fixed part (ids, names, report line) is a few hundred bytes.
    512 + l.logs.stdout.len()
        + l.logs.stderr.len()
        + l.logs
            .entries
            .iter()
            .map(|e| e.context.len() + e.message.len() + 64)
            .sum::<usize>()
}

/// Publishes the outbox, oldest first, retrying with a backoff while NATS
/// refuses.
async fn publish_loop(inner: std::sync::Weak<Inner>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let Some(inner) = inner.upgrade() else { return };
        let batch: Vec<(u64, Arc<InvocationLogs>)> = inner
            .lock()
            .entries
            .iter()
            .take(BATCH)
            .map(|q| (q.seq, q.entry.clone()))
            .collect();
        if batch.is_empty() {
            // Bounded, so that the task notices its host is gone.
            let _ = tokio::time::timeout(Duration::from_secs(1), inner.wake.notified()).await;
            continue;
        }
        match publish(&inner, &batch).await {
            Ok(()) => backoff = Duration::from_millis(50),
            Err(e) => {
                inner.cluster.api_error("logs");
                tracing::warn!(error = %e, retry_in = ?backoff, "publishing invocation logs failed");
                drop(inner);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Publishes `batch` and removes from the outbox what was acknowledged,
/// up to the first failure.
async fn publish(inner: &Inner, batch: &[(u64, Arc<InvocationLogs>)]) -> Result<(), String> {
    inner.stream().await?;
    let js = inner.cluster.jetstream();
    let max_payload = inner.cluster.client().server_info().max_payload;
    let mut acks = Vec::new();
    let mut done = None;
    for (seq, entry) in batch {
        let json = serde_json::to_vec(&**entry).map_err(|e| format!("serializing: {e}"))?;
        // Headers and subject take well under 1 KiB.
        if max_payload > 0 && json.len() + 1024 > max_payload {
            tracing::warn!(
                invocation_id = %entry.invocation_id,
                bytes = json.len(),
                max_payload,
                "invocation logs larger than NATS's max_payload: kept on this node only"
            );
            acks.push((*seq, None));
            continue;
        }
        let message = jetstream::message::PublishMessage::build()
            .payload(Bytes::from(json))
            .message_id(entry.invocation_id.to_string());
        let sent = js
            .send_publish(subject(&entry.tenant, &entry.function), message)
            .await;
        match sent {
            Ok(ack) => acks.push((*seq, Some(ack))),
            Err(e) => {
                if acks.is_empty() {
                    return Err(format!("publishing: {e}"));
                }
                break;
            }
        }
    }
    let mut failed = None;
    for (seq, ack) in acks {
        if let Some(ack) = ack
            && let Err(e) = ack.await
        {
            failed = Some(format!("not acknowledged: {e}"));
            break;
        }
        done = Some(seq);
    }
    if let Some(done) = done {
        let mut outbox = inner.lock();
        while outbox.entries.front().is_some_and(|q| q.seq <= done) {
            if let Some(q) = outbox.entries.pop_front() {
                outbox.bytes = outbox.bytes.saturating_sub(q.size);
            }
        }
    }
    failed.map_or(Ok(()), Err)
}

impl LogReplica for NatsLogs {
    fn replicate(&self, entries: Vec<Arc<InvocationLogs>>) {
        let mut outbox = self.inner.lock();
        for entry in entries {
            let size = approx_size(&entry);
            let seq = outbox.next_seq;
            outbox.next_seq += 1;
            outbox.bytes += size;
            outbox.entries.push_back(Queued { seq, entry, size });
        }
        while outbox.bytes > OUTBOX_BYTES && outbox.entries.len() > 1 {
            if let Some(q) = outbox.entries.pop_front() {
                outbox.bytes = outbox.bytes.saturating_sub(q.size);
                outbox.dropped += 1;
                if outbox.dropped == 1 || outbox.dropped.is_multiple_of(1000) {
                    tracing::warn!(
                        dropped = outbox.dropped,
                        "invocation logs not shared with the cluster: NATS has been away too \
                         long (they stay on this node)"
                    );
                }
            }
        }
        drop(outbox);
        self.inner.wake.notify_one();
    }

    fn list(
        &self,
        tenant: &str,
        function: &str,
        invocation_id: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<InvocationLogs>, String> {
        let inner = self.inner.clone();
        let subject = subject(tenant, function);
        self.block(async move { read(&inner, subject, invocation_id, limit).await })
    }

    fn subscribe(
        &self,
        tenant: &str,
        function: &str,
    ) -> Result<broadcast::Receiver<Arc<InvocationLogs>>, String> {
        let inner = self.inner.clone();
        let subject = subject(tenant, function);
        let messages = self.block(async move {
            let stream = inner.stream().await?;
            stream
                .create_consumer(OrderedConfig {
                    deliver_subject: inner.cluster.client().new_inbox(),
                    filter_subject: subject,
                    replay_policy: ReplayPolicy::Instant,
                    deliver_policy: DeliverPolicy::New,
                    ..Default::default()
                })
                .await
                .map_err(|e| format!("NATS: following: {e}"))?
                .messages()
                .await
                .map_err(|e| format!("NATS: following: {e}"))
        })?;
        let (tx, rx) = broadcast::channel(FOLLOW_BUFFER);
        self.inner.runtime.spawn(async move {
            let mut messages = messages;
            let mut check = tokio::time::interval(FOLLOW_CHECK);
            loop {
                tokio::select! {
                    m = messages.next() => match m {
                        Some(Ok(m)) => match serde_json::from_slice::<InvocationLogs>(&m.payload) {
                            Ok(l) => {
                                if tx.send(Arc::new(l)).is_err() {
                                    return;
                                }
                            }
                            Err(e) => tracing::warn!(error = %e, "an unreadable shared invocation log entry"),
                        },
                        Some(Err(e)) => tracing::warn!(error = %e, "following shared invocation logs"),
                        None => return,
                    },
                    _ = check.tick() => {
                        if tx.receiver_count() == 0 {
                            return;
                        }
                    }
                }
            }
        });
        Ok(rx)
    }

    fn delete(&self, tenant: &str, function: Option<&str>) -> Result<(), String> {
        // Queued entries first, so that none is published after the purge.
        self.inner.lock().entries.retain(|q| {
            !(q.entry.tenant == tenant && function.is_none_or(|f| q.entry.function == f))
        });
        let filter = match function {
            Some(f) => subject(tenant, f),
            None => format!("logs.{tenant}.>"),
        };
        let inner = self.inner.clone();
        self.block(async move {
            inner
                .stream()
                .await?
                .purge()
                .filter(filter)
                .await
                .map(|_| ())
                .map_err(|e| format!("NATS: purging invocation logs: {e}"))
        })
    }
}

/// The subject's messages' sequences and invocation ids, oldest first.
async fn scan(inner: &Inner, subject: &str) -> Result<Vec<(u64, String)>, String> {
    let fail = |e: &dyn std::fmt::Display| format!("NATS: reading {subject}: {e}");
    let stream = inner.stream().await?;
    let consumer = stream
        .create_consumer(OrderedConfig {
            deliver_subject: inner.cluster.client().new_inbox(),
            filter_subject: subject.to_string(),
            headers_only: true,
            replay_policy: ReplayPolicy::Instant,
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .map_err(|e| fail(&e))?;
    let mut found = Vec::new();
    if consumer.cached_info().num_pending == 0 {
        return Ok(found);
    }
    let mut messages = consumer.messages().await.map_err(|e| fail(&e))?;
    while let Some(m) = messages.next().await {
        let m = m.map_err(|e| fail(&e))?;
        let info = m.info().map_err(|e| fail(&e))?;
        let id = m
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(|v| v.as_str().to_string())
            .unwrap_or_default();
        found.push((info.stream_sequence, id));
        if info.pending == 0 {
            break;
        }
    }
    Ok(found)
}

async fn read(
    inner: &Inner,
    subject: String,
    invocation_id: Option<Uuid>,
    limit: usize,
) -> Result<Vec<InvocationLogs>, String> {
    let fail = |e: &dyn std::fmt::Display| format!("NATS: reading {subject}: {e}");
    let parse =
        |payload: &[u8]| serde_json::from_slice::<InvocationLogs>(payload).map_err(|e| fail(&e));
    let found = scan(inner, &subject).await?;
    let stream = inner.stream().await?;
    if let Some(id) = invocation_id {
        let id = id.to_string();
        let Some((seq, _)) = found.iter().rev().find(|(_, i)| *i == id) else {
            return Ok(Vec::new());
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        let m = stream.get_raw_message(*seq).await.map_err(|e| fail(&e))?;
        return Ok(vec![parse(&m.payload)?]);
    }
    if limit == 0 || found.is_empty() {
        return Ok(Vec::new());
    }
    // The last `limit` by invocation id (a UUIDv7: when it started), not by
    // sequence: a node whose NATS was away publishes its entries late, after
    // newer ones of other nodes. Hyphenated lowercase UUIDs sort as their
    // bytes do.
    let mut by_id = found;
    by_id.sort_by(|a, b| a.1.cmp(&b.1));
    let wanted: std::collections::HashSet<String> = by_id
        .iter()
        .skip(by_id.len().saturating_sub(limit))
        .map(|(_, id)| id.clone())
        .collect();
    let start = by_id
        .iter()
        .filter(|(_, id)| wanted.contains(id))
        .map(|(seq, _)| *seq)
        .min()
        .unwrap_or(1);
    let consumer = stream
        .create_consumer(OrderedConfig {
            deliver_subject: inner.cluster.client().new_inbox(),
            filter_subject: subject.clone(),
            replay_policy: ReplayPolicy::Instant,
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: start,
            },
            ..Default::default()
        })
        .await
        .map_err(|e| fail(&e))?;
    let mut entries = Vec::new();
    if consumer.cached_info().num_pending == 0 {
        // Purged or aged out since the scan.
        return Ok(entries);
    }
    let mut messages = consumer.messages().await.map_err(|e| fail(&e))?;
    while let Some(m) = messages.next().await {
        let m = m.map_err(|e| fail(&e))?;
        let id = m.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id"));
        if id.is_some_and(|id| wanted.contains(id.as_str())) {
            match parse(&m.payload) {
                Ok(l) => entries.push(l),
                Err(e) => tracing::warn!(error = %e, "an unreadable shared invocation log entry"),
            }
        }
        if m.info().map_err(|e| fail(&e))?.pending == 0 {
            break;
        }
    }
    entries.sort_by_key(|l| l.invocation_id);
    Ok(entries)
}
