//! What the integration tests share, so that a test file holds only what
//! its tests do and check:
//!
//! - [`host`]: hosts in temporary directories (ledger, data), restarts,
//!   bounded waits;
//! - [`deploy`]: the sample guests built from `guests/`, tenants, deploys
//!   and the grants they take;
//! - [`commands`]: invoking the command-line guests and what their answers
//!   must be;
//! - [`client`]: an HTTP client over real sockets, with tenant or admin
//!   keys;
//! - [`gateway`]: the gateway served on a loopback port, alone or over a
//!   fresh host;
//! - [`serve`]: the real `nimbus serve` binary on a config of its own;
//! - [`nats`]: a real `nats-server` with JetStream, killed and restarted;
//! - [`metrics`]: readers of the usage ledger and the exposition;
//! - [`objects`]: object uploads and reads as the storage API does them,
//!   and test images.

mod client;
mod commands;
mod deploy;
mod gateway;
mod host;
mod metrics;
mod nats;
mod objects;
mod serve;

pub use client::*;
pub use commands::*;
pub use deploy::*;
pub use gateway::*;
pub use host::*;
pub use metrics::*;
pub use nats::*;
pub use objects::*;
pub use serve::*;
