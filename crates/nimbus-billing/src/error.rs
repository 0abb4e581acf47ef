//! The crate's one error type.

/// What went wrong reading a price sheet, a period or a time, or computing
/// an amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PriceError {
    /// The price sheet could not be read.
    #[error("{file}: {message}")]
    Io { file: String, message: String },
    /// The price sheet is not TOML.
    #[error("{file}: {}{message}", line_prefix(*.line))]
    Syntax {
        file: String,
        line: Option<u64>,
        message: String,
    },
    /// A key of the price sheet is unknown, missing or has a bad value.
    #[error("{file}: {}{key}: {message}", line_prefix(*.line))]
    Invalid {
        file: String,
        line: Option<u64>,
        /// The dotted key, e.g. `tenants.shop.prices.requests`.
        key: String,
        message: String,
    },
    /// A period that is not a `YYYY-MM` month.
    #[error("period \"{input}\": {message}")]
    Period { input: String, message: String },
    /// A record's `started_at` that is not an RFC 3339 time.
    #[error("started_at \"{input}\": {message}")]
    Time { input: String, message: String },
    /// An amount beyond what a `Decimal` holds (about 7.9 · 10^28 minor
    /// units): no real ledger gets there, but it is never wrapped or
    /// rounded away.
    #[error("tenant {tenant}: {what} exceeds the largest amount a statement can hold")]
    AmountOverflow { tenant: String, what: String },
}

fn line_prefix(line: Option<u64>) -> String {
    line.map(|l| format!("line {l}: ")).unwrap_or_default()
}
