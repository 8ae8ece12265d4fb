//! The in-cluster engine: drives a Velero server running in the user cluster, as KKP and
//! Kurator do, by writing Velero objects and mirroring their status.
//!
//! - [`translate`]: core spec → Velero object, pure (names, labels, TTL, prefixes);
//! - [`observe`]: Velero status → core status, pure;
//! - [`InClusterEngine`]: the kube I/O (server-side apply of locations, create of backups and
//!   restores, DeleteBackupRequests, DownloadRequests, installation probe).

mod error;
pub mod observe;
mod ops;
mod probe;
#[cfg(test)]
mod tests;
pub mod translate;

pub use error::VeleroError;
pub use probe::ServerInfo;

use backup_core::{NameError, validate_dns1123_label};
use kube::Client;

/// Velero's usual namespace.
pub const DEFAULT_VELERO_NAMESPACE: &str = "velero";
/// Our server-side-apply field manager.
pub const FIELD_MANAGER: &str = "backup-fleet";

/// Which cluster an engine works on and where Velero is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InClusterConfig {
    /// Project the cluster belongs to (first prefix segment).
    pub project: String,
    /// Cluster name (second prefix segment and object-name head).
    pub cluster: String,
    /// Where Velero runs (default `velero`).
    pub velero_namespace: String,
    /// Core name of the location used by backups that name none; `None` = Velero's default BSL.
    pub location: Option<String>,
    /// Server-side-apply field manager.
    pub field_manager: String,
}

impl InClusterConfig {
    /// A config for `project`/`cluster`. Both must be DNS-1123 labels: they form the storage
    /// prefix `<project>/<cluster>`, and anything else (`..`, `/`) could escape it.
    pub fn new(project: &str, cluster: &str) -> Result<Self, VeleroError> {
        let check = |what: &str, v: &str| {
            validate_dns1123_label(v).map_err(|e: NameError| {
                VeleroError::Invalid(format!(
                    "{what} {v:?} cannot be a storage prefix segment: {e}"
                ))
            })
        };
        check("project", project)?;
        check("cluster", cluster)?;
        Ok(InClusterConfig {
            project: project.to_string(),
            cluster: cluster.to_string(),
            velero_namespace: DEFAULT_VELERO_NAMESPACE.to_string(),
            location: None,
            field_manager: FIELD_MANAGER.to_string(),
        })
    }

    /// Sets the Velero namespace.
    pub fn with_velero_namespace(mut self, ns: &str) -> Self {
        self.velero_namespace = ns.to_string();
        self
    }

    /// Sets the location used by backups that name none.
    pub fn with_location(mut self, location: &str) -> Self {
        self.location = Some(location.to_string());
        self
    }
}

/// Drives Velero in one user cluster. Implements [`backup_core::BackupEngine`] and
/// [`backup_core::RestoreEngine`]; schedules, locations, downloads and the installation probe
/// are inherent methods.
#[derive(Clone)]
pub struct InClusterEngine {
    client: Client,
    cfg: InClusterConfig,
}

impl InClusterEngine {
    /// An engine for the cluster behind `client`.
    pub fn new(client: Client, cfg: InClusterConfig) -> Self {
        InClusterEngine { client, cfg }
    }

    /// Its configuration.
    pub fn config(&self) -> &InClusterConfig {
        &self.cfg
    }
}
