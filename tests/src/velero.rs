//! Set-up shared by the tests of the Velero in-cluster engine: Velero's CRDs, a per-test Velero
//! namespace with an engine pointed at it, and helpers that play Velero's part.
//!
//! No Velero server runs in the local control plane. Velero's CRDs have no status subresource, so
//! where a test needs Velero to have acted, it writes `status` by patching the whole object,
//! exactly as Velero does.

use anyhow::{Context, Result, bail};
use backup_core::StorageLocationSpec;
use backup_velero::api::{self, BackupStorageLocation};
use backup_velero::in_cluster::translate::object_name;
use backup_velero::in_cluster::{InClusterConfig, InClusterEngine};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use crate::{TestNamespace, shared};

/// The project every in-cluster test engine works for.
pub const PROJECT: &str = "proj";
/// The name (in our terms) of the storage location [`setup`]'s engine sends backups to.
pub const LOCATION: &str = "main";
/// Applies Velero's CRDs (generated from our types) to the cluster with server-side apply and
/// waits until each is Established. Idempotent, so every test may call it.
pub async fn install_crds(client: &Client) -> Result<()> {
    let crds = api::crds();
    crate::crds::install(client, &crds, "velero-in-cluster-tests").await?;
    let stored: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in &crds {
        let name = crd.name_any();
        // As in Velero's manifests: status is written through the main resource.
        if stored
            .get(&name)
            .await?
            .spec
            .versions
            .iter()
            .any(|v| v.subresources.is_some())
        {
            bail!("CRD {name} still has a subresource; Velero's CRDs have none");
        }
    }
    Ok(())
}

/// What [`setup`] made for one test.
pub struct Setup {
    /// A client for `c1`, where Velero's CRDs are installed.
    pub client: Client,
    /// The test's own namespace, used as "the Velero namespace" so tests run in parallel.
    pub ns: TestNamespace,
    /// The engine under test, writing into `ns`.
    pub engine: InClusterEngine,
    /// The cluster name the engine prefixes its objects with.
    pub cluster: String,
}

/// `c1` with Velero's CRDs, a fresh Velero namespace and an engine for project [`PROJECT`],
/// cluster `cluster`, whose backups go to location [`LOCATION`].
pub async fn setup(test: &str, cluster: &str) -> Result<Setup> {
    let env = shared()?;
    let client = env.client("c1").await?;
    install_crds(&client).await?;
    let ns = TestNamespace::create(&client, test).await?;
    let cfg = InClusterConfig::new(PROJECT, cluster)?
        .with_velero_namespace(&ns.name)
        .with_location(LOCATION);
    let engine = InClusterEngine::new(client.clone(), cfg);
    Ok(Setup {
        client,
        ns,
        engine,
        cluster: cluster.to_owned(),
    })
}

/// A storage location as KKP would configure one for MinIO: AWS provider, bucket
/// `fleet-bucket`, prefix `base` (the engine appends `<project>/<cluster>`).
pub fn location() -> StorageLocationSpec {
    let mut l = StorageLocationSpec::new("aws", "fleet-bucket");
    l.prefix = Some("base".into());
    l.config.insert("region".into(), "minio".into());
    l
}

/// The labels the engine puts on every object it writes for project [`PROJECT`] and `cluster`.
pub fn labels(cluster: &str) -> Value {
    json!({
        "app.kubernetes.io/managed-by": "backup-fleet",
        "backup-fleet.io/cluster": cluster,
        "backup-fleet.io/project": PROJECT
    })
}

/// The object `name` as stored, without the fields the apiserver adds (uid, resourceVersion,
/// timestamps, managedFields, ...), so a test can compare it with the JSON it expects.
pub async fn stored<K>(api: &Api<K>, name: &str) -> Result<Value>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let mut v = serde_json::to_value(api.get(name).await?)?;
    let meta = v["metadata"].as_object_mut().context("metadata")?;
    for k in [
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "managedFields",
        "generation",
        "selfLink",
    ] {
        meta.remove(k);
    }
    Ok(v)
}

/// Plays Velero: writes `status` by patching the whole object, as Velero does for all its kinds.
pub async fn velero_sets_status<K>(api: &Api<K>, name: &str, status: Value) -> Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await?;
    Ok(())
}

/// Ensures location [`LOCATION`] (as the default) and marks it Available, as Velero's BSL
/// controller does after validating it, so backups may start.
pub async fn available_location(s: &Setup) -> Result<()> {
    s.engine
        .ensure_location(LOCATION, &location(), None, true)
        .await?;
    let bsls: Api<BackupStorageLocation> = Api::namespaced(s.client.clone(), &s.ns.name);
    let status =
        json!({"status": {"phase": "Available", "lastValidationTime": "2026-01-01T00:00:00Z"}});
    bsls.patch(
        &object_name(&s.cluster, "location", LOCATION),
        &PatchParams::default(),
        &Patch::Merge(&status),
    )
    .await?;
    Ok(())
}
