//! A function's invocation logs through the admin API.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use serde::Deserialize;

use super::function;
use crate::Gateway;
use crate::auth::check_admin;
use crate::request::{bad_request, query};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LogsParams {
    pub(super) invocation_id: Option<String>,
}

pub(super) async fn logs(
    State(gw): State<Gateway>,
    Path((tenant, name)): Path<(String, String)>,
    params: Result<Query<LogsParams>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, Response> {
    check_admin(&gw, &headers)?;
    let p = query(params)?;
    let id = p
        .invocation_id
        .as_deref()
        .map(str::parse::<uuid::Uuid>)
        .transpose()
        .map_err(|e| bad_request(&format!("invocation_id: {e}")))?;
    function(&gw, &tenant, &name)?;
    let invocations = gw.host().invocation_logs(&tenant, &name, id);
    Ok(axum::Json(serde_json::json!({ "invocations": invocations })).into_response())
}
