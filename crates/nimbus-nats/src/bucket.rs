//! What the backends on KV buckets (key-value, registry, schedules, blobs)
//! must do alike: the workaround that makes a bucket on nats-server 2.9,
//! the refusal of a replicated 2.9 cluster where their compare-and-sets
//! would be lost, and the hex that makes any bytes a valid key or name
//! token. One copy, so that a fix to either reaches every backend.

use async_nats::jetstream::{self, kv::Store, stream};

use crate::Cluster;

/// Whether `version` ("2.9.10") is a nats-server whose replicated streams
/// enforce a write's expected last subject sequence under concurrent
/// writers. 2.9 does not: measured here, 300 concurrent increments through
/// three nodes on a three-server 2.9.10 cluster (R3) ended short of 300 in
/// each of four runs (133 in the first), while a single 2.9.10 server and
/// a three-server 2.15.1 cluster were exact.
fn enforces_clustered_cas(version: &str) -> bool {
    let mut parts = version.trim_start_matches('v').split('.');
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor) >= (2, 10)
}

/// Refuses to open `what`'s bucket where its compare-and-sets would not
/// hold: before the server has said its version, or with replicas > 1 on
/// a server older than 2.10. `risk` says what such a server's replicated
/// streams let through.
pub(crate) fn check_clustered_cas(cluster: &Cluster, what: &str, risk: &str) -> Result<(), String> {
    let replicas = cluster.config().replicas;
    let version = cluster.client().server_info().version;
    if version.is_empty() {
        return Err("not connected to a NATS server yet".into());
    }
    if replicas > 1 && !enforces_clustered_cas(&version) {
        return Err(format!(
            "{what} on NATS with replicas = {replicas} needs nats-server 2.10 or later \
             (connected to {version}, whose replicated streams {risk}); use 2.10+, or \
             replicas = 1"
        ));
    }
    Ok(())
}

/// The stream of KV bucket `bucket` as `create_key_value` would make it
/// (KV's own conventions: `KV_<bucket>`, `$KV.<bucket>.>`, one message per
/// key, rollups, direct gets; a full bucket refuses writes). A caller
/// changes the rest with struct-update syntax.
pub(crate) fn kv_stream(
    bucket: &str,
    description: &str,
    max_bytes: i64,
    replicas: usize,
) -> stream::Config {
    stream::Config {
        name: format!("KV_{bucket}"),
        description: Some(description.into()),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        max_bytes,
        discard: stream::DiscardPolicy::New,
        deny_delete: true,
        allow_rollup: true,
        allow_direct: true,
        num_replicas: replicas,
        storage: stream::StorageType::File,
        ..Default::default()
    }
}

/// Opens the KV bucket whose stream is `config` (from [`kv_stream`]),
/// creating the stream if it is not there. Not `create_key_value`: that
/// call first reads the account's info, whose 2.9 answer async-nats 0.51
/// cannot parse.
pub(crate) async fn open_kv(
    js: &jetstream::Context,
    config: stream::Config,
) -> Result<Store, String> {
    let bucket = config
        .name
        .strip_prefix("KV_")
        .unwrap_or(&config.name)
        .to_string();
    if let Ok(store) = js.get_key_value(&bucket).await {
        return Ok(store);
    }
    js.get_or_create_stream(config)
        .await
        .map_err(|e| format!("creating bucket {bucket}: {e}"))?;
    js.get_key_value(&bucket)
        .await
        .map_err(|e| format!("opening bucket {bucket}: {e}"))
}

/// Lowercase hex: `[0-9a-f]`, valid in any key or subject token, injective,
/// and keeps the bytes' order.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The bytes [`hex`] made `s` from, or `None` if it made no such string.
pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        assert_eq!(unhex(&hex(b"\x00\xffab")).unwrap(), b"\x00\xffab");
        assert_eq!(unhex(&hex(b"a.b")).unwrap(), b"a.b");
        assert_eq!(unhex("abc"), None);
    }

    #[test]
    fn a_replicated_bucket_needs_2_10() {
        assert!(!enforces_clustered_cas("2.9.10"));
        assert!(enforces_clustered_cas("2.10.0"));
        assert!(enforces_clustered_cas("2.15.1"));
        assert!(enforces_clustered_cas("v2.15.1"));
        assert!(!enforces_clustered_cas(""));
    }
}
