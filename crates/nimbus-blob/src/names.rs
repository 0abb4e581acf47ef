//! Name rules. Names are checked before they reach a key or a directory:
//! only a checked tenant name ever becomes a path component.

use crate::error::BlobError;

/// Longest object name, bytes (S3's limit).
pub const MAX_NAME_BYTES: usize = 1024;

/// Container names: 1–63 of `[a-z0-9._-]`, starting with a letter or digit
/// (S3's rule, minus the dots-in-a-row subtleties).
pub fn check_container_name(name: &str) -> Result<(), BlobError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && name.as_bytes()[0].is_ascii_alphanumeric();
    valid_if(ok, || {
        format!(
            "bad container name {:?}: use 1 to 63 of a-z 0-9 . _ -, starting with a letter or digit",
            truncate(name)
        )
    })
}

/// Object names: any UTF-8 of 1 to [`MAX_NAME_BYTES`] bytes without NUL.
pub fn check_object_name(name: &str) -> Result<(), BlobError> {
    let ok = !name.is_empty() && name.len() <= MAX_NAME_BYTES && !name.contains('\0');
    valid_if(ok, || {
        format!(
            "bad object name {:?} ({} bytes): use 1 to {MAX_NAME_BYTES} bytes of UTF-8 without NUL",
            truncate(name),
            name.len()
        )
    })
}

/// Checks both names of an object's address.
pub(crate) fn check_names(container: &str, name: &str) -> Result<(), BlobError> {
    check_container_name(container)?;
    check_object_name(name)
}

pub fn check_tenant(tenant: &str) -> Result<(), BlobError> {
    let ok = !tenant.is_empty()
        && tenant.len() <= 63
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    valid_if(ok, || format!("bad tenant name {:?}", truncate(tenant)))
}

/// Builds the message only for a name that fails: names are checked on
/// every call.
fn valid_if(ok: bool, why: impl FnOnce() -> String) -> Result<(), BlobError> {
    if ok {
        Ok(())
    } else {
        Err(BlobError::Invalid(why()))
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}
