//! The whole gateway as one router: the function routes, the admin,
//! storage and queue APIs, health and metrics.

use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{StatusCode, header};

use crate::gateway::{Gateway, invoke};
use crate::{admin, queues, storage};

impl Gateway {
    /// The whole gateway as one router (functions, admin, metrics, health).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .merge(admin::routes())
            .merge(storage::routes())
            .merge(queues::routes())
            .fallback(invoke::invoke)
            .with_state(self.clone())
    }
}

async fn readyz(State(gw): State<Gateway>) -> Response {
    if gw.inner.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
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
