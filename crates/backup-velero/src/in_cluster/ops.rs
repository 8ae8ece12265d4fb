//! The kube I/O of the in-cluster engine: locations, backups, schedules, restores, deletion.

use async_trait::async_trait;
use backup_core::{
    BackupEngine, BackupSpec as CoreBackupSpec, BackupStatus as CoreStatus, EngineError,
    LabelSelector as CoreSelector, RestoreEngine, RestoreSpec as CoreRestoreSpec,
    ScheduleSpec as CoreScheduleSpec, StorageLocationSpec, StoredBackup,
};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::{VeleroError, api_code};
use super::translate::{self, VELERO_BACKUP_NAME_LABEL, VELERO_BACKUP_UID_LABEL, object_name};
use super::{InClusterEngine, observe};
use crate::api::{
    Backup, BackupPhase, BackupStorageLocation, BackupStorageLocationAccessMode,
    BackupStorageLocationPhase, DeleteBackupRequest, DeleteBackupRequestSpec, Restore, Schedule,
    SchedulePhase, ScheduleStatus,
};

/// Whether every field set in `ours` has the same value in `theirs` (Velero fills defaults
/// into specs it processes, so equality would be too strict for idempotency checks).
pub(crate) fn is_subset(ours: &Value, theirs: &Value) -> bool {
    match (ours, theirs) {
        (Value::Object(a), Value::Object(b)) => a
            .iter()
            .all(|(k, v)| b.get(k).is_some_and(|w| is_subset(v, w))),
        _ => ours == theirs,
    }
}

impl InClusterEngine {
    pub(crate) fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.cfg.velero_namespace)
    }

    /// Turns a 404 into the reason: Velero's API missing, the namespace missing, or the object.
    pub(crate) async fn explain(
        &self,
        action: String,
        e: kube::Error,
        what: &'static str,
        name: &str,
    ) -> VeleroError {
        if api_code(&e) != Some(404) {
            return VeleroError::api(action, e);
        }
        if let Err(not_installed) = self.crds_present().await {
            return not_installed;
        }
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        if let Ok(None) = namespaces.get_opt(&self.cfg.velero_namespace).await {
            return VeleroError::NotInstalled {
                reason: format!(
                    "the Velero namespace {:?} does not exist",
                    self.cfg.velero_namespace
                ),
            };
        }
        VeleroError::NotFound {
            what,
            name: name.to_string(),
        }
    }

    async fn get<K>(&self, what: &'static str, name: &str) -> Result<K, VeleroError>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        match self.api::<K>().get(name).await {
            Ok(k) => Ok(k),
            Err(e) => Err(self
                .explain(format!("reading {what} {name}"), e, what, name)
                .await),
        }
    }

    /// Creates `obj`, or accepts an existing object whose spec contains ours (idempotent retry).
    async fn create_idempotent<K>(&self, what: &'static str, obj: &K) -> Result<(), VeleroError>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + Serialize
            + DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let name = obj.name_any();
        match self.api::<K>().create(&PostParams::default(), obj).await {
            Ok(_) => Ok(()),
            Err(e) if api_code(&e) == Some(409) => {
                let existing: K = self.get(what, &name).await?;
                let encode = |e: serde_json::Error| {
                    VeleroError::Invalid(format!("encoding {what} {name} to compare it: {e}"))
                };
                let ours = serde_json::to_value(obj).map_err(encode)?;
                let theirs = serde_json::to_value(&existing).map_err(encode)?;
                if is_subset(&ours["spec"], &theirs["spec"]) {
                    Ok(())
                } else {
                    Err(VeleroError::AlreadyExists { what, name })
                }
            }
            Err(e) => Err(self
                .explain(format!("creating {what} {name}"), e, what, &name)
                .await),
        }
    }

    /// Writes the BSL for core location `name` (prefix `<project>/<cluster>/velero`) and its
    /// credential Secret into the Velero namespace with server-side apply; marks it default
    /// when asked. Returns the BSL as stored.
    pub async fn ensure_location(
        &self,
        name: &str,
        spec: &StorageLocationSpec,
        credentials: Option<&[u8]>,
        make_default: bool,
    ) -> Result<BackupStorageLocation, VeleroError> {
        let (bsl, secret) =
            translate::storage_location(&self.cfg, name, spec, credentials, make_default)?;
        let pp = PatchParams::apply(&self.cfg.field_manager).force();
        let bsl_name = bsl.name_any();
        if let Some(secret) = secret {
            let secrets: Api<Secret> = self.api();
            if let Err(e) = secrets.patch(&bsl_name, &pp, &Patch::Apply(&secret)).await {
                let action = format!("applying credential secret {bsl_name}");
                return Err(self.explain(action, e, "secret", &bsl_name).await);
            }
        }
        match self
            .api::<BackupStorageLocation>()
            .patch(&bsl_name, &pp, &Patch::Apply(&bsl))
            .await
        {
            Ok(b) => Ok(b),
            Err(e) => {
                let action = format!("applying backup storage location {bsl_name}");
                Err(self
                    .explain(action, e, "backup storage location", &bsl_name)
                    .await)
            }
        }
    }

    /// Fails unless the BSL exists, is ReadWrite and is not marked Unavailable by Velero.
    async fn check_writable(&self, bsl_name: &str) -> Result<(), VeleroError> {
        let bsl: BackupStorageLocation = self.get("backup storage location", bsl_name).await?;
        if bsl.spec.access_mode == Some(BackupStorageLocationAccessMode::ReadOnly) {
            return Err(VeleroError::LocationReadOnly {
                name: bsl_name.to_string(),
            });
        }
        let status = bsl.status.unwrap_or_default();
        if status.phase == Some(BackupStorageLocationPhase::Unavailable) {
            return Err(VeleroError::LocationUnavailable {
                name: bsl_name.to_string(),
                message: status
                    .message
                    .unwrap_or_else(|| "Velero gave no message".into()),
            });
        }
        Ok(())
    }

    /// Starts a Velero Backup for core backup `name`.
    pub async fn create_backup(
        &self,
        name: &str,
        spec: &CoreBackupSpec,
    ) -> Result<(), VeleroError> {
        let b = translate::backup(&self.cfg, name, spec)?;
        if let Some(loc) = &b.spec.storage_location {
            self.check_writable(loc).await?;
        }
        self.create_idempotent("backup", &b).await
    }

    /// The Velero Backup of core backup `name`.
    pub async fn velero_backup(&self, name: &str) -> Result<Backup, VeleroError> {
        self.get("backup", &object_name(&self.cfg.cluster, "backup", name))
            .await
            .map_err(|e| rename_not_found(e, name))
    }

    /// Deletes core backup `name` and its stored data through a DeleteBackupRequest (Velero
    /// removes the tarball, snapshots and the Backup object). Returns the request's name; a
    /// request already pending for the backup is reused.
    pub async fn request_backup_deletion(&self, name: &str) -> Result<String, VeleroError> {
        let backup = self.velero_backup(name).await?;
        let velero_name = backup.name_any();
        if let Some(loc) = &backup.spec.storage_location
            && let Ok(bsl) = self.api::<BackupStorageLocation>().get(loc).await
            && bsl.spec.access_mode == Some(BackupStorageLocationAccessMode::ReadOnly)
        {
            return Err(VeleroError::LocationReadOnly { name: loc.clone() });
        }
        let requests: Api<DeleteBackupRequest> = self.api();
        let lp = ListParams::default().labels(&format!("{VELERO_BACKUP_NAME_LABEL}={velero_name}"));
        let pending = requests
            .list(&lp)
            .await
            .map_err(|e| VeleroError::api("listing delete backup requests", e))?;
        if let Some(r) = pending.items.iter().find(|r| {
            r.status
                .as_ref()
                .and_then(|s| s.phase.as_ref())
                .map(|p| p.as_str())
                != Some("Processed")
        }) {
            return Ok(r.name_any());
        }
        let mut req = DeleteBackupRequest::new(
            "",
            DeleteBackupRequestSpec {
                backup_name: velero_name.clone(),
                extra: Default::default(),
            },
        );
        req.metadata.name = None;
        req.metadata.generate_name = Some(format!("{velero_name}-"));
        let mut labels = backup.metadata.labels.clone().unwrap_or_default();
        labels.retain(|k, _| k.starts_with("backup-fleet.io/") || k == translate::MANAGED_BY_LABEL);
        labels.insert(VELERO_BACKUP_NAME_LABEL.into(), velero_name.clone());
        if let Some(uid) = &backup.metadata.uid {
            labels.insert(VELERO_BACKUP_UID_LABEL.into(), uid.clone());
        }
        req.metadata.labels = Some(labels);
        match requests.create(&PostParams::default(), &req).await {
            Ok(r) => Ok(r.name_any()),
            Err(e) => Err(VeleroError::api(
                format!("creating delete backup request for {velero_name}"),
                e,
            )),
        }
    }

    /// Creates or updates (server-side apply) the Velero Schedule of core schedule `name`.
    pub async fn apply_schedule(
        &self,
        name: &str,
        spec: &CoreScheduleSpec,
    ) -> Result<(), VeleroError> {
        let s = translate::schedule(&self.cfg, name, spec)?;
        if let Some(loc) = &s.spec.template.storage_location {
            self.check_writable(loc).await?;
        }
        let pp = PatchParams::apply(&self.cfg.field_manager).force();
        let velero_name = s.name_any();
        match self
            .api::<Schedule>()
            .patch(&velero_name, &pp, &Patch::Apply(&s))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let action = format!("applying schedule {velero_name}");
                Err(self.explain(action, e, "schedule", name).await)
            }
        }
    }

    /// Velero's status of core schedule `name`; a schedule Velero rejected is an error that
    /// carries its validation errors verbatim.
    pub async fn observe_schedule(&self, name: &str) -> Result<ScheduleStatus, VeleroError> {
        let velero_name = object_name(&self.cfg.cluster, "schedule", name);
        let s: Schedule = self
            .get("schedule", &velero_name)
            .await
            .map_err(|e| rename_not_found(e, name))?;
        let status = s.status.unwrap_or_default();
        if status.phase == Some(SchedulePhase::FailedValidation) {
            return Err(VeleroError::Rejected {
                what: "schedule",
                name: velero_name,
                errors: status.validation_errors.unwrap_or_default(),
            });
        }
        Ok(status)
    }

    /// Deletes the Velero Schedule of core schedule `name` (its backups stay).
    pub async fn delete_schedule(&self, name: &str) -> Result<(), VeleroError> {
        let velero_name = object_name(&self.cfg.cluster, "schedule", name);
        match self
            .api::<Schedule>()
            .delete(&velero_name, &DeleteParams::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => Err(self
                .explain(
                    format!("deleting schedule {velero_name}"),
                    e,
                    "schedule",
                    name,
                )
                .await),
        }
    }

    /// Starts a Velero Restore for core restore `name`, after checking its source exists: a
    /// restorable backup, or a `Completed` backup of the schedule.
    pub async fn create_restore(
        &self,
        name: &str,
        spec: &CoreRestoreSpec,
    ) -> Result<(), VeleroError> {
        let r = translate::restore(&self.cfg, name, spec)?;
        if let Some(backup) = &spec.backup_name {
            let b = self.velero_backup(backup).await?;
            let phase = b.status.and_then(|s| s.phase);
            if !matches!(
                phase,
                Some(BackupPhase::Completed | BackupPhase::PartiallyFailed)
            ) {
                return Err(VeleroError::Invalid(format!(
                    "backup {backup:?} is {}: only Completed or PartiallyFailed backups can be restored",
                    phase.map_or("New".to_string(), |p| p.to_string())
                )));
            }
        }
        if let (Some(schedule), Some(velero_schedule)) =
            (&spec.schedule_name, &r.spec.schedule_name)
        {
            let lp = ListParams::default().labels(&format!(
                "{}={velero_schedule}",
                translate::VELERO_SCHEDULE_LABEL
            ));
            let backups = match self.api::<Backup>().list(&lp).await {
                Ok(l) => l.items,
                Err(e) => {
                    let action = format!("listing backups of schedule {velero_schedule}");
                    return Err(self.explain(action, e, "schedule", schedule).await);
                }
            };
            let completed = backups.iter().any(|b| {
                b.status.as_ref().and_then(|s| s.phase.as_ref()) == Some(&BackupPhase::Completed)
            });
            if !completed {
                return Err(VeleroError::NotFound {
                    what: "completed backup of schedule",
                    name: schedule.clone(),
                });
            }
        }
        self.create_idempotent("restore", &r).await
    }

    /// The Velero Restore of core restore `name`.
    pub async fn velero_restore(&self, name: &str) -> Result<Restore, VeleroError> {
        self.get("restore", &object_name(&self.cfg.cluster, "restore", name))
            .await
            .map_err(|e| rename_not_found(e, name))
    }
}

/// Reports NotFound under the core name the caller used, not the Velero name.
fn rename_not_found(e: VeleroError, core_name: &str) -> VeleroError {
    match e {
        VeleroError::NotFound { what, .. } => VeleroError::NotFound {
            what,
            name: core_name.to_string(),
        },
        other => other,
    }
}

/// Reports AlreadyExists under the core name of the object being created, not the Velero
/// object name derived from it, so both engines name the same thing. (A NotFound while
/// creating names a referenced object, e.g. the backup a restore reads, and is kept as is.)
fn rename_already_exists(e: VeleroError, core_name: &str) -> VeleroError {
    match e {
        VeleroError::AlreadyExists { what, .. } => VeleroError::AlreadyExists {
            what,
            name: core_name.to_string(),
        },
        other => other,
    }
}

#[async_trait]
impl BackupEngine for InClusterEngine {
    async fn start_backup(&self, name: &str, spec: &CoreBackupSpec) -> Result<(), EngineError> {
        Ok(self
            .create_backup(name, spec)
            .await
            .map_err(|e| rename_already_exists(e, name))?)
    }

    async fn observe_backup(&self, name: &str) -> Result<CoreStatus, EngineError> {
        Ok(observe::backup_status(&self.velero_backup(name).await?))
    }

    async fn delete_backup(&self, name: &str) -> Result<(), EngineError> {
        self.request_backup_deletion(name).await?;
        Ok(())
    }

    /// Velero's finished Backups of this cluster (our project and cluster labels) whose labels
    /// match `selector`, oldest first.
    async fn list_backups(
        &self,
        selector: &CoreSelector,
    ) -> Result<Vec<StoredBackup>, EngineError> {
        let ours = format!(
            "{}={},{}={}",
            translate::PROJECT_LABEL,
            self.cfg.project,
            translate::CLUSTER_LABEL,
            self.cfg.cluster
        );
        let list = match self
            .api::<Backup>()
            .list(&ListParams::default().labels(&ours))
            .await
        {
            Ok(list) => list,
            Err(e) => {
                let action = "listing backups".to_string();
                return Err(self.explain(action, e, "backup", "*").await.into());
            }
        };
        let mut out: Vec<StoredBackup> = list
            .items
            .iter()
            .filter_map(observe::stored_backup)
            .filter(|b| selector.matches(&b.labels))
            .collect();
        out.sort_by(|a, b| (a.taken_at(), &a.name).cmp(&(b.taken_at(), &b.name)));
        Ok(out)
    }
}

#[async_trait]
impl RestoreEngine for InClusterEngine {
    async fn start_restore(&self, name: &str, spec: &CoreRestoreSpec) -> Result<(), EngineError> {
        Ok(self
            .create_restore(name, spec)
            .await
            .map_err(|e| rename_already_exists(e, name))?)
    }

    async fn observe_restore(&self, name: &str) -> Result<CoreStatus, EngineError> {
        Ok(observe::restore_status(&self.velero_restore(name).await?))
    }
}
