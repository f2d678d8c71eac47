//! Timestamps as image configs and annotations write them (RFC 3339, UTC).
//!
//! A build takes one [`Timestamp`] — `SOURCE_DATE_EPOCH` when given, otherwise the clock — and
//! uses it for the config's `created`, its new history entries and the `created` annotation
//! of exported layouts, so a build with `SOURCE_DATE_EPOCH` writes no clock-dependent byte.
//!
//! Invariant: a `Timestamp` lies in years 0000–9999, the range RFC 3339 (and Go's
//! `time.Time.MarshalJSON`, which Docker uses to read configs) can express.

use super::ImageError;
use std::time::{SystemTime, UNIX_EPOCH};

/// 0000-01-01T00:00:00Z in Unix seconds.
const MIN_SECS: i64 = -62_167_219_200;
/// 9999-12-31T23:59:59Z in Unix seconds.
const MAX_SECS: i64 = 253_402_300_799;

/// A point in time with nanosecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp {
    secs: i64,
    nanos: u32,
}

impl Timestamp {
    /// Seconds since the Unix epoch (`SOURCE_DATE_EPOCH`'s unit).
    pub fn from_unix(secs: i64) -> Result<Timestamp, ImageError> {
        Timestamp::from_unix_nanos(secs, 0)
    }

    /// Seconds and nanoseconds since the Unix epoch.
    pub fn from_unix_nanos(secs: i64, nanos: u32) -> Result<Timestamp, ImageError> {
        if !(MIN_SECS..=MAX_SECS).contains(&secs) || nanos >= 1_000_000_000 {
            return Err(ImageError::TimeOutOfRange { secs });
        }
        Ok(Timestamp { secs, nanos })
    }

    /// The current time.
    pub fn now() -> Timestamp {
        let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = i64::try_from(since.as_secs()).unwrap_or(MAX_SECS).min(MAX_SECS);
        Timestamp { secs, nanos: since.subsec_nanos() }
    }

    /// The time a build stamps its image with: `SOURCE_DATE_EPOCH` when given, else now.
    pub fn for_build(source_date_epoch: Option<i64>) -> Result<Timestamp, ImageError> {
        match source_date_epoch {
            Some(secs) => Timestamp::from_unix(secs),
            None => Ok(Timestamp::now()),
        }
    }

    /// Seconds since the Unix epoch.
    pub fn unix_secs(&self) -> i64 {
        self.secs
    }

    /// RFC 3339 with the fraction Go's `RFC3339Nano` writes: nanoseconds without trailing
    /// zeros, none at all for whole seconds (`2024-01-02T03:04:05.5Z`, `2024-01-02T03:04:05Z`).
    /// This is the form of `created` in configs and history.
    pub fn rfc3339(&self) -> String {
        let mut text = self.rfc3339_seconds();
        if self.nanos != 0 {
            text.pop(); // the 'Z'
            let fraction = format!("{:09}", self.nanos);
            text.push('.');
            text.push_str(fraction.trim_end_matches('0'));
            text.push('Z');
        }
        text
    }

    /// RFC 3339 in whole seconds (`2024-01-02T03:04:05Z`), the form of the
    /// `org.opencontainers.image.created` annotation.
    pub fn rfc3339_seconds(&self) -> String {
        let days = self.secs.div_euclid(86_400);
        let of_day = self.secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
            of_day / 3600,
            of_day % 3600 / 60,
            of_day % 60
        )
    }
}

impl Timestamp {
    /// Reads an RFC 3339 time as image configs write it (`2024-01-02T03:04:05Z`, with an
    /// optional fraction and a `Z` or `±hh:mm` offset; a lowercase `t`/`z` or a space for
    /// the `T` is accepted too). `None` for anything else or outside years 0000-9999.
    pub fn parse_rfc3339(text: &str) -> Option<Timestamp> {
        let bytes = text.as_bytes();
        let number = |range: std::ops::Range<usize>| -> Option<i64> {
            let digits = text.get(range)?;
            digits.bytes().all(|b| b.is_ascii_digit()).then(|| digits.parse().ok())?
        };
        if bytes.len() < 20
            || bytes[4] != b'-'
            || bytes[7] != b'-'
            || !matches!(bytes[10], b'T' | b't' | b' ')
            || bytes[13] != b':'
            || bytes[16] != b':'
        {
            return None;
        }
        let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
        let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
        let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        if !(1..=12).contains(&month)
            || day < 1
            || day > month_days[(month - 1) as usize]
            || hour > 23
            || minute > 59
            || second > 60
        {
            return None;
        }
        let mut rest = &text[19..];
        let mut nanos = 0u32;
        if let Some(fraction) = rest.strip_prefix('.') {
            let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return None;
            }
            for (i, b) in fraction.bytes().take(digits.min(9)).enumerate() {
                nanos += u32::from(b - b'0') * 10u32.pow(8 - i as u32);
            }
            rest = &fraction[digits..];
        }
        let offset = match rest.as_bytes() {
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
                let field = |a: u8, b: u8| -> Option<i64> {
                    (a.is_ascii_digit() && b.is_ascii_digit())
                        .then(|| i64::from(a - b'0') * 10 + i64::from(b - b'0'))
                };
                let (hours, minutes) = (field(*h1, *h2)?, field(*m1, *m2)?);
                if hours > 23 || minutes > 59 {
                    return None;
                }
                let seconds = hours * 3600 + minutes * 60;
                if *sign == b'-' { -seconds } else { seconds }
            }
            _ => return None,
        };
        let days = days_from_civil(year, month as u32, day as u32);
        let secs = days * 86_400 + hour * 3600 + minute * 60 + second.min(59) - offset;
        Timestamp::from_unix_nanos(secs, nanos).ok()
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (the inverse of [`civil_from_days`]).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month_index = i64::from(if month > 2 { month - 3 } else { month + 9 });
    let day_of_year = (153 * month_index + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, valid for every day a `Timestamp` can hold).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}
#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64, nanos: u32) -> Timestamp {
        Timestamp::from_unix_nanos(secs, nanos).unwrap()
    }

    #[test]
    fn formats_known_instants() {
        let cases: &[(i64, u32, &str)] = &[
            (0, 0, "1970-01-01T00:00:00Z"),
            (1_700_000_000, 0, "2023-11-14T22:13:20Z"),
            (951_782_400, 0, "2000-02-29T00:00:00Z"),
            (1_709_251_199, 0, "2024-02-29T23:59:59Z"),
            (-1, 0, "1969-12-31T23:59:59Z"),
            (MIN_SECS, 0, "0000-01-01T00:00:00Z"),
            (MAX_SECS, 0, "9999-12-31T23:59:59Z"),
            (1_700_000_000, 500_000_000, "2023-11-14T22:13:20.5Z"),
            (1_700_000_000, 123_456_789, "2023-11-14T22:13:20.123456789Z"),
            (1_700_000_000, 1_000, "2023-11-14T22:13:20.000001Z"),
        ];
        for &(secs, nanos, text) in cases {
            assert_eq!(at(secs, nanos).rfc3339(), text, "{secs}.{nanos}");
        }
        assert_eq!(at(1_700_000_000, 5).rfc3339_seconds(), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn parses_what_it_formats_and_offsets() {
        for (secs, nanos) in [(0, 0), (1_700_000_000, 500_000_000), (-1, 1), (MAX_SECS, 0)] {
            let time = at(secs, nanos);
            assert_eq!(Timestamp::parse_rfc3339(&time.rfc3339()), Some(time));
        }
        assert_eq!(
            Timestamp::parse_rfc3339("2023-11-14T23:13:20.25+01:00"),
            Some(at(1_700_000_000, 250_000_000))
        );
        assert_eq!(
            Timestamp::parse_rfc3339("2023-11-14T21:13:20-01:00"),
            Some(at(1_700_000_000, 0))
        );
        for bad in [
            "",
            "2023-11-14",
            "2023-11-14T22:13:20",
            "2023-13-14T22:13:20Z",
            "2023-11-14T22:13:20.Z",
            "x023-11-14T22:13:20Z",
            "2023-11-14T22:13:20+1:00",
        ] {
            assert_eq!(Timestamp::parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_day_of_four_centuries_round_trips() {
        // Walk day by day from 1900 to 2300 and check the date increments correctly.
        let mut previous = civil_from_days(-25_567); // 1900-01-01
        assert_eq!(previous, (1900, 1, 1));
        for days in -25_566..120_000 {
            let (y, m, d) = civil_from_days(days);
            let (py, pm, pd) = previous;
            let next_day = (y, m, d) == (py, pm, pd + 1);
            let next_month = y == py && m == pm + 1 && d == 1;
            let next_year = y == py + 1 && m == 1 && d == 1 && pm == 12 && pd == 31;
            assert!(next_day || next_month || next_year, "{previous:?} -> {:?}", (y, m, d));
            assert_eq!(days_from_civil(y, m, d), days);
            previous = (y, m, d);
        }
    }

    #[test]
    fn parses_what_configs_write() {
        let cases: &[(&str, i64, u32)] = &[
            ("2023-11-14T22:13:20Z", 1_700_000_000, 0),
            ("2023-11-14T22:13:20.5Z", 1_700_000_000, 500_000_000),
            ("2023-11-14T22:13:20.123456789123Z", 1_700_000_000, 123_456_789),
            ("2023-11-14T23:13:20+01:00", 1_700_000_000, 0),
            ("2023-11-14T21:43:20-00:30", 1_700_000_000, 0),
            ("2023-11-14t22:13:20z", 1_700_000_000, 0),
            ("1970-01-01T00:00:00Z", 0, 0),
            ("2000-02-29T00:00:00Z", 951_782_400, 0),
            ("0000-01-01T00:00:00Z", MIN_SECS, 0),
        ];
        for &(text, secs, nanos) in cases {
            assert_eq!(Timestamp::parse_rfc3339(text), Some(at(secs, nanos)), "{text}");
        }
        for bad in [
            "",
            "2023-11-14",
            "2023-11-14T22:13:20",
            "2023-13-14T22:13:20Z",
            "2023-02-29T22:13:20Z",
            "2023-11-14T24:13:20Z",
            "2023-11-14T22:13:20.Z",
            "2023-11-14T22:13:20+0100",
            "+023-11-14T22:13:20Z",
            "2023-11-14T22:13:20Zjunk",
        ] {
            assert_eq!(Timestamp::parse_rfc3339(bad), None, "{bad}");
        }
        // Every day of four centuries round-trips through formatting.
        for days in (-25_567..120_000).step_by(7) {
            let time = at(days * 86_400 + 3_723, 0);
            assert_eq!(Timestamp::parse_rfc3339(&time.rfc3339()), Some(time));
        }
    }

    #[test]
    fn out_of_range_is_an_error() {
        for secs in [MIN_SECS - 1, MAX_SECS + 1, i64::MAX, i64::MIN] {
            let err = Timestamp::from_unix(secs).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("time {secs} (seconds since 1970) is outside years 0000-9999")
            );
        }
        assert!(Timestamp::from_unix_nanos(0, 1_000_000_000).is_err());
    }

    #[test]
    fn build_time_prefers_source_date_epoch() {
        assert_eq!(Timestamp::for_build(Some(42)).unwrap(), at(42, 0));
        let before = Timestamp::now();
        let now = Timestamp::for_build(None).unwrap();
        assert!(now >= before);
        assert!(now.unix_secs() > 1_600_000_000);
    }
}
