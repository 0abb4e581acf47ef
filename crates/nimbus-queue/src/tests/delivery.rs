//! Receive order, visibility, receipts, acks, nacks and their backoff.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;

#[test]
fn messages_come_out_in_fifo_order() {
    let (_dir, s) = store();
    for i in 0..5 {
        send(&s, "t", "q", &format!("m{i}"), T0);
    }
    // One at a time and in a batch: the same order.
    assert_eq!(bodies(&s.receive("t", "q", 1, T0).unwrap()), ["m0"]);
    assert_eq!(
        bodies(&s.receive("t", "q", 10, T0).unwrap()),
        ["m1", "m2", "m3", "m4"]
    );
    // Order is by visibility, then send order: a message sent stamped
    // earlier (another producer's clock) comes first.
    send(&s, "t", "q", "late", T0 + 5);
    send(&s, "t", "q", "early", T0 + 1);
    assert_eq!(
        bodies(&s.receive("t", "q", 10, T0 + 10).unwrap()),
        ["early", "late"]
    );
}

#[test]
fn a_received_message_is_hidden_until_its_visibility_timeout() {
    let (_dir, s) = store();
    configured(
        &s,
        QueueConfig {
            visibility_timeout: Duration::from_secs(10),
            ..QueueConfig::default()
        },
    );
    let id = send(&s, "t", "q", "m", T0);
    let first = s.receive("t", "q", 10, T0).unwrap();
    assert_eq!((first.len(), first[0].receive_count), (1, 1));
    assert!(s.receive("t", "q", 10, T0).unwrap().is_empty());
    assert!(s.receive("t", "q", 10, T0 + 9_999).unwrap().is_empty());
    assert_eq!(s.next_visible_at_ms("t", "q").unwrap(), Some(T0 + 10_000));
    // The consumer never answered: delivered again, counted.
    let again = s.receive("t", "q", 10, T0 + 10_000).unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].id, again[0].receive_count), (id, 2));
    assert_eq!(again[0].sent_at_ms, T0);
    assert_ne!(again[0].receipt, first[0].receipt);
}

#[test]
fn ack_deletes_the_message() {
    let (_dir, s) = store();
    send(&s, "t", "q", "m", T0);
    send(&s, "t", "q", "other", T0);
    let batch = s.receive("t", "q", 1, T0).unwrap();
    s.ack("t", "q", &batch[0].receipt).unwrap();
    // Gone for good: not redelivered after the timeout, not counted.
    let later = T0 + 3_600_000;
    assert_eq!(bodies(&s.receive("t", "q", 10, later).unwrap()), ["other"]);
    let stats = s.stats("t", "q", later).unwrap();
    assert_eq!((stats.visible, stats.in_flight, stats.dead), (0, 1, 0));
    let err = s.ack("t", "q", &batch[0].receipt).unwrap_err();
    assert!(matches!(err, QueueError::StaleReceipt(_)), "{err}");
}

#[test]
fn ack_many_deletes_a_batch_and_reports_stale_receipts_one_by_one() {
    let (_dir, s) = store();
    for m in ["a", "b", "c", "d"] {
        send(&s, "t", "q", m, T0);
    }
    let batch = s.receive("t", "q", 3, T0).unwrap();
    s.ack("t", "q", &batch[1].receipt).unwrap();
    let receipts: Vec<_> = batch.iter().map(|d| d.receipt).collect();
    let answers = s.ack_many("t", "q", &receipts).unwrap();
    assert!(answers[0].is_ok() && answers[2].is_ok(), "{answers:?}");
    assert!(
        matches!(answers[1], Err(QueueError::StaleReceipt(_))),
        "{answers:?}"
    );
    let later = T0 + 3_600_000;
    assert_eq!(bodies(&s.receive("t", "q", 10, later).unwrap()), ["d"]);
    assert!(matches!(
        s.ack_many("t", "nope", &receipts),
        Err(QueueError::UnknownQueue { .. })
    ));
}

#[test]
fn a_receipt_is_stale_once_the_message_is_delivered_again() {
    let (_dir, s) = store();
    configured(
        &s,
        QueueConfig {
            visibility_timeout: Duration::from_secs(1),
            ..QueueConfig::default()
        },
    );
    send(&s, "t", "q", "m", T0);
    let old = s.receive("t", "q", 1, T0).unwrap().remove(0).receipt;
    let new = s
        .receive("t", "q", 1, T0 + 1_000)
        .unwrap()
        .remove(0)
        .receipt;
    for err in [
        s.ack("t", "q", &old).unwrap_err(),
        s.nack("t", "q", &old, "late", T0 + 1_000).unwrap_err(),
    ] {
        assert!(
            matches!(err, QueueError::StaleReceipt(r) if r == old),
            "{err}"
        );
        assert!(err.to_string().contains("stale"), "{err}");
    }
    // The current holder is unaffected.
    s.ack("t", "q", &new).unwrap();

    // Expired but not received again since: the receipt still works.
    send(&s, "t", "q", "slow", T0);
    let slow = s.receive("t", "q", 1, T0).unwrap().remove(0).receipt;
    s.ack("t", "q", &slow).unwrap();
    assert!(s.receive("t", "q", 1, T0 + 60_000).unwrap().is_empty());

    // A nacked delivery's receipt is spent.
    send(&s, "t", "q", "nacked", T0);
    let nacked = s.receive("t", "q", 1, T0).unwrap().remove(0).receipt;
    assert_eq!(s.nack("t", "q", &nacked, "e", T0).unwrap(), Nack::Retry);
    assert!(matches!(
        s.ack("t", "q", &nacked),
        Err(QueueError::StaleReceipt(_))
    ));
}

#[test]
fn nack_backs_off_exponentially_up_to_the_cap() {
    let (_dir, s) = store();
    configured(
        &s,
        QueueConfig {
            max_receive_count: 10,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(5),
            ..QueueConfig::default()
        },
    );
    let id = send(&s, "t", "q", "m", T0);
    let mut now = T0;
    for (n, backoff) in [1_000, 2_000, 4_000, 5_000, 5_000].into_iter().enumerate() {
        let batch = s.receive("t", "q", 10, now).unwrap();
        assert_eq!(batch.len(), 1, "receive {}", n + 1);
        assert_eq!((batch[0].id, batch[0].receive_count), (id, n as u32 + 1));
        let outcome = s.nack("t", "q", &batch[0].receipt, "failed", now).unwrap();
        assert_eq!(outcome, Nack::Retry);
        assert_eq!(s.next_visible_at_ms("t", "q").unwrap(), Some(now + backoff));
        assert!(
            s.receive("t", "q", 10, now + backoff - 1)
                .unwrap()
                .is_empty(),
            "visible before its backoff of {backoff} ms"
        );
        now += backoff;
    }
    assert_eq!(s.receive("t", "q", 10, now).unwrap().len(), 1);

    // The doubling saturates instead of overflowing.
    let config = QueueConfig::default();
    assert_eq!(config.backoff_ms(7), 60_000);
    assert_eq!(config.backoff_ms(u32::MAX), 60_000);
    let huge = QueueConfig {
        backoff_base: Duration::MAX,
        backoff_max: Duration::MAX,
        ..config
    };
    assert_eq!(huge.backoff_ms(100), u64::MAX);
}

#[test]
fn the_batch_size_is_honoured() {
    let (_dir, s) = store();
    for i in 0..25 {
        send(&s, "t", "q", &format!("{i}"), T0);
    }
    assert!(s.receive("t", "q", 0, T0).unwrap().is_empty());
    let sizes: Vec<usize> = (0..4)
        .map(|_| s.receive("t", "q", 10, T0).unwrap().len())
        .collect();
    assert_eq!(sizes, [10, 10, 5, 0]);
}

#[test]
fn concurrent_consumers_get_every_message_exactly_once() {
    const PRODUCERS: usize = 4;
    const CONSUMERS: usize = 4;
    const TOTAL: usize = 1000;
    let (_dir, s) = store();
    s.configure("t", "q", QueueConfig::default()).unwrap();
    let acked = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let deadline = Instant::now() + Duration::from_secs(120);
    std::thread::scope(|scope| {
        for p in 0..PRODUCERS {
            let s = s.clone();
            scope.spawn(move || {
                for i in 0..TOTAL / PRODUCERS {
                    // The clock never moves: nothing times out, so a
                    // second delivery could only be a bug.
                    send(&s, "t", "q", &format!("{p}-{i}"), T0);
                }
            });
        }
        for _ in 0..CONSUMERS {
            let (s, acked, seen) = (s.clone(), acked.clone(), seen.clone());
            scope.spawn(move || {
                while acked.load(Ordering::SeqCst) < TOTAL {
                    assert!(Instant::now() < deadline, "consumers stalled");
                    let batch = s.receive("t", "q", 10, T0).unwrap();
                    if batch.is_empty() {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    for d in batch {
                        assert_eq!(d.receive_count, 1);
                        s.ack("t", "q", &d.receipt).unwrap();
                        seen.lock().unwrap().push(d.body);
                        acked.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
        }
    });
    let seen = seen.lock().unwrap();
    let distinct: HashSet<&Vec<u8>> = seen.iter().collect();
    assert_eq!((seen.len(), distinct.len()), (TOTAL, TOTAL));
    assert_eq!(s.stats("t", "q", T0).unwrap(), QueueStats::default());
    assert_eq!(s.next_visible_at_ms("t", "q").unwrap(), None);
}
