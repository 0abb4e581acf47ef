//! The HTTP trigger of Nimbus: an API gateway in front of a [`Host`].
//!
//! [`Gateway::router`] is an axum `Router` an embedder mounts in its own
//! server (see `examples/gateway.rs`), or that `nimbus serve` runs on its own.
//! It serves:
//!
//! | route | what |
//! |---|---|
//! | `/{tenant}/{function}/{rest…}` | invoke a function (the default route) |
//! | configured routes | path prefix (and optional host) → function |
//! | `GET /metrics` | Prometheus text exposition of the host's registry |
//! | `GET /healthz`, `GET /readyz` | liveness; readiness (503 while draining) |
//! | `GET /console` | the usage console: a tenant's usage, cost and invocation logs in the browser, over the usage API |
//! | `/admin/v1/tenants/{tenant}/functions[/{name}]` | list, deploy (`PUT` a component), delete — admin key |
//! | `/storage/v1/{tenant}/{container}[/{key…}]` | object storage, S3-like — tenant key ([`storage`]) |
//! | `/queues/v1/{tenant}/{queue}[/messages]` | send to a durable queue, its stats — tenant key ([`queues`]) |
//! | `/admin/v1/tenants/{tenant}/queues/{queue}[/dead-letters\|/redrive]` | queue stats, dead letters, redrive — admin key |
//!
//! Functions are key-protected unless their route or the function is public:
//! `Authorization: Bearer <tenant key>`; a wrong or missing key is a 401 with
//! no invocation and no billing. Every invocation goes through the host core
//! (limits, usage record, billing counters). Status codes: 404 unknown route
//! or function, 413 body over the limit, 429 (with `Retry-After`) rate limit
//! or concurrency limit — counted as throttled —, 504 timeout, 500 trap or
//! resource limit, 502 a guest that produced no valid response. Every
//! response to an invocation carries `x-nimbus-invocation-id`; error bodies
//! are JSON with the invocation id and never guest internals.
//!
//! Storage and queue requests are not invocations and are never billed as
//! such. Their routes take precedence over the default route, so a
//! function `v1` of a tenant named `storage` or `queues` is reachable only
//! through a configured route.

// Handlers and their steps return `Result<_, Response>`: the refusal is the
// answer itself, built only when refusing, so boxing it gains nothing.
#![allow(clippy::result_large_err)]

mod admin;
mod auth;
mod console;
mod gateway;
pub mod queues;
mod request;
mod router;
pub mod server;
pub mod storage;
mod usage_api;

pub use admin::{GRANTS_HEADER, MAX_COMPONENT_UPLOAD_BYTES};
pub use gateway::{Gateway, GatewayBuilder, RateLimit, Route};
pub use usage_api::UsageService;

/// Response header carrying the invocation id.
pub const INVOCATION_ID_HEADER: &str = "x-nimbus-invocation-id";

/// Response header: the function version that ran the invocation.
pub const VERSION_HEADER: &str = "x-nimbus-function-version";

/// Response header: how the invocation ended (`success`, `trap`, … — the
/// usage record's `outcome`).
pub const OUTCOME_HEADER: &str = "x-nimbus-outcome";

/// Default request body limit: 6 MiB, as Lambda's synchronous payload.
pub const DEFAULT_MAX_BODY_BYTES: usize = 6 << 20;
