//! What every API handler does with a request besides its own work: take
//! its path and query apart, answer a refusal as JSON, and run store calls
//! off the async runtime. Handlers return `Result<Response, Response>` so a
//! refusal at any step is one `?`; the key checks are [`crate::auth`]'s.

use std::convert::Infallible;
use std::fmt::Display;

use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Path, Query};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde::de::DeserializeOwned;

use crate::{Gateway, INVOCATION_ID_HEADER};

/// The JSON error body every API answers with; `invocation` names the
/// invocation an error belongs to, in the body and in a header.
pub(crate) fn json_error(status: StatusCode, message: &str, invocation: Option<&str>) -> Response {
    let mut body = serde_json::json!({ "error": message });
    if let Some(id) = invocation {
        body["invocation_id"] = id.into();
    }
    let mut resp = (status, axum::Json(body)).into_response();
    if let Some(id) = invocation.and_then(|i| HeaderValue::from_str(i).ok()) {
        resp.headers_mut().insert(INVOCATION_ID_HEADER, id);
    }
    resp
}

pub(crate) fn bad_request(message: &str) -> Response {
    json_error(StatusCode::BAD_REQUEST, message, None)
}

pub(crate) fn not_found(message: &str) -> Response {
    json_error(StatusCode::NOT_FOUND, message, None)
}

/// What a storage or queue API handler takes from a request besides its
/// query and body: the path's parameters, percent-decoded, or the JSON 400
/// of a bad path — left for the handler to unwrap, so that each decides
/// what it checks first and which refusals leave a body unread — and the
/// rest of the request's head.
pub(crate) struct ApiRequest<P>(pub(crate) Result<P, Response>, pub(crate) Call);

/// A request's head, as the key checks and refusals need it.
pub(crate) struct Call {
    pub(crate) gw: Gateway,
    pub(crate) method: Method,
    pub(crate) headers: HeaderMap,
}

impl<P: DeserializeOwned + Send> FromRequestParts<Gateway> for ApiRequest<P> {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, gw: &Gateway) -> Result<Self, Infallible> {
        let path = Path::<P>::from_request_parts(parts, gw)
            .await
            .map(|Path(p)| p)
            .map_err(|e| bad_request(&e.body_text()));
        let call = Call {
            gw: gw.clone(),
            method: parts.method.clone(),
            headers: parts.headers.clone(),
        };
        Ok(Self(path, call))
    }
}

/// The query's parameters, or the JSON 400 of a bad query.
pub(crate) fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, Response> {
    query
        .map(|Query(q)| q)
        .map_err(|e| bad_request(&e.body_text()))
}

/// The `Content-Length` a request declares, if it is a number.
pub(crate) fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Whether a request declares a body (a length above 0, or chunked).
pub(crate) fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}

/// A response sent without reading (all of) the request's body: hyper then
/// closes the connection, so say `Connection: close`, or a keep-alive client
/// puts it back in its pool and its next request fails.
pub(crate) fn body_unread(mut resp: Response, unread: bool) -> Response {
    if unread {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// [`body_unread`] for the request with these headers, on a response or on
/// the refusal of a `Result`: refusals that leave the body unread are then
/// `step().body_unread(&headers)?`.
pub(crate) trait BodyUnread {
    #[must_use]
    fn body_unread(self, headers: &HeaderMap) -> Self;
}

impl BodyUnread for Response {
    fn body_unread(self, headers: &HeaderMap) -> Self {
        body_unread(self, has_body(headers))
    }
}

impl<T> BodyUnread for Result<T, Response> {
    fn body_unread(self, headers: &HeaderMap) -> Self {
        self.map_err(|r| r.body_unread(headers))
    }
}

/// An error of a store behind an API (blob store, queue store).
pub(crate) trait StoreError: Display + Send + 'static {
    /// The API in logs and in the message of an internal error
    /// (`internal storage error`).
    const API: &'static str;
    /// The store in logs (`storage API: blob store failed`).
    const STORE: &'static str;

    /// The status of an error the request caused, shown with the store's
    /// message; `None` for a failure of the store itself.
    fn request_status(&self) -> Option<StatusCode>;

    /// The store failing on its own, from a message.
    fn failed(message: String) -> Self;
}

/// A store error as a response. A store's own failures are logged, not
/// shown: their messages may name files.
pub(crate) fn store_error<E: StoreError>(e: E) -> Response {
    match e.request_status() {
        Some(status) => json_error(status, &e.to_string(), None),
        None => {
            tracing::error!(error = %e, "{} API: {} store failed", E::API, E::STORE);
            json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("internal {} error", E::API),
                None,
            )
        }
    }
}

/// Runs a store call off the async runtime: stores block on disk.
pub(crate) async fn blocking<T: Send + 'static, E: StoreError>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(store_error),
        Err(e) => Err(store_error(E::failed(format!("blocking task failed: {e}")))),
    }
}
