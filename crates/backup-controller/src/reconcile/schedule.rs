//! When a scheduled kind (ClusterBackup, EtcdBackupConfig) runs next: the one rule every
//! schedule of the controller follows, pure.
//!
//! A schedule fires at its slots after its last firing (or its creation). After downtime the
//! most recent missed slot runs once, never once per missed slot (a CronJob with a deadline).
//! Without a schedule, the object runs once, at once.

use backup_core::Schedule;
use jiff::Timestamp;
use jiff::tz::TimeZone;

/// How many missed cron slots are walked to find the most recent one; beyond that the run is
/// stamped "now" (a schedule missed for longer than this many slots).
const MAX_SLOTS_WALKED: usize = 100_000;

/// When the schedule wants to run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Due {
    /// A slot at or before now has not run: run it (the most recent one).
    Now(Timestamp),
    /// The next slot.
    Later(Timestamp),
    /// Nothing (paused, or a one-time run that already ran).
    Never,
}

/// What [`due`] decides on.
#[derive(Debug, Clone, Copy)]
pub struct Timing<'a> {
    /// The schedule and its time zone; `None` for a one-time run.
    pub schedule: Option<&'a (Schedule, TimeZone)>,
    /// Whether scheduled runs are paused.
    pub paused: bool,
    /// The last firing.
    pub last_fired: Option<Timestamp>,
    /// When the object was created (the anchor before the first firing).
    pub created: Timestamp,
    /// Now.
    pub now: Timestamp,
}

/// Whether a run is due now, later, or never.
pub fn due(t: &Timing<'_>) -> Due {
    let Some((schedule, tz)) = t.schedule else {
        return match t.last_fired {
            None => Due::Now(t.now),
            Some(_) => Due::Never,
        };
    };
    if t.paused {
        return Due::Never;
    }
    let anchor = t.last_fired.unwrap_or(t.created);
    let Some(first) = schedule.next_after(anchor, tz) else {
        return Due::Never;
    };
    if first > t.now {
        return Due::Later(first);
    }
    // Missed slots: run the most recent one, once.
    if let Some(every) = schedule.interval() {
        let every = every.as_secs_f64().max(1e-9);
        let behind = (t.now.as_millisecond() - first.as_millisecond()) as f64 / 1000.0;
        let skipped = (behind / every).floor() as i64;
        let latest = first
            .checked_add(jiff::SignedDuration::from_secs_f64(skipped as f64 * every))
            .unwrap_or(t.now);
        return Due::Now(latest.min(t.now));
    }
    let mut latest = first;
    for _ in 0..MAX_SLOTS_WALKED {
        match schedule.next_after(latest, tz) {
            Some(next) if next <= t.now => latest = next,
            _ => return Due::Now(latest),
        }
    }
    Due::Now(t.now)
}

/// The slot after `at`, when there is a schedule.
pub fn next_after(schedule: Option<&(Schedule, TimeZone)>, at: Timestamp) -> Option<Timestamp> {
    schedule.and_then(|(schedule, tz)| schedule.next_after(at, tz))
}
