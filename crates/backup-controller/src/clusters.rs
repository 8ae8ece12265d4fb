//! ManagedCluster → a kube `Client` for the user cluster, with the cluster's discovery results
//! shared between runs until its spec or kubeconfig Secret changes.
//!
//! The client itself is built for each use and dropped with it. A kube client keeps every
//! connection it opened in its pool (a backup opens about ten, for its parallel LISTs) until
//! it has been idle for 90 seconds, and kube does not let the pool be tuned: held for hundreds
//! of clusters, idle TLS connections were most of the controller's memory. Building one costs
//! a kubeconfig parse and a TLS configuration (the connection's handshake is paid either way,
//! since a cluster is used minutes apart).
//!
//! Kubeconfig bytes become a client in one place, `backup_velero::kubeconfig`, shared with the
//! CLI. Nothing here logs or returns a kubeconfig's content.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backup_velero::direct::discovery::DiscoveryCache;
use backup_velero::in_cluster::{DEFAULT_VELERO_NAMESPACE, InClusterConfig, InClusterEngine};
use backup_velero::kubeconfig::{KubeconfigError, client_from_bytes};
use kube::ResourceExt;

use crate::NamespacedName;
use crate::api::{EngineChoice, EngineKind, ManagedCluster};
use crate::secrets::{self, SecretError};

/// How long a cluster's discovery results are reused between runs.
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
            ClusterProblem::Secret(SecretError::Api { .. }) => "KubeconfigUnreadable",
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

/// What a cluster's cached discovery belongs to; any change starts a new one.
#[derive(Clone, PartialEq, Eq)]
struct Built {
    uid: String,
    generation: Option<i64>,
    secret_version: String,
}

/// Discovery caches by cluster, with what each belongs to.
type Cache = HashMap<NamespacedName, (Built, DiscoveryCache)>;

/// Builds user-cluster clients and keeps their discovery results.
#[derive(Clone)]
pub struct Clusters {
    mgmt: kube::Client,
    cache: Arc<Mutex<Cache>>,
}

impl Clusters {
    /// An empty cache reading kubeconfig Secrets through the management client `mgmt`.
    pub fn new(mgmt: kube::Client) -> Self {
        Clusters {
            mgmt,
            cache: Arc::default(),
        }
    }

    /// A handle on `cluster` with a fresh client; its discovery results are kept until its spec
    /// or kubeconfig Secret changes.
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
        let built = Built {
            uid: cluster.uid().unwrap_or_default(),
            generation: cluster.metadata.generation,
            secret_version: secret.resource_version.clone(),
        };
        let key = (namespace.clone(), name.clone());
        let discovery = {
            let mut cache = self.lock();
            match cache.get(&key) {
                Some((cached_built, discovery)) if *cached_built == built => discovery.clone(),
                _ => {
                    let discovery = DiscoveryCache::new(DISCOVERY_TTL);
                    cache.insert(key, (built, discovery.clone()));
                    discovery
                }
            }
        };
        let client = client_from_bytes(&secret.data, cluster.spec.context.as_deref())
            .await
            .map_err(|source| ClusterProblem::Kubeconfig {
                secret: reference.name.clone(),
                source,
            })?;
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

    /// Forgets a deleted cluster's discovery results.
    pub fn forget(&self, namespace: &str, name: &str) {
        self.lock()
            .remove(&(namespace.to_string(), name.to_string()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}
