//! Queues as a whole: stats, isolation between queues, persistence,
//! limits and names, text forms, corrupt files.

use std::path::Path;
use std::time::Duration;

use super::*;

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
fn delete_tenant_removes_all_its_queues_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queues.redb");
    let s = QueueStore::open(&path).unwrap();
    let config = QueueConfig {
        visibility_timeout: Duration::from_secs(10),
        max_receive_count: 2,
        ..QueueConfig::default()
    };
    // `ab` and `b` sit next to `a`'s key range; each gets a message in
    // every state, as in `stats_count_each_state`.
    let now = T0 + 2_000;
    let mut held = Vec::new();
    for tenant in ["a", "ab", "b"] {
        s.configure(tenant, "q", config.clone()).unwrap();
        send(&s, tenant, "q", "dead", T0);
        for at in [T0, T0 + 1_000] {
            let d = s.receive(tenant, "q", 1, at).unwrap().remove(0);
            s.nack(tenant, "q", &d.receipt, "e", at).unwrap();
        }
        for name in ["in-flight", "delayed", "visible"] {
            send(&s, tenant, "q", name, now);
        }
        held.push(s.receive(tenant, "q", 1, now).unwrap().remove(0).receipt);
        let d = s.receive(tenant, "q", 1, now).unwrap().remove(0);
        s.nack(tenant, "q", &d.receipt, "e", now).unwrap();
    }
    send(&s, "a", "r", "another queue", now);
    let stats = |s: &QueueStore, t| s.stats(t, "q", now).unwrap();
    let kept = [stats(&s, "ab"), stats(&s, "b")];
    assert_eq!((kept[0].visible, kept[0].in_flight), (1, 1));
    assert_eq!((kept[0].delayed, kept[0].dead), (1, 1));
    drop(s);
    let rows_before = ["ab", "b"].map(|t| rows_of(&path, t));
    assert_eq!(rows_of(&path, "a"), [2, 4, 5, 4, 1]);

    let s = QueueStore::open(&path).unwrap();
    let backend: &dyn QueueBackend = &s;
    assert_eq!(backend.delete_tenant("a").unwrap(), 5);
    let names = |s: &QueueStore| s.queues().unwrap();
    assert_eq!(
        names(&s),
        [("ab".into(), "q".into()), ("b".into(), "q".into())]
    );
    for queue in ["q", "r"] {
        let err = s.receive("a", queue, 10, now + 60_000).unwrap_err();
        assert!(matches!(err, QueueError::UnknownQueue { .. }), "{err}");
        assert!(s.dead_letters("a", queue, 10).is_err());
    }
    assert_eq!(s.config("a", "q").unwrap(), QueueConfig::default());
    assert_eq!([stats(&s, "ab"), stats(&s, "b")], kept);
    drop(s);
    assert_eq!(rows_of(&path, "a"), [0; 5], "no row of `a` survives");
    assert_eq!(["ab", "b"].map(|t| rows_of(&path, t)), rows_before);

    // Re-created, the queue starts empty: nothing comes back when the
    // backoff and the visibility timeout are over.
    let s = QueueStore::open(&path).unwrap();
    s.configure("a", "q", config).unwrap();
    assert!(s.receive("a", "q", 10, now + 60_000).unwrap().is_empty());
    assert_eq!(stats(&s, "a"), QueueStats::default());
    assert!(s.dead_letters("a", "q", 10).unwrap().is_empty());
    assert!(matches!(
        s.ack("a", "q", &held[0]),
        Err(QueueError::StaleReceipt(_))
    ));
    assert_eq!(s.delete_tenant("a").unwrap(), 0);
    assert!(s.delete_tenant("").is_err());
    // The other tenants' in-flight messages are still theirs to ack.
    s.ack("ab", "q", &held[1]).unwrap();
    s.ack("b", "q", &held[2]).unwrap();
}

/// Rows of `tenant` in each table (queues, messages, bodies, ready,
/// dead_letters), read behind the store's back.
fn rows_of(path: &Path, tenant: &str) -> [usize; 5] {
    use redb::{ReadableDatabase, ReadableTable};
    let mut prefix = (tenant.len() as u32).to_be_bytes().to_vec();
    prefix.extend_from_slice(tenant.as_bytes());
    let db = redb::Database::create(path).unwrap();
    let txn = db.begin_read().unwrap();
    ["queues", "messages", "bodies", "ready", "dead_letters"].map(|name| {
        let def: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new(name);
        let table = txn.open_table(def).unwrap();
        table
            .iter()
            .unwrap()
            .filter(|e| e.as_ref().unwrap().0.value().starts_with(&prefix))
            .count()
    })
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
