//! The deployment registry: what was deployed and must outlive the
//! process — tenants (limits, rate limit, API key hashes), functions with
//! their immutable versions and aliases, the components' bytes, and routes.
//!
//! [`DeploymentRegistry`] is the trait; [`RedbRegistry`] the embedded
//! default (`<data_dir>/registry.redb`, or in memory without a data dir). A
//! clustered registry implements the same trait. Every write is one
//! committed transaction: the host changes its in-memory state only after
//! the registry has the change, so a crash (kill -9 included) never leaves
//! a deploy, an alias move or a key that the registry does not hold.
//!
//! One JSON document per tenant and per function (its versions and
//! aliases with it: a handful of small records, read and written whole),
//! component bytes apart, keyed by their sha256 and shared by every version
//! (of any function) with the same bytes. A component no version refers to
//! any more is removed in the transaction that dropped the last reference.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::limits::{FunctionConfig, Limits};

/// A tenant as the registry keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantRecord {
    pub name: String,
    pub limits: Limits,
    /// Requests per second through the gateway (none: unlimited).
    #[serde(default)]
    pub rate_limit: Option<RateLimitRecord>,
    /// API keys created through the admin API, as hashes. Keys declared in
    /// the config file are not stored: the file declares them at each start.
    #[serde(default)]
    pub keys: Vec<KeyRecord>,
    pub created_at: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimitRecord {
    pub per_second: u32,
    pub burst: u32,
}

/// An API key: only its sha256 is kept; the key itself is shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub key_id: String,
    /// Hex sha256 of the key.
    pub sha256: String,
    pub created_at: String,
}

/// One immutable version of a function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRecord {
    pub version: u32,
    /// Hex sha256 of the component.
    pub sha256: String,
    pub size: u64,
    pub created_at: String,
    /// Limit overrides and grants it was deployed with.
    pub config: FunctionConfig,
}

/// One version and its share of an alias's requests, in percent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Weighted {
    pub version: u32,
    pub weight: u8,
}

/// Where an alias sends requests: one version, or two with weights summing
/// to 100 (Lambda's alias routing), and where it pointed before its last
/// move, for rollback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasRecord {
    pub routing: Vec<Weighted>,
    #[serde(default)]
    pub previous: Option<Vec<Weighted>>,
}

impl AliasRecord {
    pub fn versions(&self) -> impl Iterator<Item = u32> + '_ {
        self.routing.iter().map(|w| w.version)
    }
}

/// A function: its versions, oldest first, and its aliases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionRecord {
    pub tenant: String,
    pub name: String,
    /// Invocable without a key.
    #[serde(default)]
    pub public: bool,
    /// The number the next published version gets (never reused).
    pub next_version: u32,
    pub versions: Vec<VersionRecord>,
    pub aliases: BTreeMap<String, AliasRecord>,
}

impl FunctionRecord {
    pub fn version(&self, n: u32) -> Option<&VersionRecord> {
        self.versions.iter().find(|v| v.version == n)
    }

    /// Aliases that send requests to version `n`.
    pub fn aliases_of(&self, n: u32) -> Vec<String> {
        self.aliases
            .iter()
            .filter(|(_, a)| a.versions().any(|v| v == n))
            .map(|(name, _)| name.clone())
            .collect()
    }
}

/// A gateway route created through the admin API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteRecord {
    pub path: String,
    #[serde(default)]
    pub host: Option<String>,
    pub tenant: String,
    /// `name`, `name@3` or `name:alias`.
    pub function: String,
    #[serde(default)]
    pub public: bool,
}

/// Everything the registry holds, as read at start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub tenants: Vec<TenantRecord>,
    pub functions: Vec<FunctionRecord>,
    pub routes: Vec<RouteRecord>,
}

#[derive(Debug, thiserror::Error)]
#[error("deployment registry: {0}")]
pub struct RegistryError(pub String);

impl RegistryError {
    /// What a message starts with when the change lost a race with a
    /// change made elsewhere (a clustered registry's compare-and-set): the
    /// host reports it as [`crate::Error::Conflict`], and retrying can work.
    pub const CONFLICT: &'static str = "conflict: ";

    pub fn conflict(message: impl std::fmt::Display) -> Self {
        Self(format!("{}{message}", Self::CONFLICT))
    }
}

macro_rules! registry_error_from {
    ($($t:ty),*) => {$(
        impl From<$t> for RegistryError {
            fn from(e: $t) -> Self {
                RegistryError(e.to_string())
            }
        }
    )*};
}
registry_error_from!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    serde_json::Error
);

/// Where deployments are kept. Each method is one atomic change.
pub trait DeploymentRegistry: Send + Sync + 'static {
    fn load(&self) -> Result<Snapshot, RegistryError>;
    fn put_tenant(&self, tenant: &TenantRecord) -> Result<(), RegistryError>;
    /// The tenant, its functions (and their components no other function
    /// shares) and its routes.
    fn delete_tenant(&self, name: &str) -> Result<(), RegistryError>;
    /// Writes the function record; `component` (sha256, bytes) is stored
    /// with it when given. Components no version refers to any more go.
    fn put_function(
        &self,
        function: &FunctionRecord,
        component: Option<(&str, &[u8])>,
    ) -> Result<(), RegistryError>;
    fn delete_function(&self, tenant: &str, name: &str) -> Result<(), RegistryError>;
    /// A component's bytes by sha256.
    fn component(&self, sha256: &str) -> Result<Option<Vec<u8>>, RegistryError>;
    /// Adds the route, replacing one with the same host and path.
    fn put_route(&self, route: &RouteRecord) -> Result<(), RegistryError>;
    /// Whether a route with that host and path was there.
    fn delete_route(&self, host: Option<&str>, path: &str) -> Result<bool, RegistryError>;
}

impl std::fmt::Debug for dyn DeploymentRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeploymentRegistry")
    }
}

const TENANTS: TableDefinition<&str, &[u8]> = TableDefinition::new("tenants");
/// Key: `tenant/function`.
const FUNCTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("functions");
/// Key: hex sha256.
const COMPONENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("components");
/// Key: `host path` (host empty when the route has none).
const ROUTES: TableDefinition<&str, &[u8]> = TableDefinition::new("routes");

fn function_key(tenant: &str, name: &str) -> String {
    format!("{tenant}/{name}")
}

fn route_key(host: Option<&str>, path: &str) -> String {
    format!("{} {path}", host.unwrap_or(""))
}

/// The embedded registry: one redb file.
#[derive(Debug)]
pub struct RedbRegistry {
    db: Database,
}

impl RedbRegistry {
    pub fn open(path: &Path) -> Result<Self, RegistryError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| RegistryError(format!("{}: {e}", parent.display())))?;
        }
        let db = Database::create(path)
            .map_err(|e| RegistryError(format!("{}: {e}", path.display())))?;
        Self::init(db)
    }

    /// A registry in memory: nothing outlives the process.
    pub fn in_memory() -> Result<Self, RegistryError> {
        let db = Database::builder().create_with_backend(redb::backends::InMemoryBackend::new())?;
        Self::init(db)
    }

    fn init(db: Database) -> Result<Self, RegistryError> {
        let txn = db.begin_write()?;
        txn.open_table(TENANTS)?;
        txn.open_table(FUNCTIONS)?;
        txn.open_table(COMPONENTS)?;
        txn.open_table(ROUTES)?;
        txn.commit()?;
        Ok(Self { db })
    }
}

/// Removes the components among `dropped` that no function in `functions`
/// refers to any more.
fn collect_components(
    functions: &redb::Table<&str, &[u8]>,
    components: &mut redb::Table<&str, &[u8]>,
    mut dropped: BTreeSet<String>,
) -> Result<(), RegistryError> {
    if dropped.is_empty() {
        return Ok(());
    }
    for entry in functions.iter()? {
        let (_, v) = entry?;
        let f: FunctionRecord = serde_json::from_slice(v.value())?;
        for version in &f.versions {
            dropped.remove(&version.sha256);
        }
    }
    for sha in dropped {
        components.remove(sha.as_str())?;
    }
    Ok(())
}

fn shas(f: &FunctionRecord) -> BTreeSet<String> {
    f.versions.iter().map(|v| v.sha256.clone()).collect()
}

impl DeploymentRegistry for RedbRegistry {
    fn load(&self) -> Result<Snapshot, RegistryError> {
        let txn = self.db.begin_read()?;
        let mut snap = Snapshot::default();
        for entry in txn.open_table(TENANTS)?.iter()? {
            snap.tenants.push(serde_json::from_slice(entry?.1.value())?);
        }
        for entry in txn.open_table(FUNCTIONS)?.iter()? {
            snap.functions
                .push(serde_json::from_slice(entry?.1.value())?);
        }
        for entry in txn.open_table(ROUTES)?.iter()? {
            snap.routes.push(serde_json::from_slice(entry?.1.value())?);
        }
        Ok(snap)
    }

    fn put_tenant(&self, tenant: &TenantRecord) -> Result<(), RegistryError> {
        let txn = self.db.begin_write()?;
        txn.open_table(TENANTS)?
            .insert(tenant.name.as_str(), serde_json::to_vec(tenant)?.as_slice())?;
        txn.commit()?;
        Ok(())
    }

    fn delete_tenant(&self, name: &str) -> Result<(), RegistryError> {
        let txn = self.db.begin_write()?;
        {
            txn.open_table(TENANTS)?.remove(name)?;
            let mut functions = txn.open_table(FUNCTIONS)?;
            let prefix = format!("{name}/");
            let mut dropped = BTreeSet::new();
            let keys: Vec<String> = functions
                .iter()?
                .filter_map(|e| e.ok())
                .map(|(k, _)| k.value().to_string())
                .filter(|k| k.starts_with(&prefix))
                .collect();
            for key in keys {
                if let Some(old) = functions.remove(key.as_str())? {
                    let f: FunctionRecord = serde_json::from_slice(old.value())?;
                    dropped.extend(shas(&f));
                }
            }
            let mut components = txn.open_table(COMPONENTS)?;
            collect_components(&functions, &mut components, dropped)?;
            let mut routes = txn.open_table(ROUTES)?;
            let mut gone = Vec::new();
            for entry in routes.iter()? {
                let (k, v) = entry?;
                let r: RouteRecord = serde_json::from_slice(v.value())?;
                if r.tenant == name {
                    gone.push(k.value().to_string());
                }
            }
            for k in gone {
                routes.remove(k.as_str())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    fn put_function(
        &self,
        function: &FunctionRecord,
        component: Option<(&str, &[u8])>,
    ) -> Result<(), RegistryError> {
        let key = function_key(&function.tenant, &function.name);
        let txn = self.db.begin_write()?;
        {
            let mut functions = txn.open_table(FUNCTIONS)?;
            let mut components = txn.open_table(COMPONENTS)?;
            if let Some((sha, bytes)) = component
                && components.get(sha)?.is_none()
            {
                components.insert(sha, bytes)?;
            }
            let old = functions
                .insert(key.as_str(), serde_json::to_vec(function)?.as_slice())?
                .map(|g| serde_json::from_slice::<FunctionRecord>(g.value()))
                .transpose()?;
            if let Some(old) = old {
                let kept = shas(function);
                let dropped = shas(&old).difference(&kept).cloned().collect();
                collect_components(&functions, &mut components, dropped)?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    fn delete_function(&self, tenant: &str, name: &str) -> Result<(), RegistryError> {
        let txn = self.db.begin_write()?;
        {
            let mut functions = txn.open_table(FUNCTIONS)?;
            let old = functions
                .remove(function_key(tenant, name).as_str())?
                .map(|g| serde_json::from_slice::<FunctionRecord>(g.value()))
                .transpose()?;
            if let Some(old) = old {
                let mut components = txn.open_table(COMPONENTS)?;
                collect_components(&functions, &mut components, shas(&old))?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    fn component(&self, sha256: &str) -> Result<Option<Vec<u8>>, RegistryError> {
        let txn = self.db.begin_read()?;
        Ok(txn
            .open_table(COMPONENTS)?
            .get(sha256)?
            .map(|g| g.value().to_vec()))
    }

    fn put_route(&self, route: &RouteRecord) -> Result<(), RegistryError> {
        let txn = self.db.begin_write()?;
        txn.open_table(ROUTES)?.insert(
            route_key(route.host.as_deref(), &route.path).as_str(),
            serde_json::to_vec(route)?.as_slice(),
        )?;
        txn.commit()?;
        Ok(())
    }

    fn delete_route(&self, host: Option<&str>, path: &str) -> Result<bool, RegistryError> {
        let txn = self.db.begin_write()?;
        let found = txn
            .open_table(ROUTES)?
            .remove(route_key(host, path).as_str())?
            .is_some();
        txn.commit()?;
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn function(tenant: &str, name: &str, shas: &[&str]) -> FunctionRecord {
        FunctionRecord {
            tenant: tenant.into(),
            name: name.into(),
            public: false,
            next_version: shas.len() as u32 + 1,
            versions: shas
                .iter()
                .enumerate()
                .map(|(i, s)| VersionRecord {
                    version: i as u32 + 1,
                    sha256: s.to_string(),
                    size: 1,
                    created_at: String::new(),
                    config: FunctionConfig::default(),
                })
                .collect(),
            aliases: BTreeMap::from([(
                "live".to_string(),
                AliasRecord {
                    routing: vec![Weighted {
                        version: 1,
                        weight: 100,
                    }],
                    previous: None,
                },
            )]),
        }
    }

    #[test]
    fn records_survive_reopening_and_components_go_with_their_last_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.redb");
        {
            let r = RedbRegistry::open(&path).unwrap();
            r.put_tenant(&TenantRecord {
                name: "acme".into(),
                limits: Limits::default().fuel(7),
                rate_limit: Some(RateLimitRecord {
                    per_second: 5,
                    burst: 6,
                }),
                keys: vec![],
                created_at: "now".into(),
            })
            .unwrap();
            r.put_function(&function("acme", "a", &["s1"]), Some(("s1", b"one")))
                .unwrap();
            r.put_function(&function("acme", "b", &["s1"]), Some(("s1", b"one")))
                .unwrap();
            r.put_function(&function("acme", "a", &["s1", "s2"]), Some(("s2", b"two")))
                .unwrap();
        }
        let r = RedbRegistry::open(&path).unwrap();
        let snap = r.load().unwrap();
        assert_eq!(snap.tenants[0].limits.fuel, 7);
        assert_eq!(snap.functions.len(), 2);
        assert_eq!(r.component("s2").unwrap().unwrap(), b"two");
        // s2 only a's: dropping it from a removes the bytes; s1 stays for b.
        r.put_function(&function("acme", "a", &["s1"]), None)
            .unwrap();
        assert!(r.component("s2").unwrap().is_none());
        r.delete_function("acme", "a").unwrap();
        assert!(r.component("s1").unwrap().is_some(), "b still uses s1");
        r.delete_tenant("acme").unwrap();
        assert!(r.component("s1").unwrap().is_none());
        assert_eq!(r.load().unwrap(), Snapshot::default());
    }

    #[test]
    fn routes_are_keyed_by_host_and_path() {
        let r = RedbRegistry::in_memory().unwrap();
        let route = |host: Option<&str>, f: &str| RouteRecord {
            path: "/x".into(),
            host: host.map(String::from),
            tenant: "acme".into(),
            function: f.into(),
            public: false,
        };
        r.put_route(&route(None, "a")).unwrap();
        r.put_route(&route(None, "b")).unwrap();
        r.put_route(&route(Some("h"), "c")).unwrap();
        let routes = r.load().unwrap().routes;
        assert_eq!(routes.len(), 2);
        assert!(routes.iter().any(|r| r.function == "b"));
        assert!(r.delete_route(Some("h"), "/x").unwrap());
        assert!(!r.delete_route(Some("h"), "/x").unwrap());
    }
}
