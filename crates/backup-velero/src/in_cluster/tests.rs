use backup_core::{
    BackupSpec, LabelSelector, RestoreOptions, RestoreSpec, Schedule, ScheduleSpec,
    StorageLocationSpec, Ttl,
};
use serde_json::json;

use super::translate::{self, cluster_prefix, object_name, velero_prefix};
use super::*;
use crate::api::{Backup, BackupPhase, BackupProgress, BackupStatus};

fn cfg() -> InClusterConfig {
    InClusterConfig::new("proj", "c1")
        .unwrap()
        .with_velero_namespace("velero")
        .with_location("main")
}

fn ours() -> serde_json::Value {
    json!({
        "app.kubernetes.io/managed-by": "backup-fleet",
        "backup-fleet.io/cluster": "c1",
        "backup-fleet.io/project": "proj"
    })
}

#[test]
fn names_are_deterministic_and_dns_safe() {
    assert_eq!(object_name("c1", "backup", "nightly"), "c1-backup-nightly");
    let long = "x".repeat(80);
    let a = object_name("c1", "backup", &long);
    assert_eq!(a, object_name("c1", "backup", &long));
    assert!(a.len() <= 63, "{a}");
    backup_core::validate_dns1123_label(&a).unwrap();
    assert_ne!(a, object_name("c1", "backup", &format!("{long}y")));
    let odd = object_name("c1", "backup", "My.Backup");
    backup_core::validate_dns1123_label(&odd).unwrap();
    assert_ne!(odd, object_name("c1", "backup", "my-backup"));
}

#[test]
fn backup_translation_is_exact() {
    let mut spec = BackupSpec::default();
    spec.filter.included_namespaces = vec!["app".into()];
    spec.filter.label_selector = Some(LabelSelector::parse("tier=web").unwrap());
    spec.ttl = Ttl::parse("36h").unwrap();
    spec.labels.insert("team".into(), "a".into());
    let b = translate::backup(&cfg(), "nightly", &spec).unwrap();
    let mut labels = ours();
    labels["team"] = json!("a");
    assert_eq!(
        serde_json::to_value(&b).unwrap(),
        json!({
            "apiVersion": "velero.io/v1",
            "kind": "Backup",
            "metadata": {
                "name": "c1-backup-nightly",
                "namespace": "velero",
                "labels": labels,
                "annotations": {"backup-fleet.io/name": "nightly"}
            },
            "spec": {
                "includedNamespaces": ["app"],
                "labelSelector": {"matchLabels": {"tier": "web"}},
                "snapshotVolumes": true,
                "ttl": "36h0m0s",
                "storageLocation": "c1-location-main",
                "defaultVolumesToFsBackup": true
            }
        })
    );
}

#[test]
fn schedule_and_restore_translation_is_exact() {
    let spec = ScheduleSpec {
        schedule: Schedule::parse("@every 20m").unwrap(),
        template: BackupSpec::default(),
        paused: false,
        keep: None,
    };
    let s = translate::schedule(&cfg(), "hourly", &spec).unwrap();
    let v = serde_json::to_value(&s).unwrap();
    assert_eq!(
        v["spec"],
        json!({
            "schedule": "@every 20m",
            "paused": false,
            "template": {
                "metadata": {"labels": ours()},
                "snapshotVolumes": true,
                "ttl": "720h0m0s",
                "storageLocation": "c1-location-main",
                "defaultVolumesToFsBackup": true
            }
        })
    );
    assert_eq!(v["metadata"]["name"], "c1-schedule-hourly");

    let r = RestoreSpec {
        schedule_name: Some("hourly".into()),
        options: RestoreOptions {
            namespace_mapping: [("a".to_string(), "b".to_string())].into(),
            ..Default::default()
        },
        ..Default::default()
    };
    let r = translate::restore(&cfg(), "r1", &r).unwrap();
    assert_eq!(
        serde_json::to_value(&r).unwrap()["spec"],
        json!({
            "scheduleName": "c1-schedule-hourly",
            "namespaceMapping": {"a": "b"},
            "existingResourcePolicy": "none"
        })
    );
}

#[test]
fn bad_inputs_are_rejected_with_reasons() {
    let e = InClusterConfig::new("proj", "..").unwrap_err();
    assert_eq!(e.metric_label(), "invalid");
    assert!(e.to_string().contains("\"..\""), "{e}");
    let e = cluster_prefix(&cfg(), Some("../other")).unwrap_err();
    assert!(e.to_string().contains("'..'"), "{e}");
    let mut loc = StorageLocationSpec::new("aws", "bucket");
    loc.prefix = Some("/abs".into());
    let e = translate::storage_location(&cfg(), "main", &loc, None, false).unwrap_err();
    assert!(matches!(e, VeleroError::Invalid(_)), "{e}");
    let dry = RestoreSpec {
        backup_name: Some("b".into()),
        options: RestoreOptions {
            dry_run: true,
            ..Default::default()
        },
        ..Default::default()
    };
    assert!(translate::restore(&cfg(), "r", &dry).is_err());
}

#[test]
fn prefixes_isolate_clusters() {
    let a = cluster_prefix(&cfg(), Some("fleet/")).unwrap();
    let other = InClusterConfig::new("proj", "c2").unwrap();
    let b = cluster_prefix(&other, Some("fleet")).unwrap();
    assert_eq!(a, "fleet/proj/c1");
    assert_eq!(b, "fleet/proj/c2");
    assert_eq!(cluster_prefix(&cfg(), None).unwrap(), "proj/c1");
    assert_eq!(
        velero_prefix(&cfg(), Some("fleet")).unwrap(),
        "fleet/proj/c1/velero"
    );
}

#[test]
fn status_mapping_passes_velero_texts_verbatim() {
    let mut b = Backup::new("x", Default::default());
    assert_eq!(observe::backup_status(&b).phase, backup_core::Phase::New);
    b.status = Some(BackupStatus {
        phase: Some(BackupPhase::WaitingForPluginOperationsPartiallyFailed),
        progress: Some(BackupProgress {
            total_items: Some(10),
            items_backed_up: Some(4),
            ..Default::default()
        }),
        errors: Some(2),
        ..Default::default()
    });
    let s = observe::backup_status(&b);
    assert_eq!(s.phase, backup_core::Phase::WaitingForPluginOperations);
    assert_eq!((s.progress.items_done, s.progress.total_items), (4, 10));
    assert_eq!(s.errors.len(), 1);
    b.status = Some(BackupStatus {
        phase: Some(BackupPhase::Failed),
        failure_reason: Some("boom: bucket gone".into()),
        ..Default::default()
    });
    assert_eq!(observe::backup_status(&b).errors, vec!["boom: bucket gone"]);
    let (p, w) = observe::backup_phase(Some(&BackupPhase::Other("Paused".into())));
    assert_eq!(p, backup_core::Phase::InProgress);
    assert!(w.unwrap().contains("Paused"));
    let (p, _) = observe::backup_phase(Some(&BackupPhase::Queued));
    assert_eq!(p, backup_core::Phase::New);
}

#[test]
fn engine_errors_keep_their_kind() {
    let e: backup_core::EngineError = VeleroError::NotInstalled { reason: "x".into() }.into();
    assert!(e.is_retryable());
    assert!(e.to_string().contains("Velero is not installed"));
    let e: backup_core::EngineError = VeleroError::Rejected {
        what: "schedule",
        name: "s".into(),
        errors: vec!["bad cron".into()],
    }
    .into();
    assert_eq!(e.metric_label(), "invalid");
    assert!(e.to_string().contains("bad cron"));
    assert!(super::ops::is_subset(
        &json!({"a": 1}),
        &json!({"a": 1, "b": 2})
    ));
    assert!(!super::ops::is_subset(&json!({"a": 1}), &json!({"a": 2})));
}

#[test]
fn location_uses_given_credentials_or_the_reference() {
    let mut loc = StorageLocationSpec::new("aws", "bucket");
    loc.credential = Some(backup_core::CredentialRef {
        name: "existing".into(),
        key: "aws".into(),
    });
    let (bsl, secret) = translate::storage_location(&cfg(), "main", &loc, None, false).unwrap();
    assert!(secret.is_none());
    let cred = bsl.spec.credential.unwrap();
    assert_eq!((cred.name.as_str(), cred.key.as_str()), ("existing", "aws"));
    let (bsl, secret) =
        translate::storage_location(&cfg(), "main", &loc, Some(b"k"), false).unwrap();
    let cred = bsl.spec.credential.unwrap();
    assert_eq!(
        (cred.name.as_str(), cred.key.as_str()),
        ("c1-location-main", "aws")
    );
    let data = secret.unwrap().data.unwrap();
    assert_eq!(data["aws"].0, b"k");
    assert_eq!(
        bsl.spec.object_storage.prefix.as_deref(),
        Some("proj/c1/velero")
    );
}
