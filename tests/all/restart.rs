//! Persistence across restarts of the real `nimbus serve`, as a user sees
//! it: key-value data and the usage ledger outlive a graceful stop, and an
//! acknowledged write outlives a crash (SIGKILL).

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use nimbus_core::{JsonLinesLedger, Outcome};

use crate::guests;
use crate::http::{Client, NimbusServe};

const KEY: &str = "acme-key";

/// Sends `command` as the event data to `acme/counter` and returns the
/// answer, which must be a 200.
async fn run(server: &NimbusServe, command: &str) -> String {
    Client::new(server.addr)
        .post("/acme/counter")
        .key(KEY)
        .body(command.to_string())
        .await
        .expect(200)
        .text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_data_and_the_ledger_survive_a_restart_and_a_crash_of_nimbus_serve() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("nimbus.toml");
    std::fs::write(
        &config,
        format!(
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
            component = guests().path("kv-counter").display().to_string(),
        ),
    )
    .expect("write config");
    // Run from elsewhere: `data` and `usage.jsonl` are the config's own.
    let cwd = tempfile::tempdir().expect("tempdir");
    let ledger = dir.path().join("usage.jsonl");

    // First run: write, then stop gracefully.
    let mut server = NimbusServe::start(&config, cwd.path());
    for n in 1..=3 {
        assert_eq!(run(&server, "incr visits home").await, n.to_string());
    }
    assert_eq!(run(&server, "set visits greeting hello").await, "ok");
    server.terminate();
    let status = server.wait_exit(Duration::from_secs(10));
    let log = server.log();
    assert!(status.success(), "{status}:\n{log}");
    assert!(log.contains("nimbus stopped"), "{log}");
    drop(server);
    assert!(dir.path().join("data/kv.redb").is_file());
    assert!(!cwd.path().join("data").exists());

    // Second run, a new process on the same config: the data is there.
    let mut server = NimbusServe::start(&config, cwd.path());
    assert_eq!(run(&server, "incr visits home").await, "4");
    assert_eq!(run(&server, "get visits greeting").await, "hello");
    // The ledger kept the first run's records and appended the second's.
    let records = JsonLinesLedger::read(&ledger).expect("ledger");
    assert_eq!(records.len(), 6, "{records:?}");
    for r in &records {
        assert_eq!(
            (r.tenant.as_str(), r.function.as_str(), r.outcome),
            ("acme", "counter", Outcome::Success),
            "{r:?}"
        );
    }

    // An acknowledged write, then SIGKILL: no drain, no clean close.
    assert_eq!(run(&server, "set visits after-crash yes").await, "ok");
    server.child.kill().expect("kill -9 nimbus serve");
    let status = server.child.wait().expect("wait");
    assert_eq!(status.signal(), Some(9), "{status}:\n{}", server.log());
    drop(server);

    // Third run: the write survived the crash, and so did the ledger.
    let server = NimbusServe::start(&config, cwd.path());
    assert_eq!(run(&server, "get visits after-crash").await, "yes");
    assert_eq!(run(&server, "incr visits home").await, "5");
    let records = JsonLinesLedger::read(&ledger).expect("ledger after a crash");
    assert_eq!(records.len(), 9, "{records:?}");
    assert!(
        records.iter().all(|r| r.outcome == Outcome::Success),
        "{records:?}"
    );
}
