//! Durations as users write them in Velero, KKP and k0rdent manifests.
//!
//! Velero serialises `metav1.Duration` with Go's `time.Duration` syntax (`720h0m0s`), while
//! people also type `30d` or `2 days`. We accept both so a manifest copied from any of those
//! systems works, and we always print the Go form so that what we write back is what Velero reads.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a duration string was rejected. Every variant names the input so the user can find it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Nothing (or only whitespace) was given.
    #[error("empty duration: give a value such as \"720h\", \"90m\", \"1h30m\" or \"30d\"")]
    Empty,
    /// A leading minus sign: durations here are spans of time and cannot run backwards.
    #[error("negative duration {input:?} is not allowed: give a positive value such as \"1h\"")]
    Negative {
        /// The rejected text.
        input: String,
    },
    /// Neither Go (`1h30m`, `1.5h`, `500ms`) nor humantime (`30d`, `2 days`) syntax.
    #[error(
        "invalid duration {input:?}: {reason}; accepted forms are Go style (\"720h0m0s\", \"1h30m\", \"1.5h\", \"500ms\") or humantime (\"30d\", \"2 days\")"
    )]
    Invalid {
        /// The rejected text.
        input: String,
        /// What was wrong with it.
        reason: String,
    },
    /// The value does not fit in the range we can represent.
    #[error("duration {input:?} is too large")]
    Overflow {
        /// The rejected text.
        input: String,
    },
}

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Parses a duration in Go syntax (`720h0m0s`, `90m`, `1h30m`, `1.5h`, `500ms`, `0`) or
/// humantime syntax (`30d`, `2 days`, `1h 30m`).
///
/// Go syntax is tried first because it is what Velero writes; humantime covers the units Go
/// lacks (days, weeks). Negative values are rejected rather than clamped: a negative TTL or
/// interval is always a mistake and silently treating it as zero would hide it.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let trimmed = s.trim();
    if trimmed.is_empty() {
        return Err(DurationError::Empty);
    }
    if trimmed.starts_with('-') {
        return Err(DurationError::Negative {
            input: s.to_string(),
        });
    }
    let body = trimmed.strip_prefix('+').unwrap_or(trimmed);
    match parse_go(body) {
        Ok(nanos) => nanos_to_duration(nanos).ok_or_else(|| DurationError::Overflow {
            input: s.to_string(),
        }),
        Err(GoParseError::Overflow) => Err(DurationError::Overflow {
            input: s.to_string(),
        }),
        Err(GoParseError::Syntax(go_reason)) => match humantime::parse_duration(body) {
            Ok(d) => Ok(d),
            Err(humantime::DurationError::NumberOverflow) => Err(DurationError::Overflow {
                input: s.to_string(),
            }),
            Err(_) => Err(DurationError::Invalid {
                input: s.to_string(),
                reason: go_reason,
            }),
        },
    }
}

enum GoParseError {
    Syntax(String),
    Overflow,
}

fn unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        "us" | "µs" | "μs" => 1_000,
        "ms" => 1_000_000,
        "s" => NANOS_PER_SEC,
        "m" => 60 * NANOS_PER_SEC,
        "h" => 3_600 * NANOS_PER_SEC,
        _ => return None,
    })
}

/// Go's `time.ParseDuration` without the sign, returning nanoseconds.
fn parse_go(s: &str) -> Result<u128, GoParseError> {
    if s == "0" {
        return Ok(0);
    }
    let mut rest = s;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let int_part = &rest[..int_len];
        rest = &rest[int_len..];
        let mut frac_part = "";
        if let Some(after_dot) = rest.strip_prefix('.') {
            let frac_len = after_dot
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(after_dot.len());
            frac_part = &after_dot[..frac_len];
            rest = &after_dot[frac_len..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(GoParseError::Syntax("expected a number".into()));
        }
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        if unit.is_empty() {
            return Err(GoParseError::Syntax(format!(
                "missing unit after \"{int_part}\" (use ns, us, ms, s, m or h)"
            )));
        }
        let per = unit_nanos(unit).ok_or_else(|| {
            GoParseError::Syntax(format!("unknown unit \"{unit}\" (use ns, us, ms, s, m, h)"))
        })?;
        let int: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| GoParseError::Overflow)?
        };
        let mut value = int.checked_mul(per).ok_or(GoParseError::Overflow)?;
        if !frac_part.is_empty() {
            // Keep at most 18 fractional digits: more cannot change a nanosecond result.
            let digits = &frac_part[..frac_part.len().min(18)];
            let frac: u128 = digits.parse().map_err(|_| GoParseError::Overflow)?;
            let scale = 10u128.pow(digits.len() as u32);
            value = value
                .checked_add(frac * per / scale)
                .ok_or(GoParseError::Overflow)?;
        }
        total = total.checked_add(value).ok_or(GoParseError::Overflow)?;
    }
    Ok(total)
}

fn nanos_to_duration(nanos: u128) -> Option<Duration> {
    let secs = u64::try_from(nanos / NANOS_PER_SEC).ok()?;
    Some(Duration::new(secs, (nanos % NANOS_PER_SEC) as u32))
}

/// Formats a duration the way Go's `time.Duration.String()` does (`720h0m0s`, `1m30s`, `500ms`).
///
/// Velero stores TTLs in this form; producing it exactly keeps round trips through Velero's
/// API byte-identical and diffs quiet.
pub fn format_go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < NANOS_PER_SEC {
        let (unit, per) = if nanos < 1_000 {
            ("ns", 1)
        } else if nanos < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{}{unit}", fixed(nanos, per));
    }
    let total_secs = nanos / NANOS_PER_SEC;
    let hours = total_secs / 3_600;
    let minutes = (total_secs % 3_600) / 60;
    let secs = fixed(nanos % (60 * NANOS_PER_SEC), NANOS_PER_SEC);
    if hours > 0 {
        format!("{hours}h{minutes}m{secs}s")
    } else if minutes > 0 {
        format!("{minutes}m{secs}s")
    } else {
        format!("{secs}s")
    }
}

/// `value / per` with the fraction printed without trailing zeros, as Go does.
fn fixed(value: u128, per: u128) -> String {
    let int = value / per;
    let frac = value % per;
    if frac == 0 {
        return int.to_string();
    }
    let width = per.ilog10() as usize;
    let digits = format!("{frac:0width$}");
    format!("{int}.{}", digits.trim_end_matches('0'))
}

/// A duration that (de)serialises as a Go duration string, e.g. a validation frequency.
///
/// Exists so specs can carry durations in the same textual form as Velero's CRDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GoDuration(pub Duration);

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_go_duration(self.0))
    }
}

impl std::str::FromStr for GoDuration {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_duration(s).map(GoDuration)
    }
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Why a TTL was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TtlError {
    /// The text is not a valid positive duration. The message already includes the cause, so
    /// it is deliberately not also exposed as `source()` (error chains would print it twice).
    #[error("invalid TTL: {0}")]
    Duration(DurationError),
    /// Zero would expire a backup the moment it completes, which is never what anyone means.
    #[error(
        "TTL {input:?} is zero, which would delete backups as soon as they complete: give a positive value such as \"720h\" (the default)"
    )]
    Zero {
        /// The rejected text.
        input: String,
    },
}

impl From<DurationError> for TtlError {
    fn from(err: DurationError) -> Self {
        TtlError::Duration(err)
    }
}

/// How long a backup is kept before garbage collection (Velero's `spec.ttl`).
///
/// A newtype so a zero or negative TTL cannot exist: both would silently destroy data.
/// The default, 720h (30 days), is Velero's and KKP's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ttl(Duration);

impl Ttl {
    /// Velero's and KKP's default TTL: 30 days.
    pub const DEFAULT: Ttl = Ttl(Duration::from_secs(720 * 3_600));

    /// Wraps a duration, rejecting zero.
    pub fn new(d: Duration) -> Result<Ttl, TtlError> {
        if d.is_zero() {
            return Err(TtlError::Zero {
                input: format_go_duration(d),
            });
        }
        Ok(Ttl(d))
    }

    /// Parses a TTL in any syntax [`parse_duration`] accepts.
    pub fn parse(s: &str) -> Result<Ttl, TtlError> {
        let d = parse_duration(s)?;
        if d.is_zero() {
            return Err(TtlError::Zero {
                input: s.to_string(),
            });
        }
        Ok(Ttl(d))
    }

    /// The wrapped duration.
    pub fn as_duration(&self) -> Duration {
        self.0
    }
}

impl Default for Ttl {
    fn default() -> Self {
        Ttl::DEFAULT
    }
}

impl fmt::Display for Ttl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_go_duration(self.0))
    }
}

impl std::str::FromStr for Ttl {
    type Err = TtlError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ttl::parse(s)
    }
}

impl Serialize for Ttl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Ttl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ttl::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn go_forms() {
        assert_eq!(parse_duration("720h0m0s").unwrap(), secs(720 * 3600));
        assert_eq!(parse_duration("90m").unwrap(), secs(5400));
        assert_eq!(parse_duration("1h30m").unwrap(), secs(5400));
        assert_eq!(parse_duration("1.5h").unwrap(), secs(5400));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5us").unwrap(), Duration::from_nanos(1500));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration(" 10s ").unwrap(), secs(10));
        assert_eq!(parse_duration("+10s").unwrap(), secs(10));
    }

    #[test]
    fn humantime_forms() {
        assert_eq!(parse_duration("30d").unwrap(), secs(30 * 86400));
        assert_eq!(parse_duration("2 days").unwrap(), secs(2 * 86400));
        assert_eq!(parse_duration("1w").unwrap(), secs(7 * 86400));
    }

    #[test]
    fn negative_is_typed_and_named() {
        let err = parse_duration("-1h").unwrap_err();
        assert!(matches!(&err, DurationError::Negative { input } if input == "-1h"));
        assert!(err.to_string().contains("-1h"));
    }

    #[test]
    fn empty_and_garbage() {
        assert_eq!(parse_duration("  ").unwrap_err(), DurationError::Empty);
        for bad in ["abc", "10", "1hx", "h", "1.h.", "5 parsecs"] {
            let err = parse_duration(bad).unwrap_err();
            assert!(
                matches!(&err, DurationError::Invalid { input, .. } if input == bad),
                "{bad}: {err:?}"
            );
            assert!(err.to_string().contains(bad));
        }
    }

    #[test]
    fn overflow_is_an_error_not_a_panic() {
        let err = parse_duration("99999999999999999999999999999999999999999h").unwrap_err();
        assert!(matches!(err, DurationError::Overflow { .. }));
    }

    #[test]
    fn format_matches_go() {
        assert_eq!(format_go_duration(secs(720 * 3600)), "720h0m0s");
        assert_eq!(format_go_duration(secs(90)), "1m30s");
        assert_eq!(format_go_duration(secs(5)), "5s");
        assert_eq!(format_go_duration(Duration::ZERO), "0s");
        assert_eq!(format_go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(format_go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_go_duration(Duration::from_nanos(1500)), "1.5µs");
        assert_eq!(format_go_duration(Duration::from_nanos(7)), "7ns");
        assert_eq!(format_go_duration(secs(3601)), "1h0m1s");
    }

    #[test]
    fn format_parse_round_trip() {
        for d in [
            secs(1),
            secs(86_400 * 400),
            Duration::from_millis(1234),
            Duration::from_nanos(1),
        ] {
            assert_eq!(parse_duration(&format_go_duration(d)).unwrap(), d);
        }
    }

    #[test]
    fn ttl_default_and_rules() {
        assert_eq!(Ttl::default().to_string(), "720h0m0s");
        assert_eq!(Ttl::parse("24h").unwrap().as_duration(), secs(86400));
        let neg = Ttl::parse("-1h").unwrap_err();
        assert!(
            matches!(&neg, TtlError::Duration(DurationError::Negative { input }) if input == "-1h")
        );
        assert!(neg.to_string().contains("-1h"), "{neg}");
        let zero = Ttl::parse("0s").unwrap_err();
        assert!(matches!(&zero, TtlError::Zero { input } if input == "0s"));
        assert!(zero.to_string().contains("0s"));
        assert!(Ttl::new(Duration::ZERO).is_err());
    }

    #[test]
    fn ttl_serde() {
        let t: Ttl = serde_json::from_str("\"30d\"").unwrap();
        assert_eq!(serde_json::to_string(&t).unwrap(), "\"720h0m0s\"");
        assert!(serde_json::from_str::<Ttl>("\"-1h\"").is_err());
        let g: GoDuration = serde_json::from_str("\"1m\"").unwrap();
        assert_eq!(g.0, secs(60));
    }
}
