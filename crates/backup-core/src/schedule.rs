//! Backup schedules: 5-field cron, `@daily`-style nicknames and `@every <duration>`.
//!
//! This is the syntax Kubernetes CronJob, Velero schedules, KKP `EtcdBackupConfig` and k0rdent
//! `ManagementBackup` all accept, so a schedule means the same thing here as in those systems.
//! Field parsing and validation happen in [`crate::cron_field`]; croner (configured for
//! 5-field Vixie semantics) does the calendar search, including time-zone and DST handling.

use std::fmt;
use std::time::Duration;

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::cron_field::{
    CronFields, DAY_OF_MONTH, DAY_OF_WEEK, FieldProblem, FieldSpec, HOUR, MINUTE, MONTH,
    parse_field,
};
use crate::duration::{DurationError, parse_duration};

/// Why a schedule expression was rejected. Each variant names the expression and, where
/// relevant, the field and value, and says what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// Nothing was given.
    #[error(
        "empty schedule: give a 5-field cron expression (\"0 2 * * *\"), a nickname (\"@daily\") or \"@every 1h\""
    )]
    Empty,
    /// Not exactly five fields.
    #[error(
        "schedule {expr:?} has {count} fields, expected 5 (minute hour day-of-month month day-of-week); seconds and years are not supported, as in Kubernetes CronJob"
    )]
    FieldCount {
        /// The expression.
        expr: String,
        /// How many fields it had.
        count: usize,
    },
    /// A number outside the field's range.
    #[error("schedule {expr:?}: {field} value {value} is out of range, accepted {min}-{max}")]
    OutOfRange {
        /// The expression.
        expr: String,
        /// Which field (`minute`, `hour`, `day-of-month`, `month`, `day-of-week`).
        field: &'static str,
        /// The rejected number.
        value: u32,
        /// Lowest accepted value.
        min: u32,
        /// Highest accepted value.
        max: u32,
    },
    /// A field that is not valid cron syntax.
    #[error("schedule {expr:?}: invalid {field} field {text:?}: {reason}")]
    InvalidField {
        /// The expression.
        expr: String,
        /// Which field.
        field: &'static str,
        /// The field's text.
        text: String,
        /// What is wrong.
        reason: String,
    },
    /// Valid fields that never name a real date (e.g. February 30th).
    #[error("schedule {expr:?} never fires: no month in it has the requested day of month")]
    NeverFires {
        /// The expression.
        expr: String,
    },
    /// An `@name` we do not know.
    #[error(
        "schedule {expr:?}: unknown nickname, accepted are @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly and @every <duration>"
    )]
    UnknownNickname {
        /// The expression.
        expr: String,
    },
    /// `@every` with an unparseable duration.
    #[error("schedule {expr:?}: invalid @every interval: {source}")]
    EveryInvalid {
        /// The expression.
        expr: String,
        /// Why the duration was rejected.
        source: DurationError,
    },
    /// `@every` with a zero, negative or sub-second interval.
    #[error(
        "schedule {expr:?}: the @every interval must be at least 1s (e.g. \"@every 20m\"); zero and negative intervals are not allowed"
    )]
    EveryNotPositive {
        /// The expression.
        expr: String,
    },
    /// `TZ=`/`CRON_TZ=` prefixes, which Kubernetes rejects in favour of a time-zone field.
    #[error(
        "schedule {expr:?}: time-zone prefixes (TZ=, CRON_TZ=) are not supported; set the schedule's time zone separately"
    )]
    TimeZonePrefix {
        /// The expression.
        expr: String,
    },
}

#[derive(Debug, Clone)]
enum Kind {
    Cron { fields: CronFields, cron: Box<Cron> },
    Every(Duration),
}

/// A parsed, validated schedule. Construct with [`Schedule::parse`].
#[derive(Debug, Clone)]
pub struct Schedule {
    expr: String,
    kind: Kind,
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.expr == other.expr
    }
}
impl Eq for Schedule {}

const NICKNAMES: &[(&str, &str)] = &[
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

impl Schedule {
    /// Parses a schedule expression. Surrounding whitespace is ignored; the original text is
    /// kept for display.
    pub fn parse(expr: &str) -> Result<Schedule, ScheduleError> {
        let trimmed = expr.trim();
        if trimmed.is_empty() {
            return Err(ScheduleError::Empty);
        }
        let owned = || trimmed.to_string();
        let upper = trimmed.to_ascii_uppercase();
        if upper.starts_with("TZ=") || upper.starts_with("CRON_TZ=") {
            return Err(ScheduleError::TimeZonePrefix { expr: owned() });
        }
        if trimmed.starts_with('@') {
            let lower = trimmed.to_ascii_lowercase();
            if let Some(rest) = lower.strip_prefix("@every") {
                if !rest.starts_with(char::is_whitespace) {
                    return Err(ScheduleError::UnknownNickname { expr: owned() });
                }
                let d = match parse_duration(rest) {
                    Ok(d) => d,
                    Err(DurationError::Negative { .. }) => {
                        return Err(ScheduleError::EveryNotPositive { expr: owned() });
                    }
                    Err(source) => {
                        return Err(ScheduleError::EveryInvalid {
                            expr: owned(),
                            source,
                        });
                    }
                };
                if d < Duration::from_secs(1) {
                    return Err(ScheduleError::EveryNotPositive { expr: owned() });
                }
                return Ok(Schedule {
                    expr: owned(),
                    kind: Kind::Every(d),
                });
            }
            let Some((_, cron)) = NICKNAMES.iter().find(|(n, _)| *n == lower) else {
                return Err(ScheduleError::UnknownNickname { expr: owned() });
            };
            let mut s = Self::parse_cron(cron, trimmed)?;
            s.expr = owned();
            return Ok(s);
        }
        Self::parse_cron(trimmed, trimmed)
    }

    fn parse_cron(cron_text: &str, expr: &str) -> Result<Schedule, ScheduleError> {
        let parts: Vec<&str> = cron_text.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(ScheduleError::FieldCount {
                expr: expr.to_string(),
                count: parts.len(),
            });
        }
        let field = |spec: &FieldSpec, text: &str| {
            parse_field(spec, text).map_err(|p| match p {
                FieldProblem::OutOfRange { value } => ScheduleError::OutOfRange {
                    expr: expr.to_string(),
                    field: spec.name,
                    value,
                    min: spec.min,
                    max: spec.max,
                },
                FieldProblem::Invalid { reason } => ScheduleError::InvalidField {
                    expr: expr.to_string(),
                    field: spec.name,
                    text: text.to_string(),
                    reason,
                },
            })
        };
        let fields = CronFields {
            minute: field(&MINUTE, parts[0])?,
            hour: field(&HOUR, parts[1])?,
            dom: field(&DAY_OF_MONTH, parts[2])?,
            month: field(&MONTH, parts[3])?,
            dow: field(&DAY_OF_WEEK, parts[4])?,
        };
        if !fields.can_fire() {
            return Err(ScheduleError::NeverFires {
                expr: expr.to_string(),
            });
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .dom_and_dow(false)
            .alternative_weekdays(false)
            .build()
            .parse(&fields.croner_pattern())
            .map_err(|e| ScheduleError::InvalidField {
                expr: expr.to_string(),
                field: "expression",
                text: expr.to_string(),
                reason: e.to_string(),
            })?;
        Ok(Schedule {
            expr: expr.to_string(),
            kind: Kind::Cron {
                fields,
                cron: Box::new(cron),
            },
        })
    }

    /// The expression as written (trimmed).
    pub fn as_str(&self) -> &str {
        &self.expr
    }

    /// The interval of an `@every` schedule, `None` for calendar schedules.
    pub fn interval(&self) -> Option<Duration> {
        match &self.kind {
            Kind::Every(d) => Some(*d),
            Kind::Cron { .. } => None,
        }
    }

    /// The first firing strictly after `after`, evaluating calendar fields in `tz`.
    ///
    /// For `@every d` this is `after + d`: pass the last run time so the cadence is anchored
    /// on actual runs (as robfig/cron does). Returns `None` only if the result is beyond what
    /// can be represented or no firing exists in croner's search window.
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        match &self.kind {
            Kind::Every(d) => {
                let d = SignedDuration::try_from(*d).ok()?;
                after.checked_add(d).ok()
            }
            Kind::Cron { cron, .. } => {
                let mut from = after.to_zoned(tz.clone());
                // croner steps from the start's wall-clock second; loop defensively so the
                // contract "strictly after" holds even if a DST fold returned an earlier time.
                for _ in 0..4 {
                    let next = cron.find_next_occurrence(&from, false).ok()?;
                    let ts = next.timestamp();
                    if ts > after {
                        return Some(ts);
                    }
                    from = next;
                }
                None
            }
        }
    }

    /// The next `n` firings after `after`, each strictly after the previous one.
    pub fn upcoming(&self, after: Timestamp, tz: &TimeZone, n: usize) -> Vec<Timestamp> {
        let mut out = Vec::with_capacity(n.min(1024));
        let mut cursor = after;
        while out.len() < n {
            match self.next_after(cursor, tz) {
                Some(t) => {
                    out.push(t);
                    cursor = t;
                }
                None => break,
            }
        }
        out
    }

    /// Whether a calendar schedule fires at the minute containing `at` in `tz`. Always false
    /// for `@every`, which has no calendar.
    pub fn matches(&self, at: Timestamp, tz: &TimeZone) -> bool {
        match &self.kind {
            Kind::Cron { fields, .. } => fields.matches(at.to_zoned(tz.clone()).datetime()),
            Kind::Every(_) => false,
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expr)
    }
}

impl std::str::FromStr for Schedule {
    type Err = ScheduleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Schedule::parse(s)
    }
}

impl Serialize for Schedule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.expr)
    }
}

impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Schedule::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod tests;
