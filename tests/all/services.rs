//! Backend services granted per function: `wasi:config/store` (only the
//! granted keys, per function and tenant), `wasi:logging` (kept with the
//! invocation, readable through the admin API).

use nimbus_core::{FunctionConfig, Limits, Outcome};

use crate::support::{
    add_tenants, call, config_keys, deploy_ungranted, deploy_with, done, guest_err, ok, test_host,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_is_granted_per_function_and_tenant() {
    let t = test_host(|b| b);
    let host = &t.host;
    add_tenants(host, &["a", "b"]);
    let a_config = config_keys(&[("greeting", "hello from a"), ("secret", "s3cret")]);
    deploy_with(host, "a", "reader", "config-reader", a_config).await;
    let b_config = config_keys(&[("greeting", "hello from b")]);
    deploy_with(host, "b", "reader", "config-reader", b_config).await;

    assert_eq!(ok(host, "a", "reader", "greeting").await, "hello from a");
    assert_eq!(ok(host, "b", "reader", "greeting").await, "hello from b");

    // Same function name, other tenant: a's secret is not b's to read.
    let (error, report) = guest_err(host, "b", "reader", "secret").await;
    assert!(
        error.to_string().contains("no config key \"secret\""),
        "{error}"
    );
    assert_eq!(report.usage.outcome, Outcome::GuestError);
    assert_eq!(ok(host, "a", "reader", "secret").await, "s3cret");
}

#[tokio::test]
async fn a_component_importing_config_with_no_grant_deploys_and_reads_nothing() {
    let t = test_host(|b| b);
    t.host.add_tenant("t", Limits::default()).expect("tenant");
    let ungranted = FunctionConfig::default();
    let notes = deploy_ungranted(&t.host, "t", "reader", "config-reader", ungranted).await;
    assert!(notes.contains("`wasi:config/store@0.2.0-rc.1`"), "{notes}");
    assert!(notes.contains("no config keys are granted"), "{notes}");
    let (error, report) = guest_err(&t.host, "t", "reader", "greeting").await;
    assert!(
        error.to_string().contains("no config key \"greeting\""),
        "{error}"
    );
    assert_eq!(report.usage.outcome, Outcome::GuestError);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasi_logging_entries_are_kept_with_the_invocation() {
    let t = test_host(|b| b);
    let host = &t.host;
    host.add_tenant("t", Limits::default()).expect("tenant");
    let config = config_keys(&[("greeting", "hi"), ("token", "do-not-log-me")]);
    deploy_with(host, "t", "reader", "config-reader", config).await;

    let token = done(host, "t", "reader", "token").await;
    let levels: Vec<&str> = token.logs.entries.iter().map(|e| e.level).collect();
    assert_eq!(levels, ["info", "debug"], "{:?}", token.logs.entries);
    assert_eq!(token.logs.entries[0].context, "config-reader");
    assert!(
        token.logs.entries[0]
            .message
            .contains("among 2 granted keys")
    );
    let failed = call(host, "t", "reader", "missing").await.unwrap_err();
    let failed_id = failed.report().expect("report").usage.invocation_id;

    // Kept per function, filterable by invocation id; values never appear.
    let kept = host.invocation_logs("t", "reader", None);
    assert_eq!(kept.len(), 2);
    assert_eq!(kept[0].invocation_id, token.usage.invocation_id);
    let one = host.invocation_logs("t", "reader", Some(failed_id));
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].outcome, Outcome::GuestError);
    assert_eq!(one[0].logs.entries.last().map(|e| e.level), Some("warn"));
    let json = serde_json::to_string(&kept).expect("json");
    assert!(!json.contains("do-not-log-me"), "{json}");
    assert!(host.invocation_logs("other", "reader", None).is_empty());
}
