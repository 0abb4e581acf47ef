//! Bills from the usage ledger: price sheets, and exact per-tenant
//! statements computed from usage records.
//!
//! `nimbus bill` and the usage API both go through [`PriceSheet::statement`]
//! and [`PriceSheet::cost`], so their figures agree to the last minor unit.
//!
//! # A statement in four steps
//!
//! ```
//! use std::collections::BTreeMap;
//! use nimbus_billing::{Period, PriceSheet, Quantities, StorageQuantities};
//! use nimbus_core::{Outcome, UsageRecord};
//!
//! // 1. A price sheet (usually `PriceSheet::load(path)`): prices are
//! //    strings or integers, never floats.
//! let sheet = PriceSheet::parse(r#"
//!     currency = "USD"
//!     [prices]
//!     requests = "0.20"            # per request (a steep demo price)
//!     gb_seconds = "0.0000166667"  # per GB-second
//!     [free_tier]
//!     requests = 2                 # per tenant, per month
//! "#, "prices.toml")?;
//!
//! // 2. The period: one UTC month.
//! let period = Period::parse("2026-11")?;
//!
//! // 3. Sum each function's records of the period (de-duplicated by the
//! //    ledger reader); a throttled invocation is not a billed request.
//! let mut hello = Quantities::default();
//! for outcome in [Outcome::Success, Outcome::Success, Outcome::GuestError, Outcome::Throttled] {
//!     let record = UsageRecord {
//!         started_at: "2026-11-02T17:05:41.123456Z".into(),
//!         billed_duration_ms: 100,
//!         peak_memory_bytes: 1 << 30,
//!         memory_byte_ms: 100 << 30, // 1 GiB × 100 ms = 0.1 GB-second
//!         ..UsageRecord::new(uuid::Uuid::now_v7(), "shop", "hello", outcome)
//!     };
//!     if period.contains(&record.started_at)? {
//!         hello.add_record(&record);
//!     }
//! }
//! let functions = BTreeMap::from([("hello".to_string(), hello)]);
//!
//! // 4. The statement: 3 requests × 0.20 = 0.60, 0.4 GB-s × 0.0000166667
//! //    = 0.00000666668 → 0.00; the free tier takes 2 requests off (0.40).
//! let s = sheet.statement("shop", &period, &functions, &StorageQuantities::default());
//! assert_eq!(s.lines[0].quantity, "3");
//! assert_eq!(s.lines[1].quantity, "0.4");
//! assert_eq!(s.subtotal.to_string(), "0.60");
//! assert_eq!(s.free_tier_total.to_string(), "0.40");
//! assert_eq!(s.total.to_string(), "0.20");
//! assert_eq!(sheet.cost("shop", &functions["hello"]).to_string(), "0.60");
//! assert!(s.render_table().contains("total"));
//! assert!(s.render_csv().starts_with(nimbus_billing::CSV_HEADER));
//! # Ok::<(), nimbus_billing::PriceError>(())
//! ```
//!
//! # The price sheet
//!
//! TOML; every key is optional except `currency`, and an unknown key is an
//! error (so a typo never bills at a default). Every error names the file,
//! the line and the dotted key.
//!
//! | key | meaning |
//! |---|---|
//! | `currency` | ISO 4217 code (`"USD"`); its minor unit is known for the common ones (USD, EUR 2, JPY 0, BHD 3, ...) |
//! | `minor_unit` | decimal places of the currency's minor unit (0-9), overriding the known one; required for other codes |
//! | `[prices]` | one key per dimension (below): the price per unit. A dimension without a price is not billed |
//! | `[free_tier]` | one key per dimension: the monthly allowance per tenant, in the dimension's unit |
//! | `[tenants.<name>.prices]` | per-dimension prices for that tenant, replacing the sheet's |
//! | `[tenants.<name>.free_tier]` | per-dimension allowances for that tenant, replacing the sheet's |
//!
//! Values are decimal strings (`"0.0000166667"`) or integers (`0`, `25`),
//! at most 28 significant digits, never negative. A float (`0.1`) is
//! refused: a float cannot hold most prices exactly.
//!
//! Dimensions ([`Dimension`]), their unit and what they are summed from:
//!
//! | key | unit | from |
//! |---|---|---|
//! | `requests` | request | every record whose outcome is not `throttled` |
//! | `gb_seconds` | GB-second | Σ `memory_byte_ms` / (2^30 × 1000) |
//! | `fuel` | million fuel | Σ `fuel_consumed` / 10^6 |
//! | `cpu_seconds` | CPU-second | Σ `cpu_us` / 10^6 |
//! | `outbound_gb` | GB | Σ (`outbound_bytes_sent` + `outbound_bytes_received`) / 2^30 |
//! | `messages` | million messages | Σ `messages_published` / 10^6 |
//! | `kv_gb_months` | GB-month | Σ kv bytes × sample interval (s) / (2^30 × seconds in the month), per tenant |
//! | `blob_gb_months` | GB-month | the same for blob bytes |
//!
//! # The rounding rule
//!
//! Quantities are integer sums, never rounded. Each **line item**
//! (function × dimension; storage per tenant) is `quantity × unit price`
//! computed exactly and rounded **half-even to the currency's minor unit**.
//! The **free tier**, per tenant per dimension, is a credit of
//! `min(total quantity, allowance) × unit price` rounded the same way and
//! capped at that dimension's charged amount, shown as its own line. The
//! **total** is Σ line items − Σ credits. That one rounding is
//! `money::round_half_even`, and everything reaches it through one
//! function (`money::amount_minor`).
//!
//! Exactness: an amount's numerator (a u128 quantity × a 96-bit price
//! mantissa × 10^minor_unit) can need 254 bits, and `rust_decimal`
//! multiplication past 28 digits drops low digits silently; so amounts are
//! computed as one 256-bit integer division (`money.rs`), and only the
//! result, in minor units, becomes a `Decimal`. A result past `Decimal`'s
//! range (≈ 7.9 · 10^28 minor units) is [`PriceError::AmountOverflow`] from
//! [`PriceSheet::try_statement`] / [`PriceSheet::try_cost`] (a panic from
//! the plain ones), never a wrong figure.
//!
//! Shown quantities are exact decimals, except GB-months (a month's seconds
//! have the factor 3), which are shown rounded half-even to 12 places and
//! marked `quantity_exact: false`; the amount uses the exact ratio.

mod error;
mod money;
mod period;
mod quantities;
mod render;
mod sheet;
mod statement;

pub use error::PriceError;
pub use money::INEXACT_PLACES;
pub use period::Period;
pub use quantities::{Dimension, Quantities, StorageQuantities};
pub use render::CSV_HEADER;
pub use rust_decimal::Decimal;
pub use sheet::{MAX_MINOR_UNIT, PriceSheet};
pub use statement::{FreeTierCredit, LineItem, Statement};
