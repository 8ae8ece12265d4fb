//! What the admission webhook costs a write: the same paused ClusterBackups (each naming one
//! cluster, so each asks one SubjectAccessReview as the requesting user) created one after
//! another in the benchmark's project, which the controller's webhook judges, and in a
//! namespace beside it, which it does not: the peer is the same API server without our
//! webhook. Latencies are each create's round trip as a client sees it.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use backup_api::ClusterBackup;

/// The label API servers since Kubernetes 1.21 put on every namespace (the webhook of a
/// `--namespace` controller is scoped by it); the local control plane runs 1.20, so it is set
/// as a newer server would.
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The latencies of creates judged by the webhook, and of the same creates not judged.
pub struct Measured {
    /// Judged by the webhook, sorted.
    pub ours: Vec<Duration>,
    /// Beside it, not judged, sorted.
    pub peer: Vec<Duration>,
}

/// The ValidatingWebhookConfiguration a controller of `--namespace project` keeps.
pub fn configuration_name(project: &str) -> String {
    format!("backup-fleet-{project}")
}

/// Removes the webhook's configuration (after the controller stopped: with failurePolicy
/// Fail, writes of our kinds in the project would be refused while it stayed).
pub async fn remove_configuration(mgmt: &Client, project: &str) -> Result<()> {
    let api: Api<ValidatingWebhookConfiguration> = Api::all(mgmt.clone());
    match api
        .delete(&configuration_name(project), &DeleteParams::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Creates `count` paused ClusterBackups in `project` (judged) and in a namespace beside it
/// (not judged), alternately, naming `clusters` in turn.
pub async fn measure(
    mgmt: &Client,
    project: &str,
    clusters: &[String],
    count: usize,
) -> Result<Measured> {
    let namespaces: Api<Namespace> = Api::all(mgmt.clone());
    let label = json!({"metadata": {"labels": {NAMESPACE_NAME_LABEL: project}}});
    namespaces
        .patch(project, &PatchParams::default(), &Patch::Merge(&label))
        .await
        .context("labelling the project for the webhook")?;
    let beside = format!("{project}-unjudged");
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": beside}}))?,
        )
        .await
        .with_context(|| format!("creating namespace {beside}"))?;
    let measured = alternate(mgmt, project, &beside, clusters, count).await;
    let _ = namespaces.delete(&beside, &DeleteParams::default()).await;
    measured
}

async fn alternate(
    mgmt: &Client,
    judged: &str,
    beside: &str,
    clusters: &[String],
    count: usize,
) -> Result<Measured> {
    let (mut ours, mut peer) = (Vec::with_capacity(count), Vec::with_capacity(count));
    for i in 0..count {
        let cluster = &clusters[i % clusters.len()];
        ours.push(create(mgmt, judged, i, cluster).await?);
        peer.push(create(mgmt, beside, i, cluster).await?);
    }
    ours.sort();
    peer.sort();
    Ok(Measured { ours, peer })
}

/// Creates paused ClusterBackup `admission-<i>` naming `cluster` in `namespace`; how long the
/// create took.
async fn create(mgmt: &Client, namespace: &str, i: usize, cluster: &str) -> Result<Duration> {
    let backup: ClusterBackup = serde_json::from_value(json!({
        "apiVersion": "backupfleet.dev/v1alpha1", "kind": "ClusterBackup",
        "metadata": {"name": format!("admission-{i}")},
        "spec": {"clusters": {"names": [cluster]}, "schedule": "0 0 1 1 *", "paused": true},
    }))?;
    let api: Api<ClusterBackup> = Api::namespaced(mgmt.clone(), namespace);
    let start = Instant::now();
    api.create(&PostParams::default(), &backup)
        .await
        .with_context(|| format!("creating ClusterBackup admission-{i} in {namespace}"))?;
    Ok(start.elapsed())
}
