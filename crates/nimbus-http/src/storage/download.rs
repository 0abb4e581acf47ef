//! Object downloads (`GET`, with one byte range) and `HEAD`: the object's
//! headers from the very version being read, and a body read chunk by chunk
//! only as fast as the client takes it.

use axum::body::{Body, Bytes};
use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use nimbus_core::nimbus_blob::{BlobBackend, BlobError, ObjectMeta, ObjectReader};

use super::{CHUNK, ObjectPath, authorize, etag_header};
use crate::request::{ApiRequest, blocking, json_error};

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

pub(super) async fn get_object(
    ApiRequest(path, call): ApiRequest<ObjectPath>,
) -> Result<Response, Response> {
    let p = path?;
    authorize(&call, &p.tenant)?;
    let if_range = call
        .headers
        .get(header::IF_RANGE)
        .map(|v| v.as_bytes().to_vec());
    let range_header = call
        .headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let blobs = call.gw.host().blob_store();
    let (meta, range, reader) = blocking(move || {
        open_consistent(
            blobs.as_ref(),
            (&p.tenant, &p.container, &p.key),
            range_header.as_deref(),
            if_range.as_deref(),
        )
    })
    .await?;
    let Some(reader) = reader else {
        let mut resp = json_error(
            StatusCode::RANGE_NOT_SATISFIABLE,
            &format!("the range is outside the object's {} bytes", meta.size),
            None,
        );
        if let Ok(v) = HeaderValue::from_str(&format!("bytes */{}", meta.size)) {
            resp.headers_mut().insert(header::CONTENT_RANGE, v);
        }
        return Err(resp);
    };
    let mut resp = Response::new(stream_out(reader));
    *resp.headers_mut() = object_headers(&meta, reader_len(&range, meta.size));
    if let Range::Part(a, b) = range {
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {a}-{b}/{}", meta.size)) {
            resp.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(resp)
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

pub(super) async fn head_object(
    ApiRequest(path, call): ApiRequest<ObjectPath>,
) -> Result<Response, Response> {
    let p = path?;
    authorize(&call, &p.tenant)?;
    let blobs = call.gw.host().blob_store();
    let meta =
        blocking(move || head_existing(blobs.as_ref(), &p.tenant, &p.container, &p.key)).await?;
    let mut resp = Response::new(Body::empty());
    *resp.headers_mut() = object_headers(&meta, meta.size);
    Ok(resp)
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
