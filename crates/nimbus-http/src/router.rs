//! The whole gateway as one router: the function routes, the admin,
//! storage and queue APIs, health and metrics.

use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{StatusCode, header};

use crate::gateway::{Gateway, invoke};
use crate::{admin, queues, storage, usage_api};

impl Gateway {
    /// The whole gateway as one router (functions, admin, metrics, health).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(readyz))
            .route("/readyz/{dependency}", get(readyz_dependency))
            .route("/metrics", get(metrics))
            .merge(admin::routes())
            .merge(storage::routes())
            .merge(queues::routes())
            .merge(usage_api::routes())
            .merge(crate::console::routes())
            .fallback(invoke::invoke)
            .with_state(self.clone())
    }
}

async fn readyz(State(gw): State<Gateway>) -> Response {
    if !gw.inner.ready.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response();
    }
    let down = gw.unavailable();
    if down.is_empty() {
        return (StatusCode::OK, "ready\n").into_response();
    }
    // Still 200: the node serves what needs none of them, and a load
    // balancer taking it out would lose that too.
    let names: Vec<String> = down.iter().map(|(n, why)| format!("{n} ({why})")).collect();
    (
        StatusCode::OK,
        format!("ready; unavailable: {}\n", names.join(", ")),
    )
        .into_response()
}

/// One dependency's readiness, for probes that need it.
async fn readyz_dependency(
    State(gw): State<Gateway>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Response {
    if !gw.has_dependency(&name) {
        return (StatusCode::NOT_FOUND, format!("no dependency `{name}`\n")).into_response();
    }
    match gw.unavailable().into_iter().find(|(n, _)| *n == name) {
        Some((_, why)) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response(),
        None => (StatusCode::OK, "ready\n").into_response(),
    }
}

async fn metrics(State(gw): State<Gateway>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        gw.inner.host.metrics_text(),
    )
        .into_response()
}
