//! Event triggers driven in process: the seed's thumbnail pipeline on
//! object-created events (PNG and JPEG, dimensions checked), non-images
//! refused without output, the loop guard, queue triggers with retries,
//! dead letters and redrive, and cron schedules (skip-while-running and
//! the missed-tick catch-up). Usage records carry the trigger kind.

use std::time::Duration;

use image::ImageFormat;
use nimbus_core::nimbus_queue::{OutgoingMessage, QueueConfig, now_ms};
use nimbus_core::{FunctionConfig, FunctionLimits, JsonLinesLedger, Limits, Trigger};
use nimbus_triggers::{ObjectTrigger, QueueTrigger, ScheduleTrigger, TriggerOptions, Triggers};

use crate::support::{
    containers, deploy, deploy_with, event, eventually, metric, object_trigger, read_object,
    stores, test_host, test_image, upload,
};

fn fast() -> TriggerOptions {
    TriggerOptions {
        object_retry_base: Duration::from_millis(20),
        poll_interval: Duration::from_millis(10),
        ..TriggerOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_get_thumbnails_png_and_jpeg() {
    let th = test_host(|b| b);
    let host = &th.host;
    host.add_tenant("demo", Limits::default()).unwrap();
    let grant = containers(&["uploads", "thumbnails"]);
    deploy_with(host, "demo", "thumbnail", "thumbnail", grant).await;
    let triggers = Triggers::new(host.clone(), fast()).unwrap();
    triggers
        .add_object_trigger(object_trigger("demo", "thumbnail", "uploads"))
        .unwrap();
    triggers.start();

    for (key, data, content_type) in [
        (
            "photos/wide.png",
            test_image(640, 320, ImageFormat::Png),
            "image/png",
        ),
        (
            "tall.jpg",
            test_image(300, 900, ImageFormat::Jpeg),
            "image/jpeg",
        ),
        ("notes.txt", b"not an image".to_vec(), "text/plain"),
    ] {
        upload(host, "demo", "uploads", key, &data, content_type);
    }

    let blob = host.blob_store();
    let png = eventually("the PNG thumbnail", || {
        read_object(&*blob, "demo", "thumbnails", "photos/wide.png").ok()
    })
    .await;
    let jpg = eventually("the JPEG thumbnail", || {
        read_object(&*blob, "demo", "thumbnails", "tall.jpg").ok()
    })
    .await;
    let png = image::load_from_memory_with_format(&png, ImageFormat::Png).unwrap();
    assert_eq!((png.width(), png.height()), (128, 64));
    let jpg = image::load_from_memory_with_format(&jpg, ImageFormat::Jpeg).unwrap();
    assert_eq!((jpg.width(), jpg.height()), (43, 128));

    // The text file was refused: logged, no output, not retried.
    let logs = eventually("the refusal's logs", || {
        let logs = host.invocation_logs("demo", "thumbnail", None);
        logs.into_iter().find(|l| {
            l.logs
                .entries
                .iter()
                .any(|e| e.message.contains("not an image: uploads/notes.txt"))
        })
    })
    .await;
    assert_eq!(logs.function, "thumbnail");
    eventually("the outbox to empty", || {
        blob.pending_events(10).unwrap().is_empty().then_some(())
    })
    .await;
    triggers.shutdown().await;
    assert!(
        blob.head("demo", "thumbnails", "notes.txt")
            .unwrap()
            .is_none()
    );

    // Three invocations, each billed with its trigger; none retried.
    let records = th.records();
    assert_eq!(records.len(), 3, "{records:?}");
    assert!(records.iter().all(|r| r.trigger == Trigger::Object));
    assert_eq!(
        records
            .iter()
            .filter(|r| r.outcome == nimbus_core::Outcome::Success)
            .count(),
        2
    );
    let written: u64 = records.iter().map(|r| r.blob_bytes_written).sum();
    assert_eq!(
        written,
        blob.stored_bytes("demo").unwrap()
            - blob
                .list("demo", "uploads", "", None, 100)
                .unwrap()
                .iter()
                .map(|m| m.size)
                .sum::<u64>()
    );
    let series = |r: &str| {
        metric(
            host,
            &format!(
                "nimbus_object_events_total{{tenant=\"demo\",container=\"uploads\",result=\"{r}\"}}"
            ),
        )
    };
    assert_eq!(series("delivered"), Some(2.0));
    assert_eq!(series("failed"), Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_select_keys_and_the_loop_guard_bounds_chains() {
    let th = test_host(|b| b);
    let host = &th.host;
    host.add_tenant("t", Limits::default()).unwrap();
    deploy_with(host, "t", "chain", "chain", containers(&["loop"])).await;
    let triggers = Triggers::new(
        host.clone(),
        TriggerOptions {
            max_event_depth: 2,
            ..fast()
        },
    )
    .unwrap();
    triggers
        .add_object_trigger(ObjectTrigger {
            prefix: "in/".into(),
            ..object_trigger("t", "chain", "loop")
        })
        .unwrap();
    triggers.start();
    // Filtered out: no invocation at all.
    upload(host, "t", "loop", "other/x", b"1", "text/plain");
    // `chain` copies every object it is told about to `<key>+` in the same
    // container: without a guard this never ends.
    upload(host, "t", "loop", "in/a", b"1", "text/plain");
    let blob = host.blob_store();
    eventually("the guard to stop the chain", || {
        let dropped = metric(
            host,
            "nimbus_object_events_total{tenant=\"t\",container=\"loop\",result=\"loop_dropped\"}",
        )?;
        (dropped == 1.0 && blob.pending_events(10).ok()?.is_empty()).then_some(())
    })
    .await;
    triggers.shutdown().await;
    let names: Vec<String> = blob
        .list("t", "loop", "", None, 100)
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    // depth 0 (upload) → 1 → 2 run; the write at depth 3 is not delivered.
    assert_eq!(names, ["in/a", "in/a+", "in/a++", "in/a+++", "other/x"]);
    let records = th.records();
    assert_eq!(records.len(), 3);
}

fn queue_config(max_receive_count: u32) -> QueueConfig {
    QueueConfig {
        visibility_timeout: Duration::from_secs(20),
        max_receive_count,
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_millis(40),
        ..QueueConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_messages_run_until_success_or_dead_letter_then_redrive() {
    let th = test_host(|b| b);
    let host = &th.host;
    host.add_tenant("q", Limits::default()).unwrap();
    let spec = FunctionConfig {
        limits: FunctionLimits {
            timeout: Some(Duration::from_secs(5)),
            ..FunctionLimits::default()
        },
        ..stores(&["s"])
    };
    deploy_with(host, "q", "worker", "kv-counter", spec).await;
    let triggers = Triggers::new(host.clone(), fast()).unwrap();
    // A visibility timeout under the function's timeout is refused.
    let err = triggers
        .add_queue_trigger(QueueTrigger {
            tenant: "q".into(),
            function: "worker".into(),
            queue: "jobs".into(),
            batch_size: 5,
            config: QueueConfig {
                visibility_timeout: Duration::from_secs(1),
                ..queue_config(3)
            },
        })
        .unwrap_err()
        .to_string();
    assert!(err.contains("must exceed the function's timeout"), "{err}");
    triggers
        .add_queue_trigger(QueueTrigger {
            tenant: "q".into(),
            function: "worker".into(),
            queue: "jobs".into(),
            batch_size: 5,
            config: queue_config(3),
        })
        .unwrap();
    let queues = host.queue_store();
    for i in 0..20 {
        let body = if i % 10 == 3 {
            "bogus command".to_string()
        } else {
            "incr s done".to_string()
        };
        queues
            .send("q", "jobs", OutgoingMessage::new(body), now_ms())
            .unwrap();
    }
    triggers.start();
    eventually("18 successes and 2 dead letters", || {
        let st = queues.stats("q", "jobs", now_ms()).ok()?;
        (st.visible + st.in_flight + st.delayed == 0 && st.dead == 2).then_some(())
    })
    .await;
    let count = host
        .invoke("q", "worker", event(b"get s done"))
        .await
        .unwrap();
    assert_eq!(count.response.data, b"18");
    let dead = queues.dead_letters("q", "jobs", 10).unwrap();
    assert_eq!(dead.len(), 2);
    assert!(dead.iter().all(|d| d.receive_count == 3), "{dead:?}");
    assert!(dead[0].last_error.contains("usage") || !dead[0].last_error.is_empty());

    let m = |name: &str| {
        metric(host, &format!("{name}{{tenant=\"q\",queue=\"jobs\"}}")).unwrap_or(-1.0)
    };
    assert_eq!(m("nimbus_queue_deliveries_total"), 24.0);
    assert_eq!(m("nimbus_queue_retries_total"), 4.0);
    assert_eq!(m("nimbus_queue_dead_lettered_total"), 2.0);
    assert_eq!(m("nimbus_queue_dead_letters"), 2.0);
    assert_eq!(m("nimbus_queue_depth"), 0.0);

    // Redriven, with the bodies fixed by nothing: they fail again, and
    // come back to the dead-letter list after three more receives.
    assert_eq!(queues.redrive("q", "jobs", None, now_ms()).unwrap(), 2);
    eventually("the redriven messages to fail again", || {
        let st = queues.stats("q", "jobs", now_ms()).ok()?;
        (st.visible + st.in_flight + st.delayed == 0 && st.dead == 2).then_some(())
    })
    .await;
    triggers.shutdown().await;
    let records = th.records();
    let queued: Vec<_> = records
        .iter()
        .filter(|r| r.trigger == Trigger::Queue)
        .collect();
    assert_eq!(queued.len(), 30);
    assert_eq!(
        queued
            .iter()
            .filter(|r| r.outcome == nimbus_core::Outcome::Success)
            .count(),
        18
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_tick_skip_while_running_and_catch_up() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("triggers.redb");
    let th = test_host(|b| b);
    let host = &th.host;
    host.add_tenant("c", Limits::default()).unwrap();
    deploy(host, "c", "echo", "echo").await;
    let slow = FunctionLimits {
        timeout: Some(Duration::from_millis(2500)),
        ..FunctionLimits::default()
    };
    deploy_with(host, "c", "sleep", "sleep", slow).await;
    // A yearly schedule whose last tick was two years ago: missed while
    // "down", so it runs once at start, and not again.
    let yearly = ScheduleTrigger {
        tenant: "c".into(),
        function: "echo".into(),
        cron: "0 0 0 1 1 *".into(),
        timezone: Some("Europe/Paris".into()),
        catch_up: true,
    };
    {
        let db = redb::Database::create(&state).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let table: redb::TableDefinition<&str, i64> =
                redb::TableDefinition::new("schedule_last_tick");
            let mut t = tx.open_table(table).unwrap();
            let two_years = chrono::Utc::now() - chrono::Duration::days(730);
            t.insert("c\u{0}echo\u{0}0 0 0 1 1 *", two_years.timestamp_millis())
                .unwrap();
        }
        tx.commit().unwrap();
    }
    let triggers = Triggers::new(
        host.clone(),
        TriggerOptions {
            state_path: Some(state.clone()),
            ..fast()
        },
    )
    .unwrap();
    let err = triggers
        .add_schedule(ScheduleTrigger {
            tenant: "c".into(),
            function: "echo".into(),
            cron: "every minute".into(),
            timezone: None,
            catch_up: false,
        })
        .unwrap_err()
        .to_string();
    assert!(err.contains("cron \"every minute\""), "{err}");
    let err = triggers
        .add_schedule(ScheduleTrigger {
            tenant: "c".into(),
            function: "echo".into(),
            cron: "* * * * *".into(),
            timezone: Some("Mars/Olympus".into()),
            catch_up: false,
        })
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown time zone \"Mars/Olympus\""), "{err}");

    triggers.add_schedule(yearly).unwrap();
    // Every second, a run that takes 2.5 s: ticks in between are skipped.
    triggers
        .add_schedule(ScheduleTrigger {
            tenant: "c".into(),
            function: "sleep".into(),
            cron: "* * * * * *".into(),
            timezone: None,
            catch_up: false,
        })
        .unwrap();
    triggers.start();
    let skipped = "nimbus_schedule_skipped_total{tenant=\"c\",function=\"sleep\"}";
    eventually("a skipped tick and two sleep runs", || {
        let records = JsonLinesLedger::read(&th.ledger).ok()?;
        let sleeps = records.iter().filter(|r| r.function == "sleep").count();
        (sleeps >= 2 && metric(host, skipped)? >= 2.0).then_some(())
    })
    .await;
    triggers.shutdown().await;
    let records = th.records();
    assert!(records.iter().all(|r| r.trigger == Trigger::Schedule));
    let echoes = records.iter().filter(|r| r.function == "echo").count();
    assert_eq!(echoes, 1, "the missed yearly tick ran once");
    // Never two runs of `sleep` at once: each started after the previous
    // one ended.
    let mut spans: Vec<(String, u64)> = records
        .iter()
        .filter(|r| r.function == "sleep")
        .map(|r| (r.started_at.clone(), r.wall_duration_us))
        .collect();
    spans.sort();
    for pair in spans.windows(2) {
        let start = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .timestamp_micros()
        };
        let first_end = start(&pair[0].0) + pair[0].1 as i64;
        assert!(
            start(&pair[1].0) >= first_end,
            "overlapping scheduled runs: {pair:?}"
        );
    }
}

/// Without failures, every object event runs its function exactly once,
/// even with many events in flight at once (an event is never picked up
/// again between its ack and the next outbox read).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_object_event_is_delivered_once_under_load() {
    let th = test_host(|b| b);
    let host = &th.host;
    host.add_tenant("l", Limits::default()).unwrap();
    deploy(host, "l", "echo", "echo").await;
    let triggers = Triggers::new(
        host.clone(),
        TriggerOptions {
            poll_interval: Duration::from_millis(1),
            ..fast()
        },
    )
    .unwrap();
    triggers
        .add_object_trigger(object_trigger("l", "echo", "in"))
        .unwrap();
    triggers.start();
    const N: usize = 300;
    for i in 0..N {
        upload(host, "l", "in", &format!("k{i}"), b"x", "text/plain");
    }
    let blob = host.blob_store();
    eventually("every event delivered", || {
        blob.pending_events(1).ok()?.is_empty().then_some(())
    })
    .await;
    triggers.shutdown().await;
    let records = th.records();
    assert_eq!(records.len(), N, "duplicate or missing deliveries");
    assert_eq!(
        metric(
            host,
            "nimbus_object_events_total{tenant=\"l\",container=\"in\",result=\"delivered\"}"
        ),
        Some(N as f64)
    );
}
