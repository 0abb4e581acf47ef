use super::*;

mod dead_letters;
mod delivery;
mod queues;

/// A fixed start time: tests move the clock by hand.
const T0: u64 = 1_700_000_000_000;

fn store() -> (tempfile::TempDir, QueueStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = QueueStore::open(&dir.path().join("queues.redb")).unwrap();
    (dir, store)
}

fn send(s: &QueueStore, tenant: &str, queue: &str, body: &str, now: u64) -> MessageId {
    s.send(tenant, queue, OutgoingMessage::new(body), now)
        .unwrap()
}

fn bodies(batch: &[Delivery]) -> Vec<String> {
    batch
        .iter()
        .map(|d| String::from_utf8_lossy(&d.body).into_owned())
        .collect()
}

fn configured(s: &QueueStore, config: QueueConfig) {
    s.configure("t", "q", config).unwrap();
}
