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
use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, StatusCode, header};
use nimbus_core::nimbus_queue::{
    self, DeadLetter, MessageId, OutgoingMessage, QueueError, QueueStats,
};
use serde::Deserialize;

use crate::Gateway;
use crate::auth::{self, Caller, check_admin, known_tenant};
use crate::request::{
    self, ApiRequest, BodyUnread, StoreError, bad_request, blocking, declared_length, json_error,
    store_error,
};

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

impl StoreError for QueueError {
    const API: &'static str = "queue";
    const STORE: &'static str = "queue";

    fn request_status(&self) -> Option<StatusCode> {
        Some(match self {
            QueueError::InvalidName { .. }
            | QueueError::InvalidConfig(_)
            | QueueError::InvalidMessageId(_)
            | QueueError::InvalidReceipt(_) => StatusCode::BAD_REQUEST,
            QueueError::UnknownQueue { .. } => StatusCode::NOT_FOUND,
            QueueError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            QueueError::StaleReceipt(_) => StatusCode::CONFLICT,
            _ => return None,
        })
    }

    fn failed(message: String) -> Self {
        QueueError::Storage(message)
    }
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

/// The stats of a queue of a known tenant, once the caller is authorized.
async fn queue_stats(gw: &Gateway, p: QueuePath) -> Result<Response, Response> {
    let store = gw.host().queue_store();
    let now = nimbus_queue::now_ms();
    let queue = p.queue.clone();
    let s = blocking(move || store.stats(&p.tenant, &p.queue, now)).await?;
    Ok(axum::Json(stats_json(&queue, &s, now)).into_response())
}

async fn stats(ApiRequest(path, call): ApiRequest<QueuePath>) -> Result<Response, Response> {
    let p = path?;
    auth::authorize(&call.gw, Caller::Tenant, &p.tenant, &call.headers)?;
    queue_stats(&call.gw, p).await
}

async fn admin_stats(ApiRequest(path, call): ApiRequest<QueuePath>) -> Result<Response, Response> {
    check_admin(&call.gw, &call.headers)?;
    let p = path?;
    known_tenant(&call.gw, &p.tenant)?;
    queue_stats(&call.gw, p).await
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

async fn send(req: ApiRequest<QueuePath>, body: Body) -> Result<Response, Response> {
    enqueue(Caller::Tenant, req, body).await
}

/// `send` for operators: the same, with an admin key.
async fn admin_send(req: ApiRequest<QueuePath>, body: Body) -> Result<Response, Response> {
    enqueue(Caller::Admin, req, body).await
}

/// Sends the request as a message if `caller` is authorized.
async fn enqueue(
    caller: Caller,
    ApiRequest(path, call): ApiRequest<QueuePath>,
    body: Body,
) -> Result<Response, Response> {
    // Every refusal up to reading the body answers without reading it.
    let (gw, headers) = (&call.gw, &call.headers);
    let p = path.body_unread(headers)?;
    auth::authorize(gw, caller, &p.tenant, headers).body_unread(headers)?;
    let mut msg = message_headers(headers)
        .map_err(|e| bad_request(&e))
        .body_unread(headers)?;
    let store = gw.host().queue_store();
    // The limit applies to body, content type and metadata together; the
    // body alone is read up to it, the send checks the total.
    let limit = {
        let (store, tenant, queue) = (store.clone(), p.tenant.clone(), p.queue.clone());
        blocking(move || store.config(&tenant, &queue))
            .await
            .body_unread(headers)?
            .max_message_bytes
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
        .body_unread(headers)
    };
    if declared_length(headers).is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    msg.body = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b.to_vec(),
        Err(e) if over_length_limit(&e) => return Err(too_large()),
        Err(e) => {
            return Err(bad_request(&format!("reading the request body: {e}")).body_unread(headers));
        }
    };
    let now = nimbus_queue::now_ms();
    let id = blocking(move || store.send(&p.tenant, &p.queue, msg, now)).await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(serde_json::json!({ "id": id.to_string() })),
    )
        .into_response())
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
    ApiRequest(path, call): ApiRequest<QueuePath>,
    params: Result<Query<DeadLetterParams>, QueryRejection>,
) -> Result<Response, Response> {
    let gw = &call.gw;
    check_admin(gw, &call.headers)?;
    let p = path?;
    let limit = request::query(params)?
        .limit
        .unwrap_or(DEFAULT_DEAD_LETTERS);
    if !(1..=MAX_DEAD_LETTERS).contains(&limit) {
        return Err(bad_request(&format!(
            "limit must be 1 to {MAX_DEAD_LETTERS} (got {limit})"
        )));
    }
    known_tenant(gw, &p.tenant)?;
    let store = gw.host().queue_store();
    let dead = blocking(move || store.dead_letters(&p.tenant, &p.queue, limit)).await?;
    Ok(axum::Json(serde_json::json!({
        "dead_letters": dead.iter().map(dead_letter_json).collect::<Vec<_>>(),
    }))
    .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedriveRequest {
    ids: Option<Vec<String>>,
}

async fn admin_redrive(
    ApiRequest(path, call): ApiRequest<QueuePath>,
    body: Body,
) -> Result<Response, Response> {
    let (gw, headers) = (&call.gw, &call.headers);
    check_admin(gw, headers).body_unread(headers)?;
    let p = path.body_unread(headers)?;
    known_tenant(gw, &p.tenant).body_unread(headers)?;
    let body = match axum::body::to_bytes(body, MAX_REDRIVE_BODY).await {
        Ok(b) => b,
        Err(e) if over_length_limit(&e) => {
            return Err(json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("a redrive request is at most {MAX_REDRIVE_BODY} bytes"),
                None,
            )
            .body_unread(headers));
        }
        Err(e) => return Err(bad_request(&format!("reading the request body: {e}"))),
    };
    let ids: Option<Vec<MessageId>> = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let req: RedriveRequest = serde_json::from_slice(&body)
            .map_err(|e| bad_request(&format!("redrive body: expected {{\"ids\": [..]}}: {e}")))?;
        req.ids
            .map(|ids| ids.iter().map(|i| i.parse::<MessageId>()).collect())
            .transpose()
            .map_err(store_error)?
    };
    let store = gw.host().queue_store();
    let now = nimbus_queue::now_ms();
    let n = blocking(move || store.redrive(&p.tenant, &p.queue, ids.as_deref(), now)).await?;
    Ok(axum::Json(serde_json::json!({ "redriven": n })).into_response())
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
