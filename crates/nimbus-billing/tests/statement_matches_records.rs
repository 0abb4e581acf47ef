//! Property: for random ledgers (tenants, functions, every outcome with
//! throttled, durations, memory, fuel, CPU, bytes, messages, records of the
//! months around the period, duplicated records) and random price sheets
//! (currencies, integer and decimal prices, free tiers, tenant overrides),
//! the statement equals a brute-force recomputation from the raw records.
//!
//! The recomputation (`oracle`) shares nothing with the code under test but
//! the record type: its own de-duplication (sort by id), month test (the
//! `started_at` text), sums from the record fields, price resolution from
//! the generated integers, u128 arithmetic with its own half-even rounding,
//! and its own decimal printing. Values are kept to sizes where u128 holds
//! every product exactly (the 256-bit path for larger ones is tested in the
//! crate's unit tests against exact rationals).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use nimbus_billing::{Period, PriceSheet, Quantities, StorageQuantities};
use nimbus_core::{Outcome, UsageRecord};
use proptest::prelude::*;
use uuid::Uuid;

const TENANTS: [&str; 3] = ["acme", "shop", "solo"];
const FUNCTIONS: [&str; 3] = ["hello", "resize", "api"];
/// Per-function dimensions: id, and base units per unit.
const PER_FUNCTION: [(&str, u128); 6] = [
    ("requests", 1),
    ("gb_seconds", 1_073_741_824_000),
    ("fuel", 1_000_000),
    ("cpu_seconds", 1_000_000),
    ("outbound_gb", 1_073_741_824),
    ("messages", 1_000_000),
];
const STORAGE: [&str; 2] = ["kv_gb_months", "blob_gb_months"];
const DIMENSIONS: [&str; 8] = [
    "requests",
    "gb_seconds",
    "fuel",
    "cpu_seconds",
    "outbound_gb",
    "messages",
    "kv_gb_months",
    "blob_gb_months",
];

/// A decimal as the sheet writes it: `mantissa / 10^scale`, and whether to
/// write it as a TOML integer (only when scale is 0).
#[derive(Debug, Clone, Copy)]
struct Dec {
    mantissa: u128,
    scale: u32,
    as_integer: bool,
}

impl Dec {
    fn toml(&self) -> String {
        if self.as_integer && self.scale == 0 {
            self.mantissa.to_string()
        } else {
            format!("\"{}\"", fixed(self.mantissa, self.scale))
        }
    }
}

/// `v / 10^places` with exactly `places` decimals.
fn fixed(v: u128, places: u32) -> String {
    let s = format!("{v:0>width$}", width = places as usize + 1);
    if places == 0 {
        return s;
    }
    let (int, frac) = s.split_at(s.len() - places as usize);
    format!("{int}.{frac}")
}

/// One optional decimal per dimension, in `DIMENSIONS` order.
type Rates = [Option<Dec>; 8];

#[derive(Debug, Clone)]
struct Sheet {
    currency: &'static str,
    minor_unit: u32,
    explicit_minor_unit: bool,
    prices: Rates,
    free_tier: Rates,
    /// Overrides for TENANTS[0] and TENANTS[1].
    overrides: [(Rates, Rates); 2],
}

impl Sheet {
    fn toml(&self) -> String {
        let mut t = format!("currency = \"{}\"\n", self.currency);
        if self.explicit_minor_unit {
            t.push_str(&format!("minor_unit = {}\n", self.minor_unit));
        }
        let section = |t: &mut String, header: &str, values: &Rates| {
            t.push_str(&format!("[{header}]\n"));
            for (id, v) in DIMENSIONS.iter().zip(values) {
                if let Some(v) = v {
                    t.push_str(&format!("{id} = {}\n", v.toml()));
                }
            }
        };
        section(&mut t, "prices", &self.prices);
        section(&mut t, "free_tier", &self.free_tier);
        for (tenant, (prices, free)) in TENANTS.iter().zip(&self.overrides) {
            section(&mut t, &format!("tenants.{tenant}.prices"), prices);
            section(&mut t, &format!("tenants.{tenant}.free_tier"), free);
        }
        t
    }

    fn resolve(&self, tenant: &str, dim: &str, free: bool) -> Option<Dec> {
        let i = DIMENSIONS.iter().position(|d| *d == dim).unwrap();
        let own = TENANTS
            .iter()
            .take(2)
            .position(|t| *t == tenant)
            .and_then(|k| {
                let (p, f) = &self.overrides[k];
                if free { f[i] } else { p[i] }
            });
        own.or(if free {
            self.free_tier[i]
        } else {
            self.prices[i]
        })
    }
}

#[derive(Debug, Clone)]
struct Gen {
    year: i32,
    month: u32,
    sheet: Sheet,
    records: Vec<UsageRecord>,
    /// (tenant, kv bytes, blob bytes, interval s)
    samples: Vec<(usize, u64, u64, u64)>,
}

fn days_in(year: i32, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn shift(year: i32, month: u32, by: i32) -> (i32, u32) {
    let m = year * 12 + month as i32 - 1 + by;
    (m.div_euclid(12), (m.rem_euclid(12) + 1) as u32)
}

fn dec(max_mantissa: u128, max_scale: u32) -> impl Strategy<Value = Dec> {
    (0..=max_mantissa, 0..=max_scale, any::<bool>()).prop_map(|(mantissa, scale, as_integer)| Dec {
        mantissa,
        scale,
        as_integer,
    })
}

fn dims(max_mantissa: u128, max_scale: u32) -> impl Strategy<Value = Rates> {
    proptest::array::uniform8(proptest::option::weighted(
        0.6,
        dec(max_mantissa, max_scale),
    ))
}

fn sparse_dims(max_mantissa: u128, max_scale: u32) -> impl Strategy<Value = Rates> {
    proptest::array::uniform8(proptest::option::weighted(
        0.2,
        dec(max_mantissa, max_scale),
    ))
}

fn sheet() -> impl Strategy<Value = Sheet> {
    let currency = prop_oneof![
        Just(("USD", 2, false)),
        Just(("JPY", 0, false)),
        Just(("BHD", 3, false)),
        Just(("EUR", 4, true)),
        (0u32..=4).prop_map(|m| ("XTS", m, true)),
    ];
    let prices = || sparse_dims(10_000_000_000, 10);
    let free = || sparse_dims(10_000_000, 4);
    (
        currency,
        dims(10_000_000_000, 10),
        dims(10_000_000, 4),
        (prices(), free()),
        (prices(), free()),
    )
        .prop_map(
            |((currency, minor_unit, explicit), prices, free_tier, o1, o2)| Sheet {
                currency,
                minor_unit,
                explicit_minor_unit: explicit,
                prices,
                free_tier,
                overrides: [o1, o2],
            },
        )
}

/// One generated record, before its id and time are filled in.
#[allow(clippy::type_complexity)]
fn record_fields() -> impl Strategy<
    Value = (
        (usize, usize, usize),
        (u64, u64, u64, u64),
        (u64, u64, u64),
        (i32, u32, u32),
    ),
> {
    (
        (0..TENANTS.len(), 0..FUNCTIONS.len(), 0..Outcome::ALL.len()),
        (
            0u64..=900_000,
            0u64..=(4 << 30),
            0u64..=10_000_000_000_000,
            0u64..=1_000_000_000,
        ),
        (0u64..=10_000_000_000, 0u64..=10_000_000_000, 0u64..=10_000),
        // Month offset (-1, 0, +1), a day fraction and microseconds.
        (-1i32..=1, 0u32..=3, 0u32..86_400_000),
    )
}

fn ledger() -> impl Strategy<Value = Gen> {
    let period = prop_oneof![
        Just((2026, 11)),
        Just((2026, 12)),
        Just((2026, 1)),
        Just((2028, 2))
    ];
    (
        period,
        sheet(),
        proptest::collection::vec(record_fields(), 0..40),
        proptest::collection::vec(any::<proptest::sample::Index>(), 0..10),
        proptest::collection::vec(
            (
                0..TENANTS.len(),
                0u64..=(10 << 30),
                0u64..=(10 << 30),
                0u64..=172_800,
            ),
            0..12,
        ),
    )
        .prop_map(|((year, month), sheet, fields, dups, samples)| {
            let mut records: Vec<UsageRecord> = fields
                .into_iter()
                .enumerate()
                .map(
                    |(
                        i,
                        (
                            (t, f, o),
                            (billed, mem, fuel, cpu),
                            (sent, recv, msgs),
                            (off, where_, ms),
                        ),
                    )| {
                        let (y, m) = shift(year, month, off);
                        // The month's first day, last day, or one in between.
                        let day = match where_ {
                            0 => 1,
                            1 => days_in(y, m),
                            _ => 1 + (ms % days_in(y, m)),
                        };
                        let (h, min, s) = (ms / 3_600_000 % 24, ms / 60_000 % 60, ms / 1000 % 60);
                        let outcome = Outcome::ALL[o];
                        let throttled = outcome == Outcome::Throttled;
                        UsageRecord {
                            started_at: format!(
                                "{y:04}-{m:02}-{day:02}T{h:02}:{min:02}:{s:02}.{:06}Z",
                                (ms % 1000) * 1000 + i as u32 % 1000
                            ),
                            billed_duration_ms: if throttled { 0 } else { billed },
                            peak_memory_bytes: mem,
                            memory_byte_ms: if throttled { 0 } else { mem * billed },
                            fuel_consumed: if throttled { 0 } else { fuel },
                            cpu_us: if throttled { 0 } else { cpu },
                            outbound_bytes_sent: sent,
                            outbound_bytes_received: recv,
                            messages_published: msgs,
                            ..UsageRecord::new(
                                Uuid::from_u128(i as u128 + 1),
                                TENANTS[t],
                                FUNCTIONS[f],
                                outcome,
                            )
                        }
                    },
                )
                .collect();
            if !records.is_empty() {
                let copies: Vec<UsageRecord> =
                    dups.iter().map(|d| d.get(&records).clone()).collect();
                records.extend(copies);
            }
            Gen {
                year,
                month,
                sheet,
                records,
                samples,
            }
        })
}

/// What the statement should say, from the raw records alone.
#[derive(Debug, PartialEq, Eq)]
struct Expected {
    /// (function or "-", dimension, quantity as printed, amount in minor units)
    lines: BTreeSet<(String, String, String, u128)>,
    /// (dimension, applied as printed, credit in minor units)
    credits: BTreeSet<(String, String, u128)>,
    subtotal: u128,
    credit_total: u128,
    total: u128,
    /// Per function: its lines' sum (what `cost` must say).
    cost: BTreeMap<String, u128>,
}

fn half_even(n: u128, d: u128) -> u128 {
    let (q, r) = (n / d, n % d);
    if 2 * r > d || (2 * r == d && q % 2 == 1) {
        q + 1
    } else {
        q
    }
}

/// `n / d` printed: every digit until it ends (at most 60), or 12 places
/// rounded half-even if it does not.
fn print_ratio(n: u128, d: u128) -> String {
    let mut digits = String::new();
    let mut r = n % d;
    let mut places = 0;
    while r != 0 && places < 60 {
        r *= 10;
        digits.push(char::from(b'0' + (r / d) as u8));
        r %= d;
        places += 1;
    }
    if r == 0 {
        return if digits.is_empty() {
            (n / d).to_string()
        } else {
            format!("{}.{digits}", n / d)
        };
    }
    fixed(half_even(n * 10u128.pow(12), d), 12)
}

fn oracle(g: &Gen, tenant: &str) -> Expected {
    let m = g.sheet.minor_unit;
    let month_prefix = format!("{:04}-{:02}-", g.year, g.month);
    let month_seconds = u128::from(days_in(g.year, g.month)) * 86_400;
    let mut records: Vec<&UsageRecord> = g.records.iter().collect();
    records.sort_by_key(|r| r.invocation_id);
    records.dedup_by_key(|r| r.invocation_id);
    records.retain(|r| r.tenant == tenant && r.started_at.starts_with(&month_prefix));

    // (function or "-", dimension) → base quantity
    let mut bases: BTreeMap<(String, &str), u128> = BTreeMap::new();
    for r in &records {
        let values = [
            u128::from(r.outcome != Outcome::Throttled),
            u128::from(r.memory_byte_ms),
            u128::from(r.fuel_consumed),
            u128::from(r.cpu_us),
            u128::from(r.outbound_bytes_sent) + u128::from(r.outbound_bytes_received),
            u128::from(r.messages_published),
        ];
        for ((dim, _), v) in PER_FUNCTION.iter().zip(values) {
            *bases.entry((r.function.clone(), dim)).or_default() += v;
        }
    }
    let t = TENANTS.iter().position(|x| *x == tenant).unwrap();
    for &(st, kv, blob, interval) in &g.samples {
        if st == t {
            *bases.entry(("-".into(), STORAGE[0])).or_default() +=
                u128::from(kv) * u128::from(interval);
            *bases.entry(("-".into(), STORAGE[1])).or_default() +=
                u128::from(blob) * u128::from(interval);
        }
    }
    let per_unit = |dim: &str| {
        PER_FUNCTION
            .iter()
            .find(|(d, _)| *d == dim)
            .map(|(_, p)| *p)
            .unwrap_or(1_073_741_824 * month_seconds)
    };

    let mut e = Expected {
        lines: BTreeSet::new(),
        credits: BTreeSet::new(),
        subtotal: 0,
        credit_total: 0,
        total: 0,
        cost: BTreeMap::new(),
    };
    let mut used: BTreeMap<&str, u128> = BTreeMap::new();
    let mut charged: BTreeMap<&str, u128> = BTreeMap::new();
    for ((function, dim), base) in &bases {
        let Some(price) = g.sheet.resolve(tenant, dim, false) else {
            continue;
        };
        *used.entry(dim).or_default() += base;
        if *base == 0 {
            continue;
        }
        let amount = half_even(
            base * price.mantissa * 10u128.pow(m),
            per_unit(dim) * 10u128.pow(price.scale),
        );
        *charged.entry(dim).or_default() += amount;
        if function != "-" {
            *e.cost.entry(function.clone()).or_default() += amount;
        }
        e.subtotal += amount;
        e.lines.insert((
            function.clone(),
            dim.to_string(),
            print_ratio(*base, per_unit(dim)),
            amount,
        ));
    }
    for dim in DIMENSIONS {
        let (Some(price), Some(free), Some(&base)) = (
            g.sheet.resolve(tenant, dim, false),
            g.sheet.resolve(tenant, dim, true),
            used.get(dim),
        ) else {
            continue;
        };
        if base == 0 || free.mantissa == 0 {
            continue;
        }
        let allowance = (free.mantissa, 10u128.pow(free.scale));
        let applied = if base * allowance.1 < allowance.0 * per_unit(dim) {
            (base, per_unit(dim))
        } else {
            allowance
        };
        let credit = half_even(
            applied.0 * price.mantissa * 10u128.pow(m),
            applied.1 * 10u128.pow(price.scale),
        )
        .min(charged.get(dim).copied().unwrap_or(0));
        e.credit_total += credit;
        e.credits
            .insert((dim.to_string(), print_ratio(applied.0, applied.1), credit));
    }
    e.total = e.subtotal - e.credit_total;
    e
}

fn minor(d: nimbus_billing::Decimal, minor_unit: u32) -> u128 {
    assert_eq!(
        d.scale(),
        minor_unit,
        "{d} has {} places, not {minor_unit}",
        d.scale()
    );
    u128::try_from(d.mantissa()).unwrap()
}

proptest! {
    // No regression files in the source tree: a failure prints its
    // minimal ledger, which belongs in a unit test.
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn statements_equal_a_brute_force_recomputation(g in ledger()) {
        let sheet = PriceSheet::parse(&g.sheet.toml(), "generated.toml").unwrap();
        let period = Period::new(g.year, g.month).unwrap();

        // The pipeline `nimbus bill` runs: each id once, the period's
        // records, summed per tenant and function.
        let mut seen = HashSet::new();
        let mut per_tenant: BTreeMap<String, BTreeMap<String, Quantities>> = BTreeMap::new();
        for r in &g.records {
            if seen.insert(r.invocation_id) && period.contains(&r.started_at).unwrap() {
                per_tenant
                    .entry(r.tenant.clone())
                    .or_default()
                    .entry(r.function.clone())
                    .or_default()
                    .add_record(r);
            }
        }
        for (t, tenant) in TENANTS.iter().enumerate() {
            let mut storage = StorageQuantities::default();
            for &(st, kv, blob, interval) in &g.samples {
                if st == t {
                    storage.add_sample(kv, blob, interval);
                }
            }
            let functions = per_tenant.remove(*tenant).unwrap_or_default();
            let s = sheet.statement(tenant, &period, &functions, &storage);
            let expected = oracle(&g, tenant);
            let m = g.sheet.minor_unit;
            let got = Expected {
                lines: s.lines.iter().map(|l| (
                    l.function.clone().unwrap_or_else(|| "-".into()),
                    l.dimension.to_string(),
                    l.quantity.clone(),
                    minor(l.amount, m),
                )).collect(),
                credits: s.free_tier.iter().map(|c| (c.dimension.to_string(), c.applied.clone(), minor(c.amount, m))).collect(),
                subtotal: minor(s.subtotal, m),
                credit_total: minor(s.free_tier_total, m),
                total: minor(s.total, m),
                cost: functions
                    .iter()
                    .filter(|(f, _)| expected.cost.contains_key(*f))
                    .map(|(f, q)| (f.clone(), minor(sheet.cost(tenant, q), m)))
                    .collect(),
            };
            prop_assert_eq!(s.lines.len(), got.lines.len(), "duplicate line items");
            prop_assert_eq!(&got, &expected, "tenant {}\n{}", tenant, g.sheet.toml());
            prop_assert_eq!(s.currency.as_str(), g.sheet.currency);
            // A function with no priced line costs nothing.
            for (f, q) in &functions {
                if !expected.cost.contains_key(f) {
                    prop_assert!(sheet.cost(tenant, q).is_zero());
                }
            }
        }
    }
}
