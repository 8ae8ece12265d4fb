//! The Velero in-cluster engine against a real kube-apiserver with Velero's CRDs installed
//! (generated from our types). No Velero server runs here: where a test needs one, it plays
//! Velero's part exactly as Velero does it: Velero's CRDs have no status subresource, so every
//! `status` (Backup, Restore, Schedule, BSL, DeleteBackupRequest, DownloadRequest,
//! ServerStatusRequest) is written by patching the whole object.
//!
//! Every test uses its own namespace as "the Velero namespace", so tests run in parallel.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use backup_core::{
    BackupEngine, BackupSpec, EngineError, Phase, RestoreEngine, RestoreSpec, Schedule,
    ScheduleSpec, Ttl,
};
use backup_velero::api::{
    self, Backup, BackupStorageLocation, DeleteBackupRequest, DownloadRequest, DownloadTargetKind,
    Restore, ServerStatusRequest,
};
use backup_velero::in_cluster::VeleroError;
use kube::ResourceExt;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tests::velero::{available_location, labels, location, setup, stored, velero_sets_status};

#[tokio::test]
async fn unknown_fields_survive_read_modify_write_through_the_apiserver() -> Result<()> {
    let s = setup("velero_unknown_fields", "c1").await?;
    let ar = ApiResource::erase::<Backup>(&());
    let raw: Api<DynamicObject> = Api::namespaced_with(s.client.clone(), &s.ns.name, &ar);
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "velero.io/v1", "kind": "Backup",
        "metadata": {"name": "from-newer-velero"},
        "spec": {
            "ttl": "720h0m0s",
            "futureSpecField": {"nested": [1, 2]},
            "hooks": {"resources": [{"name": "h", "futureHookField": true}]}
        },
        "status": {"phase": "FuturePhase", "futureStatusField": "kept",
                   "progress": {"totalItems": 5, "itemsBackedUp": 1, "futureCounter": 7}}
    }))?;
    raw.create(&PostParams::default(), &obj).await?;

    let typed: Api<Backup> = Api::namespaced(s.client.clone(), &s.ns.name);
    let mut b = typed.get("from-newer-velero").await?;
    b.spec.ttl = Some("24h0m0s".into());
    b.labels_mut().insert("touched".into(), "yes".into());
    typed
        .replace("from-newer-velero", &PostParams::default(), &b)
        .await?;

    let back = raw.get("from-newer-velero").await?.data;
    assert_eq!(back["spec"]["ttl"], "24h0m0s");
    assert_eq!(back["spec"]["futureSpecField"], json!({"nested": [1, 2]}));
    assert_eq!(
        back["spec"]["hooks"]["resources"][0]["futureHookField"],
        true
    );
    assert_eq!(back["status"]["futureStatusField"], "kept");
    assert_eq!(back["status"]["phase"], "FuturePhase");
    assert_eq!(back["status"]["progress"]["futureCounter"], 7);
    s.ns.delete().await
}

#[tokio::test]
async fn translations_are_stored_exactly_as_expected() -> Result<()> {
    let s = setup("velero_translations", "c1").await?;
    let ns = s.ns.name.clone();
    s.engine
        .ensure_location("main", &location(), Some(b"[default]\nkey=secret\n"), true)
        .await?;
    let bsls: Api<BackupStorageLocation> = Api::namespaced(s.client.clone(), &ns);
    let annotations = json!({"backup-fleet.io/name": "main"});
    assert_eq!(
        stored(&bsls, "c1-location-main").await?,
        json!({
            "apiVersion": "velero.io/v1", "kind": "BackupStorageLocation",
            "metadata": {"name": "c1-location-main", "namespace": ns, "labels": labels("c1"),
                         "annotations": annotations},
            "spec": {
                "provider": "aws",
                "objectStorage": {"bucket": "fleet-bucket", "prefix": "base/proj/c1/velero"},
                "config": {"region": "minio"},
                "credential": {"name": "c1-location-main", "key": "cloud"},
                "default": true,
                "accessMode": "ReadWrite"
            }
        })
    );
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(s.client.clone(), &ns);
    let secret = secrets.get("c1-location-main").await?;
    assert_eq!(secret.data.unwrap()["cloud"].0, b"[default]\nkey=secret\n");

    let mut spec = BackupSpec::default();
    spec.filter.included_namespaces = vec!["shop".into()];
    spec.ttl = Ttl::parse("48h")?;
    s.engine.start_backup("nightly", &spec).await?;
    let backups: Api<Backup> = Api::namespaced(s.client.clone(), &ns);
    assert_eq!(
        stored(&backups, "c1-backup-nightly").await?,
        json!({
            "apiVersion": "velero.io/v1", "kind": "Backup",
            "metadata": {"name": "c1-backup-nightly", "namespace": ns, "labels": labels("c1"),
                         "annotations": {"backup-fleet.io/name": "nightly"}},
            "spec": {
                "includedNamespaces": ["shop"],
                "snapshotVolumes": true,
                "ttl": "48h0m0s",
                "storageLocation": "c1-location-main",
                "defaultVolumesToFsBackup": true
            }
        })
    );
    // Idempotent for the same spec, refused for another.
    s.engine.start_backup("nightly", &spec).await?;
    spec.ttl = Ttl::parse("1h")?;
    let e = s.engine.start_backup("nightly", &spec).await.unwrap_err();
    assert_eq!(e.metric_label(), "already_exists", "{e}");

    let sched = ScheduleSpec {
        schedule: Schedule::parse("@every 20m")?,
        template: BackupSpec::default(),
        paused: true,
        keep: None,
    };
    s.engine.apply_schedule("often", &sched).await?;
    let schedules: Api<api::Schedule> = Api::namespaced(s.client.clone(), &ns);
    assert_eq!(
        stored(&schedules, "c1-schedule-often").await?,
        json!({
            "apiVersion": "velero.io/v1", "kind": "Schedule",
            "metadata": {"name": "c1-schedule-often", "namespace": ns, "labels": labels("c1"),
                         "annotations": {"backup-fleet.io/name": "often"}},
            "spec": {
                "schedule": "@every 20m",
                "paused": true,
                "template": {
                    "metadata": {"labels": labels("c1")},
                    "snapshotVolumes": true,
                    "ttl": "720h0m0s",
                    "storageLocation": "c1-location-main",
                    "defaultVolumesToFsBackup": true
                }
            }
        })
    );

    velero_sets_status(&backups, "c1-backup-nightly", json!({"phase": "Completed"})).await?;
    let restore = RestoreSpec {
        backup_name: Some("nightly".into()),
        options: backup_core::RestoreOptions {
            namespace_mapping: [("shop".to_string(), "shop-copy".to_string())].into(),
            existing_resource_policy: backup_core::ExistingResourcePolicy::Update,
            ..Default::default()
        },
        ..Default::default()
    };
    s.engine.start_restore("back", &restore).await?;
    let restores: Api<Restore> = Api::namespaced(s.client.clone(), &ns);
    assert_eq!(
        stored(&restores, "c1-restore-back").await?,
        json!({
            "apiVersion": "velero.io/v1", "kind": "Restore",
            "metadata": {"name": "c1-restore-back", "namespace": ns, "labels": labels("c1"),
                         "annotations": {"backup-fleet.io/name": "back"}},
            "spec": {
                "backupName": "c1-backup-nightly",
                "namespaceMapping": {"shop": "shop-copy"},
                "existingResourcePolicy": "update"
            }
        })
    );
    s.ns.delete().await
}

#[tokio::test]
async fn backup_status_follows_velero_new_inprogress_completed() -> Result<()> {
    let s = setup("velero_backup_status", "c1").await?;
    available_location(&s).await?;
    let backups: Api<Backup> = Api::namespaced(s.client.clone(), &s.ns.name);
    s.engine.start_backup("b1", &BackupSpec::default()).await?;
    assert_eq!(s.engine.observe_backup("b1").await?.phase, Phase::New);

    // Velero picks it up: phase, start time, expiration, format version, first progress.
    velero_sets_status(
        &backups,
        "c1-backup-b1",
        json!({
            "phase": "InProgress", "version": 1, "formatVersion": "1.1.0",
            "startTimestamp": "2026-01-01T00:00:00Z", "expiration": "2026-01-31T00:00:00Z",
            "progress": {"totalItems": 40, "itemsBackedUp": 10}
        }),
    )
    .await?;
    let st = s.engine.observe_backup("b1").await?;
    assert_eq!(st.phase, Phase::InProgress);
    assert_eq!((st.progress.items_done, st.progress.total_items), (10, 40));
    assert_eq!(st.started, Some("2026-01-01T00:00:00Z".parse()?));
    assert!(st.completed.is_none());

    velero_sets_status(
        &backups,
        "c1-backup-b1",
        json!({
            "phase": "Completed", "completionTimestamp": "2026-01-01T00:05:00Z",
            "progress": {"totalItems": 41, "itemsBackedUp": 41}
        }),
    )
    .await?;
    let st = s.engine.observe_backup("b1").await?;
    assert_eq!(st.phase, Phase::Completed);
    assert_eq!((st.progress.items_done, st.progress.total_items), (41, 41));
    assert_eq!(st.completed, Some("2026-01-01T00:05:00Z".parse()?));
    assert!(st.errors.is_empty() && st.warnings.is_empty());

    // Item errors: PartiallyFailed with Velero's counters (messages are in BackupResults).
    s.engine.start_backup("b2", &BackupSpec::default()).await?;
    velero_sets_status(
        &backups,
        "c1-backup-b2",
        json!({
            "phase": "PartiallyFailed", "errors": 2, "warnings": 1,
            "startTimestamp": "2026-01-01T00:00:00Z", "completionTimestamp": "2026-01-01T00:01:00Z",
            "progress": {"totalItems": 5, "itemsBackedUp": 3}
        }),
    )
    .await?;
    let st = s.engine.observe_backup("b2").await?;
    assert_eq!(st.phase, Phase::PartiallyFailed);
    assert_eq!(st.errors.len(), 1);
    assert!(st.errors[0].contains("2 item error(s)"), "{:?}", st.errors);
    assert!(st.warnings[0].contains("1 warning(s)"), "{:?}", st.warnings);

    // A failed backup's failureReason is shown verbatim.
    s.engine.start_backup("b3", &BackupSpec::default()).await?;
    let reason = "error getting backup store: rpc error: code = Unknown desc = NoSuchBucket";
    velero_sets_status(
        &backups,
        "c1-backup-b3",
        json!({
            "phase": "Failed", "failureReason": reason,
            "startTimestamp": "2026-01-01T00:00:00Z", "completionTimestamp": "2026-01-01T00:00:01Z"
        }),
    )
    .await?;
    let st = s.engine.observe_backup("b3").await?;
    assert_eq!(st.phase, Phase::Failed);
    assert_eq!(st.errors, vec![reason.to_string()]);
    s.ns.delete().await
}

#[tokio::test]
async fn failed_validation_backup_shows_velero_validation_errors() -> Result<()> {
    let s = setup("velero_failed_validation", "c1").await?;
    available_location(&s).await?;
    let backups: Api<Backup> = Api::namespaced(s.client.clone(), &s.ns.name);
    s.engine.start_backup("bad", &BackupSpec::default()).await?;
    let errors = json!([
        "Invalid included/excluded namespace lists: excludes list cannot contain an asterisk",
        "an existing backup storage location wasn't specified at backup creation time and the default 'default' wasn't found"
    ]);
    velero_sets_status(
        &backups,
        "c1-backup-bad",
        json!({"phase": "FailedValidation", "validationErrors": errors}),
    )
    .await?;
    let st = s.engine.observe_backup("bad").await?;
    assert_eq!(st.phase, Phase::FailedValidation);
    assert!(st.phase.is_terminal());
    assert_eq!(serde_json::to_value(&st.validation_errors)?, errors);
    s.ns.delete().await
}

#[tokio::test]
async fn restore_status_and_sources() -> Result<()> {
    let s = setup("velero_restore", "c1").await?;
    available_location(&s).await?;
    let backups: Api<Backup> = Api::namespaced(s.client.clone(), &s.ns.name);
    let restores: Api<Restore> = Api::namespaced(s.client.clone(), &s.ns.name);

    // A missing backup, and a schedule without a Completed backup, are NotFound up front.
    let missing = RestoreSpec {
        backup_name: Some("nope".into()),
        ..Default::default()
    };
    let e = s.engine.start_restore("r0", &missing).await.unwrap_err();
    assert_eq!(
        e,
        EngineError::NotFound {
            what: "backup",
            name: "nope".into()
        }
    );
    let by_schedule = RestoreSpec {
        schedule_name: Some("daily".into()),
        ..Default::default()
    };
    let e = s
        .engine
        .create_restore("r0", &by_schedule)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            VeleroError::NotFound {
                what: "completed backup of schedule",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("daily"), "{e}");

    // A backup created by the schedule (Velero labels it velero.io/schedule-name), Completed.
    let mut b = Backup::new("c1-schedule-daily-20260101000000", Default::default());
    b.labels_mut()
        .insert("velero.io/schedule-name".into(), "c1-schedule-daily".into());
    backups.create(&PostParams::default(), &b).await?;
    velero_sets_status(&backups, &b.name_any(), json!({"phase": "Completed"})).await?;
    s.engine.start_restore("r1", &by_schedule).await?;
    assert_eq!(
        restores
            .get("c1-restore-r1")
            .await?
            .spec
            .schedule_name
            .as_deref(),
        Some("c1-schedule-daily")
    );
    assert_eq!(s.engine.observe_restore("r1").await?.phase, Phase::New);

    velero_sets_status(
        &restores,
        "c1-restore-r1",
        json!({
            "phase": "InProgress", "startTimestamp": "2026-01-02T00:00:00Z",
            "progress": {"totalItems": 8, "itemsRestored": 2}
        }),
    )
    .await?;
    let st = s.engine.observe_restore("r1").await?;
    assert_eq!(
        (st.phase, st.progress.items_done, st.progress.total_items),
        (Phase::InProgress, 2, 8)
    );
    velero_sets_status(
        &restores,
        "c1-restore-r1",
        json!({
            "phase": "Completed", "completionTimestamp": "2026-01-02T00:01:00Z", "warnings": 3,
            "progress": {"totalItems": 8, "itemsRestored": 8}
        }),
    )
    .await?;
    let st = s.engine.observe_restore("r1").await?;
    assert_eq!((st.phase, st.progress.items_done), (Phase::Completed, 8));
    assert!(
        st.warnings[0].contains("RestoreResults"),
        "{:?}",
        st.warnings
    );
    s.ns.delete().await
}

#[tokio::test]
async fn deletion_goes_through_a_delete_backup_request() -> Result<()> {
    let s = setup("velero_delete", "c1").await?;
    available_location(&s).await?;
    let backups: Api<Backup> = Api::namespaced(s.client.clone(), &s.ns.name);
    s.engine.start_backup("old", &BackupSpec::default()).await?;
    velero_sets_status(&backups, "c1-backup-old", json!({"phase": "Completed"})).await?;
    let uid = backups.get("c1-backup-old").await?.uid().context("uid")?;

    s.engine.delete_backup("old").await?;
    let requests: Api<DeleteBackupRequest> = Api::namespaced(s.client.clone(), &s.ns.name);
    let all = requests.list(&ListParams::default()).await?.items;
    assert_eq!(all.len(), 1);
    let r = &all[0];
    assert_eq!(r.spec.backup_name, "c1-backup-old");
    assert_eq!(r.labels()["velero.io/backup-name"], "c1-backup-old");
    assert_eq!(r.labels()["velero.io/backup-uid"], uid);
    // The Backup object stays until Velero processes the request (data goes first).
    assert!(backups.get_opt("c1-backup-old").await?.is_some());

    // Asking again while the request is pending does not pile up requests.
    s.engine.delete_backup("old").await?;
    assert_eq!(requests.list(&ListParams::default()).await?.items.len(), 1);
    let e = s.engine.delete_backup("never-existed").await.unwrap_err();
    assert_eq!(e.metric_label(), "not_found");
    s.ns.delete().await
}

#[tokio::test]
async fn downloads_and_server_probe_wait_for_velero_within_bounds() -> Result<()> {
    let s = setup("velero_download_probe", "c1").await?;
    // Nobody answers: bounded, typed errors.
    let started = Instant::now();
    let e = s
        .engine
        .check_velero(Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(e, VeleroError::NotResponding { .. }), "{e}");
    assert!(e.to_string().contains("velero Deployment"), "{e}");
    let e = s
        .engine
        .download_url(DownloadTargetKind::BackupLog, "b1", Duration::from_secs(1))
        .await
        .unwrap_err();
    assert_eq!(e.metric_label(), "timeout", "{e}");
    assert!(started.elapsed() < Duration::from_secs(10));

    // Play Velero: answer every request in the namespace by patching its status.
    let client = s.client.clone();
    let ns = s.ns.name.clone();
    let player = tokio::spawn(async move {
        let ssrs: Api<ServerStatusRequest> = Api::namespaced(client.clone(), &ns);
        let drs: Api<DownloadRequest> = Api::namespaced(client, &ns);
        loop {
            for r in ssrs.list(&ListParams::default()).await?.items {
                let st = json!({"status": {"phase": "Processed", "serverVersion": "v1.16.0",
                    "processedTimestamp": "2026-01-01T00:00:00Z",
                    "plugins": [{"name": "velero.io/aws", "kind": "ObjectStore"}]}});
                ssrs.patch(&r.name_any(), &PatchParams::default(), &Patch::Merge(&st))
                    .await?;
            }
            for r in drs.list(&ListParams::default()).await?.items {
                let url = format!(
                    "http://127.0.0.1:9/{}/{}",
                    r.spec.target.kind, r.spec.target.name
                );
                let st = json!({"status": {"phase": "Processed", "downloadURL": url,
                    "expiration": "2026-01-01T00:10:00Z"}});
                drs.patch(&r.name_any(), &PatchParams::default(), &Patch::Merge(&st))
                    .await?;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        #[allow(unreachable_code)]
        Ok::<(), kube::Error>(())
    });
    let info = s.engine.check_velero(Duration::from_secs(20)).await?;
    assert_eq!(info.server_version.as_deref(), Some("v1.16.0"));
    assert_eq!(info.plugins[0].kind, "ObjectStore");
    let url = s
        .engine
        .download_url(
            DownloadTargetKind::BackupContents,
            "b1",
            Duration::from_secs(20),
        )
        .await?;
    assert_eq!(url, "http://127.0.0.1:9/BackupContents/c1-backup-b1");
    let url = s
        .engine
        .download_url(
            DownloadTargetKind::RestoreLog,
            "r1",
            Duration::from_secs(20),
        )
        .await?;
    assert_eq!(url, "http://127.0.0.1:9/RestoreLog/c1-restore-r1");
    player.abort();
    s.ns.delete().await
}
