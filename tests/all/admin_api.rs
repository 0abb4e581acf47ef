//! The gateway's admin API for functions end to end, over real sockets:
//! deploying, listing, replacing and deleting components, grants on
//! deploy, and the invocation logs. Only the admin key opens it.

use std::time::Instant;

use nimbus_core::Outcome;
use nimbus_http::{GRANTS_HEADER, INVOCATION_ID_HEADER};

use crate::support::{
    ACME_KEY, ADMIN_KEY, FUNCTIONS, GatewayHost, acme_series, gateway, guests, metric, record,
    serve, wait_for,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_deploys_lists_replaces_and_deletes() {
    let gw = GatewayHost::start(|b| b.admin_key(ADMIN_KEY)).await;
    let (host, anyone, acme, admin) = (gw.host(), &gw.anyone, &gw.acme, &gw.admin);
    let web = format!("{FUNCTIONS}/web");
    let hello = guests().bytes("hello-http");

    // Without the admin key nothing happens: missing, wrong, a tenant's key.
    for key in [None, Some("wrong"), Some(ACME_KEY)] {
        let r = anyone
            .put(&web)
            .maybe_key(key)
            .body(hello.clone())
            .await
            .expect(401);
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        anyone.get(FUNCTIONS).maybe_key(key).await.expect(401);
        anyone.get(&web).maybe_key(key).await.expect(401);
        anyone.delete(&web).maybe_key(key).await.expect(401);
    }
    assert!(host.functions("acme").is_empty());

    // Create: 201, then it serves.
    let r = admin.put(&web).body(hello.clone()).await.expect(201);
    let body = r.json();
    assert_eq!(
        (&body["tenant"], &body["function"], &body["kind"]),
        (&"acme".into(), &"web".into(), &"http".into()),
        "{body}"
    );
    let r = acme.get("/acme/web").await.expect(200);
    assert_eq!(r.text(), "Hello from Nimbus!\n");

    // Replace: 200, with overrides from the query.
    let r = admin
        .put(&format!("{web}?timeout_ms=2000&public=true"))
        .body(hello.clone())
        .await
        .expect(200);
    let body = r.json();
    assert_eq!(body["limits"]["timeout_ms"], 2000, "{body}");
    assert_eq!(body["public"], true, "{body}");
    // Public now: no key needed.
    anyone.get("/acme/web").await.expect(200);
    // An unknown query parameter is refused.
    admin
        .put(&format!("{web}?bogus=1"))
        .body(hello.clone())
        .await
        .expect(400);

    // Listed, and readable one by one.
    let list = admin.get(FUNCTIONS).await.expect(200).json();
    let names: Vec<&str> = list["functions"]
        .as_array()
        .expect("functions array")
        .iter()
        .filter_map(|f| f["function"].as_str())
        .collect();
    assert_eq!(names, ["web"], "{list}");
    let r = admin.get(&web).await.expect(200);
    assert_eq!(r.json()["limits"]["timeout_ms"], 2000);

    // Invalid bytes: 400 with the core's message; the old version keeps
    // serving.
    let r = admin
        .put(&web)
        .body("definitely not wasm")
        .await
        .expect(400);
    let error = r.json()["error"].as_str().unwrap_or_default().to_string();
    assert!(
        error.contains("invalid component") && error.contains("not a WebAssembly binary"),
        "{error}"
    );
    // Also for a body above axum's default 2 MiB extractor limit, well under
    // the core's 32 MiB component limit: the core decides, not axum.
    let mut large = b"not wasm either".to_vec();
    large.resize(3 << 20, 0);
    let r = admin.put(&web).body(large).await.expect(400);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap_or_default()
            .contains("not a WebAssembly binary"),
        "{}",
        r.text()
    );
    let r = acme.get("/acme/web").await.expect(200);
    assert_eq!(r.text(), "Hello from Nimbus!\n");

    // Unknown tenant: 404.
    admin
        .put("/admin/v1/tenants/nobody/functions/web")
        .body(hello.clone())
        .await
        .expect(404);
    admin
        .get("/admin/v1/tenants/nobody/functions")
        .await
        .expect(404);

    // Delete: 204, then the function is gone.
    admin.delete(&web).await.expect(204);
    acme.get("/acme/web").await.expect(404);
    admin.get(&web).await.expect(404);
    admin.delete(&web).await.expect(404);
    let r = admin.get(FUNCTIONS).await.expect(200);
    assert_eq!(r.json()["functions"], serde_json::json!([]));

    // A function created again under a deleted one's name starts afresh:
    // key-protected, whatever the deleted one was.
    let r = admin.put(&web).body(hello.clone()).await.expect(201);
    assert_eq!(r.json()["public"], false, "{}", r.text());
    anyone.get("/acme/web").await.expect(401);
    acme.get("/acme/web").await.expect(200);

    // A gateway without admin keys has its admin API switched off.
    let closed = serve(gateway(host, |b| b).router()).await;
    closed
        .client
        .get(FUNCTIONS)
        .key(ADMIN_KEY)
        .await
        .expect(403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_a_function_never_drops_in_flight_requests() {
    let gw = GatewayHost::start(|b| b.admin_key(ADMIN_KEY)).await;
    let (host, acme, admin) = (gw.host(), &gw.acme, &gw.admin);
    let web = format!("{FUNCTIONS}/web");
    admin
        .put(&web)
        .body(guests().bytes("hello-http"))
        .await
        .expect(201);

    let slow_client = acme.clone();
    let slow = tokio::spawn(async move { slow_client.get("/acme/web/sleep/8000").await });
    let in_flight = acme_series("nimbus_invocations_in_flight", "web");
    wait_for("the slow request to be running", || {
        metric(host, &in_flight) == Some(1.0)
    })
    .await;

    // Compiling the replacement takes a few hundred milliseconds, seconds
    // on a loaded machine: the slow request sleeps long enough to outlast it.
    let replacing = Instant::now();
    admin
        .put(&web)
        .body(guests().bytes("wstd-http"))
        .await
        .expect(200);
    let r = acme.get("/acme/web").await.expect(200);
    assert_eq!(r.text(), "Hello from wstd on Nimbus!\n");
    assert!(
        !slow.is_finished(),
        "the slow request ended before the replacement served ({:?} after it started \
         replacing): the test proves nothing",
        replacing.elapsed()
    );

    let slow = slow.await.expect("task").expect(200);
    assert_eq!(slow.text(), "slept");
    let records = gw.records();
    assert_eq!(records.len(), 2);
    assert!(records.iter().all(|r| r.outcome == Outcome::Success));
    assert_eq!(record(&records, slow.invocation_id()).function, "web");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_deploys_grants_and_serves_invocation_logs() {
    let gw = GatewayHost::start(|b| b.admin_key(ADMIN_KEY)).await;
    let (acme, admin) = (&gw.acme, &gw.admin);
    let reader = format!("{FUNCTIONS}/reader");
    let bytes = guests().bytes("config-reader");

    // Without a config grant the component deploys, and the answer names
    // the import whose calls will be denied.
    let r = admin.put(&reader).body(bytes.clone()).await.expect(201);
    let notes = r.json()["ungranted_imports"].to_string();
    assert!(notes.contains("wasi:config/store"), "{}", r.text());
    // Malformed grants are refused too.
    admin
        .put(&reader)
        .header(GRANTS_HEADER, "{\"config\": 5}")
        .body(bytes.clone())
        .await
        .expect(400);
    admin
        .put(&reader)
        .header(GRANTS_HEADER, r#"{"config": {"greeting": "hi over http"}}"#)
        .body(bytes.clone())
        .await
        .expect(200);
    let r = acme.post("/acme/reader").body("greeting").await.expect(200);
    assert_eq!(r.text(), "hi over http");
    let id = r.header(INVOCATION_ID_HEADER).expect("id").to_string();
    acme.post("/acme/reader").body("nope").await.expect(400);

    let logs = format!("{reader}/logs");
    acme.get(&logs).await.expect(401);
    let all = admin.get(&logs).await.expect(200).json();
    assert_eq!(
        all["invocations"].as_array().map(Vec::len),
        Some(2),
        "{all}"
    );
    let one = admin
        .get(&format!("{logs}?invocation_id={id}"))
        .await
        .expect(200)
        .json();
    let invocations = one["invocations"].as_array().expect("array");
    assert_eq!(invocations.len(), 1, "{one}");
    assert_eq!(invocations[0]["invocation_id"], id.as_str());
    assert_eq!(
        invocations[0]["logs"]["entries"][0]["level"], "info",
        "{one}"
    );
    admin
        .get(&format!("{logs}?invocation_id=not-a-uuid"))
        .await
        .expect(400);
    admin
        .get(&format!("{FUNCTIONS}/ghost/logs"))
        .await
        .expect(404);
}
