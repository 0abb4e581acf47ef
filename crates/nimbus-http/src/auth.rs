//! Who may call what: tenant API keys (invocations, storage and queue
//! APIs), admin keys (the admin API), and the tenant a request names.

use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use sha2::{Digest, Sha256};
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

/// Whether the sha256 of `given` is one of `hashes` (keys created through
/// the admin API are kept only as hashes). Compared like [`key_matches`]:
/// every hash, in constant time.
fn hash_matches(given: &str, hashes: &[[u8; 32]]) -> bool {
    // Whether a tenant has API-created keys at all is no secret; skipping
    // the digest then keeps config-file keys as cheap as before.
    if hashes.is_empty() {
        return false;
    }
    let digest: [u8; 32] = Sha256::digest(given.as_bytes()).into();
    let found = hashes.iter().fold(Choice::from(0), |found, h| {
        found | digest.as_slice().ct_eq(h.as_slice())
    });
    !given.is_empty() && bool::from(found)
}

/// Whether `given` is one of `tenant`'s keys: declared to the gateway (the
/// config file) or created through the admin API.
fn tenant_key_matches(gw: &Gateway, tenant: &str, given: &str) -> bool {
    let gate = gw.tenant_gate(tenant);
    let keys = gate.as_ref().map(|g| g.keys.as_slice()).unwrap_or_default();
    let hashes = gw.host().tenant_key_hashes(tenant);
    // Both checks always run: which one matched is not told by the time.
    let declared = key_matches(given, keys);
    let recorded = hash_matches(given, hashes.as_deref().unwrap_or_default());
    // A declared key of a tenant deleted through the admin API is refused
    // like its recorded keys (which went with it).
    (declared && hashes.is_some()) | recorded
}

/// The key check of an invocation: one of the tenant's keys, or an admin
/// key (an operator may invoke any function, as `nimbus invoke` does).
pub(crate) fn check_invoke_key(
    gw: &Gateway,
    tenant: &str,
    headers: &HeaderMap,
) -> Result<(), Response> {
    let admin = bearer(headers)
        .is_some_and(|k| !gw.inner.admin_keys.is_empty() && key_matches(k, &gw.inner.admin_keys));
    if admin {
        return Ok(());
    }
    check_tenant_key(gw, tenant, headers)
}

/// The key check of invocations, for every tenant API: the bearer key must
/// be one of `tenant`'s keys.
pub(crate) fn check_tenant_key(
    gw: &Gateway,
    tenant: &str,
    headers: &HeaderMap,
) -> Result<(), Response> {
    match bearer(headers) {
        Some(k) if tenant_key_matches(gw, tenant, k) => Ok(()),
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

    #[test]
    fn hashed_keys_match_exactly() {
        let h: [u8; 32] = Sha256::digest(b"nbk_secret").into();
        assert!(hash_matches("nbk_secret", &[[0; 32], h]));
        for bad in ["", "nbk_secre", "nbk_secrets"] {
            assert!(!hash_matches(bad, &[h]), "{bad:?}");
        }
    }
}
