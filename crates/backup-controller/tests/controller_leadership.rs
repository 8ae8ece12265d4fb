//! The controller killed with `kill -9` in the middle of a fleet run, and two controllers
//! electing a leader: real processes against the local control plane.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use backup_core::BackupKind;
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use tests::TestNamespace;
use tests::controller::{ControllerProcess, Project, runs_of, wait_until};

/// A namespace in c1 holding `count` ConfigMaps of `size` bytes, so each backup of it takes a
/// moment (long enough to be killed in the middle).
async fn bulk_namespace(
    test: &str,
    count: usize,
    size: usize,
) -> Result<(TestNamespace, kube::Client)> {
    let c1 = tests::shared()?.client("c1").await?;
    let ns = TestNamespace::create(&c1, test).await?;
    let api: Api<ConfigMap> = Api::namespaced(c1.clone(), &ns.name);
    let value = "x".repeat(size);
    let results: Vec<Result<()>> = futures::stream::iter(0..count)
        .map(|i| {
            let api = api.clone();
            let data = BTreeMap::from([("data".to_string(), value.clone())]);
            async move {
                let cm = ConfigMap {
                    metadata: kube::api::ObjectMeta {
                        name: Some(format!("bulk-{i:05}")),
                        ..Default::default()
                    },
                    data: Some(data),
                    ..Default::default()
                };
                api.create(&PostParams::default(), &cm).await?;
                Ok(())
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    results.into_iter().collect::<Result<()>>()?;
    Ok((ns, c1))
}

#[tokio::test]
async fn a_controller_killed_mid_run_leaves_nothing_half_done_and_the_next_firing_runs_normally()
-> Result<()> {
    let (bulk, _c1) = bulk_namespace("kill_bulk", 1200, 8 * 1024).await?;
    let p = Project::create("kill9").await?;
    p.apply(p.s3_location("main", true)?).await?;
    let clusters: Vec<String> = (0..8).map(|i| format!("m{i}")).collect();
    for name in &clusters {
        p.apply(p.cluster(name, "c1", json!({"fleet": "yes"})))
            .await?;
    }
    p.apply(json!({
        "kind": "ClusterBackup",
        "metadata": {"name": "fleet"},
        "spec": {
            "schedule": "@every 20s",
            "maxConcurrentClusters": 1,
            "template": {"includedNamespaces": [bulk.name]},
        }
    }))
    .await?;
    let mut first = ControllerProcess::start(tests::controller_bin!(), &p, "first", &[]).await?;

    // Kill it once the first firing has stored some runs but not all.
    let stored_count = |p: &Project| {
        let repos: Vec<_> = clusters.iter().map(|c| p.repository(c)).collect();
        async move {
            let mut n = 0;
            for repo in repos {
                n += repo?.list(BackupKind::Resources).await?.manifests.len();
            }
            anyhow::Ok(n)
        }
    };
    wait_until(Duration::from_secs(90), "two stored runs", || {
        let count = stored_count(&p);
        async move { Ok(count.await? >= 2) }
    })
    .await
    .with_context(|| first.log_text())?;
    first.kill9()?;
    let at_kill = stored_count(&p).await?;
    ensure!(
        at_kill < clusters.len(),
        "the whole firing finished before the kill ({at_kill} runs); make the runs slower"
    );
    let killed_status = p.get("ClusterBackup", "fleet").await?;
    let first_firing = killed_status["status"]["lastScheduleTime"]
        .as_str()
        .context("the firing was recorded before its runs started")?
        .to_string();

    let second = ControllerProcess::start(tests::controller_bin!(), &p, "second", &[]).await?;
    // The interrupted runs end Failed, explained; the completed ones stay Completed.
    let after = p
        .wait_for(
            "ClusterBackup",
            "fleet",
            Duration::from_secs(30),
            "every cluster's first run terminal",
            |b| {
                clusters.iter().all(|c| {
                    let r = runs_of(b, c);
                    matches!(
                        r["lastBackup"]["phase"].as_str(),
                        Some("Completed" | "Failed")
                    ) && r["lastBackup"]["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with("fleet-"))
                }) && b["status"]["lastScheduleTime"] == first_firing.as_str()
            },
        )
        .await
        .with_context(|| second.log_text())?;
    let mut interrupted = 0;
    for c in &clusters {
        let runs = runs_of(&after, c);
        let last = &runs["lastBackup"];
        let stored = p.repository(c)?.list(BackupKind::Resources).await?;
        match last["phase"].as_str() {
            Some("Failed") => {
                interrupted += 1;
                assert!(
                    last["message"]
                        .as_str()
                        .unwrap_or("")
                        .starts_with("interrupted"),
                    "{last:#}"
                );
                assert!(
                    stored.manifests.is_empty(),
                    "{c}: a Failed run stored nothing"
                );
            }
            _ => assert_eq!(stored.manifests.len(), 1, "{c}"),
        }
    }
    assert!(interrupted >= 1, "some run was cut off: {after:#}");

    // The next firing runs normally on every cluster, under a new name.
    let next = p
        .wait_for(
            "ClusterBackup",
            "fleet",
            Duration::from_secs(120),
            "the next firing completed on every cluster",
            |b| {
                b["status"]["lastScheduleTime"] != first_firing.as_str()
                    && clusters
                        .iter()
                        .all(|c| runs_of(b, c)["lastBackup"]["phase"] == "Completed")
            },
        )
        .await
        .with_context(|| second.log_text())?;
    for c in &clusters {
        let repo = p.repository(c)?;
        let stored = repo.list(BackupKind::Resources).await?;
        assert!(stored.problems.is_empty());
        let names: Vec<String> = stored
            .manifests
            .iter()
            .map(|m| m.name.to_string())
            .collect();
        let mut unique = names.clone();
        unique.dedup();
        assert_eq!(names, unique, "{c}: names never collide");
        assert!(names.len() <= 2, "{c}: one run per firing: {names:?}");
        assert_eq!(
            names.last(),
            runs_of(&next, c)["lastBackup"]["name"]
                .as_str()
                .map(str::to_string)
                .as_ref(),
        );
        // Everything listed verifies: no half-written backup is ever listed.
        for m in &stored.manifests {
            repo.verify(BackupKind::Resources, &m.name).await?;
        }
    }
    drop(second);
    p.delete().await?;
    bulk.delete().await
}

/// Who holds the project's Lease.
async fn holder(p: &Project) -> Result<Option<String>> {
    let leases: Api<Lease> = Api::namespaced(p.mgmt.clone(), p.name());
    Ok(leases
        .get_opt("backup-fleet-controller")
        .await?
        .and_then(|l| l.spec?.holder_identity))
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn of_two_controllers_exactly_one_reconciles_and_the_other_takes_over_within_the_lease()
-> Result<()> {
    let p = Project::create("leader").await?;
    p.apply(p.s3_location("main", true)?).await?;
    p.apply(p.cluster("c1", "c1", json!({}))).await?;
    p.apply(json!({
        "kind": "ClusterBackup",
        "metadata": {"name": "often"},
        "spec": {"schedule": "@every 3s", "template": {"includedNamespaces": ["kube-system"]}}
    }))
    .await?;
    let mut a = ControllerProcess::start(tests::controller_bin!(), &p, "replica-a", &[]).await?;
    let mut b = ControllerProcess::start(tests::controller_bin!(), &p, "replica-b", &[]).await?;
    p.wait_for(
        "ClusterBackup",
        "often",
        Duration::from_secs(30),
        "two firings",
        |o| {
            o["status"]["clusters"][0]["backups"]
                .as_array()
                .is_some_and(|v| v.len() >= 2)
        },
    )
    .await?;

    let leader_id = holder(&p).await?.context("someone holds the lease")?;
    let (leader, follower) = if leader_id == a.identity {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    let leader_metrics = leader.get("/metrics")?.1;
    let follower_metrics = follower.get("/metrics")?.1;
    assert_eq!(metric(&leader_metrics, "backupfleet_leader"), Some(1.0));
    assert_eq!(metric(&follower_metrics, "backupfleet_leader"), Some(0.0));
    assert!(
        !follower_metrics.contains("backupfleet_reconcile_total{"),
        "the follower never reconciled:\n{follower_metrics}"
    );
    assert!(leader_metrics.contains("backupfleet_reconcile_total{controller=\"clusterbackup\"}"));
    // Both serve health while only one leads.
    assert_eq!(follower.get("/readyz")?.0, 200);

    leader.kill9()?;
    let killed_at = Instant::now();
    let new_leader = follower.identity.clone();
    loop {
        let text = follower.get("/metrics")?.1;
        if metric(&text, "backupfleet_leader") == Some(1.0) {
            break;
        }
        if killed_at.elapsed() > Duration::from_secs(20) {
            bail!(
                "the follower did not take over within 20 s of the leader's death:\n{}",
                follower.log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let takeover = killed_at.elapsed();
    assert_eq!(holder(&p).await?.as_deref(), Some(new_leader.as_str()));
    println!("takeover after kill -9: {takeover:?}");

    // The new leader keeps firing; no firing was run twice (each started once).
    let before = p.get("ClusterBackup", "often").await?["status"]["lastScheduleTime"].clone();
    p.wait_for(
        "ClusterBackup",
        "often",
        Duration::from_secs(30),
        "a firing by the new leader",
        |o| o["status"]["lastScheduleTime"] != before,
    )
    .await?;
    let events: Api<Event> = Api::namespaced(p.mgmt.clone(), p.name());
    let started: Vec<Event> = events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("RunStarted"))
        .collect();
    let mut notes: Vec<String> = started.iter().filter_map(|e| e.message.clone()).collect();
    let total = notes.len();
    notes.sort();
    notes.dedup();
    assert_eq!(notes.len(), total, "a firing was started twice: {notes:#?}");
    for e in &started {
        assert!(
            e.count.unwrap_or(1) <= 1,
            "a firing was started twice: {e:?}"
        );
    }
    let stored = p.repository("c1")?.list(BackupKind::Resources).await?;
    assert!(stored.problems.is_empty());
    drop(a);
    drop(b);
    p.delete().await
}
