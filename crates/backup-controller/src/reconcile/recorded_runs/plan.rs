//! The pure decision of the kinds that run one backup at a time and record their latest runs
//! (EtcdBackupConfig, ManagementBackup): write the outcome of the run that ended, mark one cut
//! off by a restart `Failed`, and fire the next one when it is due.
//!
//! The schedule rule is the controller's one ([`schedule::due`]): the most recent missed slot
//! runs once. A run is recorded (`InProgress`) before it starts; rotation after it marks the
//! runs it deleted, and the list is bounded by `keep`. A new run-now token takes one run at
//! once, named with its time, without moving the schedule; an owed release backup (a new
//! controller release) goes before both.
//!
//! The status read comes from the controller's cache, which can be behind the status this
//! process just wrote. A decision on such a view would call its own run interrupted or fire a
//! slot twice, so while the cache does not show the live run's record yet, the plan waits for
//! it; and an outcome is released only once the cache shows it written ([`decision`]).

use std::collections::BTreeMap;
use std::time::Duration;

use backup_core::{Phase, Schedule, scheduled_backup_name};
use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::reconcile::Blocked;
use crate::reconcile::schedule::{self, Due, Timing};
use crate::runs::RunFinished;
use backup_api::status::{Condition, READY, merge_conditions};
use backup_api::{BackupRecord, RecordedRunsStatus};

/// The message of a run cut off by a restart.
pub const INTERRUPTED: &str = "interrupted: the controller stopped (restart or lost leadership) \
    while this ran; nothing was stored (a backup is listed only once complete)";

/// The message of a run recorded unfinished that storage holds complete.
pub const FOUND_STORED: &str = "found in storage, complete, after the controller restarted";

/// How soon to look again when the cache is behind this process's own write (the write's
/// watch event normally comes first).
pub const CACHE_CATCH_UP: Duration = Duration::from_secs(1);

/// How often an object that cannot run looks again for the fix: what blocks it (a cluster's
/// `spec.etcd`, a Secret, a location) is fixed in another object, whose change does not
/// reconcile this one.
pub const BLOCKED_RECHECK: Duration = Duration::from_secs(30);

/// What this process knows of the object's run.
#[derive(Debug, Clone, PartialEq)]
pub enum Live {
    /// None runs here.
    Idle,
    /// One runs here, under this name.
    Running(String),
    /// One ended here; its outcome is not in the status yet.
    Finished(Box<RunFinished>),
}

impl Live {
    /// The name of the run this process runs or ran.
    fn name(&self) -> Option<&str> {
        match self {
            Live::Idle => None,
            Live::Running(name) => Some(name),
            Live::Finished(finished) => Some(&finished.record.backup_name),
        }
    }
}

/// What the decision reads.
#[derive(Debug, Clone)]
pub struct PlanInput<'a> {
    /// The object's name (the base of its runs' names).
    pub name: &'a str,
    /// Its generation.
    pub generation: Option<i64>,
    /// When it was created.
    pub created: Timestamp,
    /// Now.
    pub now: Timestamp,
    /// When it runs; `None`: once.
    pub schedule: Option<&'a (Schedule, TimeZone)>,
    /// How many completed runs are kept.
    pub keep: usize,
    /// What the runs are, for the `Ready` message: ("snapshots of c1's etcd", "one snapshot
    /// of c1's etcd") for a schedule and for a one-time object.
    pub describe: (&'a str, &'a str),
    /// The status as last written.
    pub previous: &'a RecordedRunsStatus,
    /// The phases storage holds for the runs recorded unfinished that this process does not
    /// run (see [`unfinished_elsewhere`]); `None` when storage could not be asked.
    pub stored: Option<&'a BTreeMap<String, Phase>>,
    /// The run of this process.
    pub live: Live,
    /// Why runs cannot start, if they cannot.
    pub blocked: Option<Blocked>,
    /// A `backupfleet.dev/run-now` token not served yet.
    pub run_now: Option<&'a str>,
}

/// Why a run starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FiringKind {
    /// A slot of the schedule (or the one-time run): moves the schedule on.
    Scheduled,
    /// A run-now token.
    RunNow,
    /// A new release of the controller.
    Release,
}

/// A run to start, after the status announcing it is written.
#[derive(Debug, Clone, PartialEq)]
pub struct Firing {
    /// The slot (or the moment).
    pub at: Timestamp,
    /// The run's name.
    pub name: String,
    /// Why it runs.
    pub kind: FiringKind,
}

/// The shared decision, on the recorded runs alone.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The run to start.
    pub fire: Option<Firing>,
    /// The recorded runs' status.
    pub status: RecordedRunsStatus,
    /// When to look again.
    pub requeue_after: Option<Duration>,
}

/// The Event that tells of a finished run once it is released.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// A Warning (the run did not complete) rather than a Normal Event.
    pub warning: bool,
    /// `SnapshotCompleted`, `BackupFailed`, ...
    pub reason: String,
    /// The run's name, phase and message.
    pub note: String,
}

/// What a recorded-runs kind's reconcile does: a [`Plan`] carried to the kind's whole status
/// `S` by [`decision`].
#[derive(Debug, Clone, PartialEq)]
pub struct Decision<S> {
    /// The run to start, after `status` is written.
    pub fire: Option<Firing>,
    /// The kind's whole status.
    pub status: S,
    /// Whether `status` differs from the one read, so is written.
    pub write: bool,
    /// Release this process's finished run and tell of it: the status read already shows its
    /// outcome.
    pub release: Option<Outcome>,
    /// When to look again; `None` waits for a change.
    pub requeue_after: Option<Duration>,
}

/// Carries `plan` to the kind's whole status (`status` makes it of the runs' one; `previous`
/// is the one read), with `live` the run of this process and `noun` ("Snapshot", "Backup")
/// naming it in Events. A finished run is released only once the cache shows its outcome
/// written, so no later reconcile decides on a view without it: while the outcome is being
/// written, look again soon (the write's watch event normally comes first).
pub fn decision<S: PartialEq>(
    plan: Plan,
    status: impl FnOnce(RecordedRunsStatus) -> S,
    previous: &S,
    live: &Live,
    noun: &str,
) -> Decision<S> {
    let status = status(plan.status);
    let write = status != *previous;
    let finished = match live {
        Live::Finished(finished) => Some(&finished.record),
        _ => None,
    };
    Decision {
        fire: plan.fire,
        status,
        write,
        release: finished.filter(|_| !write).map(|r| outcome(r, noun)),
        requeue_after: match finished {
            Some(_) if write => Some(CACHE_CATCH_UP),
            _ => plan.requeue_after,
        },
    }
}

/// The Event of a finished run.
fn outcome(record: &BackupRecord, noun: &str) -> Outcome {
    let completed = record.backup_phase == Phase::Completed;
    Outcome {
        warning: !completed,
        reason: format!("{noun}{}", if completed { "Completed" } else { "Failed" }),
        note: format!(
            "{} {}{}",
            record.backup_name,
            record.backup_phase,
            record
                .message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        ),
    }
}

/// The status of an object that may not run at all (an invalid spec, a namespace that may not
/// ask): `Ready` says why, nothing is scheduled, the records stay as they were.
pub fn refused(
    previous: &RecordedRunsStatus,
    blocked: &Blocked,
    now: Timestamp,
    generation: Option<i64>,
) -> RecordedRunsStatus {
    RecordedRunsStatus {
        observed_generation: generation,
        next_schedule_time: None,
        conditions: merge_conditions(
            &previous.conditions,
            vec![blocked.condition(READY).at(now, generation)],
        ),
        ..previous.clone()
    }
}

/// The runs recorded unfinished that this process does not run: what storage must be asked
/// about before [`plan`] decides.
pub fn unfinished_elsewhere(previous: &RecordedRunsStatus, live: &Live) -> Vec<String> {
    match live {
        Live::Idle => previous
            .last_backups
            .iter()
            .filter(|r| !r.backup_phase.is_terminal())
            .map(|r| r.backup_name.clone())
            .collect(),
        _ => Vec::new(),
    }
}

/// Decides; see the module docs. `release` is the name of a release backup owed (a new
/// release of the controller), if one is.
pub fn plan(input: &PlanInput<'_>, release: Option<&str>) -> Plan {
    let previous = input.previous;
    if let Some(name) = input.live.name()
        && !previous.last_backups.iter().any(|r| r.backup_name == name)
    {
        // The cache does not show the write that announced this run yet.
        return Plan {
            fire: None,
            status: previous.clone(),
            requeue_after: Some(CACHE_CATCH_UP),
        };
    }
    let mut records = settled(input);
    let due = schedule::due(&Timing {
        schedule: input.schedule,
        paused: false,
        last_fired: previous.last_schedule_time,
        created: input.created,
        now: input.now,
    });
    let fire = firing(input, due, release);
    if let Some(f) = &fire {
        recorded(&mut records, f);
    }
    bound(&mut records, input.keep);
    let next = next_schedule_time(input, due, fire.as_ref());
    let status = RecordedRunsStatus {
        observed_generation: input.generation,
        last_run_now_token: served_token(input, fire.as_ref()),
        last_schedule_time: fire
            .as_ref()
            .filter(|f| f.kind == FiringKind::Scheduled)
            .map(|f| f.at)
            .or(previous.last_schedule_time),
        next_schedule_time: next,
        last_backups: records,
        conditions: merge_conditions(&previous.conditions, vec![ready(input, next)]),
    };
    let requeue_after =
        next.map(|at| Duration::try_from(at.duration_since(input.now)).unwrap_or(Duration::ZERO));
    Plan {
        fire,
        status,
        requeue_after,
    }
}

/// The previous records with what ended since: this process's finished run, and the runs
/// recorded unfinished that it does not run.
fn settled(input: &PlanInput<'_>) -> Vec<BackupRecord> {
    let mut records = input.previous.last_backups.clone();
    match &input.live {
        Live::Finished(finished) => apply_finished(&mut records, finished),
        // Recorded unfinished, and not running here: a restart (or a management cluster
        // restored from a backup taken while it ran). What storage holds ended; the rest was
        // cut off. Unknown (storage not reachable): left as recorded until it can be looked at.
        Live::Idle => {
            if let Some(stored) = input.stored {
                apply_stored(&mut records, stored, input.now);
            }
        }
        Live::Running(_) => {}
    }
    records
}

/// Writes what storage holds of the unfinished records; one it lacks was cut off at `now`.
fn apply_stored(records: &mut [BackupRecord], stored: &BTreeMap<String, Phase>, now: Timestamp) {
    for record in records.iter_mut().filter(|r| !r.backup_phase.is_terminal()) {
        match stored.get(&record.backup_name) {
            Some(phase) => {
                record.backup_phase = *phase;
                record.message = Some(FOUND_STORED.into());
            }
            None => {
                record.backup_phase = Phase::Failed;
                record.backup_finished_time = Some(now);
                record.message = Some(INTERRUPTED.into());
            }
        }
    }
}

/// The run to start now, if any: an owed release backup first, then the due slot, then a
/// run-now token; none while blocked or while this process's run is not released (a finished
/// run's outcome is written before the next one starts).
fn firing(input: &PlanInput<'_>, due: Due, release: Option<&str>) -> Option<Firing> {
    if input.blocked.is_some() || input.live != Live::Idle {
        return None;
    }
    match (release, due, input.run_now) {
        (Some(release), _, _) => Some(Firing {
            at: input.now,
            name: format!("{}-{release}", input.name),
            kind: FiringKind::Release,
        }),
        (None, Due::Now(at), _) => Some(Firing {
            at,
            name: match input.schedule {
                Some(_) => scheduled_backup_name(input.name, at),
                None => input.name.to_string(),
            },
            kind: FiringKind::Scheduled,
        }),
        // Run now: named with its time, the schedule's own slots untouched.
        (None, _, Some(_)) => Some(Firing {
            at: input.now,
            name: scheduled_backup_name(input.name, input.now),
            kind: FiringKind::RunNow,
        }),
        _ => None,
    }
}

/// Records the run `fire` starts, `InProgress`, first.
fn recorded(records: &mut Vec<BackupRecord>, fire: &Firing) {
    // Rotated-out records made their point at the last run.
    records.retain(|r| r.delete_phase.is_none());
    records.insert(
        0,
        BackupRecord {
            scheduled_time: Some(fire.at),
            backup_name: fire.name.clone(),
            backup_phase: Phase::InProgress,
            ..BackupRecord::default()
        },
    );
}

/// Bounds the records by `keep`: what is kept in storage (plus the one being taken, which
/// rotation makes room for when it completed), and the ones rotation just deleted.
fn bound(records: &mut Vec<BackupRecord>, keep: usize) {
    let bound = keep
        + usize::from(
            records
                .first()
                .is_some_and(|r| !r.backup_phase.is_terminal()),
        );
    let kept = records.iter().filter(|r| r.delete_phase.is_none()).count();
    if kept > bound {
        let mut seen = 0;
        records.retain(|r| {
            if r.delete_phase.is_some() {
                return true;
            }
            seen += 1;
            seen <= bound
        });
    }
}

/// When the schedule runs next.
fn next_schedule_time(input: &PlanInput<'_>, due: Due, fire: Option<&Firing>) -> Option<Timestamp> {
    match (due, fire) {
        (Due::Later(at), _) => Some(at),
        (Due::Now(_), Some(f)) if f.kind == FiringKind::Scheduled => {
            schedule::next_after(input.schedule, f.at)
        }
        // Due, but waiting (blocked, a release backup first, or the previous run still runs).
        (Due::Now(at), _) => Some(at),
        (Due::Never, _) => None,
    }
}

/// The run-now token served: a scheduled run serves a pending token too; a release backup
/// does not.
fn served_token(input: &PlanInput<'_>, fire: Option<&Firing>) -> Option<String> {
    match (fire, input.run_now) {
        (Some(f), Some(token)) if f.kind != FiringKind::Release => Some(token.to_string()),
        _ => input.previous.last_run_now_token.clone(),
    }
}

/// `Ready`: why runs cannot start, else what runs and when next.
fn ready(input: &PlanInput<'_>, next: Option<Timestamp>) -> Condition {
    match &input.blocked {
        Some(blocked) => blocked.condition(READY),
        None => Condition::met(
            READY,
            "Ready",
            match (input.schedule, next) {
                (Some(_), Some(next)) => {
                    format!(
                        "{}, keeping {}; next at {next}",
                        input.describe.0, input.keep
                    )
                }
                (Some(_), None) => "the schedule fires no more".to_string(),
                (None, _) => input.describe.1.to_string(),
            },
        ),
    }
    .at(input.now, input.generation)
}

/// Writes a finished run's outcome and its rotation into the records.
fn apply_finished(records: &mut [BackupRecord], finished: &RunFinished) {
    for record in records.iter_mut() {
        if record.backup_name == finished.record.backup_name {
            *record = finished.record.clone();
        } else if finished.deleted.contains(&record.backup_name) {
            record.delete_phase = Some(Phase::Completed);
            record.delete_finished_time = Some(finished.at);
        } else if let Some((_, why)) = finished
            .refused
            .iter()
            .find(|(name, _)| *name == record.backup_name)
        {
            record.delete_phase = Some(Phase::Failed);
            record.delete_finished_time = Some(finished.at);
            record.message = Some(format!("rotation could not delete it: {why}"));
        }
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
