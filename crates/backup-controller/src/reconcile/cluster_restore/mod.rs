//! ClusterRestore: decide with [`plan::plan`]; to start, resolve the location, the backup and
//! the target clusters (each problem a `Ready=False` condition saying what to fix), write the
//! status announcing the restore, then run it ([`execute`]). Deletion removes the restores'
//! files from storage.
//!
//! Restores always use the direct engine, whatever engine backs a cluster up: it restores from
//! the management cluster, so nothing (no credentials, no Velero) has to be in the target, and
//! it reads backups written by Velero, `backupctl` and the controller alike (Velero's own
//! carry no checksum of ours: only their formats check them).

pub mod execute;
pub mod plan;

use std::sync::Arc;

use backup_core::resource_modifiers::ResourceModifiers;
use backup_core::{EngineError, ExistingResourcePolicy};
use backup_storage::Repository;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use self::plan::{Decision, PlanInput};
use super::{with_finalizer, write_status};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::runs::ObjectKey;
use backup_api::cluster_restore::{READY, SourceBackup, ValidClusterRestore};
use backup_api::status::find;
use backup_api::{ClusterRestore, ManagedCluster};
use backup_kube::locations::ResolvedLocation;

/// The controller's name in metrics.
pub const CONTROLLER: &str = "clusterrestore";

/// Reconciles one ClusterRestore.
#[tracing::instrument(name = "reconcile", skip_all, fields(kind = "ClusterRestore", namespace = %restore.metadata.namespace.as_deref().unwrap_or_default(), name = %restore.metadata.name.as_deref().unwrap_or_default()))]
pub async fn reconcile(restore: Arc<ClusterRestore>, ctx: Arc<Context>) -> Result<Action> {
    ctx.stores.listed().await;
    with_finalizer(CONTROLLER, restore, ctx, apply, cleanup).await
}

fn key_of(restore: &ClusterRestore) -> ObjectKey {
    (
        restore.namespace().unwrap_or_default(),
        restore.name_any(),
        restore.uid().unwrap_or_default(),
    )
}

async fn apply(restore: Arc<ClusterRestore>, ctx: Arc<Context>) -> Result<Action> {
    let now = ctx.clock.now();
    let generation = restore.metadata.generation;
    let previous = restore.status.clone().unwrap_or_default();
    let spec = restore.spec.validate();
    let key = key_of(&restore);
    let decision = plan::plan(&PlanInput {
        generation,
        now,
        spec: &spec,
        previous: &previous,
        running_here: ctx.runs.restore_running(&key),
    });
    let valid = match decision {
        Decision::Nothing => return Ok(Action::await_change()),
        Decision::Release => {
            ctx.runs.end_restore(&key);
            return Ok(Action::await_change());
        }
        Decision::Write(status) => {
            if let Some(ready) = find(&status.conditions, READY)
                && !ready.is_true()
                && find(&previous.conditions, READY) != Some(ready)
            {
                warn(&ctx, &restore, &ready.reason, ready.message.clone()).await;
            }
            write_status(&ctx, restore.as_ref(), &status).await?;
            return Ok(Action::await_change());
        }
        Decision::Start => match spec {
            Ok(valid) => valid,
            // The plan starts only valid restores.
            Err(_) => return Ok(Action::await_change()),
        },
    };

    let resolved = match resolve(&ctx, &restore, &valid).await? {
        Ok(resolved) => resolved,
        Err((reason, message)) => {
            let status = plan::blocked(&previous, generation, now, reason, message.clone());
            if status != previous {
                warn(&ctx, &restore, reason, message).await;
                write_status(&ctx, restore.as_ref(), &status).await?;
            }
            // What blocks it may be fixed outside this object (a backup appears, a cluster is
            // added): look again after a while as well as on every change.
            return Ok(Action::requeue(std::time::Duration::from_secs(60)));
        }
    };

    if !ctx.runs.claim_restore(&key) {
        return Ok(Action::await_change());
    }
    let status = plan::started(
        &restore.name_any(),
        generation,
        now,
        &valid,
        &resolved.location.name,
        &resolved.backup,
        &previous,
    );
    if let Err(e) = write_status(&ctx, restore.as_ref(), &status).await {
        ctx.runs.end_restore(&key);
        return Err(e);
    }
    ctx.event(
        &restore.object_ref(&()),
        false,
        "RestoreStarted",
        "Restore",
        format!(
            "{} backup {} of cluster {} into {}",
            if valid.template.dry_run {
                "dry run of restoring"
            } else {
                "restoring"
            },
            resolved.backup,
            valid.source_cluster,
            valid.targets.join(", ")
        ),
    )
    .await;
    execute::start(
        ctx.clone(),
        execute::RestoreJob {
            key,
            object: restore.clone(),
            spec: backup_core::RestoreSpec {
                resource_modifiers: resolved.modifiers,
                ..valid.restore_spec(&resolved.backup)
            },
            repo: resolved.repo,
            location: resolved.location.name,
            targets: resolved.targets,
            status,
        },
    );
    Ok(Action::await_change())
}

async fn warn(ctx: &Context, restore: &ClusterRestore, reason: &str, message: String) {
    ctx.event(&restore.object_ref(&()), true, reason, "Validate", message)
        .await;
}

/// What a restore reads and where it goes.
struct Resolved {
    location: ResolvedLocation,
    /// The location scoped to the source cluster.
    repo: Repository,
    /// The backup to restore.
    backup: String,
    /// The target ManagedClusters, in spec order.
    targets: Vec<Arc<ManagedCluster>>,
    /// The resource modifiers to apply.
    modifiers: Option<ResourceModifiers>,
}

/// A reason and message for a `Ready=False` condition.
type Blocked = (&'static str, String);

/// Resolves the location, the backup and the targets. `Ok(Err(..))` is a problem the user
/// must fix; `Err` is one that retrying can fix (storage or an API briefly unreachable).
async fn resolve(
    ctx: &Context,
    restore: &ClusterRestore,
    spec: &ValidClusterRestore,
) -> Result<std::result::Result<Resolved, Blocked>> {
    let namespace = restore.namespace().unwrap_or_default();

    // Targets first: they need no storage access.
    let mut targets = Vec::new();
    for name in &spec.targets {
        let found = ctx.stores.clusters.state().into_iter().find(|c| {
            c.namespace().as_deref() == Some(namespace.as_str()) && c.name_any() == *name
        });
        match found {
            Some(cluster) => targets.push(cluster),
            None if spec.targets_defaulted => {
                return Ok(Err((
                    "ClusterNotFound",
                    format!(
                        "targetClusters is omitted, so the restore goes into the source cluster \
                         {name:?}, but it is not a ManagedCluster of namespace {namespace}: name \
                         the clusters to restore into in spec.targetClusters"
                    ),
                )));
            }
            None => {
                return Ok(Err((
                    "ClusterNotFound",
                    format!(
                        "spec.targetClusters: no ManagedCluster {name:?} in namespace \
                         {namespace} (a restore can only reach the clusters of its own project)"
                    ),
                )));
            }
        }
    }

    // The location: the spec's, else the ClusterBackup's, else the namespace's default.
    let from_backup = match &spec.source_backup {
        SourceBackup::NewestOf(backup) => ctx
            .stores
            .backups
            .state()
            .into_iter()
            .find(|b| {
                b.namespace().as_deref() == Some(namespace.as_str()) && b.name_any() == *backup
            })
            .and_then(|b| b.spec.storage_location.clone()),
        SourceBackup::Named(_) => None,
    };
    let wanted = spec.storage_location.clone().or(from_backup);
    let location = match ctx
        .locations
        .resolve(&ctx.stores.locations, &namespace, wanted.as_deref())
        .await
    {
        Ok(location) => location,
        Err(problem) if problem.is_retryable() => return Err(problem.into()),
        Err(problem) => return Ok(Err((problem.reason(), problem.to_string()))),
    };
    let repo = match location.repo.scoped_str(&namespace, &spec.source_cluster) {
        Ok(repo) => repo,
        Err(e) => return Ok(Err(("InvalidSpec", format!("spec.source.cluster: {e}")))),
    };

    // The backup: resolved once, here, so every target restores the same one.
    let lookup = match &spec.source_backup {
        SourceBackup::Named(name) => backup_core::RestoreSpec {
            backup_name: Some(name.clone()),
            ..backup_core::RestoreSpec::default()
        },
        SourceBackup::NewestOf(schedule) => backup_core::RestoreSpec {
            schedule_name: Some(schedule.clone()),
            ..backup_core::RestoreSpec::default()
        },
    };
    let backup = match backup_velero::direct::resolve_restore_source(&repo, &lookup).await {
        Ok((backup, source)) => {
            if let Err(e) = source.ensure_readable(&repo) {
                return Ok(Err((
                    "BackupEncrypted",
                    format!(
                        "backup {backup} is encrypted and the controller holds no key for it: \
                         {e}; restore it with `backupctl restore create --identity-file`"
                    ),
                )));
            }
            backup.to_string()
        }
        Err(EngineError::NotFound { .. }) => {
            let what = match &spec.source_backup {
                SourceBackup::Named(name) => format!("no backup {name:?}"),
                SourceBackup::NewestOf(schedule) => {
                    format!("no completed run of ClusterBackup {schedule:?}")
                }
            };
            return Ok(Err((
                "BackupNotFound",
                format!(
                    "{what} of cluster {} in StorageLocation {}; `backupctl backup list \
                     --project {namespace} --cluster {}` lists the backups there",
                    spec.source_cluster, location.name, spec.source_cluster
                ),
            )));
        }
        Err(e) if e.is_retryable() => return Err(e.into()),
        Err(e) => {
            return Ok(Err((
                "BackupUnreadable",
                format!("the source backup cannot be read: {e}"),
            )));
        }
    };

    // A namespace mapped onto one that exists, under policy `none`, would restore nothing of
    // what already exists there and mix the rest in: refuse before touching anything.
    if !spec.template.dry_run
        && spec.template.existing_resource_policy == ExistingResourcePolicy::None
        && !spec.template.namespace_mapping.is_empty()
    {
        for cluster in &targets {
            if let Some(blocked) = mapped_namespace_exists(ctx, cluster, spec).await? {
                return Ok(Err(blocked));
            }
        }
    }

    let modifiers = match resource_modifiers(ctx, &namespace, &restore.spec).await? {
        Ok(modifiers) => modifiers,
        Err(blocked) => return Ok(Err(blocked)),
    };

    Ok(Ok(Resolved {
        location,
        repo,
        backup,
        targets,
        modifiers,
    }))
}

/// The resource-modifier document of the restore, from its ConfigMap or inline, checked.
async fn resource_modifiers(
    ctx: &Context,
    namespace: &str,
    spec: &backup_api::ClusterRestoreSpec,
) -> Result<std::result::Result<Option<ResourceModifiers>, Blocked>> {
    let Some(source) = &spec.resource_modifiers else {
        return Ok(Ok(None));
    };
    let invalid = |what: String, e: String| {
        Ok(Err((
            "InvalidResourceModifiers",
            format!("spec.resourceModifiers ({what}): {e}"),
        )))
    };
    let (what, text) = match (&source.config_map_ref, &source.rules) {
        (None, Some(rules)) => ("inline rules".to_string(), rules.clone()),
        (Some(reference), None) => {
            let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
            let what = format!("ConfigMap {}", reference.name);
            let map = match api.get_opt(&reference.name).await {
                Ok(Some(map)) => map,
                Ok(None) => {
                    return Ok(Err((
                        "ResourceModifiersNotFound",
                        format!(
                            "spec.resourceModifiers.configMapRef: no ConfigMap {:?} in namespace \
                             {namespace}",
                            reference.name
                        ),
                    )));
                }
                Err(e) => {
                    let error = Error::kube(format!("reading {what}"), e);
                    if error.is_retryable() {
                        return Err(error);
                    }
                    return invalid(what, error.to_string());
                }
            };
            let data = map.data.unwrap_or_default();
            if data.len() != 1 {
                return invalid(
                    what,
                    format!(
                        "it must hold exactly one key (the YAML document), it holds {}",
                        data.len()
                    ),
                );
            }
            let text = data.into_values().next().unwrap_or_default();
            (what, text)
        }
        _ => {
            return invalid(
                "spec".into(),
                "set exactly one of configMapRef and rules".into(),
            );
        }
    };
    let document: ResourceModifiers = match serde_yaml_ng::from_str(&text) {
        Ok(document) => document,
        Err(e) => return invalid(what, format!("not a resource-modifier document: {e}")),
    };
    if let Err(e) = document.compile() {
        return invalid(what, e.to_string());
    }
    Ok(Ok(Some(document)))
}

/// The first mapped-to namespace that already exists in `cluster`, as a problem to report.
async fn mapped_namespace_exists(
    ctx: &Context,
    cluster: &ManagedCluster,
    spec: &ValidClusterRestore,
) -> Result<Option<Blocked>> {
    let handle = match ctx.clusters.handle(cluster).await {
        Ok(handle) => handle,
        Err(problem) if problem.is_retryable() => return Err(problem.into()),
        Err(problem) => return Ok(Some((problem.reason(), problem.to_string()))),
    };
    let namespaces: Api<Namespace> = Api::all(handle.client.clone());
    for (from, to) in &spec.template.namespace_mapping {
        match namespaces.get_opt(to).await {
            Ok(None) => {}
            Ok(Some(_)) => {
                return Ok(Some((
                    "TargetNamespaceExists",
                    format!(
                        "namespace {to:?} (the mapping of {from:?}) already exists in cluster {}; \
                         with existingResourcePolicy none its objects would be left as they are: \
                         map to a new namespace, delete it first, or set \
                         existingResourcePolicy: update",
                        handle.name
                    ),
                )));
            }
            Err(e) => {
                let error = Error::kube(
                    format!("checking namespace {to} in cluster {}", handle.name),
                    e,
                );
                if error.is_retryable() {
                    return Err(error);
                }
                return Ok(Some(("ClusterUnreachable", error.to_string())));
            }
        }
    }
    Ok(None)
}

async fn cleanup(restore: Arc<ClusterRestore>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = restore.namespace().unwrap_or_default();
    ctx.runs.abort_restore(&key_of(&restore));
    let status = restore.status.clone().unwrap_or_default();
    let stored: Vec<&str> = status
        .clusters
        .iter()
        .filter(|c| !restore.spec.dry_run && c.phase != backup_core::Phase::New)
        .map(|c| c.restore_name.as_str())
        .collect();
    let (Some(location), false) = (status.storage_location.as_deref(), stored.is_empty()) else {
        return Ok(Action::await_change());
    };
    let resolved = match ctx
        .locations
        .resolve(&ctx.stores.locations, &namespace, Some(location))
        .await
    {
        Ok(resolved) => resolved,
        Err(problem) if problem.is_retryable() => return Err(problem.into()),
        Err(problem) => {
            // The location is gone or unusable: its files cannot be reached, and keeping the
            // object would only block its deletion.
            warn(
                &ctx,
                &restore,
                "ResultsLeft",
                format!(
                    "the restore results in StorageLocation {location} were not deleted: {problem}"
                ),
            )
            .await;
            return Ok(Action::await_change());
        }
    };
    let source = &restore.spec.source.cluster;
    let repo = resolved
        .repo
        .scoped_str(&namespace, source)
        .map_err(Error::Storage)?;
    let mut deleted = 0;
    for name in stored {
        match backup_velero::direct::delete_restore(&repo, name).await {
            Ok(n) => deleted += n,
            Err(EngineError::Forbidden(message)) => {
                warn(&ctx, &restore, "ResultsLeft", message).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    ctx.event(
        &restore.object_ref(&()),
        false,
        "ResultsDeleted",
        "Delete",
        format!("deleted {deleted} restore result file(s) from StorageLocation {location}"),
    )
    .await;
    Ok(Action::await_change())
}
