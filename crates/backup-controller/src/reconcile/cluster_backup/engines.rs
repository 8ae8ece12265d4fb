//! The engine behind one cluster's runs: direct (agentless, writes the location itself) or
//! Velero in the cluster (the location is handed to Velero as a BSL under the same prefix,
//! `<prefix>/<namespace>/<cluster>/velero`, with its credential Secret, as KKP does).

use std::collections::BTreeMap;

use backup_core::{BackupEngine, EngineError, LabelSelector, StoredBackup};
use backup_velero::direct::{DirectEngine, SCHEDULE_LABEL};
use backup_velero::in_cluster::InClusterEngine;
use kube::ResourceExt;

use crate::context::Context;
use crate::error::{Error, Result};
use backup_api::{EngineKind, ManagedCluster};
use backup_kube::locations::ResolvedLocation;

/// The engine of one cluster for one location.
pub enum ClusterEngine {
    /// Agentless.
    Direct(DirectEngine),
    /// Velero in the cluster.
    Velero(InClusterEngine),
}

impl ClusterEngine {
    /// The engine behind the shared trait.
    pub fn backups(&self) -> &dyn BackupEngine {
        match self {
            ClusterEngine::Direct(e) => e,
            ClusterEngine::Velero(e) => e,
        }
    }

    /// Which engine it is.
    pub fn kind(&self) -> EngineKind {
        match self {
            ClusterEngine::Direct(_) => EngineKind::Direct,
            ClusterEngine::Velero(_) => EngineKind::Velero,
        }
    }
}

/// The labels of a ClusterBackup's runs: Velero's schedule label, so `backupctl restore create
/// --from-schedule` and Velero itself group them like a Schedule's backups.
pub fn run_labels(backup: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(SCHEDULE_LABEL.to_string(), backup.to_string())])
}

/// Selects a ClusterBackup's runs.
pub fn selector(backup: &str) -> LabelSelector {
    LabelSelector {
        match_labels: run_labels(backup),
        ..LabelSelector::default()
    }
}

/// The repository scope of a cluster: `<location prefix>/<namespace>/<cluster>/`.
fn scoped(
    location: &ResolvedLocation,
    namespace: &str,
    cluster: &str,
) -> std::result::Result<backup_storage::Repository, String> {
    location
        .repo
        .scoped_str(namespace, cluster)
        .map_err(|e| e.to_string())
}

/// The engine for `cluster`'s runs into `location`. The engine is the one the cluster's status
/// records (decided by the ManagedCluster reconciler), or decided now when it records none.
/// With `writing`, the Velero engine's location is (re)applied in the cluster first.
pub async fn engine_for(
    ctx: &Context,
    location: &ResolvedLocation,
    cluster: &ManagedCluster,
    writing: bool,
) -> std::result::Result<ClusterEngine, String> {
    let handle = ctx
        .clusters
        .handle(cluster)
        .await
        .map_err(|e| e.to_string())?;
    let kind = match cluster.status.as_ref().and_then(|s| s.engine) {
        Some(kind) => kind,
        None => handle.resolve_engine().await.0,
    };
    match kind {
        EngineKind::Direct => {
            let repo = scoped(location, &handle.namespace, &handle.name)?;
            Ok(ClusterEngine::Direct(
                DirectEngine::new(handle.client.clone(), repo)
                    .with_storage_location(&location.name)
                    .with_discovery_cache(handle.discovery.clone()),
            ))
        }
        EngineKind::Velero if location.repo.encryption().is_some() => Err(format!(
            "StorageLocation {} encrypts backups at rest, which Velero in the cluster cannot \
             do: back cluster {} up with engine direct, or use a location without encryption",
            location.name, handle.name
        )),
        EngineKind::Velero => {
            let engine = handle
                .velero_engine(&location.name)
                .map_err(|e| e.to_string())?;
            if writing {
                engine
                    .ensure_location(
                        &location.name,
                        &location.spec,
                        location.credentials.as_deref().map(Vec::as_slice),
                        false,
                    )
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok(ClusterEngine::Velero(engine))
        }
    }
}

/// A ClusterBackup's stored runs of `cluster`, oldest first. Direct clusters are listed from
/// the location itself (no cluster access needed); Velero clusters from the Backups Velero
/// syncs from the location.
pub async fn list_stored(
    ctx: &Context,
    location: &ResolvedLocation,
    cluster: &ManagedCluster,
    backup: &str,
) -> std::result::Result<Vec<StoredBackup>, String> {
    let namespace = cluster.namespace().unwrap_or_default();
    let uses_velero = cluster.status.as_ref().and_then(|s| s.engine) == Some(EngineKind::Velero);
    let listed = if uses_velero {
        let engine = engine_for(ctx, location, cluster, false).await?;
        engine.backups().list_backups(&selector(backup)).await
    } else {
        let repo = scoped(location, &namespace, &cluster.name_any())?;
        backup_velero::direct::stored::list(&repo, &selector(backup)).await
    };
    listed.map_err(|e| e.to_string())
}

/// Deletes every stored run of a ClusterBackup on `cluster`; returns how many.
pub async fn delete_all(
    ctx: &Context,
    location: &ResolvedLocation,
    cluster: &ManagedCluster,
    backup: &str,
) -> Result<usize> {
    let engine = engine_for(ctx, location, cluster, false)
        .await
        .map_err(|reason| Error::Engine(EngineError::Unavailable { reason }))?;
    let runs = engine.backups().list_backups(&selector(backup)).await?;
    for run in &runs {
        match engine.backups().delete_backup(&run.name).await {
            Ok(()) | Err(EngineError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(runs.len())
}
