//! ManagementBackup: back up the management cluster itself with the direct engine, on the
//! decision the recorded-runs kinds share ([`recorded_runs::plan`]), plus a release backup
//! when the controller runs as a new release.
//!
//! What a run holds: every object of our kinds in every namespace and the Secrets and
//! ConfigMaps they reference (as the engine's additional items, which no Velero filter can
//! name), their Namespaces (the engine adds those of every item), and whatever the
//! `orLabelSelectors` match (the filter).
//!
//! So a run holds every project's credentials: it is taken only in the controller's own
//! namespace, only once the platform granted it every project's Secrets
//! (`--management-backup-secrets`, else `SecretsNotGranted`), and only to a location that
//! encrypts to an age recipient (else `EncryptionRequired`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use backup_core::{BackupSpec, GroupResource, Phase, ResourceFilter, RetentionPolicy};
use backup_velero::direct::{AdditionalItem, DirectEngine, SCHEDULE_LABEL};
use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::recorded_runs::{self, Firing, FiringKind, PlanInput};
use super::{with_finalizer, write_status};
use crate::context::{Context, Settings};
use crate::error::Result;
use crate::runs::{ObjectKey, RunFinished, Wake};
use backup_api::management_backup::{
    MANAGEMENT_SCOPE, RELEASE_BACKUP_LABEL, ValidManagementBackup, release_slug,
};
use backup_api::status::{Condition, READY, merge_conditions};
use backup_api::{
    BackupRecord, ClusterBackup, ClusterMigration, ClusterRestore, EtcdBackupConfig, EtcdRestore,
    ManagedCluster, ManagementBackup, ManagementBackupStatus, StorageLocation,
};
use backup_kube::locations::ResolvedLocation;

/// The controller's name in metrics.
pub const CONTROLLER: &str = "managementbackup";

/// How often a backup that cannot run looks again for the fix.
const BLOCKED_RECHECK: Duration = Duration::from_secs(30);
/// Item errors quoted in a failed run's message.
const ERRORS_QUOTED: usize = 3;

/// Reconciles one ManagementBackup.
#[tracing::instrument(name = "reconcile", skip_all, fields(kind = "ManagementBackup", namespace = %backup.metadata.namespace.as_deref().unwrap_or_default(), name = %backup.metadata.name.as_deref().unwrap_or_default()))]
pub async fn reconcile(backup: Arc<ManagementBackup>, ctx: Arc<Context>) -> Result<Action> {
    ctx.stores.listed().await;
    with_finalizer(CONTROLLER, backup, ctx, apply, cleanup).await
}

fn key_of(backup: &ManagementBackup) -> ObjectKey {
    (
        backup.namespace().unwrap_or_default(),
        backup.name_any(),
        backup.uid().unwrap_or_default(),
    )
}

/// Where runs go.
struct Target {
    location: String,
    repo: backup_storage::Repository,
}

async fn apply(backup: Arc<ManagementBackup>, ctx: Arc<Context>) -> Result<Action> {
    let now = ctx.clock.now();
    let name = backup.name_any();
    let namespace = backup.namespace().unwrap_or_default();
    let generation = backup.metadata.generation;
    let previous = backup.status.clone().unwrap_or_default();
    let key = key_of(&backup);

    let refuse = |reason: &str, message: String| {
        let mut status = previous.clone();
        status.runs.observed_generation = generation;
        status.runs.next_schedule_time = None;
        status.runs.conditions = merge_conditions(
            &previous.runs.conditions,
            vec![Condition::unmet(READY, reason, message).at(now, generation)],
        );
        status
    };
    if let Some((reason, message)) = refusal(&ctx.settings, &namespace) {
        let status = refuse(reason, message);
        return write_if_changed(&ctx, &backup, &previous, &status).await;
    }
    let spec = match backup.spec.validate(&name) {
        Ok(spec) => spec,
        Err(field) => {
            let status = refuse("InvalidSpec", field.to_string());
            return write_if_changed(&ctx, &backup, &previous, &status).await;
        }
    };
    let release = &ctx.settings.release;
    let release_name = match release_slug(release) {
        Ok(slug) => slug,
        Err(e) => {
            let status = refuse("InvalidRelease", format!("the controller's {e}"));
            return write_if_changed(&ctx, &backup, &previous, &status).await;
        }
    };
    let owed = (spec.on_upgrade
        && previous
            .last_release
            .as_deref()
            .is_some_and(|last| last != release))
    .then_some(release_name.as_str());

    let live = recorded_runs::live(&ctx, &key);
    let target = target(&ctx, &namespace, &spec).await?;
    let stored = recorded_runs::stored_phases(
        &previous.runs,
        &live,
        target.as_ref().ok().map(|t| &t.repo),
        backup_storage::BackupKind::Resources,
    )
    .await?;
    let decided = recorded_runs::plan::plan(&PlanInput {
        run_now: recorded_runs::pending_token(backup.as_ref(), &previous.runs),
        name: &name,
        generation,
        created: recorded_runs::created(backup.as_ref(), now),
        now,
        schedule: spec.schedule.as_ref(),
        keep: spec.keep.get() as usize,
        describe: (
            "backups of the management cluster",
            "one backup of the management cluster",
        ),
        previous: &previous.runs,
        stored: stored.as_ref(),
        live: live.clone(),
        blocked: target.as_ref().err().cloned(),
        release: owed,
    });
    // The release is recorded once its backup is under way (or none was owed).
    let last_release = match (&decided.fire, owed) {
        (Some(fire), _) if fire.kind == FiringKind::Release => Some(release.clone()),
        (_, Some(_)) => previous.last_release.clone(),
        _ => Some(release.clone()),
    };
    let status = ManagementBackupStatus {
        runs: decided.status.clone(),
        last_release,
    };
    match (&decided.fire, target) {
        (Some(fire), Ok(target)) => {
            if !ctx.runs.claim_recorded(&key, &fire.name) {
                return Ok(Action::requeue(Duration::from_secs(1)));
            }
            if let Err(e) = write_status(&ctx, backup.as_ref(), &status).await {
                ctx.runs.release_recorded(&key);
                return Err(e);
            }
            ctx.event(
                &backup.object_ref(&()),
                false,
                "BackupStarted",
                "Backup",
                format!(
                    "backing up the management cluster as {} to {}",
                    fire.name, target.location
                ),
            )
            .await;
            start(ctx.clone(), &backup, key, &spec, fire.clone(), target);
            Ok(recorded_runs::requeue(decided.requeue_after))
        }
        (_, target) => {
            let requeue_after = match target {
                Ok(_) => decided.requeue_after,
                Err(_) => Some(
                    decided
                        .requeue_after
                        .map_or(BLOCKED_RECHECK, |after| after.min(BLOCKED_RECHECK)),
                ),
            };
            recorded_runs::write_outcome(
                &ctx,
                backup.as_ref(),
                &key,
                &live,
                &status,
                status != previous,
                requeue_after,
                "Backup",
            )
            .await
        }
    }
}

/// Why this controller takes no ManagementBackup in `namespace` at all, if it takes none: only
/// its own namespace may ask (they read every project), and only once the platform has granted
/// them every project's Secrets.
fn refusal(settings: &Settings, namespace: &str) -> Option<(&'static str, String)> {
    let management = &settings.management_namespace;
    if namespace != management {
        return Some((
            "NotManagementNamespace",
            format!(
                "ManagementBackups are honoured only in the controller's namespace {management}: \
                 they read every project, so a project may not take one; create it there"
            ),
        ));
    }
    if !settings.management_backup_secrets {
        return Some((
            "SecretsNotGranted",
            "the platform has not granted ManagementBackups: they read every Secret our objects \
             reference, in every namespace, which needs the Helm chart's value \
             managementBackup.readProjectSecrets=true (it binds the chart's -project-secrets \
             ClusterRole cluster-wide and starts the controller with \
             --management-backup-secrets); ask the platform's admins to set it"
                .to_string(),
        ));
    }
    None
}

/// Why `location` may not hold a ManagementBackup: one holds every project's credentials, so
/// it is written only encrypted to at least one age recipient.
fn unencrypted(location: &ResolvedLocation) -> Option<(String, String)> {
    location.repo.encryption().is_none().then(|| {
        (
            "EncryptionRequired".to_string(),
            format!(
                "StorageLocation {} encrypts to no age recipient (spec.encryption.recipients): \
                 a ManagementBackup holds every project's credentials, so it is written only \
                 encrypted; add recipients to the location or name one that has them",
                location.name
            ),
        )
    })
}

async fn write_if_changed(
    ctx: &Context,
    backup: &ManagementBackup,
    previous: &ManagementBackupStatus,
    status: &ManagementBackupStatus,
) -> Result<Action> {
    if status != previous {
        write_status(ctx, backup, status).await?;
    }
    Ok(Action::await_change())
}

/// The location, scoped to `<namespace>/management/`; `Err` is a problem for `Ready`.
async fn target(
    ctx: &Context,
    namespace: &str,
    spec: &ValidManagementBackup,
) -> Result<std::result::Result<Target, (String, String)>> {
    let location = match ctx
        .locations
        .resolve_writable(
            &ctx.stores.locations,
            namespace,
            spec.storage_location.as_deref(),
            "backups",
        )
        .await?
    {
        Ok(location) => location,
        Err(problem) => return Ok(Err(problem)),
    };
    if let Some(problem) = unencrypted(&location) {
        return Ok(Err(problem));
    }
    match location.repo.scoped_str(namespace, MANAGEMENT_SCOPE) {
        Ok(repo) => Ok(Ok(Target {
            location: location.name.clone(),
            repo,
        })),
        Err(e) => Ok(Err((
            "InvalidSpec".into(),
            format!("metadata.namespace: {e}"),
        ))),
    }
}

/// Takes the backup in the background, then applies retention; the outcome reaches the status
/// through a reconcile.
fn start(
    ctx: Arc<Context>,
    backup: &ManagementBackup,
    key: ObjectKey,
    spec: &ValidManagementBackup,
    fire: Firing,
    target: Target,
) {
    let object = ObjectRef::from_obj(backup);
    let schedule = backup.name_any();
    let spec = spec.clone();
    let task_key = key.clone();
    let task_ctx = ctx.clone();
    let task = tokio::spawn(tracing::Instrument::in_current_span(async move {
        let started = task_ctx.clock.now();
        let engine = DirectEngine::new(task_ctx.client.clone(), target.repo.clone())
            .with_storage_location(&target.location);
        let outcome = take(&task_ctx, &engine, &schedule, &spec, &fire).await;
        let mut finished = RunFinished {
            record: BackupRecord {
                scheduled_time: Some(fire.at),
                backup_name: fire.name.clone(),
                backup_start_time: Some(started),
                backup_finished_time: Some(task_ctx.clock.now()),
                ..BackupRecord::default()
            },
            deleted: Vec::new(),
            refused: Vec::new(),
            at: task_ctx.clock.now(),
        };
        match outcome {
            Ok((phase, message)) => {
                finished.record.backup_phase = phase;
                finished.record.message = message;
                if phase.is_successful() {
                    let policy = RetentionPolicy {
                        ttl_expiry: true,
                        keep_last: Some(spec.keep),
                        gfs: None,
                    };
                    // Release backups are the way back from an upgrade: kept until deleted
                    // by hand, outside the rotation.
                    let selector = backup_core::LabelSelector {
                        match_labels: run_labels(&schedule, None),
                        match_expressions: vec![backup_core::Requirement {
                            key: RELEASE_BACKUP_LABEL.into(),
                            operator: backup_core::Operator::DoesNotExist,
                            values: Vec::new(),
                        }],
                    };
                    match super::retention::sweep(&engine, &selector, &policy, task_ctx.clock.now())
                        .await
                    {
                        Ok(swept) => {
                            finished.deleted = swept.deleted;
                            finished.refused = swept
                                .refused
                                .into_iter()
                                .map(|(name, e)| (name, e.to_string()))
                                .collect();
                        }
                        Err(e) => {
                            finished.record.message =
                                Some(format!("retention could not list the backups: {e}"));
                        }
                    }
                    finished.at = task_ctx.clock.now();
                }
            }
            Err(message) => {
                finished.record.backup_phase = Phase::Failed;
                finished.record.message = Some(message);
            }
        }
        task_ctx
            .runs
            .finish_recorded(&task_key, finished, Wake::Management(object));
    }));
    ctx.runs.track_recorded(&key, &task);
}

/// The labels of a ManagementBackup's runs (a release backup's also names its release).
fn run_labels(schedule: &str, release: Option<&str>) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([(SCHEDULE_LABEL.to_string(), schedule.to_string())]);
    if let Some(release) = release {
        labels.insert(RELEASE_BACKUP_LABEL.to_string(), release.to_string());
    }
    labels
}

/// One run: its phase and what to know, or why it could not run.
async fn take(
    ctx: &Context,
    engine: &DirectEngine,
    schedule: &str,
    spec: &ValidManagementBackup,
    fire: &Firing,
) -> std::result::Result<(Phase, Option<String>), String> {
    let items = our_objects(&ctx.client)
        .await
        .map_err(|e| format!("listing the objects to back up failed: {e}"))?;
    let release = (fire.kind == FiringKind::Release)
        .then(|| fire.name.strip_prefix(&format!("{schedule}-")))
        .flatten();
    let backup_spec = BackupSpec {
        filter: ResourceFilter {
            or_label_selectors: spec.or_label_selectors.clone(),
            ..ResourceFilter::default()
        },
        ttl: spec.ttl,
        // Objects only: the management cluster's state is in its API, not in volumes.
        snapshot_volumes: false,
        default_volumes_to_fs_backup: false,
        labels: run_labels(schedule, release),
        ..BackupSpec::default()
    };
    engine
        .start_backup_with(&fire.name, &backup_spec, items)
        .await
        .map_err(|e| e.to_string())?;
    let status = engine
        .wait_backup(&fire.name)
        .await
        .map_err(|e| e.to_string())?;
    let message = match status.errors.len() {
        0 if status.warnings.is_empty() => None,
        0 => Some(format!(
            "{} warning(s): {}",
            status.warnings.len(),
            status.warnings[0]
        )),
        n => Some(format!(
            "{n} error(s): {}{}",
            status
                .errors
                .iter()
                .take(ERRORS_QUOTED)
                .cloned()
                .collect::<Vec<_>>()
                .join("; "),
            if n > ERRORS_QUOTED { "; …" } else { "" }
        )),
    };
    Ok((status.phase, message))
}

/// Every object of our kinds, and the Secrets and ConfigMaps they reference, as the engine's
/// additional items.
async fn our_objects(
    client: &kube::Client,
) -> std::result::Result<Vec<AdditionalItem>, kube::Error> {
    let mut items = Vec::new();
    items.extend(list_kind::<StorageLocation>(client).await?);
    items.extend(list_kind::<ManagedCluster>(client).await?);
    items.extend(list_kind::<ClusterBackup>(client).await?);
    items.extend(list_kind::<ClusterRestore>(client).await?);
    items.extend(list_kind::<ClusterMigration>(client).await?);
    items.extend(list_kind::<EtcdBackupConfig>(client).await?);
    items.extend(list_kind::<EtcdRestore>(client).await?);
    items.extend(list_kind::<ManagementBackup>(client).await?);
    items.sort();
    items.dedup();
    Ok(items)
}

/// The objects of one kind in every namespace, with what each references.
async fn list_kind<K>(
    client: &kube::Client,
) -> std::result::Result<Vec<AdditionalItem>, kube::Error>
where
    K: Resource<DynamicType = ()> + References + Clone + DeserializeOwned + std::fmt::Debug,
{
    let api: Api<K> = Api::all(client.clone());
    let own = GroupResource::parse(&format!("{}.{}", K::plural(&()), K::group(&())));
    let mut items = Vec::new();
    for object in api.list(&ListParams::default()).await? {
        let namespace = object.namespace().unwrap_or_default();
        items.push(AdditionalItem {
            group_resource: own.clone(),
            namespace: namespace.clone(),
            name: object.name_any(),
        });
        for (resource, name) in object.references() {
            items.push(AdditionalItem {
                group_resource: GroupResource::parse(resource),
                namespace: namespace.clone(),
                name,
            });
        }
    }
    Ok(items)
}

/// The Secrets and ConfigMaps (of its own namespace) an object of ours reads.
trait References {
    /// `(resource, name)` pairs: `("secrets", "s3-creds")`.
    fn references(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
}

impl References for StorageLocation {
    fn references(&self) -> Vec<(&'static str, String)> {
        let credential = self.spec.credential.iter().map(|c| c.name.clone());
        let identity = self
            .spec
            .encryption
            .iter()
            .flat_map(|e| e.identity_secret.iter().map(|c| c.name.clone()));
        credential.chain(identity).map(|n| ("secrets", n)).collect()
    }
}

impl References for ManagedCluster {
    fn references(&self) -> Vec<(&'static str, String)> {
        let tls = self
            .spec
            .etcd
            .iter()
            .flat_map(|e| e.tls.iter().map(|t| t.name.clone()));
        std::iter::once(self.spec.kubeconfig.name.clone())
            .chain(tls)
            .map(|n| ("secrets", n))
            .collect()
    }
}

impl References for ClusterRestore {
    fn references(&self) -> Vec<(&'static str, String)> {
        self.spec
            .resource_modifiers
            .iter()
            .flat_map(|m| {
                m.config_map_ref
                    .iter()
                    .map(|c| ("configmaps", c.name.clone()))
            })
            .collect()
    }
}

impl References for ClusterBackup {}
impl References for ClusterMigration {}
impl References for EtcdBackupConfig {}
impl References for EtcdRestore {}
impl References for ManagementBackup {}

async fn cleanup(backup: Arc<ManagementBackup>, ctx: Arc<Context>) -> Result<Action> {
    // Backups stay in storage: they are what brings a lost management cluster back.
    ctx.runs.release_recorded(&key_of(&backup));
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_name_every_secret_and_config_map_our_objects_read() {
        let location: StorageLocation = serde_json::from_value(serde_json::json!({
            "apiVersion": "backupfleet.dev/v1alpha1", "kind": "StorageLocation",
            "metadata": {"name": "main", "namespace": "p"},
            "spec": {"provider": "aws", "objectStorage": {"bucket": "b"},
                     "credential": {"name": "s3-creds", "key": "cloud"},
                     "encryption": {"recipients": [], "identitySecret": {"name": "age", "key": "k"}}}
        }))
        .unwrap();
        assert_eq!(
            location.references(),
            [
                ("secrets", "s3-creds".to_string()),
                ("secrets", "age".to_string())
            ]
        );
        let cluster: ManagedCluster = serde_json::from_value(serde_json::json!({
            "apiVersion": "backupfleet.dev/v1alpha1", "kind": "ManagedCluster",
            "metadata": {"name": "c1", "namespace": "p"},
            "spec": {"kubeconfig": {"name": "c1-kubeconfig", "key": "kubeconfig"},
                     "etcd": {"endpoints": ["https://127.0.0.1:2379"], "tls": {"name": "c1-etcd"}}}
        }))
        .unwrap();
        assert_eq!(
            cluster.references(),
            [
                ("secrets", "c1-kubeconfig".to_string()),
                ("secrets", "c1-etcd".to_string())
            ]
        );
        let restore: ClusterRestore = serde_json::from_value(serde_json::json!({
            "apiVersion": "backupfleet.dev/v1alpha1", "kind": "ClusterRestore",
            "metadata": {"name": "r", "namespace": "p"},
            "spec": {"source": {"cluster": "c1", "clusterBackup": "nightly"},
                     "resourceModifiers": {"configMapRef": {"name": "rules"}}}
        }))
        .unwrap();
        assert_eq!(restore.references(), [("configmaps", "rules".to_string())]);
    }

    #[test]
    fn only_the_controllers_namespace_and_only_with_the_platforms_grant() {
        let granted = Settings {
            management_namespace: "backup-fleet-system".into(),
            management_backup_secrets: true,
            ..Settings::default()
        };
        assert_eq!(refusal(&granted, "backup-fleet-system"), None);
        let reason =
            |settings: &Settings, namespace: &str| refusal(settings, namespace).map(|r| r.0);
        assert_eq!(
            reason(&granted, "project-a"),
            Some("NotManagementNamespace")
        );
        let not_granted = Settings {
            management_backup_secrets: false,
            ..granted.clone()
        };
        assert_eq!(
            reason(&not_granted, "backup-fleet-system"),
            Some("SecretsNotGranted")
        );
        assert_eq!(
            reason(&not_granted, "project-a"),
            Some("NotManagementNamespace")
        );
        let (_, message) = refusal(&not_granted, "backup-fleet-system").unwrap();
        assert!(
            message.contains("managementBackup.readProjectSecrets"),
            "{message}"
        );
    }

    #[test]
    fn a_release_backup_carries_its_release_label_beside_the_schedule_one() {
        assert_eq!(
            run_labels("mgmt", Some("0.5.0")),
            BTreeMap::from([
                (SCHEDULE_LABEL.to_string(), "mgmt".to_string()),
                (RELEASE_BACKUP_LABEL.to_string(), "0.5.0".to_string()),
            ])
        );
        assert_eq!(run_labels("mgmt", None).len(), 1);
    }
}
