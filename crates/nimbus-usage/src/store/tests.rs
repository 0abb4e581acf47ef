use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use nimbus_core::ledger::{RotatingLedger, Rotation, StorageLedger, StorageSample};
use nimbus_core::{Outcome, UsageRecord, UsageSink};
use uuid::Uuid;

use super::*;

fn record(tenant: &str, function: &str, started_at: &str, n: u64, outcome: Outcome) -> UsageRecord {
    UsageRecord {
        fuel_consumed: 1000 + n,
        peak_memory_bytes: 65536 * n,
        billed_duration_ms: n,
        memory_byte_ms: 65536 * n * n,
        cpu_us: 10 * n,
        response_bytes: n,
        started_at: started_at.into(),
        ..UsageRecord::new(Uuid::now_v7(), tenant, function, outcome)
    }
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn by_function(records: &[UsageRecord], tenant: &str) -> BTreeMap<String, BTreeMap<i64, Bucket>> {
    let mut out: BTreeMap<String, BTreeMap<i64, Bucket>> = BTreeMap::new();
    for r in records.iter().filter(|r| r.tenant == tenant) {
        let hour = t(&r.started_at).timestamp() / 3600 * 3600;
        out.entry(r.function.clone())
            .or_default()
            .entry(hour)
            .or_default()
            .add_record(r);
    }
    out
}

#[test]
fn rollups_equal_the_ledger_through_rotation_and_a_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let ledger_dir = dir.path().join("usage");
    let ledger = RotatingLedger::open(
        &ledger_dir,
        Rotation {
            max_file_bytes: 8192,
            ..Rotation::default()
        },
    )
    .unwrap();
    let rollups = Rollups::open(&dir.path().join("rollups.redb"), &ledger_dir).unwrap();
    let mut written = Vec::new();
    let hours = [
        "2026-11-30T23:59:59.999999Z",
        "2026-12-01T00:00:00.000000Z",
        "2026-12-01T05:30:00.000000Z",
    ];
    for n in 0..120u64 {
        let tenant = ["a", "ab", "a\u{1}"][(n % 3) as usize];
        let outcome = if n % 7 == 0 {
            Outcome::Trap
        } else {
            Outcome::Success
        };
        let r = record(
            tenant,
            ["f", "g"][(n % 2) as usize],
            hours[(n % 3) as usize],
            n,
            outcome,
        );
        ledger.record(&r).unwrap();
        written.push(r);
        if n % 40 == 39 {
            // Queries in between: each catches up with what was written.
            let got = rollups
                .query(
                    "a",
                    t("2026-11-01T00:00:00Z"),
                    t("2027-01-01T00:00:00Z"),
                    None,
                )
                .unwrap();
            assert_eq!(got.functions, by_function(&written, "a"));
        }
    }
    let all = |r: &Rollups, tenant| {
        r.query(
            tenant,
            t("2026-11-01T00:00:00Z"),
            t("2027-01-01T00:00:00Z"),
            None,
        )
        .unwrap()
    };
    for tenant in ["a", "ab", "a\u{1}"] {
        assert_eq!(
            all(&rollups, tenant).functions,
            by_function(&written, tenant)
        );
    }
    // A range: only the December hours, and one function.
    let dec = rollups
        .query(
            "ab",
            t("2026-12-01T00:00:00Z"),
            t("2026-12-02T00:00:00Z"),
            Some("f"),
        )
        .unwrap();
    let expected: BTreeMap<i64, Bucket> = by_function(&written, "ab")
        .remove("f")
        .unwrap_or_default()
        .into_iter()
        .filter(|(h, _)| *h >= t("2026-12-01T00:00:00Z").timestamp())
        .collect();
    assert_eq!(dec.functions.get("f"), Some(&expected));
    assert_eq!(dec.functions.len(), 1);

    let recent = rollups.recent("a", None, 5).unwrap();
    let newest: Vec<String> = written
        .iter()
        .filter(|r| r.tenant == "a")
        .rev()
        .take(5)
        .map(|r| r.invocation_id.to_string())
        .collect();
    assert_eq!(
        recent
            .iter()
            .map(|r| r.invocation_id.clone())
            .collect::<Vec<_>>(),
        newest
    );

    // Rebuilt from the ledger: the same figures.
    let live = all(&rollups, "a");
    drop(rollups);
    std::fs::remove_file(dir.path().join("rollups.redb")).unwrap();
    let rebuilt = Rollups::open(&dir.path().join("rollups.redb"), &ledger_dir).unwrap();
    assert_eq!(all(&rebuilt, "a"), live);
}

#[test]
fn storage_samples_are_summed_per_hour() {
    let dir = tempfile::tempdir().unwrap();
    let storage = StorageLedger::open(dir.path(), None).unwrap();
    for (at, kv) in [
        ("2026-12-01T01:00:00Z", 10),
        ("2026-12-01T01:30:00Z", 20),
        ("2026-12-01T02:00:00Z", 30),
    ] {
        storage
            .record(&StorageSample {
                tenant: "a".into(),
                sampled_at: at.into(),
                interval_s: 1800,
                kv_bytes: kv,
                blob_bytes: 1,
            })
            .unwrap();
    }
    let rollups = Rollups::open(&dir.path().join("r.redb"), dir.path()).unwrap();
    let got = rollups
        .query(
            "a",
            t("2026-12-01T00:00:00Z"),
            t("2026-12-02T00:00:00Z"),
            None,
        )
        .unwrap();
    let h1 = t("2026-12-01T01:00:00Z").timestamp();
    assert_eq!(got.storage[&h1].kv_byte_seconds, 30 * 1800);
    assert_eq!(got.storage[&(h1 + 3600)].kv_byte_seconds, 30 * 1800);
    assert_eq!(got.storage[&h1].blob_byte_seconds, 2 * 1800);
}
