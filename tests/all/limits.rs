//! Each limit yields its own outcome; the host keeps serving afterwards; one
//! tenant's spinning guest does not hold up another's.

use std::time::Duration;

use nimbus_core::{Error, Limits, Outcome, REFUSED_WRITES_BEFORE_TRAP};

use crate::support::{done, event, guest_err, metric, tenant_with, test_host, wait_for};

fn tight() -> Limits {
    Limits::default()
        .fuel(300_000_000)
        .max_memory_bytes(32 << 20)
        .timeout(Duration::from_secs(5))
}

/// After any failure the same host still serves echo correctly.
async fn echo_still_works(host: &nimbus_core::Host) {
    let done = host
        .invoke("t", "echo", event(b"still here"))
        .await
        .expect("echo");
    assert_eq!(done.response.data, b"still here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_limit_has_its_own_outcome() {
    let t = test_host(|b| b.max_log_bytes(64 << 10));
    let host = &t.host;
    let all = [
        "echo",
        "spin-loop",
        "memory-bomb",
        "deep-recursion",
        "trap",
        "log-flood",
        "sleep",
    ];
    tenant_with(host, "t", tight().timeout(Duration::from_millis(700)), &all).await;

    let err = host.invoke("t", "spin-loop", event(b"")).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::OutOfFuel {
                budget: 300_000_000,
                ..
            }
        ),
        "{err}"
    );
    let usage = &err.report().expect("report").usage;
    assert_eq!(usage.outcome, Outcome::OutOfFuel);
    assert_eq!(usage.fuel_consumed, 300_000_000);
    assert!(err.to_string().contains("out of fuel"), "{err}");
    echo_still_works(host).await;

    let err = host
        .invoke("t", "memory-bomb", event(b""))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::MemoryLimitExceeded { limit, .. } if limit == 32 << 20),
        "{err}"
    );
    let usage = &err.report().expect("report").usage;
    assert_eq!(usage.outcome, Outcome::MemoryLimit);
    assert!(
        usage.peak_memory_bytes <= 32 << 20 && usage.peak_memory_bytes > 16 << 20,
        "{usage:?}"
    );
    echo_still_works(host).await;

    let err = host
        .invoke("t", "deep-recursion", event(b""))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::StackOverflow { .. }), "{err}");
    assert!(err.to_string().contains("stack overflow"), "{err}");
    assert_eq!(
        err.report().expect("report").usage.outcome,
        Outcome::StackOverflow
    );
    echo_still_works(host).await;

    let err = host.invoke("t", "trap", event(b"")).await.unwrap_err();
    let Error::Trap { message, report } = &err else {
        panic!("expected a trap, got {err}")
    };
    assert!(message.contains("unreachable"), "{message}");
    assert_eq!(report.usage.outcome, Outcome::Trap);
    let stderr = String::from_utf8_lossy(&report.logs.stderr);
    assert!(
        stderr.contains("panicked on purpose"),
        "guest stderr: {stderr}"
    );
    echo_still_works(host).await;

    // Blocked in a host call (a wasi clocks sleep): only the deadline helps.
    let err = host.invoke("t", "sleep", event(b"")).await.unwrap_err();
    assert!(
        matches!(err, Error::Timeout { timeout, .. } if timeout == Duration::from_millis(700)),
        "{err}"
    );
    let report = err.report().expect("report");
    assert_eq!(report.usage.outcome, Outcome::Timeout);
    assert!(report.usage.billed_duration_ms >= 700, "{:?}", report.usage);
    assert!(String::from_utf8_lossy(&report.logs.stderr).contains("going to sleep"));
    echo_still_works(host).await;

    // Writes without end, errors ignored: the capture stops at the cap, the
    // stream closes, and the invocation ends after a bounded number of
    // refused writes — long before its fuel or deadline would.
    let err = host.invoke("t", "log-flood", event(b"")).await.unwrap_err();
    let Error::Trap { message, .. } = &err else {
        panic!("not ended at the cap: {err}");
    };
    assert!(
        message.contains("kept writing to stdout after its 65536-byte output cap closed it")
            && message.contains(&format!("({REFUSED_WRITES_BEFORE_TRAP} writes refused)")),
        "{message}"
    );
    let report = err.report().expect("report");
    assert_eq!(report.usage.outcome, Outcome::Trap);
    assert!(
        report.usage.fuel_consumed < 300_000_000 / 10,
        "{:?}",
        report.usage
    );
    let logs = &report.logs;
    assert_eq!(logs.stdout.len(), 64 << 10);
    assert!(logs.truncated() && logs.dropped_bytes > 0);
    echo_still_works(host).await;
}

#[tokio::test]
async fn a_spinning_guest_is_stopped_by_the_deadline_when_fuel_is_plentiful() {
    let t = test_host(|b| b);
    tenant_with(
        &t.host,
        "t",
        Limits::default()
            .fuel(u64::MAX / 2)
            .timeout(Duration::from_millis(300)),
        &["spin-loop", "echo"],
    )
    .await;
    let err = t
        .host
        .invoke("t", "spin-loop", event(b""))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(err.report().expect("report").usage.fuel_consumed > 1_000_000);
    echo_still_works(&t.host).await;
}

/// On a single-threaded runtime, a guest that never returns must still let
/// other tenants' invocations run: it yields every fuel interval.
#[tokio::test(flavor = "current_thread")]
async fn a_spinning_guest_does_not_starve_another_tenant() {
    let t = test_host(|b| b);
    let host = t.host.clone();
    tenant_with(
        &host,
        "hog",
        Limits::default()
            .fuel(u64::MAX / 2)
            .timeout(Duration::from_secs(20)),
        &["spin-loop"],
    )
    .await;
    tenant_with(&host, "quick", Limits::default(), &["echo"]).await;

    let hog = tokio::spawn({
        let host = host.clone();
        async move { host.invoke("hog", "spin-loop", event(b"")).await }
    });
    wait_for("the hog to be running", || {
        metric(
            &host,
            "nimbus_invocations_in_flight{tenant=\"hog\",function=\"spin-loop\"}",
        ) == Some(1.0)
    })
    .await;
    for i in 0..20u8 {
        let done = host
            .invoke("quick", "echo", event(&[i]))
            .await
            .expect("echo");
        assert_eq!(done.response.data, [i]);
    }
    assert!(
        !hog.is_finished(),
        "the hog finished before the quick tenant's invocations"
    );
    hog.abort();
}

/// Starts tenant `t`'s `sleep` and waits until it is in flight.
async fn start_sleeper(
    host: &nimbus_core::Host,
) -> tokio::task::JoinHandle<Result<nimbus_core::Invocation, Error>> {
    let sleeper = tokio::spawn({
        let host = host.clone();
        async move { host.invoke("t", "sleep", event(b"")).await }
    });
    wait_for("the sleeper to be running", || {
        metric(
            host,
            "nimbus_invocations_in_flight{tenant=\"t\",function=\"sleep\"}",
        ) == Some(1.0)
    })
    .await;
    sleeper
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_concurrency_quota_throttles_with_a_record() {
    let t = test_host(|b| b);
    let host = &t.host;
    let quota = Limits::default()
        .max_concurrency(1)
        .timeout(Duration::from_millis(1500));
    tenant_with(host, "t", quota, &["sleep", "echo"]).await;
    tenant_with(host, "other", Limits::default(), &["echo"]).await;

    let sleeper = start_sleeper(host).await;

    let err = host.invoke("t", "echo", event(b"x")).await.unwrap_err();
    let Error::Throttled { reason, report } = &err else {
        panic!("expected throttled, got {err}")
    };
    assert!(reason.contains("limit of 1 concurrent"), "{reason}");
    assert_eq!(report.usage.outcome, Outcome::Throttled);
    assert_eq!(report.usage.fuel_consumed, 0);
    assert_eq!(report.usage.billed_duration_ms, 0);

    // Another tenant is not affected by this one's quota.
    host.invoke("other", "echo", event(b"y"))
        .await
        .expect("other tenant");

    let slept = sleeper.await.expect("join").unwrap_err();
    assert!(matches!(slept, Error::Timeout { .. }), "{slept}");
    // With the slot free again, the tenant runs.
    host.invoke("t", "echo", event(b"z"))
        .await
        .expect("after the sleeper");

    let records = t.records();
    let throttled: Vec<_> = records
        .iter()
        .filter(|r| r.outcome == Outcome::Throttled)
        .collect();
    assert_eq!(throttled.len(), 1);
    assert_eq!(throttled[0].invocation_id, report.usage.invocation_id);
    assert_eq!(
        metric(
            host,
            "nimbus_throttled_invocations_total{tenant=\"t\",function=\"echo\"}"
        ),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuel_is_deterministic_and_grows_with_input() {
    let fuel_of = |host: nimbus_core::Host, n: &'static str| async move {
        let done = host
            .invoke("t", "compute", event(n.as_bytes()))
            .await
            .expect("compute");
        (done.response.data, done.usage.fuel_consumed)
    };
    let a = test_host(|b| b);
    let b = test_host(|b| b);
    tenant_with(&a.host, "t", Limits::default(), &["compute"]).await;
    tenant_with(&b.host, "t", Limits::default(), &["compute"]).await;

    let (primes, small) = fuel_of(a.host.clone(), "1000").await;
    assert_eq!(primes, b"168");
    assert_eq!(
        fuel_of(a.host.clone(), "1000").await.1,
        small,
        "same host, same input"
    );
    assert_eq!(
        fuel_of(b.host.clone(), "1000").await.1,
        small,
        "another host, same input"
    );
    let (primes, large) = fuel_of(a.host.clone(), "100000").await;
    assert_eq!(primes, b"9592");
    assert!(
        large > small * 10,
        "fuel {large} for 100000 vs {small} for 1000"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_share_no_state() {
    // Every invocation is a fresh instance: a guest error in one does not
    // affect the next, and outputs depend only on inputs.
    let t = test_host(|b| b);
    tenant_with(&t.host, "t", Limits::default(), &["compute"]).await;
    let (error, report) = guest_err(&t.host, "t", "compute", "nope").await;
    assert!(
        error.to_string().contains("expected a decimal number"),
        "{error}"
    );
    assert_eq!(report.usage.outcome, Outcome::GuestError);
    for _ in 0..3 {
        let done = done(&t.host, "t", "compute", "10").await;
        assert_eq!(done.response.data, b"4");
        assert_eq!(
            String::from_utf8_lossy(&done.logs.stdout),
            "primes below 10: 4\n"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenant_memory_cap_throttles_new_invocations_not_running_ones() {
    let t = test_host(|b| b);
    let host = &t.host;
    // Less than one instance's memory: one running instance reaches it.
    let capped = Limits::default()
        .max_tenant_memory_bytes(64 << 10)
        .timeout(Duration::from_millis(1500));
    tenant_with(host, "t", capped, &["sleep", "echo"]).await;
    tenant_with(host, "other", Limits::default(), &["echo"]).await;

    let sleeper = start_sleeper(host).await;
    // Its memory counts once it is instantiated: from then on the tenant's
    // next invocation is throttled with a record.
    let mut throttled = None;
    for _ in 0..400 {
        match host.invoke("t", "echo", event(b"x")).await {
            Ok(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            Err(e) => {
                throttled = Some(e);
                break;
            }
        }
    }
    let err = throttled.expect("never throttled while the sleeper held its memory");
    let Error::Throttled { reason, report } = &err else {
        panic!("expected throttled, got {err}")
    };
    assert!(
        reason.contains("bytes of linear memory in running instances, at its limit of 65536"),
        "{reason}"
    );
    assert_eq!(report.usage.outcome, Outcome::Throttled);
    // The same moment, another tenant is admitted.
    host.invoke("other", "echo", event(b"y"))
        .await
        .expect("other tenant");

    // The running one was not killed for it: it ends by its own timeout,
    // and then its memory is the tenant's again.
    let slept = sleeper.await.expect("join").unwrap_err();
    assert!(matches!(slept, Error::Timeout { .. }), "{slept}");
    host.invoke("t", "echo", event(b"z"))
        .await
        .expect("after the sleeper");
}
