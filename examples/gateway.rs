//! Mounting the Nimbus API gateway in your own axum server, next to your own
//! routes.
//!
//! [`Gateway::router`] is a plain `axum::Router` with its state applied, so
//! it composes like any other. With axum 0.8 there are two ways:
//!
//! - `Router::new().route("/", …).nest_service("/fn", gateway.router())`:
//!   everything under `/fn` goes to the gateway with the prefix stripped, so
//!   `/fn/acme/hello` invokes tenant `acme`'s function `hello`, and the
//!   gateway's `/metrics`, `/healthz` and admin API live under `/fn` too.
//!   Your own fallback (404) still answers everything else. This example
//!   does that. (`Router::nest` works the same way; `nest_service` is used
//!   because it treats the gateway as an opaque service.)
//! - `Router::new().route("/", …).merge(gateway.router())`: the gateway's
//!   routes sit at the root next to yours, and its fallback (the default
//!   route `/{tenant}/{function}/…`) takes every path you do not route. Your
//!   router must not have a fallback of its own: axum refuses to merge two.
//!
//! Run with `cargo run --example gateway` and try
//! `curl http://ADDR/` and `curl http://ADDR/fn/acme/hello`; or with
//! `cargo run --example gateway -- --self-test`, which sends one request
//! through each router and exits (non-zero if either answer is wrong).

use std::future::IntoFuture;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use nimbus_core::{Host, Limits};
use nimbus_http::Gateway;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let self_test = std::env::args().any(|a| a == "--self-test");

    // The sample guests, compiled from guests/ into target/guests/.
    let guests = nimbus_guests::build_all()?;

    let ledger = std::env::temp_dir().join("nimbus-gateway-example-usage.jsonl");
    let host = Host::builder().ledger_path(&ledger).build()?;
    host.add_tenant("acme", Limits::default().timeout(Duration::from_secs(2)))?;
    host.deploy("acme", "hello", &std::fs::read(guests.path("hello-http"))?)
        .await?;

    // Keys, rate limits and routes are the gateway's business; the host only
    // knows tenants and functions. `hello` is public here so `curl` works
    // without `Authorization: Bearer acme-secret`.
    let gateway = Gateway::builder(host)
        .tenant("acme", vec!["acme-secret".into()], None)
        .public_function("acme", "hello")
        .build()?;

    let app = Router::new()
        .route("/", get(|| async { "the embedder's own route\n" }))
        .nest_service("/fn", gateway.router());

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    println!("listening on http://{addr} (functions under /fn)");
    let server = axum::serve(listener, app).into_future();

    if !self_test {
        server.await?;
        return Ok(());
    }

    let server = tokio::spawn(server);
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut failed = false;
    for (path, want) in [
        ("/", "the embedder's own route\n"),
        ("/fn/acme/hello", "Hello from Nimbus!\n"),
    ] {
        let uri = format!("http://{addr}{path}").parse()?;
        let response = tokio::time::timeout(Duration::from_secs(30), client.get(uri)).await??;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        let body = String::from_utf8_lossy(&body);
        let ok = status == http::StatusCode::OK && body == want;
        println!(
            "GET {path} -> {status} {body:?} {}",
            if ok { "ok" } else { "WRONG" }
        );
        failed |= !ok;
    }
    server.abort();
    if failed {
        return Err("self-test failed".into());
    }
    println!("self-test passed");
    Ok(())
}
