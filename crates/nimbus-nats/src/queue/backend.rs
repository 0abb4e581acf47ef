//! The synchronous `QueueBackend` over the queues' async calls: names
//! checked here, then one blocking wait per call.

use nimbus_queue::{
    DeadLetter, Delivery, MessageId, Nack, OutgoingMessage, QueueBackend, QueueConfig, QueueError,
    QueueStats, Receipt,
};

use super::{NatsQueues, check};

impl QueueBackend for NatsQueues {
    fn configure(&self, tenant: &str, queue: &str, config: QueueConfig) -> Result<(), QueueError> {
        check(tenant, queue)?;
        config.validate()?;
        let (t, q) = (tenant.to_string(), queue.to_string());
        self.block(|i| async move { i.configure(&t, &q, config).await })
    }

    fn config(&self, tenant: &str, queue: &str) -> Result<QueueConfig, QueueError> {
        check(tenant, queue)?;
        let (t, q) = (tenant.to_string(), queue.to_string());
        self.block(|i| async move { i.config(&t, &q).await })
    }

    fn send(
        &self,
        tenant: &str,
        queue: &str,
        msg: OutgoingMessage,
        now_ms: u64,
    ) -> Result<MessageId, QueueError> {
        check(tenant, queue)?;
        let (t, q) = (tenant.to_string(), queue.to_string());
        self.block(|i| async move { i.send(&t, &q, msg, now_ms).await })
    }

    fn receive(
        &self,
        tenant: &str,
        queue: &str,
        max: usize,
        _now_ms: u64,
    ) -> Result<Vec<Delivery>, QueueError> {
        check(tenant, queue)?;
        let (t, q) = (tenant.to_string(), queue.to_string());
        self.block(|i| async move { i.receive(&t, &q, max).await })
    }

    fn ack(&self, tenant: &str, queue: &str, receipt: &Receipt) -> Result<(), QueueError> {
        check(tenant, queue)?;
        let receipt = *receipt;
        self.block(|i| async move { i.ack(&receipt).await })
    }

    fn ack_many(
        &self,
        tenant: &str,
        queue: &str,
        receipts: &[Receipt],
    ) -> Result<Vec<Result<(), QueueError>>, QueueError> {
        check(tenant, queue)?;
        let receipts = receipts.to_vec();
        // Acked together: one round trip's wait for the whole batch.
        self.block(|i| async move {
            let acks = receipts.iter().map(|r| i.ack(r));
            Ok(futures_util::future::join_all(acks).await)
        })
    }

    fn nack(
        &self,
        tenant: &str,
        queue: &str,
        receipt: &Receipt,
        error: &str,
        _now_ms: u64,
    ) -> Result<Nack, QueueError> {
        check(tenant, queue)?;
        let (t, q, receipt, error) = (
            tenant.to_string(),
            queue.to_string(),
            *receipt,
            error.to_string(),
        );
        self.block(|i| async move { i.nack(&t, &q, &receipt, &error).await })
    }

    fn next_visible_at_ms(&self, tenant: &str, queue: &str) -> Result<Option<u64>, QueueError> {
        check(tenant, queue)?;
        let (t, q) = (tenant.to_string(), queue.to_string());
        let now = nimbus_queue::now_ms();
        self.block(|i| async move { i.next_visible_at_ms(&t, &q, now).await })
    }

    fn dead_letters(
        &self,
        tenant: &str,
        queue: &str,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, QueueError> {
        check(tenant, queue)?;
        let (t, q) = (tenant.to_string(), queue.to_string());
        self.block(|i| async move {
            Ok(i.dead(&t, &q, limit)
                .await?
                .into_iter()
                .map(|(_, d)| d)
                .collect())
        })
    }

    fn redrive(
        &self,
        tenant: &str,
        queue: &str,
        ids: Option<&[MessageId]>,
        _now_ms: u64,
    ) -> Result<usize, QueueError> {
        check(tenant, queue)?;
        let (t, q, ids) = (
            tenant.to_string(),
            queue.to_string(),
            ids.map(<[_]>::to_vec),
        );
        self.block(|i| async move { i.redrive(&t, &q, ids.as_deref()).await })
    }

    fn stats(&self, tenant: &str, queue: &str, _now_ms: u64) -> Result<QueueStats, QueueError> {
        check(tenant, queue)?;
        let (t, q) = (tenant.to_string(), queue.to_string());
        self.block(|i| async move { i.stats(&t, &q).await })
    }

    fn queues(&self) -> Result<Vec<(String, String)>, QueueError> {
        self.block(|i| async move { i.queues().await })
    }

    fn delete_tenant(&self, tenant: &str) -> Result<u64, QueueError> {
        let t = tenant.to_string();
        self.block(|i| async move { i.delete_tenant(&t).await })
    }
}
