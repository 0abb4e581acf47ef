//! Invocation logs through the real `nimbus serve`'s admin API: what a
//! function printed is there with its outcome and `REPORT` line, it
//! outlives a SIGKILL of the server, and `?follow=true` streams new
//! entries as server-sent events.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;

use crate::support::{ADMIN_KEY, NimbusServe, ServeDir, guest_path};

const KEY: &str = "acme-key";
const LOGS: &str = "/admin/v1/tenants/acme/functions/compute/logs";

/// `compute` (it prints `primes below N: C`) for tenant acme, with a data
/// directory next to the config.
fn serve_dir() -> ServeDir {
    ServeDir::new(&format!(
        r#"
admin_keys = ["{ADMIN_KEY}"]
data_dir = "data"
drain_timeout_ms = 5000

[tenants.acme]
api_keys = ["{KEY}"]

[[functions]]
tenant = "acme"
name = "compute"
component = {component:?}
"#,
        component = guest_path("compute"),
    ))
}

/// Invokes compute with `n`; its invocation id.
async fn invoke(server: &NimbusServe, n: u32) -> String {
    let r = server
        .client()
        .with_key(KEY)
        .post("/acme/compute")
        .body(n.to_string())
        .await
        .expect(200);
    r.invocation_id().to_string()
}

/// The `invocations` of a logs request (`query` appended to the path),
/// waiting for the function to be served after a restart.
async fn read_logs(server: &NimbusServe, query: &str) -> Vec<serde_json::Value> {
    let admin = server.client().with_key(ADMIN_KEY);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = admin.get(&format!("{LOGS}{query}")).await;
        if r.status.as_u16() == 404 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let body = r.expect(200).json();
        return body["invocations"].as_array().expect("invocations").clone();
    }
}

#[track_caller]
fn assert_printed(entry: &serde_json::Value, id: &str, n: u32, primes: u32) {
    assert_eq!(entry["invocation_id"], id, "{entry}");
    assert_eq!(entry["tenant"], "acme", "{entry}");
    assert_eq!(entry["function"], "compute", "{entry}");
    assert_eq!(entry["outcome"], "success", "{entry}");
    assert_eq!(
        entry["logs"]["stdout"],
        format!("primes below {n}: {primes}\n"),
        "{entry}"
    );
    let version = entry["version"].as_u64().expect("a version number");
    let report = entry["report"].as_str().expect("report");
    assert!(
        report.starts_with(&format!("REPORT RequestId: {id} Version: {version} ")),
        "{report}"
    );
    assert!(report.ends_with(" Outcome: success"), "{report}");
    for part in [
        " Duration: ",
        " ms Billed Duration: ",
        " Fuel: ",
        " Max Memory Used: ",
    ] {
        assert!(report.contains(part), "{part:?} not in {report}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invocation_logs_are_served_and_survive_a_sigkill_of_nimbus_serve() {
    let dir = serve_dir();
    let server = dir.start();
    let first = invoke(&server, 100).await;
    let second = invoke(&server, 10).await;

    let logs = read_logs(&server, "").await;
    assert_eq!(logs.len(), 2, "{logs:?}");
    assert_printed(&logs[0], &first, 100, 25);
    assert_printed(&logs[1], &second, 10, 4);
    let last = read_logs(&server, "?limit=1").await;
    assert_eq!(last, logs[1..]);
    let one = read_logs(&server, &format!("?invocation_id={first}")).await;
    assert_eq!(one, logs[..1]);
    let admin = server.client().with_key(ADMIN_KEY);
    for bad in ["?limit=0", "?limit=1001", "?limit=ten", "?follow=maybe"] {
        admin.get(&format!("{LOGS}{bad}")).await.expect(400);
    }

    // Shown means committed: a crash right after loses nothing shown.
    server.kill_9();
    assert!(dir.path().join("data/logs.redb").is_file());
    let server = dir.start();
    assert_eq!(read_logs(&server, "").await, logs);
    // And the restarted server keeps adding to them.
    let third = invoke(&server, 20).await;
    let logs = read_logs(&server, "").await;
    assert_eq!(logs.len(), 3, "{logs:?}");
    assert_printed(&logs[2], &third, 20, 8);
    server.stop();
}

/// The response head of a `?follow=true` request and its body, read as it
/// arrives.
struct Follow {
    body: hyper::body::Incoming,
    text: String,
}

impl Follow {
    async fn open(server: &NimbusServe, query: &str) -> (http::response::Parts, Self) {
        let client = HyperClient::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let request = http::Request::get(format!("http://{}{LOGS}{query}", server.addr))
            .header("authorization", format!("Bearer {ADMIN_KEY}"))
            .body(Empty::new())
            .expect("request");
        let response = tokio::time::timeout(Duration::from_secs(30), client.request(request))
            .await
            .expect("a response head in time")
            .expect("a response");
        let (head, body) = response.into_parts();
        (
            head,
            Self {
                body,
                text: String::new(),
            },
        )
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn following_invocation_logs_streams_each_new_entry_as_an_event() {
    let dir = serve_dir();
    let server = dir.start();
    let before = invoke(&server, 100).await;

    let (head, mut follow) = Follow::open(&server, "?follow=true&limit=5").await;
    assert_eq!(head.status, 200);
    assert_eq!(
        head.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    // First the tail...
    let tail = follow.event_of(&before, Duration::from_secs(5)).await;
    assert_printed(&tail, &before, 100, 25);

    // ...then each new invocation, as it is kept.
    let new = invoke(&server, 10).await;
    let event = follow.event_of(&new, Duration::from_secs(5)).await;
    assert_printed(&event, &new, 10, 4);
    let newer = invoke(&server, 20).await;
    let event = follow.event_of(&newer, Duration::from_secs(5)).await;
    assert_printed(&event, &newer, 20, 8);
    // Each exactly once, every event a `data:` line of one JSON object.
    let events: Vec<&str> = follow
        .text
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .collect();
    assert_eq!(events.len(), 3, "{}", follow.text);
    assert!(
        events
            .iter()
            .all(|e| e.starts_with("data: {") && !e.contains('\n'))
    );

    // The stream ends when the server drains, not at the drain timeout.
    let stopping = Instant::now();
    let log = server.stop();
    assert!(
        stopping.elapsed() < Duration::from_secs(4),
        "{:?}:\n{log}",
        stopping.elapsed()
    );
    drop(follow);
}
