//! The pure decision of a ClusterBackup reconcile: is a run due, and what does the status say.
//!
//! Everything it needs is passed in (the validated spec, the previous status, what storage
//! lists for each selected cluster, the runs this process has going, and "now"), so every rule
//! is tested exactly, without a cluster and without waiting for a schedule:
//!
//! - A scheduled backup fires at the schedule's slots after its last firing (or its creation).
//!   After downtime, the most recent missed slot runs once, never once per missed slot.
//! - A one-time backup runs once; editing it afterwards does not run it again (KKP: one-time
//!   backups are immutable), and a condition says so.
//! - Nothing fires while the location or the clusters are unusable; the firing then happens
//!   once they are fixed (the missed slot, once). Nor while the previous firing's runs are
//!   still going: firings never overlap (a CronJob's `Forbid`), the due slot runs when they end.
//! - A new run-now token (annotation) runs once, now, outside the schedule, also when paused
//!   or for a one-time backup that already ran; its runs are named with the time they start,
//!   and the schedule's own slots are not moved by it.
//! - Status is rebuilt from storage: `backups` are the stored runs, `lastSuccessfulBackup` the
//!   newest stored `Completed` one. `lastBackup` is the running run, else the newest of the
//!   stored runs and the record of the last run (this process's, else the previous status's),
//!   so a run that failed before storing anything stays visible while a run deleted from
//!   storage does not. A run recorded as in progress that this process is not running and storage does
//!   not hold was interrupted (a crash, a lost lease): it is `Failed`.

use std::time::Duration;

use backup_core::{BackupStatus, Phase, StoredBackup, scheduled_backup_name};
use jiff::Timestamp;

use crate::reconcile::schedule::{self, Due, Timing};
use crate::runs::LiveRun;
use backup_api::status::{Condition, merge_conditions};
use backup_api::{ClusterBackupStatus, ClusterRuns, FleetPhase, RunStatus, ValidClusterBackup};

pub use backup_api::status::READY;
/// Condition: some clusters' last runs did not complete.
pub const DEGRADED: &str = "Degraded";
/// Condition: a one-time backup was edited after it ran.
pub const IMMUTABLE: &str = "Immutable";

pub use crate::reconcile::Blocked;

/// One selected cluster as observed.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterView {
    /// The ManagedCluster.
    pub name: String,
    /// This ClusterBackup's stored runs of the cluster, oldest first; or why they could not be
    /// listed.
    pub stored: Result<Vec<StoredBackup>, String>,
    /// The run this process has for it, if any.
    pub live: Option<LiveRun>,
}

/// Everything the decision depends on.
#[derive(Debug, Clone)]
pub struct PlanInput<'a> {
    /// The ClusterBackup's name (runs are named after it).
    pub name: &'a str,
    /// Its generation.
    pub generation: Option<i64>,
    /// When it was created.
    pub created: Timestamp,
    /// Now.
    pub now: Timestamp,
    /// The validated spec.
    pub spec: &'a ValidClusterBackup,
    /// The status as last written.
    pub previous: &'a ClusterBackupStatus,
    /// The last firing this process knows of (it may be newer than `previous` shows, while our
    /// own status write has not come back through the watch yet).
    pub last_fired: Option<Timestamp>,
    /// Why runs cannot start, if they cannot.
    pub blocked: Option<Blocked>,
    /// Names listed in `spec.clusters.names` that are no ManagedCluster of the namespace.
    pub missing: Vec<String>,
    /// The selected clusters, sorted by name.
    pub clusters: Vec<ClusterView>,
    /// A `backupfleet.dev/run-now` token not served yet.
    pub run_now: Option<&'a str>,
}

/// Runs to start now: one per selected cluster, all for the same firing.
#[derive(Debug, Clone, PartialEq)]
pub struct Firing {
    /// The slot (or, for a one-time backup, the moment) the runs belong to.
    pub at: Timestamp,
    /// `(cluster, backup name)`.
    pub runs: Vec<(String, String)>,
    /// Whether it is a slot of the schedule (or the one-time run), which moves the schedule on;
    /// false for a firing only asked for by a run-now token.
    pub scheduled: bool,
    /// The run-now token it serves.
    pub run_now: Option<String>,
}

/// What the reconcile does.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Runs to start, after `status` is written.
    pub fire: Option<Firing>,
    /// The status to write.
    pub status: ClusterBackupStatus,
    /// When to look again (the next firing); `None` waits for a change.
    pub requeue_after: Option<Duration>,
}

/// When the schedule wants to run (see [`schedule::due`]).
fn due(input: &PlanInput<'_>) -> Due {
    schedule::due(&Timing {
        schedule: input.spec.schedule.as_ref(),
        paused: input.spec.paused,
        last_fired: input.last_fired,
        created: input.created,
        now: input.now,
    })
}

/// The status entry of a stored run.
fn stored_status(b: &StoredBackup) -> RunStatus {
    RunStatus {
        name: b.name.clone(),
        phase: b.phase,
        items_backed_up: b.items_backed_up,
        total_items: b.total_items,
        start_timestamp: b.started,
        completion_timestamp: b.completed,
        expiration: b.expiration,
        errors: b.errors,
        warnings: b.warnings,
        message: None,
    }
}

/// The status entry of a live run.
fn live_status(run: &LiveRun) -> RunStatus {
    let s: &BackupStatus = &run.status;
    RunStatus {
        name: run.name.clone(),
        phase: s.phase,
        items_backed_up: s.progress.items_done,
        total_items: s.progress.total_items,
        start_timestamp: s.started,
        completion_timestamp: s.completed,
        expiration: None,
        errors: s.errors.len() as u64,
        warnings: s.warnings.len() as u64,
        message: s.validation_errors.first().or(s.errors.first()).cloned(),
    }
}

/// One cluster's status.
fn cluster_runs(view: &ClusterView, previous: Option<&ClusterRuns>, now: Timestamp) -> ClusterRuns {
    let stored: &[StoredBackup] = view.stored.as_deref().unwrap_or_default();
    let backups: Vec<String> = match &view.stored {
        Ok(runs) => runs.iter().rev().map(|b| b.name.clone()).collect(),
        // Listing failed: keep what was known rather than claiming there is nothing.
        Err(_) => previous.map(|p| p.backups.clone()).unwrap_or_default(),
    };
    let last_successful_backup = match &view.stored {
        Ok(runs) => runs
            .iter()
            .rev()
            .find(|b| b.phase.is_successful())
            .map(|b| b.name.clone()),
        Err(_) => previous.and_then(|p| p.last_successful_backup.clone()),
    };
    let newest_stored = stored.last();
    // A live run is shown as such while it runs. Once it ended it is a record like the
    // previous status's, and storage has the last word over it as over any record: a run that
    // storage no longer holds was deleted, a newer stored backup is the last one.
    let running = view.live.as_ref().filter(|l| !l.status.phase.is_terminal());
    let ended = view
        .live
        .as_ref()
        .filter(|l| l.status.phase.is_terminal())
        .map(live_status);
    let recorded = ended
        .as_ref()
        .or_else(|| previous.and_then(|p| p.last_backup.as_ref()));
    let last_backup = match (running, recorded) {
        (Some(live), _) => match stored.iter().find(|b| b.name == live.name) {
            Some(b) => Some(stored_status(b)),
            None => Some(live_status(live)),
        },
        // Completed and PartiallyFailed runs are always stored: one that storage no longer
        // holds was deleted, and disappears from status too.
        (None, Some(record))
            if view.stored.is_ok()
                && !backups.contains(&record.name)
                && !matches!(record.phase, Phase::Completed | Phase::PartiallyFailed)
                && newer_than(record, newest_stored) =>
        {
            if record.phase.is_terminal() {
                Some(record.clone())
            } else {
                Some(RunStatus {
                    phase: Phase::Failed,
                    completion_timestamp: Some(now),
                    message: Some(
                        "interrupted: the controller stopped (restart, crash or lost leadership) \
                         while this backup ran, so nothing was stored; the next run is not affected"
                            .into(),
                    ),
                    ..record.clone()
                })
            }
        }
        (None, Some(record)) if view.stored.is_err() => Some(record.clone()),
        _ => newest_stored.map(stored_status),
    };
    ClusterRuns {
        cluster: view.name.clone(),
        last_backup,
        last_successful_backup,
        backups,
    }
}

/// Whether a recorded run is at least as new as the newest stored one.
fn newer_than(record: &RunStatus, newest_stored: Option<&StoredBackup>) -> bool {
    let recorded_at = record.start_timestamp.or(record.completion_timestamp);
    match (newest_stored.and_then(StoredBackup::taken_at), recorded_at) {
        (None, _) => true,
        (Some(stored_at), Some(recorded_at)) => recorded_at >= stored_at,
        // Registered, never started: it came after everything stored.
        (Some(_), None) => true,
    }
}

/// The fleet's phase from each cluster's last run.
fn fleet_phase(clusters: &[ClusterRuns]) -> FleetPhase {
    let phases: Vec<Phase> = clusters
        .iter()
        .filter_map(|c| c.last_backup.as_ref().map(|b| b.phase))
        .collect();
    if phases.is_empty() {
        FleetPhase::New
    } else if phases.iter().any(|p| !p.is_terminal()) {
        FleetPhase::InProgress
    } else if phases.iter().all(Phase::is_successful) && phases.len() == clusters.len() {
        FleetPhase::Completed
    } else if phases
        .iter()
        .all(|p| matches!(p, Phase::Failed | Phase::FailedValidation))
        && phases.len() == clusters.len()
    {
        FleetPhase::Failed
    } else {
        FleetPhase::PartiallyFailed
    }
}

/// Decides; see the module docs.
pub fn plan(input: &PlanInput<'_>) -> Plan {
    let previous_runs = |name: &str| input.previous.clusters.iter().find(|c| c.cluster == name);
    let due = due(input);
    let busy = previous_firing_running(input);
    let can_run = input.blocked.is_none() && !input.clusters.is_empty() && !busy;
    let runs = |name: &str| -> Vec<(String, String)> {
        input
            .clusters
            .iter()
            .map(|c| (c.name.clone(), name.to_string()))
            .collect()
    };

    let run_now_name = scheduled_backup_name(input.name, input.now);
    let fire = match (due, input.run_now) {
        (Due::Now(at), token) if can_run => Some(Firing {
            at,
            runs: runs(&match input.spec.schedule {
                Some(_) => scheduled_backup_name(input.name, at),
                None => input.name.to_string(),
            }),
            scheduled: true,
            run_now: token.map(str::to_string),
        }),
        (_, Some(token)) if can_run && !run_name_taken(input, &run_now_name) => Some(Firing {
            at: input.now,
            runs: runs(&run_now_name),
            scheduled: false,
            run_now: Some(token.to_string()),
        }),
        _ => None,
    };
    // A run-now whose name (one-second resolution) an earlier run of this second holds waits
    // for the next second instead of colliding with it.
    let run_now_waits = fire.is_none() && input.run_now.is_some() && can_run;

    // The views as they will be once the firing's runs are registered.
    let views: Vec<ClusterView> = input
        .clusters
        .iter()
        .map(|c| {
            let mut view = c.clone();
            if let Some(f) = &fire
                && let Some((_, name)) = f.runs.iter().find(|(cluster, _)| *cluster == c.name)
            {
                view.live = Some(LiveRun {
                    name: name.clone(),
                    firing: f.at,
                    status: BackupStatus::default(),
                });
            }
            view
        })
        .collect();
    let clusters: Vec<ClusterRuns> = views
        .iter()
        .map(|v| cluster_runs(v, previous_runs(&v.name), input.now))
        .collect();

    let last_schedule_time = match &fire {
        Some(f) if f.scheduled => Some(f.at),
        _ => input.last_fired.or(input.previous.last_schedule_time),
    };
    let next = match (due, &fire, &input.spec.schedule) {
        (Due::Later(at), _, _) => Some(at),
        (Due::Now(_), Some(f), Some((schedule, tz))) if f.scheduled => {
            schedule.next_after(f.at, tz)
        }
        // Due but blocked: the slot waits for the fix, nothing is planned.
        _ => None,
    };
    let mut requeue_after = next.map(|at| {
        let wait = at.duration_since(input.now);
        Duration::try_from(wait).unwrap_or(Duration::ZERO)
    });
    if run_now_waits {
        let next_second = Duration::from_nanos(
            1_000_000_000 - u64::try_from(input.now.subsec_nanosecond()).unwrap_or(0),
        );
        requeue_after = Some(requeue_after.map_or(next_second, |r| r.min(next_second)));
    }

    let waiting = busy && (matches!(due, Due::Now(_)) || input.run_now.is_some());
    let mut conditions = vec![ready_condition(input, next, waiting)];
    conditions.push(degraded_condition(&clusters));
    if let Some(c) = immutable_condition(input) {
        conditions.push(c);
    }
    let conditions = conditions
        .into_iter()
        .map(|c| c.at(input.now, input.generation))
        .collect();

    let status = ClusterBackupStatus {
        phase: Some(fleet_phase(&clusters)),
        observed_generation: input.generation,
        last_schedule_time,
        next_schedule_time: next,
        last_run_generation: match &fire {
            Some(f) if f.scheduled => input.generation,
            _ => input.previous.last_run_generation,
        },
        last_run_now_token: match &fire {
            Some(Firing {
                run_now: Some(token),
                ..
            }) => Some(token.clone()),
            _ => input.previous.last_run_now_token.clone(),
        },
        clusters,
        conditions: merge_conditions(&input.previous.conditions, conditions),
    };
    Plan {
        fire,
        status,
        requeue_after,
    }
}

/// Whether a run called `name` exists for any cluster: stored, running here, or last recorded.
fn run_name_taken(input: &PlanInput<'_>, name: &str) -> bool {
    input.clusters.iter().any(|c| {
        c.live.as_ref().is_some_and(|l| l.name == name)
            || c.stored
                .as_ref()
                .is_ok_and(|runs| runs.iter().any(|b| b.name == name))
    }) || input
        .previous
        .clusters
        .iter()
        .any(|c| c.last_backup.as_ref().is_some_and(|b| b.name == name))
}

/// Whether runs of an earlier firing are still going.
fn previous_firing_running(input: &PlanInput<'_>) -> bool {
    input.clusters.iter().any(|c| {
        c.live
            .as_ref()
            .is_some_and(|l| !l.status.phase.is_terminal())
    })
}

fn ready_condition(input: &PlanInput<'_>, next: Option<Timestamp>, waiting: bool) -> Condition {
    if let Some(blocked) = &input.blocked {
        return Condition::unmet(READY, &blocked.reason, &blocked.message);
    }
    if input.clusters.is_empty() {
        let message = if input.missing.is_empty() {
            "no ManagedCluster of this namespace is selected by spec.clusters: create one, or \
             fix the names or the label selector"
                .to_string()
        } else {
            format!(
                "none of the clusters named in spec.clusters.names exists in this namespace \
                 (missing: {}): create them, or fix the names",
                input.missing.join(", ")
            )
        };
        return Condition::unmet(READY, "NoClustersSelected", message);
    }
    if !input.missing.is_empty() {
        return Condition::unmet(
            READY,
            "ClustersNotFound",
            format!(
                "spec.clusters.names lists clusters that are no ManagedCluster of this namespace: \
                 {}; the other {} cluster(s) are backed up",
                input.missing.join(", "),
                input.clusters.len()
            ),
        );
    }
    let count = input.clusters.len();
    if waiting {
        return Condition::met(
            READY,
            "Ready",
            format!(
                "{count} cluster(s) selected; a run is due and starts when the previous one's \
                 runs end (firings never overlap)"
            ),
        );
    }
    let message = match (&input.spec.schedule, next) {
        (Some(_), _) if input.spec.paused => {
            format!("{count} cluster(s) selected; paused, no runs start")
        }
        (Some(_), Some(next)) => format!("{count} cluster(s) selected; next run at {next}"),
        (Some(_), None) => format!("{count} cluster(s) selected; the schedule fires no more"),
        (None, _) => format!("{count} cluster(s) selected; one-time backup"),
    };
    Condition::met(READY, "Ready", message)
}

fn degraded_condition(clusters: &[ClusterRuns]) -> Condition {
    let failing: Vec<String> = clusters
        .iter()
        .filter_map(|c| {
            let run = c.last_backup.as_ref()?;
            matches!(
                run.phase,
                Phase::Failed | Phase::PartiallyFailed | Phase::FailedValidation
            )
            .then(|| match &run.message {
                Some(m) => format!("{} ({} {}: {m})", c.cluster, run.name, run.phase),
                None => format!("{} ({} {})", c.cluster, run.name, run.phase),
            })
        })
        .collect();
    if failing.is_empty() {
        Condition::unmet(
            DEGRADED,
            "NoFailedRuns",
            "every selected cluster's last run completed or is running",
        )
    } else {
        Condition::met(
            DEGRADED,
            "RunsFailed",
            format!("last run did not complete on: {}", failing.join("; ")),
        )
    }
}

fn immutable_condition(input: &PlanInput<'_>) -> Option<Condition> {
    if input.spec.schedule.is_some() {
        return None;
    }
    let ran = input.previous.last_run_generation?;
    let now = input.generation?;
    (now > ran).then(|| {
        Condition::met(
            IMMUTABLE,
            "OneTimeBackupAlreadyRan",
            format!(
                "this one-time backup ran from generation {ran}; edits (now generation {now}) do \
                 not run it again: one-time backups are immutable, so create a new ClusterBackup \
                 to back up with the new spec"
            ),
        )
    })
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
