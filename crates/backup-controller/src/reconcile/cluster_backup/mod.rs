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

use self::plan::{Blocked, ClusterView, Firing, LocationFacts, PlanInput};
use super::{with_finalizer, write_status};
use crate::context::Context;
use crate::error::Result;
use crate::metrics::BackupLabels;
use crate::runs::RunKey;
use backup_api::{
    ClusterBackup, DeletePolicy, ManagedCluster, RUN_NOW_ANNOTATION, ValidClusterBackup,
};
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
pub(crate) fn clusters_of(ctx: &Context, namespace: &str) -> Vec<Arc<ManagedCluster>> {
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
    let spec = match backup.spec.validate() {
        Ok(spec) => spec,
        Err(field) => return refuse_invalid_spec(&ctx, &backup, field.to_string()).await,
    };
    let observed = observe(&ctx, &backup, &spec).await?;
    let decided = observed.plan(&ctx, &backup, &spec, ctx.clock.now()).await;
    let key = ObjectKey::of(&backup);
    match (&decided.fire, observed.location) {
        (Some(fire), Some(location)) => {
            let targets = targets(fire, &observed.selected);
            start_firing(&ctx, &backup, &spec, &decided, fire, targets, location).await?;
        }
        _ if decided.status == observed.previous => {}
        _ => {
            if decided.changes_only_progress(&observed.previous)
                && let Some(wait) = ctx.runs.hold_progress_write(&key.triple())
            {
                return Ok(Action::requeue(wait));
            }
            write_status(&ctx, backup.as_ref(), &decided.status).await?;
        }
    }
    record_last_success(&ctx, &key.namespace, &key.name, &decided.status);
    // Wake at the next firing; otherwise look at storage again after the resync period.
    let wait = decided
        .requeue_after
        .unwrap_or(ctx.settings.storage_resync)
        .min(ctx.settings.storage_resync);
    Ok(Action::requeue(wait.max(Duration::from_millis(1))))
}

/// A ClusterBackup's namespace, name and uid: how this process's run memory knows it.
struct ObjectKey {
    namespace: String,
    name: String,
    uid: String,
}

impl ObjectKey {
    fn of(backup: &ClusterBackup) -> Self {
        ObjectKey {
            namespace: backup.namespace().unwrap_or_default(),
            name: backup.name_any(),
            uid: backup.uid().unwrap_or_default(),
        }
    }

    fn triple(&self) -> (String, String, String) {
        (self.namespace.clone(), self.name.clone(), self.uid.clone())
    }
}

/// Writes the `InvalidSpec` status (and its event) when it differs from what is written.
async fn refuse_invalid_spec(
    ctx: &Context,
    backup: &ClusterBackup,
    problem: String,
) -> Result<Action> {
    let previous = backup.status.clone().unwrap_or_default();
    let generation = backup.metadata.generation;
    let status = plan::invalid_spec(&previous, problem.clone(), ctx.clock.now(), generation);
    if status != previous {
        ctx.event(
            &backup.object_ref(&()),
            true,
            "InvalidSpec",
            "Validate",
            problem,
        )
        .await;
        write_status(ctx, backup, &status).await?;
    }
    Ok(Action::await_change())
}

/// What a ClusterBackup reconcile reads before deciding (everything but storage, which
/// [`Observed::plan`] reads only when nothing fires).
struct Observed {
    previous: backup_api::ClusterBackupStatus,
    location: Option<ResolvedLocation>,
    location_facts: std::result::Result<LocationFacts, Blocked>,
    known_clusters: Vec<String>,
    selected: Vec<Arc<ManagedCluster>>,
    fired_here: Option<jiff::Timestamp>,
    run_now_served_here: Option<String>,
}

/// Reads the location, the namespace's clusters and this process's memory of the backup's
/// firings. A location problem worth retrying is an error; any other is a fact for the plan.
async fn observe(
    ctx: &Context,
    backup: &ClusterBackup,
    spec: &ValidClusterBackup,
) -> Result<Observed> {
    let key = ObjectKey::of(backup);
    let named = backup.spec.storage_location.as_deref();
    let resolved = ctx
        .locations
        .resolve(&ctx.stores.locations, &key.namespace, named)
        .await;
    let (location, location_facts) = match resolved {
        Ok(location) => {
            let facts = LocationFacts {
                name: location.name.clone(),
                writable: location.repo.is_writable(),
            };
            (Some(location), Ok(facts))
        }
        Err(problem) if problem.is_retryable() => return Err(problem.into()),
        Err(problem) => (None, Err(Blocked::from(&problem))),
    };
    let all = clusters_of(ctx, &key.namespace);
    let selected = all
        .iter()
        .filter(|c| spec.selection.selects(&c.name_any(), c.labels()))
        .cloned()
        .collect();
    Ok(Observed {
        previous: backup.status.clone().unwrap_or_default(),
        location,
        location_facts,
        known_clusters: all.iter().map(|c| c.name_any()).collect(),
        selected,
        fired_here: ctx.runs.last_fired(&key.namespace, &key.name, &key.uid),
        run_now_served_here: ctx.runs.run_now_served(&key.namespace, &key.name, &key.uid),
    })
}

impl Observed {
    /// Decides first from what is already known: whether a run is due never depends on
    /// storage, and a firing must not wait for hundreds of clusters to be listed (each run
    /// lists its cluster when it ends). Storage is read, and the plan made again, only when
    /// nothing fires.
    async fn plan(
        &self,
        ctx: &Context,
        backup: &ClusterBackup,
        spec: &ValidClusterBackup,
        now: jiff::Timestamp,
    ) -> plan::Plan {
        let name = backup.name_any();
        let namespace = backup.namespace().unwrap_or_default();
        let input = |clusters| PlanInput {
            name: &name,
            generation: backup.metadata.generation,
            created: backup
                .metadata
                .creation_timestamp
                .as_ref()
                .map_or(now, |t| t.0),
            now,
            spec,
            previous: &self.previous,
            fired_here: self.fired_here,
            location: self.location_facts.clone(),
            known_clusters: &self.known_clusters,
            clusters,
            run_now_annotation: backup
                .annotations()
                .get(RUN_NOW_ANNOTATION)
                .map(String::as_str),
            run_now_served_here: self.run_now_served_here.as_deref(),
        };
        let known = views(ctx, &namespace, &name, None, &self.selected).await;
        let decided = plan::plan(&input(known));
        if decided.fire.is_some() {
            return decided;
        }
        let listed = views(
            ctx,
            &namespace,
            &name,
            self.location.as_ref(),
            &self.selected,
        )
        .await;
        plan::plan(&input(listed))
    }
}

/// The ManagedClusters a firing runs on, with each one's run name.
fn targets(fire: &Firing, selected: &[Arc<ManagedCluster>]) -> Vec<(Arc<ManagedCluster>, String)> {
    fire.runs
        .iter()
        .filter_map(|(cluster, run)| {
            let object = selected.iter().find(|c| &c.name_any() == cluster)?;
            Some((object.clone(), run.clone()))
        })
        .collect()
}

/// Carries a firing out: registers its runs, writes the status announcing them (forgetting
/// them if that fails), remembers the firing, and starts the runs.
async fn start_firing(
    ctx: &Arc<Context>,
    backup: &ClusterBackup,
    spec: &ValidClusterBackup,
    decided: &plan::Plan,
    fire: &Firing,
    targets: Vec<(Arc<ManagedCluster>, String)>,
    location: ResolvedLocation,
) -> Result<()> {
    let key = ObjectKey::of(backup);
    let keys: Vec<(RunKey, String)> = fire
        .runs
        .iter()
        .map(|(cluster, run)| (run_key(&key.namespace, &key.name, cluster), run.clone()))
        .collect();
    // Registered before the status announcing them is written, started after it.
    ctx.runs.register(&keys, fire.at);
    if let Err(e) = write_status(ctx, backup, &decided.status).await {
        ctx.runs.unregister(&keys);
        return Err(e);
    }
    if fire.scheduled {
        ctx.runs
            .set_fired(&key.namespace, &key.name, &key.uid, fire.at);
    }
    if let Some(token) = &fire.run_now {
        ctx.runs
            .set_run_now_served(&key.namespace, &key.name, &key.uid, token);
    }
    let names: Vec<String> = targets.iter().map(|(c, _)| c.name_any()).collect();
    let message = fire.started_message(&names, spec.max_concurrent_clusters);
    ctx.event(
        &backup.object_ref(&()),
        false,
        "RunStarted",
        "Backup",
        message,
    )
    .await;
    execute::start(
        ctx.clone(),
        execute::FleetJob {
            backup: ObjectRef::from_obj(backup),
            reference: backup.object_ref(&()),
            namespace: key.namespace,
            name: key.name,
            targets,
            location,
            template: spec.template.clone(),
            retention: spec.retention,
            max_concurrent: spec.max_concurrent_clusters,
        },
    );
    Ok(())
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
