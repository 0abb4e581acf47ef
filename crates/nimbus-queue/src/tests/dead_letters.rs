//! Dead-lettering (by nack and by expiry), listing and redrive.

use std::time::Duration;

use super::*;

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
