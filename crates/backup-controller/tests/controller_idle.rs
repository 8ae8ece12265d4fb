//! A settled controller stays idle: the status a StorageLocation or ManagedCluster reconcile
//! writes (with its probe time) must not wake that reconcile again, or every location is
//! probed and every cluster asked for its version in a tight loop.

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::json;
use tests::controller::{ControllerProcess, Project, has_condition, metric_value, runs_of};

const WAIT: Duration = Duration::from_secs(60);

/// How many reconciles `controller` (`storagelocation`, `managedcluster`, ...) has started.
fn reconciles(controller: &ControllerProcess, kind: &str) -> Result<f64> {
    let (_, text) = controller.get("/metrics")?;
    metric_value(
        &text,
        &format!("backupfleet_reconcile_total{{controller=\"{kind}\"}}"),
    )
    .with_context(|| format!("no reconcile count for {kind} in\n{text}"))
}

#[tokio::test]
async fn status_writes_do_not_wake_their_own_reconcile() -> Result<()> {
    let p = Project::create("settled").await?;
    p.apply(p.s3_location("main", true)?).await?;
    p.apply(p.cluster("c1", "c1", json!({}))).await?;
    p.apply(p.cluster("lost", "lost", json!({}))).await?;
    p.apply(json!({
        "kind": "ClusterBackup",
        "metadata": {"name": "once"},
        "spec": {"clusters": {"names": ["c1"]}, "template": {"includedNamespaces": ["kube-system"]}}
    }))
    .await?;
    let controller = ControllerProcess::start(tests::controller_bin!(), &p, "only", &[]).await?;
    p.wait_for("StorageLocation", "main", WAIT, "Available", |l| {
        l["status"]["phase"] == "Available"
    })
    .await
    .with_context(|| controller.log_text())?;
    p.wait_for("ManagedCluster", "lost", WAIT, "Reachable=False", |c| {
        has_condition(c, "Reachable", "False", "KubeconfigSecretMissing")
    })
    .await?;
    // Some seconds of work: a backup taken and listed.
    p.wait_for("ClusterBackup", "once", WAIT, "the run completed", |b| {
        runs_of(b, "c1")["lastBackup"]["phase"] == "Completed"
    })
    .await
    .with_context(|| controller.log_text())?;
    let locations = reconciles(&controller, "storagelocation")?;
    let clusters = reconciles(&controller, "managedcluster")?;
    let validated = p.get("StorageLocation", "main").await?["status"]["lastValidationTime"].clone();

    // Another backup: more work for the controller, nothing for locations and clusters.
    p.apply(json!({
        "kind": "ClusterBackup",
        "metadata": {"name": "twice"},
        "spec": {"clusters": {"names": ["c1"]}, "template": {"includedNamespaces": ["kube-system"]}}
    }))
    .await?;
    p.wait_for("ClusterBackup", "twice", WAIT, "the run completed", |b| {
        runs_of(b, "c1")["lastBackup"]["phase"] == "Completed"
    })
    .await?;
    // One location and two clusters, each probed a handful of times at start (the finalizer,
    // the first status), not once per status write they cause.
    assert!(locations <= 6.0, "storagelocation reconciles: {locations}");
    assert!(clusters <= 10.0, "managedcluster reconciles: {clusters}");
    assert_eq!(reconciles(&controller, "storagelocation")?, locations);
    assert_eq!(reconciles(&controller, "managedcluster")?, clusters);
    assert_eq!(
        p.get("StorageLocation", "main").await?["status"]["lastValidationTime"],
        validated,
        "not probed again within its validationFrequency"
    );
    p.delete().await
}
