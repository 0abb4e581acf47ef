//! Queues on JetStream, shared by every node: [`NatsQueues`] implements
//! `nimbus_queue::QueueBackend` with the embedded store's contract (at least
//! once, visibility timeout, backoff, dead letters, redrive).
//!
//! - Messages are in the stream `NIMBUS_QUEUES` (work-queue retention: an
//!   acknowledged message is deleted), subject `nq.<tenant>.<queue>`. Tenant
//!   names are `[a-z0-9_-]` and queue names `[A-Za-z0-9_-]`, valid subject
//!   tokens as they are, so no two tenants' subjects meet.
//! - Each queue has one durable pull consumer, `q_<hex tenant>_<hex queue>`
//!   (hex: injective), shared by every node's trigger: JetStream hands each
//!   message to one of them. Its `ack_wait` is the visibility timeout, so a
//!   message whose node died is delivered again; its description holds the
//!   queue's config.
//! - A failure is a nak with the backoff as its delay; a message received
//!   `max_receive_count` times that fails (or times out) again is copied to
//!   the stream `NIMBUS_DEAD_LETTERS` (`nd.<tenant>.<queue>`, with its last
//!   error) and only then acknowledged: a node dying in between leaves it in
//!   the queue, never nowhere.
//! - Receipts are this node's: the trigger that received a message acks or
//!   nacks it on the same node. A receipt from a node that died is void, and
//!   its message comes back after the visibility timeout.
//!
//! `stats` reports naks waiting out their backoff as in flight (JetStream
//! does not tell them apart), so `delayed` is always 0 here.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::{self, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::stream::{self, RetentionPolicy, Stream};
use dashmap::DashMap;
use futures_util::StreamExt;
use nimbus_queue::{
    DeadLetter, Delivery, MessageId, Nack, OutgoingMessage, QueueConfig, QueueError, QueueStats,
    Receipt, check_queue_name,
};
use tokio::sync::OnceCell;

use crate::Cluster;
use crate::bucket::{self, hex};

mod backend;

pub const STREAM: &str = "NIMBUS_QUEUES";
pub const DEAD_LETTERS: &str = "NIMBUS_DEAD_LETTERS";
const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// A publish is retried this long (within [`CALL_TIMEOUT`]).
const PUBLISH_RETRY_FOR: Duration = Duration::from_secs(12);
/// How long a queue's config read from its consumer is trusted here (a
/// queue configured on another node shows within this).
const CONFIG_TTL: Duration = Duration::from_secs(5);

const H_ID: &str = "Nimbus-Message-Id";
const H_SENT: &str = "Nimbus-Sent-At-Ms";
const H_TYPE: &str = "Nimbus-Content-Type";
const H_META: &str = "Nimbus-Meta-";
const H_ERROR: &str = "Nimbus-Last-Error";
const H_COUNT: &str = "Nimbus-Receive-Count";
const H_DEAD: &str = "Nimbus-Dead-At-Ms";

/// Queues on the cluster.
pub struct NatsQueues {
    inner: Arc<Inner>,
}

struct Inner {
    cluster: Cluster,
    runtime: tokio::runtime::Handle,
    streams: OnceCell<(Stream, Stream)>,
    consumers: DashMap<(String, String), PullConsumer>,
    configs: Mutex<HashMap<(String, String), (QueueConfig, Instant)>>,
    /// Deliveries this node handed out and not yet answered.
    held: DashMap<u64, Held>,
    next_delivery: AtomicU64,
    max_bytes: i64,
}

struct Held {
    message: async_nats::jetstream::Message,
    id: MessageId,
    receive_count: u32,
    received: Instant,
}

impl std::fmt::Debug for NatsQueues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsQueues")
            .field("stream", &STREAM)
            .field("held", &self.inner.held.len())
            .finish_non_exhaustive()
    }
}

fn storage(e: impl std::fmt::Display) -> QueueError {
    QueueError::Storage(format!("NATS: {e}"))
}

fn unhex(s: &str) -> Option<String> {
    String::from_utf8(bucket::unhex(s)?).ok()
}

/// Whether `e` is JetStream's "consumer not found" (10014), not a failure
/// to ask (a leader election, NATS gone).
fn consumer_missing(e: &(dyn std::error::Error + 'static)) -> bool {
    use async_nats::jetstream::context::{ConsumerInfoError, ConsumerInfoErrorKind};
    let mut source = Some(e);
    while let Some(e) = source {
        if let Some(info) = e.downcast_ref::<ConsumerInfoError>() {
            return matches!(info.kind(), ConsumerInfoErrorKind::NotFound);
        }
        if let Some(js) = e.downcast_ref::<async_nats::jetstream::Error>() {
            return js.error_code().0 == 10014;
        }
        source = e.source();
    }
    false
}

fn check(tenant: &str, queue: &str) -> Result<(), QueueError> {
    let ok = !tenant.is_empty()
        && tenant.len() <= 255
        && tenant
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !ok {
        return Err(QueueError::InvalidName {
            kind: "tenant",
            name: tenant.chars().take(100).collect(),
            rule: "must be 1 to 255 characters of a-z, 0-9, '-' and '_'",
        });
    }
    check_queue_name(queue)
}

fn subject(tenant: &str, queue: &str) -> String {
    format!("nq.{tenant}.{queue}")
}

fn dead_subject(tenant: &str, queue: &str) -> String {
    format!("nd.{tenant}.{queue}")
}

fn consumer_name(tenant: &str, queue: &str) -> String {
    format!("q_{}_{}", hex(tenant.as_bytes()), hex(queue.as_bytes()))
}

fn parse_consumer_name(name: &str) -> Option<(String, String)> {
    let rest = name.strip_prefix("q_")?;
    let (t, q) = rest.split_once('_')?;
    Some((unhex(t)?, unhex(q)?))
}

fn header(h: Option<&HeaderMap>, name: &str) -> Option<String> {
    h?.get(name).map(|v| v.as_str().to_string())
}

/// A message's fields from its headers.
struct Fields {
    id: MessageId,
    sent_at_ms: u64,
    content_type: Option<String>,
    metadata: Vec<(String, String)>,
}

fn fields(h: Option<&HeaderMap>) -> Result<Fields, QueueError> {
    let id = header(h, H_ID)
        .ok_or_else(|| QueueError::Corrupt("a queue message without its id".into()))?
        .parse()?;
    let mut metadata = Vec::new();
    if let Some(h) = h {
        for (name, values) in h.iter() {
            let name: &str = name.as_ref();
            if let Some(key) = name.strip_prefix(H_META) {
                let key = unhex(key).ok_or_else(|| {
                    QueueError::Corrupt(format!("metadata header {name} is not hex"))
                })?;
                for v in values {
                    metadata.push((key.clone(), v.as_str().to_string()));
                }
            }
        }
    }
    metadata.sort();
    Ok(Fields {
        id,
        sent_at_ms: header(h, H_SENT).and_then(|v| v.parse().ok()).unwrap_or(0),
        content_type: header(h, H_TYPE),
        metadata,
    })
}

impl NatsQueues {
    /// Queues on `cluster`; `max_bytes` bounds the queue stream (a full one
    /// refuses sends, which fail with a storage error; nothing is dropped).
    pub fn new(cluster: &Cluster, max_bytes: i64) -> Self {
        Self {
            inner: Arc::new(Inner {
                cluster: cluster.clone(),
                runtime: tokio::runtime::Handle::current(),
                streams: OnceCell::new(),
                consumers: DashMap::new(),
                configs: Mutex::default(),
                held: DashMap::new(),
                next_delivery: AtomicU64::new(1),
                max_bytes,
            }),
        }
    }

    fn block<T: Send + 'static, F, Fut>(&self, f: F) -> Result<T, QueueError>
    where
        F: FnOnce(Arc<Inner>) -> Fut,
        Fut: Future<Output = Result<T, QueueError>> + Send + 'static,
    {
        let r = crate::blocking::block(
            &self.inner.runtime,
            CALL_TIMEOUT,
            f(self.inner.clone()),
            QueueError::Storage,
        );
        if let Err(QueueError::Storage(_)) = &r {
            self.inner.cluster.api_error("queues");
        }
        r
    }
}

impl Inner {
    async fn streams(&self) -> Result<(Stream, Stream), QueueError> {
        self.streams
            .get_or_try_init(|| async {
                let js = self.cluster.jetstream();
                let replicas = self.cluster.config().replicas;
                let queues = js
                    .get_or_create_stream(stream::Config {
                        name: STREAM.into(),
                        description: Some("Nimbus queues (work queue: acked is deleted)".into()),
                        subjects: vec!["nq.>".into()],
                        retention: RetentionPolicy::WorkQueue,
                        max_bytes: self.max_bytes,
                        discard: stream::DiscardPolicy::New,
                        num_replicas: replicas,
                        storage: stream::StorageType::File,
                        allow_direct: true,
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| storage(format!("creating stream {STREAM}: {e}")))?;
                let dead = js
                    .get_or_create_stream(stream::Config {
                        name: DEAD_LETTERS.into(),
                        description: Some("Nimbus dead letters, until redriven".into()),
                        subjects: vec!["nd.>".into()],
                        max_bytes: self.max_bytes,
                        discard: stream::DiscardPolicy::New,
                        num_replicas: replicas,
                        storage: stream::StorageType::File,
                        allow_direct: true,
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| storage(format!("creating stream {DEAD_LETTERS}: {e}")))?;
                Ok((queues, dead))
            })
            .await
            .cloned()
    }

    fn consumer_config(tenant: &str, queue: &str, config: &QueueConfig) -> consumer::pull::Config {
        consumer::pull::Config {
            durable_name: Some(consumer_name(tenant, queue)),
            description: serde_json::to_string(config).ok(),
            filter_subject: subject(tenant, queue),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ack_wait: config.visibility_timeout,
            // Dead-lettering is ours (it keeps the last error): the server
            // never stops delivering.
            max_deliver: -1,
            max_ack_pending: 10_000,
            ..Default::default()
        }
    }

    /// The queue's consumer, created with the default config if the queue
    /// is new.
    async fn consumer(&self, tenant: &str, queue: &str) -> Result<PullConsumer, QueueError> {
        let key = (tenant.to_string(), queue.to_string());
        if let Some(c) = self.consumers.get(&key) {
            return Ok(c.clone());
        }
        let (queues, _) = self.streams().await?;
        let c = match queues
            .get_consumer::<consumer::pull::Config>(&consumer_name(tenant, queue))
            .await
        {
            Ok(c) => c,
            Err(e) if consumer_missing(&*e) => queues
                .get_or_create_consumer(
                    &consumer_name(tenant, queue),
                    Self::consumer_config(tenant, queue, &QueueConfig::default()),
                )
                .await
                .map_err(|e| storage(format!("creating the consumer of queue `{queue}`: {e}")))?,
            Err(e) => return Err(storage(format!("the consumer of queue `{queue}`: {e}"))),
        };
        self.consumers.insert(key, c.clone());
        Ok(c)
    }

    async fn config(&self, tenant: &str, queue: &str) -> Result<QueueConfig, QueueError> {
        let key = (tenant.to_string(), queue.to_string());
        let cached = self
            .configs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .cloned();
        if let Some((c, at)) = &cached
            && at.elapsed() < CONFIG_TTL
        {
            return Ok(c.clone());
        }
        let (queues, _) = self.streams().await?;
        let config = match queues
            .get_consumer::<consumer::pull::Config>(&consumer_name(tenant, queue))
            .await
        {
            Ok(mut c) => {
                let info = c.info().await.map_err(storage)?;
                info.config
                    .description
                    .as_deref()
                    .and_then(|d| serde_json::from_str(d).ok())
                    .unwrap_or_default()
            }
            Err(e) if consumer_missing(&*e) => QueueConfig::default(),
            // NATS unreachable for now: the config as last read serves.
            Err(_) if cached.is_some() => return Ok(cached.map(|(c, _)| c).unwrap_or_default()),
            Err(e) => return Err(storage(format!("the config of queue `{queue}`: {e}"))),
        };
        self.configs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, (config.clone(), Instant::now()));
        Ok(config)
    }

    /// Retried while NATS cannot answer (a fresh cluster electing its
    /// leaders answers "no responders" for seconds): a node's queue
    /// triggers configure their queues as it starts, and it must wait for
    /// the cluster, not exit.
    async fn configure(
        &self,
        tenant: &str,
        queue: &str,
        config: QueueConfig,
    ) -> Result<(), QueueError> {
        let started = Instant::now();
        let mut wait = Duration::from_millis(100);
        loop {
            match self.configure_once(tenant, queue, config.clone()).await {
                Err(QueueError::Storage(e)) if started.elapsed() + wait < PUBLISH_RETRY_FOR => {
                    tracing::debug!(queue, "configuring: {e}; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(1));
                }
                other => return other,
            }
        }
    }

    async fn configure_once(
        &self,
        tenant: &str,
        queue: &str,
        config: QueueConfig,
    ) -> Result<(), QueueError> {
        let (queues, _) = self.streams().await?;
        let name = consumer_name(tenant, queue);
        let wanted = Self::consumer_config(tenant, queue, &config);
        // Creating a durable consumer that exists updates its editable
        // fields (ack wait, description) on 2.9 as on later servers.
        let c = queues
            .create_consumer(wanted)
            .await
            .map_err(|e| storage(format!("configuring queue `{queue}` ({name}): {e}")))?;
        let key = (tenant.to_string(), queue.to_string());
        self.consumers.insert(key.clone(), c);
        self.configs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, (config, Instant::now()));
        Ok(())
    }

    async fn send(
        &self,
        tenant: &str,
        queue: &str,
        msg: OutgoingMessage,
        now_ms: u64,
    ) -> Result<MessageId, QueueError> {
        let config = self.config(tenant, queue).await?;
        let size = msg.size();
        if size > config.max_message_bytes {
            return Err(QueueError::TooLarge {
                queue: queue.to_string(),
                size,
                limit: config.max_message_bytes,
            });
        }
        self.consumer(tenant, queue).await?;
        let id = MessageId::new();
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", id.to_string().as_str());
        headers.insert(H_ID, id.to_string().as_str());
        headers.insert(H_SENT, now_ms.to_string().as_str());
        if let Some(t) = &msg.content_type {
            headers.insert(H_TYPE, t.as_str());
        }
        for (k, v) in &msg.metadata {
            headers.append(
                format!("{H_META}{}", hex(k.as_bytes())).as_str(),
                v.as_str(),
            );
        }
        self.publish(subject(tenant, queue), headers, msg.body)
            .await?;
        Ok(id)
    }

    /// Publishes until the stream acknowledges, retrying through a leader
    /// election (seconds, measured ~6 s on 2.9): each retry carries the
    /// same `Nats-Msg-Id`, so a publish that was stored but whose ack was
    /// lost is not stored twice.
    async fn publish(
        &self,
        subject: String,
        headers: HeaderMap,
        body: Vec<u8>,
    ) -> Result<(), QueueError> {
        let body = bytes::Bytes::from(body);
        let started = Instant::now();
        let mut wait = Duration::from_millis(100);
        loop {
            let sent = async {
                self.cluster
                    .jetstream()
                    .publish_with_headers(subject.clone(), headers.clone(), body.clone())
                    .await
                    .map_err(|e| e.to_string())?
                    .await
                    .map_err(|e| e.to_string())
            };
            match sent.await {
                Ok(_) => return Ok(()),
                Err(e) if started.elapsed() + wait < PUBLISH_RETRY_FOR => {
                    tracing::debug!(%subject, "publish failed, retrying: {e}");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(1));
                }
                Err(e) => return Err(storage(format!("publishing to {subject}: {e}"))),
            }
        }
    }

    async fn receive(
        &self,
        tenant: &str,
        queue: &str,
        max: usize,
    ) -> Result<Vec<Delivery>, QueueError> {
        let config = self.config(tenant, queue).await?;
        let consumer = self.consumer(tenant, queue).await?;
        let mut batch = consumer
            .fetch()
            .max_messages(max.max(1))
            .messages()
            .await
            .map_err(storage)?;
        let mut out = Vec::new();
        while let Some(m) = batch.next().await {
            let m = m.map_err(storage)?;
            let info = m.info().map_err(storage)?;
            let receive_count = u32::try_from(info.delivered).unwrap_or(u32::MAX);
            let f = match fields(m.headers.as_ref()) {
                Ok(f) => f,
                Err(e) => {
                    // Not Nimbus's: terminated, so it does not come back.
                    tracing::error!(queue, "dropping a message: {e}");
                    let _ = m.ack_with(AckKind::Term).await;
                    continue;
                }
            };
            if receive_count > config.max_receive_count {
                // Timed out at its last allowed receive.
                self.dead_letter(
                    tenant,
                    queue,
                    &m,
                    receive_count - 1,
                    "visibility timeout expired",
                )
                .await?;
                continue;
            }
            let delivery = self.next_delivery.fetch_add(1, Ordering::Relaxed);
            out.push(Delivery {
                id: f.id,
                receipt: Receipt::new(f.id, delivery),
                body: m.payload.to_vec(),
                content_type: f.content_type,
                metadata: f.metadata,
                receive_count,
                sent_at_ms: f.sent_at_ms,
            });
            self.held.insert(
                delivery,
                Held {
                    message: m,
                    id: f.id,
                    receive_count,
                    received: Instant::now(),
                },
            );
        }
        // Deliveries nobody answered (their invocation's node-side task went
        // away) are void once their visibility timeout is long past.
        let stale = config.visibility_timeout * 2 + Duration::from_secs(60);
        self.held.retain(|_, h| h.received.elapsed() < stale);
        Ok(out)
    }

    fn take(&self, receipt: &Receipt) -> Result<Held, QueueError> {
        match self.held.remove(&receipt.delivery()) {
            Some((_, h)) if h.id == receipt.message_id() => Ok(h),
            Some((d, h)) => {
                self.held.insert(d, h);
                Err(QueueError::StaleReceipt(*receipt))
            }
            None => Err(QueueError::StaleReceipt(*receipt)),
        }
    }

    async fn ack(&self, receipt: &Receipt) -> Result<(), QueueError> {
        let h = self.take(receipt)?;
        // Confirmed by the server: once this returns the message is gone.
        h.message.double_ack().await.map_err(storage)
    }

    async fn nack(
        &self,
        tenant: &str,
        queue: &str,
        receipt: &Receipt,
        error: &str,
    ) -> Result<Nack, QueueError> {
        let config = self.config(tenant, queue).await?;
        let h = self.take(receipt)?;
        if h.receive_count >= config.max_receive_count {
            self.dead_letter(tenant, queue, &h.message, h.receive_count, error)
                .await?;
            return Ok(Nack::DeadLetter);
        }
        let delay = Duration::from_millis(config.backoff_ms(h.receive_count));
        h.message
            .ack_with(AckKind::Nak(Some(delay)))
            .await
            .map_err(storage)?;
        Ok(Nack::Retry)
    }

    /// Copies the message to the dead letters, then acks it.
    async fn dead_letter(
        &self,
        tenant: &str,
        queue: &str,
        m: &async_nats::jetstream::Message,
        receive_count: u32,
        error: &str,
    ) -> Result<(), QueueError> {
        let mut headers = m.headers.clone().unwrap_or_default();
        let id = header(Some(&headers), H_ID).unwrap_or_default();
        let seq = m.info().map_err(storage)?.stream_sequence;
        // A retry of this copy (its node died before the ack) is the same
        // dead letter; the same message dead again after a redrive is in
        // the queue at another sequence, so it is another.
        headers.insert("Nats-Msg-Id", format!("dead-{id}-{seq}").as_str());
        let error: String = error.chars().take(1000).collect();
        headers.insert(H_ERROR, error.replace(['\r', '\n'], " ").as_str());
        headers.insert(H_COUNT, receive_count.to_string().as_str());
        headers.insert(H_DEAD, nimbus_queue::now_ms().to_string().as_str());
        self.publish(dead_subject(tenant, queue), headers, m.payload.to_vec())
            .await?;
        m.double_ack().await.map_err(storage)
    }

    async fn next_visible_at_ms(
        &self,
        tenant: &str,
        queue: &str,
        now_ms: u64,
    ) -> Result<Option<u64>, QueueError> {
        let mut consumer = self.consumer(tenant, queue).await?;
        let info = consumer.info().await.map_err(storage)?;
        // Delivered but unanswered messages come back once their ack wait
        // runs out (their node died) or their backoff ends, and JetStream
        // does not say when: a fetch finds out, and an empty one is cheap.
        Ok((info.num_pending > 0 || info.num_ack_pending > 0).then_some(now_ms))
    }

    /// The dead letters of a queue, oldest first, with their sequences.
    async fn dead(
        &self,
        tenant: &str,
        queue: &str,
        limit: usize,
    ) -> Result<Vec<(u64, DeadLetter)>, QueueError> {
        let (_, dead) = self.streams().await?;
        let subject = dead_subject(tenant, queue);
        let mut out = Vec::new();
        let mut from = 1;
        while out.len() < limit {
            let m = match dead
                .direct_get_next_for_subject(subject.as_str(), Some(from))
                .await
            {
                Ok(m) => m,
                Err(e) if e.kind() == stream::DirectGetErrorKind::NotFound => break,
                Err(e) => return Err(storage(e)),
            };
            from = m.sequence + 1;
            let f = fields(Some(&m.headers))?;
            let h = Some(&m.headers);
            out.push((
                m.sequence,
                DeadLetter {
                    id: f.id,
                    body: m.payload.to_vec(),
                    content_type: f.content_type,
                    metadata: f.metadata,
                    receive_count: header(h, H_COUNT).and_then(|v| v.parse().ok()).unwrap_or(0),
                    last_error: header(h, H_ERROR).unwrap_or_default(),
                    sent_at_ms: f.sent_at_ms,
                    dead_at_ms: header(h, H_DEAD).and_then(|v| v.parse().ok()).unwrap_or(0),
                },
            ));
        }
        Ok(out)
    }

    async fn redrive(
        &self,
        tenant: &str,
        queue: &str,
        ids: Option<&[MessageId]>,
    ) -> Result<usize, QueueError> {
        let (_, dead) = self.streams().await?;
        let letters = self.dead(tenant, queue, usize::MAX).await?;
        let mut moved = 0;
        for (seq, d) in letters {
            if ids.is_some_and(|ids| !ids.contains(&d.id)) {
                continue;
            }
            let mut headers = HeaderMap::new();
            // Back in the queue as the same message, receive count reset; a
            // retry of this publish (same dead-letter sequence) is one.
            headers.insert("Nats-Msg-Id", format!("redrive-{}-{seq}", d.id).as_str());
            headers.insert(H_ID, d.id.to_string().as_str());
            headers.insert(H_SENT, d.sent_at_ms.to_string().as_str());
            if let Some(t) = &d.content_type {
                headers.insert(H_TYPE, t.as_str());
            }
            for (k, v) in &d.metadata {
                headers.append(
                    format!("{H_META}{}", hex(k.as_bytes())).as_str(),
                    v.as_str(),
                );
            }
            self.consumer(tenant, queue).await?;
            self.publish(subject(tenant, queue), headers, d.body)
                .await?;
            dead.delete_message(seq).await.map_err(storage)?;
            moved += 1;
        }
        Ok(moved)
    }

    async fn stats(&self, tenant: &str, queue: &str) -> Result<QueueStats, QueueError> {
        let (queues, dead) = self.streams().await?;
        let mut consumer = self.consumer(tenant, queue).await?;
        let info = consumer.info().await.map_err(storage)?.clone();
        let dead_count = self.count(&dead, &dead_subject(tenant, queue)).await?;
        let oldest = match queues
            .direct_get_first_for_subject(subject(tenant, queue))
            .await
        {
            Ok(m) => header(Some(&m.headers), H_SENT).and_then(|v| v.parse().ok()),
            Err(_) => None,
        };
        Ok(QueueStats {
            visible: info.num_pending,
            in_flight: info.num_ack_pending as u64,
            delayed: 0,
            dead: dead_count,
            oldest_sent_at_ms: oldest,
        })
    }

    async fn count(&self, stream: &Stream, subject: &str) -> Result<u64, QueueError> {
        let mut info = stream.info_with_subjects(subject).await.map_err(storage)?;
        let mut n = 0;
        while let Some(s) = info.next().await {
            n += s.map_err(storage)?.1 as u64;
        }
        Ok(n)
    }

    async fn queues(&self) -> Result<Vec<(String, String)>, QueueError> {
        let (queues, _) = self.streams().await?;
        let mut names = queues.consumer_names();
        let mut out = Vec::new();
        while let Some(n) = names.next().await {
            if let Some(tq) = parse_consumer_name(&n.map_err(storage)?) {
                out.push(tq);
            }
        }
        out.sort();
        Ok(out)
    }

    async fn delete_tenant(&self, tenant: &str) -> Result<u64, QueueError> {
        let (queues, dead) = self.streams().await?;
        let mut removed = 0;
        for (t, q) in self.queues().await? {
            if t == tenant {
                queues
                    .delete_consumer(&consumer_name(&t, &q))
                    .await
                    .map_err(storage)?;
                self.consumers.remove(&(t.clone(), q.clone()));
                self.configs
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&(t, q));
            }
        }
        for (stream, prefix) in [(&queues, "nq"), (&dead, "nd")] {
            let purged = stream
                .purge()
                .filter(format!("{prefix}.{tenant}.>"))
                .await
                .map_err(storage)?;
            removed += purged.purged;
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_names_are_injective_and_decode() {
        let a = consumer_name("a_b", "c");
        let b = consumer_name("a", "b_c");
        assert_ne!(a, b);
        assert_eq!(parse_consumer_name(&a), Some(("a_b".into(), "c".into())));
        assert_eq!(parse_consumer_name(&b), Some(("a".into(), "b_c".into())));
        assert!(check("Acme", "q").is_err());
        assert!(check("acme", "a.b").is_err());
        assert!(check("acme", "Orders-1").is_ok());
    }
}
