//! Python functions: a standard componentize-py `wasi:http/proxy`
//! component, built from `guests/python/` by the harness, deploys through
//! the admin API and serves requests unmodified.

use std::time::Duration;

use crate::support::{ADMIN_KEY, FUNCTIONS, GatewayHost, metric};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_componentize_py_http_function_deploys_and_serves() {
    let wasm = nimbus_guests::build_python("hello-http", "wasi:http/proxy@0.2.12")
        .unwrap_or_else(|e| panic!("{e}"));
    let bytes = std::fs::read(&wasm).expect("component");
    let gw = GatewayHost::start(|b| b.admin_key(ADMIN_KEY)).await;

    let web = format!("{FUNCTIONS}/py");
    // An 18 MB component: compiling it takes seconds (a minute in a debug
    // build on a busy machine).
    let r = gw
        .admin
        .put(&web)
        .timeout(Duration::from_secs(300))
        .body(bytes)
        .await
        .expect(201);
    assert_eq!(r.json()["kind"], "http", "{}", r.text());

    let r = gw.acme.get("/acme/py/greet?x=1").await.expect(200);
    assert_eq!(r.text(), "Hello from Python at /acme/py/greet?x=1\n");
    let r = gw.acme.get("/acme/py/again").await.expect(200);
    assert!(r.text().contains("/again"), "{}", r.text());

    let records = gw.records();
    assert_eq!(records.len(), 2, "one usage record per request");
    for rec in &records {
        assert_eq!(rec.outcome, nimbus_core::Outcome::Success);
        assert!(rec.fuel_consumed > 0, "fuel is billed: {rec:?}");
        assert_eq!(rec.denied_calls, 0);
    }
    assert_eq!(
        metric(gw.host(), "nimbus_component_compilations_total"),
        Some(1.0),
        "compiled once, at deploy"
    );
}
