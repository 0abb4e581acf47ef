//! The usage ledger on disk: the rotating sink `nimbus serve` writes
//! (`nimbus-usage-YYYY-MM-DD[.N].jsonl[.gz]` in one directory), storage
//! samples beside it, reading any set of ledger files back with each record
//! once, and following a ledger across rotations from a cursor.
//!
//! A bill is computed from these files, never from the Prometheus counters
//! (float64, exact only up to 2^53 per series).

mod names;
mod reader;
mod tail;
mod writer;

#[cfg(test)]
mod tests;

pub use reader::{
    LedgerError, LedgerFile, LedgerRecords, LedgerSource, Lines, StorageSample, TornLine,
};
pub use tail::{Chunk, LedgerTail, TailCursor};
pub use writer::{RotatingLedger, Rotation};

use std::path::Path;

/// The storage samples' file family (`nimbus-storage-YYYY-MM-DD.jsonl`),
/// rotated by day like the usage files.
#[derive(Debug)]
pub struct StorageLedger {
    inner: RotatingLedger,
}

impl StorageLedger {
    /// `retain_days` as [`Rotation::retain_days`].
    pub fn open(dir: impl AsRef<Path>, retain_days: Option<u32>) -> std::io::Result<Self> {
        let rotation = Rotation {
            retain_days,
            ..Rotation::default()
        };
        let inner = RotatingLedger::open_family(dir.as_ref(), names::Family::Storage, rotation)?;
        Ok(Self { inner })
    }

    pub fn record(&self, sample: &StorageSample) -> std::io::Result<()> {
        self.inner.append(sample)
    }
}
