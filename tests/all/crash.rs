//! Crashes of the real `nimbus serve` (SIGKILL) while triggers are busy:
//! no queued message is lost (each is delivered until it succeeds), every
//! invocation that answered before the crash has exactly one usage record,
//! and an object write acknowledged just before a crash still has its
//! object-created event delivered after the restart.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use nimbus_core::nimbus_blob::WriteOptions;
use nimbus_core::nimbus_queue::{QueueStore, now_ms};
use nimbus_core::{FunctionConfig, Host, JsonLinesLedger, Limits, Outcome, Trigger};
use nimbus_triggers::{ObjectTrigger, TriggerOptions, Triggers};

use crate::guests;
use crate::http::{Client, NimbusServe};

const KEY: &str = "acme-key";
const MESSAGES: usize = 60;

async fn call(server: &NimbusServe, function: &str, body: &str) -> String {
    Client::new(server.addr)
        .post(&format!("/acme/{function}"))
        .key(KEY)
        .body(body.to_string())
        .await
        .expect(200)
        .text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_messages_and_the_ledger_survive_kill_9_of_nimbus_serve() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("nimbus.toml");
    std::fs::write(
        &config,
        format!(
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
            publisher = guests().path("publisher").display().to_string(),
            worker = guests().path("kv-counter").display().to_string(),
        ),
    )
    .expect("write config");
    let cwd = tempfile::tempdir().expect("tempdir");
    let ledger = dir.path().join("usage.jsonl");

    // Publish through a guest over HTTP; the worker consumes meanwhile.
    let mut server = NimbusServe::start(&config, cwd.path());
    for _ in 0..MESSAGES {
        assert_eq!(
            call(&server, "publisher", "publish jobs incr s done").await,
            "ok"
        );
    }
    // SIGKILL while the consumer is mid-queue: no drain, nothing acked for
    // the batch in flight.
    server.child.kill().expect("kill -9 nimbus serve");
    let status = server.child.wait().expect("wait");
    assert_eq!(status.signal(), Some(9), "{status}:\n{}", server.log());
    let before = JsonLinesLedger::read(&ledger).expect("ledger after the crash");
    let worked_before = before.iter().filter(|r| r.function == "worker").count();
    assert!(
        worked_before < MESSAGES,
        "the crash came too late to test anything: {worked_before} already done"
    );
    drop(server);

    // Restart: the rest of the queue is consumed, the in-flight batch again
    // after its visibility timeout.
    let mut server = NimbusServe::start(&config, cwd.path());
    let mut done = 0;
    let mut finished = false;
    for _ in 0..300 {
        // Not a 200 until the first increment: "missing" counts as 0.
        done = Client::new(server.addr)
            .post("/acme/worker")
            .key(KEY)
            .body("get s done")
            .await
            .text()
            .parse::<usize>()
            .unwrap_or(0);
        let successes = JsonLinesLedger::read(&ledger)
            .expect("ledger")
            .iter()
            .filter(|r| r.trigger == Trigger::Queue && r.outcome == Outcome::Success)
            .count();
        // Drained: also the messages that ran before the crash but were
        // not acked, once their visibility timeout let them run again.
        let stats: serde_json::Value = serde_json::from_str(
            &Client::new(server.addr)
                .get("/queues/v1/acme/jobs")
                .key(KEY)
                .send()
                .await
                .text(),
        )
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
    server.terminate();
    assert!(server.wait_exit(Duration::from_secs(10)).success());
    drop(server);

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
    let records = JsonLinesLedger::read(&ledger).expect("ledger");
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
    let text = std::fs::read_to_string(&ledger).expect("ledger text");
    assert_eq!(text.lines().count(), records.len());
}

/// An object write is acknowledged and the process dies before any
/// delivery (here: the triggers never started): the next process on the
/// same data directory delivers the event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_upload_is_processed_after_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let build = || {
        Host::builder()
            .ledger_path(dir.path().join("usage.jsonl"))
            .data_dir(dir.path().join("data"))
            .build()
            .expect("host")
    };
    let png = {
        let img = image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(
            400,
            200,
            image::Rgb([200, 10, 10]),
        ));
        let mut buf = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut buf), image::ImageFormat::Png)
            .expect("png");
        buf
    };
    let setup = |host: Host| async move {
        host.add_tenant("demo", Limits::default()).unwrap();
        host.deploy_with(
            "demo",
            "thumbnail",
            &guests().bytes("thumbnail"),
            FunctionConfig {
                blob_containers: vec!["uploads".into(), "thumbnails".into()],
                ..FunctionConfig::default()
            },
        )
        .await
        .unwrap();
        let triggers = Triggers::new(host.clone(), TriggerOptions::default()).unwrap();
        triggers
            .add_object_trigger(ObjectTrigger {
                tenant: "demo".into(),
                function: "thumbnail".into(),
                container: "uploads".into(),
                prefix: String::new(),
                suffix: String::new(),
            })
            .unwrap();
        triggers
    };
    {
        let host = build();
        let _triggers = setup(host.clone()).await;
        let blob = host.blob_store();
        let mut spool = blob.spool("demo").unwrap();
        spool.write(&png).unwrap();
        blob.commit(
            spool,
            "uploads",
            "red.png",
            Some("image/png".into()),
            WriteOptions {
                quota: None,
                event_depth: host.is_watched("demo", "uploads").then_some(0),
            },
        )
        .unwrap();
        // "Crash": the host goes away without ever delivering.
    }
    let host = build();
    let triggers = setup(host.clone()).await;
    triggers.start();
    let blob = host.blob_store();
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
