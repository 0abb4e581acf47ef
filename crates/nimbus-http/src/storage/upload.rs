//! Object uploads: checked against the tenant's quota before a byte is
//! read, streamed into a spool file chunk by chunk, and committed (with
//! the object-created event of a watched container) only when complete.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::header;
use http_body_util::BodyExt;
use nimbus_core::nimbus_blob::{self, BlobError, Spool};

use super::{CHUNK, ObjectPath, authorize, etag_header};
use crate::request::{ApiRequest, BodyUnread, bad_request, blocking, declared_length, store_error};

pub(super) async fn put_object(
    ApiRequest(path, call): ApiRequest<ObjectPath>,
    body: Body,
) -> Result<Response, Response> {
    // Every refusal below answers without reading (all of) the body.
    let headers = &call.headers;
    let p = path.body_unread(headers)?;
    let limits = authorize(&call, &p.tenant).body_unread(headers)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().map(String::from))
        .transpose()
        .map_err(|_| bad_request("Content-Type: not valid text"))
        .body_unread(headers)?;
    let declared = declared_length(headers);
    let quota = limits.max_blob_bytes;
    let blobs = call.gw.host().blob_store();
    let ObjectPath {
        tenant,
        container,
        key,
    } = p;

    // Before reading a byte: the names, the container, and the room the
    // quota leaves for this object (the commit checks again, exactly).
    let (room, spool) = {
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
        .body_unread(headers)?
    };
    if let Some(n) = declared
        && !room.fits(n, quota)
    {
        discard(spool);
        return Err(store_error(room.over(&tenant, n, quota)).body_unread(headers));
    }

    let spool = stream_into(spool, body, &room, quota, &tenant)
        .await
        .body_unread(headers)?;

    let event_depth = call.gw.host().is_watched(&tenant, &container).then_some(0);
    let options = nimbus_blob::WriteOptions {
        quota: Some(quota),
        event_depth,
    };
    let meta = {
        let (container, key) = (container.clone(), key.clone());
        blocking(move || blobs.commit(spool, &container, &key, content_type, options)).await?
    };
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
    Ok(resp)
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
                return Err(bad_request(&format!("reading the request body: {e}")));
            }
        };
        let done = frame.is_none();
        if let Some(data) = frame.and_then(|f| f.into_data().ok()) {
            received += data.len() as u64;
            if !room.fits(received, quota) {
                discard(spool);
                return Err(store_error(room.over(tenant, received, quota)));
            }
            buf.extend_from_slice(&data);
        }
        if buf.len() >= CHUNK || (done && !buf.is_empty()) {
            // On failure (the object size limit) the spool is dropped, and
            // its file removed, on the blocking thread.
            (spool, buf) = blocking(move || {
                spool.write(&buf)?;
                buf.clear();
                Ok::<_, BlobError>((spool, buf))
            })
            .await?;
        }
        if done {
            return Ok(spool);
        }
    }
}

#[cfg(test)]
mod tests {
    use http::StatusCode;

    use super::*;
    use crate::request::StoreError;

    #[test]
    fn over_quota_is_insufficient_storage() {
        let room = Room {
            replaced: 10,
            others: 90,
        };
        assert!(room.fits(10, 50), "a write that does not grow always fits");
        assert!(room.fits(10, 100));
        assert!(!room.fits(11, 100));
        assert_eq!(
            room.over("acme", 11, 100).request_status(),
            Some(StatusCode::INSUFFICIENT_STORAGE)
        );
    }
}
