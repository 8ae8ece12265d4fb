//! `backupctl etcd agent` with the real fleet controller (in this process) on the local
//! control plane: the controller validates EtcdRestores, the agent restores the validated ones
//! of its cluster from the real etcd's snapshot into a data directory and reports on each.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use backup_controller::context::Settings;
use backup_controller::runtime::RunConfig;
use backup_etcd::{EtcdConnection, SnapshotRequest};
use serde_json::{Value, json};
use tests::controller::{Project, free_port, has_condition};
use tests::env::shared;

mod common;

use common::{backupctl, stderr, stdout};

fn restore(name: &str, cluster: &str, backup: &str) -> Value {
    json!({
        "kind": "EtcdRestore",
        "metadata": {"name": name},
        "spec": {"cluster": cluster, "backupName": backup}
    })
}

/// Waits until the controller validated EtcdRestore `name`.
async fn validated(p: &Project, name: &str) -> Result<()> {
    p.wait_for(
        "EtcdRestore",
        name,
        Duration::from_secs(30),
        "validated",
        |r| has_condition(r, "Ready", "True", "Validated"),
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_restores_validated_etcd_restores_of_its_cluster_and_reports_each() -> Result<()>
{
    let env = shared()?;
    let mgmt = env.cluster("mgmt")?.clone();
    let p = Project::create("etcd-agent").await?;
    p.apply(p.s3_location("main", true)?).await?;
    p.apply(p.cluster("c1", "c1", json!({}))).await?;
    // A snapshot of c1's real etcd where `backupctl etcd` and EtcdBackupConfigs put them.
    let connection = EtcdConnection {
        endpoints: vec![env.etcd_endpoint("c1")?.to_string()],
        ..EtcdConnection::default()
    };
    let snapshot = backup_etcd::take_snapshot(
        &p.repository("c1")?,
        &connection,
        &SnapshotRequest::one_shot("c1-snap"),
    )
    .await?;
    let db_size = snapshot.member.db_size;

    // The controller, in this process, scoped to the project.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = RunConfig {
        kubeconfig: Some(mgmt.kubeconfig.clone()),
        context: Some(mgmt.context.clone()),
        admin_addr: format!("127.0.0.1:{}", free_port()?).parse()?,
        api: None,
        lease_namespace: p.name().to_string(),
        identity: "etcd-agent-test".into(),
        leader_election: false,
        namespace: Some(p.name().to_string()),
        settings: Settings::default(),
        webhook: None,
    };
    let controller = tokio::spawn(backup_controller::runtime::run(config, async move {
        let _ = stopped.await;
    }));

    p.apply(restore("good", "c1", "c1-snap")).await?;
    p.apply(restore("missing", "c1", "no-such-snapshot"))
        .await?;
    p.apply(restore("foreign", "c9", "c1-snap")).await?;
    validated(&p, "good").await?;
    for (name, reason) in [
        ("missing", "BackupNotFound"),
        ("foreign", "ClusterNotFound"),
    ] {
        p.wait_for(
            "EtcdRestore",
            name,
            Duration::from_secs(30),
            &format!("Ready=False {reason}"),
            |r| has_condition(r, "Ready", "False", reason),
        )
        .await?;
    }

    let work = tempfile::tempdir()?;
    let data_dir = work.path().join("member-restored");
    let agent = |data_dir: &std::path::Path| {
        backupctl(&[
            "etcd",
            "agent",
            "--kubeconfig",
            &mgmt.kubeconfig.display().to_string(),
            "--context",
            &mgmt.context,
            "--namespace",
            p.name(),
            "--cluster",
            "c1",
            "--data-dir",
            &data_dir.display().to_string(),
            "--once",
        ])
    };
    let out = agent(&data_dir);
    ensure!(out.status.success(), "agent failed: {}", stderr(&out));
    let good = p.get("EtcdRestore", "good").await?;
    assert_eq!(good["status"]["phase"], "Completed", "{good:#}");
    let message = good["status"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("restored snapshot c1-snap"), "{message}");
    assert!(
        good["status"]["startTime"].is_string() && good["status"]["completionTime"].is_string()
    );
    // The controller's validation is still there beside the agent's report.
    assert!(
        has_condition(&good, "Ready", "True", "Validated"),
        "{good:#}"
    );
    let db = data_dir.join("member/snap/db");
    let restored_size = std::fs::metadata(&db)
        .with_context(|| format!("{} was not restored", db.display()))?
        .len();
    assert!(
        restored_size as i64 >= db_size / 2,
        "{restored_size} vs {db_size}"
    );
    // Not validated: left alone.
    for name in ["missing", "foreign"] {
        let r = p.get("EtcdRestore", name).await?;
        assert!(r["status"]["phase"].is_null(), "{name}: {r:#}");
    }

    // Into the same directory again: refused, the directory untouched.
    p.apply(restore("again", "c1", "c1-snap")).await?;
    validated(&p, "again").await?;
    let out = agent(&data_dir);
    assert!(
        !out.status.success(),
        "a non-empty data dir must fail: {}",
        stdout(&out)
    );
    let again = p.get("EtcdRestore", "again").await?;
    assert_eq!(again["status"]["phase"], "Failed", "{again:#}");
    let message = again["status"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("not empty"), "{message}");
    assert_eq!(std::fs::metadata(&db)?.len(), restored_size, "untouched");

    // A restore an earlier agent was cut off in ends Failed when the agent starts again (the
    // cut-off itself is played here: a real one is over in milliseconds).
    p.apply(restore("cut", "c1", "c1-snap")).await?;
    validated(&p, "cut").await?;
    let api = p.api("EtcdRestore", "etcdrestores");
    api.patch_status(
        "cut",
        &kube::api::PatchParams::apply("backupctl-etcd-agent").force(),
        &kube::api::Patch::Apply(json!({
            "apiVersion": "backupfleet.dev/v1alpha1", "kind": "EtcdRestore",
            "status": {"phase": "Restoring", "message": "restoring", "startTime": "2026-11-30T10:00:00Z"}
        })),
    )
    .await?;
    let out = agent(&work.path().join("other"));
    ensure!(out.status.success(), "{}", stderr(&out));
    let cut = p.get("EtcdRestore", "cut").await?;
    assert_eq!(cut["status"]["phase"], "Failed", "{cut:#}");
    assert!(
        cut["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("interrupted"),
        "{cut:#}"
    );
    assert!(
        !work.path().join("other").exists(),
        "nothing restored for it"
    );

    let _ = stop.send(());
    controller.await??;
    p.delete().await
}
