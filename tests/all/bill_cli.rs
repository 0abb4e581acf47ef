//! `nimbus bill` through the real binary: ledgers written by hand (records
//! serialized from `UsageRecord`), split across rotated files and another
//! node's copy with duplicates; the JSON totals against a recomputation
//! from the raw records; a malformed line stops the bill naming file and
//! line; a torn final line warns and the rest is billed.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::Output;

use nimbus_core::ledger::StorageSample;
use nimbus_core::{Outcome, UsageRecord};
use serde_json::Value;

use crate::support::nimbus;

const PRICES: &str = r#"
currency = "USD"

[prices]
requests = "0.0002"
gb_seconds = "0.0000166667"
fuel = "0.0013"
cpu_seconds = "0.00004"
outbound_gb = "0.09"
messages = "0.4"
kv_gb_months = "0.25"

[free_tier]
requests = 7
gb_seconds = "0.5"

[tenants.shop.prices]
requests = "0.00035"
"#;

/// (dimension, base units per unit, price mantissa, price scale) as
/// written above, for the recomputation; shop's requests price apart.
const DIMS: [(&str, u128, u128, u32); 6] = [
    ("requests", 1, 2, 4),
    ("gb_seconds", 1_073_741_824_000, 166_667, 10),
    ("fuel", 1_000_000, 13, 4),
    ("cpu_seconds", 1_000_000, 4, 5),
    ("outbound_gb", 1_073_741_824, 9, 2),
    ("messages", 1_000_000, 4, 1),
];

/// The CSV header statements are printed with (docs/billing.md).
const CSV_HEADER: &str =
    "tenant,period,currency,kind,function,dimension,quantity,quantity_exact,unit,unit_price,amount";

fn bill(args: &[&str]) -> Output {
    nimbus()
        .args(["bill"])
        .args(args)
        .output()
        .expect("run nimbus bill")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A deterministic pseudo-random sequence (64-bit LCG, top bits).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

fn records(seed: u64, n: usize) -> Vec<UsageRecord> {
    let mut rng = Lcg(seed);
    (0..n)
        .map(|_| {
            let tenant = ["acme", "shop"][rng.below(2) as usize];
            let function = ["hello", "resize", "api"][rng.below(3) as usize];
            let outcome = Outcome::ALL[rng.below(Outcome::ALL.len() as u64) as usize];
            let ran = outcome != Outcome::Throttled;
            // Mostly November, some October and December.
            let month = [10, 11, 11, 11, 11, 12][rng.below(6) as usize];
            let billed = if ran { 1 + rng.below(900_000) } else { 0 };
            let memory = 65_536 * (1 + rng.below(65_536));
            UsageRecord {
                started_at: format!(
                    "2026-{month:02}-{:02}T{:02}:{:02}:00.{:06}Z",
                    1 + rng.below(28),
                    rng.below(24),
                    rng.below(60),
                    rng.below(1_000_000)
                ),
                billed_duration_ms: billed,
                wall_duration_us: billed * 1000,
                peak_memory_bytes: memory,
                memory_byte_ms: memory * billed,
                fuel_consumed: if ran { rng.below(10_000_000_000) } else { 0 },
                cpu_us: if ran { rng.below(900_000_000) } else { 0 },
                outbound_bytes_sent: rng.below(1 << 30),
                outbound_bytes_received: rng.below(1 << 30),
                messages_published: rng.below(1000),
                ..UsageRecord::new(nimbus_core::uuid::Uuid::now_v7(), tenant, function, outcome)
            }
        })
        .collect()
}

/// Usage records, one JSON line each.
fn write_jsonl(path: &Path, records: &[UsageRecord]) {
    write_lines(
        path,
        records
            .iter()
            .map(|r| serde_json::to_string(r).expect("json")),
    );
}

fn write_lines(path: &Path, lines: impl Iterator<Item = String>) {
    let text: String = lines.map(|l| l + "\n").collect();
    std::fs::write(path, text).expect("write ledger");
}

fn half_even(n: u128, d: u128) -> u128 {
    let (q, r) = (n / d, n % d);
    if 2 * r > d || (2 * r == d && q % 2 == 1) {
        q + 1
    } else {
        q
    }
}

/// Cents of a statement amount ("12.34").
fn cents(v: &Value) -> u128 {
    let s = v.as_str().expect("a decimal string");
    let (int, frac) = s.split_once('.').expect("two places");
    assert_eq!(frac.len(), 2, "{s}");
    int.parse::<u128>().unwrap() * 100 + frac.parse::<u128>().unwrap()
}

/// What the bill must say per tenant, in cents: (subtotal, credits, total),
/// from the unique November records and samples.
fn recompute(
    records: &[UsageRecord],
    samples: &[StorageSample],
) -> BTreeMap<String, (u128, u128, u128)> {
    let mut seen = HashSet::new();
    let mut bases: BTreeMap<(String, String, &str), u128> = BTreeMap::new();
    for r in records {
        if !seen.insert(r.invocation_id) || !r.started_at.starts_with("2026-11-") {
            continue;
        }
        let values = [
            u128::from(r.outcome != Outcome::Throttled),
            u128::from(r.memory_byte_ms),
            u128::from(r.fuel_consumed),
            u128::from(r.cpu_us),
            u128::from(r.outbound_bytes_sent) + u128::from(r.outbound_bytes_received),
            u128::from(r.messages_published),
        ];
        for ((dim, ..), v) in DIMS.iter().zip(values) {
            *bases
                .entry((r.tenant.clone(), r.function.clone(), dim))
                .or_default() += v;
        }
    }
    let mut out: BTreeMap<String, (u128, u128, u128)> = BTreeMap::new();
    let mut used: BTreeMap<(String, &str), (u128, u128)> = BTreeMap::new(); // (base, charged)
    for ((tenant, _, dim), base) in &bases {
        let &(_, per_unit, mut mantissa, mut scale) = DIMS.iter().find(|d| d.0 == *dim).unwrap();
        if tenant == "shop" && *dim == "requests" {
            (mantissa, scale) = (35, 5);
        }
        let amount = half_even(base * mantissa * 100, per_unit * 10u128.pow(scale));
        out.entry(tenant.clone()).or_default().0 += amount;
        let u = used.entry((tenant.clone(), dim)).or_default();
        u.0 += base;
        u.1 += amount;
    }
    // kv: Σ bytes × interval / (2^30 × 30 days) at 0.25.
    let mut kv: BTreeMap<&str, u128> = BTreeMap::new();
    for s in samples
        .iter()
        .filter(|s| s.sampled_at.starts_with("2026-11-"))
    {
        *kv.entry(&s.tenant).or_default() += u128::from(s.kv_bytes) * u128::from(s.interval_s);
    }
    for (tenant, base) in kv {
        out.entry(tenant.to_string()).or_default().0 +=
            half_even(base * 25 * 100, 1_073_741_824 * 30 * 86_400 * 100);
    }
    // Free tier: 7 requests, 0.5 GB-s.
    for ((tenant, dim), (base, charged)) in used {
        let (mantissa, scale, allowance, per_unit) = match dim {
            "requests" if tenant == "shop" => (35, 5, (7, 1), 1),
            "requests" => (2, 4, (7, 1), 1),
            "gb_seconds" => (166_667, 10, (5, 10), 1_073_741_824_000),
            _ => continue,
        };
        let (n, d) = if base * allowance.1 < allowance.0 * per_unit {
            (base, per_unit)
        } else {
            allowance
        };
        let credit = half_even(n * mantissa * 100, d * 10u128.pow(scale)).min(charged);
        out.get_mut(&tenant).unwrap().1 += credit;
    }
    for v in out.values_mut() {
        v.2 = v.0 - v.1;
    }
    out
}

#[test]
fn bill_json_totals_equal_a_recomputation_across_rotated_files_and_duplicates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = dir.path().join("nimbus-usage");
    std::fs::create_dir(&ledger).expect("mkdir");
    let all = records(15, 400);
    // Three rotated files, the second repeating the first's last 20 records
    // (a rotation retried), and another node's copy with 30 of them again.
    write_jsonl(&ledger.join("nimbus-usage-2026-11-01.jsonl"), &all[..150]);
    write_jsonl(
        &ledger.join("nimbus-usage-2026-11-01.1.jsonl"),
        &all[130..300],
    );
    write_jsonl(&ledger.join("nimbus-usage-2026-11-02.jsonl"), &all[300..]);
    let other = dir.path().join("node-b.jsonl");
    let copies: Vec<UsageRecord> = all.iter().step_by(13).take(30).cloned().collect();
    write_jsonl(&other, &copies);
    // Hourly storage samples; the last one is December's.
    let sample = |tenant: &str, month_day: &str, kv_bytes: u64| StorageSample {
        tenant: tenant.into(),
        sampled_at: format!("2026-{month_day}T12:00:00Z"),
        interval_s: 3600,
        kv_bytes,
        blob_bytes: 5 << 30,
    };
    let samples = vec![
        sample("acme", "11-05", 3 << 30),
        sample("acme", "11-06", 7 << 30),
        sample("shop", "11-30", 1 << 40),
        sample("shop", "12-01", 1 << 40),
    ];
    write_lines(
        &ledger.join("nimbus-storage-2026-11-05.jsonl"),
        samples
            .iter()
            .map(|s| serde_json::to_string(s).expect("json")),
    );
    let prices = dir.path().join("prices.toml");
    std::fs::write(&prices, PRICES).expect("prices");
    let (ledger, other, prices) = (
        ledger.to_str().unwrap(),
        other.to_str().unwrap(),
        prices.to_str().unwrap(),
    );

    let out = bill(&[
        "--ledger", ledger, other, "--prices", prices, "--period", "2026-11", "--format", "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("json");
    let expected = recompute(&all, &samples);
    let november = all
        .iter()
        .filter(|r| r.started_at.starts_with("2026-11-"))
        .count();
    assert_eq!(doc["records"], november as u64);
    assert_eq!(doc["duplicates_skipped"], 20 + 30);
    assert!(
        stderr(&out).contains("50 duplicate records skipped"),
        "{}",
        stderr(&out)
    );
    assert_eq!(doc["currency"], "USD");
    let statements = doc["statements"].as_array().unwrap();
    let got: BTreeMap<String, (u128, u128, u128)> = statements
        .iter()
        .map(|s| {
            (
                s["tenant"].as_str().unwrap().to_string(),
                (
                    cents(&s["subtotal"]),
                    cents(&s["free_tier_total"]),
                    cents(&s["total"]),
                ),
            )
        })
        .collect();
    assert_eq!(got, expected);
    assert_eq!(
        cents(&doc["total"]),
        expected.values().map(|v| v.2).sum::<u128>()
    );
    // Every line item's amount adds up to its statement's subtotal.
    for s in statements {
        let lines: u128 = s["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| cents(&l["amount"]))
            .sum();
        assert_eq!(lines, cents(&s["subtotal"]), "{}", s["tenant"]);
    }

    // One tenant, as CSV: the same total on its total row.
    let out = bill(&[
        "--ledger", ledger, other, "--prices", prices, "--period", "2026-11", "--tenant", "shop",
        "--format", "csv",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let csv = String::from_utf8(out.stdout).unwrap();
    assert_eq!(csv.lines().next(), Some(CSV_HEADER));
    assert!(
        csv.lines()
            .skip(1)
            .all(|l| l.starts_with("shop,2026-11,USD,")),
        "{csv}"
    );
    let total_row = csv.lines().last().unwrap();
    let shop = expected["shop"].2;
    assert_eq!(
        total_row,
        format!(
            "shop,2026-11,USD,total,-,,,,,,{}.{:02}",
            shop / 100,
            shop % 100
        )
    );

    // The table names each tenant and its total.
    let out = bill(&[
        "--ledger", ledger, other, "--prices", prices, "--period", "2026-11",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = String::from_utf8(out.stdout).unwrap();
    for (tenant, (_, _, total)) in &expected {
        assert!(
            table.contains(&format!("Statement for tenant {tenant} · 2026-11 · USD")),
            "{table}"
        );
        assert!(
            table.contains(&format!("USD {}.{:02}\n", total / 100, total % 100)),
            "{table}"
        );
    }

    // A tenant without usage: a statement of zero, and a note.
    let out = bill(&[
        "--ledger", ledger, "--prices", prices, "--period", "2026-11", "--tenant", "nobody",
        "--format", "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("note: tenant nobody has no usage in 2026-11"),
        "{}",
        stderr(&out)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(doc["statements"][0]["tenant"], "nobody");
    assert_eq!(doc["statements"][0]["total"], "0.00");
    assert_eq!(doc["total"], "0.00");
}

#[test]
fn bill_fails_on_a_malformed_middle_line_naming_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = records(7, 3);
    let path = dir.path().join("nimbus-usage-2026-11-01.jsonl");
    let line = |r: &UsageRecord| serde_json::to_string(r).unwrap();
    std::fs::write(
        &path,
        format!(
            "{}\n{}\n{{\"invocation_id\": 12\n{}\n",
            line(&good[0]),
            line(&good[1]),
            line(&good[2])
        ),
    )
    .expect("write");
    let prices = dir.path().join("prices.toml");
    std::fs::write(&prices, PRICES).expect("prices");
    let out = bill(&[
        "--ledger",
        dir.path().to_str().unwrap(),
        "--prices",
        prices.to_str().unwrap(),
        "--period",
        "2026-11",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "a bill was printed");
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    let prefix = format!("error: {}: line 3: ", path.display());
    assert!(
        err.starts_with(&prefix),
        "{err:?} should start with {prefix:?}"
    );
}

#[test]
fn bill_warns_on_a_torn_final_line_and_bills_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut good = records(9, 4);
    for r in &mut good {
        r.started_at = "2026-11-10T08:00:00.000000Z".into();
        r.tenant = "acme".into();
        r.outcome = Outcome::Success;
    }
    let path = dir.path().join("nimbus-usage-2026-11-10.jsonl");
    write_jsonl(&path, &good);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut f, b"{\"invocation_id\":\"0193").unwrap();
    drop(f);
    let prices = dir.path().join("prices.toml");
    std::fs::write(
        &prices,
        "currency = \"USD\"\n[prices]\nrequests = \"0.25\"\n",
    )
    .expect("prices");
    let out = bill(&[
        "--ledger",
        path.to_str().unwrap(),
        "--prices",
        prices.to_str().unwrap(),
        "--period",
        "2026-11",
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let warning = format!(
        "warning: {}: line 5: torn final line (an unfinished write), skipped",
        path.display()
    );
    assert!(
        stderr(&out).lines().any(|l| l == warning),
        "{}",
        stderr(&out)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(doc["records"], 4);
    assert_eq!(doc["torn_lines"][0]["line"], 5);
    assert_eq!(doc["statements"][0]["total"], "1.00"); // 4 × 0.25
}

#[test]
fn bill_names_a_bad_period_and_a_bad_price_sheet() {
    let dir = tempfile::tempdir().expect("tempdir");
    let prices = dir.path().join("prices.toml");
    std::fs::write(&prices, "currency = \"USD\"\n[prices]\nrequests = 0.2\n").expect("prices");
    let (d, p) = (dir.path().to_str().unwrap(), prices.to_str().unwrap());
    let out = bill(&["--ledger", d, "--prices", p, "--period", "2026-13"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("period \"2026-13\": the month must be 01 to 12"),
        "{}",
        stderr(&out)
    );
    let out = bill(&["--ledger", d, "--prices", p, "--period", "2026-11"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!("error: {p}: line 3: prices.requests: ")),
        "{err}"
    );
    assert!(
        err.contains("a float cannot hold most prices exactly"),
        "{err}"
    );
}
