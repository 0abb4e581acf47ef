//! Tenants: a name and the limits its invocations run under, with the
//! admission slots that enforce its concurrency limit.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use tokio::sync::Semaphore;

use crate::error::Error;
use crate::limits::Limits;

pub(crate) struct Tenant {
    pub name: Arc<str>,
    pub limits: Limits,
    pub slots: Arc<Semaphore>,
    /// Linear memory its running instances hold now (their limiters add
    /// and take back), checked at admission against
    /// `limits.max_tenant_memory_bytes`.
    pub memory: Arc<AtomicU64>,
}

impl Tenant {
    pub fn new(name: &str, limits: Limits) -> Self {
        Self {
            name: name.into(),
            limits,
            slots: Arc::new(Semaphore::new(limits.max_concurrency as usize)),
            memory: Arc::new(AtomicU64::new(0)),
        }
    }
}

/// Tenant and function names: 1–63 of `[a-z0-9_-]`, starting with a letter
/// or digit. They appear in URLs, metric labels and file names, so nothing
/// that needs escaping in any of them.
pub(crate) fn check_name(kind: &'static str, name: &str) -> Result<(), Error> {
    let reason = if name.is_empty() {
        Some("must not be empty")
    } else if name.len() > 63 {
        Some("must be at most 63 characters")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        Some("may contain only a-z, 0-9, '-' and '_'")
    } else if !name.as_bytes()[0].is_ascii_alphanumeric() {
        Some("must start with a letter or digit")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidName {
            kind,
            name: name.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("tenant", "acme-1_x").is_ok());
        for bad in ["", "Acme", "a/b", "-x", "a b", &"x".repeat(64)] {
            let err = check_name("tenant", bad).unwrap_err();
            assert!(matches!(err, Error::InvalidName { .. }), "{bad:?}");
        }
    }
}
