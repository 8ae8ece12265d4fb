//! ManagementBackup end to end: the fleet controller (in this process) backs up the management
//! cluster `mgmt` on run-now and when it starts as a new release; `backupctl restore create`
//! brings the backup into a fresh management cluster (`c2`, with the CRDs installed as the
//! chart would), and a controller there resumes without re-running what already ran.
//!
//! A ManagementBackup holds every project's credentials, so the controller takes one only with
//! the platform's grant (`--management-backup-secrets`) and writes it only to a location that
//! encrypts to an age recipient; the restore reads it with that recipient's identity.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use backup_controller::context::Settings;
use backup_controller::runtime::RunConfig;
use backup_storage::{BackupName, Identities};
use backup_velero::format::{ResourceList, gunzip_json};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use kube::api::{ApiResource, DynamicObject, PostParams};
use serde_json::{Value, json};
use tests::controller::{Project, S3_SECRET, free_port, has_condition, install_crds};
use tests::env::shared;
use tests::env_state::ClusterState;

mod common;

use common::{backupctl, stderr, stdout};

/// The controller, in this process, against `cluster`, scoped to `namespace`, as `release`.
fn controller(
    cluster: &ClusterState,
    namespace: &str,
    release: &str,
) -> Result<(
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
)> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = RunConfig {
        kubeconfig: Some(cluster.kubeconfig.clone()),
        context: Some(cluster.context.clone()),
        admin_addr: format!("127.0.0.1:{}", free_port()?).parse()?,
        api: None,
        lease_namespace: namespace.to_string(),
        identity: format!("management-backup-{release}"),
        leader_election: false,
        namespace: Some(namespace.to_string()),
        settings: Settings {
            management_namespace: namespace.to_string(),
            release: release.to_string(),
            management_backup_secrets: true,
            ..Settings::default()
        },
        webhook: None,
    };
    let task = tokio::spawn(async move {
        backup_controller::runtime::run(config, async move {
            let _ = stopped.await;
        })
        .await
    });
    Ok((stop, task))
}

fn records(object: &Value) -> Vec<Value> {
    object["status"]["lastBackups"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn completed_named(object: &Value, name: &str) -> bool {
    records(object)
        .iter()
        .any(|r| r["backupName"] == name && r["backupPhase"] == "Completed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_management_cluster_is_backed_up_and_comes_back_in_a_fresh_one() -> Result<()> {
    let env = shared()?;
    let mgmt = env.cluster("mgmt")?.clone();
    let fresh = env.cluster("c2")?.clone();
    let p = Project::create("mgmt-backup").await?;
    let ns = p.name().to_string();
    p.apply(p.s3_location("main", true)?).await?;
    // Where the management backups go: the same storage, encrypted to a key of the platform's.
    let key = Identities::generate();
    p.secret("age-key", "identity", key.to_identity_file().as_bytes())
        .await?;
    let mut sealed = p.s3_location("sealed", false)?;
    sealed["spec"]["encryption"] = json!({
        "recipients": [key.recipients()[0].to_string()],
        "identitySecret": {"name": "age-key", "key": "identity"}
    });
    p.apply(sealed).await?;
    p.apply(p.cluster("c1", "c1", json!({"env": "prod"})))
        .await?;
    let template = json!({"includedNamespaces": ["kube-public"]});
    p.apply(
        json!({"kind": "ClusterBackup", "metadata": {"name": "once"},
        "spec": {"template": template}}),
    )
    .await?;
    p.apply(
        json!({"kind": "ClusterBackup", "metadata": {"name": "nightly"},
        "spec": {"schedule": "0 2 * * *", "template": template}}),
    )
    .await?;
    // A component's ConfigMap (the default selector takes it), and a Secret nothing refers to.
    let mut settings = ConfigMap::default();
    settings.metadata.name = Some("settings".into());
    settings.metadata.labels = Some([("backupfleet.dev/component".into(), "ui".into())].into());
    Api::<ConfigMap>::namespaced(p.mgmt.clone(), &ns)
        .create(&PostParams::default(), &settings)
        .await?;
    p.secret("unrelated", "token", b"not for the backup")
        .await?;
    let management = |name: &str, spec: Value| json!({"kind": "ManagementBackup", "metadata": {"name": name}, "spec": spec});
    p.apply(management(
        "mgmt",
        json!({"schedule": "@every 1h", "performOnManagementUpgrade": true,
               "storageLocation": "sealed", "retention": {"keep": 2}}),
    ))
    .await?;
    p.apply(management(
        "upgrade-only",
        json!({"performOnManagementUpgrade": true}),
    ))
    .await?;

    let (stop, task) = controller(&mgmt, &ns, "1.0.0")?;
    p.wait_for(
        "ClusterBackup",
        "once",
        Duration::from_secs(60),
        "the one-time backup ran",
        |b| b["status"]["phase"] == "Completed",
    )
    .await?;
    let first = p
        .wait_for(
            "ManagementBackup",
            "mgmt",
            Duration::from_secs(30),
            "the release recorded, nothing due yet",
            |m| m["status"]["lastRelease"] == "1.0.0" && has_condition(m, "Ready", "True", "Ready"),
        )
        .await?;
    assert!(records(&first).is_empty(), "{first:#}");
    let invalid = p
        .wait_for(
            "ManagementBackup",
            "upgrade-only",
            Duration::from_secs(30),
            "InvalidSpec",
            |m| has_condition(m, "Ready", "False", "InvalidSpec"),
        )
        .await?;
    let message = invalid["status"]["conditions"][0]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("spec.performOnManagementUpgrade"),
        "{message}"
    );

    // Run now.
    let mut asked = management(
        "mgmt",
        json!({"schedule": "@every 1h", "performOnManagementUpgrade": true,
               "storageLocation": "sealed", "retention": {"keep": 2}}),
    );
    asked["metadata"]["annotations"] = json!({"backupfleet.dev/run-now": "t1"});
    p.apply(asked).await?;
    let ran = p
        .wait_for(
            "ManagementBackup",
            "mgmt",
            Duration::from_secs(60),
            "the run-now backup completed",
            |m| {
                m["status"]["lastRunNowToken"] == "t1"
                    && records(m)
                        .first()
                        .is_some_and(|r| r["backupPhase"] == "Completed")
            },
        )
        .await?;
    let run_name = records(&ran)[0]["backupName"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    ensure!(
        run_name.starts_with("mgmt-") && run_name.len() == "mgmt-".len() + 14,
        "{run_name}"
    );

    // What it holds: our objects, the Secrets they reference, the component's ConfigMap and
    // the namespace; not the unrelated Secret.
    let repo = p.repository("management")?.with_identities(key.clone());
    let mut list_bytes = Vec::new();
    repo.download_artifact_to(
        backup_core::BackupKind::Resources,
        &BackupName::new(&run_name)?,
        &format!("{run_name}-resource-list.json.gz").parse()?,
        &mut list_bytes,
    )
    .await?;
    let list: ResourceList = gunzip_json(&list_bytes)?;
    let has = |kind: &str, name: &str| {
        list.0
            .get(kind)
            .is_some_and(|names| names.contains(&format!("{ns}/{name}")))
    };
    for (kind, name) in [
        ("backupfleet.dev/v1alpha1/StorageLocation", "main"),
        ("backupfleet.dev/v1alpha1/ManagedCluster", "c1"),
        ("backupfleet.dev/v1alpha1/ClusterBackup", "once"),
        ("backupfleet.dev/v1alpha1/ClusterBackup", "nightly"),
        ("backupfleet.dev/v1alpha1/ManagementBackup", "mgmt"),
        ("v1/Secret", S3_SECRET),
        ("v1/Secret", "c1-kubeconfig"),
        ("v1/Secret", "age-key"),
        ("v1/ConfigMap", "settings"),
    ] {
        ensure!(has(kind, name), "{kind} {name} missing from {:?}", list.0);
    }
    ensure!(!has("v1/Secret", "unrelated"), "{:?}", list.0);
    ensure!(
        list.0.get("v1/Namespace").is_some_and(|n| n.contains(&ns)),
        "{:?}",
        list.0
    );

    // A new release: the controller first takes <name>-<release>, labelled with it.
    let _ = stop.send(());
    task.await??;
    let (stop, task) = controller(&mgmt, &ns, "1.1.0")?;
    let upgraded = p
        .wait_for(
            "ManagementBackup",
            "mgmt",
            Duration::from_secs(60),
            "the release backup completed",
            |m| completed_named(m, "mgmt-1.1.0") && m["status"]["lastRelease"] == "1.1.0",
        )
        .await?;
    assert_eq!(records(&upgraded).len(), 2, "{upgraded:#}");
    let stored =
        backup_velero::direct::read_backup_object(&repo, &BackupName::new("mgmt-1.1.0")?).await?;
    assert_eq!(
        stored
            .spec
            .labels
            .get("backupfleet.dev/release-backup")
            .map(String::as_str),
        Some("1.1.0")
    );
    let _ = stop.send(());
    task.await??;

    // A fresh management cluster: the chart's CRDs, then the backup restored with the status
    // of our kinds (schedules remember what already ran).
    let fresh_client = env.client("c2").await?;
    install_crds(&fresh_client, &backup_api::crds()).await?;
    let s3 = env.s3();
    let location = format!("s3://{}/{}", s3.bucket, p.prefix);
    let options = [
        format!("s3Url={}", s3.endpoint),
        format!("region={}", s3.region),
        "s3ForcePathStyle=true".to_string(),
        format!("access_key_id={}", s3.access_key_id),
        format!("secret_access_key={}", s3.secret_access_key),
    ];
    let kubeconfig = fresh.kubeconfig.display().to_string();
    let keys = tempfile::tempdir()?;
    let identity_file = keys.path().join("age-key.txt");
    std::fs::write(&identity_file, key.to_identity_file())?;
    let identity_file = identity_file.display().to_string();
    let mut args = vec![
        "restore",
        "create",
        "back-from-mgmt",
        "--from-backup",
        "mgmt-1.1.0",
        "--kubeconfig",
        &kubeconfig,
        "--context",
        &fresh.context,
        "--location",
        &location,
        "--project",
        &ns,
        "--cluster",
        "management",
        "--include-namespaces",
        &ns,
        "--restore-status",
        "*.backupfleet.dev",
        "--identity-file",
        &identity_file,
    ];
    for option in &options {
        args.extend(["--option", option]);
    }
    let out = backupctl(&args);
    ensure!(out.status.success(), "restore failed: {}", stderr(&out));
    ensure!(stdout(&out).contains("Completed"), "{}", stdout(&out));

    let fresh_api = |kind: &str| {
        let ar = ApiResource {
            group: "backupfleet.dev".into(),
            version: "v1alpha1".into(),
            api_version: "backupfleet.dev/v1alpha1".into(),
            kind: kind.into(),
            plural: format!("{}s", kind.to_ascii_lowercase()),
        };
        Api::<DynamicObject>::namespaced_with(fresh_client.clone(), &ns, &ar)
    };
    for (kind, name) in [
        ("StorageLocation", "main"),
        ("ManagedCluster", "c1"),
        ("ClusterBackup", "once"),
        ("ClusterBackup", "nightly"),
        ("ManagementBackup", "mgmt"),
    ] {
        fresh_api(kind)
            .get(name)
            .await
            .with_context(|| format!("{kind} {name} restored into the fresh cluster"))?;
    }
    let secrets: Api<Secret> = Api::namespaced(fresh_client.clone(), &ns);
    ensure!(secrets.get_opt("c1-kubeconfig").await?.is_some());
    ensure!(secrets.get_opt("unrelated").await?.is_none());

    // A controller of the same release there resumes: the one-time backup is not run again
    // and no release backup is owed.
    let c1_runs = |repo: backup_storage::Repository| async move {
        let listing = repo.list(backup_core::BackupKind::Resources).await?;
        anyhow::Ok(
            listing
                .manifests
                .iter()
                .map(|m| m.name.to_string())
                .collect::<Vec<_>>(),
        )
    };
    let before = c1_runs(p.repository("c1")?).await?;
    let (stop, task) = controller(&fresh, &ns, "1.1.0")?;
    let api = fresh_api("ClusterBackup");
    let start = std::time::Instant::now();
    loop {
        let once = serde_json::to_value(api.get("once").await?)?;
        if once["status"]["clusters"][0]["backups"]
            .as_array()
            .is_some_and(|b| !b.is_empty())
        {
            assert_eq!(once["status"]["phase"], "Completed", "{once:#}");
            break;
        }
        ensure!(
            start.elapsed() < Duration::from_secs(60),
            "the restored ClusterBackup was never reconciled: {once:#}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Long enough for a re-run to have started and announced itself.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(c1_runs(p.repository("c1")?).await?, before);
    // The backup was taken while it ran, so it recorded itself in progress: storage holds it
    // complete, and the fresh controller says so rather than calling it interrupted.
    let resumed = serde_json::to_value(fresh_api("ManagementBackup").get("mgmt").await?)?;
    let phases: Vec<(String, String)> = records(&resumed)
        .iter()
        .map(|r| {
            (
                r["backupName"].as_str().unwrap_or_default().to_string(),
                r["backupPhase"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        phases,
        [
            ("mgmt-1.1.0".to_string(), "Completed".to_string()),
            (run_name.clone(), "Completed".to_string())
        ],
        "{resumed:#}"
    );
    assert_eq!(resumed["status"]["lastRelease"], "1.1.0");

    let _ = stop.send(());
    task.await??;
    let _ = kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(fresh_client)
        .delete(&ns, &Default::default())
        .await;
    p.delete().await
}
