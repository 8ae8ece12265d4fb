//! EtcdRestore: validate before the agent next to etcd may act on it. The cluster must be a
//! ManagedCluster of the namespace, the snapshot must exist in the location with its checksum
//! recorded (and be readable with the location's keys when encrypted). The result is the
//! `Ready` condition; the agent's `phase` is never touched here, and once the agent took the
//! restore, the controller leaves it alone.

use std::sync::Arc;
use std::time::Duration;

use backup_core::BackupKind;
use backup_storage::{BackupName, StorageError};
use kube::ResourceExt;
use kube::runtime::controller::Action;

use super::write_status;
use crate::context::Context;
use crate::error::Result;
use backup_api::cluster_restore::READY;
use backup_api::etcd_restore::{EtcdRestore, EtcdRestoreStatus};
use backup_api::status::{Condition, merge_conditions};

/// The controller's name in metrics.
pub const CONTROLLER: &str = "etcdrestore";

/// How often a restore that cannot be validated looks again (a snapshot may appear).
const RECHECK: Duration = Duration::from_secs(30);

/// Reconciles one EtcdRestore.
#[tracing::instrument(name = "reconcile", skip_all, fields(kind = "EtcdRestore", namespace = %restore.metadata.namespace.as_deref().unwrap_or_default(), name = %restore.metadata.name.as_deref().unwrap_or_default()))]
pub async fn reconcile(restore: Arc<EtcdRestore>, ctx: Arc<Context>) -> Result<Action> {
    let started = std::time::Instant::now();
    ctx.stores.listed().await;
    let result = apply(&restore, &ctx).await;
    ctx.metrics.reconciled(CONTROLLER, started.elapsed());
    result
}

async fn apply(restore: &EtcdRestore, ctx: &Context) -> Result<Action> {
    let previous = restore.status.clone().unwrap_or_default();
    if restore.metadata.deletion_timestamp.is_some() || previous.phase.is_some() {
        return Ok(Action::await_change());
    }
    let now = ctx.clock.now();
    let generation = restore.metadata.generation;
    let problem = validate(restore, ctx).await?;
    let condition = match &problem {
        Ok(message) => Condition::met(READY, "Validated", message.clone()),
        Err((reason, message)) => Condition::unmet(READY, reason, message.clone()),
    }
    .at(now, generation);
    // Only the controller's fields: the agent owns the others.
    let status = EtcdRestoreStatus {
        observed_generation: generation,
        conditions: merge_conditions(&previous.conditions, vec![condition]),
        ..EtcdRestoreStatus::default()
    };
    if status.conditions != previous.conditions
        || status.observed_generation != previous.observed_generation
    {
        write_status(ctx, restore, &status).await?;
    }
    Ok(match problem {
        Ok(_) => Action::await_change(),
        Err(_) => Action::requeue(RECHECK),
    })
}

/// What the agent will restore (`Ok`, as a message), or why it may not (reason, message).
async fn validate(
    restore: &EtcdRestore,
    ctx: &Context,
) -> Result<std::result::Result<String, (&'static str, String)>> {
    let namespace = restore.namespace().unwrap_or_default();
    let spec = &restore.spec;
    if let Err(field) = spec.validate() {
        return Ok(Err(("InvalidSpec", field.to_string())));
    }
    let known = ctx.stores.clusters.state().iter().any(|c| {
        c.namespace().as_deref() == Some(namespace.as_str()) && c.name_any() == spec.cluster
    });
    if !known {
        return Ok(Err((
            "ClusterNotFound",
            format!(
                "spec.cluster: no ManagedCluster {:?} in namespace {namespace} (an EtcdRestore \
                 only reaches the clusters of its own project)",
                spec.cluster
            ),
        )));
    }
    let location = match ctx
        .locations
        .resolve(
            &ctx.stores.locations,
            &namespace,
            spec.storage_location.as_deref(),
        )
        .await
    {
        Ok(location) => location,
        Err(problem) if problem.is_retryable() => return Err(problem.into()),
        Err(problem) => return Ok(Err((problem.reason(), problem.to_string()))),
    };
    let repo = location
        .repo
        .scoped_str(&namespace, &spec.cluster)
        .map_err(crate::Error::Storage)?;
    let name = BackupName::new(spec.backup_name.as_str()).map_err(crate::Error::Storage)?;
    let manifest = match repo.get_manifest(BackupKind::EtcdSnapshot, &name).await {
        Ok(manifest) => manifest,
        Err(StorageError::BackupNotFound { .. }) => {
            return Ok(Err((
                "BackupNotFound",
                format!(
                    "no etcd snapshot {} of cluster {} in StorageLocation {}; `backupctl etcd \
                     list --project {namespace} --cluster {}` lists them",
                    spec.backup_name, spec.cluster, location.name, spec.cluster
                ),
            )));
        }
        Err(e @ (StorageError::Store { .. } | StorageError::NoCredentials { .. })) => {
            return Err(e.into());
        }
        Err(e) => return Ok(Err(("BackupUnreadable", e.to_string()))),
    };
    if manifest.artifacts.is_empty() || manifest.artifacts.iter().any(|a| a.sha256.is_empty()) {
        return Ok(Err((
            "ChecksumMissing",
            format!(
                "snapshot {} has no SHA-256 recorded for every file, so a restore could not be \
                 verified: take a new snapshot",
                spec.backup_name
            ),
        )));
    }
    if let Err(e) = repo.ensure_readable(&manifest) {
        return Ok(Err((
            "BackupEncrypted",
            format!(
                "snapshot {} is encrypted and StorageLocation {} holds no key for it: {e}",
                spec.backup_name, location.name
            ),
        )));
    }
    Ok(Ok(format!(
        "snapshot {} of cluster {} in StorageLocation {} ({} bytes, SHA-256 recorded): the \
         agent next to that etcd (`backupctl etcd agent --namespace {namespace} --cluster {}`) \
         restores it",
        spec.backup_name,
        spec.cluster,
        location.name,
        manifest.total_size(),
        spec.cluster
    )))
}
