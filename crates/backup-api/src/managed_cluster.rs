//! `ManagedCluster`: one user cluster of the fleet (KKP's cluster, Kurator's AttachedCluster),
//! reached through a kubeconfig kept in a Secret of the same namespace.

use backup_core::CredentialRef;
use jiff::Timestamp;
use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::schema::optional_date_time;
use super::status::Condition;

/// The Secret key a kubeconfig is read from when the reference names none.
pub const DEFAULT_KUBECONFIG_KEY: &str = "kubeconfig";

/// A cluster to back up (`spec`).
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    crates(kube_core = "::kube_core"),
    group = "backupfleet.dev",
    version = "v1alpha1",
    kind = "ManagedCluster",
    plural = "managedclusters",
    shortname = "mcl",
    namespaced,
    status = "ManagedClusterStatus",
    printcolumn = r#"{"name":"Engine","type":"string","jsonPath":".status.engine"}"#,
    printcolumn = r#"{"name":"Reachable","type":"string","jsonPath":".status.conditions[?(@.type==\"Reachable\")].status"}"#,
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".status.kubernetesVersion"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ManagedClusterSpec {
    /// The Secret (in this namespace) and key holding a self-contained kubeconfig.
    pub kubeconfig: CredentialRef,
    /// Context inside the kubeconfig; its current context when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// `direct` (default: agentless, from the management cluster), `velero` (drive the Velero
    /// installed in the cluster), or `auto` (velero when it is installed and answering).
    #[serde(default)]
    pub engine: EngineChoice,
    /// Where Velero runs in the cluster (engines `velero` and `auto`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub velero_namespace: Option<String>,
    /// How to reach the cluster's etcd, for EtcdBackupConfigs (KKP's etcd backups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd: Option<EtcdAccess>,
}

/// Where a cluster's etcd answers, and the TLS material it wants.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EtcdAccess {
    /// Client URLs (`https://10.0.0.1:2379`); the first member that answers is snapshotted.
    pub endpoints: Vec<String>,
    /// A Secret (in this namespace) with `ca.crt`, and `tls.crt` and `tls.key` for client
    /// certificate authentication (the keys of a `kubernetes.io/tls` Secret plus the CA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<SecretName>,
}

/// A Secret of the same namespace, by name.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct SecretName {
    /// Its name.
    pub name: String,
}

/// Which engine backs the cluster up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EngineChoice {
    /// Agentless: the controller reads the cluster's API and writes Velero's format itself.
    #[default]
    Direct,
    /// The Velero server in the cluster does the work; the controller drives it.
    Velero,
    /// Velero when it is installed and answering, else direct.
    Auto,
}

/// The engine a cluster's backups actually use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// Agentless.
    Direct,
    /// Velero in the cluster.
    Velero,
}

impl EngineKind {
    /// Lower-case name, as in the spec and in metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            EngineKind::Direct => "direct",
            EngineKind::Velero => "velero",
        }
    }
}

/// What the controller last found (`status`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedClusterStatus {
    /// The engine backups use now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<EngineKind>,
    /// The cluster's Kubernetes version, e.g. `v1.20.2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_version: Option<String>,
    /// When the cluster was last checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_date_time")]
    pub last_probe_time: Option<Timestamp>,
    /// The generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Reachable` (its message carries the version or the error) and `VeleroReady`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl ManagedClusterSpec {
    /// The Secret key of the kubeconfig (`kubeconfig` when the reference leaves it empty).
    pub fn kubeconfig_key(&self) -> &str {
        if self.kubeconfig.key.is_empty() {
            DEFAULT_KUBECONFIG_KEY
        } else {
            &self.kubeconfig.key
        }
    }
}
