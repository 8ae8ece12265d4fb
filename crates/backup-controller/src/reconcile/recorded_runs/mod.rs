//! What the kinds that record their latest runs (EtcdBackupConfig, ManagementBackup) share
//! around their pure decision ([`plan`]): observing this process's run, the pending run-now
//! token and what storage holds of runs recorded unfinished; and carrying a [`Decision`] out.

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

use super::{Blocked, write_status};
use crate::context::Context;
use crate::error::Result;
use crate::runs::ObjectKey;
use backup_api::{RUN_NOW_ANNOTATION, RecordedRunsStatus};
use plan::unfinished_elsewhere;
pub use plan::{
    BLOCKED_RECHECK, Decision, Firing, FiringKind, Live, Plan, PlanInput, decision, refused,
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

/// How soon to look again when another reconcile of the object claimed a run first.
const CLAIMED_ELSEWHERE: Duration = Duration::from_secs(1);

/// Claims the run `fire` for `key`, then writes `status`, which announces it (claimed first, so
/// no other reconcile starts one meanwhile; released again when the write fails).
/// `Ok(None)`: claimed and announced, the caller starts it; `Ok(Some(action))`: another
/// reconcile claimed one first, look again.
pub async fn claim_and_announce<K, S>(
    ctx: &Context,
    object: &K,
    key: &ObjectKey,
    fire: &Firing,
    status: &S,
) -> Result<Option<Action>>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
    S: Serialize,
{
    if !ctx.runs.claim_recorded(key, &fire.name) {
        return Ok(Some(Action::requeue(CLAIMED_ELSEWHERE)));
    }
    if let Err(e) = write_status(ctx, object, status).await {
        ctx.runs.release_recorded(key);
        return Err(e);
    }
    Ok(None)
}

/// Carries out a decision that starts nothing: writes its status, releases this process's
/// finished run with its Event, and looks again when it says.
pub async fn record<K, S>(
    ctx: &Context,
    object: &K,
    key: &ObjectKey,
    decision: &Decision<S>,
    noun: &str,
) -> Result<Action>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
    S: Serialize,
{
    if decision.write {
        write_status(ctx, object, &decision.status).await?;
    }
    if let Some(outcome) = &decision.release {
        ctx.runs.release_recorded(key);
        ctx.event(
            &object.object_ref(&()),
            outcome.warning,
            &outcome.reason,
            noun,
            outcome.note.clone(),
        )
        .await;
    }
    Ok(requeue(decision.requeue_after))
}

/// Writes `status` when it differs from `previous`; the object waits for a change (a refused
/// or invalid one runs nothing until edited).
pub async fn write_refused<K, S>(
    ctx: &Context,
    object: &K,
    previous: &S,
    status: &S,
) -> Result<Action>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
    S: Serialize + PartialEq,
{
    if status != previous {
        write_status(ctx, object, status).await?;
    }
    Ok(Action::await_change())
}

/// What a recorded-runs kind observes of one object, no rule applied.
pub struct Facts<T> {
    /// This process's run of it.
    pub live: Live,
    /// Where its runs go (`T`), or why they cannot run.
    pub target: std::result::Result<T, Blocked>,
    /// [`PlanInput::stored`].
    pub stored: Option<BTreeMap<String, Phase>>,
}

/// Observes the object `key` (its status as read: `previous`): this process's run, then the
/// `target` (where runs go, `repo` its repository), then what that repository holds (as
/// `kind`) of the runs recorded unfinished.
pub async fn observe<T>(
    ctx: &Context,
    key: &ObjectKey,
    previous: &RecordedRunsStatus,
    target: impl Future<Output = Result<std::result::Result<T, Blocked>>>,
    repo: fn(&T) -> &backup_storage::Repository,
    kind: backup_storage::BackupKind,
) -> Result<Facts<T>> {
    let live = live(ctx, key);
    let target = target.await?;
    let stored = stored_phases(previous, &live, target.as_ref().ok().map(repo), kind).await?;
    Ok(Facts {
        live,
        target,
        stored,
    })
}

/// What this process knows of the run of the object `key`.
fn live(ctx: &Context, key: &ObjectKey) -> Live {
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
async fn stored_phases(
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
