//! Which backups to delete: TTL expiry, keep-the-newest-N, and grandfather-father-son buckets.
//!
//! The planner is pure (no clock, no storage) so the storage crate, the controller and the CLI
//! all delete exactly the same backups for the same inputs, and so it can be property-tested.
//!
//! Rules, in order:
//! 1. The newest successful backup is never deleted, whatever else says so: losing the last
//!    good restore point to a TTL or a miscounted policy is the worst outcome a backup system has.
//! 2. TTL (`ttl_expiry`): a backup whose `expires_at <= now` is deleted, unless it was created
//!    after `now`. Such a "future" backup means the clock went backwards (or skewed between
//!    controllers); we never delete it on TTL grounds because the arithmetic is meaningless.
//!    TTL wins over the count rules: it is an explicit per-backup promise to the user.
//! 3. Count rules (`keep_last`, `gfs`) consider only successful backups that survive rule 2.
//!    A successful backup is kept if *any* count rule keeps it (keep-N newest, or newest of
//!    one of the N most recent hourly/daily/weekly/monthly UTC buckets). When at least one
//!    count rule is set, every other successful backup is deleted.
//! 4. Failed backups count toward nothing. Under a count rule a failed backup is deleted when it
//!    is older than the oldest successful backup that survives, or when at least `cap` newer
//!    failed backups exist (`cap` = keep-N, or [`KeepCount::DEFAULT`] if only GFS is set). So
//!    recent failures stay around for debugging, but a schedule that always fails cannot fill
//!    the bucket.
//!
//! "Newer" means greater `(created, name)`, which makes duplicate creation times deterministic.
//! Applying a plan and planning again with the same `now` deletes nothing more.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

/// Why a retention setting was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetentionError {
    /// `keep` outside `1..=50`.
    #[error(
        "keep count {value} is out of range: keep at least {min} and at most {max} backups (default {default})"
    )]
    KeepOutOfRange {
        /// The rejected value, as written (a spec may hold a negative number).
        value: i64,
        /// Lowest accepted value.
        min: u32,
        /// Highest accepted value.
        max: u32,
        /// The default, for the message.
        default: u32,
    },
}

/// One backup as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionCandidate {
    /// Backup name (unique per location).
    pub name: String,
    /// When it was created.
    pub created: Timestamp,
    /// Whether it completed successfully (a restore point).
    pub succeeded: bool,
    /// When its TTL runs out, if it has one.
    pub expires_at: Option<Timestamp>,
}

/// How many backups to keep: 1..=50, default 20, exactly as KKP's `EtcdBackupConfig.keep`.
///
/// A newtype so 0 ("keep nothing", which would delete every backup) cannot reach the planner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct KeepCount(u32);

impl KeepCount {
    /// Smallest accepted value.
    pub const MIN: u32 = 1;
    /// Largest accepted value (KKP's limit).
    pub const MAX: u32 = 50;
    /// KKP's default.
    pub const DEFAULT: KeepCount = KeepCount(20);

    /// Validates `n` against `1..=50`.
    pub fn new(n: u32) -> Result<KeepCount, RetentionError> {
        Self::from_spec(i64::from(n))
    }

    /// A count as a spec writes it (any integer): out of range, the error names the value
    /// given, negative or huge, rather than what it would wrap or clamp to.
    pub fn from_spec(n: i64) -> Result<KeepCount, RetentionError> {
        match u32::try_from(n) {
            Ok(n) if (Self::MIN..=Self::MAX).contains(&n) => Ok(KeepCount(n)),
            _ => Err(RetentionError::KeepOutOfRange {
                value: n,
                min: Self::MIN,
                max: Self::MAX,
                default: Self::DEFAULT.0,
            }),
        }
    }

    /// The count.
    pub fn get(&self) -> u32 {
        self.0
    }
}

impl Default for KeepCount {
    fn default() -> Self {
        KeepCount::DEFAULT
    }
}

impl<'de> Deserialize<'de> for KeepCount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u64::deserialize(d)?;
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        KeepCount::new(n).map_err(serde::de::Error::custom)
    }
}

/// Grandfather-father-son retention: keep the newest successful backup of each of the most
/// recent `hourly` hours, `daily` days, `weekly` ISO weeks and `monthly` months (UTC buckets,
/// so the result does not depend on the controller's time zone). 0 disables a tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct GfsPolicy {
    /// Hourly buckets to keep.
    #[serde(default)]
    pub hourly: u32,
    /// Daily buckets to keep.
    #[serde(default)]
    pub daily: u32,
    /// Weekly (ISO week) buckets to keep.
    #[serde(default)]
    pub weekly: u32,
    /// Monthly buckets to keep.
    #[serde(default)]
    pub monthly: u32,
}

/// What to delete. The default deletes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetentionPolicy {
    /// Delete backups whose `expires_at` has passed.
    #[serde(default)]
    pub ttl_expiry: bool,
    /// Keep only the newest N successful backups.
    #[serde(default)]
    pub keep_last: Option<KeepCount>,
    /// Keep GFS buckets.
    #[serde(default)]
    pub gfs: Option<GfsPolicy>,
}

fn order(a: &RetentionCandidate, b: &RetentionCandidate) -> Ordering {
    a.created.cmp(&b.created).then_with(|| a.name.cmp(&b.name))
}

/// A GFS bucket key: tier and a number identifying the hour/day/week/month in UTC.
fn bucket(t: Timestamp, tier: u8) -> (u8, i64) {
    let dt = t.to_zoned(TimeZone::UTC).datetime();
    let days = i64::from(dt.date().year()) * 400 + i64::from(dt.date().day_of_year());
    let key = match tier {
        0 => t.as_second().div_euclid(3600),
        1 => days,
        2 => {
            let w = dt.date().iso_week_date();
            i64::from(w.year()) * 100 + i64::from(w.week())
        }
        _ => i64::from(dt.year()) * 100 + i64::from(dt.month()),
    };
    (tier, key)
}

/// Plans deletions; see the module docs for the rules. Returns names sorted by
/// `(created, name)`, each once.
pub fn plan_deletions(
    candidates: &[RetentionCandidate],
    policy: &RetentionPolicy,
    now: Timestamp,
) -> Vec<String> {
    let mut sorted: Vec<&RetentionCandidate> = candidates.iter().collect();
    sorted.sort_by(|a, b| order(a, b));
    // Newest first from here on.
    sorted.reverse();

    let protected: Option<&str> = sorted.iter().find(|c| c.succeeded).map(|c| c.name.as_str());

    let expired = |c: &RetentionCandidate| {
        policy.ttl_expiry && c.created <= now && c.expires_at.is_some_and(|e| e <= now)
    };

    let mut delete: BTreeSet<usize> = BTreeSet::new();
    for (i, c) in sorted.iter().enumerate() {
        if expired(c) {
            delete.insert(i);
        }
    }

    let count_rules = policy.keep_last.is_some() || policy.gfs.is_some();
    if count_rules {
        let eligible: Vec<usize> = (0..sorted.len())
            .filter(|i| sorted[*i].succeeded && !delete.contains(i))
            .collect();
        let mut kept: BTreeSet<usize> = BTreeSet::new();
        if let Some(k) = policy.keep_last {
            kept.extend(eligible.iter().take(k.get() as usize));
        }
        if let Some(g) = policy.gfs {
            for (tier, limit) in [(0u8, g.hourly), (1, g.daily), (2, g.weekly), (3, g.monthly)] {
                let mut seen: BTreeMap<(u8, i64), ()> = BTreeMap::new();
                for &i in &eligible {
                    if seen.len() >= limit as usize {
                        break;
                    }
                    let key = bucket(sorted[i].created, tier);
                    if seen.insert(key, ()).is_none() {
                        kept.insert(i);
                    }
                }
            }
        }
        for &i in &eligible {
            if !kept.contains(&i) {
                delete.insert(i);
            }
        }
        // The oldest surviving successful backup anchors failed-backup cleanup.
        let anchor = eligible
            .iter()
            .filter(|i| kept.contains(i))
            .map(|&i| sorted[i])
            .chain(
                sorted
                    .iter()
                    .copied()
                    .filter(|c| Some(c.name.as_str()) == protected),
            )
            .min_by(|a, b| order(a, b));
        let cap = policy.keep_last.unwrap_or_default().get() as usize;
        let mut newer_failed = 0usize;
        for (i, c) in sorted.iter().enumerate() {
            if c.succeeded || delete.contains(&i) {
                if !c.succeeded {
                    newer_failed += 1;
                }
                continue;
            }
            let older_than_anchor = anchor.is_some_and(|a| order(c, a) == Ordering::Less);
            if older_than_anchor || newer_failed >= cap {
                delete.insert(i);
            }
            newer_failed += 1;
        }
    }

    let mut out: Vec<&RetentionCandidate> = delete
        .into_iter()
        .map(|i| sorted[i])
        .filter(|c| Some(c.name.as_str()) != protected)
        .collect();
    out.sort_by(|a, b| order(a, b));
    let mut seen = BTreeSet::new();
    out.into_iter()
        .filter(|c| seen.insert(c.name.as_str()))
        .map(|c| c.name.clone())
        .collect()
}

#[cfg(test)]
#[path = "retention_tests.rs"]
mod tests;
