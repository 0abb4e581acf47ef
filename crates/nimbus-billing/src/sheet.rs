//! Price sheets: reading the TOML, the currency and its minor unit, the
//! prices and free tiers with their per-tenant overrides.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use rust_decimal::Decimal;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use toml::Spanned;

use crate::{Dimension, PriceError};

/// The largest minor unit accepted: amounts are computed in 256-bit
/// integers sized for it (see the crate docs).
pub const MAX_MINOR_UNIT: u32 = 9;

/// A price sheet: prices per dimension, the monthly free tier, per-tenant
/// overrides of both, and the currency. See the crate docs for the format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceSheet {
    currency: String,
    minor_unit: u32,
    prices: BTreeMap<Dimension, Decimal>,
    free_tier: BTreeMap<Dimension, Decimal>,
    tenants: BTreeMap<String, Overrides>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Overrides {
    prices: BTreeMap<Dimension, Decimal>,
    free_tier: BTreeMap<Dimension, Decimal>,
}

impl PriceSheet {
    /// Reads a price sheet file; every error names the file.
    pub fn load(path: &Path) -> Result<PriceSheet, PriceError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| PriceError::Io {
            file: origin.clone(),
            message: format!("cannot read the price sheet: {e}"),
        })?;
        PriceSheet::parse(&text, &origin)
    }

    /// Parses a price sheet; `origin` (a file name) starts every error.
    pub fn parse(text: &str, origin: &str) -> Result<PriceSheet, PriceError> {
        let raw: RawSheet = toml::from_str(text).map_err(|e| toml_error(origin, text, e))?;
        let invalid =
            |span: std::ops::Range<usize>, key: &str, message: String| PriceError::Invalid {
                file: origin.to_string(),
                line: Some(line_of(text, span.start)),
                key: key.to_string(),
                message,
            };
        let code = raw.currency.get_ref();
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(invalid(
                raw.currency.span(),
                "currency",
                format!("\"{code}\" is not an ISO 4217 code (three capital letters, e.g. \"USD\")"),
            ));
        }
        let minor_unit = match &raw.minor_unit {
            Some(m) => {
                let v = *m.get_ref();
                if !(0..=i64::from(MAX_MINOR_UNIT)).contains(&v) {
                    return Err(invalid(
                        m.span(),
                        "minor_unit",
                        format!("{v} is not a number of decimal places from 0 to {MAX_MINOR_UNIT}"),
                    ));
                }
                u32::try_from(v).expect("checked range")
            }
            None => known_minor_unit(code).ok_or_else(|| {
                invalid(
                    raw.currency.span(),
                    "currency",
                    format!(
                        "the minor unit of \"{code}\" is not known here; give it with `minor_unit = N` (its number of decimal places)"
                    ),
                )
            })?,
        };
        let tenants = raw
            .tenants
            .into_iter()
            .map(|(name, t)| {
                let overrides = Overrides {
                    prices: t.prices.into_map(),
                    free_tier: t.free_tier.into_map(),
                };
                (name, overrides)
            })
            .collect();
        Ok(PriceSheet {
            currency: code.clone(),
            minor_unit,
            prices: raw.prices.into_map(),
            free_tier: raw.free_tier.into_map(),
            tenants,
        })
    }

    /// The ISO 4217 code, e.g. `USD`.
    pub fn currency(&self) -> &str {
        &self.currency
    }

    /// Decimal places of the currency's minor unit (USD 2, JPY 0, BHD 3):
    /// what every amount is rounded to.
    pub fn minor_unit(&self) -> u32 {
        self.minor_unit
    }

    /// A tenant's price of a dimension (its override, else the sheet's), or
    /// `None` if the dimension is not billed.
    pub fn price(&self, tenant: &str, dimension: Dimension) -> Option<Decimal> {
        self.tenants
            .get(tenant)
            .and_then(|t| t.prices.get(&dimension))
            .or_else(|| self.prices.get(&dimension))
            .copied()
    }

    /// A tenant's monthly free allowance of a dimension, in the dimension's
    /// unit (its override, else the sheet's; zero if none).
    pub fn free_allowance(&self, tenant: &str, dimension: Dimension) -> Decimal {
        self.tenants
            .get(tenant)
            .and_then(|t| t.free_tier.get(&dimension))
            .or_else(|| self.free_tier.get(&dimension))
            .copied()
            .unwrap_or(Decimal::ZERO)
    }

    /// The tenants the sheet has overrides for.
    pub fn tenants(&self) -> impl Iterator<Item = &str> {
        self.tenants.keys().map(String::as_str)
    }
}

/// Minor units of the common ISO 4217 currencies; others need `minor_unit`.
fn known_minor_unit(code: &str) -> Option<u32> {
    Some(match code {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        "CLF" | "UYW" => 4,
        "AED" | "ARS" | "AUD" | "BGN" | "BRL" | "CAD" | "CHF" | "CNY" | "COP" | "CZK" | "DKK"
        | "EGP" | "EUR" | "GBP" | "HKD" | "HUF" | "IDR" | "ILS" | "INR" | "MXN" | "MYR" | "NGN"
        | "NOK" | "NZD" | "PEN" | "PHP" | "PKR" | "PLN" | "RON" | "RSD" | "SAR" | "SEK" | "SGD"
        | "THB" | "TRY" | "TWD" | "UAH" | "USD" | "ZAR" => 2,
        _ => return None,
    })
}

/// A toml error as ours: the file, the line, the dotted key toml tracked
/// while deserializing (plus the key itself for an unknown one), the message.
fn toml_error(origin: &str, text: &str, e: toml::de::Error) -> PriceError {
    let line = e.span().map(|s| line_of(text, s.start));
    let message = e.message().trim_end().to_string();
    // toml keeps the path of the value being read, and prints it as
    // "in `a.b.c`" when it has no input to quote: render it that way.
    let mut bare = e.clone();
    bare.set_input(None);
    let rendered = bare.to_string();
    let mut key = rendered
        .lines()
        .last()
        .and_then(|l| l.strip_prefix("in `")?.strip_suffix('`'))
        .map(str::to_string);
    let field = |prefix: &str| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('`').next())
            .map(str::to_string)
    };
    // An unknown or missing key is reported on its table: add the key.
    if let Some(name) = field("unknown field `").or_else(|| field("missing field `")) {
        key = Some(match key {
            Some(table) => format!("{table}.{name}"),
            None => name,
        });
    }
    match key {
        Some(key) => PriceError::Invalid {
            file: origin.to_string(),
            line,
            key,
            message,
        },
        None => PriceError::Syntax {
            file: origin.to_string(),
            line,
            message,
        },
    }
}

fn line_of(text: &str, offset: usize) -> u64 {
    let upto = &text.as_bytes()[..offset.min(text.len())];
    upto.iter().filter(|&&b| b == b'\n').count() as u64 + 1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSheet {
    currency: Spanned<String>,
    #[serde(default)]
    minor_unit: Option<Spanned<i64>>,
    #[serde(default)]
    prices: RawDimensions,
    #[serde(default)]
    free_tier: RawDimensions,
    #[serde(default)]
    tenants: BTreeMap<String, RawTenant>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    #[serde(default)]
    prices: RawDimensions,
    #[serde(default)]
    free_tier: RawDimensions,
}

/// One optional decimal per dimension, keyed by the dimension's id.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDimensions {
    requests: Option<Amount>,
    gb_seconds: Option<Amount>,
    fuel: Option<Amount>,
    cpu_seconds: Option<Amount>,
    kv_gb_months: Option<Amount>,
    blob_gb_months: Option<Amount>,
    outbound_gb: Option<Amount>,
    messages: Option<Amount>,
}

impl RawDimensions {
    fn into_map(self) -> BTreeMap<Dimension, Decimal> {
        [
            (Dimension::Requests, self.requests),
            (Dimension::GbSeconds, self.gb_seconds),
            (Dimension::Fuel, self.fuel),
            (Dimension::CpuSeconds, self.cpu_seconds),
            (Dimension::KvGbMonths, self.kv_gb_months),
            (Dimension::BlobGbMonths, self.blob_gb_months),
            (Dimension::OutboundGb, self.outbound_gb),
            (Dimension::Messages, self.messages),
        ]
        .into_iter()
        .filter_map(|(d, a)| Some((d, a?.0)))
        .collect()
    }
}

/// A non-negative decimal written as a string (`"0.0000166667"`) or an
/// integer (`0`, `25`); a float is refused, since it cannot hold most
/// prices exactly.
struct Amount(Decimal);

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Amount, D::Error> {
        d.deserialize_any(AmountVisitor)
    }
}

struct AmountVisitor;

impl Visitor<'_> for AmountVisitor {
    type Value = Amount;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a decimal string such as \"0.0000166667\", or an integer")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Amount, E> {
        let plain = !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
            && s.bytes().filter(|&b| b == b'.').count() <= 1
            && !s.starts_with('.')
            && !s.ends_with('.');
        if !plain {
            return Err(E::custom(format!(
                "\"{s}\" is not a plain decimal number (digits with at most one point, e.g. \"0.25\")"
            )));
        }
        let value = Decimal::from_str_exact(s).map_err(|e| {
            E::custom(format!(
                "\"{s}\" does not fit a 28-digit decimal exactly ({e})"
            ))
        })?;
        non_negative(value, s)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Amount, E> {
        non_negative(Decimal::from(v), &v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Amount, E> {
        Ok(Amount(Decimal::from(v)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Amount, E> {
        Err(E::custom(format!(
            "{v} is a float, and a float cannot hold most prices exactly (it is stored as {v:.30}...); \
             write it as a string: \"{v}\""
        )))
    }
}

fn non_negative<E: de::Error>(value: Decimal, written: &str) -> Result<Amount, E> {
    if value.is_sign_negative() && !value.is_zero() {
        return Err(E::custom(format!(
            "{written} is negative; prices and allowances are 0 or more"
        )));
    }
    Ok(Amount(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHEET: &str = r#"
currency = "USD"

[prices]
requests = "0.0000002"
gb_seconds = "0.0000166667"
fuel = 1

[free_tier]
requests = 1000000

[tenants.shop.prices]
requests = "0"

[tenants.shop.free_tier]
gb_seconds = "400000.5"
"#;

    #[test]
    fn a_sheet_with_overrides_reads() {
        let s = PriceSheet::parse(SHEET, "prices.toml").unwrap();
        assert_eq!((s.currency(), s.minor_unit()), ("USD", 2));
        let p = |t, d| s.price(t, d).map(|p| p.to_string());
        assert_eq!(p("acme", Dimension::Requests).as_deref(), Some("0.0000002"));
        assert_eq!(p("shop", Dimension::Requests).as_deref(), Some("0"));
        assert_eq!(
            p("shop", Dimension::GbSeconds).as_deref(),
            Some("0.0000166667")
        );
        assert_eq!(p("shop", Dimension::Fuel).as_deref(), Some("1"));
        assert_eq!(p("shop", Dimension::Messages), None);
        let f = |t, d| s.free_allowance(t, d).to_string();
        assert_eq!(f("acme", Dimension::Requests), "1000000");
        assert_eq!(f("shop", Dimension::Requests), "1000000");
        assert_eq!(f("shop", Dimension::GbSeconds), "400000.5");
        assert_eq!(f("acme", Dimension::GbSeconds), "0");
        assert_eq!(s.tenants().collect::<Vec<_>>(), ["shop"]);
    }

    #[test]
    fn currencies_have_their_minor_units() {
        let unit = |text: &str| PriceSheet::parse(text, "p.toml").map(|s| s.minor_unit());
        assert_eq!(unit("currency = \"JPY\""), Ok(0));
        assert_eq!(unit("currency = \"EUR\""), Ok(2));
        assert_eq!(unit("currency = \"BHD\""), Ok(3));
        assert_eq!(unit("currency = \"XTS\"\nminor_unit = 5"), Ok(5));
        assert_eq!(unit("currency = \"JPY\"\nminor_unit = 2"), Ok(2));
    }

    /// Each bad sheet's error names the file, the line and the dotted key.
    #[test]
    fn errors_name_file_line_and_key() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "currency = \"USD\"\n[prices]\nrequests = 0.0000002\n",
                "p.toml: line 3: prices.requests: ",
                "a float cannot hold most prices exactly",
            ),
            (
                "currency = \"USD\"\n[prices]\nrequest = \"1\"\n",
                "p.toml: line 3: prices.request: ",
                "unknown field `request`",
            ),
            (
                "currency = \"USD\"\n[tenants.shop.prices]\nfuel = \"-1\"\n",
                "p.toml: line 3: tenants.shop.prices.fuel: ",
                "negative",
            ),
            (
                "currency = \"USD\"\n[tenants.shop.free_tier]\nmessages = \"1e6\"\n",
                "p.toml: line 3: tenants.shop.free_tier.messages: ",
                "not a plain decimal",
            ),
            (
                "currency = \"USD\"\n[tenants.shop]\nprice = {}\n",
                "p.toml: line 3: tenants.shop.price: ",
                "unknown field `price`",
            ),
            (
                "currency = \"USD\"\n[free_tier]\nfuel = \"0.00000000000000000000000000001\"\n",
                "p.toml: line 3: free_tier.fuel: ",
                "28-digit",
            ),
            (
                "[prices]\nfuel = \"1\"\n",
                "p.toml: ",
                "currency: missing field `currency`",
            ),
            (
                "currency = \"usd\"\n",
                "p.toml: line 1: currency: ",
                "not an ISO 4217 code",
            ),
            (
                "currency = \"XTS\"\n",
                "p.toml: line 1: currency: ",
                "minor_unit = N",
            ),
            (
                "currency = \"USD\"\nminor_unit = 12\n",
                "p.toml: line 2: minor_unit: ",
                "0 to 9",
            ),
            (
                "currency = \"USD\"\nvat = \"0.2\"\n",
                "p.toml: line 2: vat: ",
                "unknown field `vat`",
            ),
            ("currency = \"USD\"\n[prices\n", "p.toml: line 2: ", ""),
        ];
        for (text, prefix, needle) in cases {
            let err = PriceSheet::parse(text, "p.toml").unwrap_err().to_string();
            assert!(
                err.starts_with(prefix),
                "{text:?}: {err:?} should start with {prefix:?}"
            );
            assert!(
                err.contains(needle),
                "{text:?}: {err:?} should contain {needle:?}"
            );
        }
    }

    #[test]
    fn load_names_a_missing_file() {
        let err = PriceSheet::load(Path::new("/nonexistent/prices.toml")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/nonexistent/prices.toml: cannot read"),
            "{err}"
        );
    }
}
