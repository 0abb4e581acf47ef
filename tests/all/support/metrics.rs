//! Readers of what a host bills and counts: the usage ledger and the
//! Prometheus exposition.

use std::collections::BTreeMap;
use std::path::Path;

use nimbus_core::prometheus::{self, proto::MetricType};
use nimbus_core::{Host, JsonLinesLedger, UsageRecord};

/// The value of one exposition line, e.g.
/// `metric(host, "nimbus_invocations_in_flight{tenant=\"a\",function=\"b\"}")`.
pub fn metric(host: &Host, series: &str) -> Option<f64> {
    metric_in(&host.metrics_text(), series)
}

/// The value of one exposition line in a scraped `text` (e.g. a `/metrics`
/// response body); see [`metric`].
pub fn metric_in(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
    })
}

/// `family{tenant="acme",function="<function>"}`.
pub fn acme_series(family: &str, function: &str) -> String {
    format!("{family}{{tenant=\"acme\",function=\"{function}\"}}")
}

/// The invocations of `acme`'s `function` that ended with `outcome`.
pub fn outcome_series(function: &str, outcome: &str) -> String {
    format!(
        "nimbus_invocations_total{{tenant=\"acme\",function=\"{function}\",outcome=\"{outcome}\"}}"
    )
}

/// The sum of the series of `family` carrying every label in `want`; an
/// absent series reads 0.
pub fn series(host: &Host, family: &str, want: &[(&str, &str)]) -> f64 {
    host.registry()
        .gather()
        .iter()
        .filter(|mf| mf.name() == family)
        .flat_map(|mf| mf.get_metric())
        .filter(|m| {
            want.iter().all(|(name, value)| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == *name && l.value() == *value)
            })
        })
        // A counter or a gauge: the other one reads 0.
        .map(|m| m.get_counter().get_value() + m.get_gauge().get_value())
        .sum()
}

/// `nimbus_denied_calls_total` of `tenant/function`.
pub fn denied_calls(host: &Host, tenant: &str, function: &str) -> f64 {
    series(
        host,
        "nimbus_denied_calls_total",
        &[("tenant", tenant), ("function", function)],
    )
}

/// Every invocation counted, whatever its tenant, function and outcome.
pub fn invocations(host: &Host) -> f64 {
    host.metrics_text()
        .lines()
        .filter(|l| l.starts_with("nimbus_invocations_total{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// How many series of `nimbus_invocations_total` name `tenant`.
pub fn invocation_series(host: &Host, tenant: &str) -> usize {
    let label = format!("tenant=\"{tenant}\"");
    host.metrics_text()
        .lines()
        .filter(|l| l.starts_with("nimbus_invocations_total{") && l.contains(&label))
        .count()
}

/// Every record of a ledger: one file, or a directory of rotated files
/// (each record once).
pub fn ledger(path: &Path) -> Vec<UsageRecord> {
    if path.is_dir() {
        let source =
            nimbus_core::ledger::LedgerSource::open(&[path.to_path_buf()]).expect("ledger");
        return source.records().collect::<Result<_, _>>().expect("ledger");
    }
    JsonLinesLedger::read(path).expect("ledger")
}

/// The record of invocation `id`, which must be there.
pub fn record<'a>(records: &'a [UsageRecord], id: &str) -> &'a UsageRecord {
    records
        .iter()
        .find(|r| r.invocation_id.to_string() == id)
        .unwrap_or_else(|| panic!("no ledger record for invocation {id}: {records:?}"))
}

/// Per (tenant, function): the `fields` of its records, summed over the
/// ledger at `path`.
pub fn sums<const N: usize>(
    path: &Path,
    fields: impl Fn(&UsageRecord) -> [u64; N],
) -> BTreeMap<(String, String), [u64; N]> {
    let mut sums: BTreeMap<(String, String), [u64; N]> = BTreeMap::new();
    for r in ledger(path) {
        let e = sums
            .entry((r.tenant.clone(), r.function.clone()))
            .or_insert([0; N]);
        for (sum, value) in e.iter_mut().zip(fields(&r)) {
            *sum += value;
        }
    }
    sums
}

/// Billing totals of one (tenant, function).
#[derive(Debug, Default, PartialEq)]
pub struct Totals {
    pub by_outcome: BTreeMap<String, f64>,
    pub fuel: f64,
    pub billed_seconds: f64,
    pub memory_byte_seconds: f64,
    pub cpu_seconds: f64,
    pub throttled: f64,
    pub request_bytes: f64,
    pub response_bytes: f64,
}

fn label<'a>(m: &'a prometheus::proto::Metric, name: &str) -> &'a str {
    m.get_label()
        .iter()
        .find(|l| l.name() == name)
        .map(|l| l.value())
        .unwrap_or_default()
}

/// Totals per (tenant, function) read from the gathered metric families.
pub fn from_metrics(registry: &prometheus::Registry) -> BTreeMap<(String, String), Totals> {
    let mut out: BTreeMap<(String, String), Totals> = BTreeMap::new();
    for mf in registry.gather() {
        if mf.get_field_type() != MetricType::COUNTER || !mf.name().starts_with("nimbus_") {
            continue;
        }
        for m in mf.get_metric() {
            // Host-wide counters (e.g. compilations) bill no function.
            if label(m, "function").is_empty() {
                continue;
            }
            let key = (
                label(m, "tenant").to_string(),
                label(m, "function").to_string(),
            );
            let v = m.get_counter().get_value();
            let t = out.entry(key).or_default();
            match mf.name() {
                "nimbus_invocations_total" if v > 0.0 => {
                    t.by_outcome.insert(label(m, "outcome").to_string(), v);
                }
                "nimbus_fuel_consumed_total" => t.fuel = v,
                "nimbus_billed_duration_seconds_total" => t.billed_seconds = v,
                "nimbus_memory_byte_seconds_total" => t.memory_byte_seconds = v,
                "nimbus_cpu_seconds_total" => t.cpu_seconds = v,
                "nimbus_throttled_invocations_total" => t.throttled = v,
                "nimbus_http_request_bytes_total" => t.request_bytes = v,
                "nimbus_http_response_bytes_total" => t.response_bytes = v,
                _ => {}
            }
        }
    }
    out
}

/// The same totals computed from the ledger file.
pub fn from_ledger(path: &Path) -> BTreeMap<(String, String), Totals> {
    /// Per function: records by outcome, fuel, billed ms, byte-ms, request
    /// and response bytes, CPU µs.
    type Sums = (BTreeMap<String, u64>, u64, u64, u128, u64, u64, u64);
    let mut sums: BTreeMap<(String, String), Sums> = BTreeMap::new();
    for r in ledger(path) {
        let e = sums
            .entry((r.tenant.clone(), r.function.clone()))
            .or_default();
        *e.0.entry(r.outcome.to_string()).or_default() += 1;
        e.1 += r.fuel_consumed;
        e.2 += r.billed_duration_ms;
        e.3 += u128::from(r.memory_byte_ms);
        e.4 += r.request_bytes;
        e.5 += r.response_bytes;
        e.6 += r.cpu_us;
    }
    sums.into_iter()
        .map(|(k, (outcomes, fuel, ms, byte_ms, req, resp, cpu_us))| {
            let throttled = outcomes.get("throttled").copied().unwrap_or(0) as f64;
            let t = Totals {
                by_outcome: outcomes.into_iter().map(|(o, n)| (o, n as f64)).collect(),
                fuel: fuel as f64,
                billed_seconds: ms as f64 / 1e3,
                memory_byte_seconds: byte_ms as f64 / 1e3,
                cpu_seconds: cpu_us as f64 / 1e6,
                throttled,
                request_bytes: req as f64,
                response_bytes: resp as f64,
            };
            (k, t)
        })
        .collect()
}
