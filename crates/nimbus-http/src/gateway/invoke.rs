//! Invoking functions over HTTP: which function a request goes to (the
//! configured routes, then `/{tenant}/{function}/…`), the key check unless
//! it is public, the body and rate limits, and the invocation through the
//! host core, whose errors map to statuses here.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use governor::clock::{Clock, DefaultClock};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use nimbus_core::{Error, Event, Selector, UsageRecord};

use crate::auth::check_invoke_key;
use crate::gateway::Gateway;
use crate::request::{bad_request, body_unread, declared_length, has_body, json_error, not_found};
use crate::{INVOCATION_ID_HEADER, OUTCOME_HEADER, VERSION_HEADER};

/// Where a request goes.
struct Target {
    tenant: String,
    function: String,
    public: bool,
}

fn request_host(headers: &HeaderMap, uri: &http::Uri) -> Option<String> {
    let raw = uri
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| headers.get(header::HOST)?.to_str().ok().map(String::from))?;
    // Match on the name only: `api.example.com:8080` routes like `api.example.com`.
    Some(
        raw.rsplit_once(':')
            .map_or(raw.clone(), |(h, _)| h.to_string()),
    )
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty()
        || path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

fn resolve(gw: &Gateway, req: &Request) -> Option<Target> {
    let path = req.uri().path();
    let host = request_host(req.headers(), req.uri());
    let routes = gw.current_routes();
    for r in routes.iter() {
        let host_ok = match (&r.host, &host) {
            (None, _) => true,
            (Some(want), Some(got)) => want.eq_ignore_ascii_case(got),
            (Some(_), None) => false,
        };
        if host_ok && prefix_matches(&r.path_prefix, path) {
            return Some(Target {
                tenant: r.tenant.clone(),
                function: r.function.clone(),
                public: r.public,
            });
        }
    }
    let mut segments = path.trim_start_matches('/').splitn(3, '/');
    let tenant = segments.next().filter(|s| !s.is_empty())?;
    let function = segments.next().filter(|s| !s.is_empty())?;
    Some(Target {
        tenant: tenant.to_string(),
        function: function.to_string(),
        public: false,
    })
}

/// The gateway's fallback: every request no API route claims.
pub(crate) async fn invoke(State(gw): State<Gateway>, req: Request) -> Result<Response, Response> {
    // Refusals below answer without reading the body.
    let unread = has_body(req.headers());
    let refuse = |r: Response| body_unread(r, unread);
    let target =
        resolve(&gw, &req).ok_or_else(|| refuse(not_found("no route matches this request")))?;
    let (name, selector) =
        Selector::parse(&target.function).map_err(|e| refuse(not_found(&e.to_string())))?;
    let function = match gw
        .host()
        .function_ready(&target.tenant, name, &selector, LOAD_WAIT)
        .await
    {
        Ok(f) => f,
        Err(e @ (Error::Loading(_) | Error::Unavailable(_))) => {
            let mut resp = json_error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string(), None);
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_LOADING_SECS));
            return Err(refuse(resp));
        }
        Err(e @ Error::NotFound(_)) if !matches!(selector, Selector::Live) => {
            return Err(refuse(not_found(&e.to_string())));
        }
        Err(_) => return Err(refuse(not_found("no such function"))),
    };
    let public = target.public || gw.is_public(&target.tenant, name);
    if !public {
        check_invoke_key(&gw, &target.tenant, req.headers()).map_err(refuse)?;
    }
    let gate = gw.tenant_gate(&target.tenant);
    let recorded = gw.recorded_limiter(&target.tenant);

    let max = gw.inner.max_body_bytes;
    let declared = declared_length(req.headers());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(refuse(too_large(max)));
    }

    // A rate limit recorded through the admin API wins over the builder's.
    let limiter = recorded
        .as_ref()
        .map(|r| &r.limiter)
        .or_else(|| gate.as_ref().and_then(|g| g.limiter.as_ref()));
    if let Some(limiter) = limiter
        && let Err(not_until) = limiter.check()
    {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        let reason = format!("tenant `{}` is over its rate limit", target.tenant);
        let err = function.throttle(
            reason,
            declared.unwrap_or(0),
            nimbus_core::Cause::new(nimbus_core::Trigger::Http),
        );
        return Err(refuse(failure(err, Some(wait), function.version())));
    }

    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, max).await.map_err(|e| {
        refuse(if crate::server::is_body_read_timeout(&e) {
            json_error(StatusCode::REQUEST_TIMEOUT, &e.to_string(), None)
        } else {
            too_large(max)
        })
    })?;

    if function.is_http() {
        let authority =
            request_host(&parts.headers, &parts.uri).unwrap_or_else(|| "localhost".into());
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let uri = http::Uri::builder()
            .scheme("http")
            .authority(authority.as_str())
            .path_and_query(path)
            .build()
            .map_err(|e| bad_request(&format!("bad request URI: {e}")))?;
        let mut request = http::Request::new(body);
        *request.method_mut() = parts.method;
        *request.uri_mut() = uri;
        *request.headers_mut() = parts.headers;
        if !public {
            // The key authenticated the caller to the gateway; the function
            // has no use for it, and should not be able to log or leak it.
            request.headers_mut().remove(header::AUTHORIZATION);
        }
        let done = function
            .invoke_http(request)
            .await
            .map_err(|e| failure(e, None, function.version()))?;
        let (mut head, body) = done.response.into_parts();
        stamp(&mut head.headers, &done.usage);
        Ok(Response::from_parts(head, Body::from(body)))
    } else {
        // Event functions are invocable over HTTP too: the body becomes the
        // event's data.
        let mut event = Event::new(
            "nimbus.http.request",
            format!("/{}/{}", target.tenant, name),
            body.to_vec(),
        )
        .subject(parts.uri.path().to_string())
        .attribute("httpmethod", parts.method.as_str());
        event.content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let done = function
            .invoke_with(event, nimbus_core::Cause::new(nimbus_core::Trigger::Http))
            .await
            .map_err(|e| failure(e, None, function.version()))?;
        let mut resp = Response::new(Body::from(done.response.data));
        if let Some(ct) = done
            .response
            .content_type
            .and_then(|c| HeaderValue::from_str(&c).ok())
        {
            resp.headers_mut().insert(header::CONTENT_TYPE, ct);
        }
        stamp(resp.headers_mut(), &done.usage);
        Ok(resp)
    }
}

/// How long a request for a function still loading after a restart waits
/// for it before a 503, and the `Retry-After` that 503 carries.
const LOAD_WAIT: Duration = Duration::from_secs(10);
const RETRY_LOADING_SECS: u64 = 1;

/// The invocation id, version and outcome headers of an invocation's response.
fn stamp(headers: &mut HeaderMap, usage: &UsageRecord) {
    if let Ok(id) = HeaderValue::from_str(&usage.invocation_id.to_string()) {
        headers.insert(INVOCATION_ID_HEADER, id);
    }
    headers.insert(VERSION_HEADER, HeaderValue::from(usage.function_version));
    headers.insert(
        OUTCOME_HEADER,
        HeaderValue::from_static(usage.outcome.as_str()),
    );
}

fn too_large(max: usize) -> Response {
    json_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("request body exceeds the limit of {max} bytes"),
        None,
    )
}

/// Maps an invocation error to a status; the body names the outcome and the
/// invocation, never the guest's internals.
fn failure(e: Error, retry_after: Option<Duration>, version: u32) -> Response {
    let id = e.report().map(|r| r.usage.invocation_id.to_string());
    let (status, message) = match &e {
        Error::Throttled { .. } => (StatusCode::TOO_MANY_REQUESTS, "throttled: retry later"),
        Error::Timeout { .. } => (StatusCode::GATEWAY_TIMEOUT, "the function timed out"),
        Error::Guest { error, .. } => match error {
            nimbus_core::GuestError::InvalidInput(_) => {
                (StatusCode::BAD_REQUEST, "the function rejected the request")
            }
            _ => (
                StatusCode::BAD_GATEWAY,
                "the function did not produce a valid response",
            ),
        },
        Error::OutOfFuel { .. }
        | Error::MemoryLimitExceeded { .. }
        | Error::StackOverflow { .. }
        | Error::Trap { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "the function failed"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
    };
    tracing::info!(error = %e, status = status.as_u16(), "invocation failed");
    let mut resp = json_error(status, message, id.as_deref());
    match e.report() {
        Some(r) => stamp(resp.headers_mut(), &r.usage),
        None => {
            resp.headers_mut()
                .insert(VERSION_HEADER, HeaderValue::from(version));
        }
    }
    if status == StatusCode::TOO_MANY_REQUESTS {
        let secs = retry_after.map_or(1, |d| d.as_secs_f64().ceil().max(1.0) as u64);
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        assert!(prefix_matches("/api", "/api"));
        assert!(prefix_matches("/api", "/api/x"));
        assert!(prefix_matches("/api/", "/api/x"));
        assert!(!prefix_matches("/api", "/apix"));
        assert!(prefix_matches("/", "/anything"));
    }
}
