//! The reads a ClusterRestore makes before it starts: its targets, its location, its backup,
//! the namespaces it maps onto and its resource modifiers, in that order. Each read's answer
//! is judged by its rule in [`plan`]; the first problem stops the reads there, so nothing is
//! asked that the problem makes moot.

use std::sync::Arc;

use backup_core::EngineError;
use backup_core::resource_modifiers::ResourceModifiers;
use backup_storage::Repository;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::ResourceExt;
use kube::api::Api;

use super::plan::{
    self, BackupLookup, Blocked, ConfigMapRead, MappedNamespaces, ModifiersDocument, Source,
};
use crate::context::Context;
use crate::error::{Error, Result};
use backup_api::cluster_restore::ValidClusterRestore;
use backup_api::{ClusterRestore, ClusterRestoreSpec, EngineChoice, EngineKind, ManagedCluster};
use backup_kube::locations::ResolvedLocation;

/// What a restore reads and where it goes.
pub struct Resolved {
    /// The location's name, the backup and the resource modifiers.
    pub source: Source,
    /// The location scoped to the source cluster.
    pub repo: Repository,
    /// The target ManagedClusters, in spec order.
    pub targets: Vec<Arc<ManagedCluster>>,
}

/// Why the reads stopped.
enum Stop {
    /// A problem the user must fix.
    Blocked(Blocked),
    /// One that retrying can fix (storage or an API briefly unreachable).
    Error(Error),
}

impl From<Blocked> for Stop {
    fn from(blocked: Blocked) -> Self {
        Stop::Blocked(blocked)
    }
}

impl From<Error> for Stop {
    fn from(error: Error) -> Self {
        Stop::Error(error)
    }
}

/// Resolves the targets, the location, the backup and the resource modifiers. `Ok(Err(..))`
/// is a problem the user must fix; `Err` is one that retrying can fix.
pub async fn resolve(
    ctx: &Context,
    restore: &ClusterRestore,
    spec: &ValidClusterRestore,
) -> Result<std::result::Result<Resolved, Blocked>> {
    match resolved(ctx, restore, spec).await {
        Ok(resolved) => Ok(Ok(resolved)),
        Err(Stop::Blocked(blocked)) => Ok(Err(blocked)),
        Err(Stop::Error(error)) => Err(error),
    }
}

/// [`resolve`], with both kinds of stop carried by `?`.
async fn resolved(
    ctx: &Context,
    restore: &ClusterRestore,
    spec: &ValidClusterRestore,
) -> Result<Resolved, Stop> {
    let namespace = restore.namespace().unwrap_or_default();
    // Targets first: they need no storage access.
    let (targets, missing) = targets(ctx, &namespace, spec);
    plan::targets_found(spec, &namespace, &missing)?;
    let location = location(ctx, &namespace, spec).await?;
    let repo = location
        .repo
        .scoped_str(&namespace, &spec.source_cluster)
        .map_err(plan::unscoped)?;
    let found = backup(&repo, spec).await?;
    let backup = plan::backup_to_restore(spec, &namespace, &location.name, found)?;
    let volumes = volumes(&repo, &backup, spec).await?;
    let engines: Vec<(String, bool)> = targets
        .iter()
        .map(|c| (c.name_any(), runs_velero(c)))
        .collect();
    let through_velero =
        plan::volume_data_route(&backup, &volumes, &spec.source_cluster, &engines)?;
    if plan::refuses_existing_namespaces(spec) {
        for cluster in &targets {
            let answer = mapped_namespaces(ctx, cluster, spec).await?;
            plan::mapped_namespaces_free(&cluster.name_any(), answer)?;
        }
    }
    let modifiers = modifiers(ctx, &namespace, &restore.spec).await?;
    Ok(Resolved {
        source: Source {
            location: location.name,
            backup,
            modifiers,
            through_velero,
        },
        repo,
        targets,
    })
}

/// The spec's targets that are ManagedClusters of `namespace`, and the names of those that
/// are not, each in spec order.
fn targets(
    ctx: &Context,
    namespace: &str,
    spec: &ValidClusterRestore,
) -> (Vec<Arc<ManagedCluster>>, Vec<String>) {
    let clusters = ctx.stores.clusters.state();
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for name in &spec.targets {
        match clusters
            .iter()
            .find(|c| c.namespace().as_deref() == Some(namespace) && c.name_any() == *name)
        {
            Some(cluster) => found.push(cluster.clone()),
            None => missing.push(name.clone()),
        }
    }
    (found, missing)
}

/// The location [`plan::wanted_location`] names.
async fn location(
    ctx: &Context,
    namespace: &str,
    spec: &ValidClusterRestore,
) -> Result<ResolvedLocation, Stop> {
    let of_backup = plan::cluster_backup(spec).and_then(|backup| {
        ctx.stores
            .backups
            .state()
            .into_iter()
            .find(|b| b.namespace().as_deref() == Some(namespace) && b.name_any() == backup)
            .and_then(|b| b.spec.storage_location.clone())
    });
    let wanted = plan::wanted_location(spec, of_backup);
    match ctx
        .locations
        .resolve(&ctx.stores.locations, namespace, wanted.as_deref())
        .await
    {
        Ok(location) => Ok(location),
        Err(problem) if problem.is_retryable() => Err(Error::from(problem).into()),
        Err(problem) => Err(Blocked::from(&problem).into()),
    }
}

/// What storage answers to [`plan::lookup`].
async fn backup(repo: &Repository, spec: &ValidClusterRestore) -> Result<BackupLookup, Stop> {
    match backup_velero::direct::resolve_restore_source(repo, &plan::lookup(spec)).await {
        Ok((backup, source)) => Ok(BackupLookup::Found {
            backup: backup.to_string(),
            unreadable: source.ensure_readable(repo).err().map(|e| e.to_string()),
        }),
        Err(EngineError::NotFound { .. }) => Ok(BackupLookup::NotFound),
        Err(e) if e.is_retryable() => Err(Error::from(e).into()),
        Err(e) => Ok(BackupLookup::Failed(e.to_string())),
    }
}

/// Whether `cluster` backs up through Velero: engine `velero`, or `auto` when its status says
/// Velero answered.
fn runs_velero(cluster: &ManagedCluster) -> bool {
    match cluster.spec.engine {
        EngineChoice::Velero => true,
        EngineChoice::Auto => {
            cluster.status.as_ref().and_then(|s| s.engine) == Some(EngineKind::Velero)
        }
        EngineChoice::Direct => false,
    }
}

/// The volume data `backup` holds among what the restore restores (see
/// [`backup_velero::direct::volumes`]).
async fn volumes(
    repo: &Repository,
    backup: &str,
    spec: &ValidClusterRestore,
) -> Result<Vec<backup_velero::direct::volumes::Volume>, Stop> {
    let name = backup_storage::BackupName::new(backup)
        .map_err(|e| Blocked::new("BackupNotFound", e.to_string()))?;
    let filter = &spec.template.options.filter;
    match backup_velero::direct::volumes::volume_data(repo, &name, filter).await {
        Ok(volumes) => Ok(volumes),
        Err(e) if e.is_retryable() => Err(Error::from(e).into()),
        Err(e) => Err(Blocked::new("VolumeDataUnknown", e.to_string()).into()),
    }
}

/// What `cluster` holds of the namespaces the restore maps onto, up to the first that exists.
async fn mapped_namespaces(
    ctx: &Context,
    cluster: &ManagedCluster,
    spec: &ValidClusterRestore,
) -> Result<MappedNamespaces, Stop> {
    let handle = match ctx.clusters.handle(cluster).await {
        Ok(handle) => handle,
        Err(problem) if problem.is_retryable() => return Err(Error::from(problem).into()),
        Err(problem) => {
            let why = Blocked::new(problem.reason(), problem.to_string());
            return Ok(MappedNamespaces::Unusable(why));
        }
    };
    let namespaces: Api<Namespace> = Api::all(handle.client.clone());
    for (from, to) in &spec.template.options.namespace_mapping {
        match namespaces.get_opt(to).await {
            Ok(None) => {}
            Ok(Some(_)) => {
                return Ok(MappedNamespaces::Exists {
                    from: from.clone(),
                    to: to.clone(),
                });
            }
            Err(e) => {
                let action = format!("checking namespace {to} in cluster {}", handle.name);
                let error = Error::kube(action, e);
                if error.is_retryable() {
                    return Err(error.into());
                }
                return Ok(MappedNamespaces::Unreachable(error.to_string()));
            }
        }
    }
    Ok(MappedNamespaces::Free)
}

/// The resource-modifier document of the restore, from its ConfigMap or inline, checked.
async fn modifiers(
    ctx: &Context,
    namespace: &str,
    spec: &ClusterRestoreSpec,
) -> Result<Option<ResourceModifiers>, Stop> {
    let Some(document) = plan::modifiers_document(spec.resource_modifiers.as_ref())? else {
        return Ok(None);
    };
    let text = match document {
        ModifiersDocument::Inline(rules) => rules.to_string(),
        ModifiersDocument::ConfigMap(name) => {
            let read = config_map(ctx, namespace, name).await?;
            plan::config_map_document(name, namespace, read)?
        }
    };
    Ok(Some(plan::checked_modifiers(&document, &text)?))
}

/// ConfigMap `name` of `namespace`.
async fn config_map(ctx: &Context, namespace: &str, name: &str) -> Result<ConfigMapRead, Stop> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
    match api.get_opt(name).await {
        Ok(Some(map)) => Ok(ConfigMapRead::Found(map.data.unwrap_or_default())),
        Ok(None) => Ok(ConfigMapRead::NotFound),
        Err(e) => {
            let error = Error::kube(format!("reading ConfigMap {name}"), e);
            if error.is_retryable() {
                return Err(error.into());
            }
            Ok(ConfigMapRead::Failed(error.to_string()))
        }
    }
}
