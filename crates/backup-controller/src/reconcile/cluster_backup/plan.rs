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
use backup_api::{
    ClusterBackupStatus, ClusterRuns, FleetPhase, RunStatus, Selection, ValidClusterBackup,
};

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

/// What the StorageLocation allows, as observed.
#[derive(Debug, Clone, PartialEq)]
pub struct LocationFacts {
    /// The StorageLocation's name.
    pub name: String,
    /// Whether it takes writes (not `ReadOnly`).
    pub writable: bool,
}

/// Everything the decision depends on, as observed: no rule has been applied to it yet.
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
    /// The last firing this process remembers. It may be newer than `previous` shows while our
    /// own status write has not come back through the watch yet, or older after a restart.
    pub fired_here: Option<Timestamp>,
    /// The StorageLocation, or why it cannot be used.
    pub location: Result<LocationFacts, Blocked>,
    /// The names of every ManagedCluster of the namespace.
    pub known_clusters: &'a [String],
    /// The selected clusters, sorted by name.
    pub clusters: Vec<ClusterView>,
    /// The `backupfleet.dev/run-now` annotation's value, if set.
    pub run_now_annotation: Option<&'a str>,
    /// The run-now token this process last served (its status write may not be back yet).
    pub run_now_served_here: Option<&'a str>,
}

/// What the rules make of the raw facts before deciding.
struct Seen<'a> {
    /// Why runs cannot start, if they cannot.
    blocked: Option<Blocked>,
    /// Names in `spec.clusters.names` that are no ManagedCluster of the namespace.
    missing: Vec<String>,
    /// The last firing, from the status and this process's memory.
    last_fired: Option<Timestamp>,
    /// A run-now token not served yet.
    run_now: Option<&'a str>,
}

impl<'a> Seen<'a> {
    fn of(input: &PlanInput<'a>) -> Self {
        Seen {
            blocked: blocked(&input.location),
            missing: missing(&input.spec.selection, input.known_clusters),
            // The newer of the two (`None` orders first, so either alone wins over nothing).
            last_fired: input.previous.last_schedule_time.max(input.fired_here),
            run_now: input.run_now_annotation.filter(|token| {
                !token.is_empty()
                    && input.previous.last_run_now_token.as_deref() != Some(*token)
                    && input.run_now_served_here != Some(*token)
            }),
        }
    }
}

/// Why the location keeps runs from starting: it is unusable, or it takes no writes.
pub fn blocked(location: &Result<LocationFacts, Blocked>) -> Option<Blocked> {
    match location {
        Err(blocked) => Some(blocked.clone()),
        Ok(l) if !l.writable => Some(Blocked::new(
            "LocationReadOnly",
            format!(
                "StorageLocation {:?} is ReadOnly: backups cannot be written to it; use a \
                 ReadWrite location",
                l.name
            ),
        )),
        Ok(_) => None,
    }
}

/// The names a `Names` selection lists that are not among `known` clusters.
pub fn missing(selection: &Selection, known: &[String]) -> Vec<String> {
    match selection {
        Selection::Names(names) => names
            .iter()
            .filter(|n| !known.contains(n))
            .cloned()
            .collect(),
        _ => Vec::new(),
    }
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

impl Plan {
    /// Whether the only change from `previous` is the progress of runs already going: such a
    /// write may wait a little, so hundreds of clusters' progress costs few writes.
    pub fn changes_only_progress(&self, previous: &ClusterBackupStatus) -> bool {
        previous.phase == Some(FleetPhase::InProgress)
            && self.status.phase == Some(FleetPhase::InProgress)
    }
}

impl Firing {
    /// The event that announces the firing's runs, on `clusters` at most `at_a_time` at once.
    pub fn started_message(&self, clusters: &[String], at_a_time: usize) -> String {
        let what = match &self.run_now {
            Some(token) if !self.scheduled => format!("run-now {token:?}"),
            _ => format!("the run of {}", self.at),
        };
        format!(
            "backing up {} cluster(s) for {what} ({at_a_time} at a time): {}",
            clusters.len(),
            clusters.join(", ")
        )
    }
}

/// The status of a ClusterBackup whose spec is invalid: `Ready` says which field to fix, and
/// no run is scheduled; what storage showed stays.
pub fn invalid_spec(
    previous: &ClusterBackupStatus,
    problem: String,
    now: Timestamp,
    generation: Option<i64>,
) -> ClusterBackupStatus {
    let invalid = Condition::unmet(READY, "InvalidSpec", problem).at(now, generation);
    ClusterBackupStatus {
        observed_generation: generation,
        next_schedule_time: None,
        conditions: merge_conditions(&previous.conditions, vec![invalid]),
        ..previous.clone()
    }
}

/// When the schedule wants to run (see [`schedule::due`]).
fn due(input: &PlanInput<'_>, last_fired: Option<Timestamp>) -> Due {
    schedule::due(&Timing {
        schedule: input.spec.schedule.as_ref(),
        paused: input.spec.paused,
        last_fired,
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
    let seen = Seen::of(input);
    let due = due(input, seen.last_fired);
    let busy = previous_firing_running(input);
    let can_run = seen.blocked.is_none() && !input.clusters.is_empty() && !busy;
    let fire = if can_run {
        firing(input, due, seen.run_now)
    } else {
        None
    };
    // A run-now whose name (one-second resolution) an earlier run of this second holds waits
    // for the next second instead of colliding with it.
    let run_now_waits = fire.is_none() && seen.run_now.is_some() && can_run;
    let next = next_firing(input, due, fire.as_ref());
    let waiting = busy && (matches!(due, Due::Now(_)) || seen.run_now.is_some());
    let status = status(input, &seen, fire.as_ref(), next, waiting);
    Plan {
        requeue_after: requeue_after(input.now, next, run_now_waits),
        fire,
        status,
    }
}

/// The firing to start, when runs may start: the due slot (serving a pending run-now token
/// with it), else the run-now token alone, under a name no run holds yet.
fn firing(input: &PlanInput<'_>, due: Due, run_now: Option<&str>) -> Option<Firing> {
    let runs = |name: &str| -> Vec<(String, String)> {
        input
            .clusters
            .iter()
            .map(|c| (c.name.clone(), name.to_string()))
            .collect()
    };
    let run_now_name = scheduled_backup_name(input.name, input.now);
    match (due, run_now) {
        (Due::Now(at), token) => Some(Firing {
            at,
            runs: runs(&match input.spec.schedule {
                Some(_) => scheduled_backup_name(input.name, at),
                None => input.name.to_string(),
            }),
            scheduled: true,
            run_now: token.map(str::to_string),
        }),
        (_, Some(token)) if !run_name_taken(input, &run_now_name) => Some(Firing {
            at: input.now,
            runs: runs(&run_now_name),
            scheduled: false,
            run_now: Some(token.to_string()),
        }),
        _ => None,
    }
}

/// The next slot of the schedule to wake for.
fn next_firing(input: &PlanInput<'_>, due: Due, fire: Option<&Firing>) -> Option<Timestamp> {
    match (due, fire, &input.spec.schedule) {
        (Due::Later(at), _, _) => Some(at),
        (Due::Now(_), Some(f), Some((schedule, tz))) if f.scheduled => {
            schedule.next_after(f.at, tz)
        }
        // Due but blocked: the slot waits for the fix, nothing is planned.
        _ => None,
    }
}

/// When to look again: at the next slot, or at the next second for a run-now that waits.
fn requeue_after(now: Timestamp, next: Option<Timestamp>, run_now_waits: bool) -> Option<Duration> {
    let until_next = next.map(|at| Duration::try_from(at.duration_since(now)).unwrap_or_default());
    if !run_now_waits {
        return until_next;
    }
    let next_second =
        Duration::from_nanos(1_000_000_000 - u64::try_from(now.subsec_nanosecond()).unwrap_or(0));
    Some(until_next.map_or(next_second, |r| r.min(next_second)))
}

/// The status once `fire`'s runs are registered.
fn status(
    input: &PlanInput<'_>,
    seen: &Seen<'_>,
    fire: Option<&Firing>,
    next: Option<Timestamp>,
    waiting: bool,
) -> ClusterBackupStatus {
    let clusters = clusters_after(input, fire);
    let mut conditions = vec![ready_condition(input, seen, next, waiting)];
    conditions.push(degraded_condition(&clusters));
    conditions.extend(immutable_condition(input));
    let conditions = conditions
        .into_iter()
        .map(|c| c.at(input.now, input.generation))
        .collect();
    let scheduled = fire.filter(|f| f.scheduled);
    ClusterBackupStatus {
        phase: Some(fleet_phase(&clusters)),
        observed_generation: input.generation,
        last_schedule_time: scheduled.map(|f| f.at).or(seen.last_fired),
        next_schedule_time: next,
        last_run_generation: match scheduled {
            Some(_) => input.generation,
            None => input.previous.last_run_generation,
        },
        last_run_now_token: served_token(input, fire),
        clusters,
        conditions: merge_conditions(&input.previous.conditions, conditions),
    }
}

/// The last run-now token served: the firing's, else the annotation's when this process
/// served it (the status read may predate that write), else the status's.
fn served_token(input: &PlanInput<'_>, fire: Option<&Firing>) -> Option<String> {
    let served_here = input
        .run_now_served_here
        .filter(|token| input.run_now_annotation == Some(*token));
    fire.and_then(|f| f.run_now.clone())
        .or_else(|| served_here.map(String::from))
        .or_else(|| input.previous.last_run_now_token.clone())
}

/// Each selected cluster's runs as they will be once the firing's runs are registered.
fn clusters_after(input: &PlanInput<'_>, fire: Option<&Firing>) -> Vec<ClusterRuns> {
    input
        .clusters
        .iter()
        .map(|c| {
            let mut view = c.clone();
            if let Some(f) = fire
                && let Some((_, name)) = f.runs.iter().find(|(cluster, _)| *cluster == c.name)
            {
                view.live = Some(LiveRun {
                    name: name.clone(),
                    firing: f.at,
                    status: BackupStatus::default(),
                });
            }
            let previous = input.previous.clusters.iter().find(|p| p.cluster == c.name);
            cluster_runs(&view, previous, input.now)
        })
        .collect()
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

fn ready_condition(
    input: &PlanInput<'_>,
    seen: &Seen<'_>,
    next: Option<Timestamp>,
    waiting: bool,
) -> Condition {
    if let Some(blocked) = &seen.blocked {
        return blocked.condition(READY);
    }
    if input.clusters.is_empty() {
        let message = if seen.missing.is_empty() {
            "no ManagedCluster of this namespace is selected by spec.clusters: create one, or \
             fix the names or the label selector"
                .to_string()
        } else {
            format!(
                "none of the clusters named in spec.clusters.names exists in this namespace \
                 (missing: {}): create them, or fix the names",
                seen.missing.join(", ")
            )
        };
        return Condition::unmet(READY, "NoClustersSelected", message);
    }
    if !seen.missing.is_empty() {
        return Condition::unmet(
            READY,
            "ClustersNotFound",
            format!(
                "spec.clusters.names lists clusters that are no ManagedCluster of this namespace: \
                 {}; the other {} cluster(s) are backed up",
                seen.missing.join(", "),
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
