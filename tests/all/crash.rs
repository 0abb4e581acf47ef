//! Crashes of the real `nimbus serve` (SIGKILL) while triggers are busy:
//! no queued message is lost (each is delivered until it succeeds), every
//! invocation that answered before the crash has exactly one usage record,
//! and an object write acknowledged just before a crash still has its
//! object-created event delivered after the restart.

use std::time::Duration;

use image::ImageFormat;
use nimbus_core::nimbus_queue::{QueueStore, now_ms};
use nimbus_core::{Host, Limits, Outcome, Trigger};
use nimbus_triggers::{TriggerOptions, Triggers};

use crate::support::{
    ServeDir, containers, data_host, deploy_with, guest_path, ledger, object_trigger, test_image,
    upload,
};

const KEY: &str = "acme-key";
const MESSAGES: usize = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_messages_and_the_ledger_survive_kill_9_of_nimbus_serve() {
    let dir = ServeDir::new(&format!(
        r#"
ledger = "usage.jsonl"
data_dir = "data"
drain_timeout_ms = 5000

[tenants.acme]
api_keys = ["{KEY}"]

[[functions]]
tenant = "acme"
name = "publisher"
component = {publisher:?}
topics = ["jobs"]

[[functions]]
tenant = "acme"
name = "worker"
component = {worker:?}
kv_stores = ["s"]
timeout_ms = 2000

[[queue_triggers]]
tenant = "acme"
function = "worker"
queue = "jobs"
batch_size = 4
visibility_timeout_ms = 3000
max_receive_count = 10
backoff_base_ms = 50
backoff_max_ms = 200
"#,
        publisher = guest_path("publisher"),
        worker = guest_path("kv-counter"),
    ));
    let ledger_path = dir.ledger_path();

    // Publish through a guest over HTTP; the worker consumes meanwhile.
    let server = dir.start();
    let acme = server.client().with_key(KEY);
    for _ in 0..MESSAGES {
        let answer = acme
            .run("/acme/publisher", "publish jobs incr s done")
            .await;
        assert_eq!(answer, "ok");
    }
    // SIGKILL while the consumer is mid-queue: nothing acked for the batch
    // in flight.
    server.kill_9();
    let worked_before = dir
        .records()
        .iter()
        .filter(|r| r.function == "worker")
        .count();
    assert!(
        worked_before < MESSAGES,
        "the crash came too late to test anything: {worked_before} already done"
    );

    // Restart: the rest of the queue is consumed, the in-flight batch again
    // after its visibility timeout.
    let server = dir.start();
    let acme = server.client().with_key(KEY);
    let mut done = 0;
    let mut finished = false;
    for _ in 0..300 {
        // Not a 200 until the first increment: "missing" counts as 0.
        done = acme
            .post("/acme/worker")
            .body("get s done")
            .await
            .text()
            .parse::<usize>()
            .unwrap_or(0);
        let successes = ledger(&ledger_path)
            .iter()
            .filter(|r| r.trigger == Trigger::Queue && r.outcome == Outcome::Success)
            .count();
        // Drained: also the messages that ran before the crash but were
        // not acked, once their visibility timeout let them run again.
        let stats: serde_json::Value =
            serde_json::from_str(&acme.get("/queues/v1/acme/jobs").await.text())
                .unwrap_or_default();
        let drained = ["visible", "in_flight", "delayed"]
            .iter()
            .all(|k| stats[k].as_u64() == Some(0));
        // A run killed after its increment but before its usage record
        // counts in `done` and not in `successes`: at least once.
        if drained && done >= MESSAGES && successes >= MESSAGES {
            finished = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        finished,
        "the queue was not drained after the restart:\n{}",
        server.log()
    );
    // At least once: every message ran; a message whose success was not
    // acked before the crash may have run twice (at most one batch).
    assert!(
        (MESSAGES..=MESSAGES + 4).contains(&done),
        "counter {done} after {MESSAGES} messages"
    );
    server.stop();

    // Nothing left, nothing dead-lettered.
    let queues = QueueStore::open(&dir.path().join("data/queues.redb")).expect("queues");
    let st = queues.stats("acme", "jobs", now_ms()).expect("stats");
    assert_eq!(
        (st.visible, st.in_flight, st.delayed, st.dead),
        (0, 0, 0, 0),
        "{st:?}"
    );

    // The ledger: every publish that answered 200 has exactly one record,
    // no record is duplicated, queue work is billed as such.
    let records = ledger(&ledger_path);
    let published = records
        .iter()
        .filter(|r| r.function == "publisher" && r.outcome == Outcome::Success)
        .count();
    assert_eq!(published, MESSAGES);
    assert_eq!(
        records
            .iter()
            .filter(|r| r.function == "publisher")
            .map(|r| r.messages_published)
            .sum::<u64>(),
        MESSAGES as u64
    );
    let mut ids: Vec<_> = records.iter().map(|r| r.invocation_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), records.len(), "duplicated usage records");
    assert!(
        records
            .iter()
            .filter(|r| r.function == "worker")
            .all(|r| r.trigger == Trigger::Queue || r.trigger == Trigger::Http)
    );
    // Every line of the file is a whole record: no torn writes.
    let text = std::fs::read_to_string(&ledger_path).expect("ledger text");
    assert_eq!(text.lines().count(), records.len());
}

/// An object write is acknowledged and the process dies before any
/// delivery (here: the triggers never started): the next process on the
/// same data directory delivers the event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_upload_is_processed_after_a_crash() {
    let png = test_image(400, 200, ImageFormat::Png);
    let setup = |host: Host| async move {
        host.add_tenant("demo", Limits::default()).unwrap();
        let grant = containers(&["uploads", "thumbnails"]);
        deploy_with(&host, "demo", "thumbnail", "thumbnail", grant).await;
        let triggers = Triggers::new(host.clone(), TriggerOptions::default()).unwrap();
        triggers
            .add_object_trigger(object_trigger("demo", "thumbnail", "uploads"))
            .unwrap();
        triggers
    };
    let t = data_host(|b| b);
    {
        let _triggers = setup(t.host.clone()).await;
        upload(&t.host, "demo", "uploads", "red.png", &png, "image/png");
        // "Crash": the host goes away without ever delivering.
    }
    let t = t.restart(|b| b);
    let triggers = setup(t.host.clone()).await;
    triggers.start();
    let blob = t.host.blob_store();
    let mut thumb = None;
    for _ in 0..200 {
        if let Some(m) = blob.head("demo", "thumbnails", "red.png").unwrap() {
            thumb = Some(m);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    triggers.shutdown().await;
    let thumb = thumb.expect("thumbnail made after the restart");
    let mut r = blob
        .open("demo", "thumbnails", "red.png", 0, u64::MAX)
        .unwrap();
    let bytes = r.read(thumb.size as usize).unwrap();
    let img = image::load_from_memory(&bytes).unwrap();
    assert_eq!((img.width(), img.height()), (128, 64));
    assert!(blob.pending_events(10).unwrap().is_empty());
}
