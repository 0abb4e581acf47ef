//! A function's versions and aliases through the admin API: list and
//! delete versions, create, move and delete aliases (one version or a
//! weighted split of two), and roll an alias back.

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use http::{HeaderMap, StatusCode};
use nimbus_core::{AliasRecord, LIVE, Weighted};
use serde::Deserialize;

use super::core_error;
use crate::Gateway;
use crate::auth::check_admin;
use crate::request::{bad_request, query};

pub(super) fn routes() -> Router<Gateway> {
    Router::new()
        .route(
            "/admin/v1/tenants/{tenant}/functions/{name}/versions",
            get(list),
        )
        .route(
            "/admin/v1/tenants/{tenant}/functions/{name}/versions/{version}",
            axum::routing::delete(delete_version),
        )
        .route(
            "/admin/v1/tenants/{tenant}/functions/{name}/aliases",
            get(aliases),
        )
        .route(
            "/admin/v1/tenants/{tenant}/functions/{name}/aliases/{alias}",
            put(set_alias).delete(delete_alias).get(alias),
        )
        .route(
            "/admin/v1/tenants/{tenant}/functions/{name}/rollback",
            post(rollback),
        )
}

/// The function's record, for an admin key.
fn record(
    gw: &Gateway,
    headers: &HeaderMap,
    tenant: &str,
    name: &str,
) -> Result<nimbus_core::FunctionRecord, Response> {
    check_admin(gw, headers)?;
    gw.host().function_record(tenant, name).map_err(core_error)
}

fn routing_json(routing: &[Weighted]) -> serde_json::Value {
    routing
        .iter()
        .map(|w| serde_json::json!({ "version": w.version, "weight": w.weight }))
        .collect()
}

pub(crate) fn alias_json(a: &AliasRecord) -> serde_json::Value {
    serde_json::json!({
        "routing": routing_json(&a.routing),
        "previous": a.previous.as_deref().map(routing_json),
    })
}

async fn list(
    State(gw): State<Gateway>,
    Path((tenant, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Response> {
    let record = record(&gw, &headers, &tenant, &name)?;
    let versions: Vec<serde_json::Value> = record
        .versions
        .iter()
        .map(|v| {
            let kind = gw
                .host()
                .function_at(&tenant, &name, &nimbus_core::Selector::Version(v.version))
                .map(|f| f.kind())
                .unwrap_or("loading");
            serde_json::json!({
                "version": v.version,
                "sha256": v.sha256,
                "size": v.size,
                "created_at": v.created_at,
                "kind": kind,
                "limits": v.config.limits,
                "grants": {
                    "config": v.config.config.keys().collect::<Vec<_>>(),
                    "outbound_hosts": v.config.outbound_hosts,
                    "kv_stores": v.config.kv_stores,
                    "directory": v.config.directory,
                    "blob_containers": v.config.blob_containers,
                    "topics": v.config.topics,
                },
                "aliases": record.aliases_of(v.version),
            })
        })
        .collect();
    Ok(axum::Json(serde_json::json!({ "versions": versions })).into_response())
}

async fn delete_version(
    State(gw): State<Gateway>,
    Path((tenant, name, version)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, Response> {
    check_admin(&gw, &headers)?;
    let n = version
        .parse::<u32>()
        .map_err(|_| bad_request(&format!("version {version:?}: not a version number")))?;
    gw.host()
        .delete_version(&tenant, &name, n)
        .await
        .map_err(core_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn aliases(
    State(gw): State<Gateway>,
    Path((tenant, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Response> {
    let record = record(&gw, &headers, &tenant, &name)?;
    let aliases: serde_json::Map<String, serde_json::Value> = record
        .aliases
        .iter()
        .map(|(n, a)| (n.clone(), alias_json(a)))
        .collect();
    Ok(axum::Json(serde_json::json!({ "aliases": aliases })).into_response())
}

async fn alias(
    State(gw): State<Gateway>,
    Path((tenant, name, alias)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, Response> {
    let record = record(&gw, &headers, &tenant, &name)?;
    let a = record.aliases.get(&alias).ok_or_else(|| {
        core_error(nimbus_core::Error::NotFound(format!(
            "alias `{alias}` of function `{name}`"
        )))
    })?;
    Ok(axum::Json(alias_json(a)).into_response())
}

/// `{"version": 3}` or `{"routing": [{"version": 3, "weight": 90}, …]}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AliasBody {
    version: Option<u32>,
    routing: Option<Vec<WeightedBody>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WeightedBody {
    version: u32,
    weight: u8,
}

async fn set_alias(
    State(gw): State<Gateway>,
    Path((tenant, name, alias)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Response> {
    check_admin(&gw, &headers)?;
    let b: AliasBody =
        serde_json::from_slice(&body).map_err(|e| bad_request(&format!("alias body: {e}")))?;
    let routing = match (b.version, b.routing) {
        (Some(version), None) => vec![Weighted {
            version,
            weight: 100,
        }],
        (None, Some(r)) => r
            .into_iter()
            .map(|w| Weighted {
                version: w.version,
                weight: w.weight,
            })
            .collect(),
        _ => {
            return Err(bad_request(
                "alias body: give either `version` or `routing`, e.g. {\"version\": 3} or \
                 {\"routing\": [{\"version\": 3, \"weight\": 90}, {\"version\": 2, \"weight\": 10}]}",
            ));
        }
    };
    let a = gw
        .host()
        .set_alias(&tenant, &name, &alias, routing)
        .await
        .map_err(core_error)?;
    Ok(axum::Json(alias_json(&a)).into_response())
}

async fn delete_alias(
    State(gw): State<Gateway>,
    Path((tenant, name, alias)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, Response> {
    check_admin(&gw, &headers)?;
    gw.host()
        .delete_alias(&tenant, &name, &alias)
        .await
        .map_err(core_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackParams {
    alias: Option<String>,
}

async fn rollback(
    State(gw): State<Gateway>,
    Path((tenant, name)): Path<(String, String)>,
    params: Result<Query<RollbackParams>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, Response> {
    check_admin(&gw, &headers)?;
    let p = query(params)?;
    let alias = p.alias.as_deref().unwrap_or(LIVE);
    let a = gw
        .host()
        .rollback(&tenant, &name, alias)
        .await
        .map_err(core_error)?;
    Ok(axum::Json(alias_json(&a)).into_response())
}
