//! Usage rollups: per-tenant, per-function, per-hour sums of the usage
//! ledger, and per-tenant hourly storage, in a redb file beside the data,
//! so the usage API answers without reading the ledger.
//!
//! The rollups follow the ledger directory (a [`LedgerTail`] from a cursor
//! kept in the same redb transaction as the sums it produced), so they are
//! always exactly the ledger: a commit that a crash undoes undoes its cursor
//! too, and the records are applied again from the ledger. Deleting the
//! rollups file rebuilds it from the ledger at the next start. A query
//! first applies whatever the ledger holds beyond the cursor, so it sees
//! every invocation that returned before it was asked.

mod store;

pub use store::{Bucket, RECENT_PER_TENANT, Recent, RollupError, Rollups, TenantUsage};

use chrono::{DateTime, Utc};

/// How usage is grouped in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    Hour,
    Day,
}

impl Granularity {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "hour" => Some(Self::Hour),
            "day" => Some(Self::Day),
            _ => None,
        }
    }

    pub fn seconds(self) -> i64 {
        match self {
            Self::Hour => 3600,
            Self::Day => 86_400,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hour => "hour",
            Self::Day => "day",
        }
    }

    /// The start of the bucket holding `t`.
    pub fn floor(self, t: DateTime<Utc>) -> DateTime<Utc> {
        let s = t.timestamp().div_euclid(self.seconds()) * self.seconds();
        DateTime::from_timestamp(s, 0).unwrap_or(t)
    }

    /// The end of the bucket holding the instant just before `t` (`t`
    /// itself when on a boundary).
    pub fn ceil(self, t: DateTime<Utc>) -> DateTime<Utc> {
        let f = self.floor(t);
        if f == t && t.timestamp_subsec_nanos() == 0 {
            t
        } else {
            f + chrono::Duration::seconds(self.seconds())
        }
    }
}
