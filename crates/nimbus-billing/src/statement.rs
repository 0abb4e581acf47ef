//! Statements: line items per function and dimension, the free tier, the
//! totals, computed with the one rounding rule of [`crate::money`].

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::money::{amount_minor, minor_to_decimal, pow10, price_parts, ratio_lt, ratio_to_string};
use crate::{Dimension, Period, PriceError, PriceSheet, Quantities, StorageQuantities};

/// One tenant's bill for one period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    pub tenant: String,
    pub period: Period,
    /// ISO 4217 code.
    pub currency: String,
    /// Decimal places every amount has.
    pub minor_unit: u32,
    /// Per function (sorted), each priced dimension with a quantity, in
    /// [`Dimension::PER_FUNCTION`] order; then the tenant-wide storage lines.
    pub lines: Vec<LineItem>,
    /// One credit per priced dimension with a free allowance and usage.
    pub free_tier: Vec<FreeTierCredit>,
    /// Σ line amounts.
    pub subtotal: Decimal,
    /// Σ free-tier credits.
    pub free_tier_total: Decimal,
    /// `subtotal - free_tier_total` (never negative).
    pub total: Decimal,
}

/// One function's use of one dimension, or a tenant's storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineItem {
    /// `None` (JSON `null`, `-` in tables and CSV) for tenant-wide storage.
    pub function: Option<String>,
    pub dimension: Dimension,
    /// The quantity in `unit`, as a decimal: exact, except for GB-months
    /// (a month's seconds do not divide a power of ten), which are rounded
    /// half-even to 12 places (`quantity_exact` false). The amount is
    /// computed from the exact base quantity either way.
    pub quantity: String,
    pub quantity_exact: bool,
    pub unit: String,
    /// The integer sum the quantity comes from, in `base_unit` (a string
    /// in JSON: it can pass 2^53).
    #[serde(with = "u128_string")]
    pub base_quantity: u128,
    pub base_unit: String,
    /// Price per `unit`.
    pub unit_price: Decimal,
    /// `quantity × unit_price`, rounded half-even to the minor unit.
    pub amount: Decimal,
}

/// The free tier applied to one dimension (summed over the tenant's
/// functions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FreeTierCredit {
    pub dimension: Dimension,
    pub unit: String,
    /// The monthly allowance, in `unit`.
    pub allowance: Decimal,
    /// The tenant's whole quantity of the dimension, in `unit`.
    pub used: String,
    /// `min(used, allowance)`.
    pub applied: String,
    pub unit_price: Decimal,
    /// `applied × unit_price` rounded half-even to the minor unit, capped
    /// at the dimension's charged amount.
    pub amount: Decimal,
}

impl PriceSheet {
    /// The statement of `tenant` for `period`: `functions` maps each of its
    /// functions to the quantities of its records in the period, `storage`
    /// is its storage over the period.
    ///
    /// # Panics
    /// On an amount past `Decimal`'s range (about 7.9 · 10^28 minor units:
    /// no ledger comes near); [`Self::try_statement`] returns that as an
    /// error instead.
    pub fn statement(
        &self,
        tenant: &str,
        period: &Period,
        functions: &BTreeMap<String, Quantities>,
        storage: &StorageQuantities,
    ) -> Statement {
        self.try_statement(tenant, period, functions, storage)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Self::statement`], with an amount too large to hold as an error.
    pub fn try_statement(
        &self,
        tenant: &str,
        period: &Period,
        functions: &BTreeMap<String, Quantities>,
        storage: &StorageQuantities,
    ) -> Result<Statement, PriceError> {
        let month = period.seconds();
        let overflow = |what: String| PriceError::AmountOverflow {
            tenant: tenant.to_string(),
            what,
        };
        let mut lines = Vec::new();
        // Per dimension: Σ base quantity and Σ charged minor units.
        let mut used: BTreeMap<Dimension, u128> = BTreeMap::new();
        let mut charged: BTreeMap<Dimension, u128> = BTreeMap::new();
        let per_function = functions.iter().flat_map(|(f, q)| {
            Dimension::PER_FUNCTION
                .into_iter()
                .map(move |d| (Some(f.as_str()), d, q.base(d).expect("per-function")))
        });
        let tenant_wide = Dimension::STORAGE
            .into_iter()
            .map(|d| (None, d, storage.base(d).expect("storage")));
        for (function, dimension, base) in per_function.chain(tenant_wide) {
            let Some(price) = self.price(tenant, dimension) else {
                continue;
            };
            let what = || format!("{} of {}", dimension, function.unwrap_or("the tenant"));
            let sum = used.entry(dimension).or_default();
            *sum = sum.checked_add(base).ok_or_else(|| overflow(what()))?;
            if base == 0 {
                continue;
            }
            let per_unit = dimension.per_unit(month);
            let minor = self
                .line_minor(base, per_unit, price)
                .ok_or_else(|| overflow(what()))?;
            let total = charged.entry(dimension).or_default();
            *total = total.checked_add(minor).ok_or_else(|| overflow(what()))?;
            let (quantity, quantity_exact) = ratio_to_string(base, per_unit);
            lines.push(LineItem {
                function: function.map(str::to_string),
                dimension,
                quantity,
                quantity_exact,
                unit: dimension.unit().to_string(),
                base_quantity: base,
                base_unit: dimension.base_unit().to_string(),
                unit_price: price,
                amount: self.decimal(minor).ok_or_else(|| overflow(what()))?,
            });
        }

        let mut free_tier = Vec::new();
        let mut credits_minor: u128 = 0;
        for dimension in Dimension::ALL {
            let (Some(price), Some(&base)) = (self.price(tenant, dimension), used.get(&dimension))
            else {
                continue;
            };
            let allowance = self.free_allowance(tenant, dimension);
            if base == 0 || allowance.is_zero() {
                continue;
            }
            let per_unit = dimension.per_unit(month);
            let (a_mantissa, a_scale) = price_parts(allowance);
            let a_per_unit = pow10(a_scale);
            // min(used, allowance), exactly.
            let (applied, applied_per_unit) = if ratio_lt(base, per_unit, a_mantissa, a_per_unit) {
                (base, per_unit)
            } else {
                (a_mantissa, a_per_unit)
            };
            let what = || format!("the free tier of {dimension}");
            let cap = charged.get(&dimension).copied().unwrap_or(0);
            let minor = self
                .line_minor(applied, applied_per_unit, price)
                .ok_or_else(|| overflow(what()))?
                .min(cap);
            credits_minor += minor; // ≤ Σ charged, which did not overflow
            free_tier.push(FreeTierCredit {
                dimension,
                unit: dimension.unit().to_string(),
                allowance,
                used: ratio_to_string(base, per_unit).0,
                applied: ratio_to_string(applied, applied_per_unit).0,
                unit_price: price,
                amount: self.decimal(minor).ok_or_else(|| overflow(what()))?,
            });
        }

        let subtotal_minor = charged
            .values()
            .try_fold(0u128, |a, &b| a.checked_add(b))
            .ok_or_else(|| overflow("the subtotal".into()))?;
        let total_minor = subtotal_minor - credits_minor; // each credit is capped at its dimension
        let decimal = |minor, what: &str| self.decimal(minor).ok_or_else(|| overflow(what.into()));
        Ok(Statement {
            tenant: tenant.to_string(),
            period: *period,
            currency: self.currency().to_string(),
            minor_unit: self.minor_unit(),
            lines,
            free_tier,
            subtotal: decimal(subtotal_minor, "the subtotal")?,
            free_tier_total: decimal(credits_minor, "the free tier")?,
            total: decimal(total_minor, "the total")?,
        })
    }

    /// The gross cost of a set of quantities at the tenant's prices: the
    /// sum of the per-dimension amounts, each rounded as a statement's line
    /// items are, no free tier (what the usage API shows per bucket). A
    /// statement's subtotal is Σ `cost` over its functions, plus storage.
    ///
    /// # Panics
    /// Past `Decimal`'s range, as [`Self::statement`]; see [`Self::try_cost`].
    pub fn cost(&self, tenant: &str, q: &Quantities) -> Decimal {
        self.try_cost(tenant, q).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Self::cost`], with an amount too large to hold as an error.
    pub fn try_cost(&self, tenant: &str, q: &Quantities) -> Result<Decimal, PriceError> {
        let overflow = || PriceError::AmountOverflow {
            tenant: tenant.to_string(),
            what: "a cost".into(),
        };
        let mut minor: u128 = 0;
        for dimension in Dimension::PER_FUNCTION {
            let Some(price) = self.price(tenant, dimension) else {
                continue;
            };
            let base = q.base(dimension).expect("per-function");
            // The month's length only matters for storage, which is not here.
            let line = self
                .line_minor(base, dimension.per_unit(0), price)
                .ok_or_else(overflow)?;
            minor = minor.checked_add(line).ok_or_else(overflow)?;
        }
        self.decimal(minor).ok_or_else(overflow)
    }

    /// Minor units of `base / per_unit` at `price`, if they fit a u128.
    fn line_minor(&self, base: u128, per_unit: u128, price: Decimal) -> Option<u128> {
        amount_minor(base, per_unit, price, self.minor_unit()).to_u128()
    }

    fn decimal(&self, minor: u128) -> Option<Decimal> {
        minor_to_decimal(minor, self.minor_unit())
    }
}

mod u128_string {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests;
