//! The admin API, for operators with an admin key. Functions here: list,
//! inspect, deploy (`PUT` a component, with limits, access and grants: a
//! new version, and an alias moved to it), delete. Versions and aliases
//! are in `versions.rs`, tenants in `tenants.rs`, routes in `routes.rs`,
//! logs in `logs.rs`; the admin routes of queues are the queue API's
//! ([`crate::queues`]). Every change is recorded in the host's deployment
//! registry before it is answered.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use http::{HeaderMap, StatusCode};
use nimbus_core::{Error, FunctionConfig, FunctionHandle, FunctionLimits, LIVE, Selector};
use serde::Deserialize;

mod logs;
mod routes;
mod tenants;
mod versions;

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
        .merge(tenants::routes())
        .merge(versions::routes())
        .merge(routes::routes())
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

/// A function as the admin API shows it: the version `live` points at
/// (for a split, its first version), every alias and version.
pub(crate) fn function_json(gw: &Gateway, f: &FunctionHandle) -> serde_json::Value {
    let l = f.limits();
    let record = gw.host().function_record(f.tenant(), f.name()).ok();
    let aliases: serde_json::Map<String, serde_json::Value> = record
        .iter()
        .flat_map(|r| r.aliases.iter())
        .map(|(name, a)| (name.clone(), versions::alias_json(a)))
        .collect();
    let version_numbers: Vec<u32> = record
        .iter()
        .flat_map(|r| r.versions.iter().map(|v| v.version))
        .collect();
    serde_json::json!({
        "tenant": f.tenant(),
        "function": f.name(),
        "version": f.version(),
        "kind": f.kind(),
        "ungranted_imports": f.ungranted_imports(),
        "public": gw.is_public(f.tenant(), f.name()),
        "limits": {
            "fuel": l.fuel,
            "max_memory_bytes": l.max_memory_bytes,
            "timeout_ms": l.timeout.as_millis() as u64,
            "max_concurrency": l.max_concurrency,
        },
        "aliases": aliases,
        "versions": version_numbers,
    })
}

/// The version of the function its `live` alias points at (the first
/// of a split), waiting briefly if it is still loading; 404 otherwise.
pub(crate) async fn function(
    gw: &Gateway,
    tenant: &str,
    name: &str,
) -> Result<FunctionHandle, Response> {
    let host = gw.host();
    let selector = match host.function_record(tenant, name) {
        Ok(r) => match r.aliases.get(LIVE).and_then(|a| a.routing.first()) {
            Some(w) => Selector::Version(w.version),
            None => Selector::Live,
        },
        Err(e) => return Err(not_found(&e.to_string())),
    };
    host.function_ready(tenant, name, &selector, Duration::from_secs(10))
        .await
        .map_err(core_error)
}

/// The status of a host core error outside an invocation.
pub(crate) fn core_error(e: Error) -> Response {
    let status = match &e {
        Error::NotFound(_) => StatusCode::NOT_FOUND,
        Error::TenantExists(_) | Error::Conflict(_) => StatusCode::CONFLICT,
        Error::Loading(_) | Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        Error::Registry(_) | Error::Config(_) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    json_error(status, &e.to_string(), None)
}

async fn list(
    State(gw): State<Gateway>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Response> {
    check_admin(&gw, &headers)?;
    known_tenant(&gw, &tenant)?;
    let mut functions = Vec::new();
    for name in gw.host().functions(&tenant) {
        if let Ok(f) = function(&gw, &tenant, &name).await {
            functions.push(function_json(&gw, &f));
        }
    }
    Ok(axum::Json(serde_json::json!({ "functions": functions })).into_response())
}

async fn inspect(
    State(gw): State<Gateway>,
    Path((tenant, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Response> {
    check_admin(&gw, &headers)?;
    let f = function(&gw, &tenant, &name).await?;
    Ok(axum::Json(function_json(&gw, &f)).into_response())
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
    /// The alias moved to the new version (default `live`).
    alias: Option<String>,
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
    let existed = gw.host().function_record(&tenant, &name).is_ok();
    let alias = p.alias.as_deref().unwrap_or(LIVE);
    let f = gw
        .host()
        .publish(&tenant, &name, &body, spec, alias)
        .await
        .map_err(core_error)?;
    if let Some(public) = p.public {
        gw.host()
            .set_public(&tenant, &name, public)
            .await
            .map_err(core_error)?;
    }
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let mut json = function_json(&gw, &f);
    // The version this deploy published (or reused), which `alias` now
    // points at; `live` may point elsewhere when another alias was named.
    json["version"] = f.version().into();
    json["published"] = f.version().into();
    json["alias"] = alias.into();
    Ok((status, axum::Json(json)).into_response())
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
        .await
        .map_err(core_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
