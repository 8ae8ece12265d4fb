//! Running one firing of a ClusterBackup: a backup per cluster, `maxConcurrentClusters` at a
//! time, each followed by retention on that cluster, each reported as it ends (status through
//! a reconcile nudge, an Event, metrics).
//!
//! A run's failure is recorded as its status and never stops the other clusters' runs.

use std::sync::Arc;
use std::time::Duration;

use backup_core::{BackupSpec, BackupStatus, EngineError, Phase, RetentionPolicy, StoredBackup};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use super::engines::{self, ClusterEngine};
use crate::context::Context;
use crate::runs::RunKey;
use backup_api::{ClusterBackup, EngineKind, ManagedCluster};
use backup_kube::locations::ResolvedLocation;

/// How often a Velero-driven backup is polled (each poll reads a Backup object in the cluster).
const VELERO_POLL: Duration = Duration::from_secs(2);

/// One firing to carry out.
pub struct FleetJob {
    /// The ClusterBackup, to nudge its reconcile.
    pub backup: ObjectRef<ClusterBackup>,
    /// The ClusterBackup, for Events.
    pub reference: ObjectReference,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// `(cluster, backup name)` per selected cluster.
    pub targets: Vec<(Arc<ManagedCluster>, String)>,
    /// Where runs are written.
    pub location: ResolvedLocation,
    /// What each run backs up.
    pub template: BackupSpec,
    /// Retention applied after each run.
    pub retention: RetentionPolicy,
    /// Clusters at once.
    pub max_concurrent: usize,
}

/// Starts `job` in the background; [`crate::runs::Runs::abort`] stops it.
pub fn start(ctx: Arc<Context>, job: FleetJob) {
    let (namespace, name) = (job.namespace.clone(), job.name.clone());
    let task = tokio::spawn(tracing::Instrument::in_current_span(run_fleet(
        ctx.clone(),
        Arc::new(job),
    )));
    ctx.runs.track(&namespace, &name, task);
}

async fn run_fleet(ctx: Arc<Context>, job: Arc<FleetJob>) {
    futures::stream::iter(job.targets.clone())
        .map(|(cluster, run)| run_one(ctx.clone(), job.clone(), cluster, run))
        .buffer_unordered(job.max_concurrent)
        .collect::<Vec<()>>()
        .await;
    ctx.runs.nudge(job.backup.clone());
}

fn failed(message: String) -> BackupStatus {
    BackupStatus {
        phase: Phase::Failed,
        completed: Some(jiff::Timestamp::now()),
        errors: vec![message],
        ..BackupStatus::default()
    }
}

async fn run_one(ctx: Arc<Context>, job: Arc<FleetJob>, cluster: Arc<ManagedCluster>, run: String) {
    let key = RunKey {
        namespace: job.namespace.clone(),
        backup: job.name.clone(),
        cluster: cluster.name_any(),
    };
    // Each cluster's Events name it as their related object, so a fleet's are not folded.
    let related = Some(cluster.object_ref(&()));
    let (engine, status) = match engines::engine_for(&ctx, &job.location, &cluster, true).await {
        Err(reason) => (
            None,
            failed(format!("cannot back up cluster {}: {reason}", key.cluster)),
        ),
        Ok(engine) => {
            let status = drive(&ctx, &job, &key, &engine, &run).await;
            (Some(engine), status)
        }
    };
    let kind = engine.as_ref().map(ClusterEngine::kind);
    // Storage changed (a run and maybe retention): its listing is taken again before the run
    // is shown as ended, so no reconcile sees it ended beside a listing from before it was
    // stored. Retention lists anyway; what it keeps is that listing. The engine that ran
    // lists: `cluster` is the object as it was at the firing, whose status may not name an
    // engine yet, and a Velero cluster's runs are Velero's Backups.
    let started = tokio::time::Instant::now();
    let listed = match &engine {
        Some(engine) => {
            let kept = retention(&ctx, &job, &key, engine, &related).await;
            collect_orphans(&ctx, &job, &key, engine, &related).await;
            match kept {
                Some(kept) => Ok(kept),
                None => engine
                    .backups()
                    .list_backups(&engines::selector(&job.name))
                    .await
                    .map_err(|e| e.to_string()),
            }
        }
        None => engines::list_stored(&ctx, &job.location, &cluster, &job.name).await,
    };
    ctx.runs.set_listing(key.clone(), listed, started);
    ctx.runs.update(&key, &run, status.clone());
    ctx.metrics
        .run_finished(status.phase, kind.map_or("none", |k| k.as_str()));
    let items = status.progress.items_done;
    let (warning, reason, note) = match status.phase {
        Phase::Completed => (
            false,
            "BackupCompleted",
            format!("{}: {run} completed, {items} items", key.cluster),
        ),
        phase => (
            true,
            if phase == Phase::PartiallyFailed {
                "BackupPartiallyFailed"
            } else {
                "BackupFailed"
            },
            format!(
                "{}: {run} {phase}, {items} items: {}",
                key.cluster,
                status.errors.join("; ")
            ),
        ),
    };
    ctx.event_related(&job.reference, related, warning, reason, "Backup", note)
        .await;
    ctx.runs.nudge(job.backup.clone());
}

/// Starts the backup and follows it to a terminal phase, publishing progress.
async fn drive(
    ctx: &Context,
    job: &FleetJob,
    key: &RunKey,
    engine: &ClusterEngine,
    run: &str,
) -> BackupStatus {
    let _abort = crate::reconcile::AbortOnDrop(match engine {
        ClusterEngine::Direct(e) => Some(e.clone()),
        ClusterEngine::Velero(_) => None,
    });
    let mut spec = job.template.clone();
    spec.storage_location = Some(job.location.name.clone());
    spec.labels.extend(engines::run_labels(&job.name));
    match engine.backups().start_backup(run, &spec).await {
        Ok(()) => {}
        // The name is taken in storage: this slot already ran (e.g. by an earlier leader).
        Err(e @ EngineError::AlreadyExists { .. }) => {
            return failed(format!(
                "{e}; a backup of this slot already exists, so this run was skipped"
            ));
        }
        Err(e) => return failed(e.to_string()),
    }
    // A direct run is observed in memory, so it is looked at soon after it starts and then
    // less and less often: a small backup is seen finished within a few tens of milliseconds
    // of the end instead of a whole poll period later (which, at a fleet's hundreds of small
    // runs, was most of their time). Velero is asked through the cluster's API, at its pace.
    let mut poll = match engine.kind() {
        EngineKind::Direct => crate::reconcile::Poll::doubling_to(ctx.settings.poll_every),
        EngineKind::Velero => crate::reconcile::Poll::every(VELERO_POLL),
    };
    let mut changes = match engine {
        ClusterEngine::Direct(e) => e.phase_changes(run),
        ClusterEngine::Velero(_) => None,
    };
    let mut last = BackupStatus::default();
    loop {
        match engine.backups().observe_backup(run).await {
            Ok(status) if status.phase.is_terminal() => return status,
            Ok(status) => {
                if status != last {
                    ctx.runs.update(key, run, status.clone());
                    ctx.runs.nudge(job.backup.clone());
                    last = status;
                }
            }
            Err(e) if e.is_retryable() => {
                tracing::warn!(error = %e, cluster = %key.cluster, run, "observing the backup failed; retrying");
            }
            Err(e) => return failed(e.to_string()),
        }
        poll.wait_or_change(changes.as_mut()).await;
    }
}

/// Applies the ClusterBackup's retention on one cluster; problems become a warning Event.
/// Returns the runs it found and kept, when it could list them.
async fn retention(
    ctx: &Context,
    job: &FleetJob,
    key: &RunKey,
    engine: &ClusterEngine,
    related: &Option<ObjectReference>,
) -> Option<Vec<StoredBackup>> {
    if !job.location.repo.is_writable() {
        return None;
    }
    let swept = super::super::retention::sweep(
        engine.backups(),
        &engines::selector(&job.name),
        &job.retention,
        ctx.clock.now(),
    )
    .await;
    let problem = match &swept {
        Ok(swept) if !swept.refused.is_empty() => Some(
            swept
                .refused
                .iter()
                .map(|(name, e)| format!("{name}: {e}"))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        Ok(_) => None,
        Err(e) => Some(e.to_string()),
    };
    if let Ok(swept) = &swept
        && !swept.deleted.is_empty()
    {
        ctx.event_related(
            &job.reference,
            related.clone(),
            false,
            "RetentionDeleted",
            "Retention",
            format!("{}: deleted {}", key.cluster, swept.deleted.join(", ")),
        )
        .await;
    }
    if let Some(problem) = problem {
        ctx.event_related(
            &job.reference,
            related.clone(),
            true,
            "RetentionFailed",
            "Retention",
            format!(
                "{}: retention could not delete expired runs: {problem}",
                key.cluster
            ),
        )
        .await;
    }
    swept.ok().map(|swept| swept.kept)
}

/// Removes what interrupted runs left in the cluster's scope (direct engine only: Velero cleans
/// up its own uploads); what it removed, or why it could not, becomes an Event.
async fn collect_orphans(
    ctx: &Context,
    job: &FleetJob,
    key: &RunKey,
    engine: &ClusterEngine,
    related: &Option<ObjectReference>,
) {
    let ClusterEngine::Direct(direct) = engine else {
        return;
    };
    // Looking costs a listing of the whole scope; leftovers only become removable after the
    // grace period, so once an hour per cluster is plenty.
    let every = Duration::try_from(ctx.settings.orphan_grace)
        .unwrap_or(Duration::ZERO)
        .min(Duration::from_secs(3600));
    if !job.location.repo.is_writable() || !ctx.runs.due_for_orphan_check(key, every) {
        return;
    }
    let removed = direct
        .repository()
        .remove_orphans(
            backup_core::BackupKind::Resources,
            ctx.settings.orphan_grace,
            ctx.clock.now(),
        )
        .await;
    let (warning, reason, note) = match removed {
        Ok(removed) if removed.is_empty() => return,
        Ok(removed) => (
            false,
            "InterruptedUploadsRemoved",
            format!(
                "{}: removed what interrupted backups left behind: {}",
                key.cluster,
                removed
                    .iter()
                    .map(|o| format!("{} ({} bytes)", o.name, o.bytes))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        Err(e) => (
            true,
            "InterruptedUploadsKept",
            format!("{}: could not remove interrupted uploads: {e}", key.cluster),
        ),
    };
    ctx.event_related(
        &job.reference,
        related.clone(),
        warning,
        reason,
        "Retention",
        note,
    )
    .await;
}
