//! The admin API of functions, for operators with an admin key: list,
//! inspect, deploy (`PUT` a component, with limits, access and grants),
//! delete, and read a function's invocation logs. The admin routes of
//! queues are the queue API's ([`crate::queues`]).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use http::{HeaderMap, StatusCode};
use nimbus_core::{Error, FunctionConfig, FunctionHandle, FunctionLimits};
use serde::Deserialize;

mod logs;

use crate::Gateway;
use crate::auth::{check_admin, known_tenant};
use crate::request::{BodyUnread, bad_request, json_error, not_found, query};

/// Largest component the admin API reads (413 above): the host core's
/// default `max_component_bytes`, which the core then applies itself.
pub const MAX_COMPONENT_UPLOAD_BYTES: usize = 32 << 20;

/// Header carrying a deploy's grants as JSON:
/// `{"config": {"key": "value"}, "outbound_hosts": ["api.example.com"],
/// "kv_stores": ["counters"], "directory": true, "blob_containers": ["uploads"],
/// "topics": ["orders"]}`.
pub const GRANTS_HEADER: &str = "x-nimbus-grants";

pub(crate) fn routes() -> Router<Gateway> {
    Router::new()
        .route("/admin/v1/tenants/{tenant}/functions", get(list))
        .route(
            "/admin/v1/tenants/{tenant}/functions/{name}",
            put(deploy).delete(delete).get(inspect),
        )
        .route(
            "/admin/v1/tenants/{tenant}/functions/{name}/logs",
            get(logs::logs),
        )
}

fn function_json(f: &FunctionHandle, public: bool) -> serde_json::Value {
    let l = f.limits();
    serde_json::json!({
        "tenant": f.tenant(),
        "function": f.name(),
        "kind": match (f.is_http(), f.handles_events()) {
            (true, true) => "http+event",
            (true, false) => "http",
            _ => "event",
        },
        "ungranted_imports": f.ungranted_imports(),
        "public": public,
        "limits": {
            "fuel": l.fuel,
            "max_memory_bytes": l.max_memory_bytes,
            "timeout_ms": l.timeout.as_millis() as u64,
            "max_concurrency": l.max_concurrency,
        },
    })
}

/// The deployed function, 404 otherwise.
pub(crate) fn function(gw: &Gateway, tenant: &str, name: &str) -> Result<FunctionHandle, Response> {
    gw.host()
        .function(tenant, name)
        .map_err(|e| not_found(&e.to_string()))
}

async fn list(
    State(gw): State<Gateway>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Response> {
    check_admin(&gw, &headers)?;
    known_tenant(&gw, &tenant)?;
    let host = gw.host();
    let functions: Vec<serde_json::Value> = host
        .functions(&tenant)
        .iter()
        .filter_map(|name| host.function(&tenant, name).ok())
        .map(|f| function_json(&f, gw.is_public(f.tenant(), f.name())))
        .collect();
    Ok(axum::Json(serde_json::json!({ "functions": functions })).into_response())
}

async fn inspect(
    State(gw): State<Gateway>,
    Path((tenant, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Response> {
    check_admin(&gw, &headers)?;
    let f = function(&gw, &tenant, &name)?;
    Ok(axum::Json(function_json(&f, gw.is_public(&tenant, &name))).into_response())
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

async fn deploy(
    State(gw): State<Gateway>,
    Path((tenant, name)): Path<(String, String)>,
    params: Result<Query<DeployParams>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Response> {
    check_admin(&gw, &headers).body_unread(&headers)?;
    let p = query(params).body_unread(&headers)?;
    // Read only once authorized, and not through the `Bytes` extractor,
    // whose default 2 MiB limit would refuse components the core accepts.
    let body = axum::body::to_bytes(body, MAX_COMPONENT_UPLOAD_BYTES)
        .await
        .map_err(|_| {
            json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the component exceeds the limit of {MAX_COMPONENT_UPLOAD_BYTES} bytes"),
                None,
            )
        })
        .body_unread(&headers)?;
    let mut spec = grants(&headers).map_err(|m| bad_request(&m))?;
    spec.limits = FunctionLimits {
        fuel: p.fuel,
        max_memory_bytes: p.max_memory_bytes,
        timeout: p.timeout_ms.map(Duration::from_millis),
        max_concurrency: p.max_concurrency,
    };
    let existed = gw.host().function(&tenant, &name).is_ok();
    let f = match gw.host().deploy_with(&tenant, &name, &body, spec).await {
        Ok(f) => f,
        Err(e @ Error::NotFound(_)) => return Err(not_found(&e.to_string())),
        Err(e) => return Err(bad_request(&e.to_string())),
    };
    if let Some(public) = p.public {
        gw.set_public(&tenant, &name, public);
    }
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let public = gw.is_public(&tenant, &name);
    Ok((status, axum::Json(function_json(&f, public))).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Grants {
    #[serde(default)]
    config: BTreeMap<String, String>,
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

async fn delete(
    State(gw): State<Gateway>,
    Path((tenant, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Response> {
    check_admin(&gw, &headers)?;
    gw.host()
        .remove_function(&tenant, &name)
        .map_err(|e| not_found(&e.to_string()))?;
    // A function deployed later under this name starts key-protected.
    gw.set_public(&tenant, &name, false);
    Ok(StatusCode::NO_CONTENT.into_response())
}
