//! Backend services granted per function: `wasi:config/store` (only the
//! granted keys, per function and tenant), `wasi:logging` (kept with the
//! invocation, readable through the admin API).

use nimbus_core::{Error, Limits, Outcome};

use crate::support::{add_tenants, config_keys, deploy_with, event, guests, test_host};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_is_granted_per_function_and_tenant() {
    let t = test_host(|b| b);
    let host = &t.host;
    add_tenants(host, &["a", "b"]);
    let a_config = config_keys(&[("greeting", "hello from a"), ("secret", "s3cret")]);
    deploy_with(host, "a", "reader", "config-reader", a_config).await;
    let b_config = config_keys(&[("greeting", "hello from b")]);
    deploy_with(host, "b", "reader", "config-reader", b_config).await;

    let done = host
        .invoke("a", "reader", event(b"greeting"))
        .await
        .expect("a");
    assert_eq!(done.response.data, b"hello from a");
    let done = host
        .invoke("b", "reader", event(b"greeting"))
        .await
        .expect("b");
    assert_eq!(done.response.data, b"hello from b");

    // Same function name, other tenant: a's secret is not b's to read.
    let err = host
        .invoke("b", "reader", event(b"secret"))
        .await
        .unwrap_err();
    let Error::Guest { error, report } = &err else {
        panic!("expected a guest error, got {err}")
    };
    assert!(
        error.to_string().contains("no config key \"secret\""),
        "{error}"
    );
    assert_eq!(report.usage.outcome, Outcome::GuestError);
    assert_eq!(
        host.invoke("a", "reader", event(b"secret"))
            .await
            .expect("a secret")
            .response
            .data,
        b"s3cret"
    );
}

#[tokio::test]
async fn a_component_importing_config_needs_a_config_grant() {
    let t = test_host(|b| b);
    t.host.add_tenant("t", Limits::default()).expect("tenant");
    let err = t
        .host
        .deploy("t", "reader", &guests().bytes("config-reader"))
        .await
        .unwrap_err();
    let m = err.to_string();
    assert!(m.contains("imports `wasi:config/store@0.2.0-rc.1`"), "{m}");
    assert!(m.contains("granted no config keys"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasi_logging_entries_are_kept_with_the_invocation() {
    let t = test_host(|b| b);
    let host = &t.host;
    host.add_tenant("t", Limits::default()).expect("tenant");
    let config = config_keys(&[("greeting", "hi"), ("token", "do-not-log-me")]);
    deploy_with(host, "t", "reader", "config-reader", config).await;

    let done = host
        .invoke("t", "reader", event(b"token"))
        .await
        .expect("invoke");
    let levels: Vec<&str> = done.logs.entries.iter().map(|e| e.level).collect();
    assert_eq!(levels, ["info", "debug"], "{:?}", done.logs.entries);
    assert_eq!(done.logs.entries[0].context, "config-reader");
    assert!(
        done.logs.entries[0]
            .message
            .contains("among 2 granted keys")
    );
    let failed = host
        .invoke("t", "reader", event(b"missing"))
        .await
        .unwrap_err();
    let failed_id = failed.report().expect("report").usage.invocation_id;

    // Kept per function, filterable by invocation id; values never appear.
    let kept = host.invocation_logs("t", "reader", None);
    assert_eq!(kept.len(), 2);
    assert_eq!(kept[0].invocation_id, done.usage.invocation_id);
    let one = host.invocation_logs("t", "reader", Some(failed_id));
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].outcome, Outcome::GuestError);
    assert_eq!(one[0].logs.entries.last().map(|e| e.level), Some("warn"));
    let json = serde_json::to_string(&kept).expect("json");
    assert!(!json.contains("do-not-log-me"), "{json}");
    assert!(host.invocation_logs("other", "reader", None).is_empty());
}
