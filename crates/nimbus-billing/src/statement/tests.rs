use std::collections::BTreeMap;

use rust_decimal::Decimal;

use crate::{Dimension, Period, PriceError, PriceSheet, Quantities, StorageQuantities};

fn sheet(text: &str) -> PriceSheet {
    PriceSheet::parse(text, "test.toml").unwrap()
}

fn nov() -> Period {
    Period::parse("2026-11").unwrap()
}

fn one(function: &str, q: Quantities) -> BTreeMap<String, Quantities> {
    BTreeMap::from([(function.to_string(), q)])
}

fn requests(n: u64) -> Quantities {
    Quantities {
        requests: n,
        ..Quantities::default()
    }
}

fn no_storage() -> StorageQuantities {
    StorageQuantities::default()
}

#[test]
fn line_items_round_half_even_at_half_a_minor_unit() {
    let s = sheet("currency = \"USD\"\n[prices]\nrequests = \"0.005\"\n");
    // Each n × 0.005 = n/2 cents: odd n sits exactly on half a cent.
    for (n, amount) in [
        (1, "0.00"),                                        // 0.5 ¢ → 0 (even)
        (3, "0.02"),                                        // 1.5 ¢ → 2
        (5, "0.02"),                                        // 2.5 ¢ → 2
        (7, "0.04"),                                        // 3.5 ¢ → 4
        (2, "0.01"),                                        // exact
        (1_000_000_000_000_000_001, "5000000000000000.00"), // 5·10^17 + 0.5 ¢ → even
        (1_000_000_000_000_000_003, "5000000000000000.02"), // 5·10^17 + 1.5 ¢ → up
    ] {
        let st = s.statement("t", &nov(), &one("f", requests(n)), &no_storage());
        assert_eq!(st.lines.len(), 1);
        assert_eq!(st.lines[0].amount.to_string(), amount, "{n} requests");
        assert_eq!(st.total.to_string(), amount);
        assert_eq!(s.cost("t", &requests(n)).to_string(), amount);
    }
    // Just off the tie rounds to the nearest.
    let s = sheet("currency = \"USD\"\n[prices]\nrequests = \"0.00500001\"\n");
    let st = s.statement("t", &nov(), &one("f", requests(1)), &no_storage());
    assert_eq!(st.lines[0].amount.to_string(), "0.01");
}

#[test]
fn each_line_is_rounded_on_its_own() {
    // Two functions of 0.4 ¢ each: 0.00 + 0.00, not round(0.8 ¢) = 0.01.
    let s = sheet("currency = \"USD\"\n[prices]\nrequests = \"0.004\"\n");
    let functions = BTreeMap::from([
        ("a".to_string(), requests(1)),
        ("b".to_string(), requests(1)),
    ]);
    let st = s.statement("t", &nov(), &functions, &no_storage());
    assert_eq!(st.lines.len(), 2);
    assert_eq!(st.subtotal.to_string(), "0.00");
}

#[test]
fn the_free_tier_credits_min_of_use_and_allowance_capped_at_the_charge() {
    let s = sheet(
        "currency = \"USD\"\n[prices]\nrequests = \"0.01\"\ngb_seconds = \"0.003\"\nfuel = \"2\"\n\
         [free_tier]\nrequests = 5\ngb_seconds = \"1.5\"\nfuel = 100\n",
    );
    let a = Quantities {
        requests: 3,
        memory_byte_ms: (1 << 30) * 1000, // 1 GB-s: 0.003 → 0.00
        fuel: 1_000_000,                  // 1 million fuel: 2.00
        ..Quantities::default()
    };
    let b = Quantities {
        requests: 4,
        memory_byte_ms: (1 << 30) * 1000, // 1 GB-s: 0.00
        ..Quantities::default()
    };
    let functions = BTreeMap::from([("a".to_string(), a), ("b".to_string(), b)]);
    let st = s.statement("t", &nov(), &functions, &no_storage());
    // Lines: a requests 0.03, a gb_s 0.00, a fuel 2.00, b requests 0.04, b gb_s 0.00.
    let amounts: Vec<String> = st.lines.iter().map(|l| l.amount.to_string()).collect();
    assert_eq!(amounts, ["0.03", "0.00", "2.00", "0.04", "0.00"]);
    assert_eq!(st.subtotal.to_string(), "2.07");
    let credit = |d| st.free_tier.iter().find(|c| c.dimension == d).unwrap();
    // 7 requests used, 5 free: 0.05.
    let r = credit(Dimension::Requests);
    assert_eq!((r.used.as_str(), r.applied.as_str()), ("7", "5"));
    assert_eq!(r.amount.to_string(), "0.05");
    // 2 GB-s used, 1.5 free: 1.5 × 0.003 = 0.0045 → 0.00, and the charge was 0.00.
    let g = credit(Dimension::GbSeconds);
    assert_eq!((g.used.as_str(), g.applied.as_str()), ("2", "1.5"));
    assert_eq!(g.amount.to_string(), "0.00");
    // 1 million fuel used, 100 free: the whole 2.00, not 200.00.
    let f = credit(Dimension::Fuel);
    assert_eq!(f.applied, "1");
    assert_eq!(f.amount.to_string(), "2.00");
    assert_eq!(st.free_tier_total.to_string(), "2.05");
    assert_eq!(st.total.to_string(), "0.02");
}

#[test]
fn the_credit_cap_applies_when_rounding_the_credit_would_pass_the_charge() {
    // Two lines of 0.4 ¢ → 0.00 each; the free tier covers both (0.8 ¢ → 0.01)
    // but only 0.00 was charged.
    let s =
        sheet("currency = \"USD\"\n[prices]\nrequests = \"0.004\"\n[free_tier]\nrequests = 10\n");
    let functions = BTreeMap::from([
        ("a".to_string(), requests(1)),
        ("b".to_string(), requests(1)),
    ]);
    let st = s.statement("t", &nov(), &functions, &no_storage());
    assert_eq!(st.free_tier[0].amount.to_string(), "0.00");
    assert_eq!(st.total.to_string(), "0.00");
}

#[test]
fn tenant_overrides_replace_prices_and_free_tier_per_dimension() {
    let s = sheet(
        "currency = \"EUR\"\n[prices]\nrequests = \"0.10\"\nmessages = \"1\"\n[free_tier]\nrequests = 1\n\
         [tenants.vip.prices]\nrequests = \"0.05\"\ncpu_seconds = \"0.5\"\n\
         [tenants.vip.free_tier]\nrequests = 0\nmessages = \"0.5\"\n",
    );
    let q = Quantities {
        requests: 10,
        cpu_us: 3_000_000,
        messages: 1_000_000,
        ..Quantities::default()
    };
    let other = s.statement("other", &nov(), &one("f", q.clone()), &no_storage());
    // 10 × 0.10 + 1 M messages × 1; cpu is not priced for other tenants; 1 request free.
    assert_eq!(other.lines.len(), 2);
    assert_eq!(other.subtotal.to_string(), "2.00");
    assert_eq!(other.free_tier_total.to_string(), "0.10");
    assert_eq!(other.currency, "EUR");
    let vip = s.statement("vip", &nov(), &one("f", q.clone()), &no_storage());
    // 10 × 0.05 + 3 CPU-s × 0.5 + 1 × 1 = 3.00; 0.5 M messages free (0.50), no free requests.
    let dims: Vec<Dimension> = vip.lines.iter().map(|l| l.dimension).collect();
    assert_eq!(
        dims,
        [
            Dimension::Requests,
            Dimension::CpuSeconds,
            Dimension::Messages
        ]
    );
    assert_eq!(vip.subtotal.to_string(), "3.00");
    assert_eq!(vip.free_tier.len(), 1);
    assert_eq!(vip.free_tier[0].dimension, Dimension::Messages);
    assert_eq!(vip.total.to_string(), "2.50");
    assert_eq!(s.cost("vip", &q).to_string(), "3.00");
}

#[test]
fn jpy_amounts_are_whole_yen() {
    let s = sheet("currency = \"JPY\"\n[prices]\nrequests = \"0.5\"\n[free_tier]\nrequests = 3\n");
    // n × ¥0.5 half-even to whole yen; the credit min(n, 3) × ¥0.5 the same way.
    for (n, amount, credit, total) in [
        (1, "0", "0", "0"), // ¥0.5 → 0
        (3, "2", "2", "0"), // ¥1.5 → 2, credit ¥1.5 → 2
        (5, "2", "2", "0"), // ¥2.5 → 2, credit 2
        (7, "4", "2", "2"), // ¥3.5 → 4
        (9, "4", "2", "2"), // ¥4.5 → 4
    ] {
        let st = s.statement("t", &nov(), &one("f", requests(n)), &no_storage());
        assert_eq!(st.minor_unit, 0);
        assert_eq!(st.lines[0].amount.to_string(), amount, "{n}");
        assert_eq!(st.free_tier[0].amount.to_string(), credit, "{n}");
        assert_eq!(st.total.to_string(), total, "{n}");
    }
}

#[test]
fn storage_is_billed_per_tenant_in_gb_months_of_the_period() {
    let s = sheet(
        "currency = \"USD\"\n[prices]\nkv_gb_months = \"0.25\"\nblob_gb_months = \"0.023\"\n\
         [free_tier]\nblob_gb_months = \"0.5\"\n",
    );
    // 2 GiB of kv and 1 GiB of blobs for the whole of November (30 days).
    let month = nov().seconds();
    let mut storage = StorageQuantities::default();
    storage.add_sample(2 << 30, 1 << 30, month);
    let st = s.statement("t", &nov(), &BTreeMap::new(), &storage);
    assert_eq!(st.lines.len(), 2);
    let kv = &st.lines[0];
    assert_eq!(kv.function, None);
    assert_eq!((kv.quantity.as_str(), kv.quantity_exact), ("2", true));
    assert_eq!(kv.amount.to_string(), "0.50");
    assert_eq!(st.lines[1].amount.to_string(), "0.02"); // 0.023 → 0.02
    assert_eq!(st.free_tier[0].amount.to_string(), "0.01"); // 0.5 × 0.023 = 0.0115
    assert_eq!(st.total.to_string(), "0.51");
    // One GiB for one day of a 31-day month: 1/31 GB-month, shown rounded.
    let dec = Period::parse("2026-12").unwrap();
    let mut day = StorageQuantities::default();
    day.add_sample(1 << 30, 0, 86_400);
    let st = s.statement("t", &dec, &BTreeMap::new(), &day);
    assert_eq!(st.lines[0].quantity, "0.032258064516");
    assert!(!st.lines[0].quantity_exact);
    assert_eq!(st.lines[0].amount.to_string(), "0.01"); // 0.25 / 31 = 0.00806
}

/// About 10^9 invocations (999 999 937) of 10 GiB + 12345 bytes for
/// 900 001 ms each: 9.66·10^24 byte-ms. Its GB-seconds have 37 significant
/// digits and its product with the price's mantissa (1.6·10^30) is past
/// what a `Decimal` holds (7.9·10^28): `Decimal` arithmetic drops digits
/// there, as the first asserts show. The expected figures are exact
/// rationals computed separately (Python's `fractions`, half-even by hand).
#[test]
fn amounts_are_exact_for_a_ledger_past_decimal_range() {
    let n: u128 = 999_999_937;
    let byte_ms = n * ((10 << 30) + 12_345) * 900_001;
    assert_eq!(byte_ms, 9_663_697_655_117_594_372_373_145);
    let exact_gb_seconds = "9000019780469.680551787042059004306793212890625";
    let price = Decimal::from_str_exact("0.0000166667").unwrap();
    // What Decimal alone would do: both the quantity and the product lose digits.
    let decimal_byte_ms = Decimal::from_i128_with_scale(byte_ms as i128, 0);
    let via_decimal = decimal_byte_ms / Decimal::from(1_073_741_824_000u64);
    assert_ne!(via_decimal.to_string(), exact_gb_seconds);
    let exact_product = byte_ms * 166_667; // ÷ 10^10
    assert_eq!(exact_product, 1_610_619_497_085_484_101_260_314_957_715);
    assert_ne!(
        (decimal_byte_ms * price).to_string(),
        "161061949708548410126.0314957715"
    );

    let s = sheet(
        "currency = \"USD\"\n[prices]\ngb_seconds = \"0.0000166667\"\nfuel = \"0.0123456789\"\n",
    );
    let q = Quantities {
        requests: n as u64,
        memory_byte_ms: byte_ms,
        fuel: n * 3_000_000_007,
        ..Quantities::default()
    };
    let st = s.statement("t", &nov(), &one("f", q.clone()), &no_storage());
    assert_eq!(st.lines[0].quantity, exact_gb_seconds);
    assert!(st.lines[0].quantity_exact);
    assert_eq!(st.lines[0].amount.to_string(), "150000629.68");
    assert_eq!(st.lines[1].amount.to_string(), "37037034453.09");
    assert_eq!(st.total.to_string(), "37187035082.77");
    assert_eq!(s.cost("t", &q), st.total);
}

#[test]
fn an_amount_past_decimal_range_is_an_error_not_a_wrong_figure() {
    let s = sheet("currency = \"USD\"\n[prices]\nfuel = \"9999999999999999999999999999\"\n");
    let q = Quantities {
        fuel: u128::MAX,
        ..Quantities::default()
    };
    let err = s
        .try_statement("t", &nov(), &one("f", q.clone()), &no_storage())
        .unwrap_err();
    assert!(matches!(err, PriceError::AmountOverflow { .. }), "{err}");
    assert!(s.try_cost("t", &q).is_err());
}

#[test]
fn unpriced_dimensions_and_zero_quantities_have_no_line() {
    let s = sheet("currency = \"USD\"\n[prices]\nrequests = \"0.01\"\nfuel = \"1\"\n");
    let st = s.statement("t", &nov(), &one("f", requests(2)), &no_storage());
    assert_eq!(st.lines.len(), 1);
    let empty = s.statement("nobody", &nov(), &BTreeMap::new(), &no_storage());
    assert!(empty.lines.is_empty() && empty.free_tier.is_empty());
    assert_eq!(empty.total.to_string(), "0.00");
    assert!(empty.render_table().contains("no billable usage"));
}

#[test]
fn json_has_decimals_as_strings() {
    let s = sheet("currency = \"USD\"\n[prices]\nrequests = \"0.01\"\n[free_tier]\nrequests = 1\n");
    let st = s.statement("shop", &nov(), &one("hello", requests(3)), &no_storage());
    let json = serde_json::to_value(&st).unwrap();
    assert_eq!(json["period"], "2026-11");
    assert_eq!(json["total"], "0.02");
    assert_eq!(json["subtotal"], "0.03");
    assert_eq!(json["lines"][0]["function"], "hello");
    assert_eq!(json["lines"][0]["dimension"], "requests");
    assert_eq!(json["lines"][0]["unit_price"], "0.01");
    assert_eq!(json["lines"][0]["base_quantity"], "3");
    assert_eq!(json["free_tier"][0]["amount"], "0.01");
    let back: crate::Statement = serde_json::from_value(json).unwrap();
    assert_eq!(back, st);
}

#[test]
fn table_and_csv_show_every_line_credit_and_total() {
    let s = sheet(
        "currency = \"USD\"\n[prices]\nrequests = \"0.01\"\nkv_gb_months = \"0.25\"\n\
         [free_tier]\nrequests = 1\n",
    );
    let mut storage = StorageQuantities::default();
    storage.add_sample(1 << 30, 0, 86_400);
    let functions = BTreeMap::from([
        ("hello".to_string(), requests(3)),
        ("a,b".to_string(), requests(1)),
    ]);
    let st = s.statement("shop", &nov(), &functions, &storage);
    let table = st.render_table();
    assert!(
        table.starts_with("Statement for tenant shop · 2026-11 · USD"),
        "{table}"
    );
    assert!(table.contains("≈0.033333333333"), "{table}");
    assert!(table.contains("1 of 1"), "{table}");
    assert!(
        table.lines().last().unwrap().ends_with("USD 0.04"),
        "{table}"
    );
    // Amounts right-aligned: every line-item row ends in the same column.
    let rows: Vec<&str> = table.lines().skip(2).take(4).collect();
    assert!(
        rows.iter()
            .all(|r| r.chars().count() == rows[0].chars().count()),
        "{table}"
    );

    let csv = st.render_csv();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], crate::CSV_HEADER);
    assert_eq!(
        lines[1],
        "shop,2026-11,USD,line,\"a,b\",requests,1,true,request,0.01,0.01"
    );
    assert_eq!(
        lines[2],
        "shop,2026-11,USD,line,hello,requests,3,true,request,0.01,0.03"
    );
    assert_eq!(
        lines[3],
        "shop,2026-11,USD,line,-,kv_gb_months,0.033333333333,false,GB-month,0.25,0.01"
    );
    assert_eq!(
        lines[4],
        "shop,2026-11,USD,free_tier,-,requests,1,true,request,0.01,-0.01"
    );
    assert_eq!(lines[5], "shop,2026-11,USD,total,-,,,,,,0.04");
    assert_eq!(lines.len(), 6);
}
