//! The queue API: producers send to the host's durable queues
//! ([`Host::queue_store`]) over HTTP, and operators inspect and redrive dead
//! letters.
//!
//! Tenant routes need `Authorization: Bearer <tenant API key>` of the
//! tenant in the path (the key check of invocations); admin routes need an
//! admin key. A missing or wrong key is a 401 and nothing is read or sent.
//!
//! | request | answer |
//! |---|---|
//! | `POST /queues/v1/{tenant}/{queue}/messages` | the body is the message; its `Content-Type` is kept and each `x-nimbus-meta-<k>: <v>` header becomes metadata `(k, v)` (`k` lower-case, as HTTP header names are case-insensitive). 202 `{"id": …}` once the message is on disk. Sending creates the queue with the default config if it does not exist, as a guest's send does |
//! | `GET /queues/v1/{tenant}/{queue}` | 200 `{"queue", "visible", "in_flight", "delayed", "dead", "oldest_age_ms"}` (`oldest_age_ms`: age of the oldest message still queued, `null` when none) |
//! | `GET /admin/v1/tenants/{tenant}/queues/{queue}` | the same stats — admin key |
//! | `POST /admin/v1/tenants/{tenant}/queues/{queue}/messages` | the same send — admin key (an operator feeding a tenant's queue) |
//! | `GET …/dead-letters?limit=` | 200 `{"dead_letters": [{id, body, body_encoding, content_type, metadata, receive_count, last_error, sent_at_ms, dead_at_ms}]}`, oldest first, at most `limit` (default 100, cap 1000) |
//! | `POST …/redrive` (optional JSON body `{"ids": [..]}`) | moves the listed dead letters (all without a body) back into the queue: 200 `{"redriven": n}`; ids not dead-lettered are skipped |
//!
//! A dead letter's `body` is the body itself when it is valid UTF-8
//! (`"body_encoding": "utf-8"`), otherwise its standard base64 with padding
//! (`"body_encoding": "base64"`): text stays readable and any bytes survive
//! exactly. `metadata` is a list of `[key, value]` pairs (keys may repeat).
//!
//! Errors are JSON `{"error": …}`: 400 a bad queue name (naming the rule),
//! metadata header or id; 404 an unknown tenant or queue (`tenant `t` has no
//! queue `q``); 413 a message over the queue's `max_message_bytes` (256 KiB
//! by default; the message names the limit).
//!
//! [`Host::queue_store`]: nimbus_core::Host::queue_store

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, StatusCode, header};
use nimbus_core::nimbus_queue::{
    self, DeadLetter, MessageId, OutgoingMessage, QueueError, QueueStats,
};
use serde::Deserialize;

use crate::{Gateway, body_unread, check_admin, check_tenant_key, has_body, json_error};

/// Prefix of the request headers that become message metadata.
pub const META_HEADER_PREFIX: &str = "x-nimbus-meta-";

/// Dead letters one listing returns by default, and at most.
const DEFAULT_DEAD_LETTERS: usize = 100;
const MAX_DEAD_LETTERS: usize = 1000;

/// Largest redrive request body (a list of ids).
const MAX_REDRIVE_BODY: usize = 1 << 20;

pub(crate) fn routes() -> Router<Gateway> {
    Router::new()
        .route("/queues/v1/{tenant}/{queue}", get(stats))
        .route("/queues/v1/{tenant}/{queue}/messages", post(send))
        .route(
            "/admin/v1/tenants/{tenant}/queues/{queue}",
            get(admin_stats),
        )
        .route(
            "/admin/v1/tenants/{tenant}/queues/{queue}/dead-letters",
            get(admin_dead_letters),
        )
        .route(
            "/admin/v1/tenants/{tenant}/queues/{queue}/redrive",
            post(admin_redrive),
        )
        .route(
            "/admin/v1/tenants/{tenant}/queues/{queue}/messages",
            post(admin_send),
        )
}

#[derive(Debug, Deserialize)]
struct QueuePath {
    tenant: String,
    queue: String,
}

fn bad_path(e: PathRejection) -> Response {
    json_error(StatusCode::BAD_REQUEST, &e.body_text(), None)
}

fn queue_error(e: QueueError) -> Response {
    let status = match &e {
        QueueError::InvalidName { .. }
        | QueueError::InvalidConfig(_)
        | QueueError::InvalidMessageId(_)
        | QueueError::InvalidReceipt(_) => StatusCode::BAD_REQUEST,
        QueueError::UnknownQueue { .. } => StatusCode::NOT_FOUND,
        QueueError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        QueueError::StaleReceipt(_) => StatusCode::CONFLICT,
        _ => {
            tracing::error!(error = %e, "queue API: queue store failed");
            return json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal queue error",
                None,
            );
        }
    };
    json_error(status, &e.to_string(), None)
}

/// Runs a queue store call off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, QueueError> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(queue_error),
        Err(e) => Err(queue_error(QueueError::Storage(format!(
            "blocking task failed: {e}"
        )))),
    }
}

/// The tenant must be registered with the host.
#[allow(clippy::result_large_err)]
fn known_tenant(gw: &Gateway, tenant: &str) -> Result<(), Response> {
    gw.host()
        .tenant_limits(tenant)
        .map(|_| ())
        .map_err(|e| json_error(StatusCode::NOT_FOUND, &e.to_string(), None))
}

fn stats_json(queue: &str, s: &QueueStats, now_ms: u64) -> serde_json::Value {
    serde_json::json!({
        "queue": queue,
        "visible": s.visible,
        "in_flight": s.in_flight,
        "delayed": s.delayed,
        "dead": s.dead,
        "oldest_age_ms": s.oldest_sent_at_ms.map(|t| now_ms.saturating_sub(t)),
    })
}

async fn queue_stats(gw: &Gateway, p: QueuePath) -> Response {
    if let Err(r) = known_tenant(gw, &p.tenant) {
        return r;
    }
    let store = gw.host().queue_store();
    let now = nimbus_queue::now_ms();
    let queue = p.queue.clone();
    match blocking(move || store.stats(&p.tenant, &p.queue, now)).await {
        Ok(s) => axum::Json(stats_json(&queue, &s, now)).into_response(),
        Err(r) => r,
    }
}

async fn stats(
    State(gw): State<Gateway>,
    path: Result<Path<QueuePath>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let Path(p) = match path {
        Ok(p) => p,
        Err(e) => return bad_path(e),
    };
    if let Err(r) = check_tenant_key(&gw, &p.tenant, &headers) {
        return r;
    }
    queue_stats(&gw, p).await
}

async fn admin_stats(
    State(gw): State<Gateway>,
    path: Result<Path<QueuePath>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = check_admin(&gw, &headers) {
        return r;
    }
    match path {
        Ok(Path(p)) => queue_stats(&gw, p).await,
        Err(e) => bad_path(e),
    }
}

/// The message's content type and metadata, from the request headers.
fn message_headers(headers: &HeaderMap) -> Result<OutgoingMessage, String> {
    let mut msg = OutgoingMessage::default();
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().map_err(|_| "Content-Type: not valid text")?;
        msg.content_type = Some(ct.to_string());
    }
    for (name, value) in headers {
        let Some(key) = name.as_str().strip_prefix(META_HEADER_PREFIX) else {
            continue;
        };
        if key.is_empty() {
            return Err(format!(
                "{META_HEADER_PREFIX}<key>: the metadata key is empty"
            ));
        }
        let value = String::from_utf8(value.as_bytes().to_vec())
            .map_err(|_| format!("{name}: the value is not UTF-8"))?;
        msg.metadata.push((key.to_string(), value));
    }
    Ok(msg)
}

/// Whether reading a body failed on its length limit (rather than on the
/// connection).
fn over_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

async fn send(
    State(gw): State<Gateway>,
    path: Result<Path<QueuePath>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // Every refusal below answers without reading the body.
    let refuse = |r: Response| body_unread(r, has_body(&headers));
    let Path(p) = match path {
        Ok(p) => p,
        Err(e) => return refuse(bad_path(e)),
    };
    if let Err(r) = check_tenant_key(&gw, &p.tenant, &headers) {
        return refuse(r);
    }
    enqueue(gw, p, headers, body).await
}

/// `send` for operators: the same, with an admin key.
async fn admin_send(
    State(gw): State<Gateway>,
    path: Result<Path<QueuePath>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let refuse = |r: Response| body_unread(r, has_body(&headers));
    let Path(p) = match path {
        Ok(p) => p,
        Err(e) => return refuse(bad_path(e)),
    };
    if let Err(r) = check_admin(&gw, &headers) {
        return refuse(r);
    }
    enqueue(gw, p, headers, body).await
}

/// Sends the request as a message, once the caller is authorized.
async fn enqueue(gw: Gateway, p: QueuePath, headers: HeaderMap, body: Body) -> Response {
    let refuse = |r: Response| body_unread(r, has_body(&headers));
    if let Err(r) = known_tenant(&gw, &p.tenant) {
        return refuse(r);
    }
    let mut msg = match message_headers(&headers) {
        Ok(m) => m,
        Err(e) => return refuse(json_error(StatusCode::BAD_REQUEST, &e, None)),
    };
    let store = gw.host().queue_store();
    // The limit applies to body, content type and metadata together; the
    // body alone is read up to it, the send checks the total.
    let limit = {
        let (store, tenant, queue) = (store.clone(), p.tenant.clone(), p.queue.clone());
        match blocking(move || store.config(&tenant, &queue)).await {
            Ok(c) => c.max_message_bytes,
            Err(r) => return refuse(r),
        }
    };
    let too_large = || {
        json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!(
                "message body is over the limit of {limit} bytes of queue `{}`",
                p.queue
            ),
            None,
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return refuse(too_large());
    }
    msg.body = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b.to_vec(),
        Err(e) if over_length_limit(&e) => return refuse(too_large()),
        Err(e) => {
            return refuse(json_error(
                StatusCode::BAD_REQUEST,
                &format!("reading the request body: {e}"),
                None,
            ));
        }
    };
    let now = nimbus_queue::now_ms();
    match blocking(move || store.send(&p.tenant, &p.queue, msg, now)).await {
        Ok(id) => (
            StatusCode::ACCEPTED,
            axum::Json(serde_json::json!({ "id": id.to_string() })),
        )
            .into_response(),
        Err(r) => r,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeadLetterParams {
    limit: Option<usize>,
}

fn dead_letter_json(d: &DeadLetter) -> serde_json::Value {
    let (body, encoding) = match std::str::from_utf8(&d.body) {
        Ok(text) => (text.to_string(), "utf-8"),
        Err(_) => (base64(&d.body), "base64"),
    };
    serde_json::json!({
        "id": d.id.to_string(),
        "body": body,
        "body_encoding": encoding,
        "content_type": d.content_type,
        "metadata": d.metadata,
        "receive_count": d.receive_count,
        "last_error": d.last_error,
        "sent_at_ms": d.sent_at_ms,
        "dead_at_ms": d.dead_at_ms,
    })
}

async fn admin_dead_letters(
    State(gw): State<Gateway>,
    path: Result<Path<QueuePath>, PathRejection>,
    params: Result<Query<DeadLetterParams>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = check_admin(&gw, &headers) {
        return r;
    }
    let Path(p) = match path {
        Ok(p) => p,
        Err(e) => return bad_path(e),
    };
    let limit = match params {
        Ok(Query(q)) => q.limit.unwrap_or(DEFAULT_DEAD_LETTERS),
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &e.body_text(), None),
    };
    if !(1..=MAX_DEAD_LETTERS).contains(&limit) {
        return json_error(
            StatusCode::BAD_REQUEST,
            &format!("limit must be 1 to {MAX_DEAD_LETTERS} (got {limit})"),
            None,
        );
    }
    if let Err(r) = known_tenant(&gw, &p.tenant) {
        return r;
    }
    let store = gw.host().queue_store();
    match blocking(move || store.dead_letters(&p.tenant, &p.queue, limit)).await {
        Ok(dead) => axum::Json(serde_json::json!({
            "dead_letters": dead.iter().map(dead_letter_json).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(r) => r,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedriveRequest {
    ids: Option<Vec<String>>,
}

async fn admin_redrive(
    State(gw): State<Gateway>,
    path: Result<Path<QueuePath>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let refuse = |r: Response| body_unread(r, has_body(&headers));
    if let Err(r) = check_admin(&gw, &headers) {
        return refuse(r);
    }
    let Path(p) = match path {
        Ok(p) => p,
        Err(e) => return refuse(bad_path(e)),
    };
    if let Err(r) = known_tenant(&gw, &p.tenant) {
        return refuse(r);
    }
    let body = match axum::body::to_bytes(body, MAX_REDRIVE_BODY).await {
        Ok(b) => b,
        Err(e) if over_length_limit(&e) => {
            return refuse(json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("a redrive request is at most {MAX_REDRIVE_BODY} bytes"),
                None,
            ));
        }
        Err(e) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                &format!("reading the request body: {e}"),
                None,
            );
        }
    };
    let ids: Option<Vec<MessageId>> = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let req: RedriveRequest = match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    &format!("redrive body: expected {{\"ids\": [..]}}: {e}"),
                    None,
                );
            }
        };
        match req
            .ids
            .map(|ids| ids.iter().map(|i| i.parse::<MessageId>()).collect())
            .transpose()
        {
            Ok(ids) => ids,
            Err(e) => return queue_error(e),
        }
    };
    let store = gw.host().queue_store();
    let now = nimbus_queue::now_ms();
    match blocking(move || store.redrive(&p.tenant, &p.queue, ids.as_deref(), now)).await {
        Ok(n) => axum::Json(serde_json::json!({ "redriven": n })).into_response(),
        Err(r) => r,
    }
}

/// Standard base64 with padding (RFC 4648 §4).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), want);
        }
        assert_eq!(base64(&[0xff, 0xfe, 0x00]), "//4A");
    }
}
