//! The queue backend trait, and the embedded store's implementation of it.

use crate::store::QueueStore;
use crate::types::{
    DeadLetter, Delivery, MessageId, Nack, OutgoingMessage, QueueConfig, QueueError, QueueStats,
    Receipt,
};

/// A queue backend: what the host (messaging), the triggers and the HTTP
/// API call. [`QueueStore`] is the embedded default; a distributed backend
/// implements the same trait with the same semantics (at-least-once,
/// visibility timeout, backoff, dead letters). Methods block: call them
/// from a blocking context.
pub trait QueueBackend: Send + Sync + std::fmt::Debug + 'static {
    fn configure(&self, tenant: &str, queue: &str, config: QueueConfig) -> Result<(), QueueError>;
    fn config(&self, tenant: &str, queue: &str) -> Result<QueueConfig, QueueError>;
    fn send(
        &self,
        tenant: &str,
        queue: &str,
        msg: OutgoingMessage,
        now_ms: u64,
    ) -> Result<MessageId, QueueError>;
    fn receive(
        &self,
        tenant: &str,
        queue: &str,
        max: usize,
        now_ms: u64,
    ) -> Result<Vec<Delivery>, QueueError>;
    fn ack(&self, tenant: &str, queue: &str, receipt: &Receipt) -> Result<(), QueueError>;
    /// Acks a batch; one answer per receipt (a stale one does not stop the
    /// others). The default acks one by one; a backend with transactions
    /// commits them together.
    fn ack_many(
        &self,
        tenant: &str,
        queue: &str,
        receipts: &[Receipt],
    ) -> Result<Vec<Result<(), QueueError>>, QueueError> {
        Ok(receipts
            .iter()
            .map(|r| self.ack(tenant, queue, r))
            .collect())
    }
    fn nack(
        &self,
        tenant: &str,
        queue: &str,
        receipt: &Receipt,
        error: &str,
        now_ms: u64,
    ) -> Result<Nack, QueueError>;
    fn next_visible_at_ms(&self, tenant: &str, queue: &str) -> Result<Option<u64>, QueueError>;
    fn dead_letters(
        &self,
        tenant: &str,
        queue: &str,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, QueueError>;
    fn redrive(
        &self,
        tenant: &str,
        queue: &str,
        ids: Option<&[MessageId]>,
        now_ms: u64,
    ) -> Result<usize, QueueError>;
    fn stats(&self, tenant: &str, queue: &str, now_ms: u64) -> Result<QueueStats, QueueError>;
    fn queues(&self) -> Result<Vec<(String, String)>, QueueError>;
    /// For deleting a tenant: all its queues, their messages in any state
    /// and dead letters, at once. Returns the messages removed.
    fn delete_tenant(&self, tenant: &str) -> Result<u64, QueueError>;
}

impl QueueBackend for QueueStore {
    fn configure(&self, tenant: &str, queue: &str, config: QueueConfig) -> Result<(), QueueError> {
        QueueStore::configure(self, tenant, queue, config)
    }
    fn config(&self, tenant: &str, queue: &str) -> Result<QueueConfig, QueueError> {
        QueueStore::config(self, tenant, queue)
    }
    fn send(
        &self,
        tenant: &str,
        queue: &str,
        msg: OutgoingMessage,
        now_ms: u64,
    ) -> Result<MessageId, QueueError> {
        QueueStore::send(self, tenant, queue, msg, now_ms)
    }
    fn receive(
        &self,
        tenant: &str,
        queue: &str,
        max: usize,
        now_ms: u64,
    ) -> Result<Vec<Delivery>, QueueError> {
        QueueStore::receive(self, tenant, queue, max, now_ms)
    }
    fn ack(&self, tenant: &str, queue: &str, receipt: &Receipt) -> Result<(), QueueError> {
        QueueStore::ack(self, tenant, queue, receipt)
    }
    fn ack_many(
        &self,
        tenant: &str,
        queue: &str,
        receipts: &[Receipt],
    ) -> Result<Vec<Result<(), QueueError>>, QueueError> {
        QueueStore::ack_many(self, tenant, queue, receipts)
    }
    fn nack(
        &self,
        tenant: &str,
        queue: &str,
        receipt: &Receipt,
        error: &str,
        now_ms: u64,
    ) -> Result<Nack, QueueError> {
        QueueStore::nack(self, tenant, queue, receipt, error, now_ms)
    }
    fn next_visible_at_ms(&self, tenant: &str, queue: &str) -> Result<Option<u64>, QueueError> {
        QueueStore::next_visible_at_ms(self, tenant, queue)
    }
    fn dead_letters(
        &self,
        tenant: &str,
        queue: &str,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, QueueError> {
        QueueStore::dead_letters(self, tenant, queue, limit)
    }
    fn redrive(
        &self,
        tenant: &str,
        queue: &str,
        ids: Option<&[MessageId]>,
        now_ms: u64,
    ) -> Result<usize, QueueError> {
        QueueStore::redrive(self, tenant, queue, ids, now_ms)
    }
    fn stats(&self, tenant: &str, queue: &str, now_ms: u64) -> Result<QueueStats, QueueError> {
        QueueStore::stats(self, tenant, queue, now_ms)
    }
    fn queues(&self) -> Result<Vec<(String, String)>, QueueError> {
        QueueStore::queues(self)
    }
    fn delete_tenant(&self, tenant: &str) -> Result<u64, QueueError> {
        QueueStore::delete_tenant(self, tenant)
    }
}
