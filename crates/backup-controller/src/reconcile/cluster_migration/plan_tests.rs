use backup_core::{ExistingResourcePolicy, Phase};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::*;
use backup_api::cluster_restore::ClusterRestoreResult;
use backup_api::{ClusterBackup, ClusterRuns};

fn now() -> Timestamp {
    "2026-11-30T10:00:00Z".parse().unwrap()
}

fn spec() -> ClusterMigrationSpec {
    ClusterMigrationSpec {
        source_cluster: "c1".into(),
        target_clusters: vec!["c2".into(), "c3".into()],
        storage_location: Some("main".into()),
        namespace_mapping: [("shop".to_string(), "shop-new".to_string())].into(),
        existing_resource_policy: ExistingResourcePolicy::Update,
        ..ClusterMigrationSpec::default()
    }
}

fn backup(phase: Phase) -> ClusterBackupStatus {
    ClusterBackupStatus {
        clusters: vec![ClusterRuns {
            cluster: "c1".into(),
            last_backup: Some(run(phase)),
            ..ClusterRuns::default()
        }],
        ..ClusterBackupStatus::default()
    }
}

fn run(phase: Phase) -> RunStatus {
    RunStatus {
        name: "mig".into(),
        phase,
        message: (phase == Phase::Failed).then(|| "cluster unreachable".into()),
        ..RunStatus::default()
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

/// A reconcile's view: the migration "mig" (generation 1) of [`spec`], and its children.
struct Case {
    previous: ClusterMigrationStatus,
    backup: Child<Option<ClusterBackupStatus>>,
    restore: Child<Option<ClusterRestoreStatus>>,
}

impl Case {
    fn new(
        backup: Child<Option<ClusterBackupStatus>>,
        restore: Child<Option<ClusterRestoreStatus>>,
    ) -> Self {
        Case {
            previous: ClusterMigrationStatus::default(),
            backup,
            restore,
        }
    }

    fn plan(&self) -> Plan {
        let spec = spec();
        plan(&PlanInput {
            name: "mig",
            generation: Some(1),
            now: now(),
            spec: &spec,
            valid: &spec.validate().unwrap(),
            previous: &self.previous,
            backup: self.backup.map(Option::as_ref),
            restore: self.restore.map(Option::as_ref),
        })
    }
}

/// The status both children's statuses gather into (both children ours).
fn gathered(
    backup: Option<&ClusterBackupStatus>,
    restore: Option<&ClusterRestoreStatus>,
) -> ClusterMigrationStatus {
    let case = Case::new(
        Child::Owned(backup.cloned()),
        Child::Owned(restore.cloned()),
    );
    case.plan().status.expect("a status to write")
}

fn ready(status: &ClusterMigrationStatus) -> &Condition {
    find(&status.conditions, READY).unwrap()
}

/// The status of "mig" in `stage` and `phase`, saying `ready`.
fn status(
    stage: MigrationStage,
    phase: FleetPhase,
    backup: Option<RunStatus>,
    ready: Condition,
) -> ClusterMigrationStatus {
    let backup_phase = backup.as_ref().map_or(Phase::New, |r| r.phase);
    ClusterMigrationStatus {
        phase: Some(phase),
        stage: Some(stage),
        observed_generation: Some(1),
        backup,
        clusters: ["c2", "c3"]
            .map(|cluster| MigrationTarget {
                cluster: cluster.into(),
                backup_phase,
                restore: None,
            })
            .into(),
        conditions: vec![ready.at(now(), Some(1))],
    }
}

fn backup_spec() -> ClusterBackupSpec {
    ClusterBackupSpec {
        clusters: Some(ClusterSelection {
            selector: None,
            names: vec!["c1".into()],
        }),
        storage_location: Some("main".into()),
        delete_policy: DeletePolicy::Delete,
        max_concurrent_clusters: Some(1),
        ..ClusterBackupSpec::default()
    }
}

#[test]
fn a_new_migration_creates_its_backup_and_says_it_backs_up() {
    let case = Case::new(Child::Missing, Child::Missing);
    let ready = Condition::met(READY, "BackingUp", "backing up c1 (ClusterBackup mig)");
    assert_eq!(
        case.plan(),
        Plan {
            create_backup: Some(backup_spec()),
            create_restore: None,
            event: None,
            status: Some(status(MigrationStage::Backup, FleetPhase::New, None, ready)),
        }
    );
}

#[test]
fn the_restore_is_created_only_once_the_backup_completed() {
    let running = Case::new(
        Child::Owned(Some(backup(Phase::InProgress))),
        Child::Missing,
    );
    let ready = Condition::met(READY, "BackingUp", "backing up c1 (ClusterBackup mig)");
    assert_eq!(
        running.plan(),
        Plan {
            status: Some(status(
                MigrationStage::Backup,
                FleetPhase::InProgress,
                Some(run(Phase::InProgress)),
                ready
            )),
            ..Plan::default()
        }
    );

    let completed = Case::new(Child::Owned(Some(backup(Phase::Completed))), Child::Missing);
    let ready = Condition::met(
        READY,
        "Restoring",
        "restoring into c2, c3 (ClusterRestore mig)",
    );
    assert_eq!(
        completed.plan(),
        Plan {
            create_restore: Some(ClusterRestoreSpec {
                source: RestoreSource {
                    cluster: "c1".into(),
                    backup_name: Some("mig".into()),
                    cluster_backup: None,
                    storage_location: Some("main".into()),
                },
                target_clusters: vec!["c2".into(), "c3".into()],
                options: RestoreOptions {
                    namespace_mapping: [("shop".to_string(), "shop-new".to_string())].into(),
                    existing_resource_policy: ExistingResourcePolicy::Update,
                    ..RestoreOptions::default()
                },
                ..ClusterRestoreSpec::default()
            }),
            status: Some(status(
                MigrationStage::Restore,
                FleetPhase::InProgress,
                Some(run(Phase::Completed)),
                ready
            )),
            ..Plan::default()
        }
    );
}

fn name_taken(kind: &str) -> ClusterMigrationStatus {
    ClusterMigrationStatus {
        observed_generation: Some(1),
        conditions: vec![
            Condition::unmet(
                READY,
                "NameTaken",
                format!(
                    "a {kind} named mig exists and does not belong to this migration, which \
                     carries out its stages under its own name: rename the migration or \
                     remove that {kind}"
                ),
            )
            .at(now(), Some(1)),
        ],
        ..ClusterMigrationStatus::default()
    }
}

#[test]
fn a_backup_of_its_name_that_is_not_its_own_stops_the_migration_and_says_so_once() {
    let mut case = Case::new(Child::Foreign, Child::Missing);
    assert_eq!(
        case.plan(),
        Plan {
            status: Some(name_taken("ClusterBackup")),
            ..Plan::default()
        }
    );
    case.previous = name_taken("ClusterBackup");
    assert_eq!(case.plan(), Plan::default());
}

#[test]
fn a_restore_of_its_name_that_is_not_its_own_stops_it_after_the_backup_is_created() {
    let case = Case::new(Child::Missing, Child::Foreign);
    assert_eq!(
        case.plan(),
        Plan {
            create_backup: Some(backup_spec()),
            status: Some(name_taken("ClusterRestore")),
            ..Plan::default()
        }
    );
}

#[test]
fn the_end_is_announced_once_as_a_warning_unless_everything_completed() {
    for (phases, phase, warning) in [
        ([Phase::Completed; 2], FleetPhase::Completed, false),
        (
            [Phase::Failed, Phase::Completed],
            FleetPhase::PartiallyFailed,
            true,
        ),
        ([Phase::Failed; 2], FleetPhase::Failed, true),
    ] {
        let mut case = Case::new(
            Child::Owned(Some(backup(Phase::Completed))),
            Child::Owned(Some(restore(phases))),
        );
        let plan = case.plan();
        assert_eq!(
            plan.event,
            Some(Event {
                warning,
                reason: format!("Migration{phase:?}"),
                message: format!("migration of c1 into c2, c3: {phase:?}"),
            })
        );
        case.previous = plan.status.expect("the end is written");
        assert_eq!(case.plan(), Plan::default(), "nothing more after {phase:?}");
    }
}

#[test]
fn an_invalid_spec_is_a_condition_naming_the_field_written_once() {
    let field = InvalidField::new("spec.sourceCluster", "name the ManagedCluster");
    let mut previous = gathered(None, None);
    let written = invalid(&previous, Some(2), now(), &field);
    previous.observed_generation = Some(2);
    previous.conditions = vec![
        Condition::unmet(
            READY,
            "InvalidSpec",
            "spec.sourceCluster: name the ManagedCluster",
        )
        .at(now(), Some(2)),
    ];
    assert_eq!(written, Some(previous.clone()));
    assert_eq!(invalid(&previous, Some(2), now(), &field), None);
}

fn child_backup(owners: Vec<OwnerReference>) -> ClusterBackup {
    let mut backup = ClusterBackup::new("mig", ClusterBackupSpec::default());
    backup.metadata.owner_references = Some(owners);
    backup
}

fn owner(uid: &str, controller: bool) -> OwnerReference {
    OwnerReference {
        uid: uid.into(),
        controller: Some(controller),
        ..OwnerReference::default()
    }
}

#[test]
fn a_child_is_the_migrations_only_when_the_migration_controls_it() {
    let judged = |owners: Option<Vec<OwnerReference>>| {
        Child::of(owners.map(child_backup), Some("u1")).map(|b| b.metadata.name.clone())
    };
    assert_eq!(
        judged(Some(vec![owner("u1", true)])),
        Child::Owned(Some("mig".into()))
    );
    for others in [
        vec![owner("u1", false)],
        vec![owner("u2", true)],
        Vec::new(),
    ] {
        assert_eq!(judged(Some(others)), Child::Foreign);
    }
    assert_eq!(judged(None), Child::Missing);
}

#[test]
fn the_stages_follow_the_children() {
    let new = gathered(None, None);
    assert_eq!(
        (new.stage, new.phase),
        (Some(MigrationStage::Backup), Some(FleetPhase::New))
    );
    assert_eq!(ready(&new).reason, "BackingUp");

    let restoring = gathered(
        Some(&backup(Phase::Completed)),
        Some(&restore([Phase::Completed, Phase::InProgress])),
    );
    assert_eq!(restoring.stage, Some(MigrationStage::Restore));
    assert_eq!(
        restoring.clusters[0].restore.as_ref().unwrap().phase,
        Phase::Completed
    );

    let done = gathered(
        Some(&backup(Phase::Completed)),
        Some(&restore([Phase::Completed, Phase::Completed])),
    );
    assert_eq!(
        (done.stage, done.phase),
        (Some(MigrationStage::Done), Some(FleetPhase::Completed))
    );
    assert_eq!(done.backup.as_ref().unwrap().name, "mig");
    assert_eq!(
        ready(&done),
        &Condition::met(READY, "Done", "the migration ended").at(now(), Some(1))
    );
}

#[test]
fn a_failed_target_does_not_hide_the_other() {
    let status = gathered(
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
    let ready = Condition::unmet(
        READY,
        "BackupFailed",
        "the backup of c1 ended Failed: cluster unreachable, so nothing was restored; delete \
         this migration and create it again to retry",
    );
    let case = Case::new(Child::Owned(Some(backup(Phase::Failed))), Child::Missing);
    assert_eq!(
        case.plan(),
        Plan {
            event: Some(Event {
                warning: true,
                reason: "MigrationFailed".into(),
                message: "migration of c1 into c2, c3: Failed".into(),
            }),
            status: Some(status(
                MigrationStage::Done,
                FleetPhase::Failed,
                Some(run(Phase::Failed)),
                ready
            )),
            ..Plan::default()
        }
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
    let status = gathered(Some(&blocked), None);
    assert_eq!(
        ready(&status),
        &Condition::unmet(
            READY,
            "NoClustersSelected",
            "ClusterBackup mig: no such cluster"
        )
        .at(now(), Some(1))
    );
}
