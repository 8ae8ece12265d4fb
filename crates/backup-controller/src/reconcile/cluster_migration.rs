//! ClusterMigration: create the one-time ClusterBackup of the source, then, once its run
//! completed, the ClusterRestore of that backup into the targets; gather both into the
//! migration's status ([`compose`], pure).
//!
//! The children carry the migration as their controlling owner, so changes to them wake the
//! migration, and deleting it deletes them (Kubernetes' garbage collector); the migration needs
//! no finalizer of its own.

use std::sync::Arc;

use jiff::Timestamp;
use kube::api::{Api, ObjectMeta, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::write_status;
use crate::context::{Context, FIELD_MANAGER};
use crate::error::{Error, Result};
use backup_api::cluster_migration::{
    ClusterMigration, ClusterMigrationStatus, MigrationStage, MigrationTarget,
    ValidClusterMigration,
};
use backup_api::cluster_restore::READY;
use backup_api::status::{Condition, find, merge_conditions};
use backup_api::{
    ClusterBackup, ClusterBackupSpec, ClusterBackupStatus, ClusterRestore, ClusterRestoreSpec,
    ClusterRestoreStatus, ClusterSelection, DeletePolicy, FleetPhase, RestoreSource,
};

/// The controller's name in metrics.
pub const CONTROLLER: &str = "clustermigration";

/// Reconciles one ClusterMigration.
#[tracing::instrument(name = "reconcile", skip_all, fields(kind = "ClusterMigration", namespace = %migration.metadata.namespace.as_deref().unwrap_or_default(), name = %migration.metadata.name.as_deref().unwrap_or_default()))]
pub async fn reconcile(migration: Arc<ClusterMigration>, ctx: Arc<Context>) -> Result<Action> {
    let started = std::time::Instant::now();
    let result = apply(&migration, &ctx).await;
    ctx.metrics.reconciled(CONTROLLER, started.elapsed());
    result
}

async fn apply(migration: &ClusterMigration, ctx: &Context) -> Result<Action> {
    if migration.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let now = ctx.clock.now();
    let generation = migration.metadata.generation;
    let previous = migration.status.clone().unwrap_or_default();
    let namespace = migration.namespace().unwrap_or_default();
    let name = migration.name_any();

    let valid = match migration.spec.validate() {
        Ok(valid) => valid,
        Err(field) => {
            let status = ClusterMigrationStatus {
                observed_generation: generation,
                conditions: merge_conditions(
                    &previous.conditions,
                    vec![
                        Condition::unmet(READY, "InvalidSpec", field.to_string())
                            .at(now, generation),
                    ],
                ),
                ..previous.clone()
            };
            if status != previous {
                write_status(ctx, migration, &status).await?;
            }
            return Ok(Action::await_change());
        }
    };

    let backups: Api<ClusterBackup> = Api::namespaced(ctx.client.clone(), &namespace);
    let restores: Api<ClusterRestore> = Api::namespaced(ctx.client.clone(), &namespace);
    let backup = match owned_child(migration, &backups, &name).await? {
        Child::Owned(backup) => Some(backup),
        Child::Missing => {
            create_child(migration, &backups, backup_spec(migration, &valid)).await?;
            None
        }
        Child::Foreign => return name_taken(ctx, migration, &previous, "ClusterBackup").await,
    };
    let backup_status = backup.as_ref().and_then(|b| b.status.clone());
    let restore = match owned_child(migration, &restores, &name).await? {
        Child::Owned(restore) => Some(restore),
        Child::Missing if backup_completed(&backup_status, &valid.source) => {
            create_child(migration, &restores, restore_spec(migration, &valid, &name)).await?;
            None
        }
        Child::Missing => None,
        Child::Foreign => return name_taken(ctx, migration, &previous, "ClusterRestore").await,
    };
    let status = compose(&ComposeInput {
        name: &name,
        valid: &valid,
        backup: backup_status.as_ref(),
        restore: restore.as_ref().and_then(|r| r.status.as_ref()),
        previous: &previous,
        now,
        generation,
    });
    if status != previous {
        if status.phase != previous.phase
            && let Some(
                phase @ (FleetPhase::Completed | FleetPhase::PartiallyFailed | FleetPhase::Failed),
            ) = status.phase
        {
            ctx.event(
                &migration.object_ref(&()),
                phase != FleetPhase::Completed,
                &format!("Migration{phase:?}"),
                "Migrate",
                format!(
                    "migration of {} into {}: {phase:?}",
                    valid.source,
                    valid.targets.join(", ")
                ),
            )
            .await;
        }
        write_status(ctx, migration, &status).await?;
    }
    Ok(Action::await_change())
}

/// A child of the migration, by name.
enum Child<K> {
    /// It exists and the migration controls it.
    Owned(K),
    /// It does not exist.
    Missing,
    /// Something else of that name exists.
    Foreign,
}

async fn owned_child<K>(migration: &ClusterMigration, api: &Api<K>, name: &str) -> Result<Child<K>>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let uid = migration.uid();
    match api.get_opt(name).await {
        Ok(None) => Ok(Child::Missing),
        Ok(Some(child)) => {
            let ours = child
                .owner_references()
                .iter()
                .any(|o| o.controller == Some(true) && Some(&o.uid) == uid.as_ref());
            Ok(if ours {
                Child::Owned(child)
            } else {
                Child::Foreign
            })
        }
        Err(e) => Err(Error::kube(format!("reading {name} of the migration"), e)),
    }
}

async fn create_child<K>(
    migration: &ClusterMigration,
    api: &Api<K>,
    spec: impl Serialize,
) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let name = migration.name_any();
    let owner = migration
        .controller_owner_ref(&())
        .map(|o| vec![o])
        .unwrap_or_default();
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": ObjectMeta {
            name: Some(name.clone()),
            owner_references: Some(owner),
            labels: Some([("backupfleet.dev/migration".to_string(), name.clone())].into()),
            ..ObjectMeta::default()
        },
        "spec": spec,
    });
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER),
        &Patch::Apply(&body),
    )
    .await
    .map_err(|e| {
        Error::kube(
            format!("creating {} {name} of the migration", K::kind(&())),
            e,
        )
    })?;
    Ok(())
}

async fn name_taken(
    ctx: &Context,
    migration: &ClusterMigration,
    previous: &ClusterMigrationStatus,
    kind: &str,
) -> Result<Action> {
    let name = migration.name_any();
    let now = ctx.clock.now();
    let generation = migration.metadata.generation;
    let status = ClusterMigrationStatus {
        observed_generation: generation,
        conditions: merge_conditions(
            &previous.conditions,
            vec![
                Condition::unmet(
                    READY,
                    "NameTaken",
                    format!(
                        "a {kind} named {name} exists and does not belong to this migration, \
                         which carries out its stages under its own name: rename the migration \
                         or remove that {kind}"
                    ),
                )
                .at(now, generation),
            ],
        ),
        ..previous.clone()
    };
    if status != *previous {
        write_status(ctx, migration, &status).await?;
    }
    Ok(Action::await_change())
}

/// The one-time backup of the source: the migration's template, deleted with it from storage.
fn backup_spec(migration: &ClusterMigration, valid: &ValidClusterMigration) -> ClusterBackupSpec {
    ClusterBackupSpec {
        clusters: Some(ClusterSelection {
            selector: None,
            names: vec![valid.source.clone()],
        }),
        storage_location: migration.spec.storage_location.clone(),
        template: migration.spec.template.clone(),
        delete_policy: DeletePolicy::Delete,
        max_concurrent_clusters: Some(1),
        ..ClusterBackupSpec::default()
    }
}

/// The restore of the migration's backup (named like it) into the targets.
fn restore_spec(
    migration: &ClusterMigration,
    valid: &ValidClusterMigration,
    backup: &str,
) -> ClusterRestoreSpec {
    ClusterRestoreSpec {
        source: RestoreSource {
            cluster: valid.source.clone(),
            backup_name: Some(backup.to_string()),
            cluster_backup: None,
            storage_location: migration.spec.storage_location.clone(),
        },
        target_clusters: valid.targets.clone(),
        namespace_mapping: migration.spec.namespace_mapping.clone(),
        existing_resource_policy: migration.spec.existing_resource_policy,
        ..ClusterRestoreSpec::default()
    }
}

/// Whether the source's backup run completed (only then is it restored: a partial backup
/// would migrate part of the application).
fn backup_completed(backup: &Option<ClusterBackupStatus>, source: &str) -> bool {
    backup
        .as_ref()
        .and_then(|b| b.clusters.iter().find(|c| c.cluster == source))
        .and_then(|c| c.last_backup.as_ref())
        .is_some_and(|run| run.phase == backup_core::Phase::Completed)
}

/// What [`compose`] reads.
pub struct ComposeInput<'a> {
    /// The migration's name (its children's).
    pub name: &'a str,
    /// Its checked spec.
    pub valid: &'a ValidClusterMigration,
    /// The child ClusterBackup's status.
    pub backup: Option<&'a ClusterBackupStatus>,
    /// The child ClusterRestore's status.
    pub restore: Option<&'a ClusterRestoreStatus>,
    /// The migration's status as last written.
    pub previous: &'a ClusterMigrationStatus,
    /// Now.
    pub now: Timestamp,
    /// The migration's generation.
    pub generation: Option<i64>,
}

/// The migration's status from its children's.
pub fn compose(input: &ComposeInput<'_>) -> ClusterMigrationStatus {
    use backup_core::Phase;
    let run = input
        .backup
        .and_then(|b| b.clusters.iter().find(|c| c.cluster == input.valid.source))
        .and_then(|c| c.last_backup.clone());
    let backup_phase = run.as_ref().map_or(Phase::New, |r| r.phase);
    let backup_failed = backup_phase.is_terminal() && backup_phase != Phase::Completed;
    let restore_phase = input.restore.and_then(|r| r.phase);
    let (stage, phase) = match (restore_phase, backup_failed) {
        (
            Some(p @ (FleetPhase::Completed | FleetPhase::PartiallyFailed | FleetPhase::Failed)),
            _,
        ) => (MigrationStage::Done, p),
        (Some(_), _) => (MigrationStage::Restore, FleetPhase::InProgress),
        (None, true) => (MigrationStage::Done, FleetPhase::Failed),
        (None, false) if backup_phase == Phase::Completed => {
            (MigrationStage::Restore, FleetPhase::InProgress)
        }
        (None, false) if run.is_none() => (MigrationStage::Backup, FleetPhase::New),
        (None, false) => (MigrationStage::Backup, FleetPhase::InProgress),
    };
    let clusters = input
        .valid
        .targets
        .iter()
        .map(|target| MigrationTarget {
            cluster: target.clone(),
            backup_phase,
            restore: input
                .restore
                .and_then(|r| r.clusters.iter().find(|c| c.cluster == *target))
                .cloned(),
        })
        .collect();

    // Ready: the first child that cannot go on says why, else the stages' own story.
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
    let ready = child_problem("ClusterBackup", input.backup.map(|b| &b.conditions))
        .or_else(|| child_problem("ClusterRestore", input.restore.map(|r| &r.conditions)))
        .unwrap_or_else(|| match (backup_failed, stage) {
            (true, _) => Condition::unmet(
                READY,
                "BackupFailed",
                format!(
                    "the backup of {} ended {backup_phase}{}, so nothing was restored; delete \
                     this migration and create it again to retry",
                    input.valid.source,
                    run.as_ref()
                        .and_then(|r| r.message.as_deref())
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                ),
            ),
            (false, MigrationStage::Backup) => Condition::met(
                READY,
                "BackingUp",
                format!(
                    "backing up {} (ClusterBackup {})",
                    input.valid.source, input.name
                ),
            ),
            (false, MigrationStage::Restore) => Condition::met(
                READY,
                "Restoring",
                format!(
                    "restoring into {} (ClusterRestore {})",
                    input.valid.targets.join(", "),
                    input.name
                ),
            ),
            (false, MigrationStage::Done) => Condition::met(READY, "Done", "the migration ended"),
        })
        .at(input.now, input.generation);

    ClusterMigrationStatus {
        phase: Some(phase),
        stage: Some(stage),
        observed_generation: input.generation,
        backup: run,
        clusters,
        conditions: merge_conditions(&input.previous.conditions, vec![ready]),
    }
}

#[cfg(test)]
mod tests {
    use backup_core::Phase;

    use super::*;
    use backup_api::cluster_restore::ClusterRestoreResult;
    use backup_api::{ClusterRuns, RunStatus};

    fn valid() -> ValidClusterMigration {
        ValidClusterMigration {
            source: "c1".into(),
            targets: vec!["c2".into(), "c3".into()],
        }
    }

    fn backup(phase: Phase) -> ClusterBackupStatus {
        ClusterBackupStatus {
            clusters: vec![ClusterRuns {
                cluster: "c1".into(),
                last_backup: Some(RunStatus {
                    name: "mig".into(),
                    phase,
                    message: (phase == Phase::Failed).then(|| "cluster unreachable".into()),
                    ..RunStatus::default()
                }),
                ..ClusterRuns::default()
            }],
            ..ClusterBackupStatus::default()
        }
    }

    fn restore(phases: [Phase; 2]) -> ClusterRestoreStatus {
        let clusters: Vec<ClusterRestoreResult> = ["c2", "c3"]
            .iter()
            .zip(phases)
            .map(|(c, phase)| ClusterRestoreResult {
                cluster: c.to_string(),
                restore_name: format!("mig-{c}"),
                phase,
                ..ClusterRestoreResult::default()
            })
            .collect();
        ClusterRestoreStatus {
            phase: backup_api::cluster_restore::aggregate_phase(&clusters),
            clusters,
            ..ClusterRestoreStatus::default()
        }
    }

    fn compose_with(
        backup: Option<&ClusterBackupStatus>,
        restore: Option<&ClusterRestoreStatus>,
    ) -> ClusterMigrationStatus {
        compose(&ComposeInput {
            name: "mig",
            valid: &valid(),
            backup,
            restore,
            previous: &ClusterMigrationStatus::default(),
            now: "2026-11-30T10:00:00Z".parse().unwrap(),
            generation: Some(1),
        })
    }

    fn ready(status: &ClusterMigrationStatus) -> &Condition {
        find(&status.conditions, READY).unwrap()
    }

    #[test]
    fn the_stages_follow_the_children() {
        let new = compose_with(None, None);
        assert_eq!(
            (new.stage, new.phase),
            (Some(MigrationStage::Backup), Some(FleetPhase::New))
        );
        assert_eq!(ready(&new).reason, "BackingUp");

        let running = compose_with(Some(&backup(Phase::InProgress)), None);
        assert_eq!(running.phase, Some(FleetPhase::InProgress));
        assert_eq!(running.clusters[0].backup_phase, Phase::InProgress);

        let backed_up = compose_with(Some(&backup(Phase::Completed)), None);
        assert_eq!(backed_up.stage, Some(MigrationStage::Restore));
        assert_eq!(backed_up.phase, Some(FleetPhase::InProgress));

        let restoring = compose_with(
            Some(&backup(Phase::Completed)),
            Some(&restore([Phase::Completed, Phase::InProgress])),
        );
        assert_eq!(restoring.stage, Some(MigrationStage::Restore));
        assert_eq!(
            restoring.clusters[0].restore.as_ref().unwrap().phase,
            Phase::Completed
        );

        let done = compose_with(
            Some(&backup(Phase::Completed)),
            Some(&restore([Phase::Completed, Phase::Completed])),
        );
        assert_eq!(
            (done.stage, done.phase),
            (Some(MigrationStage::Done), Some(FleetPhase::Completed))
        );
        assert_eq!(done.backup.as_ref().unwrap().name, "mig");
    }

    #[test]
    fn a_failed_target_does_not_hide_the_other() {
        let status = compose_with(
            Some(&backup(Phase::Completed)),
            Some(&restore([Phase::Failed, Phase::Completed])),
        );
        assert_eq!(status.phase, Some(FleetPhase::PartiallyFailed));
        let phases: Vec<_> = status
            .clusters
            .iter()
            .map(|c| (c.cluster.as_str(), c.restore.as_ref().unwrap().phase))
            .collect();
        assert_eq!(phases, [("c2", Phase::Failed), ("c3", Phase::Completed)]);
    }

    #[test]
    fn a_failed_backup_fails_the_migration_and_says_why() {
        let status = compose_with(Some(&backup(Phase::Failed)), None);
        assert_eq!(
            (status.stage, status.phase),
            (Some(MigrationStage::Done), Some(FleetPhase::Failed))
        );
        let ready = ready(&status);
        assert!(!ready.is_true());
        assert_eq!(ready.reason, "BackupFailed");
        assert!(
            ready.message.contains("cluster unreachable"),
            "{}",
            ready.message
        );
    }

    #[test]
    fn a_child_that_cannot_go_on_is_relayed() {
        let mut blocked = backup(Phase::New);
        blocked.clusters.clear();
        blocked.conditions = vec![Condition::unmet(
            READY,
            "NoClustersSelected",
            "no such cluster",
        )];
        let status = compose_with(Some(&blocked), None);
        let ready = ready(&status);
        assert_eq!(ready.reason, "NoClustersSelected");
        assert_eq!(ready.message, "ClusterBackup mig: no such cluster");
    }
}
