//! Running a started ClusterRestore: one direct-engine restore per target cluster, all at
//! once, with the object's status following their progress (written at most once a second,
//! and once more at the end) and an Event per finished cluster.
//!
//! The reconcile claims the restore in [`Runs`](crate::runs::Runs) before it writes the
//! status announcing it, and releases the claim once its cache shows the final status this
//! task wrote: while claimed, reconciles leave the status to this task; after a crash, the
//! next leader finds the restore unfinished and unclaimed, and marks it interrupted.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use backup_core::{Phase, RestoreEngine, RestoreSpec, RestoreStatus};
use backup_storage::Repository;
use backup_velero::direct::{Action, DirectEngine, RestoreReport};
use kube::{Resource, ResourceExt};

use super::super::{AbortOnDrop, write_status};
use crate::context::Context;
use crate::runs::ObjectKey;
use backup_api::cluster_restore::{
    ClusterRestoreResult, ClusterRestoreStatus, PLAN_ITEMS_SHOWN, PlannedItem, RestorePlan,
    aggregate_phase,
};
use backup_api::{ClusterRestore, FleetPhase, ManagedCluster};

/// The smallest gap between two progress writes of the status.
const WRITE_INTERVAL: Duration = Duration::from_secs(1);
/// Attempts at the final status write before the outcome is left to the Events and logs.
const FINAL_WRITE_ATTEMPTS: u32 = 6;
/// Item errors quoted in a cluster's message.
const ERRORS_QUOTED: usize = 3;

/// A restore to run.
pub struct RestoreJob {
    /// Its claim.
    pub key: ObjectKey,
    /// The ClusterRestore.
    pub object: Arc<ClusterRestore>,
    /// What every target restores (source resolved).
    pub spec: RestoreSpec,
    /// The location, scoped to the source cluster.
    pub repo: Repository,
    /// The location's name (recorded in the restore).
    pub location: String,
    /// Whether each target's Velero restores (the backup holds volume data; the targets are
    /// its source, whose Velero took it), instead of the direct engine.
    pub through_velero: bool,
    /// The targets.
    pub targets: Vec<Arc<ManagedCluster>>,
    /// The status announcing it (every target `New`).
    pub status: ClusterRestoreStatus,
}

/// The status shared by the targets' tasks and the writer.
#[derive(Clone)]
struct Shared {
    status: Arc<Mutex<ClusterRestoreStatus>>,
    changed: Arc<tokio::sync::Notify>,
}

impl Shared {
    fn update(&self, cluster: &str, f: impl FnOnce(&mut ClusterRestoreResult)) {
        {
            let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(entry) = status.clusters.iter_mut().find(|c| c.cluster == cluster) {
                f(entry);
            }
            status.phase = aggregate_phase(&status.clusters);
        }
        self.changed.notify_one();
    }

    fn get(&self) -> ClusterRestoreStatus {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Starts `job` in the background.
pub fn start(ctx: Arc<Context>, job: RestoreJob) {
    let key = job.key.clone();
    let task = tokio::spawn(tracing::Instrument::in_current_span(run(ctx.clone(), job)));
    ctx.runs.track_restore(&key, &task);
}

async fn run(ctx: Arc<Context>, job: RestoreJob) {
    let shared = Shared {
        status: Arc::new(Mutex::new(job.status.clone())),
        changed: Arc::default(),
    };
    let work = futures::future::join_all(
        job.targets
            .iter()
            .map(|cluster| restore_one(&ctx, &job, cluster, &shared)),
    );
    let progress = async {
        loop {
            shared.changed.notified().await;
            tokio::time::sleep(WRITE_INTERVAL).await;
            if let Err(e) = write_status(&ctx, job.object.as_ref(), &shared.get()).await {
                tracing::warn!(error = %e, "writing a restore's progress failed; retrying with the next change");
            }
        }
    };
    tokio::select! {
        _ = work => {}
        _ = progress => {}
    }

    let mut status = shared.get();
    status.phase = aggregate_phase(&status.clusters);
    status.completion_timestamp = Some(ctx.clock.now());
    let mut wait = Duration::from_secs(1);
    let mut written = false;
    for attempt in 1..=FINAL_WRITE_ATTEMPTS {
        match write_status(&ctx, job.object.as_ref(), &status).await {
            Ok(()) => {
                written = true;
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, attempt, "writing a restore's final status failed");
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
        }
    }
    let phase = status.phase.unwrap_or(FleetPhase::Failed);
    ctx.event(
        &job.object.object_ref(&()),
        phase != FleetPhase::Completed,
        match phase {
            FleetPhase::Completed => "RestoreCompleted",
            FleetPhase::Failed => "RestoreFailed",
            _ => "RestorePartiallyFailed",
        },
        "Restore",
        format!(
            "restore of {} {phase:?}: {}",
            status.backup_name.as_deref().unwrap_or("?"),
            status
                .clusters
                .iter()
                .map(|c| format!("{} {}", c.cluster, c.phase))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
    .await;
    if !written {
        // No final status will reach the cache to release the claim; the next reconcile
        // finds the restore unfinished and says it was interrupted.
        ctx.runs.end_restore(&job.key);
    }
}

/// Restores into one target; every outcome ends in its entry of the status.
async fn restore_one(ctx: &Context, job: &RestoreJob, cluster: &ManagedCluster, shared: &Shared) {
    let target = cluster.name_any();
    let Some(name) = job
        .status
        .clusters
        .iter()
        .find(|c| c.cluster == target)
        .map(|c| c.restore_name.clone())
    else {
        return;
    };
    shared.update(&target, |r| {
        r.phase = Phase::InProgress;
        r.start_timestamp = Some(ctx.clock.now());
    });
    let fail = |message: String| {
        shared.update(&target, |r| {
            r.phase = Phase::Failed;
            r.completion_timestamp = Some(ctx.clock.now());
            r.message = Some(message);
        });
    };
    let handle = match ctx.clusters.handle(cluster).await {
        Ok(handle) => handle,
        Err(problem) => return fail(format!("cluster {target} cannot be reached: {problem}")),
    };
    if job.through_velero {
        return restore_through_velero(ctx, job, cluster, &handle, &name, shared).await;
    }
    let engine = DirectEngine::new(handle.client.clone(), job.repo.clone())
        .with_storage_location(&job.location)
        .with_discovery_cache(handle.discovery.clone());
    let _abort = AbortOnDrop(Some(engine.clone()));
    if let Err(e) = engine.start_restore(&name, &job.spec).await {
        return fail(format!("the restore could not start: {e}"));
    }
    let mut poll = crate::reconcile::Poll::doubling_to(ctx.settings.poll_every);
    let mut changes = engine.phase_changes(&name);
    let status = loop {
        poll.wait_or_change(changes.as_mut()).await;
        match engine.observe_restore(&name).await {
            Ok(status) if status.phase.is_terminal() => break status,
            Ok(status) => shared.update(&target, |r| apply(r, &status)),
            // The restore runs in this process; observing it does not fail.
            Err(e) => return fail(format!("the restore's progress was lost: {e}")),
        }
    };
    let plan = engine
        .restore_report(&name)
        .map(|report| plan_of(&report, job.spec.options.dry_run));
    shared.update(&target, |r| {
        apply(r, &status);
        r.completion_timestamp = status.completed.or(Some(ctx.clock.now()));
        r.plan = plan;
        r.message = summary(&status);
    });
    if let Some(result) = shared.get().clusters.iter().find(|c| c.cluster == target) {
        announce(ctx, job, cluster, result).await;
    }
}

/// A restore carried out by the target's Velero (a `velero.io` Restore of the Backup it took),
/// followed until Velero says it ended: the way volume data comes back.
async fn restore_through_velero(
    ctx: &Context,
    job: &RestoreJob,
    cluster: &ManagedCluster,
    handle: &crate::clusters::ClusterHandle,
    name: &str,
    shared: &Shared,
) {
    let target = cluster.name_any();
    let fail = |message: String| {
        shared.update(&target, |r| {
            r.phase = Phase::Failed;
            r.completion_timestamp = Some(ctx.clock.now());
            r.message = Some(message);
        });
    };
    let engine = match handle.velero_engine(&job.location) {
        Ok(engine) => engine,
        Err(e) => return fail(format!("Velero in cluster {target}: {e}")),
    };
    if let Err(e) = engine.start_restore(name, &job.spec).await {
        return fail(format!("Velero's restore could not start: {e}"));
    }
    let mut poll = crate::reconcile::Poll::doubling_to(ctx.settings.poll_every);
    let status = loop {
        poll.wait_or_change(None).await;
        match engine.observe_restore(name).await {
            Ok(status) if status.phase.is_terminal() => break status,
            Ok(status) => shared.update(&target, |r| apply(r, &status)),
            Err(e) if e.is_retryable() => continue,
            Err(e) => return fail(format!("following Velero's restore failed: {e}")),
        }
    };
    shared.update(&target, |r| {
        apply(r, &status);
        r.completion_timestamp = status.completed.or(Some(ctx.clock.now()));
        r.message = summary(&status);
    });
    if let Some(result) = shared.get().clusters.iter().find(|c| c.cluster == target) {
        announce(ctx, job, cluster, result).await;
    }
}

/// The Event saying how the restore into `cluster` ended.
async fn announce(
    ctx: &Context,
    job: &RestoreJob,
    cluster: &ManagedCluster,
    result: &ClusterRestoreResult,
) {
    let completed = result.phase == Phase::Completed;
    ctx.event_related(
        &job.object.object_ref(&()),
        Some(cluster.object_ref(&())),
        !completed,
        if completed {
            "ClusterRestored"
        } else {
            "ClusterRestoreFailed"
        },
        "Restore",
        outcome(result),
    )
    .await;
}

/// How the restore into one cluster ended, for its Event.
fn outcome(result: &ClusterRestoreResult) -> String {
    format!(
        "{}: {} ({} of {} items, {} warnings, {} errors){}",
        result.cluster,
        result.phase,
        result.items_restored,
        result.total_items,
        result.warnings,
        result.errors,
        result
            .message
            .as_deref()
            .map(|m| format!(": {m}"))
            .unwrap_or_default()
    )
}

/// Copies the engine's view of one restore into its status entry.
fn apply(result: &mut ClusterRestoreResult, status: &RestoreStatus) {
    result.phase = status.phase;
    result.items_restored = status.progress.items_done;
    result.total_items = status.progress.total_items;
    result.warnings = status.warnings.len() as u64;
    result.errors = status.errors.len() as u64;
    if let Some(started) = status.started {
        result.start_timestamp = Some(started);
    }
}

/// The first errors of a restore that did not complete, for its status message.
fn summary(status: &RestoreStatus) -> Option<String> {
    let quoted: Vec<&str> = status
        .validation_errors
        .iter()
        .chain(&status.errors)
        .take(ERRORS_QUOTED)
        .map(String::as_str)
        .collect();
    if quoted.is_empty() {
        return None;
    }
    let more = status.errors.len() + status.validation_errors.len() - quoted.len();
    Some(if more > 0 {
        format!("{} (and {more} more)", quoted.join("; "))
    } else {
        quoted.join("; ")
    })
}

/// The counts of a restore report, and for a dry run its first objects.
pub fn plan_of(report: &RestoreReport, dry_run: bool) -> RestorePlan {
    let count = |action| report.count(action) as u64;
    let items: Vec<PlannedItem> = if dry_run {
        report
            .items
            .iter()
            .take(PLAN_ITEMS_SHOWN)
            .map(|item| PlannedItem {
                resource: item.resource.clone(),
                namespace: item.namespace.clone(),
                name: item.name.clone(),
                action: format!("{:?}", item.action),
            })
            .collect()
    } else {
        Vec::new()
    };
    RestorePlan {
        create: count(Action::Created),
        update: count(Action::Updated),
        skip: count(Action::Skipped),
        failed: count(Action::Failed),
        truncated: dry_run && report.items.len() > items.len(),
        items,
    }
}

#[cfg(test)]
mod tests {
    use backup_velero::direct::ItemOutcome;

    use super::*;

    fn report(n: usize) -> RestoreReport {
        RestoreReport {
            backup: "b".into(),
            dry_run: true,
            items: (0..n)
                .map(|i| ItemOutcome {
                    resource: "configmaps".into(),
                    namespace: Some("shop".into()),
                    name: format!("cm-{i}"),
                    action: if i % 4 == 0 {
                        Action::Skipped
                    } else {
                        Action::Created
                    },
                })
                .collect(),
            ..RestoreReport::default()
        }
    }

    #[test]
    fn a_dry_run_plan_counts_everything_and_lists_the_first_objects() {
        let plan = plan_of(&report(PLAN_ITEMS_SHOWN + 20), true);
        assert_eq!(plan.create, 90);
        assert_eq!(plan.skip, 30);
        assert_eq!(plan.items.len(), PLAN_ITEMS_SHOWN);
        assert!(plan.truncated);
        assert_eq!(plan.items[1].name, "cm-1");
        assert_eq!(plan.items[1].action, "Created");
        assert_eq!(plan.items[1].namespace.as_deref(), Some("shop"));
    }

    #[test]
    fn a_real_restore_keeps_only_the_counts() {
        let plan = plan_of(&report(8), false);
        assert_eq!(
            (plan.create, plan.skip, plan.update, plan.failed),
            (6, 2, 0, 0)
        );
        assert!(plan.items.is_empty() && !plan.truncated);
    }

    #[test]
    fn a_clusters_outcome_counts_its_items_and_quotes_its_errors() {
        let mut result = ClusterRestoreResult {
            cluster: "c2".into(),
            restore_name: "dr-c2".into(),
            phase: Phase::PartiallyFailed,
            items_restored: 5,
            total_items: 7,
            warnings: 1,
            errors: 2,
            message: Some("e0; e1".into()),
            ..ClusterRestoreResult::default()
        };
        assert_eq!(
            outcome(&result),
            "c2: PartiallyFailed (5 of 7 items, 1 warnings, 2 errors): e0; e1"
        );
        result.message = None;
        assert_eq!(
            outcome(&result),
            "c2: PartiallyFailed (5 of 7 items, 1 warnings, 2 errors)"
        );
    }

    #[test]
    fn a_summary_quotes_the_first_errors_and_counts_the_rest() {
        let status = RestoreStatus {
            errors: (0..5).map(|i| format!("e{i}")).collect(),
            ..RestoreStatus::default()
        };
        assert_eq!(summary(&status).unwrap(), "e0; e1; e2 (and 2 more)");
        assert_eq!(summary(&RestoreStatus::default()), None);
    }
}
