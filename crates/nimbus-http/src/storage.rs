//! The storage API: S3-like object storage over the host's blob store
//! ([`Host::blob_store`]), the same objects functions reach through
//! `wasi:blobstore`.
//!
//! Every request needs `Authorization: Bearer <tenant API key>` of the
//! tenant in the path (the key check of invocations): a missing or wrong
//! key is a 401 and nothing is read or written. Requests are not
//! invocations and are not billed as such; each authorized one counts in
//! `nimbus_storage_requests_total{tenant,method}`.
//!
//! | request | answer |
//! |---|---|
//! | `PUT /storage/v1/{tenant}/{container}` (no body) | creates the container: 201, or 200 if it exists |
//! | `GET /storage/v1/{tenant}/{container}?prefix=&after=&limit=` | 200 `{"objects": [{key, size, etag, content_type, created_at_ms}], "next_after": key or null}`: names in byte order, at most `limit` (default and cap 1000); pass `next_after` as `after` for the next page, `null` when there is none |
//! | `PUT /storage/v1/{tenant}/{container}/{key…}` | stores the body as the object (replacing any), with the request's `Content-Type`: 200 `{container, key, size, etag, content_type}` and an `ETag` header |
//! | `GET …/{key…}` | the object, streamed, with `Content-Type`, `Content-Length`, `ETag`; `Range: bytes=a-b`, `a-` or `-n` (one range) → 206 with `Content-Range`, unsatisfiable → 416 |
//! | `HEAD …/{key…}` | the same headers, no body |
//! | `DELETE …/{key…}` | 204, also if there was no such object (as S3) |
//!
//! Keys are the percent-decoded rest of the path and may contain `/`
//! (`a%20b/c%2Fd` is the key `a b/c/d`). Object bodies are streamed both
//! ways: an upload is written to the store in chunks as it arrives, a
//! download is read in chunks as the client takes them.
//!
//! Errors are JSON `{"error": …}`: 400 a bad container or object name
//! (naming the rule); 404 an unknown tenant, container (`container `x` does
//! not exist`) or object; 413 an object over the store's object size limit
//! (256 MiB by default); **507 Insufficient Storage** when the write would
//! take the tenant over its `max_blob_bytes` quota (the message names the
//! quota) — a different status from 413 because the request is not too
//! large in itself: deleting objects makes it fit. A refused upload stores
//! nothing. When the container is watched ([`Host::is_watched`]), a write
//! persists its object-created event with the object (depth 0).
//!
//! [`Host::blob_store`]: nimbus_core::Host::blob_store
//! [`Host::is_watched`]: nimbus_core::Host::is_watched

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use http_body_util::BodyExt;
use nimbus_core::Host;
use nimbus_core::nimbus_blob::{self, BlobBackend, BlobError, ObjectMeta, ObjectReader, Spool};
use nimbus_core::prometheus::{IntCounterVec, Opts};
use serde::Deserialize;

use crate::{Gateway, body_unread, check_tenant_key, has_body, json_error};

/// Bytes moved per blocking read or write of an object body.
const CHUNK: usize = 256 << 10;

pub(crate) fn routes() -> Router<Gateway> {
    Router::new()
        .route(
            "/storage/v1/{tenant}/{container}",
            put(create_container).get(list_objects),
        )
        .route(
            "/storage/v1/{tenant}/{container}/{*key}",
            put(put_object)
                .get(get_object)
                .head(head_object)
                .delete(delete_object),
        )
}

/// `nimbus_storage_requests_total`, registered in the host's registry. A
/// second gateway over the same host cannot register it again: its
/// requests are then not counted (logged once, at its build).
pub(crate) fn requests_counter(host: &Host) -> IntCounterVec {
    let counter = IntCounterVec::new(
        Opts::new(
            "nimbus_storage_requests_total",
            "Authorized storage API requests, by tenant and HTTP method.",
        ),
        &["tenant", "method"],
    )
    .expect("a valid metric definition");
    if let Err(e) = host.registry().register(Box::new(counter.clone())) {
        tracing::warn!(error = %e, "nimbus_storage_requests_total not registered: another gateway over this host counts storage requests");
    }
    counter
}

/// The path's parts, percent-decoded.
#[derive(Debug, Deserialize)]
struct ContainerPath {
    tenant: String,
    container: String,
}

#[derive(Debug, Deserialize)]
struct ObjectPath {
    tenant: String,
    container: String,
    key: String,
}

fn bad_path(e: PathRejection) -> Response {
    json_error(StatusCode::BAD_REQUEST, &e.body_text(), None)
}

/// The key check, then the tenant must be registered with the host (its
/// limits hold the storage quota). Counts the request once authorized.
#[allow(clippy::result_large_err)]
fn authorize(
    gw: &Gateway,
    tenant: &str,
    method: &Method,
    headers: &HeaderMap,
) -> Result<nimbus_core::Limits, Response> {
    check_tenant_key(gw, tenant, headers)?;
    let limits = gw
        .host()
        .tenant_limits(tenant)
        .map_err(|e| json_error(StatusCode::NOT_FOUND, &e.to_string(), None))?;
    gw.inner
        .storage_requests
        .with_label_values(&[tenant, method.as_str()])
        .inc();
    Ok(limits)
}

/// The status of a store error; the message is the store's, except for
/// storage failures (logged, not shown: they may name files).
fn blob_error(e: BlobError) -> Response {
    let status = match &e {
        BlobError::Invalid(_) => StatusCode::BAD_REQUEST,
        BlobError::NoSuchContainer(_) | BlobError::NoSuchObject { .. } => StatusCode::NOT_FOUND,
        BlobError::ContainerExists(_) => StatusCode::CONFLICT,
        BlobError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        BlobError::QuotaExceeded { .. } => StatusCode::INSUFFICIENT_STORAGE,
        _ => {
            tracing::error!(error = %e, "storage API: blob store failed");
            return json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal storage error",
                None,
            );
        }
    };
    json_error(status, &e.to_string(), None)
}

/// Runs a blob store call off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BlobError> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(blob_error),
        Err(e) => Err(blob_error(BlobError::Storage(format!(
            "blocking task failed: {e}"
        )))),
    }
}

fn no_such_object(container: &str, key: &str) -> BlobError {
    BlobError::NoSuchObject {
        container: container.into(),
        object: key.into(),
    }
}

/// `head`, telling a missing container from a missing object.
fn head_existing(
    blobs: &dyn BlobBackend,
    tenant: &str,
    container: &str,
    key: &str,
) -> Result<ObjectMeta, BlobError> {
    match blobs.head(tenant, container, key)? {
        Some(meta) => Ok(meta),
        None if blobs.container(tenant, container)?.is_none() => {
            Err(BlobError::NoSuchContainer(container.into()))
        }
        None => Err(no_such_object(container, key)),
    }
}

fn etag_header(etag: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!("\"{etag}\"")).ok()
}

fn object_json(m: &ObjectMeta) -> serde_json::Value {
    serde_json::json!({
        "key": m.name,
        "size": m.size,
        "etag": m.etag,
        "content_type": m.content_type,
        "created_at_ms": m.created_at_ms,
    })
}

async fn create_container(
    State(gw): State<Gateway>,
    path: Result<Path<ContainerPath>, PathRejection>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let Path(p) = match path {
        Ok(p) => p,
        Err(e) => return bad_path(e),
    };
    if let Err(r) = authorize(&gw, &p.tenant, &method, &headers) {
        return body_unread(r, has_body(&headers));
    }
    let blobs = gw.host().blob_store();
    let (tenant, container) = (p.tenant, p.container);
    let created = blocking(move || match blobs.create_container(&tenant, &container) {
        Ok(meta) => Ok((StatusCode::CREATED, meta)),
        Err(BlobError::ContainerExists(_)) => blobs
            .container(&tenant, &container)?
            .map(|meta| (StatusCode::OK, meta))
            .ok_or(BlobError::NoSuchContainer(container)),
        Err(e) => Err(e),
    })
    .await;
    let resp = match created {
        Ok((status, meta)) => (
            status,
            axum::Json(serde_json::json!({
                "container": meta.name,
                "created_at_ms": meta.created_at_ms,
            })),
        )
            .into_response(),
        Err(r) => r,
    };
    // A body on a container PUT means nothing; it is not read.
    body_unread(resp, has_body(&headers))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    #[serde(default)]
    prefix: String,
    after: Option<String>,
    limit: Option<usize>,
}

async fn list_objects(
    State(gw): State<Gateway>,
    path: Result<Path<ContainerPath>, PathRejection>,
    params: Result<Query<ListParams>, QueryRejection>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let Path(p) = match path {
        Ok(p) => p,
        Err(e) => return bad_path(e),
    };
    if let Err(r) = authorize(&gw, &p.tenant, &method, &headers) {
        return r;
    }
    let Query(q) = match params {
        Ok(q) => q,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &e.body_text(), None),
    };
    let limit = q.limit.unwrap_or(nimbus_blob::MAX_LIST_PAGE);
    if !(1..=nimbus_blob::MAX_LIST_PAGE).contains(&limit) {
        return json_error(
            StatusCode::BAD_REQUEST,
            &format!(
                "limit must be 1 to {} (got {limit})",
                nimbus_blob::MAX_LIST_PAGE
            ),
            None,
        );
    }
    let blobs = gw.host().blob_store();
    let (tenant, container) = (p.tenant, p.container);
    let listed = blocking(move || {
        let page = blobs.list(&tenant, &container, &q.prefix, q.after.as_deref(), limit)?;
        // A full page: say where to go on only if something is there.
        let next_after = match page.last() {
            Some(last) if page.len() == limit => {
                let more = blobs.list(&tenant, &container, &q.prefix, Some(&last.name), 1)?;
                (!more.is_empty()).then(|| last.name.clone())
            }
            _ => None,
        };
        Ok((page, next_after))
    })
    .await;
    match listed {
        Ok((page, next_after)) => axum::Json(serde_json::json!({
            "objects": page.iter().map(object_json).collect::<Vec<_>>(),
            "next_after": next_after,
        }))
        .into_response(),
        Err(r) => r,
    }
}

async fn put_object(
    State(gw): State<Gateway>,
    path: Result<Path<ObjectPath>, PathRejection>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // Every refusal below answers without reading (all of) the body.
    let unread = has_body(&headers);
    let refuse = |r: Response| body_unread(r, unread);
    let Path(p) = match path {
        Ok(p) => p,
        Err(e) => return refuse(bad_path(e)),
    };
    let limits = match authorize(&gw, &p.tenant, &method, &headers) {
        Ok(l) => l,
        Err(r) => return refuse(r),
    };
    let content_type = match headers.get(header::CONTENT_TYPE).map(|v| v.to_str()) {
        None => None,
        Some(Ok(ct)) => Some(ct.to_string()),
        Some(Err(_)) => {
            return refuse(json_error(
                StatusCode::BAD_REQUEST,
                "Content-Type: not valid text",
                None,
            ));
        }
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let quota = limits.max_blob_bytes;
    let blobs = gw.host().blob_store();
    let ObjectPath {
        tenant,
        container,
        key,
    } = p;

    // Before reading a byte: the names, the container, and the room the
    // quota leaves for this object (the commit checks again, exactly).
    let preflight = {
        let (blobs, tenant, container, key) = (
            blobs.clone(),
            tenant.clone(),
            container.clone(),
            key.clone(),
        );
        blocking(move || {
            nimbus_blob::check_object_name(&key)?;
            if blobs.container(&tenant, &container)?.is_none() {
                return Err(BlobError::NoSuchContainer(container));
            }
            let replaced = blobs.head(&tenant, &container, &key)?.map_or(0, |m| m.size);
            let others = blobs.stored_bytes(&tenant)?.saturating_sub(replaced);
            let spool = blobs.spool(&tenant)?;
            Ok((Room { replaced, others }, spool))
        })
        .await
    };
    let (room, spool) = match preflight {
        Ok(r) => r,
        Err(r) => return refuse(r),
    };
    if let Some(n) = declared
        && !room.fits(n, quota)
    {
        discard(spool);
        return refuse(blob_error(room.over(&tenant, n, quota)));
    }

    let spool = match stream_into(spool, body, &room, quota, &tenant).await {
        Ok(s) => s,
        Err(r) => return refuse(r),
    };

    let event_depth = gw.host().is_watched(&tenant, &container).then_some(0);
    let options = nimbus_blob::WriteOptions {
        quota: Some(quota),
        event_depth,
    };
    let committed = {
        let (container, key) = (container.clone(), key.clone());
        blocking(move || blobs.commit(spool, &container, &key, content_type, options)).await
    };
    match committed {
        Ok(meta) => {
            let mut resp = axum::Json(serde_json::json!({
                "container": meta.container,
                "key": meta.name,
                "size": meta.size,
                "etag": meta.etag,
                "content_type": meta.content_type,
            }))
            .into_response();
            if let Some(etag) = etag_header(&meta.etag) {
                resp.headers_mut().insert(header::ETAG, etag);
            }
            resp
        }
        Err(r) => r,
    }
}

/// What the tenant stores besides the object being written, and the size
/// of the version it replaces.
struct Room {
    replaced: u64,
    others: u64,
}

impl Room {
    /// The store's rule: a write that does not grow the object always
    /// fits; otherwise the total must stay within the quota.
    fn fits(&self, size: u64, quota: u64) -> bool {
        size <= self.replaced || self.others.saturating_add(size) <= quota
    }

    fn over(&self, tenant: &str, size: u64, quota: u64) -> BlobError {
        BlobError::QuotaExceeded {
            tenant: tenant.into(),
            would: self.others.saturating_add(size),
            quota,
        }
    }
}

/// Removes an uncommitted spool's file, off the async runtime.
fn discard(spool: Spool) {
    tokio::task::spawn_blocking(move || drop(spool));
}

/// Writes the request body into `spool` in chunks of about [`CHUNK`]
/// bytes, each on a blocking thread; stops at the object size limit or as
/// soon as the quota is certainly exceeded.
async fn stream_into(
    mut spool: Spool,
    mut body: Body,
    room: &Room,
    quota: u64,
    tenant: &str,
) -> Result<Spool, Response> {
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK);
    let mut received: u64 = 0;
    loop {
        let frame = match body.frame().await {
            None => None,
            Some(Ok(frame)) => Some(frame),
            Some(Err(e)) => {
                discard(spool);
                return Err(json_error(
                    StatusCode::BAD_REQUEST,
                    &format!("reading the request body: {e}"),
                    None,
                ));
            }
        };
        let done = frame.is_none();
        if let Some(data) = frame.and_then(|f| f.into_data().ok()) {
            received += data.len() as u64;
            if !room.fits(received, quota) {
                discard(spool);
                return Err(blob_error(room.over(tenant, received, quota)));
            }
            buf.extend_from_slice(&data);
        }
        if buf.len() >= CHUNK || (done && !buf.is_empty()) {
            // On failure (the object size limit) the spool is dropped, and
            // its file removed, on the blocking thread.
            (spool, buf) = blocking(move || {
                spool.write(&buf)?;
                buf.clear();
                Ok((spool, buf))
            })
            .await?;
        }
        if done {
            return Ok(spool);
        }
    }
}

/// The bytes of the object a GET serves.
enum Range {
    Full,
    /// First and last byte, inclusive.
    Part(u64, u64),
    Unsatisfiable,
}

/// One `bytes=` range of a `Range` header against an object of `size`
/// bytes. Anything else — other units, several ranges, bad syntax — is
/// ignored (the whole object is served), as RFC 9110 allows.
fn parse_range(value: &str, size: u64) -> Range {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Range::Full;
    };
    if spec.contains(',') {
        return Range::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Range::Full;
    };
    let num = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (first.trim().is_empty(), num(first), num(last)) {
        // `-n`: the last n bytes.
        (true, _, Some(n)) => {
            if n == 0 || size == 0 {
                Range::Unsatisfiable
            } else {
                Range::Part(size.saturating_sub(n), size - 1)
            }
        }
        // `a-` or `a-b`.
        (false, Some(a), b) if last.trim().is_empty() || b.is_some() => {
            if b.is_some_and(|b| b < a) {
                Range::Full
            } else if a >= size {
                Range::Unsatisfiable
            } else {
                Range::Part(a, b.map_or(size - 1, |b| b.min(size - 1)))
            }
        }
        _ => Range::Full,
    }
}

/// The object's headers (status 200 or 206 set by the caller).
fn object_headers(meta: &ObjectMeta, length: u64) -> HeaderMap {
    let mut h = HeaderMap::new();
    let ct = meta
        .content_type
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_TYPE, ct);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(etag) = etag_header(&meta.etag) {
        h.insert(header::ETAG, etag);
    }
    h
}

/// Opens the range of the object and returns it with the metadata of the
/// very version opened: heads before and after the open must agree (every
/// write changes the etag), else the object changed meanwhile and it tries
/// again.
fn open_consistent(
    blobs: &dyn BlobBackend,
    (tenant, container, key): (&str, &str, &str),
    range_header: Option<&str>,
    if_range: Option<&[u8]>,
) -> Result<(ObjectMeta, Range, Option<ObjectReader>), BlobError> {
    for _ in 0..3 {
        let meta = head_existing(blobs, tenant, container, key)?;
        // `If-Range` naming another version: the whole (new) object.
        let current = if_range.is_none_or(|v| v == format!("\"{}\"", meta.etag).as_bytes());
        let range = match range_header {
            Some(r) if current => parse_range(r, meta.size),
            _ => Range::Full,
        };
        let (start, end) = match range {
            Range::Unsatisfiable => return Ok((meta, range, None)),
            Range::Full => (0, u64::MAX),
            Range::Part(a, b) => (a, b),
        };
        let reader = blobs.open(tenant, container, key, start, end)?;
        let again = blobs.head(tenant, container, key)?;
        if again.is_some_and(|m| m.etag == meta.etag) {
            return Ok((meta, range, Some(reader)));
        }
    }
    Err(BlobError::Storage(format!(
        "object `{key}` kept changing while being opened"
    )))
}

async fn get_object(
    State(gw): State<Gateway>,
    path: Result<Path<ObjectPath>, PathRejection>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let Path(p) = match path {
        Ok(p) => p,
        Err(e) => return bad_path(e),
    };
    if let Err(r) = authorize(&gw, &p.tenant, &method, &headers) {
        return r;
    }
    let if_range = headers.get(header::IF_RANGE).map(|v| v.as_bytes().to_vec());
    let range_header = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let blobs = gw.host().blob_store();
    let opened = blocking(move || {
        open_consistent(
            blobs.as_ref(),
            (&p.tenant, &p.container, &p.key),
            range_header.as_deref(),
            if_range.as_deref(),
        )
    })
    .await;
    let (meta, range, reader) = match opened {
        Ok(o) => o,
        Err(r) => return r,
    };
    let Some(reader) = reader else {
        let mut resp = json_error(
            StatusCode::RANGE_NOT_SATISFIABLE,
            &format!("the range is outside the object's {} bytes", meta.size),
            None,
        );
        if let Ok(v) = HeaderValue::from_str(&format!("bytes */{}", meta.size)) {
            resp.headers_mut().insert(header::CONTENT_RANGE, v);
        }
        return resp;
    };
    let mut resp = Response::new(stream_out(reader));
    *resp.headers_mut() = object_headers(&meta, reader_len(&range, meta.size));
    if let Range::Part(a, b) = range {
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {a}-{b}/{}", meta.size)) {
            resp.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    resp
}

fn reader_len(range: &Range, size: u64) -> u64 {
    match range {
        Range::Part(a, b) => b - a + 1,
        _ => size,
    }
}

/// A response body fed by reads of about [`CHUNK`] bytes, each on a
/// blocking thread, only as fast as the client takes them. A read error
/// aborts the body (the client sees a cut-off response, never wrong bytes).
fn stream_out(reader: ObjectReader) -> Body {
    let (mut tx, body) = http_body_util::channel::Channel::<Bytes, std::io::Error>::new(1);
    tokio::spawn(async move {
        let mut reader = Some(reader);
        while let Some(mut r) = reader.take() {
            let read = tokio::task::spawn_blocking(move || r.read(CHUNK).map(|c| (r, c))).await;
            match read {
                Ok(Ok((_, chunk))) if chunk.is_empty() => break,
                Ok(Ok((r, chunk))) => {
                    if tx.send_data(Bytes::from(chunk)).await.is_err() {
                        break; // The client went away.
                    }
                    reader = Some(r);
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "storage API: reading an object failed");
                    tx.abort(std::io::Error::other(e.to_string()));
                    break;
                }
                Err(e) => {
                    tx.abort(std::io::Error::other(e.to_string()));
                    break;
                }
            }
        }
    });
    Body::new(body)
}

async fn head_object(
    State(gw): State<Gateway>,
    path: Result<Path<ObjectPath>, PathRejection>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let Path(p) = match path {
        Ok(p) => p,
        Err(e) => return bad_path(e),
    };
    if let Err(r) = authorize(&gw, &p.tenant, &method, &headers) {
        return r;
    }
    let blobs = gw.host().blob_store();
    match blocking(move || head_existing(blobs.as_ref(), &p.tenant, &p.container, &p.key)).await {
        Ok(meta) => {
            let mut resp = Response::new(Body::empty());
            *resp.headers_mut() = object_headers(&meta, meta.size);
            resp
        }
        Err(r) => r,
    }
}

async fn delete_object(
    State(gw): State<Gateway>,
    path: Result<Path<ObjectPath>, PathRejection>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let Path(p) = match path {
        Ok(p) => p,
        Err(e) => return bad_path(e),
    };
    if let Err(r) = authorize(&gw, &p.tenant, &method, &headers) {
        return body_unread(r, has_body(&headers));
    }
    let blobs = gw.host().blob_store();
    let resp = match blocking(move || blobs.delete(&p.tenant, &p.container, &p.key)).await {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(r) => r,
    };
    body_unread(resp, has_body(&headers))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(r: Range) -> Option<(u64, u64)> {
        match r {
            Range::Part(a, b) => Some((a, b)),
            Range::Full => None,
            Range::Unsatisfiable => Some((u64::MAX, u64::MAX)),
        }
    }

    #[test]
    fn ranges() {
        const NO: Option<(u64, u64)> = Some((u64::MAX, u64::MAX));
        assert_eq!(part(parse_range("bytes=2-5", 10)), Some((2, 5)));
        assert_eq!(part(parse_range("bytes=2-50", 10)), Some((2, 9)));
        assert_eq!(part(parse_range("bytes=7-", 10)), Some((7, 9)));
        assert_eq!(part(parse_range("bytes=-3", 10)), Some((7, 9)));
        assert_eq!(part(parse_range("bytes=-30", 10)), Some((0, 9)));
        assert_eq!(part(parse_range("bytes=10-", 10)), NO);
        assert_eq!(part(parse_range("bytes=-0", 10)), NO);
        assert_eq!(part(parse_range("bytes=0-", 0)), NO);
        for ignored in [
            "bytes=5-2",
            "bytes=1-2,4-5",
            "items=1-2",
            "bytes=x-1",
            "bytes=-",
        ] {
            assert_eq!(part(parse_range(ignored, 10)), None, "{ignored}");
        }
    }
}
