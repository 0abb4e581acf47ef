//! `wasi:keyvalue` (store, atomics, batch) backed by the embedded database
//! in the host's data directory: atomic counters under concurrency, data
//! surviving a restart, stores namespaced per tenant, only granted stores
//! opened, key and value limits, and the operations counted in the ledger
//! and the metrics alike.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use nimbus_core::{FunctionConfig, GuestError, Host, HostBuilder, Limits, Outcome, PoolConfig};

use crate::support::{
    call, data_host, denied_calls, deploy_ungranted, deploy_with, guest_err, lines, metric, ok,
    series, shorten, stores, sums, usage,
};

/// 64 pool slots, so 40 invocations at once are not throttled by the host.
fn roomy_pool(builder: HostBuilder) -> HostBuilder {
    builder.pool(PoolConfig {
        max_instances: 64,
        max_memory_bytes: 128 << 20,
        ..PoolConfig::default()
    })
}

/// Deploys `kv-counter` as `tenant/function`, granted `granted` stores.
async fn deploy_kv(host: &Host, tenant: &str, function: &str, granted: &[&str]) {
    deploy_with(host, tenant, function, "kv-counter", stores(granted)).await;
}

/// `get` of a key that must be absent.
async fn missing(host: &Host, tenant: &str, function: &str, store: &str, key: &str) {
    let (error, _) = guest_err(host, tenant, function, &format!("get {store} {key}")).await;
    assert_eq!(
        error,
        GuestError::InvalidInput("missing".into()),
        "{tenant}/{function} get {store:?} {key:?}"
    );
}

fn kv_metric(host: &Host, tenant: &str, function: &str, op: &str) -> f64 {
    series(
        host,
        "nimbus_kv_operations_total",
        &[("tenant", tenant), ("function", function), ("op", op)],
    )
}

/// Per (tenant, function): kv_reads, kv_writes and denied_calls summed over
/// the ledger's records.
fn ledger_sums(ledger: &Path) -> BTreeMap<(String, String), [u64; 3]> {
    sums(ledger, |r| [r.kv_reads, r.kv_writes, r.denied_calls])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_increments_are_atomic() {
    let t = data_host(roomy_pool);
    let host = &t.host;
    host.add_tenant("t", Limits::default().max_concurrency(64))
        .expect("tenant");
    deploy_kv(host, "t", "counter", &["s"]).await;

    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let host = host.clone();
            tokio::spawn(async move { ok(&host, "t", "counter", "incr s counter").await })
        })
        .collect();
    let mut seen = BTreeSet::new();
    for task in tasks {
        let value: u64 = task
            .await
            .expect("invocation task")
            .parse()
            .expect("a decimal counter");
        assert!(seen.insert(value), "{value} returned twice");
    }
    assert_eq!(seen, (1..=40).collect::<BTreeSet<u64>>());
    assert_eq!(ok(host, "t", "counter", "get s counter").await, "40");

    // The counter is the decimal text a `set` can write too.
    assert_eq!(ok(host, "t", "counter", "set s other 41").await, "ok");
    assert_eq!(ok(host, "t", "counter", "incr s other").await, "42");
    assert_eq!(ok(host, "t", "counter", "get s other").await, "42");
    // Another key is another counter.
    assert_eq!(ok(host, "t", "counter", "incr s counter2").await, "1");

    let records = t.records();
    assert_eq!(records.len(), 45);
    assert!(records.iter().all(|r| r.outcome == Outcome::Success));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_a_restart_of_the_host() {
    let t = data_host(roomy_pool);
    let host = &t.host;
    host.add_tenant("t", Limits::default()).expect("tenant");
    deploy_kv(host, "t", "kv", &["s"]).await;
    assert_eq!(
        ok(host, "t", "kv", "set s greeting hello again").await,
        "ok"
    );
    for _ in 0..3 {
        ok(host, "t", "kv", "incr s n").await;
    }
    assert_eq!(ok(host, "t", "kv", "batch s a=1 b=2").await, "a=1\nb=2");
    assert_eq!(ok(host, "t", "kv", "del s b").await, "ok");
    assert!(t.dir().join("data/kv.redb").is_file());

    let t = t.restart(roomy_pool);
    let host = &t.host;
    host.add_tenant("t", Limits::default()).expect("tenant");
    deploy_kv(host, "t", "kv", &["s"]).await;
    assert_eq!(ok(host, "t", "kv", "get s greeting").await, "hello again");
    assert_eq!(ok(host, "t", "kv", "incr s n").await, "4");
    assert_eq!(ok(host, "t", "kv", "get s a").await, "1");
    missing(host, "t", "kv", "s", "b").await;
    assert_eq!(
        lines(&ok(host, "t", "kv", "list s").await),
        lines("a\ngreeting\nn")
    );

    // And once more, after a host that only read.
    let t = t.restart(roomy_pool);
    let host = &t.host;
    host.add_tenant("t", Limits::default()).expect("tenant");
    deploy_kv(host, "t", "kv", &["s"]).await;
    assert_eq!(ok(host, "t", "kv", "incr s n").await, "5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_are_namespaced_per_tenant() {
    let t = data_host(roomy_pool);
    let host = &t.host;
    for tenant in ["a", "b", "ab"] {
        host.add_tenant(tenant, Limits::default()).expect("tenant");
    }
    deploy_kv(host, "a", "kv", &["shared"]).await;
    deploy_kv(host, "b", "kv", &["shared"]).await;

    assert_eq!(ok(host, "a", "kv", "set shared k 1").await, "ok");
    missing(host, "b", "kv", "shared", "k").await;
    assert_eq!(ok(host, "b", "kv", "list shared").await, "");
    assert_eq!(ok(host, "b", "kv", "set shared k 2").await, "ok");
    assert_eq!(ok(host, "a", "kv", "get shared k").await, "1");
    assert_eq!(ok(host, "b", "kv", "get shared k").await, "2");
    // b's counter and deletes stay in b.
    assert_eq!(ok(host, "b", "kv", "incr shared c").await, "1");
    missing(host, "a", "kv", "shared", "c").await;
    assert_eq!(ok(host, "b", "kv", "del shared k").await, "ok");
    assert_eq!(ok(host, "a", "kv", "get shared k").await, "1");
    assert_eq!(ok(host, "a", "kv", "list shared").await, "k");
    assert_eq!(ok(host, "b", "kv", "list shared").await, "c");
    // A batch in b neither reads nor writes a's keys.
    assert_eq!(
        ok(host, "b", "kv", "batch shared k=b-batch").await,
        "k=b-batch"
    );
    assert_eq!(ok(host, "a", "kv", "get shared k").await, "1");

    // Stores are the tenant's: another function of a granted the same store
    // sees the same keys.
    deploy_kv(host, "a", "other", &["shared"]).await;
    assert_eq!(ok(host, "a", "other", "get shared k").await, "1");

    // Names that only look alike are other stores, and not granted.
    for name in [
        "shared\0", "shared/", "Shared", "sharedk", "shar", "\0shared",
    ] {
        let (error, _) = guest_err(host, "a", "kv", &format!("get {name} k")).await;
        assert!(
            error.to_string().contains("AccessDenied"),
            "store {name:?}: {error}"
        );
    }

    // Granted, they are separate: "shared" vs "shared\0", and a store name
    // with a '/' that a naive `store/key` encoding would confuse.
    deploy_kv(
        host,
        "a",
        "tricky",
        &["shared", "shared\0", "shared/x", "x"],
    )
    .await;
    assert_eq!(ok(host, "a", "tricky", "get shared k").await, "1");
    missing(host, "a", "tricky", "shared\0", "k").await;
    assert_eq!(ok(host, "a", "tricky", "list shared\0").await, "");
    assert_eq!(ok(host, "a", "tricky", "set shared\0 k nul").await, "ok");
    assert_eq!(ok(host, "a", "tricky", "get shared k").await, "1");
    assert_eq!(ok(host, "a", "tricky", "get shared\0 k").await, "nul");
    assert_eq!(
        ok(host, "a", "tricky", "set shared x/y slash-key").await,
        "ok"
    );
    missing(host, "a", "tricky", "shared/x", "y").await;
    assert_eq!(
        ok(host, "a", "tricky", "set shared/x y slash-store").await,
        "ok"
    );
    assert_eq!(ok(host, "a", "tricky", "get shared x/y").await, "slash-key");
    assert_eq!(
        ok(host, "a", "tricky", "get shared/x y").await,
        "slash-store"
    );
    assert_eq!(ok(host, "a", "tricky", "list shared/x").await, "y");
    assert_eq!(ok(host, "a", "tricky", "list x").await, "");

    // Keys with '/' and '..' are opaque: no path to another store or tenant.
    for key in [
        "../b/shared/k",
        "../../b/kv/shared/k",
        "/k",
        "./k",
        "k/..",
        "..",
        ".",
    ] {
        missing(host, "a", "tricky", "shared", key).await;
        assert_eq!(
            ok(host, "a", "tricky", &format!("set shared {key} dots")).await,
            "ok"
        );
        assert_eq!(
            ok(host, "a", "tricky", &format!("get shared {key}")).await,
            "dots"
        );
    }
    assert_eq!(ok(host, "a", "kv", "get shared k").await, "1");
    missing(host, "b", "kv", "shared", "../b/shared/k").await;
    assert_eq!(
        lines(&ok(host, "b", "kv", "list shared").await),
        lines("c\nk")
    );
    let a_keys = lines(&ok(host, "a", "kv", "list shared").await);
    let expected: BTreeSet<String> = [
        "k",
        "x/y",
        "../b/shared/k",
        "../../b/kv/shared/k",
        "/k",
        "./k",
        "k/..",
        "..",
        ".",
    ]
    .into_iter()
    .map(str::to_string)
    .collect();
    assert_eq!(a_keys, expected);

    // Tenant and store names that concatenate alike: "a"+"bc" vs "ab"+"c".
    deploy_kv(host, "a", "concat", &["bc"]).await;
    deploy_kv(host, "ab", "concat", &["c", "bc"]).await;
    assert_eq!(ok(host, "a", "concat", "set bc k from-a").await, "ok");
    missing(host, "ab", "concat", "c", "k").await;
    missing(host, "ab", "concat", "bc", "k").await;
    assert_eq!(ok(host, "ab", "concat", "list c").await, "");
    assert_eq!(ok(host, "ab", "concat", "set c k from-ab").await, "ok");
    assert_eq!(ok(host, "a", "concat", "get bc k").await, "from-a");
    assert_eq!(ok(host, "a", "concat", "list bc").await, "k");
    // The same shape inside one tenant: store "bc" key "k" vs store "b" key "ck".
    assert_eq!(ok(host, "ab", "concat", "incr bc k").await, "1");
    assert_eq!(ok(host, "ab", "concat", "get c k").await, "from-ab");
    assert_eq!(ok(host, "a", "concat", "get bc k").await, "from-a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ungranted_stores_are_denied() {
    let t = data_host(roomy_pool);
    let host = &t.host;
    host.add_tenant("t", Limits::default()).expect("tenant");
    host.add_tenant("u", Limits::default()).expect("tenant");
    deploy_kv(host, "t", "kv", &["mine"]).await;
    deploy_kv(host, "u", "kv", &["theirs"]).await;
    assert_eq!(ok(host, "u", "kv", "set theirs k secret").await, "ok");

    // Opening a store granted to another tenant, or to nobody.
    for (i, command) in ["get theirs k", "set theirs k overwritten", "list nobody's"]
        .into_iter()
        .enumerate()
    {
        let (error, report) = guest_err(host, "t", "kv", command).await;
        assert!(
            matches!(&error, GuestError::Failed(m) if m.contains("AccessDenied")),
            "`{command}`: {error}"
        );
        assert_eq!(report.usage.denied_calls, 1, "{:?}", report.usage);
        assert_eq!(report.usage.kv_reads + report.usage.kv_writes, 0);
        assert_eq!(denied_calls(host, "t", "kv"), (i + 1) as f64);
    }
    assert_eq!(ok(host, "u", "kv", "get theirs k").await, "secret");
    // Granted stores are not denied.
    let done = call(host, "t", "kv", "set mine k v")
        .await
        .expect("granted");
    assert_eq!(done.usage.denied_calls, 0);
    assert_eq!(denied_calls(host, "t", "kv"), 3.0);
    assert_eq!(denied_calls(host, "u", "kv"), 0.0);
    let sums = ledger_sums(&t.ledger);
    assert_eq!(sums[&("t".into(), "kv".into())][2], 3);
    assert_eq!(sums[&("u".into(), "kv".into())][2], 0);

    // A component importing wasi:keyvalue with no stores granted deploys
    // (dynamic-language toolchains import every interface of their world),
    // the deploy names the import, and every open is denied inside the guest.
    for config in [
        FunctionConfig::default(),
        FunctionConfig {
            config: [("k".to_string(), "v".to_string())].into(),
            ..FunctionConfig::default()
        },
    ] {
        let notes = deploy_ungranted(host, "t", "nokv", "kv-counter", config).await;
        assert!(notes.contains("wasi:keyvalue/"), "{notes}");
        assert!(notes.contains("no key-value stores are granted"), "{notes}");
        assert!(notes.contains("`kv_stores`"), "{notes}");
        let (error, report) = guest_err(host, "t", "nokv", "get mine k").await;
        assert!(
            matches!(&error, GuestError::Failed(m) if m.contains("AccessDenied")),
            "{error}"
        );
        assert_eq!(report.usage.denied_calls, 1, "{:?}", report.usage);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_list_and_delete_round_trip() {
    let t = data_host(roomy_pool);
    let host = &t.host;
    host.add_tenant("t", Limits::default()).expect("tenant");
    deploy_kv(host, "t", "kv", &["s", "empty"]).await;

    assert_eq!(ok(host, "t", "kv", "list empty").await, "");
    missing(host, "t", "kv", "empty", "k").await;
    assert_eq!(ok(host, "t", "kv", "del empty never-set").await, "ok");

    assert_eq!(
        ok(host, "t", "kv", "batch s a=1 b=two c=").await,
        "a=1\nb=two\nc="
    );
    assert_eq!(ok(host, "t", "kv", "get s b").await, "two");
    assert_eq!(ok(host, "t", "kv", "get s c").await, "");
    assert_eq!(ok(host, "t", "kv", "set s d with spaces").await, "ok");
    assert_eq!(ok(host, "t", "kv", "get s d").await, "with spaces");
    assert_eq!(
        lines(&ok(host, "t", "kv", "list s").await),
        lines("a\nb\nc\nd")
    );
    // Overwrites, by set and by batch.
    assert_eq!(ok(host, "t", "kv", "set s a one").await, "ok");
    assert_eq!(ok(host, "t", "kv", "batch s b=2 e=5").await, "b=2\ne=5");
    assert_eq!(ok(host, "t", "kv", "get s a").await, "one");
    assert_eq!(ok(host, "t", "kv", "get s b").await, "2");
    assert_eq!(ok(host, "t", "kv", "del s b").await, "ok");
    assert_eq!(ok(host, "t", "kv", "del s b").await, "ok");
    missing(host, "t", "kv", "s", "b").await;
    assert_eq!(
        lines(&ok(host, "t", "kv", "list s").await),
        lines("a\nc\nd\ne")
    );
    assert_eq!(ok(host, "t", "kv", "list empty").await, "");

    // More keys than one page: the guest follows the cursor to the end.
    let pairs: Vec<String> = (0..2500).map(|i| format!("p{i:04}={i}")).collect();
    let answer = ok(host, "t", "kv", &format!("batch s {}", pairs.join(" "))).await;
    assert_eq!(answer, pairs.join("\n"));
    let listed = ok(host, "t", "kv", "list s").await;
    let listed_keys: Vec<&str> = listed.lines().collect();
    assert_eq!(listed_keys.len(), 2504, "keys listed once each");
    let mut expected: BTreeSet<String> = (0..2500).map(|i| format!("p{i:04}")).collect();
    expected.extend(["a", "c", "d", "e"].map(String::from));
    assert_eq!(lines(&listed), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_and_value_limits_are_guest_errors() {
    let t = data_host(roomy_pool);
    let host = &t.host;
    host.add_tenant("t", Limits::default()).expect("tenant");
    deploy_kv(host, "t", "kv", &["s"]).await;

    let limit_err = |error: &GuestError, what: &str, limit: &str| {
        let GuestError::Failed(m) = error else {
            panic!("{what}: expected failed(..), got {error:?}")
        };
        assert!(m.contains("Other"), "{what}: {m}");
        assert!(m.contains(limit), "{what}: {m}");
    };

    // At the limits: accepted.
    let key_1024 = "k".repeat(1024);
    assert_eq!(
        ok(host, "t", "kv", &format!("set s {key_1024} v")).await,
        "ok"
    );
    assert_eq!(ok(host, "t", "kv", &format!("get s {key_1024}")).await, "v");
    assert_eq!(ok(host, "t", "kv", "big s big 1048576").await, "ok");
    let done = call(host, "t", "kv", "get s big").await.expect("get 1 MiB");
    assert_eq!(done.response.data.len(), 1 << 20);
    assert!(done.response.data.iter().all(|&b| b == b'x'));

    // Over them: an `other` error naming the limit, for every operation.
    let key_2000 = "k".repeat(2000);
    for command in [
        format!("set s {key_2000} v"),
        format!("get s {key_2000}"),
        format!("del s {key_2000}"),
        format!("incr s {key_2000}"),
        format!("batch s a=1 {key_2000}=v"),
        format!("big s {key_2000} 1"),
    ] {
        let (error, _) = guest_err(host, "t", "kv", &command).await;
        limit_err(&error, &shorten(&command), "1024");
    }
    // `set-many` checks every pair before writing any (the backend's
    // contract; the WIT would allow a partial write).
    missing(host, "t", "kv", "s", "a").await;
    let key_1025 = "k".repeat(1025);
    let (error, _) = guest_err(host, "t", "kv", &format!("set s {key_1025} v")).await;
    limit_err(&error, "1025-byte key", "1024");

    for n in [1048577, 2 << 20] {
        let (error, _) = guest_err(host, "t", "kv", &format!("big s big2 {n}")).await;
        limit_err(&error, &format!("{n}-byte value"), "1048576");
    }
    missing(host, "t", "kv", "s", "big2").await;
    // The value at the limit is intact, and the host still serves the function.
    let done = call(host, "t", "kv", "get s big").await.expect("get 1 MiB");
    assert_eq!(done.response.data.len(), 1 << 20);
    assert_eq!(ok(host, "t", "kv", "incr s n").await, "1");
    let records = t.records();
    assert!(
        records
            .iter()
            .all(|r| matches!(r.outcome, Outcome::Success | Outcome::GuestError)),
        "no trap: {records:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_operations_are_counted_in_the_ledger_and_the_metrics() {
    let t = data_host(roomy_pool);
    let host = &t.host;
    host.add_tenant("acme", Limits::default()).expect("tenant");
    host.add_tenant("acmek", Limits::default()).expect("tenant");
    deploy_kv(host, "acme", "kv", &["s"]).await;
    deploy_kv(host, "acmek", "v", &["s"]).await;

    // (command, reads, writes) for one invocation each.
    let expected: [(&str, u64, u64); 8] = [
        ("set s k v", 0, 1),
        ("get s k", 1, 0),
        ("incr s n", 0, 1),
        ("del s k", 0, 1),
        ("list s", 1, 0),
        ("batch s a=1 b=2 c=3", 1, 1),
        ("big s big 10", 0, 1),
        ("echo s", 0, 0),
    ];
    for (command, reads, writes) in expected {
        let usage = usage(&call(host, "acme", "kv", command).await);
        assert_eq!(
            (usage.kv_reads, usage.kv_writes),
            (reads, writes),
            "`{command}`: {usage:?}"
        );
    }
    // A missing key is still a read; a denied open is no operation.
    let (_, report) = guest_err(host, "acme", "kv", "get s k").await;
    assert_eq!((report.usage.kv_reads, report.usage.kv_writes), (1, 0));
    let (_, report) = guest_err(host, "acme", "kv", "get denied k").await;
    assert_eq!((report.usage.kv_reads, report.usage.kv_writes), (0, 0));
    assert_eq!(report.usage.denied_calls, 1);

    assert_eq!(kv_metric(host, "acme", "kv", "read"), 4.0);
    assert_eq!(kv_metric(host, "acme", "kv", "write"), 5.0);
    assert_eq!(kv_metric(host, "acmek", "v", "read"), 0.0);

    // Concurrent, mixed traffic (limit errors included) over two tenants
    // whose names concatenate alike.
    let tasks: Vec<_> = (0..60u32)
        .map(|i| {
            let host = host.clone();
            tokio::spawn(async move {
                let (tenant, function) = if i % 2 == 0 {
                    ("acme", "kv")
                } else {
                    ("acmek", "v")
                };
                let command = match i % 6 {
                    0 | 1 => format!("incr s c{}", i % 4),
                    2 => format!("batch s x{i}=1 y{i}=2"),
                    3 => "list s".to_string(),
                    4 => format!("get s {}", "k".repeat(2000)),
                    _ => format!("big s b{i} {}", 2 << 20),
                };
                let _ = call(&host, tenant, function, &command).await;
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("invocation task");
    }

    let sums = ledger_sums(&t.ledger);
    assert_eq!(sums.len(), 2, "{sums:?}");
    for ((tenant, function), [reads, writes, denied]) in &sums {
        assert_eq!(
            kv_metric(host, tenant, function, "read"),
            *reads as f64,
            "{tenant}/{function} reads"
        );
        assert_eq!(
            kv_metric(host, tenant, function, "write"),
            *writes as f64,
            "{tenant}/{function} writes"
        );
        assert_eq!(denied_calls(host, tenant, function), *denied as f64);
    }
    // acme: 4 reads above (the missing key's included), then 10 batches (one get-many each) and 10
    // over-long gets (counted or not); writes: 5 above, 10 incr, 10 set-many.
    // acmek: 10 lists; 10 incr and 10 oversized sets (counted or not).
    let acme = sums[&("acme".into(), "kv".into())];
    let acmek = sums[&("acmek".into(), "v".into())];
    assert!(matches!(acme[0], 14 | 24), "{acme:?}");
    assert_eq!((acme[1], acme[2]), (25, 1), "{acme:?}");
    assert_eq!(acmek[0], 10, "{acmek:?}");
    assert!(matches!(acmek[1], 10 | 20), "{acmek:?}");
    assert_eq!(acmek[2], 0, "{acmek:?}");
    let text = host.metrics_text();
    assert!(text.contains("nimbus_kv_operations_total{"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_storage_quota_holds_per_tenant_and_the_gauge_is_exact() {
    let h = data_host(roomy_pool);
    let host = &h.host;
    host.add_tenant("small", Limits::default().max_kv_bytes(1000))
        .expect("tenant");
    host.add_tenant("roomy", Limits::default()).expect("tenant");
    deploy_kv(host, "small", "kv", &["s"]).await;
    deploy_kv(host, "roomy", "kv", &["s"]).await;

    // 1 + 600 bytes fit; another 1 + 600 would not, and is not written.
    ok(host, "small", "kv", "big s a 600").await;
    let (error, _) = guest_err(host, "small", "kv", "big s b 600").await;
    assert!(
        error.to_string().contains("over its quota of 1000 bytes"),
        "{error}"
    );
    missing(host, "small", "kv", "s", "b").await;
    // Overwriting in place does not count twice; other tenants are unaffected.
    ok(host, "small", "kv", "big s a 900").await;
    ok(host, "roomy", "kv", "big s b 5000").await;

    let gauge = |tenant: &str| {
        metric(
            host,
            &format!("nimbus_kv_stored_bytes{{tenant=\"{tenant}\"}}"),
        )
    };
    assert_eq!(gauge("small"), Some(901.0));
    assert_eq!(gauge("roomy"), Some(5001.0));
    ok(host, "small", "kv", "del s a").await;
    assert_eq!(gauge("small"), Some(0.0));
}
