//! `m2m:timestamp` and `m2m:absRelTimestamp` (TS-0004 §6.3.3).
//!
//! A timestamp is ISO 8601 basic format `YYYYMMDDThhmmss` in UTC, optionally with a
//! fraction of up to six digits after `,` (a `.` is also accepted); time zones are not
//! allowed. Conversions are pure arithmetic: the caller supplies "now".

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a timestamp string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TimestampError {
    /// Not `YYYYMMDDThhmmss[,ffffff]`.
    #[error("timestamp is not in the form YYYYMMDDThhmmss[,ffffff]")]
    Format,
    /// A field is out of range (month 13, 31 April, hour 24, …).
    #[error("timestamp field out of range")]
    Range,
    /// The instant cannot be written with a four-digit year.
    #[error("instant outside years 0000..=9999")]
    YearOutOfRange,
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn digits(s: &[u8]) -> Option<i64> {
    s.iter().try_fold(0i64, |acc, &b| b.is_ascii_digit().then(|| acc * 10 + i64::from(b - b'0')))
}

/// Parses `YYYYMMDDThhmmss[,ffffff]` (UTC) to seconds since the Unix epoch.
///
/// A fraction is validated and then dropped (TS-0004 lets a receiver ignore the
/// precision). A seconds value of 60 (a leap second) counts as the next minute.
pub fn parse_timestamp(s: &str) -> Result<i64, TimestampError> {
    let b = s.as_bytes();
    if b.len() < 15 || b[8] != b'T' {
        return Err(TimestampError::Format);
    }
    if b.len() > 15 {
        let frac = &b[16..];
        if !matches!(b[15], b',' | b'.') || frac.is_empty() || frac.len() > 6 || digits(frac).is_none() {
            return Err(TimestampError::Format);
        }
    }
    let field = |r: std::ops::Range<usize>| digits(&b[r]).ok_or(TimestampError::Format);
    let (year, month, day) = (field(0..4)?, field(4..6)?, field(6..8)?);
    let (hour, minute, second) = (field(9..11)?, field(11..13)?, field(13..15)?);
    if !(1..=12).contains(&month)
        || !(1..=days_in_month(year, month)).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(TimestampError::Range);
    }
    Ok(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Formats seconds since the Unix epoch as `YYYYMMDDThhmmss` (UTC, no fraction).
pub fn format_timestamp(unix_seconds: i64) -> Result<String, TimestampError> {
    let (days, secs) = (unix_seconds.div_euclid(86_400), unix_seconds.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        return Err(TimestampError::YearOutOfRange);
    }
    Ok(format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}", secs / 3600, secs % 3600 / 60, secs % 60))
}

/// `m2m:absRelTimestamp`: an absolute timestamp string or a relative time in milliseconds
/// (used by `rqet`, `rset`, `oet`, `rp`). The JSON type is kept as received.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AbsRelTimestamp {
    /// A JSON number: milliseconds relative to the time of the request.
    Relative(i64),
    /// A JSON string: normally `YYYYMMDDThhmmss`, but a string of digits is read as
    /// relative milliseconds, since senders often quote the `xs:long` branch.
    Absolute(String),
}

impl AbsRelTimestamp {
    /// The value read from text (a query parameter, header or option): an optionally signed
    /// integer is relative milliseconds, anything else an absolute timestamp (kept as text, not
    /// validated here).
    pub fn from_text(text: String) -> Self {
        let digits = text.strip_prefix('-').unwrap_or(&text);
        match (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then(|| text.parse::<i64>().ok()) {
            Some(Some(ms)) => Self::Relative(ms),
            _ => Self::Absolute(text),
        }
    }

    /// Relative milliseconds, if this is the relative branch (a number or a digit string).
    pub fn relative_millis(&self) -> Option<i64> {
        match self {
            Self::Relative(ms) => Some(*ms),
            Self::Absolute(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok(),
            Self::Absolute(_) => None,
        }
    }

    /// Checks the value without resolving it.
    pub fn check(&self) -> Result<(), TimestampError> {
        self.resolve(0).map(drop)
    }

    /// The instant in Unix seconds, taking relative values from `now_unix_seconds`.
    /// Relative milliseconds round up to whole seconds, as TS-0004 allows for expirations.
    pub fn resolve(&self, now_unix_seconds: i64) -> Result<i64, TimestampError> {
        let after = |ms: i64| {
            let secs = ms.div_euclid(1000) + i64::from(ms.rem_euclid(1000) != 0);
            now_unix_seconds.saturating_add(secs)
        };
        match self {
            Self::Relative(ms) => Ok(after(*ms)),
            Self::Absolute(s) => match self.relative_millis() {
                Some(ms) => Ok(after(ms)),
                None => parse_timestamp(s),
            },
        }
    }
}

impl fmt::Display for AbsRelTimestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Relative(ms) => write!(f, "{ms}"),
            Self::Absolute(s) => f.write_str(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(parse_timestamp("19700101T000000"), Ok(0));
        // The examples in TS-0004 §8.5.2.
        assert_eq!(parse_timestamp("20160506T153208"), Ok(1_462_548_728));
        assert_eq!(parse_timestamp("20000229T235959"), Ok(951_868_799));
        assert_eq!(parse_timestamp("20141003T112032,5"), Ok(1_412_335_232));
        assert_eq!(parse_timestamp("20141003T112032.123456"), Ok(1_412_335_232));
        assert_eq!(format_timestamp(1_462_548_728).unwrap(), "20160506T153208");
        assert_eq!(format_timestamp(0).unwrap(), "19700101T000000");
        assert_eq!(format_timestamp(-1).unwrap(), "19691231T235959");
    }

    #[test]
    fn round_trip_over_range() {
        let mut t = -62_167_219_200; // 0000-01-01
        while t < 253_402_300_799 {
            let s = format_timestamp(t).unwrap();
            assert_eq!(parse_timestamp(&s), Ok(t), "{s}");
            t += 7_777_777;
        }
        assert_eq!(format_timestamp(253_402_300_800), Err(TimestampError::YearOutOfRange));
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "20141003112032",
            "20141003t112032",
            "20141003T11203",
            "20141003T112032Z",
            "20141003T112032+0100",
            "20141003T112032,",
            "20141003T112032,1234567",
            "2014-10-03T11:20:32",
            "+2014003T112032",
        ] {
            assert_eq!(parse_timestamp(bad), Err(TimestampError::Format), "{bad}");
        }
        for bad in [
            "20141303T112032",
            "20140431T112032",
            "20150229T112032",
            "20141000T112032",
            "20141003T242032",
            "20141003T116032",
            "20141003T112061",
        ] {
            assert_eq!(parse_timestamp(bad), Err(TimestampError::Range), "{bad}");
        }
    }

    #[test]
    fn abs_rel() {
        let rel: AbsRelTimestamp = serde_json::from_str("3600000").unwrap();
        assert_eq!(rel, AbsRelTimestamp::Relative(3_600_000));
        assert_eq!(rel.resolve(100), Ok(3700));
        assert_eq!(AbsRelTimestamp::Relative(1).resolve(100), Ok(101));
        let quoted: AbsRelTimestamp = serde_json::from_str("\"1500\"").unwrap();
        assert_eq!(quoted.resolve(0), Ok(2));
        assert_eq!(serde_json::to_string(&quoted).unwrap(), "\"1500\"");
        let abs: AbsRelTimestamp = serde_json::from_str("\"20141003T112032\"").unwrap();
        assert_eq!(abs.resolve(0), Ok(1_412_335_232));
        assert!(AbsRelTimestamp::Absolute("soon".into()).check().is_err());
    }

    #[test]
    fn abs_rel_from_text() {
        assert_eq!(AbsRelTimestamp::from_text("1500".into()), AbsRelTimestamp::Relative(1500));
        assert_eq!(AbsRelTimestamp::from_text("-20".into()), AbsRelTimestamp::Relative(-20));
        for text in ["20141003T112032", "", "-", "+5", "99999999999999999999"] {
            assert_eq!(AbsRelTimestamp::from_text(text.into()), AbsRelTimestamp::Absolute(text.into()), "{text}");
        }
    }
}
