//! The gateway's storage and queue APIs end to end, over real sockets: a
//! `Gateway` router served by axum on an ephemeral port, driven by hyper's
//! client, checked against the host's blob and queue stores directly.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::IntoFuture;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use nimbus_core::nimbus_blob::FsBlobs;
use nimbus_core::nimbus_queue::{self, Nack, QueueConfig};
use nimbus_core::{Host, Limits};
use nimbus_http::Gateway;

use crate::{TestHost, metric, test_host};

const ACME_KEY: &str = "acme-key";
const BETA_KEY: &str = "beta-key";
const ADMIN_KEY: &str = "admin-key";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

type ReqBody = BoxBody<Bytes, Infallible>;

/// A body of several chunks and no known length (sent chunked).
struct Chunked(VecDeque<Bytes>);

impl Body for Chunked {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }
}

#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?} {}", self.status, self.text()))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    #[track_caller]
    fn expect(self, status: u16) -> Self {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text());
        self
    }

    /// An error reply: the status, and a JSON error containing `needle`.
    #[track_caller]
    fn expect_error(self, status: u16, needle: &str) -> Self {
        let r = self.expect(status);
        let error = r.json()["error"].as_str().unwrap_or_default().to_string();
        assert!(error.contains(needle), "{needle:?} not in {error:?}");
        r
    }
}

/// The gateway over `host`, served on an ephemeral port, and a client.
struct Api {
    http: HyperClient<HttpConnector, ReqBody>,
    base: String,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for Api {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Api {
    async fn start(host: &Host) -> Self {
        let gw = Gateway::builder(host.clone())
            .tenant("acme", vec![ACME_KEY.into()], None)
            .tenant("beta", vec![BETA_KEY.into()], None)
            .admin_key(ADMIN_KEY)
            .build()
            .expect("gateway builds");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        Self {
            http: HyperClient::builder(TokioExecutor::new()).build_http(),
            base: format!("http://{addr}"),
            task: tokio::spawn(axum::serve(listener, gw.router()).into_future()),
        }
    }

    fn call(&self, method: Method, path: &str) -> Call<'_> {
        Call {
            api: self,
            builder: Request::builder()
                .method(method)
                .uri(format!("{}{path}", self.base)),
        }
    }
}

struct Call<'a> {
    api: &'a Api,
    builder: http::request::Builder,
}

impl Call<'_> {
    fn header(mut self, name: &str, value: &str) -> Self {
        self.builder = self.builder.header(name, value);
        self
    }

    fn key(self, key: &str) -> Self {
        self.header("authorization", &format!("Bearer {key}"))
    }

    fn maybe_key(self, key: Option<&str>) -> Self {
        match key {
            Some(k) => self.key(k),
            None => self,
        }
    }

    async fn send_body(self, body: ReqBody) -> Reply {
        let request = self.builder.body(body).expect("request");
        let what = format!("{} {}", request.method(), request.uri());
        let exchange = async {
            let response = self.api.http.request(request).await.expect(&what);
            let (head, body) = response.into_parts();
            let body = body.collect().await.expect(&what).to_bytes();
            Reply {
                status: head.status,
                headers: head.headers,
                body,
            }
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| panic!("{what}: no answer in time"))
    }

    async fn send(self) -> Reply {
        self.body(Bytes::new()).await
    }

    async fn body(self, body: impl Into<Bytes>) -> Reply {
        self.send_body(Full::new(body.into()).boxed()).await
    }

    async fn chunked(self, chunks: Vec<Bytes>) -> Reply {
        self.send_body(Chunked(chunks.into()).boxed()).await
    }
}

/// A host with tenants `acme` (with `limits`) and `beta`.
fn host_with(
    limits: Limits,
    configure: impl FnOnce(nimbus_core::HostBuilder) -> nimbus_core::HostBuilder,
) -> TestHost {
    let t = test_host(configure);
    t.host.add_tenant("acme", limits).expect("tenant acme");
    t.host
        .add_tenant("beta", Limits::default())
        .expect("tenant beta");
    t
}

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

/// Series of `nimbus_invocations_total` for tenant `acme`.
fn acme_invocations(host: &Host) -> usize {
    host.metrics_text()
        .lines()
        .filter(|l| l.starts_with("nimbus_invocations_total{") && l.contains("tenant=\"acme\""))
        .count()
}

// ---------------------------------------------------------------------------
// Storage
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_round_trip_with_slashes_spaces_ranges_and_large_bodies() {
    let t = host_with(Limits::default(), |b| b);
    let host = &t.host;
    let api = Api::start(host).await;

    // Containers: created once, then found.
    let r = api
        .call(Method::PUT, "/storage/v1/acme/docs")
        .key(ACME_KEY)
        .send()
        .await
        .expect(201);
    assert_eq!(r.json()["container"], "docs");
    api.call(Method::PUT, "/storage/v1/acme/docs")
        .key(ACME_KEY)
        .send()
        .await
        .expect(200);

    // A small object with a content type.
    let r = api
        .call(Method::PUT, "/storage/v1/acme/docs/notes/hello.txt")
        .key(ACME_KEY)
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
    assert_eq!(r.header("etag"), Some(format!("\"{etag}\"").as_str()));

    let r = api
        .call(Method::GET, "/storage/v1/acme/docs/notes/hello.txt")
        .key(ACME_KEY)
        .send()
        .await
        .expect(200);
    assert_eq!(r.text(), "hello, storage");
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.header("content-length"), Some("14"));
    assert_eq!(r.header("etag"), Some(format!("\"{etag}\"").as_str()));

    let r = api
        .call(Method::HEAD, "/storage/v1/acme/docs/notes/hello.txt")
        .key(ACME_KEY)
        .send()
        .await
        .expect(200);
    assert!(r.body.is_empty());
    assert_eq!(r.header("content-length"), Some("14"));
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.header("etag"), Some(format!("\"{etag}\"").as_str()));

    // Ranges: a-b, a-, -n; past the end is 416; an If-Range naming another
    // version gets the whole object.
    for (range, want, content_range) in [
        ("bytes=0-4", "hello", "bytes 0-4/14"),
        ("bytes=7-", "storage", "bytes 7-13/14"),
        ("bytes=-3", "age", "bytes 11-13/14"),
        ("bytes=5-100", ", storage", "bytes 5-13/14"),
    ] {
        let r = api
            .call(Method::GET, "/storage/v1/acme/docs/notes/hello.txt")
            .key(ACME_KEY)
            .header("range", range)
            .send()
            .await
            .expect(206);
        assert_eq!(r.text(), want, "{range}");
        assert_eq!(r.header("content-range"), Some(content_range), "{range}");
        assert_eq!(
            r.header("content-length"),
            Some(want.len().to_string().as_str())
        );
    }
    let r = api
        .call(Method::GET, "/storage/v1/acme/docs/notes/hello.txt")
        .key(ACME_KEY)
        .header("range", "bytes=14-20")
        .send()
        .await
        .expect(416);
    assert_eq!(r.header("content-range"), Some("bytes */14"));
    let r = api
        .call(Method::GET, "/storage/v1/acme/docs/notes/hello.txt")
        .key(ACME_KEY)
        .header("range", "bytes=0-4")
        .header("if-range", "\"another-version\"")
        .send()
        .await
        .expect(200);
    assert_eq!(r.text(), "hello, storage");

    // Keys with spaces and percent-encoded characters are the decoded path.
    let odd_key = "my dir/a b+c%d/ü.bin";
    let r = api
        .call(
            Method::PUT,
            "/storage/v1/acme/docs/my%20dir/a%20b+c%25d/%C3%BC.bin",
        )
        .key(ACME_KEY)
        .body("odd")
        .await
        .expect(200);
    assert_eq!(r.json()["key"], odd_key);
    assert_eq!(r.json()["content_type"], serde_json::Value::Null);
    let meta = host
        .blob_store()
        .head("acme", "docs", odd_key)
        .expect("head")
        .expect("stored under the decoded key");
    assert_eq!(meta.size, 3);
    let r = api
        .call(
            Method::GET,
            "/storage/v1/acme/docs/my%20dir/a%20b+c%25d/%C3%BC.bin",
        )
        .key(ACME_KEY)
        .send()
        .await
        .expect(200);
    assert_eq!(r.text(), "odd");
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));

    // A 5 MB object, with a length and streamed chunked without one.
    let big = pattern(5_000_000);
    let r = api
        .call(Method::PUT, "/storage/v1/acme/docs/big/one.bin")
        .key(ACME_KEY)
        .header("content-type", "application/x-test")
        .body(big.clone())
        .await
        .expect(200);
    assert_eq!(r.json()["size"], 5_000_000);
    let chunks = big
        .chunks(300_001)
        .map(Bytes::copy_from_slice)
        .collect::<Vec<_>>();
    api.call(Method::PUT, "/storage/v1/acme/docs/big/two.bin")
        .key(ACME_KEY)
        .chunked(chunks)
        .await
        .expect(200);
    for key in ["big/one.bin", "big/two.bin"] {
        let r = api
            .call(Method::GET, &format!("/storage/v1/acme/docs/{key}"))
            .key(ACME_KEY)
            .send()
            .await
            .expect(200);
        assert_eq!(r.header("content-length"), Some("5000000"), "{key}");
        assert!(r.body == big, "{key}: the bytes differ");
    }
    let r = api
        .call(Method::GET, "/storage/v1/acme/docs/big/one.bin")
        .key(ACME_KEY)
        .header("range", "bytes=4000000-4000009")
        .send()
        .await
        .expect(206);
    assert_eq!(&r.body[..], &big[4_000_000..4_000_010]);
    assert_eq!(
        host.blob_store().stored_bytes("acme").expect("stored"),
        14 + 3 + 2 * 5_000_000
    );

    // Listing: everything, by prefix, and paged with next_after.
    let all = api
        .call(Method::GET, "/storage/v1/acme/docs")
        .key(ACME_KEY)
        .send()
        .await
        .expect(200)
        .json();
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
    let page = api
        .call(Method::GET, "/storage/v1/acme/docs?prefix=big/&limit=1")
        .key(ACME_KEY)
        .send()
        .await
        .expect(200)
        .json();
    assert_eq!(keys_of(&page), ["big/one.bin"]);
    assert_eq!(page["next_after"], "big/one.bin");
    let page = api
        .call(
            Method::GET,
            "/storage/v1/acme/docs?prefix=big/&limit=1&after=big/one.bin",
        )
        .key(ACME_KEY)
        .send()
        .await
        .expect(200)
        .json();
    assert_eq!(keys_of(&page), ["big/two.bin"]);
    assert_eq!(page["next_after"], serde_json::Value::Null, "nothing after");
    let spaced = api
        .call(Method::GET, "/storage/v1/acme/docs?prefix=my%20dir/")
        .key(ACME_KEY)
        .send()
        .await
        .expect(200)
        .json();
    assert_eq!(keys_of(&spaced), [odd_key]);
    api.call(Method::GET, "/storage/v1/acme/docs?limit=0")
        .key(ACME_KEY)
        .send()
        .await
        .expect_error(400, "limit");

    // Delete: 204, again 204 (as S3), then the object is gone.
    for _ in 0..2 {
        api.call(Method::DELETE, "/storage/v1/acme/docs/big/one.bin")
            .key(ACME_KEY)
            .send()
            .await
            .expect(204);
    }
    api.call(Method::GET, "/storage/v1/acme/docs/big/one.bin")
        .key(ACME_KEY)
        .send()
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
        acme_invocations(host),
        0,
        "storage requests are not invocations"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_needs_the_tenants_own_key_and_touches_nothing_otherwise() {
    let t = host_with(Limits::default(), |b| b);
    let host = &t.host;
    let api = Api::start(host).await;
    api.call(Method::PUT, "/storage/v1/acme/private")
        .key(ACME_KEY)
        .send()
        .await
        .expect(201);
    api.call(Method::PUT, "/storage/v1/acme/private/secret.txt")
        .key(ACME_KEY)
        .body("acme only")
        .await
        .expect(200);
    let before = host
        .blob_store()
        .head("acme", "private", "secret.txt")
        .expect("head")
        .expect("stored");

    for key in [None, Some(BETA_KEY), Some("acme-key-but-wrong")] {
        let path = "/storage/v1/acme/private/secret.txt";
        for method in [Method::GET, Method::DELETE] {
            let r = api
                .call(method.clone(), path)
                .maybe_key(key)
                .send()
                .await
                .expect(401);
            assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{method}");
            assert!(!r.text().contains("acme only"));
        }
        let r = api
            .call(Method::HEAD, path)
            .maybe_key(key)
            .send()
            .await
            .expect(401);
        assert!(r.body.is_empty());
        api.call(Method::PUT, path)
            .maybe_key(key)
            .body("overwritten")
            .await
            .expect(401);
        api.call(Method::GET, "/storage/v1/acme/private")
            .maybe_key(key)
            .send()
            .await
            .expect(401);
        api.call(Method::PUT, "/storage/v1/acme/made-by-intruder")
            .maybe_key(key)
            .send()
            .await
            .expect(401);
    }

    // Beta's key works for beta, whose namespace is its own.
    api.call(Method::PUT, "/storage/v1/beta/private")
        .key(BETA_KEY)
        .send()
        .await
        .expect(201);
    api.call(Method::GET, "/storage/v1/beta/private/secret.txt")
        .key(BETA_KEY)
        .send()
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
    assert_eq!(
        api.call(Method::GET, "/storage/v1/acme/private/secret.txt")
            .key(ACME_KEY)
            .send()
            .await
            .expect(200)
            .text(),
        "acme only"
    );
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
    let t = host_with(Limits::default().max_blob_bytes(10_000), |b| {
        b.blob_backend(Arc::new(blobs))
    });
    let host = &t.host;
    let api = Api::start(host).await;

    // Missing container and object: 404 naming them; nothing created.
    api.call(Method::PUT, "/storage/v1/acme/nope/k")
        .key(ACME_KEY)
        .body("data")
        .await
        .expect_error(404, "container `nope` does not exist");
    for method in [Method::GET, Method::DELETE] {
        api.call(method, "/storage/v1/acme/nope/k")
            .key(ACME_KEY)
            .send()
            .await
            .expect_error(404, "container `nope` does not exist");
    }
    api.call(Method::GET, "/storage/v1/acme/nope")
        .key(ACME_KEY)
        .send()
        .await
        .expect_error(404, "container `nope` does not exist");
    api.call(Method::HEAD, "/storage/v1/acme/nope/k")
        .key(ACME_KEY)
        .send()
        .await
        .expect(404);
    assert!(
        host.blob_store()
            .containers("acme")
            .expect("list")
            .is_empty()
    );

    api.call(Method::PUT, "/storage/v1/acme/c")
        .key(ACME_KEY)
        .send()
        .await
        .expect(201);
    api.call(Method::GET, "/storage/v1/acme/c/missing")
        .key(ACME_KEY)
        .send()
        .await
        .expect_error(404, "object `missing` does not exist in container `c`");
    api.call(Method::HEAD, "/storage/v1/acme/c/missing")
        .key(ACME_KEY)
        .send()
        .await
        .expect(404);
    // Another tenant's key on acme's path.
    api.call(Method::GET, "/storage/v1/acme/c/missing")
        .key(BETA_KEY)
        .send()
        .await
        .expect(401);

    // Bad names: 400 naming the rule.
    api.call(Method::PUT, "/storage/v1/acme/Bad_Name")
        .key(ACME_KEY)
        .send()
        .await
        .expect_error(400, "use 1 to 63 of a-z 0-9 . _ -");
    let long_key = "k".repeat(1025);
    api.call(Method::PUT, &format!("/storage/v1/acme/c/{long_key}"))
        .key(ACME_KEY)
        .body("x")
        .await
        .expect_error(400, "use 1 to 1024 bytes");

    // Over the object size limit: 413, with and without a declared length.
    api.call(Method::PUT, "/storage/v1/acme/c/big")
        .key(ACME_KEY)
        .body(pattern(5000))
        .await
        .expect_error(413, "over the limit of 4096 bytes");
    api.call(Method::PUT, "/storage/v1/acme/c/big")
        .key(ACME_KEY)
        .chunked(vec![Bytes::from(pattern(3000)), Bytes::from(pattern(3000))])
        .await
        .expect_error(413, "over the limit of 4096 bytes");
    assert!(
        host.blob_store()
            .head("acme", "c", "big")
            .expect("head")
            .is_none()
    );

    // The quota: 507 naming it, once the tenant's objects would pass it.
    for i in 0..2 {
        api.call(Method::PUT, &format!("/storage/v1/acme/c/part{i}"))
            .key(ACME_KEY)
            .body(pattern(4000))
            .await
            .expect(200);
    }
    api.call(Method::PUT, "/storage/v1/acme/c/part2")
        .key(ACME_KEY)
        .body(pattern(4000))
        .await
        .expect_error(507, "over its quota of 10000 bytes");
    api.call(Method::PUT, "/storage/v1/acme/c/part2")
        .key(ACME_KEY)
        .chunked(vec![Bytes::from(pattern(1500)), Bytes::from(pattern(1500))])
        .await
        .expect_error(507, "over its quota of 10000 bytes");
    // Replacing an object with one of the same size fits; a smaller one too.
    api.call(Method::PUT, "/storage/v1/acme/c/part1")
        .key(ACME_KEY)
        .body(pattern(4000))
        .await
        .expect(200);
    api.call(Method::PUT, "/storage/v1/acme/c/small")
        .key(ACME_KEY)
        .body(pattern(2000))
        .await
        .expect(200);
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
    let t = host_with(Limits::default(), |b| b);
    let host = &t.host;
    let api = Api::start(host).await;
    for c in ["uploads", "quiet"] {
        api.call(Method::PUT, &format!("/storage/v1/acme/{c}"))
            .key(ACME_KEY)
            .send()
            .await
            .expect(201);
    }
    host.watch_container("acme", "uploads");

    api.call(Method::PUT, "/storage/v1/acme/uploads/in/photo%201.png")
        .key(ACME_KEY)
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
    api.call(Method::PUT, "/storage/v1/acme/quiet/file")
        .key(ACME_KEY)
        .body("shh")
        .await
        .expect(200);
    assert_eq!(
        host.blob_store().pending_events(10).expect("events").len(),
        1
    );
}

// ---------------------------------------------------------------------------
// Queues
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_messages_are_durable_with_content_type_and_metadata() {
    let t = host_with(Limits::default(), |b| b);
    let host = &t.host;
    let api = Api::start(host).await;

    let mut ids = Vec::new();
    for i in 0..3 {
        let r = api
            .call(Method::POST, "/queues/v1/acme/jobs/messages")
            .key(ACME_KEY)
            .header("content-type", "application/json")
            .header("x-nimbus-meta-Attempt", &i.to_string())
            .header("x-nimbus-meta-source", "api test")
            .body(format!("{{\"job\": {i}}}"))
            .await
            .expect(202);
        ids.push(r.json()["id"].as_str().expect("id").to_string());
    }
    let stats = api
        .call(Method::GET, "/queues/v1/acme/jobs")
        .key(ACME_KEY)
        .send()
        .await
        .expect(200)
        .json();
    assert_eq!(stats["queue"], "jobs");
    assert_eq!(
        (
            &stats["visible"],
            &stats["in_flight"],
            &stats["delayed"],
            &stats["dead"]
        ),
        (&3.into(), &0.into(), &0.into(), &0.into())
    );
    assert!(stats["oldest_age_ms"].as_u64().is_some(), "{stats}");

    let got = host
        .queue_store()
        .receive("acme", "jobs", 10, nimbus_queue::now_ms())
        .expect("receive");
    assert_eq!(got.len(), 3);
    for (i, d) in got.iter().enumerate() {
        assert_eq!(d.id.to_string(), ids[i]);
        assert_eq!(d.body, format!("{{\"job\": {i}}}").into_bytes());
        assert_eq!(d.content_type.as_deref(), Some("application/json"));
        let mut meta = d.metadata.clone();
        meta.sort();
        assert_eq!(
            meta,
            [
                ("attempt".to_string(), i.to_string()),
                ("source".to_string(), "api test".to_string())
            ]
        );
    }
    // An operator may feed a tenant's queue with the admin key; a tenant
    // key is not an admin key.
    api.call(Method::POST, "/admin/v1/tenants/acme/queues/jobs/messages")
        .key(ACME_KEY)
        .body("from a tenant key")
        .await
        .expect(401);
    let r = api
        .call(Method::POST, "/admin/v1/tenants/acme/queues/jobs/messages")
        .key(ADMIN_KEY)
        .body("from the operator")
        .await
        .expect(202);
    let id = r.json()["id"].as_str().expect("id").to_string();
    let got = host
        .queue_store()
        .receive("acme", "jobs", 10, nimbus_queue::now_ms())
        .expect("receive");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id.to_string(), id);
    assert_eq!(got[0].body, b"from the operator");
    // Posting is no invocation.
    assert_eq!(acme_invocations(host), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_and_redriven_through_the_admin_api() {
    let t = host_with(Limits::default(), |b| b);
    let host = &t.host;
    let api = Api::start(host).await;
    let store = host.queue_store();
    store
        .configure(
            "acme",
            "orders",
            QueueConfig {
                max_receive_count: 1,
                ..QueueConfig::default()
            },
        )
        .expect("configure");
    let binary = vec![0xff, 0xfe, 0x00, 0x41];
    for body in [b"order 1".to_vec(), b"order 2".to_vec(), binary.clone()] {
        api.call(Method::POST, "/queues/v1/acme/orders/messages")
            .key(ACME_KEY)
            .body(body)
            .await
            .expect(202);
    }
    let now = nimbus_queue::now_ms();
    for d in store.receive("acme", "orders", 10, now).expect("receive") {
        let outcome = store
            .nack("acme", "orders", &d.receipt, "handler failed", now)
            .expect("nack");
        assert_eq!(outcome, Nack::DeadLetter);
    }

    let admin = "/admin/v1/tenants/acme/queues/orders";
    let stats = api
        .call(Method::GET, admin)
        .key(ADMIN_KEY)
        .send()
        .await
        .expect(200)
        .json();
    assert_eq!((&stats["visible"], &stats["dead"]), (&0.into(), &3.into()));
    assert_eq!(stats["oldest_age_ms"], serde_json::Value::Null);

    let dead = api
        .call(Method::GET, &format!("{admin}/dead-letters"))
        .key(ADMIN_KEY)
        .send()
        .await
        .expect(200)
        .json();
    let dead = dead["dead_letters"].as_array().expect("list").clone();
    assert_eq!(dead.len(), 3);
    assert_eq!(dead[0]["body"], "order 1");
    assert_eq!(dead[0]["body_encoding"], "utf-8");
    assert_eq!(dead[0]["receive_count"], 1);
    assert_eq!(dead[0]["last_error"], "handler failed");
    assert!(dead[0]["dead_at_ms"].as_u64().expect("dead_at_ms") >= now);
    assert_eq!(dead[2]["body"], "//4AQQ==");
    assert_eq!(dead[2]["body_encoding"], "base64");
    let limited = api
        .call(Method::GET, &format!("{admin}/dead-letters?limit=1"))
        .key(ADMIN_KEY)
        .send()
        .await
        .expect(200)
        .json();
    assert_eq!(limited["dead_letters"].as_array().expect("list").len(), 1);

    // Redrive one by id, then the rest without a body.
    let first = dead[0]["id"].as_str().expect("id");
    let r = api
        .call(Method::POST, &format!("{admin}/redrive"))
        .key(ADMIN_KEY)
        .header("content-type", "application/json")
        .body(format!("{{\"ids\": [\"{first}\"]}}"))
        .await
        .expect(200);
    assert_eq!(r.json()["redriven"], 1);
    let stats = api
        .call(Method::GET, "/queues/v1/acme/orders")
        .key(ACME_KEY)
        .send()
        .await
        .expect(200)
        .json();
    assert_eq!((&stats["visible"], &stats["dead"]), (&1.into(), &2.into()));
    let r = api
        .call(Method::POST, &format!("{admin}/redrive"))
        .key(ADMIN_KEY)
        .send()
        .await
        .expect(200);
    assert_eq!(r.json()["redriven"], 2);
    let back = store
        .receive("acme", "orders", 10, nimbus_queue::now_ms())
        .expect("receive");
    assert_eq!(back.len(), 3);
    assert_eq!(back[0].body, b"order 1");
    assert_eq!(back[0].receive_count, 1);
    assert_eq!(back[2].body, binary);

    // Bad ids and bodies: 400, nothing moved.
    api.call(Method::POST, &format!("{admin}/redrive"))
        .key(ADMIN_KEY)
        .body("{\"ids\": [\"not-a-uuid\"]}")
        .await
        .expect_error(400, "expected a UUID");
    api.call(Method::POST, &format!("{admin}/redrive"))
        .key(ADMIN_KEY)
        .body("[1, 2]")
        .await
        .expect_error(400, "redrive body");
    // The admin routes need the admin key, not a tenant's.
    for key in [None, Some(ACME_KEY)] {
        for (method, path) in [
            (Method::GET, admin.to_string()),
            (Method::GET, format!("{admin}/dead-letters")),
            (Method::POST, format!("{admin}/redrive")),
        ] {
            api.call(method, &path)
                .maybe_key(key)
                .send()
                .await
                .expect(401);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_errors_unauthorized_unknown_too_large_and_bad_names() {
    let t = host_with(Limits::default(), |b| b);
    let host = &t.host;
    let api = Api::start(host).await;
    let store = host.queue_store();
    store
        .configure(
            "acme",
            "small",
            QueueConfig {
                max_message_bytes: 100,
                ..QueueConfig::default()
            },
        )
        .expect("configure");

    // No key or another tenant's key: 401, nothing sent.
    for key in [None, Some(BETA_KEY)] {
        api.call(Method::POST, "/queues/v1/acme/small/messages")
            .maybe_key(key)
            .body("sneaky")
            .await
            .expect(401);
        api.call(Method::GET, "/queues/v1/acme/small")
            .maybe_key(key)
            .send()
            .await
            .expect(401);
    }
    let stats = store
        .stats("acme", "small", nimbus_queue::now_ms())
        .expect("stats");
    assert_eq!(stats.visible, 0);

    // Unknown queues: 404 naming them, for tenants and admins alike.
    api.call(Method::GET, "/queues/v1/acme/ghost")
        .key(ACME_KEY)
        .send()
        .await
        .expect_error(404, "tenant `acme` has no queue `ghost`");
    for (method, path) in [
        (Method::GET, "/admin/v1/tenants/acme/queues/ghost"),
        (
            Method::GET,
            "/admin/v1/tenants/acme/queues/ghost/dead-letters",
        ),
        (Method::POST, "/admin/v1/tenants/acme/queues/ghost/redrive"),
    ] {
        api.call(method, path)
            .key(ADMIN_KEY)
            .send()
            .await
            .expect_error(404, "has no queue `ghost`");
    }
    api.call(Method::GET, "/admin/v1/tenants/nobody/queues/ghost")
        .key(ADMIN_KEY)
        .send()
        .await
        .expect_error(404, "tenant `nobody` not found");

    // Over the queue's limit: 413 naming it, by length and by metadata.
    api.call(Method::POST, "/queues/v1/acme/small/messages")
        .key(ACME_KEY)
        .body(vec![b'x'; 101])
        .await
        .expect_error(413, "limit of 100 bytes");
    api.call(Method::POST, "/queues/v1/acme/small/messages")
        .key(ACME_KEY)
        .chunked(vec![
            Bytes::from(vec![b'x'; 60]),
            Bytes::from(vec![b'x'; 60]),
        ])
        .await
        .expect_error(413, "limit of 100 bytes");
    api.call(Method::POST, "/queues/v1/acme/small/messages")
        .key(ACME_KEY)
        .header("x-nimbus-meta-note", &"n".repeat(50))
        .body(vec![b'x'; 90])
        .await
        .expect_error(413, "limit of 100 bytes");
    api.call(Method::POST, "/queues/v1/acme/small/messages")
        .key(ACME_KEY)
        .body(vec![b'x'; 100])
        .await
        .expect(202);
    let stats = store
        .stats("acme", "small", nimbus_queue::now_ms())
        .expect("stats");
    assert_eq!(stats.visible, 1, "only the message within the limit");

    // Bad names and metadata: 400 naming the rule.
    api.call(Method::POST, "/queues/v1/acme/bad.name/messages")
        .key(ACME_KEY)
        .body("x")
        .await
        .expect_error(400, "must be 1 to 80 characters");
    api.call(Method::GET, "/queues/v1/acme/bad.name")
        .key(ACME_KEY)
        .send()
        .await
        .expect_error(400, "must be 1 to 80 characters");
    api.call(Method::POST, "/queues/v1/acme/small/messages")
        .key(ACME_KEY)
        .header("x-nimbus-meta-", "v")
        .body("x")
        .await
        .expect_error(400, "metadata key is empty");
}
