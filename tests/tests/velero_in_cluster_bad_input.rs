//! The Velero in-cluster engine given bad input: Velero missing or not answering, unusable
//! locations, rejected schedules, prefixes that would escape `<project>/<cluster>`.

use std::time::{Duration, Instant};

use anyhow::Result;
use backup_core::{BackupEngine, BackupSpec, EngineError, Schedule, ScheduleSpec};
use backup_velero::api::{self, Backup, BackupStorageLocation};
use backup_velero::in_cluster::{InClusterConfig, InClusterEngine, VeleroError};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tests::velero::{available_location, install_crds, location, setup, velero_sets_status};
use tests::{TestNamespace, shared};

#[tokio::test]
async fn velero_not_installed_is_reported_clearly_and_fast() -> Result<()> {
    // The management cluster never gets Velero's CRDs: Velero runs in user clusters.
    let env = shared()?;
    let client = env.client("mgmt").await?;
    let ns = TestNamespace::create(&client, "velero_not_installed").await?;
    let cfg = InClusterConfig::new("proj", "mgmt")?.with_velero_namespace(&ns.name);
    let engine = InClusterEngine::new(client, cfg);
    let started = Instant::now();
    let e = engine
        .check_velero(Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(matches!(e, VeleroError::NotInstalled { .. }), "{e}");
    assert_eq!(e.metric_label(), "velero_not_installed");
    assert!(e.to_string().contains("velero.io/v1 is not served"), "{e}");
    let e = engine
        .start_backup("b", &BackupSpec::default())
        .await
        .unwrap_err();
    assert!(matches!(e, EngineError::Unavailable { .. }), "{e}");
    assert!(e.to_string().contains("Velero is not installed"), "{e}");
    let e = engine.observe_backup("b").await.unwrap_err();
    assert!(e.to_string().contains("Velero is not installed"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    ns.delete().await
}

#[tokio::test]
async fn missing_velero_namespace_is_not_installed() -> Result<()> {
    let env = shared()?;
    let client = env.client("c1").await?;
    install_crds(&client).await?;
    let cfg = InClusterConfig::new("proj", "c1")?.with_velero_namespace("no-such-velero-ns");
    let engine = InClusterEngine::new(client, cfg);
    let e = engine
        .check_velero(Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(e, VeleroError::NotInstalled { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("\"no-such-velero-ns\" does not exist"),
        "{e}"
    );
    Ok(())
}

#[tokio::test]
async fn an_unavailable_location_refuses_backups_with_velero_message() -> Result<()> {
    let s = setup("velero_bsl_unavailable", "c1").await?;
    s.engine
        .ensure_location("main", &location(), None, false)
        .await?;
    let bsls: Api<BackupStorageLocation> = Api::namespaced(s.client.clone(), &s.ns.name);
    let message = "BackupStorageLocation \"c1-location-main\" is unavailable: rpc error: code = Unknown desc = NoSuchBucket: The specified bucket does not exist";
    let st = json!({"status": {"phase": "Unavailable", "message": message,
        "lastValidationTime": "2026-01-01T00:00:00Z"}});
    bsls.patch(
        "c1-location-main",
        &PatchParams::default(),
        &Patch::Merge(&st),
    )
    .await?;
    let e = s
        .engine
        .create_backup("b", &BackupSpec::default())
        .await
        .unwrap_err();
    assert_eq!(e.metric_label(), "location_unavailable", "{e}");
    assert!(e.to_string().contains(message), "{e}");
    let e: EngineError = e.into();
    assert!(e.is_retryable());
    let backups: Api<Backup> = Api::namespaced(s.client.clone(), &s.ns.name);
    assert!(
        backups.get_opt("c1-backup-b").await?.is_none(),
        "no backup may be created"
    );

    // Re-applying the location (e.g. making it default) keeps Velero's status.
    s.engine
        .ensure_location("main", &location(), None, true)
        .await?;
    let bsl = bsls.get("c1-location-main").await?;
    assert_eq!(bsl.spec.default, Some(true));
    assert_eq!(bsl.status.and_then(|s| s.message).as_deref(), Some(message));
    s.ns.delete().await
}

#[tokio::test]
async fn a_schedule_velero_rejects_is_an_error_with_its_reasons() -> Result<()> {
    let s = setup("velero_schedule_rejected", "c1").await?;
    available_location(&s).await?;
    let sched = ScheduleSpec {
        schedule: Schedule::parse("0 3 * * *")?,
        template: BackupSpec::default(),
        paused: false,
        keep: None,
    };
    s.engine.apply_schedule("nightly", &sched).await?;
    let schedules: Api<api::Schedule> = Api::namespaced(s.client.clone(), &s.ns.name);
    velero_sets_status(
        &schedules,
        "c1-schedule-nightly",
        json!({"phase": "Enabled", "lastBackup": "2026-01-01T03:00:00Z"}),
    )
    .await?;
    let st = s.engine.observe_schedule("nightly").await?;
    assert_eq!(st.phase.map(|p| p.to_string()).as_deref(), Some("Enabled"));

    let reason = "invalid schedule: expected exactly 5 fields, found 6: [0 0 3 * * *]";
    velero_sets_status(
        &schedules,
        "c1-schedule-nightly",
        json!({"phase": "FailedValidation", "validationErrors": [reason]}),
    )
    .await?;
    let e = s.engine.observe_schedule("nightly").await.unwrap_err();
    assert!(
        matches!(
            e,
            VeleroError::Rejected {
                what: "schedule",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains(reason), "{e}");
    let e = s.engine.observe_schedule("absent").await.unwrap_err();
    assert_eq!(e.to_string(), "schedule \"absent\" not found");
    s.engine.delete_schedule("nightly").await?;
    assert!(schedules.get_opt("c1-schedule-nightly").await?.is_none());
    s.ns.delete().await
}

#[tokio::test]
async fn two_clusters_never_share_a_prefix_and_escapes_are_refused() -> Result<()> {
    let s = setup("velero_prefixes", "c1").await?;
    let other_cfg = InClusterConfig::new("proj", "c10")?.with_velero_namespace(&s.ns.name);
    let other = InClusterEngine::new(s.client.clone(), other_cfg);
    let a = s
        .engine
        .ensure_location("main", &location(), None, false)
        .await?;
    let b = other
        .ensure_location("main", &location(), None, false)
        .await?;
    assert_ne!(a.name_any(), b.name_any());
    let (pa, pb) = (
        a.spec.object_storage.prefix.unwrap(),
        b.spec.object_storage.prefix.unwrap(),
    );
    assert_eq!(
        (pa.as_str(), pb.as_str()),
        ("base/proj/c1/velero", "base/proj/c10/velero")
    );
    // Velero lists `<prefix>/backups/`: neither cluster's tree contains the other's.
    assert!(!format!("{pb}/").starts_with(&format!("{pa}/")));
    assert!(!format!("{pa}/").starts_with(&format!("{pb}/")));

    let mut escape = location();
    escape.prefix = Some("base/../../other-project".into());
    let e = s
        .engine
        .ensure_location("evil", &escape, None, false)
        .await
        .unwrap_err();
    assert!(matches!(e, VeleroError::Invalid(_)), "{e}");
    assert!(e.to_string().contains("'..'"), "{e}");
    let bsls: Api<BackupStorageLocation> = Api::namespaced(s.client.clone(), &s.ns.name);
    assert!(bsls.get_opt("c1-location-evil").await?.is_none());
    let e = InClusterConfig::new("proj", "../c2").unwrap_err();
    assert!(
        e.to_string().contains("cannot be a storage prefix segment"),
        "{e}"
    );
    s.ns.delete().await
}
