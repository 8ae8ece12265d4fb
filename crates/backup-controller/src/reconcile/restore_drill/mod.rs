//! RestoreDrill: prove each selected cluster's newest Completed backup restorable. A reconcile
//! validates, reads what the drill needs (its ClusterBackup's runs and location, the clusters,
//! the target), decides with [`plan::plan`], cleans up after drills a crash cut short, and
//! starts the due drills as one task ([`execute`]), which owns the status until it ends.

pub mod execute;
pub mod plan;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use self::execute::{Drill, DrillJob, delete_scratch};
use self::plan::{PlanInput, cleans_up};
use super::{Blocked, with_finalizer, write_status};
use crate::context::Context;
use crate::error::Result;
use crate::runs::ObjectKey;
use backup_api::restore_drill::{DRILL_LABEL, DrillCleanup, ValidRestoreDrill, ValidTarget};
use backup_api::{ClusterBackup, ManagedCluster, RUN_NOW_ANNOTATION, RestoreDrill};
use backup_kube::locations::ResolvedLocation;

/// The controller's name in metrics.
pub const CONTROLLER: &str = "restoredrill";
/// How often a drill whose task runs looks again (to take over when the task ends).
const WHILE_RUNNING: Duration = Duration::from_secs(2);
/// How soon a drill that waits for a backup, or is blocked, looks again.
const RECHECK: Duration = Duration::from_secs(30);

/// Reconciles one RestoreDrill.
#[tracing::instrument(name = "reconcile", skip_all, fields(kind = "RestoreDrill", namespace = %drill.metadata.namespace.as_deref().unwrap_or_default(), name = %drill.metadata.name.as_deref().unwrap_or_default()))]
pub async fn reconcile(drill: Arc<RestoreDrill>, ctx: Arc<Context>) -> Result<Action> {
    ctx.stores.listed().await;
    with_finalizer(CONTROLLER, drill, ctx, apply, cleanup).await
}

fn key_of(drill: &RestoreDrill) -> ObjectKey {
    (
        drill.namespace().unwrap_or_default(),
        drill.name_any(),
        drill.uid().unwrap_or_default(),
    )
}

async fn apply(drill: Arc<RestoreDrill>, ctx: Arc<Context>) -> Result<Action> {
    let key = key_of(&drill);
    let previous = drill.status.clone().unwrap_or_default();
    let now = ctx.clock.now();
    let spec = match drill.spec.validate() {
        Ok(spec) => spec,
        Err(field) => {
            let generation = drill.metadata.generation;
            let status = plan::invalid_spec(&previous, field.to_string(), now, generation);
            if status != previous {
                write_status(&ctx, drill.as_ref(), &status).await?;
            }
            return Ok(Action::await_change());
        }
    };
    if ctx.runs.restore_running(&key) {
        // Its task owns the status until it ends. Its last write may wake this object before
        // the task lets go of it, so look again shortly rather than wait for a change.
        return Ok(Action::requeue(WHILE_RUNNING));
    }
    let observed = observe(&ctx, &key.0, &spec).await?;
    let selected: BTreeSet<String> = observed.selected.iter().map(|c| c.name_any()).collect();
    let decided = decide(&drill, &spec, &observed, &selected, now);
    for interrupted in &decided.interrupted {
        if cleans_up(spec.cleanup, interrupted.phase) {
            clean_up_after(&ctx, &key, &interrupted.target_cluster).await;
        }
    }
    let next = match decided.wait(RECHECK) {
        Some(wait) => Action::requeue(wait),
        None => Action::await_change(),
    };
    let (Ok(location), false) = (observed.facts, decided.start.is_empty()) else {
        if decided.status != previous {
            write_status(&ctx, drill.as_ref(), &decided.status).await?;
        }
        return Ok(next);
    };
    let job = DrillJob {
        drills: drills_of(&observed.selected, &observed.targets, &spec, &decided.start),
        key,
        object: drill.clone(),
        spec,
        location,
        selected,
        status: decided.status,
    };
    launch(&ctx, job).await?;
    Ok(next)
}

/// The plan for `drill` from what was observed.
fn decide(
    drill: &RestoreDrill,
    spec: &ValidRestoreDrill,
    observed: &Observed,
    selected: &BTreeSet<String>,
    now: jiff::Timestamp,
) -> plan::Plan {
    plan::plan(&PlanInput {
        name: &drill.name_any(),
        generation: drill.metadata.generation,
        now,
        created: drill
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(now, |t| t.0),
        spec,
        previous: &drill.status.clone().unwrap_or_default(),
        blocked: observed.facts.as_ref().err().cloned(),
        selected,
        newest_completed: &observed.newest_completed,
        running_here: false,
        run_now: drill
            .annotations()
            .get(RUN_NOW_ANNOTATION)
            .map(String::as_str),
    })
}

/// Claims the drill, writes the status announcing `job`'s drills (releasing the claim when
/// that fails), says so in an Event and starts them. Another reconcile holding the claim
/// already started them: nothing to do.
async fn launch(ctx: &Arc<Context>, job: DrillJob) -> Result<()> {
    if !ctx.runs.claim_restore(&job.key) {
        return Ok(());
    }
    if let Err(e) = write_status(ctx, job.object.as_ref(), &job.status).await {
        ctx.runs.end_restore(&job.key);
        return Err(e);
    }
    let names: Vec<String> = job.drills.iter().map(|d| d.cluster.name_any()).collect();
    let message = format!(
        "drilling {} cluster(s), one at a time: {}",
        names.len(),
        names.join(", ")
    );
    ctx.event(
        &job.object.object_ref(&()),
        false,
        "DrillStarted",
        "Drill",
        message,
    )
    .await;
    execute::start(ctx.clone(), job);
    Ok(())
}

/// What a drill reads before deciding.
struct Observed {
    /// The selected ManagedClusters.
    selected: Vec<Arc<ManagedCluster>>,
    /// The clusters drills restore into, by name (the dedicated one, or the selected ones).
    targets: BTreeMap<String, Arc<ManagedCluster>>,
    /// Each cluster's newest Completed run of the ClusterBackup.
    newest_completed: BTreeMap<String, String>,
    /// The ClusterBackup's location, or why drills cannot start.
    facts: std::result::Result<ResolvedLocation, Blocked>,
}

async fn observe(ctx: &Context, namespace: &str, spec: &ValidRestoreDrill) -> Result<Observed> {
    let clusters = super::cluster_backup::clusters_of(ctx, namespace);
    let selected: Vec<Arc<ManagedCluster>> = clusters
        .iter()
        .filter(|c| spec.selection.selects(&c.name_any(), c.labels()))
        .cloned()
        .collect();
    let targets: BTreeMap<String, Arc<ManagedCluster>> = match &spec.target {
        ValidTarget::Cluster(name) => clusters
            .iter()
            .filter(|c| &c.name_any() == name)
            .map(|c| (c.name_any(), c.clone()))
            .collect(),
        ValidTarget::SameCluster { .. } => {
            selected.iter().map(|c| (c.name_any(), c.clone())).collect()
        }
    };
    let backup = ctx.stores.backups.state().into_iter().find(|b| {
        b.namespace().as_deref() == Some(namespace) && b.name_any() == spec.cluster_backup
    });
    let newest_completed = backup
        .as_deref()
        .map(newest_completed_runs)
        .unwrap_or_default();
    let facts = match (&backup, &spec.target) {
        (None, _) => Err(Blocked::new(
            "ClusterBackupNotFound",
            format!(
                "ClusterBackup {} does not exist in namespace {namespace}: create it, or fix \
                 spec.clusterBackup",
                spec.cluster_backup
            ),
        )),
        (Some(_), ValidTarget::Cluster(name)) if targets.is_empty() => Err(Blocked::new(
            "TargetNotFound",
            format!(
                "spec.target.cluster {name} is no ManagedCluster of namespace {namespace}: \
                 register the cluster kept for drills, or fix the name"
            ),
        )),
        (Some(backup), _) => {
            let named = backup.spec.storage_location.as_deref();
            match ctx
                .locations
                .resolve(&ctx.stores.locations, namespace, named)
                .await
            {
                Ok(location) => Ok(location),
                Err(problem) if problem.is_retryable() => return Err(problem.into()),
                Err(problem) => Err(Blocked::from(&problem)),
            }
        }
    };
    Ok(Observed {
        selected,
        targets,
        newest_completed,
        facts,
    })
}

/// Each cluster's newest Completed run of `backup`, as its status reports it.
fn newest_completed_runs(backup: &ClusterBackup) -> BTreeMap<String, String> {
    backup
        .status
        .iter()
        .flat_map(|s| &s.clusters)
        .filter_map(|c| Some((c.cluster.clone(), c.last_successful_backup.clone()?)))
        .collect()
}

/// The drills `start` names, with their clusters.
fn drills_of(
    selected: &[Arc<ManagedCluster>],
    targets: &BTreeMap<String, Arc<ManagedCluster>>,
    spec: &ValidRestoreDrill,
    start: &[(String, backup_api::restore_drill::DrillResult)],
) -> Vec<Drill> {
    start
        .iter()
        .filter_map(|(cluster, announced)| {
            let object = selected.iter().find(|c| &c.name_any() == cluster)?;
            let target = match &spec.target {
                ValidTarget::Cluster(name) => targets.get(name)?,
                ValidTarget::SameCluster { .. } => object,
            };
            Some(Drill {
                cluster: object.clone(),
                target: target.clone(),
                announced: announced.clone(),
            })
        })
        .collect()
}

/// Deletes the scratch namespaces of this drill in `target` (without waiting for them to go:
/// no drill follows here).
async fn clean_up_after(ctx: &Context, key: &ObjectKey, target: &str) {
    let Some(cluster) = ctx
        .stores
        .clusters
        .state()
        .into_iter()
        .find(|c| c.namespace().as_deref() == Some(key.0.as_str()) && c.name_any() == target)
    else {
        return;
    };
    let label = (DRILL_LABEL.to_string(), key.2.clone());
    let result = match ctx.clusters.handle(&cluster).await {
        Ok(handle) => delete_scratch(&handle.client, &label, false).await,
        Err(problem) => Err(problem.to_string()),
    };
    if let Err(problem) = result {
        tracing::warn!(cluster = target, %problem, "cleaning up a drill's scratch namespaces failed");
    }
}

/// The RestoreDrill is being deleted: its drills stop, and their scratch namespaces go unless
/// the policy is `Never` (`OnSuccess` kept a failed drill's for a look, which ends with it).
async fn cleanup(drill: Arc<RestoreDrill>, ctx: Arc<Context>) -> Result<Action> {
    let key = key_of(&drill);
    ctx.runs.abort_restore(&key);
    if let Ok(spec) = drill.spec.validate()
        && spec.cleanup != DrillCleanup::Never
    {
        let targets: BTreeSet<String> = drill
            .status
            .iter()
            .flat_map(|s| &s.clusters)
            .filter_map(|c| c.last_drill.as_ref())
            .map(|d| d.target_cluster.clone())
            .collect();
        for target in targets {
            clean_up_after(&ctx, &key, &target).await;
        }
    }
    Ok(Action::await_change())
}
