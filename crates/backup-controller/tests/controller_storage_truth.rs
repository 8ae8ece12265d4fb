//! The bucket is the source of truth, on a real controller process: a run deleted from storage
//! disappears from status, a backup written there under the schedule label (as `backupctl
//! backup create --schedule` does) shows up and becomes the last backup when it is the newest,
//! and `deletePolicy` decides whether deleting a ClusterBackup deletes its runs.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use backup_core::{BackupEngine, BackupKind, BackupSpec, Phase};
use backup_storage::BackupName;
use backup_velero::direct::{DirectEngine, SCHEDULE_LABEL};
use kube::api::DeleteParams;
use serde_json::{Value, json};
use tests::controller::{ControllerProcess, Project, listed_runs, runs_of, wait_until};
use tests::shared;

const WAIT: Duration = Duration::from_secs(60);
/// Storage is re-read this often, so status follows changes made behind the controller's back.
const RESYNC: &[&str] = &["--storage-resync", "2s"];

/// A one-time ClusterBackup `name` of kube-system on `clusters`.
fn one_time(name: &str, clusters: &[&str], extra: Value) -> Value {
    let mut spec = json!({
        "clusters": {"names": clusters},
        "template": {"includedNamespaces": ["kube-system"]},
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    json!({"kind": "ClusterBackup", "metadata": {"name": name}, "spec": spec})
}

/// Waits until every cluster's last run of `name` completed.
async fn completed(p: &Project, name: &str, clusters: &[&str]) -> Result<Value> {
    p.wait_for(
        "ClusterBackup",
        name,
        WAIT,
        "every cluster's run completed",
        |b| {
            clusters
                .iter()
                .all(|c| runs_of(b, c)["lastBackup"]["phase"] == "Completed")
        },
    )
    .await
}

/// Takes a backup of `namespaces` in user cluster `cluster` into this project's scope of
/// `cluster` with the direct engine, as `backupctl backup create` does.
async fn backupctl_backup(
    p: &Project,
    cluster: &str,
    name: &str,
    labels: BTreeMap<String, String>,
) -> Result<()> {
    let client = shared()?.client(cluster).await?;
    let engine = DirectEngine::new(client, p.repository(cluster)?).with_storage_location("main");
    let spec = BackupSpec {
        labels,
        filter: backup_core::ResourceFilter {
            included_namespaces: vec!["kube-system".into()],
            ..Default::default()
        },
        ..BackupSpec::default()
    };
    engine.start_backup(name, &spec).await?;
    let status = tokio::time::timeout(WAIT, engine.wait_backup(name)).await??;
    ensure!(
        status.phase == Phase::Completed,
        "backup {name} ended {:?}: {:?}",
        status.phase,
        status.errors
    );
    Ok(())
}

#[tokio::test]
async fn a_run_deleted_from_storage_disappears_from_status() -> Result<()> {
    let p = Project::create("deleted_from_storage").await?;
    p.apply(p.s3_location("main", true)?).await?;
    p.apply(p.cluster("c1", "c1", json!({}))).await?;
    p.apply(p.cluster("c2", "c2", json!({}))).await?;
    p.apply(one_time("snap", &["c1", "c2"], json!({}))).await?;
    let controller = ControllerProcess::start(tests::controller_bin!(), &p, "only", RESYNC).await?;
    let before = completed(&p, "snap", &["c1", "c2"])
        .await
        .with_context(|| controller.log_text())?;
    for cluster in ["c1", "c2"] {
        assert_eq!(listed_runs(&before, cluster), ["snap"]);
        assert_eq!(runs_of(&before, cluster)["lastSuccessfulBackup"], "snap");
        assert_eq!(p.stored_runs(cluster).await?, ["snap"]);
    }

    // Someone deletes c1's run from the bucket, behind the controller's back.
    p.repository("c1")?
        .delete(BackupKind::Resources, &BackupName::new("snap")?)
        .await?;
    assert!(p.stored_runs("c1").await?.is_empty());
    let after = p
        .wait_for(
            "ClusterBackup",
            "snap",
            WAIT,
            "c1's run gone from status",
            |b| listed_runs(b, "c1").is_empty(),
        )
        .await
        .with_context(|| controller.log_text())?;
    let c1 = runs_of(&after, "c1");
    assert!(
        c1["lastSuccessfulBackup"].is_null(),
        "no completed run of c1 is stored any more: {after:#}"
    );
    assert!(
        c1["lastBackup"].is_null(),
        "the last backup is not a run storage no longer holds: {after:#}"
    );
    // c2's run is untouched.
    let c2 = runs_of(&after, "c2");
    assert_eq!(listed_runs(&after, "c2"), ["snap"]);
    assert_eq!(c2["lastBackup"]["name"], "snap");
    assert_eq!(c2["lastBackup"]["phase"], "Completed");
    assert_eq!(c2["lastSuccessfulBackup"], "snap");
    p.delete().await
}

#[tokio::test]
async fn a_backup_written_under_the_schedule_label_is_listed_and_is_last_when_newest() -> Result<()>
{
    let p = Project::create("written_by_backupctl").await?;
    p.apply(p.s3_location("main", true)?).await?;
    p.apply(p.cluster("c1", "c1", json!({}))).await?;
    p.apply(one_time("nightly", &["c1"], json!({}))).await?;
    let controller = ControllerProcess::start(tests::controller_bin!(), &p, "only", RESYNC).await?;
    let before = completed(&p, "nightly", &["c1"])
        .await
        .with_context(|| controller.log_text())?;
    assert_eq!(listed_runs(&before, "c1"), ["nightly"]);

    // `backupctl backup create --schedule nightly` into the same scope, and a backup of
    // someone else's schedule beside it.
    let label = |schedule: &str| BTreeMap::from([(SCHEDULE_LABEL.to_string(), schedule.into())]);
    backupctl_backup(&p, "c1", "by-hand", label("nightly")).await?;
    backupctl_backup(&p, "c1", "not-ours", label("weekly")).await?;
    assert_eq!(
        p.stored_runs("c1").await?,
        ["nightly", "by-hand", "not-ours"],
        "oldest first"
    );

    let after = p
        .wait_for(
            "ClusterBackup",
            "nightly",
            WAIT,
            "the hand-made backup listed",
            |b| listed_runs(b, "c1").contains(&"by-hand".to_string()),
        )
        .await
        .with_context(|| controller.log_text())?;
    assert_eq!(
        listed_runs(&after, "c1"),
        ["by-hand", "nightly"],
        "newest first, and only this schedule's: {after:#}"
    );
    let c1 = runs_of(&after, "c1");
    assert_eq!(c1["lastSuccessfulBackup"], "by-hand", "{after:#}");
    assert_eq!(c1["lastBackup"]["name"], "by-hand", "{after:#}");
    assert_eq!(c1["lastBackup"]["phase"], "Completed");
    let items = c1["lastBackup"]["itemsBackedUp"].as_u64().unwrap_or(0);
    assert!(items > 0, "{after:#}");
    assert_eq!(c1["lastBackup"]["totalItems"].as_u64(), Some(items));
    assert_eq!(after["status"]["phase"], "Completed");
    p.delete().await
}

#[tokio::test]
async fn delete_policy_delete_removes_the_runs_from_storage_and_retain_keeps_them() -> Result<()> {
    let p = Project::create("delete_policy").await?;
    p.apply(p.s3_location("main", true)?).await?;
    p.apply(p.cluster("c1", "c1", json!({}))).await?;
    p.apply(p.cluster("c2", "c2", json!({}))).await?;
    p.apply(one_time(
        "throwaway",
        &["c1", "c2"],
        json!({"deletePolicy": "Delete"}),
    ))
    .await?;
    p.apply(one_time(
        "keepsake",
        &["c1", "c2"],
        json!({"deletePolicy": "Retain"}),
    ))
    .await?;
    let controller = ControllerProcess::start(tests::controller_bin!(), &p, "only", &[]).await?;
    for name in ["throwaway", "keepsake"] {
        completed(&p, name, &["c1", "c2"])
            .await
            .with_context(|| controller.log_text())?;
    }
    for cluster in ["c1", "c2"] {
        let mut stored = p.stored_runs(cluster).await?;
        stored.sort();
        assert_eq!(stored, ["keepsake", "throwaway"]);
    }

    let api = p.api("ClusterBackup", "clusterbackups");
    for name in ["throwaway", "keepsake"] {
        api.delete(name, &DeleteParams::default()).await?;
    }
    for name in ["throwaway", "keepsake"] {
        let api = api.clone();
        wait_until(WAIT, &format!("ClusterBackup {name} gone"), || {
            let api = api.clone();
            async move { Ok(api.get_opt(name).await?.is_none()) }
        })
        .await
        .with_context(|| controller.log_text())?;
    }
    for cluster in ["c1", "c2"] {
        let stored = p.stored_runs(cluster).await?;
        if stored != ["keepsake"] {
            bail!("{cluster}: expected only the retained run, storage holds {stored:?}");
        }
        p.repository(cluster)?
            .verify(BackupKind::Resources, &BackupName::new("keepsake")?)
            .await?;
    }
    let events = p.events_json().await?;
    assert!(
        events.contains("deletePolicy Delete: deleted 2 stored run(s)"),
        "{events}"
    );
    p.delete().await
}

/// What an interrupted run left in a cluster's scope (artifacts, no manifest) is removed after
/// the next run once older than the grace period; committed runs and other clusters' scopes
/// are untouched.
#[tokio::test]
async fn a_run_removes_what_interrupted_runs_left_in_its_cluster_scope() -> Result<()> {
    use backup_storage::object_store::{ObjectStoreExt, PutPayload, path::Path};
    let p = Project::create("orphans").await?;
    p.apply(p.s3_location("main", true)?).await?;
    p.apply(p.cluster("c1", "c1", json!({}))).await?;
    let leftover = Path::from("velero/backups/cut-off/cut-off.tar.gz");
    let c1 = p.repository("c1")?;
    c1.store()
        .put(&leftover, PutPayload::from_static(b"half an upload"))
        .await?;
    let c2_leftover = p.repository("c2")?;
    c2_leftover
        .store()
        .put(&leftover, PutPayload::from_static(b"not c1's"))
        .await?;
    p.apply(one_time("snap", &["c1"], json!({}))).await?;
    let controller = ControllerProcess::start(
        tests::controller_bin!(),
        &p,
        "only",
        &["--orphan-grace", "0s"],
    )
    .await?;
    completed(&p, "snap", &["c1"])
        .await
        .with_context(|| controller.log_text())?;
    p.wait_for_events(WAIT, &["InterruptedUploadsRemoved", "cut-off (14 bytes)"])
        .await?;
    assert!(c1.store().head(&leftover).await.is_err(), "removed");
    assert_eq!(p.stored_runs("c1").await?, ["snap"], "the run itself stays");
    assert!(
        c2_leftover.store().head(&leftover).await.is_ok(),
        "another cluster's scope is not touched"
    );
    p.delete().await
}
