//! Integration tests: one binary (faster to link than one per file), driving
//! the public API and the real `nimbus` binary with guests built from
//! `guests/` by the same builder users run.

mod billing;
mod blob;
mod cli;
mod crash;
mod deploy;
mod files;
mod http;
mod kv;
mod limits;
mod messaging;
mod outbound;
mod restart;
mod services;
mod storage_api;
mod thumbnail;
mod triggers;

use std::path::PathBuf;
use std::sync::OnceLock;

use nimbus_core::{Event, Host, HostBuilder, Limits, PoolConfig};
use nimbus_guests::Guests;

/// The sample guests, built once per test process.
pub fn guests() -> &'static Guests {
    static GUESTS: OnceLock<Guests> = OnceLock::new();
    GUESTS.get_or_init(|| nimbus_guests::build_all().unwrap_or_else(|e| panic!("{e}")))
}

/// A host whose ledger lives in its own temporary directory.
#[derive(Debug)]
pub struct TestHost {
    pub host: Host,
    pub ledger: PathBuf,
    _dir: tempfile::TempDir,
}

/// A host builder with a small pool (tests run many hosts side by side) and
/// a ledger in a fresh temporary directory.
pub fn test_host(configure: impl FnOnce(HostBuilder) -> HostBuilder) -> TestHost {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = dir.path().join("usage.jsonl");
    let builder = Host::builder()
        .pool(PoolConfig {
            max_instances: 32,
            max_memory_bytes: 256 << 20,
            ..PoolConfig::default()
        })
        .ledger_path(&ledger);
    let host = configure(builder).build().expect("host builds");
    TestHost {
        host,
        ledger,
        _dir: dir,
    }
}

/// Registers `tenant` with `limits` and deploys the named guests under their
/// own names.
pub async fn tenant_with(host: &Host, tenant: &str, limits: Limits, functions: &[&str]) {
    host.add_tenant(tenant, limits).expect("add tenant");
    for f in functions {
        host.deploy(tenant, f, &guests().bytes(f))
            .await
            .unwrap_or_else(|e| panic!("deploy {f}: {e}"));
    }
}

/// Invokes `tenant/function` with `text` as the event data (the sample
/// guests take a command line).
pub async fn command(
    host: &Host,
    tenant: &str,
    function: &str,
    text: &str,
) -> Result<nimbus_core::Invocation, nimbus_core::Error> {
    host.invoke(tenant, function, event(text.as_bytes())).await
}

pub fn event(data: &[u8]) -> Event {
    Event::new("test.event", "/tests", data.to_vec())
}

/// The value of one exposition line, e.g.
/// `metric(host, "nimbus_invocations_in_flight{tenant=\"a\",function=\"b\"}")`.
pub fn metric(host: &Host, series: &str) -> Option<f64> {
    metric_in(&host.metrics_text(), series)
}

/// The value of one exposition line in a scraped `text` (e.g. a `/metrics`
/// response body); see [`metric`].
pub fn metric_in(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
    })
}

/// Waits (bounded) until `cond` holds; for "the invocation is now running".
pub async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if cond() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!("timed out waiting for {what}");
}
