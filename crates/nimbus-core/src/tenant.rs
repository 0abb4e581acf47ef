//! Tenants: a name and the limits its invocations run under, with the
//! admission slots that enforce its concurrency limit; and the host's
//! tenant operations (create, update, keys, delete), each recorded in the
//! deployment registry before it takes effect.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::deploy::{hex, now_rfc3339};
use crate::error::Error;
use crate::host::Host;
use crate::limits::Limits;
use crate::registry::{KeyRecord, RateLimitRecord, TenantRecord};
use crate::versions::Load;

pub(crate) struct Tenant {
    pub name: Arc<str>,
    pub limits: Limits,
    pub slots: Arc<Semaphore>,
    /// Linear memory its running instances hold now (their limiters add
    /// and take back), checked at admission against
    /// `limits.max_tenant_memory_bytes`.
    pub memory: Arc<AtomicU64>,
    /// As the registry has it.
    pub record: TenantRecord,
    /// sha256 of each API key in `record`.
    pub key_hashes: Arc<[[u8; 32]]>,
}

impl Tenant {
    pub fn new(record: TenantRecord) -> Self {
        let limits = record.limits;
        Self {
            name: record.name.as_str().into(),
            limits,
            slots: Arc::new(Semaphore::new(limits.max_concurrency as usize)),
            memory: Arc::new(AtomicU64::new(0)),
            key_hashes: hashes(&record.keys),
            record,
        }
    }

    /// This tenant with `record`'s limits and keys; running invocations
    /// keep counting against the same memory total, and the same
    /// concurrency slots unless the limit changed.
    fn updated(&self, record: TenantRecord) -> Self {
        let limits = record.limits;
        Self {
            name: self.name.clone(),
            limits,
            slots: if limits.max_concurrency == self.limits.max_concurrency {
                self.slots.clone()
            } else {
                Arc::new(Semaphore::new(limits.max_concurrency as usize))
            },
            memory: self.memory.clone(),
            key_hashes: hashes(&record.keys),
            record,
        }
    }
}

fn hashes(keys: &[KeyRecord]) -> Arc<[[u8; 32]]> {
    keys.iter()
        .filter_map(|k| {
            let mut out = [0u8; 32];
            (k.sha256.len() == 64).then_some(())?;
            for (i, byte) in out.iter_mut().enumerate() {
                *byte = u8::from_str_radix(k.sha256.get(2 * i..2 * i + 2)?, 16).ok()?;
            }
            Some(out)
        })
        .collect()
}

/// A new API key: `nbk_` and 244 random bits (two v4 UUIDs), and its record.
fn new_key() -> (String, KeyRecord) {
    let key = format!(
        "nbk_{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let sha = hex(&Sha256::digest(key.as_bytes()));
    let record = KeyRecord {
        key_id: sha[..12].to_string(),
        sha256: sha,
        created_at: now_rfc3339(),
    };
    (key, record)
}

impl Host {
    /// Registers a tenant (recorded in the deployment registry). Its
    /// functions get `limits`; nothing else is granted. A tenant restored
    /// from the registry may be declared again: its limits become
    /// `limits` (a config file declares its tenants at every start).
    pub fn add_tenant(&self, name: &str, limits: Limits) -> Result<(), Error> {
        check_name("tenant", name)?;
        self.inner.runtime.check_limits(name, &limits)?;
        if self.inner.declared.contains_key(name) {
            return Err(Error::TenantExists(name.to_string()));
        }
        // Synchronous (embedders call it before any deploy): it takes the
        // change lock only if it is free rather than block a runtime thread.
        let _one_at_a_time = self.inner.changes.try_lock();
        let (record, recorded) = match self.inner.tenants.get(name).map(|t| t.record.clone()) {
            Some(mut r) => {
                let same = r.limits == limits;
                r.limits = limits;
                (r, same)
            }
            None => (
                TenantRecord {
                    name: name.to_string(),
                    limits,
                    rate_limit: None,
                    keys: Vec::new(),
                    created_at: now_rfc3339(),
                },
                false,
            ),
        };
        // A tenant the registry already holds as declared is not written
        // again: a restart then needs no registry write (a cluster node can
        // start from its copy of the registry while NATS is away).
        if !recorded {
            self.inner
                .deployments
                .put_tenant(&record)
                .map_err(|e| Error::Registry(e.0))?;
        }
        self.apply_tenant(record);
        self.inner.declared.insert(name.into(), ());
        Ok(())
    }

    /// Creates a tenant through the admin API: refused if it exists.
    pub async fn create_tenant(
        &self,
        name: &str,
        limits: Limits,
        rate_limit: Option<RateLimitRecord>,
    ) -> Result<TenantRecord, Error> {
        check_name("tenant", name)?;
        self.inner.runtime.check_limits(name, &limits)?;
        check_rate(name, rate_limit)?;
        let _one_at_a_time = self.inner.changes.lock().await;
        if self.inner.tenants.contains_key(name) {
            return Err(Error::TenantExists(name.to_string()));
        }
        let record = TenantRecord {
            name: name.to_string(),
            limits,
            rate_limit,
            keys: Vec::new(),
            created_at: now_rfc3339(),
        };
        let saved = record.clone();
        self.registry_call(move |r| r.put_tenant(&saved)).await?;
        self.apply_tenant(record.clone());
        Ok(record)
    }

    /// Changes a tenant's limits and/or rate limit (`Some(None)`: none).
    /// Its functions run under the new limits from their next invocation;
    /// nothing is compiled again.
    pub async fn update_tenant(
        &self,
        name: &str,
        limits: Option<Limits>,
        rate_limit: Option<Option<RateLimitRecord>>,
    ) -> Result<TenantRecord, Error> {
        if let Some(l) = &limits {
            self.inner.runtime.check_limits(name, l)?;
        }
        if let Some(r) = rate_limit {
            check_rate(name, r)?;
        }
        self.edit_tenant(name, |r| {
            if let Some(l) = limits {
                r.limits = l;
            }
            if let Some(rate) = rate_limit {
                r.rate_limit = rate;
            }
            Ok(())
        })
        .await
    }

    /// A new API key for the tenant, returned once (only its hash is kept).
    /// Its other keys stay valid: rotate by adding a key, moving clients to
    /// it, then deleting the old one.
    pub async fn add_tenant_key(&self, name: &str) -> Result<(KeyRecord, String), Error> {
        let (key, record) = new_key();
        let added = record.clone();
        self.edit_tenant(name, move |r| {
            r.keys.push(added);
            Ok(())
        })
        .await?;
        Ok((record, key))
    }

    /// Revokes one of the tenant's API keys, at once.
    pub async fn delete_tenant_key(&self, name: &str, key_id: &str) -> Result<(), Error> {
        self.edit_tenant(name, |r| {
            let before = r.keys.len();
            r.keys.retain(|k| k.key_id != key_id);
            if r.keys.len() == before {
                return Err(Error::NotFound(format!(
                    "key `{key_id}` of tenant `{name}`"
                )));
            }
            Ok(())
        })
        .await
        .map(|_| ())
    }

    /// The tenant as the registry has it.
    pub fn tenant_record(&self, name: &str) -> Result<TenantRecord, Error> {
        Ok(self.tenant(name)?.record.clone())
    }

    /// Every tenant, by name.
    pub fn tenant_records(&self) -> Vec<TenantRecord> {
        let mut all: Vec<TenantRecord> = self
            .inner
            .tenants
            .iter()
            .map(|t| t.record.clone())
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// sha256 of each of the tenant's API keys (created through the admin
    /// API), for the gateway's constant-time check.
    pub fn tenant_key_hashes(&self, name: &str) -> Option<Arc<[[u8; 32]]>> {
        self.inner.tenants.get(name).map(|t| t.key_hashes.clone())
    }

    /// The tenant's recorded rate limit (without copying its record: the
    /// gateway asks on every request).
    pub fn tenant_rate_limit(&self, name: &str) -> Option<RateLimitRecord> {
        self.inner.tenants.get(name)?.record.rate_limit
    }

    /// The limits a tenant was registered with.
    pub fn tenant_limits(&self, tenant: &str) -> Result<Limits, Error> {
        Ok(self.tenant(tenant)?.limits)
    }

    /// Deletes a tenant at once: its functions (every version), its keys,
    /// and its data — key-value stores, blobs, queues, files and logs.
    /// In-flight invocations finish; a new one is refused.
    pub async fn delete_tenant(&self, name: &str) -> Result<(), Error> {
        let _one_at_a_time = self.inner.changes.lock().await;
        self.tenant(name)?;
        let n = name.to_string();
        self.registry_call(move |r| r.delete_tenant(&n)).await?;
        self.forget_tenant(name).await?;
        tracing::info!(tenant = name, "tenant deleted");
        Ok(())
    }

    /// Drops a tenant the registry no longer has from memory, and its data.
    pub(crate) async fn forget_tenant(&self, name: &str) -> Result<(), Error> {
        self.inner.tenants.remove(name);
        self.inner
            .routes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|r| r.tenant != name);
        self.routes_changed();
        self.inner.declared.remove(name);
        self.inner.functions.retain(|(t, _), _| &**t != name);
        let services = &self.inner.runtime.services;
        let (kv, blob, queues) = (
            services.kv.clone(),
            services.blob.clone(),
            services.queues.clone(),
        );
        let n = name.to_string();
        let host = self.clone();
        let files = services
            .data_dir
            .as_ref()
            .map(|d| d.join("files").join(name));
        tokio::task::spawn_blocking(move || -> Result<(), String> {
            kv.delete_tenant(&n)
                .map_err(|e| format!("key-value: {e}"))?;
            blob.delete_tenant(&n).map_err(|e| format!("blobs: {e}"))?;
            queues
                .delete_tenant(&n)
                .map_err(|e| format!("queues: {e}"))?;
            host.delete_tenant_logs(&n);
            if let Some(dir) = files {
                match std::fs::remove_dir_all(&dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(format!("files {}: {e}", dir.display())),
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| Error::Registry(format!("deleting tenant data panicked: {e}")))?
        .map_err(|e| {
            Error::Registry(format!(
                "tenant `{name}` deleted, but its data was not: {e}"
            ))
        })?;
        Ok(())
    }

    async fn edit_tenant(
        &self,
        name: &str,
        edit: impl FnOnce(&mut TenantRecord) -> Result<(), Error>,
    ) -> Result<TenantRecord, Error> {
        let _one_at_a_time = self.inner.changes.lock().await;
        let mut record = self.tenant(name)?.record.clone();
        edit(&mut record)?;
        let saved = record.clone();
        self.registry_call(move |r| r.put_tenant(&saved)).await?;
        self.apply_tenant(record.clone());
        Ok(record)
    }

    /// Puts `record` in memory; if its limits changed, every loaded version
    /// of its functions is rebuilt under them.
    pub(crate) fn apply_tenant(&self, record: TenantRecord) {
        let name: Arc<str> = record.name.as_str().into();
        let old = self.inner.tenants.get(&name).map(|t| t.clone());
        let tenant = Arc::new(match &old {
            Some(t) => t.updated(record),
            None => Tenant::new(record),
        });
        self.inner.tenants.insert(name.clone(), tenant.clone());
        if old.is_some_and(|o| o.limits != tenant.limits) {
            for state in self.inner.functions.iter().filter(|e| e.key().0 == name) {
                for cell in state.versions.values() {
                    let load = cell.state.borrow().clone();
                    if let Load::Ready(h) = load {
                        cell.state
                            .send_replace(Load::Ready(h.rebuilt(tenant.clone())));
                    }
                }
            }
        }
    }
}

fn check_rate(tenant: &str, rate: Option<RateLimitRecord>) -> Result<(), Error> {
    match rate {
        Some(r) if r.per_second == 0 => Err(Error::InvalidLimits {
            tenant: tenant.to_string(),
            reason: "rate limit per_second must be above 0".into(),
        }),
        _ => Ok(()),
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
