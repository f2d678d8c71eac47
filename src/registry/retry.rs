//! When and how long to wait before trying a registry request again.
//!
//! Retried: HTTP 408, 429 and 5xx answers other than 501/505 (which will not change), and
//! connection-level failures. The wait grows exponentially from `initial_delay`, capped at
//! `max_delay`, with "equal jitter" (a random point in the upper half of the step) so that
//! parallel downloads do not retry in lock step. A `Retry-After` header (seconds or an HTTP
//! date) replaces the computed wait, capped at `max_retry_after`. Attempts are bounded by
//! `max_attempts`, counting the first one.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; 1 means no retry.
    pub max_attempts: u32,
    pub initial_delay: Duration,
    pub max_delay: Duration,
    /// The longest `Retry-After` honoured; longer requests are cut to this.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn none() -> Self {
        RetryPolicy { max_attempts: 1, ..RetryPolicy::default() }
    }

    /// Whether an answer with this status may succeed when asked again.
    pub fn is_retryable_status(status: u16) -> bool {
        status == 408
            || status == 429
            || ((500..=599).contains(&status) && status != 501 && status != 505)
    }

    /// Whether attempt number `attempt` (1-based) may be followed by another.
    pub fn may_retry(&self, attempt: u32) -> bool {
        attempt < self.max_attempts
    }

    /// The wait after failed attempt number `attempt` (1-based). `jitter` is a number in
    /// `[0, 1)`; `retry_after` is what the registry asked for, if anything.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
        if let Some(asked) = retry_after {
            return asked.min(self.max_retry_after);
        }
        let exponent = attempt.saturating_sub(1).min(30);
        let step = self.initial_delay.saturating_mul(1u32 << exponent).min(self.max_delay);
        let half = step / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }

    /// Sleeps for the wait after attempt `attempt`.
    pub fn wait(&self, attempt: u32, retry_after: Option<Duration>) {
        std::thread::sleep(self.delay(attempt, retry_after, random_fraction()));
    }
}

/// A number in `[0, 1)` from the standard library's randomly seeded hasher: enough for
/// jitter, which needs spread rather than unpredictability.
fn random_fraction() -> f64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos());
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Parses a `Retry-After` value: delay seconds (`120`) or an HTTP date
/// (`Wed, 21 Oct 2015 07:28:00 GMT`), relative to `now`. A date in the past means now.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = parse_http_date(value)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Parses the IMF-fixdate form of RFC 9110 (the only one servers may send).
fn parse_http_date(value: &str) -> Option<SystemTime> {
    let (_weekday, rest) = value.split_once(", ")?;
    let parts: Vec<&str> = rest.split(' ').collect();
    let [day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let day: u32 = day.parse().ok()?;
    let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        .iter()
        .position(|m| m == month)? as u32
        + 1;
    let year: i64 = year.parse().ok()?;
    let clock: Vec<u64> = time.split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let [hour, minute, second] = clock.as_slice() else {
        return None;
    };
    if !(1..=31).contains(&day) || *hour > 23 || *minute > 59 || *second > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let seconds = days.checked_mul(86_400)? + (hour * 3600 + minute * 60 + second) as i64;
    let seconds = u64::try_from(seconds).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(seconds))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_statuses() {
        for status in [408, 429, 500, 502, 503, 504] {
            assert!(RetryPolicy::is_retryable_status(status), "{status}");
        }
        for status in [200, 400, 401, 403, 404, 501, 505] {
            assert!(!RetryPolicy::is_retryable_status(status), "{status}");
        }
    }

    #[test]
    fn backoff_grows_exponentially_within_jitter_and_cap() {
        let policy = RetryPolicy {
            max_attempts: 10,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            max_retry_after: Duration::from_secs(5),
        };
        assert_eq!(policy.delay(1, None, 0.0), Duration::from_millis(50));
        assert_eq!(policy.delay(1, None, 1.0), Duration::from_millis(100));
        assert_eq!(policy.delay(2, None, 0.0), Duration::from_millis(100));
        assert_eq!(policy.delay(3, None, 0.5), Duration::from_millis(300));
        assert_eq!(policy.delay(8, None, 1.0), Duration::from_millis(1000));
        assert_eq!(policy.delay(100, None, 0.0), Duration::from_millis(500));
        for _ in 0..100 {
            let d = policy.delay(2, None, random_fraction());
            assert!(d >= Duration::from_millis(100) && d <= Duration::from_millis(200), "{d:?}");
        }
    }

    #[test]
    fn retry_after_wins_but_is_capped() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.delay(1, Some(Duration::from_secs(3)), 0.9), Duration::from_secs(3));
        assert_eq!(policy.delay(1, Some(Duration::from_secs(3600)), 0.0), Duration::from_secs(60));
        assert!(policy.may_retry(4));
        assert!(!policy.may_retry(5));
        assert!(!RetryPolicy::none().may_retry(1));
    }

    #[test]
    fn parses_retry_after_forms() {
        let now = UNIX_EPOCH + Duration::from_secs(1_445_412_470); // 2015-10-21 07:27:50 UTC
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("Wed, 32 Oct 2015 07:28:00 GMT", now), None);
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(UNIX_EPOCH));
        assert_eq!(
            parse_http_date("Tue, 29 Feb 2000 12:00:00 GMT"),
            Some(UNIX_EPOCH + Duration::from_secs(951_825_600))
        );
    }
}
