//! Tenants competing for the CPU get it by weight, however many
//! invocations each runs at once (the fair scheduler); asserted from the
//! `cpu_us` the ledger bills, never from wall times. A full instance pool
//! goes to the tenants below their share.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use nimbus_core::{Error, Limits, Outcome, PoolConfig};

use crate::support::{event, ledger, metric, tenant_with, test_host, wait_for};

/// Completed invocations counted before the ledger is read.
const COMPLETED: usize = 300;

/// Tenant `a` runs 12 compute-bound invocations at once, `b` 3, on two
/// guest threads, until 300 have completed; returns `a`'s share of the CPU
/// billed for the completed ones. Shared per invocation it would be 0.8.
async fn share_of_a(weight_a: u32, weight_b: u32) -> f64 {
    let t = test_host(|b| b.guest_threads(2));
    let host = &t.host;
    tenant_with(
        host,
        "a",
        Limits::default().cpu_weight(weight_a),
        &["compute"],
    )
    .await;
    tenant_with(
        host,
        "b",
        Limits::default().cpu_weight(weight_b),
        &["compute"],
    )
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let snapshot = Arc::new(std::sync::Mutex::new(None));
    let mut loops = Vec::new();
    for (tenant, at_once) in [("a", 12), ("b", 3)] {
        for _ in 0..at_once {
            let (host, stop, done) = (host.clone(), stop.clone(), done.clone());
            let (snapshot, path) = (snapshot.clone(), t.ledger.clone());
            loops.push(tokio::spawn(async move {
                while !stop.load(Relaxed) {
                    host.invoke(tenant, "compute", event(b"300000"))
                        .await
                        .expect("compute");
                    if done.fetch_add(1, Relaxed) + 1 == COMPLETED {
                        // Read while both tenants are still busy: the tail,
                        // when one has stopped, would say nothing of sharing.
                        *snapshot.lock().unwrap() = Some(ledger(&path));
                        stop.store(true, Relaxed);
                    }
                }
            }));
        }
    }
    for l in loops {
        l.await.expect("loop");
    }
    let records = snapshot.lock().unwrap().take().expect("snapshot");
    let cpu = |tenant: &str| -> u64 {
        records
            .iter()
            .filter(|r| r.tenant == tenant)
            .map(|r| r.cpu_us)
            .sum()
    };
    let (a, b) = (cpu("a") as f64, cpu("b") as f64);
    assert!(a > 0.0 && b > 0.0, "a {a} µs, b {b} µs");
    a / (a + b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_share_the_cpu_equally_whatever_their_concurrency() {
    let share = share_of_a(1, 1).await;
    assert!(
        (0.4..=0.6).contains(&share),
        "a (12 at once) took {share:.2} of the CPU against b (3 at once)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_weights_set_the_shares() {
    let share = share_of_a(2, 1).await;
    assert!(
        (0.57..=0.77).contains(&share),
        "a (weight 2) took {share:.2} of the CPU, not about 2/3"
    );
}

/// Tenant `hog` fills an idle pool of 4 with slow invocations; then `fair`
/// asks for 2 and `hog` for 4 more, at once. `hog` holds more than its
/// share (2 of 4 with two tenants), so its new ones are refused at once;
/// `fair`'s wait and get the slots `hog` frees, so they run (and end at
/// their own timeout) instead of being refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_goes_to_the_tenant_below_its_share() {
    let t = test_host(|b| {
        b.pool(PoolConfig {
            max_instances: 4,
            max_memory_bytes: 256 << 20,
            admission_wait: Duration::from_secs(30),
            ..PoolConfig::default()
        })
    });
    let host = &t.host;
    // `fair` may wait up to its own timeout for a slot: longer than the
    // hog's invocations take to end.
    let timeout = |ms| Limits::default().timeout(Duration::from_millis(ms));
    tenant_with(host, "hog", timeout(1000), &["sleep"]).await;
    tenant_with(host, "fair", timeout(4000), &["sleep"]).await;

    let start = |tenant: &'static str| {
        let host = host.clone();
        tokio::spawn(async move { host.invoke(tenant, "sleep", event(b"")).await })
    };
    let first: Vec<_> = (0..4).map(|_| start("hog")).collect();
    wait_for("the hog to fill the pool", || {
        metric(
            host,
            "nimbus_invocations_in_flight{tenant=\"hog\",function=\"sleep\"}",
        ) == Some(4.0)
    })
    .await;
    let fair: Vec<_> = (0..2).map(|_| start("fair")).collect();
    // Until `fair` waits, `hog` is alone and its share is the whole pool.
    wait_for("fair to wait for a slot", || {
        metric(host, "nimbus_instance_pool_waiting") == Some(2.0)
    })
    .await;
    let more: Vec<_> = (0..4).map(|_| start("hog")).collect();

    for f in fair {
        let err = f.await.expect("join").unwrap_err();
        assert!(
            matches!(err, Error::Timeout { .. }),
            "fair's invocation did not run to its timeout: {err}"
        );
    }
    for m in more {
        let err = m.await.expect("join").unwrap_err();
        let Error::Throttled { reason, .. } = &err else {
            panic!("hog's extra invocation was not refused: {err}")
        };
        assert!(
            reason.contains("capacity of 4") && reason.contains("tenant `hog` holds"),
            "{reason}"
        );
    }
    for f in first {
        let err = f.await.expect("join").unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
    }
    let records = t.records();
    let count = |tenant: &str, outcome: Outcome| {
        records
            .iter()
            .filter(|r| r.tenant == tenant && r.outcome == outcome)
            .count()
    };
    assert_eq!(count("fair", Outcome::Timeout), 2);
    assert_eq!(count("fair", Outcome::Throttled), 0);
    assert_eq!(count("hog", Outcome::Timeout), 4);
    assert_eq!(count("hog", Outcome::Throttled), 4);
}
