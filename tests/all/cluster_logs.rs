//! Invocation logs shared by three `nimbus serve` nodes on a three-server
//! NATS cluster: what an invocation on one node printed is listed, read by
//! id and followed through the others' admin APIs, and deleting the
//! function on one node deletes its logs on every node.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;

use crate::support::{Client, NatsServer, NimbusServe, STREAM_LIMITS, ServeDir, guests};

const ADMIN: &str = "admin-key";
const LOGS: &str = "/admin/v1/tenants/shop/functions/compute/logs";

fn node_config(urls: &[String], node: &str, replicas: usize) -> String {
    format!(
        r#"
ledger = "usage.jsonl"
data_dir = "data"
admin_keys = ["{ADMIN}"]
[cluster]
urls = {urls:?}
node = "{node}"
replicas = {replicas}
{STREAM_LIMITS}"#
    )
}

/// Polls `check` on every node in `nodes` until it holds on each (bounded),
/// and returns how long the slowest took.
async fn on_every<F, Fut>(nodes: &[&NimbusServe], what: &str, check: F) -> Duration
where
    F: Fn(Client) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let start = Instant::now();
    for node in nodes {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match check(node.client()).await {
                Ok(()) => break,
                Err(e) => assert!(
                    Instant::now() < deadline,
                    "{what}: not on {}: {e}\n{}",
                    node.addr,
                    node.log()
                ),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    start.elapsed()
}

/// Invokes compute with `n` through `node`; its invocation id.
async fn invoke(node: &NimbusServe, key: &str, n: u32) -> String {
    let r = node
        .client()
        .with_key(key)
        .post("/shop/compute")
        .body(n.to_string())
        .await
        .expect(200);
    r.invocation_id().to_string()
}

/// The `invocations` of a logs request (`query` appended to the path).
async fn logs_of(c: &Client, query: &str) -> Result<Vec<serde_json::Value>, String> {
    let r = c.with_key(ADMIN).get(&format!("{LOGS}{query}")).await;
    if r.status.as_u16() != 200 {
        return Err(format!("{} {}", r.status, r.text()));
    }
    Ok(r.json()["invocations"]
        .as_array()
        .ok_or("no invocations")?
        .clone())
}

/// The ids of the entries, oldest first.
fn ids(entries: &[serde_json::Value]) -> Vec<String> {
    entries
        .iter()
        .map(|e| e["invocation_id"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[track_caller]
fn assert_printed(entry: &serde_json::Value, id: &str, n: u32, primes: u32) {
    assert_eq!(entry["invocation_id"], id, "{entry}");
    assert_eq!(entry["tenant"], "shop", "{entry}");
    assert_eq!(entry["function"], "compute", "{entry}");
    assert_eq!(entry["outcome"], "success", "{entry}");
    assert_eq!(
        entry["logs"]["stdout"],
        format!("primes below {n}: {primes}\n"),
        "{entry}"
    );
    let report = entry["report"].as_str().expect("report");
    assert!(
        report.starts_with(&format!("REPORT RequestId: {id} ")),
        "{report}"
    );
}

/// A `?follow=true` request's body, read as it arrives.
struct Follow {
    body: hyper::body::Incoming,
    text: String,
}

impl Follow {
    async fn open(node: &NimbusServe) -> Self {
        let client = HyperClient::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let request = http::Request::get(format!("http://{}{LOGS}?follow=true&limit=1", node.addr))
            .header("authorization", format!("Bearer {ADMIN}"))
            .body(Empty::new())
            .expect("request");
        let response = tokio::time::timeout(Duration::from_secs(30), client.request(request))
            .await
            .expect("a response head in time")
            .expect("a response");
        assert_eq!(response.status(), 200);
        Self {
            body: response.into_body(),
            text: String::new(),
        }
    }

    /// Reads until an SSE `data:` line holding `id` has arrived (within
    /// `within`); returns that event's JSON.
    async fn event_of(&mut self, id: &str, within: Duration) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(event) = self
                .text
                .split("\n\n")
                .filter_map(|e| e.strip_prefix("data: "))
                .find(|data| data.contains(id))
            {
                return serde_json::from_str(event).expect("an event's JSON");
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame())
                .await
                .unwrap_or_else(|_| panic!("no event of {id} within {within:?}:\n{}", self.text))
                .expect("the stream went on")
                .expect("a frame");
            if let Ok(data) = frame.into_data() {
                self.text.push_str(&String::from_utf8_lossy(&data));
            }
        }
    }
}

/// Creates the tenant `shop` on the first node (once the cluster answers);
/// its API key.
async fn create_tenant(nodes: &[NimbusServe]) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    let created = loop {
        let r = nodes[0]
            .client()
            .with_key(ADMIN)
            .post("/admin/v1/tenants")
            .body(r#"{"name": "shop"}"#)
            .await;
        if r.status.as_u16() == 201 {
            break r.json();
        }
        assert!(
            Instant::now() < deadline,
            "no tenant: {} {}\n{}",
            r.status,
            r.text(),
            nodes[0].log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    created["api_key"].as_str().expect("a key").to_string()
}

/// Deploys compute through the first node and waits until every node runs it.
async fn deploy(nodes: &[NimbusServe], key: &str) {
    nodes[0]
        .client()
        .with_key(ADMIN)
        .put("/admin/v1/tenants/shop/functions/compute")
        .body(guests().bytes("compute"))
        .await
        .expect(201);
    let all: Vec<&NimbusServe> = nodes.iter().collect();
    on_every(&all, "compute deployed", |c| async move {
        let r = c.with_key(key).post("/shop/compute").body("3").await;
        (r.status.as_u16() == 200)
            .then_some(())
            .ok_or(format!("{} {}", r.status, r.text()))
    })
    .await;
}

/// Starts a node per name on the NATS servers at `urls`.
fn start_nodes(urls: &[String], names: &[&str], replicas: usize) -> Vec<(ServeDir, NimbusServe)> {
    names
        .iter()
        .map(|node| {
            let dir = ServeDir::new(&node_config(urls, node, replicas));
            let serve = dir.start();
            (dir, serve)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invocation_logs_of_one_node_are_listed_read_followed_and_deleted_through_every_node() {
    let nats = NatsServer::cluster_current();
    let urls: Vec<String> = nats.iter().map(NatsServer::url).collect();
    let (_dirs, nodes): (Vec<ServeDir>, Vec<NimbusServe>) =
        start_nodes(&urls, &["node-a", "node-b", "node-c"], 3)
            .into_iter()
            .unzip();
    let admin = |i: usize| nodes[i].client().with_key(ADMIN);
    let all: Vec<&NimbusServe> = nodes.iter().collect();

    // A fresh cluster elects its leaders first.
    let key = create_tenant(&nodes).await;
    deploy(&nodes, &key).await;

    // Invoked through A: listed, and read by id, through B and C.
    let first = invoke(&nodes[0], &key, 100).await;
    let took = on_every(&all[1..], "A's invocation's logs", |c| {
        let first = first.clone();
        async move {
            let listed = logs_of(&c, "").await?;
            ids(&listed)
                .contains(&first)
                .then_some(())
                .ok_or(format!("{listed:?}"))
        }
    })
    .await;
    eprintln!(
        "A's logs were listed on B and C {} ms after its answer",
        took.as_millis()
    );
    for node in &nodes[1..] {
        let listed = logs_of(&node.client(), "").await.expect("listed");
        let entry = listed
            .iter()
            .find(|e| e["invocation_id"] == first.as_str())
            .expect("A's entry");
        assert_printed(entry, &first, 100, 25);
        let one = logs_of(&node.client(), &format!("?invocation_id={first}"))
            .await
            .expect("read by id");
        assert_eq!(one.len(), 1, "{one:?}");
        assert_eq!(&one[0], entry);
        let last = logs_of(&node.client(), "?limit=1").await.expect("limit 1");
        assert_eq!(last.len(), 1, "{last:?}");
    }

    // Followed on C while B runs it.
    let mut follow = Follow::open(&nodes[2]).await;
    let second = invoke(&nodes[1], &key, 10).await;
    let event = follow.event_of(&second, Duration::from_secs(10)).await;
    assert_printed(&event, &second, 10, 4);
    drop(follow);
    on_every(&all, "both invocations' logs", |c| {
        let want = [first.clone(), second.clone()];
        async move {
            let got = ids(&logs_of(&c, "").await?);
            (got.iter().filter(|id| want.contains(id)).count() == 2)
                .then_some(())
                .ok_or(format!("{got:?}"))
        }
    })
    .await;

    // The function deleted on A: deployed again, it has no logs on any node.
    admin(0)
        .delete("/admin/v1/tenants/shop/functions/compute")
        .await
        .expect_status_in(&[200, 204]);
    on_every(&all, "the deletion", |c| {
        let key = key.clone();
        async move {
            let r = c.with_key(&key).post("/shop/compute").body("3").await;
            (r.status.as_u16() == 404)
                .then_some(())
                .ok_or(format!("{} {}", r.status, r.text()))
        }
    })
    .await;
    deploy(&nodes, &key).await;
    on_every(&all, "no logs after the deletion", |c| {
        let gone = [first.clone(), second.clone()];
        async move {
            let got = ids(&logs_of(&c, "").await?);
            (!got.iter().any(|id| gone.contains(id)))
                .then_some(())
                .ok_or(format!("{got:?}"))
        }
    })
    .await;
    for node in nodes {
        node.stop();
    }
}

/// The same through a single nats-server 2.9 (the suite's default server):
/// listed, read by id and followed through the other node; and what a node
/// ran while NATS was down is shared once NATS is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invocation_logs_are_shared_on_a_single_nats_2_9_server() {
    let mut nats = NatsServer::start();
    let (_dirs, nodes): (Vec<ServeDir>, Vec<NimbusServe>) =
        start_nodes(&[nats.url()], &["node-a", "node-b"], 1)
            .into_iter()
            .unzip();
    let key = create_tenant(&nodes).await;
    deploy(&nodes, &key).await;
    let first = invoke(&nodes[0], &key, 100).await;
    on_every(&[&nodes[1]], "A's invocation's logs", |c| {
        let first = first.clone();
        async move {
            let one = logs_of(&c, &format!("?invocation_id={first}")).await?;
            match one.as_slice() {
                [entry] => {
                    assert_printed(entry, &first, 100, 25);
                    Ok(())
                }
                _ => Err(format!("{one:?}")),
            }
        }
    })
    .await;
    let mut follow = Follow::open(&nodes[1]).await;
    let second = invoke(&nodes[0], &key, 10).await;
    let event = follow.event_of(&second, Duration::from_secs(10)).await;
    assert_printed(&event, &second, 10, 4);
    drop(follow);
    let listed = ids(&logs_of(&nodes[1].client(), "?limit=2")
        .await
        .expect("listed"));
    assert_eq!(listed, [first.clone(), second.clone()]);

    // With NATS away, A still shows what it ran; once NATS is back, B does.
    nats.kill();
    let third = invoke(&nodes[0], &key, 20).await;
    let outage = Instant::now();
    let own = ids(&logs_of(&nodes[0].client(), "?limit=3")
        .await
        .expect("A's own"));
    assert_eq!(own, [first.clone(), second.clone(), third.clone()]);
    assert!(
        outage.elapsed() < Duration::from_secs(2),
        "{:?}",
        outage.elapsed()
    );
    nats.restart();
    on_every(&[&nodes[1]], "the logs kept while NATS was away", |c| {
        let want = [first.clone(), second.clone(), third.clone()];
        async move {
            let got = ids(&logs_of(&c, "?limit=3").await?);
            (got == want).then_some(()).ok_or(format!("{got:?}"))
        }
    })
    .await;
    for node in nodes {
        node.stop();
    }
}
