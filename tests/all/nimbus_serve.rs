//! The real binary's gateway, `nimbus serve`: it serves what its config
//! declares, drains on SIGTERM and refuses a bad config naming the file and
//! the key.

use std::process::Stdio;
use std::time::{Duration, Instant};

use http::StatusCode;
use nimbus_core::Outcome;

use crate::support::{
    ACME_KEY, ADMIN_KEY, FUNCTIONS, ServeDir, acme_series, metric_in, nimbus, record,
};

/// `config` in a directory of its own with copies of the guests it names,
/// so its relative paths resolve against the config file.
fn serve_dir(config: &str) -> ServeDir {
    ServeDir::new(config)
        .copy_guest("hello-http", "hello.wasm")
        .copy_guest("wstd-http", "wstd.wasm")
}

const SERVE_CONFIG: &str = r#"
ledger = "usage.jsonl"
admin_keys = ["admin-key"]
drain_timeout_ms = 5000

[tenants.acme]
api_keys = ["acme-key"]
timeout_ms = 5000

[[functions]]
tenant = "acme"
name = "hello"
component = "hello.wasm"

[[functions]]
tenant = "acme"
name = "wstd"
component = "wstd.wasm"
public = true

[[routes]]
path = "/hi"
tenant = "acme"
function = "hello"
public = true

[[routes]]
path = "/"
host = "fn.example.com"
tenant = "acme"
function = "wstd"
"#;

/// Waits until acme's `function` has an invocation in flight, by scraping
/// the server's `/metrics`.
async fn wait_until_running(server: &crate::support::NimbusServe, function: &str) {
    let in_flight = acme_series("nimbus_invocations_in_flight", function);
    for _ in 0..200 {
        let r = server.client().get("/metrics").await.expect(200);
        if metric_in(&r.text(), &in_flight) == Some(1.0) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the slow request never started:\n{}", server.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nimbus_serve_serves_its_config_and_drains_on_sigterm() {
    // Run from elsewhere: the config's relative paths are its own.
    let dir = serve_dir(SERVE_CONFIG);
    let mut server = dir.start();
    let anyone = server.client();
    let acme = anyone.with_key(ACME_KEY);

    // The config's routes, keys and public flags.
    let r = anyone.get("/hi").await.expect(200);
    assert_eq!(r.text(), "Hello from Nimbus!\n");
    anyone.get("/acme/hello").await.expect(401);
    acme.get("/acme/hello").await.expect(200);
    let r = anyone.get("/acme/wstd/").await.expect(200);
    assert_eq!(r.text(), "Hello from wstd on Nimbus!\n");
    let r = anyone
        .get("/elsewhere")
        .header("host", "fn.example.com")
        .await
        .expect(200);
    assert_eq!(r.text(), "Hello from wstd on Nimbus!\n");
    anyone.get("/readyz").await.expect(200);
    let r = anyone.get(FUNCTIONS).key(ADMIN_KEY).await.expect(200);
    assert_eq!(r.json()["functions"].as_array().map(Vec::len), Some(2));

    // A request in flight when SIGTERM arrives...
    let slow_client = acme.clone();
    let slow = tokio::spawn(async move { slow_client.get("/acme/hello/sleep/1500").await });
    wait_until_running(&server, "hello").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.terminate();

    // ...while new connections are refused once draining starts.
    let draining = Instant::now();
    while !server.log().contains("nimbus draining") {
        assert!(
            draining.elapsed() < Duration::from_secs(5),
            "no drain:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let fresh = server.client();
    match fresh.get("/readyz").try_send().await {
        Err(_) => {}
        Ok(r) => assert_ne!(r.status, StatusCode::OK, "still ready while draining"),
    }
    assert!(
        !slow.is_finished(),
        "the slow request ended before the drain"
    );

    // ...completes, and then the process exits cleanly.
    let slow = slow.await.expect("task").expect(200);
    assert_eq!(slow.text(), "slept");
    let status = server.wait_exit(Duration::from_secs(5));
    let log = server.log();
    assert!(status.success(), "{status}:\n{log}");
    assert!(log.contains("nimbus stopped"), "{log}");
    assert!(!log.contains("drain timeout"), "{log}");
    // And the request is in the ledger, next to the config.
    let records = dir.records();
    let rec = record(&records, slow.invocation_id());
    assert_eq!(
        (rec.tenant.as_str(), rec.function.as_str(), rec.outcome),
        ("acme", "hello", Outcome::Success)
    );
    assert!(rec.wall_duration_us >= 1_500_000, "{rec:?}");
    assert_eq!(records.len(), 5, "{records:?}");
    assert!(!dir.cwd().join("usage.jsonl").exists());
}

#[test]
fn nimbus_serve_refuses_a_bad_config_naming_the_file_and_key() {
    let cases: &[(&str, &[&str])] = &[
        (
            "[tenants.acme]\n[[functions]]\ntenant = \"ghost\"\nname = \"hello\"\ncomponent = \"hello.wasm\"\n",
            &[
                "functions[0] (ghost/hello).tenant",
                "`ghost` is not declared",
            ],
        ),
        (
            "[tenants.acme]\nrate_limit = 5\n",
            &["unknown field `rate_limit`"],
        ),
        (
            "[tenants.acme]\n[[functions]]\ntenant = \"acme\"\nname = \"hello\"\ncomponent = \"missing.wasm\"\n",
            &["functions[0] (acme/hello).component", "does not exist"],
        ),
        (
            "[tenants.acme]\n[[routes]]\npath = \"/x\"\ntenant = \"acme\"\nfunction = \"nope\"\n",
            &["routes[0].function", "`acme/nope` is not declared"],
        ),
        (
            "[pool]\nmax_instances = 0\n",
            &["pool.max_instances: must be above 0"],
        ),
        (
            "[pool]\nmax_instance = 4\n",
            &["unknown field `max_instance`"],
        ),
        ("[pool]\npagemap_scan = \"yes\"\n", &["pagemap_scan"]),
        (
            "[connections]\nheader_read_timeout_ms = 0\n",
            &["connections.header_read_timeout_ms: must be above 0"],
        ),
        (
            "[connections]\nmax_connection = 5\n",
            &["unknown field `max_connection`"],
        ),
    ];
    for (config, wanted) in cases {
        let dir = serve_dir(config);
        let out = nimbus()
            .arg("serve")
            .arg("--config")
            .arg(dir.config())
            .args(["--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .output()
            .expect("run nimbus serve");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{config}: accepted:\n{stderr}");
        assert!(!stderr.contains("listening"), "{stderr}");
        assert!(
            stderr.contains(&dir.config().display().to_string()),
            "{config}: the file is not named:\n{stderr}"
        );
        for w in *wanted {
            assert!(stderr.contains(w), "{config}: {w:?} missing:\n{stderr}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_section_sizes_the_instance_pool() {
    let dir = serve_dir(
        r#"
ledger = "usage.jsonl"

[pool]
max_instances = 1
memory_keep_resident = 0
pagemap_scan = false
admission_wait_ms = 250

[tenants.acme]
api_keys = ["acme-key"]
timeout_ms = 5000

[[functions]]
tenant = "acme"
name = "hello"
component = "hello.wasm"
public = true
"#,
    );
    let server = dir.start();
    let anyone = server.client();
    anyone.get("/acme/hello/").await.expect(200);

    // One instance alive at a time, host-wide: while one request sleeps, the
    // next is throttled (the tenant's own limit, 64, is far away).
    let slow_client = anyone.clone();
    let slow = tokio::spawn(async move { slow_client.get("/acme/hello/sleep/1000").await });
    wait_until_running(&server, "hello").await;
    let refused = anyone.get("/acme/hello/").await.expect(429);
    let log = server
        .log_once_it_has("capacity of 1 concurrent instances")
        .await;
    assert!(log.contains("capacity of 1 concurrent instances"), "{log}");
    assert_eq!(slow.await.expect("task").expect(200).text(), "slept");
    anyone.get("/acme/hello/").await.expect(200);
    drop(server);

    let records = dir.records();
    let rec = record(&records, refused.invocation_id());
    assert_eq!(rec.outcome, Outcome::Throttled, "{rec:?}");
}

/// Reads until the server closes the connection (or the bound passes, a
/// failure): everything it sent, or `None` if it never closed.
async fn read_to_close(sock: &mut tokio::net::TcpStream) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = [0u8; 4096];
        loop {
            match sock.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|()| String::from_utf8_lossy(&got).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_idle_and_surplus_connections_are_closed_while_clients_are_served() {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;
    let dir = serve_dir(
        r#"
[connections]
max_connections = 8
header_read_timeout_ms = 700
keep_alive_timeout_ms = 1000
body_read_timeout_ms = 700

[tenants.acme]
api_keys = ["acme-key"]

[[functions]]
tenant = "acme"
name = "hello"
component = "hello.wasm"
public = true
"#,
    );
    let server = dir.start();
    let addr = server.addr;

    // Slowloris: half a request head each, then nothing.
    let mut slow = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET /acme/hello/ HTTP/1.1\r\nhost: x\r\nx-slow: ")
            .await
            .expect("write");
        slow.push(s);
    }
    // A normal client is served while they hang.
    let fresh = server.client();
    let r = fresh.get("/acme/hello/").await.expect(200);
    assert_eq!(r.text(), "Hello from Nimbus!\n");
    drop(fresh);
    for s in &mut slow {
        let answer = read_to_close(s).await;
        assert_eq!(
            answer.as_deref(),
            Some(""),
            "a half-sent head was not closed by the header timeout"
        );
    }

    // Keep-alive: after its response, a connection that sends nothing more
    // is closed.
    let mut idle = TcpStream::connect(addr).await.expect("connect");
    idle.write_all(b"GET /acme/hello/ HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let answer = read_to_close(&mut idle)
        .await
        .expect("idle connection closed");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("Hello from Nimbus!\n"), "{answer}");

    // A body that stops arriving fails its request with 408.
    let mut stalled = TcpStream::connect(addr).await.expect("connect");
    stalled
        .write_all(b"POST /acme/hello/ HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nabc")
        .await
        .expect("write");
    let answer = read_to_close(&mut stalled)
        .await
        .expect("stalled body closed");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("did not arrive within 700 ms"), "{answer}");

    // The cap: with 8 connections open, the 9th is answered 503 and closed.
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(TcpStream::connect(addr).await.expect("connect"));
    }
    let mut surplus = TcpStream::connect(addr).await.expect("connect");
    let _ = surplus
        .write_all(b"GET /acme/hello/ HTTP/1.1\r\nhost: x\r\n\r\n")
        .await;
    let answer = read_to_close(&mut surplus).await.expect("surplus closed");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("connection cap"), "{answer}");
    drop(held);

    // And once those are gone, clients are served again.
    let mut served = false;
    for _ in 0..100 {
        if let Ok(r) = server.client().get("/acme/hello/").try_send().await
            && r.status == http::StatusCode::OK
        {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served, "not served after the cap:\n{}", server.log());
}
