//! `wasi:keyvalue` (store, atomics, batch): the tenant's stores on a
//! [`KvBackend`], only those granted to the function (`kv_stores`).

use std::sync::Arc;

use nimbus_bindings::KvBucket;
use nimbus_bindings::kv::{atomics, batch, store as kvstore};
use nimbus_kv::{KvBackend, KvError, Namespace};
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use crate::capability::{Capability, DeployCx, Holds, InvokeCx, note_ungranted};
use crate::error::Error;
use crate::limits::FunctionConfig;
use crate::logs::Logs;
use crate::usage::UsageRecord;

/// Most key-value buckets one invocation may hold open.
const MAX_OPEN_BUCKETS: u32 = 64;

/// An invocation's key-value access: its tenant's namespace, the stores its
/// function was granted, and what it did.
pub(crate) struct Kv {
    backend: Arc<dyn KvBackend>,
    tenant: Arc<str>,
    granted: Arc<[String]>,
    /// The tenant's `max_kv_bytes`.
    quota: u64,
    open: u32,
    reads: u64,
    writes: u64,
    denied: u64,
}

impl Capability for Kv {
    type Grant = Arc<[String]>;
    const INTERFACES: &'static [&'static str] = &[
        "wasi:keyvalue/store",
        "wasi:keyvalue/atomics",
        "wasi:keyvalue/batch",
    ];

    fn add_to_linker<T: Holds<Self>>(l: &mut Linker<T>) -> wasmtime::Result<()> {
        fn view<T: Holds<Kv>>(t: &mut T) -> KvView<'_> {
            let (kv, table) = t.parts();
            KvView { kv, table }
        }
        kvstore::add_to_linker::<T, KvHost>(l, view)?;
        atomics::add_to_linker::<T, KvHost>(l, view)?;
        batch::add_to_linker::<T, KvHost>(l, view)
    }

    fn ungranted(spec: &FunctionConfig, import: &str) -> Option<String> {
        note_ungranted(
            !spec.kv_stores.is_empty(),
            import,
            "key-value stores",
            "kv_stores",
        )
    }

    async fn grant(cx: &DeployCx<'_>) -> Result<Self::Grant, Error> {
        Ok(cx.spec.kv_stores.clone().into())
    }

    fn prepare(granted: &Self::Grant, cx: &InvokeCx<'_>) -> wasmtime::Result<Self> {
        Ok(Kv {
            backend: cx.services.kv.clone(),
            tenant: cx.tenant.clone(),
            granted: granted.clone(),
            quota: cx.limits.max_kv_bytes,
            open: 0,
            reads: 0,
            writes: 0,
            denied: 0,
        })
    }

    fn finish(self, usage: &mut UsageRecord, _logs: &mut Logs) {
        usage.kv_reads += self.reads;
        usage.kv_writes += self.writes;
        usage.denied_calls += self.denied;
    }
}

struct KvHost;
impl HasData for KvHost {
    type Data<'a> = KvView<'a>;
}

/// What `wasi:keyvalue` host functions see of the store.
pub(crate) struct KvView<'a> {
    kv: &'a mut Kv,
    table: &'a mut ResourceTable,
}

impl KvView<'_> {
    /// Runs one backend operation and counts it.
    async fn op<R: Send + 'static>(
        &mut self,
        bucket: &Resource<KvBucket>,
        write: bool,
        op: impl FnOnce(&dyn KvBackend, &Namespace) -> Result<R, KvError> + Send + 'static,
    ) -> wasmtime::Result<Result<R, kvstore::Error>> {
        let store = self.table.get(bucket)?.store.clone();
        let kv = &mut *self.kv;
        if write {
            kv.writes += 1;
        } else {
            kv.reads += 1;
        }
        let backend = kv.backend.clone();
        let ns = Namespace::new(&*kv.tenant, store).with_quota(kv.quota);
        // Writes sync to disk (~0.15 ms here) and go to the blocking pool so
        // they never stall a runtime worker. Reads are served from redb's
        // cache in well under a microsecond; handing them to another thread
        // would cost 40× the read itself (measured: benches/kv.rs).
        let result = if write || backend.reads_wait() {
            tokio::task::spawn_blocking(move || op(&*backend, &ns)).await?
        } else {
            op(&*backend, &ns)
        };
        Ok(result.map_err(|e| kvstore::Error::Other(e.to_string())))
    }
}

impl kvstore::Host for KvView<'_> {
    async fn open(
        &mut self,
        identifier: String,
    ) -> wasmtime::Result<Result<Resource<KvBucket>, kvstore::Error>> {
        if !self.kv.granted.contains(&identifier) {
            self.kv.denied += 1;
            let shown: String = identifier.chars().take(64).collect();
            tracing::info!(store = %shown, "key-value store not granted");
            return Ok(Err(kvstore::Error::AccessDenied));
        }
        if self.kv.open >= MAX_OPEN_BUCKETS {
            return Ok(Err(kvstore::Error::Other(format!(
                "at most {MAX_OPEN_BUCKETS} buckets may be open at once"
            ))));
        }
        self.kv.open += 1;
        Ok(Ok(self.table.push(KvBucket { store: identifier })?))
    }
}

impl kvstore::HostBucket for KvView<'_> {
    async fn get(
        &mut self,
        bucket: Resource<KvBucket>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, kvstore::Error>> {
        self.op(&bucket, false, move |kv, ns| kv.get(ns, &key))
            .await
    }

    async fn set(
        &mut self,
        bucket: Resource<KvBucket>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), kvstore::Error>> {
        self.op(&bucket, true, move |kv, ns| kv.set(ns, &key, &value))
            .await
    }

    async fn delete(
        &mut self,
        bucket: Resource<KvBucket>,
        key: String,
    ) -> wasmtime::Result<Result<(), kvstore::Error>> {
        self.op(&bucket, true, move |kv, ns| kv.delete(ns, &key))
            .await
    }

    async fn exists(
        &mut self,
        bucket: Resource<KvBucket>,
        key: String,
    ) -> wasmtime::Result<Result<bool, kvstore::Error>> {
        self.op(&bucket, false, move |kv, ns| kv.exists(ns, &key))
            .await
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<KvBucket>,
        cursor: Option<u64>,
    ) -> wasmtime::Result<Result<kvstore::KeyResponse, kvstore::Error>> {
        let page = self
            .op(&bucket, false, move |kv, ns| kv.list_keys(ns, cursor))
            .await?;
        Ok(page.map(|(keys, cursor)| kvstore::KeyResponse { keys, cursor }))
    }

    async fn drop(&mut self, bucket: Resource<KvBucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        self.kv.open = self.kv.open.saturating_sub(1);
        Ok(())
    }
}

impl atomics::Host for KvView<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<KvBucket>,
        key: String,
        delta: u64,
    ) -> wasmtime::Result<Result<u64, kvstore::Error>> {
        self.op(&bucket, true, move |kv, ns| kv.increment(ns, &key, delta))
            .await
    }
}

impl batch::Host for KvView<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<KvBucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<Option<(String, Vec<u8>)>>, kvstore::Error>> {
        self.op(&bucket, false, move |kv, ns| kv.get_many(ns, &keys))
            .await
    }

    async fn set_many(
        &mut self,
        bucket: Resource<KvBucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> wasmtime::Result<Result<(), kvstore::Error>> {
        self.op(&bucket, true, move |kv, ns| kv.set_many(ns, &key_values))
            .await
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<KvBucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<(), kvstore::Error>> {
        self.op(&bucket, true, move |kv, ns| kv.delete_many(ns, &keys))
            .await
    }
}
