//! The direct (agentless) engine: reads a cluster's API from outside and writes Velero's format
//! itself, so no agent and no storage credential ever enters the cluster.
//!
//! Backups and restores run as tasks of the caller's tokio runtime; `observe_*` reports their
//! live phase and progress, and for operations this engine did not start falls back to what
//! storage says: the committed `velero-backup.json` of a backup, the results Velero's format
//! keeps of a finished restore (see `lookup.rs`). A process that dies mid-backup leaves no
//! manifest, so the backup is never listed.
//!
//! Encryption at rest belongs to the repository (see `backup_storage::crypt`): an engine whose
//! repository has recipients writes every artifact (tarball and side files) encrypted, one with
//! identities decrypts while restoring. Listing and observing read manifests only, so they need
//! no keys; a restore of an encrypted backup without a matching identity is refused by
//! `start_restore`, before anything is created or stored.
//!
//! A restore may name a schedule instead of a backup: like Velero, the engine restores that
//! schedule's newest `Completed` backup in the repository, found by the
//! [`SCHEDULE_LABEL`] (`velero.io/schedule-name`) in its `velero-backup.json` (written from the
//! backup spec's labels).

mod backup;
mod collect;
mod errors;
pub mod liveness;
mod lookup;
mod plan;
mod report;
mod restore;
pub mod sanitize;
mod spill;
mod spool;
pub mod stored;
pub mod verify;
pub mod volumes;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use backup_core::{
    BackupEngine, BackupKind, BackupSpec, BackupStatus, EngineError, LabelSelector, Phase,
    Progress, RestoreEngine, RestoreSpec, RestoreStatus, StoredBackup, validate_dns1123_subdomain,
};
use backup_kube::discovery;
use backup_storage::{BackupName, Repository};
use futures::StreamExt;
use kube::Client;

pub use backup::{AdditionalItem, EXCLUDE_LABEL, PAGE_SIZE};
pub use errors::{engine_error, storage_error};
pub use lookup::{SCHEDULE_LABEL, list_restores, newest_completed, restore_log, stored_restore};
pub use report::{Action, ItemOutcome, ItemOutcomes, RestoreReport};
pub use restore::{DrillOptions, EXISTS_LEFT_UNCHANGED};

use crate::format::{BackupFiles, BackupObject};
use backup::BackupRun;
use collect::SharedStatus;
use restore::RestoreRun;

/// A backup or restore this engine started, with its live status.
#[derive(Clone)]
struct Operation<S> {
    spec: S,
    status: SharedStatus,
}

/// Restores started by one engine, with their detailed reports.
type RestoreTable = BTreeMap<String, (Operation<RestoreSpec>, Arc<Mutex<RestoreReport>>)>;

/// The agentless engine for one cluster and one (scoped) repository.
#[derive(Clone)]
pub struct DirectEngine {
    client: Client,
    repo: Repository,
    storage_location: String,
    backups: Arc<Mutex<BTreeMap<String, Operation<BackupSpec>>>>,
    restores: Arc<Mutex<RestoreTable>>,
    discovery: Option<discovery::DiscoveryCache>,
    tasks: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

fn backup_name(name: &str) -> Result<BackupName, EngineError> {
    validate_dns1123_subdomain(name)
        .map_err(|e| EngineError::Invalid(format!("name {name:?}: {e}")))?;
    BackupName::new(name).map_err(storage_error)
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl DirectEngine {
    /// An engine reading the cluster behind `client` and writing into `repo` (already scoped
    /// to the cluster's project/cluster prefix).
    pub fn new(client: Client, repo: Repository) -> Self {
        DirectEngine {
            client,
            repo,
            storage_location: "default".into(),
            backups: Arc::default(),
            restores: Arc::default(),
            discovery: None,
            tasks: Arc::default(),
        }
    }

    /// Shares discovery results with other engines for the same cluster (see
    /// [`discovery::DiscoveryCache`]).
    pub fn with_discovery_cache(mut self, cache: discovery::DiscoveryCache) -> Self {
        self.discovery = Some(cache);
        self
    }

    /// Stops every backup and restore this engine (and its clones) is running. Nothing they
    /// were writing is committed: an aborted backup leaves no manifest, so it is never listed.
    /// For a controller that loses its leadership and must stop writing at once.
    pub fn abort_all(&self) {
        for task in locked(&self.tasks).drain(..) {
            task.abort();
        }
    }

    fn track(&self, task: tokio::task::JoinHandle<()>) {
        let mut tasks = locked(&self.tasks);
        tasks.retain(|t| !t.is_finished());
        tasks.push(task.abort_handle());
    }

    /// Sets the location name recorded in `velero-backup.json` (`spec.storageLocation`).
    pub fn with_storage_location(mut self, name: impl Into<String>) -> Self {
        self.storage_location = name.into();
        self
    }

    /// [`RestoreEngine::start_restore`] as a drill when `drill` is set: into scratch
    /// namespaces, each restored object read back and compared with what the restore sent (the
    /// outcome in [`RestoreReport::verification`]).
    pub async fn start_restore_with(
        &self,
        name: &str,
        spec: &RestoreSpec,
        drill: Option<DrillOptions>,
    ) -> Result<(), EngineError> {
        let name_ok = backup_name(name)?;
        spec.validate()
            .map_err(|e| EngineError::Invalid(e.to_string()))?;
        if let Some((op, _)) = locked(&self.restores).get(name) {
            return if &op.spec == spec {
                Ok(())
            } else {
                Err(EngineError::AlreadyExists {
                    what: "restore",
                    name: name.into(),
                })
            };
        }
        let modifiers = spec
            .resource_modifiers
            .as_ref()
            .map(|m| m.compile())
            .transpose()
            .map_err(|e| EngineError::Invalid(e.to_string()))?;
        let (backup_ok, source) = resolve_restore_source(&self.repo, spec).await?;
        // An encrypted backup without a matching identity is refused here, before the run
        // starts: nothing is created in the cluster and nothing is written to storage.
        source.ensure_readable(&self.repo)?;
        // So is one whose volume data this engine would drop (it restores objects only).
        let volumes = volumes::volume_data(&self.repo, &backup_ok, &spec.options.filter).await?;
        if !volumes.is_empty() {
            return Err(EngineError::Invalid(format!(
                "backup {backup_ok} holds volume data ({}), which the direct engine cannot \
                 restore: the volumes would come back empty; restore it with the Velero that \
                 took it, or leave those namespaces out of the restore",
                volumes::describe(&volumes)
            )));
        }
        if lookup::restore_stored(&self.repo, &name_ok).await? {
            return Err(EngineError::AlreadyExists {
                what: "restore",
                name: name.into(),
            });
        }
        // A restore that writes to the cluster leaves signs of life in storage from its start,
        // so that one cut off mid-way is recorded Failed by the next reader. The first is
        // written before the run is registered: if storage refuses it, nothing has started.
        if !spec.options.dry_run {
            let records = self.repo.for_restore_records();
            liveness::beat(&records, &name_ok, &backup_ok, jiff::Timestamp::now()).await?;
        }
        let status = SharedStatus::default();
        let report = Arc::new(Mutex::new(RestoreReport {
            backup: backup_ok.to_string(),
            ..RestoreReport::default()
        }));
        locked(&self.restores).insert(
            name.into(),
            (
                Operation {
                    spec: spec.clone(),
                    status: status.clone(),
                },
                report.clone(),
            ),
        );
        let run = RestoreRun {
            client: self.client.clone(),
            repo: self.repo.clone(),
            name: name_ok.clone(),
            backup: backup_ok.clone(),
            velero_written: matches!(source, RestoreSource::VeleroWritten),
            spec: spec.clone(),
            status: status.clone(),
            report,
            modifiers,
            drill,
        };
        let repo = self.repo.clone();
        let dry_run = spec.options.dry_run;
        let beating = (!dry_run).then(|| {
            tokio::spawn(liveness::keep_beating(
                self.repo.for_restore_records(),
                name_ok.clone(),
                backup_ok.clone(),
            ))
        });
        self.track(tokio::spawn(async move {
            let result = run.run().await;
            if let Some(beating) = beating {
                beating.abort();
            }
            if let Err(e) = result {
                tracing::warn!(error = %e, "direct restore failed");
                let mut last = status.get();
                mark_failed(&mut last, &e);
                // Velero's restore files cannot say "Failed"; keep the outcome for observers
                // in other processes (a dry run leaves storage untouched). Stored before it is
                // published, so a caller that exits on seeing Failed does not cut the write.
                if !dry_run
                    && let Err(e) =
                        lookup::write_failure_record(&repo, &name_ok, &backup_ok, &last).await
                {
                    tracing::warn!(error = %e, "recording the failed restore in storage failed");
                }
                status.update(|s| *s = last);
            }
        }));
        Ok(())
    }

    /// [`BackupEngine::start_backup`] with objects backed up besides the filter's (see
    /// [`AdditionalItem`]): for a caller that knows which objects belong together, as the
    /// controller's backup of the management cluster knows the Secrets its objects reference.
    pub async fn start_backup_with(
        &self,
        name: &str,
        spec: &BackupSpec,
        additional: Vec<AdditionalItem>,
    ) -> Result<(), EngineError> {
        let name_ok = backup_name(name)?;
        if spec.kind != BackupKind::Resources {
            return Err(EngineError::Invalid(format!(
                "the direct engine backs up resources, not {:?}; use the etcd engine",
                spec.kind
            )));
        }
        spec.validate()
            .map_err(|e| EngineError::Invalid(e.to_string()))?;
        if let Some(op) = locked(&self.backups).get(name) {
            return if &op.spec == spec {
                Ok(())
            } else {
                Err(EngineError::AlreadyExists {
                    what: "backup",
                    name: name.into(),
                })
            };
        }
        match self
            .repo
            .get_manifest(BackupKind::Resources, &name_ok)
            .await
        {
            Ok(_) => {
                return Err(EngineError::AlreadyExists {
                    what: "backup",
                    name: name.into(),
                });
            }
            Err(backup_storage::StorageError::BackupNotFound { .. }) => {}
            Err(e) => return Err(storage_error(e)),
        }
        let found = match &self.discovery {
            Some(cache) => cache.get(&self.client).await,
            None => discovery::discover(&self.client).await.map(Arc::new),
        }
        .map_err(backup::preflight_error)?;
        let status = SharedStatus::default();
        {
            let mut backups = locked(&self.backups);
            if backups.contains_key(name) {
                return Err(EngineError::AlreadyExists {
                    what: "backup",
                    name: name.into(),
                });
            }
            backups.insert(
                name.into(),
                Operation {
                    spec: spec.clone(),
                    status: status.clone(),
                },
            );
        }
        let run = BackupRun {
            client: self.client.clone(),
            repo: self.repo.clone(),
            name: name_ok,
            spec: spec.clone(),
            storage_location: self.storage_location.clone(),
            status: status.clone(),
            resources: found.resources.clone(),
            discovery_warnings: found.warnings.clone(),
            additional,
        };
        self.track(tokio::spawn(async move {
            if let Err(e) = run.run().await {
                tracing::warn!(error = %e, "direct backup failed");
                failed(&status, &e);
            }
        }));
        Ok(())
    }

    /// The repository backups go to.
    pub fn repository(&self) -> &Repository {
        &self.repo
    }

    /// Waits until the backup reaches a terminal phase: woken by its phase changes when this
    /// engine runs it, else polling storage.
    pub async fn wait_backup(&self, name: &str) -> Result<BackupStatus, EngineError> {
        let mut changes = self.phase_changes(name);
        loop {
            let status = self.observe_backup(name).await?;
            if status.phase.is_terminal() {
                return Ok(status);
            }
            wait_for_change(changes.as_mut()).await;
        }
    }

    /// Waits until the restore reaches a terminal phase (as [`DirectEngine::wait_backup`]).
    pub async fn wait_restore(&self, name: &str) -> Result<RestoreStatus, EngineError> {
        let mut changes = self.phase_changes(name);
        loop {
            let status = self.observe_restore(name).await?;
            if status.phase.is_terminal() {
                return Ok(status);
            }
            wait_for_change(changes.as_mut()).await;
        }
    }

    /// Phase changes of a backup or restore this engine runs, so a caller waits for its end
    /// instead of polling for it; `None` for one it does not run.
    pub fn phase_changes(
        &self,
        name: &str,
    ) -> Option<tokio::sync::watch::Receiver<backup_core::Phase>> {
        if let Some(op) = locked(&self.backups).get(name) {
            return Some(op.status.phase_changes());
        }
        locked(&self.restores)
            .get(name)
            .map(|(op, _)| op.status.phase_changes())
    }

    /// The detailed report of a restore started by this engine (items and their outcome).
    pub fn restore_report(&self, name: &str) -> Option<RestoreReport> {
        locked(&self.restores)
            .get(name)
            .map(|(_, report)| locked(report).clone())
    }

    /// Reads a committed backup's `velero-backup.json`.
    pub async fn stored_backup(&self, name: &str) -> Result<BackupObject, EngineError> {
        read_backup_object(&self.repo, &backup_name(name)?).await
    }
}

/// How often storage is asked about work another process runs.
const STORED_POLL: Duration = Duration::from_millis(100);

/// Waits for the next phase change, or [`STORED_POLL`] when there is nothing to be told by (a
/// closed channel means the run's task ended: its final status is there to read).
async fn wait_for_change(changes: Option<&mut tokio::sync::watch::Receiver<backup_core::Phase>>) {
    match changes {
        Some(changes) => {
            if changes.changed().await.is_err() {
                tokio::time::sleep(STORED_POLL).await;
            }
        }
        None => tokio::time::sleep(STORED_POLL).await,
    }
}

/// Where a restore's backup comes from: committed by us (its manifest verifies every file)
/// or written by Velero into a shared location (no manifest; Velero records no checksum).
#[derive(Debug, Clone)]
pub enum RestoreSource {
    /// Ours: `backupctl`, the controller, any of our engines.
    Committed(backup_storage::Manifest),
    /// Velero's own: read as stored, checked only by the formats themselves.
    VeleroWritten,
}

impl RestoreSource {
    /// Refuses, before anything is created, an encrypted backup `repo` holds no key for.
    pub fn ensure_readable(&self, repo: &Repository) -> Result<(), EngineError> {
        match self {
            RestoreSource::Committed(manifest) => {
                repo.ensure_readable(manifest).map_err(storage_error)
            }
            RestoreSource::VeleroWritten => Ok(()),
        }
    }
}

/// The backup a restore reads, with where it comes from: the one `spec` names, or the newest
/// Completed backup of `spec.schedule_name`.
pub async fn resolve_restore_source(
    repo: &Repository,
    spec: &RestoreSpec,
) -> Result<(BackupName, RestoreSource), EngineError> {
    let backup = match (&spec.backup_name, &spec.schedule_name) {
        (Some(backup), _) => backup_name(backup)?,
        (None, Some(schedule)) => lookup::resolve_schedule(repo, schedule).await?,
        (None, None) => {
            return Err(EngineError::Invalid(
                "a restore needs backupName or scheduleName".into(),
            ));
        }
    };
    match repo.get_manifest(BackupKind::Resources, &backup).await {
        Ok(manifest) => Ok((backup, RestoreSource::Committed(manifest))),
        Err(e @ backup_storage::StorageError::BackupNotFound { .. }) => {
            if repo
                .written_by_velero(BackupKind::Resources, &backup)
                .await
                .map_err(storage_error)?
            {
                Ok((backup, RestoreSource::VeleroWritten))
            } else {
                Err(storage_error(e))
            }
        }
        Err(e) => Err(storage_error(e)),
    }
}

/// Deletes a restore's files (`restores/<name>/`: Velero's results, logs and resource list,
/// and our failure record) from `repo`; returns how many objects were deleted. Deleting a
/// restore that left nothing is not an error. A ReadOnly location refuses.
pub async fn delete_restore(repo: &Repository, name: &str) -> Result<usize, EngineError> {
    let name = backup_name(name)?;
    lookup::delete_restore_files(repo, &name).await
}

/// Reads the Velero Backup object of a committed backup (verified against the manifest).
pub async fn read_backup_object(
    repo: &Repository,
    name: &BackupName,
) -> Result<BackupObject, EngineError> {
    let files = BackupFiles::new(name).map_err(storage_error)?;
    let mut stream = repo
        .open_artifact(BackupKind::Resources, name, &files.backup_object)
        .await
        .map_err(storage_error)?;
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk.map_err(storage_error)?);
    }
    BackupObject::from_json(&bytes).map_err(|e| EngineError::Other(format!("backup {name}: {e}")))
}

fn status_from_stored(b: &StoredBackup) -> BackupStatus {
    BackupStatus {
        phase: b.phase,
        progress: Progress {
            items_done: b.items_backed_up,
            total_items: b.total_items,
        },
        started: b.started,
        completed: b.completed,
        ..BackupStatus::default()
    }
}

fn failed(status: &SharedStatus, e: &EngineError) {
    status.update(|s| mark_failed(s, e));
}

fn mark_failed(s: &mut BackupStatus, e: &EngineError) {
    s.phase = Phase::Failed;
    s.completed = Some(jiff::Timestamp::now());
    s.errors.push(e.to_string());
}

#[async_trait]
impl BackupEngine for DirectEngine {
    /// Validates, checks the name is free and the cluster reachable, then runs in the background.
    async fn start_backup(&self, name: &str, spec: &BackupSpec) -> Result<(), EngineError> {
        self.start_backup_with(name, spec, Vec::new()).await
    }

    /// The live status of a backup this engine runs; otherwise what its manifest records
    /// (readable without keys, also for encrypted backups), or for manifests that predate
    /// those attributes its `velero-backup.json`.
    async fn observe_backup(&self, name: &str) -> Result<BackupStatus, EngineError> {
        if let Some(op) = locked(&self.backups).get(name) {
            return Ok(op.status.get());
        }
        let manifest = self
            .repo
            .get_manifest(BackupKind::Resources, &backup_name(name)?)
            .await
            .map_err(storage_error)?;
        if let Some(stored) = stored::from_attributes(&manifest)? {
            return Ok(status_from_stored(&stored));
        }
        let object = self.stored_backup(name).await?;
        Ok(status_from_stored(&stored::from_object(&object)))
    }

    async fn delete_backup(&self, name: &str) -> Result<(), EngineError> {
        let name_ok = backup_name(name)?;
        if let Some(op) = locked(&self.backups).get(name)
            && !op.status.get().phase.is_terminal()
        {
            return Err(EngineError::Invalid(format!(
                "backup {name} is still running; wait for it to finish before deleting it"
            )));
        }
        match self
            .repo
            .get_manifest(BackupKind::Resources, &name_ok)
            .await
        {
            Ok(_) => {}
            Err(e) => return Err(storage_error(e)),
        }
        self.repo
            .delete(BackupKind::Resources, &name_ok)
            .await
            .map_err(storage_error)?;
        locked(&self.backups).remove(name);
        Ok(())
    }

    async fn list_backups(
        &self,
        selector: &LabelSelector,
    ) -> Result<Vec<StoredBackup>, EngineError> {
        stored::list(&self.repo, selector).await
    }
}

#[async_trait]
impl RestoreEngine for DirectEngine {
    /// Validates, checks the backup exists and the restore name is free, then runs in the
    /// background.
    async fn start_restore(&self, name: &str, spec: &RestoreSpec) -> Result<(), EngineError> {
        self.start_restore_with(name, spec, None).await
    }

    /// The live status of a restore this engine started; otherwise the final status storage
    /// records (restores finished by another engine or process), else `NotFound`.
    async fn observe_restore(&self, name: &str) -> Result<RestoreStatus, EngineError> {
        if let Some((op, _)) = locked(&self.restores).get(name) {
            return Ok(op.status.get());
        }
        let not_found = || EngineError::NotFound {
            what: "restore",
            name: name.into(),
        };
        // A name that is not valid was never stored.
        let Ok(name_ok) = backup_name(name) else {
            return Err(not_found());
        };
        lookup::stored_restore(&self.repo, &name_ok)
            .await?
            .ok_or_else(not_found)
    }
}
