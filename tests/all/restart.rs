//! Persistence across restarts of the real `nimbus serve`, as a user sees
//! it: key-value data and the usage ledger outlive a graceful stop, and an
//! acknowledged write outlives a crash (SIGKILL).

use nimbus_core::Outcome;

use crate::support::{NimbusServe, ServeDir, guest_path};

const KEY: &str = "acme-key";

/// Sends `command` as the event data to `acme/counter` and returns the
/// answer, which must be a 200.
async fn run(server: &NimbusServe, command: &str) -> String {
    server
        .client()
        .with_key(KEY)
        .run("/acme/counter", command)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_data_and_the_ledger_survive_a_restart_and_a_crash_of_nimbus_serve() {
    // Run from elsewhere: `data` and `usage.jsonl` are the config's own.
    let dir = ServeDir::new(&format!(
        r#"
ledger = "usage.jsonl"
data_dir = "data"
drain_timeout_ms = 5000

[tenants.acme]
api_keys = ["{KEY}"]

[[functions]]
tenant = "acme"
name = "counter"
component = {component:?}
kv_stores = ["visits"]
"#,
        component = guest_path("kv-counter"),
    ));

    // First run: write, then stop gracefully.
    let server = dir.start();
    for n in 1..=3 {
        assert_eq!(run(&server, "incr visits home").await, n.to_string());
    }
    assert_eq!(run(&server, "set visits greeting hello").await, "ok");
    let log = server.stop();
    assert!(log.contains("nimbus stopped"), "{log}");
    assert!(dir.path().join("data/kv.redb").is_file());
    assert!(!dir.cwd().join("data").exists());

    // Second run, a new process on the same config: the data is there.
    let server = dir.start();
    assert_eq!(run(&server, "incr visits home").await, "4");
    assert_eq!(run(&server, "get visits greeting").await, "hello");
    // The ledger kept the first run's records and appended the second's.
    let records = dir.records();
    assert_eq!(records.len(), 6, "{records:?}");
    for r in &records {
        assert_eq!(
            (r.tenant.as_str(), r.function.as_str(), r.outcome),
            ("acme", "counter", Outcome::Success),
            "{r:?}"
        );
    }

    // An acknowledged write, then SIGKILL.
    assert_eq!(run(&server, "set visits after-crash yes").await, "ok");
    server.kill_9();

    // Third run: the write survived the crash, and so did the ledger.
    let server = dir.start();
    assert_eq!(run(&server, "get visits after-crash").await, "yes");
    assert_eq!(run(&server, "incr visits home").await, "5");
    let records = dir.records();
    assert_eq!(records.len(), 9, "{records:?}");
    assert!(
        records.iter().all(|r| r.outcome == Outcome::Success),
        "{records:?}"
    );
}
