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
//! ways: an upload is written to the store in chunks as it arrives
//! (`upload`), a download is read in chunks as the client takes them
//! (`download`).
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
use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use http::{HeaderValue, StatusCode};
use nimbus_core::nimbus_blob::{self, BlobError, ObjectMeta};
use serde::Deserialize;

use crate::Gateway;
use crate::auth::{self, Caller};
use crate::request::{self, ApiRequest, BodyUnread, Call, StoreError, bad_request, blocking};

mod download;
mod upload;

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
            put(upload::put_object)
                .get(download::get_object)
                .head(download::head_object)
                .delete(delete_object),
        )
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

/// The tenant's key check and that the tenant exists (its limits hold the
/// storage quota). Counts the request once authorized.
fn authorize(call: &Call, tenant: &str) -> Result<nimbus_core::Limits, Response> {
    let limits = auth::authorize(&call.gw, Caller::Tenant, tenant, &call.headers)?;
    call.gw
        .inner
        .storage_requests
        .with_label_values(&[tenant, call.method.as_str()])
        .inc();
    Ok(limits)
}

impl StoreError for BlobError {
    const API: &'static str = "storage";
    const STORE: &'static str = "blob";

    fn request_status(&self) -> Option<StatusCode> {
        Some(match self {
            BlobError::Invalid(_) => StatusCode::BAD_REQUEST,
            BlobError::NoSuchContainer(_) | BlobError::NoSuchObject { .. } => StatusCode::NOT_FOUND,
            BlobError::ContainerExists(_) => StatusCode::CONFLICT,
            BlobError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BlobError::QuotaExceeded { .. } => StatusCode::INSUFFICIENT_STORAGE,
            _ => return None,
        })
    }

    fn failed(message: String) -> Self {
        BlobError::Storage(message)
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
    ApiRequest(path, call): ApiRequest<ContainerPath>,
) -> Result<Response, Response> {
    let p = path?;
    // A body on a container PUT means nothing; it is not read.
    authorize(&call, &p.tenant).body_unread(&call.headers)?;
    let blobs = call.gw.host().blob_store();
    let (tenant, container) = (p.tenant, p.container);
    let (status, meta) = blocking(move || match blobs.create_container(&tenant, &container) {
        Ok(meta) => Ok((StatusCode::CREATED, meta)),
        Err(BlobError::ContainerExists(_)) => blobs
            .container(&tenant, &container)?
            .map(|meta| (StatusCode::OK, meta))
            .ok_or(BlobError::NoSuchContainer(container)),
        Err(e) => Err(e),
    })
    .await
    .body_unread(&call.headers)?;
    let body = serde_json::json!({
        "container": meta.name,
        "created_at_ms": meta.created_at_ms,
    });
    Ok((status, axum::Json(body))
        .into_response()
        .body_unread(&call.headers))
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
    ApiRequest(path, call): ApiRequest<ContainerPath>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, Response> {
    let p = path?;
    authorize(&call, &p.tenant)?;
    let q = request::query(params)?;
    let limit = q.limit.unwrap_or(nimbus_blob::MAX_LIST_PAGE);
    if !(1..=nimbus_blob::MAX_LIST_PAGE).contains(&limit) {
        return Err(bad_request(&format!(
            "limit must be 1 to {} (got {limit})",
            nimbus_blob::MAX_LIST_PAGE
        )));
    }
    let blobs = call.gw.host().blob_store();
    let (tenant, container) = (p.tenant, p.container);
    let (page, next_after) = blocking(move || {
        let page = blobs.list(&tenant, &container, &q.prefix, q.after.as_deref(), limit)?;
        // A full page: say where to go on only if something is there.
        let next_after = match page.last() {
            Some(last) if page.len() == limit => {
                let more = blobs.list(&tenant, &container, &q.prefix, Some(&last.name), 1)?;
                (!more.is_empty()).then(|| last.name.clone())
            }
            _ => None,
        };
        Ok::<_, BlobError>((page, next_after))
    })
    .await?;
    Ok(axum::Json(serde_json::json!({
        "objects": page.iter().map(object_json).collect::<Vec<_>>(),
        "next_after": next_after,
    }))
    .into_response())
}

async fn delete_object(
    ApiRequest(path, call): ApiRequest<ObjectPath>,
) -> Result<Response, Response> {
    let p = path?;
    authorize(&call, &p.tenant).body_unread(&call.headers)?;
    let blobs = call.gw.host().blob_store();
    blocking(move || blobs.delete(&p.tenant, &p.container, &p.key))
        .await
        .body_unread(&call.headers)?;
    Ok(StatusCode::NO_CONTENT
        .into_response()
        .body_unread(&call.headers))
}
