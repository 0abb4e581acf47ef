//! Routes through the admin API: list (the config file's and the API's),
//! add or replace, delete. Recorded routes outlive a restart; the config
//! file's win on the same host and path.

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, StatusCode};
use nimbus_core::{RouteRecord, Selector};
use serde::Deserialize;

use super::core_error;
use crate::Gateway;
use crate::auth::check_admin;
use crate::request::{bad_request, query};

pub(super) fn routes() -> Router<Gateway> {
    Router::new().route("/admin/v1/routes", get(list).put(put).delete(remove))
}

async fn list(State(gw): State<Gateway>, headers: HeaderMap) -> Result<Response, Response> {
    check_admin(&gw, &headers)?;
    let recorded = gw.host().routes();
    let routes: Vec<serde_json::Value> = gw
        .route_table()
        .iter()
        .map(|r| {
            let api = recorded
                .iter()
                .any(|x| x.host == r.host && x.path == r.path_prefix && x.function == r.function);
            serde_json::json!({
                "path": r.path_prefix,
                "host": r.host,
                "tenant": r.tenant,
                "function": r.function,
                "public": r.public,
                "source": if api { "api" } else { "config" },
            })
        })
        .collect();
    Ok(axum::Json(serde_json::json!({ "routes": routes })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteBody {
    path: String,
    host: Option<String>,
    tenant: String,
    function: String,
    #[serde(default)]
    public: bool,
}

async fn put(
    State(gw): State<Gateway>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, Response> {
    check_admin(&gw, &headers)?;
    let b: RouteBody =
        serde_json::from_slice(&bytes).map_err(|e| bad_request(&format!("route: {e}")))?;
    if !b.path.starts_with('/') {
        return Err(bad_request(&format!(
            "route path {:?} must start with '/'",
            b.path
        )));
    }
    Selector::parse(&b.function).map_err(|e| bad_request(&e.to_string()))?;
    let route = RouteRecord {
        path: b.path,
        host: b.host,
        tenant: b.tenant,
        function: b.function,
        public: b.public,
    };
    gw.host()
        .put_route(route.clone())
        .await
        .map_err(core_error)?;
    gw.refresh_routes();
    Ok(axum::Json(serde_json::json!({
        "path": route.path, "host": route.host, "tenant": route.tenant,
        "function": route.function, "public": route.public, "source": "api",
    }))
    .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteParams {
    path: String,
    host: Option<String>,
}

async fn remove(
    State(gw): State<Gateway>,
    params: Result<Query<DeleteParams>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, Response> {
    check_admin(&gw, &headers)?;
    let p = query(params)?;
    gw.host()
        .delete_route(p.host.as_deref(), &p.path)
        .await
        .map_err(core_error)?;
    gw.refresh_routes();
    Ok(StatusCode::NO_CONTENT.into_response())
}
