//! EtcdBackupConfig end to end: the controller snapshots the real etcd of `c1` on a schedule,
//! rotates to `keep`, records KKP's `lastBackups`, stores where `backupctl etcd` looks, and
//! turns every problem (no etcd access, unknown cluster, bad keep, unreachable etcd) into a
//! condition or a failed record that says what happened.

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{Value, json};
use tests::controller::{ControllerProcess, Project, has_condition};
use tests::env::shared;

fn records(config: &Value) -> Vec<Value> {
    config["status"]["lastBackups"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn scheduled_etcd_snapshots_are_taken_rotated_and_listed_like_backupctls() -> Result<()> {
    let env = shared()?;
    let p = Project::create("etcd").await?;
    p.apply(p.s3_location("main", true)?).await?;
    let mut c1 = p.cluster("c1", "c1", json!({}));
    c1["spec"]["etcd"] = json!({"endpoints": [env.etcd_endpoint("c1")?]});
    p.apply(c1).await?;
    // c2 without etcd access, and a cluster whose etcd does not answer.
    p.apply(p.cluster("c2", "c2", json!({}))).await?;
    let mut dead = p.cluster("dead", "c1", json!({}));
    dead["spec"]["etcd"] = json!({"endpoints": ["http://127.0.0.1:1"]});
    p.apply(dead).await?;
    let config = |name: &str, spec: Value| json!({"kind": "EtcdBackupConfig", "metadata": {"name": name}, "spec": spec});
    p.apply(config(
        "c1-etcd",
        json!({"cluster": "c1", "schedule": "@every 3s", "keep": 2}),
    ))
    .await?;
    p.apply(config("once", json!({"cluster": "c1"}))).await?;
    p.apply(config("no-access", json!({"cluster": "c2"})))
        .await?;
    p.apply(config("nowhere", json!({"cluster": "c9"}))).await?;
    p.apply(config("too-many", json!({"cluster": "c1", "keep": 51})))
        .await?;
    p.apply(config("down", json!({"cluster": "dead"}))).await?;
    let controller = ControllerProcess::start(tests::controller_bin!(), &p, "only", &[]).await?;

    // Four firings: with keep 2, the oldest two were rotated out and say so.
    let rotated = p
        .wait_for(
            "EtcdBackupConfig",
            "c1-etcd",
            Duration::from_secs(60),
            "four snapshots, two rotated out",
            |c| {
                let done = records(c)
                    .iter()
                    .filter(|r| r["backupPhase"] == "Completed")
                    .count();
                let deleted = records(c)
                    .iter()
                    .filter(|r| r["deletePhase"] == "Completed")
                    .count();
                done >= 3 && deleted >= 1
            },
        )
        .await
        .with_context(|| controller.log_text())?;
    for record in records(&rotated) {
        let name = record["backupName"].as_str().unwrap_or_default();
        assert!(
            name.starts_with("c1-etcd-") && name.len() == "c1-etcd-".len() + 14,
            "{record:#}"
        );
        assert!(record["scheduledTime"].is_string(), "{record:#}");
        if record["backupPhase"] == "Completed" {
            assert!(record["backupFinishedTime"].is_string(), "{record:#}");
        }
    }
    assert!(rotated["status"]["nextScheduleTime"].is_string());
    assert!(
        has_condition(&rotated, "Ready", "True", "Ready"),
        "{rotated:#}"
    );
    // Storage holds exactly what the status keeps, where `backupctl etcd list --project
    // <namespace> --cluster c1` looks, every checksum intact.
    let repo = p.repository("c1")?;
    let listed = backup_etcd::list_snapshots(&repo, true).await?;
    let stored: Vec<&str> = listed
        .iter()
        .filter(|s| s.config.as_deref() == Some("c1-etcd"))
        .map(|s| s.name.as_str())
        .collect();
    assert!(
        (2..=3).contains(&stored.len()),
        "keep 2 (plus one being taken): {stored:?}"
    );
    let kept: Vec<String> = records(&rotated)
        .iter()
        .filter(|r| r["backupPhase"] == "Completed" && r["deletePhase"].is_null())
        .map(|r| r["backupName"].as_str().unwrap_or_default().to_string())
        .collect();
    for name in &kept {
        assert!(stored.contains(&name.as_str()), "{name} in {stored:?}");
    }
    for deleted in records(&rotated)
        .iter()
        .filter(|r| r["deletePhase"] == "Completed")
    {
        let name = deleted["backupName"].as_str().unwrap_or_default();
        assert!(!stored.contains(&name), "{name} was rotated out of storage");
    }
    assert!(
        listed
            .iter()
            .all(|s| s.checksum == backup_etcd::ChecksumState::Ok),
        "{listed:?}"
    );

    // One-time: one snapshot under the config's own name.
    let once = p
        .wait_for(
            "EtcdBackupConfig",
            "once",
            Duration::from_secs(30),
            "the one-time snapshot completed",
            |c| {
                records(c)
                    .first()
                    .is_some_and(|r| r["backupPhase"] == "Completed")
            },
        )
        .await?;
    assert_eq!(records(&once).len(), 1);
    assert_eq!(records(&once)[0]["backupName"], "once");
    assert!(once["status"]["nextScheduleTime"].is_null());
    // Run now: a new token takes one more, named with its time.
    let mut asked = config("once", json!({"cluster": "c1"}));
    asked["metadata"]["annotations"] = json!({"backupfleet.dev/run-now": "before-upgrade"});
    p.apply(asked).await?;
    let again = p
        .wait_for(
            "EtcdBackupConfig",
            "once",
            Duration::from_secs(30),
            "the run-now snapshot completed",
            |c| {
                c["status"]["lastRunNowToken"] == "before-upgrade"
                    && records(c).first().is_some_and(|r| {
                        r["backupPhase"] == "Completed" && r["backupName"] != "once"
                    })
            },
        )
        .await
        .with_context(|| controller.log_text())?;
    let names: Vec<String> = records(&again)
        .iter()
        .map(|r| r["backupName"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(
        names[0].starts_with("once-") && names[1] == "once",
        "{names:?}"
    );

    // Problems.
    for (name, reason) in [
        ("no-access", "EtcdNotConfigured"),
        ("nowhere", "ClusterNotFound"),
        ("too-many", "InvalidSpec"),
    ] {
        let c = p
            .wait_for(
                "EtcdBackupConfig",
                name,
                Duration::from_secs(30),
                &format!("Ready=False {reason}"),
                |c| has_condition(c, "Ready", "False", reason),
            )
            .await?;
        assert!(records(&c).is_empty(), "{name}: nothing taken: {c:#}");
    }
    let down = p
        .wait_for(
            "EtcdBackupConfig",
            "down",
            Duration::from_secs(30),
            "the snapshot of an unreachable etcd failed",
            |c| {
                records(c)
                    .first()
                    .is_some_and(|r| r["backupPhase"] == "Failed")
            },
        )
        .await?;
    let message = records(&down)[0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(message.contains("127.0.0.1:1"), "{message}");
    let listed_dead = backup_etcd::list_snapshots(&p.repository("dead")?, false).await?;
    assert!(listed_dead.is_empty(), "a failed snapshot stores nothing");
    p.delete().await
}
