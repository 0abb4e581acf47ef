//! Exact arithmetic for amounts: the one place where a quantity times a
//! price becomes money, and the one rounding rule.
//!
//! A quantity is a ratio of integers (`base / per_unit`: byte-ms per
//! GB-second, fuel per million fuel, ...) and a price is a decimal
//! (`mantissa / 10^scale`), so an amount in minor units is
//!
//! ```text
//!     base × mantissa × 10^minor_unit
//!     ───────────────────────────────
//!        per_unit × 10^scale
//! ```
//!
//! rounded half-even. The numerator can need 254 bits (a u128 quantity, a
//! 96-bit mantissa, `10^9`), far past what `rust_decimal`'s 96-bit mantissa
//! holds: multiplying `Decimal`s there silently drops low digits. So the
//! ratio is computed in 256-bit integers, exactly, and divided once.

use rust_decimal::Decimal;

/// A non-negative integer of 256 bits: `hi · 2^128 + lo`. Only what the
/// amount formula needs: widening products, comparison, one long division.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct U256 {
    // Field order matters: the derived `Ord` compares `hi` first.
    hi: u128,
    lo: u128,
}

impl U256 {
    pub(crate) const ZERO: U256 = U256 { hi: 0, lo: 0 };

    pub(crate) fn from_u128(lo: u128) -> U256 {
        U256 { hi: 0, lo }
    }

    /// The full 256-bit product of two u128s (never overflows).
    pub(crate) fn mul(a: u128, b: u128) -> U256 {
        const MASK: u128 = u64::MAX as u128;
        let (a_hi, a_lo) = (a >> 64, a & MASK);
        let (b_hi, b_lo) = (b >> 64, b & MASK);
        let lo_lo = a_lo * b_lo;
        let hi_lo = a_hi * b_lo;
        let lo_hi = a_lo * b_hi;
        let hi_hi = a_hi * b_hi;
        // The middle column: three terms below 2^64 each, so below 2^66;
        // its low half goes to `lo`, its carry to `hi`.
        let mid = (lo_lo >> 64) + (hi_lo & MASK) + (lo_hi & MASK);
        let lo = (lo_lo & MASK) | (mid << 64);
        let hi = hi_hi + (hi_lo >> 64) + (lo_hi >> 64) + (mid >> 64);
        U256 { hi, lo }
    }

    /// `self × b`, or `None` past 2^256.
    pub(crate) fn checked_mul_u128(self, b: u128) -> Option<U256> {
        let low = U256::mul(self.lo, b);
        let high = U256::mul(self.hi, b);
        if high.hi != 0 {
            return None;
        }
        let hi = low.hi.checked_add(high.lo)?;
        Some(U256 { hi, lo: low.lo })
    }

    fn is_zero(self) -> bool {
        self.hi == 0 && self.lo == 0
    }

    fn bit(self, i: u32) -> bool {
        if i >= 128 {
            (self.hi >> (i - 128)) & 1 == 1
        } else {
            (self.lo >> i) & 1 == 1
        }
    }

    fn set_bit(&mut self, i: u32) {
        if i >= 128 {
            self.hi |= 1 << (i - 128);
        } else {
            self.lo |= 1 << i;
        }
    }

    /// `self · 2 + bit`; the caller guarantees the top bit is clear.
    fn shl1_with(self, bit: bool) -> U256 {
        U256 {
            hi: (self.hi << 1) | (self.lo >> 127),
            lo: (self.lo << 1) | u128::from(bit),
        }
    }

    /// `self - other`; the caller guarantees `self >= other`.
    fn sub(self, other: U256) -> U256 {
        let (lo, borrow) = self.lo.overflowing_sub(other.lo);
        U256 {
            hi: self.hi - other.hi - u128::from(borrow),
            lo,
        }
    }

    /// Quotient and remainder. `d` must be non-zero and below 2^255 (every
    /// divisor here is a per-unit count times a power of ten, under 2^230).
    fn div_rem(self, d: U256) -> (U256, U256) {
        assert!(!d.is_zero(), "division by zero");
        assert!(d.hi >> 127 == 0, "divisor too large");
        let mut q = U256::ZERO;
        let mut r = U256::ZERO;
        for i in (0..256).rev() {
            // r < d < 2^255, so doubling it cannot overflow.
            r = r.shl1_with(self.bit(i));
            if r >= d {
                r = r.sub(d);
                q.set_bit(i);
            }
        }
        (q, r)
    }

    /// The value if it fits in a u128.
    pub(crate) fn to_u128(self) -> Option<u128> {
        (self.hi == 0).then_some(self.lo)
    }
}

/// `10^n` for `n <= 38`.
pub(crate) fn pow10(n: u32) -> u128 {
    10u128.pow(n)
}

/// THE rounding rule: `num / den` to the nearest integer, ties to even
/// (banker's rounding). Every amount, every free-tier credit and every
/// rounded quantity goes through here.
pub(crate) fn round_half_even(num: U256, den: U256) -> U256 {
    let (q, r) = num.div_rem(den);
    // r < den < 2^255: doubling is exact.
    let twice = r.shl1_with(false);
    let up = match twice.cmp(&den) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Equal => q.bit(0),
        std::cmp::Ordering::Less => false,
    };
    if up {
        // q < 2^256 - 1 here: num < 2^256 and den >= 2 when rounding up.
        let (lo, carry) = q.lo.overflowing_add(1);
        U256 {
            hi: q.hi + u128::from(carry),
            lo,
        }
    } else {
        q
    }
}

/// The price as `(mantissa, scale)`: `price = mantissa / 10^scale`.
/// Prices are checked non-negative when a sheet is read.
pub(crate) fn price_parts(price: Decimal) -> (u128, u32) {
    let mantissa = u128::try_from(price.mantissa()).expect("prices are never negative");
    (mantissa, price.scale())
}

/// Minor units of `base / per_unit` units at `price`, rounded half-even:
/// the amount of one line item or one free-tier credit. `minor_unit <= 9`.
pub(crate) fn amount_minor(base: u128, per_unit: u128, price: Decimal, minor_unit: u32) -> U256 {
    let (mantissa, scale) = price_parts(price);
    // base < 2^128, mantissa < 2^96, 10^9 < 2^30: the numerator is < 2^254.
    let num = U256::mul(base, mantissa)
        .checked_mul_u128(pow10(minor_unit))
        .expect("a u128 × 96-bit × 10^9 product fits in 256 bits");
    // per_unit < 2^128 and 10^28 < 2^94: the divisor is < 2^222.
    let den = U256::mul(per_unit, pow10(scale));
    round_half_even(num, den)
}

/// `a / b < c / d`, exactly (for the free tier's min(quantity, allowance)).
pub(crate) fn ratio_lt(a: u128, b: u128, c: u128, d: u128) -> bool {
    U256::mul(a, d) < U256::mul(c, b)
}

/// A count of minor units as a `Decimal` with exactly `minor_unit` places,
/// or `None` past `Decimal`'s 96-bit mantissa (≈ 7.9 · 10^28 minor units).
pub(crate) fn minor_to_decimal(minor: u128, minor_unit: u32) -> Option<Decimal> {
    let minor = i128::try_from(minor).ok()?;
    Decimal::try_from_i128_with_scale(minor, minor_unit).ok()
}

/// `base / per_unit` as a decimal string: exact when the expansion ends
/// (every per-unit count but a month's seconds has only the factors 2 and
/// 5), else rounded half-even to [`INEXACT_PLACES`] places. Returns the
/// string and whether it is exact.
pub(crate) fn ratio_to_string(base: u128, per_unit: u128) -> (String, bool) {
    let exact_places = terminating_places(base, per_unit).filter(|&p| p <= 38);
    let places = exact_places.unwrap_or(INEXACT_PLACES);
    let scaled = U256::mul(base, pow10(places));
    let value = round_half_even(scaled, U256::from_u128(per_unit));
    (
        with_point(&u256_digits(value), places),
        exact_places.is_some(),
    )
}

/// Places shown for a quantity whose decimal expansion does not end
/// (GB-months: a month's seconds have the factor 3, and 29 or 31 days).
pub const INEXACT_PLACES: u32 = 12;

/// The places after the point at which `base / per_unit` ends, if it does.
fn terminating_places(base: u128, per_unit: u128) -> Option<u32> {
    let mut den = per_unit / gcd(base, per_unit);
    let (mut twos, mut fives) = (0, 0);
    while den.is_multiple_of(2) {
        den /= 2;
        twos += 1;
    }
    while den.is_multiple_of(5) {
        den /= 5;
        fives += 1;
    }
    (den == 1).then_some(u32::max(twos, fives))
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The decimal digits of a U256.
fn u256_digits(mut v: U256) -> String {
    if v.is_zero() {
        return "0".into();
    }
    // Peel off 19 digits at a time (10^19 < 2^64).
    let chunk = U256::from_u128(pow10(19));
    let mut parts = Vec::new();
    while !v.is_zero() {
        let (q, r) = v.div_rem(chunk);
        parts.push(r.lo as u64);
        v = q;
    }
    let mut out = parts.pop().map(|p| p.to_string()).unwrap_or_default();
    for p in parts.iter().rev() {
        out.push_str(&format!("{p:019}"));
    }
    out
}

/// Integer digits of `value · 10^places` written with `places` decimals.
fn with_point(digits: &str, places: u32) -> String {
    let places = places as usize;
    if places == 0 {
        return digits.to_string();
    }
    let padded = format!("{digits:0>width$}", width = places + 1);
    let (int, frac) = padded.split_at(padded.len() - places);
    format!("{int}.{frac}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(v: u128) -> U256 {
        U256::from_u128(v)
    }

    #[test]
    fn widening_product_is_exact() {
        let p = U256::mul(u128::MAX, u128::MAX);
        // (2^128 - 1)^2 = 2^256 - 2^129 + 1
        assert_eq!(p.lo, 1);
        assert_eq!(p.hi, u128::MAX - 1);
        assert_eq!(U256::mul(1 << 64, 1 << 64), U256 { hi: 1, lo: 0 });
        assert_eq!(U256::mul(12345, 67890), u(12345 * 67890));
        assert!(U256 { hi: 1, lo: 0 }.checked_mul_u128(u128::MAX).is_some());
        assert!(
            U256 {
                hi: 1 << 127,
                lo: 0
            }
            .checked_mul_u128(2)
            .is_none()
        );
    }

    #[test]
    fn long_division_matches_u128_division() {
        for (n, d) in [
            (0u128, 7u128),
            (100, 7),
            (u128::MAX, 3),
            (u128::MAX, u128::MAX),
            (5, 10),
        ] {
            let (q, r) = u(n).div_rem(u(d));
            assert_eq!((q.lo, r.lo, q.hi, r.hi), (n / d, n % d, 0, 0), "{n} / {d}");
        }
        // (2^200 + 5) / 2^100 = 2^100 remainder 5
        let n = U256::mul(1 << 100, 1 << 100).checked_mul_u128(1).unwrap();
        let n = U256 { lo: n.lo + 5, ..n };
        let (q, r) = n.div_rem(u(1 << 100));
        assert_eq!((q, r), (u(1 << 100), u(5)));
    }

    #[test]
    fn rounding_is_half_even() {
        let r = |n: u128, d: u128| round_half_even(u(n), u(d)).lo;
        assert_eq!(r(5, 10), 0); // 0.5 → 0
        assert_eq!(r(15, 10), 2); // 1.5 → 2
        assert_eq!(r(25, 10), 2); // 2.5 → 2
        assert_eq!(r(35, 10), 4); // 3.5 → 4
        assert_eq!(r(251, 100), 3); // 2.51 → 3
        assert_eq!(r(249, 100), 2); // 2.49 → 2
        assert_eq!(r(7, 1), 7);
    }

    #[test]
    fn quantities_print_exactly_or_rounded_to_twelve_places() {
        assert_eq!(ratio_to_string(1, 1), ("1".into(), true));
        assert_eq!(ratio_to_string(0, 1 << 30), ("0".into(), true));
        assert_eq!(
            ratio_to_string(1, 1 << 30).0,
            "0.000000000931322574615478515625"
        );
        assert_eq!(ratio_to_string(1_500_000, 1_000_000), ("1.5".into(), true));
        assert_eq!(ratio_to_string(3 << 29, 1 << 30), ("1.5".into(), true));
        assert_eq!(ratio_to_string(1, 3), ("0.333333333333".into(), false));
        assert_eq!(ratio_to_string(2, 3), ("0.666666666667".into(), false));
        // Past 19 digits, across the chunks u256_digits peels off.
        let (s, exact) = ratio_to_string(u128::MAX, 1);
        assert_eq!(s, u128::MAX.to_string());
        assert!(exact);
    }
}
