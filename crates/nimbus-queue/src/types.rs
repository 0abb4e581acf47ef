//! The values queues deal in: settings, messages, deliveries, dead letters,
//! statistics and errors.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A queue's settings. Persisted per queue by [`QueueStore::configure`];
/// a queue never configured uses [`QueueConfig::default`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct QueueConfig {
    /// How long a received message stays hidden waiting for its ack or
    /// nack; after that it is receivable again (the consumer is presumed
    /// dead). Default 30 s, as SQS.
    pub visibility_timeout: Duration,
    /// Receives after which a failed (nacked) or abandoned (timed out)
    /// message goes to the dead-letter table instead of being retried.
    /// At least 1; default 5.
    pub max_receive_count: u32,
    /// Backoff after the first failure; doubled after each further one.
    /// Default 1 s.
    pub backoff_base: Duration,
    /// Cap on the backoff. Default 60 s.
    pub backoff_max: Duration,
    /// Largest message: body, content type and metadata keys and values,
    /// bytes. At least 1; default 256 KiB, as SQS.
    pub max_message_bytes: usize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            visibility_timeout: Duration::from_secs(30),
            max_receive_count: 5,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            max_message_bytes: 256 * 1024,
        }
    }
}

impl QueueConfig {
    pub fn validate(&self) -> Result<(), QueueError> {
        if self.max_receive_count == 0 {
            return Err(QueueError::InvalidConfig(
                "max_receive_count must be at least 1".into(),
            ));
        }
        if self.max_message_bytes == 0 {
            return Err(QueueError::InvalidConfig(
                "max_message_bytes must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// Backoff after the `receive_count`-th receive failed:
    /// `backoff_base * 2^(receive_count - 1)`, capped at `backoff_max`.
    pub fn backoff_ms(&self, receive_count: u32) -> u64 {
        let doublings = receive_count.saturating_sub(1);
        let factor = 1u64.checked_shl(doublings).unwrap_or(u64::MAX);
        millis(self.backoff_base)
            .saturating_mul(factor)
            .min(millis(self.backoff_max))
    }
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The current time in unix milliseconds, what the `now_ms` arguments take.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, millis)
}

/// A message's id: a UUIDv7, so ids are unique without coordination and
/// sort by creation time. Displays and parses as the hyphenated UUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageId(Uuid);

impl MessageId {
    /// A new id (what `send` gives a message).
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    pub(crate) fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(Uuid::from_bytes(bytes))
    }

    pub(crate) fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for MessageId {
    type Err = QueueError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s)
            .map(Self)
            .map_err(|_| QueueError::InvalidMessageId(shorten(s)))
    }
}

/// Proof of one delivery, needed to ack or nack it. Names the message and
/// the delivery, so once the message is delivered again an old receipt is
/// refused ([`QueueError::StaleReceipt`]): a slow consumer cannot delete a
/// message another consumer now holds. Travels as text (`Display` /
/// `FromStr`); its format is not a contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Receipt {
    pub(crate) id: MessageId,
    /// Unique per delivery across the whole store (drawn from the same
    /// sequence as send order), never 0.
    pub(crate) delivery: u64,
}

impl Receipt {
    /// A receipt for delivery `delivery` (unique per delivery within the
    /// backend that issues it, never 0) of message `id`: for backends
    /// other than the embedded one.
    pub fn new(id: MessageId, delivery: u64) -> Self {
        Self { id, delivery }
    }

    /// The delivery this receipt is for.
    pub fn delivery(&self) -> u64 {
        self.delivery
    }

    /// The message this receipt is for.
    pub fn message_id(&self) -> MessageId {
        self.id
    }
}

impl fmt::Display for Receipt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.id, self.delivery)
    }
}

impl FromStr for Receipt {
    type Err = QueueError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || QueueError::InvalidReceipt(shorten(s));
        let (id, delivery) = s.split_once('.').ok_or_else(invalid)?;
        let id = Uuid::parse_str(id).map_err(|_| invalid())?;
        let delivery = delivery.parse::<u64>().map_err(|_| invalid())?;
        if delivery == 0 {
            return Err(invalid());
        }
        Ok(Self {
            id: MessageId(id),
            delivery,
        })
    }
}

/// A message to send.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub body: Vec<u8>,
    pub content_type: Option<String>,
    /// Attributes carried with the message (SQS's message attributes).
    pub metadata: Vec<(String, String)>,
}

impl OutgoingMessage {
    /// A message with this body, no content type and no metadata.
    pub fn new(body: impl Into<Vec<u8>>) -> Self {
        Self {
            body: body.into(),
            ..Self::default()
        }
    }

    /// Bytes counted against `max_message_bytes`: everything the sender
    /// chose, so metadata cannot smuggle a large payload past the limit.
    pub fn size(&self) -> usize {
        self.body.len()
            + self.content_type.as_ref().map_or(0, String::len)
            + self
                .metadata
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
    }
}

/// One received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: MessageId,
    /// Pass to [`QueueStore::ack`] or [`QueueStore::nack`].
    pub receipt: Receipt,
    pub body: Vec<u8>,
    pub content_type: Option<String>,
    pub metadata: Vec<(String, String)>,
    /// How many times the message has been received, this time included
    /// (1 on the first delivery): above 1 means a retry or a redelivery.
    pub receive_count: u32,
    pub sent_at_ms: u64,
}

/// A message moved aside after too many receives, kept until redriven.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub id: MessageId,
    pub body: Vec<u8>,
    pub content_type: Option<String>,
    pub metadata: Vec<(String, String)>,
    pub receive_count: u32,
    /// The last nack's error, or why the message was given up on.
    pub last_error: String,
    pub sent_at_ms: u64,
    pub dead_at_ms: u64,
}

/// Messages in a queue by state, at a given time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStats {
    /// Receivable now (including received ones whose visibility timeout
    /// has expired).
    pub visible: u64,
    /// Received and still within their visibility timeout.
    pub in_flight: u64,
    /// Nacked and waiting out their backoff.
    pub delayed: u64,
    /// In the dead-letter table.
    pub dead: u64,
    /// Send time of the oldest message still in the queue (dead letters
    /// not counted): how far behind the consumers are.
    pub oldest_sent_at_ms: Option<u64>,
}

/// What a [`QueueStore::nack`] did with the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nack {
    /// It will be received again after its backoff.
    Retry,
    /// It had been received `max_receive_count` times: moved to the
    /// dead-letter table.
    DeadLetter,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// A tenant or queue name outside the rules.
    #[error("invalid {kind} name {name:?}: {rule}")]
    InvalidName {
        kind: &'static str,
        name: String,
        rule: &'static str,
    },
    /// Over the queue's `max_message_bytes`; nothing was sent.
    #[error(
        "message of {size} bytes (body, content type and metadata) is over the limit of \
         {limit} bytes of queue `{queue}`"
    )]
    TooLarge {
        queue: String,
        size: usize,
        limit: usize,
    },
    #[error("invalid queue config: {0}")]
    InvalidConfig(String),
    /// The queue has never been sent to or configured.
    #[error("tenant `{tenant}` has no queue `{queue}`")]
    UnknownQueue { tenant: String, queue: String },
    /// The message was acked, nacked, dead-lettered or delivered again
    /// since this receipt was issued; its current holder decides its fate.
    #[error(
        "receipt {0} is stale: the message was acknowledged, nacked, dead-lettered or \
         delivered again since"
    )]
    StaleReceipt(Receipt),
    #[error("invalid receipt {0:?}")]
    InvalidReceipt(String),
    #[error("invalid message id {0:?}: expected a UUID")]
    InvalidMessageId(String),
    /// A stored record that does not decode: the file was damaged or
    /// written by an incompatible version.
    #[error("corrupt queue record: {0}")]
    Corrupt(String),
    #[error("storage: {0}")]
    Storage(String),
}

macro_rules! storage_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for QueueError {
            fn from(e: $t) -> Self {
                QueueError::Storage(e.to_string())
            }
        }
    )*};
}
storage_errors!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// Untrusted text echoed in an error, cut so a huge input cannot make a
/// huge error message.
pub(crate) fn shorten(s: &str) -> String {
    const MAX: usize = 100;
    match s.char_indices().nth(MAX) {
        None => s.to_string(),
        Some((cut, _)) => format!("{}…", &s[..cut]),
    }
}
