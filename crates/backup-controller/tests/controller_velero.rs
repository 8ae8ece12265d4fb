//! The velero engine path of the controller, on a real controller process against c1's real
//! apiserver with Velero's CRDs. No Velero server runs here, so the tests play its part as
//! Velero does: they patch the status of the Backup the controller created (Velero's CRDs have
//! no status subresource) and watch the ClusterBackup's status follow.

use std::time::Duration;

use anyhow::{Context, Result};
use backup_velero::api::{Backup, BackupStorageLocation};
use backup_velero::in_cluster::translate::object_name;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use serde_json::{Value, json};
use tests::controller::{
    ControllerProcess, Project, condition, has_condition, listed_runs, runs_of, wait_until,
};
use tests::velero::{install_crds, velero_sets_status};
use tests::{TestNamespace, shared};

/// The Velero probe waits 10 s for a server before saying none answers.
const WAIT: Duration = Duration::from_secs(60);

/// c1 with Velero's CRDs, a namespace in it standing for Velero's, and a project on mgmt.
async fn setup(test: &str) -> Result<(kube::Client, TestNamespace, Project)> {
    let c1 = shared()?.client("c1").await?;
    install_crds(&c1).await?;
    let velero_ns = TestNamespace::create(&c1, test).await?;
    let p = Project::create(test).await?;
    p.apply(p.s3_location("main", true)?).await?;
    Ok((c1, velero_ns, p))
}

/// ManagedCluster `name` reaching c1 with `engine` and Velero in `velero_namespace`.
fn velero_cluster(p: &Project, name: &str, engine: &str, velero_namespace: &str) -> Value {
    let mut c = p.cluster(name, "c1", json!({}));
    c["spec"]["engine"] = json!(engine);
    c["spec"]["veleroNamespace"] = json!(velero_namespace);
    c
}

fn one_time(name: &str, cluster: &str) -> Value {
    json!({
        "kind": "ClusterBackup",
        "metadata": {"name": name},
        "spec": {
            "clusters": {"names": [cluster]},
            "template": {"includedNamespaces": ["kube-system"], "ttl": "24h"},
        }
    })
}

/// The object `name` from `api`, once it exists.
async fn eventually<K>(api: &Api<K>, name: &str) -> Result<K>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    wait_until(WAIT, &format!("{name} to exist"), || {
        let api = api.clone();
        async move { Ok(api.get_opt(name).await?.is_some()) }
    })
    .await?;
    Ok(api.get(name).await?)
}

#[tokio::test]
async fn a_velero_cluster_gets_the_location_and_a_velero_backup_and_status_follows_velero()
-> Result<()> {
    let (c1, velero_ns, p) = setup("velero_engine").await?;
    p.apply(velero_cluster(&p, "vc1", "velero", &velero_ns.name))
        .await?;
    p.apply(one_time("snap", "vc1")).await?;
    let controller = ControllerProcess::start(tests::controller_bin!(), &p, "only", &[]).await?;

    // The location, as KKP hands it to Velero: the BSL under <prefix>/<project>/<cluster>
    // (in its `velero` folder, which holds Velero's folders only) with its own credential
    // Secret, in the cluster's Velero namespace.
    let s3 = shared()?.s3();
    let bsl_name = object_name("vc1", "location", "main");
    let bsls: Api<BackupStorageLocation> = Api::namespaced(c1.clone(), &velero_ns.name);
    let bsl = serde_json::to_value(
        eventually(&bsls, &bsl_name)
            .await
            .with_context(|| controller.log_text())?,
    )?;
    let ours = json!({
        "app.kubernetes.io/managed-by": "backup-fleet",
        "backup-fleet.io/project": p.name(),
        "backup-fleet.io/cluster": "vc1",
    });
    assert_eq!(bsl["metadata"]["labels"], ours);
    assert_eq!(bsl["spec"]["provider"], "aws");
    assert_eq!(bsl["spec"]["objectStorage"]["bucket"], s3.bucket.as_str());
    assert_eq!(
        bsl["spec"]["objectStorage"]["prefix"],
        format!("{}/{}/vc1/velero", p.prefix, p.name())
    );
    assert_eq!(bsl["spec"]["config"]["s3Url"], s3.endpoint.as_str());
    assert_eq!(
        bsl["spec"]["credential"],
        json!({"name": bsl_name, "key": "cloud"})
    );
    let secrets: Api<Secret> = Api::namespaced(c1.clone(), &velero_ns.name);
    let secret = secrets.get(&bsl_name).await?;
    let cloud = secret
        .data
        .as_ref()
        .and_then(|d| d.get("cloud"))
        .context("the credential Secret has key cloud")?;
    assert_eq!(
        String::from_utf8_lossy(&cloud.0),
        format!(
            "[default]\naws_access_key_id={}\naws_secret_access_key={}\n",
            s3.access_key_id, s3.secret_access_key
        )
    );
    assert_eq!(serde_json::to_value(&secret.metadata.labels)?, ours);

    // The run is a Velero Backup to that location, labelled like a Schedule's backups.
    let velero_name = object_name("vc1", "backup", "snap");
    let backups: Api<Backup> = Api::namespaced(c1.clone(), &velero_ns.name);
    let backup = serde_json::to_value(eventually(&backups, &velero_name).await?)?;
    assert_eq!(backup["spec"]["storageLocation"], bsl_name.as_str());
    assert_eq!(backup["spec"]["includedNamespaces"], json!(["kube-system"]));
    assert_eq!(backup["spec"]["ttl"], "24h0m0s");
    assert_eq!(
        backup["metadata"]["labels"]["velero.io/schedule-name"],
        "snap"
    );
    assert_eq!(
        backup["metadata"]["labels"]["backup-fleet.io/project"],
        p.name()
    );
    assert_eq!(
        backup["metadata"]["annotations"]["backup-fleet.io/name"],
        "snap"
    );
    let b = p.get("ClusterBackup", "snap").await?;
    assert_eq!(runs_of(&b, "vc1")["lastBackup"]["name"], "snap", "{b:#}");
    assert_eq!(b["status"]["phase"], "InProgress", "{b:#}");

    // The cluster: reachable, engine velero, and Velero not answering (nobody plays the
    // ServerStatusRequest here).
    let cluster = p
        .wait_for(
            "ManagedCluster",
            "vc1",
            WAIT,
            "VeleroReady=False VeleroNotResponding",
            |c| has_condition(c, "VeleroReady", "False", "VeleroNotResponding"),
        )
        .await?;
    assert_eq!(cluster["status"]["engine"], "velero", "{cluster:#}");
    assert!(has_condition(
        &cluster,
        "Reachable",
        "True",
        "APIServerAnswered"
    ));
    let message = condition(&cluster, "VeleroReady").unwrap()["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains(&format!("in namespace {:?}", velero_ns.name))
            && message.contains("check that the velero Deployment runs"),
        "{message}"
    );

    // Velero picks the backup up ...
    // Whole seconds, as Velero's metav1.Time writes them.
    let started = jiff::Timestamp::now().round(jiff::Unit::Second)?;
    let expiration = started + jiff::SignedDuration::from_hours(24);
    velero_sets_status(
        &backups,
        &velero_name,
        json!({
            "phase": "InProgress", "version": 1, "formatVersion": "1.1.0",
            "startTimestamp": started.to_string(), "expiration": expiration.to_string(),
            "progress": {"totalItems": 40, "itemsBackedUp": 10}
        }),
    )
    .await?;
    let b = p
        .wait_for(
            "ClusterBackup",
            "snap",
            WAIT,
            "lastBackup InProgress 10/40",
            |b| {
                let last = &runs_of(b, "vc1")["lastBackup"];
                last["phase"] == "InProgress" && last["itemsBackedUp"] == 10
            },
        )
        .await
        .with_context(|| controller.log_text())?;
    let last = &runs_of(&b, "vc1")["lastBackup"];
    assert_eq!(last["totalItems"], 40);
    assert_eq!(b["status"]["phase"], "InProgress");

    // ... and completes it.
    let completed = started + jiff::SignedDuration::from_secs(5);
    velero_sets_status(
        &backups,
        &velero_name,
        json!({
            "phase": "Completed", "completionTimestamp": completed.to_string(),
            "progress": {"totalItems": 41, "itemsBackedUp": 41}
        }),
    )
    .await?;
    let b = p
        .wait_for("ClusterBackup", "snap", WAIT, "lastBackup Completed", |b| {
            runs_of(b, "vc1")["lastBackup"]["phase"] == "Completed"
        })
        .await
        .with_context(|| controller.log_text())?;
    let runs = runs_of(&b, "vc1");
    let last = &runs["lastBackup"];
    assert_eq!(
        (last["itemsBackedUp"].as_u64(), last["totalItems"].as_u64()),
        (Some(41), Some(41))
    );
    assert_eq!(last["errors"], 0);
    let at = |v: &Value| v.as_str().and_then(|s| s.parse::<jiff::Timestamp>().ok());
    assert_eq!(at(&last["startTimestamp"]), Some(started));
    assert_eq!(at(&last["completionTimestamp"]), Some(completed));
    assert_eq!(at(&last["expiration"]), Some(expiration));
    assert_eq!(runs["lastSuccessfulBackup"], "snap");
    assert_eq!(
        listed_runs(&b, "vc1"),
        ["snap"],
        "listed from Velero's Backups"
    );
    assert_eq!(b["status"]["phase"], "Completed");
    assert!(has_condition(&b, "Degraded", "False", "NoFailedRuns"));
    // Velero writes the bucket, not the controller.
    assert!(p.stored_runs("vc1").await?.is_empty());
    p.wait_for_events(WAIT, &["vc1: snap completed, 41 items"])
        .await?;

    p.delete().await?;
    velero_ns.delete().await
}

#[tokio::test]
async fn auto_falls_back_to_direct_without_an_answering_velero_and_says_why() -> Result<()> {
    let (c1, velero_ns, p) = setup("velero_auto").await?;
    p.apply(velero_cluster(&p, "auto", "auto", &velero_ns.name))
        .await?;
    // Velero asked for where its namespace does not exist.
    p.apply(velero_cluster(&p, "nowhere", "velero", "no-velero-here"))
        .await?;
    p.apply(one_time("snap", "auto")).await?;
    let controller = ControllerProcess::start(tests::controller_bin!(), &p, "only", &[]).await?;

    let cluster = p
        .wait_for(
            "ManagedCluster",
            "auto",
            WAIT,
            "VeleroReady=False VeleroNotResponding",
            |c| has_condition(c, "VeleroReady", "False", "VeleroNotResponding"),
        )
        .await
        .with_context(|| controller.log_text())?;
    assert_eq!(cluster["status"]["engine"], "direct", "{cluster:#}");
    assert!(has_condition(
        &cluster,
        "Reachable",
        "True",
        "APIServerAnswered"
    ));

    let nowhere = p
        .wait_for(
            "ManagedCluster",
            "nowhere",
            WAIT,
            "VeleroReady=False VeleroNotInstalled",
            |c| has_condition(c, "VeleroReady", "False", "VeleroNotInstalled"),
        )
        .await?;
    assert_eq!(nowhere["status"]["engine"], "velero", "{nowhere:#}");
    let message = condition(&nowhere, "VeleroReady").unwrap()["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains("the Velero namespace \"no-velero-here\" does not exist"),
        "{message}"
    );

    // The auto cluster's run went the direct way: into the bucket, no Velero objects.
    let b = p
        .wait_for("ClusterBackup", "snap", WAIT, "the run completed", |b| {
            runs_of(b, "auto")["lastBackup"]["phase"] == "Completed"
        })
        .await
        .with_context(|| controller.log_text())?;
    assert_eq!(listed_runs(&b, "auto"), ["snap"]);
    assert_eq!(p.stored_runs("auto").await?, ["snap"]);
    let backups: Api<Backup> = Api::namespaced(c1.clone(), &velero_ns.name);
    assert!(backups.list(&Default::default()).await?.items.is_empty());
    let bsls: Api<BackupStorageLocation> = Api::namespaced(c1.clone(), &velero_ns.name);
    assert!(bsls.list(&Default::default()).await?.items.is_empty());

    p.delete().await?;
    velero_ns.delete().await
}

/// Velero's files for backup `name` in `p`'s scope of `cluster`, as Velero writes them to its
/// location: its Backup object and the record of a file-system backup of a pod's volume.
async fn velero_wrote_volume_data(p: &Project, cluster: &str, name: &str) -> Result<()> {
    use backup_storage::object_store::{ObjectStoreExt, PutPayload, path::Path};
    let repo = p.repository(cluster)?;
    let dir = format!("velero/backups/{name}");
    let backup = json!({"apiVersion": "velero.io/v1", "kind": "Backup",
        "metadata": {"name": name, "namespace": "velero"},
        "spec": {"includedNamespaces": ["shop"], "defaultVolumesToFsBackup": true},
        "status": {"phase": "Completed"}});
    let volumes = json!([{"apiVersion": "velero.io/v1", "kind": "PodVolumeBackup",
        "metadata": {"name": format!("{name}-x1"), "namespace": "velero"},
        "spec": {"volume": "data", "pod": {"kind": "Pod", "namespace": "shop", "name": "db-0"}},
        "status": {"phase": "Completed"}}]);
    let files = [
        (
            "velero-backup.json".to_string(),
            serde_json::to_vec(&backup)?,
        ),
        (
            format!("{name}-podvolumebackups.json.gz"),
            backup_velero::format::gzip_json(&volumes)?,
        ),
    ];
    for (file, data) in files {
        repo.store()
            .put(&Path::from(format!("{dir}/{file}")), PutPayload::from(data))
            .await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_backup_with_volume_data_is_restored_only_by_the_velero_that_took_it() -> Result<()> {
    use backup_velero::api::Restore;
    let (c1, velero_ns, p) = setup("velero_volumes").await?;
    p.apply(velero_cluster(&p, "vc1", "velero", &velero_ns.name))
        .await?;
    p.apply(p.cluster("plain", "c1", json!({}))).await?;
    velero_wrote_volume_data(&p, "vc1", "db").await?;
    let controller = ControllerProcess::start(tests::controller_bin!(), &p, "only", &[]).await?;
    let restore = |name: &str, targets: Value| {
        json!({"kind": "ClusterRestore", "metadata": {"name": name},
            "spec": {"source": {"cluster": "vc1", "backupName": "db"}, "targetClusters": targets}})
    };

    // Into another cluster: the direct engine would bring the volume back empty. Refused
    // before anything is created, naming the volume.
    p.apply(restore("elsewhere", json!(["plain"]))).await?;
    let refused = p
        .wait_for("ClusterRestore", "elsewhere", WAIT, "the refusal", |r| {
            has_condition(r, "Ready", "False", "VolumeDataNotRestorable")
        })
        .await
        .with_context(|| controller.log_text())?;
    let message = condition(&refused, "Ready").unwrap()["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains("file-system backup of volume data of pod shop/db-0")
            && message.contains("into plain"),
        "{message}"
    );
    assert!(refused["status"]["phase"].is_null() || refused["status"]["phase"] == "Failed");
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(c1.clone());
    assert!(
        namespaces.get_opt("shop").await?.is_none(),
        "nothing created"
    );

    // Into its source, which runs Velero: a velero.io Restore of the Backup Velero took, and the
    // ClusterRestore follows it.
    let backups: Api<Backup> = Api::namespaced(c1.clone(), &velero_ns.name);
    let velero_backup = object_name("vc1", "backup", "db");
    backups
        .create(
            &Default::default(),
            &serde_json::from_value(json!({"metadata": {"name": velero_backup}, "spec": {}}))?,
        )
        .await?;
    velero_sets_status(&backups, &velero_backup, json!({"phase": "Completed"})).await?;
    p.apply(restore("in-place", json!(["vc1"]))).await?;
    let running = p
        .wait_for(
            "ClusterRestore",
            "in-place",
            WAIT,
            "the restore started",
            |r| r["status"]["phase"] == "InProgress",
        )
        .await
        .with_context(|| controller.log_text())?;
    let restores: Api<Restore> = Api::namespaced(c1.clone(), &velero_ns.name);
    let velero_restore = object_name("vc1", "restore", "in-place-vc1");
    let created = serde_json::to_value(eventually(&restores, &velero_restore).await?)?;
    assert_eq!(
        created["spec"]["backupName"],
        velero_backup.as_str(),
        "{created:#}"
    );
    assert_eq!(running["status"]["clusters"][0]["cluster"], "vc1");
    velero_sets_status(
        &restores,
        &velero_restore,
        json!({"phase": "Completed", "startTimestamp": "2026-12-07T10:00:00Z",
               "completionTimestamp": "2026-12-07T10:00:05Z"}),
    )
    .await?;
    p.wait_for(
        "ClusterRestore",
        "in-place",
        WAIT,
        "the restore completed",
        |r| r["status"]["phase"] == "Completed",
    )
    .await
    .with_context(|| controller.log_text())?;
    assert!(
        namespaces.get_opt("shop").await?.is_none(),
        "the direct engine created nothing: Velero restores"
    );
    p.delete().await?;
    velero_ns.delete().await
}
