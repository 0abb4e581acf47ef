//! Python and JavaScript functions: standard componentize-py and
//! componentize-js `wasi:http/proxy` components, built from `guests/` by
//! the harness, deploy through the admin API and serve requests unmodified.

use std::time::Duration;

use crate::support::{ADMIN_KEY, FUNCTIONS, GatewayHost, metric};

/// Deploys `wasm` as `acme/{name}` through the admin API, sends two
/// requests, and checks the answers and their billing.
async fn deploys_and_serves(wasm: std::path::PathBuf, name: &str, greeting: &str) {
    let bytes = std::fs::read(&wasm).expect("component");
    let gw = GatewayHost::start(|b| b.admin_key(ADMIN_KEY)).await;
    // A 13–18 MB component: compiling it takes seconds (a minute in a debug
    // build on a busy machine).
    let r = gw
        .admin
        .put(&format!("{FUNCTIONS}/{name}"))
        .timeout(Duration::from_secs(300))
        .body(bytes)
        .await
        .expect(201);
    assert_eq!(r.json()["kind"], "http", "{}", r.text());

    let r = gw
        .acme
        .get(&format!("/acme/{name}/greet?x=1"))
        .await
        .expect(200);
    assert_eq!(r.text(), format!("{greeting} at /acme/{name}/greet?x=1\n"));
    let r = gw
        .acme
        .get(&format!("/acme/{name}/again"))
        .await
        .expect(200);
    assert!(r.text().contains("/again"), "{}", r.text());

    let records = gw.records();
    assert_eq!(records.len(), 2, "one usage record per request");
    for rec in &records {
        assert_eq!(rec.outcome, nimbus_core::Outcome::Success);
        assert!(rec.fuel_consumed > 0, "fuel is billed: {rec:?}");
        assert_eq!(rec.denied_calls, 0);
    }
    // Tests share a compile cache: this run compiled it here, or an
    // earlier test (or run) did and this deploy loaded it.
    let compiled = metric(gw.host(), "nimbus_component_compilations_total");
    let loaded = metric(gw.host(), "nimbus_component_cache_hits_total");
    assert_eq!(
        compiled.zip(loaded).map(|(c, l)| c + l),
        Some(1.0),
        "compiled or loaded once, at deploy (compiled {compiled:?}, loaded {loaded:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_componentize_py_http_function_deploys_and_serves() {
    let wasm = nimbus_guests::build_python("hello-http", "wasi:http/proxy@0.2.12")
        .unwrap_or_else(|e| panic!("{e}"));
    deploys_and_serves(wasm, "py", "Hello from Python").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_componentize_js_http_function_deploys_and_serves() {
    let wasm = nimbus_guests::build_js("hello-http", "wasi:http/proxy@0.2.12")
        .unwrap_or_else(|e| panic!("{e}"));
    deploys_and_serves(wasm, "js", "Hello from JavaScript").await;
}
