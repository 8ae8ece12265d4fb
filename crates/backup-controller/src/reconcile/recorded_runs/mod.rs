//! What the kinds that record their latest runs (EtcdBackupConfig, ManagementBackup) share
//! around their pure decision ([`plan`]): reading the pending run-now token, and writing an
//! outcome, releasing the run only once the cache shows it written.

pub mod plan;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::Duration;

use backup_core::Phase;
use jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::write_status;
use crate::context::Context;
use crate::error::Result;
use crate::runs::ObjectKey;
use backup_api::{RUN_NOW_ANNOTATION, RecordedRunsStatus};
pub use plan::{
    CACHE_CATCH_UP, Firing, FiringKind, INTERRUPTED, Live, Plan, PlanInput, unfinished_elsewhere,
};

/// The object's `backupfleet.dev/run-now` token when it was not served yet.
pub fn pending_token<'a>(
    object: &'a impl Resource,
    previous: &RecordedRunsStatus,
) -> Option<&'a str> {
    object
        .annotations()
        .get(RUN_NOW_ANNOTATION)
        .map(String::as_str)
        .filter(|token| !token.is_empty() && previous.last_run_now_token.as_deref() != Some(*token))
}

/// When the object was created (`now` for one not stored yet).
pub fn created(object: &impl Resource, now: Timestamp) -> Timestamp {
    object
        .meta()
        .creation_timestamp
        .as_ref()
        .map_or(now, |t| t.0)
}

/// Writes `status` when `changed`; a finished run is released (with an Event, `noun` naming
/// it: "Snapshot", "Backup") only once the cache shows its outcome written, so no later
/// reconcile decides on a view without it.
#[allow(clippy::too_many_arguments)]
pub async fn write_outcome<K>(
    ctx: &Context,
    object: &K,
    key: &ObjectKey,
    live: &Live,
    status: &impl Serialize,
    changed: bool,
    requeue_after: Option<Duration>,
    noun: &str,
) -> Result<Action>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
{
    if changed {
        write_status(ctx, object, status).await?;
        if matches!(live, Live::Finished(_)) {
            // The write's watch event normally brings the next reconcile first.
            return Ok(Action::requeue(CACHE_CATCH_UP));
        }
    }
    if let Live::Finished(finished) = live {
        ctx.runs.release_recorded(key);
        let record = &finished.record;
        let completed = record.backup_phase == Phase::Completed;
        ctx.event(
            &object.object_ref(&()),
            !completed,
            &format!("{noun}{}", if completed { "Completed" } else { "Failed" }),
            noun,
            format!(
                "{} {}{}",
                record.backup_name,
                record.backup_phase,
                record
                    .message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            ),
        )
        .await;
    }
    Ok(requeue(requeue_after))
}

/// What this process knows of the run of the object `key`.
pub fn live(ctx: &Context, key: &ObjectKey) -> Live {
    match ctx.runs.recorded_run(key) {
        None => Live::Idle,
        Some(run) => match run.finished {
            Some(finished) => Live::Finished(Box::new(finished)),
            None => Live::Running(run.name),
        },
    }
}

/// [`PlanInput::stored`]: the phases `repo` holds (as `kind`) of the runs `previous` records
/// unfinished and this process does not run (those it lacks are left out); `None` when there
/// are some but no repository to ask.
pub async fn stored_phases(
    previous: &RecordedRunsStatus,
    live: &Live,
    repo: Option<&backup_storage::Repository>,
    kind: backup_storage::BackupKind,
) -> Result<Option<BTreeMap<String, Phase>>> {
    let names = unfinished_elsewhere(previous, live);
    if names.is_empty() {
        return Ok(Some(BTreeMap::new()));
    }
    let Some(repo) = repo else {
        return Ok(None);
    };
    let mut stored = BTreeMap::new();
    for name in names {
        let Ok(backup) = backup_storage::BackupName::new(&name) else {
            continue;
        };
        match repo.get_manifest(kind, &backup).await {
            Ok(manifest) => {
                stored.insert(name, manifest.phase()?);
            }
            Err(backup_storage::StorageError::BackupNotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Some(stored))
}

/// The action for a plan's `requeue_after`.
pub fn requeue(after: Option<Duration>) -> Action {
    match after {
        Some(wait) => Action::requeue(wait.max(Duration::from_millis(1))),
        None => Action::await_change(),
    }
}
