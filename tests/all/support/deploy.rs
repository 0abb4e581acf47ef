//! The sample guests, tenants, deploys and the grants a function takes.

use std::sync::OnceLock;

use nimbus_core::{Error, FunctionConfig, Host, Limits};
use nimbus_guests::Guests;

/// The sample guests, built once per test process by the same builder
/// users run.
pub fn guests() -> &'static Guests {
    static GUESTS: OnceLock<Guests> = OnceLock::new();
    GUESTS.get_or_init(|| nimbus_guests::build_all().unwrap_or_else(|e| panic!("{e}")))
}

/// Where the built guest `name` is, as configs and command lines take it.
pub fn guest_path(name: &str) -> String {
    guests().path(name).display().to_string()
}

/// Registers each of `tenants` with default limits.
pub fn add_tenants(host: &Host, tenants: &[&str]) {
    for tenant in tenants {
        host.add_tenant(tenant, Limits::default())
            .unwrap_or_else(|e| panic!("add tenant {tenant}: {e}"));
    }
}

/// Registers `tenant` with `limits` and deploys the named guests under their
/// own names.
pub async fn tenant_with(host: &Host, tenant: &str, limits: Limits, functions: &[&str]) {
    host.add_tenant(tenant, limits).expect("add tenant");
    for f in functions {
        deploy(host, tenant, f, f).await;
    }
}

/// Deploys sample guest `guest` as `tenant`'s function `name`, granted
/// nothing.
pub async fn deploy(host: &Host, tenant: &str, name: &str, guest: &str) {
    deploy_with(host, tenant, name, guest, FunctionConfig::default()).await;
}

/// Deploys sample guest `guest` as `tenant`'s function `name` with `spec`:
/// its limits, or its grants and limits.
pub async fn deploy_with(
    host: &Host,
    tenant: &str,
    name: &str,
    guest: &str,
    spec: impl Into<FunctionConfig>,
) {
    let spec = spec.into();
    host.deploy_with(tenant, name, &guests().bytes(guest), spec.clone())
        .await
        .unwrap_or_else(|e| panic!("deploy {guest} as {tenant}/{name} with {spec:?}: {e}"));
}

fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// A grant of `wasi:blobstore` containers.
pub fn containers(names: &[&str]) -> FunctionConfig {
    FunctionConfig {
        blob_containers: strings(names),
        ..FunctionConfig::default()
    }
}

/// A grant of `wasi:keyvalue` stores.
pub fn stores(names: &[&str]) -> FunctionConfig {
    FunctionConfig {
        kv_stores: strings(names),
        ..FunctionConfig::default()
    }
}

/// A grant of `wasmcloud:messaging` topics.
pub fn topics(names: &[&str]) -> FunctionConfig {
    FunctionConfig {
        topics: strings(names),
        ..FunctionConfig::default()
    }
}

/// A grant of `wasi:config/store` keys and their values.
pub fn config_keys(pairs: &[(&str, &str)]) -> FunctionConfig {
    FunctionConfig {
        config: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..FunctionConfig::default()
    }
}

/// A grant of outbound HTTP to `hosts` (`name` or `name:port`).
pub fn outbound_hosts(hosts: &[String]) -> FunctionConfig {
    FunctionConfig {
        outbound_hosts: hosts.to_vec(),
        ..FunctionConfig::default()
    }
}

/// A grant of the tenant's directory as `/data`.
pub fn directory() -> FunctionConfig {
    FunctionConfig {
        directory: true,
        ..FunctionConfig::default()
    }
}

/// Deploys sample guest `guest` as `tenant/name` with `spec`, which leaves
/// some of its imports with nothing granted: the deploy succeeds and names
/// them (their calls are denied at run time). Returns the notes, joined.
pub async fn deploy_ungranted(
    host: &Host,
    tenant: &str,
    name: &str,
    guest: &str,
    spec: impl Into<FunctionConfig>,
) -> String {
    let f = host
        .deploy_with(tenant, name, &guests().bytes(guest), spec)
        .await
        .unwrap_or_else(|e| panic!("deploy {guest}: {e}"));
    let notes = f.ungranted_imports().join("\n");
    assert!(notes.contains("will be denied"), "{notes:?}");
    notes
}

/// Deploys sample guest `guest` as `tenant/name` with `spec`, which the
/// host must refuse as an invalid component; returns the error's message.
pub async fn deploy_refused(
    host: &Host,
    tenant: &str,
    name: &str,
    guest: &str,
    spec: impl Into<FunctionConfig>,
) -> String {
    let err = host
        .deploy_with(tenant, name, &guests().bytes(guest), spec)
        .await
        .expect_err("deploy accepted");
    assert!(matches!(err, Error::InvalidComponent(_)), "{err:?}");
    err.to_string()
}
