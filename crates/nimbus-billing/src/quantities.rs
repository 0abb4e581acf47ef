//! What is billed, summed exactly in integers from usage records and
//! storage samples, and the dimensions they are billed in.

use std::collections::BTreeMap;

use nimbus_core::{Outcome, UsageRecord};
use serde::{Deserialize, Serialize};

/// Integer sums over a set of usage records (one function's, one bucket's,
/// one tenant's): nothing is converted or rounded until a price applies.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quantities {
    /// Records whose outcome is not `throttled` (a throttled invocation
    /// never ran and is free).
    pub requests: u64,
    /// Σ `billed_duration_ms`.
    pub billed_duration_ms: u64,
    /// Σ `memory_byte_ms` (peak memory × billed duration), the GB-seconds'
    /// base.
    pub memory_byte_ms: u128,
    /// Σ `fuel_consumed`.
    pub fuel: u128,
    /// Σ `cpu_us`.
    pub cpu_us: u64,
    /// Σ `outbound_bytes_sent + outbound_bytes_received`.
    pub outbound_bytes: u128,
    /// Σ `messages_published`.
    pub messages: u64,
    /// Every record counted by its outcome (`success`, `throttled`, ...),
    /// throttled ones included.
    pub invocations_by_outcome: BTreeMap<String, u64>,
}

impl Quantities {
    /// Adds one record. The caller de-duplicates (the ledger reader does,
    /// by invocation id) and picks the records of the period.
    pub fn add_record(&mut self, r: &UsageRecord) {
        if r.outcome != Outcome::Throttled {
            self.requests = add(self.requests, 1, "requests");
        }
        self.billed_duration_ms = add(
            self.billed_duration_ms,
            r.billed_duration_ms,
            "billed_duration_ms",
        );
        self.memory_byte_ms += u128::from(r.memory_byte_ms);
        self.fuel += u128::from(r.fuel_consumed);
        self.cpu_us = add(self.cpu_us, r.cpu_us, "cpu_us");
        self.outbound_bytes +=
            u128::from(r.outbound_bytes_sent) + u128::from(r.outbound_bytes_received);
        self.messages = add(self.messages, r.messages_published, "messages");
        *self
            .invocations_by_outcome
            .entry(r.outcome.as_str().to_string())
            .or_default() += 1;
    }

    /// Adds another set of sums (e.g. hourly buckets into a day).
    pub fn merge(&mut self, other: &Quantities) {
        self.requests = add(self.requests, other.requests, "requests");
        self.billed_duration_ms = add(
            self.billed_duration_ms,
            other.billed_duration_ms,
            "billed_duration_ms",
        );
        self.memory_byte_ms += other.memory_byte_ms;
        self.fuel += other.fuel;
        self.cpu_us = add(self.cpu_us, other.cpu_us, "cpu_us");
        self.outbound_bytes += other.outbound_bytes;
        self.messages = add(self.messages, other.messages, "messages");
        for (outcome, n) in &other.invocations_by_outcome {
            *self
                .invocations_by_outcome
                .entry(outcome.clone())
                .or_default() += n;
        }
    }

    /// Every record counted, throttled included.
    pub fn invocations(&self) -> u64 {
        self.invocations_by_outcome.values().sum()
    }

    /// The base quantity of a per-function dimension (`None` for storage).
    pub fn base(&self, dimension: Dimension) -> Option<u128> {
        Some(match dimension {
            Dimension::Requests => u128::from(self.requests),
            Dimension::GbSeconds => self.memory_byte_ms,
            Dimension::Fuel => self.fuel,
            Dimension::CpuSeconds => u128::from(self.cpu_us),
            Dimension::OutboundGb => self.outbound_bytes,
            Dimension::Messages => u128::from(self.messages),
            Dimension::KvGbMonths | Dimension::BlobGbMonths => return None,
        })
    }
}

/// A u64 sum that would wrap is a ledger no machine produced (2^64 µs is
/// 584 000 CPU-years): fail loudly rather than bill a wrapped figure.
fn add(a: u64, b: u64, what: &str) -> u64 {
    a.checked_add(b)
        .unwrap_or_else(|| panic!("{what}: the sum exceeds 2^64"))
}

/// A tenant's storage over a period: Σ stored bytes × sample interval, from
/// the storage samples written beside the ledger.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageQuantities {
    pub kv_byte_seconds: u128,
    pub blob_byte_seconds: u128,
}

impl StorageQuantities {
    /// Adds one sample: `kv_bytes` and `blob_bytes` held for `interval_s`.
    pub fn add_sample(&mut self, kv_bytes: u64, blob_bytes: u64, interval_s: u64) {
        self.kv_byte_seconds += u128::from(kv_bytes) * u128::from(interval_s);
        self.blob_byte_seconds += u128::from(blob_bytes) * u128::from(interval_s);
    }

    pub fn merge(&mut self, other: &StorageQuantities) {
        self.kv_byte_seconds += other.kv_byte_seconds;
        self.blob_byte_seconds += other.blob_byte_seconds;
    }
}

/// What a price applies to. The ids (`requests`, `gb_seconds`, ...) are the
/// price sheet's keys and the `dimension` of JSON and CSV statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    /// Per request: every invocation but throttled ones.
    Requests,
    /// Per GB-second: peak memory × billed duration, GB = 2^30 bytes, 1 ms
    /// granularity (Lambda's model).
    GbSeconds,
    /// Per million fuel.
    Fuel,
    /// Per CPU-second.
    CpuSeconds,
    /// Per GB-month of key-value data (tenant-wide).
    KvGbMonths,
    /// Per GB-month of blob data (tenant-wide).
    BlobGbMonths,
    /// Per GB (2^30 bytes) of outbound HTTP bodies, sent plus received.
    OutboundGb,
    /// Per million messages published.
    Messages,
}

const GIB: u128 = 1 << 30;

impl Dimension {
    /// Every dimension, in the order statements list them.
    pub const ALL: [Dimension; 8] = [
        Dimension::Requests,
        Dimension::GbSeconds,
        Dimension::Fuel,
        Dimension::CpuSeconds,
        Dimension::OutboundGb,
        Dimension::Messages,
        Dimension::KvGbMonths,
        Dimension::BlobGbMonths,
    ];

    /// The per-function dimensions (billed from usage records).
    pub const PER_FUNCTION: [Dimension; 6] = [
        Dimension::Requests,
        Dimension::GbSeconds,
        Dimension::Fuel,
        Dimension::CpuSeconds,
        Dimension::OutboundGb,
        Dimension::Messages,
    ];

    /// The tenant-wide dimensions (billed from storage samples).
    pub const STORAGE: [Dimension; 2] = [Dimension::KvGbMonths, Dimension::BlobGbMonths];

    /// The id: the price sheet's key, JSON's and CSV's `dimension`.
    pub fn id(self) -> &'static str {
        match self {
            Dimension::Requests => "requests",
            Dimension::GbSeconds => "gb_seconds",
            Dimension::Fuel => "fuel",
            Dimension::CpuSeconds => "cpu_seconds",
            Dimension::KvGbMonths => "kv_gb_months",
            Dimension::BlobGbMonths => "blob_gb_months",
            Dimension::OutboundGb => "outbound_gb",
            Dimension::Messages => "messages",
        }
    }

    pub fn from_id(id: &str) -> Option<Dimension> {
        Dimension::ALL.into_iter().find(|d| d.id() == id)
    }

    /// The unit a price is per (and a quantity is shown in).
    pub fn unit(self) -> &'static str {
        match self {
            Dimension::Requests => "request",
            Dimension::GbSeconds => "GB-second",
            Dimension::Fuel => "million fuel",
            Dimension::CpuSeconds => "CPU-second",
            Dimension::KvGbMonths | Dimension::BlobGbMonths => "GB-month",
            Dimension::OutboundGb => "GB",
            Dimension::Messages => "million messages",
        }
    }

    /// The integer unit quantities are summed in.
    pub fn base_unit(self) -> &'static str {
        match self {
            Dimension::Requests => "request",
            Dimension::GbSeconds => "byte-ms",
            Dimension::Fuel => "fuel",
            Dimension::CpuSeconds => "µs",
            Dimension::KvGbMonths | Dimension::BlobGbMonths => "byte-second",
            Dimension::OutboundGb => "byte",
            Dimension::Messages => "message",
        }
    }

    /// Base units in one unit; storage depends on the month's length.
    pub fn per_unit(self, seconds_in_month: u64) -> u128 {
        match self {
            Dimension::Requests => 1,
            Dimension::GbSeconds => GIB * 1000,
            Dimension::Fuel | Dimension::CpuSeconds | Dimension::Messages => 1_000_000,
            Dimension::KvGbMonths | Dimension::BlobGbMonths => GIB * u128::from(seconds_in_month),
            Dimension::OutboundGb => GIB,
        }
    }

    /// Whether the dimension is billed per tenant rather than per function.
    pub fn is_storage(self) -> bool {
        matches!(self, Dimension::KvGbMonths | Dimension::BlobGbMonths)
    }
}

impl StorageQuantities {
    /// The base quantity (byte-seconds) of a storage dimension.
    pub fn base(&self, dimension: Dimension) -> Option<u128> {
        match dimension {
            Dimension::KvGbMonths => Some(self.kv_byte_seconds),
            Dimension::BlobGbMonths => Some(self.blob_byte_seconds),
            _ => None,
        }
    }
}

impl std::fmt::Display for Dimension {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_core::Outcome;
    use uuid::Uuid;

    fn record(outcome: Outcome) -> UsageRecord {
        UsageRecord {
            fuel_consumed: 10,
            billed_duration_ms: 3,
            memory_byte_ms: 3 * 65536,
            cpu_us: 700,
            outbound_bytes_sent: u64::MAX,
            outbound_bytes_received: u64::MAX,
            messages_published: 2,
            ..UsageRecord::new(Uuid::nil(), "t", "f", outcome)
        }
    }

    #[test]
    fn throttled_records_are_counted_but_not_billed_as_requests() {
        let mut q = Quantities::default();
        q.add_record(&record(Outcome::Success));
        q.add_record(&record(Outcome::Throttled));
        q.add_record(&record(Outcome::Trap));
        assert_eq!(q.requests, 2);
        assert_eq!(q.invocations(), 3);
        assert_eq!(q.invocations_by_outcome["throttled"], 1);
        assert_eq!(q.fuel, 30);
        // Two u64::MAX byte counts per record do not wrap.
        assert_eq!(q.outbound_bytes, 6 * u128::from(u64::MAX));

        let mut merged = Quantities::default();
        merged.merge(&q);
        merged.merge(&q);
        assert_eq!(merged.requests, 4);
        assert_eq!(merged.invocations_by_outcome["success"], 2);
        assert_eq!(merged.memory_byte_ms, 2 * 3 * 3 * 65536);

        let json = serde_json::to_string(&q).unwrap();
        assert_eq!(serde_json::from_str::<Quantities>(&json).unwrap(), q);
    }

    #[test]
    fn dimension_ids_round_trip() {
        for d in Dimension::ALL {
            assert_eq!(Dimension::from_id(d.id()), Some(d));
            assert_eq!(
                serde_json::to_string(&d).unwrap(),
                format!("\"{}\"", d.id())
            );
        }
        assert_eq!(Dimension::from_id("gb_second"), None);
    }
}
