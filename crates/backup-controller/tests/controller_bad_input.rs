//! Bad input on a real controller process: each mistake becomes a condition that names what to
//! fix, nothing crashes, and the valid objects beside the broken ones keep working. Each test
//! is its own project namespace with its own controller process scoped to it.

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{Value, json};
use tests::controller::{ControllerProcess, Project, condition, has_condition, runs_of};

const WAIT: Duration = Duration::from_secs(60);

fn backup(name: &str, spec: Value) -> Value {
    json!({"kind": "ClusterBackup", "metadata": {"name": name}, "spec": spec})
}

/// A one-time backup of kube-system (small and always there).
fn small(mut spec: Value) -> Value {
    spec["template"]["includedNamespaces"] = json!(["kube-system"]);
    spec
}

/// Waits until ClusterBackup `name` is `Ready=False` with `reason`; returns the condition's
/// message.
async fn not_ready(p: &Project, name: &str, reason: &str) -> Result<String> {
    let b = p
        .wait_for(
            "ClusterBackup",
            name,
            WAIT,
            &format!("Ready=False {reason}"),
            |b| has_condition(b, "Ready", "False", reason),
        )
        .await?;
    Ok(condition(&b, "Ready").unwrap()["message"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

/// Waits until cluster `cluster`'s last run of ClusterBackup `name` completed; returns the
/// ClusterBackup.
async fn completed_on(p: &Project, name: &str, cluster: &str) -> Result<Value> {
    p.wait_for(
        "ClusterBackup",
        name,
        WAIT,
        &format!("the run on {cluster} completed"),
        |b| runs_of(b, cluster)["lastBackup"]["phase"] == "Completed",
    )
    .await
}

/// The controller is alive and answers, and never panicked.
fn still_healthy(controller: &mut ControllerProcess) {
    assert!(controller.is_running(), "{}", controller.log_text());
    assert_eq!(controller.get("/livez").map(|r| r.0).ok(), Some(200));
    assert!(
        !controller.log_text().contains("panicked"),
        "{}",
        controller.log_text()
    );
}

#[tokio::test]
async fn invalid_specs_name_the_field_and_the_fix_while_a_valid_backup_beside_them_completes()
-> Result<()> {
    let p = Project::create("bad_specs").await?;
    p.apply(p.s3_location("main", true)?).await?;
    p.apply(p.cluster("c1", "c1", json!({}))).await?;
    // (name, spec, field named, what the message must also say)
    let broken = [
        (
            "bad-schedule",
            small(json!({"schedule": "61 * * * *"})),
            "spec.schedule",
            "0-59",
        ),
        (
            "bad-schedule-words",
            small(json!({"schedule": "every night at two"})),
            "spec.schedule",
            "every night at two",
        ),
        (
            "bad-time-zone",
            small(json!({"schedule": "@daily", "timeZone": "Mars/Olympus"})),
            "spec.timeZone",
            "use an IANA name",
        ),
        (
            "keep-zero",
            small(json!({"retention": {"keep": 0}})),
            "spec.retention.keep",
            "at least 1 and at most 50",
        ),
        (
            "keep-too-many",
            small(json!({"retention": {"keep": 51}})),
            "spec.retention.keep",
            "at least 1 and at most 50",
        ),
        (
            "negative-ttl",
            small(json!({"template": {"ttl": "-1h"}})),
            "spec.template.ttl",
            "positive",
        ),
    ];
    for (name, spec, _, _) in &broken {
        p.apply(backup(name, spec.clone())).await?;
    }
    p.apply(backup("good", small(json!({})))).await?;
    let mut controller =
        ControllerProcess::start(tests::controller_bin!(), &p, "only", &[]).await?;

    // The valid backup beside the broken ones runs and completes.
    completed_on(&p, "good", "c1")
        .await
        .with_context(|| controller.log_text())?;

    for (name, _, field, fix) in &broken {
        let message = not_ready(&p, name, "InvalidSpec")
            .await
            .with_context(|| controller.log_text())?;
        assert!(
            message.starts_with(&format!("{field}: ")),
            "{name}: the message names {field}: {message}"
        );
        assert!(message.contains(fix), "{name}: {message}");
        let b = p.get("ClusterBackup", name).await?;
        assert_eq!(b["status"]["observedGeneration"], 1, "{name}: {b:#}");
        assert!(
            b["status"]["clusters"].is_null() && b["status"]["lastScheduleTime"].is_null(),
            "{name}: an invalid spec never runs: {b:#}"
        );
    }
    assert_eq!(p.stored_runs("c1").await?, ["good"], "nothing else ran");
    still_healthy(&mut controller);

    // The condition says what to fix; fixing it is all it takes.
    p.apply(backup(
        "keep-too-many",
        small(json!({"retention": {"keep": 5}})),
    ))
    .await?;
    let fixed = completed_on(&p, "keep-too-many", "c1")
        .await
        .with_context(|| controller.log_text())?;
    assert!(has_condition(&fixed, "Ready", "True", "Ready"), "{fixed:#}");
    assert_eq!(fixed["status"]["observedGeneration"], 2);
    assert_eq!(p.stored_runs("c1").await?, ["good", "keep-too-many"]);
    still_healthy(&mut controller);
    p.delete().await
}

#[tokio::test]
async fn location_problems_say_which_location_and_that_locations_are_per_project() -> Result<()> {
    let p = Project::create("bad_locations").await?;
    // A location of another project: same CRDs, same controller binary, another namespace.
    let other = Project::create("other_project").await?;
    other.apply(other.s3_location("elsewhere", true)?).await?;

    // This project's only location is not the default.
    p.apply(p.s3_location("main", false)?).await?;
    p.apply(p.cluster("c1", "c1", json!({}))).await?;
    p.apply(backup("good", small(json!({"storageLocation": "main"}))))
        .await?;
    p.apply(backup(
        "unknown-location",
        small(json!({"storageLocation": "nope"})),
    ))
    .await?;
    p.apply(backup("no-location", small(json!({})))).await?;
    p.apply(backup(
        "other-projects-location",
        small(json!({"storageLocation": "elsewhere"})),
    ))
    .await?;
    let mut controller =
        ControllerProcess::start(tests::controller_bin!(), &p, "only", &[]).await?;

    completed_on(&p, "good", "c1")
        .await
        .with_context(|| controller.log_text())?;

    let message = not_ready(&p, "unknown-location", "LocationNotFound").await?;
    assert!(
        message.contains("StorageLocation \"nope\" does not exist")
            && message.contains(&format!("namespace {:?}", p.name())),
        "{message}"
    );

    let message = not_ready(&p, "no-location", "NoDefaultLocation").await?;
    assert!(
        message.contains("set spec.storageLocation, or set default: true on one location"),
        "{message}"
    );

    let message = not_ready(&p, "other-projects-location", "LocationNotFound").await?;
    assert!(
        message.contains("StorageLocation \"elsewhere\" does not exist")
            && message.contains("locations are per project"),
        "{message}"
    );
    assert_eq!(p.stored_runs("c1").await?, ["good"], "nothing else ran");
    still_healthy(&mut controller);

    // Doing what the condition says fixes it: mark the location default.
    p.apply(p.s3_location("main", true)?).await?;
    let fixed = completed_on(&p, "no-location", "c1")
        .await
        .with_context(|| controller.log_text())?;
    assert!(has_condition(&fixed, "Ready", "True", "Ready"), "{fixed:#}");
    // The other two still name a location this project does not have.
    assert!(has_condition(
        &p.get("ClusterBackup", "other-projects-location").await?,
        "Ready",
        "False",
        "LocationNotFound"
    ));
    assert_eq!(p.stored_runs("c1").await?, ["good", "no-location"]);
    still_healthy(&mut controller);
    other.delete().await?;
    p.delete().await
}

#[tokio::test]
async fn unknown_cluster_names_and_an_empty_selection_are_conditions_and_known_clusters_run()
-> Result<()> {
    let p = Project::create("bad_clusters").await?;
    p.apply(p.s3_location("main", true)?).await?;
    p.apply(p.cluster("c1", "c1", json!({"env": "prod"})))
        .await?;
    p.apply(backup(
        "some-unknown",
        small(json!({"clusters": {"names": ["c1", "ghost"]}})),
    ))
    .await?;
    p.apply(backup(
        "all-unknown",
        small(json!({"clusters": {"names": ["ghost", "phantom"]}})),
    ))
    .await?;
    p.apply(backup(
        "no-match",
        small(json!({"clusters": {"selector": {"matchLabels": {"env": "nowhere"}}}})),
    ))
    .await?;
    let mut controller =
        ControllerProcess::start(tests::controller_bin!(), &p, "only", &[]).await?;

    // The known cluster is backed up; the unknown name is reported.
    let b = completed_on(&p, "some-unknown", "c1")
        .await
        .with_context(|| controller.log_text())?;
    let message = not_ready(&p, "some-unknown", "ClustersNotFound").await?;
    assert!(
        message.contains("ghost") && message.contains("the other 1 cluster(s) are backed up"),
        "{message}"
    );
    let listed: Vec<&str> = b["status"]["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["cluster"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["c1"], "{b:#}");

    let message = not_ready(&p, "all-unknown", "NoClustersSelected").await?;
    assert!(
        message.contains("missing: ghost, phantom") && message.contains("fix the names"),
        "{message}"
    );
    let message = not_ready(&p, "no-match", "NoClustersSelected").await?;
    assert!(
        message.contains("spec.clusters") && message.contains("label selector"),
        "{message}"
    );
    for name in ["all-unknown", "no-match"] {
        let b = p.get("ClusterBackup", name).await?;
        assert!(b["status"]["lastScheduleTime"].is_null(), "{name}: {b:#}");
    }
    assert_eq!(p.stored_runs("c1").await?, ["some-unknown"]);

    // A cluster that starts matching is picked up: the selection is not a one-off.
    p.apply(p.cluster("c1", "c1", json!({"env": "nowhere"})))
        .await?;
    completed_on(&p, "no-match", "c1")
        .await
        .with_context(|| controller.log_text())?;
    still_healthy(&mut controller);
    p.delete().await
}

#[tokio::test]
async fn broken_kubeconfigs_are_conditions_failed_runs_and_never_leak_the_token() -> Result<()> {
    let env = tests::shared()?;
    let token = env.cluster("c1")?.token.clone();
    assert!(token.len() >= 16, "the environment's token looks real");
    let inline = std::fs::read_to_string(&env.cluster("c1")?.inline_kubeconfig)?;
    assert!(inline.contains(&token), "the inline kubeconfig carries it");

    let p = Project::create("bad_kubeconfigs").await?;
    p.apply(p.s3_location("main", true)?).await?;
    p.apply(p.cluster("c1", "c1", json!({}))).await?;
    // No Secret at all.
    p.apply(p.cluster("lost", "lost", json!({}))).await?;
    // Mistakes that put the token where a parser would quote it: `users` as a string, and the
    // token pasted instead of a kubeconfig.
    p.secret(
        "garbage-kubeconfig",
        "kubeconfig",
        format!("apiVersion: v1\nkind: Config\nusers: {token}\n").as_bytes(),
    )
    .await?;
    p.apply(p.cluster("garbage", "garbage", json!({}))).await?;
    p.secret("pasted-kubeconfig", "kubeconfig", token.as_bytes())
        .await?;
    p.apply(p.cluster("pasted", "pasted", json!({}))).await?;
    p.apply(backup("fleet", small(json!({})))).await?;
    // Everything the controller and its libraries log, so the absence below means something.
    let mut controller = ControllerProcess::start_with_env(
        tests::controller_bin!(),
        &p,
        "only",
        &[],
        &[("RUST_LOG", "debug")],
    )
    .await?;

    let lost = p
        .wait_for(
            "ManagedCluster",
            "lost",
            WAIT,
            "Reachable=False KubeconfigSecretMissing",
            |c| has_condition(c, "Reachable", "False", "KubeconfigSecretMissing"),
        )
        .await
        .with_context(|| controller.log_text())?;
    let message = condition(&lost, "Reachable").unwrap()["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains("Secret \"lost-kubeconfig\" does not exist")
            && message.contains("create it there"),
        "{message}"
    );
    for name in ["garbage", "pasted"] {
        let c = p
            .wait_for(
                "ManagedCluster",
                name,
                WAIT,
                "Reachable=False KubeconfigInvalid",
                |c| has_condition(c, "Reachable", "False", "KubeconfigInvalid"),
            )
            .await?;
        let message = condition(&c, "Reachable").unwrap()["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            message.contains(&format!("Secret \"{name}-kubeconfig\""))
                && message.contains("is not a valid kubeconfig"),
            "{message}"
        );
    }
    p.wait_for("ManagedCluster", "c1", WAIT, "Reachable=True", |c| {
        has_condition(c, "Reachable", "True", "APIServerAnswered")
    })
    .await?;

    // The fleet run: c1 completes, each broken cluster has a Failed run saying why.
    let fleet = p
        .wait_for(
            "ClusterBackup",
            "fleet",
            WAIT,
            "every cluster's run ended",
            |b| {
                runs_of(b, "c1")["lastBackup"]["phase"] == "Completed"
                    && ["lost", "garbage", "pasted"]
                        .iter()
                        .all(|c| runs_of(b, c)["lastBackup"]["phase"] == "Failed")
                    && has_condition(b, "Degraded", "True", "RunsFailed")
            },
        )
        .await
        .with_context(|| controller.log_text())?;
    assert_eq!(fleet["status"]["phase"], "PartiallyFailed", "{fleet:#}");
    let degraded = condition(&fleet, "Degraded").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    for broken in ["lost", "garbage", "pasted"] {
        assert!(
            degraded.contains(&format!(
                "{broken} (fleet Failed: cannot back up cluster {broken}"
            )),
            "{degraded}"
        );
        assert!(
            runs_of(&fleet, broken)["backups"].is_null(),
            "nothing stored for {broken}"
        );
    }
    assert!(!degraded.contains("c1 ("), "{degraded}");
    assert!(
        runs_of(&fleet, "lost")["lastBackup"]["message"]
            .as_str()
            .unwrap()
            .contains("lost-kubeconfig"),
        "{fleet:#}"
    );
    assert_eq!(p.stored_runs("c1").await?, ["fleet"]);

    // The token is nowhere: not in any status, not in Events, not in the log.
    for (kind, name) in [
        ("ManagedCluster", "c1"),
        ("ManagedCluster", "lost"),
        ("ManagedCluster", "garbage"),
        ("ManagedCluster", "pasted"),
        ("ClusterBackup", "fleet"),
    ] {
        let status = p.get(kind, name).await?["status"].to_string();
        assert!(!status.contains(&token), "{kind} {name} leaks: {status}");
    }
    let events = p
        .wait_for_events(
            WAIT,
            &[
                "cannot back up cluster lost",
                "cannot back up cluster garbage",
                "cannot back up cluster pasted",
            ],
        )
        .await?;
    assert!(!events.contains(&token), "Events leak the token: {events}");
    let log = controller.log_text();
    assert!(!log.contains(&token), "the log leaks the token:\n{log}");
    still_healthy(&mut controller);
    p.delete().await
}

/// Waits until ManagementBackup `name` is `Ready=False` with `reason`; returns the message.
async fn management_refused(p: &Project, name: &str, reason: &str) -> Result<String> {
    let m = p
        .wait_for(
            "ManagementBackup",
            name,
            WAIT,
            &format!("Ready=False {reason}"),
            |m| has_condition(m, "Ready", "False", reason),
        )
        .await?;
    Ok(condition(&m, "Ready").unwrap()["message"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

#[tokio::test]
async fn a_management_backup_needs_the_platforms_grant_and_an_encrypting_location() -> Result<()> {
    let p = Project::create("mgmt-refused").await?;
    p.apply(p.s3_location("main", true)?).await?;
    let management = |token: &str| {
        json!({"kind": "ManagementBackup",
               "metadata": {"name": "mgmt", "annotations": {"backupfleet.dev/run-now": token}},
               "spec": {}})
    };
    p.apply(management("t1")).await?;

    // Without the platform's grant: refused, saying which chart value grants it.
    let mut ungranted = ControllerProcess::start(
        tests::controller_bin!(),
        &p,
        "ungranted",
        &["--no-leader-election"],
    )
    .await?;
    let message = management_refused(&p, "mgmt", "SecretsNotGranted")
        .await
        .with_context(|| ungranted.log_text())?;
    assert!(
        message.contains("managementBackup.readProjectSecrets"),
        "{message}"
    );
    still_healthy(&mut ungranted);
    ungranted.stop()?;

    // With it, but to a location that encrypts to nobody: it would hold every project's
    // credentials in the clear.
    let granted = ControllerProcess::start(
        tests::controller_bin!(),
        &p,
        "granted",
        &["--no-leader-election", "--management-backup-secrets"],
    )
    .await?;
    let message = management_refused(&p, "mgmt", "EncryptionRequired")
        .await
        .with_context(|| granted.log_text())?;
    assert!(
        message.contains("StorageLocation main") && message.contains("age recipient"),
        "{message}"
    );
    let m = p.get("ManagementBackup", "mgmt").await?;
    assert!(
        m["status"]["lastBackups"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "nothing was written: {m:#}"
    );

    // The location encrypts: the next run completes.
    let key = backup_storage::Identities::generate();
    let mut sealed = p.s3_location("main", true)?;
    sealed["spec"]["encryption"] = json!({"recipients": [key.recipients()[0].to_string()]});
    p.apply(sealed).await?;
    p.apply(management("t2")).await?;
    p.wait_for(
        "ManagementBackup",
        "mgmt",
        WAIT,
        "the encrypted management backup completed",
        |m| {
            m["status"]["lastBackups"][0]["backupPhase"] == "Completed"
                && has_condition(m, "Ready", "True", "Ready")
        },
    )
    .await
    .with_context(|| granted.log_text())?;
    p.delete().await
}
