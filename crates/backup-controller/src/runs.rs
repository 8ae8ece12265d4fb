//! The backups and restores this process is running, the stored runs as last listed, and the nudges that
//! make a ClusterBackup's status follow its runs.
//!
//! A run is registered (as `New`) before the status that announces it is written, and started
//! only after that write, so a run never exists without its status record: after a crash or a
//! lost lease the next leader finds every run it did not finish recorded as in progress, and
//! marks it Failed (Velero's rule for interrupted work).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backup_core::{BackupStatus, StoredBackup};
use jiff::Timestamp;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::NamespacedName;
use backup_api::ClusterBackup;
use backup_api::{BackupRecord, EtcdBackupConfig, ManagementBackup};

/// The smallest gap between two status refreshes a ClusterBackup's runs ask for.
pub const NUDGE_INTERVAL: Duration = Duration::from_secs(1);

/// Which run: project, ClusterBackup, cluster.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RunKey {
    /// The namespace.
    pub namespace: String,
    /// The ClusterBackup.
    pub backup: String,
    /// The ManagedCluster.
    pub cluster: String,
}

/// A run this process started (or is about to start).
#[derive(Debug, Clone, PartialEq)]
pub struct LiveRun {
    /// The backup's name.
    pub name: String,
    /// The firing it belongs to.
    pub firing: Timestamp,
    /// Its status as the engine reports it.
    pub status: BackupStatus,
}

/// One cluster's stored runs of one ClusterBackup, and when they were listed.
#[derive(Debug, Clone)]
pub struct Listing {
    /// When reading it started.
    pub at: Instant,
    /// The runs, oldest first; or why they could not be listed.
    pub runs: Result<Vec<StoredBackup>, String>,
}

#[derive(Default)]
struct Nudges {
    last: HashMap<ObjectRef<ClusterBackup>, Instant>,
    pending: std::collections::HashSet<ObjectRef<ClusterBackup>>,
}

/// One of our objects by namespace, name and uid (a recreated object starts afresh).
pub type ObjectKey = (String, String, String);

/// Live runs, listings and the reconcile trigger. Cheap to clone.
#[derive(Clone)]
pub struct Runs {
    live: Arc<Mutex<HashMap<RunKey, LiveRun>>>,
    listings: Arc<Mutex<HashMap<RunKey, Listing>>>,
    tasks: Arc<Mutex<HashMap<NamespacedName, Vec<AbortHandle>>>>,
    fired: Arc<Mutex<HashMap<ObjectKey, Timestamp>>>,
    orphan_checks: Arc<Mutex<HashMap<RunKey, Instant>>>,
    nudges: Arc<Mutex<Nudges>>,
    progress_writes: Arc<Mutex<HashMap<ObjectKey, Instant>>>,
    restores: Arc<Mutex<HashMap<ObjectKey, Option<AbortHandle>>>>,
    run_now: Arc<Mutex<HashMap<ObjectKey, String>>>,
    recorded: Arc<Mutex<HashMap<ObjectKey, RecordedRun>>>,
    trigger: mpsc::UnboundedSender<ObjectRef<ClusterBackup>>,
    etcd_trigger: mpsc::UnboundedSender<ObjectRef<EtcdBackupConfig>>,
    management_trigger: mpsc::UnboundedSender<ObjectRef<ManagementBackup>>,
}

/// Where reconcile requests from running work come out.
pub struct Triggers {
    /// ClusterBackups whose runs progressed or ended.
    pub backups: mpsc::UnboundedReceiver<ObjectRef<ClusterBackup>>,
    /// EtcdBackupConfigs whose snapshot ended.
    pub etcd: mpsc::UnboundedReceiver<ObjectRef<EtcdBackupConfig>>,
    /// ManagementBackups whose run ended.
    pub management: mpsc::UnboundedReceiver<ObjectRef<ManagementBackup>>,
}

/// The run this process has for an object that records its runs (an EtcdBackupConfig's
/// snapshot, a ManagementBackup's backup), or its outcome not yet seen in the object's status.
#[derive(Debug, Clone, Default)]
pub struct RecordedRun {
    task: Option<AbortHandle>,
    /// The run's name.
    pub name: String,
    /// Set when the run ended.
    pub finished: Option<RunFinished>,
}

/// How a recorded run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct RunFinished {
    /// Its record, final.
    pub record: BackupRecord,
    /// Runs rotation deleted after it.
    pub deleted: Vec<String>,
    /// Runs rotation could not delete, with why.
    pub refused: Vec<(String, String)>,
    /// When rotation ended.
    pub at: Timestamp,
}

/// Which object to reconcile when its recorded run ends.
pub enum Wake {
    /// An EtcdBackupConfig.
    Etcd(ObjectRef<EtcdBackupConfig>),
    /// A ManagementBackup.
    Management(ObjectRef<ManagementBackup>),
}

/// How long a progress write must wait after the last one at `last` (pure).
fn progress_write_wait(last: Option<Instant>, now: Instant) -> Option<Duration> {
    let since = now.duration_since(last?);
    (since < NUDGE_INTERVAL).then(|| NUDGE_INTERVAL - since)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Runs {
    /// An empty table; reconcile requests come out of the [`Triggers`].
    pub fn new() -> (Self, Triggers) {
        let (trigger, receiver) = mpsc::unbounded_channel();
        let (etcd_trigger, etcd_receiver) = mpsc::unbounded_channel();
        let (management_trigger, management_receiver) = mpsc::unbounded_channel();
        let runs = Runs {
            live: Arc::default(),
            listings: Arc::default(),
            tasks: Arc::default(),
            fired: Arc::default(),
            orphan_checks: Arc::default(),
            nudges: Arc::default(),
            progress_writes: Arc::default(),
            restores: Arc::default(),
            run_now: Arc::default(),
            recorded: Arc::default(),
            trigger,
            etcd_trigger,
            management_trigger,
        };
        (
            runs,
            Triggers {
                backups: receiver,
                etcd: etcd_receiver,
                management: management_receiver,
            },
        )
    }

    /// The run of `key` this process knows, if any.
    pub fn live(&self, key: &RunKey) -> Option<LiveRun> {
        lock(&self.live).get(key).cloned()
    }

    /// Records runs about to start, each `New`.
    pub fn register(&self, keys: &[(RunKey, String)], firing: Timestamp) {
        let mut live = lock(&self.live);
        for (key, name) in keys {
            live.insert(
                key.clone(),
                LiveRun {
                    name: name.clone(),
                    firing,
                    status: BackupStatus::default(),
                },
            );
        }
    }

    /// Forgets runs registered by [`Runs::register`] that will not start after all.
    pub fn unregister(&self, keys: &[(RunKey, String)]) {
        let mut live = lock(&self.live);
        for (key, name) in keys {
            if live.get(key).is_some_and(|run| &run.name == name) {
                live.remove(key);
            }
        }
    }

    /// Updates the status of a live run (ignored if another run replaced it).
    pub fn update(&self, key: &RunKey, name: &str, status: BackupStatus) {
        if let Some(run) = lock(&self.live).get_mut(key)
            && run.name == name
        {
            run.status = status;
        }
    }

    /// Whether any registered run of `backup` in `namespace` has not finished.
    pub fn any_running(&self, namespace: &str, backup: &str) -> bool {
        lock(&self.live).iter().any(|(k, run)| {
            k.namespace == namespace && k.backup == backup && !run.status.phase.is_terminal()
        })
    }

    /// The stored runs of `key` as last listed.
    pub fn listing(&self, key: &RunKey) -> Option<Listing> {
        lock(&self.listings).get(key).cloned()
    }

    /// Records a listing whose reading started at `started`, unless one started later is
    /// recorded already: a slow listing must not replace a newer one that holds a run which
    /// ended meanwhile. Returns the listing recorded now.
    pub fn set_listing(
        &self,
        key: RunKey,
        runs: Result<Vec<StoredBackup>, String>,
        started: Instant,
    ) -> Listing {
        let mut listings = lock(&self.listings);
        match listings.get(&key) {
            Some(newer) if newer.at > started => newer.clone(),
            _ => {
                let listing = Listing { at: started, runs };
                listings.insert(key, listing.clone());
                listing
            }
        }
    }

    /// Forgets everything about a deleted ClusterBackup.
    pub fn forget(&self, namespace: &str, backup: &str) {
        let ours = |k: &RunKey| k.namespace == namespace && k.backup == backup;
        lock(&self.live).retain(|k, _| !ours(k));
        lock(&self.listings).retain(|k, _| !ours(k));
        lock(&self.fired).retain(|(ns, name, _), _| !(ns == namespace && name == backup));
        lock(&self.run_now).retain(|(ns, name, _), _| !(ns == namespace && name == backup));
    }

    /// The newest firing of a ClusterBackup (by namespace, name and uid) this process started,
    /// which its status may not show yet.
    pub fn last_fired(&self, namespace: &str, backup: &str, uid: &str) -> Option<Timestamp> {
        lock(&self.fired)
            .get(&(namespace.into(), backup.into(), uid.into()))
            .copied()
    }

    /// Records a firing whose status was written.
    pub fn set_fired(&self, namespace: &str, backup: &str, uid: &str, at: Timestamp) {
        lock(&self.fired).insert((namespace.into(), backup.into(), uid.into()), at);
    }

    /// The last run-now token this process served for a ClusterBackup (its status may not
    /// show it yet).
    pub fn run_now_served(&self, namespace: &str, backup: &str, uid: &str) -> Option<String> {
        lock(&self.run_now)
            .get(&(namespace.into(), backup.into(), uid.into()))
            .cloned()
    }

    /// Records a run-now token whose firing's status was written.
    pub fn set_run_now_served(&self, namespace: &str, backup: &str, uid: &str, token: &str) {
        lock(&self.run_now).insert((namespace.into(), backup.into(), uid.into()), token.into());
    }

    /// Whether the scope of `key`'s cluster was last checked for interrupted uploads at least
    /// `every` ago (or never); if so, records a check now.
    pub fn due_for_orphan_check(&self, key: &RunKey, every: Duration) -> bool {
        let mut checks = lock(&self.orphan_checks);
        let now = Instant::now();
        match checks.get(key) {
            Some(last) if now.duration_since(*last) < every => false,
            _ => {
                checks.insert(key.clone(), now);
                true
            }
        }
    }

    /// Keeps the task running a firing of `backup` so it can be stopped.
    pub fn track(&self, namespace: &str, backup: &str, task: tokio::task::JoinHandle<()>) {
        let mut tasks = lock(&self.tasks);
        for handles in tasks.values_mut() {
            handles.retain(|t| !t.is_finished());
        }
        tasks.retain(|_, handles| !handles.is_empty());
        tasks
            .entry((namespace.into(), backup.into()))
            .or_default()
            .push(task.abort_handle());
    }

    /// Stops the runs of one ClusterBackup (it is being deleted).
    pub fn abort(&self, namespace: &str, backup: &str) {
        if let Some(handles) = lock(&self.tasks).remove(&(namespace.into(), backup.into())) {
            for task in handles {
                task.abort();
            }
        }
    }

    /// Claims `key` for a restore about to start in this process; false when one runs already.
    /// Claimed before the status announcing the restore is written, like [`Runs::register`].
    pub fn claim_restore(&self, key: &ObjectKey) -> bool {
        let mut restores = lock(&self.restores);
        if restores.contains_key(key) {
            return false;
        }
        restores.insert(key.clone(), None);
        true
    }

    /// Keeps the task of a claimed restore so it can be stopped (unless it already ended).
    pub fn track_restore(&self, key: &ObjectKey, task: &tokio::task::JoinHandle<()>) {
        if let Some(slot) = lock(&self.restores).get_mut(key) {
            *slot = Some(task.abort_handle());
        }
    }

    /// Whether a restore of `key` runs in this process.
    pub fn restore_running(&self, key: &ObjectKey) -> bool {
        lock(&self.restores).contains_key(key)
    }

    /// Releases `key`: its restore ended (its final status is written) or never started.
    pub fn end_restore(&self, key: &ObjectKey) {
        lock(&self.restores).remove(key);
    }

    /// Stops the restore of `key` (its ClusterRestore is being deleted).
    pub fn abort_restore(&self, key: &ObjectKey) {
        if let Some(Some(task)) = lock(&self.restores).remove(key) {
            task.abort();
        }
    }

    /// The recorded run of an object (namespace, name, uid) this process runs or ran.
    pub fn recorded_run(&self, key: &ObjectKey) -> Option<RecordedRun> {
        lock(&self.recorded).get(key).cloned()
    }

    /// Claims `key` for a run named `name` about to start; false when one runs already.
    /// Claimed before the status announcing it is written, like [`Runs::register`].
    pub fn claim_recorded(&self, key: &ObjectKey, name: &str) -> bool {
        let mut recorded = lock(&self.recorded);
        if recorded.contains_key(key) {
            return false;
        }
        recorded.insert(
            key.clone(),
            RecordedRun {
                name: name.to_string(),
                ..RecordedRun::default()
            },
        );
        true
    }

    /// Keeps the task of a claimed run so it can be stopped (unless it already ended).
    pub fn track_recorded(&self, key: &ObjectKey, task: &tokio::task::JoinHandle<()>) {
        if let Some(run) = lock(&self.recorded).get_mut(key)
            && run.finished.is_none()
        {
            run.task = Some(task.abort_handle());
        }
    }

    /// Records how the run of `key` ended and asks for a reconcile of its object to write it.
    pub fn finish_recorded(&self, key: &ObjectKey, finished: RunFinished, wake: Wake) {
        if let Some(run) = lock(&self.recorded).get_mut(key) {
            run.task = None;
            run.finished = Some(finished);
        }
        let _ = match wake {
            Wake::Etcd(object) => self.etcd_trigger.send(object).is_ok(),
            Wake::Management(object) => self.management_trigger.send(object).is_ok(),
        };
    }

    /// Releases `key`: its outcome is in the status (or it never started, or the object is
    /// being deleted: its task is stopped).
    pub fn release_recorded(&self, key: &ObjectKey) {
        if let Some(RecordedRun {
            task: Some(task), ..
        }) = lock(&self.recorded).remove(key)
        {
            task.abort();
        }
    }

    /// Stops every run at once (the lease was lost): nothing they write is committed. Their
    /// records are dropped; the next leader marks them Failed.
    pub fn abort_all(&self) {
        for (_, handles) in lock(&self.tasks).drain() {
            for task in handles {
                task.abort();
            }
        }
        for (_, task) in lock(&self.restores).drain() {
            if let Some(task) = task {
                task.abort();
            }
        }
        for (_, run) in lock(&self.recorded).drain() {
            if let Some(task) = run.task {
                task.abort();
            }
        }
        lock(&self.live).clear();
        lock(&self.fired).clear();
        lock(&self.run_now).clear();
    }

    /// Whether a ClusterBackup's status that only shows its runs progressing may be written
    /// now (`None`, and the write is counted) or how long to wait first. A ClusterBackup is
    /// woken by its own status writes, so without this a fleet run rewrote its status (one
    /// entry per cluster) as fast as the management API took it: one write per
    /// [`NUDGE_INTERVAL`] shows progress as well at a fraction of that API's work.
    pub fn hold_progress_write(&self, key: &ObjectKey) -> Option<Duration> {
        let now = Instant::now();
        let mut writes = lock(&self.progress_writes);
        let wait = progress_write_wait(writes.get(key).copied(), now);
        if wait.is_none() {
            writes.insert(key.clone(), now);
        }
        wait
    }

    /// Asks for a reconcile of `backup`, at most once per [`NUDGE_INTERVAL`]: the first nudge
    /// goes at once, later ones within the interval are folded into one at its end.
    pub fn nudge(&self, backup: ObjectRef<ClusterBackup>) {
        let now = Instant::now();
        let wait = {
            let mut nudges = lock(&self.nudges);
            if nudges.pending.contains(&backup) {
                return;
            }
            match nudges.last.get(&backup).copied() {
                Some(last) if now.duration_since(last) < NUDGE_INTERVAL => {
                    nudges.pending.insert(backup.clone());
                    NUDGE_INTERVAL - now.duration_since(last)
                }
                _ => {
                    nudges.last.insert(backup.clone(), now);
                    let _ = self.trigger.send(backup);
                    return;
                }
            }
        };
        let this = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            {
                let mut nudges = lock(&this.nudges);
                nudges.pending.remove(&backup);
                nudges.last.insert(backup.clone(), Instant::now());
            }
            let _ = this.trigger.send(backup);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backup_core::Phase;

    fn key(cluster: &str) -> RunKey {
        RunKey {
            namespace: "p".into(),
            backup: "nightly".into(),
            cluster: cluster.into(),
        }
    }

    #[test]
    fn registered_runs_are_live_until_unregistered_and_updates_follow_the_name() {
        let (runs, _rx) = Runs::new();
        let firing = Timestamp::from_second(1_800_000_000).unwrap();
        let keys = vec![(key("c1"), "nightly-a".to_string())];
        runs.register(&keys, firing);
        assert!(runs.any_running("p", "nightly"));
        let done = BackupStatus {
            phase: Phase::Completed,
            ..BackupStatus::default()
        };
        runs.update(&key("c1"), "other-name", done.clone());
        assert_eq!(runs.live(&key("c1")).unwrap().status.phase, Phase::New);
        runs.update(&key("c1"), "nightly-a", done);
        assert!(!runs.any_running("p", "nightly"));
        runs.unregister(&keys);
        assert!(runs.live(&key("c1")).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_listing_does_not_replace_one_started_after_it() {
        let (runs, _rx) = Runs::new();
        let slow = Instant::now();
        tokio::time::sleep(Duration::from_millis(10)).await;
        let fresh = Instant::now();
        let kept = runs.set_listing(key("c1"), Ok(vec![]), fresh);
        assert_eq!(kept.at, fresh);
        let kept = runs.set_listing(key("c1"), Err("stale".into()), slow);
        assert_eq!(kept.at, fresh, "the newer listing stays");
        assert!(runs.listing(&key("c1")).unwrap().runs.is_ok());
        tokio::time::sleep(Duration::from_millis(10)).await;
        let newer = Instant::now();
        let kept = runs.set_listing(key("c1"), Err("newer".into()), newer);
        assert_eq!(kept.at, newer);
    }

    #[test]
    fn progress_writes_are_spaced_by_the_nudge_interval() {
        let start = Instant::now();
        assert_eq!(progress_write_wait(None, start), None);
        assert_eq!(
            progress_write_wait(Some(start), start + Duration::from_millis(300)),
            Some(NUDGE_INTERVAL - Duration::from_millis(300))
        );
        assert_eq!(
            progress_write_wait(Some(start), start + NUDGE_INTERVAL),
            None
        );
    }

    #[tokio::test(start_paused = true)]
    async fn nudges_are_folded_into_one_per_interval() {
        let (runs, triggers) = Runs::new();
        let mut rx = triggers.backups;
        let backup = ObjectRef::<ClusterBackup>::new("nightly").within("p");
        runs.nudge(backup.clone());
        runs.nudge(backup.clone());
        runs.nudge(backup.clone());
        assert_eq!(rx.recv().await, Some(backup.clone()));
        assert!(rx.try_recv().is_err(), "the second and third nudge wait");
        tokio::time::sleep(NUDGE_INTERVAL).await;
        assert_eq!(rx.recv().await, Some(backup.clone()));
        assert!(rx.try_recv().is_err(), "folded into one");
    }
}
