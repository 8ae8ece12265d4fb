//! Shared set-up of the Velero in-cluster tests: CRD installation, per-test Velero
//! namespaces, and the helpers that play Velero's part.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use backup_core::StorageLocationSpec;
use backup_velero::api::{self, BackupStorageLocation};
use backup_velero::in_cluster::{InClusterConfig, InClusterEngine};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tests::{TestNamespace, shared};

pub async fn install_velero_crds(client: &Client) -> Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let pp = PatchParams::apply("velero-in-cluster-tests").force();
    for crd in api::crds() {
        let name = crd.name_any();
        crds.patch(&name, &pp, &Patch::Apply(&crd))
            .await
            .with_context(|| format!("applying CRD {name}"))?;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for crd in api::crds() {
        let name = crd.name_any();
        loop {
            let c = crds.get(&name).await?;
            // As in Velero's manifests: status is written through the main resource.
            if c.spec.versions.iter().any(|v| v.subresources.is_some()) {
                bail!("CRD {name} still has a subresource; Velero's CRDs have none");
            }
            let established = c
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            if established {
                break;
            }
            if Instant::now() > deadline {
                bail!("CRD {name} not Established within 60s");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

pub struct Setup {
    pub client: Client,
    pub ns: TestNamespace,
    pub engine: InClusterEngine,
}

/// c1 with Velero's CRDs, a fresh Velero namespace and an engine for project `proj`,
/// cluster `cluster`, whose backups go to location `main`.
pub async fn setup(test: &str, cluster: &str) -> Result<Setup> {
    let env = shared()?;
    let client = env.client("c1").await?;
    install_velero_crds(&client).await?;
    let ns = TestNamespace::create(&client, test).await?;
    let cfg = InClusterConfig::new("proj", cluster)?
        .with_velero_namespace(&ns.name)
        .with_location("main");
    let engine = InClusterEngine::new(client.clone(), cfg);
    Ok(Setup { client, ns, engine })
}

pub fn location() -> StorageLocationSpec {
    let mut l = StorageLocationSpec::new("aws", "fleet-bucket");
    l.prefix = Some("base".into());
    l.config.insert("region".into(), "minio".into());
    l
}

/// The object as stored, without what the apiserver adds.
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

pub fn labels() -> Value {
    json!({
        "app.kubernetes.io/managed-by": "backup-fleet",
        "backup-fleet.io/cluster": "c1",
        "backup-fleet.io/project": "proj"
    })
}

pub async fn available_location(s: &Setup) -> Result<()> {
    s.engine
        .ensure_location("main", &location(), None, true)
        .await?;
    let bsls: Api<BackupStorageLocation> = Api::namespaced(s.client.clone(), &s.ns.name);
    let status =
        json!({"status": {"phase": "Available", "lastValidationTime": "2026-01-01T00:00:00Z"}});
    bsls.patch(
        "c1-location-main",
        &PatchParams::default(),
        &Patch::Merge(&status),
    )
    .await?;
    Ok(())
}
