//! The pure decisions of a RestoreDrill reconcile: whether drills are due (once, on the
//! schedule, or asked for with the run-now annotation), which clusters start now from which
//! backup, which wait and why, which drills were cut short, the status that says so, and when
//! to look again.
//!
//! A one-time drill (no schedule) drills each selected cluster once; a cluster selected later
//! is drilled when it appears. A scheduled drill drills every selected cluster at each firing
//! (missed firings are one drill). A drill recorded `InProgress` that no task of this process
//! runs was cut short (the controller stopped or lost its lease): it ends `Failed`, and its
//! scratch namespaces are cleaned up as its policy says.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use backup_api::restore_drill::{
    ClusterDrill, DrillCleanup, DrillPhase, DrillResult, RestoreDrillStatus, ValidRestoreDrill,
    ValidTarget,
};
use backup_api::status::{Condition, merge_conditions};
use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::reconcile::Blocked;

/// The condition that says whether runs can start.
pub const READY: &str = "Ready";
/// The condition that says whether every selected cluster's newest drill verified.
pub const PROVEN: &str = "Proven";
/// Longest drill name kept whole in its restores' names: a restore's name is also a label
/// value (at most 63 characters) on everything it restores.
const NAME_KEPT: usize = 47;

/// What the reconcile knows.
pub struct PlanInput<'a> {
    /// The drill's name.
    pub name: &'a str,
    /// Its generation.
    pub generation: Option<i64>,
    /// Now.
    pub now: Timestamp,
    /// When the object was created (a schedule's first firing comes after it).
    pub created: Timestamp,
    /// The validated spec.
    pub spec: &'a ValidRestoreDrill,
    /// The status as last written.
    pub previous: &'a RestoreDrillStatus,
    /// Why no drill can start (the ClusterBackup, its location or the target is missing).
    pub blocked: Option<Blocked>,
    /// The clusters the spec selects, by name.
    pub selected: &'a BTreeSet<String>,
    /// Each cluster's newest Completed run of the ClusterBackup.
    pub newest_completed: &'a BTreeMap<String, String>,
    /// Whether this process runs drills of this object now.
    pub running_here: bool,
    /// The run-now annotation's token.
    pub run_now: Option<&'a str>,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    /// Clusters to drill now, in order, each with its drill as announced.
    pub start: Vec<(String, DrillResult)>,
    /// Clusters whose drill was cut short: their scratch namespaces may need cleaning up.
    pub interrupted: Vec<DrillResult>,
    /// The status to write.
    pub status: RestoreDrillStatus,
    /// When to look again (the next firing).
    pub requeue_after: Option<Duration>,
    /// Whether clusters wait for a backup or drills are blocked: look again soon.
    pub recheck: bool,
}

impl Plan {
    /// How long until the reconcile looks again: the next firing, or `recheck` at the most
    /// while clusters wait for a backup or drills are blocked; `None`: only on a change.
    pub fn wait(&self, recheck: Duration) -> Option<Duration> {
        match (self.recheck, self.requeue_after) {
            (true, next) => Some(next.map_or(recheck, |n| n.min(recheck))),
            (false, next) => next,
        }
    }
}

/// Decides what a reconcile does.
pub fn plan(input: &PlanInput<'_>) -> Plan {
    let mut plan = Plan::default();
    let mut status = input.previous.clone();
    if !input.running_here {
        plan.interrupted = end_interrupted(&mut status, input.now);
    }
    let run_now = input.run_now.filter(|token| {
        !token.is_empty() && Some(*token) != input.previous.last_run_now_token.as_deref()
    });
    let firing = due_firing(input);
    let mut waiting = Vec::new();
    if input.blocked.is_none() && !input.running_here {
        for cluster in due(input, run_now.is_some() || firing.is_some()) {
            match input.newest_completed.get(cluster) {
                Some(backup) => plan
                    .start
                    .push((cluster.clone(), announced(input, cluster, backup))),
                None => waiting.push(cluster.as_str()),
            }
        }
        if !plan.start.is_empty() || waiting.is_empty() {
            status.last_schedule_time = firing.or(status.last_schedule_time);
            status.last_run_now_token = run_now.map(String::from).or(status.last_run_now_token);
        }
    }
    for (cluster, drill) in &plan.start {
        entry(&mut status, cluster).last_drill = Some(drill.clone());
    }
    status.clusters.retain(|c| input.selected.contains(&c.name));
    let next = next_firing(input);
    status.next_schedule_time = next;
    status.observed_generation = input.generation;
    let conditions = vec![
        ready(input, &waiting, next),
        proven(&status, input.selected),
    ];
    status.conditions = merge_conditions(
        &input.previous.conditions,
        conditions
            .into_iter()
            .map(|c| c.at(input.now, input.generation))
            .collect(),
    );
    plan.requeue_after = next.map(|at| wait_until(input.now, at));
    plan.recheck = input.blocked.is_some() || !waiting.is_empty();
    plan.status = status;
    plan
}

/// The status of a RestoreDrill whose spec is invalid: `Ready` says which field to fix, no
/// firing is scheduled, and what the drills found stays.
pub fn invalid_spec(
    previous: &RestoreDrillStatus,
    problem: String,
    now: Timestamp,
    generation: Option<i64>,
) -> RestoreDrillStatus {
    let invalid = Condition::unmet(READY, "InvalidSpec", problem).at(now, generation);
    RestoreDrillStatus {
        observed_generation: generation,
        next_schedule_time: None,
        conditions: merge_conditions(&previous.conditions, vec![invalid]),
        ..previous.clone()
    }
}

/// The clusters due: every selected one when asked for or fired; else, for a one-time drill,
/// those never drilled.
fn due<'a>(input: &PlanInput<'a>, fired: bool) -> Vec<&'a String> {
    match (fired, &input.spec.schedule) {
        (true, _) => input.selected.iter().collect(),
        (false, None) => input
            .selected
            .iter()
            .filter(|c| !drilled(input.previous, c))
            .collect(),
        (false, Some(_)) => Vec::new(),
    }
}

/// The drill of `cluster` as it starts.
fn announced(input: &PlanInput<'_>, cluster: &str, backup: &str) -> DrillResult {
    DrillResult {
        backup_name: backup.to_string(),
        restore_name: restore_name(input.name, input.now),
        target_cluster: match &input.spec.target {
            ValidTarget::Cluster(target) => target.clone(),
            ValidTarget::SameCluster { .. } => cluster.to_string(),
        },
        start_time: Some(input.now),
        phase: DrillPhase::InProgress,
        ..DrillResult::default()
    }
}

/// The name of a drill's restores (one per drilled cluster, each in that cluster's scope of the
/// location): `<drill>-<UTC time to the second>`.
pub fn restore_name(drill: &str, at: Timestamp) -> String {
    let kept = match drill.char_indices().nth(NAME_KEPT) {
        Some((cut, _)) => drill[..cut].trim_end_matches(['-', '.']),
        None => drill,
    };
    format!("{kept}-{}", at.strftime("%Y%m%d%H%M%S"))
}

/// Marks every drill recorded `InProgress` as `Failed` (no task of this process runs it) and
/// returns them.
fn end_interrupted(status: &mut RestoreDrillStatus, now: Timestamp) -> Vec<DrillResult> {
    let mut ended = Vec::new();
    for cluster in &mut status.clusters {
        if let Some(drill) = cluster.last_drill.as_mut()
            && drill.phase == DrillPhase::InProgress
        {
            drill.phase = DrillPhase::Failed;
            drill.completion_time = Some(now);
            drill.message = "interrupted: the controller stopped or lost its lease during the \
                             drill; it runs again at the next firing (or with a new run-now token)"
                .into();
            ended.push(drill.clone());
        }
    }
    ended
}

/// The entry of `cluster`, added (in name order) when missing.
pub fn entry<'s>(status: &'s mut RestoreDrillStatus, cluster: &str) -> &'s mut ClusterDrill {
    let at = match status
        .clusters
        .binary_search_by(|c| c.name.as_str().cmp(cluster))
    {
        Ok(at) => at,
        Err(at) => {
            status.clusters.insert(
                at,
                ClusterDrill {
                    name: cluster.to_string(),
                    ..ClusterDrill::default()
                },
            );
            at
        }
    };
    &mut status.clusters[at]
}

/// Records how `cluster`'s drill ended: a verified one also proves its backup restorable.
pub fn record_end(status: &mut RestoreDrillStatus, cluster: &str, drill: DrillResult) {
    let entry = entry(status, cluster);
    if drill.phase == DrillPhase::Verified
        && let Some(time) = drill.completion_time
    {
        entry.last_proven_restorable = Some(backup_api::restore_drill::ProvenRestorable {
            backup_name: drill.backup_name.clone(),
            time,
        });
    }
    entry.last_drill = Some(drill);
}

/// Whether the scratch namespaces of a drill that ended in `phase` are deleted.
pub fn cleans_up(cleanup: DrillCleanup, phase: DrillPhase) -> bool {
    match cleanup {
        DrillCleanup::Always => true,
        DrillCleanup::OnSuccess => phase == DrillPhase::Verified,
        DrillCleanup::Never => false,
    }
}

/// `Ready`: why drills cannot start, else what is drilled when, and who waits for a backup.
fn ready(input: &PlanInput<'_>, waiting: &[&str], next: Option<Timestamp>) -> Condition {
    if let Some(blocked) = &input.blocked {
        return blocked.condition(READY);
    }
    if input.selected.is_empty() {
        return Condition::unmet(
            READY,
            "NoClustersSelected",
            "no ManagedCluster of this namespace is selected by spec.clusters: create one, or fix \
             the names or the label selector",
        );
    }
    let when = match next {
        Some(next) => format!("next drill at {next}"),
        None => "one-time drill".to_string(),
    };
    let mut message = format!("{} cluster(s) selected; {when}", input.selected.len());
    if !waiting.is_empty() {
        message.push_str(&format!(
            "; waiting for a Completed run of ClusterBackup {} on: {}",
            input.spec.cluster_backup,
            waiting.join(", ")
        ));
    }
    Condition::met(READY, "Ready", message)
}

/// `Proven`: true when every selected cluster's newest drill verified.
pub fn proven(status: &RestoreDrillStatus, selected: &BTreeSet<String>) -> Condition {
    let phase_of = |cluster: &str| {
        status
            .clusters
            .iter()
            .find(|c| c.name == cluster)
            .and_then(|c| c.last_drill.as_ref())
            .map(|d| d.phase)
    };
    let failed: Vec<&str> = selected
        .iter()
        .filter(|c| {
            matches!(
                phase_of(c),
                Some(DrillPhase::Failed | DrillPhase::Mismatched)
            )
        })
        .map(String::as_str)
        .collect();
    let unproven: Vec<&str> = selected
        .iter()
        .filter(|c| !matches!(phase_of(c), Some(DrillPhase::Verified)))
        .map(String::as_str)
        .collect();
    if !failed.is_empty() {
        Condition::unmet(
            PROVEN,
            "DrillFailed",
            format!(
                "the newest drill of {} did not verify: see status.clusters[].lastDrill",
                failed.join(", ")
            ),
        )
    } else if selected.is_empty() || !unproven.is_empty() {
        Condition::unmet(
            PROVEN,
            "NotYetProven",
            format!("not drilled to the end yet: {}", unproven.join(", ")),
        )
    } else {
        Condition::met(
            PROVEN,
            "Verified",
            format!(
                "the newest drill of every selected cluster ({}) verified",
                selected.len()
            ),
        )
    }
}

/// The newest firing of the schedule after the last one served and at or before now.
fn due_firing(input: &PlanInput<'_>) -> Option<Timestamp> {
    let schedule = input.spec.schedule.as_ref()?;
    let mut after = input.previous.last_schedule_time.unwrap_or(input.created);
    let mut due = None;
    // Missed firings are one drill, not many: the newest is served.
    for _ in 0..10_000 {
        match schedule.next_after(after, &TimeZone::UTC) {
            Some(at) if at <= input.now => {
                due = Some(at);
                after = at;
            }
            _ => break,
        }
    }
    due
}

fn next_firing(input: &PlanInput<'_>) -> Option<Timestamp> {
    input
        .spec
        .schedule
        .as_ref()
        .and_then(|s| s.next_after(input.now, &TimeZone::UTC))
}

fn wait_until(now: Timestamp, at: Timestamp) -> Duration {
    let seconds = at.duration_since(now).as_secs_f64().max(0.0);
    Duration::from_secs_f64(seconds).max(Duration::from_millis(100))
}

/// Whether `cluster` has been drilled before.
fn drilled(previous: &RestoreDrillStatus, cluster: &str) -> bool {
    previous
        .clusters
        .iter()
        .any(|c| c.name == cluster && c.last_drill.is_some())
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
