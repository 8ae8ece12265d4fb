//! One reconciler per kind, each a small function over (object, context) run under kube's
//! finalizer helper. Every kind has the same four steps, so a newcomer who has read one has
//! read them all:
//!
//! 1. **validate**: the spec into its valid form (`backup_api`'s `validate`), or an
//!    `InvalidSpec` condition and nothing else;
//! 2. **observe**: reads only (the stores, the StorageLocation, storage, this process's runs)
//!    into one value of facts, with no rule applied to them;
//! 3. **plan**: a pure function of those facts and the injected clock into a decision (the
//!    status to write, the work to start, when to look again), tested exactly;
//! 4. **apply**: writes only, carrying the decision out.
//!
//! Why a kind cannot act is one [`Blocked`] value, shown as its `Ready` condition.
//!
//! Shared here: the finalizer's name, the status write (server-side apply of the whole
//! status), [`Blocked`], the backoff and the one `error_policy` every controller uses.

pub mod cluster_backup;
pub mod cluster_migration;
pub mod cluster_restore;
pub mod etcd_backup;
pub mod etcd_restore;
pub mod expiry_collector;
pub mod managed_cluster;
pub mod management_backup;
pub mod recorded_runs;
pub mod restore_drill;
pub mod retention;
pub mod schedule;
pub mod storage_location;
pub mod written;

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::context::{Context, FIELD_MANAGER};
use crate::error::{Error, Result};

/// The finalizer our kinds carry while the controller has something to clean up.
pub const FINALIZER: &str = "backupfleet.dev/cleanup";

/// Writes `status` as the whole status of `object`, by server-side apply.
pub async fn write_status<K>(ctx: &Context, object: &K, status: &impl Serialize) -> Result<()>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
{
    let name = object.name_any();
    let namespace = object.namespace().unwrap_or_default();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    let written = api
        .patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .map_err(|e| {
            Error::kube(
                format!("writing the status of {} {namespace}/{name}", K::kind(&())),
                e,
            )
        })?;
    ctx.written.record(
        &object.uid().unwrap_or_default(),
        written.meta().resource_version.as_deref(),
    );
    Ok(())
}

/// `Some` (look again soon) when the cached `object` is older than this process's last status
/// write to it: deciding from it would write the older status back (see [`written`]).
pub fn cached_copy_behind(ctx: &Context, object: &impl Resource) -> Option<Action> {
    let behind = ctx.written.behind(
        &object.uid().unwrap_or_default(),
        object.meta().resource_version.as_deref(),
    );
    behind.then(|| Action::requeue(CACHE_CATCH_UP))
}

/// How soon a reconcile of a stale copy looks again, should the watch event of the write that
/// made it stale not come (it normally reconciles the object sooner).
const CACHE_CATCH_UP: Duration = Duration::from_millis(500);

/// Runs `reconcile` under the finalizer helper, with metrics. `cleanup` runs when the object
/// is being deleted; the finalizer is removed after it succeeds.
pub async fn with_finalizer<K, A, C, FA, FC>(
    controller: &'static str,
    object: Arc<K>,
    ctx: Arc<Context>,
    apply: A,
    cleanup: C,
) -> Result<Action>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + Debug,
    A: FnOnce(Arc<K>, Arc<Context>) -> FA,
    C: FnOnce(Arc<K>, Arc<Context>) -> FC,
    FA: Future<Output = Result<Action>>,
    FC: Future<Output = Result<Action>>,
{
    if let Some(later) = cached_copy_behind(&ctx, object.as_ref()) {
        return Ok(later);
    }
    let started = std::time::Instant::now();
    let namespace = object.namespace().unwrap_or_default();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    let c = ctx.clone();
    let result = kube::runtime::finalizer(&api, FINALIZER, object, |event| async move {
        match event {
            kube::runtime::finalizer::Event::Apply(o) => apply(o, c).await,
            kube::runtime::finalizer::Event::Cleanup(o) => {
                let uid = o.uid().unwrap_or_default();
                let cleaned = cleanup(o, c.clone()).await;
                if cleaned.is_ok() {
                    // The object goes: nothing of it is reconciled again.
                    c.written.forget(&uid);
                }
                cleaned
            }
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    ctx.metrics.reconciled(controller, started.elapsed());
    result
}

/// Why an object cannot act now: a CamelCase reason and a message that names the fix. The one
/// type every kind's plan uses for it; [`Blocked::condition`] is how it is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    /// CamelCase reason.
    pub reason: String,
    /// What to fix.
    pub message: String,
}

impl Blocked {
    /// Blocked for `reason`, with `message` saying what to fix.
    pub fn new(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Blocked {
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// The unmet condition of `type_` (usually `Ready`) that says so.
    pub fn condition(&self, type_: &str) -> backup_api::status::Condition {
        backup_api::status::Condition::unmet(type_, &self.reason, self.message.clone())
    }
}

impl From<&backup_kube::locations::LocationProblem> for Blocked {
    fn from(problem: &backup_kube::locations::LocationProblem) -> Self {
        Blocked::new(problem.reason(), problem.to_string())
    }
}

/// Stops a direct engine's background work when the task driving it is dropped (aborted
/// because the lease was lost or its object deleted): the engine's own tasks would otherwise
/// run on unobserved.
pub struct AbortOnDrop(pub Option<backup_velero::direct::DirectEngine>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(engine) = &self.0 {
            engine.abort_all();
        }
    }
}

/// The waits between looks at work running in this process (a direct engine's backup or
/// restore, observed in memory): short at first, doubling up to `max`, so small work is seen
/// finished within tens of milliseconds of its end and long work costs few looks.
pub struct Poll {
    next: Duration,
    max: Duration,
}

impl Poll {
    /// The first wait.
    pub const FIRST: Duration = Duration::from_millis(20);

    /// Waits of [`Poll::FIRST`], doubling up to `max`.
    pub fn doubling_to(max: Duration) -> Self {
        Poll {
            next: Self::FIRST.min(max),
            max,
        }
    }

    /// Waits of `every`, always.
    pub fn every(every: Duration) -> Self {
        Poll {
            next: every,
            max: every,
        }
    }

    /// Sleeps for the next wait.
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(self.max);
    }

    /// Sleeps for the next wait, or less when `changes` (a direct engine's phase changes of
    /// the work) says the phase changed: the end of the work is seen as it happens.
    pub async fn wait_or_change(
        &mut self,
        changes: Option<&mut tokio::sync::watch::Receiver<backup_core::Phase>>,
    ) {
        match changes {
            Some(changes) => {
                tokio::select! {
                    changed = changes.changed() => {
                        // The sender is gone: its run ended; wait the period out.
                        if changed.is_err() {
                            self.wait().await;
                        }
                    }
                    _ = self.wait() => {}
                }
            }
            None => self.wait().await,
        }
    }
}

/// Consecutive failures per object, for exponential backoff.
#[derive(Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// The wait after one more failure of `key`: 2 s, 4 s, ... capped at 5 minutes.
    pub fn next(&self, key: String) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(key).or_insert(0);
        *n = n.saturating_add(1);
        Duration::from_secs(2u64.saturating_pow((*n).min(9)).min(300))
    }

    /// Forgets the failures of `key` (it reconciled fine).
    pub fn reset(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

/// The shared error policy: count the error, then back off exponentially on retryable errors;
/// anything else is retried after five minutes (a change to the object reconciles it sooner).
pub fn error_policy<K: Resource<DynamicType = ()>>(
    controller: &'static str,
    object: &K,
    error: &Error,
    ctx: &Context,
) -> Action {
    ctx.metrics.failed(controller, error);
    let key = ObjectRef::from_obj(object).to_string();
    if error.is_retryable() {
        let wait = ctx.backoff.next(key);
        tracing::warn!(%error, controller, object = %ObjectRef::from_obj(object), ?wait, "reconcile failed; retrying");
        Action::requeue(wait)
    } else {
        tracing::error!(%error, controller, object = %ObjectRef::from_obj(object), "reconcile failed");
        Action::requeue(Duration::from_secs(300))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_five_minutes_and_resets() {
        let b = Backoff::default();
        let waits: Vec<u64> = (0..10).map(|_| b.next("x".into()).as_secs()).collect();
        assert_eq!(waits[..4], [2, 4, 8, 16]);
        assert_eq!(*waits.last().unwrap(), 300);
        b.reset("x");
        assert_eq!(b.next("x".into()).as_secs(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn polls_double_up_to_the_period() {
        let mut poll = Poll::doubling_to(Duration::from_millis(100));
        let mut waits = Vec::new();
        for _ in 0..5 {
            let start = tokio::time::Instant::now();
            poll.wait().await;
            waits.push(start.elapsed().as_millis());
        }
        assert_eq!(waits, [20, 40, 80, 100, 100]);
    }
}
