//! The five fields of a standard cron expression, parsed the way Kubernetes CronJob and Velero
//! (both via `robfig/cron` v3's standard parser) read them.
//!
//! We parse the fields ourselves, before handing the expression to croner, for two reasons:
//! errors can then name the field and the value the user got wrong, and croner accepts
//! extensions (`L`, `W`, `#`, seconds, years) that Kubernetes does not, which must be rejected
//! rather than silently scheduled differently on each side.

use jiff::civil::{DateTime, Weekday};

/// One cron field's identity and bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FieldSpec {
    pub name: &'static str,
    pub min: u32,
    pub max: u32,
    names: &'static [&'static str],
    /// Value that names\[0\] stands for.
    names_start: u32,
}

pub(crate) const MINUTE: FieldSpec = FieldSpec {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
    names_start: 0,
};
pub(crate) const HOUR: FieldSpec = FieldSpec {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
    names_start: 0,
};
pub(crate) const DAY_OF_MONTH: FieldSpec = FieldSpec {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
    names_start: 0,
};
pub(crate) const MONTH: FieldSpec = FieldSpec {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
    names_start: 1,
};
/// 0–7 where both 0 and 7 are Sunday, as in Vixie cron.
pub(crate) const DAY_OF_WEEK: FieldSpec = FieldSpec {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
    names_start: 0,
};

/// A problem with one field; the caller adds the whole expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FieldProblem {
    OutOfRange { value: u32 },
    Invalid { reason: String },
}

/// A parsed field: the set of allowed values as bits, and whether it was written as `*`/`?`
/// (robfig's "star bit", which switches day matching between AND and OR).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Field {
    pub bits: u64,
    pub star: bool,
}

impl Field {
    pub fn has(&self, v: u32) -> bool {
        v < 64 && self.bits & (1u64 << v) != 0
    }

    /// The values as a comma list, for building croner's pattern.
    pub fn list(&self) -> String {
        (0..64)
            .filter(|v| self.has(*v))
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn value(spec: &FieldSpec, text: &str) -> Result<u32, FieldProblem> {
    let lower = text.to_ascii_lowercase();
    if let Some(i) = spec.names.iter().position(|n| *n == lower) {
        return Ok(spec.names_start + i as u32);
    }
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        let names = if spec.names.is_empty() {
            String::new()
        } else {
            format!(" or a name ({})", spec.names.join(", "))
        };
        return Err(FieldProblem::Invalid {
            reason: format!(
                "{text:?} is not a number in {}-{}{names}",
                spec.min, spec.max
            ),
        });
    }
    let v: u32 = text
        .parse()
        .map_err(|_| FieldProblem::OutOfRange { value: u32::MAX })?;
    if v < spec.min || v > spec.max {
        return Err(FieldProblem::OutOfRange { value: v });
    }
    Ok(v)
}

/// Parses one field: comma-separated parts of `*`, `?`, `N`, `N-M`, each optionally `/step`
/// (`N/step` means `N-max/step`, as in robfig/cron).
pub(crate) fn parse_field(spec: &FieldSpec, text: &str) -> Result<Field, FieldProblem> {
    let mut bits = 0u64;
    let mut star = false;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s.parse().map_err(|_| FieldProblem::Invalid {
                    reason: format!("step {s:?} in {part:?} is not a positive number"),
                })?;
                if step == 0 {
                    return Err(FieldProblem::Invalid {
                        reason: format!("step 0 in {part:?} is not allowed"),
                    });
                }
                (r, Some(step))
            }
            None => (part, None),
        };
        let (lo, hi, is_star) = if range == "*" || range == "?" {
            (spec.min, spec.max, true)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (value(spec, a)?, value(spec, b)?);
            if a > b {
                return Err(FieldProblem::Invalid {
                    reason: format!("range {range:?} starts after it ends"),
                });
            }
            (a, b, false)
        } else {
            let v = value(spec, range)?;
            (v, if step.is_some() { spec.max } else { v }, false)
        };
        let step = step.unwrap_or(1);
        if is_star && step == 1 {
            star = true;
        }
        let mut v = lo;
        while v <= hi {
            bits |= 1u64 << v;
            v += step;
        }
    }
    if spec.name == DAY_OF_WEEK.name && bits & (1 << 7) != 0 {
        bits = (bits & !(1 << 7)) | 1;
    }
    Ok(Field { bits, star })
}

/// All five fields of a cron expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CronFields {
    pub minute: Field,
    pub hour: Field,
    pub dom: Field,
    pub month: Field,
    pub dow: Field,
}

fn days_in_month(month: u32, leap: bool) -> u32 {
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl CronFields {
    /// Whether the day-of-month/day-of-week pair matches, with Vixie cron's rule: when both
    /// are restricted a day matches if EITHER does; if either is `*`, both must.
    pub fn day_matches(&self, day: u32, weekday: u32) -> bool {
        let d = self.dom.has(day);
        let w = self.dow.has(weekday);
        if self.dom.star || self.dow.star {
            d && w
        } else {
            d || w
        }
    }

    /// Whether a wall-clock time (seconds ignored) matches every field.
    pub fn matches(&self, dt: DateTime) -> bool {
        let weekday = match dt.weekday() {
            Weekday::Sunday => 0,
            other => other.to_monday_one_offset() as u32,
        };
        self.minute.has(dt.minute() as u32)
            && self.hour.has(dt.hour() as u32)
            && self.month.has(dt.month() as u32)
            && self.day_matches(dt.day() as u32, weekday)
    }

    /// False when the day fields can never match: e.g. `0 0 30 2 *` (February 30th) or
    /// `0 0 31 4,6 *`. Only possible when the weekday field doesn't rescue it.
    pub fn can_fire(&self) -> bool {
        if !(self.dow.star) && !self.dom.star {
            return true; // OR semantics: any listed weekday occurs in every month
        }
        if self.dom.star && self.dow.bits != 0 {
            return true;
        }
        (1..=12).any(|m| self.month.has(m) && (1..=days_in_month(m, true)).any(|d| self.dom.has(d)))
    }

    /// The pattern croner should run: explicit value lists, but `*` kept for the day fields
    /// whose star-ness decides AND vs OR matching.
    pub fn croner_pattern(&self) -> String {
        let day = |f: &Field| if f.star { "*".to_string() } else { f.list() };
        format!(
            "{} {} {} {} {}",
            self.minute.list(),
            self.hour.list(),
            day(&self.dom),
            self.month.list(),
            day(&self.dow)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(spec: &FieldSpec, s: &str) -> Vec<u32> {
        let f = parse_field(spec, s).unwrap();
        (0..64).filter(|v| f.has(*v)).collect()
    }

    #[test]
    fn forms() {
        assert_eq!(bits(&MINUTE, "*/15"), vec![0, 15, 30, 45]);
        assert_eq!(bits(&MINUTE, "5/20"), vec![5, 25, 45]);
        assert_eq!(bits(&HOUR, "1-5/2,23"), vec![1, 3, 5, 23]);
        assert_eq!(bits(&MONTH, "jan,MAR-may"), vec![1, 3, 4, 5]);
        assert_eq!(bits(&DAY_OF_WEEK, "MON-FRI"), vec![1, 2, 3, 4, 5]);
        assert_eq!(bits(&DAY_OF_WEEK, "7"), vec![0]);
        assert_eq!(bits(&DAY_OF_WEEK, "5-7"), vec![0, 5, 6]);
    }

    #[test]
    fn star_bit_like_robfig() {
        assert!(parse_field(&DAY_OF_MONTH, "*").unwrap().star);
        assert!(parse_field(&DAY_OF_MONTH, "?").unwrap().star);
        assert!(parse_field(&DAY_OF_MONTH, "*/1").unwrap().star);
        assert!(!parse_field(&DAY_OF_MONTH, "*/2").unwrap().star);
        assert!(!parse_field(&DAY_OF_MONTH, "1-31").unwrap().star);
    }

    #[test]
    fn problems() {
        assert_eq!(
            parse_field(&MINUTE, "61"),
            Err(FieldProblem::OutOfRange { value: 61 })
        );
        assert_eq!(
            parse_field(&DAY_OF_WEEK, "8"),
            Err(FieldProblem::OutOfRange { value: 8 })
        );
        for bad in [
            "", "a", "5-", "5-2", "*/0", "*/x", "L", "15W", "1#2", "/5", "1,,2",
        ] {
            assert!(parse_field(&DAY_OF_MONTH, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn never_fires() {
        let f = |dom: &str, month: &str, dow: &str| CronFields {
            minute: parse_field(&MINUTE, "0").unwrap(),
            hour: parse_field(&HOUR, "0").unwrap(),
            dom: parse_field(&DAY_OF_MONTH, dom).unwrap(),
            month: parse_field(&MONTH, month).unwrap(),
            dow: parse_field(&DAY_OF_WEEK, dow).unwrap(),
        };
        assert!(!f("30", "2", "*").can_fire());
        assert!(!f("31", "4,6,9,11", "*").can_fire());
        assert!(f("29", "2", "*").can_fire());
        assert!(f("30", "2", "1").can_fire());
    }
}
