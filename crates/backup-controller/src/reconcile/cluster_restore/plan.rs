//! The pure decision of a ClusterRestore reconcile: from the spec, the previous status and
//! whether this process runs the restore, what to write and whether to start it.
//!
//! A ClusterRestore starts at most once. Its status records the generation it started from;
//! from then on only its runs change it. A restore found unfinished and not running here was
//! interrupted (controller restart, lost lease): its unfinished clusters end `Failed`, as
//! Velero does with restores its server was running when it stopped.

use jiff::Timestamp;

use backup_api::cluster_restore::{
    ClusterRestoreResult, ClusterRestoreStatus, READY, ValidClusterRestore, aggregate_phase,
    fail_unfinished, restore_name, was_started,
};
use backup_api::status::{Condition, merge_conditions};
use backup_api::{FleetPhase, InvalidField};

/// The condition saying a finished restore was edited and will not run again.
pub const IMMUTABLE: &str = "Immutable";

/// The message of clusters whose restore was interrupted.
pub const INTERRUPTED: &str = "interrupted: the controller stopped (restart or lost leadership) \
    while this restore ran; objects restored so far stay in the cluster. Create a new \
    ClusterRestore (with existingResourcePolicy: update to overwrite what was restored) to \
    finish it";

/// What the reconcile knows.
pub struct PlanInput<'a> {
    /// The object's generation.
    pub generation: Option<i64>,
    /// Now.
    pub now: Timestamp,
    /// The validated spec, or the field to fix.
    pub spec: &'a Result<ValidClusterRestore, InvalidField>,
    /// The status as last written.
    pub previous: &'a ClusterRestoreStatus,
    /// Whether this process claimed the restore (it runs, or its final status is not yet
    /// seen in the cache).
    pub running_here: bool,
}

/// What to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Nothing to write or start.
    Nothing,
    /// Write this status; start nothing.
    Write(ClusterRestoreStatus),
    /// Resolve the source and the targets, then start.
    Start,
    /// The cache shows the final status this process wrote: release the claim.
    Release,
}

/// Decides what a reconcile does.
pub fn plan(input: &PlanInput<'_>) -> Decision {
    let previous = input.previous;
    if input.running_here {
        // The claim is held until the cache shows the final status: released earlier, a
        // reconcile on a view from before the start would start the restore again, and one
        // on a view from before the end would call it interrupted.
        return if previous.completion_timestamp.is_some() {
            Decision::Release
        } else {
            Decision::Nothing
        };
    }
    if was_started(previous) {
        let mut status = previous.clone();
        status.observed_generation = input.generation;
        if status.phase == Some(FleetPhase::InProgress)
            || status.clusters.iter().any(|c| !c.phase.is_terminal())
        {
            fail_unfinished(&mut status, INTERRUPTED, input.now);
        }
        let mut conditions: Vec<Condition> = previous
            .conditions
            .iter()
            .filter(|c| c.type_ != IMMUTABLE)
            .cloned()
            .collect();
        if let (Some(started), Some(now)) = (previous.started_generation, input.generation)
            && now > started
        {
            conditions.push(
                Condition::met(
                    IMMUTABLE,
                    "RestoreAlreadyStarted",
                    format!(
                        "this restore started from generation {started}; edits (now generation \
                         {now}) do not run it again: create a new ClusterRestore to restore with \
                         the new spec"
                    ),
                )
                .at(input.now, input.generation),
            );
        }
        status.conditions = merge_conditions(&previous.conditions, conditions);
        return if status == *previous {
            Decision::Nothing
        } else {
            Decision::Write(status)
        };
    }
    match input.spec {
        Ok(_) => Decision::Start,
        Err(field) => Decision::Write(blocked(
            previous,
            input.generation,
            input.now,
            "InvalidSpec",
            field.to_string(),
        )),
    }
}

/// `previous` with `Ready=False` for `reason`: the restore cannot start until it is fixed.
pub fn blocked(
    previous: &ClusterRestoreStatus,
    generation: Option<i64>,
    now: Timestamp,
    reason: &str,
    message: String,
) -> ClusterRestoreStatus {
    let mut status = previous.clone();
    status.observed_generation = generation;
    status.conditions = merge_conditions(
        &previous.conditions,
        vec![Condition::unmet(READY, reason, message).at(now, generation)],
    );
    status
}

/// The status announcing a restore about to start: every target `New`.
pub fn started(
    name: &str,
    generation: Option<i64>,
    now: Timestamp,
    spec: &ValidClusterRestore,
    location: &str,
    backup: &str,
    previous: &ClusterRestoreStatus,
) -> ClusterRestoreStatus {
    let clusters: Vec<ClusterRestoreResult> = spec
        .targets
        .iter()
        .map(|target| ClusterRestoreResult {
            cluster: target.clone(),
            restore_name: restore_name(name, target),
            ..ClusterRestoreResult::default()
        })
        .collect();
    let verb = if spec.template.dry_run {
        "planning (dry run) the restore of"
    } else {
        "restoring"
    };
    ClusterRestoreStatus {
        phase: aggregate_phase(&clusters),
        observed_generation: generation,
        started_generation: generation,
        storage_location: Some(location.to_string()),
        backup_name: Some(backup.to_string()),
        start_timestamp: Some(now),
        completion_timestamp: None,
        conditions: merge_conditions(
            &previous.conditions,
            vec![
                Condition::met(
                    READY,
                    "Started",
                    format!(
                        "{verb} backup {backup} of cluster {} from location {location} into {}",
                        spec.source_cluster,
                        spec.targets.join(", ")
                    ),
                )
                .at(now, generation),
            ],
        ),
        clusters,
    }
}

#[cfg(test)]
mod tests {
    use backup_core::Phase;

    use super::*;
    use backup_api::ClusterRestoreSpec;
    use backup_api::status::find;

    fn now() -> Timestamp {
        "2026-11-30T10:00:00Z".parse().unwrap()
    }

    fn valid() -> Result<ValidClusterRestore, InvalidField> {
        serde_json::from_value::<ClusterRestoreSpec>(serde_json::json!({
            "source": {"cluster": "c1", "clusterBackup": "nightly"},
            "targetClusters": ["c2", "c3"],
        }))
        .unwrap()
        .validate()
    }

    fn input<'a>(
        spec: &'a Result<ValidClusterRestore, InvalidField>,
        previous: &'a ClusterRestoreStatus,
        generation: i64,
        running_here: bool,
    ) -> PlanInput<'a> {
        PlanInput {
            generation: Some(generation),
            now: now(),
            spec,
            previous,
            running_here,
        }
    }

    fn started_status() -> ClusterRestoreStatus {
        let spec = valid().unwrap();
        started(
            "dr",
            Some(1),
            now(),
            &spec,
            "main",
            "nightly-20261130020000",
            &ClusterRestoreStatus::default(),
        )
    }

    #[test]
    fn a_new_valid_restore_starts() {
        let spec = valid();
        let previous = ClusterRestoreStatus::default();
        assert_eq!(plan(&input(&spec, &previous, 1, false)), Decision::Start);
    }

    #[test]
    fn an_invalid_spec_is_a_condition_naming_the_field_and_nothing_starts() {
        let spec = Err(InvalidField::new("spec.source", "name the backup"));
        let previous = ClusterRestoreStatus::default();
        let Decision::Write(status) = plan(&input(&spec, &previous, 3, false)) else {
            panic!("expected a status write");
        };
        let ready = find(&status.conditions, READY).unwrap();
        assert!(!ready.is_true());
        assert_eq!(ready.reason, "InvalidSpec");
        assert_eq!(ready.message, "spec.source: name the backup");
        assert_eq!(status.observed_generation, Some(3));
        assert!(status.clusters.is_empty() && status.started_generation.is_none());
    }

    #[test]
    fn the_start_announces_every_target_new_with_its_own_restore_name() {
        let status = started_status();
        assert_eq!(status.phase, Some(FleetPhase::InProgress));
        assert_eq!(status.started_generation, Some(1));
        assert_eq!(
            status.backup_name.as_deref(),
            Some("nightly-20261130020000")
        );
        let names: Vec<_> = status
            .clusters
            .iter()
            .map(|c| (c.cluster.as_str(), c.restore_name.as_str(), c.phase))
            .collect();
        assert_eq!(
            names,
            [("c2", "dr-c2", Phase::New), ("c3", "dr-c3", Phase::New)]
        );
        let ready = find(&status.conditions, READY).unwrap();
        assert!(ready.is_true());
        assert!(ready.message.contains("into c2, c3"), "{}", ready.message);
    }

    #[test]
    fn while_it_runs_here_the_reconcile_writes_nothing_and_releases_once_the_end_is_seen() {
        let spec = valid();
        // A cache behind the start, or showing the restore under way: nothing is decided
        // (not a second start, not "interrupted").
        for previous in [ClusterRestoreStatus::default(), started_status()] {
            assert_eq!(plan(&input(&spec, &previous, 1, true)), Decision::Nothing);
        }
        let mut ended = started_status();
        ended.phase = Some(FleetPhase::Completed);
        ended.completion_timestamp = Some(now());
        assert_eq!(plan(&input(&spec, &ended, 1, true)), Decision::Release);
    }

    #[test]
    fn an_unfinished_restore_not_running_here_was_interrupted_and_fails() {
        let spec = valid();
        let mut previous = started_status();
        previous.clusters[0].phase = Phase::Completed;
        previous.clusters[1].phase = Phase::InProgress;
        let Decision::Write(status) = plan(&input(&spec, &previous, 1, false)) else {
            panic!("expected a status write");
        };
        assert_eq!(status.clusters[0].phase, Phase::Completed);
        assert_eq!(status.clusters[1].phase, Phase::Failed);
        assert_eq!(status.clusters[1].message.as_deref(), Some(INTERRUPTED));
        assert_eq!(status.phase, Some(FleetPhase::PartiallyFailed));
        assert_eq!(status.completion_timestamp, Some(now()));
        // It never starts again.
        assert_eq!(plan(&input(&spec, &status, 1, false)), Decision::Nothing);
    }

    #[test]
    fn a_finished_restore_is_never_rerun_and_an_edit_is_answered_with_a_condition() {
        let spec = valid();
        let mut previous = started_status();
        for c in &mut previous.clusters {
            c.phase = Phase::Completed;
        }
        previous.phase = aggregate_phase(&previous.clusters);
        assert_eq!(plan(&input(&spec, &previous, 1, false)), Decision::Nothing);
        let Decision::Write(status) = plan(&input(&spec, &previous, 2, false)) else {
            panic!("expected a status write");
        };
        let immutable = find(&status.conditions, IMMUTABLE).unwrap();
        assert!(immutable.is_true());
        assert!(immutable.message.contains("create a new ClusterRestore"));
        assert_eq!(status.clusters, previous.clusters);
        assert_eq!(status.phase, Some(FleetPhase::Completed));
        // Even an edit that makes the spec invalid does not touch a finished restore's record.
        let invalid = Err(InvalidField::new("spec.source", "x"));
        let Decision::Write(again) = plan(&input(&invalid, &status, 3, false)) else {
            panic!("expected a status write for the new generation");
        };
        assert!(find(&again.conditions, READY).unwrap().is_true());
    }
}
