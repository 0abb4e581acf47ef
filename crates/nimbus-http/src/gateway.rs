//! The gateway itself: its configuration (keys, rate limits, routes, public
//! functions) and the state every handler shares. `router.rs` mounts the
//! APIs on it; requests they do not claim are invocations ([`invoke`]).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use dashmap::DashMap;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use nimbus_core::Host;
use nimbus_core::prometheus::{IntCounterVec, Opts};

use crate::DEFAULT_MAX_BODY_BYTES;

pub(crate) mod invoke;

/// A tenant's per-second request budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub per_second: u32,
    /// Requests that may arrive at once on top of the sustained rate.
    pub burst: u32,
}

/// A configured route: requests whose path starts with `path_prefix` (on a
/// segment boundary) and, if given, whose `Host` is `host`, go to `function`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub path_prefix: String,
    pub host: Option<String>,
    pub tenant: String,
    pub function: String,
    /// Invocable without a key.
    pub public: bool,
}

/// Builds a [`Gateway`]; nothing is public and no key is valid unless set.
#[derive(Debug)]
#[must_use]
pub struct GatewayBuilder {
    host: Host,
    admin_keys: Vec<String>,
    tenants: HashMap<String, (Vec<String>, Option<RateLimit>)>,
    routes: Vec<Route>,
    public: Vec<(String, String)>,
    max_body_bytes: usize,
    usage: Option<crate::UsageService>,
}

impl GatewayBuilder {
    /// Keys accepted on the admin API. Without any, the admin API answers 403.
    pub fn admin_key(mut self, key: impl Into<String>) -> Self {
        self.admin_keys.push(key.into());
        self
    }

    /// API keys of a tenant (any one is accepted) and its rate limit.
    pub fn tenant(mut self, tenant: &str, keys: Vec<String>, rate: Option<RateLimit>) -> Self {
        self.tenants.insert(tenant.to_string(), (keys, rate));
        self
    }

    pub fn route(mut self, route: Route) -> Self {
        self.routes.push(route);
        self
    }

    /// Makes a function invocable without a key on every route.
    pub fn public_function(mut self, tenant: &str, function: &str) -> Self {
        self.public.push((tenant.to_string(), function.to_string()));
        self
    }

    /// Serves the usage API (and the console's data) from these rollups
    /// and prices; without it `/usage/v1` answers 404.
    pub fn usage(mut self, service: crate::UsageService) -> Self {
        self.usage = Some(service);
        self
    }

    /// Request body limit in bytes (default [`DEFAULT_MAX_BODY_BYTES`]).
    pub fn max_body_bytes(mut self, n: usize) -> Self {
        self.max_body_bytes = n;
        self
    }

    pub fn build(self) -> Result<Gateway, String> {
        let mut tenants = HashMap::new();
        for (name, (keys, rate)) in self.tenants {
            let limiter = match rate {
                None => None,
                Some(r) => {
                    let per_second = NonZeroU32::new(r.per_second)
                        .ok_or_else(|| format!("tenant `{name}`: rate limit must be above 0"))?;
                    let burst = NonZeroU32::new(r.burst.max(1)).unwrap_or(per_second);
                    Some(RateLimiter::direct(
                        Quota::per_second(per_second).allow_burst(burst),
                    ))
                }
            };
            tenants.insert(name, Arc::new(TenantGate { keys, limiter }));
        }
        let mut routes = self.routes;
        for r in &routes {
            if !r.path_prefix.starts_with('/') {
                return Err(format!(
                    "route to {}/{}: path {:?} must start with '/'",
                    r.tenant, r.function, r.path_prefix
                ));
            }
        }
        let static_routes = std::mem::take(&mut routes);
        let host_generation = self.host.routes_generation();
        let routes = merge_routes(&static_routes, &self.host);
        let public = DashMap::new();
        for key in self.public {
            public.insert(key, ());
        }
        let storage_requests = storage_requests_counter(&self.host);
        Ok(Gateway {
            inner: Arc::new(Inner {
                host: self.host,
                admin_keys: self.admin_keys,
                tenants: RwLock::new(tenants),
                routes_generation: std::sync::atomic::AtomicU64::new(host_generation),
                routes: RwLock::new(routes),
                static_routes,
                public,
                recorded_limiters: DashMap::new(),
                max_body_bytes: self.max_body_bytes,
                ready: AtomicBool::new(true),
                dependencies: RwLock::default(),
                storage_requests,
                usage: self.usage,
            }),
        })
    }
}

/// What the gateway holds for a tenant declared to its builder (the
/// config file's keys, in memory only, and rate limit). Tenants created
/// through the admin API have their key hashes and rate limit in the
/// host's registry instead.
pub(crate) struct TenantGate {
    pub(crate) keys: Vec<String>,
    pub(crate) limiter: Option<DefaultDirectRateLimiter>,
}

/// A rate limiter built from a tenant's recorded rate limit, rebuilt when
/// the record changes.
pub(crate) struct RecordedLimiter {
    pub(crate) rate: nimbus_core::RateLimitRecord,
    pub(crate) limiter: DefaultDirectRateLimiter,
}

/// See [`Gateway::add_dependency`].
pub(crate) type Dependency = Arc<dyn Fn() -> Option<String> + Send + Sync>;

pub(crate) struct Inner {
    pub(crate) host: Host,
    pub(crate) admin_keys: Vec<String>,
    tenants: RwLock<HashMap<String, Arc<TenantGate>>>,
    routes: RwLock<Vec<Route>>,
    /// The host's routes generation `routes` was merged at.
    routes_generation: std::sync::atomic::AtomicU64,
    /// The builder's (config file's) routes.
    static_routes: Vec<Route>,
    public: DashMap<(String, String), ()>,
    pub(crate) recorded_limiters: DashMap<String, Arc<RecordedLimiter>>,
    max_body_bytes: usize,
    pub(crate) ready: AtomicBool,
    /// What this node depends on beyond itself (the NATS cluster), each
    /// with a check that says why it is unavailable, if it is.
    pub(crate) dependencies: RwLock<Vec<(String, Dependency)>>,
    pub(crate) storage_requests: nimbus_core::prometheus::IntCounterVec,
    pub(crate) usage: Option<crate::UsageService>,
}

/// The gateway; cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").finish_non_exhaustive()
    }
}

impl Gateway {
    pub fn builder(host: Host) -> GatewayBuilder {
        GatewayBuilder {
            host,
            admin_keys: Vec::new(),
            tenants: HashMap::new(),
            routes: Vec::new(),
            public: Vec::new(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            usage: None,
        }
    }

    pub fn host(&self) -> &Host {
        &self.inner.host
    }

    /// `/readyz` answers 503 once this is false (set when draining).
    pub fn set_ready(&self, ready: bool) {
        self.inner.ready.store(ready, Ordering::SeqCst);
    }

    /// Registers something this node needs for part of its work: while
    /// `check` returns a reason, `/readyz` still answers 200 (the node
    /// serves what needs none of it) and names it, and `/readyz/{name}`
    /// answers 503 with the reason.
    pub fn add_dependency(
        &self,
        name: &str,
        check: impl Fn() -> Option<String> + Send + Sync + 'static,
    ) {
        self.inner
            .dependencies
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push((name.to_string(), Arc::new(check)));
    }

    /// Each dependency that is unavailable now, with why.
    pub(crate) fn unavailable(&self) -> Vec<(String, String)> {
        self.inner
            .dependencies
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(|(name, check)| check().map(|why| (name.clone(), why)))
            .collect()
    }

    pub(crate) fn has_dependency(&self, name: &str) -> bool {
        self.inner
            .dependencies
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|(n, _)| n == name)
    }

    /// Public in the builder (the config file) or made public through the
    /// admin API (recorded with the function).
    pub(crate) fn is_public(&self, tenant: &str, function: &str) -> bool {
        self.inner.host.is_public(tenant, function)
            || self
                .inner
                .public
                .contains_key(&(tenant.to_string(), function.to_string()))
    }

    /// The limiter of a tenant's recorded rate limit, if it has one.
    pub(crate) fn recorded_limiter(&self, tenant: &str) -> Option<Arc<RecordedLimiter>> {
        let rate = self.inner.host.tenant_rate_limit(tenant)?;
        if let Some(l) = self.inner.recorded_limiters.get(tenant)
            && l.rate == rate
        {
            return Some(l.clone());
        }
        let per_second = NonZeroU32::new(rate.per_second)?;
        let burst = NonZeroU32::new(rate.burst.max(1)).unwrap_or(per_second);
        let l = Arc::new(RecordedLimiter {
            rate,
            limiter: RateLimiter::direct(Quota::per_second(per_second).allow_burst(burst)),
        });
        self.inner
            .recorded_limiters
            .insert(tenant.to_string(), l.clone());
        Some(l)
    }

    /// The route table, most specific first.
    pub(crate) fn route_table(&self) -> Vec<Route> {
        self.inner
            .routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Drops what the gateway cached of a deleted tenant (its recorded
    /// rate limiter); its builder-declared keys stay refused only if the
    /// host no longer knows it (invocations need its functions).
    pub(crate) fn forget_tenant(&self, tenant: &str) {
        self.inner.recorded_limiters.remove(tenant);
    }

    /// Rebuilds the route table from the builder's routes and the host's
    /// recorded ones (after the admin API changed those).
    pub(crate) fn refresh_routes(&self) {
        use std::sync::atomic::Ordering;
        let generation = self.inner.host.routes_generation();
        let merged = merge_routes(&self.inner.static_routes, &self.inner.host);
        *self.inner.routes.write().unwrap_or_else(|e| e.into_inner()) = merged;
        self.inner
            .routes_generation
            .store(generation, Ordering::Release);
    }

    /// The route table, first rebuilt if the host's routes changed since
    /// (on another node of a cluster, say).
    pub(crate) fn current_routes(&self) -> std::sync::RwLockReadGuard<'_, Vec<Route>> {
        use std::sync::atomic::Ordering;
        if self.inner.routes_generation.load(Ordering::Acquire)
            != self.inner.host.routes_generation()
        {
            self.refresh_routes();
        }
        self.inner.routes.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn tenant_gate(&self, tenant: &str) -> Option<Arc<TenantGate>> {
        self.inner
            .tenants
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(tenant)
            .cloned()
    }
}

/// The builder's routes and the host's recorded ones (the builder's win on
/// the same host and path), most specific first: host-bound before
/// host-less, longer prefixes first.
fn merge_routes(static_routes: &[Route], host: &Host) -> Vec<Route> {
    let mut routes = static_routes.to_vec();
    for r in host.routes() {
        if !routes
            .iter()
            .any(|s| s.host == r.host && s.path_prefix == r.path)
        {
            routes.push(Route {
                path_prefix: r.path,
                host: r.host,
                tenant: r.tenant,
                function: r.function,
                public: r.public,
            });
        }
    }
    routes.sort_by_key(|r| (r.host.is_none(), std::cmp::Reverse(r.path_prefix.len())));
    routes
}

/// `nimbus_storage_requests_total`, registered in the host's registry. A
/// second gateway over the same host cannot register it again: its
/// requests are then not counted (logged once, at its build).
fn storage_requests_counter(host: &Host) -> IntCounterVec {
    let counter = IntCounterVec::new(
        Opts::new(
            "nimbus_storage_requests_total",
            "Authorized storage API requests, by tenant and HTTP method.",
        ),
        &["tenant", "method"],
    )
    .expect("a valid metric definition");
    if let Err(e) = host.registry().register(Box::new(counter.clone())) {
        tracing::warn!(error = %e, "nimbus_storage_requests_total not registered: another gateway over this host counts storage requests");
    }
    counter
}
