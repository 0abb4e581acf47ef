//! Who may call what: tenant API keys (invocations, storage and queue
//! APIs), admin keys (the admin API), and the tenant a request names.

use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use subtle::{Choice, ConstantTimeEq};

use crate::Gateway;
use crate::request::{json_error, not_found};

/// The key a request must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Caller {
    /// One of the keys of the tenant in the path, so the tenant named is
    /// the caller.
    Tenant,
    /// An admin key: an operator, acting for any tenant.
    Admin,
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Whether `given` is one of `keys`. Every key is compared, each with
/// subtle's constant-time comparison, so response time reveals neither how
/// much of a key matched nor which key did. A key of another length than
/// `given` is refused without comparing bytes (subtle's slice `ct_eq`
/// returns false on a length mismatch): timing may tell the keys' lengths,
/// never their bytes.
fn key_matches(given: &str, keys: &[String]) -> bool {
    let found = keys.iter().fold(Choice::from(0), |found, key| {
        found | given.as_bytes().ct_eq(key.as_bytes())
    });
    // An empty key is never valid, even where one is configured.
    !given.is_empty() && bool::from(found)
}

fn unauthorized(what: &str) -> Response {
    let mut resp = json_error(StatusCode::UNAUTHORIZED, what, None);
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

/// The key check of the admin API.
pub(crate) fn check_admin(gw: &Gateway, headers: &HeaderMap) -> Result<(), Response> {
    let keys = &gw.inner.admin_keys;
    if keys.is_empty() {
        return Err(json_error(
            StatusCode::FORBIDDEN,
            "the admin API is disabled (no admin key configured)",
            None,
        ));
    }
    match bearer(headers) {
        Some(k) if key_matches(k, keys) => Ok(()),
        Some(_) => Err(unauthorized("invalid admin key")),
        None => Err(unauthorized("missing `Authorization: Bearer <admin key>`")),
    }
}

/// The key check of invocations, for every tenant API: the bearer key must
/// be one of `tenant`'s keys.
pub(crate) fn check_tenant_key(
    gw: &Gateway,
    tenant: &str,
    headers: &HeaderMap,
) -> Result<(), Response> {
    let gate = gw.tenant_gate(tenant);
    let keys = gate.as_ref().map(|g| g.keys.as_slice()).unwrap_or_default();
    match bearer(headers) {
        Some(k) if key_matches(k, keys) => Ok(()),
        Some(_) => Err(unauthorized("invalid API key for this tenant")),
        None => Err(unauthorized(
            "missing `Authorization: Bearer <tenant API key>`",
        )),
    }
}

/// The tenant must be registered with the host; its limits (which hold its
/// quotas) are 404 otherwise. Keys are the gateway's and may name tenants
/// the host does not know.
pub(crate) fn known_tenant(gw: &Gateway, tenant: &str) -> Result<nimbus_core::Limits, Response> {
    gw.host()
        .tenant_limits(tenant)
        .map_err(|e| not_found(&e.to_string()))
}

/// The key check for `caller`, then [`known_tenant`]: nothing about a
/// tenant, not even whether it exists, is told before the key is checked.
pub(crate) fn authorize(
    gw: &Gateway,
    caller: Caller,
    tenant: &str,
    headers: &HeaderMap,
) -> Result<nimbus_core::Limits, Response> {
    match caller {
        Caller::Tenant => check_tenant_key(gw, tenant, headers)?,
        Caller::Admin => check_admin(gw, headers)?,
    }
    known_tenant(gw, tenant)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_exactly() {
        let keys = vec!["secret".to_string(), "other-key".to_string()];
        assert!(key_matches("secret", &keys));
        assert!(key_matches("other-key", &keys));
        for bad in ["", "secre", "secrets", "SECRET", "other"] {
            assert!(!key_matches(bad, &keys), "{bad:?}");
        }
        assert!(!key_matches("anything", &[]));
        assert!(!key_matches("", &[String::new()]));
    }
}
