//! The ledger and the Prometheus counters agree exactly, per tenant and
//! function, under concurrency; series are keyed by the exact pair; the
//! exposition passes promtool.

use std::sync::Arc;
use std::time::Duration;

use nimbus_core::Limits;
use nimbus_core::prometheus;

use nimbus_core::Outcome;

use crate::support::{deploy, event, from_ledger, from_metrics, ledger, tenant_with, test_host};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_and_counters_agree_exactly_under_concurrency() {
    let registry = prometheus::Registry::new();
    let embedder_counter =
        prometheus::IntCounter::new("embedder_requests_total", "The embedder's own metric.")
            .expect("counter");
    registry
        .register(Box::new(embedder_counter.clone()))
        .expect("register");
    let t = test_host(|b| b.registry(registry.clone()));
    let host = &t.host;

    // Names whose concatenations coincide: acme+billing == acmebill+ing.
    let limits = Limits::default().max_concurrency(4);
    host.add_tenant("acme", limits).expect("tenant");
    host.add_tenant("acmebill", limits).expect("tenant");
    deploy(host, "acme", "billing", "compute").await;
    deploy(host, "acmebill", "ing", "compute").await;
    deploy(host, "acme", "crash", "trap").await;
    tenant_with(
        host,
        "zeta",
        Limits::default().max_concurrency(2),
        &["echo"],
    )
    .await;

    let mut tasks = Vec::new();
    for i in 0..240u32 {
        let host = host.clone();
        tasks.push(tokio::spawn(async move {
            let (tenant, function, data): (&str, &str, Vec<u8>) = match i % 6 {
                0 | 1 => ("acme", "billing", format!("{}", 1000 + i * 37).into_bytes()),
                2 => ("acmebill", "ing", format!("{}", 50_000 + i).into_bytes()),
                3 => ("acmebill", "ing", b"not a number".to_vec()),
                4 => ("acme", "crash", Vec::new()),
                _ => ("zeta", "echo", vec![7; 1024]),
            };
            let _ = host.invoke(tenant, function, event(&data)).await;
        }));
    }
    for task in tasks {
        task.await.expect("invocation task");
    }
    embedder_counter.inc();

    let ledger = from_ledger(&t.ledger);
    let metrics = from_metrics(&registry);
    let total: f64 = ledger.values().flat_map(|t| t.by_outcome.values()).sum();
    assert_eq!(total, 240.0, "one record per invocation");
    assert_eq!(ledger.len(), 4, "{ledger:?}");
    assert_eq!(metrics, ledger);

    let acme = &metrics[&("acme".to_string(), "billing".to_string())];
    let acmebill = &metrics[&("acmebill".to_string(), "ing".to_string())];
    assert_eq!(acme.by_outcome.values().sum::<f64>(), 80.0);
    assert_eq!(acmebill.by_outcome.values().sum::<f64>(), 80.0);
    assert!(acmebill.by_outcome.contains_key("guest_error"));
    assert_ne!(acme.fuel, acmebill.fuel);
    assert!(acme.cpu_seconds > 0.0, "{acme:?}");

    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .expect("encode");
    assert!(text.contains("embedder_requests_total 1"), "{text}");
    assert!(text.contains("nimbus_invocation_duration_seconds_count{tenant=\"acme\"}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_outcome_is_counted_once_and_in_flight_returns_to_zero() {
    let t = test_host(|b| b);
    let host = &t.host;
    let limits = Limits::default()
        .fuel(100_000_000)
        .timeout(Duration::from_millis(400));
    tenant_with(host, "t", limits, &["echo", "spin-loop", "trap", "sleep"]).await;
    for f in ["echo", "echo", "spin-loop", "trap", "sleep"] {
        let _ = host.invoke("t", f, event(b"")).await;
    }
    let m = from_metrics(host.registry());
    let get = |f: &str, o: &str| {
        m[&("t".to_string(), f.to_string())]
            .by_outcome
            .get(o)
            .copied()
    };
    assert_eq!(get("echo", "success"), Some(2.0));
    assert_eq!(get("spin-loop", "out_of_fuel"), Some(1.0));
    assert_eq!(get("trap", "trap"), Some(1.0));
    assert_eq!(get("sleep", "timeout"), Some(1.0));
    let text = host.metrics_text();
    for f in ["echo", "spin-loop", "trap", "sleep"] {
        let line = format!("nimbus_invocations_in_flight{{tenant=\"t\",function=\"{f}\"}} 0\n");
        assert!(text.contains(&line), "{line} missing from\n{text}");
    }
    assert_eq!(t.records().len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_usage_sink_withholds_the_result() {
    struct Broken;
    impl nimbus_core::UsageSink for Broken {
        fn record(&self, _: &nimbus_core::UsageRecord) -> std::io::Result<()> {
            Err(std::io::Error::other("disk full"))
        }
    }
    let t = test_host(|b| b.usage_sink(Arc::new(Broken)));
    tenant_with(&t.host, "t", Limits::default(), &["echo"]).await;
    let err = t.host.invoke("t", "echo", event(b"x")).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("usage ledger write failed: disk full"),
        "{err}"
    );
    // Not counted either: counters never run ahead of the ledger.
    let m = from_metrics(t.host.registry());
    assert!(m.values().all(|t| t.by_outcome.is_empty()), "{m:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exposition_passes_promtool() {
    let t = test_host(|b| b);
    let host = &t.host;
    tenant_with(
        host,
        "t",
        Limits::default().fuel(50_000_000),
        &["echo", "spin-loop"],
    )
    .await;
    host.invoke("t", "echo", event(b"x")).await.expect("echo");
    let _ = host.invoke("t", "spin-loop", event(b"")).await;
    let text = host.metrics_text();

    let mut child = match std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => panic!(
            "promtool not runnable ({e}); run .ci/setup, which installs Debian's `prometheus` package"
        ),
    };
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- exposition ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `cpu_us` is time on a CPU, not time waiting: a guest blocked in a host
/// sleep until its timeout uses little of it; no record has more CPU than
/// wall time (one thread runs an invocation at a time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_time_counts_work_not_waiting() {
    let registry = prometheus::Registry::new();
    let t = test_host(|b| b.registry(registry.clone()));
    let host = &t.host;
    let limits = Limits::default().timeout(Duration::from_millis(400));
    tenant_with(host, "acme", limits, &["sleep", "compute"]).await;

    let _ = host.invoke("acme", "sleep", event(b"")).await;
    host.invoke("acme", "compute", event(b"3000000"))
        .await
        .expect("compute");

    let records = ledger(&t.ledger);
    let by = |f: &str| {
        records
            .iter()
            .find(|r| r.function == f)
            .unwrap_or_else(|| panic!("no record for {f}: {records:?}"))
    };
    let (sleep, compute) = (by("sleep"), by("compute"));
    assert_eq!(sleep.outcome, Outcome::Timeout, "{sleep:?}");
    assert!(sleep.wall_duration_us >= 400_000, "{sleep:?}");
    assert!(
        sleep.cpu_us * 4 < sleep.wall_duration_us,
        "a sleeping guest billed for CPU: {sleep:?}"
    );
    assert_eq!(compute.outcome, Outcome::Success, "{compute:?}");
    assert!(
        compute.cpu_us > 0 && compute.fuel_consumed > 0,
        "{compute:?}"
    );
    for r in &records {
        assert!(
            r.cpu_us <= r.wall_duration_us,
            "more CPU than wall time: {r:?}"
        );
    }
    // The two billing views agree on the new dimension too.
    let metrics = from_metrics(&registry);
    assert_eq!(metrics, from_ledger(&t.ledger));
}
