//! Synchronous traits (`KvBackend`, `DeploymentRegistry`) over async NATS
//! calls.

use std::future::Future;
use std::time::Duration;

/// Runs `f` on `runtime` and waits for it from this thread, failing with
/// `timed_out` after `limit`. The traits' callers are on blocking threads,
/// but a metrics scrape may call from a runtime worker, where
/// `Handle::block_on` would panic; there the worker's other tasks are
/// handed over while it waits (with one worker the call itself could
/// otherwise never run).
pub(crate) fn block<T: Send + 'static, E: Send + 'static>(
    runtime: &tokio::runtime::Handle,
    limit: Duration,
    f: impl Future<Output = Result<T, E>> + Send + 'static,
    failed: impl Fn(String) -> E + Send + 'static,
) -> Result<T, E> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let dropped = failed("the NATS call was dropped".into());
    runtime.spawn(async move {
        let r = match tokio::time::timeout(limit, f).await {
            Ok(r) => r,
            Err(_) => Err(failed(format!("NATS did not answer within {limit:?}"))),
        };
        let _ = tx.send(r);
    });
    let wait = || rx.recv().unwrap_or(Err(dropped));
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(wait)
        }
        _ => wait(),
    }
}
