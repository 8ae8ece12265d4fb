//! ClusterBackup: gather what [`plan::plan`] needs (spec, location, selected clusters, their
//! stored runs, the runs in flight), write the status it decides, and start the runs it fires
//! after that write (see [`execute`]).

mod engines;
pub mod execute;
pub mod plan;

use std::sync::Arc;
use std::time::Duration;

use backup_core::StoredBackup;
use futures::StreamExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use self::plan::{Blocked, ClusterView, PlanInput, READY};
use super::{with_finalizer, write_status};
use crate::context::Context;
use crate::error::Result;
use crate::metrics::BackupLabels;
use crate::runs::RunKey;
use backup_api::status::{Condition, merge_conditions};
use backup_api::{ClusterBackup, DeletePolicy, ManagedCluster, Selection};
use backup_api::{FleetPhase, RUN_NOW_ANNOTATION};
use backup_kube::locations::ResolvedLocation;

/// The controller's name in metrics.
pub const CONTROLLER: &str = "clusterbackup";

/// Clusters whose stored runs are listed at once.
const LIST_CONCURRENCY: usize = 16;

/// Reconciles one ClusterBackup.
#[tracing::instrument(name = "reconcile", skip_all, fields(kind = "ClusterBackup", namespace = %backup.metadata.namespace.as_deref().unwrap_or_default(), name = %backup.metadata.name.as_deref().unwrap_or_default()))]
pub async fn reconcile(backup: Arc<ClusterBackup>, ctx: Arc<Context>) -> Result<Action> {
    // Decide on complete information: at start-up a ClusterBackup can be reconciled before the
    // locations and clusters of its namespace were listed once, and would find none.
    ctx.stores.listed().await;
    with_finalizer(CONTROLLER, backup, ctx, apply, cleanup).await
}

/// The ManagedClusters of `namespace`, sorted by name.
fn clusters_of(ctx: &Context, namespace: &str) -> Vec<Arc<ManagedCluster>> {
    let mut all: Vec<Arc<ManagedCluster>> = ctx
        .stores
        .clusters
        .state()
        .into_iter()
        .filter(|c| c.namespace().as_deref() == Some(namespace))
        .collect();
    all.sort_by_key(|c| c.name_any());
    all
}

async fn apply(backup: Arc<ClusterBackup>, ctx: Arc<Context>) -> Result<Action> {
    let now = ctx.clock.now();
    let namespace = backup.namespace().unwrap_or_default();
    let name = backup.name_any();
    let uid = backup.uid().unwrap_or_default();
    let previous = backup.status.clone().unwrap_or_default();
    let generation = backup.metadata.generation;

    let spec = match backup.spec.validate() {
        Ok(spec) => spec,
        Err(field) => {
            let invalid =
                Condition::unmet(READY, "InvalidSpec", field.to_string()).at(now, generation);
            let mut status = previous.clone();
            status.observed_generation = generation;
            status.next_schedule_time = None;
            status.conditions = merge_conditions(&previous.conditions, vec![invalid]);
            if status != previous {
                ctx.event(
                    &backup.object_ref(&()),
                    true,
                    "InvalidSpec",
                    "Validate",
                    field.to_string(),
                )
                .await;
                write_status(&ctx, backup.as_ref(), &status).await?;
            }
            return Ok(Action::await_change());
        }
    };

    let (location, mut blocked) = match ctx
        .locations
        .resolve(
            &ctx.stores.locations,
            &namespace,
            spec.storage_location.as_deref(),
        )
        .await
    {
        Ok(location) => (Some(location), None),
        Err(problem) if problem.is_retryable() => return Err(problem.into()),
        Err(problem) => (
            None,
            Some(Blocked {
                reason: problem.reason().into(),
                message: problem.to_string(),
            }),
        ),
    };
    if let Some(l) = &location
        && !l.repo.is_writable()
    {
        blocked = Some(Blocked {
            reason: "LocationReadOnly".into(),
            message: format!(
                "StorageLocation {:?} is ReadOnly: backups cannot be written to it; use a \
                 ReadWrite location",
                l.name
            ),
        });
    }

    let all = clusters_of(&ctx, &namespace);
    let selected: Vec<Arc<ManagedCluster>> = all
        .iter()
        .filter(|c| spec.selection.selects(&c.name_any(), c.labels()))
        .cloned()
        .collect();
    let missing = match &spec.selection {
        Selection::Names(names) => names
            .iter()
            .filter(|n| !all.iter().any(|c| &c.name_any() == *n))
            .cloned()
            .collect(),
        _ => Vec::new(),
    };

    let last_fired = match (
        previous.last_schedule_time,
        ctx.runs.last_fired(&namespace, &name, &uid),
    ) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let created = backup
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or(now, |t| t.0);
    // A run-now token not served yet (by an earlier status, or by this process meanwhile).
    let served = ctx.runs.run_now_served(&namespace, &name, &uid);
    let run_now = backup
        .annotations()
        .get(RUN_NOW_ANNOTATION)
        .map(String::as_str)
        .filter(|token| {
            !token.is_empty()
                && previous.last_run_now_token.as_deref() != Some(*token)
                && served.as_deref() != Some(*token)
        });
    let input = |clusters| PlanInput {
        name: &name,
        generation,
        created,
        now,
        spec: &spec,
        previous: &previous,
        last_fired,
        blocked: blocked.clone(),
        missing: missing.clone(),
        clusters,
        run_now,
    };
    // Decide first from what is already known: whether a run is due never depends on
    // storage, and a firing must not wait for hundreds of clusters to be listed (each run
    // lists its cluster when it ends). Storage is read when nothing fires.
    let known = views(&ctx, &namespace, &name, None, &selected).await;
    let mut decided = plan::plan(&input(known));
    if decided.fire.is_none() {
        let listed = views(&ctx, &namespace, &name, location.as_ref(), &selected).await;
        decided = plan::plan(&input(listed));
    }

    match (&decided.fire, location) {
        (Some(fire), Some(location)) => {
            let keys: Vec<(RunKey, String)> = fire
                .runs
                .iter()
                .map(|(cluster, run)| (run_key(&namespace, &name, cluster), run.clone()))
                .collect();
            // Registered before the status announcing them is written, started after it.
            ctx.runs.register(&keys, fire.at);
            if let Err(e) = write_status(&ctx, backup.as_ref(), &decided.status).await {
                ctx.runs.unregister(&keys);
                return Err(e);
            }
            if fire.scheduled {
                ctx.runs.set_fired(&namespace, &name, &uid, fire.at);
            }
            if let Some(token) = &fire.run_now {
                ctx.runs.set_run_now_served(&namespace, &name, &uid, token);
            }
            let targets = fire
                .runs
                .iter()
                .filter_map(|(cluster, run)| {
                    let object = selected.iter().find(|c| &c.name_any() == cluster)?;
                    Some((object.clone(), run.clone()))
                })
                .collect::<Vec<_>>();
            ctx.event(
                &backup.object_ref(&()),
                false,
                "RunStarted",
                "Backup",
                format!(
                    "backing up {} cluster(s) for {} ({} at a time): {}",
                    targets.len(),
                    match &fire.run_now {
                        Some(token) if !fire.scheduled => format!("run-now {token:?}"),
                        _ => format!("the run of {}", fire.at),
                    },
                    spec.max_concurrent_clusters,
                    targets
                        .iter()
                        .map(|(c, _)| c.name_any())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
            .await;
            execute::start(
                ctx.clone(),
                execute::FleetJob {
                    backup: ObjectRef::from_obj(backup.as_ref()),
                    reference: backup.object_ref(&()),
                    namespace: namespace.clone(),
                    name: name.clone(),
                    targets,
                    location,
                    template: spec.template.clone(),
                    retention: spec.retention,
                    max_concurrent: spec.max_concurrent_clusters,
                },
            );
        }
        _ => {
            if decided.status != previous {
                let progress_only = previous.phase == Some(FleetPhase::InProgress)
                    && decided.status.phase == Some(FleetPhase::InProgress);
                if progress_only
                    && let Some(wait) = ctx.runs.hold_progress_write(&(
                        namespace.clone(),
                        name.clone(),
                        uid.clone(),
                    ))
                {
                    return Ok(Action::requeue(wait));
                }
                write_status(&ctx, backup.as_ref(), &decided.status).await?;
            }
        }
    }
    record_last_success(&ctx, &namespace, &name, &decided.status);

    // Wake at the next firing; otherwise look at storage again after the resync period.
    let wait = decided
        .requeue_after
        .unwrap_or(ctx.settings.storage_resync)
        .min(ctx.settings.storage_resync);
    Ok(Action::requeue(wait.max(Duration::from_millis(1))))
}

fn run_key(namespace: &str, backup: &str, cluster: &str) -> RunKey {
    RunKey {
        namespace: namespace.into(),
        backup: backup.into(),
        cluster: cluster.into(),
    }
}

/// Each selected cluster's stored runs and its live run. With a `location`, a cluster whose
/// listing is missing or older than the resync period is listed again; without, what is
/// cached is used as is (or "not listed yet").
async fn views(
    ctx: &Context,
    namespace: &str,
    backup: &str,
    location: Option<&ResolvedLocation>,
    selected: &[Arc<ManagedCluster>],
) -> Vec<ClusterView> {
    futures::stream::iter(selected.iter().cloned())
        .map(|cluster| async move {
            let key = run_key(namespace, backup, &cluster.name_any());
            let cached = ctx
                .runs
                .listing(&key)
                .filter(|l| l.at.elapsed() < ctx.settings.storage_resync);
            let stored = match (cached, location) {
                (Some(listing), _) => listing.runs,
                (None, Some(location)) => {
                    let started = tokio::time::Instant::now();
                    let runs = engines::list_stored(ctx, location, &cluster, backup).await;
                    ctx.runs.set_listing(key.clone(), runs, started).runs
                }
                (None, None) => Err("not listed yet".to_string()),
            };
            ClusterView {
                name: cluster.name_any(),
                stored,
                live: ctx.runs.live(&key),
            }
        })
        .buffered(LIST_CONCURRENCY)
        .collect()
        .await
}

/// Exports the start time of each cluster's newest completed run.
fn record_last_success(
    ctx: &Context,
    namespace: &str,
    backup: &str,
    status: &backup_api::ClusterBackupStatus,
) {
    for cluster in &status.clusters {
        let key = run_key(namespace, backup, &cluster.cluster);
        let newest = ctx.runs.listing(&key).and_then(|l| {
            l.runs
                .ok()?
                .iter()
                .rev()
                .find(|b| b.phase.is_successful())
                .and_then(StoredBackup::taken_at)
        });
        if let Some(at) = newest {
            ctx.metrics.last_successful_backup(
                BackupLabels {
                    namespace: namespace.into(),
                    clusterbackup: backup.into(),
                    cluster: cluster.cluster.clone(),
                },
                at,
            );
        }
    }
}

async fn cleanup(backup: Arc<ClusterBackup>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = backup.namespace().unwrap_or_default();
    let name = backup.name_any();
    ctx.runs.abort(&namespace, &name);
    let status = backup.status.clone().unwrap_or_default();
    if backup.spec.delete_policy == DeletePolicy::Delete {
        let location = ctx
            .locations
            .resolve(
                &ctx.stores.locations,
                &namespace,
                backup.spec.storage_location.as_deref(),
            )
            .await?;
        let mut deleted = 0;
        for cluster in clusters_of(&ctx, &namespace)
            .into_iter()
            .filter(|c| status.clusters.iter().any(|s| s.cluster == c.name_any()))
        {
            deleted += engines::delete_all(&ctx, &location, &cluster, &name).await?;
        }
        ctx.event(
            &backup.object_ref(&()),
            false,
            "RunsDeleted",
            "Delete",
            format!("deletePolicy Delete: deleted {deleted} stored run(s)"),
        )
        .await;
    }
    for cluster in &status.clusters {
        ctx.metrics.forget_backup(&BackupLabels {
            namespace: namespace.clone(),
            clusterbackup: name.clone(),
            cluster: cluster.cluster.clone(),
        });
    }
    ctx.runs.forget(&namespace, &name);
    Ok(Action::await_change())
}
