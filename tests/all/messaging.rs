//! `wasmcloud:messaging/producer` for guests, driven through the `publisher`
//! guest: a message published to a granted topic is in the tenant's durable
//! queue with its body, content type and metadata, counted alike in the
//! usage record and the metrics; ungranted topics are denied and counted,
//! and enqueue nothing; queues are per tenant; published messages survive a
//! restart of the host and a `kill -9` of `nimbus serve`.

use std::collections::BTreeMap;
use std::path::Path;

use nimbus_core::nimbus_queue::{Delivery, QueueBackend, QueueStore, now_ms};
use nimbus_core::{FunctionConfig, Host, Invocation, Limits};

use crate::support::{
    ServeDir, add_tenants, data_host, denied_calls, deploy_ungranted, deploy_with, done, failed,
    guest_path, guests, series, shorten, sums, topics,
};

/// Deploys `publisher` as `tenant/function`, granted `granted` topics.
async fn deploy_publisher(host: &Host, tenant: &str, function: &str, granted: &[&str]) {
    deploy_with(host, tenant, function, "publisher", topics(granted)).await;
}

/// A command that must succeed (answering `ok`).
async fn publish(host: &Host, tenant: &str, function: &str, command: &str) -> Invocation {
    let done = done(host, tenant, function, command).await;
    assert_eq!(done.response.data, b"ok");
    done
}

/// Everything receivable now in `tenant`'s queue `topic` (received, so
/// hidden for the visibility timeout afterwards).
fn receive_all(queues: &dyn QueueBackend, tenant: &str, topic: &str) -> Vec<Delivery> {
    let mut all = Vec::new();
    loop {
        let batch = queues
            .receive(tenant, topic, 10, now_ms())
            .unwrap_or_else(|e| panic!("receive {tenant}/{topic}: {e}"));
        if batch.is_empty() {
            return all;
        }
        all.extend(batch);
    }
}

fn bodies(deliveries: &[Delivery]) -> Vec<String> {
    deliveries
        .iter()
        .map(|d| String::from_utf8(d.body.clone()).expect("UTF-8 body"))
        .collect()
}

fn published_metric(host: &Host, tenant: &str, function: &str) -> f64 {
    series(
        host,
        "nimbus_messages_published_total",
        &[("tenant", tenant), ("function", function)],
    )
}

/// Per (tenant, function): messages_published and denied_calls over the
/// ledger.
fn ledger_sums(ledger: &Path) -> BTreeMap<(String, String), [u64; 2]> {
    sums(ledger, |r| [r.messages_published, r.denied_calls])
}

// ---------------------------------------------------------------------------
// 8. Publishing

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_messages_are_in_the_tenants_queue_and_counted() {
    let t = data_host(|b| b);
    let host = &t.host;
    host.add_tenant("t", Limits::default()).expect("tenant");
    deploy_publisher(host, "t", "pub", &["orders", "audit"]).await;
    let queues = host.queue_store();

    let done = publish(host, "t", "pub", "publish orders order 1:  two spaces kept").await;
    assert_eq!(done.usage.messages_published, 1, "{:?}", done.usage);
    assert_eq!(done.usage.denied_calls, 0);
    let got = receive_all(&*queues, "t", "orders");
    assert_eq!(got.len(), 1, "{got:?}");
    let m = &got[0];
    assert_eq!(m.body, b"order 1:  two spaces kept");
    assert_eq!(m.content_type.as_deref(), Some("text/plain"));
    assert_eq!(
        m.metadata,
        [("source".to_string(), "publisher".to_string())]
    );
    assert_eq!(m.receive_count, 1);
    let sent = m.sent_at_ms;
    assert!(
        sent <= now_ms() && sent + 60_000 > now_ms(),
        "sent at {sent}"
    );
    queues.ack("t", "orders", &m.receipt).expect("ack");

    // Many from one invocation, in order; one topic does not see another's.
    let done = publish(host, "t", "pub", "publish-many audit 25").await;
    assert_eq!(done.usage.messages_published, 25);
    let got = receive_all(&*queues, "t", "audit");
    let expected: Vec<String> = (0..25).map(|i| format!("msg-{i}")).collect();
    assert_eq!(bodies(&got), expected);
    assert!(receive_all(&*queues, "t", "orders").is_empty());
    let done = publish(host, "t", "pub", "publish-many orders 0").await;
    assert_eq!(done.usage.messages_published, 0);

    // Concurrent publishers: every message is there exactly once.
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let host = host.clone();
            tokio::spawn(async move {
                publish(&host, "t", "pub", &format!("publish orders c{i}")).await;
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("invocation task");
    }
    let mut got = bodies(&receive_all(&*queues, "t", "orders"));
    got.sort();
    let mut expected: Vec<String> = (0..20).map(|i| format!("c{i}")).collect();
    expected.sort();
    assert_eq!(got, expected);

    // The usage records and the metric agree.
    let sums = ledger_sums(&t.ledger);
    assert_eq!(sums[&("t".into(), "pub".into())], [46, 0]);
    assert_eq!(published_metric(host, "t", "pub"), 46.0);
    assert!(
        host.metrics_text()
            .contains("nimbus_messages_published_total{tenant=\"t\",function=\"pub\"} 46"),
        "{}",
        host.metrics_text()
    );
}

// ---------------------------------------------------------------------------
// 9. Denial and isolation

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ungranted_topics_are_denied_and_queues_are_per_tenant() {
    let t = data_host(|b| b);
    let host = &t.host;
    add_tenants(host, &["t", "tb", "b"]);
    // "t" + "borders" and "tb" + "orders" concatenate alike.
    deploy_publisher(host, "t", "pub", &["orders", "borders"]).await;
    deploy_publisher(host, "tb", "pub", &["orders"]).await;
    deploy_publisher(host, "b", "pub", &["orders"]).await;
    deploy_publisher(host, "t", "other", &["secret"]).await;
    let queues = host.queue_store();

    let denied_topics = [
        "secret",
        "Orders",
        "orders2",
        "order",
        "../b/orders",
        "b/orders",
        "/orders",
        "orders\0",
    ];
    for (i, topic) in denied_topics.into_iter().enumerate() {
        let (m, report) = failed(host, "t", "pub", &format!("publish {topic} leaked")).await;
        assert!(m.contains("PermissionDenied"), "{topic:?}: {m}");
        assert!(
            m.contains("is not granted to this function"),
            "{topic:?}: {m}"
        );
        assert_eq!(report.usage.denied_calls, 1, "{topic:?}");
        assert_eq!(report.usage.messages_published, 0, "{topic:?}");
        assert_eq!(denied_calls(host, "t", "pub"), (i + 1) as f64);
    }
    // A run of sends to a denied topic stops at the first.
    let (m, report) = failed(host, "t", "pub", "publish-many secret 3").await;
    assert!(m.contains("PermissionDenied"), "{m}");
    assert_eq!(report.usage.denied_calls, 1);
    // Nothing was enqueued anywhere: no queue even exists.
    let known = queues.queues().expect("queues");
    assert!(known.is_empty(), "{known:?}");

    // Each tenant's queue of the same name is its own.
    publish(host, "t", "pub", "publish orders for t").await;
    publish(host, "t", "pub", "publish borders for t borders").await;
    publish(host, "b", "pub", "publish orders for b").await;
    publish(host, "tb", "pub", "publish orders for tb").await;
    assert_eq!(bodies(&receive_all(&*queues, "t", "orders")), ["for t"]);
    assert_eq!(
        bodies(&receive_all(&*queues, "t", "borders")),
        ["for t borders"]
    );
    assert_eq!(bodies(&receive_all(&*queues, "b", "orders")), ["for b"]);
    assert_eq!(bodies(&receive_all(&*queues, "tb", "orders")), ["for tb"]);
    // The other function of t, granted `secret`, publishes there.
    publish(host, "t", "other", "publish secret granted here").await;
    assert_eq!(
        bodies(&receive_all(&*queues, "t", "secret")),
        ["granted here"]
    );
    let pair = |t: &str, q: &str| (t.to_string(), q.to_string());
    assert_eq!(
        queues.queues().expect("queues"),
        [
            pair("b", "orders"),
            pair("t", "borders"),
            pair("t", "orders"),
            pair("t", "secret"),
            pair("tb", "orders"),
        ]
    );

    // Over the queue's message size limit: an error, nothing enqueued.
    let big = "x".repeat(300 * 1024);
    let (m, report) = failed(host, "t", "pub", &format!("publish orders {big}")).await;
    assert!(m.contains("Other"), "{}", shorten(&m));
    assert!(
        m.contains("over the limit of 262144 bytes"),
        "{}",
        shorten(&m)
    );
    assert_eq!(report.usage.messages_published, 0);
    assert_eq!(report.usage.denied_calls, 0);
    let stats = queues.stats("t", "orders", now_ms()).expect("stats");
    assert_eq!(
        (stats.visible, stats.in_flight, stats.delayed),
        (0, 1, 0),
        "only the message received above: {stats:?}"
    );

    // Ledger and metrics agree on denials and publications.
    let sums = ledger_sums(&t.ledger);
    for ((tenant, function), [published, denied]) in &sums {
        assert_eq!(
            published_metric(host, tenant, function),
            *published as f64,
            "{tenant}/{function}"
        );
        assert_eq!(denied_calls(host, tenant, function), *denied as f64);
    }
    assert_eq!(
        sums[&("t".into(), "pub".into())],
        [2, denied_topics.len() as u64 + 1]
    );
    assert_eq!(sums[&("t".into(), "other".into())], [1, 0]);

    // A component importing wasmcloud:messaging with no topics granted
    // deploys with a note, and every publish is denied and counted.
    for config in [
        FunctionConfig::default(),
        FunctionConfig {
            kv_stores: vec!["s".into()],
            blob_containers: vec!["uploads".into()],
            ..FunctionConfig::default()
        },
    ] {
        let notes = deploy_ungranted(host, "t", "nopub", "publisher", config).await;
        assert!(notes.contains("wasmcloud:messaging/"), "{notes}");
        assert!(notes.contains("no topics are granted"), "{notes}");
        let (m, report) = failed(host, "t", "nopub", "publish orders x").await;
        assert!(m.contains("is not granted to this function"), "{m}");
        assert_eq!(report.usage.denied_calls, 1);
        assert_eq!(report.usage.messages_published, 0);
    }
    // A topic grant that cannot name a queue is refused at deploy, naming it.
    let err = host
        .deploy_with(
            "t",
            "badtopic",
            &guests().bytes("publisher"),
            topics(&["a.b"]),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("topic grant") && err.contains("\"a.b\""),
        "{err}"
    );
    assert!(!host.functions("t").contains(&"badtopic".to_string()));
}

// ---------------------------------------------------------------------------
// 10. Persistence

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_messages_survive_a_restart_of_the_host() {
    let t = data_host(|b| b);
    let host = &t.host;
    host.add_tenant("t", Limits::default()).expect("tenant");
    deploy_publisher(host, "t", "pub", &["orders"]).await;
    publish(host, "t", "pub", "publish orders before restart").await;
    publish(host, "t", "pub", "publish-many orders 3").await;
    assert!(t.dir().join("data/queues.redb").is_file());

    let t = t.restart(|b| b);
    let got = receive_all(&*t.host.queue_store(), "t", "orders");
    assert_eq!(bodies(&got), ["before restart", "msg-0", "msg-1", "msg-2"]);
    assert!(got.iter().all(|d| {
        d.receive_count == 1
            && d.content_type.as_deref() == Some("text/plain")
            && d.metadata == [("source".to_string(), "publisher".to_string())]
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_publish_survives_kill_9_of_nimbus_serve() {
    const KEY: &str = "acme-key";
    let dir = ServeDir::new(&format!(
        r#"
ledger = "usage.jsonl"
data_dir = "data"

[tenants.acme]
api_keys = ["{KEY}"]

[[functions]]
tenant = "acme"
name = "pub"
component = {component:?}
topics = ["orders"]
"#,
        component = guest_path("publisher"),
    ));

    let server = dir.start();
    for command in ["publish orders via http", "publish-many orders 2"] {
        let answer = server
            .client()
            .with_key(KEY)
            .run("/acme/pub", command)
            .await;
        assert_eq!(answer, "ok");
    }
    server.kill_9();

    // The server's queue database, opened directly after the crash.
    let queues = QueueStore::open(&dir.path().join("data/queues.redb")).expect("queues.redb");
    let got = receive_all(&queues, "acme", "orders");
    assert_eq!(bodies(&got), ["via http", "msg-0", "msg-1"]);
    let records = dir.records();
    assert_eq!(
        records.iter().map(|r| r.messages_published).sum::<u64>(),
        3,
        "{records:?}"
    );
}
