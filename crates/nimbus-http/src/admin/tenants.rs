//! Tenants through the admin API: create (with a first API key, shown
//! once), list, inspect, update limits and rate limit, add and revoke API
//! keys (rotation: add, move clients, revoke), delete (with all its data).

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use http::{HeaderMap, StatusCode};
use nimbus_core::{Limits, RateLimitRecord, TenantRecord};
use serde::Deserialize;

use super::core_error;
use crate::Gateway;
use crate::auth::check_admin;
use crate::request::bad_request;

pub(super) fn routes() -> Router<Gateway> {
    Router::new()
        .route("/admin/v1/tenants", get(list).post(create))
        .route(
            "/admin/v1/tenants/{tenant}",
            get(inspect).patch(update).delete(remove),
        )
        .route("/admin/v1/tenants/{tenant}/keys", post(add_key))
        .route(
            "/admin/v1/tenants/{tenant}/keys/{key_id}",
            delete(delete_key),
        )
}

fn tenant_json(gw: &Gateway, t: &TenantRecord) -> serde_json::Value {
    let mut keys: Vec<serde_json::Value> = t
        .keys
        .iter()
        .map(|k| serde_json::json!({ "key_id": k.key_id, "created_at": k.created_at, "source": "api" }))
        .collect();
    if let Some(gate) = gw.tenant_gate(&t.name) {
        keys.extend(
            (0..gate.keys.len()).map(
                |i| serde_json::json!({ "key_id": format!("config-{i}"), "source": "config" }),
            ),
        );
    }
    serde_json::json!({
        "name": t.name,
        "limits": t.limits,
        "rate_limit": t.rate_limit.map(|r| serde_json::json!({ "per_second": r.per_second, "burst": r.burst })),
        "keys": keys,
        "created_at": t.created_at,
        "functions": gw.host().functions(&t.name),
    })
}

/// Limits in a request: every key optional, the rest from `base`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsBody {
    fuel: Option<u64>,
    max_memory_bytes: Option<u64>,
    timeout_ms: Option<u64>,
    max_concurrency: Option<u32>,
    max_kv_bytes: Option<u64>,
    max_blob_bytes: Option<u64>,
    max_tenant_memory_bytes: Option<u64>,
    cpu_weight: Option<u32>,
}

impl LimitsBody {
    fn over(&self, base: Limits) -> Limits {
        let mut l = base;
        l.fuel = self.fuel.unwrap_or(l.fuel);
        l.max_memory_bytes = self.max_memory_bytes.unwrap_or(l.max_memory_bytes);
        if let Some(ms) = self.timeout_ms {
            l.timeout = std::time::Duration::from_millis(ms);
        }
        l.max_concurrency = self.max_concurrency.unwrap_or(l.max_concurrency);
        l.max_kv_bytes = self.max_kv_bytes.unwrap_or(l.max_kv_bytes);
        l.max_blob_bytes = self.max_blob_bytes.unwrap_or(l.max_blob_bytes);
        l.max_tenant_memory_bytes = self
            .max_tenant_memory_bytes
            .unwrap_or(l.max_tenant_memory_bytes);
        if let Some(w) = self.cpu_weight {
            l = l.cpu_weight(w);
        }
        l
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RateBody {
    per_second: u32,
    burst: Option<u32>,
}

impl RateBody {
    fn record(&self) -> RateLimitRecord {
        RateLimitRecord {
            per_second: self.per_second,
            burst: self.burst.unwrap_or(self.per_second),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    #[serde(default)]
    limits: LimitsBody,
    rate_limit: Option<RateBody>,
}

/// `rate_limit`: absent leaves it, `null` removes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    limits: Option<LimitsBody>,
    #[serde(default, deserialize_with = "present")]
    rate_limit: Option<Option<RateBody>>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<RateBody>>, D::Error> {
    Option::<RateBody>::deserialize(d).map(Some)
}

fn body<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, Response> {
    serde_json::from_slice(bytes).map_err(|e| bad_request(&format!("{what}: {e}")))
}

async fn list(State(gw): State<Gateway>, headers: HeaderMap) -> Result<Response, Response> {
    check_admin(&gw, &headers)?;
    let tenants: Vec<serde_json::Value> = gw
        .host()
        .tenant_records()
        .iter()
        .map(|t| tenant_json(&gw, t))
        .collect();
    Ok(axum::Json(serde_json::json!({ "tenants": tenants })).into_response())
}

async fn create(
    State(gw): State<Gateway>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, Response> {
    check_admin(&gw, &headers)?;
    let b: CreateBody = body("tenant", &bytes)?;
    let host = gw.host();
    host.create_tenant(
        &b.name,
        b.limits.over(Limits::default()),
        b.rate_limit.as_ref().map(RateBody::record),
    )
    .await
    .map_err(core_error)?;
    let (key, secret) = host.add_tenant_key(&b.name).await.map_err(core_error)?;
    let t = host.tenant_record(&b.name).map_err(core_error)?;
    Ok((
        StatusCode::CREATED,
        axum::Json(serde_json::json!({
            "tenant": tenant_json(&gw, &t),
            "api_key": secret,
            "key_id": key.key_id,
        })),
    )
        .into_response())
}

async fn inspect(
    State(gw): State<Gateway>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Response> {
    check_admin(&gw, &headers)?;
    let t = gw.host().tenant_record(&tenant).map_err(core_error)?;
    Ok(axum::Json(tenant_json(&gw, &t)).into_response())
}

async fn update(
    State(gw): State<Gateway>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, Response> {
    check_admin(&gw, &headers)?;
    let b: UpdateBody = body("tenant update", &bytes)?;
    let host = gw.host();
    let current = host.tenant_record(&tenant).map_err(core_error)?;
    let limits = b.limits.as_ref().map(|l| l.over(current.limits));
    let rate = b.rate_limit.map(|r| r.as_ref().map(RateBody::record));
    let t = host
        .update_tenant(&tenant, limits, rate)
        .await
        .map_err(core_error)?;
    Ok(axum::Json(tenant_json(&gw, &t)).into_response())
}

async fn remove(
    State(gw): State<Gateway>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Response> {
    check_admin(&gw, &headers)?;
    gw.host().delete_tenant(&tenant).await.map_err(core_error)?;
    gw.forget_tenant(&tenant);
    gw.refresh_routes();
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn add_key(
    State(gw): State<Gateway>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Response> {
    check_admin(&gw, &headers)?;
    let (key, secret) = gw
        .host()
        .add_tenant_key(&tenant)
        .await
        .map_err(core_error)?;
    Ok((
        StatusCode::CREATED,
        axum::Json(serde_json::json!({
            "api_key": secret,
            "key_id": key.key_id,
            "created_at": key.created_at,
        })),
    )
        .into_response())
}

async fn delete_key(
    State(gw): State<Gateway>,
    Path((tenant, key_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Response> {
    check_admin(&gw, &headers)?;
    gw.host()
        .delete_tenant_key(&tenant, &key_id)
        .await
        .map_err(core_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
