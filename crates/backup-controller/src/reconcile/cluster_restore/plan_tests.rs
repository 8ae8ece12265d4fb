use backup_core::Phase;

use super::*;
use backup_api::ClusterRestoreSpec;
use backup_api::cluster_restore::ConfigMapName;

const BACKUP: &str = "nightly-20261130020000";

fn now() -> Timestamp {
    "2026-11-30T10:00:00Z".parse().unwrap()
}

fn spec(json: serde_json::Value) -> Result<ValidClusterRestore, InvalidField> {
    serde_json::from_value::<ClusterRestoreSpec>(json)
        .unwrap()
        .validate()
}

fn valid() -> Result<ValidClusterRestore, InvalidField> {
    spec(serde_json::json!({
        "source": {"cluster": "c1", "clusterBackup": "nightly"},
        "targetClusters": ["c2", "c3"],
    }))
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
        BACKUP,
        &ClusterRestoreStatus::default(),
    )
}

/// The status of a restore that is not started, saying `ready`.
fn unstarted(generation: i64, ready: Condition) -> ClusterRestoreStatus {
    ClusterRestoreStatus {
        observed_generation: Some(generation),
        conditions: vec![ready.at(now(), Some(generation))],
        ..ClusterRestoreStatus::default()
    }
}

/// The decision to write `status`, warning with `warning`.
fn writes(status: ClusterRestoreStatus, warning: Option<Blocked>) -> Decision<'static> {
    Decision::Write(Box::new(Write { status, warning }))
}

#[test]
fn a_new_valid_restore_starts() {
    let spec = valid();
    let previous = ClusterRestoreStatus::default();
    assert_eq!(
        plan(&input(&spec, &previous, 1, false)),
        Decision::Start(spec.as_ref().unwrap())
    );
}

#[test]
fn an_invalid_spec_is_a_condition_naming_the_field_warned_of_once_and_nothing_starts() {
    let spec = Err(InvalidField::new("spec.source", "name the backup"));
    let previous = ClusterRestoreStatus::default();
    let why = Blocked::new("InvalidSpec", "spec.source: name the backup");
    let status = unstarted(3, why.condition(READY));
    assert_eq!(
        plan(&input(&spec, &previous, 3, false)),
        writes(status.clone(), Some(why))
    );
    // Said already: written again (as ever), without a second warning.
    assert_eq!(
        plan(&input(&spec, &status, 3, false)),
        writes(status.clone(), None)
    );
}

#[test]
fn the_start_announces_every_target_new_with_its_own_restore_name() {
    let ready = Condition::met(
        READY,
        "Started",
        format!("restoring backup {BACKUP} of cluster c1 from location main into c2, c3"),
    );
    let target = |cluster: &str| ClusterRestoreResult {
        cluster: cluster.into(),
        restore_name: format!("dr-{cluster}"),
        phase: Phase::New,
        ..ClusterRestoreResult::default()
    };
    assert_eq!(
        started_status(),
        ClusterRestoreStatus {
            phase: Some(FleetPhase::InProgress),
            observed_generation: Some(1),
            started_generation: Some(1),
            storage_location: Some("main".into()),
            backup_name: Some(BACKUP.into()),
            start_timestamp: Some(now()),
            completion_timestamp: None,
            conditions: vec![ready.at(now(), Some(1))],
            clusters: vec![target("c2"), target("c3")],
        }
    );
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
    let mut expected = previous.clone();
    expected.clusters[1].phase = Phase::Failed;
    expected.clusters[1].message = Some(INTERRUPTED.into());
    expected.clusters[1].completion_timestamp = Some(now());
    expected.phase = Some(FleetPhase::PartiallyFailed);
    expected.completion_timestamp = Some(now());
    assert_eq!(
        plan(&input(&spec, &previous, 1, false)),
        writes(expected.clone(), None)
    );
    // It never starts again.
    assert_eq!(plan(&input(&spec, &expected, 1, false)), Decision::Nothing);
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
    let mut edited = previous.clone();
    edited.observed_generation = Some(2);
    edited.conditions.push(
        Condition::met(
            IMMUTABLE,
            "RestoreAlreadyStarted",
            "this restore started from generation 1; edits (now generation 2) do not run it \
             again: create a new ClusterRestore to restore with the new spec",
        )
        .at(now(), Some(2)),
    );
    assert_eq!(
        plan(&input(&spec, &previous, 2, false)),
        writes(edited.clone(), None)
    );
    // Even an edit that makes the spec invalid does not touch a finished restore's record.
    let invalid = Err(InvalidField::new("spec.source", "x"));
    let Decision::Write(again) = plan(&input(&invalid, &edited, 3, false)) else {
        panic!("expected a status write for the new generation");
    };
    assert_eq!(again.status.clusters, previous.clusters);
    assert_eq!(again.warning, None);
    assert!(find(&again.status.conditions, READY).unwrap().is_true());
}

#[test]
fn a_restore_that_cannot_start_says_why_once_and_looks_again_in_a_minute() {
    let why = Blocked::new("BackupNotFound", "no backup");
    let previous = ClusterRestoreStatus::default();
    let status = unstarted(2, why.condition(READY));
    assert_eq!(
        wait(&previous, Some(2), now(), why.clone()),
        Wait {
            write: Some(Write {
                status: status.clone(),
                warning: Some(why.clone()),
            }),
            requeue_after: Duration::from_secs(60),
        }
    );
    assert_eq!(
        wait(&status, Some(2), now(), why),
        Wait {
            write: None,
            requeue_after: Duration::from_secs(60),
        }
    );
}

fn source(modifiers: Option<ResourceModifiers>) -> Source {
    Source {
        location: "main".into(),
        backup: BACKUP.into(),
        modifiers,
        through_velero: false,
    }
}

#[test]
fn a_launch_announces_the_restore_and_restores_the_backup_found_with_its_modifiers() {
    let spec = valid().unwrap();
    let modifiers = checked_modifiers(&ModifiersDocument::Inline(MODIFIERS), MODIFIERS).unwrap();
    let source = source(Some(modifiers.clone()));
    let launched = launch(&LaunchInput {
        name: "dr",
        generation: Some(1),
        now: now(),
        spec: &spec,
        previous: &ClusterRestoreStatus::default(),
        source: &source,
    });
    assert_eq!(
        launched,
        Launch {
            status: started_status(),
            announcement: format!("restoring backup {BACKUP} of cluster c1 into c2, c3"),
            spec: RestoreSpec {
                backup_name: Some(BACKUP.into()),
                resource_modifiers: Some(modifiers),
                ..RestoreSpec::default()
            },
        }
    );
}

#[test]
fn a_dry_run_is_announced_as_one() {
    let spec = spec(serde_json::json!({
        "source": {"cluster": "c1", "backupName": BACKUP},
        "dryRun": true,
    }))
    .unwrap();
    let launched = launch(&LaunchInput {
        name: "dr",
        generation: Some(1),
        now: now(),
        spec: &spec,
        previous: &ClusterRestoreStatus::default(),
        source: &source(None),
    });
    assert_eq!(
        launched.announcement,
        format!("dry run of restoring backup {BACKUP} of cluster c1 into c1")
    );
    assert_eq!(
        find(&launched.status.conditions, READY).map(|c| c.message.as_str()),
        Some(
            format!(
                "planning (dry run) the restore of backup {BACKUP} of cluster c1 from location \
                 main into c1"
            )
            .as_str()
        )
    );
    assert_eq!(
        launched.spec,
        RestoreSpec {
            backup_name: Some(BACKUP.into()),
            options: backup_core::RestoreOptions {
                dry_run: true,
                ..backup_core::RestoreOptions::default()
            },
            ..RestoreSpec::default()
        }
    );
}

#[test]
fn a_missing_target_is_named_and_an_omitted_one_points_at_target_clusters() {
    let named = valid().unwrap();
    assert_eq!(targets_found(&named, "shop", &[]), Ok(()));
    assert_eq!(
        targets_found(&named, "shop", &["c3".into()]),
        Err(Blocked::new(
            "ClusterNotFound",
            "spec.targetClusters: no ManagedCluster \"c3\" in namespace shop (a restore can \
             only reach the clusters of its own project)"
        ))
    );
    let defaulted = spec(serde_json::json!({"source": {"cluster": "c1", "backupName": "b"}}));
    assert_eq!(
        targets_found(&defaulted.unwrap(), "shop", &["c1".into()]),
        Err(Blocked::new(
            "ClusterNotFound",
            "targetClusters is omitted, so the restore goes into the source cluster \"c1\", \
             but it is not a ManagedCluster of namespace shop: name the clusters to restore \
             into in spec.targetClusters"
        ))
    );
}

#[test]
fn the_location_is_the_specs_else_the_cluster_backups_else_the_default() {
    let of_backup = valid().unwrap();
    assert_eq!(cluster_backup(&of_backup), Some("nightly"));
    assert_eq!(
        wanted_location(&of_backup, Some("offsite".into())),
        Some("offsite".into())
    );
    assert_eq!(wanted_location(&of_backup, None), None);
    let named = spec(serde_json::json!({
        "source": {"cluster": "c1", "backupName": "b", "storageLocation": "main"},
    }))
    .unwrap();
    assert_eq!(cluster_backup(&named), None);
    assert_eq!(
        wanted_location(&named, Some("offsite".into())),
        Some("main".into())
    );
}

#[test]
fn a_source_cluster_outside_the_locations_scopes_is_an_invalid_spec() {
    assert_eq!(
        unscoped("too long"),
        Blocked::new("InvalidSpec", "spec.source.cluster: too long")
    );
}

#[test]
fn storage_is_asked_for_the_named_backup_or_the_cluster_backups_newest_run() {
    assert_eq!(
        lookup(&valid().unwrap()),
        RestoreSpec {
            schedule_name: Some("nightly".into()),
            ..RestoreSpec::default()
        }
    );
    let named = spec(serde_json::json!({"source": {"cluster": "c1", "backupName": "b"}}));
    assert_eq!(
        lookup(&named.unwrap()),
        RestoreSpec {
            backup_name: Some("b".into()),
            ..RestoreSpec::default()
        }
    );
}

#[test]
fn a_backup_found_is_restored_unless_the_controller_cannot_read_it() {
    let spec = valid().unwrap();
    let found = |unreadable: Option<&str>| BackupLookup::Found {
        backup: BACKUP.into(),
        unreadable: unreadable.map(String::from),
    };
    assert_eq!(
        backup_to_restore(&spec, "shop", "main", found(None)),
        Ok(BACKUP.to_string())
    );
    assert_eq!(
        backup_to_restore(&spec, "shop", "main", found(Some("no identity"))),
        Err(Blocked::new(
            "BackupEncrypted",
            format!(
                "backup {BACKUP} is encrypted and the controller holds no key for it: no \
                 identity; restore it with `backupctl restore create --identity-file`"
            )
        ))
    );
    assert_eq!(
        backup_to_restore(&spec, "shop", "main", BackupLookup::Failed("torn".into())),
        Err(Blocked::new(
            "BackupUnreadable",
            "the source backup cannot be read: torn"
        ))
    );
}

#[test]
fn a_backup_not_found_says_where_it_was_looked_for_and_how_to_list_them() {
    let of_backup = valid().unwrap();
    assert_eq!(
        backup_to_restore(&of_backup, "shop", "main", BackupLookup::NotFound),
        Err(Blocked::new(
            "BackupNotFound",
            "no completed run of ClusterBackup \"nightly\" of cluster c1 in StorageLocation \
             main; `backupctl backup list --project shop --cluster c1` lists the backups there"
        ))
    );
    let named = spec(serde_json::json!({"source": {"cluster": "c1", "backupName": "b"}}));
    assert_eq!(
        backup_to_restore(&named.unwrap(), "shop", "main", BackupLookup::NotFound),
        Err(Blocked::new(
            "BackupNotFound",
            "no backup \"b\" of cluster c1 in StorageLocation main; `backupctl backup list \
             --project shop --cluster c1` lists the backups there"
        ))
    );
}

#[test]
fn only_a_real_mapped_restore_under_policy_none_refuses_existing_namespaces() {
    let with = |extra: serde_json::Value| {
        let mut json = serde_json::json!({
            "source": {"cluster": "c1", "backupName": "b"},
            "namespaceMapping": {"shop": "shop-copy"},
        });
        json.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        refuses_existing_namespaces(&spec(json).unwrap())
    };
    assert!(with(serde_json::json!({})));
    assert!(!with(serde_json::json!({"dryRun": true})));
    assert!(!with(
        serde_json::json!({"existingResourcePolicy": "update"})
    ));
    assert!(!with(serde_json::json!({"namespaceMapping": {}})));
}

#[test]
fn a_mapped_namespace_that_exists_refuses_the_restore_and_says_how_to_go_on() {
    assert_eq!(mapped_namespaces_free("c2", MappedNamespaces::Free), Ok(()));
    let exists = MappedNamespaces::Exists {
        from: "shop".into(),
        to: "shop-copy".into(),
    };
    assert_eq!(
        mapped_namespaces_free("c2", exists),
        Err(Blocked::new(
            "TargetNamespaceExists",
            "namespace \"shop-copy\" (the mapping of \"shop\") already exists in cluster c2; \
             with existingResourcePolicy none its objects would be left as they are: map to a \
             new namespace, delete it first, or set existingResourcePolicy: update"
        ))
    );
    let unusable = Blocked::new("KubeconfigSecretMissing", "no Secret");
    assert_eq!(
        mapped_namespaces_free("c2", MappedNamespaces::Unusable(unusable.clone())),
        Err(unusable)
    );
    assert_eq!(
        mapped_namespaces_free("c2", MappedNamespaces::Unreachable("refused".into())),
        Err(Blocked::new("ClusterUnreachable", "refused"))
    );
}

const MODIFIERS: &str = "version: v1
resourceModifierRules:
- conditions:
    groupResource: configmaps
  mergePatches:
  - patchData: '{\"data\": {\"restored\": \"yes\"}}'
";

#[test]
fn the_modifiers_come_from_exactly_one_of_the_rules_and_a_config_map() {
    let source = |config_map: Option<&str>, rules: Option<&str>| ResourceModifiersSource {
        config_map_ref: config_map.map(|name| ConfigMapName { name: name.into() }),
        rules: rules.map(String::from),
    };
    assert_eq!(modifiers_document(None), Ok(None));
    let inline = source(None, Some(MODIFIERS));
    assert_eq!(
        modifiers_document(Some(&inline)),
        Ok(Some(ModifiersDocument::Inline(MODIFIERS)))
    );
    let in_map = source(Some("mods"), None);
    assert_eq!(
        modifiers_document(Some(&in_map)),
        Ok(Some(ModifiersDocument::ConfigMap("mods")))
    );
    let neither_or_both = Err(Blocked::new(
        "InvalidResourceModifiers",
        "spec.resourceModifiers (spec): set exactly one of configMapRef and rules",
    ));
    for both in [source(None, None), source(Some("mods"), Some(MODIFIERS))] {
        assert_eq!(modifiers_document(Some(&both)), neither_or_both);
    }
}

#[test]
fn a_config_map_holds_the_document_as_its_one_key() {
    let data = |keys: &[&str]| {
        ConfigMapRead::Found(
            keys.iter()
                .map(|k| (k.to_string(), MODIFIERS.into()))
                .collect(),
        )
    };
    assert_eq!(
        config_map_document("mods", "shop", data(&["m.yaml"])),
        Ok(MODIFIERS.to_string())
    );
    let invalid = |e: &str| {
        Err(Blocked::new(
            "InvalidResourceModifiers",
            format!("spec.resourceModifiers (ConfigMap mods): {e}"),
        ))
    };
    let keys = "it must hold exactly one key (the YAML document), it holds";
    assert_eq!(
        config_map_document("mods", "shop", data(&[])),
        invalid(&format!("{keys} 0"))
    );
    assert_eq!(
        config_map_document("mods", "shop", data(&["a", "b"])),
        invalid(&format!("{keys} 2"))
    );
    assert_eq!(
        config_map_document("mods", "shop", ConfigMapRead::Failed("forbidden".into())),
        invalid("forbidden")
    );
    assert_eq!(
        config_map_document("mods", "shop", ConfigMapRead::NotFound),
        Err(Blocked::new(
            "ResourceModifiersNotFound",
            "spec.resourceModifiers.configMapRef: no ConfigMap \"mods\" in namespace shop"
        ))
    );
}

#[test]
fn a_modifier_document_is_parsed_and_checked() {
    let what = ModifiersDocument::ConfigMap("mods");
    assert_eq!(
        checked_modifiers(&what, MODIFIERS),
        Ok(serde_yaml_ng::from_str::<ResourceModifiers>(MODIFIERS).unwrap())
    );
    let v2 = MODIFIERS.replace("v1", "v2");
    assert_eq!(
        checked_modifiers(&what, &v2),
        Err(Blocked::new(
            "InvalidResourceModifiers",
            "spec.resourceModifiers (ConfigMap mods): resource modifiers: version \"v2\" is not \
             supported: use version: v1"
        ))
    );
    let yaml_error = serde_yaml_ng::from_str::<ResourceModifiers>("rules: 1").unwrap_err();
    assert_eq!(
        checked_modifiers(&ModifiersDocument::Inline("rules: 1"), "rules: 1"),
        Err(Blocked::new(
            "InvalidResourceModifiers",
            format!(
                "spec.resourceModifiers (inline rules): not a resource-modifier document: \
                 {yaml_error}"
            )
        ))
    );
}

#[test]
fn volume_data_is_restored_only_by_the_velero_of_its_source_and_refused_elsewhere_by_name() {
    let volumes = [Volume {
        namespace: Some("shop".into()),
        description: "file-system backup of volume data of pod shop/db-0".into(),
    }];
    let target = |name: &str, velero: bool| (name.to_string(), velero);
    assert_eq!(
        volume_data_route("b", &[], "c1", &[target("c2", false)]),
        Ok(false),
        "no volume data: the direct engine, anywhere"
    );
    assert_eq!(
        volume_data_route("b", &volumes, "c1", &[target("c1", true)]),
        Ok(true)
    );
    for targets in [
        vec![target("c1", false)],
        vec![target("c1", true), target("c2", true)],
    ] {
        let refused = volume_data_route("b", &volumes, "c1", &targets).unwrap_err();
        assert_eq!(refused.reason, "VolumeDataNotRestorable");
        assert!(
            refused.message.starts_with(
                "backup b holds volume data (file-system backup of volume data of pod shop/db-0)"
            ),
            "{}",
            refused.message
        );
    }
    let elsewhere = volume_data_route("b", &volumes, "c1", &[target("c2", true)]).unwrap_err();
    assert!(
        elsewhere.message.contains("into c2 would bring"),
        "{}",
        elsewhere.message
    );
}
