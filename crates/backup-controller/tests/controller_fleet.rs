//! The fleet controller end to end on the local control plane: a real controller process,
//! real apiservers (mgmt, c1, c2), a real S3 server. Each test is its own project namespace
//! with its own controller process scoped to it.

use std::time::Duration;

use anyhow::{Context, Result};
use backup_core::BackupKind;
use backup_storage::BackupName;
use serde_json::{Value, json};
use tests::controller::{ControllerProcess, Project, has_condition, runs_of, wait_until};

#[tokio::test]
async fn a_scheduled_fleet_backup_runs_on_the_selected_clusters_keeps_n_and_reports_from_storage()
-> Result<()> {
    let p = Project::create("fleet_schedule").await?;
    p.apply(p.s3_location("main", true)?).await?;
    p.apply(p.cluster("c1", "c1", json!({"env": "prod"})))
        .await?;
    p.apply(p.cluster("c2", "c2", json!({"env": "prod"})))
        .await?;
    p.apply(p.cluster("dev", "c1", json!({"env": "dev"})))
        .await?;
    p.apply(json!({
        "kind": "ClusterBackup",
        "metadata": {"name": "nightly"},
        "spec": {
            "clusters": {"selector": {"matchLabels": {"env": "prod"}}},
            "schedule": "@every 4s",
            "template": {"includedNamespaces": ["kube-system"], "ttl": "1h"},
            "retention": {"keep": 2}
        }
    }))
    .await?;
    let controller = ControllerProcess::start(tests::controller_bin!(), &p, "only", &[]).await?;

    // Three firings: keep 2 leaves exactly the newest two of each selected cluster.
    let done = p
        .wait_for(
            "ClusterBackup",
            "nightly",
            Duration::from_secs(60),
            "three completed firings on both clusters",
            |b| {
                ["c1", "c2"].iter().all(|c| {
                    let runs = runs_of(b, c);
                    runs["lastBackup"]["phase"] == "Completed"
                        && runs["backups"].as_array().is_some_and(|a| a.len() == 2)
                        && runs["lastSuccessfulBackup"] == runs["lastBackup"]["name"]
                }) && b["status"]["lastScheduleTime"].is_string()
            },
        )
        .await
        .with_context(|| controller.log_text())?;
    // Retention deletes after the run's status is written: wait until storage keeps three.
    wait_until(
        Duration::from_secs(30),
        "retention to keep three runs per cluster",
        || async {
            let c1 = p.stored_runs("c1").await?.len();
            let c2 = p.stored_runs("c2").await?.len();
            Ok(c1 <= 3 && c2 <= 3)
        },
    )
    .await?;
    let status = p.get("ClusterBackup", "nightly").await?;
    assert_eq!(status["status"]["phase"], "Completed", "{status:#}");
    assert!(
        has_condition(&status, "Ready", "True", "Ready"),
        "{status:#}"
    );
    assert!(has_condition(&status, "Degraded", "False", "NoFailedRuns"));
    let clusters: Vec<&str> = status["status"]["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["cluster"].as_str().unwrap())
        .collect();
    assert_eq!(clusters, ["c1", "c2"], "the dev cluster is not selected");
    assert!(p.stored_runs("dev").await?.is_empty());
    for cluster in ["c1", "c2"] {
        let stored = p.stored_runs(cluster).await?;
        assert!(stored.len() <= 3, "{cluster}: {stored:?}");
        for name in &stored {
            assert!(
                name.starts_with("nightly-") && name.len() == "nightly-".len() + 14,
                "run names are <clusterbackup>-<YYYYMMDDhhmmss>: {name}"
            );
            // Each stored run is complete and verifies.
            let repo = p.repository(cluster)?;
            repo.verify(BackupKind::Resources, &BackupName::new(name.as_str())?)
                .await?;
        }
        let listed: Vec<String> = runs_of(&status, cluster)["backups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        let mut newest_first = stored.clone();
        newest_first.reverse();
        assert_eq!(
            listed,
            newest_first[..listed.len()],
            "{cluster}: status lists storage's runs"
        );
    }
    drop(done);

    // The metrics the issue names.
    let (code, metrics) = controller.get("/metrics")?;
    assert_eq!(code, 200);
    for expected in [
        "backupfleet_leader 1",
        "backupfleet_backup_runs_total{phase=\"Completed\",engine=\"direct\"}",
        &format!(
            "backupfleet_last_successful_backup_timestamp_seconds{{namespace=\"{}\",clusterbackup=\"nightly\",cluster=\"c1\"}}",
            p.name()
        ),
        &format!(
            "backupfleet_storage_location_available{{namespace=\"{}\",name=\"main\"}} 1",
            p.name()
        ),
        "backupfleet_reconcile_total{controller=\"clusterbackup\"}",
    ] {
        assert!(
            metrics.contains(expected),
            "missing {expected} in\n{metrics}"
        );
    }
    assert_eq!(controller.get("/livez")?.0, 200);
    p.delete().await
}

#[tokio::test]
async fn a_one_time_backup_runs_once_an_edit_does_not_run_it_again_and_run_now_does() -> Result<()>
{
    let p = Project::create("one_time").await?;
    p.apply(p.s3_location("main", true)?).await?;
    p.apply(p.cluster("c1", "c1", json!({}))).await?;
    let backup = |namespaces: Value| {
        json!({
            "kind": "ClusterBackup",
            "metadata": {"name": "before-upgrade"},
            "spec": {"template": {"includedNamespaces": namespaces}}
        })
    };
    p.apply(backup(json!(["kube-system"]))).await?;
    let controller = ControllerProcess::start(tests::controller_bin!(), &p, "only", &[]).await?;
    p.wait_for(
        "ClusterBackup",
        "before-upgrade",
        Duration::from_secs(60),
        "the one-time run completed",
        |b| runs_of(b, "c1")["lastBackup"]["phase"] == "Completed",
    )
    .await
    .with_context(|| controller.log_text())?;
    assert_eq!(p.stored_runs("c1").await?, ["before-upgrade"]);

    p.apply(backup(json!(["default"]))).await?;
    let edited = p
        .wait_for(
            "ClusterBackup",
            "before-upgrade",
            Duration::from_secs(30),
            "the Immutable condition",
            |b| has_condition(b, "Immutable", "True", "OneTimeBackupAlreadyRan"),
        )
        .await?;
    assert_eq!(edited["status"]["lastRunGeneration"], 1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        p.stored_runs("c1").await?,
        ["before-upgrade"],
        "not run again"
    );

    // Run-now: a new token runs it once more, now, under a name of its own.
    let mut with_token = backup(json!(["default"]));
    with_token["metadata"]["annotations"] = json!({"backupfleet.dev/run-now": "t1"});
    p.apply(with_token.clone()).await?;
    let ran = p
        .wait_for(
            "ClusterBackup",
            "before-upgrade",
            Duration::from_secs(60),
            "run-now t1 served and completed",
            |b| {
                let last = &runs_of(b, "c1")["lastBackup"];
                b["status"]["lastRunNowToken"] == "t1"
                    && last["phase"] == "Completed"
                    && last["name"] != "before-upgrade"
            },
        )
        .await
        .with_context(|| controller.log_text())?;
    let stored = p.stored_runs("c1").await?;
    assert_eq!(stored.len(), 2, "{stored:?}");
    assert_eq!(
        stored[1],
        runs_of(&ran, "c1")["lastBackup"]["name"]
            .as_str()
            .unwrap_or_default()
    );
    assert!(stored[1].starts_with("before-upgrade-"), "{stored:?}");
    // The same token again (re-applied) does not run again.
    p.apply(with_token).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(p.stored_runs("c1").await?.len(), 2);
    p.delete().await
}
