//! Versions and aliases of a function, as Lambda has them: every deploy
//! publishes an immutable, numbered version (or reuses the newest if the
//! bytes and config are the same) and moves an alias (`live` unless told
//! otherwise) to it. An alias points at one version or splits requests
//! between two by weight; rollback moves it back to where it pointed
//! before. A version is deleted only when no alias points at it, and the
//! oldest versions no alias points at are pruned past
//! [`KEPT_UNREFERENCED_VERSIONS`].
//!
//! Every change is written to the deployment registry before it shows in
//! memory, one change at a time (`HostInner::changes`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::error::Error;
use crate::function::FunctionHandle;
use crate::host::Host;
use crate::registry::{AliasRecord, FunctionRecord, Weighted};
use crate::tenant::check_name;

/// Versions no alias points at that are kept (for rollback and for
/// requests naming them); older ones are pruned at the next deploy.
pub const KEPT_UNREFERENCED_VERSIONS: usize = 10;

/// The alias every deploy moves unless it names another, and the one
/// requests without a version or alias go to.
pub const LIVE: &str = "live";

/// Which version of a function a request wants.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Selector {
    /// The `live` alias.
    Live,
    Version(u32),
    Alias(String),
}

impl Selector {
    /// Splits `name@3` or `name:staging` (as a request path or route names
    /// a function) into the name and the selector; a bare name is `Live`.
    pub fn parse(spec: &str) -> Result<(&str, Selector), Error> {
        if let Some((name, v)) = spec.split_once('@') {
            let n =
                v.parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    Error::NotFound(format!("version `{v}` of function `{name}`"))
                })?;
            Ok((name, Selector::Version(n)))
        } else if let Some((name, alias)) = spec.split_once(':') {
            Ok((name, Selector::Alias(alias.to_string())))
        } else {
            Ok((spec, Selector::Live))
        }
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Selector::Live => write!(f, "alias `{LIVE}`"),
            Selector::Version(n) => write!(f, "version {n}"),
            Selector::Alias(a) => write!(f, "alias `{a}`"),
        }
    }
}

/// A version being loaded, loaded, or that failed to load (after a
/// restart, versions load in the background).
#[derive(Clone)]
pub(crate) enum Load {
    Loading,
    Ready(FunctionHandle),
    Failed(Arc<str>),
}

pub(crate) struct VersionCell {
    pub(crate) state: watch::Sender<Load>,
}

impl VersionCell {
    pub(crate) fn ready(handle: FunctionHandle) -> Arc<Self> {
        Arc::new(Self {
            state: watch::Sender::new(Load::Ready(handle)),
        })
    }

    pub(crate) fn loading() -> Arc<Self> {
        Arc::new(Self {
            state: watch::Sender::new(Load::Loading),
        })
    }
}

/// A function in memory: its record as the registry has it, and its
/// versions. Replaced whole on every change, so readers never lock.
#[derive(Clone)]
pub(crate) struct FunctionState {
    pub(crate) record: FunctionRecord,
    pub(crate) versions: BTreeMap<u32, Arc<VersionCell>>,
    /// Requests routed through a split alias so far: the next one's place
    /// in the weighted rotation. Kept across changes of the state.
    pub(crate) routed: Arc<AtomicU64>,
}

impl FunctionState {
    pub(crate) fn new(record: FunctionRecord) -> Self {
        Self {
            record,
            versions: BTreeMap::new(),
            routed: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The version `selector` sends this request to.
    fn pick(&self, selector: &Selector) -> Result<u32, Error> {
        let name = &self.record.name;
        let alias = match selector {
            Selector::Version(n) if self.versions.contains_key(n) => return Ok(*n),
            Selector::Version(n) => {
                return Err(Error::NotFound(format!("version {n} of function `{name}`")));
            }
            Selector::Live => LIVE,
            Selector::Alias(a) => a.as_str(),
        };
        let a = self
            .record
            .aliases
            .get(alias)
            .ok_or_else(|| Error::NotFound(format!("alias `{alias}` of function `{name}`")))?;
        Ok(route(&a.routing, &self.routed))
    }
}

/// The n-th request through a split goes to the second version when
/// `⌊(n+1)·w/100⌋ > ⌊n·w/100⌋`: exactly `w` of every 100 consecutive
/// requests, spread evenly, with no random draw on the request path.
fn route(routing: &[Weighted], routed: &AtomicU64) -> u32 {
    match routing {
        [only] => only.version,
        [first, second, ..] => {
            let n = routed.fetch_add(1, Ordering::Relaxed);
            let w = u64::from(second.weight);
            if (n + 1) * w / 100 > n * w / 100 {
                second.version
            } else {
                first.version
            }
        }
        [] => 0,
    }
}

/// Checks an alias's routing: one version, or two different ones whose
/// weights (each 1–99) sum to 100, all existing.
pub(crate) fn check_routing(record: &FunctionRecord, routing: &[Weighted]) -> Result<(), Error> {
    let bad = |m: String| Error::InvalidRouting(m);
    match routing {
        [] => return Err(bad("an alias needs one or two versions".into())),
        [one] if one.weight != 100 => {
            return Err(bad(format!(
                "a single version takes all requests: weight {} must be 100",
                one.weight
            )));
        }
        [a, b] => {
            if a.version == b.version {
                return Err(bad(format!("version {} is named twice", a.version)));
            }
            if a.weight == 0 || b.weight == 0 || u32::from(a.weight) + u32::from(b.weight) != 100 {
                return Err(bad(format!(
                    "weights must be 1–99 and sum to 100 (got {} and {})",
                    a.weight, b.weight
                )));
            }
        }
        [_] => {}
        _ => return Err(bad("an alias splits between at most two versions".into())),
    }
    for w in routing {
        if record.version(w.version).is_none() {
            return Err(Error::NotFound(format!(
                "version {} of function `{}`",
                w.version, record.name
            )));
        }
    }
    Ok(())
}

/// Points `alias` at `routing`, remembering where it pointed before.
pub(crate) fn move_alias(record: &mut FunctionRecord, alias: &str, routing: Vec<Weighted>) {
    let entry = record
        .aliases
        .entry(alias.to_string())
        .or_insert_with(|| AliasRecord {
            routing: Vec::new(),
            previous: None,
        });
    if entry.routing != routing {
        let old = std::mem::replace(&mut entry.routing, routing);
        entry.previous = (!old.is_empty()).then_some(old);
    }
}

/// Drops the oldest versions no alias points at, past the kept count;
/// returns the numbers dropped.
pub(crate) fn prune(record: &mut FunctionRecord) -> Vec<u32> {
    let referenced = |n: u32| {
        record.aliases.values().any(|a| {
            a.versions().any(|v| v == n) || a.previous.iter().flatten().any(|w| w.version == n)
        })
    };
    let unreferenced: Vec<u32> = record
        .versions
        .iter()
        .map(|v| v.version)
        .filter(|n| !referenced(*n))
        .collect();
    let excess = unreferenced
        .len()
        .saturating_sub(KEPT_UNREFERENCED_VERSIONS);
    let dropped: Vec<u32> = unreferenced.into_iter().take(excess).collect();
    record.versions.retain(|v| !dropped.contains(&v.version));
    dropped
}

impl Host {
    pub(crate) fn state(&self, tenant: &str, name: &str) -> Option<Arc<FunctionState>> {
        self.inner
            .functions
            .get(&(Arc::from(tenant), Arc::from(name)))
            .map(|s| s.clone())
    }

    /// The version of `tenant`'s `function` that `selector` names, if it
    /// is loaded. [`Error::Loading`] while it loads after a restart (see
    /// [`Self::function_ready`] to wait for it).
    pub fn function_at(
        &self,
        tenant: &str,
        function: &str,
        selector: &Selector,
    ) -> Result<FunctionHandle, Error> {
        let state = self.state(tenant, function).ok_or_else(|| {
            Error::NotFound(format!("function `{function}` of tenant `{tenant}`"))
        })?;
        let n = state.pick(selector)?;
        let cell = state
            .versions
            .get(&n)
            .ok_or_else(|| Error::NotFound(format!("version {n} of function `{function}`")))?;
        let load = cell.state.borrow().clone();
        match load {
            Load::Ready(h) => Ok(h),
            Load::Loading => Err(Error::Loading(format!(
                "function `{function}` version {n} is still loading"
            ))),
            Load::Failed(e) => Err(Error::Unavailable(format!(
                "function `{function}` version {n} failed to load: {e}"
            ))),
        }
    }

    /// [`Self::function_at`], waiting up to `wait` for a version that is
    /// still loading, or for a function the host has yet to load at all.
    pub async fn function_ready(
        &self,
        tenant: &str,
        function: &str,
        selector: &Selector,
        wait: Duration,
    ) -> Result<FunctionHandle, Error> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let err = match self.function_at(tenant, function, selector) {
                Ok(h) => return Ok(h),
                Err(e) => e,
            };
            let waiting = match &err {
                Error::Loading(_) => {
                    let Some(state) = self.state(tenant, function) else {
                        return Err(err);
                    };
                    let Ok(n) = state.pick(selector) else {
                        return Err(err);
                    };
                    let Some(cell) = state.versions.get(&n).cloned() else {
                        return Err(err);
                    };
                    let mut rx = cell.state.subscribe();
                    tokio::time::timeout_at(deadline, async move {
                        let _ = rx.wait_for(|l| !matches!(l, Load::Loading)).await;
                    })
                    .await
                }
                Error::NotFound(_) if self.is_loading() => {
                    let mut rx = self.inner.loading.subscribe();
                    tokio::time::timeout_at(deadline, async move {
                        let _ = rx.wait_for(|n| *n == 0).await;
                    })
                    .await
                }
                _ => return Err(err),
            };
            if waiting.is_err() {
                return Err(err);
            }
        }
    }

    /// Whether versions or declared functions are still being loaded
    /// (after a restart, or while [`Self::loading_guard`]s are held).
    pub fn is_loading(&self) -> bool {
        *self.inner.loading.borrow() > 0
    }

    /// Waits until nothing is loading.
    pub async fn loaded(&self) {
        let mut rx = self.inner.loading.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// Waits until every version the registry held when the host was built
    /// has loaded (or failed to).
    pub async fn restored(&self) {
        let mut rx = self.inner.restoring.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// Marks the host as loading until the guard drops: requests for a
    /// function not found meanwhile wait for it ([`Self::function_ready`]).
    /// `nimbus serve` holds one while it deploys its config file's functions.
    pub fn loading_guard(&self) -> LoadingGuard {
        self.inner.loading.send_modify(|n| *n += 1);
        LoadingGuard(self.clone())
    }

    /// The function's record: versions (oldest first), aliases, public.
    pub fn function_record(&self, tenant: &str, function: &str) -> Result<FunctionRecord, Error> {
        self.state(tenant, function)
            .map(|s| s.record.clone())
            .ok_or_else(|| Error::NotFound(format!("function `{function}` of tenant `{tenant}`")))
    }

    /// Points `alias` of the function at one version or a weighted split
    /// of two (created if new; its previous target kept for rollback).
    pub async fn set_alias(
        &self,
        tenant: &str,
        function: &str,
        alias: &str,
        routing: Vec<Weighted>,
    ) -> Result<AliasRecord, Error> {
        check_name("alias", alias)?;
        self.change(tenant, function, |record| {
            check_routing(record, &routing)?;
            move_alias(record, alias, routing.clone());
            prune(record);
            Ok(())
        })
        .await
        .map(|r| r.aliases[alias].clone())
    }

    /// Moves `alias` back to where it pointed before its last move.
    pub async fn rollback(
        &self,
        tenant: &str,
        function: &str,
        alias: &str,
    ) -> Result<AliasRecord, Error> {
        self.change(tenant, function, |record| {
            let a = record.aliases.get(alias).ok_or_else(|| {
                Error::NotFound(format!("alias `{alias}` of function `{function}`"))
            })?;
            let previous = a.previous.clone().ok_or_else(|| {
                Error::Conflict(format!(
                    "alias `{alias}` of function `{function}` has no previous version to roll back to"
                ))
            })?;
            check_routing(record, &previous)?;
            move_alias(record, alias, previous);
            Ok(())
        })
        .await
        .map(|r| r.aliases[alias].clone())
    }

    /// Deletes an alias other than `live`.
    pub async fn delete_alias(
        &self,
        tenant: &str,
        function: &str,
        alias: &str,
    ) -> Result<(), Error> {
        self.change(tenant, function, |record| {
            if alias == LIVE {
                return Err(Error::Conflict(format!(
                    "alias `{LIVE}` cannot be deleted (delete the function instead)"
                )));
            }
            record.aliases.remove(alias).ok_or_else(|| {
                Error::NotFound(format!("alias `{alias}` of function `{function}`"))
            })?;
            Ok(())
        })
        .await
        .map(|_| ())
    }

    /// Deletes a version no alias points at.
    pub async fn delete_version(
        &self,
        tenant: &str,
        function: &str,
        version: u32,
    ) -> Result<(), Error> {
        self.change(tenant, function, |record| {
            record.version(version).ok_or_else(|| {
                Error::NotFound(format!("version {version} of function `{function}`"))
            })?;
            let aliases = record.aliases_of(version);
            if !aliases.is_empty() {
                return Err(Error::Conflict(format!(
                    "version {version} is the target of alias `{}`; move the alias first",
                    aliases.join("`, `")
                )));
            }
            record.versions.retain(|v| v.version != version);
            for a in record.aliases.values_mut() {
                if a.previous.iter().flatten().any(|w| w.version == version) {
                    a.previous = None;
                }
            }
            Ok(())
        })
        .await
        .map(|_| ())
    }

    /// Makes the function invocable without a key (or not), persisted.
    pub async fn set_public(
        &self,
        tenant: &str,
        function: &str,
        public: bool,
    ) -> Result<(), Error> {
        self.change(tenant, function, |record| {
            record.public = public;
            Ok(())
        })
        .await
        .map(|_| ())
    }

    /// Whether the function is invocable without a key.
    pub fn is_public(&self, tenant: &str, function: &str) -> bool {
        self.state(tenant, function)
            .is_some_and(|s| s.record.public)
    }

    /// Applies `edit` to the function's record, writes it to the registry,
    /// then installs it, dropping the versions it no longer has.
    async fn change(
        &self,
        tenant: &str,
        function: &str,
        edit: impl FnOnce(&mut FunctionRecord) -> Result<(), Error>,
    ) -> Result<FunctionRecord, Error> {
        let _one_at_a_time = self.inner.changes.lock().await;
        let state = self.state(tenant, function).ok_or_else(|| {
            Error::NotFound(format!("function `{function}` of tenant `{tenant}`"))
        })?;
        let mut record = state.record.clone();
        edit(&mut record)?;
        if record == state.record {
            return Ok(record);
        }
        let saved = record.clone();
        self.registry_call(move |r| r.put_function(&saved, None))
            .await?;
        let mut next = (*state).clone();
        next.versions.retain(|n, _| record.version(*n).is_some());
        next.record = record.clone();
        self.install(Arc::new(next));
        Ok(record)
    }

    pub(crate) fn install(&self, state: Arc<FunctionState>) {
        let key = (
            Arc::from(state.record.tenant.as_str()),
            Arc::from(state.record.name.as_str()),
        );
        self.inner.functions.insert(key, state);
    }

    /// Runs a registry call on the blocking pool (a commit syncs to disk).
    pub(crate) async fn registry_call<R: Send + 'static>(
        &self,
        f: impl FnOnce(
            &dyn crate::registry::DeploymentRegistry,
        ) -> Result<R, crate::registry::RegistryError>
        + Send
        + 'static,
    ) -> Result<R, Error> {
        let registry = self.inner.deployments.clone();
        tokio::task::spawn_blocking(move || f(registry.as_ref()))
            .await
            .map_err(|e| Error::Registry(format!("registry call panicked: {e}")))?
            .map_err(
                |e| match e.0.strip_prefix(crate::registry::RegistryError::CONFLICT) {
                    Some(why) => Error::Conflict(why.to_string()),
                    None => Error::Registry(e.0),
                },
            )
    }
}

/// See [`Host::loading_guard`].
#[derive(Debug)]
pub struct LoadingGuard(Host);

impl Drop for LoadingGuard {
    fn drop(&mut self) {
        self.0.inner.loading.send_modify(|n| *n -= 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_split_sends_exactly_its_weight() {
        let routing = [
            Weighted {
                version: 3,
                weight: 90,
            },
            Weighted {
                version: 2,
                weight: 10,
            },
        ];
        let routed = AtomicU64::new(0);
        let second = (0..1000).filter(|_| route(&routing, &routed) == 2).count();
        assert_eq!(second, 100);
    }

    #[test]
    fn selectors_parse() {
        assert_eq!(Selector::parse("f").unwrap(), ("f", Selector::Live));
        assert_eq!(Selector::parse("f@3").unwrap(), ("f", Selector::Version(3)));
        assert_eq!(
            Selector::parse("f:staging").unwrap(),
            ("f", Selector::Alias("staging".into()))
        );
        assert!(Selector::parse("f@x").is_err());
        assert!(Selector::parse("f@0").is_err());
    }
}
