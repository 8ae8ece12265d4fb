//! The pure decision of the expiry collector: which backups of one scope (one project's
//! cluster in one location) have outlived their TTL and may go.
//!
//! Retention after a run only ever sees that schedule's runs, and only when it runs; this
//! decision sees everything stored in the scope, whoever wrote it, so a TTL holds for one-time
//! and paused ClusterBackups, for runs of deleted ones and for `backupctl`'s backups too.
//! It applies the TTL part of backup-core's retention rules and nothing else:
//!
//! - a backup is due when its `expiration <= now`; one without an expiration never is;
//! - the newest successful (`Completed`) backup of a series is never deleted, however old:
//!   it is that schedule's last restore point. A series is the backups carrying the same
//!   schedule label (`velero.io/schedule-name`: a ClusterBackup's or ManagementBackup's name,
//!   or `backupctl backup create --schedule`) and the same project and cluster labels (Velero
//!   writes those on the in-cluster engine's backups). "Newest" is the greatest
//!   `(creation, name)`, as in retention. Backups of no schedule form no series and expire
//!   alone;
//! - a one-time ClusterBackup is no schedule: nothing runs after its run, so there is no last
//!   restore point to keep and its runs expire alone too. Its runs carry its name as their
//!   schedule label, so it is told by the object (`one_time`: the project's ClusterBackups
//!   without a schedule) or, once the object is gone (`deletePolicy: Retain`), by its first
//!   run in storage, which is named exactly as the label (a schedule's runs are always
//!   `<name>-<YYYYMMDDhhmmss>`);
//! - a ManagementBackup's release backup (`backupfleet.dev/release-backup`) is the way back
//!   from an upgrade and is kept until deleted by hand: never deleted here, and not counted
//!   as its schedule's newest (its rotation leaves it out the same way);
//! - a backup created after `now` means the clock went backwards or differs between
//!   controllers: TTL arithmetic on it is meaningless, so it stays (as in retention);
//! - a backup that records no creation time cannot be ordered, so it stays.
//!
//! Only backups already due appear in the result: each deleted with why, or spared with why.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use backup_core::StoredBackup;
use jiff::Timestamp;

use backup_api::management_backup::RELEASE_BACKUP_LABEL;
use backup_velero::direct::SCHEDULE_LABEL;
use backup_velero::in_cluster::translate::{CLUSTER_LABEL, PROJECT_LABEL};

/// What the collector does with one scope.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExpiryPlan {
    /// Backups to delete, oldest first.
    pub delete: Vec<Expired>,
    /// Backups whose TTL ran out but that stay, oldest first.
    pub spared: Vec<Spared>,
}

/// A backup to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    /// Its name.
    pub name: String,
    /// When its TTL ran out.
    pub expired_at: Timestamp,
    /// Why deleting it loses no schedule's last restore point.
    pub why: Why,
}

/// Why an expired backup may be deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// It carries no schedule label: no schedule relies on it.
    NoSchedule,
    /// It is a run of this one-time ClusterBackup, which no later run replaces.
    OneTime(String),
    /// It is a run of `schedule`, and `newest` (if any) is that schedule's newest successful
    /// run, which stays. `None`: the schedule has no successful run, so this one (which did
    /// not succeed either) is no restore point.
    Superseded {
        /// The schedule's name.
        schedule: String,
        /// The run kept as its last restore point.
        newest: Option<String>,
    },
}

/// An expired backup that stays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spared {
    /// Its name.
    pub name: String,
    /// Why it stays.
    pub reason: SpareReason,
}

/// Why an expired backup stays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpareReason {
    /// The newest successful run of this schedule.
    NewestOfSchedule(String),
    /// A ManagementBackup's release backup.
    ReleaseBackup,
    /// Created after now: the clock is not to be trusted for it.
    CreatedInTheFuture,
    /// No start or completion time is recorded.
    NoCreationTime,
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::NoSchedule => f.write_str("a backup of no schedule"),
            Why::OneTime(backup) => write!(f, "a run of one-time ClusterBackup {backup}"),
            Why::Superseded {
                schedule,
                newest: Some(newest),
            } => write!(
                f,
                "a run of {schedule}, whose newest successful run {newest} stays"
            ),
            Why::Superseded {
                schedule,
                newest: None,
            } => write!(f, "a run of {schedule}, which has no successful run"),
        }
    }
}

impl fmt::Display for SpareReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpareReason::NewestOfSchedule(schedule) => {
                write!(f, "the newest successful run of {schedule}")
            }
            SpareReason::ReleaseBackup => {
                f.write_str("a release backup, kept until deleted by hand")
            }
            SpareReason::CreatedInTheFuture => {
                f.write_str("created after now (the clock went back?), so its age is unknown")
            }
            SpareReason::NoCreationTime => f.write_str("it records no creation time"),
        }
    }
}

/// The labels that make a series: schedule, project, cluster (absent ones are `None`).
type Series<'a> = (&'a str, Option<&'a str>, Option<&'a str>);

fn series(backup: &StoredBackup) -> Option<Series<'_>> {
    if backup.labels.contains_key(RELEASE_BACKUP_LABEL) {
        return None;
    }
    let schedule = backup.labels.get(SCHEDULE_LABEL)?;
    Some((
        schedule.as_str(),
        backup.labels.get(PROJECT_LABEL).map(String::as_str),
        backup.labels.get(CLUSTER_LABEL).map(String::as_str),
    ))
}

/// The schedule labels that name one-time ClusterBackups: those in `one_time`, and those a
/// stored backup is named after exactly.
fn one_time_labels<'a>(
    stored: &'a [StoredBackup],
    one_time: &'a BTreeSet<String>,
) -> BTreeSet<&'a str> {
    let first_runs = stored.iter().filter_map(|b| {
        let label = b.labels.get(SCHEDULE_LABEL)?;
        (*label == b.name).then_some(label.as_str())
    });
    one_time
        .iter()
        .map(String::as_str)
        .chain(first_runs)
        .collect()
}

/// The newest successful backup of each series, by `(creation, name)`.
fn newest_successful(stored: &[StoredBackup]) -> BTreeMap<Series<'_>, &str> {
    let mut newest: BTreeMap<Series<'_>, (Timestamp, &str)> = BTreeMap::new();
    for backup in stored.iter().filter(|b| b.phase.is_successful()) {
        let (Some(key), Some(created)) = (series(backup), backup.taken_at()) else {
            continue;
        };
        let candidate = (created, backup.name.as_str());
        let entry = newest.entry(key).or_insert(candidate);
        *entry = (*entry).max(candidate);
    }
    newest
        .into_iter()
        .map(|(key, (_, name))| (key, name))
        .collect()
}

/// Plans the collection of one scope's `stored` backups (as listed, any order) at `now`;
/// `one_time` names the project's ClusterBackups that have no schedule. See the module
/// documentation for the rules.
pub fn plan(stored: &[StoredBackup], one_time: &BTreeSet<String>, now: Timestamp) -> ExpiryPlan {
    let one_time = one_time_labels(stored, one_time);
    let newest = newest_successful(stored);
    let mut due: Vec<(&StoredBackup, Timestamp)> = stored
        .iter()
        .filter_map(|b| Some((b, b.expiration.filter(|e| *e <= now)?)))
        .collect();
    due.sort_by(|(a, _), (b, _)| (a.taken_at(), &a.name).cmp(&(b.taken_at(), &b.name)));

    let mut out = ExpiryPlan::default();
    for (backup, expired_at) in due {
        let spare = |reason| Spared {
            name: backup.name.clone(),
            reason,
        };
        let Some(created) = backup.taken_at() else {
            out.spared.push(spare(SpareReason::NoCreationTime));
            continue;
        };
        if created > now {
            out.spared.push(spare(SpareReason::CreatedInTheFuture));
            continue;
        }
        if backup.labels.contains_key(RELEASE_BACKUP_LABEL) {
            out.spared.push(spare(SpareReason::ReleaseBackup));
            continue;
        }
        let why = match series(backup) {
            None => Why::NoSchedule,
            Some((schedule, ..)) if one_time.contains(schedule) => {
                Why::OneTime(schedule.to_string())
            }
            Some(key) => {
                let kept = newest.get(&key).copied();
                if kept == Some(backup.name.as_str()) {
                    out.spared
                        .push(spare(SpareReason::NewestOfSchedule(key.0.to_string())));
                    continue;
                }
                Why::Superseded {
                    schedule: key.0.to_string(),
                    newest: kept.map(str::to_string),
                }
            }
        };
        out.delete.push(Expired {
            name: backup.name.clone(),
            expired_at,
            why,
        });
    }
    out
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
