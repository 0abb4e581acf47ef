//! Queues shared by three `nimbus serve` nodes on a three-server NATS
//! cluster: 1,000 messages, each processed at least once and none lost,
//! while a node is killed with SIGKILL mid-batch and, separately, while the
//! queue stream's leader server is killed (the worker's retries outlast
//! the election); failures go to dead letters with their error and come
//! back on redrive.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::cluster::stream_leader;
use crate::support::{Client, NatsServer, NimbusServe, STREAM_LIMITS, ServeDir};

const KEY: &str = "acme-key";
const ADMIN: &str = "admin-key";

fn node_config(urls: &[String], node: &str) -> String {
    format!(
        r#"
ledger = "usage.jsonl"
data_dir = "data"
admin_keys = ["{ADMIN}"]
[cluster]
urls = {urls:?}
node = "{node}"
replicas = 3
{STREAM_LIMITS}[tenants.acme]
api_keys = ["{KEY}"]
[[functions]]
tenant = "acme"
name = "worker"
component = "counter.wasm"
kv_stores = ["s"]
timeout_ms = 2000
[[queue_triggers]]
tenant = "acme"
function = "worker"
queue = "jobs"
batch_size = 10
visibility_timeout_ms = 3000
max_receive_count = 20
backoff_base_ms = 50
backoff_max_ms = 1000
[[queue_triggers]]
tenant = "acme"
function = "worker"
queue = "failing"
visibility_timeout_ms = 3000
max_receive_count = 2
backoff_base_ms = 50
backoff_max_ms = 100
"#
    )
}

/// Sends `incr s m<i>` for each `i`, spread over the nodes, eight at once.
async fn send(nodes: &[&NimbusServe], range: std::ops::Range<usize>) {
    let mut sends = tokio::task::JoinSet::new();
    let clients: Vec<Client> = nodes.iter().map(|n| n.client().with_key(KEY)).collect();
    let ids: Vec<usize> = range.collect();
    for (w, chunk) in ids.chunks(ids.len().div_ceil(8)).enumerate() {
        let client = clients[w % clients.len()].clone();
        let chunk = chunk.to_vec();
        sends.spawn(async move {
            for i in chunk {
                let r = client
                    .post("/queues/v1/acme/jobs/messages")
                    .body(format!("incr s m{i}"))
                    .await;
                assert!(
                    [200, 201, 202].contains(&r.status.as_u16()),
                    "send {i}: {} {}",
                    r.status,
                    r.text()
                );
            }
        });
    }
    while let Some(r) = sends.join_next().await {
        r.expect("a sender panicked");
    }
}

/// The message keys the worker has incremented, read through `node`.
async fn processed(node: &NimbusServe) -> BTreeSet<String> {
    let r = node
        .client()
        .with_key(KEY)
        .post("/acme/worker")
        .body("list s")
        .await;
    if r.status.as_u16() != 200 {
        return BTreeSet::new();
    }
    r.text().lines().map(String::from).collect()
}

/// Waits (bounded) until every message in `range` was processed.
async fn until_processed(
    node: &NimbusServe,
    range: std::ops::Range<usize>,
    logs: impl Fn() -> String,
) {
    let want: BTreeSet<String> = range.map(|i| format!("m{i}")).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let got = processed(node).await;
        let missing: Vec<&String> = want.difference(&got).collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} messages never processed, e.g. {:?}\n{}",
            missing.len(),
            &missing[..missing.len().min(5)],
            logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn stats(node: &NimbusServe, queue: &str) -> serde_json::Value {
    node.client()
        .with_key(KEY)
        .get(&format!("/queues/v1/acme/{queue}"))
        .await
        .expect(200)
        .json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_messages_are_each_processed_while_a_node_and_the_stream_leader_die() {
    // 2.10+: the worker's key-value increments need a replicated bucket.
    let mut nats = NatsServer::cluster_current();
    let urls: Vec<String> = nats.iter().map(NatsServer::url).collect();
    let dirs: Vec<ServeDir> = ["node-a", "node-b", "node-c"]
        .iter()
        .map(|node| {
            ServeDir::new(&node_config(&urls, node)).copy_guest("kv-counter", "counter.wasm")
        })
        .collect();
    let mut nodes: Vec<Option<NimbusServe>> = dirs.iter().map(|d| Some(d.start())).collect();
    let live = |nodes: &[Option<NimbusServe>]| -> String {
        nodes
            .iter()
            .flatten()
            .map(NimbusServe::log)
            .collect::<Vec<_>>()
            .join("\n")
    };

    // Phase 1: node B is killed while the first 500 are being worked on.
    {
        let all: Vec<&NimbusServe> = nodes.iter().flatten().collect();
        // A fresh cluster elects its stream leaders first: every node's
        // queue and key-value answer before the messages go in.
        let deadline = Instant::now() + Duration::from_secs(60);
        for node in &all {
            let acme = node.client().with_key(KEY);
            loop {
                let queue = acme.get("/queues/v1/acme/jobs").await;
                let kv = acme.post("/acme/worker").body("incr s warm-up").await;
                if queue.status.as_u16() == 200 && kv.status.as_u16() == 200 {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "not ready: {} {}",
                    queue.text(),
                    kv.text()
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        send(&all, 0..500).await;
    }
    let started = Instant::now();
    let a = nodes[0].as_ref().expect("a");
    while processed(a).await.len() < 100 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no progress:\n{}",
            live(&nodes)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    nodes[1].take().expect("b").kill_9();
    let done_at_kill = processed(nodes[0].as_ref().expect("a")).await.len();
    assert!(
        done_at_kill < 500,
        "the kill came too late: {done_at_kill} done"
    );
    until_processed(nodes[0].as_ref().expect("a"), 0..500, || live(&nodes)).await;
    nodes[1] = Some(dirs[1].start());

    // Phase 2: the queue stream's leader server is killed while the next
    // 500 are sent and worked on.
    let leader = stream_leader(&urls, "NIMBUS_QUEUES").await;
    let dead = nats
        .iter()
        .position(|s| s.name == leader)
        .expect("the leader is one of ours");
    {
        let all: Vec<&NimbusServe> = nodes.iter().flatten().collect();
        send(&all, 500..750).await;
        nats[dead].kill();
        send(&all, 750..1000).await;
    }
    until_processed(nodes[2].as_ref().expect("c"), 0..1000, || live(&nodes)).await;

    // Drained: nothing visible, in flight or dead-lettered.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = stats(nodes[0].as_ref().expect("a"), "jobs").await;
        if ["visible", "in_flight", "dead"]
            .iter()
            .all(|k| s[k].as_u64() == Some(0))
        {
            break;
        }
        assert!(Instant::now() < deadline, "not drained: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A failing message: dead-lettered after max_receive_count receives
    // with its error, listed, redriven, and dead again.
    let a = nodes[0].as_ref().expect("a");
    a.client()
        .with_key(KEY)
        .post("/queues/v1/acme/failing/messages")
        .body("no-such-command")
        .await
        .expect_status_in(&[200, 201, 202]);
    let admin = a.client().with_key(ADMIN);
    let deadline = Instant::now() + Duration::from_secs(60);
    let letters = loop {
        let r = admin
            .get("/admin/v1/tenants/acme/queues/failing/dead-letters")
            .await
            .expect(200)
            .json();
        if r["dead_letters"].as_array().is_some_and(|d| !d.is_empty()) {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "never dead-lettered: {r}\n{}",
            live(&nodes)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let letter = &letters["dead_letters"][0];
    assert_eq!(letter["receive_count"], 2, "{letters}");
    assert!(
        letter["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("no-such-command")),
        "{letters}"
    );
    let moved = admin
        .post("/admin/v1/tenants/acme/queues/failing/redrive")
        .await
        .expect(200)
        .json();
    assert_eq!(moved["redriven"], 1, "{moved}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = stats(a, "failing").await;
        if s["dead"].as_u64() == Some(1) && s["visible"].as_u64() == Some(0) {
            break;
        }
        assert!(Instant::now() < deadline, "not dead again: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A queue no trigger has configured yet takes messages, and keeps
    // them for whoever consumes it later.
    let b = nodes[1].as_ref().expect("b");
    b.client()
        .with_key(KEY)
        .post("/queues/v1/acme/later/messages")
        .body("kept")
        .await
        .expect_status_in(&[200, 201, 202]);
    let s = stats(nodes[2].as_ref().expect("c"), "later").await;
    assert_eq!(s["visible"].as_u64(), Some(1), "{s}");
    for node in nodes.into_iter().flatten() {
        node.stop();
    }
}
