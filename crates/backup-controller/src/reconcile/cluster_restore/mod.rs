//! ClusterRestore: decide with [`plan::plan`]; to start, resolve the location, the backup and
//! the target clusters ([`observe`], each problem a `Ready=False` condition saying what to fix,
//! decided by [`plan`]), write the status announcing the restore ([`plan::launch`]), then run
//! it ([`execute`]). Deletion removes the restores' files from storage.
//!
//! Restores always use the direct engine, whatever engine backs a cluster up: it restores from
//! the management cluster, so nothing (no credentials, no Velero) has to be in the target, and
//! it reads backups written by Velero, `backupctl` and the controller alike (Velero's own
//! carry no checksum of ours: only their formats check them).

pub mod execute;
mod expiry;
mod observe;
pub mod plan;

use std::sync::Arc;

use backup_core::EngineError;
use jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use self::expiry::Expiry;
use self::observe::Resolved;
use self::plan::{Decision, Launch, LaunchInput, PlanInput, Write};
use super::{with_finalizer, write_status};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::runs::ObjectKey;
use backup_api::ClusterRestore;
use backup_api::cluster_restore::{ClusterRestoreStatus, ValidClusterRestore};

/// The controller's name in metrics.
pub const CONTROLLER: &str = "clusterrestore";

/// Reconciles one ClusterRestore.
#[tracing::instrument(name = "reconcile", skip_all, fields(kind = "ClusterRestore", namespace = %restore.metadata.namespace.as_deref().unwrap_or_default(), name = %restore.metadata.name.as_deref().unwrap_or_default()))]
pub async fn reconcile(restore: Arc<ClusterRestore>, ctx: Arc<Context>) -> Result<Action> {
    ctx.stores.listed().await;
    with_finalizer(CONTROLLER, restore, ctx, apply, cleanup).await
}

/// The restore's claim in [`Runs`](crate::runs::Runs): its uid too, so a restore deleted and
/// created again under the same name is another.
fn key_of(restore: &ClusterRestore) -> ObjectKey {
    (
        restore.namespace().unwrap_or_default(),
        restore.name_any(),
        restore.uid().unwrap_or_default(),
    )
}

/// One reconcile: validate, decide with [`plan::plan`], carry the decision out.
async fn apply(restore: Arc<ClusterRestore>, ctx: Arc<Context>) -> Result<Action> {
    let now = ctx.clock.now();
    let after = match expiry::expiry(&restore, now) {
        Expiry::Due => return expire(&ctx, &restore).await,
        Expiry::DueIn(left) => Action::requeue(left),
        Expiry::Kept => Action::await_change(),
    };
    let previous = restore.status.clone().unwrap_or_default();
    let spec = restore.spec.validate();
    let key = key_of(&restore);
    let decision = plan::plan(&PlanInput {
        generation: restore.metadata.generation,
        now,
        spec: &spec,
        previous: &previous,
        running_here: ctx.runs.restore_running(&key),
    });
    match decision {
        Decision::Nothing => {}
        Decision::Release => ctx.runs.end_restore(&key),
        Decision::Write(write) => carry_out(&ctx, &restore, *write).await?,
        Decision::Start(valid) => return start(&ctx, &restore, valid, &previous, now).await,
    }
    Ok(after)
}

/// Deletes a dashboard plan whose hour is up (the finalizer's cleanup follows).
async fn expire(ctx: &Context, restore: &ClusterRestore) -> Result<Action> {
    let api: kube::Api<ClusterRestore> =
        kube::Api::namespaced(ctx.client.clone(), &restore.namespace().unwrap_or_default());
    match api.delete(&restore.name_any(), &Default::default()).await {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(Action::await_change()),
        Err(e) => Err(Error::kube("deleting the expired dashboard plan", e)),
    }
}

/// Writes `write`'s status, after its warning.
async fn carry_out(ctx: &Context, restore: &ClusterRestore, write: Write) -> Result<()> {
    if let Some(why) = write.warning {
        warn(ctx, restore, &why.reason, why.message).await;
    }
    write_status(ctx, restore, &write.status).await
}

/// Resolves the sources of the restore and starts it, or says why it cannot start.
async fn start(
    ctx: &Arc<Context>,
    restore: &Arc<ClusterRestore>,
    spec: &ValidClusterRestore,
    previous: &ClusterRestoreStatus,
    now: Timestamp,
) -> Result<Action> {
    let generation = restore.metadata.generation;
    let resolved = match observe::resolve(ctx, restore, spec).await? {
        Ok(resolved) => resolved,
        Err(why) => {
            let wait = plan::wait(previous, generation, now, why);
            if let Some(write) = wait.write {
                carry_out(ctx, restore, write).await?;
            }
            return Ok(Action::requeue(wait.requeue_after));
        }
    };
    let launch = plan::launch(&LaunchInput {
        name: &restore.name_any(),
        generation,
        now,
        spec,
        previous,
        source: &resolved.source,
    });
    run(ctx, restore, resolved, launch).await?;
    Ok(Action::await_change())
}

/// Claims the restore, writes the status announcing it and runs it in the background.
async fn run(
    ctx: &Arc<Context>,
    restore: &Arc<ClusterRestore>,
    resolved: Resolved,
    launch: Launch,
) -> Result<()> {
    let key = key_of(restore);
    if !ctx.runs.claim_restore(&key) {
        return Ok(());
    }
    if let Err(e) = write_status(ctx, restore.as_ref(), &launch.status).await {
        ctx.runs.end_restore(&key);
        return Err(e);
    }
    ctx.event(
        &restore.object_ref(&()),
        false,
        "RestoreStarted",
        "Restore",
        launch.announcement,
    )
    .await;
    execute::start(
        ctx.clone(),
        execute::RestoreJob {
            key,
            object: restore.clone(),
            spec: launch.spec,
            repo: resolved.repo,
            through_velero: resolved.source.through_velero,
            location: resolved.source.location,
            targets: resolved.targets,
            status: launch.status,
        },
    );
    Ok(())
}

/// A warning Event on the restore.
async fn warn(ctx: &Context, restore: &ClusterRestore, reason: &str, message: String) {
    ctx.event(&restore.object_ref(&()), true, reason, "Validate", message)
        .await;
}

async fn cleanup(restore: Arc<ClusterRestore>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = restore.namespace().unwrap_or_default();
    ctx.runs.abort_restore(&key_of(&restore));
    let status = restore.status.clone().unwrap_or_default();
    let stored: Vec<&str> = status
        .clusters
        .iter()
        .filter(|c| !restore.spec.options.dry_run && c.phase != backup_core::Phase::New)
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
