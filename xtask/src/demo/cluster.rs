//! The cluster half of the demo: a sample app on `c1`; the fleet controller, given a
//! StorageLocation on the embedded file:// location, ManagedClusters `c1` and `c2` and a fleet
//! ClusterBackup on `mgmt`, backs both clusters up agentlessly in Velero's format while its
//! status table fills; then a namespace is deleted and restored from the controller's backup,
//! and everything migrated to `c2` under new namespace names, both by ClusterRestores the
//! controller carries out, each checked object by object.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use backup_api::{
    ClusterBackup, ClusterBackupStatus, ClusterRestore, FleetPhase, ManagedCluster, StorageLocation,
};
use backup_core::BackupKind;
use backup_localenv::env_state::EnvState;
use backup_storage::{BackupName, Repository};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

use crate::fleet;

const NAMESPACES: [&str; 2] = ["demo-shop", "demo-blog"];
const MIGRATED: [&str; 2] = ["shop-migrated", "blog-migrated"];
const GROUP: &str = "demo.backup-fleet.dev";
const TIMEOUT: Duration = Duration::from_secs(120);
/// The project (namespace on mgmt) the demo's controller objects live in.
const PROJECT: &str = "demo-fleet";
/// The prefix of the controller's location inside the demo's storage directory.
const PREFIX: &str = "fleet";
/// The one-time fleet backup that the restore and the migration read.
const BACKUP: &str = "shop-and-blog";

/// What the cluster half did, for the final report.
pub struct ClusterReport {
    /// Items the controller's run backed up, per cluster.
    pub backed_up: BTreeMap<String, u64>,
    pub restored: usize,
    pub migrated: usize,
    pub verified: usize,
}

/// A client for `cluster` of the environment in `env_dir`.
async fn client(env_dir: &Path, cluster: &str) -> Result<Client> {
    let state = EnvState::load(env_dir)?
        .with_context(|| format!("no environment in {} (env.json missing)", env_dir.display()))?;
    backup_localenv::env::client_for(state.cluster(cluster)?).await
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

/// Applies ClusterRestore `name` with `spec` and waits for the controller to finish it; returns
/// how many objects it created over its target clusters.
async fn restore(restores: &Api<ClusterRestore>, name: &str, spec: Value) -> Result<usize> {
    fleet::apply(
        restores,
        &json!({
            "apiVersion": "backupfleet.dev/v1alpha1", "kind": "ClusterRestore",
            "metadata": {"name": name}, "spec": spec,
        }),
    )
    .await?;
    let start = Instant::now();
    let status = loop {
        let status = restores.get(name).await?.status.unwrap_or_default();
        match status.phase {
            Some(FleetPhase::Completed) => break status,
            Some(phase @ (FleetPhase::Failed | FleetPhase::PartiallyFailed)) => {
                bail!(
                    "ClusterRestore {name} ended {phase:?}: {:?}",
                    status.clusters
                )
            }
            _ => {}
        }
        if let Some(ready) = status.conditions.iter().find(|c| c.type_ == "Ready")
            && !ready.is_true()
        {
            bail!("ClusterRestore {name} cannot run: {}", ready.message);
        }
        ensure!(
            start.elapsed() < TIMEOUT,
            "ClusterRestore {name} did not finish"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut created = 0;
    for cluster in &status.clusters {
        let plan = cluster.plan.clone().unwrap_or_default();
        println!(
            "   ClusterRestore {name} into {}: {} created, {} skipped, {} warnings ({})",
            cluster.cluster, plan.create, plan.skip, cluster.warnings, cluster.restore_name
        );
        created += plan.create as usize;
    }
    Ok(created)
}

/// One ClusterBackup as a row of `kubectl get clusterbackups`-like output.
fn table_row(backup: &ClusterBackup) -> [String; 5] {
    let status = backup.status.clone().unwrap_or_default();
    let done = status
        .clusters
        .iter()
        .filter(|c| {
            c.last_backup
                .as_ref()
                .is_some_and(|r| r.phase.is_terminal())
        })
        .count();
    [
        backup.name_any(),
        backup
            .spec
            .schedule
            .clone()
            .unwrap_or_else(|| "<once>".into()),
        status.phase.map_or("-".to_string(), |p| format!("{p:?}")),
        format!("{done}/{}", status.clusters.len()),
        status
            .last_schedule_time
            .map_or("-".to_string(), |t| t.strftime("%H:%M:%SZ").to_string()),
    ]
}

/// Prints the project's ClusterBackups as a table, a row each time one changes (as
/// `kubectl get -w` does), until the one-time backup's runs have all ended; returns its status.
async fn watch_table(backups: &Api<ClusterBackup>) -> Result<ClusterBackupStatus> {
    let print = |row: &[String; 5]| {
        println!(
            "   {:<15} {:<12} {:<16} {:<9} {}",
            row[0], row[1], row[2], row[3], row[4]
        );
    };
    print(&["NAME", "SCHEDULE", "PHASE", "CLUSTERS", "LAST RUN"].map(String::from));
    let mut shown: BTreeMap<String, [String; 5]> = BTreeMap::new();
    let start = Instant::now();
    loop {
        for backup in backups.list(&ListParams::default()).await? {
            let row = table_row(&backup);
            if shown.get(&row[0]) != Some(&row) {
                print(&row);
                shown.insert(row[0].clone(), row);
            }
            let status = backup.status.clone().unwrap_or_default();
            let finished = matches!(
                status.phase,
                Some(FleetPhase::Completed | FleetPhase::PartiallyFailed | FleetPhase::Failed)
            );
            if backup.name_any() == BACKUP && finished {
                ensure!(
                    status.phase == Some(FleetPhase::Completed),
                    "the fleet backup ended {:?}: {:?}",
                    status.phase,
                    status.conditions
                );
                return Ok(status);
            }
        }
        ensure!(
            start.elapsed() < TIMEOUT,
            "the fleet backup did not finish within {} s",
            TIMEOUT.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Builds the controller binary the cluster half runs (debug, like `cargo run` would).
pub fn build_controller() -> Result<PathBuf> {
    fleet::build("backup-controller", "backup-controller", false)
}

/// Runs the cluster half against the local control plane in `env_dir` with the controller
/// `binary`; the controller's StorageLocation is the directory `storage` (provider `file`),
/// under prefix [`PREFIX`].
pub async fn run(
    binary: &Path,
    storage: &Path,
    env_dir: &Path,
    step: impl Fn(&str),
) -> Result<ClusterReport> {
    let state = EnvState::load(env_dir)?
        .with_context(|| format!("no environment in {} (env.json missing)", env_dir.display()))?;
    let mgmt = client(env_dir, "mgmt").await?;
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

    step("11. the fleet controller backs up c1 and c2 (objects on mgmt, the controller binary)");
    // A project left by an earlier run goes first (its objects' finalizers are released, since
    // no controller runs for it any more).
    fleet::delete_project(&mgmt, PROJECT, TIMEOUT).await?;
    backup_localenv::crds::install_crds(&mgmt, &backup_api::crds()).await?;
    fleet::create_namespace(&mgmt, PROJECT).await?;
    let locations: Api<StorageLocation> = Api::namespaced(mgmt.clone(), PROJECT);
    fleet::apply(
        &locations,
        &json!({
            "apiVersion": "backupfleet.dev/v1alpha1", "kind": "StorageLocation",
            "metadata": {"name": "local"},
            "spec": {
                "provider": "file",
                "objectStorage": {"bucket": storage.display().to_string(), "prefix": PREFIX},
                "default": true,
            }
        }),
    )
    .await?;
    let clusters: Api<ManagedCluster> = Api::namespaced(mgmt.clone(), PROJECT);
    for name in ["c1", "c2"] {
        let kubeconfig = &state.cluster(name)?.inline_kubeconfig;
        let bytes = std::fs::read(kubeconfig)
            .with_context(|| format!("reading {}", kubeconfig.display()))?;
        let secret = format!("{name}-kubeconfig");
        fleet::secret(&mgmt, PROJECT, &secret, "kubeconfig", &bytes).await?;
        fleet::apply(
            &clusters,
            &fleet::managed_cluster(name, &secret, json!({"env": "demo"})),
        )
        .await?;
    }
    let backups: Api<ClusterBackup> = Api::namespaced(mgmt.clone(), PROJECT);
    for (name, schedule) in [(BACKUP, None), ("nightly", Some("0 2 * * *"))] {
        let mut spec = json!({
            "clusters": {"selector": {"matchLabels": {"env": "demo"}}},
            "template": {"includedNamespaces": NAMESPACES},
        });
        if let Some(schedule) = schedule {
            spec["schedule"] = json!(schedule);
            spec["retention"] = json!({"keep": 7});
        }
        fleet::apply(
            &backups,
            &json!({
                "apiVersion": "backupfleet.dev/v1alpha1", "kind": "ClusterBackup",
                "metadata": {"name": name}, "spec": spec,
            }),
        )
        .await?;
    }
    println!(
        "   applied to mgmt, namespace {PROJECT}: StorageLocation local (file://{}/{PREFIX}), \
         ManagedClusters c1 and c2 (kubeconfig Secrets), ClusterBackups {BACKUP} (one-time) and \
         nightly (0 2 * * *, keep 7), both over env=demo",
        storage.display()
    );
    let log = state
        .dir
        .join("controller-logs")
        .join(format!("{PROJECT}.log"));
    // `file` locations are the controller's own filesystem: the platform allows them only under
    // a root it chooses (here the demo's storage directory).
    let file_root = storage.display().to_string();
    let mut controller = fleet::ControllerProcess::start_with(
        binary,
        state.cluster("mgmt")?,
        PROJECT,
        log,
        &["--file-root", &file_root],
    )
    .await?;
    println!(
        "   backup-controller running (pid {}, log {}, --file-root {file_root})\n",
        controller.pid,
        controller.log.display()
    );
    let started = Instant::now();
    let fleet_status = watch_table(&backups)
        .await
        .with_context(|| format!("controller log:\n{}", controller.log_tail(20)))?;
    let repo_of = |cluster: &str| -> Result<Repository> {
        let url = format!("file://{}/{PREFIX}", storage.display());
        Ok(Repository::open(&url, &BTreeMap::new())?.scoped_str(PROJECT, cluster)?)
    };
    let mut items = BTreeMap::new();
    for entry in &fleet_status.clusters {
        let run = entry
            .last_backup
            .as_ref()
            .with_context(|| format!("{}: no run in the status", entry.cluster))?;
        let manifest = repo_of(&entry.cluster)?
            .verify(BackupKind::Resources, &BackupName::new(run.name.as_str())?)
            .await?;
        println!(
            "   {}/{}: {} {} items, {} bytes, every artifact verified against its SHA-256 ({})",
            entry.cluster,
            run.name,
            run.phase,
            run.items_backed_up,
            manifest.total_size(),
            manifest
                .artifacts
                .iter()
                .map(|a| a.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        items.insert(entry.cluster.clone(), run.items_backed_up);
    }
    println!(
        "   the fleet run took {:.1} s from the controller's start",
        started.elapsed().as_secs_f64()
    );
    let restores: Api<ClusterRestore> = Api::namespaced(mgmt.clone(), PROJECT);

    step("12. delete namespace demo-blog, then restore it with a ClusterRestore");
    delete_namespace(&c1, NAMESPACES[1]).await?;
    println!("   demo-blog deleted");
    let restored = restore(
        &restores,
        "restore-blog",
        json!({
            "source": {"cluster": "c1", "clusterBackup": BACKUP},
            "includedNamespaces": [NAMESPACES[1]],
        }),
    )
    .await?;
    let mut verified = compare(
        "demo-blog on c1",
        &originals[NAMESPACES[1]],
        &content(&c1, NAMESPACES[1]).await?,
    )?;

    step("13. migrate everything to c2 with a namespace mapping (a ClusterRestore into c2)");
    let mapping: serde_json::Map<String, Value> = NAMESPACES
        .iter()
        .zip(MIGRATED)
        .map(|(from, to)| (from.to_string(), json!(to)))
        .collect();
    let migrated = restore(
        &restores,
        "migrate-to-c2",
        json!({
            "source": {"cluster": "c1", "clusterBackup": BACKUP},
            "targetClusters": ["c2"],
            "namespaceMapping": mapping,
        }),
    )
    .await?;
    for (from, to) in NAMESPACES.iter().zip(MIGRATED) {
        verified += compare(
            &format!("{from} → c2/{to}"),
            &originals[from],
            &content(&c2, to).await?,
        )?;
    }
    controller.stop()?;
    println!(
        "\n   controller stopped; its objects stay for a look: \
         kubectl --context mgmt -n {PROJECT} get clusterbackups,clusterrestores,managedclusters,storagelocations"
    );
    Ok(ClusterReport {
        backed_up: items,
        restored,
        migrated,
        verified,
    })
}
