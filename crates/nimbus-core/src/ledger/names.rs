//! Ledger file names: `nimbus-usage-2026-12-01.jsonl` is the first file of a
//! UTC day, `nimbus-usage-2026-12-01.1.jsonl` the next once the first
//! reached its size limit, and so on; `.gz` is appended when a closed file
//! is compressed. Storage samples go to `nimbus-storage-2026-12-01.jsonl`.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) const USAGE_PREFIX: &str = "nimbus-usage-";
pub(crate) const STORAGE_PREFIX: &str = "nimbus-storage-";

/// Which family a ledger file belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Family {
    Usage,
    Storage,
}

impl Family {
    fn prefix(self) -> &'static str {
        match self {
            Family::Usage => USAGE_PREFIX,
            Family::Storage => STORAGE_PREFIX,
        }
    }
}

/// A parsed ledger file name. Ordered by day, then sequence: the order the
/// writer made them in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct FileName {
    pub family: Family,
    /// `YYYY-MM-DD`, which sorts as the days do.
    pub day: String,
    pub seq: u32,
}

impl FileName {
    pub fn new(family: Family, day: &str, seq: u32) -> Self {
        Self {
            family,
            day: day.to_string(),
            seq,
        }
    }

    /// The name without `.jsonl[.gz]`: the same for a file and its
    /// compressed copy, and what a tail's cursor records.
    pub fn stem(&self) -> String {
        match self.seq {
            0 => format!("{}{}", self.family.prefix(), self.day),
            n => format!("{}{}.{n}", self.family.prefix(), self.day),
        }
    }

    pub fn plain(&self) -> String {
        format!("{}.jsonl", self.stem())
    }

    pub fn compressed(&self) -> String {
        format!("{}.jsonl.gz", self.stem())
    }

    /// Parses `nimbus-usage-2026-12-01[.N].jsonl[.gz]`; the flag says
    /// whether it is the compressed form.
    pub fn parse(name: &str) -> Option<(Self, bool)> {
        let (rest, compressed) = match name.strip_suffix(".jsonl.gz") {
            Some(rest) => (rest, true),
            None => (name.strip_suffix(".jsonl")?, false),
        };
        Some((Self::parse_stem(rest)?, compressed))
    }

    pub fn parse_stem(stem: &str) -> Option<Self> {
        let (family, rest) = if let Some(r) = stem.strip_prefix(USAGE_PREFIX) {
            (Family::Usage, r)
        } else {
            (Family::Storage, stem.strip_prefix(STORAGE_PREFIX)?)
        };
        let (day, seq) = match rest.split_once('.') {
            Some((day, seq)) => {
                let seq: u32 = seq.parse().ok().filter(|n| *n > 0)?;
                // "01" and "1" would name one file twice.
                if seq.to_string() != seq_text(rest) {
                    return None;
                }
                (day, seq)
            }
            None => (rest, 0),
        };
        valid_day(day).then(|| Self::new(family, day, seq))
    }
}

fn seq_text(rest: &str) -> &str {
    rest.split_once('.').map_or("", |(_, s)| s)
}

fn valid_day(day: &str) -> bool {
    let b = day.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

/// Today's UTC date as `YYYY-MM-DD`, and the day number it was computed
/// from (days since the epoch), which the writer compares per record
/// instead of formatting a date each time.
pub(crate) fn utc_day(now: SystemTime) -> (u64, String) {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let at = UNIX_EPOCH + std::time::Duration::from_secs(days * 86_400);
    let text = humantime::format_rfc3339_seconds(at).to_string();
    (days, text[..10].to_string())
}

pub(crate) fn day_number(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) / 86_400
}

/// Every ledger file of `family` in `dir`: (name, compressed), in order. A
/// file and its compressed copy (a compression interrupted between writing
/// the copy and removing the original) are both listed.
pub(crate) fn list(dir: &Path, family: Family) -> std::io::Result<Vec<(FileName, bool)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if let Some((parsed, compressed)) = FileName::parse(&name)
            && parsed.family == family
        {
            found.push((parsed, compressed));
        }
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort_in_writing_order() {
        let a = FileName::new(Family::Usage, "2026-12-01", 0);
        let b = FileName::new(Family::Usage, "2026-12-01", 2);
        let c = FileName::new(Family::Usage, "2026-12-01", 10);
        let d = FileName::new(Family::Usage, "2026-12-02", 0);
        assert_eq!(a.plain(), "nimbus-usage-2026-12-01.jsonl");
        assert_eq!(c.compressed(), "nimbus-usage-2026-12-01.10.jsonl.gz");
        for n in [&a, &b, &c, &d] {
            assert_eq!(FileName::parse(&n.plain()), Some((n.clone(), false)));
            assert_eq!(FileName::parse(&n.compressed()), Some((n.clone(), true)));
        }
        let mut v = vec![d.clone(), c.clone(), a.clone(), b.clone()];
        v.sort();
        assert_eq!(v, [a, b, c, d]);
    }

    #[test]
    fn other_names_are_not_ledger_files() {
        for name in [
            "nimbus-usage.jsonl",
            "nimbus-usage-2026-12-1.jsonl",
            "nimbus-usage-2026-12-01.0.jsonl",
            "nimbus-usage-2026-12-01.01.jsonl",
            "nimbus-usage-2026-12-01.jsonl.tmp",
            "usage-2026-12-01.jsonl",
        ] {
            assert_eq!(FileName::parse(name), None, "{name}");
        }
    }

    #[test]
    fn the_utc_day_of_an_instant() {
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_764_633_600 + 86_399);
        assert_eq!(utc_day(t).1, "2025-12-02");
        assert_eq!(day_number(t), utc_day(t).0);
    }
}
