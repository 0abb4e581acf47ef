//! The usage API, for a tenant with its own key (or an operator with an
//! admin key), answered from the usage rollups, never by reading the
//! ledger:
//!
//! - `GET /usage/v1/{tenant}?from=&to=&granularity=hour|day&function=&period=`:
//!   invocations by outcome, billed duration, GB-seconds, fuel, CPU, bytes
//!   and messages per function per bucket, with the cost at the configured
//!   prices; with `period=YYYY-MM`, the month's statement (free tier
//!   applied), the same figures `nimbus bill` prints.
//! - `GET /usage/v1/{tenant}/invocations?limit=50&function=`: the most
//!   recent invocations, newest first.
//! - `GET /usage/v1/{tenant}/functions/{function}/logs/{invocation_id}`: one
//!   invocation's logs.
//!
//! `from` and `to` are RFC 3339 instants or `YYYY-MM-DD` (UTC midnight);
//! `from` is rounded down and `to` up to the granularity, and both are
//! returned as used. Defaults: from the start of this UTC month to now.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, NaiveDate, Utc};
use http::{HeaderMap, StatusCode};
use nimbus_billing::{Decimal, Dimension, Period, PriceSheet, Quantities, StorageQuantities};
use nimbus_usage::{Bucket, Granularity, Rollups};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Gateway;
use crate::auth::{check_admin, check_tenant_key};
use crate::request::{bad_request, json_error, not_found, query};

/// What the usage API answers from: the rollups of this node's ledger and
/// the price sheet, if one is configured (costs are `null` without one).
#[derive(Debug, Clone)]
pub struct UsageService {
    pub rollups: Arc<Rollups>,
    pub prices: Option<Arc<PriceSheet>>,
}

pub(crate) fn routes() -> Router<Gateway> {
    Router::new()
        .route("/usage/v1/{tenant}", get(usage))
        .route("/usage/v1/{tenant}/invocations", get(invocations))
        .route(
            "/usage/v1/{tenant}/functions/{function}/logs/{id}",
            get(invocation_logs),
        )
}

/// The tenant's own key, or an admin key.
fn authorize(gw: &Gateway, tenant: &str, headers: &HeaderMap) -> Result<UsageService, Response> {
    if check_admin(gw, headers).is_err() {
        check_tenant_key(gw, tenant, headers)?;
    }
    gw.inner.usage.clone().ok_or_else(|| {
        not_found(
            "the usage API is off: it needs the ledger to be a directory (`ledger` in nimbus.toml)",
        )
    })
}

fn internal(e: impl std::fmt::Display) -> Response {
    json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string(), None)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UsageParams {
    from: Option<String>,
    to: Option<String>,
    granularity: Option<String>,
    function: Option<String>,
    period: Option<String>,
}

fn instant(name: &str, s: &str) -> Result<DateTime<Utc>, Response> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| {
            bad_request(&format!(
                "{name}: `{s}` is neither an RFC 3339 instant nor a YYYY-MM-DD date"
            ))
        })
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn gb_seconds(q: &Quantities) -> String {
    let per = Dimension::GbSeconds.per_unit(0);
    match (
        Decimal::try_from_i128_with_scale(q.memory_byte_ms as i128, 0),
        Decimal::try_from_i128_with_scale(per as i128, 0),
    ) {
        (Ok(a), Ok(b)) => a.checked_div(b).map_or_else(
            || "overflow".into(),
            |d| d.round_dp(12).normalize().to_string(),
        ),
        _ => "overflow".into(),
    }
}

/// A bucket's (or a total's) figures as the API shows them.
fn figures(tenant: &str, b: &Bucket, prices: Option<&PriceSheet>) -> Result<Value, Response> {
    let q = &b.quantities;
    let cost = match prices {
        Some(p) => Some(
            p.try_cost(tenant, q)
                .map_err(|e| internal(format!("pricing: {e}")))?
                .to_string(),
        ),
        None => None,
    };
    Ok(json!({
        "invocations": q.invocations_by_outcome.values().sum::<u64>(),
        "outcomes": q.invocations_by_outcome,
        "billed_duration_ms": q.billed_duration_ms,
        "gb_seconds": gb_seconds(q),
        "fuel": q.fuel.to_string().parse::<Value>().unwrap_or(Value::Null),
        "cpu_us": q.cpu_us,
        "request_bytes": b.request_bytes.to_string().parse::<Value>().unwrap_or(Value::Null),
        "response_bytes": b.response_bytes.to_string().parse::<Value>().unwrap_or(Value::Null),
        "outbound_bytes": q.outbound_bytes.to_string().parse::<Value>().unwrap_or(Value::Null),
        "messages": q.messages,
        "cost": cost,
    }))
}

async fn usage(
    State(gw): State<Gateway>,
    Path(tenant): Path<String>,
    params: Result<Query<UsageParams>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, Response> {
    let service = authorize(&gw, &tenant, &headers)?;
    let p = query(params)?;
    let granularity = match p.granularity.as_deref() {
        None => Granularity::Day,
        Some(g) => Granularity::parse(g)
            .ok_or_else(|| bad_request(&format!("granularity: `{g}` is not `hour` or `day`")))?,
    };
    let period = match p.period.as_deref() {
        Some(s) => {
            if p.from.is_some() || p.to.is_some() {
                return Err(bad_request("period: cannot be combined with from or to"));
            }
            Some(Period::parse(s).map_err(|e| bad_request(&format!("period: {e}")))?)
        }
        None => None,
    };
    let now = Utc::now();
    let (from, to) = match &period {
        Some(period) => (period.start(), period.end()),
        None => {
            let from = match &p.from {
                Some(s) => instant("from", s)?,
                None => Period::of(now).start(),
            };
            let to = match &p.to {
                Some(s) => instant("to", s)?,
                None => now,
            };
            (granularity.floor(from), granularity.ceil(to))
        }
    };
    if to <= from {
        return Err(bad_request(&format!(
            "to: {} is not after from ({})",
            rfc3339(to),
            rfc3339(from)
        )));
    }
    let rollups = service.rollups.clone();
    let (t, f) = (tenant.clone(), p.function.clone());
    let got = tokio::task::spawn_blocking(move || rollups.query(&t, from, to, f.as_deref()))
        .await
        .map_err(internal)?
        .map_err(internal)?;
    let prices = service.prices.as_deref();
    let mut functions = Vec::new();
    let mut totals = Bucket::default();
    let mut per_function: BTreeMap<String, Quantities> = BTreeMap::new();
    for (function, hours) in &got.functions {
        let mut buckets: BTreeMap<i64, Bucket> = BTreeMap::new();
        let mut total = Bucket::default();
        for (start, b) in hours {
            let key = granularity.floor(DateTime::from_timestamp(*start, 0).unwrap_or(from));
            buckets.entry(key.timestamp()).or_default().merge(b);
            total.merge(b);
        }
        let mut shown = Vec::new();
        for (start, b) in &buckets {
            let mut v = figures(&tenant, b, prices)?;
            v["start"] = json!(rfc3339(DateTime::from_timestamp(*start, 0).unwrap_or(from)));
            shown.push(v);
        }
        totals.merge(&total);
        per_function.insert(function.clone(), total.quantities.clone());
        functions.push(json!({
            "function": function,
            "buckets": shown,
            "totals": figures(&tenant, &total, prices)?,
        }));
    }
    let statement = match (&period, prices) {
        (Some(period), Some(prices)) => {
            let mut storage = StorageQuantities::default();
            for q in got.storage.values() {
                storage.merge(q);
            }
            Some(prices.statement(&tenant, period, &per_function, &storage))
        }
        _ => None,
    };
    Ok(axum::Json(json!({
        "tenant": tenant,
        "from": rfc3339(from),
        "to": rfc3339(to),
        "granularity": granularity.as_str(),
        "currency": prices.map(PriceSheet::currency),
        "functions": functions,
        "totals": figures(&tenant, &totals, prices)?,
        "statement": statement,
    }))
    .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InvocationsParams {
    limit: Option<usize>,
    function: Option<String>,
}

async fn invocations(
    State(gw): State<Gateway>,
    Path(tenant): Path<String>,
    params: Result<Query<InvocationsParams>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, Response> {
    let service = authorize(&gw, &tenant, &headers)?;
    let p = query(params)?;
    let limit = p.limit.unwrap_or(50);
    if !(1..=nimbus_usage::RECENT_PER_TENANT).contains(&limit) {
        return Err(bad_request(&format!(
            "limit: {limit} is not between 1 and {}",
            nimbus_usage::RECENT_PER_TENANT
        )));
    }
    let rollups = service.rollups.clone();
    let t = tenant.clone();
    let recent =
        tokio::task::spawn_blocking(move || rollups.recent(&t, p.function.as_deref(), limit))
            .await
            .map_err(internal)?
            .map_err(internal)?;
    let list: Vec<Value> = recent
        .into_iter()
        .map(|r| {
            let logs = format!(
                "/usage/v1/{}/functions/{}/logs/{}",
                tenant, r.function, r.invocation_id
            );
            let mut v = serde_json::to_value(&r).unwrap_or(Value::Null);
            v["logs"] = json!(logs);
            v
        })
        .collect();
    Ok(axum::Json(json!({ "invocations": list })).into_response())
}

async fn invocation_logs(
    State(gw): State<Gateway>,
    Path((tenant, function, id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, Response> {
    authorize(&gw, &tenant, &headers)?;
    let id: uuid::Uuid = id
        .parse()
        .map_err(|e| bad_request(&format!("invocation id `{id}`: {e}")))?;
    let host = gw.host().clone();
    let (t, f) = (tenant.clone(), function.clone());
    let logs = tokio::task::spawn_blocking(move || host.invocation_logs(&t, &f, Some(id)))
        .await
        .map_err(internal)?;
    match logs.into_iter().next() {
        Some(entry) => Ok(axum::Json(entry).into_response()),
        None => Err(not_found(&format!(
            "no logs kept for invocation {id} of {tenant}/{function} (a successful invocation that wrote nothing keeps none)"
        ))),
    }
}
