use super::*;
use jiff::civil::Weekday;
use proptest::prelude::*;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn utc() -> TimeZone {
    TimeZone::UTC
}

fn weekday(t: Timestamp, tz: &TimeZone) -> Weekday {
    t.to_zoned(tz.clone()).weekday()
}

#[test]
fn sunday_zero_fires_on_sunday() {
    let s = Schedule::parse("0 0 * * 0").unwrap();
    // 2024-05-01 is a Wednesday.
    let next = s.next_after(ts("2024-05-01T12:00:00Z"), &utc()).unwrap();
    assert_eq!(next, ts("2024-05-05T00:00:00Z"));
    for t in s.upcoming(next, &utc(), 10) {
        assert_eq!(weekday(t, &utc()), Weekday::Sunday);
    }
}

#[test]
fn seven_is_sunday() {
    let a = Schedule::parse("0 0 * * 7").unwrap();
    let b = Schedule::parse("0 0 * * SUN").unwrap();
    let start = ts("2024-05-01T12:00:00Z");
    let ua = a.upcoming(start, &utc(), 8);
    assert_eq!(ua, b.upcoming(start, &utc(), 8));
    assert!(ua.iter().all(|t| weekday(*t, &utc()) == Weekday::Sunday));
}

#[test]
fn weekly_is_sunday_midnight() {
    let s = Schedule::parse("@weekly").unwrap();
    let next = s.next_after(ts("2024-05-05T00:00:00Z"), &utc()).unwrap();
    assert_eq!(next, ts("2024-05-12T00:00:00Z"));
    assert_eq!(weekday(next, &utc()), Weekday::Sunday);
    assert_eq!(s.as_str(), "@weekly");
}

#[test]
fn weekdays_only() {
    let s = Schedule::parse("0 9 * * 1-5").unwrap();
    let all = s.upcoming(ts("2024-05-01T00:00:00Z"), &utc(), 25);
    assert_eq!(all.len(), 25);
    let mut seen = std::collections::BTreeSet::new();
    for t in &all {
        let z = t.to_zoned(utc());
        assert_eq!((z.hour(), z.minute()), (9, 0));
        let w = z.weekday();
        assert!(w != Weekday::Saturday && w != Weekday::Sunday, "{z}");
        seen.insert(w.to_monday_one_offset());
    }
    assert_eq!(seen.len(), 5);
}

#[test]
fn nicknames() {
    let start = ts("2024-05-15T10:30:00Z");
    let cases = [
        ("@yearly", "2025-01-01T00:00:00Z"),
        ("@annually", "2025-01-01T00:00:00Z"),
        ("@monthly", "2024-06-01T00:00:00Z"),
        ("@daily", "2024-05-16T00:00:00Z"),
        ("@midnight", "2024-05-16T00:00:00Z"),
        ("@hourly", "2024-05-15T11:00:00Z"),
        ("@HOURLY", "2024-05-15T11:00:00Z"),
    ];
    for (expr, want) in cases {
        let s = Schedule::parse(expr).unwrap();
        assert_eq!(s.next_after(start, &utc()), Some(ts(want)), "{expr}");
    }
}

#[test]
fn every_is_anchored_on_last_run() {
    let s = Schedule::parse("@every 1h30m").unwrap();
    assert_eq!(s.interval(), Some(Duration::from_secs(5400)));
    let last = ts("2024-05-15T10:07:13Z");
    assert_eq!(s.next_after(last, &utc()), Some(ts("2024-05-15T11:37:13Z")));
    let s = Schedule::parse("@every 20m").unwrap();
    let up = s.upcoming(last, &utc(), 3);
    assert_eq!(up[2], ts("2024-05-15T11:07:13Z"));
    assert!(!s.matches(last, &utc()));
}

#[test]
fn every_zero_rejected() {
    let e = Schedule::parse("@every 0s").unwrap_err();
    assert!(matches!(&e, ScheduleError::EveryNotPositive { expr } if expr == "@every 0s"));
    assert!(e.to_string().contains("@every 0s"), "{e}");
}

#[test]
fn every_negative_rejected() {
    let e = Schedule::parse("@every -5m").unwrap_err();
    assert!(matches!(&e, ScheduleError::EveryNotPositive { .. }));
    assert!(e.to_string().contains("-5m"), "{e}");
}

#[test]
fn every_garbage_and_subsecond() {
    let e = Schedule::parse("@every soon").unwrap_err();
    assert!(matches!(&e, ScheduleError::EveryInvalid { .. }));
    assert!(e.to_string().contains("soon"));
    assert!(matches!(
        Schedule::parse("@every 500ms"),
        Err(ScheduleError::EveryNotPositive { .. })
    ));
    assert!(matches!(
        Schedule::parse("@everyday"),
        Err(ScheduleError::UnknownNickname { .. })
    ));
}

#[test]
fn minute_61_names_field_and_value() {
    let e = Schedule::parse("61 * * * *").unwrap_err();
    assert!(matches!(
        &e,
        ScheduleError::OutOfRange {
            field: "minute",
            value: 61,
            min: 0,
            max: 59,
            ..
        }
    ));
    let msg = e.to_string();
    assert!(
        msg.contains("61") && msg.contains("minute") && msg.contains("0-59"),
        "{msg}"
    );
}

#[test]
fn other_bad_fields() {
    let cases = [
        ("* 24 * * *", "hour"),
        ("* * 0 * *", "day-of-month"),
        ("* * * 13 *", "month"),
        ("* * * * 8", "day-of-week"),
    ];
    for (expr, field) in cases {
        match Schedule::parse(expr) {
            Err(ScheduleError::OutOfRange { field: f, .. }) => assert_eq!(f, field, "{expr}"),
            other => panic!("{expr}: {other:?}"),
        }
    }
    for expr in [
        "0 0 L * *",
        "0 0 15W * *",
        "0 0 * * 1#2",
        "0 0 * * 5L",
        "x * * * *",
    ] {
        let e = Schedule::parse(expr).unwrap_err();
        assert!(
            matches!(e, ScheduleError::InvalidField { .. }),
            "{expr}: {e:?}"
        );
        assert!(e.to_string().contains(expr));
    }
}

#[test]
fn field_counts() {
    let e = Schedule::parse("0 0 0 * * *").unwrap_err();
    assert!(matches!(e, ScheduleError::FieldCount { count: 6, .. }));
    assert!(e.to_string().contains("0 0 0 * * *"));
    assert!(matches!(
        Schedule::parse("0 0 * *"),
        Err(ScheduleError::FieldCount { count: 4, .. })
    ));
    assert_eq!(Schedule::parse("   "), Err(ScheduleError::Empty));
    assert!(matches!(
        Schedule::parse("CRON_TZ=UTC 0 0 * * *"),
        Err(ScheduleError::TimeZonePrefix { .. })
    ));
    assert!(matches!(
        Schedule::parse("@fortnightly"),
        Err(ScheduleError::UnknownNickname { .. })
    ));
}

#[test]
fn impossible_dates_rejected() {
    let e = Schedule::parse("0 0 30 2 *").unwrap_err();
    assert!(matches!(e, ScheduleError::NeverFires { .. }));
    assert!(e.to_string().contains("0 0 30 2 *"));
}

#[test]
fn names_for_months_and_days() {
    let s = Schedule::parse("30 4 * jan,Feb mon").unwrap();
    let next = s.next_after(ts("2024-03-01T00:00:00Z"), &utc()).unwrap();
    assert_eq!(next, ts("2025-01-06T04:30:00Z"));
}

#[test]
fn dom_dow_or_when_both_restricted() {
    // Vixie cron: the 13th OR any Friday.
    let s = Schedule::parse("0 0 13 * 5").unwrap();
    let up = s.upcoming(ts("2024-09-01T00:00:00Z"), &utc(), 10);
    let days: Vec<(i8, Weekday)> = up
        .iter()
        .map(|t| {
            let z = t.to_zoned(utc());
            (z.day(), z.weekday())
        })
        .collect();
    assert!(days.iter().all(|(d, w)| *d == 13 || *w == Weekday::Friday));
    assert!(days.iter().any(|(d, w)| *d == 13 && *w != Weekday::Friday));
    assert!(days.iter().any(|(d, w)| *d != 13 && *w == Weekday::Friday));
}

#[test]
fn dom_only_when_dow_is_star() {
    let s = Schedule::parse("0 0 1 * *").unwrap();
    for t in s.upcoming(ts("2024-01-15T00:00:00Z"), &utc(), 12) {
        assert_eq!(t.to_zoned(utc()).day(), 1);
    }
    // `*/1` in robfig keeps the star bit, so this means Mondays only.
    let s = Schedule::parse("0 0 */1 * 1").unwrap();
    for t in s.upcoming(ts("2024-01-15T00:00:00Z"), &utc(), 8) {
        assert_eq!(weekday(t, &utc()), Weekday::Monday);
    }
}

#[test]
fn day_31_skips_short_months() {
    let s = Schedule::parse("0 0 31 * *").unwrap();
    let up = s.upcoming(ts("2024-01-01T00:00:00Z"), &utc(), 7);
    let months: Vec<i8> = up.iter().map(|t| t.to_zoned(utc()).month()).collect();
    assert_eq!(months, vec![1, 3, 5, 7, 8, 10, 12]);
    assert!(up.iter().all(|t| t.to_zoned(utc()).day() == 31));
}

#[test]
fn feb_29_finds_leap_years() {
    let s = Schedule::parse("0 0 29 2 *").unwrap();
    assert_eq!(
        s.next_after(ts("2025-01-01T00:00:00Z"), &utc()),
        Some(ts("2028-02-29T00:00:00Z"))
    );
    // 2100 is not a leap year.
    let next = s.next_after(ts("2096-03-01T00:00:00Z"), &utc());
    assert!(
        next.is_none_or(|t| t == ts("2104-02-29T00:00:00Z")),
        "{next:?}"
    );
}

#[test]
fn time_zone_is_respected() {
    let berlin = TimeZone::get("Europe/Berlin").unwrap();
    let s = Schedule::parse("0 2 * * *").unwrap();
    // Summer: Berlin is UTC+2.
    let next = s.next_after(ts("2024-07-01T12:00:00Z"), &berlin).unwrap();
    assert_eq!(next, ts("2024-07-02T00:00:00Z"));
}

#[test]
fn dst_spring_forward_and_fall_back() {
    let berlin = TimeZone::get("Europe/Berlin").unwrap();
    // 2024-03-31 02:00-03:00 does not exist in Berlin.
    let s = Schedule::parse("30 2 * * *").unwrap();
    let up = s.upcoming(ts("2024-03-30T12:00:00Z"), &berlin, 3);
    assert_eq!(up.len(), 3);
    assert!(up.windows(2).all(|w| w[0] < w[1]));
    // 2024-10-27 02:00-03:00 happens twice: a fixed-time job still runs once that day.
    let up = s.upcoming(ts("2024-10-26T12:00:00Z"), &berlin, 3);
    let days: Vec<i8> = up
        .iter()
        .map(|t| t.to_zoned(berlin.clone()).day())
        .collect();
    assert_eq!(days, vec![27, 28, 29]);
}

#[test]
fn serde_round_trip() {
    let s: Schedule = serde_json::from_str("\"@every 20m\"").unwrap();
    assert_eq!(serde_json::to_string(&s).unwrap(), "\"@every 20m\"");
    assert!(serde_json::from_str::<Schedule>("\"61 * * * *\"").is_err());
}

fn field_strategy(min: u32, max: u32) -> impl Strategy<Value = String> {
    prop_oneof![
        Just("*".to_string()),
        (min..=max).prop_map(|v| v.to_string()),
        (min..=max, min..=max).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
        (1u32..=(max - min).max(1)).prop_map(|s| format!("*/{s}")),
        proptest::collection::vec(min..=max, 1..4).prop_map(|v| v
            .iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(",")),
    ]
}

fn expr_strategy() -> impl Strategy<Value = String> {
    (
        field_strategy(0, 59),
        field_strategy(0, 23),
        field_strategy(1, 28),
        field_strategy(1, 12),
        field_strategy(0, 7),
    )
        .prop_map(|(a, b, c, d, e)| format!("{a} {b} {c} {d} {e}"))
}

fn tz_strategy() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("UTC"),
        Just("Europe/Berlin"),
        Just("America/New_York"),
        Just("Australia/Lord_Howe"),
        Just("Asia/Kolkata"),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn utc_results_match_fields_and_increase(expr in expr_strategy(), secs in 946_684_800i64..4_102_444_800) {
        let s = Schedule::parse(&expr).unwrap();
        let start = Timestamp::from_second(secs).unwrap();
        let up = s.upcoming(start, &utc(), 5);
        prop_assert_eq!(up.len(), 5);
        let mut prev = start;
        for t in up {
            prop_assert!(t > prev);
            prop_assert!(s.matches(t, &utc()), "{} at {}", expr, t);
            prop_assert_eq!(t.as_second() % 60, 0);
            prev = t;
        }
    }

    #[test]
    fn zoned_results_never_go_backwards(expr in expr_strategy(), tz in tz_strategy(), secs in 946_684_800i64..4_102_444_800) {
        let tz = TimeZone::get(tz).unwrap();
        let s = Schedule::parse(&expr).unwrap();
        let start = Timestamp::from_second(secs).unwrap();
        let up = s.upcoming(start, &tz, 4);
        prop_assert!(!up.is_empty());
        let mut prev = start;
        for t in up {
            prop_assert!(t > prev);
            prev = t;
        }
    }

    #[test]
    fn dst_days_never_panic_or_repeat(minute in 0u32..60, hour in 0u32..24, tz in tz_strategy(), day in 0i64..6) {
        // Start around the 2024 transitions of the zones under test.
        let starts = ["2024-03-09T00:00:00Z", "2024-03-30T00:00:00Z", "2024-10-26T00:00:00Z", "2024-11-02T00:00:00Z", "2024-04-06T00:00:00Z", "2024-10-05T00:00:00Z"];
        let tz = TimeZone::get(tz).unwrap();
        let s = Schedule::parse(&format!("{minute} {hour} * * *")).unwrap();
        let start = ts(starts[day as usize]);
        let up = s.upcoming(start, &tz, 4);
        prop_assert_eq!(up.len(), 4);
        prop_assert!(up.windows(2).all(|w| w[0] < w[1]));
        // A daily job fires at most once per local day.
        let days: std::collections::BTreeSet<_> = up.iter().map(|t| t.to_zoned(tz.clone()).date()).collect();
        prop_assert_eq!(days.len(), 4);
    }

    #[test]
    fn every_is_exact(mins in 1u64..100_000, secs in 0i64..4_000_000_000) {
        let s = Schedule::parse(&format!("@every {mins}m")).unwrap();
        let start = Timestamp::from_second(secs).unwrap();
        let next = s.next_after(start, &utc()).unwrap();
        prop_assert_eq!(next.as_second() - secs, mins as i64 * 60);
    }

    #[test]
    fn parse_never_panics(s in ".{0,40}") {
        let _ = Schedule::parse(&s);
    }
}
