use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;

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
fn nack_at_max_receive_count_dead_letters() {
    let (_dir, s) = store();
    configured(
        &s,
        QueueConfig {
            max_receive_count: 2,
            ..QueueConfig::default()
        },
    );
    let id = send(&s, "t", "q", "m", T0);
    let first = s.receive("t", "q", 1, T0).unwrap().remove(0);
    assert_eq!(
        s.nack("t", "q", &first.receipt, "first failure", T0)
            .unwrap(),
        Nack::Retry
    );
    let second = s.receive("t", "q", 1, T0 + 1_000).unwrap().remove(0);
    assert_eq!(
        s.nack("t", "q", &second.receipt, "second failure", T0 + 1_000)
            .unwrap(),
        Nack::DeadLetter
    );
    assert!(s.receive("t", "q", 10, T0 + 3_600_000).unwrap().is_empty());
    assert_eq!(s.next_visible_at_ms("t", "q").unwrap(), None);
    let dead = s.dead_letters("t", "q", 10).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].id, dead[0].receive_count), (id, 2));
    assert_eq!(dead[0].last_error, "second failure");
    assert_eq!((dead[0].sent_at_ms, dead[0].dead_at_ms), (T0, T0 + 1_000));
}

#[test]
fn an_expired_message_at_max_receive_count_is_dead_lettered_on_receive() {
    let (_dir, s) = store();
    configured(
        &s,
        QueueConfig {
            visibility_timeout: Duration::from_secs(1),
            max_receive_count: 2,
            ..QueueConfig::default()
        },
    );
    let id = send(&s, "t", "q", "crashes the consumer", T0);
    assert_eq!(s.receive("t", "q", 1, T0).unwrap().len(), 1);
    assert_eq!(s.receive("t", "q", 1, T0 + 1_000).unwrap().len(), 1);
    send(&s, "t", "q", "next", T0 + 2_000);
    // The poison message comes first, is dead-lettered, and does not use
    // up the batch.
    let batch = s.receive("t", "q", 1, T0 + 2_000).unwrap();
    assert_eq!(bodies(&batch), ["next"]);
    let dead = s.dead_letters("t", "q", 10).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].id, dead[0].receive_count), (id, 2));
    assert_eq!(
        dead[0].last_error,
        "visibility timeout expired after 2 receives"
    );
    assert_eq!(dead[0].dead_at_ms, T0 + 2_000);
}

/// Dead-letters `n` messages (max_receive_count 1), returning their ids.
fn dead_lettered(s: &QueueStore, n: usize) -> Vec<MessageId> {
    configured(
        s,
        QueueConfig {
            max_receive_count: 1,
            ..QueueConfig::default()
        },
    );
    let ids: Vec<MessageId> = (0..n)
        .map(|i| {
            let msg = OutgoingMessage {
                body: format!("m{i}").into_bytes(),
                content_type: Some("text/plain".into()),
                metadata: vec![("k".into(), format!("v{i}"))],
            };
            s.send("t", "q", msg, T0 + i as u64).unwrap()
        })
        .collect();
    for d in s.receive("t", "q", n, T0 + 100).unwrap() {
        let error = format!("failed {}", String::from_utf8_lossy(&d.body));
        let outcome = s.nack("t", "q", &d.receipt, &error, T0 + 100).unwrap();
        assert_eq!(outcome, Nack::DeadLetter);
    }
    ids
}

#[test]
fn dead_letters_are_listed_in_send_order_with_their_errors() {
    let (_dir, s) = store();
    let ids = dead_lettered(&s, 3);
    let dead = s.dead_letters("t", "q", 2).unwrap();
    assert_eq!(dead.len(), 2, "limit honoured");
    assert_eq!(
        dead.iter().map(|d| d.id).collect::<Vec<_>>(),
        ids[..2].to_vec()
    );
    let d = &dead[1];
    assert_eq!(d.body, b"m1");
    assert_eq!(d.content_type.as_deref(), Some("text/plain"));
    assert_eq!(d.metadata, [("k".to_string(), "v1".to_string())]);
    assert_eq!((d.receive_count, d.last_error.as_str()), (1, "failed m1"));
    assert_eq!((d.sent_at_ms, d.dead_at_ms), (T0 + 1, T0 + 100));
    assert_eq!(s.dead_letters("t", "q", 10).unwrap().len(), 3);
}

#[test]
fn redrive_puts_dead_letters_back_with_the_count_reset() {
    let (_dir, s) = store();
    let ids = dead_lettered(&s, 3);
    let now = T0 + 1_000;
    assert_eq!(
        s.redrive("t", "q", Some(&[ids[1], ids[1]]), now).unwrap(),
        1
    );
    let batch = s.receive("t", "q", 10, now).unwrap();
    assert_eq!(batch.len(), 1);
    let d = &batch[0];
    assert_eq!((d.id, d.receive_count, d.sent_at_ms), (ids[1], 1, T0 + 1));
    assert_eq!(d.metadata, [("k".to_string(), "v1".to_string())]);
    s.ack("t", "q", &d.receipt).unwrap();

    // Not dead (ids[1] was acked) or never existed: skipped.
    let unknown: MessageId = "01890a5d-ac96-774b-bcce-b302099a8057".parse().unwrap();
    assert_eq!(
        s.redrive("t", "q", Some(&[ids[1], unknown]), now).unwrap(),
        0
    );

    assert_eq!(s.redrive("t", "q", None, now).unwrap(), 2);
    assert_eq!(s.stats("t", "q", now).unwrap().dead, 0);
    let batch = s.receive("t", "q", 10, now).unwrap();
    assert_eq!(bodies(&batch), ["m0", "m2"], "send order kept");
    assert!(batch.iter().all(|d| d.receive_count == 1));
}

#[test]
fn stats_count_each_state() {
    let (_dir, s) = store();
    configured(
        &s,
        QueueConfig {
            visibility_timeout: Duration::from_secs(10),
            max_receive_count: 2,
            ..QueueConfig::default()
        },
    );
    assert_eq!(s.stats("t", "q", T0).unwrap(), QueueStats::default());
    // One dead letter, from two failures.
    send(&s, "t", "q", "dead", T0);
    let d = s.receive("t", "q", 1, T0).unwrap().remove(0);
    s.nack("t", "q", &d.receipt, "e", T0).unwrap();
    let d = s.receive("t", "q", 1, T0 + 1_000).unwrap().remove(0);
    s.nack("t", "q", &d.receipt, "e", T0 + 1_000).unwrap();

    let now = T0 + 2_000;
    for name in ["in-flight", "delayed", "visible"] {
        send(&s, "t", "q", name, now);
    }
    assert_eq!(s.receive("t", "q", 1, now).unwrap().len(), 1);
    let d = s.receive("t", "q", 1, now).unwrap().remove(0);
    s.nack("t", "q", &d.receipt, "e", now).unwrap();

    let stats = |at| s.stats("t", "q", at).unwrap();
    let expected = QueueStats {
        visible: 1,
        in_flight: 1,
        delayed: 1,
        dead: 1,
        // Dead letters are not what consumers are behind on.
        oldest_sent_at_ms: Some(now),
    };
    assert_eq!(stats(now), expected);
    // The backoff is over; then the visibility timeout too.
    assert_eq!(
        stats(now + 1_000),
        QueueStats {
            visible: 2,
            delayed: 0,
            ..expected
        }
    );
    assert_eq!(
        stats(now + 10_000),
        QueueStats {
            visible: 3,
            in_flight: 0,
            delayed: 0,
            ..expected
        }
    );
}

#[test]
fn tenants_and_queues_are_isolated() {
    let (_dir, s) = store();
    // ("a", "bc") and ("ab", "c") would collide under a naive "a" + "bc".
    let names = [("a", "bc"), ("ab", "c"), ("a", "b"), ("a", "bcd")];
    for (tenant, queue) in names {
        send(&s, tenant, queue, &format!("{tenant}/{queue}"), T0);
    }
    for (tenant, queue) in names {
        let batch = s.receive(tenant, queue, 10, T0).unwrap();
        assert_eq!(bodies(&batch), [format!("{tenant}/{queue}")]);
        let stats = s.stats(tenant, queue, T0).unwrap();
        assert_eq!((stats.visible, stats.in_flight), (0, 1));
        assert_eq!(
            s.next_visible_at_ms(tenant, queue).unwrap(),
            Some(T0 + 30_000)
        );
        // A receipt from one queue acks nothing in another.
        let err = s.ack("ab", "c", &batch[0].receipt);
        if (tenant, queue) != ("ab", "c") {
            assert!(matches!(err, Err(QueueError::StaleReceipt(_))), "{err:?}");
        }
    }
    s.configure(
        "a",
        "bc",
        QueueConfig {
            max_receive_count: 1,
            ..QueueConfig::default()
        },
    )
    .unwrap();
    assert_eq!(s.config("ab", "c").unwrap(), QueueConfig::default());
    assert_eq!(s.config("a", "bc").unwrap().max_receive_count, 1);
    let mut expected: Vec<(String, String)> = names
        .iter()
        .map(|(t, q)| (t.to_string(), q.to_string()))
        .collect();
    expected.sort();
    assert_eq!(s.queues().unwrap(), expected);
}

#[test]
fn messages_and_config_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/queues.redb");
    let (in_flight, waiting) = {
        let s = QueueStore::open(&path).unwrap();
        configured(
            &s,
            QueueConfig {
                visibility_timeout: Duration::from_secs(5),
                max_receive_count: 3,
                ..QueueConfig::default()
            },
        );
        let in_flight = send(&s, "t", "q", "in flight", T0);
        let waiting = send(&s, "t", "q", "waiting", T0);
        assert_eq!(s.receive("t", "q", 1, T0).unwrap()[0].id, in_flight);
        (in_flight, waiting)
        // Dropped without any shutdown step, like a crash after the call.
    };
    let s = QueueStore::open(&path).unwrap();
    assert_eq!(s.config("t", "q").unwrap().max_receive_count, 3);
    assert_eq!(s.queues().unwrap(), [("t".to_string(), "q".to_string())]);
    let batch = s.receive("t", "q", 10, T0 + 1_000).unwrap();
    assert_eq!(batch.iter().map(|d| d.id).collect::<Vec<_>>(), [waiting]);
    // The consumer died with the process: its message comes back.
    let batch = s.receive("t", "q", 10, T0 + 5_000).unwrap();
    assert_eq!(batch.len(), 1);
    assert_eq!((batch[0].id, batch[0].receive_count), (in_flight, 2));
    assert_eq!(batch[0].body, b"in flight");
}

#[test]
fn oversized_messages_bad_names_and_bad_configs_are_refused() {
    let (_dir, s) = store();
    // The default limit applies to a queue created by its first send.
    let err = s
        .send(
            "t",
            "new",
            OutgoingMessage::new(vec![0; 256 * 1024 + 1]),
            T0,
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            QueueError::TooLarge {
                size: 262_145,
                limit: 262_144,
                ..
            }
        ),
        "{err}"
    );
    configured(
        &s,
        QueueConfig {
            max_message_bytes: 10,
            ..QueueConfig::default()
        },
    );
    send(&s, "t", "q", "0123456789", T0);
    let err = s
        .send("t", "q", OutgoingMessage::new("01234567890"), T0)
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("11 bytes") && text.contains("limit of 10 bytes"),
        "{text}"
    );
    assert!(text.contains("`q`"), "{text}");
    // Metadata counts.
    let msg = OutgoingMessage {
        metadata: vec![("k".into(), "0123456789".into())],
        ..OutgoingMessage::new("x")
    };
    assert!(matches!(
        s.send("t", "q", msg, T0),
        Err(QueueError::TooLarge { size: 12, .. })
    ));
    assert_eq!(
        s.stats("t", "q", T0).unwrap().visible,
        1,
        "nothing else sent"
    );

    let long = "x".repeat(81);
    for bad in ["", "has space", "dot.ted", "ünï", long.as_str()] {
        let err = s.send("t", bad, OutgoingMessage::new("m"), T0).unwrap_err();
        assert!(
            matches!(err, QueueError::InvalidName { kind: "queue", .. }),
            "{err}"
        );
        let text = err.to_string();
        assert!(text.contains(&format!("{bad:?}")), "{text}");
        assert!(text.contains("1 to 80 characters"), "{text}");
        assert!(s.receive("t", bad, 1, T0).is_err());
    }
    send(&s, "t", &"x".repeat(80), "m", T0);
    send(&s, "t", "Ok_name-9", "m", T0);
    let err = s.send("", "q", OutgoingMessage::new("m"), T0).unwrap_err();
    assert!(
        matches!(err, QueueError::InvalidName { kind: "tenant", .. }),
        "{err}"
    );

    let err = s
        .configure(
            "t",
            "q",
            QueueConfig {
                max_receive_count: 0,
                ..QueueConfig::default()
            },
        )
        .unwrap_err();
    assert!(err.to_string().contains("max_receive_count"), "{err}");
}

#[test]
fn unknown_queues_are_errors_except_for_send_and_config() {
    let (_dir, s) = store();
    let err = s.receive("t", "nope", 10, T0).unwrap_err();
    assert!(matches!(err, QueueError::UnknownQueue { .. }), "{err}");
    assert_eq!(err.to_string(), "tenant `t` has no queue `nope`");
    assert!(s.receive("t", "nope", 0, T0).is_err());
    assert!(s.stats("t", "nope", T0).is_err());
    assert!(s.next_visible_at_ms("t", "nope").is_err());
    assert!(s.dead_letters("t", "nope", 1).is_err());
    assert!(s.redrive("t", "nope", None, T0).is_err());
    assert_eq!(s.config("t", "nope").unwrap(), QueueConfig::default());
    assert!(s.queues().unwrap().is_empty(), "config() creates nothing");
    send(&s, "t", "nope", "m", T0);
    assert_eq!(s.receive("t", "nope", 10, T0).unwrap().len(), 1);
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
fn receipts_and_ids_travel_as_text() {
    let (_dir, s) = store();
    let id = send(&s, "t", "q", "m", T0);
    assert_eq!(id.to_string().parse::<MessageId>().unwrap(), id);
    assert_eq!(
        serde_json::from_str::<MessageId>(&serde_json::to_string(&id).unwrap()).unwrap(),
        id
    );
    let receipt = s.receive("t", "q", 1, T0).unwrap().remove(0).receipt;
    let parsed: Receipt = receipt.to_string().parse().unwrap();
    assert_eq!((parsed, parsed.message_id()), (receipt, id));
    s.ack("t", "q", &parsed).unwrap();
    for bad in [
        "",
        "x",
        "not-a-uuid.1",
        &format!("{id}"),
        &format!("{id}.0"),
        &format!("{id}.-1"),
    ] {
        assert!(
            matches!(bad.parse::<Receipt>(), Err(QueueError::InvalidReceipt(_))),
            "{bad}"
        );
    }
    assert!(matches!(
        "nope".parse::<MessageId>(),
        Err(QueueError::InvalidMessageId(_))
    ));
}

#[test]
fn corrupt_records_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queues.redb");
    {
        let s = QueueStore::open(&path).unwrap();
        send(&s, "t", "q", "m", T0);
    }
    overwrite_all(&path, "messages", b"{not json");
    overwrite_all(&path, "ready", b"short");
    let s = QueueStore::open(&path).unwrap();
    let err = s.receive("t", "q", 10, T0).unwrap_err();
    assert!(matches!(err, QueueError::Corrupt(_)), "{err}");
    assert!(matches!(s.stats("t", "q", T0), Err(QueueError::Corrupt(_))));
    drop(s);
    overwrite_all(&path, "queues", b"[]");
    let s = QueueStore::open(&path).unwrap();
    assert!(matches!(s.config("t", "q"), Err(QueueError::Corrupt(_))));
    assert!(matches!(s.queues(), Err(QueueError::Corrupt(_))));
}

/// Replaces every value of a table, behind the store's back.
fn overwrite_all(path: &Path, table: &str, value: &[u8]) {
    let db = redb::Database::create(path).unwrap();
    let def: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new(table);
    let txn = db.begin_write().unwrap();
    {
        let mut t = txn.open_table(def).unwrap();
        let keys: Vec<Vec<u8>> = redb::ReadableTable::iter(&t)
            .unwrap()
            .map(|e| e.unwrap().0.value().to_vec())
            .collect();
        for k in keys {
            t.insert(k.as_slice(), value).unwrap();
        }
    }
    txn.commit().unwrap();
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
