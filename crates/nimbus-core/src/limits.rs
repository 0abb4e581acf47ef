use std::collections::BTreeMap;
use std::time::Duration;

/// What one tenant's invocations may use. Every field is a hard limit.
///
/// | field | default | enforced by |
/// |---|---|---|
/// | `fuel` | 10 000 000 000 (about 1 s of tight wasm on this machine) | wasmtime fuel: the invocation traps when it runs out |
/// | `max_memory_bytes` | 128 MiB | a `ResourceLimiter`: `memory.grow` past it fails |
/// | `timeout` | 10 s | a wall-clock deadline around instantiation and call |
/// | `max_concurrency` | 64 | admission: the next invocation is throttled |
/// | `max_kv_bytes` | 1 GiB | key-value writes past it fail (`other`, naming the quota), nothing is written |
/// | `max_blob_bytes` | 10 GiB | blob writes past it fail (naming the quota), nothing is written |
/// | `cpu_weight` | 1 | the fair CPU scheduler: tenants competing for the host's guest threads get CPU time in proportion to their weights |
/// | `max_tenant_memory_bytes` | 4 GiB | admission: while the tenant's running instances hold this much linear memory together, its next invocation is throttled (running ones are never killed for it) |
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Fuel per invocation (about one unit per wasm instruction).
    pub fuel: u64,
    /// Linear memory per instance, summed over the instance's memories.
    pub max_memory_bytes: u64,
    /// Wall-clock deadline per invocation.
    #[serde(rename = "timeout_ms", with = "millis")]
    pub timeout: Duration,
    /// Invocations of this tenant running at once.
    pub max_concurrency: u32,
    /// Bytes (keys + values) the tenant may keep in key-value stores.
    pub max_kv_bytes: u64,
    /// Most bytes of blob objects the tenant may store (default 10 GiB).
    pub max_blob_bytes: u64,
    /// Linear memory of all the tenant's running instances together, at
    /// which its new invocations are throttled (default 4 GiB: 32 instances
    /// at the default 128 MiB each). Tenant-wide: a function's override of
    /// it is ignored.
    pub max_tenant_memory_bytes: u64,
    /// Share of the CPU when tenants compete (default 1: equal shares).
    /// Tenant-wide, like `max_tenant_memory_bytes`.
    pub cpu_weight: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel: 10_000_000_000,
            max_memory_bytes: 128 << 20,
            timeout: Duration::from_secs(10),
            max_concurrency: 64,
            max_kv_bytes: 1 << 30,
            max_blob_bytes: 10 << 30,
            max_tenant_memory_bytes: 4 << 30,
            cpu_weight: 1,
        }
    }
}

impl Limits {
    #[must_use]
    pub fn fuel(mut self, fuel: u64) -> Self {
        self.fuel = fuel;
        self
    }

    #[must_use]
    pub fn max_memory_bytes(mut self, bytes: u64) -> Self {
        self.max_memory_bytes = bytes;
        self
    }

    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    #[must_use]
    pub fn max_concurrency(mut self, n: u32) -> Self {
        self.max_concurrency = n;
        self
    }

    #[must_use]
    pub fn max_kv_bytes(mut self, bytes: u64) -> Self {
        self.max_kv_bytes = bytes;
        self
    }

    #[must_use]
    pub fn max_blob_bytes(mut self, bytes: u64) -> Self {
        self.max_blob_bytes = bytes;
        self
    }

    #[must_use]
    pub fn cpu_weight(mut self, weight: u32) -> Self {
        self.cpu_weight = weight.max(1);
        self
    }

    #[must_use]
    pub fn max_tenant_memory_bytes(mut self, bytes: u64) -> Self {
        self.max_tenant_memory_bytes = bytes;
        self
    }
}

/// Per-function overrides of the tenant's [`Limits`] (`None`: the tenant's
/// value). A function's `max_concurrency` applies in addition to the
/// tenant's: both must have a free slot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FunctionLimits {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_memory_bytes: Option<u64>,
    #[serde(
        rename = "timeout_ms",
        with = "millis_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
}

impl FunctionLimits {
    /// The tenant's limits with these overrides applied.
    pub fn apply(&self, tenant: Limits) -> Limits {
        Limits {
            fuel: self.fuel.unwrap_or(tenant.fuel),
            max_memory_bytes: self.max_memory_bytes.unwrap_or(tenant.max_memory_bytes),
            timeout: self.timeout.unwrap_or(tenant.timeout),
            max_concurrency: self.max_concurrency.unwrap_or(tenant.max_concurrency),
            max_blob_bytes: tenant.max_blob_bytes,
            // A storage quota belongs to the tenant, not to one function.
            max_kv_bytes: tenant.max_kv_bytes,
            max_tenant_memory_bytes: tenant.max_tenant_memory_bytes,
            cpu_weight: tenant.cpu_weight,
        }
    }
}

/// Everything a deploy can say about one function: limit overrides and
/// grants. Anything not granted is denied.
///
/// Serialized (in the registry, and the admin API's version listing) with
/// the grants under the same keys as the config file and the
/// `x-nimbus-grants` header.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FunctionConfig {
    pub limits: FunctionLimits,
    /// The function's `wasi:config/store` values: the only keys it can read.
    /// A component importing `wasi:config/store` is refused at deploy when
    /// this is empty. Values are never logged.
    pub config: BTreeMap<String, String>,
    /// Hosts outbound HTTP (`wasi:http/outgoing-handler`) may reach: `name`
    /// (any port) or `name:port`. Requests elsewhere fail with
    /// `HTTP-request-denied`, which the guest can handle.
    pub outbound_hosts: Vec<String>,
    /// Key-value stores (`wasi:keyvalue`) the function may open, by name,
    /// inside its tenant's namespace. A component importing `wasi:keyvalue`
    /// is refused at deploy when this is empty; opening another name fails
    /// with `access-denied`.
    pub kv_stores: Vec<String>,
    /// Preopen the tenant's own directory (`<data_dir>/files/<tenant>`) at
    /// `/data` in the guest (`wasi:filesystem`, sandboxed by cap-std: no
    /// escape through `..`, absolute paths or symlinks). Without it the
    /// guest's filesystem has no directories at all.
    pub directory: bool,
    /// Blob containers (`wasi:blobstore`) the function may use, by name,
    /// inside its tenant's namespace; created at deploy if missing. A
    /// component importing `wasi:blobstore` is refused at deploy when this
    /// is empty; any other container fails with a permission error.
    pub blob_containers: Vec<String>,
    /// Topics (the tenant's durable queues) the function may publish to
    /// through `wasmcloud:messaging/producer`. A component importing it is
    /// refused at deploy when this is empty; other topics fail with
    /// `permission-denied`.
    pub topics: Vec<String>,
}

impl From<FunctionLimits> for FunctionConfig {
    fn from(limits: FunctionLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }
}

/// A `Duration` as whole milliseconds, as every `*_ms` key of the config
/// file and the admin API has it.
mod millis {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        <u64 as serde::Deserialize>::deserialize(d).map(Duration::from_millis)
    }
}

mod millis_opt {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::millis::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        <Option<u64> as serde::Deserialize>::deserialize(d).map(|o| o.map(Duration::from_millis))
    }
}
