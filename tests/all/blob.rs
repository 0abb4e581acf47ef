//! `wasi:blobstore` for guests, driven through the `blob-store` guest as a
//! user would: multi-megabyte objects streamed both ways and read back
//! natively, tenants that cannot reach each other's objects by any name,
//! ungranted containers denied and counted, abandoned writes leaving
//! nothing behind, the storage quota and the object size limit. Data
//! outliving restarts and the ledger agreeing with the metrics are in
//! `blob_usage`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use nimbus_core::nimbus_blob::FsBlobs;
use nimbus_core::{FunctionConfig, Host, Limits};

use crate::support::{
    TestHost, call, containers, data_host, denied_calls, deploy_ungranted, deploy_with, done,
    fails_with, guests, lines, metric, ok, read_object, series, sums, usage,
};

/// Deploys `blob-store` as `tenant/function`, granted `granted` containers.
pub(crate) async fn deploy_blobs(host: &Host, tenant: &str, function: &str, granted: &[&str]) {
    deploy_with(host, tenant, function, "blob-store", containers(granted)).await;
}

/// The names of the files in `<data_dir>/blobs/data/<tenant>` of the host
/// whose temporary directory is `dir` (none if it does not exist yet):
/// committed objects and spools alike.
pub(crate) fn object_files(dir: &Path, tenant: &str) -> Vec<String> {
    match std::fs::read_dir(dir.join("data/blobs/data").join(tenant)) {
        Ok(entries) => entries
            .map(|e| {
                e.expect("directory entry")
                    .file_name()
                    .into_string()
                    .expect("UTF-8 file name")
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("{}: {e}", dir.display()),
    }
}

fn files(t: &TestHost, tenant: &str) -> usize {
    object_files(t.dir(), tenant).len()
}

/// The first `n` bytes of the guest's pattern: byte `i` is `(i*31+7) % 251`.
pub(crate) fn pattern(n: u64) -> Vec<u8> {
    (0..n).map(|i| ((i * 31 + 7) % 251) as u8).collect()
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// What `get` answers for an object holding the first `n` pattern bytes.
pub(crate) fn digest(n: u64) -> String {
    format!("ok {n} {:016x}", fnv1a(&pattern(n)))
}

/// The whole object, read natively through the host's blob store.
pub(crate) fn read_native(host: &Host, tenant: &str, container: &str, name: &str) -> Vec<u8> {
    read_object(&*host.blob_store(), tenant, container, name)
        .unwrap_or_else(|e| panic!("read {tenant}/{container}/{name} natively: {e}"))
}

/// The `nimbus_blob_stored_bytes` gauge of `tenant`, as scraped.
pub(crate) fn stored_gauge(host: &Host, tenant: &str) -> Option<f64> {
    metric(
        host,
        &format!("nimbus_blob_stored_bytes{{tenant=\"{tenant}\"}}"),
    )
}

// ---------------------------------------------------------------------------
// 1. Multi-megabyte objects, streamed

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_megabyte_objects_stream_both_ways_and_read_back_natively() {
    let t = data_host(|b| b);
    let host = &t.host;
    host.add_tenant("t", Limits::default()).expect("tenant");
    deploy_blobs(host, "t", "blobs", &["uploads"]).await;
    let store = host.blob_store();

    // Even sizes call write-data after the body, odd ones before it; the
    // chunk sizes are odd and even too, and 3 MB writes exceed what one
    // check-write admits, so the guest must wait for budget.
    let objects: [(&str, u64, u64); 4] = [
        ("big", 5_000_000, 65536),
        ("odd", 4_999_999, 65537),
        ("huge-writes", 3_000_001, 3_000_000),
        ("empty", 0, 1),
    ];
    for (name, n, chunk) in objects {
        let put = done(
            host,
            "t",
            "blobs",
            &format!("put uploads {name} {n} {chunk}"),
        )
        .await;
        assert_eq!(
            String::from_utf8_lossy(&put.response.data),
            format!("ok {n}")
        );
        assert_eq!(put.usage.blob_bytes_written, n, "{name}: {:?}", put.usage);
        assert_eq!(put.usage.blob_operations, 2, "get-container, finish");

        let get = done(host, "t", "blobs", &format!("get uploads {name}")).await;
        assert_eq!(
            String::from_utf8_lossy(&get.response.data),
            digest(n),
            "{name}"
        );
        assert_eq!(get.usage.blob_bytes_read, n, "{name}: {:?}", get.usage);
        assert_eq!(get.usage.blob_bytes_written, 0);

        // The same bytes, read natively from the same backend.
        let native = read_native(host, "t", "uploads", name);
        assert_eq!(native.len() as u64, n, "{name}");
        assert!(native == pattern(n), "{name}: native bytes differ");
        let meta = store
            .head("t", "uploads", name)
            .expect("head")
            .expect("the object exists");
        assert_eq!(meta.size, n);
        assert_eq!(
            ok(host, "t", "blobs", &format!("info uploads {name}")).await,
            n.to_string()
        );
    }

    // consume-sync returns the whole 5 MB object in one list.
    let cat = done(host, "t", "blobs", "cat uploads big").await;
    assert!(cat.response.data == pattern(5_000_000), "cat differs");
    assert_eq!(cat.usage.blob_bytes_read, 5_000_000);

    // Ranges are inclusive; an end past the object is clamped to its last
    // byte.
    let whole = pattern(5_000_000);
    for (start, end) in [
        (0u64, 0u64),
        (1_000_000, 1_000_099),
        (65535, 65537),
        (4_999_990, 4_999_999),
        (4_999_990, u64::MAX),
    ] {
        let range = done(
            host,
            "t",
            "blobs",
            &format!("range uploads big {start} {end}"),
        )
        .await;
        let last = end.min(4_999_999) as usize;
        assert_eq!(
            &range.response.data[..],
            &whole[start as usize..=last],
            "range {start}..={end}"
        );
        assert_eq!(range.usage.blob_bytes_read, (last + 1) as u64 - start);
    }
    fails_with(
        host,
        "t",
        "blobs",
        "range uploads big 5000000 5000010",
        &["past the end"],
    )
    .await;
    fails_with(
        host,
        "t",
        "blobs",
        "range uploads big 10 5",
        &["before start"],
    )
    .await;

    // Replacing an object replaces its bytes and frees the old file.
    assert_eq!(files(&t, "t"), 4);
    assert_eq!(
        ok(host, "t", "blobs", "put uploads big 1001 7").await,
        "ok 1001"
    );
    assert_eq!(
        ok(host, "t", "blobs", "get uploads big").await,
        digest(1001)
    );
    assert_eq!(files(&t, "t"), 4);
    assert_eq!(
        store.stored_bytes("t").expect("stored bytes"),
        1001 + 4_999_999 + 3_000_001
    );
    assert_eq!(
        lines(&ok(host, "t", "blobs", "list uploads").await),
        lines("big\nempty\nhuge-writes\nodd")
    );

    // A native write is what the guest reads.
    let mut spool = store.spool("t").expect("spool");
    spool.write(&pattern(70_000)).expect("spool write");
    store
        .commit(spool, "uploads", "native", None, Default::default())
        .expect("commit");
    assert_eq!(
        ok(host, "t", "blobs", "get uploads native").await,
        digest(70_000)
    );
}

// ---------------------------------------------------------------------------
// 2. Tenant isolation

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_name_reaches_another_tenants_objects() {
    let t = data_host(|b| b);
    let host = &t.host;
    for tenant in ["a", "ab", "b"] {
        host.add_tenant(tenant, Limits::default()).expect("tenant");
    }
    deploy_blobs(host, "a", "blobs", &["uploads", "bc"]).await;
    deploy_blobs(host, "ab", "blobs", &["uploads", "c"]).await;
    deploy_blobs(host, "b", "blobs", &["uploads"]).await;

    assert_eq!(
        ok(host, "a", "blobs", "write uploads x secret of a").await,
        "ok"
    );
    assert_eq!(
        ok(host, "a", "blobs", "write uploads dir/file nested secret").await,
        "ok"
    );
    assert_eq!(ok(host, "a", "blobs", "write bc k from a").await, "ok");
    // a's object files: their bare names and absolute host paths are names
    // like any other to another tenant (and to a).
    let a_files = object_files(t.dir(), "a");
    assert_eq!(a_files.len(), 3, "{a_files:?}");
    let a_dir = t.dir().join("data/blobs/data/a");
    let mut probes: Vec<String> = [
        "x",
        "dir/file",
        "../a/uploads/x",
        "../../a/uploads/x",
        "../../../a/uploads/x",
        "../a/x",
        "/a/uploads/x",
        "a/uploads/x",
        "uploads/x",
        "a/x",
        "%2e%2e%2fa%2fuploads%2fx",
        "..%2Fa%2Fuploads%2Fx",
        "%2Fa%2Fuploads%2Fx",
        "a%2Fuploads%2Fx",
        "./x",
        "x/.",
        "..",
        ".",
        "/",
        "//x",
        "\\..\\a\\uploads\\x",
        "/etc/passwd",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    for f in &a_files {
        probes.push(f.clone());
        probes.push(format!("../a/{f}"));
        probes.push(a_dir.join(f).display().to_string());
    }

    for other in ["ab", "b"] {
        for name in &probes {
            assert_eq!(
                ok(host, other, "blobs", &format!("has uploads {name}")).await,
                "false",
                "{other} has {name:?}"
            );
            for command in [
                format!("cat uploads {name}"),
                format!("info uploads {name}"),
                format!("range uploads {name} 0 3"),
                format!("copy uploads {name} uploads stolen"),
                format!("move uploads {name} uploads stolen"),
            ] {
                fails_with(host, other, "blobs", &command, &["does not exist"]).await;
            }
            // Deleting is a no-op: there is no such object in this tenant.
            assert_eq!(
                ok(host, other, "blobs", &format!("del uploads {name}")).await,
                "ok"
            );
        }
        assert_eq!(ok(host, other, "blobs", "list uploads").await, "");
    }

    // Under the very same names, b writes objects of its own.
    for name in &probes {
        let command = format!("write uploads {name} b:{name}");
        assert_eq!(ok(host, "b", "blobs", &command).await, "ok", "{command}");
        assert_eq!(
            ok(host, "b", "blobs", &format!("cat uploads {name}")).await,
            format!("b:{name}")
        );
    }
    let b_names: BTreeSet<String> = probes.iter().cloned().collect();
    assert_eq!(
        lines(&ok(host, "b", "blobs", "list uploads").await),
        b_names
    );
    assert_eq!(files(&t, "b"), b_names.len());

    // a's objects are untouched: bytes, listing and files.
    assert_eq!(ok(host, "a", "blobs", "cat uploads x").await, "secret of a");
    assert_eq!(
        ok(host, "a", "blobs", "cat uploads dir/file").await,
        "nested secret"
    );
    assert_eq!(ok(host, "a", "blobs", "cat bc k").await, "from a");
    assert_eq!(
        lines(&ok(host, "a", "blobs", "list uploads").await),
        lines("dir/file\nx")
    );
    let mut after = object_files(t.dir(), "a");
    after.sort();
    let mut before = a_files.clone();
    before.sort();
    assert_eq!(after, before);
    // ... and nothing in a is reachable by b's names either.
    for name in &probes[2..] {
        assert_eq!(
            ok(host, "a", "blobs", &format!("has uploads {name}")).await,
            "false",
            "a has {name:?}"
        );
    }

    // Tenant and container names that concatenate alike: a/bc vs ab/c.
    assert_eq!(ok(host, "ab", "blobs", "has c k").await, "false");
    assert_eq!(ok(host, "ab", "blobs", "list c").await, "");
    fails_with(host, "ab", "blobs", "cat c k", &["does not exist"]).await;
    assert_eq!(ok(host, "ab", "blobs", "write c k from ab").await, "ok");
    assert_eq!(ok(host, "a", "blobs", "cat bc k").await, "from a");
    assert_eq!(ok(host, "ab", "blobs", "cat c k").await, "from ab");

    // Another tenant's container, by its name or a path to it, is just a
    // container this function was not granted.
    for name in ["bc", "../a/bc", "a/bc", "a", "../a", "..", "/", "a%2Fbc"] {
        for command in [
            format!("list {name}"),
            format!("cat {name} k"),
            format!("exists {name}"),
            format!("write {name} k overwritten"),
            format!("drop-container {name}"),
            format!("copy uploads x {name} k"),
        ] {
            fails_with(
                host,
                "b",
                "blobs",
                &command,
                &["permission denied", "not granted"],
            )
            .await;
        }
    }
    assert_eq!(ok(host, "a", "blobs", "cat bc k").await, "from a");
    // A grant of a container name that is a path is refused at deploy.
    for bad in ["../a", "a/bc", "Uploads", ""] {
        let err = host
            .deploy_with(
                "b",
                "bad",
                &guests().bytes("blob-store"),
                containers(&[bad]),
            )
            .await
            .expect_err(bad);
        assert!(
            err.to_string().contains("bad container name"),
            "{bad:?}: {err}"
        );
    }
    assert!(!host.functions("b").contains(&"bad".to_string()));

    // NUL and over-long object names are refused with a clear error, and
    // nothing is written.
    for command in [
        "write uploads x\0y text",
        "write uploads \0 text",
        "has uploads x\0",
        "cat uploads \0x",
        "info uploads a\0",
        "del uploads x\0",
    ] {
        fails_with(
            host,
            "b",
            "blobs",
            command,
            &["bad object name", "without NUL"],
        )
        .await;
    }
    let long = "n".repeat(1025);
    for command in [
        format!("write uploads {long} text"),
        format!("has uploads {long}"),
        format!("put uploads {long} 10 10"),
    ] {
        fails_with(
            host,
            "b",
            "blobs",
            &command,
            &["bad object name", "1025 bytes"],
        )
        .await;
    }
    let longest = "n".repeat(1024);
    assert_eq!(
        ok(host, "b", "blobs", &format!("write uploads {longest} max")).await,
        "ok"
    );
    assert_eq!(
        ok(host, "b", "blobs", &format!("cat uploads {longest}")).await,
        "max"
    );
    assert_eq!(files(&t, "b"), b_names.len() + 1);

    // Stored bytes are per tenant.
    let store = host.blob_store();
    assert_eq!(store.stored_bytes("a").expect("a"), 11 + 13 + 6);
    let b_bytes: u64 = b_names.iter().map(|n| 2 + n.len() as u64).sum::<u64>() + 3;
    assert_eq!(store.stored_bytes("b").expect("b"), b_bytes);
    assert_eq!(store.stored_bytes("ab").expect("ab"), 7);
}

// ---------------------------------------------------------------------------
// 3. Denial

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ungranted_containers_are_denied_and_counted() {
    let t = data_host(|b| b);
    let host = &t.host;
    host.add_tenant("t", Limits::default()).expect("tenant");
    deploy_blobs(host, "t", "blobs", &["mine"]).await;
    // Another function of the same tenant owns `theirs`.
    deploy_blobs(host, "t", "other", &["theirs"]).await;
    assert_eq!(ok(host, "t", "other", "write theirs k secret").await, "ok");
    assert_eq!(ok(host, "t", "blobs", "write mine k mine").await, "ok");

    let commands = [
        "get theirs k",
        "cat theirs k",
        "put theirs k 10 10",
        "put theirs new 11 3",
        "write theirs k overwritten",
        "range theirs k 0 1",
        "list theirs",
        "info theirs k",
        "has theirs k",
        "del theirs k",
        "exists theirs",
        "create theirs",
        "drop-container theirs",
        "create brand-new",
        "abandon theirs ghost 100",
        "copy theirs k mine stolen",
        "copy mine k theirs k",
        "move mine k theirs moved",
        "move theirs k mine stolen",
    ];
    for (i, command) in commands.into_iter().enumerate() {
        let container = if command.contains("brand-new") {
            "brand-new"
        } else {
            "theirs"
        };
        let report = fails_with(
            host,
            "t",
            "blobs",
            command,
            &[&format!(
                "permission denied: container \"{container}\" is not granted to this function"
            )],
        )
        .await;
        let u = &report.usage;
        assert_eq!(u.denied_calls, 1, "`{command}`: {u:?}");
        assert_eq!(
            (u.blob_operations, u.blob_bytes_read, u.blob_bytes_written),
            (0, 0, 0),
            "`{command}`: {u:?}"
        );
        assert_eq!(
            denied_calls(host, "t", "blobs"),
            (i + 1) as f64,
            "`{command}`"
        );
    }
    // Nothing changed: `theirs` still holds exactly the one object, `mine`
    // got nothing, no container was created or dropped.
    assert_eq!(ok(host, "t", "other", "cat theirs k").await, "secret");
    assert_eq!(ok(host, "t", "other", "list theirs").await, "k");
    assert_eq!(ok(host, "t", "blobs", "list mine").await, "k");
    assert_eq!(ok(host, "t", "blobs", "cat mine k").await, "mine");
    let store = host.blob_store();
    assert!(store.container("t", "brand-new").expect("lookup").is_none());
    assert_eq!(files(&t, "t"), 2);

    // Granted calls are not denied; the other function was never denied.
    let granted = done(host, "t", "blobs", "has mine k").await;
    assert_eq!(granted.usage.denied_calls, 0);
    assert_eq!(denied_calls(host, "t", "blobs"), commands.len() as f64);
    assert_eq!(denied_calls(host, "t", "other"), 0.0);
    let mut denied: BTreeMap<String, u64> = BTreeMap::new();
    for r in t.records() {
        *denied.entry(r.function).or_default() += r.denied_calls;
    }
    assert_eq!(denied["blobs"], commands.len() as u64);
    assert_eq!(denied["other"], 0);

    // A component importing wasi:blobstore with no containers granted
    // deploys with a note, whatever else it is granted; its opens are denied.
    for config in [
        FunctionConfig::default(),
        FunctionConfig {
            kv_stores: vec!["s".into()],
            topics: vec!["orders".into()],
            directory: true,
            ..FunctionConfig::default()
        },
    ] {
        let notes = deploy_ungranted(host, "t", "noblobs", "blob-store", config).await;
        assert!(notes.contains("wasi:blobstore/"), "{notes}");
        assert!(notes.contains("`blob_containers`"), "{notes}");
        let report = fails_with(
            host,
            "t",
            "noblobs",
            "create theirs",
            &["permission denied: container \"theirs\" is not granted to this function"],
        )
        .await;
        assert_eq!(report.usage.denied_calls, 1);
    }
}

// ---------------------------------------------------------------------------
// 4. Abandoned writes

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_value_writes_nothing_and_leaves_no_file() {
    let t = data_host(|b| b);
    let host = &t.host;
    host.add_tenant("t", Limits::default()).expect("tenant");
    deploy_blobs(host, "t", "blobs", &["uploads"]).await;
    let store = host.blob_store();

    let abandoned = done(host, "t", "blobs", "abandon uploads ghost 300000").await;
    assert_eq!(String::from_utf8_lossy(&abandoned.response.data), "ok");
    assert_eq!(
        abandoned.usage.blob_bytes_written, 0,
        "{:?}",
        abandoned.usage
    );
    assert_eq!(ok(host, "t", "blobs", "has uploads ghost").await, "false");
    assert_eq!(ok(host, "t", "blobs", "list uploads").await, "");
    assert!(store.head("t", "uploads", "ghost").expect("head").is_none());
    assert_eq!(files(&t, "t"), 0, "the spool file was removed");
    assert_eq!(store.stored_bytes("t").expect("stored"), 0);

    // Over an existing object: the object keeps its committed bytes.
    assert_eq!(
        ok(host, "t", "blobs", "put uploads real 1000 100").await,
        "ok 1000"
    );
    assert_eq!(files(&t, "t"), 1);
    assert_eq!(
        ok(host, "t", "blobs", "abandon uploads real 5000").await,
        "ok"
    );
    assert_eq!(
        ok(host, "t", "blobs", "get uploads real").await,
        digest(1000)
    );
    assert_eq!(ok(host, "t", "blobs", "info uploads real").await, "1000");
    assert_eq!(files(&t, "t"), 1);
    assert_eq!(store.stored_bytes("t").expect("stored"), 1000);

    // Many at once, next to committed writes.
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let host = host.clone();
            tokio::spawn(async move {
                let command = if i % 2 == 0 {
                    format!("abandon uploads a{i} 100000")
                } else {
                    format!("put uploads p{i} 100000 4096")
                };
                ok(&host, "t", "blobs", &command).await
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("invocation task");
    }
    assert_eq!(
        lines(&ok(host, "t", "blobs", "list uploads").await),
        lines("p1\np11\np13\np15\np3\np5\np7\np9\nreal")
    );
    assert_eq!(files(&t, "t"), 9);
    assert_eq!(store.stored_bytes("t").expect("stored"), 1000 + 8 * 100_000);
}

// ---------------------------------------------------------------------------
// 5. Quota and limits

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quota_holds_and_nothing_over_it_is_stored() {
    let t = data_host(|b| b);
    let host = &t.host;
    host.add_tenant("small", Limits::default().max_blob_bytes(1_000_000))
        .expect("tenant");
    host.add_tenant("roomy", Limits::default()).expect("tenant");
    deploy_blobs(host, "small", "blobs", &["uploads"]).await;
    deploy_blobs(host, "roomy", "blobs", &["uploads"]).await;
    let store = host.blob_store();

    assert_eq!(
        ok(host, "small", "blobs", "put uploads a 600000 65536").await,
        "ok 600000"
    );
    let quota =
        ["tenant `small` would store 1200000 bytes of objects, over its quota of 1000000 bytes"];
    let report = fails_with(host, "small", "blobs", "put uploads b 600000 65536", &quota).await;
    assert_eq!(report.usage.blob_bytes_written, 0, "{:?}", report.usage);
    assert_eq!(ok(host, "small", "blobs", "has uploads b").await, "false");
    assert_eq!(files(&t, "small"), 1, "the refused write left no file");
    assert_eq!(store.stored_bytes("small").expect("stored"), 600_000);
    assert_eq!(stored_gauge(host, "small"), Some(600_000.0));

    // Replacing an object counts only the difference.
    assert_eq!(
        ok(host, "small", "blobs", "put uploads a 900000 65536").await,
        "ok 900000"
    );
    assert_eq!(
        ok(host, "small", "blobs", "put uploads c 100000 4096").await,
        "ok 100000"
    );
    assert_eq!(store.stored_bytes("small").expect("stored"), 1_000_000);
    fails_with(
        host,
        "small",
        "blobs",
        "put uploads d 1 1",
        &["over its quota of 1000000 bytes"],
    )
    .await;
    fails_with(
        host,
        "small",
        "blobs",
        "write uploads d x",
        &["over its quota"],
    )
    .await;
    fails_with(
        host,
        "small",
        "blobs",
        "copy uploads c uploads d",
        &["over its quota"],
    )
    .await;
    // Moving within the tenant does not grow it.
    assert_eq!(
        ok(host, "small", "blobs", "move uploads c uploads d").await,
        "ok"
    );
    assert_eq!(
        lines(&ok(host, "small", "blobs", "list uploads").await),
        lines("a\nd")
    );
    assert_eq!(files(&t, "small"), 2);
    assert_eq!(
        ok(host, "small", "blobs", "get uploads a").await,
        digest(900_000)
    );

    // Other tenants are not limited by small's quota.
    assert_eq!(
        ok(host, "roomy", "blobs", "put uploads a 2000000 65536").await,
        "ok 2000000"
    );
    // Freeing space makes room again.
    assert_eq!(ok(host, "small", "blobs", "del uploads a").await, "ok");
    assert_eq!(
        ok(host, "small", "blobs", "put uploads b 600000 65536").await,
        "ok 600000"
    );
    assert_eq!(store.stored_bytes("small").expect("stored"), 700_000);
    assert_eq!(stored_gauge(host, "small"), Some(700_000.0));
    assert_eq!(stored_gauge(host, "roomy"), Some(2_000_000.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_over_the_size_limit_fails_in_the_stream_and_leaves_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let blobs = FsBlobs::open_with_limit(&dir.path().join("blobs"), 1 << 20).expect("blobs");
    let t = data_host(|b| b.blob_backend(Arc::new(blobs)));
    let host = &t.host;
    host.add_tenant("t", Limits::default()).expect("tenant");
    deploy_blobs(host, "t", "blobs", &["uploads"]).await;

    assert_eq!(
        ok(host, "t", "blobs", "put uploads max 1048576 65536").await,
        "ok 1048576"
    );
    for (n, chunk) in [
        (1_048_577, 65536),
        (3_000_000, 1_000_000),
        (1_100_000, 4097),
    ] {
        let report = fails_with(
            host,
            "t",
            "blobs",
            &format!("put uploads over {n} {chunk}"),
            &["stream", "object is over the limit of 1048576 bytes"],
        )
        .await;
        assert_eq!(report.usage.blob_bytes_written, 0);
    }
    assert_eq!(ok(host, "t", "blobs", "has uploads over").await, "false");
    let files = std::fs::read_dir(dir.path().join("blobs/data/t"))
        .expect("tenant dir")
        .count();
    assert_eq!(files, 1, "only the object at the limit");
    assert_eq!(
        ok(host, "t", "blobs", "get uploads max").await,
        digest(1 << 20)
    );
}

// ---------------------------------------------------------------------------
// 6. The ledger and the metrics agree

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_usage_in_the_ledger_equals_the_metrics() {
    // Room for all 48 concurrent invocations below: a throttled one would
    // make no blob calls (the pool cap is tested elsewhere).
    let t = data_host(|b| {
        b.pool(nimbus_core::PoolConfig {
            max_instances: 64,
            max_memory_bytes: 256 << 20,
            ..nimbus_core::PoolConfig::default()
        })
    });
    let host = &t.host;
    // "shop"/"blobs" and "shopb"/"lobs" concatenate alike.
    host.add_tenant("shop", Limits::default()).expect("tenant");
    host.add_tenant("shopb", Limits::default().max_blob_bytes(300_000))
        .expect("tenant");
    deploy_blobs(host, "shop", "blobs", &["data", "more"]).await;
    deploy_blobs(host, "shopb", "lobs", &["data"]).await;

    // (command, operations, bytes read, bytes written, denied), one
    // invocation each.
    let expected: [(&str, u64, u64, u64, u64); 18] = [
        ("put data a 70000 4096", 2, 0, 70000, 0),
        ("write data b hello", 2, 0, 5, 0),
        ("get data a", 3, 70000, 0, 0),
        ("cat data b", 3, 5, 0, 0),
        ("range data a 10 19", 2, 10, 0, 0),
        ("info data a", 2, 0, 0, 0),
        ("has data zz", 2, 0, 0, 0),
        ("list data", 2, 0, 0, 0),
        ("copy data a more c", 1, 70000, 70000, 0),
        ("move more c data d", 1, 0, 0, 0),
        ("list data", 3, 0, 0, 0),
        ("del data d", 2, 0, 0, 0),
        ("abandon data e 1000", 1, 0, 0, 0),
        ("get other a", 0, 0, 0, 1),
        ("get data missing", 2, 0, 0, 0),
        ("exists data", 1, 0, 0, 0),
        ("create data", 1, 0, 0, 0),
        ("list more", 2, 0, 0, 0),
    ];
    for (command, ops, read, written, denied) in expected {
        let usage = usage(&call(host, "shop", "blobs", command).await);
        assert_eq!(
            (
                usage.blob_operations,
                usage.blob_bytes_read,
                usage.blob_bytes_written,
                usage.denied_calls
            ),
            (ops, read, written, denied),
            "`{command}`: {usage:?}"
        );
    }

    // Concurrent, mixed traffic, failures included (quota, missing objects,
    // denied containers, oversized ranges).
    let tasks: Vec<_> = (0..48u32)
        .map(|i| {
            let host = host.clone();
            tokio::spawn(async move {
                let (tenant, function) = if i % 2 == 0 {
                    ("shop", "blobs")
                } else {
                    ("shopb", "lobs")
                };
                let command = match i % 8 {
                    0 | 1 => format!("put data p{i} {} 8192", 20_000 + i * 1000),
                    2 | 3 => format!("get data p{}", i - 2),
                    4 => format!("copy data a data c{i}"),
                    5 => format!("put data big{i} 400000 65536"),
                    6 => "list data".to_string(),
                    _ => format!("range nope p{i} 0 10"),
                };
                let _ = call(&host, tenant, function, &command).await;
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("invocation task");
    }

    // Per (tenant, function): blob operations, bytes read, bytes written and
    // denied calls.
    let sums = sums(&t.ledger, |r| {
        [
            r.blob_operations,
            r.blob_bytes_read,
            r.blob_bytes_written,
            r.denied_calls,
        ]
    });
    assert_eq!(sums.len(), 2, "{sums:?}");
    for ((tenant, function), [ops, read, written, denied]) in &sums {
        let tf = [("tenant", tenant.as_str()), ("function", function.as_str())];
        let what = format!("{tenant}/{function}");
        assert_eq!(
            series(host, "nimbus_blob_operations_total", &tf),
            *ops as f64,
            "{what} operations"
        );
        let bytes = |direction| {
            series(
                host,
                "nimbus_blob_bytes_total",
                &[tf[0], tf[1], ("direction", direction)],
            )
        };
        assert_eq!(bytes("read"), *read as f64, "{what} bytes read");
        assert_eq!(bytes("written"), *written as f64, "{what} bytes written");
        assert_eq!(denied_calls(host, tenant, function), *denied as f64);
        assert!(*ops > 0 && *written > 0, "{what}: {sums:?}");
    }
    // shop: the 1 denied above; shopb: 6 ranges on an ungranted container.
    assert_eq!(sums[&("shop".into(), "blobs".into())][3], 1);
    assert_eq!(sums[&("shopb".into(), "lobs".into())][3], 6);

    // The stored-bytes gauge is the backend's count, which is the sum of
    // the objects' sizes.
    let store = host.blob_store();
    for tenant in ["shop", "shopb"] {
        let mut sum = 0;
        for c in store.containers(tenant).expect("containers") {
            for m in store.list(tenant, &c.name, "", None, 1000).expect("list") {
                sum += m.size;
            }
        }
        let stored = store.stored_bytes(tenant).expect("stored");
        assert_eq!(stored, sum, "{tenant}");
        assert_eq!(stored_gauge(host, tenant), Some(stored as f64), "{tenant}");
        assert_eq!(
            series(host, "nimbus_blob_stored_bytes", &[("tenant", tenant)]),
            stored as f64
        );
    }
    // shopb's quota held through the concurrent writes.
    assert!(store.stored_bytes("shopb").expect("stored") <= 300_000);
    let text = host.metrics_text();
    for family in [
        "nimbus_blob_operations_total{",
        "nimbus_blob_bytes_total{",
        "nimbus_blob_stored_bytes{",
    ] {
        assert!(text.contains(family), "{family}: {text}");
    }
}
