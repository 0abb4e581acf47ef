//! A billing period: one UTC calendar month.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::PriceError;

/// A UTC month, written `YYYY-MM` (`2026-11`): from its first instant
/// (inclusive) to the next month's (exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Period {
    year: i32,
    month: u32,
}

impl Period {
    /// A month from its year and number (1-12), years 1970 to 9999.
    pub fn new(year: i32, month: u32) -> Result<Period, PriceError> {
        let input = format!("{year:04}-{month:02}");
        if !(1970..=9999).contains(&year) {
            return Err(period_error(&input, "the year must be 1970 to 9999"));
        }
        if !(1..=12).contains(&month) {
            return Err(period_error(&input, "the month must be 01 to 12"));
        }
        Ok(Period { year, month })
    }

    /// Parses `YYYY-MM`; the error names the input.
    pub fn parse(input: &str) -> Result<Period, PriceError> {
        let bad = || period_error(input, "expected a UTC month as YYYY-MM, e.g. 2026-11");
        let (y, m) = input.split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || m.len() != 2 || !(y.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        Period::new(y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?)
    }

    /// The month containing an instant.
    pub fn of(instant: DateTime<Utc>) -> Period {
        use chrono::Datelike;
        Period {
            year: instant.year(),
            month: instant.month(),
        }
    }

    pub fn year(&self) -> i32 {
        self.year
    }

    pub fn month(&self) -> u32 {
        self.month
    }

    /// The first instant of the month (inclusive).
    pub fn start(&self) -> DateTime<Utc> {
        month_start(self.year, self.month)
    }

    /// The first instant of the next month (exclusive).
    pub fn end(&self) -> DateTime<Utc> {
        let (year, month) = if self.month == 12 {
            (self.year + 1, 1)
        } else {
            (self.year, self.month + 1)
        };
        month_start(year, month)
    }

    /// Seconds in the month (2 419 200 to 2 678 400): the GB-month's
    /// denominator.
    pub fn seconds(&self) -> u64 {
        let s = (self.end() - self.start()).num_seconds();
        u64::try_from(s).expect("a month is positive")
    }

    /// Whether an instant is in the month.
    pub fn contains_instant(&self, instant: DateTime<Utc>) -> bool {
        self.start() <= instant && instant < self.end()
    }

    /// Whether a record's `started_at` (RFC 3339) is in the month; an
    /// unreadable time is an error naming it.
    pub fn contains(&self, started_at: &str) -> Result<bool, PriceError> {
        let instant = DateTime::parse_from_rfc3339(started_at).map_err(|e| PriceError::Time {
            input: started_at.to_string(),
            message: format!("not an RFC 3339 time: {e}"),
        })?;
        Ok(self.contains_instant(instant.with_timezone(&Utc)))
    }
}

fn month_start(year: i32, month: u32) -> DateTime<Utc> {
    let day = NaiveDate::from_ymd_opt(year, month, 1).expect("a checked month");
    Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0).expect("midnight"))
}

fn period_error(input: &str, message: &str) -> PriceError {
    PriceError::Period {
        input: input.to_string(),
        message: message.to_string(),
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl FromStr for Period {
    type Err = PriceError;

    fn from_str(s: &str) -> Result<Period, PriceError> {
        Period::parse(s)
    }
}

impl Serialize for Period {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Period {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Period, D::Error> {
        let s = String::deserialize(d)?;
        Period::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_have_their_lengths_and_bounds() {
        let nov = Period::parse("2026-11").unwrap();
        assert_eq!(nov.to_string(), "2026-11");
        assert_eq!(nov.start().to_rfc3339(), "2026-11-01T00:00:00+00:00");
        assert_eq!(nov.end().to_rfc3339(), "2026-12-01T00:00:00+00:00");
        assert_eq!(nov.seconds(), 30 * 86_400);
        let dec = Period::parse("2026-12").unwrap();
        assert_eq!(dec.end().to_rfc3339(), "2027-01-01T00:00:00+00:00");
        assert_eq!(Period::parse("2028-02").unwrap().seconds(), 29 * 86_400);
        assert_eq!(Period::parse("2026-02").unwrap().seconds(), 28 * 86_400);
        assert_eq!(Period::of(nov.start()), nov);
    }

    #[test]
    fn contains_reads_rfc3339_at_the_edges() {
        let nov = Period::parse("2026-11").unwrap();
        assert!(nov.contains("2026-11-01T00:00:00.000000Z").unwrap());
        assert!(nov.contains("2026-11-30T23:59:59.999999Z").unwrap());
        assert!(!nov.contains("2026-12-01T00:00:00.000000Z").unwrap());
        assert!(!nov.contains("2026-10-31T23:59:59.999999Z").unwrap());
        // An offset moves the instant across the month's edge.
        assert!(nov.contains("2026-12-01T00:30:00+01:00").unwrap());
        let err = nov.contains("yesterday").unwrap_err().to_string();
        assert!(err.contains("\"yesterday\""), "{err}");
    }

    #[test]
    fn parse_errors_name_the_input() {
        for bad in [
            "2026-13", "2026-00", "2026-1", "26-11", "2026/11", "november", "1969-12", "",
        ] {
            let err = Period::parse(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("\"{bad}\"")), "{bad}: {err}");
        }
        assert!(
            Period::parse("2026-13")
                .unwrap_err()
                .to_string()
                .contains("01 to 12")
        );
    }
}
