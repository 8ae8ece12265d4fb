//! ClusterRestore end to end on the local control plane: a fleet backup of a namespace in c1
//! by the real controller, then restores of it by the same controller into c2 (a migration with
//! a namespace mapping), a dry run that changes nothing, the refusals that must come before
//! anything is created, and deletion removing the results from storage.

use std::time::Duration;

use anyhow::{Context, Result};
use backup_core::BackupKind;
use backup_storage::BackupName;
use backup_storage::object_store::{ObjectStoreExt, PutPayload, path::Path as ObjectPath};
use futures::TryStreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde_json::{Value, json};
use tests::controller::{ControllerProcess, Project, has_condition};
use tests::env::shared;
use tests::namespace::{TestNamespace, unique_name};

fn restore(name: &str, spec: Value) -> Value {
    json!({"kind": "ClusterRestore", "metadata": {"name": name}, "spec": spec})
}

fn cluster_result<'a>(status: &'a Value, cluster: &str) -> &'a Value {
    status["status"]["clusters"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["cluster"] == cluster))
        .unwrap_or(&Value::Null)
}

async fn config_maps(client: &kube::Client, namespace: &str) -> Result<Vec<(String, Value)>> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let mut found: Vec<(String, Value)> = api
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter(|cm| cm.metadata.name.as_deref() != Some("kube-root-ca.crt"))
        .map(|cm| {
            (
                cm.metadata.name.clone().unwrap_or_default(),
                serde_json::to_value(&cm.data).unwrap_or_default(),
            )
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found)
}

async fn namespace_exists(client: &kube::Client, name: &str) -> Result<bool> {
    let api: Api<Namespace> = Api::all(client.clone());
    Ok(api.get_opt(name).await?.is_some())
}

/// Object paths under `prefix` of `repo`'s scope.
async fn stored_under(p: &Project, cluster: &str, prefix: &str) -> Result<Vec<String>> {
    let repo = p.repository(cluster)?;
    let listed: Vec<_> = repo
        .store()
        .list(Some(&ObjectPath::from(prefix)))
        .try_collect()
        .await?;
    Ok(listed.into_iter().map(|o| o.location.to_string()).collect())
}

#[tokio::test]
async fn a_fleet_backup_is_migrated_into_another_cluster_and_its_refusals_come_first() -> Result<()>
{
    let env = shared()?;
    let c1 = env.client("c1").await?;
    let c2 = env.client("c2").await?;
    let p = Project::create("restore").await?;
    let data = TestNamespace::create(&c1, "restore-src").await?;
    let cms: Api<ConfigMap> = Api::namespaced(c1.clone(), &data.name);
    for i in 0..3 {
        cms.create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": format!("shop-{i}"), "labels": {"app": "shop"}},
                "data": {"index": i.to_string()}
            }))?,
        )
        .await?;
    }
    // The namespace the migration maps onto, in c2; removed at the end.
    let mapped = unique_name("dr", "restore");

    p.apply(p.s3_location("main", true)?).await?;
    p.apply(p.cluster("c1", "c1", json!({}))).await?;
    p.apply(p.cluster("c2", "c2", json!({}))).await?;
    p.apply(json!({
        "kind": "ClusterBackup",
        "metadata": {"name": "shop"},
        "spec": {"clusters": {"names": ["c1"]}, "template": {"includedNamespaces": [data.name]}}
    }))
    .await?;
    let controller = ControllerProcess::start(tests::controller_bin!(), &p, "only", &[]).await?;
    p.wait_for(
        "ClusterBackup",
        "shop",
        Duration::from_secs(60),
        "the backup of c1 completed",
        |b| b["status"]["phase"] == "Completed",
    )
    .await
    .with_context(|| controller.log_text())?;

    let migration = |name: &str, dry_run: bool| {
        restore(
            name,
            json!({
                "source": {"cluster": "c1", "clusterBackup": "shop"},
                "targetClusters": ["c2"],
                "namespaceMapping": {data.name.clone(): mapped.clone()},
                "dryRun": dry_run
            }),
        )
    };

    // A dry run plans without creating anything.
    p.apply(migration("plan", true)).await?;
    let planned = p
        .wait_for(
            "ClusterRestore",
            "plan",
            Duration::from_secs(60),
            "the dry run completed",
            |r| r["status"]["phase"] == "Completed",
        )
        .await
        .with_context(|| controller.log_text())?;
    assert_eq!(planned["status"]["backupName"], "shop", "{planned:#}");
    let plan = &cluster_result(&planned, "c2")["plan"];
    assert_eq!(
        plan["create"], 4,
        "the namespace and 3 ConfigMaps: {plan:#}"
    );
    let items: Vec<(&str, &str)> = plan["items"]
        .as_array()
        .context("a dry run lists its objects")?
        .iter()
        .map(|i| {
            (
                i["name"].as_str().unwrap_or(""),
                i["action"].as_str().unwrap_or(""),
            )
        })
        .collect();
    for name in [mapped.as_str(), "shop-0", "shop-1", "shop-2"] {
        assert!(items.contains(&(name, "Created")), "{name} in {items:?}");
    }
    assert!(
        !namespace_exists(&c2, &mapped).await?,
        "a dry run creates nothing"
    );
    assert!(
        stored_under(&p, "c1", "velero/restores/plan-c2")
            .await?
            .is_empty(),
        "a dry run writes nothing to storage"
    );

    // The migration itself, with Velero's resource modifiers from a ConfigMap of the project:
    // every ConfigMap restored gets a label.
    Api::<ConfigMap>::namespaced(p.mgmt.clone(), p.name())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "modifiers"},
                "data": {"rules.yaml": "version: v1\nresourceModifierRules:\n- conditions: {groupResource: configmaps, resourceNameRegex: '^shop-'}\n  mergePatches:\n  - patchData: '{\"metadata\": {\"labels\": {\"restored-by\": \"backupfleet\"}}}'\n"}
            }))?,
        )
        .await?;
    let mut dr = migration("dr", false);
    dr["spec"]["resourceModifiers"] = json!({"configMapRef": {"name": "modifiers"}});
    p.apply(dr).await?;
    let done = p
        .wait_for(
            "ClusterRestore",
            "dr",
            Duration::from_secs(60),
            "the migration completed",
            |r| r["status"]["phase"] == "Completed",
        )
        .await
        .with_context(|| controller.log_text())?;
    let c2_result = cluster_result(&done, "c2");
    assert_eq!(c2_result["phase"], "Completed", "{done:#}");
    assert_eq!(c2_result["restoreName"], "dr-c2");
    assert_eq!(c2_result["plan"]["create"], 4, "{done:#}");
    assert!(has_condition(&done, "Ready", "True", "Started"), "{done:#}");
    assert_eq!(
        config_maps(&c2, &mapped).await?,
        config_maps(&c1, &data.name).await?,
        "c2 holds the same ConfigMaps under the mapped namespace"
    );
    for i in 0..3 {
        let labels = Api::<ConfigMap>::namespaced(c2.clone(), &mapped)
            .get(&format!("shop-{i}"))
            .await?
            .metadata
            .labels
            .unwrap_or_default();
        assert_eq!(
            labels.get("restored-by").map(String::as_str),
            Some("backupfleet"),
            "the resource modifier labelled shop-{i}: {labels:?}"
        );
    }
    let results = stored_under(&p, "c1", "velero/restores/dr-c2").await?;
    assert!(
        results
            .iter()
            .any(|r| r.ends_with("restore-dr-c2-results.gz")),
        "Velero's restore files are in the source's scope: {results:?}"
    );

    // Refusals: each a condition that says what to fix, with nothing started.
    let refusals = [
        (
            "again",
            migration("again", false)["spec"].clone(),
            "TargetNamespaceExists",
        ),
        (
            "missing",
            json!({"source": {"cluster": "c1", "backupName": "no-such-backup"}, "targetClusters": ["c2"]}),
            "BackupNotFound",
        ),
        (
            "elsewhere",
            json!({"source": {"cluster": "c1", "clusterBackup": "shop"}, "targetClusters": ["c9"]}),
            "ClusterNotFound",
        ),
        (
            "gone",
            json!({"source": {"cluster": "lost", "backupName": "shop"}}),
            "ClusterNotFound",
        ),
        (
            "both",
            json!({"source": {"cluster": "c1", "backupName": "shop", "clusterBackup": "shop"}}),
            "InvalidSpec",
        ),
        (
            "bad-rules",
            json!({"source": {"cluster": "c1", "backupName": "shop"}, "targetClusters": ["c2"],
                   "resourceModifiers": {"rules": "version: v2\nresourceModifierRules: []\n"}}),
            "InvalidSpec",
        ),
        (
            "no-rules",
            json!({"source": {"cluster": "c1", "backupName": "shop"}, "targetClusters": ["c2"],
                   "namespaceMapping": {data.name.clone(): unique_name("nr", "restore")},
                   "resourceModifiers": {"configMapRef": {"name": "absent"}}}),
            "ResourceModifiersNotFound",
        ),
    ];
    for (name, spec, _) in &refusals {
        p.apply(restore(name, spec.clone())).await?;
    }
    for (name, _, reason) in &refusals {
        let refused = p
            .wait_for(
                "ClusterRestore",
                name,
                Duration::from_secs(30),
                &format!("Ready=False {reason}"),
                |r| has_condition(r, "Ready", "False", reason),
            )
            .await
            .with_context(|| controller.log_text())?;
        assert!(
            refused["status"]["clusters"].is_null() && refused["status"]["phase"].is_null(),
            "{name}: nothing started: {refused:#}"
        );
        let message = tests::controller::condition(&refused, "Ready").unwrap()["message"]
            .as_str()
            .unwrap_or("")
            .to_string();
        assert!(
            message.len() > 30,
            "{name}: an actionable message: {message}"
        );
    }

    // A corrupt backup is refused before anything is created in the target.
    let repo = p.repository("c1")?;
    let manifest = repo
        .get_manifest(BackupKind::Resources, &BackupName::new("shop")?)
        .await?;
    let tarball = manifest
        .artifacts
        .iter()
        .find(|a| a.name.as_str().ends_with(".tar.gz"))
        .context("the backup has a tarball")?;
    let corrupt_target = unique_name("corrupt", "restore");
    let path = ObjectPath::from(format!("velero/backups/shop/{}", tarball.name.as_str()));
    let original = repo.store().get(&path).await?.bytes().await?;
    let mut damaged = original.to_vec();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0xff;
    repo.store().put(&path, PutPayload::from(damaged)).await?;
    p.apply(restore(
        "corrupt",
        json!({
            "source": {"cluster": "c1", "backupName": "shop"},
            "targetClusters": ["c2"],
            "namespaceMapping": {data.name.clone(): corrupt_target.clone()}
        }),
    ))
    .await?;
    let refused = p
        .wait_for(
            "ClusterRestore",
            "corrupt",
            Duration::from_secs(60),
            "the corrupt backup's restore failed",
            |r| r["status"]["phase"] == "Failed",
        )
        .await
        .with_context(|| controller.log_text())?;
    let message = cluster_result(&refused, "c2")["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        message.contains("refused") || message.contains("checksum") || message.contains("SHA"),
        "{message}"
    );
    assert!(
        !namespace_exists(&c2, &corrupt_target).await?,
        "nothing of a corrupt backup is created"
    );
    repo.store().put(&path, PutPayload::from(original)).await?;

    // Deleting a ClusterRestore deletes its results from storage (restored objects stay).
    p.api("ClusterRestore", "clusterrestores")
        .delete("dr", &DeleteParams::default())
        .await?;
    tests::controller::wait_until(Duration::from_secs(30), "dr's results deleted", || async {
        Ok(stored_under(&p, "c1", "velero/restores/dr-c2")
            .await?
            .is_empty())
    })
    .await
    .with_context(|| controller.log_text())?;
    assert!(namespace_exists(&c2, &mapped).await?);

    let namespaces: Api<Namespace> = Api::all(c2.clone());
    namespaces.delete(&mapped, &DeleteParams::default()).await?;
    data.delete().await?;
    p.delete().await
}

#[tokio::test]
async fn a_migration_backs_up_the_source_restores_every_target_and_goes_with_its_stages()
-> Result<()> {
    let env = shared()?;
    let c1 = env.client("c1").await?;
    let c2 = env.client("c2").await?;
    let p = Project::create("migration").await?;
    let data = TestNamespace::create(&c1, "migration-src").await?;
    let cms: Api<ConfigMap> = Api::namespaced(c1.clone(), &data.name);
    for i in 0..2 {
        cms.create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": format!("app-{i}")},
                "data": {"index": i.to_string()}
            }))?,
        )
        .await?;
    }
    let mapped = unique_name("moved", "migration");
    p.apply(p.s3_location("main", true)?).await?;
    p.apply(p.cluster("c1", "c1", json!({}))).await?;
    p.apply(p.cluster("c2", "c2", json!({}))).await?;
    let migration = |name: &str, targets: Value| {
        json!({
            "kind": "ClusterMigration",
            "metadata": {"name": name},
            "spec": {
                "sourceCluster": "c1",
                "targetClusters": targets,
                "template": {"includedNamespaces": [data.name]},
                "namespaceMapping": {data.name.clone(): mapped.clone()}
            }
        })
    };
    p.apply(migration("move", json!(["c2"]))).await?;
    p.apply(migration("nowhere", json!(["c9"]))).await?;
    p.apply(json!({
        "kind": "ClusterMigration",
        "metadata": {"name": "unnamed"},
        "spec": {"sourceCluster": "Not_A_Name", "targetClusters": ["c2"]}
    }))
    .await?;
    let controller = ControllerProcess::start(tests::controller_bin!(), &p, "only", &[]).await?;

    let done = p
        .wait_for(
            "ClusterMigration",
            "move",
            Duration::from_secs(90),
            "the migration completed",
            |m| m["status"]["phase"] == "Completed",
        )
        .await
        .with_context(|| controller.log_text())?;
    assert_eq!(done["status"]["stage"], "Done", "{done:#}");
    assert_eq!(done["status"]["backup"]["phase"], "Completed", "{done:#}");
    let target = &done["status"]["clusters"][0];
    assert_eq!(target["cluster"], "c2");
    assert_eq!(target["backupPhase"], "Completed");
    assert_eq!(target["restore"]["phase"], "Completed", "{done:#}");
    assert_eq!(
        config_maps(&c2, &mapped).await?,
        config_maps(&c1, &data.name).await?,
        "the source's objects are in the target, under the mapped namespace"
    );
    // Both stages are objects of their own, owned by the migration.
    for kind in ["ClusterBackup", "ClusterRestore"] {
        let child = p.get(kind, "move").await?;
        assert_eq!(
            child["metadata"]["ownerReferences"][0]["name"], "move",
            "{kind}: {child:#}"
        );
    }
    assert!(p.stored_runs("c1").await?.contains(&"move".to_string()));

    // A target of no ManagedCluster: the backup runs, the restore stage says what to fix.
    let stuck = p
        .wait_for(
            "ClusterMigration",
            "nowhere",
            Duration::from_secs(60),
            "Ready=False ClusterNotFound relayed from its restore",
            |m| has_condition(m, "Ready", "False", "ClusterNotFound"),
        )
        .await
        .with_context(|| controller.log_text())?;
    let message = tests::controller::condition(&stuck, "Ready").unwrap()["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains("c9") && message.contains("ClusterRestore nowhere"),
        "{message}"
    );
    p.wait_for(
        "ClusterMigration",
        "unnamed",
        Duration::from_secs(30),
        "Ready=False InvalidSpec",
        |m| has_condition(m, "Ready", "False", "InvalidSpec"),
    )
    .await?;

    // Deleting the migration deletes its stages, and its backup from storage.
    p.api("ClusterMigration", "clustermigrations")
        .delete("move", &DeleteParams::default())
        .await?;
    tests::controller::wait_until(
        Duration::from_secs(60),
        "the migration's backup deleted from storage",
        || async { Ok(!p.stored_runs("c1").await?.contains(&"move".to_string())) },
    )
    .await
    .with_context(|| controller.log_text())?;
    assert!(
        namespace_exists(&c2, &mapped).await?,
        "migrated objects stay"
    );

    let namespaces: Api<Namespace> = Api::all(c2.clone());
    namespaces.delete(&mapped, &DeleteParams::default()).await?;
    data.delete().await?;
    p.delete().await
}
