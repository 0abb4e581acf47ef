//! The Nimbus host core: deploy WebAssembly components per tenant, run each
//! invocation in a fresh, metered instance, and bill it.
//!
//! ```no_run
//! use nimbus_core::{Event, Host, Limits};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let host = Host::builder().ledger_path("usage.jsonl").build()?;
//! host.add_tenant("acme", Limits::default().fuel(50_000_000))?;
//! let wasm = std::fs::read("target/guests/echo.wasm")?;
//! let echo = host.deploy("acme", "echo", &wasm).await?;
//!
//! let done = echo.invoke(Event::new("demo.ping", "/demo", b"hello".to_vec())).await?;
//! assert_eq!(done.response.data, b"hello");
//! println!("fuel {} billed {} ms", done.usage.fuel_consumed, done.usage.billed_duration_ms);
//! println!("{}", host.metrics_text());
//! # Ok(()) }
//! ```
//!
//! Everything not granted is denied: guests get wall and monotonic clocks,
//! random bytes, an empty environment, no stdin, and stdout/stderr captured
//! per invocation ([`Logs`]). All of WASI 0.2 is linked so standard
//! components deploy, but the filesystem has no directories unless granted
//! and every socket is refused inside the guest; an import no capability
//! provides is refused at deploy, before compiling, naming the import.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod admission;
mod builder;
mod call;
mod capabilities;
mod capability;
mod compile_cache;
mod deploy;
mod error;
mod event;
mod function;
mod host;
mod inspect;
mod invoke;
pub mod ledger;
mod limits;
mod log_store;
mod logs;
mod metrics;
mod outcome;
mod registry;
mod report;
mod restore;
mod runtime;
mod scheduler;
mod services;
mod state;
mod sync;
mod tenant;
mod usage;
mod versions;

pub use builder::{HostBuilder, PoolConfig};
pub use error::Error;
pub use event::{Event, GuestError, Response};
pub use function::{FunctionHandle, HttpInvocation, Invocation};
pub use host::Host;
pub use registry::{
    AliasRecord, DeploymentRegistry, FunctionRecord, KeyRecord, RateLimitRecord, RedbRegistry,
    RegistryError, RouteRecord, Snapshot, TenantRecord, VersionRecord, Weighted,
};
pub use report::Report;
pub use sync::RegistryChange;
pub use versions::{KEPT_UNREFERENCED_VERSIONS, LIVE, LoadingGuard, Selector};

/// Re-exported for building HTTP requests and responses.
pub use bytes::Bytes;
pub use http;
pub use limits::{FunctionConfig, FunctionLimits, Limits};
pub use log_store::LogReplica;
pub use logs::{InvocationLogs, LogEntry, Logs, REFUSED_WRITES_BEFORE_TRAP};
pub use usage::{Cause, JsonLinesLedger, MemoryLedger, Outcome, Trigger, UsageRecord, UsageSink};

/// Blob backends: implement [`nimbus_blob::BlobBackend`] to plug in another.
pub use nimbus_blob;
/// Key-value backends: implement [`nimbus_kv::KvBackend`] to plug in another.
pub use nimbus_kv;
/// The durable queues behind messaging and the queue trigger.
pub use nimbus_queue;

/// Re-exported so embedders use the same version Nimbus registers into.
pub use prometheus;
/// Re-exported for [`LogReplica`] implementations (invocation ids).
pub use uuid;
