//! Tenants competing for the CPU get it by weight, however many
//! invocations each runs at once (the fair scheduler); asserted from the
//! `cpu_us` the ledger bills, never from wall times.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

use nimbus_core::Limits;

use crate::support::{event, ledger, tenant_with, test_host};

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
