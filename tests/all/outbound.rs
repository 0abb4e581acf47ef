//! Outbound HTTP from `wasi:http/proxy` guests, end to end: `hello-http`'s
//! `/fetch` route sends a real request through `wasi:http/outgoing-handler`
//! to a local test server. Only a function's granted hosts
//! (`FunctionConfig::outbound_hosts`) are reachable; anything else fails in
//! the guest with `HTTP-request-denied`, never reaches the network, and is
//! counted in the usage record and metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use nimbus_core::{Host, HttpInvocation, Outcome};

use crate::support::{
    Served, TestHost, add_tenants, deploy, deploy_with, metric, outbound_hosts, serve, test_host,
};

const PONG: &str = "pong from test server";

/// A local HTTP server answering every request with `200 <body>`, counting
/// them. Stops when dropped.
struct Upstream {
    served: Served,
    hits: Arc<AtomicUsize>,
}

impl Upstream {
    async fn start(body: &'static str) -> Self {
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let router = axum::Router::new().fallback(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                body
            }
        });
        let served = serve(router).await;
        Self { served, hits }
    }

    fn port(&self) -> u16 {
        self.served.addr.port()
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// A host with `tenants` registered under default limits.
fn host_with(tenants: &[&str]) -> TestHost {
    let t = test_host(|b| b);
    add_tenants(&t.host, tenants);
    t
}

/// Deploys `hello-http` as `tenant`'s function `name`, granted `hosts`.
async fn deploy_fetcher(host: &Host, tenant: &str, name: &str, hosts: &[String]) {
    deploy_with(host, tenant, name, "hello-http", outbound_hosts(hosts)).await;
}

/// Invokes `tenant/name`'s `/fetch` with `x-fetch-url: url` (no header when
/// `None`).
async fn fetch(host: &Host, tenant: &str, name: &str, url: Option<&str>) -> HttpInvocation {
    let mut request = http::Request::builder()
        .method(http::Method::GET)
        .uri(format!("http://localhost/{tenant}/{name}/fetch"));
    if let Some(url) = url {
        request = request.header("x-fetch-url", url);
    }
    let request = request.body(Bytes::new()).expect("request");
    host.function(tenant, name)
        .expect("function deployed")
        .invoke_http(request)
        .await
        .unwrap_or_else(|e| panic!("invoke {tenant}/{name}: {e}"))
}

fn body(inv: &HttpInvocation) -> String {
    String::from_utf8_lossy(inv.response.body()).into_owned()
}

/// Asserts the guest fetched `upstream`: 200 with the upstream's status and
/// body, one request sent and none denied.
#[track_caller]
fn assert_fetched(inv: &HttpInvocation) {
    let text = body(inv);
    assert_eq!(inv.response.status(), 200, "body: {text}");
    assert!(text.starts_with("status=200\n"), "body: {text}");
    assert!(text.contains(PONG), "body: {text}");
    assert_eq!(inv.usage.outcome, Outcome::Success, "{:?}", inv.usage);
    assert_eq!(inv.usage.outbound_requests, 1, "{:?}", inv.usage);
    assert_eq!(inv.usage.denied_calls, 0, "{:?}", inv.usage);
    // Body bytes: the upstream's answer in, nothing out (a GET).
    assert_eq!(
        inv.usage.outbound_bytes_received,
        PONG.len() as u64,
        "{:?}",
        inv.usage
    );
    assert_eq!(inv.usage.outbound_bytes_sent, 0, "{:?}", inv.usage);
}

/// Asserts the host refused the guest's request: the guest saw
/// `HTTP-request-denied` (and still answered, so the invocation succeeded),
/// nothing was sent and one call was denied.
#[track_caller]
fn assert_denied(inv: &HttpInvocation) {
    let text = body(inv);
    assert_eq!(inv.response.status(), 502, "body: {text}");
    assert!(text.starts_with("denied"), "body: {text}");
    assert!(text.contains("HttpRequestDenied"), "body: {text}");
    assert_eq!(inv.usage.outcome, Outcome::Success, "{:?}", inv.usage);
    assert_eq!(inv.usage.outbound_requests, 0, "{:?}", inv.usage);
    assert_eq!(inv.usage.denied_calls, 1, "{:?}", inv.usage);
    assert_eq!(inv.usage.outbound_bytes_received, 0, "{:?}", inv.usage);
}

fn outbound_metric(host: &Host, tenant: &str, function: &str) -> Option<f64> {
    metric(
        host,
        &format!(
            "nimbus_outbound_http_requests_total{{tenant=\"{tenant}\",function=\"{function}\"}}"
        ),
    )
}

fn denied_metric(host: &Host, tenant: &str, function: &str) -> Option<f64> {
    metric(
        host,
        &format!("nimbus_denied_calls_total{{tenant=\"{tenant}\",function=\"{function}\"}}"),
    )
}

/// Per (tenant, function): outbound requests and denied calls summed over
/// the ledger's records.
fn ledger_counts(t: &TestHost, tenant: &str, function: &str) -> (u64, u64) {
    t.records()
        .into_iter()
        .filter(|r| r.tenant == tenant && r.function == function)
        .fold((0, 0), |(sent, denied), r| {
            (sent + r.outbound_requests, denied + r.denied_calls)
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn granted_host_and_port_is_fetched() {
    let upstream = Upstream::start(PONG).await;
    let port = upstream.port();
    let t = host_with(&["t"]);
    deploy_fetcher(&t.host, "t", "caller", &[format!("127.0.0.1:{port}")]).await;

    let url = format!("http://127.0.0.1:{port}/ping");
    let inv = fetch(&t.host, "t", "caller", Some(&url)).await;
    assert_fetched(&inv);
    assert_eq!(upstream.hits(), 1);

    assert_eq!(outbound_metric(&t.host, "t", "caller"), Some(1.0));
    assert_eq!(denied_metric(&t.host, "t", "caller"), Some(0.0));
    assert_eq!(ledger_counts(&t, "t", "caller"), (1, 0));
    assert_eq!(
        metric(
            &t.host,
            "nimbus_outbound_http_bytes_total{tenant=\"t\",function=\"caller\",direction=\"received\"}"
        ),
        Some(PONG.len() as f64)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ungranted_port_is_denied_without_reaching_the_network() {
    let granted = Upstream::start(PONG).await;
    let other = Upstream::start("must not be reached").await;
    let t = host_with(&["t"]);
    let grant = format!("127.0.0.1:{}", granted.port());
    deploy_fetcher(&t.host, "t", "caller", &[grant]).await;

    // Same host, another port: the grant names a port, so it is not this one.
    let url = format!("http://127.0.0.1:{}/ping", other.port());
    let inv = fetch(&t.host, "t", "caller", Some(&url)).await;
    assert_denied(&inv);
    assert_eq!(other.hits(), 0, "a denied request reached the server");
    assert_eq!(outbound_metric(&t.host, "t", "caller"), Some(0.0));
    assert_eq!(denied_metric(&t.host, "t", "caller"), Some(1.0));

    // The function still reaches its granted host; counters accumulate.
    let url = format!("http://127.0.0.1:{}/ping", granted.port());
    assert_fetched(&fetch(&t.host, "t", "caller", Some(&url)).await);
    assert_eq!((granted.hits(), other.hits()), (1, 0));
    assert_eq!(outbound_metric(&t.host, "t", "caller"), Some(1.0));
    assert_eq!(denied_metric(&t.host, "t", "caller"), Some(1.0));
    assert_eq!(ledger_counts(&t, "t", "caller"), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_grant_denies_everything() {
    let upstream = Upstream::start(PONG).await;
    let t = host_with(&["t"]);
    deploy(&t.host, "t", "plain", "hello-http").await;

    for url in [
        format!("http://127.0.0.1:{}/ping", upstream.port()),
        format!("http://localhost:{}/ping", upstream.port()),
        "http://example.com/".to_string(),
    ] {
        assert_denied(&fetch(&t.host, "t", "plain", Some(&url)).await);
    }
    assert_eq!(upstream.hits(), 0);
    assert_eq!(outbound_metric(&t.host, "t", "plain"), Some(0.0));
    assert_eq!(denied_metric(&t.host, "t", "plain"), Some(3.0));
    assert_eq!(ledger_counts(&t, "t", "plain"), (0, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_by_name_allows_any_port_of_that_name_only() {
    let upstream = Upstream::start(PONG).await;
    let t = host_with(&["t"]);
    deploy_fetcher(&t.host, "t", "named", &["localhost".to_string()]).await;

    let url = format!("http://localhost:{}/ping", upstream.port());
    assert_fetched(&fetch(&t.host, "t", "named", Some(&url)).await);
    // Names compare case-insensitively.
    let url = format!("http://LocalHost:{}/ping", upstream.port());
    assert_fetched(&fetch(&t.host, "t", "named", Some(&url)).await);
    assert_eq!(upstream.hits(), 2);

    // The grant is a name, not whatever it resolves to: the same server by
    // its address is not granted.
    let url = format!("http://127.0.0.1:{}/ping", upstream.port());
    assert_denied(&fetch(&t.host, "t", "named", Some(&url)).await);
    assert_eq!(upstream.hits(), 2);

    assert_eq!(outbound_metric(&t.host, "t", "named"), Some(2.0));
    assert_eq!(denied_metric(&t.host, "t", "named"), Some(1.0));
    assert_eq!(ledger_counts(&t, "t", "named"), (2, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_are_per_tenant() {
    let upstream = Upstream::start(PONG).await;
    let port = upstream.port();
    let t = host_with(&["a", "b"]);
    deploy_fetcher(&t.host, "a", "fetcher", &[format!("127.0.0.1:{port}")]).await;
    // The same component under the same name, but b has no grant.
    deploy(&t.host, "b", "fetcher", "hello-http").await;

    let url = format!("http://127.0.0.1:{port}/ping");
    assert_denied(&fetch(&t.host, "b", "fetcher", Some(&url)).await);
    assert_eq!(upstream.hits(), 0);
    assert_fetched(&fetch(&t.host, "a", "fetcher", Some(&url)).await);
    assert_denied(&fetch(&t.host, "b", "fetcher", Some(&url)).await);
    assert_eq!(upstream.hits(), 1);

    assert_eq!(outbound_metric(&t.host, "a", "fetcher"), Some(1.0));
    assert_eq!(denied_metric(&t.host, "a", "fetcher"), Some(0.0));
    assert_eq!(outbound_metric(&t.host, "b", "fetcher"), Some(0.0));
    assert_eq!(denied_metric(&t.host, "b", "fetcher"), Some(2.0));
    assert_eq!(ledger_counts(&t, "a", "fetcher"), (1, 0));
    assert_eq!(ledger_counts(&t, "b", "fetcher"), (0, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_are_per_function_and_replaced_on_redeploy() {
    let upstream = Upstream::start(PONG).await;
    let port = upstream.port();
    let url = format!("http://127.0.0.1:{port}/ping");
    let t = host_with(&["t"]);
    deploy_fetcher(&t.host, "t", "granted", &[format!("127.0.0.1:{port}")]).await;
    deploy_fetcher(&t.host, "t", "other", &[]).await;

    assert_fetched(&fetch(&t.host, "t", "granted", Some(&url)).await);
    assert_denied(&fetch(&t.host, "t", "other", Some(&url)).await);
    assert_eq!(upstream.hits(), 1);

    // A redeploy's config replaces the old grant entirely.
    deploy_fetcher(&t.host, "t", "granted", &[]).await;
    assert_denied(&fetch(&t.host, "t", "granted", Some(&url)).await);
    deploy_fetcher(&t.host, "t", "other", &[format!("127.0.0.1:{port}")]).await;
    assert_fetched(&fetch(&t.host, "t", "other", Some(&url)).await);
    assert_eq!(upstream.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn granted_but_unreachable_is_an_error_not_a_denial() {
    // A port nothing listens on (bound, then released).
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("local addr").port()
    };
    let t = host_with(&["t"]);
    deploy_fetcher(&t.host, "t", "caller", &[format!("127.0.0.1:{port}")]).await;

    let url = format!("http://127.0.0.1:{port}/ping");
    let inv = fetch(&t.host, "t", "caller", Some(&url)).await;
    let text = body(&inv);
    assert_eq!(inv.response.status(), 502, "body: {text}");
    assert!(text.starts_with("error: "), "body: {text}");
    assert!(!text.contains("HttpRequestDenied"), "body: {text}");
    // It was let through (and counted as sent), just not answered.
    assert_eq!(inv.usage.outbound_requests, 1, "{:?}", inv.usage);
    assert_eq!(inv.usage.denied_calls, 0, "{:?}", inv.usage);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_invalid_url_is_a_bad_request() {
    let t = host_with(&["t"]);
    deploy_fetcher(&t.host, "t", "caller", &["127.0.0.1".to_string()]).await;

    for url in [
        None,
        Some("not a url"),
        Some("ftp://127.0.0.1/x"),
        Some("/relative/path"),
        Some("http:///no-host"),
    ] {
        let inv = fetch(&t.host, "t", "caller", url).await;
        assert_eq!(inv.response.status(), 400, "{url:?}: {}", body(&inv));
        assert_eq!(inv.usage.outbound_requests, 0, "{url:?}");
        assert_eq!(inv.usage.denied_calls, 0, "{url:?}");
    }
    assert_eq!(outbound_metric(&t.host, "t", "caller"), Some(0.0));
    assert_eq!(denied_metric(&t.host, "t", "caller"), Some(0.0));
}
