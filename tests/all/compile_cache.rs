//! The compile cache: a component compiled once is loaded, not compiled
//! again, by the next host or the next `nimbus serve` on the same cache
//! directory; an entry that is not whole, or not the component's own, is
//! compiled again and never loaded. Counted by
//! `nimbus_component_compilations_total` (Cranelift runs) and
//! `nimbus_component_cache_hits_total`, not by time.

use std::path::{Path, PathBuf};

use nimbus_core::{FunctionHandle, Host, Limits};

use crate::support::{ServeDir, TestHost, event, guest_path, guests, metric, metric_in, test_host};

/// (compilations, cache hits) of `host`.
fn counts(host: &Host) -> (f64, f64) {
    let read = |family| metric(host, family).unwrap_or_else(|| panic!("{family} is exposed"));
    (
        read("nimbus_component_compilations_total"),
        read("nimbus_component_cache_hits_total"),
    )
}

/// A host on the cache `dir`, with tenant `t`.
fn host_on(dir: &Path) -> TestHost {
    let t = test_host(|b| b.compile_cache(dir));
    t.host.add_tenant("t", Limits::default()).expect("tenant");
    t
}

async fn deploy(t: &TestHost, guest: &str) -> FunctionHandle {
    t.host
        .deploy("t", guest, &guests().bytes(guest))
        .await
        .unwrap_or_else(|e| panic!("deploy {guest}: {e}"))
}

async fn answer(f: &FunctionHandle, data: &str) -> String {
    let done = f
        .invoke(event(data.as_bytes()))
        .await
        .unwrap_or_else(|e| panic!("invoke: {e}"));
    assert!(
        done.usage.fuel_consumed > 0,
        "fuel is billed: {:?}",
        done.usage
    );
    String::from_utf8(done.response.data).expect("UTF-8 answer")
}

/// The files of `dir` ending in `ext`.
fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read the cache directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    found.sort();
    found
}

/// The one entry's artifact in `dir`.
fn artifact(dir: &Path) -> PathBuf {
    let found = files(dir, "cwasm");
    assert_eq!(found.len(), 1, "one artifact: {found:?}");
    found[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_host_on_the_same_cache_deploys_without_compiling() {
    let cache = tempfile::tempdir().expect("tempdir");
    let first = host_on(cache.path());
    let echo = deploy(&first, "echo").await;
    assert_eq!(
        counts(&first.host),
        (1.0, 0.0),
        "compiled, nothing cached yet"
    );
    assert_eq!(answer(&echo, "first").await, "first");
    artifact(cache.path());
    // Deploying the same bytes again on the same host publishes nothing
    // new: the version is there, nothing is compiled or loaded.
    deploy(&first, "echo").await;
    assert_eq!(counts(&first.host), (1.0, 0.0));
    drop((echo, first));

    let second = host_on(cache.path());
    let echo = deploy(&second, "echo").await;
    assert_eq!(counts(&second.host), (0.0, 1.0), "loaded, not compiled");
    assert_eq!(answer(&echo, "second").await, "second");
    assert_eq!(second.records().len(), 1, "billed as usual");

    // Other bytes are another entry.
    let compute = deploy(&second, "compute").await;
    assert_eq!(counts(&second.host), (1.0, 1.0));
    assert_eq!(answer(&compute, "100").await, "25");
    assert_eq!(files(cache.path(), "cwasm").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_or_truncated_artifact_is_compiled_again() {
    let cache = tempfile::tempdir().expect("tempdir");
    drop(deploy(&host_on(cache.path()), "echo").await);
    let path = artifact(cache.path());
    let whole = std::fs::read(&path).expect("artifact");

    // Bits flipped in the middle (machine code, which wasmtime's own header
    // checks would not notice), then the file cut in half.
    let mut flipped = whole.clone();
    let mid = flipped.len() / 2;
    for b in &mut flipped[mid..mid + 64] {
        *b ^= 0xff;
    }
    for broken in [flipped, whole[..whole.len() / 2].to_vec()] {
        std::fs::write(&path, &broken).expect("damage the artifact");
        let t = host_on(cache.path());
        let echo = deploy(&t, "echo").await;
        assert_eq!(counts(&t.host), (1.0, 0.0), "not loaded: compiled again");
        assert_eq!(answer(&echo, "still echo").await, "still echo");
        // The entry was rewritten whole: the next host loads it.
        let t = host_on(cache.path());
        let echo = deploy(&t, "echo").await;
        assert_eq!(counts(&t.host), (0.0, 1.0));
        assert_eq!(answer(&echo, "loaded").await, "loaded");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_moved_under_another_components_name_is_not_loaded() {
    // Each cache holds one entry: echo's in one, compute's in the other.
    let (echo_cache, compute_cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    drop(deploy(&host_on(echo_cache.path()), "echo").await);
    drop(deploy(&host_on(compute_cache.path()), "compute").await);
    // Echo's artifact and digest put in place of compute's: both valid
    // files, neither compute's.
    for ext in ["cwasm", "crc32"] {
        let (from, to) = (
            &files(echo_cache.path(), ext)[0],
            &files(compute_cache.path(), ext)[0],
        );
        std::fs::copy(from, to).expect("copy the entry");
    }
    let t = host_on(compute_cache.path());
    let compute = deploy(&t, "compute").await;
    assert_eq!(counts(&t.host), (1.0, 0.0), "compiled, not loaded");
    assert_eq!(answer(&compute, "100").await, "25", "compute, not echo");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_of_nimbus_serve_loads_from_its_data_dir_cache() {
    // No `compile_cache` key: the default, `<data_dir>/compiled`.
    let dir = ServeDir::as_written(&format!(
        r#"
ledger = "usage.jsonl"
data_dir = "data"

[tenants.acme]

[[functions]]
tenant = "acme"
name = "hello"
component = {component:?}
public = true
"#,
        component = guest_path("hello-http"),
    ));
    let serve_counts = |text: &str| {
        (
            metric_in(text, "nimbus_component_compilations_total"),
            metric_in(text, "nimbus_component_cache_hits_total"),
        )
    };

    let server = dir.start();
    let client = server.client();
    let r = client.get("/acme/hello").await.expect(200);
    assert_eq!(r.text(), "Hello from Nimbus!\n");
    let metrics = client.get("/metrics").await.expect(200).text();
    assert_eq!(serve_counts(&metrics), (Some(1.0), Some(0.0)), "{metrics}");
    server.stop();
    artifact(&dir.path().join("data/compiled"));

    for _restart in 0..2 {
        let server = dir.start();
        let client = server.client();
        let metrics = client.get("/metrics").await.expect(200).text();
        assert_eq!(
            serve_counts(&metrics),
            (Some(0.0), Some(1.0)),
            "loaded, not compiled:\n{metrics}\n{}",
            server.log()
        );
        let r = client.get("/acme/hello").await.expect(200);
        assert_eq!(r.text(), "Hello from Nimbus!\n");
        server.kill_9();
    }
    assert_eq!(dir.records().len(), 3);
}
