//! `nimbus serve` with a `[cluster]` on a real `nats-server` (JetStream, on
//! loopback): every answered invocation's usage record reaches the
//! cluster's usage stream exactly once, while NATS is killed and comes
//! back, and when the node restarts having lost its publishing cursor.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_nats::jetstream;

use crate::support::{NatsServer, NimbusServe, ServeDir, metric_in};

const STREAM: &str = "NIMBUS_USAGE";

fn config(nats: &NatsServer) -> String {
    format!(
        r#"
ledger = "usage.jsonl"
data_dir = "data"
[cluster]
urls = ["{}"]
node = "node-a"
[tenants.acme]
[[functions]]
tenant = "acme"
name = "hello"
component = "hello.wasm"
public = true
"#,
        nats.url()
    )
}

/// The stream's records as (invocation id from the subject, the
/// `Nats-Msg-Id` header, the record's JSON), keyed by the subject's id.
async fn stream_records(
    nats: &NatsServer,
) -> Option<BTreeMap<String, (String, serde_json::Value)>> {
    let client = async_nats::connect(nats.url()).await.ok()?;
    let js = jetstream::new(client);
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

/// Waits (bounded) until the stream holds `n` records, and returns them.
async fn wait_for(nats: &NatsServer, n: usize) -> BTreeMap<String, (String, serde_json::Value)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = stream_records(nats).await;
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
    let stream = wait_for(&nats, 40).await;
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
    let stream = wait_for(&nats, 60).await;
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
    let stream = wait_for(&nats, 65).await;
    assert_same(&stream, &ledger(&dir));
    server.stop();
}

fn nimbus_nats_cursor(dir: &ServeDir) -> std::path::PathBuf {
    let ledger = dir.ledger_path();
    ledger.with_file_name("usage.jsonl.stream-cursor")
}
