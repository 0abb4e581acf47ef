//! `nimbus serve` with a `[cluster]` on a real `nats-server` (JetStream, on
//! loopback): every answered invocation's usage record reaches the
//! cluster's usage stream exactly once, while NATS is killed and comes
//! back, and when the node restarts having lost its publishing cursor; and
//! three nodes on a three-server NATS cluster bill each invocation once
//! while the usage stream's leader is killed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_nats::jetstream;

use crate::support::{NatsServer, NimbusServe, ServeDir, metric_in, outcome_series};

const STREAM: &str = "NIMBUS_USAGE";

fn config(nats: &NatsServer) -> String {
    node_config(&[nats.url()], "node-a", 1)
}

/// One node's config: the same tenant and function on every node, its own
/// ledger and data.
fn node_config(urls: &[String], node: &str, replicas: usize) -> String {
    format!(
        r#"
ledger = "usage.jsonl"
data_dir = "data"
[cluster]
urls = {urls:?}
node = "{node}"
replicas = {replicas}
[tenants.acme]
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

async fn connect(urls: &[String]) -> Option<jetstream::Context> {
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

fn ledger_of(dir: &ServeDir) -> BTreeMap<String, serde_json::Value> {
    std::fs::read_to_string(dir.ledger_path())
        .expect("read the ledger")
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a JSON record");
            (v["invocation_id"].as_str().unwrap().to_string(), v)
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

    // NATS comes back on the same store: the twenty arrive, nothing twice.
    nats.restart();
    let stream = wait_for(&[nats.url()], 60).await;
    assert_same(&stream, &ledger(&dir));

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
    let ledger = dir.ledger_path();
    ledger.with_file_name("usage.jsonl.stream-cursor")
}

/// The server name of the usage stream's leader.
async fn stream_leader(urls: &[String]) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(js) = connect(urls).await
            && let Ok(stream) = js.get_stream(STREAM).await
            && let Ok(info) = stream.get_info().await
            && let Some(leader) = info.cluster.and_then(|c| c.leader)
        {
            return leader;
        }
        assert!(Instant::now() < deadline, "the usage stream has no leader");
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
    let leader = stream_leader(&urls).await;
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
