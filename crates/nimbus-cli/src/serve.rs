//! `nimbus serve --config nimbus.toml`: the gateway on its own listener.
//!
//! The config file declares; the deployment registry (`<data_dir>/
//! registry.redb`) records. At start the registry's tenants, functions,
//! versions, aliases and routes are restored (versions load in the
//! background, from the compile cache when they can), then the file's
//! tenants are declared (their limits from the file; keys created through
//! the admin API kept) and the file's functions are published as a new
//! version only if their bytes or config changed. The listener answers
//! `/healthz` before any of that finishes; `/readyz` says 503 until it
//! has, and a request for a function still loading waits for it (up to
//! 10 s, then 503 with `Retry-After`).

use std::path::Path;
use std::time::Duration;

use nimbus_core::Host;
use nimbus_http::{Gateway, Route};
use nimbus_triggers::{ObjectTrigger, ScheduleTrigger, TriggerOptions, Triggers};

use crate::config::Config;

/// Builds the host, gateway and triggers a config describes. The file's
/// functions are not deployed yet ([`deploy_functions`]); triggers are
/// registered but not started.
pub async fn build(config: &Config) -> Result<(Gateway, Triggers), String> {
    let ledger = config.resolve(&config.ledger);
    let data_dir = config.resolve(&config.data_dir);
    let mut builder = Host::builder()
        .ledger_path(&ledger)
        .data_dir(&data_dir)
        .pool(config.pool.config());
    if let Some(dir) = config.compile_cache_dir() {
        builder = builder.compile_cache(dir);
    }
    let host = builder.build().map_err(|e| e.to_string())?;
    let mut gateway = Gateway::builder(host.clone()).max_body_bytes(config.max_body_bytes);
    for key in &config.admin_keys {
        gateway = gateway.admin_key(key.clone());
    }
    for (name, t) in &config.tenants {
        host.add_tenant(name, t.limits())
            .map_err(|e| format!("tenants.{name}: {e}"))?;
        gateway = gateway.tenant(name, t.api_keys.clone(), t.rate_limit());
    }
    for (i, f) in config.functions.iter().enumerate() {
        let path = config.resolve(&f.component);
        if !path.is_file() {
            return Err(format!(
                "functions[{i}].component: {}: no such file",
                path.display()
            ));
        }
        if f.public {
            gateway = gateway.public_function(&f.tenant, &f.name);
        }
    }
    for r in &config.routes {
        gateway = gateway.route(Route {
            path_prefix: r.path.clone(),
            host: r.host.clone(),
            tenant: r.tenant.clone(),
            function: r.function.clone(),
            public: r.public,
        });
    }
    let triggers = Triggers::new(
        host.clone(),
        TriggerOptions {
            state_path: Some(data_dir.join("triggers.redb")),
            ..TriggerOptions::default()
        },
    )
    .map_err(|e| e.to_string())?;
    for (i, t) in config.object_triggers.iter().enumerate() {
        triggers
            .add_object_trigger(ObjectTrigger {
                tenant: t.tenant.clone(),
                function: t.function.clone(),
                container: t.container.clone(),
                prefix: t.prefix.clone(),
                suffix: t.suffix.clone(),
            })
            .map_err(|e| format!("object_triggers[{i}]: {e}"))?;
    }
    for (i, t) in config.queue_triggers.iter().enumerate() {
        triggers
            .add_queue_trigger(t.trigger())
            .map_err(|e| format!("queue_triggers[{i}]: {e}"))?;
    }
    for (i, t) in config.schedules.iter().enumerate() {
        triggers
            .add_schedule(ScheduleTrigger {
                tenant: t.tenant.clone(),
                function: t.function.clone(),
                cron: t.cron.clone(),
                timezone: t.timezone.clone(),
                catch_up: t.catch_up,
            })
            .map_err(|e| format!("schedules[{i}]: {e}"))?;
    }
    Ok((gateway.build()?, triggers))
}

/// Publishes the file's functions whose bytes or config changed since the
/// registry recorded them, a few at a time (compiling is bounded by the
/// host anyway; reading and hashing 18 MB components is not free).
pub async fn deploy_functions(host: &Host, config: &Config) -> Result<(), String> {
    let mut jobs = tokio::task::JoinSet::new();
    // Smallest first: compiles queue for the host's compile slots in this
    // order, so a restart without a cache serves its small functions
    // while an 18 MB Python component still compiles.
    let mut order: Vec<(u64, usize)> = config
        .functions
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let size = std::fs::metadata(config.resolve(&f.component)).map_or(0, |m| m.len());
            (size, i)
        })
        .collect();
    order.sort_unstable();
    for (_, i) in order {
        let f = &config.functions[i];
        let path = config.resolve(&f.component);
        let (host, tenant, name, spec) = (host.clone(), f.tenant.clone(), f.name.clone(), f.spec());
        jobs.spawn(async move {
            let bytes = tokio::fs::read(&path)
                .await
                .map_err(|e| format!("functions[{i}].component: {}: {e}", path.display()))?;
            host.declare_function(&tenant, &name, &bytes, spec)
                .await
                .map(|_| ())
                .map_err(|e| format!("functions[{i}] ({tenant}/{name}): {e}"))
        });
    }
    let mut first = Ok(());
    while let Some(done) = jobs.join_next().await {
        let r = done
            .map_err(|e| format!("deploy task: {e}"))
            .and_then(|r| r);
        if let Err(e) = r
            && first.is_ok()
        {
            first = Err(e);
        }
    }
    first
}

/// Resolves when the process is asked to stop (SIGTERM or ctrl-c).
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Serves until SIGTERM/ctrl-c, then drains: stops accepting, lets in-flight
/// requests finish (bounded by `drain_timeout_ms`), and returns. Usage
/// records are written before each response, so nothing is left to flush.
pub async fn serve(config_path: &Path, listen: Option<std::net::SocketAddr>) -> Result<(), String> {
    let config = Config::load(config_path)?;
    let (gateway, triggers) = build(&config).await?;
    let addr = listen.unwrap_or(config.listen);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("binding {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    // Tests and scripts read this line to find the port.
    eprintln!("nimbus listening on http://{local}");
    tracing::info!(%local, "listening");

    // Deploying the file's functions and loading the registry's versions
    // go on while the listener answers; then triggers start (events
    // persisted before a crash are delivered now) and /readyz says ready.
    let host = gateway.host().clone();
    let guard = host.loading_guard();
    gateway.set_ready(false);
    let (loaded_tx, loaded_rx) = tokio::sync::oneshot::channel::<Result<(), String>>();
    let config = std::sync::Arc::new(config);
    {
        let (gw, host) = (gateway.clone(), host.clone());
        let (triggers, config) = (triggers.clone(), config.clone());
        tokio::spawn(async move {
            // What the registry recorded serves first: reading and hashing
            // the file's components (18 MB for a Python one) would compete
            // for the cores with loading it, for a file that rarely changed.
            host.restored().await;
            let r = deploy_functions(&host, &config).await;
            drop(guard);
            host.loaded().await;
            if r.is_ok() {
                triggers.start();
                gw.set_ready(true);
                eprintln!("nimbus ready");
            }
            let _ = loaded_tx.send(r);
        });
    }
    // A function of the file that cannot be deployed stops the server, as
    // a bad config file does.
    let failed = async {
        match loaded_rx.await {
            Ok(Err(e)) => e,
            _ => std::future::pending().await,
        }
    };

    let drain = Duration::from_millis(config.drain_timeout_ms);
    let (draining_tx, draining_rx) = tokio::sync::oneshot::channel::<()>();
    let gw = gateway.clone();
    let server = nimbus_http::server::serve(
        listener,
        gateway.router(),
        config.connections.limits(),
        async move {
            shutdown_signal().await;
            gw.set_ready(false);
            eprintln!("nimbus draining (up to {} ms)", drain.as_millis());
            let _ = draining_tx.send(());
        },
    );
    let server = async {
        server.await;
        Ok::<(), String>(())
    };
    let deadline = async {
        if draining_rx.await.is_ok() {
            tokio::time::sleep(drain).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    // Triggers drain alongside the listener: no new deliveries, running
    // invocations finish; undelivered events and messages stay durable.
    let drained = async {
        let r = server.await;
        triggers.shutdown().await;
        r
    };
    tokio::select! {
        r = drained => r?,
        () = deadline => eprintln!("nimbus drain timeout: closing with requests in flight"),
        e = failed => return Err(e),
    }
    eprintln!("nimbus stopped");
    Ok(())
}
