//! Blobs and object-created events shared by three `nimbus serve` nodes on
//! a three-server NATS cluster: an object written through one node is read,
//! listed and deleted through the others; its object trigger runs once
//! across the cluster; the blob quota is the tenant's, not the node's; and
//! an upload whose node is SIGKILLed right after answering still has its
//! event delivered, by another node.

use std::time::{Duration, Instant};

use nimbus_core::Trigger;

use crate::support::{NatsServer, NimbusServe, STREAM_LIMITS, ServeDir, acme_series, metric_in};

const KEY: &str = "acme-key";

fn node_config(urls: &[String], node: &str) -> String {
    node_config_with(urls, node, 3)
}

fn node_config_with(urls: &[String], node: &str, replicas: usize) -> String {
    format!(
        r#"
ledger = "usage.jsonl"
data_dir = "data"
[cluster]
urls = {urls:?}
node = "{node}"
replicas = {replicas}
{STREAM_LIMITS}[tenants.acme]
api_keys = ["{KEY}"]
max_blob_bytes = 10000
[[functions]]
tenant = "acme"
name = "echo"
component = "echo.wasm"
[[functions]]
tenant = "acme"
name = "sleeper"
component = "sleep.wasm"
timeout_ms = 1000
[[object_triggers]]
tenant = "acme"
function = "echo"
container = "in"
[[object_triggers]]
tenant = "acme"
function = "sleeper"
container = "slow"
"#
    )
}

/// Object-trigger invocations of `function` in each node's ledger.
fn runs_of(dirs: &[ServeDir], function: &str) -> Vec<usize> {
    dirs.iter()
        .map(|d| {
            d.records()
                .iter()
                .filter(|r| r.trigger == Trigger::Object && r.function == function)
                .count()
        })
        .collect()
}

fn object_runs(dirs: &[ServeDir]) -> Vec<usize> {
    runs_of(dirs, "echo")
}

/// Whether `node` is running `sleeper` right now.
async fn sleeping(node: &NimbusServe) -> bool {
    let text = node.client().get("/metrics").await.text();
    metric_in(
        &text,
        &acme_series("nimbus_invocations_in_flight", "sleeper"),
    )
    .unwrap_or(0.0)
        > 0.0
}

/// Waits (bounded) until the nodes' object runs add up to `total`.
async fn until_runs(dirs: &[ServeDir], total: usize, within: Duration, logs: impl Fn() -> String) {
    let deadline = Instant::now() + within;
    while object_runs(dirs).iter().sum::<usize>() < total {
        assert!(
            Instant::now() < deadline,
            "object runs {:?}, want {total} in all\n{}",
            object_runs(dirs),
            logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn keys(listing: &serde_json::Value) -> Vec<&str> {
    listing["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .map(|o| o["key"].as_str().expect("key"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_quota_and_events_are_shared_and_an_event_outlives_its_node() {
    let started = Instant::now();
    // 2.10+: the quota counter is a compare-and-set on a replicated bucket.
    let nats = NatsServer::cluster_current();
    let urls: Vec<String> = nats.iter().map(NatsServer::url).collect();
    let dirs: Vec<ServeDir> = ["node-a", "node-b", "node-c"]
        .iter()
        .map(|node| {
            ServeDir::new(&node_config(&urls, node))
                .copy_guest("echo", "echo.wasm")
                .copy_guest("sleep", "sleep.wasm")
        })
        .collect();
    let mut nodes: Vec<Option<NimbusServe>> = dirs.iter().map(|d| Some(d.start())).collect();
    let logs = |nodes: &[Option<NimbusServe>]| -> String {
        nodes
            .iter()
            .flatten()
            .map(NimbusServe::log)
            .collect::<Vec<_>>()
            .join("\n")
    };
    let clients: Vec<_> = nodes
        .iter()
        .flatten()
        .map(|n| n.client().with_key(KEY))
        .collect();
    let (a, b, c) = (&clients[0], &clients[1], &clients[2]);

    // Written through A; read and listed through B and C.
    let put = a
        .put("/storage/v1/acme/in/docs/hello.txt")
        .header("content-type", "text/plain")
        .body("hello, cluster")
        .await
        .expect(200)
        .json();
    let etag = put["etag"].as_str().expect("etag").to_string();
    for other in [b, c] {
        let r = other
            .get("/storage/v1/acme/in/docs/hello.txt")
            .await
            .expect(200);
        assert_eq!(r.text(), "hello, cluster");
        assert_eq!(r.header("content-type"), Some("text/plain"));
        assert_eq!(r.header("etag"), Some(format!("\"{etag}\"").as_str()));
        let r = other
            .get("/storage/v1/acme/in/docs/hello.txt")
            .header("range", "bytes=7-")
            .await
            .expect(206);
        assert_eq!(r.text(), "cluster");
        let listing = other
            .get("/storage/v1/acme/in?prefix=docs/")
            .await
            .expect(200)
            .json();
        assert_eq!(keys(&listing), ["docs/hello.txt"], "{listing}");
    }

    // Its trigger ran once, on one of the three nodes.
    until_runs(&dirs, 1, Duration::from_secs(20), || logs(&nodes)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        object_runs(&dirs).iter().sum::<usize>(),
        1,
        "{:?}",
        object_runs(&dirs)
    );

    // The quota is the tenant's across the cluster: 6 000 bytes through A
    // leave too little of 10 000 for 6 000 more through B.
    a.put("/storage/v1/acme/data").await.expect(201);
    a.put("/storage/v1/acme/data/one.bin")
        .body(vec![1u8; 6000])
        .await
        .expect(200);
    b.put("/storage/v1/acme/data/two.bin")
        .body(vec![2u8; 6000])
        .await
        .expect_error(507, "over its quota of 10000 bytes");
    b.get("/storage/v1/acme/data/two.bin").await.expect(404);

    // Deleted through C: gone on A, and its bytes free for B.
    c.delete("/storage/v1/acme/data/one.bin")
        .await
        .expect_status_in(&[200, 204]);
    a.get("/storage/v1/acme/data/one.bin").await.expect(404);
    let listing = a.get("/storage/v1/acme/data").await.expect(200).json();
    assert!(keys(&listing).is_empty(), "{listing}");
    b.put("/storage/v1/acme/data/two.bin")
        .body(vec![2u8; 6000])
        .await
        .expect(200);

    // Uploaded through A, A killed as soon as it answered: the event is
    // the write's own metadata in JetStream, so B or C delivers it.
    let before = object_runs(&dirs);
    a.put("/storage/v1/acme/in/last.txt")
        .body("the last one")
        .await
        .expect(200);
    nodes[0].take().expect("a").kill_9();
    let killed = Instant::now();
    until_runs(&dirs, 2, Duration::from_secs(30), || logs(&nodes)).await;
    let delivered_after = killed.elapsed();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let runs = object_runs(&dirs);
    let (by_a, by_others) = (
        runs[0] - before[0],
        runs[1] + runs[2] - before[1] - before[2],
    );
    // A may have run it between its answer and the kill; unless it also
    // acked it, one other node runs it again. Otherwise exactly one does.
    match by_a {
        0 => assert_eq!(by_others, 1, "{before:?} -> {runs:?}"),
        _ => assert!(by_a == 1 && by_others <= 1, "{before:?} -> {runs:?}"),
    }

    // The node delivering an event (its function still running) is
    // killed: the event is redelivered to the other one once its ack wait
    // runs out.
    let live: Vec<&NimbusServe> = nodes.iter().flatten().collect();
    live[0]
        .client()
        .with_key(KEY)
        .put("/storage/v1/acme/slow/x")
        .body("zzz")
        .await
        .expect(200);
    let deadline = Instant::now() + Duration::from_secs(10);
    let holder = 'found: loop {
        for (i, n) in live.iter().enumerate() {
            if sleeping(n).await {
                break 'found i + 1;
            }
        }
        assert!(
            Instant::now() < deadline,
            "nobody runs the slow event\n{}",
            logs(&nodes)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let survivor = 3 - holder;
    let before = runs_of(&dirs, "sleeper")[survivor];
    nodes[holder].take().expect("holder").kill_9();
    let killed_holder = Instant::now();
    let deadline = killed_holder + Duration::from_secs(30);
    while runs_of(&dirs, "sleeper")[survivor] == before {
        assert!(
            Instant::now() < deadline,
            "the slow event never reached the surviving node\n{}",
            logs(&nodes)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "object runs per node {runs:?}; the event of the upload whose node was killed ran \
         {delivered_after:?} after the kill; the event whose deliverer was killed ran again \
         {:?} after; whole test {:?}",
        killed_holder.elapsed(),
        started.elapsed()
    );
    for node in nodes.into_iter().flatten() {
        node.stop();
    }
}

/// On Debian's nats-server 2.9.10 alone (replicas = 1): the buckets and the
/// events' consumer are created, an object round-trips and its trigger runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_and_events_work_on_nats_server_2_9() {
    let nats = NatsServer::start();
    let dir = ServeDir::new(&node_config_with(&[nats.url()], "solo", 1))
        .copy_guest("echo", "echo.wasm")
        .copy_guest("sleep", "sleep.wasm");
    let node = dir.start();
    let acme = node.client().with_key(KEY);
    acme.put("/storage/v1/acme/in/k")
        .body("v")
        .await
        .expect(200);
    assert_eq!(
        acme.get("/storage/v1/acme/in/k").await.expect(200).text(),
        "v"
    );
    let dirs = [dir];
    until_runs(&dirs, 1, Duration::from_secs(20), || node.log()).await;
    node.stop();
}
