//! Durable message queues per tenant, embedded on redb: the queue backend
//! behind Nimbus's queue trigger, with SQS's at-least-once contract.
//!
//! A producer [`send`](QueueStore::send)s; a consumer
//! [`receive`](QueueStore::receive)s a batch, runs the function for each
//! message, then [`ack`](QueueStore::ack)s it (done, deleted) or
//! [`nack`](QueueStore::nack)s it (failed: retried after an exponential
//! backoff, or dead-lettered once it has been received `max_receive_count`
//! times). A received message is hidden for the queue's visibility timeout;
//! if the consumer crashes and never answers, the message becomes receivable
//! again by itself — so every message is processed at least once, and
//! functions fed by a queue must tolerate the odd duplicate.
//!
//! ```
//! use std::time::Duration;
//! use nimbus_queue::{Nack, OutgoingMessage, QueueConfig, QueueStore};
//!
//! # fn main() -> Result<(), nimbus_queue::QueueError> {
//! let dir = tempfile::tempdir().unwrap();
//! let store = QueueStore::open(&dir.path().join("queues.redb"))?;
//! store.configure("acme", "orders", QueueConfig {
//!     max_receive_count: 2,
//!     ..QueueConfig::default()
//! })?;
//!
//! // Time is passed in (unix milliseconds), so tests control the clock;
//! // a real consumer passes `nimbus_queue::now_ms()`.
//! let t = 1_000_000;
//! let id = store.send("acme", "orders", OutgoingMessage::new("order 1"), t)?;
//!
//! // Received: hidden for the visibility timeout (30 s by default).
//! let batch = store.receive("acme", "orders", 10, t)?;
//! assert_eq!((batch.len(), batch[0].id, batch[0].receive_count), (1, id, 1));
//! assert!(store.receive("acme", "orders", 10, t)?.is_empty());
//!
//! // The function failed: retried after the backoff (1 s at first).
//! let outcome = store.nack("acme", "orders", &batch[0].receipt, "boom", t)?;
//! assert_eq!(outcome, Nack::Retry);
//! assert_eq!(store.next_visible_at_ms("acme", "orders")?, Some(t + 1_000));
//!
//! // Failed again, at max_receive_count: dead-lettered with its error.
//! let batch = store.receive("acme", "orders", 10, t + 1_000)?;
//! let outcome = store.nack("acme", "orders", &batch[0].receipt, "boom again", t + 1_000)?;
//! assert_eq!(outcome, Nack::DeadLetter);
//! let dead = store.dead_letters("acme", "orders", 10)?;
//! assert_eq!((dead[0].id, dead[0].last_error.as_str()), (id, "boom again"));
//!
//! // Fixed the bug? Redrive: back in the queue, receive count reset.
//! assert_eq!(store.redrive("acme", "orders", None, t + 2_000)?, 1);
//! let batch = store.receive("acme", "orders", 10, t + 2_000)?;
//! assert_eq!((batch[0].body.as_slice(), batch[0].receive_count), (&b"order 1"[..], 1));
//! store.ack("acme", "orders", &batch[0].receipt)?;
//! assert_eq!(store.stats("acme", "orders", t + 2_000)?.visible, 0);
//! # Ok(()) }
//! ```
//!
//! Every method blocks (a mutation returns only after its transaction is
//! synced to disk): call them from a blocking context, e.g.
//! `tokio::task::spawn_blocking`.

mod backend;
mod dead_letters;
mod delivery;
mod keys;
mod stats;
mod store;
mod tables;
#[cfg(test)]
mod tests;
mod types;

pub use backend::QueueBackend;
pub use keys::check_queue_name;
pub use store::QueueStore;
pub use types::*;
