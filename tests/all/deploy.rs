//! Every way `deploy` refuses bytes, each with a message naming the problem.

use nimbus_core::{Error, Limits};

use crate::support::{event, guests, metric, ok, test_host};

async fn refused(bytes: &[u8]) -> String {
    let t = test_host(|b| b);
    t.host.add_tenant("t", Limits::default()).expect("tenant");
    match t.host.deploy("t", "f", bytes).await {
        Err(Error::InvalidComponent(m)) => m,
        Err(e) => panic!("expected InvalidComponent, got {e}"),
        Ok(_) => panic!("deploy accepted invalid bytes"),
    }
}

#[tokio::test]
async fn bytes_that_are_not_wasm() {
    let m = refused(b"#!/bin/sh\necho hi\n").await;
    assert!(m.contains("not a WebAssembly binary"), "{m}");
}

#[tokio::test]
async fn a_core_module() {
    let module = wat::parse_str("(module (func (export \"handle\")))").expect("wat");
    let m = refused(&module).await;
    assert!(
        m.contains("core WebAssembly module, not a component"),
        "{m}"
    );
}

#[tokio::test]
async fn a_component_without_the_handler_export() {
    let component = wat::parse_str("(component)").expect("wat");
    let m = refused(&component).await;
    assert!(
        m.contains("does not export `nimbus:function/handler@0.1.0`"),
        "{m}"
    );
}

#[tokio::test]
async fn a_component_importing_what_is_not_granted() {
    let component =
        wat::parse_str(r#"(component (import "wasi:nn/inference@0.2.0-rc" (instance)))"#)
            .expect("wat");
    let m = refused(&component).await;
    assert!(m.contains("imports `wasi:nn/inference@0.2.0-rc`"), "{m}");
    assert!(m.contains("does not grant"), "{m}");
}

/// A wrong world or an unknown import is refused from the bytes alone,
/// before Cranelift runs; a component that passes is compiled once.
#[tokio::test]
async fn what_the_bytes_tell_is_refused_before_compiling() {
    let t = test_host(|b| b);
    t.host.add_tenant("t", Limits::default()).expect("tenant");
    let compilations =
        |host: &nimbus_core::Host| metric(host, "nimbus_component_compilations_total");
    let wrong_world =
        wat::parse_str(r#"(component (import "wasi:io/streams@0.2.12" (instance)))"#).expect("wat");
    let unknown = wat::parse_str(r#"(component (import "wasi:nn/inference@0.2.0-rc" (instance)))"#)
        .expect("wat");
    for bytes in [&wrong_world, &unknown] {
        assert!(matches!(
            t.host.deploy("t", "f", bytes).await,
            Err(Error::InvalidComponent(_))
        ));
    }
    let loaded = |host: &nimbus_core::Host| metric(host, "nimbus_component_cache_hits_total");
    assert_eq!(compilations(&t.host), Some(0.0), "nothing was compiled");
    assert_eq!(loaded(&t.host), Some(0.0), "nor loaded from the cache");
    t.host
        .deploy("t", "echo", &guests().bytes("echo"))
        .await
        .expect("echo deploys");
    // Compiled, or loaded from the compile cache the tests share.
    assert_eq!(
        compilations(&t.host)
            .zip(loaded(&t.host))
            .map(|(c, l)| c + l),
        Some(1.0)
    );
}

#[tokio::test]
async fn a_truncated_component() {
    let echo = guests().bytes("echo");
    let m = refused(&echo[..echo.len() / 2]).await;
    assert!(m.contains("failed to compile"), "{m}");
}

#[tokio::test]
async fn an_oversized_component() {
    let t = test_host(|b| b.max_component_bytes(4096));
    t.host.add_tenant("t", Limits::default()).expect("tenant");
    let echo = guests().bytes("echo");
    let err = t.host.deploy("t", "echo", &echo).await.unwrap_err();
    let m = err.to_string();
    assert!(
        m.contains(&format!("is {} bytes, above the limit of 4096", echo.len())),
        "{m}"
    );
}

#[tokio::test]
async fn unknown_tenants_functions_and_bad_names() {
    let t = test_host(|b| b);
    let echo = guests().bytes("echo");
    let err = t.host.deploy("nobody", "echo", &echo).await.unwrap_err();
    assert!(
        matches!(&err, Error::NotFound(what) if what == "tenant `nobody`"),
        "{err}"
    );

    t.host.add_tenant("t", Limits::default()).expect("tenant");
    let err = t.host.deploy("t", "Bad/Name", &echo).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidName {
                kind: "function",
                ..
            }
        ),
        "{err}"
    );
    let err = t.host.add_tenant("t", Limits::default()).unwrap_err();
    assert!(matches!(err, Error::TenantExists(_)), "{err}");
    let err = t
        .host
        .add_tenant("big", Limits::default().max_memory_bytes(1 << 40))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("above the host's per-instance maximum"),
        "{err}"
    );

    let err = t.host.invoke("t", "echo", event(b"")).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("function `echo` of tenant `t` not found"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeploy_replaces_and_keeps_in_flight_on_the_old_version() {
    let t = test_host(|b| b);
    let host = &t.host;
    host.add_tenant("t", Limits::default()).expect("tenant");
    let old = host
        .deploy("t", "f", &guests().bytes("echo"))
        .await
        .expect("deploy");
    host.deploy("t", "f", &guests().bytes("compute"))
        .await
        .expect("redeploy");
    // The old handle still runs the old version; the name runs the new one.
    assert_eq!(
        old.invoke(event(b"7")).await.expect("old").response.data,
        b"7"
    );
    assert_eq!(ok(host, "t", "f", "7").await, "3");
    // A failed redeploy leaves the running version in place.
    assert!(host.deploy("t", "f", b"junk").await.is_err());
    assert_eq!(ok(host, "t", "f", "7").await, "3", "kept");
    assert_eq!(host.functions("t"), ["f"]);
    host.remove_function("t", "f").await.expect("remove");
    assert!(host.invoke("t", "f", event(b"7")).await.is_err());
}
