//! The deployment registry shared by three `nimbus serve` nodes on a
//! three-server NATS cluster (2.10+: a tenant's deletion also deletes its
//! key-value data, which refuses a replicated 2.9 bucket):
//! what the admin API changes on one node — tenants, keys, deploys, alias
//! moves, rollback, routes, deletions — shows on the others, and a node
//! killed with SIGKILL comes back with all of it; and a node restarted
//! while NATS is down starts from its own copy of the registry.

use std::time::{Duration, Instant};

use nimbus_http::VERSION_HEADER;

use crate::support::{Client, NatsServer, NimbusServe, STREAM_LIMITS, ServeDir, guests, metric_in};

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

/// `POST /shop/echo` with `key` answers `body` from `version`.
async fn echoes(c: Client, key: &str, version: &str) -> Result<(), String> {
    let r = c.with_key(key).post("/shop/echo").body("hi").await;
    let got = (
        r.status.as_u16(),
        r.header(VERSION_HEADER).map(String::from),
    );
    if got == (200, Some(version.to_string())) && r.text() == "hi" {
        Ok(())
    } else {
        Err(format!("{got:?} {}", r.text()))
    }
}

async fn status_is(c: Client, key: &str, path: &str, want: u16) -> Result<(), String> {
    let r = c.with_key(key).post(path).body("hi").await;
    if r.status.as_u16() == want {
        Ok(())
    } else {
        Err(format!("{} {}", r.status, r.text()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_admin_api_changes_on_one_node_shows_on_every_node_and_survives_kill_9() {
    let nats = NatsServer::cluster_current();
    let urls: Vec<String> = nats.iter().map(NatsServer::url).collect();
    let dirs: Vec<ServeDir> = ["node-a", "node-b", "node-c"]
        .iter()
        .map(|node| ServeDir::new(&node_config(&urls, node)))
        .collect();
    let mut nodes: Vec<NimbusServe> = dirs.iter().map(ServeDir::start).collect();
    let admin = |i: usize, nodes: &[NimbusServe]| nodes[i].client().with_key(ADMIN);

    // A tenant created on A (a fresh cluster elects its leaders first).
    let deadline = Instant::now() + Duration::from_secs(60);
    let created = loop {
        let r = admin(0, &nodes)
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
    let key = created["api_key"].as_str().expect("a key").to_string();
    let all: Vec<&NimbusServe> = nodes.iter().collect();
    on_every(&all, "the tenant", |c| async move {
        let r = c.with_key(ADMIN).get("/admin/v1/tenants/shop").await;
        (r.status.as_u16() == 200).then_some(()).ok_or(r.text())
    })
    .await;

    // Deployed on A: B and C answer, from the same version.
    admin(0, &nodes)
        .put("/admin/v1/tenants/shop/functions/echo")
        .body(guests().bytes("echo"))
        .await
        .expect(201);
    let took = on_every(&all, "version 1", |c| {
        let key = key.clone();
        async move { echoes(c, &key, "1").await }
    })
    .await;
    eprintln!(
        "a deploy on A answered on every node {} ms later",
        took.as_millis()
    );

    // A second version deployed on B moves `live` everywhere; rolled back
    // on C, everywhere again.
    let v2 = admin(1, &nodes)
        .put("/admin/v1/tenants/shop/functions/echo?fuel=2000000000")
        .body(guests().bytes("echo"))
        .await
        .expect(200)
        .json();
    assert_eq!(v2["version"], 2, "{v2}");
    on_every(&all, "version 2", |c| {
        let key = key.clone();
        async move { echoes(c, &key, "2").await }
    })
    .await;
    admin(2, &nodes)
        .post("/admin/v1/tenants/shop/functions/echo/rollback")
        .await
        .expect(200);
    on_every(&all, "the rollback", |c| {
        let key = key.clone();
        async move { echoes(c, &key, "1").await }
    })
    .await;

    // A key added on B works on C; a route added on C works on A.
    let second = admin(1, &nodes)
        .post("/admin/v1/tenants/shop/keys")
        .await
        .expect(201)
        .json()["api_key"]
        .as_str()
        .expect("a key")
        .to_string();
    on_every(&all, "the new key", |c| {
        let key = second.clone();
        async move { echoes(c, &key, "1").await }
    })
    .await;
    admin(2, &nodes)
        .put("/admin/v1/routes")
        .body(r#"{"path": "/api/echo", "tenant": "shop", "function": "echo@2", "public": true}"#)
        .await
        .expect_status_in(&[200, 201, 204]);
    on_every(&all, "the route", |c| async move {
        let r = c.post("/api/echo").body("hi").await;
        let v = r.header(VERSION_HEADER).map(String::from);
        (r.status.as_u16() == 200 && v.as_deref() == Some("2"))
            .then_some(())
            .ok_or(format!("{} {v:?} {}", r.status, r.text()))
    })
    .await;

    // Every node applied changes it did not make.
    for node in &nodes {
        let text = node.client().get("/metrics").await.expect(200).text();
        assert_eq!(metric_in(&text, "nimbus_registry_watching"), Some(1.0));
        assert!(
            metric_in(&text, "nimbus_registry_changes_applied_total").unwrap_or(0.0) >= 1.0,
            "{text}"
        );
    }

    // C killed and started again: it loads everything from the cluster.
    let c = nodes.pop().expect("node c");
    c.kill_9();
    nodes.push(dirs[2].start());
    let restarted = [&nodes[2]];
    on_every(&restarted, "version 1 after kill -9", |c| {
        let key = key.clone();
        async move { echoes(c, &key, "1").await }
    })
    .await;
    let versions = admin(2, &nodes)
        .get("/admin/v1/tenants/shop/functions/echo/versions")
        .await
        .expect(200)
        .json();
    assert_eq!(
        versions["versions"].as_array().map(Vec::len),
        Some(2),
        "{versions}"
    );

    // The function deleted on the restarted C is gone from A and B (its
    // tenant's other function stays).
    admin(0, &nodes)
        .put("/admin/v1/tenants/shop/functions/other")
        .body(guests().bytes("echo"))
        .await
        .expect(201);
    admin(2, &nodes)
        .delete("/admin/v1/tenants/shop/functions/echo")
        .await
        .expect_status_in(&[200, 204]);
    let all: Vec<&NimbusServe> = nodes.iter().collect();
    on_every(&all, "the deletion", |c| {
        let key = key.clone();
        async move { status_is(c, &key, "/shop/echo", 404).await }
    })
    .await;

    on_every(&all, "the other function", |c| {
        let key = key.clone();
        async move { status_is(c, &key, "/shop/other", 200).await }
    })
    .await;

    // The tenant deleted on A: its functions are gone and its keys refused
    // everywhere.
    admin(0, &nodes)
        .delete("/admin/v1/tenants/shop")
        .await
        .expect(204);
    on_every(&all, "the tenant's deletion", |c| {
        let key = key.clone();
        async move {
            status_is(c.clone(), &key, "/shop/other", 404).await?;
            let r = c.with_key(&key).get("/queues/v1/shop/orders").await;
            (r.status.as_u16() == 401).then_some(()).ok_or(format!(
                "queue API: {} {}",
                r.status,
                r.text()
            ))
        }
    })
    .await;
    for node in nodes {
        node.stop();
    }
}

/// A node restarted while its NATS is down starts from its own copy of the
/// registry (`<data_dir>/registry-mirror.json`) and its compile cache: it
/// serves the tenant, key and version it had, says NATS is unavailable,
/// and takes the changes made once NATS is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_while_nats_is_down_serves_what_it_had_and_catches_up() {
    let mut nats = NatsServer::start();
    let urls = vec![nats.url()];
    // One server: replicas 1.
    let config = |node: &str| node_config(&urls, node).replace("replicas = 3", "replicas = 1");
    let dirs = [
        ServeDir::new(&config("node-a")),
        ServeDir::new(&config("node-b")),
    ];
    let a = dirs[0].start();
    let b = dirs[1].start();
    let created = a
        .client()
        .with_key(ADMIN)
        .post("/admin/v1/tenants")
        .body(r#"{"name": "shop"}"#)
        .await
        .expect(201)
        .json();
    let key = created["api_key"].as_str().expect("a key").to_string();
    a.client()
        .with_key(ADMIN)
        .put("/admin/v1/tenants/shop/functions/echo")
        .body(guests().bytes("echo"))
        .await
        .expect(201);
    on_every(&[&a, &b], "version 1", |c| {
        let key = key.clone();
        async move { echoes(c, &key, "1").await }
    })
    .await;

    // B dies, then NATS; B starts again with no NATS to read.
    b.kill_9();
    nats.kill();
    let b = dirs[1].start();
    assert!(
        b.log()
            .contains("starting from this node's copy of the registry"),
        "{}",
        b.log()
    );
    echoes(b.client(), &key, "1")
        .await
        .expect("served from its copy");
    status_is(b.client(), "not-a-key", "/shop/echo", 401)
        .await
        .expect("keys as they were");
    let why = b.client().get("/readyz/cluster").await.expect(503).text();
    assert!(why.contains("NATS disconnected"), "{why}");

    // NATS returns: a version deployed on A reaches B through its watch,
    // from the copy's revision on.
    nats.restart();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = a
            .client()
            .with_key(ADMIN)
            .put("/admin/v1/tenants/shop/functions/echo?fuel=2000000000")
            .body(guests().bytes("echo"))
            .await;
        if r.status.as_u16() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no second version: {} {}\n{}",
            r.status,
            r.text(),
            a.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    on_every(&[&a, &b], "version 2", |c| {
        let key = key.clone();
        async move { echoes(c, &key, "2").await }
    })
    .await;
    b.client().get("/readyz/cluster").await.expect(200);
    a.stop();
    b.stop();
}
