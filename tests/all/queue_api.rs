//! The gateway's queue API end to end, over real sockets: tenants post and
//! inspect their queues with their keys, operators read and redrive dead
//! letters with the admin key; checked against the host's queue store.

use http::Method;
use nimbus_core::nimbus_queue::{self, Nack, QueueConfig};

use crate::support::{ACME_KEY, ADMIN_KEY, BETA_KEY, GatewayHost, invocation_series};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_messages_are_durable_with_content_type_and_metadata() {
    let gw = GatewayHost::start(|b| b.admin_key(ADMIN_KEY)).await;
    let (host, acme, admin) = (gw.host(), &gw.acme, &gw.admin);

    let mut ids = Vec::new();
    for i in 0..3 {
        let r = acme
            .post("/queues/v1/acme/jobs/messages")
            .header("content-type", "application/json")
            .header("x-nimbus-meta-Attempt", &i.to_string())
            .header("x-nimbus-meta-source", "api test")
            .body(format!("{{\"job\": {i}}}"))
            .await
            .expect(202);
        ids.push(r.json()["id"].as_str().expect("id").to_string());
    }
    let stats = acme.get("/queues/v1/acme/jobs").await.expect(200).json();
    assert_eq!(stats["queue"], "jobs");
    assert_eq!(
        (
            &stats["visible"],
            &stats["in_flight"],
            &stats["delayed"],
            &stats["dead"]
        ),
        (&3.into(), &0.into(), &0.into(), &0.into())
    );
    assert!(stats["oldest_age_ms"].as_u64().is_some(), "{stats}");

    let got = host
        .queue_store()
        .receive("acme", "jobs", 10, nimbus_queue::now_ms())
        .expect("receive");
    assert_eq!(got.len(), 3);
    for (i, d) in got.iter().enumerate() {
        assert_eq!(d.id.to_string(), ids[i]);
        assert_eq!(d.body, format!("{{\"job\": {i}}}").into_bytes());
        assert_eq!(d.content_type.as_deref(), Some("application/json"));
        let mut meta = d.metadata.clone();
        meta.sort();
        assert_eq!(
            meta,
            [
                ("attempt".to_string(), i.to_string()),
                ("source".to_string(), "api test".to_string())
            ]
        );
    }
    // An operator may feed a tenant's queue with the admin key; a tenant
    // key is not an admin key.
    let operator = "/admin/v1/tenants/acme/queues/jobs/messages";
    acme.post(operator)
        .body("from a tenant key")
        .await
        .expect(401);
    let r = admin
        .post(operator)
        .body("from the operator")
        .await
        .expect(202);
    let id = r.json()["id"].as_str().expect("id").to_string();
    let got = host
        .queue_store()
        .receive("acme", "jobs", 10, nimbus_queue::now_ms())
        .expect("receive");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id.to_string(), id);
    assert_eq!(got[0].body, b"from the operator");
    // Posting is no invocation.
    assert_eq!(invocation_series(host, "acme"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_and_redriven_through_the_admin_api() {
    let gw = GatewayHost::start(|b| b.admin_key(ADMIN_KEY)).await;
    let (acme, admin) = (&gw.acme, &gw.admin);
    let store = gw.host().queue_store();
    store
        .configure(
            "acme",
            "orders",
            QueueConfig {
                max_receive_count: 1,
                ..QueueConfig::default()
            },
        )
        .expect("configure");
    let binary = vec![0xff, 0xfe, 0x00, 0x41];
    for body in [b"order 1".to_vec(), b"order 2".to_vec(), binary.clone()] {
        acme.post("/queues/v1/acme/orders/messages")
            .body(body)
            .await
            .expect(202);
    }
    let now = nimbus_queue::now_ms();
    for d in store.receive("acme", "orders", 10, now).expect("receive") {
        let outcome = store
            .nack("acme", "orders", &d.receipt, "handler failed", now)
            .expect("nack");
        assert_eq!(outcome, Nack::DeadLetter);
    }

    let queue = "/admin/v1/tenants/acme/queues/orders";
    let dead_letters = format!("{queue}/dead-letters");
    let redrive = format!("{queue}/redrive");
    let stats = admin.get(queue).await.expect(200).json();
    assert_eq!((&stats["visible"], &stats["dead"]), (&0.into(), &3.into()));
    assert_eq!(stats["oldest_age_ms"], serde_json::Value::Null);

    let dead = admin.get(&dead_letters).await.expect(200).json();
    let dead = dead["dead_letters"].as_array().expect("list").clone();
    assert_eq!(dead.len(), 3);
    assert_eq!(dead[0]["body"], "order 1");
    assert_eq!(dead[0]["body_encoding"], "utf-8");
    assert_eq!(dead[0]["receive_count"], 1);
    assert_eq!(dead[0]["last_error"], "handler failed");
    assert!(dead[0]["dead_at_ms"].as_u64().expect("dead_at_ms") >= now);
    assert_eq!(dead[2]["body"], "//4AQQ==");
    assert_eq!(dead[2]["body_encoding"], "base64");
    let limited = admin
        .get(&format!("{dead_letters}?limit=1"))
        .await
        .expect(200)
        .json();
    assert_eq!(limited["dead_letters"].as_array().expect("list").len(), 1);

    // Redrive one by id, then the rest without a body.
    let first = dead[0]["id"].as_str().expect("id");
    let r = admin
        .post(&redrive)
        .header("content-type", "application/json")
        .body(format!("{{\"ids\": [\"{first}\"]}}"))
        .await
        .expect(200);
    assert_eq!(r.json()["redriven"], 1);
    let stats = acme.get("/queues/v1/acme/orders").await.expect(200).json();
    assert_eq!((&stats["visible"], &stats["dead"]), (&1.into(), &2.into()));
    let r = admin.post(&redrive).await.expect(200);
    assert_eq!(r.json()["redriven"], 2);
    let back = store
        .receive("acme", "orders", 10, nimbus_queue::now_ms())
        .expect("receive");
    assert_eq!(back.len(), 3);
    assert_eq!(back[0].body, b"order 1");
    assert_eq!(back[0].receive_count, 1);
    assert_eq!(back[2].body, binary);

    // Bad ids and bodies: 400, nothing moved.
    admin
        .post(&redrive)
        .body("{\"ids\": [\"not-a-uuid\"]}")
        .await
        .expect_error(400, "expected a UUID");
    admin
        .post(&redrive)
        .body("[1, 2]")
        .await
        .expect_error(400, "redrive body");
    // The admin routes need the admin key, not a tenant's.
    for key in [None, Some(ACME_KEY)] {
        for (method, path) in [
            (Method::GET, queue),
            (Method::GET, dead_letters.as_str()),
            (Method::POST, redrive.as_str()),
        ] {
            gw.anyone
                .request(method, path)
                .maybe_key(key)
                .await
                .expect(401);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_errors_unauthorized_unknown_too_large_and_bad_names() {
    let gw = GatewayHost::start(|b| b.admin_key(ADMIN_KEY)).await;
    let (anyone, acme, admin) = (&gw.anyone, &gw.acme, &gw.admin);
    let store = gw.host().queue_store();
    store
        .configure(
            "acme",
            "small",
            QueueConfig {
                max_message_bytes: 100,
                ..QueueConfig::default()
            },
        )
        .expect("configure");
    let small = "/queues/v1/acme/small/messages";

    // No key or another tenant's key: 401, nothing sent.
    for key in [None, Some(BETA_KEY)] {
        anyone
            .post(small)
            .maybe_key(key)
            .body("sneaky")
            .await
            .expect(401);
        anyone
            .get("/queues/v1/acme/small")
            .maybe_key(key)
            .await
            .expect(401);
    }
    let stats = store
        .stats("acme", "small", nimbus_queue::now_ms())
        .expect("stats");
    assert_eq!(stats.visible, 0);

    // Unknown queues: 404 naming them, for tenants and admins alike.
    acme.get("/queues/v1/acme/ghost")
        .await
        .expect_error(404, "tenant `acme` has no queue `ghost`");
    for (method, path) in [
        (Method::GET, "/admin/v1/tenants/acme/queues/ghost"),
        (
            Method::GET,
            "/admin/v1/tenants/acme/queues/ghost/dead-letters",
        ),
        (Method::POST, "/admin/v1/tenants/acme/queues/ghost/redrive"),
    ] {
        admin
            .request(method, path)
            .await
            .expect_error(404, "has no queue `ghost`");
    }
    admin
        .get("/admin/v1/tenants/nobody/queues/ghost")
        .await
        .expect_error(404, "tenant `nobody` not found");

    // Over the queue's limit: 413 naming it, by length and by metadata.
    let limit = "limit of 100 bytes";
    acme.post(small)
        .body(vec![b'x'; 101])
        .await
        .expect_error(413, limit);
    acme.post(small)
        .chunked([vec![b'x'; 60], vec![b'x'; 60]])
        .await
        .expect_error(413, limit);
    acme.post(small)
        .header("x-nimbus-meta-note", &"n".repeat(50))
        .body(vec![b'x'; 90])
        .await
        .expect_error(413, limit);
    acme.post(small).body(vec![b'x'; 100]).await.expect(202);
    let stats = store
        .stats("acme", "small", nimbus_queue::now_ms())
        .expect("stats");
    assert_eq!(stats.visible, 1, "only the message within the limit");

    // Bad names and metadata: 400 naming the rule.
    let bad_name = "must be 1 to 80 characters";
    acme.post("/queues/v1/acme/bad.name/messages")
        .body("x")
        .await
        .expect_error(400, bad_name);
    acme.get("/queues/v1/acme/bad.name")
        .await
        .expect_error(400, bad_name);
    acme.post(small)
        .header("x-nimbus-meta-", "v")
        .body("x")
        .await
        .expect_error(400, "metadata key is empty");
}
