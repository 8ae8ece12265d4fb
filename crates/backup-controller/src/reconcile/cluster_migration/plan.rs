//! The pure decision of a ClusterMigration reconcile: from its spec, its status and its two
//! children as read, which child to create, what the status says and whether to announce the
//! end.
//!
//! - The one-time ClusterBackup of the source is created when missing.
//! - The ClusterRestore of its backup is created only once the source's backup run completed:
//!   a partial backup would migrate part of the application.
//! - A child's name taken by an object the migration does not control stops it, with a
//!   condition saying so (it carries out its stages under its own name).
//! - The status gathers both children's ([`gather`]); an Event says how the migration ended
//!   when its phase becomes final.

use jiff::Timestamp;
use kube::{Resource, ResourceExt};

use backup_api::cluster_migration::{
    ClusterMigrationSpec, ClusterMigrationStatus, MigrationStage, MigrationTarget,
    ValidClusterMigration,
};
use backup_api::cluster_restore::READY;
use backup_api::status::{Condition, find, merge_conditions};
use backup_api::{
    ClusterBackupSpec, ClusterBackupStatus, ClusterRestoreSpec, ClusterRestoreStatus,
    ClusterSelection, DeletePolicy, FleetPhase, InvalidField, RestoreSource, RunStatus,
};
use backup_core::{Phase, RestoreOptions};

/// A child of the migration (named like it), as read.
#[derive(Debug, Clone, PartialEq)]
pub enum Child<K> {
    /// It exists and the migration controls it.
    Owned(K),
    /// It does not exist.
    Missing,
    /// Something else of that name exists.
    Foreign,
}

impl<K: Resource> Child<K> {
    /// `found`, the object of the child's name if any, judged by its controlling owner: the
    /// migration of uid `owner`, or another.
    pub fn of(found: Option<K>, owner: Option<&str>) -> Self {
        match found {
            None => Child::Missing,
            Some(child)
                if child
                    .owner_references()
                    .iter()
                    .any(|o| o.controller == Some(true) && Some(o.uid.as_str()) == owner) =>
            {
                Child::Owned(child)
            }
            Some(_) => Child::Foreign,
        }
    }
}

impl<K> Child<K> {
    /// The same child, with `f` of it when it is ours.
    pub fn map<'a, T>(&'a self, f: impl FnOnce(&'a K) -> T) -> Child<T> {
        match self {
            Child::Owned(child) => Child::Owned(f(child)),
            Child::Missing => Child::Missing,
            Child::Foreign => Child::Foreign,
        }
    }

    /// The child, when it is ours.
    pub fn owned(&self) -> Option<&K> {
        match self {
            Child::Owned(child) => Some(child),
            Child::Missing | Child::Foreign => None,
        }
    }
}

/// Everything the decision depends on.
pub struct PlanInput<'a> {
    /// The migration's name (its children's).
    pub name: &'a str,
    /// Its generation.
    pub generation: Option<i64>,
    /// Now.
    pub now: Timestamp,
    /// Its spec (the children copy its template, location, mapping and policy).
    pub spec: &'a ClusterMigrationSpec,
    /// Its checked spec.
    pub valid: &'a ValidClusterMigration,
    /// Its status as last written.
    pub previous: &'a ClusterMigrationStatus,
    /// The child ClusterBackup, by its status (`None` until it has one).
    pub backup: Child<Option<&'a ClusterBackupStatus>>,
    /// The child ClusterRestore, by its status (`None` until it has one).
    pub restore: Child<Option<&'a ClusterRestoreStatus>>,
}

/// An Event to send about the migration.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Whether it is a warning.
    pub warning: bool,
    /// CamelCase reason.
    pub reason: String,
    /// The note.
    pub message: String,
}

/// What the reconcile does, in this order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    /// Create the ClusterBackup of the source with this spec.
    pub create_backup: Option<ClusterBackupSpec>,
    /// Create the ClusterRestore of its backup with this spec.
    pub create_restore: Option<ClusterRestoreSpec>,
    /// Announce how the migration ended.
    pub event: Option<Event>,
    /// Write this status; `None` when it did not change.
    pub status: Option<ClusterMigrationStatus>,
}

/// The status of a migration whose spec is invalid (`field` says what to fix); `None` when
/// the status already says so.
pub fn invalid(
    previous: &ClusterMigrationStatus,
    generation: Option<i64>,
    now: Timestamp,
    field: &InvalidField,
) -> Option<ClusterMigrationStatus> {
    let ready = Condition::unmet(READY, "InvalidSpec", field.to_string()).at(now, generation);
    changed(previous, with_ready(previous, generation, ready))
}

/// Decides what a reconcile of a migration with a valid spec does.
pub fn plan(input: &PlanInput<'_>) -> Plan {
    let create_backup = matches!(input.backup, Child::Missing).then(|| backup_spec(input));
    if let Child::Foreign = input.backup {
        return name_taken(input, "ClusterBackup", None);
    }
    let backup = input.backup.owned().copied().flatten();
    let create_restore = (matches!(input.restore, Child::Missing)
        && backup_completed(backup, &input.valid.source))
    .then(|| restore_spec(input));
    if let Child::Foreign = input.restore {
        return name_taken(input, "ClusterRestore", create_backup);
    }
    let restore = input.restore.owned().copied().flatten();
    let status = gather(input, backup, restore);
    Plan {
        create_backup,
        create_restore,
        event: ended(input, &status),
        status: changed(input.previous, status),
    }
}

/// `status`, when it differs from `previous`.
fn changed(
    previous: &ClusterMigrationStatus,
    status: ClusterMigrationStatus,
) -> Option<ClusterMigrationStatus> {
    (status != *previous).then_some(status)
}

/// `previous` with `ready` as its `Ready` condition.
fn with_ready(
    previous: &ClusterMigrationStatus,
    generation: Option<i64>,
    ready: Condition,
) -> ClusterMigrationStatus {
    ClusterMigrationStatus {
        observed_generation: generation,
        conditions: merge_conditions(&previous.conditions, vec![ready]),
        ..previous.clone()
    }
}

/// The child `kind` cannot be made: its name is taken. `create_backup` still happens.
fn name_taken(input: &PlanInput<'_>, kind: &str, create_backup: Option<ClusterBackupSpec>) -> Plan {
    let name = input.name;
    let ready = Condition::unmet(
        READY,
        "NameTaken",
        format!(
            "a {kind} named {name} exists and does not belong to this migration, which \
             carries out its stages under its own name: rename the migration or remove that \
             {kind}"
        ),
    )
    .at(input.now, input.generation);
    Plan {
        create_backup,
        status: changed(
            input.previous,
            with_ready(input.previous, input.generation, ready),
        ),
        ..Plan::default()
    }
}

/// The one-time backup of the source: the migration's template, deleted with it from storage.
fn backup_spec(input: &PlanInput<'_>) -> ClusterBackupSpec {
    ClusterBackupSpec {
        clusters: Some(ClusterSelection {
            selector: None,
            names: vec![input.valid.source.clone()],
        }),
        storage_location: input.spec.storage_location.clone(),
        template: input.spec.template.clone(),
        delete_policy: DeletePolicy::Delete,
        max_concurrent_clusters: Some(1),
        ..ClusterBackupSpec::default()
    }
}

/// The restore of the migration's backup (named like it) into the targets.
fn restore_spec(input: &PlanInput<'_>) -> ClusterRestoreSpec {
    ClusterRestoreSpec {
        source: RestoreSource {
            cluster: input.valid.source.clone(),
            backup_name: Some(input.name.to_string()),
            cluster_backup: None,
            storage_location: input.spec.storage_location.clone(),
        },
        target_clusters: input.valid.targets.clone(),
        options: RestoreOptions {
            namespace_mapping: input.spec.namespace_mapping.clone(),
            existing_resource_policy: input.spec.existing_resource_policy,
            ..RestoreOptions::default()
        },
        ..ClusterRestoreSpec::default()
    }
}

/// The source's backup run, as its ClusterBackup's status shows it.
fn source_run(backup: Option<&ClusterBackupStatus>, source: &str) -> Option<RunStatus> {
    backup
        .and_then(|b| b.clusters.iter().find(|c| c.cluster == source))
        .and_then(|c| c.last_backup.clone())
}

/// Whether the source's backup run completed.
fn backup_completed(backup: Option<&ClusterBackupStatus>, source: &str) -> bool {
    source_run(backup, source).is_some_and(|run| run.phase == Phase::Completed)
}

/// The Event announcing the end, when the migration's phase just became final.
fn ended(input: &PlanInput<'_>, status: &ClusterMigrationStatus) -> Option<Event> {
    let phase @ (FleetPhase::Completed | FleetPhase::PartiallyFailed | FleetPhase::Failed) =
        status.phase?
    else {
        return None;
    };
    (input.previous.phase != Some(phase)).then(|| Event {
        warning: phase != FleetPhase::Completed,
        reason: format!("Migration{phase:?}"),
        message: format!(
            "migration of {} into {}: {phase:?}",
            input.valid.source,
            input.valid.targets.join(", ")
        ),
    })
}

/// The migration's status from its children's: `backup` and `restore`.
pub fn gather(
    input: &PlanInput<'_>,
    backup: Option<&ClusterBackupStatus>,
    restore: Option<&ClusterRestoreStatus>,
) -> ClusterMigrationStatus {
    let run = source_run(backup, &input.valid.source);
    let backup_phase = run.as_ref().map_or(Phase::New, |r| r.phase);
    let (stage, phase) = stage(run.as_ref(), restore.and_then(|r| r.phase));
    let clusters = input
        .valid
        .targets
        .iter()
        .map(|target| MigrationTarget {
            cluster: target.clone(),
            backup_phase,
            restore: restore
                .and_then(|r| r.clusters.iter().find(|c| c.cluster == *target))
                .cloned(),
        })
        .collect();
    let ready = ready(input, backup, restore, run.as_ref(), stage).at(input.now, input.generation);
    ClusterMigrationStatus {
        phase: Some(phase),
        stage: Some(stage),
        observed_generation: input.generation,
        backup: run,
        clusters,
        conditions: merge_conditions(&input.previous.conditions, vec![ready]),
    }
}

/// Whether the source's backup `run` ended without completing.
fn backup_failed(run: Option<&RunStatus>) -> bool {
    run.is_some_and(|r| r.phase.is_terminal() && r.phase != Phase::Completed)
}

/// The stage and phase of a migration whose source's backup is `run` and whose restore is in
/// `restore_phase`: the restore's, once there is one; else the backup's.
fn stage(
    run: Option<&RunStatus>,
    restore_phase: Option<FleetPhase>,
) -> (MigrationStage, FleetPhase) {
    match (restore_phase, run.map(|r| r.phase)) {
        (
            Some(p @ (FleetPhase::Completed | FleetPhase::PartiallyFailed | FleetPhase::Failed)),
            _,
        ) => (MigrationStage::Done, p),
        (Some(_), _) => (MigrationStage::Restore, FleetPhase::InProgress),
        (None, _) if backup_failed(run) => (MigrationStage::Done, FleetPhase::Failed),
        (None, Some(Phase::Completed)) => (MigrationStage::Restore, FleetPhase::InProgress),
        (None, None) => (MigrationStage::Backup, FleetPhase::New),
        (None, Some(_)) => (MigrationStage::Backup, FleetPhase::InProgress),
    }
}

/// `Ready`: the first child that cannot go on says why, else the stages' own story.
fn ready(
    input: &PlanInput<'_>,
    backup: Option<&ClusterBackupStatus>,
    restore: Option<&ClusterRestoreStatus>,
    run: Option<&RunStatus>,
    stage: MigrationStage,
) -> Condition {
    let child_problem = |kind: &str, conditions: Option<&Vec<Condition>>| {
        conditions
            .and_then(|c| find(c, READY))
            .filter(|c| !c.is_true())
            .map(|c| {
                Condition::unmet(
                    READY,
                    &c.reason,
                    format!("{kind} {}: {}", input.name, c.message),
                )
            })
    };
    child_problem("ClusterBackup", backup.map(|b| &b.conditions))
        .or_else(|| child_problem("ClusterRestore", restore.map(|r| &r.conditions)))
        .unwrap_or_else(|| stage_story(input, run, stage))
}

/// `Ready` when no child is stuck: the failed backup, else the stage the migration is in.
fn stage_story(input: &PlanInput<'_>, run: Option<&RunStatus>, stage: MigrationStage) -> Condition {
    let (source, name) = (&input.valid.source, input.name);
    match (run.filter(|r| backup_failed(Some(r))), stage) {
        (Some(run), _) => Condition::unmet(
            READY,
            "BackupFailed",
            format!(
                "the backup of {source} ended {}{}, so nothing was restored; delete this \
                 migration and create it again to retry",
                run.phase,
                run.message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            ),
        ),
        (None, MigrationStage::Backup) => Condition::met(
            READY,
            "BackingUp",
            format!("backing up {source} (ClusterBackup {name})"),
        ),
        (None, MigrationStage::Restore) => Condition::met(
            READY,
            "Restoring",
            format!(
                "restoring into {} (ClusterRestore {name})",
                input.valid.targets.join(", ")
            ),
        ),
        (None, MigrationStage::Done) => Condition::met(READY, "Done", "the migration ended"),
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
