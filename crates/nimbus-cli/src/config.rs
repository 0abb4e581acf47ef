//! `nimbus.toml`: the server's one configuration file.
//!
//! ```toml
//! listen = "127.0.0.1:8080"          # default
//! ledger = "nimbus-usage"            # relative to this file: a directory of
//!                                    # nimbus-usage-YYYY-MM-DD[.N].jsonl files (see
//!                                    # [usage]); a path ending in .jsonl is one file, never rotated
//! data_dir = "nimbus-data"           # relative to this file: the deployment registry,
//!                                    # logs, key-value, blobs, queues, files
//! compile_cache = "nimbus-data/compiled"  # compiled components, reused across
//!                                    # restarts; default <data_dir>/compiled,
//!                                    # false: compile every component at every start
//! admin_keys = ["change-me"]         # admin API disabled without one
//! max_body_bytes = 6291456           # request body limit (413 above)
//! drain_timeout_ms = 10000           # graceful shutdown bound
//!
//! [connections]                      # every key optional
//! max_connections = 10000            # open at once (default: 10000 or 3/4 of ulimit -n)
//! header_read_timeout_ms = 10000     # first byte of a request to the end of its head
//! keep_alive_timeout_ms = 60000      # idle: no request in flight, no byte moving
//! body_read_timeout_ms = 30000       # end of the head to the end of the body (408)
//!
//! [pool]                             # the instance pool; every key optional
//! max_instances = 256                # instances alive at once, host-wide
//! max_memory_bytes = 4294967296      # largest linear memory of any instance
//! memory_keep_resident = 4194304     # bytes of each memory slot reset in place
//! table_keep_resident = 65536        # the same for tables
//! pagemap_scan = true                # reset only dirtied pages (Linux 6.7+)
//! admission_wait_ms = 1000           # pool full: a tenant under its share waits
//!
//! [usage]                            # the ledger directory and billing; every key optional
//! rotate_bytes = 134217728           # a file is closed at this size (and at each UTC day)
//! compress = false                   # gzip closed files (.jsonl.gz)
//! retain_days = 0                    # delete files of days older than this; 0: keep every file
//! storage_sample_s = 3600            # kv/blob stored bytes sampled for GB-month billing
//! prices = "prices.toml"             # price sheet for the usage API and console (docs/billing.md)
//!
//! [cluster]                          # optional: join a NATS JetStream cluster
//! urls = ["nats://127.0.0.1:4222"]   # any of the cluster's servers
//! credentials = "nimbus.creds"       # a NATS .creds file, if the servers ask
//! node = "node-a"                    # default: the host name
//! replicas = 3                       # of every stream Nimbus creates (default 1)
//! usage_stream_max_bytes = 1073741824
//! kv_max_bytes = 8589934592          # the shared key-value bucket
//!
//! [tenants.acme]
//! api_keys = ["acme-secret"]
//! fuel = 10000000000                 # every limit optional: core defaults
//! max_memory_bytes = 134217728
//! timeout_ms = 10000
//! max_concurrency = 64
//! max_kv_bytes = 1073741824          # key-value storage quota
//! max_blob_bytes = 10737418240       # blob storage quota
//! max_tenant_memory_bytes = 4294967296 # running instances' memory, together
//! cpu_weight = 1                     # CPU share when tenants compete
//! rate_limit_per_second = 100        # token bucket; omit for none
//! rate_limit_burst = 200
//!
//! [[functions]]
//! tenant = "acme"
//! name = "hello"
//! component = "target/guests/hello-http.wasm"   # relative to this file
//! public = false                     # invocable without a key everywhere
//! timeout_ms = 2000                  # per-function overrides: fuel,
//!                                    # max_memory_bytes, timeout_ms, max_concurrency
//! outbound_hosts = ["api.example.com", "127.0.0.1:9000"]   # grant: outbound HTTP
//! kv_stores = ["counters"]           # grant: wasi:keyvalue stores
//! directory = true                   # grant: <data_dir>/files/<tenant> at /data
//! blob_containers = ["uploads"]      # grant: wasi:blobstore containers (created)
//! topics = ["orders"]                # grant: publish to these queues
//! [functions.config]                 # grant: wasi:config/store values
//! greeting = "hello"
//!
//! [[object_triggers]]                # run a function per object written
//! tenant = "acme"
//! function = "thumbnail"
//! container = "uploads"              # created if missing
//! prefix = ""                        # optional key filters
//! suffix = ".jpg"
//!
//! [[queue_triggers]]                 # run a function per queued message
//! tenant = "acme"
//! function = "worker"
//! queue = "orders"
//! batch_size = 10                    # received and run at once
//! visibility_timeout_ms = 30000      # must exceed the function's timeout
//! max_receive_count = 5              # then the message is dead-lettered
//! backoff_base_ms = 1000             # retry delay, doubling per attempt
//! backoff_max_ms = 60000
//!
//! [[schedules]]
//! tenant = "acme"
//! function = "report"
//! cron = "0 */5 * * * *"             # 5 fields, or 6 with seconds first
//! timezone = "Europe/Paris"          # default UTC
//! catch_up = true                    # run once at start if a tick was missed
//!
//! [[routes]]
//! path = "/hello"                    # prefix, on segment boundaries
//! host = "api.example.com"           # optional
//! tenant = "acme"
//! function = "hello"
//! public = true
//! ```
//!
//! Every error names the file, the key and what is wrong.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nimbus_core::{FunctionLimits, Limits};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    #[serde(default = "default_ledger")]
    pub ledger: PathBuf,
    /// Embedded backends' data (key-value database), relative to this file.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Where compiled components are kept (see [`Config::compile_cache_dir`]).
    pub compile_cache: Option<CompileCacheConfig>,
    #[serde(default)]
    pub admin_keys: Vec<String>,
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    #[serde(default = "default_drain")]
    pub drain_timeout_ms: u64,
    #[serde(default)]
    pub connections: ConnectionSettings,
    #[serde(default)]
    pub pool: PoolSettings,
    #[serde(default)]
    pub usage: UsageSettings,
    /// Joins a NATS JetStream cluster (see `nimbus_nats`); embedded alone
    /// without it.
    pub cluster: Option<nimbus_nats::ClusterConfig>,
    #[serde(default)]
    pub tenants: BTreeMap<String, TenantConfig>,
    #[serde(default)]
    pub functions: Vec<FunctionConfig>,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    #[serde(default)]
    pub object_triggers: Vec<ObjectTriggerConfig>,
    #[serde(default)]
    pub queue_triggers: Vec<QueueTriggerConfig>,
    #[serde(default)]
    pub schedules: Vec<ScheduleConfig>,
    /// Directory of the config file; relative paths resolve against it.
    #[serde(skip)]
    pub base: PathBuf,
}

/// `[connections]`: [`nimbus_http::server::ConnectionLimits`]; what is left
/// out keeps its default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionSettings {
    pub max_connections: Option<usize>,
    pub header_read_timeout_ms: Option<u64>,
    pub keep_alive_timeout_ms: Option<u64>,
    pub body_read_timeout_ms: Option<u64>,
}

impl ConnectionSettings {
    pub fn limits(&self) -> nimbus_http::server::ConnectionLimits {
        let d = nimbus_http::server::ConnectionLimits::default();
        let ms = |v: Option<u64>, d: Duration| v.map_or(d, Duration::from_millis);
        nimbus_http::server::ConnectionLimits {
            max_connections: self.max_connections.unwrap_or(d.max_connections),
            header_read_timeout: ms(self.header_read_timeout_ms, d.header_read_timeout),
            keep_alive_timeout: ms(self.keep_alive_timeout_ms, d.keep_alive_timeout),
            body_read_timeout: ms(self.body_read_timeout_ms, d.body_read_timeout),
        }
    }
}

/// `[pool]`: the pooling allocator's sizes ([`nimbus_core::PoolConfig`]);
/// what is left out keeps the core's default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSettings {
    pub max_instances: Option<u32>,
    pub max_memory_bytes: Option<u64>,
    pub memory_keep_resident: Option<usize>,
    pub table_keep_resident: Option<usize>,
    pub pagemap_scan: Option<bool>,
    pub admission_wait_ms: Option<u64>,
}

impl PoolSettings {
    pub fn config(&self) -> nimbus_core::PoolConfig {
        let d = nimbus_core::PoolConfig::default();
        nimbus_core::PoolConfig {
            max_instances: self.max_instances.unwrap_or(d.max_instances),
            max_memory_bytes: self.max_memory_bytes.unwrap_or(d.max_memory_bytes),
            memory_keep_resident: self.memory_keep_resident.unwrap_or(d.memory_keep_resident),
            table_keep_resident: self.table_keep_resident.unwrap_or(d.table_keep_resident),
            pagemap_scan: self.pagemap_scan.unwrap_or(d.pagemap_scan),
            admission_wait: self
                .admission_wait_ms
                .map_or(d.admission_wait, std::time::Duration::from_millis),
            ..d
        }
    }
}

/// `[usage]`: how the ledger directory rotates, storage sampling, and the
/// price sheet the usage API prices with.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageSettings {
    #[serde(default = "default_rotate_bytes")]
    pub rotate_bytes: u64,
    #[serde(default)]
    pub compress: bool,
    /// 0 keeps every file.
    #[serde(default)]
    pub retain_days: u32,
    #[serde(default = "default_storage_sample_s")]
    pub storage_sample_s: u64,
    /// Relative to the config file.
    pub prices: Option<PathBuf>,
}

impl Default for UsageSettings {
    fn default() -> Self {
        Self {
            rotate_bytes: default_rotate_bytes(),
            compress: false,
            retain_days: 0,
            storage_sample_s: default_storage_sample_s(),
            prices: None,
        }
    }
}

impl UsageSettings {
    pub fn retain(&self) -> Option<u32> {
        (self.retain_days > 0).then_some(self.retain_days)
    }
}

fn default_rotate_bytes() -> u64 {
    nimbus_core::ledger::Rotation::default().max_file_bytes
}
fn default_storage_sample_s() -> u64 {
    3600
}

impl Config {
    /// Whether `ledger` names one file (`*.jsonl`, never rotated, as before
    /// ledgers rotated) rather than a directory of rotated files.
    pub fn ledger_is_file(&self) -> bool {
        self.ledger
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(".jsonl"))
    }
}

/// `compile_cache = "DIR"`, or `true` (the default, `<data_dir>/compiled`)
/// or `false` (none).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum CompileCacheConfig {
    Enabled(bool),
    Dir(PathBuf),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    #[serde(default)]
    pub api_keys: Vec<String>,
    pub fuel: Option<u64>,
    pub max_memory_bytes: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub max_concurrency: Option<u32>,
    pub max_kv_bytes: Option<u64>,
    pub max_blob_bytes: Option<u64>,
    pub max_tenant_memory_bytes: Option<u64>,
    pub cpu_weight: Option<u32>,
    pub rate_limit_per_second: Option<u32>,
    pub rate_limit_burst: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionConfig {
    pub tenant: String,
    pub name: String,
    pub component: PathBuf,
    #[serde(default)]
    pub public: bool,
    pub fuel: Option<u64>,
    pub max_memory_bytes: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub max_concurrency: Option<u32>,
    /// Grant: the function's `wasi:config/store` values (its only keys).
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Grant: hosts outbound HTTP may reach (`name` or `name:port`).
    #[serde(default)]
    pub outbound_hosts: Vec<String>,
    /// Grant: key-value stores the function may open (in its tenant).
    #[serde(default)]
    pub kv_stores: Vec<String>,
    /// Grant: the tenant's directory, preopened at `/data`.
    #[serde(default)]
    pub directory: bool,
    /// Grant: blob containers the function may use (in its tenant).
    #[serde(default)]
    pub blob_containers: Vec<String>,
    /// Grant: queues the function may publish to (in its tenant).
    #[serde(default)]
    pub topics: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub path: String,
    pub host: Option<String>,
    pub tenant: String,
    pub function: String,
    #[serde(default)]
    pub public: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectTriggerConfig {
    pub tenant: String,
    pub function: String,
    pub container: String,
    #[serde(default)]
    pub prefix: String,
    #[serde(default)]
    pub suffix: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueTriggerConfig {
    pub tenant: String,
    pub function: String,
    pub queue: String,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    pub visibility_timeout_ms: Option<u64>,
    pub max_receive_count: Option<u32>,
    pub backoff_base_ms: Option<u64>,
    pub backoff_max_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    pub tenant: String,
    pub function: String,
    pub cron: String,
    pub timezone: Option<String>,
    #[serde(default = "default_true")]
    pub catch_up: bool,
}

fn default_batch() -> usize {
    10
}
fn default_true() -> bool {
    true
}

impl QueueTriggerConfig {
    pub fn trigger(&self) -> nimbus_triggers::QueueTrigger {
        let d = nimbus_core::nimbus_queue::QueueConfig::default();
        let ms = Duration::from_millis;
        nimbus_triggers::QueueTrigger {
            tenant: self.tenant.clone(),
            function: self.function.clone(),
            queue: self.queue.clone(),
            batch_size: self.batch_size,
            config: nimbus_core::nimbus_queue::QueueConfig {
                visibility_timeout: self.visibility_timeout_ms.map_or(d.visibility_timeout, ms),
                max_receive_count: self.max_receive_count.unwrap_or(d.max_receive_count),
                backoff_base: self.backoff_base_ms.map_or(d.backoff_base, ms),
                backoff_max: self.backoff_max_ms.map_or(d.backoff_max, ms),
                ..d
            },
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_ledger() -> PathBuf {
    PathBuf::from("nimbus-usage")
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("nimbus-data")
}
fn default_max_body() -> usize {
    nimbus_http::DEFAULT_MAX_BODY_BYTES
}
fn default_drain() -> u64 {
    10_000
}

impl TenantConfig {
    pub fn limits(&self) -> Limits {
        let d = Limits::default();
        Limits {
            fuel: self.fuel.unwrap_or(d.fuel),
            max_memory_bytes: self.max_memory_bytes.unwrap_or(d.max_memory_bytes),
            timeout: self.timeout_ms.map_or(d.timeout, Duration::from_millis),
            max_concurrency: self.max_concurrency.unwrap_or(d.max_concurrency),
            max_kv_bytes: self.max_kv_bytes.unwrap_or(d.max_kv_bytes),
            max_blob_bytes: self.max_blob_bytes.unwrap_or(d.max_blob_bytes),
            max_tenant_memory_bytes: self
                .max_tenant_memory_bytes
                .unwrap_or(d.max_tenant_memory_bytes),
            cpu_weight: self.cpu_weight.unwrap_or(d.cpu_weight).max(1),
        }
    }

    pub fn rate_limit(&self) -> Option<nimbus_http::RateLimit> {
        self.rate_limit_per_second
            .map(|per_second| nimbus_http::RateLimit {
                per_second,
                burst: self.rate_limit_burst.unwrap_or(per_second),
            })
    }
}

impl FunctionConfig {
    pub fn overrides(&self) -> FunctionLimits {
        FunctionLimits {
            fuel: self.fuel,
            max_memory_bytes: self.max_memory_bytes,
            timeout: self.timeout_ms.map(Duration::from_millis),
            max_concurrency: self.max_concurrency,
        }
    }

    /// Limit overrides and grants, as the host core takes them.
    pub fn spec(&self) -> nimbus_core::FunctionConfig {
        nimbus_core::FunctionConfig {
            limits: self.overrides(),
            config: self.config.clone(),
            outbound_hosts: self.outbound_hosts.clone(),
            kv_stores: self.kv_stores.clone(),
            directory: self.directory,
            blob_containers: self.blob_containers.clone(),
            topics: self.topics.clone(),
        }
    }
}

impl Config {
    /// Reads and checks `path`. Errors read `FILE: KEY: problem`.
    pub fn load(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        let mut config: Config = toml::from_str(&text)
            .map_err(|e| format!("{}: {}", path.display(), e.to_string().trim_end()))?;
        config.base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        config
            .check()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(config)
    }

    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    /// The compile cache's directory, resolved: `compile_cache`, by default
    /// `<data_dir>/compiled`; `None` if `compile_cache = false`.
    pub fn compile_cache_dir(&self) -> Option<PathBuf> {
        match &self.compile_cache {
            None | Some(CompileCacheConfig::Enabled(true)) => {
                Some(self.resolve(&self.data_dir).join("compiled"))
            }
            Some(CompileCacheConfig::Enabled(false)) => None,
            Some(CompileCacheConfig::Dir(dir)) => Some(self.resolve(dir)),
        }
    }

    fn check(&self) -> Result<(), String> {
        if self.usage.rotate_bytes < 4096 {
            return Err(format!(
                "usage.rotate_bytes: {} is too small (at least 4096: a file holds a few records)",
                self.usage.rotate_bytes
            ));
        }
        if self.usage.storage_sample_s == 0 {
            return Err("usage.storage_sample_s: must be above 0".into());
        }
        if self.usage.compress && self.ledger_is_file() {
            return Err(format!(
                "usage.compress: the ledger {} is one file, never closed; name a directory to rotate and compress",
                self.ledger.display()
            ));
        }
        if self.pool.max_instances == Some(0) {
            return Err("pool.max_instances: must be above 0".into());
        }
        let c = &self.connections;
        if c.max_connections == Some(0) {
            return Err("connections.max_connections: must be above 0".into());
        }
        for (key, v) in [
            ("header_read_timeout_ms", c.header_read_timeout_ms),
            ("keep_alive_timeout_ms", c.keep_alive_timeout_ms),
            ("body_read_timeout_ms", c.body_read_timeout_ms),
        ] {
            if v == Some(0) {
                return Err(format!("connections.{key}: must be above 0"));
            }
        }
        if let Some(CompileCacheConfig::Dir(dir)) = &self.compile_cache
            && dir.as_os_str().is_empty()
        {
            return Err(
                "compile_cache: an empty path; name a directory, or `false` for no cache".into(),
            );
        }
        for (name, t) in &self.tenants {
            if t.rate_limit_per_second == Some(0) {
                return Err(format!(
                    "tenants.{name}.rate_limit_per_second: must be above 0"
                ));
            }
            if t.rate_limit_burst.is_some() && t.rate_limit_per_second.is_none() {
                return Err(format!(
                    "tenants.{name}.rate_limit_burst: set rate_limit_per_second too"
                ));
            }
            if t.api_keys.iter().any(|k| k.trim().is_empty()) {
                return Err(format!("tenants.{name}.api_keys: keys must not be empty"));
            }
        }
        if self.admin_keys.iter().any(|k| k.trim().is_empty()) {
            return Err("admin_keys: keys must not be empty".into());
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, f) in self.functions.iter().enumerate() {
            let at = format!("functions[{i}] ({}/{})", f.tenant, f.name);
            if !self.tenants.contains_key(&f.tenant) {
                return Err(format!(
                    "{at}.tenant: tenant `{}` is not declared under [tenants]",
                    f.tenant
                ));
            }
            if !seen.insert((&f.tenant, &f.name)) {
                return Err(format!("{at}.name: declared twice"));
            }
            let component = self.resolve(&f.component);
            if !component.is_file() {
                return Err(format!(
                    "{at}.component: {} does not exist (build the sample guests with \
                     `cargo run -p nimbus-guests`)",
                    component.display()
                ));
            }
        }
        let declared = |at: &str, tenant: &str, function: &str| -> Result<(), String> {
            if seen.contains(&(&tenant.to_string(), &function.to_string())) {
                Ok(())
            } else {
                Err(format!(
                    "{at}.function: `{tenant}/{function}` is not declared under [[functions]]"
                ))
            }
        };
        for (i, t) in self.object_triggers.iter().enumerate() {
            declared(&format!("object_triggers[{i}]"), &t.tenant, &t.function)?;
        }
        for (i, t) in self.queue_triggers.iter().enumerate() {
            declared(&format!("queue_triggers[{i}]"), &t.tenant, &t.function)?;
        }
        for (i, t) in self.schedules.iter().enumerate() {
            declared(&format!("schedules[{i}]"), &t.tenant, &t.function)?;
        }
        for (i, r) in self.routes.iter().enumerate() {
            let at = format!("routes[{i}]");
            if !r.path.starts_with('/') {
                return Err(format!("{at}.path: {:?} must start with '/'", r.path));
            }
            if !seen.contains(&(&r.tenant, &r.function)) {
                return Err(format!(
                    "{at}.function: `{}/{}` is not declared under [[functions]]",
                    r.tenant, r.function
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, String> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f.wasm"), b"\0asm").unwrap();
        let path = dir.path().join("nimbus.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(&path).map_err(|e| e.replace(&path.display().to_string(), "FILE"))
    }

    #[test]
    fn errors_name_the_file_the_key_and_the_problem() {
        let e = load("listen = 5\n").unwrap_err();
        assert!(e.starts_with("FILE: ") && e.contains("listen"), "{e}");
        let e = load("[tenants.a]\nfuel = \"lots\"\n").unwrap_err();
        assert!(e.contains("fuel"), "{e}");
        let e = load("bogus = 1\n").unwrap_err();
        assert!(e.contains("unknown field `bogus`"), "{e}");
        let e = load("[[functions]]\ntenant = \"x\"\nname = \"f\"\ncomponent = \"f.wasm\"\n")
            .unwrap_err();
        assert!(
            e.contains("functions[0] (x/f).tenant: tenant `x` is not declared"),
            "{e}"
        );
        let e = load(
            "[tenants.x]\n[[functions]]\ntenant = \"x\"\nname = \"f\"\ncomponent = \"nope.wasm\"\n",
        )
        .unwrap_err();
        assert!(
            e.contains("functions[0] (x/f).component:") && e.contains("does not exist"),
            "{e}"
        );
        let e = load("[tenants.x]\n[[routes]]\npath = \"/a\"\ntenant = \"x\"\nfunction = \"f\"\n")
            .unwrap_err();
        assert!(
            e.contains("routes[0].function: `x/f` is not declared"),
            "{e}"
        );
    }

    #[test]
    fn the_compile_cache_is_a_directory_or_off() {
        let c = load("data_dir = \"d\"\ncompile_cache = true\n").unwrap();
        assert_eq!(
            c.compile_cache_dir(),
            Some(c.base.join("d").join("compiled"))
        );
        let c = load("compile_cache = \"/var/cache/nimbus\"\n").unwrap();
        assert_eq!(
            c.compile_cache_dir(),
            Some(PathBuf::from("/var/cache/nimbus"))
        );
        let c = load("compile_cache = \"cache\"\n").unwrap();
        assert_eq!(c.compile_cache_dir(), Some(c.base.join("cache")));
        let c = load("compile_cache = false\n").unwrap();
        assert_eq!(c.compile_cache_dir(), None);
        let e = load("compile_cache = \"\"\n").unwrap_err();
        assert!(e.contains("compile_cache: an empty path"), "{e}");
        let e = load("compile_cache = 3\n").unwrap_err();
        assert!(e.contains("compile_cache"), "{e}");
    }

    #[test]
    fn a_full_config_loads_with_defaults() {
        let c = load(
            "admin_keys = [\"k\"]\n[tenants.x]\napi_keys = [\"a\"]\nrate_limit_per_second = 5\n\
             [[functions]]\ntenant = \"x\"\nname = \"f\"\ncomponent = \"f.wasm\"\ntimeout_ms = 50\n\
             [[routes]]\npath = \"/a\"\ntenant = \"x\"\nfunction = \"f\"\npublic = true\n",
        )
        .unwrap();
        assert_eq!(c.listen, default_listen());
        assert_eq!(
            c.compile_cache_dir(),
            Some(c.base.join("nimbus-data").join("compiled"))
        );
        assert_eq!(c.tenants["x"].rate_limit().unwrap().burst, 5);
        assert_eq!(
            c.functions[0].overrides().timeout,
            Some(Duration::from_millis(50))
        );
    }
}
