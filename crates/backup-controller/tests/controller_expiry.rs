//! The expiry collector end to end, on a real controller process (`--gc-interval 2s`), real
//! apiservers and a real S3 server: TTLs that pass in seconds delete a one-time ClusterBackup's
//! run and a backup the real `backupctl` wrote, while the newest successful run of a (paused)
//! schedule stays past its TTL, and nothing is deleted through a ReadOnly location. Storage is
//! what is checked; the Events and the metric must agree with it. Only the replica holding the
//! Lease collects, and the one that takes the Lease over carries on.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use backup_core::BackupKind;
use backup_storage::{BackupName, Repository};
use serde_json::{Value, json};
use tests::cli::run_backupctl;
use tests::controller::{
    ControllerProcess, Project, listed_runs, metric_value, runs_of, wait_until,
};
use tests::shared;

const WAIT: Duration = Duration::from_secs(90);
/// The collector's interval: seconds here, where an operator would give an hour.
const GC: &[&str] = &["--gc-interval", "2s"];
/// Every backup's TTL: long enough to see each stored first, short enough to pass in the test.
const TTL: &str = "15s";

/// The S3 options of the shared server, as `Repository::open` and `backupctl --option` take them.
fn s3_options() -> Result<BTreeMap<String, String>> {
    let s3 = shared()?.s3();
    Ok([
        ("region", s3.region.clone()),
        ("s3Url", s3.endpoint.clone()),
        ("access_key_id", s3.access_key_id.clone()),
        ("secret_access_key", s3.secret_access_key.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect())
}

/// The URL of `prefix` in the shared bucket.
fn url(prefix: &str) -> Result<String> {
    Ok(format!("s3://{}/{prefix}", shared()?.s3().bucket))
}

/// `backupctl backup create NAME` of c1's kube-system into `prefix`, scope `<project>/c1`,
/// with TTL `ttl`: exactly what a person or a CI job runs. It prints the backup only once
/// it has read its manifest back from storage, so afterwards the backup was stored.
fn backupctl_backup(prefix: &str, project: &str, name: &str, ttl: &str) -> Result<()> {
    let kubeconfig = shared()?.cluster("c1")?.kubeconfig.display().to_string();
    let options: Vec<String> = s3_options()?
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let location = url(prefix)?;
    let mut args = vec![
        "backup",
        "create",
        name,
        "--kubeconfig",
        &kubeconfig,
        "--location",
        &location,
        "--project",
        project,
        "--cluster",
        "c1",
        "--include-namespaces",
        "kube-system",
        "--ttl",
        ttl,
        "-o",
        "json",
    ];
    for option in &options {
        args.extend(["--option", option]);
    }
    let out = run_backupctl(&args)?;
    let rows: Value = serde_json::from_str(&out).with_context(|| format!("not JSON: {out}"))?;
    ensure!(rows[0]["name"] == name, "backupctl printed {rows}");
    Ok(())
}

/// The backups stored in `<prefix>/<project>/c1/`, oldest first.
async fn stored(prefix: &str, project: &str) -> Result<Vec<String>> {
    let repo = Repository::open(&url(prefix)?, &s3_options()?)?.scoped_str(project, "c1")?;
    let listing = repo.list(BackupKind::Resources).await?;
    ensure!(listing.problems.is_empty(), "{:?}", listing.problems);
    Ok(listing
        .manifests
        .iter()
        .map(|m| m.name.to_string())
        .collect())
}

/// Runs ClusterBackup `name` (spec `spec`) now with `token`; the run's name once it completed
/// (a run other than `previous`).
async fn run_now(
    p: &Project,
    name: &str,
    spec: &Value,
    token: &str,
    previous: Option<&str>,
) -> Result<String> {
    p.apply(json!({
        "kind": "ClusterBackup",
        "metadata": {"name": name, "annotations": {"backupfleet.dev/run-now": token}},
        "spec": spec,
    }))
    .await?;
    let done = p
        .wait_for(
            "ClusterBackup",
            name,
            WAIT,
            "the run-now run completed",
            |b| {
                let last = &runs_of(b, "c1")["lastBackup"];
                b["status"]["lastRunNowToken"] == token
                    && last["phase"] == "Completed"
                    && last["name"].as_str() != previous
            },
        )
        .await?;
    runs_of(&done, "c1")["lastBackup"]["name"]
        .as_str()
        .map(str::to_string)
        .context("a completed run has a name")
}

/// The backups each `ExpiredBackupsDeleted` Event of the namespace says it deleted, summed
/// (every sweep that deletes publishes one Event: "deleted N expired backup(s): ...").
fn deleted_in_events(events: &str) -> Result<u64> {
    let events: Vec<Value> = serde_json::from_str(events)?;
    let mut total = 0;
    for event in events
        .iter()
        .filter(|e| e["reason"] == "ExpiredBackupsDeleted")
    {
        let note = event["message"].as_str().unwrap_or_default();
        let count = note
            .strip_prefix("deleted ")
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse::<u64>().ok())
            .with_context(|| format!("an Event note that names no count: {note:?}"))?;
        let about = &event["involvedObject"];
        ensure!(
            event["type"] == "Normal"
                && about["kind"] == "StorageLocation"
                && about["name"] == "main",
            "{event:#}"
        );
        total += count;
    }
    Ok(total)
}

#[tokio::test]
async fn expired_backups_go_whoever_wrote_them_but_a_schedules_newest_run_stays() -> Result<()> {
    let p = Project::create("expiry").await?;
    let ns = p.name().to_string();
    p.apply(p.s3_location("main", true)?).await?;
    // The same bucket under another prefix, ReadOnly: nothing may be deleted through it.
    let archive = format!("{}-archive", p.prefix);
    let mut read_only = p.s3_location("archive", false)?;
    read_only["spec"]["objectStorage"]["prefix"] = json!(archive);
    read_only["spec"]["accessMode"] = json!("ReadOnly");
    p.apply(read_only).await?;
    p.apply(p.cluster("c1", "c1", json!({}))).await?;
    let controller = ControllerProcess::start(tests::controller_bin!(), &p, "only", GC).await?;
    p.wait_for("StorageLocation", "archive", WAIT, "Available", |l| {
        l["status"]["phase"] == "Available"
    })
    .await
    .with_context(|| controller.log_text())?;
    backupctl_backup(&archive, &ns, "kept-read-only", TTL)?;

    // A one-time ClusterBackup: its run is no schedule's last restore point.
    let template = json!({"includedNamespaces": ["kube-system"], "ttl": TTL});
    p.apply(
        json!({"kind": "ClusterBackup", "metadata": {"name": "once"},
        "spec": {"clusters": {"names": ["c1"]}, "template": template}}),
    )
    .await?;
    p.wait_for(
        "ClusterBackup",
        "once",
        WAIT,
        "the one-time run stored (status lists what storage holds)",
        |b| runs_of(b, "c1")["lastSuccessfulBackup"] == "once",
    )
    .await
    .with_context(|| controller.log_text())?;

    // A paused schedule run twice by hand: the second run is its newest successful one.
    let nightly = json!({"clusters": {"names": ["c1"]}, "schedule": "@every 24h",
        "paused": true, "template": template});
    let older = run_now(&p, "nightly", &nightly, "t1", None).await?;
    let newest = run_now(&p, "nightly", &nightly, "t2", Some(&older)).await?;
    // Written after the newest run ended, so it expires after it: when a sweep deletes it, the
    // newest run had expired at that sweep too.
    backupctl_backup(&p.prefix, &ns, "adhoc", TTL)?;

    wait_until(
        WAIT,
        "storage to keep only the schedule's newest run",
        || async { Ok(stored(&p.prefix, &ns).await? == [newest.clone()]) },
    )
    .await
    .with_context(|| format!("older run {older}; log:\n{}", controller.log_text()))?;
    let manifest = p
        .repository("c1")?
        .get_manifest(BackupKind::Resources, &BackupName::new(newest.as_str())?)
        .await?;
    let expired = manifest.expires_at.context("the run has a TTL")?;
    ensure!(
        expired <= jiff::Timestamp::now(),
        "{newest} expires at {expired}"
    );
    assert_eq!(
        stored(&archive, &ns).await?,
        ["kept-read-only"],
        "a ReadOnly location is left alone"
    );

    // What it deleted is named in Events on the location, counted by the metric, and gone
    // from the one-time backup's status without waiting for the storage resync.
    let events = p
        .wait_for_events(WAIT, &["ExpiredBackupsDeleted", "c1/once", "c1/adhoc"])
        .await?;
    ensure!(deleted_in_events(&events)? >= 2, "{events}");
    // A sweep counts before it publishes its Event: wait for the two to agree.
    wait_until(WAIT, "the metric to count what the Events name", || async {
        let named = deleted_in_events(&p.events_json().await?)?;
        Ok(deleted_count(&controller, &ns)? == Some(named as f64))
    })
    .await?;
    p.wait_for("ClusterBackup", "once", WAIT, "no stored run listed", |b| {
        listed_runs(b, "c1").is_empty()
    })
    .await?;
    assert!(
        !events.contains("ExpiredBackupsNotDeleted") && !events.contains("ExpiredBackupsNotListed"),
        "{events}"
    );
    p.delete().await
}

/// The sample of `controller`'s expired-backup counter for location `main` of `ns`, if exported.
fn deleted_count(controller: &ControllerProcess, ns: &str) -> Result<Option<f64>> {
    let (_, metrics) = controller.get("/metrics")?;
    let sample = format!(
        "backupfleet_expired_backups_deleted_total{{namespace=\"{ns}\",location=\"main\"}}"
    );
    Ok(metric_value(&metrics, &sample))
}

/// Waits until `controller` says it leads (`backupfleet_leader 1`).
async fn leading(controller: &ControllerProcess) -> Result<()> {
    wait_until(WAIT, "the controller to lead", || async {
        Ok(controller
            .get("/metrics")?
            .1
            .contains("backupfleet_leader 1"))
    })
    .await
    .with_context(|| controller.log_text())
}

#[tokio::test]
async fn only_the_lease_holder_collects_and_its_successor_takes_over() -> Result<()> {
    let p = Project::create("expiry_leader").await?;
    let ns = p.name().to_string();
    p.apply(p.s3_location("main", true)?).await?;
    let mut first = ControllerProcess::start(tests::controller_bin!(), &p, "first", GC).await?;
    leading(&first).await?;
    let standby = ControllerProcess::start(tests::controller_bin!(), &p, "standby", GC).await?;

    backupctl_backup(&p.prefix, &ns, "first-adhoc", "2s")?;
    wait_until(WAIT, "the leader to delete the expired backup", || async {
        Ok(stored(&p.prefix, &ns).await?.is_empty())
    })
    .await
    .with_context(|| first.log_text())?;
    assert_eq!(deleted_count(&first, &ns)?, Some(1.0));
    // A replica that does not hold the Lease never swept: it has no series for the location.
    assert_eq!(
        deleted_count(&standby, &ns)?,
        None,
        "{}",
        standby.log_text()
    );

    first.kill9()?;
    leading(&standby).await?;
    backupctl_backup(&p.prefix, &ns, "second-adhoc", "2s")?;
    wait_until(
        WAIT,
        "the new leader to delete the expired backup",
        || async { Ok(stored(&p.prefix, &ns).await?.is_empty()) },
    )
    .await
    .with_context(|| standby.log_text())?;
    assert_eq!(deleted_count(&standby, &ns)?, Some(1.0));
    p.delete().await
}
