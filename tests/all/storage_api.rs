//! The gateway's storage API end to end, over real sockets: a `Gateway`
//! router served by axum on an ephemeral port, driven by hyper's client,
//! checked against the host's blob store directly. The queue API is in
//! `queue_api`.

use std::sync::Arc;

use bytes::Bytes;
use http::Method;
use nimbus_core::Limits;
use nimbus_core::nimbus_blob::FsBlobs;

use crate::support::{ADMIN_KEY, BETA_KEY, GatewayHost, invocation_series, metric, test_host};

/// Deterministic bytes that are not all alike.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

fn keys_of(listing: &serde_json::Value) -> Vec<String> {
    listing["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .map(|o| o["key"].as_str().expect("key").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_round_trip_with_slashes_spaces_ranges_and_large_bodies() {
    let gw = GatewayHost::start(|b| b.admin_key(ADMIN_KEY)).await;
    let (host, acme) = (gw.host(), &gw.acme);

    // Containers: created once, then found.
    let r = acme.put("/storage/v1/acme/docs").await.expect(201);
    assert_eq!(r.json()["container"], "docs");
    acme.put("/storage/v1/acme/docs").await.expect(200);

    // A small object with a content type.
    let hello = "/storage/v1/acme/docs/notes/hello.txt";
    let r = acme
        .put(hello)
        .header("content-type", "text/plain")
        .body("hello, storage")
        .await
        .expect(200);
    let put = r.json();
    assert_eq!(put["container"], "docs");
    assert_eq!(put["key"], "notes/hello.txt");
    assert_eq!(put["size"], 14);
    assert_eq!(put["content_type"], "text/plain");
    let etag = put["etag"].as_str().expect("etag").to_string();
    let quoted_etag = format!("\"{etag}\"");
    assert_eq!(r.header("etag"), Some(quoted_etag.as_str()));

    let r = acme.get(hello).await.expect(200);
    assert_eq!(r.text(), "hello, storage");
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.header("content-length"), Some("14"));
    assert_eq!(r.header("etag"), Some(quoted_etag.as_str()));

    let r = acme.head(hello).await.expect(200);
    assert!(r.body.is_empty());
    assert_eq!(r.header("content-length"), Some("14"));
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.header("etag"), Some(quoted_etag.as_str()));

    // Ranges: a-b, a-, -n; past the end is 416; an If-Range naming another
    // version gets the whole object.
    for (range, want, content_range) in [
        ("bytes=0-4", "hello", "bytes 0-4/14"),
        ("bytes=7-", "storage", "bytes 7-13/14"),
        ("bytes=-3", "age", "bytes 11-13/14"),
        ("bytes=5-100", ", storage", "bytes 5-13/14"),
    ] {
        let r = acme.get(hello).header("range", range).await.expect(206);
        assert_eq!(r.text(), want, "{range}");
        assert_eq!(r.header("content-range"), Some(content_range), "{range}");
        assert_eq!(
            r.header("content-length"),
            Some(want.len().to_string().as_str())
        );
    }
    let r = acme
        .get(hello)
        .header("range", "bytes=14-20")
        .await
        .expect(416);
    assert_eq!(r.header("content-range"), Some("bytes */14"));
    let r = acme
        .get(hello)
        .header("range", "bytes=0-4")
        .header("if-range", "\"another-version\"")
        .await
        .expect(200);
    assert_eq!(r.text(), "hello, storage");

    // Keys with spaces and percent-encoded characters are the decoded path.
    let odd_key = "my dir/a b+c%d/ü.bin";
    let odd_path = "/storage/v1/acme/docs/my%20dir/a%20b+c%25d/%C3%BC.bin";
    let r = acme.put(odd_path).body("odd").await.expect(200);
    assert_eq!(r.json()["key"], odd_key);
    assert_eq!(r.json()["content_type"], serde_json::Value::Null);
    let meta = host
        .blob_store()
        .head("acme", "docs", odd_key)
        .expect("head")
        .expect("stored under the decoded key");
    assert_eq!(meta.size, 3);
    let r = acme.get(odd_path).await.expect(200);
    assert_eq!(r.text(), "odd");
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));

    // A 5 MB object, with a length and streamed chunked without one.
    let big = pattern(5_000_000);
    let one = "/storage/v1/acme/docs/big/one.bin";
    let r = acme
        .put(one)
        .header("content-type", "application/x-test")
        .body(big.clone())
        .await
        .expect(200);
    assert_eq!(r.json()["size"], 5_000_000);
    let chunks = big.chunks(300_001).map(Bytes::copy_from_slice);
    acme.put("/storage/v1/acme/docs/big/two.bin")
        .chunked(chunks)
        .await
        .expect(200);
    for key in ["big/one.bin", "big/two.bin"] {
        let r = acme
            .get(&format!("/storage/v1/acme/docs/{key}"))
            .await
            .expect(200);
        assert_eq!(r.header("content-length"), Some("5000000"), "{key}");
        assert!(r.body == big, "{key}: the bytes differ");
    }
    let r = acme
        .get(one)
        .header("range", "bytes=4000000-4000009")
        .await
        .expect(206);
    assert_eq!(&r.body[..], &big[4_000_000..4_000_010]);
    assert_eq!(
        host.blob_store().stored_bytes("acme").expect("stored"),
        14 + 3 + 2 * 5_000_000
    );

    // Listing: everything, by prefix, and paged with next_after.
    let list = |query: &str| {
        let path = format!("/storage/v1/acme/docs{query}");
        async move { acme.get(&path).await }
    };
    let all = list("").await.expect(200).json();
    assert_eq!(
        keys_of(&all),
        ["big/one.bin", "big/two.bin", odd_key, "notes/hello.txt"]
    );
    assert_eq!(all["next_after"], serde_json::Value::Null);
    let hello = &all["objects"][3];
    assert_eq!(hello["size"], 14);
    assert_eq!(hello["etag"], etag.as_str());
    assert_eq!(hello["content_type"], "text/plain");
    assert!(hello["created_at_ms"].as_u64().expect("created_at_ms") > 0);
    let page = list("?prefix=big/&limit=1").await.expect(200).json();
    assert_eq!(keys_of(&page), ["big/one.bin"]);
    assert_eq!(page["next_after"], "big/one.bin");
    let page = list("?prefix=big/&limit=1&after=big/one.bin")
        .await
        .expect(200)
        .json();
    assert_eq!(keys_of(&page), ["big/two.bin"]);
    assert_eq!(page["next_after"], serde_json::Value::Null, "nothing after");
    let spaced = list("?prefix=my%20dir/").await.expect(200).json();
    assert_eq!(keys_of(&spaced), [odd_key]);
    list("?limit=0").await.expect_error(400, "limit");

    // Delete: 204, again 204 (as S3), then the object is gone.
    for _ in 0..2 {
        acme.delete(one).await.expect(204);
    }
    acme.get(one)
        .await
        .expect_error(404, "`big/one.bin` does not exist");
    assert_eq!(
        host.blob_store().stored_bytes("acme").expect("stored"),
        14 + 3 + 5_000_000
    );

    // Authorized requests are counted per method; none is an invocation.
    let series = |m: &str| {
        metric(
            host,
            &format!("nimbus_storage_requests_total{{method=\"{m}\",tenant=\"acme\"}}"),
        )
    };
    assert_eq!(series("PUT"), Some(6.0));
    assert_eq!(series("DELETE"), Some(2.0));
    assert_eq!(series("HEAD"), Some(1.0));
    assert_eq!(
        invocation_series(host, "acme"),
        0,
        "storage requests are not invocations"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_needs_the_tenants_own_key_and_touches_nothing_otherwise() {
    let gw = GatewayHost::start(|b| b.admin_key(ADMIN_KEY)).await;
    let (host, anyone, acme, beta) = (gw.host(), &gw.anyone, &gw.acme, &gw.beta);
    acme.put("/storage/v1/acme/private").await.expect(201);
    let secret = "/storage/v1/acme/private/secret.txt";
    acme.put(secret).body("acme only").await.expect(200);
    let before = host
        .blob_store()
        .head("acme", "private", "secret.txt")
        .expect("head")
        .expect("stored");

    for key in [None, Some(BETA_KEY), Some("acme-key-but-wrong")] {
        for method in [Method::GET, Method::DELETE] {
            let r = anyone
                .request(method.clone(), secret)
                .maybe_key(key)
                .await
                .expect(401);
            assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{method}");
            assert!(!r.text().contains("acme only"));
        }
        let r = anyone.head(secret).maybe_key(key).await.expect(401);
        assert!(r.body.is_empty());
        anyone
            .put(secret)
            .maybe_key(key)
            .body("overwritten")
            .await
            .expect(401);
        for (method, path) in [
            (Method::GET, "/storage/v1/acme/private"),
            (Method::PUT, "/storage/v1/acme/made-by-intruder"),
        ] {
            anyone
                .request(method, path)
                .maybe_key(key)
                .await
                .expect(401);
        }
    }

    // Beta's key works for beta, whose namespace is its own.
    beta.put("/storage/v1/beta/private").await.expect(201);
    beta.get("/storage/v1/beta/private/secret.txt")
        .await
        .expect(404);

    // Acme's object and containers are as they were.
    let after = host
        .blob_store()
        .head("acme", "private", "secret.txt")
        .expect("head")
        .expect("still stored");
    assert_eq!(after, before);
    let containers = host.blob_store().containers("acme").expect("containers");
    assert_eq!(
        containers
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["private"]
    );
    assert_eq!(acme.get(secret).await.expect(200).text(), "acme only");
    // Refused requests are not counted.
    assert_eq!(
        metric(
            host,
            "nimbus_storage_requests_total{method=\"DELETE\",tenant=\"acme\"}"
        ),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_errors_missing_names_quota_and_size_limit() {
    // A 4 KiB object size limit, a 10 000-byte quota for acme.
    let blob_dir = tempfile::tempdir().expect("tempdir");
    let blobs = FsBlobs::open_with_limit(blob_dir.path(), 4096).expect("blob store");
    let gw = GatewayHost::over(
        test_host(|b| b.blob_backend(Arc::new(blobs))),
        Limits::default().max_blob_bytes(10_000),
        |b| b.admin_key(ADMIN_KEY),
    )
    .await;
    let (host, acme) = (gw.host(), &gw.acme);

    // Missing container and object: 404 naming them; nothing created.
    let missing = "container `nope` does not exist";
    acme.put("/storage/v1/acme/nope/k")
        .body("data")
        .await
        .expect_error(404, missing);
    for (method, path) in [
        (Method::GET, "/storage/v1/acme/nope/k"),
        (Method::DELETE, "/storage/v1/acme/nope/k"),
        (Method::GET, "/storage/v1/acme/nope"),
    ] {
        acme.request(method, path).await.expect_error(404, missing);
    }
    acme.head("/storage/v1/acme/nope/k").await.expect(404);
    assert!(
        host.blob_store()
            .containers("acme")
            .expect("list")
            .is_empty()
    );

    acme.put("/storage/v1/acme/c").await.expect(201);
    acme.get("/storage/v1/acme/c/missing")
        .await
        .expect_error(404, "object `missing` does not exist in container `c`");
    acme.head("/storage/v1/acme/c/missing").await.expect(404);
    // Another tenant's key on acme's path.
    gw.beta.get("/storage/v1/acme/c/missing").await.expect(401);

    // Bad names: 400 naming the rule.
    acme.put("/storage/v1/acme/Bad_Name")
        .await
        .expect_error(400, "use 1 to 63 of a-z 0-9 . _ -");
    let long_key = "k".repeat(1025);
    acme.put(&format!("/storage/v1/acme/c/{long_key}"))
        .body("x")
        .await
        .expect_error(400, "use 1 to 1024 bytes");

    // Over the object size limit: 413, with and without a declared length.
    let too_big = "over the limit of 4096 bytes";
    acme.put("/storage/v1/acme/c/big")
        .body(pattern(5000))
        .await
        .expect_error(413, too_big);
    acme.put("/storage/v1/acme/c/big")
        .chunked([pattern(3000), pattern(3000)])
        .await
        .expect_error(413, too_big);
    assert!(
        host.blob_store()
            .head("acme", "c", "big")
            .expect("head")
            .is_none()
    );

    // The quota: 507 naming it, once the tenant's objects would pass it.
    for i in 0..2 {
        acme.put(&format!("/storage/v1/acme/c/part{i}"))
            .body(pattern(4000))
            .await
            .expect(200);
    }
    let over_quota = "over its quota of 10000 bytes";
    acme.put("/storage/v1/acme/c/part2")
        .body(pattern(4000))
        .await
        .expect_error(507, over_quota);
    acme.put("/storage/v1/acme/c/part2")
        .chunked([pattern(1500), pattern(1500)])
        .await
        .expect_error(507, over_quota);
    // Replacing an object with one of the same size fits; a smaller one too.
    for (key, size) in [("part1", 4000), ("small", 2000)] {
        acme.put(&format!("/storage/v1/acme/c/{key}"))
            .body(pattern(size))
            .await
            .expect(200);
    }
    assert_eq!(
        host.blob_store().stored_bytes("acme").expect("stored"),
        10_000
    );
    assert!(
        host.blob_store()
            .head("acme", "c", "part2")
            .expect("head")
            .is_none()
    );
    // Nothing a refused upload wrote is left behind.
    let files = std::fs::read_dir(blob_dir.path().join("data").join("acme"))
        .expect("tenant dir")
        .count();
    assert_eq!(files, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_to_watched_containers_persist_one_event() {
    let gw = GatewayHost::start(|b| b.admin_key(ADMIN_KEY)).await;
    let (host, acme) = (gw.host(), &gw.acme);
    for c in ["uploads", "quiet"] {
        acme.put(&format!("/storage/v1/acme/{c}")).await.expect(201);
    }
    host.watch_container("acme", "uploads");

    acme.put("/storage/v1/acme/uploads/in/photo%201.png")
        .header("content-type", "image/png")
        .body(pattern(1234))
        .await
        .expect(200);
    let events = host.blob_store().pending_events(10).expect("events");
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(
        (e.tenant.as_str(), e.container.as_str(), e.key.as_str()),
        ("acme", "uploads", "in/photo 1.png")
    );
    assert_eq!(e.size, 1234);
    assert_eq!(e.content_type.as_deref(), Some("image/png"));
    assert_eq!(e.depth, 0);

    // An unwatched container raises none.
    acme.put("/storage/v1/acme/quiet/file")
        .body("shh")
        .await
        .expect(200);
    assert_eq!(
        host.blob_store().pending_events(10).expect("events").len(),
        1
    );
}
