use super::*;
use crate::logs::*;
use crate::usage::Outcome;

fn record(id: Uuid, tenant: &str, function: &str) -> UsageRecord {
    UsageRecord {
        wall_duration_us: 1234,
        billed_duration_ms: 2,
        fuel_consumed: 12345,
        peak_memory_bytes: (1 << 20) + 1,
        started_at: "2026-01-01T00:00:00.000000Z".into(),
        function_version: 3,
        ..UsageRecord::new(id, tenant, function, Outcome::Success)
    }
}

fn printed(text: &str) -> Logs {
    Logs {
        stdout: text.as_bytes().to_vec(),
        ..Logs::default()
    }
}

fn memory_store() -> LogStore {
    LogStore::open(None, &prometheus::Registry::new())
}

fn ids(kept: &[InvocationLogs]) -> Vec<Uuid> {
    kept.iter().map(|l| l.invocation_id).collect()
}

#[test]
fn the_report_line_is_lambdas() {
    let id = Uuid::now_v7();
    let l = InvocationLogs::new(&record(id, "t", "f"), &printed("hi"));
    assert_eq!(
        l.report,
        format!(
            "REPORT RequestId: {id} Version: 3 Duration: 1.23 ms Billed Duration: 2 ms \
             Fuel: 12345 Max Memory Used: 2 MB Outcome: success"
        )
    );
    assert_eq!(l.version, 3);
    // And the entry reads back as it was written.
    let json = serde_json::to_vec(&l).unwrap();
    assert_eq!(serde_json::from_slice::<InvocationLogs>(&json).unwrap(), l);
}

#[test]
fn log_retention_keeps_the_last_invocations_their_bytes_and_a_week() {
    let store = memory_store();
    let mut kept = Vec::new();
    for _ in 0..(KEPT_INVOCATIONS + 10) {
        let id = Uuid::now_v7();
        kept.push(id);
        store.keep(&record(id, "t", "f"), &printed("x"));
    }
    let all = store.list("t", "f", None, usize::MAX);
    assert_eq!(ids(&all), kept[10..], "the last 1000, oldest first");
    let tail = store.list("t", "f", None, 3);
    assert_eq!(ids(&tail), kept[kept.len() - 3..]);
    let one = store.list("t", "f", Some(kept[500]), 100);
    assert_eq!(ids(&one), [kept[500]]);
    assert!(store.list("t", "f", Some(kept[0]), 100).is_empty());

    // 4 MiB of output per function: the newest that fit.
    let big = Logs {
        stdout: vec![b'x'; 1 << 20],
        ..Logs::default()
    };
    let mut kept = Vec::new();
    for _ in 0..6 {
        let id = Uuid::now_v7();
        kept.push(id);
        store.keep(&record(id, "t", "big"), &big);
    }
    assert_eq!(ids(&store.list("t", "big", None, 100)), kept[2..]);
    // The newest is kept whatever its size.
    let huge = Logs {
        stdout: vec![b'y'; 5 << 20],
        ..Logs::default()
    };
    let id = Uuid::now_v7();
    store.keep(&record(id, "t", "big"), &huge);
    assert_eq!(ids(&store.list("t", "big", None, 100)), [id]);

    // Older than a week: never shown, removed at the next write.
    let old = |days: u64| {
        let at = SystemTime::now() - Duration::from_secs(days * 24 * 3600);
        let d = at.duration_since(SystemTime::UNIX_EPOCH).unwrap();
        Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            d.as_secs(),
            d.subsec_nanos(),
        ))
    };
    let (week_old, day_old) = (old(8), old(1));
    store.keep(&record(week_old, "t", "aging"), &printed("old"));
    store.keep(&record(day_old, "t", "aging"), &printed("recent"));
    assert_eq!(ids(&store.list("t", "aging", None, 100)), [day_old]);
    assert!(store.list("t", "aging", Some(week_old), 100).is_empty());
    let txn = store.shared.db.begin_read().unwrap();
    let sizes = txn.open_table(SIZES).unwrap();
    let p = prefix("t", Some("aging"));
    assert!(sizes.get(key(&p, week_old).as_slice()).unwrap().is_none());
    let stats = txn.open_table(STATS).unwrap();
    assert_eq!(stats.get(p.as_slice()).unwrap().unwrap().value(), (1, 6));
}

#[test]
fn kept_logs_survive_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let registry = prometheus::Registry::new();
    let store = LogStore::open(Some(dir.path()), &registry);
    let id = Uuid::now_v7();
    store.keep(&record(id, "t", "f"), &printed("before the restart\n"));
    let before = store.list("t", "f", None, 100);
    assert_eq!(ids(&before), [id]);
    drop(store);
    assert!(dir.path().join("logs.redb").is_file());

    let store = LogStore::open(Some(dir.path()), &prometheus::Registry::new());
    let after = store.list("t", "f", None, 100);
    assert_eq!(after, before);
    assert_eq!(after[0].logs.stdout, b"before the restart\n");
    assert!(
        after[0]
            .report
            .starts_with(&format!("REPORT RequestId: {id} "))
    );
    // The stats came back too: retention goes on counting.
    for _ in 0..KEPT_INVOCATIONS {
        store.keep(&record(Uuid::now_v7(), "t", "f"), &printed("x"));
    }
    let all = store.list("t", "f", None, usize::MAX);
    assert_eq!(all.len() as u64, KEPT_INVOCATIONS);
    assert!(all.iter().all(|l| l.invocation_id != id));
}

#[test]
fn an_unreadable_file_falls_back_to_memory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs.redb");
    std::fs::write(&path, vec![0x5a; 64 << 10]).unwrap();
    let store = LogStore::open(Some(dir.path()), &prometheus::Registry::new());
    let id = Uuid::now_v7();
    store.keep(&record(id, "t", "f"), &printed("kept in memory"));
    assert_eq!(ids(&store.list("t", "f", None, 100)), [id]);
    drop(store);
    assert_eq!(std::fs::read(&path).unwrap(), vec![0x5a; 64 << 10]);
}

#[test]
fn deleting_a_tenant_or_a_function_removes_only_theirs() {
    let store = memory_store();
    for (t, f) in [("t", "f"), ("t", "g"), ("tt", "f"), ("u", "f")] {
        for _ in 0..3 {
            store.keep(&record(Uuid::now_v7(), t, f), &printed(t));
        }
    }
    store.delete_tenant("t");
    assert!(store.list("t", "f", None, 100).is_empty());
    assert!(store.list("t", "g", None, 100).is_empty());
    assert_eq!(store.list("tt", "f", None, 100).len(), 3);
    assert_eq!(store.list("u", "f", None, 100).len(), 3);
    store.delete_function("u", "f");
    assert!(store.list("u", "f", None, 100).is_empty());
    assert_eq!(store.list("tt", "f", None, 100).len(), 3);
    let txn = store.shared.db.begin_read().unwrap();
    let stats = txn.open_table(STATS).unwrap();
    let left: Vec<Vec<u8>> = stats
        .iter()
        .unwrap()
        .map(|e| e.unwrap().0.value().to_vec())
        .collect();
    assert_eq!(left, [prefix("tt", Some("f"))]);
    let sizes = txn.open_table(SIZES).unwrap();
    assert_eq!(redb::ReadableTableMetadata::len(&sizes).unwrap(), 3);
}

#[tokio::test]
async fn followers_get_each_entry_once_it_is_committed() {
    let store = memory_store();
    let mut rx = store.subscribe("t", "f");
    let mut other = store.subscribe("t", "g");
    let id = Uuid::now_v7();
    store.keep(&record(id, "t", "f"), &printed("followed"));
    let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("an entry in time")
        .unwrap();
    assert_eq!(got.invocation_id, id);
    assert_eq!(got.logs.stdout, b"followed");
    // Committed before it was sent: a read that does not wait for the
    // writer finds it.
    assert_eq!(ids(&store.read("t", "f", None, 100).unwrap()), [id]);
    assert!(other.try_recv().is_err(), "another function's follower");
    drop(rx);
    store.keep(&record(Uuid::now_v7(), "t", "f"), &printed("nobody"));
    store.list("t", "f", None, 1);
    assert!(!store.shared.followers.contains_key(&prefix("t", Some("f"))));
}

#[test]
fn keep_never_waits_for_a_stuck_writer_and_counts_what_it_drops() {
    let registry = prometheus::Registry::new();
    let store = LogStore::open(None, &registry);
    // A write transaction held here stalls the writer at its next one.
    store.keep(&record(Uuid::now_v7(), "t", "f"), &printed("first"));
    store.list("t", "f", None, 1);
    let held = store.shared.db.begin_write().unwrap();
    let n = 3 * QUEUE_ENTRIES;
    let start = Instant::now();
    for _ in 0..n {
        store.keep(&record(Uuid::now_v7(), "t", "f"), &printed("x"));
    }
    let took = start.elapsed();
    assert!(took < Duration::from_secs(1), "{took:?}");
    let dropped = store.shared.dropped.get();
    assert!(
        dropped >= (n - QUEUE_ENTRIES - MAX_BATCH) as u64,
        "{dropped} dropped"
    );
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    assert!(
        text.contains(&format!("nimbus_logs_dropped_total {dropped}")),
        "{text}"
    );
    held.abort().unwrap();
    let kept = store.list("t", "f", None, usize::MAX);
    let written = 1 + n as u64 - dropped;
    assert_eq!(kept.len() as u64, written.min(KEPT_INVOCATIONS));
}
