//! RestoreDrill end to end on the local control plane, with the real controller: a scheduled
//! drill of a fleet backup of c1 into c2 proves it restorable (status, condition, metric,
//! Events, and the dashboard in headless Chromium) and leaves no scratch namespace behind; an object the target serves differently is
//! named as a mismatch; a drill cut short by kill -9 ends Failed and is cleaned up by the next
//! controller.

use std::time::Duration;

use anyhow::{Context, Result};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::{Value, json};
use tests::browser::Browser;
use tests::controller::{
    ControllerProcess, LoopbackCertificate, Project, free_port, has_condition, metric_value,
    service_account, wait_until,
};
use tests::env::shared;
use tests::namespace::TestNamespace;

/// The entry of `cluster` in a RestoreDrill's status.
fn drilled<'a>(drill: &'a Value, cluster: &str) -> &'a Value {
    drill["status"]["clusters"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == cluster))
        .unwrap_or(&Value::Null)
}

async fn create<K>(api: &Api<K>, object: Value) -> Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    api.create(&PostParams::default(), &serde_json::from_value(object)?)
        .await?;
    Ok(())
}

/// What an application namespace holds: ConfigMaps, a Secret, a Service and a Deployment (the
/// API server adds defaults to the last two, which are no difference).
async fn shop(client: &kube::Client, namespace: &str, config_maps: usize) -> Result<()> {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    for i in 0..config_maps {
        create(
            &cms,
            json!({"metadata": {"name": format!("shop-{i}"), "labels": {"app": "shop"}},
                   "data": {"index": i.to_string()}}),
        )
        .await?;
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    create(
        &secrets,
        json!({"metadata": {"name": "db"}, "stringData": {"password": "s3cret"}}),
    )
    .await?;
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    create(
        &services,
        json!({"metadata": {"name": "web"},
               "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
    )
    .await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    create(
        &deployments,
        json!({"metadata": {"name": "web"},
               "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                   "spec": {"containers": [{"name": "web", "image": "nginx:1.27",
                     "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}}}}),
    )
    .await?;
    Ok(())
}

/// Cluster c1 in project `p`, and ClusterBackup `shop` of its namespace `namespace`.
async fn back_up_in_c1(p: &Project, namespace: &str) -> Result<()> {
    p.apply(p.cluster("c1", "c1", json!({}))).await?;
    p.apply(
        json!({"kind": "ClusterBackup", "metadata": {"name": "shop"},
        "spec": {"clusters": {"names": ["c1"]}, "template": {"includedNamespaces": [namespace]}}}),
    )
    .await
}

/// RestoreDrill `once` of ClusterBackup `shop`, into `drill-<namespace>` of each cluster.
fn drill_once(cleanup: &str) -> Value {
    json!({"kind": "RestoreDrill", "metadata": {"name": "once"},
        "spec": {"clusterBackup": "shop", "cleanup": cleanup,
                 "target": {"sameCluster": {"namespacePrefix": "drill-"}}}})
}

/// The namespaces of `client`'s cluster that carry the drill label of `uid`.
async fn scratch_namespaces(client: &kube::Client, uid: &str) -> Result<Vec<String>> {
    let api: Api<Namespace> = Api::all(client.clone());
    let selector = ListParams::default().labels(&format!("backupfleet.dev/drill={uid}"));
    Ok(api
        .list(&selector)
        .await?
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect())
}

#[tokio::test]
async fn a_scheduled_drill_proves_a_backup_restorable_names_a_changed_object_and_cleans_up()
-> Result<()> {
    let env = shared()?;
    let c1 = env.client("c1").await?;
    let c2 = env.client("c2").await?;
    let p = Project::create("drill").await?;
    let data = TestNamespace::create(&c1, "drill-src").await?;
    shop(&c1, &data.name, 3).await?;
    p.apply(p.s3_location("main", true)?).await?;
    p.apply(p.cluster("c2", "c2", json!({}))).await?;
    back_up_in_c1(&p, &data.name).await?;
    let addr = format!("127.0.0.1:{}", free_port()?);
    let certificate = LoopbackCertificate::new()?;
    let (cert, key) = (
        certificate.cert.display().to_string(),
        certificate.key.display().to_string(),
    );
    let api = [
        "--api-addr",
        &addr,
        "--api-tls-cert-file",
        &cert,
        "--api-tls-key-file",
        &key,
    ];
    let controller = ControllerProcess::start(tests::controller_bin!(), &p, "only", &api).await?;
    let run = p
        .completed_run("shop", Duration::from_secs(60), &controller)
        .await?;

    p.apply(
        json!({"kind": "RestoreDrill", "metadata": {"name": "nightly"},
        "spec": {"clusterBackup": "shop", "clusters": {"names": ["c1"]},
                 "schedule": "@every 5s", "target": {"cluster": "c2"}, "cleanup": "Always"}}),
    )
    .await?;
    let proven = p
        .wait_for(
            "RestoreDrill",
            "nightly",
            Duration::from_secs(90),
            "the first drill verified",
            |d| drilled(d, "c1")["lastDrill"]["phase"] == "Verified",
        )
        .await
        .with_context(|| controller.log_text())?;
    let last = &drilled(&proven, "c1")["lastDrill"];
    assert_eq!(last["backupName"], run.as_str(), "{proven:#}");
    assert_eq!(last["targetCluster"], "c2");
    let items = last["items"].as_u64().unwrap_or_default();
    assert!(
        items >= 7,
        "the namespace, 3 ConfigMaps, the Secret, the Service and the Deployment at least: {last:#}"
    );
    assert_eq!(last["verified"].as_u64(), Some(items), "{last:#}");
    assert_eq!(last["mismatched"], 0);
    assert!(last["recoverySeconds"].as_f64().unwrap_or_default() > 0.0);
    assert!(last["completionTime"].is_string());
    let proof = &drilled(&proven, "c1")["lastProvenRestorable"];
    assert_eq!(proof["backupName"], run.as_str());
    assert_eq!(proof["time"], last["completionTime"]);
    assert!(
        has_condition(&proven, "Proven", "True", "Verified"),
        "{proven:#}"
    );
    assert!(proven["status"]["nextScheduleTime"].is_string());
    let metrics = controller.get("/metrics")?.1;
    let sample = format!(
        "backupfleet_last_proven_restorable_timestamp_seconds{{namespace=\"{}\",cluster=\"c1\"}}",
        p.name()
    );
    assert!(
        metric_value(&metrics, &sample).unwrap_or_default() > 1.7e9,
        "{sample} in {metrics}"
    );
    assert!(metrics.contains("backupfleet_drill_recovery_seconds_count"));
    p.wait_for_events(Duration::from_secs(10), &["DrillVerified"])
        .await?;

    // The dashboard, in a real browser, as a project viewer: the overview shows the proof
    // beside the last backup, the cluster's page its drill.
    let viewer = service_account(
        &p,
        "viewer",
        json!([{"apiGroups": ["backupfleet.dev"],
                "resources": ["managedclusters", "clusterbackups", "restoredrills"],
                "verbs": ["get", "list", "watch"]}]),
    )
    .await?;
    let (ns, base, backup) = (p.name().to_string(), format!("https://{addr}"), run.clone());
    tokio::task::spawn_blocking(move || -> Result<()> {
        let browser = Browser::start_trusting(Some(&certificate.spki_sha256))?;
        browser.goto(&format!("{base}/ui"))?;
        browser.type_into(&browser.find("#token")?, &viewer)?;
        browser.click(&browser.find("button[type=submit]")?)?;
        browser.wait_for_text(&ns, Duration::from_secs(10))?;
        browser.goto(&format!("{base}/ui/projects/{ns}"))?;
        let overview = browser.wait_for_text("Proven restorable", Duration::from_secs(10))?;
        let proven =
            browser.execute("return document.querySelector('td[data-proven]').textContent")?;
        anyhow::ensure!(
            proven
                .as_str()
                .is_some_and(|p| p.starts_with(&format!("{backup} ("))),
            "the proof in the overview: {proven} in {overview}"
        );
        browser.goto(&format!("{base}/ui/projects/{ns}/clusters/c1"))?;
        // (The schedule fires every 5 s: a page loaded during a drill shows it in progress.)
        let verified = format!("{items} of {items} verified");
        let page = browser.reload_until_text(&verified, Duration::from_secs(30))?;
        let row = browser
            .execute("return document.querySelector('tr[data-drill=nightly]').textContent")?;
        anyhow::ensure!(
            row.as_str()
                .is_some_and(|r| r.contains("Verified") && r.contains(&verified)),
            "the drill on the cluster page: {row} in {page}"
        );
        let errors = browser.console_errors()?;
        anyhow::ensure!(errors.is_empty(), "console errors: {errors:?}");
        Ok(())
    })
    .await??;

    // Cleanup: the scratch namespace (the same name in a dedicated cluster) is gone from c2,
    // and the source is untouched.
    // (The status is written when the drill is judged; the cleanup follows.)
    let uid = proven["metadata"]["uid"].as_str().unwrap_or_default();
    let namespaces: Api<Namespace> = Api::all(c2.clone());
    wait_until(
        Duration::from_secs(60),
        "the scratch namespace gone",
        || async {
            Ok(scratch_namespaces(&c2, uid).await?.is_empty()
                && namespaces.get_opt(&data.name).await?.is_none())
        },
    )
    .await?;
    let source: Api<ConfigMap> = Api::namespaced(c1.clone(), &data.name);
    assert_eq!(
        source.get("shop-0").await?.data.unwrap_or_default()["index"],
        "0"
    );

    // The target now serves one object differently (someone left it there): the next drill
    // reads it back, names it, and does not prove the backup restorable.
    let squatted = TestNamespace::create_named(&c2, &data.name).await?;
    let cms: Api<ConfigMap> = Api::namespaced(c2.clone(), &squatted.name);
    create(
        &cms,
        json!({"metadata": {"name": "shop-1", "labels": {"app": "shop"}},
               "data": {"index": "changed"}}),
    )
    .await?;
    let mismatched = p
        .wait_for(
            "RestoreDrill",
            "nightly",
            Duration::from_secs(60),
            "a drill that names the changed ConfigMap",
            |d| drilled(d, "c1")["lastDrill"]["phase"] == "Mismatched",
        )
        .await
        .with_context(|| controller.log_text())?;
    let last = &drilled(&mismatched, "c1")["lastDrill"];
    assert_eq!(last["mismatched"], 1, "{last:#}");
    assert_eq!(
        last["mismatches"][0],
        format!(
            "configmaps {}/shop-1: /data/index: the backup holds \"1\", the cluster serves \"changed\"",
            data.name
        )
    );
    assert!(has_condition(&mismatched, "Proven", "False", "DrillFailed"));
    // A failed drill keeps the last proof (from a drill before it: the schedule fires every
    // 5 s, so which one is not known here).
    let kept = &drilled(&mismatched, "c1")["lastProvenRestorable"];
    let time = |v: &Value| v.as_str().and_then(|t| t.parse::<jiff::Timestamp>().ok());
    assert_eq!(kept["backupName"], run.as_str());
    assert!(
        time(&kept["time"]) < time(&last["startTime"]) && time(&kept["time"]).is_some(),
        "{kept} is not from the failed drill {last:#}"
    );
    p.wait_for_events(Duration::from_secs(10), &["DrillMismatched"])
        .await?;
    p.delete().await?;
    squatted.delete().await?;
    data.delete().await
}

#[tokio::test]
async fn a_drill_of_an_encrypted_backup_whose_identity_the_location_lost_fails_saying_so()
-> Result<()> {
    let env = shared()?;
    let c1 = env.client("c1").await?;
    let p = Project::create("drill-sealed").await?;
    let data = TestNamespace::create(&c1, "drill-sealed-src").await?;
    shop(&c1, &data.name, 1).await?;
    let key = backup_storage::Identities::generate();
    p.secret("age-key", "identity", key.to_identity_file().as_bytes())
        .await?;
    let mut sealed = p.s3_location("sealed", true)?;
    sealed["spec"]["encryption"] = json!({
        "recipients": [key.recipients()[0].to_string()],
        "identitySecret": {"name": "age-key", "key": "identity"}
    });
    p.apply(sealed.clone()).await?;
    back_up_in_c1(&p, &data.name).await?;
    let controller = ControllerProcess::start(tests::controller_bin!(), &p, "only", &[]).await?;
    p.completed_run("shop", Duration::from_secs(60), &controller)
        .await?;
    // The location keeps writing to the recipient but no longer holds the identity.
    sealed["spec"]["encryption"] = json!({"recipients": [key.recipients()[0].to_string()]});
    p.apply(sealed).await?;
    p.apply(drill_once("Always")).await?;
    let failed = p
        .wait_for(
            "RestoreDrill",
            "once",
            Duration::from_secs(60),
            "the drill failed",
            |d| drilled(d, "c1")["lastDrill"]["phase"] == "Failed",
        )
        .await
        .with_context(|| controller.log_text())?;
    let last = &drilled(&failed, "c1")["lastDrill"];
    let message = last["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(key.fingerprints()[0].as_str()),
        "names the key the backup needs: {last:#}"
    );
    assert_eq!(last["items"], 0, "nothing was restored: {last:#}");
    assert!(drilled(&failed, "c1")["lastProvenRestorable"].is_null());
    assert!(has_condition(&failed, "Proven", "False", "DrillFailed"));
    // Refused before anything was created: no scratch namespace ever existed.
    let uid = failed["metadata"]["uid"].as_str().unwrap_or_default();
    assert_eq!(scratch_namespaces(&c1, uid).await?, Vec::<String>::new());
    let namespaces: Api<Namespace> = Api::all(c1.clone());
    let scratch = format!("drill-{}", data.name);
    assert!(namespaces.get_opt(&scratch).await?.is_none());
    p.delete().await?;
    data.delete().await
}

#[tokio::test]
async fn a_drill_cut_short_by_kill_9_ends_failed_and_the_next_controller_cleans_up() -> Result<()> {
    let env = shared()?;
    let c1 = env.client("c1").await?;
    let p = Project::create("drill-killed").await?;
    let data = TestNamespace::create(&c1, "drill-killed-src").await?;
    // Enough objects that the drill is still restoring when it is killed.
    let cms: Api<ConfigMap> = Api::namespaced(c1.clone(), &data.name);
    let creates = (0..1500).map(|i| {
        create(
            &cms,
            json!({"metadata": {"name": format!("item-{i}")}, "data": {"i": i.to_string()}}),
        )
    });
    futures::stream::iter(creates)
        .buffer_unordered(16)
        .collect::<Vec<Result<()>>>()
        .await
        .into_iter()
        .collect::<Result<Vec<()>>>()?;
    p.apply(p.s3_location("main", true)?).await?;
    back_up_in_c1(&p, &data.name).await?;
    let mut first = ControllerProcess::start(tests::controller_bin!(), &p, "first", &[]).await?;
    p.completed_run("shop", Duration::from_secs(120), &first)
        .await?;
    p.apply(drill_once("Always")).await?;
    let started = p
        .wait_for(
            "RestoreDrill",
            "once",
            Duration::from_secs(60),
            "the drill started",
            |d| drilled(d, "c1")["lastDrill"]["phase"] == "InProgress",
        )
        .await
        .with_context(|| first.log_text())?;
    let uid = started["metadata"]["uid"].as_str().unwrap_or_default();
    let scratch = format!("drill-{}", data.name);
    wait_until(Duration::from_secs(30), "the scratch namespace", || async {
        Ok(scratch_namespaces(&c1, uid).await? == [scratch.clone()])
    })
    .await?;
    first.kill9()?;

    let second = ControllerProcess::start(tests::controller_bin!(), &p, "second", &[]).await?;
    let ended = p
        .wait_for(
            "RestoreDrill",
            "once",
            Duration::from_secs(60),
            "the cut-short drill ended Failed",
            |d| drilled(d, "c1")["lastDrill"]["phase"] == "Failed",
        )
        .await
        .with_context(|| second.log_text())?;
    let last = &drilled(&ended, "c1")["lastDrill"];
    assert!(
        last["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("interrupted")),
        "{last:#}"
    );
    wait_until(
        Duration::from_secs(90),
        "the scratch namespace gone",
        || async {
            let api: Api<Namespace> = Api::all(c1.clone());
            Ok(api.get_opt(&scratch).await?.is_none())
        },
    )
    .await?;
    p.delete().await?;
    data.delete().await
}

/// Rewrites backup `name` of `repo` as a valid backup that no longer restores: its tarball
/// gains a ConfigMap whose data values are not strings (the API server refuses it), and its
/// manifest is written again over the new checksums, as a tampering writer would.
async fn add_a_refused_object(
    repo: &backup_storage::Repository,
    name: &str,
    namespace: &str,
) -> Result<()> {
    use backup_core::BackupKind;
    use backup_velero::format::tarball::{TarballWriter, read_tarball};
    use backup_velero::tarball_layout::ItemPath;
    use futures::TryStreamExt;
    let name = backup_storage::BackupName::new(name)?;
    let manifest = repo.get_manifest(BackupKind::Resources, &name).await?;
    let mut artifacts = Vec::new();
    for artifact in &manifest.artifacts {
        let mut data: Vec<u8> = repo
            .open_artifact(BackupKind::Resources, &name, &artifact.name)
            .await?
            .try_fold(Vec::new(), |mut all, chunk| async move {
                all.extend_from_slice(&chunk);
                Ok(all)
            })
            .await?;
        if artifact.name.as_str().ends_with(".tar.gz") {
            let mut tarball = TarballWriter::new(Vec::new())?;
            for item in read_tarball(data.as_slice())? {
                tarball.add_item(&item.path, "v1", &item.data)?;
            }
            let refused = ItemPath {
                resource: "configmaps".into(),
                group: String::new(),
                namespace: Some(namespace.into()),
                name: "not-strings".into(),
                version_dir: None,
            };
            let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "not-strings", "namespace": namespace},
                "data": {"replicas": 3}});
            tarball.add_item(&refused, "v1", &serde_json::to_vec(&body)?)?;
            data = tarball.finish()?;
        }
        artifacts.push((artifact.name.clone(), data));
    }
    repo.delete(BackupKind::Resources, &name).await?;
    let mut writer = repo.begin_backup(BackupKind::Resources, &name).await?;
    for (artifact, data) in artifacts {
        writer.put_artifact_bytes(&artifact, data.into()).await?;
    }
    writer
        .commit(manifest.attributes.clone(), manifest.expires_at)
        .await?;
    Ok(())
}

#[tokio::test]
async fn a_backup_that_no_longer_restores_fails_its_drill_naming_the_refused_object() -> Result<()>
{
    let env = shared()?;
    let c1 = env.client("c1").await?;
    let p = Project::create("drill-refused").await?;
    let data = TestNamespace::create(&c1, "drill-refused-src").await?;
    shop(&c1, &data.name, 2).await?;
    p.apply(p.s3_location("main", true)?).await?;
    back_up_in_c1(&p, &data.name).await?;
    let controller = ControllerProcess::start(tests::controller_bin!(), &p, "only", &[]).await?;
    let run = p
        .completed_run("shop", Duration::from_secs(60), &controller)
        .await?;
    add_a_refused_object(&p.repository("c1")?, &run, &data.name).await?;
    p.apply(drill_once("OnSuccess")).await?;
    let drilled_once = p
        .wait_for(
            "RestoreDrill",
            "once",
            Duration::from_secs(60),
            "the drill ended",
            |d| {
                matches!(
                    drilled(d, "c1")["lastDrill"]["phase"].as_str(),
                    Some("Mismatched" | "Failed")
                )
            },
        )
        .await
        .with_context(|| controller.log_text())?;
    let last = &drilled(&drilled_once, "c1")["lastDrill"];
    assert_eq!(last["phase"], "Mismatched", "{last:#}");
    assert_eq!(last["mismatched"], 1, "{last:#}");
    let scratch = format!("drill-{}", data.name);
    let named = last["mismatches"][0].as_str().unwrap_or_default();
    assert!(
        named.starts_with(&format!("configmaps {scratch}/not-strings: ")),
        "the refused object is named: {last:#}"
    );
    assert_eq!(
        last["verified"].as_u64().map(|v| v + 1),
        last["items"].as_u64(),
        "everything else verified: {last:#}"
    );
    assert!(has_condition(
        &drilled_once,
        "Proven",
        "False",
        "DrillFailed"
    ));
    // OnSuccess keeps a failed drill's namespace for a look; deleting the drill removes it.
    let namespaces: Api<Namespace> = Api::all(c1.clone());
    assert!(namespaces.get_opt(&scratch).await?.is_some());
    p.api("RestoreDrill", "restoredrills")
        .delete("once", &Default::default())
        .await?;
    wait_until(
        Duration::from_secs(60),
        "the kept namespace gone",
        || async { Ok(namespaces.get_opt(&scratch).await?.is_none()) },
    )
    .await?;
    p.delete().await?;
    data.delete().await
}
