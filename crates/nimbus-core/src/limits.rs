use std::time::Duration;

/// What one tenant's invocations may use. Every field is a hard limit.
///
/// | field | default | enforced by |
/// |---|---|---|
/// | `fuel` | 10 000 000 000 (about 1 s of tight wasm on this machine) | wasmtime fuel: the invocation traps when it runs out |
/// | `max_memory_bytes` | 128 MiB | a `ResourceLimiter`: `memory.grow` past it fails |
/// | `timeout` | 10 s | a wall-clock deadline around instantiation and call |
/// | `max_concurrency` | 64 | admission: the next invocation is throttled |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fuel per invocation (about one unit per wasm instruction).
    pub fuel: u64,
    /// Linear memory per instance, summed over the instance's memories.
    pub max_memory_bytes: u64,
    /// Wall-clock deadline per invocation.
    pub timeout: Duration,
    /// Invocations of this tenant running at once.
    pub max_concurrency: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel: 10_000_000_000,
            max_memory_bytes: 128 << 20,
            timeout: Duration::from_secs(10),
            max_concurrency: 64,
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
}

/// Per-function overrides of the tenant's [`Limits`] (`None`: the tenant's
/// value). A function's `max_concurrency` applies in addition to the
/// tenant's: both must have a free slot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FunctionLimits {
    pub fuel: Option<u64>,
    pub max_memory_bytes: Option<u64>,
    pub timeout: Option<Duration>,
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
        }
    }
}
