//! Hosts whose every file lives in a fresh temporary directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nimbus_core::{Event, Host, HostBuilder, PoolConfig, UsageRecord};

use super::metrics::ledger;

/// A host, its ledger (`usage.jsonl`) and, for [`data_host`], its data
/// directory (`data/`), all in one temporary directory removed on drop.
#[derive(Debug)]
pub struct TestHost {
    pub host: Host,
    pub ledger: PathBuf,
    pub dir: tempfile::TempDir,
}

impl TestHost {
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Every usage record written so far.
    pub fn records(&self) -> Vec<UsageRecord> {
        ledger(&self.ledger)
    }

    /// Drops the host, then builds another on the same data directory, as
    /// a restarted process would: the stores must reopen what the first
    /// one wrote.
    pub fn restart(self, configure: impl FnOnce(HostBuilder) -> HostBuilder) -> Self {
        let Self { host, ledger, dir } = self;
        // Every handle on the host goes with it: its databases must be
        // closed before the next host opens them.
        drop(host);
        let host = configure(data_builder(dir.path()))
            .build()
            .unwrap_or_else(|e| panic!("a new host on the same data directory: {e}"));
        Self { host, ledger, dir }
    }
}

/// The compile cache every test host and `nimbus serve` shares, under the
/// target directory: each component is compiled once per run, or never on
/// a machine that ran the tests before (an 18 MB Python component takes a
/// minute to compile in a debug build). Tests of the cache itself use a
/// fresh directory.
pub fn shared_compile_cache() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("test-compile-cache")
}

/// A builder with a small pool (tests run many hosts side by side), its
/// ledger in `dir` and the [`shared_compile_cache`].
fn builder(dir: &Path) -> HostBuilder {
    Host::builder()
        .pool(PoolConfig {
            max_instances: 32,
            max_memory_bytes: 256 << 20,
            ..PoolConfig::default()
        })
        .ledger_path(dir.join("usage.jsonl"))
        .compile_cache(shared_compile_cache())
}

/// [`builder`] with the data directory `dir/data` (key-value, blob and
/// queue stores on disk).
fn data_builder(dir: &Path) -> HostBuilder {
    builder(dir).data_dir(dir.join("data"))
}

fn build(
    configure: impl FnOnce(HostBuilder) -> HostBuilder,
    builder: fn(&Path) -> HostBuilder,
) -> TestHost {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = configure(builder(dir.path())).build().expect("host builds");
    TestHost {
        host,
        ledger: dir.path().join("usage.jsonl"),
        dir,
    }
}

/// A host with a ledger and no data directory.
pub fn test_host(configure: impl FnOnce(HostBuilder) -> HostBuilder) -> TestHost {
    build(configure, builder)
}

/// A host with a ledger and a data directory.
pub fn data_host(configure: impl FnOnce(HostBuilder) -> HostBuilder) -> TestHost {
    build(configure, data_builder)
}

pub fn event(data: &[u8]) -> Event {
    Event::new("test.event", "/tests", data.to_vec())
}

/// Waits (bounded, 10 s) until `cond` holds; for "the invocation is now
/// running".
pub async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Polls (bounded, 20 s) until `f` returns something; for work done in the
/// background, such as triggers.
pub async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..400 {
        if let Some(v) = f() {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}
