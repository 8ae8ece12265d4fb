//! The cluster half of the demo: a sample app on `c1`, an agentless backup in Velero's format to
//! the embedded file:// location, a namespace deleted and restored, and a migration of
//! everything to `c2` under new namespace names, each checked object by object.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use backup_core::{BackupEngine, BackupKind, BackupSpec, Phase, RestoreEngine, RestoreSpec};
use backup_storage::{BackupName, Repository};
use backup_velero::direct::{Action, DirectEngine};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use kube::api::{ApiResource, DeleteParams, DynamicObject, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use tests::env_state::EnvState;

const NAMESPACES: [&str; 2] = ["demo-shop", "demo-blog"];
const MIGRATED: [&str; 2] = ["shop-migrated", "blog-migrated"];
const GROUP: &str = "demo.backup-fleet.dev";
const TIMEOUT: Duration = Duration::from_secs(120);

/// What the cluster half did, for the final report.
pub struct ClusterReport {
    pub backed_up: u64,
    pub restored: usize,
    pub migrated: usize,
    pub verified: usize,
}

/// A client for `cluster` of the environment in `env_dir`.
async fn client(env_dir: &Path, cluster: &str) -> Result<Client> {
    let state = EnvState::load(env_dir)?
        .with_context(|| format!("no environment in {} (env.json missing)", env_dir.display()))?;
    tests::env::client_for(state.cluster(cluster)?).await
}

fn widget_resource() -> ApiResource {
    ApiResource {
        group: GROUP.into(),
        version: "v1".into(),
        api_version: format!("{GROUP}/v1"),
        kind: "Widget".into(),
        plural: "widgets".into(),
    }
}

fn crd_resource() -> ApiResource {
    ApiResource {
        group: "apiextensions.k8s.io".into(),
        version: "v1".into(),
        api_version: "apiextensions.k8s.io/v1".into(),
        kind: "CustomResourceDefinition".into(),
        plural: "customresourcedefinitions".into(),
    }
}

async fn delete_namespace(client: &Client, name: &str) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    if api.get_opt(name).await?.is_none() {
        return Ok(());
    }
    api.delete(name, &DeleteParams::default()).await?;
    let start = Instant::now();
    while api.get_opt(name).await?.is_some() {
        ensure!(
            start.elapsed() < TIMEOUT,
            "namespace {name} was not deleted in time"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

async fn create<K>(api: &Api<K>, value: Value) -> Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(value)?;
    api.create(&PostParams::default(), &obj).await?;
    Ok(())
}

/// Deploys the sample app: per namespace a Deployment, Service, ConfigMap and Secret, plus a
/// CRD and two of its objects in the shop.
async fn deploy(c1: &Client) -> Result<()> {
    let crds: Api<DynamicObject> = Api::all_with(c1.clone(), &crd_resource());
    if crds.get_opt(&format!("widgets.{GROUP}")).await?.is_none() {
        create(
            &crds,
            json!({
                "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": format!("widgets.{GROUP}")},
                "spec": {"group": GROUP, "scope": "Namespaced",
                    "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                    "versions": [{"name": "v1", "served": true, "storage": true,
                        "schema": {"openAPIV3Schema": {"type": "object",
                            "x-kubernetes-preserve-unknown-fields": true}}}]}
            }),
        )
        .await?;
    }
    for ns in NAMESPACES {
        create(
            &Api::<Namespace>::all(c1.clone()),
            json!({"metadata": {"name": ns}}),
        )
        .await?;
        let app = ns.trim_start_matches("demo-");
        create(
            &Api::<ConfigMap>::namespaced(c1.clone(), ns),
            json!({
            "metadata": {"name": format!("{app}-config"), "labels": {"app": app}},
            "data": {"LOG_LEVEL": "info", "FEATURES": "search,checkout"}}),
        )
        .await?;
        create(
            &Api::<Secret>::namespaced(c1.clone(), ns),
            json!({
            "metadata": {"name": format!("{app}-db")},
            "stringData": {"username": app, "password": format!("{app}-s3cr3t")}}),
        )
        .await?;
        create(
            &Api::<Service>::namespaced(c1.clone(), ns),
            json!({
            "metadata": {"name": app},
            "spec": {"selector": {"app": app}, "ports": [{"port": 80, "targetPort": 8080}]}}),
        )
        .await?;
        create(
            &Api::<Deployment>::namespaced(c1.clone(), ns),
            json!({
            "metadata": {"name": app, "labels": {"app": app}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": app}},
                "template": {"metadata": {"labels": {"app": app}},
                    "spec": {"containers": [{"name": app, "image": format!("example/{app}:1.0"),
                        "envFrom": [{"configMapRef": {"name": format!("{app}-config")}}]}]}}}}),
        )
        .await?;
    }
    let widgets: Api<DynamicObject> =
        Api::namespaced_with(c1.clone(), NAMESPACES[0], &widget_resource());
    for (name, size) in [("gear", 3), ("sprocket", 5)] {
        let start = Instant::now();
        loop {
            match create(
                &widgets,
                json!({"apiVersion": format!("{GROUP}/v1"), "kind": "Widget",
                "metadata": {"name": name}, "spec": {"size": size}}),
            )
            .await
            {
                Ok(()) => break,
                Err(e) if start.elapsed() > TIMEOUT => {
                    return Err(e.context("the Widget CRD is not served"));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }
    Ok(())
}

/// The content that must survive a round trip, per object (`kind/name` → content).
async fn content(client: &Client, ns: &str) -> Result<BTreeMap<String, Value>> {
    let mut out = BTreeMap::new();
    for cm in Api::<ConfigMap>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await?
    {
        if cm.name_any() != "kube-root-ca.crt" {
            out.insert(format!("ConfigMap/{}", cm.name_any()), json!(cm.data));
        }
    }
    for s in Api::<Secret>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await?
    {
        if s.type_.as_deref() == Some("Opaque") {
            out.insert(format!("Secret/{}", s.name_any()), json!(s.data));
        }
    }
    for s in Api::<Service>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await?
    {
        let spec = s.spec.clone().unwrap_or_default();
        out.insert(
            format!("Service/{}", s.name_any()),
            json!({"ports": spec.ports, "selector": spec.selector}),
        );
    }
    for d in Api::<Deployment>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await?
    {
        out.insert(format!("Deployment/{}", d.name_any()), json!(d.spec));
    }
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &widget_resource());
    if let Ok(list) = widgets.list(&Default::default()).await {
        for w in list {
            out.insert(format!("Widget/{}", w.name_any()), w.data["spec"].clone());
        }
    }
    Ok(out)
}

fn compare(
    what: &str,
    before: &BTreeMap<String, Value>,
    after: &BTreeMap<String, Value>,
) -> Result<usize> {
    for (key, value) in before {
        match after.get(key) {
            Some(v) if v == value => {}
            Some(v) => bail!("{what}: {key} differs after restore: {value} vs {v}"),
            None => bail!("{what}: {key} is missing after restore"),
        }
    }
    println!("   {what}: {} objects equal to the original", before.len());
    Ok(before.len())
}

async fn restore(engine: &DirectEngine, name: &str, spec: &RestoreSpec) -> Result<usize> {
    engine.start_restore(name, spec).await?;
    let status = tokio::time::timeout(TIMEOUT, engine.wait_restore(name)).await??;
    ensure!(
        status.phase == Phase::Completed,
        "restore {name} ended {}: {:?}",
        status.phase,
        status.errors
    );
    let report = engine.restore_report(name).unwrap_or_default();
    println!(
        "   restore {name}: {} created, {} skipped, {} warnings",
        report.count(Action::Created),
        report.count(Action::Skipped),
        status.warnings.len()
    );
    Ok(report.count(Action::Created))
}

/// Runs the cluster half against the local control plane in `env_dir`.
pub async fn run(
    location: &Repository,
    env_dir: &Path,
    step: impl Fn(&str),
) -> Result<ClusterReport> {
    let c1 = client(env_dir, "c1").await?;
    let c2 = client(env_dir, "c2").await?;
    step(
        "10. sample app on c1 (2 namespaces: Deployments, Services, ConfigMaps, Secrets, a CRD and its Widgets)",
    );
    for ns in NAMESPACES {
        delete_namespace(&c1, ns).await?;
    }
    for ns in MIGRATED {
        delete_namespace(&c2, ns).await?;
    }
    deploy(&c1).await?;
    let mut originals = BTreeMap::new();
    for ns in NAMESPACES {
        let c = content(&c1, ns).await?;
        println!(
            "   {ns}: {}",
            c.keys().cloned().collect::<Vec<_>>().join(", ")
        );
        originals.insert(ns, c);
    }

    step("11. agentless backup of c1 in Velero's format");
    let repo = location.scoped_str("fleet", "c1")?;
    let name = format!(
        "shop-and-blog-{}",
        jiff::Timestamp::now().strftime("%Y%m%d%H%M%S")
    );
    let engine = DirectEngine::new(c1.clone(), repo.clone());
    let mut spec = BackupSpec::default();
    spec.filter.included_namespaces = NAMESPACES.iter().map(|s| s.to_string()).collect();
    let started = Instant::now();
    engine.start_backup(&name, &spec).await?;
    let status = tokio::time::timeout(TIMEOUT, engine.wait_backup(&name)).await??;
    ensure!(
        status.phase == Phase::Completed,
        "backup ended {}: {:?}",
        status.phase,
        status.errors
    );
    let manifest = repo
        .verify(BackupKind::Resources, &BackupName::new(name.as_str())?)
        .await?;
    println!(
        "   {name}: {} items in {:.2} s, {} bytes, files: {}",
        status.progress.items_done,
        started.elapsed().as_secs_f64(),
        manifest.total_size(),
        manifest
            .artifacts
            .iter()
            .map(|a| a.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );

    step("12. delete namespace demo-blog, then restore it");
    delete_namespace(&c1, NAMESPACES[1]).await?;
    println!("   demo-blog deleted");
    let mut rspec = RestoreSpec {
        backup_name: Some(name.clone()),
        ..RestoreSpec::default()
    };
    rspec.filter.included_namespaces = vec![NAMESPACES[1].to_string()];
    let restored = restore(&engine, "restore-blog", &rspec).await?;
    let mut verified = compare(
        "demo-blog on c1",
        &originals[NAMESPACES[1]],
        &content(&c1, NAMESPACES[1]).await?,
    )?;

    step("13. migrate everything to c2 with a namespace mapping");
    let engine2 = DirectEngine::new(c2.clone(), repo);
    let mut mspec = RestoreSpec {
        backup_name: Some(name.clone()),
        ..RestoreSpec::default()
    };
    for (from, to) in NAMESPACES.iter().zip(MIGRATED) {
        mspec
            .namespace_mapping
            .insert(from.to_string(), to.to_string());
    }
    let migrated = restore(&engine2, "migrate-to-c2", &mspec).await?;
    for (from, to) in NAMESPACES.iter().zip(MIGRATED) {
        verified += compare(
            &format!("{from} → c2/{to}"),
            &originals[from],
            &content(&c2, to).await?,
        )?;
    }
    Ok(ClusterReport {
        backed_up: status.progress.items_done,
        restored,
        migrated,
        verified,
    })
}
