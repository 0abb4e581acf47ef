//! A function's invocation logs through the admin API:
//! `GET /admin/v1/tenants/{t}/functions/{f}/logs?invocation_id=&limit=100&follow=false`.
//!
//! Without `follow`: `{"invocations": [...]}`, the last `limit` (1 to
//! 1000, default 100) oldest first, or the one of `invocation_id`. With
//! `follow=true`: `text/event-stream`, first those same entries, then each
//! new one once it is committed, one `data: <json>` event per invocation;
//! a `: keep-alive` comment every 15 s; `: lagged N` when the stream fell
//! N entries behind (they are skipped, the stream goes on). The stream
//! ends when the client goes away (its task at the next event or
//! keep-alive) or within a second of the server starting to drain.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use nimbus_core::InvocationLogs;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::function;
use crate::Gateway;
use crate::auth::check_admin;
use crate::request::{bad_request, json_error, query};

/// Entries a request returns when it names no `limit`.
const DEFAULT_LIMIT: usize = 100;
/// The largest `limit` (the most a function keeps).
const MAX_LIMIT: usize = 1000;
/// How often a followed stream sends a comment while nothing happens.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How often a followed stream checks whether the server drains.
const DRAIN_CHECK: Duration = Duration::from_secs(1);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LogsParams {
    pub(super) invocation_id: Option<String>,
    pub(super) limit: Option<usize>,
    pub(super) follow: Option<bool>,
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
    let limit = p.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(bad_request(&format!(
            "limit: {limit} is not between 1 and {MAX_LIMIT}"
        )));
    }
    let follow = p.follow.unwrap_or(false);
    if follow && id.is_some() {
        return Err(bad_request(
            "invocation_id and follow=true cannot be combined",
        ));
    }
    function(&gw, &tenant, &name).await?;
    // Subscribed before the tail is read: nothing committed in between is
    // missed (what both show is sent once).
    let new = follow.then(|| gw.host().follow_logs(&tenant, &name));
    let host = gw.host().clone();
    let invocations = tokio::task::spawn_blocking(move || match id {
        Some(_) => host.invocation_logs(&tenant, &name, id),
        None => host.invocation_logs_tail(&tenant, &name, limit),
    })
    .await
    .map_err(|e| {
        json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("reading the logs failed: {e}"),
            None,
        )
    })?;
    match new {
        None => Ok(axum::Json(serde_json::json!({ "invocations": invocations })).into_response()),
        Some(new) => Ok(event_stream(gw, invocations, new)),
    }
}

/// The `text/event-stream` of a followed function: `tail`, then what `new`
/// receives, fed by a task that ends when the body is dropped (the client
/// went away), the host is gone, or the server drains.
fn event_stream(
    gw: Gateway,
    tail: Vec<InvocationLogs>,
    mut new: tokio::sync::broadcast::Receiver<Arc<InvocationLogs>>,
) -> Response {
    let (mut tx, body) = http_body_util::channel::Channel::<Bytes, Infallible>::new(16);
    tokio::spawn(async move {
        let mut sent: HashSet<uuid::Uuid> = tail.iter().map(|l| l.invocation_id).collect();
        for l in &tail {
            if tx.send_data(data_event(l)).await.is_err() {
                return;
            }
        }
        let start = tokio::time::Instant::now();
        let mut keep_alive = tokio::time::interval_at(start + KEEP_ALIVE, KEEP_ALIVE);
        let mut drain_check = tokio::time::interval_at(start + DRAIN_CHECK, DRAIN_CHECK);
        loop {
            let event = tokio::select! {
                received = new.recv() => match received {
                    // Committed while the tail was read: already sent.
                    Ok(l) if sent.remove(&l.invocation_id) => continue,
                    Ok(l) => data_event(&l),
                    Err(RecvError::Lagged(n)) => Bytes::from(format!(": lagged {n}\n\n")),
                    Err(RecvError::Closed) => return,
                },
                _ = keep_alive.tick() => Bytes::from_static(b": keep-alive\n\n"),
                _ = drain_check.tick() => {
                    if gw.inner.ready.load(Ordering::SeqCst) {
                        continue;
                    }
                    return;
                }
            };
            if tx.send_data(event).await.is_err() {
                return;
            }
        }
    });
    let mut resp = Response::new(Body::new(body));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// One SSE event: `data: <json>` (JSON on one line) and a blank line.
fn data_event(l: &InvocationLogs) -> Bytes {
    let mut event = b"data: ".to_vec();
    // Serializing plain data into memory cannot fail.
    if serde_json::to_writer(&mut event, l).is_err() {
        event.truncate(0);
        event.extend_from_slice(b": an entry could not be serialized");
    }
    event.extend_from_slice(b"\n\n");
    Bytes::from(event)
}
