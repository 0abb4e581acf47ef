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
    build_node(config).await.map(|(g, t, _)| (g, t))
}

/// A node's part in the `[cluster]`: the connection, and the watch that
/// keeps the host up to date with the shared registry (while it lives).
struct ClusterNode {
    cluster: nimbus_nats::Cluster,
    _watch: nimbus_nats::RegistryWatch,
}

/// [`build`], and the node's part in the `[cluster]` if there is one (its
/// key-value bucket and registry already behind the host). The build reads
/// the registry, so it waits for NATS; once running, a node that loses NATS
/// serves what needs none.
async fn build_node(config: &Config) -> Result<(Gateway, Triggers, Option<ClusterNode>), String> {
    let ledger = config.resolve(&config.ledger);
    let data_dir = config.resolve(&config.data_dir);
    let mut builder = Host::builder()
        .data_dir(&data_dir)
        .pool(config.pool.config());
    builder = if config.ledger_is_file() {
        builder.ledger_path(&ledger)
    } else {
        let rotation = nimbus_core::ledger::Rotation {
            max_file_bytes: config.usage.rotate_bytes,
            compress: config.usage.compress,
            retain_days: config.usage.retain(),
            ..Default::default()
        };
        let sink = nimbus_core::ledger::RotatingLedger::open(&ledger, rotation)
            .map_err(|e| format!("usage ledger {}: {e}", ledger.display()))?;
        builder.usage_sink(std::sync::Arc::new(sink))
    };
    let cluster = match &config.cluster {
        Some(c) => {
            let cluster = nimbus_nats::Cluster::connect(c.clone())
                .await
                .map_err(|e| e.to_string())?;
            tracing::info!(node = %cluster.config().node_name(), "joined the cluster");
            builder = builder.kv_backend(std::sync::Arc::new(nimbus_nats::NatsKv::new(
                &cluster,
                c.kv_max_bytes,
            )));
            builder = builder.queue_backend(std::sync::Arc::new(nimbus_nats::NatsQueues::new(
                &cluster,
                c.queues_max_bytes,
            )));
            builder = builder.log_replica(std::sync::Arc::new(nimbus_nats::NatsLogs::new(
                &cluster,
                c.logs_max_bytes,
            )));
            builder = builder.blob_backend(std::sync::Arc::new(nimbus_nats::NatsBlobs::new(
                &cluster,
                c.blobs_max_bytes,
            )));
            let registry = std::sync::Arc::new(nimbus_nats::NatsRegistry::with_mirror(
                &cluster,
                data_dir.join("registry-mirror.json"),
            ));
            builder = builder.deployment_registry(registry.clone());
            Some((cluster, registry))
        }
        None => None,
    };
    if let Some(dir) = config.compile_cache_dir() {
        builder = builder.compile_cache(dir);
    }
    let host = builder.build().map_err(|e| e.to_string())?;
    // Another node's deploys, alias moves and tenant changes show here from
    // the revision the build loaded on.
    let cluster = match cluster {
        Some((cluster, registry)) => {
            registry.register_metrics(host.registry())?;
            cluster.register_metrics(host.registry())?;
            Some(ClusterNode {
                _watch: registry.watch(host.clone()),
                cluster,
            })
        }
        None => None,
    };
    let mut gateway = Gateway::builder(host.clone()).max_body_bytes(config.max_body_bytes);
    if let Some(service) = usage_service(config, &data_dir)? {
        gateway = gateway.usage(service);
    }
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
            // Every node runs the file's schedules: each tick runs on the
            // node whose claim on it wins.
            tick_claims: match &cluster {
                Some(node) => std::sync::Arc::new(nimbus_nats::NatsTickClaims::new(&node.cluster)),
                None => TriggerOptions::default().tick_claims,
            },
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
    let gateway = gateway.build()?;
    if let Some(node) = &cluster {
        let c = node.cluster.clone();
        gateway.add_dependency("cluster", move || {
            (!c.connected()).then(|| {
                "NATS disconnected: key-value, queues, schedules and changes from other \
                 nodes wait for it; usage is kept in the local ledger"
                    .to_string()
            })
        });
    }
    Ok((gateway, triggers, cluster))
}

/// Publishes the file's functions whose bytes or config changed since the
/// registry recorded them, a few at a time (compiling is bounded by the
/// host anyway; reading and hashing 18 MB components is not free).
pub async fn deploy_functions(host: &Host, config: &Config) -> Result<(), String> {
    let stamps_path = config.resolve(&config.data_dir).join("declared.json");
    let stamps = Stamps::load(&stamps_path);
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
        let key = format!("{tenant}/{name}");
        let stamp = Stamp::of(&path);
        // The file is as it was when a version the registry still holds
        // was published from it, with the same config: nothing to read or
        // hash, and nothing to publish — a version deployed since through
        // the admin API, or a rollback, stays where it is.
        if let (Some(now), Some(then)) = (&stamp, stamps.0.get(&key))
            && now.same_file(then)
            && host.function_record(&tenant, &name).is_ok_and(|r| {
                r.versions
                    .iter()
                    .any(|v| v.sha256 == then.sha256 && v.config == spec)
            })
        {
            let kept = then.clone();
            jobs.spawn(async move { Ok((key, Some(kept))) });
            continue;
        }
        jobs.spawn(async move {
            let bytes = tokio::fs::read(&path)
                .await
                .map_err(|e| format!("functions[{i}].component: {}: {e}", path.display()))?;
            host.declare_function(&tenant, &name, &bytes, spec)
                .await
                .map_err(|e| format!("functions[{i}] ({tenant}/{name}): {e}"))?;
            let sha = host
                .function_record(&tenant, &name)
                .ok()
                .and_then(|r| r.versions.last().map(|v| v.sha256.clone()));
            Ok((
                key,
                stamp.zip(sha).map(|(s, sha)| Stamp { sha256: sha, ..s }),
            ))
        });
    }
    let mut first = Ok(());
    let mut seen = Stamps::default();
    while let Some(done) = jobs.join_next().await {
        let r = done
            .map_err(|e| format!("deploy task: {e}"))
            .and_then(|r| r);
        match r {
            Ok((key, Some(stamp))) => {
                seen.0.insert(key, stamp);
            }
            Ok((_, None)) => {}
            Err(e) if first.is_ok() => first = Err(e),
            Err(_) => {}
        }
    }
    if first.is_ok() && seen != stamps {
        seen.save(&stamps_path);
    }
    first
}

/// What a config file's component was when it was last published: if its
/// path, size, inode and modification time (ns) are the same at the next
/// start, it is not read and hashed again (an 18 MB Python component
/// took 33–49 ms to read and 13 ms to hash, competing with the first
/// requests). Any difference means reading it and comparing its sha256.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Stamp {
    path: std::path::PathBuf,
    len: u64,
    inode: u64,
    modified_ns: u128,
    sha256: String,
}

impl Stamp {
    fn of(path: &Path) -> Option<Stamp> {
        let m = std::fs::metadata(path).ok()?;
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&m);
        #[cfg(not(unix))]
        let inode = 0;
        Some(Stamp {
            path: path.to_path_buf(),
            len: m.len(),
            inode,
            modified_ns: m
                .modified()
                .ok()?
                .duration_since(std::time::UNIX_EPOCH)
                .ok()?
                .as_nanos(),
            sha256: String::new(),
        })
    }

    fn same_file(&self, then: &Stamp) -> bool {
        (&self.path, self.len, self.inode, self.modified_ns)
            == (&then.path, then.len, then.inode, then.modified_ns)
    }
}

/// `<data_dir>/declared.json`: a [`Stamp`] per `tenant/function`. Lost or
/// unreadable, every component is read and compared again, nothing worse.
#[derive(Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Stamps(std::collections::BTreeMap<String, Stamp>);

impl Stamps {
    fn load(path: &Path) -> Stamps {
        std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn save(&self, path: &Path) {
        let tmp = path.with_extension("json.tmp");
        let written = serde_json::to_vec(self)
            .map_err(std::io::Error::other)
            .and_then(|b| std::fs::write(&tmp, b))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            tracing::warn!("{}: {e}", path.display());
        }
    }
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
    let (gateway, triggers, cluster) = build_node(&config).await?;
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
    // This node's ledger goes to the cluster's usage stream; a node whose
    // NATS is down bills locally and publishes when NATS returns.
    let usage_stream = match &cluster {
        Some(node) => Some(
            nimbus_nats::UsageStream::start(
                &node.cluster,
                config.resolve(&config.ledger),
                host.registry(),
            )
            .map_err(|e| e.to_string())?,
        ),
        None => None,
    };
    if !config.ledger_is_file() {
        let dir = config.resolve(&config.ledger);
        let every = Duration::from_secs(config.usage.storage_sample_s);
        let storage = nimbus_core::ledger::StorageLedger::open(&dir, config.usage.retain())
            .map_err(|e| format!("storage samples in {}: {e}", dir.display()))?;
        tokio::spawn(sample_storage(host.clone(), storage, every));
    }
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
    if let Some(stream) = usage_stream {
        // What is not published now is published by the next start.
        stream.stop(Duration::from_secs(2)).await;
    }
    eprintln!("nimbus stopped");
    Ok(())
}

/// Samples every tenant's stored bytes into the ledger directory each
/// `every`, for GB-month billing. Each sample stands for the time since the
/// one before (since the start, for the first): a node that stops bills its
/// storage up to its last sample.
async fn sample_storage(host: Host, storage: nimbus_core::ledger::StorageLedger, every: Duration) {
    let storage = std::sync::Arc::new(storage);
    let mut last = std::time::Instant::now();
    loop {
        tokio::time::sleep_until((last + every).into()).await;
        let now = std::time::Instant::now();
        let interval_s = now.duration_since(last).as_secs().max(1);
        last = now;
        let (host, storage) = (host.clone(), storage.clone());
        let written = tokio::task::spawn_blocking(move || {
            let sampled_at =
                humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
            for (tenant, kv_bytes, blob_bytes) in host.stored_bytes() {
                let sample = nimbus_core::ledger::StorageSample {
                    tenant,
                    sampled_at: sampled_at.clone(),
                    interval_s,
                    kv_bytes,
                    blob_bytes,
                };
                storage.record(&sample)?;
            }
            Ok::<(), std::io::Error>(())
        })
        .await;
        if let Ok(Err(e)) = written {
            tracing::error!("storage sample not written: {e}");
        }
    }
}

/// The usage API's rollups of the ledger directory (rebuilt from the
/// ledger when missing) and the price sheet, if one is configured. A
/// single-file ledger has none.
fn usage_service(
    config: &Config,
    data_dir: &Path,
) -> Result<Option<nimbus_http::UsageService>, String> {
    if config.ledger_is_file() {
        return Ok(None);
    }
    let prices = match &config.usage.prices {
        Some(p) => Some(std::sync::Arc::new(
            nimbus_billing::PriceSheet::load(&config.resolve(p)).map_err(|e| e.to_string())?,
        )),
        None => None,
    };
    let rollups = std::sync::Arc::new(
        nimbus_usage::Rollups::open(
            &data_dir.join("usage-rollups.redb"),
            &config.resolve(&config.ledger),
        )
        .map_err(|e| e.to_string())?,
    );
    // Queries catch up themselves; following keeps that catch-up short.
    rollups.follow(Duration::from_secs(1));
    Ok(Some(nimbus_http::UsageService { rollups, prices }))
}
