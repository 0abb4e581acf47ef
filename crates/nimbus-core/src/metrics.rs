//! Billing metrics as a custom `prometheus` collector.
//!
//! The `prometheus` crate's label vectors key a series by a hash of the label
//! values joined without a separator, so `("acme", "billing")` and
//! `("acmebill", "ing")` would share one series: one tenant billed for
//! another's usage. Here every (tenant, function) owns its meters outright,
//! keyed by the exact pair in a map, and the collector renders them into
//! metric families on scrape. Meters are resolved once, at deploy; the hot
//! path only touches atomics.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};

use dashmap::DashMap;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};

use crate::usage::{Outcome, UsageRecord};

/// Upper bounds (seconds) of the invocation duration histogram.
const DURATION_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Upper bounds (bytes) of the peak memory histogram: 64 KiB to 4 GiB by 4×.
const MEMORY_BUCKETS: [f64; 9] = [
    65536.0,
    262144.0,
    1048576.0,
    4194304.0,
    16777216.0,
    67108864.0,
    268435456.0,
    1073741824.0,
    4294967296.0,
];

/// A fixed-bucket histogram over integer observations.
#[derive(Debug)]
struct AtomicHistogram {
    bounds: &'static [f64],
    /// Non-cumulative counts; the last slot is `+Inf`.
    counts: Vec<AtomicU64>,
    sum: AtomicU64,
    /// Divides `sum` for exposition (1e6 for microseconds → seconds).
    scale: f64,
}

impl AtomicHistogram {
    fn new(bounds: &'static [f64], scale: f64) -> Self {
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            scale,
        }
    }

    fn observe(&self, raw: u64) {
        let value = raw as f64 / self.scale;
        let slot = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[slot].fetch_add(1, Relaxed);
        self.sum.fetch_add(raw, Relaxed);
    }

    fn to_proto(&self) -> proto::Histogram {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(self.bounds.len());
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            cumulative += count.load(Relaxed);
            let mut b = proto::Bucket::default();
            b.set_upper_bound(*bound);
            b.set_cumulative_count(cumulative);
            buckets.push(b);
        }
        cumulative += self.counts[self.bounds.len()].load(Relaxed);
        let mut h = proto::Histogram::default();
        h.set_bucket(buckets);
        h.set_sample_count(cumulative);
        h.set_sample_sum(self.sum.load(Relaxed) as f64 / self.scale);
        h
    }
}

/// Per-tenant meters: the histograms, labelled by tenant only to bound
/// cardinality.
#[derive(Debug)]
pub(crate) struct TenantMeters {
    tenant: Arc<str>,
    duration: AtomicHistogram,
    peak_memory: AtomicHistogram,
}

/// Per-(tenant, function) meters.
#[derive(Debug)]
pub(crate) struct FunctionMeters {
    tenant: Arc<TenantMeters>,
    function: Arc<str>,
    invocations: [AtomicU64; Outcome::ALL.len()],
    /// One per row of [`COUNTERS`], in its order.
    counters: [AtomicU64; COUNTERS.len()],
    // u128: byte-milliseconds overflow u64 after ~5 million GB-seconds,
    // which one busy tenant reaches in months.
    memory_byte_ms: Mutex<u128>,
    in_flight: AtomicI64,
    /// Invocations per version; each handle holds its version's counter,
    /// so counting costs one atomic add.
    versions: Mutex<BTreeMap<u32, Arc<AtomicU64>>>,
}

impl FunctionMeters {
    /// Counts a finished (or throttled) invocation from its usage record.
    pub(crate) fn observe(&self, r: &UsageRecord) {
        self.invocations[r.outcome.index()].fetch_add(1, Relaxed);
        for (counter, row) in self.counters.iter().zip(COUNTERS) {
            counter.fetch_add((row.read)(r), Relaxed);
        }
        if r.outcome == Outcome::Throttled {
            return;
        }
        *self
            .memory_byte_ms
            .lock()
            .unwrap_or_else(PoisonError::into_inner) += u128::from(r.memory_byte_ms);
        self.tenant.duration.observe(r.wall_duration_us);
        self.tenant.peak_memory.observe(r.peak_memory_bytes);
    }

    /// The invocation counter of `version`.
    pub(crate) fn version(&self, version: u32) -> Arc<AtomicU64> {
        self.versions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(version)
            .or_default()
            .clone()
    }

    /// Marks one invocation in flight until the guard drops.
    pub(crate) fn enter(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Relaxed);
        InFlight(self.clone())
    }
}

pub(crate) struct InFlight(Arc<FunctionMeters>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

/// The metric families, in exposition order.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
}

const INVOCATIONS: Family = Family {
    name: "nimbus_invocations_total",
    help: "Invocations by outcome (throttled ones included).",
    kind: MetricType::COUNTER,
};
const FUEL: Family = Family {
    name: "nimbus_fuel_consumed_total",
    help: "Fuel (wasm compute units) consumed by guests.",
    kind: MetricType::COUNTER,
};
const BILLED: Family = Family {
    name: "nimbus_billed_duration_seconds_total",
    help: "Billed duration: wall time per invocation rounded up to 1 ms.",
    kind: MetricType::COUNTER,
};
const CPU: Family = Family {
    name: "nimbus_cpu_seconds_total",
    help: "CPU time of invocations on the threads that ran them (usage field cpu_us).",
    kind: MetricType::COUNTER,
};
const MEMORY: Family = Family {
    name: "nimbus_memory_byte_seconds_total",
    help: "Peak linear memory times billed duration.",
    kind: MetricType::COUNTER,
};
const THROTTLED: Family = Family {
    name: "nimbus_throttled_invocations_total",
    help: "Invocations refused at a concurrency limit.",
    kind: MetricType::COUNTER,
};
const REQUEST_BYTES: Family = Family {
    name: "nimbus_http_request_bytes_total",
    help: "Request body bytes received by HTTP functions.",
    kind: MetricType::COUNTER,
};
const RESPONSE_BYTES: Family = Family {
    name: "nimbus_http_response_bytes_total",
    help: "Response body bytes returned by HTTP functions.",
    kind: MetricType::COUNTER,
};
const OUTBOUND: Family = Family {
    name: "nimbus_outbound_http_requests_total",
    help: "Outbound HTTP requests guests sent to granted hosts.",
    kind: MetricType::COUNTER,
};
const DENIED: Family = Family {
    name: "nimbus_denied_calls_total",
    help: "Guest calls refused because the name was not granted.",
    kind: MetricType::COUNTER,
};
const KV_OPS: Family = Family {
    name: "nimbus_kv_operations_total",
    help: "Key-value operations by kind (read or write).",
    kind: MetricType::COUNTER,
};
const KV_STORED: Family = Family {
    name: "nimbus_kv_stored_bytes",
    help: "Bytes (keys + values) a tenant keeps in key-value stores.",
    kind: MetricType::GAUGE,
};
const OUTBOUND_BYTES: Family = Family {
    name: "nimbus_outbound_http_bytes_total",
    help: "Outbound HTTP body bytes, by direction (sent, received).",
    kind: MetricType::COUNTER,
};
const BLOB_OPS: Family = Family {
    name: "nimbus_blob_operations_total",
    help: "Blob store calls by guests (container and object operations).",
    kind: MetricType::COUNTER,
};
const BLOB_BYTES: Family = Family {
    name: "nimbus_blob_bytes_total",
    help: "Object bytes guests read or wrote (committed writes only), by direction.",
    kind: MetricType::COUNTER,
};
const BLOB_STORED: Family = Family {
    name: "nimbus_blob_stored_bytes",
    help: "Bytes of blob objects a tenant stores.",
    kind: MetricType::GAUGE,
};
const COMPILATIONS: Family = Family {
    name: "nimbus_component_compilations_total",
    help: "Components compiled by this host (Cranelift runs; a deploy loaded from the compile cache is not one).",
    kind: MetricType::COUNTER,
};
const CACHE_HITS: Family = Family {
    name: "nimbus_component_cache_hits_total",
    help: "Deploys that loaded the component's compiled artifact from the compile cache instead of compiling it.",
    kind: MetricType::COUNTER,
};
const VERSION_INVOCATIONS: Family = Family {
    name: "nimbus_function_version_invocations_total",
    help: "Invocations (every outcome) by the function version that ran them; its sum over versions is nimbus_invocations_total's.",
    kind: MetricType::COUNTER,
};
const MESSAGES: Family = Family {
    name: "nimbus_messages_published_total",
    help: "Messages guests published to their tenant's queues.",
    kind: MetricType::COUNTER,
};
const IN_FLIGHT: Family = Family {
    name: "nimbus_invocations_in_flight",
    help: "Invocations currently running.",
    kind: MetricType::GAUGE,
};
const POOL_WAITING: Family = Family {
    name: "nimbus_instance_pool_waiting",
    help: "Invocations waiting for a slot in the host's full instance pool (tenants under their fair share).",
    kind: MetricType::GAUGE,
};
const DURATION: Family = Family {
    name: "nimbus_invocation_duration_seconds",
    help: "Wall time of invocations that ran, per tenant.",
    kind: MetricType::HISTOGRAM,
};
const PEAK_MEMORY: Family = Family {
    name: "nimbus_invocation_peak_memory_bytes",
    help: "Peak linear memory of invocations that ran, per tenant.",
    kind: MetricType::HISTOGRAM,
};

/// One counter series per (tenant, function) fed from one usage record
/// field: the single place where record fields become metric families. A
/// new usage field is one row here.
struct Counter {
    family: &'static Family,
    /// An extra label telling rows of one family apart.
    label: Option<(&'static str, &'static str)>,
    read: fn(&UsageRecord) -> u64,
    /// Exposed value = counted value / divisor (1e3: ms → s). A division,
    /// as the ledger's readers compute it, so both give the same float.
    divisor: f64,
}

const fn row(family: &'static Family, read: fn(&UsageRecord) -> u64) -> Counter {
    Counter {
        family,
        label: None,
        read,
        divisor: 1.0,
    }
}

const fn labelled(
    family: &'static Family,
    label: (&'static str, &'static str),
    read: fn(&UsageRecord) -> u64,
) -> Counter {
    Counter {
        family,
        label: Some(label),
        read,
        divisor: 1.0,
    }
}

/// Rows of one family are adjacent.
const COUNTERS: [Counter; 16] = [
    row(&FUEL, |r| r.fuel_consumed),
    Counter {
        divisor: 1e6,
        ..row(&CPU, |r| r.cpu_us)
    },
    Counter {
        divisor: 1e3,
        ..row(&BILLED, |r| r.billed_duration_ms)
    },
    row(&THROTTLED, |r| u64::from(r.outcome == Outcome::Throttled)),
    row(&REQUEST_BYTES, |r| r.request_bytes),
    row(&RESPONSE_BYTES, |r| r.response_bytes),
    row(&OUTBOUND, |r| r.outbound_requests),
    labelled(&OUTBOUND_BYTES, ("direction", "sent"), |r| {
        r.outbound_bytes_sent
    }),
    labelled(&OUTBOUND_BYTES, ("direction", "received"), |r| {
        r.outbound_bytes_received
    }),
    row(&DENIED, |r| r.denied_calls),
    labelled(&KV_OPS, ("op", "read"), |r| r.kv_reads),
    labelled(&KV_OPS, ("op", "write"), |r| r.kv_writes),
    row(&BLOB_OPS, |r| r.blob_operations),
    labelled(&BLOB_BYTES, ("direction", "read"), |r| r.blob_bytes_read),
    labelled(&BLOB_BYTES, ("direction", "written"), |r| {
        r.blob_bytes_written
    }),
    row(&MESSAGES, |r| r.messages_published),
];

/// Registry of every meter; registered with a `prometheus::Registry` as one
/// collector.
#[derive(Debug)]
pub(crate) struct Metrics {
    functions: DashMap<(Arc<str>, Arc<str>), Arc<FunctionMeters>>,
    tenants: DashMap<Arc<str>, Arc<TenantMeters>>,
    descs: Vec<Desc>,
    /// Asked for each tenant's stored bytes on scrape.
    kv: Arc<dyn nimbus_kv::KvBackend>,
    blob: Arc<dyn nimbus_blob::BlobBackend>,
    compilations: AtomicU64,
    cache_hits: AtomicU64,
    /// Kept by the pool's admission, which holds a clone.
    pub(crate) pool_waiting: Arc<AtomicI64>,
}

impl Metrics {
    /// Counts one compilation (Cranelift run) of a component.
    pub(crate) fn compiled(&self) {
        self.compilations.fetch_add(1, Relaxed);
    }

    /// Counts one deploy served from the compile cache.
    pub(crate) fn cache_hit(&self) {
        self.cache_hits.fetch_add(1, Relaxed);
    }

    pub(crate) fn new(
        kv: Arc<dyn nimbus_kv::KvBackend>,
        blob: Arc<dyn nimbus_blob::BlobBackend>,
    ) -> Self {
        let desc = |f: &Family, labels: &[&str]| {
            Desc::new(
                f.name.into(),
                f.help.into(),
                labels.iter().map(|l| l.to_string()).collect(),
                Default::default(),
            )
        };
        let tf = ["tenant", "function"];
        let mut descs = vec![
            desc(&INVOCATIONS, &["tenant", "function", "outcome"]),
            desc(&MEMORY, &tf),
            desc(&IN_FLIGHT, &tf),
            desc(&DURATION, &["tenant"]),
            desc(&PEAK_MEMORY, &["tenant"]),
            desc(&KV_STORED, &["tenant"]),
            desc(&BLOB_STORED, &["tenant"]),
            desc(&COMPILATIONS, &[]),
            desc(&CACHE_HITS, &[]),
            desc(&POOL_WAITING, &[]),
            desc(&VERSION_INVOCATIONS, &["tenant", "function", "version"]),
        ];
        for (i, c) in COUNTERS.iter().enumerate() {
            if i > 0 && std::ptr::eq(COUNTERS[i - 1].family, c.family) {
                continue;
            }
            descs.push(match c.label {
                Some((label, _)) => desc(c.family, &["tenant", "function", label]),
                None => desc(c.family, &tf),
            });
        }
        let descs = descs
            .into_iter()
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("static metric descriptions are valid: {e}"));
        Self {
            functions: DashMap::new(),
            tenants: DashMap::new(),
            descs,
            kv,
            blob,
            compilations: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
            pool_waiting: Arc::default(),
        }
    }

    /// The meters of (tenant, function), created on first use and kept
    /// across redeploys so counters never go backwards.
    pub(crate) fn function(&self, tenant: &str, function: &str) -> Arc<FunctionMeters> {
        let key: (Arc<str>, Arc<str>) = (tenant.into(), function.into());
        if let Some(m) = self.functions.get(&key) {
            return m.clone();
        }
        let tenant_meters = self
            .tenants
            .entry(key.0.clone())
            .or_insert_with(|| {
                Arc::new(TenantMeters {
                    tenant: key.0.clone(),
                    duration: AtomicHistogram::new(&DURATION_BUCKETS, 1e6),
                    peak_memory: AtomicHistogram::new(&MEMORY_BUCKETS, 1.0),
                })
            })
            .clone();
        self.functions
            .entry(key.clone())
            .or_insert_with(|| {
                Arc::new(FunctionMeters {
                    tenant: tenant_meters,
                    function: key.1,
                    invocations: Default::default(),
                    counters: Default::default(),
                    memory_byte_ms: Mutex::new(0),
                    in_flight: AtomicI64::new(0),
                    versions: Mutex::default(),
                })
            })
            .clone()
    }
}

fn labels(pairs: &[(&str, &str)]) -> Vec<proto::LabelPair> {
    pairs
        .iter()
        .map(|(k, v)| {
            let mut l = proto::LabelPair::default();
            l.set_name(k.to_string());
            l.set_value(v.to_string());
            l
        })
        .collect()
}

fn counter(value: f64, pairs: &[(&str, &str)]) -> proto::Metric {
    let mut c = proto::Counter::default();
    c.set_value(value);
    let mut m = proto::Metric::default();
    m.set_label(labels(pairs));
    m.set_counter(c);
    m
}

fn family(f: &Family, metrics: Vec<proto::Metric>) -> MetricFamily {
    let mut mf = MetricFamily::default();
    mf.set_name(f.name.to_string());
    mf.set_help(f.help.to_string());
    mf.set_field_type(f.kind);
    mf.set_metric(metrics);
    mf
}

impl Collector for Metrics {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut functions: Vec<Arc<FunctionMeters>> =
            self.functions.iter().map(|e| e.value().clone()).collect();
        functions
            .sort_by(|a, b| (&a.tenant.tenant, &a.function).cmp(&(&b.tenant.tenant, &b.function)));
        let mut tenants: Vec<Arc<TenantMeters>> =
            self.tenants.iter().map(|e| e.value().clone()).collect();
        tenants.sort_by(|a, b| a.tenant.cmp(&b.tenant));

        let mut invocations = Vec::new();
        let mut by_version = Vec::new();
        let (mut memory, mut in_flight) = (Vec::new(), Vec::new());
        let mut counters: Vec<Vec<proto::Metric>> = COUNTERS.iter().map(|_| Vec::new()).collect();
        for m in &functions {
            let tf = [("tenant", &*m.tenant.tenant), ("function", &*m.function)];
            for outcome in Outcome::ALL {
                invocations.push(counter(
                    m.invocations[outcome.index()].load(Relaxed) as f64,
                    &[tf[0], tf[1], ("outcome", outcome.as_str())],
                ));
            }
            for ((series, value), row) in counters.iter_mut().zip(&m.counters).zip(&COUNTERS) {
                let value = value.load(Relaxed) as f64 / row.divisor;
                series.push(match row.label {
                    Some(label) => counter(value, &[tf[0], tf[1], label]),
                    None => counter(value, &tf),
                });
            }
            let byte_ms = *m
                .memory_byte_ms
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            memory.push(counter(byte_ms as f64 / 1e3, &tf));
            for (v, n) in m
                .versions
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
            {
                by_version.push(counter(
                    n.load(Relaxed) as f64,
                    &[tf[0], tf[1], ("version", &v.to_string())],
                ));
            }
            let mut g = proto::Gauge::default();
            g.set_value(m.in_flight.load(Relaxed) as f64);
            let mut gm = proto::Metric::default();
            gm.set_label(labels(&tf));
            gm.set_gauge(g);
            in_flight.push(gm);
        }
        let stored_gauge = |read: &dyn Fn(&str) -> Option<u64>| -> Vec<proto::Metric> {
            tenants
                .iter()
                .filter_map(|t| {
                    // A failing backend read drops the series for this
                    // scrape rather than reporting a wrong value.
                    let bytes = read(&t.tenant)?;
                    let mut g = proto::Gauge::default();
                    g.set_value(bytes as f64);
                    let mut m = proto::Metric::default();
                    m.set_label(labels(&[("tenant", &t.tenant)]));
                    m.set_gauge(g);
                    Some(m)
                })
                .collect()
        };
        let stored = stored_gauge(&|t| self.kv.stored_bytes(t).ok());
        let blob_stored = stored_gauge(&|t| self.blob.stored_bytes(t).ok());
        let histograms = |pick: fn(&TenantMeters) -> &AtomicHistogram| {
            tenants
                .iter()
                .map(|t| {
                    let mut m = proto::Metric::default();
                    m.set_label(labels(&[("tenant", &t.tenant)]));
                    m.set_histogram(pick(t).to_proto());
                    m
                })
                .collect::<Vec<_>>()
        };
        let mut families = vec![
            family(&INVOCATIONS, invocations),
            family(&MEMORY, memory),
            family(&IN_FLIGHT, in_flight),
            family(&DURATION, histograms(|t| &t.duration)),
            family(&PEAK_MEMORY, histograms(|t| &t.peak_memory)),
            family(&KV_STORED, stored),
            family(&BLOB_STORED, blob_stored),
            family(
                &COMPILATIONS,
                vec![counter(self.compilations.load(Relaxed) as f64, &[])],
            ),
            family(
                &CACHE_HITS,
                vec![counter(self.cache_hits.load(Relaxed) as f64, &[])],
            ),
            family(&VERSION_INVOCATIONS, by_version),
            family(
                &POOL_WAITING,
                vec![{
                    let mut g = proto::Gauge::default();
                    g.set_value(self.pool_waiting.load(Relaxed) as f64);
                    let mut m = proto::Metric::default();
                    m.set_gauge(g);
                    m
                }],
            ),
        ];
        // Rows of one family are adjacent in COUNTERS: merge their series.
        for (row, series) in COUNTERS.iter().zip(counters) {
            match families.last_mut() {
                Some(last) if last.name() == row.family.name => {
                    last.mut_metric().extend(series);
                }
                _ => families.push(family(row.family, series)),
            }
        }
        families
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn record(tenant: &str, function: &str, fuel: u64) -> UsageRecord {
        UsageRecord {
            fuel_consumed: fuel,
            peak_memory_bytes: 1 << 20,
            wall_duration_us: 1500,
            billed_duration_ms: 2,
            memory_byte_ms: 2 << 20,
            ..UsageRecord::new(Uuid::now_v7(), tenant, function, Outcome::Success)
        }
    }

    fn test_blob() -> Arc<dyn nimbus_blob::BlobBackend> {
        let dir = tempfile::tempdir().unwrap().keep();
        Arc::new(nimbus_blob::FsBlobs::open(&dir).unwrap())
    }

    fn test_kv() -> Arc<dyn nimbus_kv::KvBackend> {
        Arc::new(nimbus_kv::RedbKv::in_memory().unwrap())
    }

    fn text(metrics: Metrics) -> String {
        let registry = prometheus::Registry::new();
        registry.register(Box::new(metrics)).unwrap();
        prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap()
    }

    #[test]
    fn series_whose_label_concatenations_coincide_stay_apart() {
        let metrics = Metrics::new(test_kv(), test_blob());
        metrics
            .function("acme", "billing")
            .observe(&record("acme", "billing", 7));
        metrics
            .function("acmebill", "ing")
            .observe(&record("acmebill", "ing", 1000));
        let text = text(metrics);
        assert!(
            text.contains("nimbus_fuel_consumed_total{tenant=\"acme\",function=\"billing\"} 7\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "nimbus_fuel_consumed_total{tenant=\"acmebill\",function=\"ing\"} 1000\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_sum_is_scaled() {
        let metrics = Metrics::new(test_kv(), test_blob());
        let m = metrics.function("t", "f");
        m.observe(&record("t", "f", 1));
        let mut slow = record("t", "f", 1);
        slow.wall_duration_us = 20_000_000;
        m.observe(&slow);
        let text = text(metrics);
        assert!(
            text.contains(
                "nimbus_invocation_duration_seconds_bucket{tenant=\"t\",le=\"0.0025\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "nimbus_invocation_duration_seconds_bucket{tenant=\"t\",le=\"+Inf\"} 2\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("nimbus_invocation_duration_seconds_sum{tenant=\"t\"} 20.0015\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "nimbus_billed_duration_seconds_total{tenant=\"t\",function=\"f\"} 0.004\n"
            ),
            "{text}"
        );
    }
}
