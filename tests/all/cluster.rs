//! `nimbus serve` with a `[cluster]` on a real `nats-server` (JetStream, on
//! loopback): every answered invocation's usage record reaches the
//! cluster's usage stream exactly once, while NATS is killed and comes
//! back, and when the node restarts having lost its publishing cursor; and
//! three nodes on a three-server NATS cluster bill each invocation once
//! while the usage stream's leader is killed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_nats::jetstream;

use crate::support::{NatsServer, NimbusServe, STREAM_LIMITS, ServeDir, metric_in, outcome_series};

const STREAM: &str = "NIMBUS_USAGE";

fn config(nats: &NatsServer) -> String {
    node_config(&[nats.url()], "node-a", 1)
}

/// One node's config: the same tenant and function on every node, its own
/// ledger and data.
fn node_config(urls: &[String], node: &str, replicas: usize) -> String {
    format!(
        r#"
ledger = "usage"
data_dir = "data"
[usage]
rotate_bytes = 4096
[cluster]
urls = {urls:?}
node = "{node}"
replicas = {replicas}
{STREAM_LIMITS}[tenants.acme]
[[functions]]
tenant = "acme"
name = "hello"
component = "hello.wasm"
public = true
"#
    )
}

/// The stream's records as (invocation id from the subject, the
/// `Nats-Msg-Id` header, the record's JSON), keyed by the subject's id.
async fn stream_records(urls: &[String]) -> Option<BTreeMap<String, (String, serde_json::Value)>> {
    let js = connect(urls).await?;
    let stream = js.get_stream(STREAM).await.ok()?;
    let state = stream.get_info().await.ok()?.state;
    let mut out = BTreeMap::new();
    if state.messages == 0 {
        return Some(out);
    }
    for seq in state.first_sequence..=state.last_sequence {
        let m = stream.get_raw_message(seq).await.ok()?;
        let id = m
            .subject
            .strip_prefix("usage.acme.")
            .unwrap_or_else(|| panic!("subject {} is not usage.acme.<id>", m.subject))
            .to_string();
        let msg_id = m
            .headers
            .get("Nats-Msg-Id")
            .map(|v| v.to_string())
            .unwrap_or_default();
        let record: serde_json::Value = serde_json::from_slice(&m.payload).expect("a JSON record");
        assert!(
            out.insert(id.clone(), (msg_id, record)).is_none(),
            "{id} twice in the stream"
        );
    }
    assert_eq!(out.len() as u64, state.messages);
    Some(out)
}

pub(crate) async fn connect(urls: &[String]) -> Option<jetstream::Context> {
    let addrs: Vec<async_nats::ServerAddr> = urls.iter().map(|u| u.parse().unwrap()).collect();
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(2))
        .connect(addrs)
        .await
        .ok()?;
    Some(jetstream::new(client))
}

/// Waits (bounded) until the stream holds `n` records, and returns them.
async fn wait_for(urls: &[String], n: usize) -> BTreeMap<String, (String, serde_json::Value)> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let got = stream_records(urls).await;
        match &got {
            Some(r) if r.len() == n => return got.unwrap(),
            Some(r) => assert!(r.len() < n, "{} records in the stream, want {n}", r.len()),
            None => {}
        }
        assert!(
            Instant::now() < deadline,
            "the usage stream did not reach {n} records: {:?}",
            got.map(|r| r.len())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The ledger's records by invocation id.
fn ledger(dir: &ServeDir) -> BTreeMap<String, serde_json::Value> {
    ledgers(std::slice::from_ref(dir))
}

/// The records of several nodes' ledgers by invocation id (each once).
fn ledgers(dirs: &[ServeDir]) -> BTreeMap<String, serde_json::Value> {
    let mut all = BTreeMap::new();
    for dir in dirs {
        for (id, record) in ledger_of(dir) {
            assert!(
                all.insert(id.clone(), record).is_none(),
                "{id} in two ledgers"
            );
        }
    }
    all
}

/// A node's ledger directory, rotated every 4 KiB: its files' lines in the
/// order they were written.
fn ledger_of(dir: &ServeDir) -> BTreeMap<String, serde_json::Value> {
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir.path().join("usage"))
        .expect("read the ledger directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("nimbus-usage-"))
        })
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .expect("read a ledger file")
                .lines()
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).expect("a JSON record");
                    (v["invocation_id"].as_str().unwrap().to_string(), v)
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The stream is exactly the ledger: the same ids, each record as written,
/// each message's `Nats-Msg-Id` its invocation id.
fn assert_same(
    stream: &BTreeMap<String, (String, serde_json::Value)>,
    ledger: &BTreeMap<String, serde_json::Value>,
) {
    assert_eq!(
        stream.keys().collect::<Vec<_>>(),
        ledger.keys().collect::<Vec<_>>(),
        "the stream's invocations are the ledger's"
    );
    for (id, (msg_id, record)) in stream {
        assert_eq!(msg_id, id, "Nats-Msg-Id of {id}");
        assert_eq!(record, &ledger[id], "the stream's record of {id}");
    }
}

async fn metric(server: &NimbusServe, series: &str) -> Option<f64> {
    let text = server.client().get("/metrics").await.expect(200).text();
    metric_in(&text, series)
}

async fn invoke(server: &NimbusServe, n: usize) {
    let client = server.client();
    for _ in 0..n {
        let r = client.get("/acme/hello").await.expect(200);
        assert_eq!(r.text(), "Hello from Nimbus!\n");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answered_invocation_reaches_the_usage_stream_once_across_nats_and_node_restarts() {
    let mut nats = NatsServer::start();
    let dir = ServeDir::new(&config(&nats)).copy_guest("hello-http", "hello.wasm");
    let server = dir.start();

    invoke(&server, 40).await;
    let stream = wait_for(&[nats.url()], 40).await;
    assert_same(&stream, &ledger(&dir));
    assert_eq!(metric(&server, "nimbus_cluster_connected").await, Some(1.0));

    // NATS dies: the node still answers, and bills in its own ledger; the
    // records it could not publish wait there.
    nats.kill();
    invoke(&server, 20).await;
    assert_eq!(ledger(&dir).len(), 60);
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(&server, "nimbus_usage_stream_lag_bytes")
        .await
        .unwrap_or(0.0)
        == 0.0
    {
        assert!(
            Instant::now() < deadline,
            "no lag reported while NATS is down"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // It says what it cannot do, and stays in the load balancer's pool.
    let ready = server.client().get("/readyz").await.expect(200).text();
    assert!(
        ready.contains("unavailable: cluster (NATS disconnected"),
        "{ready}"
    );
    let why = server
        .client()
        .get("/readyz/cluster")
        .await
        .expect(503)
        .text();
    assert!(why.contains("NATS disconnected"), "{why}");
    server.client().get("/readyz/nope").await.expect(404);

    // NATS comes back on the same store: the twenty arrive, nothing twice.
    nats.restart();
    let stream = wait_for(&[nats.url()], 60).await;
    assert_same(&stream, &ledger(&dir));
    server.client().get("/readyz/cluster").await.expect(200);
    assert_eq!(
        server.client().get("/readyz").await.expect(200).text(),
        "ready\n"
    );

    // The node restarts having lost its cursor: it publishes its whole
    // ledger again, and the stream still holds each invocation once.
    server.stop();
    std::fs::remove_file(nimbus_nats_cursor(&dir)).expect("the cursor file is there");
    let server = dir.start();
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&server, "nimbus_usage_stream_published_total").await != Some(60.0)
        || metric(&server, "nimbus_usage_stream_lag_bytes").await != Some(0.0)
    {
        assert!(
            Instant::now() < deadline,
            "the restarted node did not go through its ledger:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    invoke(&server, 5).await;
    let stream = wait_for(&[nats.url()], 65).await;
    assert_same(&stream, &ledger(&dir));
    server.stop();
}

fn nimbus_nats_cursor(dir: &ServeDir) -> std::path::PathBuf {
    dir.path().join("usage.stream-cursor")
}

/// The server name of `stream`'s leader.
pub(crate) async fn stream_leader(urls: &[String], stream: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(js) = connect(urls).await
            && let Ok(stream) = js.get_stream(stream).await
            && let Ok(info) = stream.get_info().await
            && let Some(leader) = info.cluster.and_then(|c| c.leader)
        {
            return leader;
        }
        assert!(Instant::now() < deadline, "stream {stream} has no leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_on_three_nats_servers_bill_each_invocation_once_while_the_stream_leader_dies()
{
    let mut nats = NatsServer::cluster();
    let urls: Vec<String> = nats.iter().map(NatsServer::url).collect();
    let dirs: Vec<ServeDir> = ["node-a", "node-b", "node-c"]
        .iter()
        .map(|node| {
            ServeDir::new(&node_config(&urls, node, 3)).copy_guest("hello-http", "hello.wasm")
        })
        .collect();
    let nodes: Vec<NimbusServe> = dirs.iter().map(ServeDir::start).collect();

    // Requests spread over the nodes, as a load balancer would.
    for i in 0..90 {
        invoke(&nodes[i % 3], 1).await;
    }
    let stream = wait_for(&urls, 90).await;
    assert_same(&stream, &ledgers(&dirs));

    // SIGKILL the stream's leader under load: a new leader is elected, and
    // every record the nodes wrote meanwhile arrives, each once.
    let leader = stream_leader(&urls, STREAM).await;
    let dead = nats
        .iter()
        .position(|s| s.name == leader)
        .expect("the leader is one of ours");
    nats[dead].kill();
    for i in 0..30 {
        invoke(&nodes[i % 3], 1).await;
    }
    let alive: Vec<String> = nats
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != dead)
        .map(|(_, s)| s.url())
        .collect();
    let stream = wait_for(&alive, 120).await;
    let billed = ledgers(&dirs);
    assert_eq!(billed.len(), 120);
    assert_same(&stream, &billed);

    // Every node's own counters, summed, are the stream.
    let mut total = 0.0;
    for node in &nodes {
        total += metric(node, &outcome_series("hello", "success"))
            .await
            .unwrap_or(0.0);
    }
    assert_eq!(total, stream.len() as f64);
    for node in nodes {
        node.stop();
    }
}

/// A node's config with `acme` and `other` (same store name) running
/// `kv-counter`, `acme` under a 2,000-byte key-value quota.
fn kv_node_config(urls: &[String], node: &str) -> String {
    format!(
        r#"
ledger = "usage.jsonl"
data_dir = "data"
[cluster]
urls = {urls:?}
node = "{node}"
replicas = 3
{STREAM_LIMITS}[tenants.acme]
api_keys = ["acme-key"]
max_kv_bytes = 2000
[tenants.other]
api_keys = ["other-key"]
[[functions]]
tenant = "acme"
name = "counter"
component = "counter.wasm"
kv_stores = ["visits"]
[[functions]]
tenant = "other"
name = "counter"
component = "counter.wasm"
kv_stores = ["visits"]
"#
    )
}

/// `command` as the event of `tenant/counter` on `node`: (status, answer).
async fn kv_run(node: &NimbusServe, tenant: &str, command: &str) -> (u16, String) {
    let r = node
        .client()
        .with_key(&format!("{tenant}-key"))
        .post(&format!("/{tenant}/counter"))
        .body(command.to_string())
        .await;
    (r.status.as_u16(), r.text())
}

/// Waits (bounded) until `node` reads the bucket: a fresh three-server
/// cluster elects its JetStream leaders first (seconds).
async fn wait_kv_ready(node: &NimbusServe) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, answer) = kv_run(node, "acme", "get visits absent").await;
        if status == 400 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "key-value never answered: {status} {answer}\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_value_is_one_store_across_three_nodes_increments_exact_quota_global_tenants_apart() {
    // 2.10+: 2.9's replicated streams lose concurrent compare-and-sets, so
    // NatsKv refuses them (tested below).
    let nats = NatsServer::cluster_current();
    let urls: Vec<String> = nats.iter().map(NatsServer::url).collect();
    let dirs: Vec<ServeDir> = ["node-a", "node-b", "node-c"]
        .iter()
        .map(|node| {
            ServeDir::new(&kv_node_config(&urls, node)).copy_guest("kv-counter", "counter.wasm")
        })
        .collect();
    let nodes: Vec<NimbusServe> = dirs.iter().map(ServeDir::start).collect();
    for node in &nodes {
        wait_kv_ready(node).await;
    }

    // 300 increments of one counter, 100 through each node, ten at a time
    // per node, all three nodes at once: every one counts.
    let mut calls = tokio::task::JoinSet::new();
    for node in &nodes {
        for worker in 0..10 {
            let client = node.client().with_key("acme-key");
            calls.spawn(async move {
                let mut answers = Vec::new();
                for _ in 0..10 {
                    let r = client
                        .post("/acme/counter")
                        .body("incr visits hits".to_string())
                        .await;
                    answers.push((r.status.as_u16(), r.text()));
                }
                (worker, answers)
            });
        }
    }
    let mut seen = Vec::new();
    while let Some(done) = calls.join_next().await {
        for (status, answer) in done.expect("no panic").1 {
            if status != 200 {
                let logs: Vec<String> = nodes.iter().map(NimbusServe::log).collect();
                panic!(
                    "an increment failed: {status} {answer}\n{}",
                    logs.join("\n")
                );
            }
            seen.push(answer.parse::<u64>().expect("a count"));
        }
    }
    seen.sort_unstable();
    assert_eq!(
        seen,
        (1..=300).collect::<Vec<u64>>(),
        "each increment saw its own value"
    );
    for node in &nodes {
        assert_eq!(
            kv_run(node, "acme", "get visits hits").await,
            (200, "300".to_string())
        );
    }

    // Written through one node, listed and read through the others.
    assert_eq!(
        kv_run(&nodes[0], "acme", "set visits greeting hello")
            .await
            .0,
        200
    );
    assert_eq!(
        kv_run(&nodes[1], "acme", "get visits greeting").await,
        (200, "hello".to_string())
    );
    assert_eq!(
        kv_run(&nodes[2], "acme", "list visits").await,
        (200, "greeting\nhits".to_string())
    );
    assert_eq!(
        kv_run(&nodes[2], "acme", "del visits greeting").await.0,
        200
    );
    assert_eq!(
        kv_run(&nodes[0], "acme", "list visits").await,
        (200, "hits".to_string())
    );

    // The same store name in another tenant is another store.
    // (`get` of an absent key is the guest's invalid-input: a 400.)
    let (status, answer) = kv_run(&nodes[1], "other", "get visits hits").await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        kv_run(&nodes[1], "other", "incr visits hits").await,
        (200, "1".to_string())
    );
    assert_eq!(
        kv_run(&nodes[0], "acme", "get visits hits").await,
        (200, "300".to_string())
    );

    // The quota is the tenant's across the cluster: 1,200 bytes through
    // one node leave too little for 1,200 more through another.
    assert_eq!(
        kv_run(&nodes[0], "acme", "big visits first 1200").await,
        (200, "ok".to_string())
    );
    let (status, answer) = kv_run(&nodes[1], "acme", "big visits second 1200").await;
    assert_eq!(status, 502, "refused: {answer}");
    let (status, _) = kv_run(&nodes[2], "acme", "get visits second").await;
    assert_eq!(status, 400, "the refused write left nothing");
    // What still fits under the quota is taken, through any node.
    assert_eq!(
        kv_run(&nodes[2], "acme", "big visits second 500").await,
        (200, "ok".to_string())
    );
    for node in nodes {
        node.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_value_refuses_a_replicated_bucket_on_nats_server_2_9_with_a_clear_error() {
    let nats = NatsServer::cluster();
    let urls: Vec<String> = nats.iter().map(NatsServer::url).collect();
    let version = {
        let out = std::process::Command::new("/usr/sbin/nats-server")
            .arg("--version")
            .output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    if !version.contains("v2.9.") {
        eprintln!("skipped: the suite's nats-server is {version:?}, not 2.9");
        return;
    }
    let dir =
        ServeDir::new(&kv_node_config(&urls, "node-a")).copy_guest("kv-counter", "counter.wasm");
    let node = dir.start();
    let (status, _) = kv_run(&node, "acme", "incr visits hits").await;
    assert_ne!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !node.log().contains("needs nats-server 2.10 or later") {
        assert!(Instant::now() < deadline, "no clear error:\n{}", node.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    node.stop();
}
