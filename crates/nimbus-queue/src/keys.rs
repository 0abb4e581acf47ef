//! Key and index encoding.
//!
//! Every key starts with the queue key: the length-prefixed tenant, then the
//! length-prefixed queue name (as nimbus-kv encodes (tenant, store)). Length
//! prefixes make the encoding injective — ("a", "bc") and ("ab", "c") differ
//! in the first length — and prefix-free: no queue key is a prefix of
//! another, so a range between two keys of one queue never reaches another
//! queue's entries. After the queue key come fixed-width big-endian fields,
//! so byte order is numeric order.

use crate::types::{MessageId, QueueError, shorten};

/// Longest tenant name, bytes. Tenant names are checked by the host; this
/// only keeps keys (and their u32 length prefix) bounded.
pub(crate) const MAX_TENANT_BYTES: usize = 255;
/// Longest queue name, characters (SQS's limit).
pub(crate) const MAX_QUEUE_NAME: usize = 80;

const ID: usize = 16;
const U64: usize = 8;

fn check_tenant(tenant: &str) -> Result<(), QueueError> {
    if tenant.is_empty() || tenant.len() > MAX_TENANT_BYTES {
        return Err(QueueError::InvalidName {
            kind: "tenant",
            name: shorten(tenant),
            rule: "must be 1 to 255 bytes",
        });
    }
    Ok(())
}

fn check_names(tenant: &str, queue: &str) -> Result<(), QueueError> {
    check_tenant(tenant)?;
    let ok = (1..=MAX_QUEUE_NAME).contains(&queue.len())
        && queue
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !ok {
        return Err(QueueError::InvalidName {
            kind: "queue",
            name: shorten(queue),
            rule: "must be 1 to 80 characters, each a letter (A-Z, a-z), digit, '_' or '-'",
        });
    }
    Ok(())
}

fn push_part(k: &mut Vec<u8>, part: &str) {
    // Lengths are bounded by the name checks, so the cast is exact.
    k.extend_from_slice(&(part.len() as u32).to_be_bytes());
    k.extend_from_slice(part.as_bytes());
}

/// The keys of every queue of `tenant`, and only those (queue keys are
/// prefix-free): the range from its length-prefixed name to the next one.
pub(crate) fn tenant_range(tenant: &str) -> Result<(Vec<u8>, Vec<u8>), QueueError> {
    check_tenant(tenant)?;
    let mut start = Vec::with_capacity(4 + tenant.len());
    push_part(&mut start, tenant);
    let mut end = start.clone();
    // UTF-8 never holds the byte 0xff, so the last byte (of a name that is
    // not empty) increments without a carry.
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    Ok((start, end))
}

/// The key prefix of one (tenant, queue).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QueueKey(Vec<u8>);

impl QueueKey {
    pub(crate) fn new(tenant: &str, queue: &str) -> Result<Self, QueueError> {
        check_names(tenant, queue)?;
        let mut k = Vec::with_capacity(8 + tenant.len() + queue.len());
        push_part(&mut k, tenant);
        push_part(&mut k, queue);
        Ok(Self(k))
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    fn with(&self, suffix: &[&[u8]]) -> Vec<u8> {
        let mut k = self.0.clone();
        for part in suffix {
            k.extend_from_slice(part);
        }
        k
    }

    /// Key of a message in the messages, bodies and dead-letter tables.
    pub(crate) fn message(&self, id: MessageId) -> Vec<u8> {
        self.with(&[id.as_bytes()])
    }

    /// First and last possible message keys of this queue.
    pub(crate) fn message_bounds(&self) -> (Vec<u8>, Vec<u8>) {
        (self.with(&[&[0; ID]]), self.with(&[&[0xff; ID]]))
    }

    /// The id at the end of a message key of this queue.
    pub(crate) fn message_id(&self, key: &[u8]) -> Result<MessageId, QueueError> {
        key.strip_prefix(self.0.as_slice())
            .and_then(|id| <[u8; ID]>::try_from(id).ok())
            .map(MessageId::from_bytes)
            .ok_or_else(|| QueueError::Corrupt(format!("message key of {} bytes", key.len())))
    }

    /// Key in the readiness index: receivable from `visible_at_ms`, FIFO by
    /// `seq` among messages visible at the same time.
    pub(crate) fn ready(&self, visible_at_ms: u64, seq: u64) -> Vec<u8> {
        self.with(&[&visible_at_ms.to_be_bytes(), &seq.to_be_bytes()])
    }

    /// First and last possible readiness keys of this queue.
    pub(crate) fn ready_bounds(&self) -> (Vec<u8>, Vec<u8>) {
        (self.ready(0, 0), self.ready(u64::MAX, u64::MAX))
    }

    /// The visible-at time in a readiness key of this queue.
    pub(crate) fn ready_visible_at(&self, key: &[u8]) -> Result<u64, QueueError> {
        key.strip_prefix(self.0.as_slice())
            .filter(|rest| rest.len() == 2 * U64)
            .and_then(|rest| rest.first_chunk::<U64>())
            .map(|t| u64::from_be_bytes(*t))
            .ok_or_else(|| QueueError::Corrupt(format!("readiness key of {} bytes", key.len())))
    }
}

/// Where a message stands, kept in its record and its readiness entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum State {
    /// Sent or redriven, never received since.
    Ready,
    /// Received; waiting for its ack or nack until the visibility timeout.
    InFlight,
    /// Nacked; waiting out its backoff.
    Delayed,
}

/// A readiness index value: the message, plus what `stats` needs so that
/// counting a queue reads only this index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReadyEntry {
    pub(crate) id: MessageId,
    pub(crate) state: State,
    pub(crate) sent_at_ms: u64,
}

const READY_VALUE: usize = ID + 1 + U64;

impl ReadyEntry {
    pub(crate) fn encode(&self) -> [u8; READY_VALUE] {
        let mut v = [0; READY_VALUE];
        v[..ID].copy_from_slice(self.id.as_bytes());
        v[ID] = match self.state {
            State::Ready => 0,
            State::InFlight => 1,
            State::Delayed => 2,
        };
        v[ID + 1..].copy_from_slice(&self.sent_at_ms.to_be_bytes());
        v
    }

    pub(crate) fn decode(v: &[u8]) -> Result<Self, QueueError> {
        let corrupt = || QueueError::Corrupt(format!("readiness entry of {} bytes", v.len()));
        let v = <&[u8; READY_VALUE]>::try_from(v).map_err(|_| corrupt())?;
        let (id, rest) = v.split_first_chunk::<ID>().ok_or_else(corrupt)?;
        let (state, sent_at) = rest.split_first().ok_or_else(corrupt)?;
        let state = match state {
            0 => State::Ready,
            1 => State::InFlight,
            2 => State::Delayed,
            other => {
                return Err(QueueError::Corrupt(format!(
                    "readiness entry with state {other}"
                )));
            }
        };
        let sent_at = <[u8; U64]>::try_from(sent_at).map_err(|_| corrupt())?;
        Ok(Self {
            id: MessageId::from_bytes(*id),
            state,
            sent_at_ms: u64::from_be_bytes(sent_at),
        })
    }
}

/// Checks a queue name (1 to 80 of `A-Z a-z 0-9 _ -`), e.g. a topic grant
/// at deploy, before anything is sent to it.
pub fn check_queue_name(queue: &str) -> Result<(), QueueError> {
    QueueKey::new("t", queue).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_keys_are_injective_and_prefix_free() {
        let a = QueueKey::new("a", "bc").unwrap();
        let b = QueueKey::new("ab", "c").unwrap();
        assert_ne!(a, b);
        assert!(!a.as_bytes().starts_with(b.as_bytes()));
        assert!(!b.as_bytes().starts_with(a.as_bytes()));
        // A queue whose name extends another's: still not a prefix.
        let c = QueueKey::new("a", "b").unwrap();
        assert!(!a.as_bytes().starts_with(c.as_bytes()));
    }

    #[test]
    fn a_tenant_range_holds_exactly_its_queue_keys() {
        let (start, end) = tenant_range("a").unwrap();
        let inside = |t: &str, q: &str| {
            let k = QueueKey::new(t, q).unwrap();
            (start.as_slice()..end.as_slice()).contains(&k.as_bytes())
        };
        assert!(inside("a", "q") && inside("a", &"z".repeat(80)));
        assert!(!inside("b", "q") && !inside("ab", "q") && !inside("A", "q"));
        assert_eq!(end, [0, 0, 0, 1, b'b']);
        assert!(tenant_range("").is_err());
    }

    #[test]
    fn ready_entries_round_trip_and_reject_garbage() {
        let e = ReadyEntry {
            id: MessageId::new(),
            state: State::Delayed,
            sent_at_ms: 42,
        };
        assert_eq!(ReadyEntry::decode(&e.encode()).unwrap(), e);
        assert!(ReadyEntry::decode(&[1, 2, 3]).is_err());
        let mut bad = e.encode();
        bad[ID] = 9;
        assert!(ReadyEntry::decode(&bad).is_err());
        let q = QueueKey::new("t", "q").unwrap();
        assert_eq!(q.ready_visible_at(&q.ready(7, 9)).unwrap(), 7);
        assert!(q.ready_visible_at(b"short").is_err());
        let id = MessageId::new();
        assert_eq!(q.message_id(&q.message(id)).unwrap(), id);
        assert!(q.message_id(b"short").is_err());
        let other = QueueKey::new("t", "r").unwrap();
        assert!(other.message_id(&q.message(id)).is_err());
    }
}
