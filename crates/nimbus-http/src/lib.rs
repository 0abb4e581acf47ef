//! The HTTP trigger of Nimbus: an API gateway in front of a [`Host`].
//!
//! [`Gateway::router`] is an axum `Router` an embedder mounts in its own
//! server (see `examples/gateway.rs`), or that `nimbus serve` runs on its own.
//! It serves:
//!
//! | route | what |
//! |---|---|
//! | `/{tenant}/{function}/{rest…}` | invoke a function (the default route) |
//! | configured routes | path prefix (and optional host) → function |
//! | `GET /metrics` | Prometheus text exposition of the host's registry |
//! | `GET /healthz`, `GET /readyz` | liveness; readiness (503 while draining) |
//! | `/admin/v1/tenants/{tenant}/functions[/{name}]` | list, deploy (`PUT` a component), delete — admin key |
//! | `/storage/v1/{tenant}/{container}[/{key…}]` | object storage, S3-like — tenant key ([`storage`]) |
//! | `/queues/v1/{tenant}/{queue}[/messages]` | send to a durable queue, its stats — tenant key ([`queues`]) |
//! | `/admin/v1/tenants/{tenant}/queues/{queue}[/dead-letters\|/redrive]` | queue stats, dead letters, redrive — admin key |
//!
//! Functions are key-protected unless their route or the function is public:
//! `Authorization: Bearer <tenant key>`; a wrong or missing key is a 401 with
//! no invocation and no billing. Every invocation goes through the host core
//! (limits, usage record, billing counters). Status codes: 404 unknown route
//! or function, 413 body over the limit, 429 (with `Retry-After`) rate limit
//! or concurrency limit — counted as throttled —, 504 timeout, 500 trap or
//! resource limit, 502 a guest that produced no valid response. Every
//! response to an invocation carries `x-nimbus-invocation-id`; error bodies
//! are JSON with the invocation id and never guest internals.
//!
//! Storage and queue requests are not invocations and are never billed as
//! such. Their routes take precedence over the default route, so a
//! function `v1` of a tenant named `storage` or `queues` is reachable only
//! through a configured route.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use dashmap::DashMap;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use nimbus_core::{Error, Event, FunctionConfig, FunctionHandle, FunctionLimits, Host};
use serde::Deserialize;

pub mod queues;
pub mod storage;

/// Response header carrying the invocation id.
pub const INVOCATION_ID_HEADER: &str = "x-nimbus-invocation-id";

/// Default request body limit: 6 MiB, as Lambda's synchronous payload.
pub const DEFAULT_MAX_BODY_BYTES: usize = 6 << 20;

/// Largest component the admin API reads (413 above): the host core's
/// default `max_component_bytes`, which the core then applies itself.
pub const MAX_COMPONENT_UPLOAD_BYTES: usize = 32 << 20;

/// A tenant's per-second request budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub per_second: u32,
    /// Requests that may arrive at once on top of the sustained rate.
    pub burst: u32,
}

/// A configured route: requests whose path starts with `path_prefix` (on a
/// segment boundary) and, if given, whose `Host` is `host`, go to `function`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub path_prefix: String,
    pub host: Option<String>,
    pub tenant: String,
    pub function: String,
    /// Invocable without a key.
    pub public: bool,
}

/// Builds a [`Gateway`]; nothing is public and no key is valid unless set.
#[derive(Debug)]
#[must_use]
pub struct GatewayBuilder {
    host: Host,
    admin_keys: Vec<String>,
    tenants: HashMap<String, (Vec<String>, Option<RateLimit>)>,
    routes: Vec<Route>,
    public: Vec<(String, String)>,
    max_body_bytes: usize,
}

impl GatewayBuilder {
    /// Keys accepted on the admin API. Without any, the admin API answers 403.
    pub fn admin_key(mut self, key: impl Into<String>) -> Self {
        self.admin_keys.push(key.into());
        self
    }

    /// API keys of a tenant (any one is accepted) and its rate limit.
    pub fn tenant(mut self, tenant: &str, keys: Vec<String>, rate: Option<RateLimit>) -> Self {
        self.tenants.insert(tenant.to_string(), (keys, rate));
        self
    }

    pub fn route(mut self, route: Route) -> Self {
        self.routes.push(route);
        self
    }

    /// Makes a function invocable without a key on every route.
    pub fn public_function(mut self, tenant: &str, function: &str) -> Self {
        self.public.push((tenant.to_string(), function.to_string()));
        self
    }

    /// Request body limit in bytes (default [`DEFAULT_MAX_BODY_BYTES`]).
    pub fn max_body_bytes(mut self, n: usize) -> Self {
        self.max_body_bytes = n;
        self
    }

    pub fn build(self) -> Result<Gateway, String> {
        let mut tenants = HashMap::new();
        for (name, (keys, rate)) in self.tenants {
            let limiter = match rate {
                None => None,
                Some(r) => {
                    let per_second = NonZeroU32::new(r.per_second)
                        .ok_or_else(|| format!("tenant `{name}`: rate limit must be above 0"))?;
                    let burst = NonZeroU32::new(r.burst.max(1)).unwrap_or(per_second);
                    Some(RateLimiter::direct(
                        Quota::per_second(per_second).allow_burst(burst),
                    ))
                }
            };
            tenants.insert(name, Arc::new(TenantGate { keys, limiter }));
        }
        let mut routes = self.routes;
        for r in &routes {
            if !r.path_prefix.starts_with('/') {
                return Err(format!(
                    "route to {}/{}: path {:?} must start with '/'",
                    r.tenant, r.function, r.path_prefix
                ));
            }
        }
        // Most specific first: host-bound before host-less, longer prefixes first.
        routes.sort_by_key(|r| (r.host.is_none(), std::cmp::Reverse(r.path_prefix.len())));
        let public = DashMap::new();
        for key in self.public {
            public.insert(key, ());
        }
        let storage_requests = storage::requests_counter(&self.host);
        Ok(Gateway {
            inner: Arc::new(Inner {
                host: self.host,
                admin_keys: self.admin_keys,
                tenants: RwLock::new(tenants),
                routes: RwLock::new(routes),
                public,
                max_body_bytes: self.max_body_bytes,
                ready: AtomicBool::new(true),
                storage_requests,
            }),
        })
    }
}

struct TenantGate {
    keys: Vec<String>,
    limiter: Option<DefaultDirectRateLimiter>,
}

struct Inner {
    host: Host,
    admin_keys: Vec<String>,
    tenants: RwLock<HashMap<String, Arc<TenantGate>>>,
    routes: RwLock<Vec<Route>>,
    public: DashMap<(String, String), ()>,
    max_body_bytes: usize,
    ready: AtomicBool,
    storage_requests: nimbus_core::prometheus::IntCounterVec,
}

/// The gateway; cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").finish_non_exhaustive()
    }
}

impl Gateway {
    pub fn builder(host: Host) -> GatewayBuilder {
        GatewayBuilder {
            host,
            admin_keys: Vec::new(),
            tenants: HashMap::new(),
            routes: Vec::new(),
            public: Vec::new(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }

    pub fn host(&self) -> &Host {
        &self.inner.host
    }

    /// `/readyz` answers 503 once this is false (set when draining).
    pub fn set_ready(&self, ready: bool) {
        self.inner.ready.store(ready, Ordering::SeqCst);
    }

    /// The whole gateway as one router (functions, admin, metrics, health).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .route("/admin/v1/tenants/{tenant}/functions", get(admin_list))
            .route(
                "/admin/v1/tenants/{tenant}/functions/{name}",
                put(admin_deploy).delete(admin_delete).get(admin_get),
            )
            .route(
                "/admin/v1/tenants/{tenant}/functions/{name}/logs",
                get(admin_logs),
            )
            .merge(storage::routes())
            .merge(queues::routes())
            .fallback(invoke)
            .with_state(self.clone())
    }

    fn is_public(&self, tenant: &str, function: &str) -> bool {
        self.inner
            .public
            .contains_key(&(tenant.to_string(), function.to_string()))
    }

    fn tenant_gate(&self, tenant: &str) -> Option<Arc<TenantGate>> {
        self.inner
            .tenants
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(tenant)
            .cloned()
    }
}

async fn readyz(State(gw): State<Gateway>) -> Response {
    if gw.inner.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    }
}

async fn metrics(State(gw): State<Gateway>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        gw.inner.host.metrics_text(),
    )
        .into_response()
}

fn json_error(status: StatusCode, message: &str, invocation: Option<&str>) -> Response {
    let mut body = serde_json::json!({ "error": message });
    if let Some(id) = invocation {
        body["invocation_id"] = id.into();
    }
    let mut resp = (status, axum::Json(body)).into_response();
    if let Some(id) = invocation.and_then(|i| HeaderValue::from_str(i).ok()) {
        resp.headers_mut().insert(INVOCATION_ID_HEADER, id);
    }
    resp
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Compares without an early exit, so response time does not reveal how
/// much of a key matched.
fn key_matches(given: &str, keys: &[String]) -> bool {
    keys.iter().fold(false, |found, k| {
        let (a, b) = (given.as_bytes(), k.as_bytes());
        let diff = a.len() ^ b.len()
            | a.iter()
                .zip(b.iter().cycle())
                .fold(0usize, |acc, (x, y)| acc | usize::from(x ^ y));
        found | (diff == 0 && !a.is_empty())
    })
}

fn unauthorized(what: &str) -> Response {
    let mut resp = json_error(StatusCode::UNAUTHORIZED, what, None);
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

// The error is the refusal to send, built only when refusing: nothing to
// gain from boxing it.
#[allow(clippy::result_large_err)]
fn check_admin(gw: &Gateway, headers: &HeaderMap) -> Result<(), Response> {
    if gw.inner.admin_keys.is_empty() {
        return Err(json_error(
            StatusCode::FORBIDDEN,
            "the admin API is disabled (no admin key configured)",
            None,
        ));
    }
    match bearer(headers) {
        Some(k) if key_matches(k, &gw.inner.admin_keys) => Ok(()),
        Some(_) => Err(unauthorized("invalid admin key")),
        None => Err(unauthorized("missing `Authorization: Bearer <admin key>`")),
    }
}

/// The key check of invocations, for every tenant API: the bearer key must
/// be one of `tenant`'s keys (so the tenant named in a path is the caller).
#[allow(clippy::result_large_err)]
fn check_tenant_key(gw: &Gateway, tenant: &str, headers: &HeaderMap) -> Result<(), Response> {
    let gate = gw.tenant_gate(tenant);
    let keys = gate.as_ref().map(|g| g.keys.as_slice()).unwrap_or_default();
    match bearer(headers) {
        Some(k) if key_matches(k, keys) => Ok(()),
        Some(_) => Err(unauthorized("invalid API key for this tenant")),
        None => Err(unauthorized(
            "missing `Authorization: Bearer <tenant API key>`",
        )),
    }
}

fn function_json(f: &FunctionHandle, public: bool) -> serde_json::Value {
    let l = f.limits();
    serde_json::json!({
        "tenant": f.tenant(),
        "function": f.name(),
        "kind": if f.is_http() { "http" } else { "event" },
        "public": public,
        "limits": {
            "fuel": l.fuel,
            "max_memory_bytes": l.max_memory_bytes,
            "timeout_ms": l.timeout.as_millis() as u64,
            "max_concurrency": l.max_concurrency,
        },
    })
}

async fn admin_list(
    State(gw): State<Gateway>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = check_admin(&gw, &headers) {
        return r;
    }
    let host = &gw.inner.host;
    if let Err(e) = host.tenant_limits(&tenant) {
        return json_error(StatusCode::NOT_FOUND, &e.to_string(), None);
    }
    let functions: Vec<serde_json::Value> = host
        .functions(&tenant)
        .iter()
        .filter_map(|name| host.function(&tenant, name).ok())
        .map(|f| function_json(&f, gw.is_public(f.tenant(), f.name())))
        .collect();
    axum::Json(serde_json::json!({ "functions": functions })).into_response()
}

async fn admin_get(
    State(gw): State<Gateway>,
    Path((tenant, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = check_admin(&gw, &headers) {
        return r;
    }
    match gw.inner.host.function(&tenant, &name) {
        Ok(f) => axum::Json(function_json(&f, gw.is_public(&tenant, &name))).into_response(),
        Err(e) => json_error(StatusCode::NOT_FOUND, &e.to_string(), None),
    }
}

/// Query parameters of a deploy: per-function limit overrides and access.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeployParams {
    fuel: Option<u64>,
    max_memory_bytes: Option<u64>,
    timeout_ms: Option<u64>,
    max_concurrency: Option<u32>,
    public: Option<bool>,
}

async fn admin_deploy(
    State(gw): State<Gateway>,
    Path((tenant, name)): Path<(String, String)>,
    params: Result<Query<DeployParams>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let unread = has_body(&headers);
    if let Err(r) = check_admin(&gw, &headers) {
        return body_unread(r, unread);
    }
    let Query(p) = match params {
        Ok(p) => p,
        Err(e) => {
            let r = json_error(StatusCode::BAD_REQUEST, &e.body_text(), None);
            return body_unread(r, unread);
        }
    };
    // Read only once authorized, and not through the `Bytes` extractor,
    // whose default 2 MiB limit would refuse components the core accepts.
    let body = match axum::body::to_bytes(body, MAX_COMPONENT_UPLOAD_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            let r = json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the component exceeds the limit of {MAX_COMPONENT_UPLOAD_BYTES} bytes"),
                None,
            );
            return body_unread(r, unread);
        }
    };
    let mut spec = match grants(&headers) {
        Ok(g) => g,
        Err(m) => return json_error(StatusCode::BAD_REQUEST, &m, None),
    };
    spec.limits = FunctionLimits {
        fuel: p.fuel,
        max_memory_bytes: p.max_memory_bytes,
        timeout: p.timeout_ms.map(Duration::from_millis),
        max_concurrency: p.max_concurrency,
    };
    let existed = gw.inner.host.function(&tenant, &name).is_ok();
    match gw.inner.host.deploy_with(&tenant, &name, &body, spec).await {
        Ok(f) => {
            if let Some(public) = p.public {
                let key = (tenant.clone(), name.clone());
                if public {
                    gw.inner.public.insert(key, ());
                } else {
                    gw.inner.public.remove(&key);
                }
            }
            let status = if existed {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            let public = gw.is_public(&tenant, &name);
            (status, axum::Json(function_json(&f, public))).into_response()
        }
        Err(e @ Error::NotFound(_)) => json_error(StatusCode::NOT_FOUND, &e.to_string(), None),
        Err(e) => json_error(StatusCode::BAD_REQUEST, &e.to_string(), None),
    }
}

/// Header carrying a deploy's grants as JSON:
/// `{"config": {"key": "value"}, "outbound_hosts": ["api.example.com"],
/// "kv_stores": ["counters"], "directory": true, "blob_containers": ["uploads"],
/// "topics": ["orders"]}`.
pub const GRANTS_HEADER: &str = "x-nimbus-grants";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Grants {
    #[serde(default)]
    config: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    outbound_hosts: Vec<String>,
    #[serde(default)]
    kv_stores: Vec<String>,
    #[serde(default)]
    directory: bool,
    #[serde(default)]
    blob_containers: Vec<String>,
    #[serde(default)]
    topics: Vec<String>,
}

fn grants(headers: &HeaderMap) -> Result<FunctionConfig, String> {
    let Some(raw) = headers.get(GRANTS_HEADER) else {
        return Ok(FunctionConfig::default());
    };
    let g: Grants = raw
        .to_str()
        .map_err(|_| format!("{GRANTS_HEADER}: not valid text"))
        .and_then(|t| serde_json::from_str(t).map_err(|e| format!("{GRANTS_HEADER}: {e}")))?;
    Ok(FunctionConfig {
        config: g.config,
        outbound_hosts: g.outbound_hosts,
        kv_stores: g.kv_stores,
        directory: g.directory,
        blob_containers: g.blob_containers,
        topics: g.topics,
        ..FunctionConfig::default()
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogsParams {
    invocation_id: Option<String>,
}

async fn admin_logs(
    State(gw): State<Gateway>,
    Path((tenant, name)): Path<(String, String)>,
    params: Result<Query<LogsParams>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = check_admin(&gw, &headers) {
        return r;
    }
    let Query(p) = match params {
        Ok(p) => p,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &e.body_text(), None),
    };
    let id = match p.invocation_id.as_deref().map(str::parse::<uuid::Uuid>) {
        None => None,
        Some(Ok(id)) => Some(id),
        Some(Err(e)) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                &format!("invocation_id: {e}"),
                None,
            );
        }
    };
    if let Err(e) = gw.inner.host.function(&tenant, &name) {
        return json_error(StatusCode::NOT_FOUND, &e.to_string(), None);
    }
    let invocations = gw.inner.host.invocation_logs(&tenant, &name, id);
    axum::Json(serde_json::json!({ "invocations": invocations })).into_response()
}

async fn admin_delete(
    State(gw): State<Gateway>,
    Path((tenant, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = check_admin(&gw, &headers) {
        return r;
    }
    match gw.inner.host.remove_function(&tenant, &name) {
        Ok(()) => {
            // A function deployed later under this name starts key-protected.
            gw.inner.public.remove(&(tenant, name));
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => json_error(StatusCode::NOT_FOUND, &e.to_string(), None),
    }
}

/// Where a request goes.
struct Target {
    tenant: String,
    function: String,
    public: bool,
}

fn request_host(headers: &HeaderMap, uri: &http::Uri) -> Option<String> {
    let raw = uri
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| headers.get(header::HOST)?.to_str().ok().map(String::from))?;
    // Match on the name only: `api.example.com:8080` routes like `api.example.com`.
    Some(
        raw.rsplit_once(':')
            .map_or(raw.clone(), |(h, _)| h.to_string()),
    )
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty()
        || path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

fn resolve(gw: &Gateway, req: &Request) -> Option<Target> {
    let path = req.uri().path();
    let host = request_host(req.headers(), req.uri());
    let routes = gw.inner.routes.read().unwrap_or_else(|e| e.into_inner());
    for r in routes.iter() {
        let host_ok = match (&r.host, &host) {
            (None, _) => true,
            (Some(want), Some(got)) => want.eq_ignore_ascii_case(got),
            (Some(_), None) => false,
        };
        if host_ok && prefix_matches(&r.path_prefix, path) {
            return Some(Target {
                tenant: r.tenant.clone(),
                function: r.function.clone(),
                public: r.public,
            });
        }
    }
    let mut segments = path.trim_start_matches('/').splitn(3, '/');
    let tenant = segments.next().filter(|s| !s.is_empty())?;
    let function = segments.next().filter(|s| !s.is_empty())?;
    Some(Target {
        tenant: tenant.to_string(),
        function: function.to_string(),
        public: false,
    })
}

async fn invoke(State(gw): State<Gateway>, req: Request) -> Response {
    // Refusals below answer without reading the body.
    let unread = has_body(req.headers());
    let refuse = |r: Response| body_unread(r, unread);
    let Some(target) = resolve(&gw, &req) else {
        return refuse(json_error(
            StatusCode::NOT_FOUND,
            "no route matches this request",
            None,
        ));
    };
    let Ok(function) = gw.inner.host.function(&target.tenant, &target.function) else {
        return refuse(json_error(StatusCode::NOT_FOUND, "no such function", None));
    };
    let gate = gw.tenant_gate(&target.tenant);

    let public = target.public || gw.is_public(&target.tenant, &target.function);
    if !public && let Err(r) = check_tenant_key(&gw, &target.tenant, req.headers()) {
        return refuse(r);
    }

    let max = gw.inner.max_body_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return refuse(too_large(max));
    }

    if let Some(limiter) = gate.as_ref().and_then(|g| g.limiter.as_ref())
        && let Err(not_until) = limiter.check()
    {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        let reason = format!("tenant `{}` is over its rate limit", target.tenant);
        let err = function.throttle(
            reason,
            declared.unwrap_or(0),
            nimbus_core::Cause::new(nimbus_core::Trigger::Http),
        );
        return refuse(failure(err, Some(wait)));
    }

    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, max).await {
        Ok(b) => b,
        Err(_) => return refuse(too_large(max)),
    };

    if function.is_http() {
        let authority =
            request_host(&parts.headers, &parts.uri).unwrap_or_else(|| "localhost".into());
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let uri = match http::Uri::builder()
            .scheme("http")
            .authority(authority.as_str())
            .path_and_query(path)
            .build()
        {
            Ok(u) => u,
            Err(e) => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    &format!("bad request URI: {e}"),
                    None,
                );
            }
        };
        let mut request = http::Request::new(body);
        *request.method_mut() = parts.method;
        *request.uri_mut() = uri;
        *request.headers_mut() = parts.headers;
        if !public {
            // The key authenticated the caller to the gateway; the function
            // has no use for it, and should not be able to log or leak it.
            request.headers_mut().remove(header::AUTHORIZATION);
        }
        match function.invoke_http(request).await {
            Ok(done) => {
                let (mut head, body) = done.response.into_parts();
                if let Ok(id) = HeaderValue::from_str(&done.usage.invocation_id.to_string()) {
                    head.headers.insert(INVOCATION_ID_HEADER, id);
                }
                Response::from_parts(head, Body::from(body))
            }
            Err(e) => failure(e, None),
        }
    } else {
        // Event functions are invocable over HTTP too: the body becomes the
        // event's data.
        let mut event = Event::new(
            "nimbus.http.request",
            format!("/{}/{}", target.tenant, target.function),
            body.to_vec(),
        )
        .subject(parts.uri.path().to_string())
        .attribute("httpmethod", parts.method.as_str());
        event.content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        match function
            .invoke_with(event, nimbus_core::Cause::new(nimbus_core::Trigger::Http))
            .await
        {
            Ok(done) => {
                let mut resp = Response::new(Body::from(done.response.data));
                if let Some(ct) = done
                    .response
                    .content_type
                    .and_then(|c| HeaderValue::from_str(&c).ok())
                {
                    resp.headers_mut().insert(header::CONTENT_TYPE, ct);
                }
                if let Ok(id) = HeaderValue::from_str(&done.usage.invocation_id.to_string()) {
                    resp.headers_mut().insert(INVOCATION_ID_HEADER, id);
                }
                resp
            }
            Err(e) => failure(e, None),
        }
    }
}

/// Whether a request declares a body (a length above 0, or chunked).
fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}

/// A response sent without reading (all of) the request's body: hyper then
/// closes the connection, so say `Connection: close`, or a keep-alive client
/// puts it back in its pool and its next request fails.
fn body_unread(mut resp: Response, unread: bool) -> Response {
    if unread {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

fn too_large(max: usize) -> Response {
    json_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("request body exceeds the limit of {max} bytes"),
        None,
    )
}

/// Maps an invocation error to a status; the body names the outcome and the
/// invocation, never the guest's internals.
fn failure(e: Error, retry_after: Option<Duration>) -> Response {
    let id = e.report().map(|r| r.usage.invocation_id.to_string());
    let (status, message) = match &e {
        Error::Throttled { .. } => (StatusCode::TOO_MANY_REQUESTS, "throttled: retry later"),
        Error::Timeout { .. } => (StatusCode::GATEWAY_TIMEOUT, "the function timed out"),
        Error::Guest { error, .. } => match error {
            nimbus_core::GuestError::InvalidInput(_) => {
                (StatusCode::BAD_REQUEST, "the function rejected the request")
            }
            _ => (
                StatusCode::BAD_GATEWAY,
                "the function did not produce a valid response",
            ),
        },
        Error::OutOfFuel { .. }
        | Error::MemoryLimitExceeded { .. }
        | Error::StackOverflow { .. }
        | Error::Trap { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "the function failed"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
    };
    tracing::info!(error = %e, status = status.as_u16(), "invocation failed");
    let mut resp = json_error(status, message, id.as_deref());
    if status == StatusCode::TOO_MANY_REQUESTS {
        let secs = retry_after.map_or(1, |d| d.as_secs_f64().ceil().max(1.0) as u64);
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_exactly() {
        let keys = vec!["secret".to_string(), "other-key".to_string()];
        assert!(key_matches("secret", &keys));
        assert!(key_matches("other-key", &keys));
        for bad in ["", "secre", "secrets", "SECRET", "other"] {
            assert!(!key_matches(bad, &keys), "{bad:?}");
        }
        assert!(!key_matches("anything", &[]));
    }

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        assert!(prefix_matches("/api", "/api"));
        assert!(prefix_matches("/api", "/api/x"));
        assert!(prefix_matches("/api/", "/api/x"));
        assert!(!prefix_matches("/api", "/apix"));
        assert!(prefix_matches("/", "/anything"));
    }
}
