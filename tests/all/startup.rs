//! `nimbus serve` answers before it has loaded: `/healthz` as soon as it
//! listens, a request for a function still compiling waits for it (a 200,
//! not a 404), `/readyz` once every function is loaded. A restart on the
//! same data_dir loads every version from the compile cache: counted by
//! `nimbus_component_compilations_total` and
//! `nimbus_component_cache_hits_total`, not timed.

use std::time::{Duration, Instant};

use crate::support::{NimbusServe, ServeDir, guest_path, metric_in};

/// (function, guest, request body or `None` for a GET, answer): distinct
/// small Rust components, so each is its own compilation and cache entry.
const FUNCTIONS: [(&str, &str, Option<&str>, &str); 4] = [
    ("hello", "hello-http", None, "Hello from Nimbus!\n"),
    ("wstd", "wstd-http", None, "Hello from wstd on Nimbus!\n"),
    ("echo", "echo", Some("ping"), "ping"),
    ("compute", "compute", Some("100"), "25"),
];

/// Sends each function its request at once, all concurrently, and checks
/// every answer is its 200.
async fn every_function_answers(server: &NimbusServe) {
    let mut calls = tokio::task::JoinSet::new();
    for (name, _, body, answer) in FUNCTIONS {
        let client = server.client();
        calls.spawn(async move {
            let path = format!("/acme/{name}");
            let r = match body {
                None => client.get(&path).await,
                Some(body) => client.post(&path).body(body.to_string()).await,
            };
            assert_eq!(r.status.as_u16(), 200, "{path}: {}", r.text());
            assert_eq!(r.text(), answer, "{path}");
        });
    }
    while let Some(done) = calls.join_next().await {
        done.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    }
}

/// Waits (bounded) for the server's `nimbus ready` line.
fn wait_ready(server: &NimbusServe) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while !server.log().lines().any(|l| l == "nimbus ready") {
        assert!(
            Instant::now() < deadline,
            "nimbus serve did not get ready:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// (compilations, cache hits) the server counted.
async fn counts(server: &NimbusServe) -> (Option<f64>, Option<f64>) {
    let text = server.client().get("/metrics").await.expect(200).text();
    (
        metric_in(&text, "nimbus_component_compilations_total"),
        metric_in(&text, "nimbus_component_cache_hits_total"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nimbus_serve_answers_while_loading_and_a_restart_compiles_nothing() {
    let mut config = String::from(
        r#"
ledger = "usage.jsonl"
data_dir = "data"
compile_cache = "data/compiled"

[tenants.acme]
"#,
    );
    for (name, guest, _, _) in FUNCTIONS {
        config.push_str(&format!(
            "\n[[functions]]\ntenant = \"acme\"\nname = \"{name}\"\ncomponent = {:?}\npublic = true\n",
            guest_path(guest)
        ));
    }
    // A compile cache of its own, empty: every function is compiled.
    let dir = ServeDir::new(&config);
    let versions = FUNCTIONS.len() as f64;

    // Cold: right after the listening line, liveness answers and the
    // functions' requests wait for their compilation.
    let server = NimbusServe::start_listening(dir.config(), dir.cwd());
    let client = server.client();
    assert_eq!(client.get("/healthz").await.expect(200).text(), "ok\n");
    // Loading takes a few compilations: /readyz most likely still says
    // 503 here (200 only if it all finished already).
    let readyz = client.get("/readyz").await.status.as_u16();
    assert!(matches!(readyz, 200 | 503), "/readyz {readyz}");
    every_function_answers(&server).await;
    wait_ready(&server);
    client.get("/readyz").await.expect(200);
    assert_eq!(
        counts(&server).await,
        (Some(versions), Some(0.0)),
        "cold: every version compiled, nothing cached:\n{}",
        server.log()
    );
    server.stop();

    // Warm: the registry restores the versions and the cache holds every
    // artifact; the requests sent right after listening wait for them.
    let server = NimbusServe::start_listening(dir.config(), dir.cwd());
    let client = server.client();
    client.get("/healthz").await.expect(200);
    every_function_answers(&server).await;
    wait_ready(&server);
    client.get("/readyz").await.expect(200);
    assert_eq!(
        counts(&server).await,
        (Some(0.0), Some(versions)),
        "warm: every version loaded from the cache, none compiled:\n{}",
        server.log()
    );
    server.stop();

    assert_eq!(
        dir.records().len(),
        2 * FUNCTIONS.len(),
        "every request billed"
    );
}
