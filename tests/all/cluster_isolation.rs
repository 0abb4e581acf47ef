//! Tenant isolation across two `nimbus serve` nodes on one real
//! `nats-server`: the name tricks of the single-node isolation tests
//! (tenants `a`, `ab` and `a_b`, whose names concatenate alike with their
//! stores, containers, queues and functions; dots, wildcards and paths in
//! keys and object names) written through one node and probed through the
//! other, where every name reaches the same JetStream buckets and streams.
//! Then NATS dies under the nodes: the failed calls are counted in
//! `nimbus_jetstream_errors_total` by the part that made them, and the data
//! is all there when NATS returns.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::support::{Client, NatsServer, NimbusServe, STREAM_LIMITS, ServeDir, metric_in};

const ADMIN: &str = "admin-key";

fn node_config(url: &str, node: &str) -> String {
    let mut config = format!(
        r#"
ledger = "usage.jsonl"
data_dir = "data"
admin_keys = ["{ADMIN}"]
[cluster]
urls = ["{url}"]
node = "{node}"
replicas = 1
{STREAM_LIMITS}"#
    );
    let stores = [
        ("a", r#"["bc", "b_c", "b.c", "b", "shared"]"#),
        ("ab", r#"["c", "shared"]"#),
        ("a_b", r#"["c", "shared"]"#),
    ];
    for (tenant, kv_stores) in stores {
        config.push_str(&format!(
            "[tenants.{tenant}]\napi_keys = [\"{tenant}-key\"]\n\
             [[functions]]\ntenant = \"{tenant}\"\nname = \"kv\"\n\
             component = \"counter.wasm\"\nkv_stores = {kv_stores}\n"
        ));
    }
    // a/b_c and a_b/c: one name under a naive `tenant_function` join.
    for (tenant, function) in [("a", "b_c"), ("a_b", "c")] {
        config.push_str(&format!(
            "[[functions]]\ntenant = \"{tenant}\"\nname = \"{function}\"\n\
             component = \"compute.wasm\"\n"
        ));
    }
    config
}

fn client(node: &NimbusServe, tenant: &str) -> Client {
    node.client().with_key(&format!("{tenant}-key"))
}

/// `command` as the event of `tenant/kv` on `node`: (status, answer).
async fn kv(node: &NimbusServe, tenant: &str, command: &str) -> (u16, String) {
    let r = client(node, tenant)
        .post(&format!("/{tenant}/kv"))
        .body(command.to_string())
        .await;
    (r.status.as_u16(), r.text())
}

async fn kv_ok(node: &NimbusServe, tenant: &str, command: &str) -> String {
    let (status, answer) = kv(node, tenant, command).await;
    assert_eq!(status, 200, "{tenant}: {command}: {answer}\n{}", node.log());
    answer
}

/// A `get` of an absent key is the guest's invalid input, a 400: its only
/// one for a well-formed command (a kv error is a failure, a 502).
async fn kv_missing(node: &NimbusServe, tenant: &str, store: &str, key: &str) {
    let (status, answer) = kv(node, tenant, &format!("get {store} {key}")).await;
    assert_eq!(
        status, 400,
        "{tenant} reads {store:?} {key:?}: {status} {answer}"
    );
}

fn lines(s: &str) -> BTreeSet<String> {
    s.lines().map(str::to_string).collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

async fn metric(node: &NimbusServe, series: &str) -> Option<f64> {
    let text = node.client().get("/metrics").await.expect(200).text();
    metric_in(&text, series)
}

/// Waits (bounded) until `check` holds on `node`.
async fn until<F, Fut>(node: &NimbusServe, what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "{what}\n{}", node.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How many messages of `tenant`'s `queue` are visible, asked of `node`.
async fn visible(node: &NimbusServe, tenant: &str, queue: &str) -> u64 {
    let r = client(node, tenant)
        .get(&format!("/queues/v1/{tenant}/{queue}"))
        .await
        .expect(200)
        .json();
    r["visible"].as_u64().expect("visible")
}

fn object_keys(listing: &serde_json::Value) -> Vec<String> {
    listing["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .map(|o| o["key"].as_str().expect("key").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_name_trick_crosses_tenants_between_nodes_and_jetstream_errors_are_counted() {
    let mut nats = NatsServer::start();
    let dirs: Vec<ServeDir> = ["node-a", "node-b"]
        .iter()
        .map(|node| {
            ServeDir::new(&node_config(&nats.url(), node))
                .copy_guest("kv-counter", "counter.wasm")
                .copy_guest("compute", "compute.wasm")
        })
        .collect();
    let nodes: Vec<NimbusServe> = dirs.iter().map(ServeDir::start).collect();
    let (na, nb) = (&nodes[0], &nodes[1]);

    // --- Key-value: written by `a` through A.
    kv_ok(na, "a", "set bc k from-a").await;
    kv_ok(na, "a", "set b_c k a-underscore").await;
    kv_ok(na, "a", "set b.c d store-with-a-dot").await;
    kv_ok(na, "a", "set b c.d key-with-a-dot").await;
    // Subject wildcards and separators as keys are names like any other.
    let tricky = ["*", ">", "a.*", "k.>", "..", "../ab/c/k", "$KV.x", "k\\x"];
    for key in tricky {
        kv_ok(na, "a", &format!("set shared {key} v-{key}")).await;
    }

    // Through B: `a` sees exactly its own, each store apart.
    assert_eq!(kv_ok(nb, "a", "get bc k").await, "from-a");
    assert_eq!(kv_ok(nb, "a", "get b_c k").await, "a-underscore");
    assert_eq!(kv_ok(nb, "a", "get b.c d").await, "store-with-a-dot");
    assert_eq!(kv_ok(nb, "a", "get b c.d").await, "key-with-a-dot");
    kv_missing(nb, "a", "b", "c").await;
    kv_missing(nb, "a", "b.c", "c.d").await;
    assert_eq!(lines(&kv_ok(nb, "a", "list b").await), set(&["c.d"]));
    assert_eq!(lines(&kv_ok(nb, "a", "list b.c").await), set(&["d"]));
    assert_eq!(lines(&kv_ok(nb, "a", "list shared").await), set(&tricky));
    for key in tricky {
        assert_eq!(
            kv_ok(nb, "a", &format!("get shared {key}")).await,
            format!("v-{key}")
        );
    }
    // `ab` and `a_b` (a + "bc", a + "_b" + "c") see none of it.
    for tenant in ["ab", "a_b"] {
        for key in ["k", "d", "c.d"] {
            kv_missing(nb, tenant, "c", key).await;
        }
        assert_eq!(kv_ok(nb, tenant, "list c").await, "");
        assert_eq!(kv_ok(nb, tenant, "list shared").await, "");
        for key in tricky {
            kv_missing(nb, tenant, "shared", key).await;
        }
        // A store `a` was granted is not theirs to open: denied, and
        // billed as a denied call on the node that ran it.
        let r = client(nb, tenant)
            .post(&format!("/{tenant}/kv"))
            .body("get bc k")
            .await
            .expect(502);
        let id = r.invocation_id().to_string();
        let deadline = Instant::now() + Duration::from_secs(10);
        let record = loop {
            let found = dirs[1]
                .records()
                .into_iter()
                .find(|r| r.invocation_id.to_string() == id);
            match found {
                Some(record) => break record,
                None => assert!(Instant::now() < deadline, "B never billed {id}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!((record.tenant.as_str(), record.denied_calls), (tenant, 1));
    }
    // What `ab` writes through B stays `ab`'s, read through A.
    kv_ok(nb, "ab", "set c k from-ab").await;
    kv_ok(nb, "ab", "incr shared *").await;
    assert_eq!(kv_ok(na, "a", "get bc k").await, "from-a");
    assert_eq!(kv_ok(na, "a", "get shared *").await, "v-*");
    kv_missing(na, "a_b", "c", "k").await;
    assert_eq!(kv_ok(na, "ab", "get c k").await, "from-ab");
    assert_eq!(lines(&kv_ok(na, "ab", "list shared").await), set(&["*"]));

    // --- Blobs: `a`'s containers `b_c` and `b.c` against `a_b`'s `c`
    // and `ab`'s `c`; object names with dots, slashes and wildcards.
    let objects = ["k", "x.y", "d/e", "*", ">", "../../a_b/c/k", "%2e%2e/k"];
    for container in ["b_c", "b.c", "b"] {
        client(na, "a")
            .put(&format!("/storage/v1/a/{container}"))
            .await
            .expect(201);
    }
    for name in objects {
        let path = format!("/storage/v1/a/b_c/{}", urlencode(name));
        client(na, "a")
            .put(&path)
            .body(format!("a's {name}"))
            .await
            .expect(200);
    }
    client(na, "a")
        .put("/storage/v1/a/b/c.k")
        .body("a's b/c.k")
        .await
        .expect(200);
    client(na, "a")
        .put("/storage/v1/a/b.c/k")
        .body("a's b.c/k")
        .await
        .expect(200);
    let listing = client(nb, "a")
        .get("/storage/v1/a/b_c")
        .await
        .expect(200)
        .json();
    assert_eq!(
        object_keys(&listing).into_iter().collect::<BTreeSet<_>>(),
        set(&objects),
        "{listing}"
    );
    for name in objects {
        let path = format!("/storage/v1/a/b_c/{}", urlencode(name));
        assert_eq!(
            client(nb, "a").get(&path).await.expect(200).text(),
            format!("a's {name}")
        );
    }
    client(nb, "a")
        .get("/storage/v1/a/b.c/c.k")
        .await
        .expect(404);
    client(nb, "a").get("/storage/v1/a/b/c/k").await.expect(404);
    for tenant in ["ab", "a_b"] {
        // Their `c` does not exist until they make it, and then is empty.
        client(nb, tenant)
            .get(&format!("/storage/v1/{tenant}/c/k"))
            .await
            .expect(404);
        client(nb, tenant)
            .put(&format!("/storage/v1/{tenant}/c"))
            .await
            .expect(201);
        let listing = client(nb, tenant)
            .get(&format!("/storage/v1/{tenant}/c"))
            .await
            .expect(200)
            .json();
        assert!(object_keys(&listing).is_empty(), "{tenant}: {listing}");
        for name in objects.iter().chain(&["c/k", "b_c/k", "a/b_c/k"]) {
            let path = format!("/storage/v1/{tenant}/c/{}", urlencode(name));
            client(nb, tenant).get(&path).await.expect(404);
        }
        // `a`'s container through their own key is refused, not served.
        for name in objects {
            let path = format!("/storage/v1/a/b_c/{}", urlencode(name));
            let r = client(nb, tenant).get(&path).await;
            assert_eq!(r.status.as_u16(), 401, "{tenant} reads a's {name:?}");
            assert!(!r.text().contains("a's"));
        }
    }

    // --- Queues: a/b_c against a_b/c, and case: a/B against a/b.
    for (tenant, queue, body) in [("a", "b_c", "a b_c"), ("a", "B", "a B")] {
        client(na, tenant)
            .post(&format!("/queues/v1/{tenant}/{queue}/messages"))
            .body(body)
            .await
            .expect(202);
    }
    assert_eq!(visible(nb, "a", "b_c").await, 1);
    assert_eq!(visible(nb, "a", "B").await, 1);
    assert_eq!(visible(nb, "a", "b").await, 0);
    assert_eq!(visible(nb, "a_b", "c").await, 0);
    assert_eq!(visible(nb, "ab", "c").await, 0);

    // --- Logs and metrics: a/b_c and a_b/c, invoked through A, read
    // through B.
    let id = client(na, "a")
        .post("/a/b_c")
        .body("100")
        .await
        .expect(200)
        .invocation_id()
        .to_string();
    let logs = |tenant: &str, function: &str| {
        let path = format!("/admin/v1/tenants/{tenant}/functions/{function}/logs");
        let c = nb.client().with_key(ADMIN);
        async move {
            let r = c.get(&path).await.expect(200).json();
            r["invocations"]
                .as_array()
                .expect("invocations")
                .iter()
                .map(|e| e["invocation_id"].as_str().unwrap_or_default().to_string())
                .collect::<Vec<_>>()
        }
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while logs("a", "b_c").await != [id.clone()] {
        assert!(Instant::now() < deadline, "a/b_c's log never reached B");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(logs("a_b", "c").await.is_empty());
    assert_eq!(
        metric(
            na,
            "nimbus_invocations_total{tenant=\"a\",function=\"b_c\",outcome=\"success\"}"
        )
        .await,
        Some(1.0)
    );
    assert_eq!(
        metric(
            na,
            "nimbus_invocations_total{tenant=\"a_b\",function=\"c\",outcome=\"success\"}"
        )
        .await
        .unwrap_or(0.0),
        0.0
    );

    // --- NATS dies: the nodes answer what needs no NATS, and every
    // JetStream call that fails is counted by the part that made it.
    nats.kill();
    until(nb, "B never saw NATS go", || async {
        metric(nb, "nimbus_cluster_connected").await == Some(0.0)
    })
    .await;
    client(nb, "a").post("/a/b_c").body("10").await.expect(200);
    let (status, answer) = kv(nb, "a", "get bc k").await;
    assert_ne!(status, 200, "{answer}");
    let r = client(nb, "a").get("/storage/v1/a/b_c/k").await;
    assert!(r.status.as_u16() >= 500, "{} {}", r.status, r.text());
    let r = client(nb, "a")
        .post("/queues/v1/a/b_c/messages")
        .body("while NATS is down")
        .await;
    assert!(r.status.as_u16() >= 500, "{} {}", r.status, r.text());
    for component in ["kv", "blobs", "queues"] {
        let series = format!("nimbus_jetstream_errors_total{{component=\"{component}\"}}");
        let n = metric(nb, &series).await.unwrap_or(0.0);
        assert!(n >= 1.0, "{series} = {n}");
    }
    let ready = nb.client().get("/readyz/cluster").await.expect(503).text();
    assert!(ready.contains("NATS disconnected"), "{ready}");

    // NATS returns on its store: everything written before is there, and
    // the errors stop growing.
    nats.restart();
    until(nb, "B never reconnected", || async {
        nb.client().get("/readyz/cluster").await.status.as_u16() == 200
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while kv(nb, "a", "get bc k").await != (200, "from-a".to_string()) {
        assert!(
            Instant::now() < deadline,
            "kv did not come back\n{}",
            nb.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let errors = metric(nb, "nimbus_jetstream_errors_total{component=\"kv\"}").await;
    assert_eq!(kv_ok(nb, "ab", "get c k").await, "from-ab");
    assert_eq!(
        client(nb, "a")
            .get("/storage/v1/a/b_c/k")
            .await
            .expect(200)
            .text(),
        "a's k"
    );
    assert_eq!(visible(nb, "a", "b_c").await, 1);
    assert_eq!(
        metric(nb, "nimbus_jetstream_errors_total{component=\"kv\"}").await,
        errors
    );
    for node in nodes {
        node.stop();
    }
}

/// Percent-encodes all but letters, digits, `-`, `_` and `/` (object names
/// may have slashes), so dots reach the server as names, not path steps.
fn urlencode(name: &str) -> String {
    let mut out = String::new();
    for b in name.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'/' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
