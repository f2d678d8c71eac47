//! Go's `time.ParseDuration`, which HEALTHCHECK's `--interval` and friends use: a sequence of
//! decimal numbers with units (`ns`, `us`, `µs`, `ms`, `s`, `m`, `h`), e.g. `1m30s`, `1.5h`,
//! optionally signed; `0` alone needs no unit. Results are in nanoseconds. And its
//! `Duration.String`, which history entries show (`1m30s`, `100ms`, `0s`).

pub fn parse_go_duration(text: &str) -> Result<i64, String> {
    let invalid = || format!("time: invalid duration {text:?}");
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let number_end =
            rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number = &rest[..number_end];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(invalid());
        }
        let value: f64 = number.parse().map_err(|_| invalid())?;
        rest = &rest[number_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        let scale: f64 = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(format!("time: missing unit in duration {text:?}")),
            _ => return Err(format!("time: unknown unit {unit:?} in duration {text:?}")),
        };
        total += value * scale;
        rest = &rest[unit_end..];
    }
    if total > i64::MAX as f64 {
        return Err(invalid());
    }
    let total = total as i64;
    Ok(if negative { -total } else { total })
}

/// Go's `time.Duration.String()` of `nanos`: `0s`, `1.5µs`, `100ms`, `2s`, `1m30s`, `1h0m0s`.
pub fn format_go_duration(nanos: i64) -> String {
    /// `whole` and, when not zero, `.fraction` (of `digits` digits) without trailing zeros.
    fn decimal(whole: u64, fraction: u64, digits: usize) -> String {
        let mut out = whole.to_string();
        if fraction != 0 {
            out.push('.');
            out.push_str(format!("{fraction:0digits$}").trim_end_matches('0'));
        }
        out
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let u = nanos.unsigned_abs();
    const SECOND: u64 = 1_000_000_000;
    let body = if u == 0 {
        return "0s".into();
    } else if u < SECOND {
        let (unit, digits) = match u {
            0..1_000 => ("ns", 0),
            1_000..1_000_000 => ("µs", 3),
            _ => ("ms", 6),
        };
        let scale = 10u64.pow(digits as u32);
        format!("{}{unit}", decimal(u / scale, u % scale, digits))
    } else {
        let seconds = u / SECOND;
        let mut out = format!("{}s", decimal(seconds % 60, u % SECOND, 9));
        let minutes = seconds / 60;
        if minutes > 0 {
            out = format!("{}m{out}", minutes % 60);
            let hours = minutes / 60;
            if hours > 0 {
                out = format!("{hours}h{out}");
            }
        }
        out
    };
    format!("{sign}{body}")
}

#[cfg(test)]
mod tests {
    use super::format_go_duration as f;
    use super::parse_go_duration as d;

    #[test]
    fn formats_like_go() {
        assert_eq!(f(0), "0s");
        assert_eq!(f(1), "1ns");
        assert_eq!(f(1_500), "1.5µs");
        assert_eq!(f(100_000_000), "100ms");
        assert_eq!(f(1_000_000_000), "1s");
        assert_eq!(f(1_250_000_000), "1.25s");
        assert_eq!(f(90_000_000_000), "1m30s");
        assert_eq!(f(3_600_000_000_000), "1h0m0s");
        assert_eq!(f(-2_000_000_000), "-2s");
    }

    #[test]
    fn parses() {
        assert_eq!(d("0"), Ok(0));
        assert_eq!(d("30s"), Ok(30_000_000_000));
        assert_eq!(d("1m30s"), Ok(90_000_000_000));
        assert_eq!(d("1.5h"), Ok(5_400_000_000_000));
        assert_eq!(d("100ms"), Ok(100_000_000));
        assert_eq!(d("-2s"), Ok(-2_000_000_000));
        assert_eq!(d("10µs"), Ok(10_000));
    }

    #[test]
    fn rejects() {
        assert_eq!(d("10"), Err("time: missing unit in duration \"10\"".into()));
        assert_eq!(d("5d"), Err("time: unknown unit \"d\" in duration \"5d\"".into()));
        assert!(d("").is_err());
        assert!(d("s").is_err());
        assert!(d("1..2s").is_err());
    }
}
