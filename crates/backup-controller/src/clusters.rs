//! ManagedCluster → a kube `Client` for the user cluster, with discovery results shared by
//! every run against the same API server.
//!
//! The client itself is built for each use and dropped with it. A kube client keeps every
//! connection it opened in its pool (a backup opens about ten, for its parallel LISTs) until
//! it has been idle for 90 seconds, and kube does not let the pool be tuned: held for hundreds
//! of clusters, idle TLS connections were most of the controller's memory. Building one costs
//! a kubeconfig parse and a TLS configuration (the connection's handshake is paid either way,
//! since a cluster is used minutes apart).
//!
//! Kubeconfig bytes become a client in one place, `backup_kube::kubeconfig`, shared with the
//! CLI. Nothing here logs or returns a kubeconfig's content.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backup_kube::discovery::DiscoveryCache;
use backup_kube::kubeconfig::{KubeconfigError, cluster_client_from_bytes};
use backup_net::AddressPolicy;
use backup_velero::in_cluster::{DEFAULT_VELERO_NAMESPACE, InClusterConfig, InClusterEngine};
use kube::ResourceExt;

use crate::NamespacedName;
use backup_api::{EngineChoice, EngineKind, ManagedCluster};
use backup_kube::secrets::{self, SecretError};

/// How long an API server's discovery results are reused between runs.
pub const DISCOVERY_TTL: Duration = Duration::from_secs(600);
/// How long `auto` waits for a Velero server to answer before choosing the direct engine.
pub const VELERO_PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a cluster cannot be reached; each says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ClusterProblem {
    /// The kubeconfig Secret or key cannot be read.
    #[error("kubeconfig: {0}")]
    Secret(#[from] SecretError),
    /// The kubeconfig cannot be turned into a client.
    #[error("kubeconfig in Secret {secret:?}: {source}")]
    Kubeconfig {
        /// The Secret.
        secret: String,
        /// Why.
        #[source]
        source: KubeconfigError,
    },
}

impl ClusterProblem {
    /// A CamelCase reason for conditions.
    pub fn reason(&self) -> &'static str {
        match self {
            ClusterProblem::Secret(SecretError::Missing { .. }) => "KubeconfigSecretMissing",
            ClusterProblem::Secret(SecretError::KeyMissing { .. }) => "KubeconfigKeyMissing",
            ClusterProblem::Secret(SecretError::NotShared { .. }) => secrets::NOT_SHARED_REASON,
            ClusterProblem::Secret(SecretError::Api { .. }) => "KubeconfigUnreadable",
            ClusterProblem::Kubeconfig {
                source: KubeconfigError::AddressNotAllowed { .. },
                ..
            } => "AddressNotAllowed",
            ClusterProblem::Kubeconfig { .. } => "KubeconfigInvalid",
        }
    }

    /// Whether trying again later can help without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ClusterProblem::Secret(e) if e.is_retryable())
    }
}

/// A reachable-in-principle user cluster: its client and what runs reuse.
#[derive(Clone)]
pub struct ClusterHandle {
    /// The ManagedCluster's name.
    pub name: String,
    /// Its namespace (project).
    pub namespace: String,
    /// A client for the user cluster.
    pub client: kube::Client,
    /// Discovery shared by its runs.
    pub discovery: DiscoveryCache,
    /// Which engine the spec asks for.
    pub choice: EngineChoice,
    /// Where Velero runs in it.
    pub velero_namespace: String,
}

impl ClusterHandle {
    /// The in-cluster (Velero) engine for this cluster, writing under location `location`.
    pub fn velero_engine(
        &self,
        location: &str,
    ) -> Result<InClusterEngine, backup_velero::in_cluster::VeleroError> {
        let config = InClusterConfig::new(&self.namespace, &self.name)?
            .with_velero_namespace(&self.velero_namespace)
            .with_location(location);
        Ok(InClusterEngine::new(self.client.clone(), config))
    }

    /// The engine backups use now: the spec's choice, and for `auto` Velero only when its
    /// server answers within [`VELERO_PROBE_TIMEOUT`]. Also returns the probe's outcome for
    /// the `VeleroReady` condition (`None` when the direct engine was chosen outright).
    pub async fn resolve_engine(
        &self,
    ) -> (
        EngineKind,
        Option<
            Result<backup_velero::in_cluster::ServerInfo, backup_velero::in_cluster::VeleroError>,
        >,
    ) {
        if self.choice == EngineChoice::Direct {
            return (EngineKind::Direct, None);
        }
        let probe = match self.velero_engine("default") {
            Ok(engine) => engine.check_velero(VELERO_PROBE_TIMEOUT).await,
            Err(e) => Err(e),
        };
        let kind = match (self.choice, probe.is_ok()) {
            (EngineChoice::Velero, _) | (EngineChoice::Auto, true) => EngineKind::Velero,
            _ => EngineKind::Direct,
        };
        (kind, Some(probe))
    }
}

/// Discovery per API server ([`backup_kube::kubeconfig::ClusterClient::server`]), and which
/// server each cluster was last seen to use, so a server nobody uses any more is forgotten.
#[derive(Default)]
struct Cache {
    by_server: HashMap<String, DiscoveryCache>,
    server_of: HashMap<NamespacedName, String>,
}

impl Cache {
    /// The discovery of `server`, now used by `cluster`.
    fn discovery(&mut self, cluster: NamespacedName, server: &str) -> DiscoveryCache {
        let discovery = self
            .by_server
            .entry(server.to_string())
            .or_insert_with(|| DiscoveryCache::new(DISCOVERY_TTL))
            .clone();
        if let Some(previous) = self.server_of.insert(cluster, server.to_string())
            && previous != server
        {
            self.drop_if_unused(&previous);
        }
        discovery
    }

    /// Forgets `cluster`, and its server's discovery when no other cluster uses it.
    fn forget(&mut self, cluster: &NamespacedName) {
        if let Some(server) = self.server_of.remove(cluster) {
            self.drop_if_unused(&server);
        }
    }

    fn drop_if_unused(&mut self, server: &str) {
        if !self.server_of.values().any(|s| s == server) {
            self.by_server.remove(server);
        }
    }
}

/// Builds user-cluster clients and keeps their discovery results.
#[derive(Clone)]
pub struct Clusters {
    mgmt: kube::Client,
    /// Checked on every connection to a user cluster (its kubeconfig is the project's).
    addresses: Arc<AddressPolicy>,
    cache: Arc<Mutex<Cache>>,
}

impl Clusters {
    /// An empty cache reading kubeconfig Secrets through the management client `mgmt`, whose
    /// clients dial only what `addresses` allows.
    pub fn new(mgmt: kube::Client, addresses: Arc<AddressPolicy>) -> Self {
        Clusters {
            mgmt,
            addresses,
            cache: Arc::default(),
        }
    }

    /// A handle on `cluster` with a fresh client and the shared discovery of its API server.
    pub async fn handle(&self, cluster: &ManagedCluster) -> Result<ClusterHandle, ClusterProblem> {
        let name = cluster.name_any();
        let namespace = cluster.namespace().unwrap_or_default();
        let reference = &cluster.spec.kubeconfig;
        let secret = secrets::read_key(
            &self.mgmt,
            &namespace,
            &reference.name,
            cluster.spec.kubeconfig_key(),
        )
        .await?;
        let built = cluster_client_from_bytes(
            &secret.data,
            cluster.spec.context.as_deref(),
            Arc::clone(&self.addresses),
        )
        .await
        .map_err(|source| ClusterProblem::Kubeconfig {
            secret: reference.name.clone(),
            source,
        })?;
        let discovery = self
            .lock()
            .discovery((namespace.clone(), name.clone()), &built.server);
        let client = built.client;
        Ok(ClusterHandle {
            name,
            namespace,
            client,
            discovery,
            choice: cluster.spec.engine,
            velero_namespace: cluster
                .spec
                .velero_namespace
                .clone()
                .unwrap_or_else(|| DEFAULT_VELERO_NAMESPACE.to_string()),
        })
    }

    /// Forgets a deleted cluster (and its server's discovery when no other cluster uses it).
    pub fn forget(&self, namespace: &str, name: &str) {
        self.lock()
            .forget(&(namespace.to_string(), name.to_string()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> NamespacedName {
        ("project-a".into(), name.into())
    }

    #[test]
    fn clusters_on_one_server_share_its_discovery_until_the_last_is_gone() {
        let mut cache = Cache::default();
        cache.discovery(key("c1"), "https://10.0.0.1:6443#ca1");
        cache.discovery(key("c1-team-b"), "https://10.0.0.1:6443#ca1");
        cache.discovery(key("c2"), "https://10.0.0.2:6443#ca2");
        assert_eq!(cache.by_server.len(), 2);
        cache.forget(&key("c1"));
        assert!(cache.by_server.contains_key("https://10.0.0.1:6443#ca1"));
        cache.forget(&key("c1-team-b"));
        assert!(!cache.by_server.contains_key("https://10.0.0.1:6443#ca1"));
        assert_eq!(cache.by_server.len(), 1);
    }

    #[test]
    fn a_kubeconfig_the_project_has_not_shared_is_said_so() {
        let not_shared = ClusterProblem::Secret(SecretError::NotShared {
            namespace: "project-a".into(),
            name: "c1-kubeconfig".into(),
        });
        assert_eq!(not_shared.reason(), "SecretsNotShared");
        assert!(!not_shared.is_retryable());
        assert!(not_shared.to_string().contains("project-onboarding.yaml"));
    }

    #[test]
    fn a_cluster_moved_to_another_server_drops_the_old_one_when_unused() {
        let mut cache = Cache::default();
        cache.discovery(key("c1"), "https://10.0.0.1:6443#ca1");
        cache.discovery(key("c1"), "https://10.0.0.9:6443#ca9");
        assert_eq!(
            cache.by_server.keys().collect::<Vec<_>>(),
            vec!["https://10.0.0.9:6443#ca9"]
        );
    }
}
