//! Which node runs each schedule tick: [`NatsTickClaims`], the cluster's
//! [`TickClaims`], on a JetStream KV bucket `NIMBUS_SCHEDULES` that every
//! node shares.
//!
//! Every node runs every schedule and, when a tick comes due, creates the
//! key `<tenant>.<function>.<tick unix seconds>`. A create fails when the
//! key exists, so exactly one node's create succeeds and that node runs the
//! tick; the others find the key taken and leave it. Tenant and function
//! names are `[a-z0-9_-]`, valid NATS tokens as they are, and the tick is
//! a decimal integer: keys of two tenants, two functions or two ticks
//! never meet. (Two schedules of one function ticking at the same second
//! share a key: the node that wins it runs both, as a node alone would.)
//!
//! The value is the node's name and a token of this process: a create
//! whose answer was lost (a timeout, a reconnect) but that was stored is
//! recognised as this process's own when the schedule retries it, instead
//! of being taken for another node's; a restarted node is another process,
//! so a tick its previous run claimed is never run again. A claim lives [`MAX_AGE`]: long enough for
//! any node to have run or caught up the tick, short enough that the
//! bucket does not grow without bound (a tick every second is 86 400 keys
//! a day); [`TickClaims::retention`] tells the schedules, which then never
//! claim a tick older than that.

use std::time::Duration;

use async_nats::jetstream::kv::{CreateErrorKind, Operation, Store};
use async_nats::jetstream::stream;
use nimbus_triggers::{Claim, ClaimFuture, TickClaims};
use tokio::sync::OnceCell;

use crate::Cluster;
use crate::bucket;

/// The bucket's name.
pub const BUCKET: &str = "NIMBUS_SCHEDULES";
/// How long a claim is kept.
pub const MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);
/// The bucket's `max_bytes`: some 2 million claims (one is about 120 bytes
/// stored), 25 schedules ticking every second for a day.
const MAX_BYTES: i64 = 256 << 20;
/// Node clocks may disagree by this much: a tick is claimed only while
/// every node's claim on it is surely still kept.
const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// Tick claims on the cluster's `NIMBUS_SCHEDULES` bucket.
pub struct NatsTickClaims {
    cluster: Cluster,
    /// What this process writes in its claims: the node's name and a token
    /// of this process.
    holder: String,
    store: OnceCell<Store>,
}

impl std::fmt::Debug for NatsTickClaims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsTickClaims")
            .field("bucket", &BUCKET)
            .field("holder", &self.holder)
            .finish_non_exhaustive()
    }
}

impl NatsTickClaims {
    /// Claims on `cluster`, in the name of its configured node. The bucket
    /// is created on first use if it is not there (NATS may be down when
    /// the node starts).
    pub fn new(cluster: &Cluster) -> Self {
        let inbox = cluster.client().new_inbox();
        let token = inbox.rsplit('.').next().unwrap_or(&inbox);
        Self {
            cluster: cluster.clone(),
            holder: format!("{} {token}", cluster.config().node_name()),
            store: OnceCell::new(),
        }
    }

    async fn store(&self) -> Result<&Store, String> {
        self.store.get_or_try_init(|| open(&self.cluster)).await
    }

    /// [`TickClaims::claim`], as an inherent method for embedders.
    pub async fn claim_tick(
        &self,
        tenant: &str,
        function: &str,
        tick_unix_secs: i64,
    ) -> Result<Claim, String> {
        let store = self.store().await?;
        let key = format!("{tenant}.{function}.{tick_unix_secs}");
        match store.create(&key, self.holder.clone().into()).await {
            Ok(_) => return Ok(Claim::Won),
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("NATS: claiming {key}: {e}")),
        }
        let entry = store
            .entry(&key)
            .await
            .map_err(|e| format!("NATS: reading the claim {key}: {e}"))?;
        match entry {
            Some(e) if e.operation == Operation::Put => {
                let holder = String::from_utf8_lossy(&e.value);
                if holder == self.holder {
                    return Ok(Claim::Won);
                }
                let node = holder.split(' ').next().unwrap_or_default();
                Ok(Claim::Lost {
                    holder: node.to_string(),
                })
            }
            _ => Err(format!("NATS: the claim {key} exists but cannot be read")),
        }
    }
}

impl TickClaims for NatsTickClaims {
    fn claim<'a>(
        &'a self,
        tenant: &'a str,
        function: &'a str,
        tick_unix_secs: i64,
    ) -> ClaimFuture<'a> {
        Box::pin(async move {
            let r = self.claim_tick(tenant, function, tick_unix_secs).await;
            if r.is_err() {
                self.cluster.api_error("schedules");
            }
            r
        })
    }

    fn retention(&self) -> Option<Duration> {
        Some(MAX_AGE - CLOCK_SKEW)
    }
}

async fn open(cluster: &Cluster) -> Result<Store, String> {
    // A create is a compare-and-set (expected sequence 0), and every node
    // creates each tick's key at the same instant: two nodes winning one
    // tick would be silent; refusing is not.
    bucket::check_clustered_cas(
        cluster,
        "scheduling",
        "can let two nodes create the same key at once",
    )
    .map_err(|e| format!("NATS: {e}"))?;
    // Unlike key-value: claims expire (`max_age`); a full bucket drops its
    // oldest claims rather than refusing new ticks; and no direct gets, so
    // that reading a claim after losing it asks the stream's leader, which
    // holds the winner, not a replica that may lag.
    let config = stream::Config {
        max_age: MAX_AGE,
        max_message_size: 1024,
        discard: stream::DiscardPolicy::Old,
        allow_direct: false,
        ..bucket::kv_stream(
            BUCKET,
            "Nimbus schedule ticks: which node runs each",
            MAX_BYTES,
            cluster.config().replicas,
        )
    };
    bucket::open_kv(cluster.jetstream(), config)
        .await
        .map_err(|e| format!("NATS: {e}"))
}
