//! Running a RestoreDrill's drills: one cluster after another (a dedicated target is shared,
//! so two drills never write to it at once), each a direct-engine restore of the cluster's
//! newest Completed backup into scratch namespaces with every object read back
//! ([`DirectEngine::start_restore_with`]), cut off at the spec's timeout, then cleaned up as
//! the policy says. The status is written after each cluster and at the end.
//!
//! The reconcile claims the drill in [`Runs`](crate::runs::Runs) before it writes the status
//! announcing it, and this task releases the claim after its final write: while claimed,
//! reconciles leave the status to this task; after a crash, the next leader finds the drills
//! `InProgress` and unclaimed, ends them `Failed` and cleans up.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backup_api::restore_drill::{
    DRILL_LABEL, DrillPhase, DrillResult, RestoreDrillStatus, ValidRestoreDrill,
};
use backup_api::status::set_condition;
use backup_api::{ManagedCluster, RestoreDrill};
use backup_core::{RestoreOptions, RestoreSpec};
use backup_kube::locations::ResolvedLocation;
use backup_velero::direct::{DirectEngine, DrillOptions};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, ListParams};
use kube::{Resource, ResourceExt};

use super::plan::{cleans_up, proven, record_end};
use crate::context::Context;
use crate::metrics::DrilledLabels;
use crate::reconcile::write_status;
use crate::runs::ObjectKey;

/// Attempts at a status write before the outcome is left to the Events and logs.
const WRITE_ATTEMPTS: u32 = 6;
/// How long a cleanup waits for the scratch namespaces to be gone.
const CLEANUP_WAIT: Duration = Duration::from_secs(120);

/// One cluster to drill.
pub struct Drill {
    /// The drilled cluster (whose backup is restored).
    pub cluster: Arc<ManagedCluster>,
    /// Where it is restored.
    pub target: Arc<ManagedCluster>,
    /// The drill as announced (`InProgress`).
    pub announced: DrillResult,
}

/// Drills to run.
pub struct DrillJob {
    /// The claim.
    pub key: ObjectKey,
    /// The RestoreDrill.
    pub object: Arc<RestoreDrill>,
    /// Its spec, checked.
    pub spec: ValidRestoreDrill,
    /// The ClusterBackup's location.
    pub location: ResolvedLocation,
    /// The clusters, in order.
    pub drills: Vec<Drill>,
    /// The clusters the spec selects (for the `Proven` condition).
    pub selected: BTreeSet<String>,
    /// The status announcing them.
    pub status: RestoreDrillStatus,
}

/// Starts `job` in the background.
pub fn start(ctx: Arc<Context>, job: DrillJob) {
    let key = job.key.clone();
    let task = tokio::spawn(tracing::Instrument::in_current_span(run(ctx.clone(), job)));
    ctx.runs.track_restore(&key, &task);
}

async fn run(ctx: Arc<Context>, job: DrillJob) {
    let mut status = job.status.clone();
    let label = (DRILL_LABEL.to_string(), job.key.2.clone());
    for drill in &job.drills {
        let cluster = drill.cluster.name_any();
        let (ended, target) = drill_one(&ctx, &job, drill, &label).await;
        ctx.metrics.drill_finished(
            DrilledLabels {
                namespace: job.key.0.clone(),
                cluster: cluster.clone(),
            },
            ended.phase,
            ended.recovery_seconds,
            ended.completion_time.unwrap_or_else(|| ctx.clock.now()),
        );
        announce(&ctx, &job.object, &cluster, &ended).await;
        // Written before the cleanup, which may wait for namespaces to go: the outcome is
        // known now.
        let cleans = cleans_up(job.spec.cleanup, ended.phase);
        record(&ctx, &job, &mut status, &cluster, ended.clone()).await;
        if let (true, Some(target)) = (cleans, target)
            && let Err(problem) = delete_scratch(&target, &label, true).await
        {
            ctx.event(
                &job.object.object_ref(&()),
                true,
                "DrillCleanupFailed",
                "Drill",
                format!("cleaning up the drill of cluster {cluster}: {problem}"),
            )
            .await;
            let mut noted = ended;
            noted.message = join(&noted.message, &format!("cleanup: {problem}"));
            record(&ctx, &job, &mut status, &cluster, noted).await;
        }
    }
    ctx.runs.end_restore(&job.key);
}

/// Records how `cluster`'s drill ended in `status`, with the `Proven` condition it makes, and
/// writes it.
async fn record(
    ctx: &Context,
    job: &DrillJob,
    status: &mut RestoreDrillStatus,
    cluster: &str,
    ended: DrillResult,
) {
    record_end(status, cluster, ended);
    let condition =
        proven(status, &job.selected).at(ctx.clock.now(), job.object.metadata.generation);
    set_condition(&mut status.conditions, condition);
    write(ctx, &job.object, status).await;
}

/// Drills one cluster: restore and read back within the timeout. Returns how it ended and the
/// client of the cluster it restored into (none when that cluster could not be reached).
async fn drill_one(
    ctx: &Context,
    job: &DrillJob,
    drill: &Drill,
    label: &(String, String),
) -> (DrillResult, Option<kube::Client>) {
    let started = Instant::now();
    let mut ended = drill.announced.clone();
    let target = match ctx.clusters.handle(&drill.target).await {
        Ok(handle) => handle,
        Err(problem) => {
            let message = format!(
                "cannot reach cluster {}: {problem}",
                drill.target.name_any()
            );
            return (failed(ctx, ended, message), None);
        }
    };
    let repo = match job
        .location
        .repo
        .scoped_str(&job.key.0, &drill.cluster.name_any())
    {
        Ok(repo) => repo,
        Err(e) => return (failed(ctx, ended, e.to_string()), Some(target.client)),
    };
    let engine = DirectEngine::new(target.client.clone(), repo)
        .with_storage_location(&job.location.name)
        .with_discovery_cache(target.discovery.clone());
    let restored =
        tokio::time::timeout(job.spec.timeout, restore(&engine, job, &ended, label)).await;
    ended = match restored {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(message)) => failed(ctx, ended, message),
        Err(_) => {
            engine.abort_all();
            let limit = backup_core::format_go_duration(job.spec.timeout);
            failed(
                ctx,
                ended,
                format!("timed out after {limit} (spec.timeout): the restore was stopped"),
            )
        }
    };
    ended.recovery_seconds = Some(started.elapsed().as_secs_f64());
    ended.completion_time = Some(ctx.clock.now());
    (ended, Some(target.client))
}

/// The restore with its read-back, judged.
async fn restore(
    engine: &DirectEngine,
    job: &DrillJob,
    announced: &DrillResult,
    label: &(String, String),
) -> Result<DrillResult, String> {
    let spec = RestoreSpec {
        backup_name: Some(announced.backup_name.clone()),
        options: RestoreOptions {
            filter: job.spec.restore_filter(),
            ..RestoreOptions::default()
        },
        ..RestoreSpec::default()
    };
    let options = DrillOptions {
        namespace_prefix: job.spec.target.namespace_prefix().to_string(),
        label: label.clone(),
    };
    let name = &announced.restore_name;
    engine
        .start_restore_with(name, &spec, Some(options))
        .await
        .map_err(|e| e.to_string())?;
    let status = engine.wait_restore(name).await.map_err(|e| e.to_string())?;
    let verification = engine
        .restore_report(name)
        .and_then(|r| r.verification)
        .unwrap_or_default();
    let mut ended = announced.clone();
    ended.items = verification.expected();
    ended.verified = verification.verified_total();
    ended.mismatched = verification.mismatched;
    ended.mismatches = verification
        .mismatches
        .iter()
        .map(|m| m.to_string())
        .collect();
    ended.phase = if status.phase == backup_core::Phase::Failed {
        ended.message = status.errors.join("; ");
        DrillPhase::Failed
    } else if ended.items == 0 {
        ended.message = format!(
            "backup {} holds nothing this drill restores: a drill that restores nothing proves \
             nothing; check spec.includedNamespaces",
            announced.backup_name
        );
        DrillPhase::Failed
    } else if verification.holds() {
        DrillPhase::Verified
    } else {
        ended.message = format!(
            "{} of {} object(s) missing, refused or changed",
            ended.mismatched, ended.items
        );
        DrillPhase::Mismatched
    };
    Ok(ended)
}

fn failed(ctx: &Context, mut drill: DrillResult, message: String) -> DrillResult {
    drill.phase = DrillPhase::Failed;
    drill.message = message;
    drill.completion_time = Some(ctx.clock.now());
    drill
}

fn join(first: &str, second: &str) -> String {
    match first.is_empty() {
        true => second.to_string(),
        false => format!("{first}; {second}"),
    }
}

/// Deletes every namespace of `client`'s cluster that carries `label`, and (when `wait`) waits
/// until they are gone, so the next drill into the same cluster starts clean.
pub async fn delete_scratch(
    client: &kube::Client,
    (key, value): &(String, String),
    wait: bool,
) -> Result<(), String> {
    let api: Api<Namespace> = Api::all(client.clone());
    let selector = ListParams::default().labels(&format!("{key}={value}"));
    let summary = |e: kube::Error| backup_kube::errors::summary(&e);
    for namespace in api.list(&selector).await.map_err(summary)? {
        match api
            .delete(&namespace.name_any(), &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                return Err(format!(
                    "deleting namespace {}: {}",
                    namespace.name_any(),
                    summary(e)
                ));
            }
        }
    }
    if !wait {
        return Ok(());
    }
    let deadline = Instant::now() + CLEANUP_WAIT;
    loop {
        let left = api.list(&selector).await.map_err(summary)?;
        if left.items.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            let names: Vec<String> = left.iter().map(ResourceExt::name_any).collect();
            return Err(format!(
                "namespaces {} were still terminating after {} s",
                names.join(", "),
                CLEANUP_WAIT.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The Event that says how a cluster's drill ended.
async fn announce(ctx: &Context, drill: &RestoreDrill, cluster: &str, ended: &DrillResult) {
    let (reason, warning) = match ended.phase {
        DrillPhase::Verified => ("DrillVerified", false),
        DrillPhase::Mismatched => ("DrillMismatched", true),
        DrillPhase::Failed | DrillPhase::InProgress => ("DrillFailed", true),
    };
    let mut note = format!(
        "drill of cluster {cluster} from backup {}: {:?}, {} of {} object(s) verified in {:.1} s",
        ended.backup_name,
        ended.phase,
        ended.verified,
        ended.items,
        ended.recovery_seconds.unwrap_or_default()
    );
    if !ended.message.is_empty() {
        note = join(&note, &ended.message);
    }
    ctx.event(&drill.object_ref(&()), warning, reason, "Drill", note)
        .await;
}

/// Writes `status`, retrying with backoff; a write that keeps failing is logged (the Events
/// and metrics still say how the drill ended).
async fn write(ctx: &Context, drill: &RestoreDrill, status: &RestoreDrillStatus) {
    let mut wait = Duration::from_secs(1);
    for attempt in 1..=WRITE_ATTEMPTS {
        match write_status(ctx, drill, status).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, attempt, "writing a drill's status failed");
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
        }
    }
}
