//! End-to-end tests of the direct (agentless) engine against the real local apiservers and the
//! S3 server (the round trip also on Azure Blob Storage, Azurite): backups in Velero's format,
//! restores, migration, policies, dry runs, CRDs, and refusal of damaged or missing backups.
//! Each test uses its own namespaces and storage scope.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use backup_core::{
    BackupEngine, BackupKind, BackupSpec, EngineError, ExistingResourcePolicy, Phase,
    RestoreEngine, RestoreSpec,
};
use backup_storage::{BackupName, Encryption, Identities, Repository};
use backup_velero::direct::{Action, DirectEngine};
use backup_velero::format::{BackupObject, ResourceList, gunzip_json};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use kube::api::{ApiResource, DeleteParams, DynamicObject, PostParams};
use kube::{Api, Client};
use object_store::ObjectStoreExt as _;
use serde_json::json;
use tests::{TestNamespace, shared, unique_name};

const TIMEOUT: Duration = Duration::from_secs(120);

/// A repository on the S3 server, in a scope of its own.
fn repository(test: &str) -> Result<Repository> {
    repository_in(&unique_name("s", test))
}

/// A repository on the S3 server in the named scope (for tests that reach its files on disk
/// or open it again as another engine would).
fn repository_in(scope: &str) -> Result<Repository> {
    let s3 = shared()?.s3();
    let options = BTreeMap::from([
        ("s3Url".to_string(), s3.endpoint.clone()),
        ("region".to_string(), s3.region.clone()),
        ("s3ForcePathStyle".to_string(), "true".to_string()),
        ("access_key_id".to_string(), s3.access_key_id.clone()),
        (
            "secret_access_key".to_string(),
            s3.secret_access_key.clone(),
        ),
    ]);
    Ok(Repository::open(&s3.location, &options)?.scoped_str("e2e", scope)?)
}

/// A repository on Azure Blob Storage (the environment's Azurite, through its `az://` location
/// and the options a user gives), in a scope of its own.
fn azure_repository(test: &str) -> Result<Repository> {
    let azure = shared()?.azure()?;
    Ok(Repository::open(&azure.location, &azure.options())?
        .scoped_str("e2e", &unique_name("s", test))?)
}

fn spec_for(namespaces: &[&str]) -> BackupSpec {
    let mut spec = BackupSpec::default();
    spec.filter.included_namespaces = namespaces.iter().map(|s| s.to_string()).collect();
    spec
}

fn restore_spec(backup: &str) -> RestoreSpec {
    RestoreSpec {
        backup_name: Some(backup.into()),
        ..RestoreSpec::default()
    }
}

async fn backup(engine: &DirectEngine, name: &str, spec: &BackupSpec) -> Result<()> {
    engine.start_backup(name, spec).await?;
    let status = tokio::time::timeout(TIMEOUT, engine.wait_backup(name)).await??;
    if status.phase != Phase::Completed {
        bail!(
            "backup {name} ended {:?}: {:?}",
            status.phase,
            status.errors
        );
    }
    Ok(())
}

async fn restore(engine: &DirectEngine, name: &str, spec: &RestoreSpec) -> Result<Phase> {
    engine.start_restore(name, spec).await?;
    let status = tokio::time::timeout(TIMEOUT, engine.wait_restore(name)).await??;
    Ok(status.phase)
}

async fn config_map(
    client: &Client,
    ns: &str,
    name: &str,
    data: &[(&str, &str)],
    labels: &[(&str, &str)],
) -> Result<()> {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.into());
    cm.metadata.labels = Some(
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    cm.data = Some(
        data.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &cm)
        .await
        .with_context(|| format!("creating configmap {ns}/{name}"))?;
    Ok(())
}

async fn sample_app(client: &Client, ns: &str) -> Result<()> {
    config_map(
        client,
        ns,
        "settings",
        &[("greeting", "hello"), ("mode", "prod")],
        &[("app", "web")],
    )
    .await?;
    config_map(
        client,
        ns,
        "scratch",
        &[("x", "1")],
        &[("velero.io/exclude-from-backup", "true")],
    )
    .await?;
    let mut secret = Secret::default();
    secret.metadata.name = Some("credentials".into());
    secret.data = Some([("password".to_owned(), ByteString(b"s3cr3t".to_vec()))].into());
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await?;
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}
    }))?;
    Api::<Service>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &svc)
        .await?;
    let deploy: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.25", "ports": [{"containerPort": 8080}]}]}}}
    }))?;
    Api::<Deployment>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &deploy)
        .await?;
    Ok(())
}

/// The parts of the sample app that must survive a round trip.
async fn app_state(client: &Client, ns: &str) -> Result<serde_json::Value> {
    let cm = Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get("settings")
        .await?;
    let secret = Api::<Secret>::namespaced(client.clone(), ns)
        .get("credentials")
        .await?;
    let svc = Api::<Service>::namespaced(client.clone(), ns)
        .get("web")
        .await?;
    let deploy = Api::<Deployment>::namespaced(client.clone(), ns)
        .get("web")
        .await?;
    let svc_spec = svc.spec.unwrap_or_default();
    Ok(json!({
        "cm": cm.data, "cmLabels": cm.metadata.labels.unwrap_or_default().get("app"),
        "secret": secret.data, "secretType": secret.type_,
        "svcPorts": svc_spec.ports, "svcSelector": svc_spec.selector, "svcType": svc_spec.type_,
        "deploy": deploy.spec,
    }))
}

async fn delete_namespace(client: &Client, name: &str) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    api.delete(name, &DeleteParams::default()).await?;
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while api.get_opt(name).await?.is_some() {
        if tokio::time::Instant::now() > deadline {
            bail!("namespace {name} was not deleted in time");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

async fn artifact(repo: &Repository, backup: &str, file: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    repo.download_artifact_to(
        BackupKind::Resources,
        &BackupName::new(backup)?,
        &file.parse()?,
        &mut out,
    )
    .await?;
    Ok(out)
}

#[tokio::test]
async fn backup_delete_namespace_restore_gives_back_equal_objects() -> Result<()> {
    backup_delete_namespace_restore(repository("round_trip")?, "round_trip").await
}

#[tokio::test]
async fn backup_delete_namespace_restore_on_azure_blob_storage() -> Result<()> {
    backup_delete_namespace_restore(azure_repository("round_trip_az")?, "round_trip_az").await
}

/// Backs a sample app in cluster c1 up into `repo`, checks Velero's files through the manifest,
/// deletes the namespace, restores it and compares the objects with the originals.
async fn backup_delete_namespace_restore(repo: Repository, test: &str) -> Result<()> {
    let env = shared()?;
    let c1 = env.client("c1").await?;
    let ns = TestNamespace::create(&c1, test).await?;
    sample_app(&c1, &ns.name).await?;
    let before = app_state(&c1, &ns.name).await?;
    let engine = DirectEngine::new(c1.clone(), repo.clone());
    backup(&engine, "b1", &spec_for(&[&ns.name])).await?;

    // Velero's files, all recorded in the manifest.
    let manifest = repo
        .verify(BackupKind::Resources, &BackupName::new("b1")?)
        .await?;
    let mut names: Vec<&str> = manifest.artifacts.iter().map(|a| a.name.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "b1-logs.gz",
            "b1-resource-list.json.gz",
            "b1-results.gz",
            "b1.tar.gz",
            "velero-backup.json"
        ]
    );
    let object = BackupObject::from_json(&artifact(&repo, "b1", "velero-backup.json").await?)?;
    assert_eq!(object.phase, Phase::Completed);
    assert_eq!(
        object.spec.filter.included_namespaces,
        vec![ns.name.clone()]
    );
    let list: ResourceList =
        gunzip_json(&artifact(&repo, "b1", "b1-resource-list.json.gz").await?)?;
    let cms = &list.0["v1/ConfigMap"];
    assert!(cms.contains(&format!("{}/settings", ns.name)), "{cms:?}");
    assert!(
        !cms.contains(&format!("{}/scratch", ns.name)),
        "excluded by label: {cms:?}"
    );
    assert!(list.0["apps/v1/Deployment"].contains(&format!("{}/web", ns.name)));
    assert_eq!(list.0["v1/Namespace"], vec![ns.name.clone()]);
    assert_eq!(object.items_backed_up as usize, list.len());

    let name = ns.name.clone();
    delete_namespace(&c1, &name).await?;
    assert_eq!(
        restore(&engine, "r1", &restore_spec("b1")).await?,
        Phase::Completed
    );
    let after = app_state(&c1, &name).await?;
    assert_eq!(after, before);
    let cm = Api::<ConfigMap>::namespaced(c1.clone(), &name)
        .get("settings")
        .await?;
    let labels = cm.metadata.labels.unwrap_or_default();
    assert_eq!(
        labels.get("velero.io/backup-name").map(String::as_str),
        Some("b1")
    );
    assert_eq!(
        labels.get("velero.io/restore-name").map(String::as_str),
        Some("r1")
    );
    assert!(
        Api::<ConfigMap>::namespaced(c1.clone(), &name)
            .get_opt("scratch")
            .await?
            .is_none()
    );
    let report = engine.restore_report("r1").context("report")?;
    assert_eq!(report.count(Action::Failed), 0, "{:?}", report.results);
    assert!(report.count(Action::Created) >= 5);
    delete_namespace(&c1, &name).await?;
    Ok(())
}

#[tokio::test]
async fn migration_to_c2_with_namespace_mapping() -> Result<()> {
    let env = shared()?;
    let c1 = env.client("c1").await?;
    let c2 = env.client("c2").await?;
    let ns = TestNamespace::create(&c1, "migrate").await?;
    sample_app(&c1, &ns.name).await?;
    let before = app_state(&c1, &ns.name).await?;
    let repo = repository("migrate")?;
    backup(
        &DirectEngine::new(c1.clone(), repo.clone()),
        "m1",
        &spec_for(&[&ns.name]),
    )
    .await?;
    let target = unique_name("t", "migrated");
    let engine2 = DirectEngine::new(c2.clone(), repo);
    let mut spec = restore_spec("m1");
    spec.options
        .namespace_mapping
        .insert(ns.name.clone(), target.clone());
    assert_eq!(restore(&engine2, "to-c2", &spec).await?, Phase::Completed);
    assert_eq!(app_state(&c2, &target).await?, before);
    assert!(
        Api::<Namespace>::all(c2.clone())
            .get_opt(&ns.name)
            .await?
            .is_none(),
        "the source name is not used"
    );
    delete_namespace(&c2, &target).await?;
    ns.delete().await?;
    Ok(())
}

/// Backups, restores and their records on write-once storage (as in an object-lock bucket):
/// every key is written once, so a second write of any key would fail the run.
#[tokio::test]
async fn backup_restore_and_deletion_on_write_once_storage_write_every_key_once() -> Result<()> {
    use backup_storage::object_store::memory::InMemory;
    use backup_storage::write_once::WriteOnceStore;
    let env = shared()?;
    let c1 = env.client("c1").await?;
    let c2 = env.client("c2").await?;
    let ns = TestNamespace::create(&c1, "worm").await?;
    sample_app(&c1, &ns.name).await?;
    let before = app_state(&c1, &ns.name).await?;
    let store = std::sync::Arc::new(WriteOnceStore::new(std::sync::Arc::new(InMemory::new())));
    let repo = Repository::new(store.clone());
    let source = DirectEngine::new(c1.clone(), repo.clone());
    backup(&source, "w1", &spec_for(&[&ns.name])).await?;
    backup(&source, "w2", &spec_for(&[&ns.name])).await?;
    // The direct engine copies no volume data, and velero-backup.json says so.
    let recorded = source.stored_backup("w2").await?;
    assert!(!recorded.spec.snapshot_volumes && !recorded.spec.default_volumes_to_fs_backup);
    let target = unique_name("t", "worm");
    let engine2 = DirectEngine::new(c2.clone(), repo.clone());
    let mut spec = restore_spec("w2");
    spec.options
        .namespace_mapping
        .insert(ns.name.clone(), target.clone());
    assert_eq!(
        restore(&engine2, "worm-restore", &spec).await?,
        Phase::Completed
    );
    assert_eq!(app_state(&c2, &target).await?, before);
    // Observing the finished restore from a fresh engine reads, never writes.
    let written = store.keys_written();
    let fresh = DirectEngine::new(c2.clone(), repo.clone());
    assert_eq!(
        fresh.observe_restore("worm-restore").await?.phase,
        Phase::Completed
    );
    source.delete_backup("w1").await?;
    assert_eq!(store.keys_written(), written);
    delete_namespace(&c2, &target).await?;
    ns.delete().await?;
    Ok(())
}

#[tokio::test]
async fn existing_objects_policy_none_keeps_and_update_overwrites() -> Result<()> {
    let env = shared()?;
    let c1 = env.client("c1").await?;
    let ns = TestNamespace::create(&c1, "policy").await?;
    config_map(&c1, &ns.name, "settings", &[("k", "original")], &[]).await?;
    let repo = repository("policy")?;
    let engine = DirectEngine::new(c1.clone(), repo);
    backup(&engine, "p1", &spec_for(&[&ns.name])).await?;
    let cms: Api<ConfigMap> = Api::namespaced(c1.clone(), &ns.name);
    let mut cm = cms.get("settings").await?;
    cm.data = Some([("k".to_owned(), "changed".to_owned())].into());
    cms.replace("settings", &PostParams::default(), &cm).await?;

    assert_eq!(
        restore(&engine, "keep", &restore_spec("p1")).await?,
        Phase::Completed
    );
    let data = cms.get("settings").await?.data.unwrap_or_default();
    assert_eq!(data["k"], "changed");
    let report = engine.restore_report("keep").context("report")?;
    let warnings = &report.results.warnings.namespaces[&ns.name];
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("settings") && w.contains("already exists")),
        "{warnings:?}"
    );

    let mut spec = restore_spec("p1");
    spec.options.existing_resource_policy = ExistingResourcePolicy::Update;
    assert_eq!(
        restore(&engine, "overwrite", &spec).await?,
        Phase::Completed
    );
    let data = cms.get("settings").await?.data.unwrap_or_default();
    assert_eq!(data["k"], "original");
    let report = engine.restore_report("overwrite").context("report")?;
    assert!(
        report
            .items
            .iter()
            .any(|i| i.name == "settings" && i.action == Action::Updated)
    );
    ns.delete().await?;
    Ok(())
}

#[tokio::test]
async fn dry_run_reports_and_writes_nothing() -> Result<()> {
    let env = shared()?;
    let c1 = env.client("c1").await?;
    let ns = TestNamespace::create(&c1, "dry_run").await?;
    config_map(&c1, &ns.name, "kept", &[("a", "1")], &[]).await?;
    config_map(&c1, &ns.name, "gone", &[("b", "2")], &[]).await?;
    let repo = repository("dry_run")?;
    let engine = DirectEngine::new(c1.clone(), repo.clone());
    backup(&engine, "d1", &spec_for(&[&ns.name])).await?;
    let cms: Api<ConfigMap> = Api::namespaced(c1.clone(), &ns.name);
    cms.delete("gone", &DeleteParams::default()).await?;
    let mut spec = restore_spec("d1");
    spec.options.dry_run = true;
    assert_eq!(restore(&engine, "dry", &spec).await?, Phase::Completed);
    let report = engine.restore_report("dry").context("report")?;
    assert!(report.dry_run);
    let action = |n: &str| report.items.iter().find(|i| i.name == n).map(|i| i.action);
    assert_eq!(action("gone"), Some(Action::Created));
    assert_eq!(action("kept"), Some(Action::Skipped));
    assert!(
        cms.get_opt("gone").await?.is_none(),
        "a dry run must not create"
    );
    let stored = repo.store().list(Some(&"velero/restores".into()));
    let count = futures::StreamExt::count(stored).await;
    assert_eq!(count, 0, "a dry run must not write restore files");
    ns.delete().await?;
    Ok(())
}

#[tokio::test]
async fn crd_and_custom_objects_round_trip() -> Result<()> {
    let env = shared()?;
    let c1 = env.client("c1").await?;
    let ns = TestNamespace::create(&c1, "crd").await?;
    let group = format!("{}.example.com", unique_name("g", "crd"));
    let crd_name = format!("widgets.{group}");
    let crd_ar = ApiResource {
        group: "apiextensions.k8s.io".into(),
        version: "v1".into(),
        api_version: "apiextensions.k8s.io/v1".into(),
        kind: "CustomResourceDefinition".into(),
        plural: "customresourcedefinitions".into(),
    };
    let crds: Api<DynamicObject> = Api::all_with(c1.clone(), &crd_ar);
    let crd: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": crd_name},
        "spec": {"group": group, "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {"size": {"type": "integer"}, "color": {"type": "string"}}}}}}}]}
    }))?;
    crds.create(&PostParams::default(), &crd).await?;
    let widget_ar = ApiResource {
        group: group.clone(),
        version: "v1".into(),
        api_version: format!("{group}/v1"),
        kind: "Widget".into(),
        plural: "widgets".into(),
    };
    let widgets: Api<DynamicObject> = Api::namespaced_with(c1.clone(), &ns.name, &widget_ar);
    let widget: DynamicObject = serde_json::from_value(json!({
        "apiVersion": format!("{group}/v1"), "kind": "Widget",
        "metadata": {"name": "w1"}, "spec": {"size": 3, "color": "blue"}
    }))?;
    let mut created = None;
    for _ in 0..80 {
        match widgets.create(&PostParams::default(), &widget).await {
            Ok(w) => {
                created = Some(w);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
    created.context("the CRD was never served")?;
    let repo = repository("crd")?;
    let engine = DirectEngine::new(c1.clone(), repo);
    backup(&engine, "c1", &spec_for(&[&ns.name])).await?;

    let name = ns.name.clone();
    delete_namespace(&c1, &name).await?;
    crds.delete(&crd_name, &DeleteParams::default()).await?;
    while crds.get_opt(&crd_name).await?.is_some() {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        restore(&engine, "cr1", &restore_spec("c1")).await?,
        Phase::Completed
    );
    let restored = crds.get(&crd_name).await?;
    assert_eq!(restored.data["spec"]["names"]["kind"], "Widget");
    let w = widgets.get("w1").await?;
    assert_eq!(w.data["spec"], json!({"size": 3, "color": "blue"}));
    delete_namespace(&c1, &name).await?;
    crds.delete(&crd_name, &DeleteParams::default()).await?;
    Ok(())
}

/// The tarball's file on the S3 server's disk.
fn tarball_file(repo_scope_probe: &str, backup: &str) -> Result<std::path::PathBuf> {
    let root = &shared()?.s3().root;
    let bucket = &shared()?.s3().bucket;
    let scope_dir = root.join(bucket).join("e2e").join(repo_scope_probe);
    Ok(scope_dir
        .join(backup_core::BackupKind::Resources.dir())
        .join(backup)
        .join(format!("{backup}.tar.gz")))
}

#[tokio::test]
async fn altered_or_truncated_tarball_is_refused() -> Result<()> {
    let env = shared()?;
    let c1 = env.client("c1").await?;
    let ns = TestNamespace::create(&c1, "tamper").await?;
    config_map(&c1, &ns.name, "settings", &[("k", "v")], &[]).await?;
    let scope = unique_name("s", "tamper");
    let repo = repository_in(&scope)?;
    let engine = DirectEngine::new(c1.clone(), repo);
    backup(&engine, "t1", &spec_for(&[&ns.name])).await?;
    let file = tarball_file(&scope, "t1")?;
    let original = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    let name = ns.name.clone();
    delete_namespace(&c1, &name).await?;

    let mut altered = original.clone();
    let mid = altered.len() / 2;
    altered[mid] ^= 0x01;
    std::fs::write(&file, &altered)?;
    assert_eq!(
        restore(&engine, "altered", &restore_spec("t1")).await?,
        Phase::Failed
    );
    let status = engine.observe_restore("altered").await?;
    assert!(
        status.errors.iter().any(|e| e.contains("refused")),
        "{:?}",
        status.errors
    );

    std::fs::write(&file, &original[..original.len() - 1])?;
    assert_eq!(
        restore(&engine, "truncated", &restore_spec("t1")).await?,
        Phase::Failed
    );
    assert!(
        Api::<Namespace>::all(c1.clone())
            .get_opt(&name)
            .await?
            .is_none(),
        "nothing may be restored"
    );
    Ok(())
}

#[tokio::test]
async fn encrypted_backup_restores_only_with_its_identity_and_never_when_altered() -> Result<()> {
    let env = shared()?;
    let c1 = env.client("c1").await?;
    let ns = TestNamespace::create(&c1, "encrypted").await?;
    sample_app(&c1, &ns.name).await?;
    let before = app_state(&c1, &ns.name).await?;
    let scope = unique_name("s", "encrypted");
    let key = Identities::generate();
    let writer = repository_in(&scope)?.with_encryption(Encryption::new(key.recipients())?);
    backup(
        &DirectEngine::new(c1.clone(), writer),
        "e1",
        &spec_for(&[&ns.name]),
    )
    .await?;

    // Every file of the backup is stored encrypted; the manifest says so, and to whom.
    let plain = repository_in(&scope)?;
    let manifest = plain
        .verify(BackupKind::Resources, &BackupName::new("e1")?)
        .await?;
    assert_eq!(manifest.artifacts.len(), 5);
    assert!(manifest.artifacts.iter().all(|a| a.encryption.is_some()));
    assert_eq!(manifest.recipients(), key.fingerprints());
    let file = tarball_file(&scope, "e1")?;
    for a in &manifest.artifacts {
        let stored = std::fs::read(file.with_file_name(a.name.as_str()))?;
        assert!(stored.starts_with(b"age-encryption.org/v1\n"), "{}", a.name);
    }

    // Without keys, another engine still lists and observes it.
    let keyless = DirectEngine::new(c1.clone(), plain.clone());
    let listed = keyless.list_backups(&Default::default()).await?;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].phase, Phase::Completed);
    assert_eq!(keyless.observe_backup("e1").await?.phase, Phase::Completed);

    let name = ns.name.clone();
    delete_namespace(&c1, &name).await?;
    let namespace_absent = || async {
        Ok::<_, anyhow::Error>(
            Api::<Namespace>::all(c1.clone())
                .get_opt(&name)
                .await?
                .is_none(),
        )
    };

    // No identity, or the wrong one: refused at start, naming the fingerprint needed.
    let fingerprint = key.fingerprints()[0].to_string();
    for engine in [
        keyless,
        DirectEngine::new(
            c1.clone(),
            plain.clone().with_identities(Identities::generate()),
        ),
    ] {
        let err = engine
            .start_restore("refused", &restore_spec("e1"))
            .await
            .unwrap_err();
        assert!(matches!(err, EngineError::Invalid(_)), "{err}");
        assert!(err.to_string().contains(&fingerprint), "{err}");
    }
    assert!(namespace_absent().await?, "nothing may be restored");

    // A flipped byte behind a forged manifest checksum: age refuses it while the tarball is
    // spooled, before anything is created.
    let with_key = DirectEngine::new(c1.clone(), plain.clone().with_identities(key.clone()));
    let original = std::fs::read(&file)?;
    let manifest_file = file.with_file_name("backup-manifest.json");
    let original_manifest = std::fs::read(&manifest_file)?;
    let mut altered = original.clone();
    let mid = altered.len() / 2;
    altered[mid] ^= 0x01;
    let mut forged: serde_json::Value = serde_json::from_slice(&original_manifest)?;
    for a in forged["artifacts"].as_array_mut().context("artifacts")? {
        if a["name"] == "e1.tar.gz" {
            a["sha256"] = hex_sha256(&altered).into();
        }
    }
    std::fs::write(&file, &altered)?;
    std::fs::write(&manifest_file, forged.to_string())?;
    assert_eq!(
        restore(&with_key, "forged", &restore_spec("e1")).await?,
        Phase::Failed
    );
    let status = with_key.observe_restore("forged").await?;
    assert!(
        status
            .errors
            .iter()
            .any(|e| e.contains("failed to decrypt")),
        "{:?}",
        status.errors
    );
    assert!(namespace_absent().await?, "nothing may be restored");

    // Intact again: the identity restores equal objects.
    std::fs::write(&file, &original)?;
    std::fs::write(&manifest_file, &original_manifest)?;
    assert_eq!(
        restore(&with_key, "r1", &restore_spec("e1")).await?,
        Phase::Completed
    );
    assert_eq!(app_state(&c1, &name).await?, before);
    delete_namespace(&c1, &name).await?;
    Ok(())
}

fn hex_sha256(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

#[tokio::test]
async fn existing_and_missing_backup_names_are_clear_errors() -> Result<()> {
    let env = shared()?;
    let c1 = env.client("c1").await?;
    let ns = TestNamespace::create(&c1, "names").await?;
    let engine = DirectEngine::new(c1.clone(), repository("names")?);
    let spec = spec_for(&[&ns.name]);
    backup(&engine, "n1", &spec).await?;
    // Another engine (another process) sees the committed backup.
    let other = DirectEngine::new(c1.clone(), engine.repository().clone());
    let err = other.start_backup("n1", &spec).await.unwrap_err();
    assert!(matches!(err, EngineError::AlreadyExists { .. }), "{err}");
    let err = engine
        .start_restore("r", &restore_spec("missing"))
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("missing"));
    let err = engine.delete_backup("missing").await.unwrap_err();
    assert!(matches!(err, EngineError::NotFound { .. }), "{err}");
    engine.delete_backup("n1").await?;
    let listing = engine.repository().list(BackupKind::Resources).await?;
    assert!(listing.manifests.is_empty());
    ns.delete().await?;
    Ok(())
}

#[tokio::test]
async fn unreachable_apiserver_is_unavailable_and_writes_nothing() -> Result<()> {
    let config = kube::Config::new("https://127.0.0.1:1".parse()?);
    let client = Client::try_from(config)?;
    let engine = DirectEngine::new(client, repository("unreachable")?);
    let err = engine
        .start_backup("u1", &BackupSpec::default())
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("reachable"), "{err}");
    let listing = engine.repository().list(BackupKind::Resources).await?;
    assert!(listing.manifests.is_empty());
    Ok(())
}

/// A client for cluster `cluster` authenticated as service account `ns/account`.
async fn service_account_client(cluster: &str, ns: &str, account: &str) -> Result<Client> {
    let info = shared()?.cluster(cluster)?;
    let admin = shared()?.client(cluster).await?;
    let secrets: Api<Secret> = Api::namespaced(admin, ns);
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let token = loop {
        let found = secrets
            .list(&Default::default())
            .await?
            .items
            .into_iter()
            .find(|s| {
                s.type_.as_deref() == Some("kubernetes.io/service-account-token")
                    && s.metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get("kubernetes.io/service-account.name"))
                        == Some(&account.to_string())
            });
        if let Some(token) = found.and_then(|s| s.data?.remove("token")) {
            break String::from_utf8(token.0)?;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("no token was issued for service account {ns}/{account}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let kubeconfig: kube::config::Kubeconfig = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "limited",
        "clusters": [{"name": "c", "cluster": {"server": info.apiserver_url,
            "certificate-authority": info.ca_file}}],
        "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": "limited", "context": {"cluster": "c", "user": "u"}}]
    }))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    Ok(Client::try_from(config)?)
}

#[tokio::test]
async fn forbidden_kinds_are_warnings_and_the_rest_is_backed_up() -> Result<()> {
    let env = shared()?;
    let c1 = env.client("c1").await?;
    let ns = TestNamespace::create(&c1, "rbac").await?;
    config_map(&c1, &ns.name, "visible", &[("k", "v")], &[]).await?;
    let apply = |kind: &str, value: serde_json::Value| {
        let ar = match kind {
            "ServiceAccount" => {
                ApiResource::erase::<k8s_openapi::api::core::v1::ServiceAccount>(&())
            }
            "Role" => ApiResource::erase::<k8s_openapi::api::rbac::v1::Role>(&()),
            _ => ApiResource::erase::<k8s_openapi::api::rbac::v1::RoleBinding>(&()),
        };
        let api: Api<DynamicObject> = Api::namespaced_with(c1.clone(), &ns.name, &ar);
        async move {
            let obj: DynamicObject = serde_json::from_value(value)?;
            api.create(&PostParams::default(), &obj).await?;
            anyhow::Ok(())
        }
    };
    apply(
        "ServiceAccount",
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "limited"}}),
    )
    .await?;
    apply("Role", json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "cm-reader"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]})).await?;
    apply("RoleBinding", json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "cm-reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "limited", "namespace": ns.name}]})).await?;
    let limited = service_account_client("c1", &ns.name, "limited").await?;
    let repo = repository("rbac")?;
    let engine = DirectEngine::new(limited, repo.clone());
    engine
        .start_backup("limited", &spec_for(&[&ns.name]))
        .await?;
    let status = tokio::time::timeout(TIMEOUT, engine.wait_backup("limited")).await??;
    assert_eq!(status.phase, Phase::Completed, "{:?}", status.errors);
    assert!(
        status
            .warnings
            .iter()
            .any(|w| w.contains("secrets") && w.contains("403 Forbidden")),
        "{:?}",
        status.warnings
    );
    let list: ResourceList =
        gunzip_json(&artifact(&repo, "limited", "limited-resource-list.json.gz").await?)?;
    assert_eq!(list.0["v1/ConfigMap"], vec![format!("{}/visible", ns.name)]);
    assert!(!list.0.contains_key("v1/Secret"));
    ns.delete().await?;
    Ok(())
}

#[tokio::test]
async fn an_object_that_fails_to_create_is_reported_and_the_others_continue() -> Result<()> {
    let env = shared()?;
    let c1 = env.client("c1").await?;
    let c2 = env.client("c2").await?;
    let ns = TestNamespace::create(&c1, "failing").await?;
    for name in ["a", "b", "c"] {
        config_map(&c1, &ns.name, name, &[("k", name)], &[]).await?;
    }
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(json!({
        "metadata": {"name": "big"},
        "spec": {"containers": [{"name": "c", "image": "busybox",
            "resources": {"requests": {"memory": "1Gi"}, "limits": {"memory": "1Gi"}}}]}
    }))?;
    let pods = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(c1.clone(), &ns.name);
    // A new namespace admits pods once its default service account has a token.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while let Err(e) = pods.create(&PostParams::default(), &pod).await {
        if tokio::time::Instant::now() > deadline {
            return Err(e.into());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let repo = repository("failing")?;
    backup(
        &DirectEngine::new(c1.clone(), repo.clone()),
        "f1",
        &spec_for(&[&ns.name]),
    )
    .await?;
    // The target namespace refuses containers above 512Mi: the pod cannot be created there.
    let target = TestNamespace::create(&c2, "failing_target").await?;
    let limits: k8s_openapi::api::core::v1::LimitRange = serde_json::from_value(json!({
        "metadata": {"name": "small"},
        "spec": {"limits": [{"type": "Container", "max": {"memory": "512Mi"}}]}
    }))?;
    Api::<k8s_openapi::api::core::v1::LimitRange>::namespaced(c2.clone(), &target.name)
        .create(&PostParams::default(), &limits)
        .await?;
    let engine = DirectEngine::new(c2.clone(), repo);
    let mut spec = restore_spec("f1");
    spec.options
        .namespace_mapping
        .insert(ns.name.clone(), target.name.clone());
    assert_eq!(restore(&engine, "f1", &spec).await?, Phase::PartiallyFailed);
    let report = engine.restore_report("f1").context("report")?;
    let action = |n: &str| report.items.iter().find(|i| i.name == n).map(|i| i.action);
    assert_eq!(action("big"), Some(Action::Failed));
    for name in ["a", "b", "c"] {
        assert_eq!(action(name), Some(Action::Created), "{name}");
    }
    let errors = &report.results.errors.namespaces[&target.name];
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("pods") && errors[0].contains("big"),
        "{errors:?}"
    );
    let cms = Api::<ConfigMap>::namespaced(c2.clone(), &target.name);
    assert!(cms.get_opt("c").await?.is_some());
    target.delete().await?;
    ns.delete().await?;
    Ok(())
}

#[tokio::test]
async fn a_finished_restore_is_observed_by_a_fresh_engine_from_storage() -> Result<()> {
    let env = shared()?;
    let c1 = env.client("c1").await?;
    let ns = TestNamespace::create(&c1, "observe").await?;
    config_map(&c1, &ns.name, "settings", &[("k", "v")], &[]).await?;
    let scope = unique_name("s", "observe");
    let repo = repository_in(&scope)?;
    let engine = DirectEngine::new(c1.clone(), repo.clone());
    backup(&engine, "o1", &spec_for(&[&ns.name])).await?;
    let cms: Api<ConfigMap> = Api::namespaced(c1.clone(), &ns.name);
    cms.delete("settings", &DeleteParams::default()).await?;
    assert_eq!(
        restore(&engine, "o-r1", &restore_spec("o1")).await?,
        Phase::Completed
    );
    let live = engine.observe_restore("o-r1").await?;

    // Another process (a new engine on the same repository) reads the outcome from storage.
    let fresh = DirectEngine::new(c1.clone(), repo.clone());
    let stored = fresh.observe_restore("o-r1").await?;
    assert_eq!(stored.phase, Phase::Completed);
    assert_eq!(stored.errors, live.errors);
    assert_eq!(stored.warnings, live.warnings);
    assert!(stored.progress.items_done >= 1, "{stored:?}");
    let (started, completed) = (
        stored.started.context("started")?,
        stored.completed.context("completed")?,
    );
    assert!(started <= completed, "{stored:?}");
    let live_started = live.started.context("live started")?;
    assert!(
        (started.as_second() - live_started.as_second()).abs() <= 1,
        "{started} vs {live_started}"
    );
    // The name is taken for the new engine too.
    let err = fresh
        .start_restore("o-r1", &restore_spec("o1"))
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::AlreadyExists { .. }), "{err}");
    let err = fresh.observe_restore("unknown").await.unwrap_err();
    assert!(matches!(err, EngineError::NotFound { .. }), "{err}");
    let err = fresh.observe_restore("Not_A_Name").await.unwrap_err();
    assert!(matches!(err, EngineError::NotFound { .. }), "{err}");

    // A restore that fails before writing Velero's files is still seen as Failed.
    let file = tarball_file(&scope, "o1")?;
    let mut altered =
        std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    let mid = altered.len() / 2;
    altered[mid] ^= 0x01;
    std::fs::write(&file, &altered)?;
    assert_eq!(
        restore(&engine, "o-bad", &restore_spec("o1")).await?,
        Phase::Failed
    );
    let stored = DirectEngine::new(c1.clone(), repo)
        .observe_restore("o-bad")
        .await?;
    assert_eq!(stored.phase, Phase::Failed);
    assert_eq!(
        stored.errors,
        engine.observe_restore("o-bad").await?.errors,
        "the reason survives"
    );
    assert!(!stored.errors.is_empty());
    ns.delete().await?;
    Ok(())
}

#[tokio::test]
async fn restore_from_a_schedule_uses_its_newest_completed_backup() -> Result<()> {
    let env = shared()?;
    let c1 = env.client("c1").await?;
    let ns = TestNamespace::create(&c1, "schedule").await?;
    let cms: Api<ConfigMap> = Api::namespaced(c1.clone(), &ns.name);
    let engine = DirectEngine::new(c1.clone(), repository("schedule")?);
    let scheduled = |schedule: &str| {
        let mut spec = spec_for(&[&ns.name]);
        spec.labels.insert(
            backup_velero::direct::SCHEDULE_LABEL.into(),
            schedule.into(),
        );
        spec
    };
    let set = |v: &'static str| {
        let cms = cms.clone();
        async move {
            let patch = json!({"data": {"v": v}});
            cms.patch(
                "settings",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await?;
            anyhow::Ok(())
        }
    };
    config_map(&c1, &ns.name, "settings", &[("v", "old")], &[]).await?;
    // Names sort the other way round from age: the start time decides, not the name.
    backup(&engine, "zz-old", &scheduled("nightly")).await?;
    // velero-backup.json keeps whole seconds.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    set("new").await?;
    backup(&engine, "aa-new", &scheduled("nightly")).await?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    set("other").await?;
    backup(&engine, "mm-other", &scheduled("weekly")).await?;
    backup(&engine, "manual", &spec_for(&[&ns.name])).await?;

    cms.delete("settings", &DeleteParams::default()).await?;
    let spec = RestoreSpec {
        schedule_name: Some("nightly".into()),
        ..RestoreSpec::default()
    };
    assert_eq!(
        restore(&engine, "from-nightly", &spec).await?,
        Phase::Completed
    );
    let cm = cms.get("settings").await?;
    assert_eq!(
        cm.metadata
            .labels
            .unwrap_or_default()
            .get("velero.io/backup-name")
            .map(String::as_str),
        Some("aa-new")
    );
    assert_eq!(
        cm.data.unwrap_or_default().get("v").map(String::as_str),
        Some("new")
    );
    // The same request again is idempotent.
    engine.start_restore("from-nightly", &spec).await?;

    let none = RestoreSpec {
        schedule_name: Some("hourly".into()),
        ..RestoreSpec::default()
    };
    let err = engine
        .start_restore("from-hourly", &none)
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::NotFound { .. }), "{err}");
    assert!(
        err.to_string().contains("hourly") && err.to_string().contains("schedule"),
        "{err}"
    );
    assert!(engine.observe_restore("from-hourly").await.is_err());
    ns.delete().await?;
    Ok(())
}

#[tokio::test]
async fn additional_items_are_backed_up_besides_the_filter_once_each() -> Result<()> {
    let env = shared()?;
    let c1 = env.client("c1").await?;
    let ns = TestNamespace::create(&c1, "extra").await?;
    let other = TestNamespace::create(&c1, "extra-other").await?;
    config_map(&c1, &ns.name, "labelled", &[("k", "v")], &[("pick", "me")]).await?;
    config_map(&c1, &ns.name, "unlabelled", &[("k", "v")], &[]).await?;
    config_map(&c1, &other.name, "named", &[("k", "v")], &[]).await?;
    config_map(
        &c1,
        &other.name,
        "excluded",
        &[("k", "v")],
        &[("velero.io/exclude-from-backup", "true")],
    )
    .await?;
    let repo = repository("extra")?;
    let engine = DirectEngine::new(c1.clone(), repo.clone());
    let mut spec = BackupSpec::default();
    spec.filter.or_label_selectors = vec![serde_json::from_value(
        json!({"matchLabels": {"pick": "me"}}),
    )?];
    let item = |namespace: &str, name: &str| backup_velero::direct::AdditionalItem {
        group_resource: backup_core::GroupResource::parse("configmaps"),
        namespace: namespace.to_string(),
        name: name.to_string(),
    };
    let additional = vec![
        // Already selected by the filter: written once.
        item(&ns.name, "labelled"),
        item(&other.name, "named"),
        // The exclude label wins, as in Velero.
        item(&other.name, "excluded"),
        item(&other.name, "missing"),
    ];
    engine.start_backup_with("extra", &spec, additional).await?;
    let status = tokio::time::timeout(TIMEOUT, engine.wait_backup("extra")).await??;
    assert_eq!(status.phase, Phase::Completed, "{:?}", status.errors);
    assert!(
        status
            .warnings
            .iter()
            .any(|w| w.contains(&format!("{}/missing", other.name)) && w.contains("does not exist")),
        "{:?}",
        status.warnings
    );
    let list: ResourceList =
        gunzip_json(&artifact(&repo, "extra", "extra-resource-list.json.gz").await?)?;
    let mut config_maps = list.0["v1/ConfigMap"].clone();
    config_maps.sort();
    let mut expected = vec![
        format!("{}/labelled", ns.name),
        format!("{}/named", other.name),
    ];
    expected.sort();
    assert_eq!(config_maps, expected);
    // The namespaces of additional items come with them, as for any item.
    let namespaces = &list.0["v1/Namespace"];
    assert!(namespaces.contains(&other.name), "{namespaces:?}");
    ns.delete().await?;
    other.delete().await?;
    Ok(())
}

#[tokio::test]
async fn a_backup_velero_wrote_restores_without_a_manifest_of_ours() -> Result<()> {
    let env = shared()?;
    let c1 = env.client("c1").await?;
    let ns = TestNamespace::create(&c1, "velero-written").await?;
    config_map(&c1, &ns.name, "settings", &[("k", "v")], &[]).await?;
    let engine = DirectEngine::new(c1.clone(), repository("velero-written")?);
    backup(&engine, "by-velero", &spec_for(&[&ns.name])).await?;
    // What Velero leaves in a shared location: the same files, no manifest of ours.
    engine
        .repository()
        .store()
        .delete(&object_store::path::Path::from(format!(
            "velero/backups/by-velero/{}",
            backup_storage::MANIFEST_FILE
        )))
        .await?;
    assert!(
        engine
            .repository()
            .list(BackupKind::Resources)
            .await?
            .manifests
            .is_empty(),
        "not one of ours any more"
    );
    Api::<ConfigMap>::namespaced(c1.clone(), &ns.name)
        .delete("settings", &DeleteParams::default())
        .await?;
    let phase = restore(&engine, "from-velero", &restore_spec("by-velero")).await?;
    assert_eq!(phase, Phase::Completed);
    let back = Api::<ConfigMap>::namespaced(c1.clone(), &ns.name)
        .get("settings")
        .await?;
    assert_eq!(
        back.data.unwrap_or_default().get("k").map(String::as_str),
        Some("v")
    );
    // Damaged, it is refused by its own format (gzip's CRC, tar) before anything is created.
    let tarball = object_store::path::Path::from("velero/backups/by-velero/by-velero.tar.gz");
    let mut bytes = engine
        .repository()
        .store()
        .get(&tarball)
        .await?
        .bytes()
        .await?
        .to_vec();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    engine
        .repository()
        .store()
        .put_opts(
            &tarball,
            bytes::Bytes::from(bytes).into(),
            object_store::PutOptions::default(),
        )
        .await?;
    Api::<ConfigMap>::namespaced(c1.clone(), &ns.name)
        .delete("settings", &DeleteParams::default())
        .await?;
    let phase = restore(&engine, "from-damaged", &restore_spec("by-velero")).await?;
    assert_eq!(phase, Phase::Failed);
    assert!(
        Api::<ConfigMap>::namespaced(c1.clone(), &ns.name)
            .get_opt("settings")
            .await?
            .is_none(),
        "nothing created from a damaged tarball"
    );
    // Neither ours nor Velero's: not found.
    let missing = engine
        .start_restore("no-tarball", &restore_spec("nothing-here"))
        .await
        .unwrap_err();
    assert!(matches!(missing, EngineError::NotFound { .. }), "{missing}");
    ns.delete().await?;
    Ok(())
}
