//! ManagementBackup: back up the management cluster itself with the direct engine, on the
//! decision the recorded-runs kinds share ([`recorded_runs::plan`]), plus a release backup
//! when the controller runs as a new release ([`plan`]).
//!
//! What a run holds: every object of our kinds in every namespace and the Secrets and
//! ConfigMaps they reference (see `items`), their Namespaces (the engine adds those of every
//! item), and whatever the `orLabelSelectors` match (the filter).
//!
//! So a run holds every project's credentials: it is taken only in the controller's own
//! namespace, only once the platform granted it every project's Secrets
//! (`--management-backup-secrets`, else `SecretsNotGranted`), and only to a location that
//! encrypts to an age recipient (else `EncryptionRequired`).

mod items;
pub mod plan;

use std::collections::BTreeMap;
use std::sync::Arc;

use backup_core::{BackupSpec, Phase, ResourceFilter, RetentionPolicy};
use backup_velero::direct::{DirectEngine, SCHEDULE_LABEL};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use self::plan::{NOUN, PlanInput};
use super::recorded_runs::{self, Decision, Firing, FiringKind};
use super::{Blocked, with_finalizer};
use crate::context::{Context, Settings};
use crate::error::Result;
use crate::runs::{ObjectKey, RunFinished, Wake};
use backup_api::management_backup::{
    MANAGEMENT_SCOPE, RELEASE_BACKUP_LABEL, ValidManagementBackup, release_slug,
};
use backup_api::{BackupRecord, ManagementBackup, ManagementBackupStatus};
use backup_kube::locations::ResolvedLocation;

/// The controller's name in metrics.
pub const CONTROLLER: &str = "managementbackup";

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

    let (spec, release_slug) = match validate(&ctx.settings, &namespace, &backup) {
        Ok(valid) => valid,
        Err(refused) => {
            let status = ManagementBackupStatus {
                runs: recorded_runs::refused(&previous.runs, &refused, now, generation),
                ..previous.clone()
            };
            return recorded_runs::write_refused(&ctx, backup.as_ref(), &previous, &status).await;
        }
    };

    let key = key_of(&backup);
    let facts = recorded_runs::observe(
        &ctx,
        &key,
        &previous.runs,
        target(&ctx, &namespace, &spec),
        |target: &Target| &target.repo,
        backup_storage::BackupKind::Resources,
    )
    .await?;

    let decided = plan::plan(&PlanInput {
        runs: recorded_runs::PlanInput {
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
            stored: facts.stored.as_ref(),
            live: facts.live,
            blocked: facts.target.as_ref().err().cloned(),
        },
        last_release: previous.last_release.as_deref(),
        on_upgrade: spec.on_upgrade,
        release: &ctx.settings.release,
        release_slug: &release_slug,
    });

    match (&decided.fire, facts.target) {
        (Some(fire), Ok(target)) => {
            let fire = fire.clone();
            fire_backup(ctx, &backup, key, &spec, fire, target, &decided).await
        }
        _ => recorded_runs::record(&ctx, backup.as_ref(), &key, &decided, NOUN).await,
    }
}

/// The spec in its valid form and the controller's release as a backup's name holds it, or
/// why this ManagementBackup (in `namespace`) may not run at all.
fn validate(
    settings: &Settings,
    namespace: &str,
    backup: &ManagementBackup,
) -> std::result::Result<(ValidManagementBackup, String), Blocked> {
    if let Some(refused) = refusal(settings, namespace) {
        return Err(refused);
    }
    let spec = backup
        .spec
        .validate(&backup.name_any())
        .map_err(|field| Blocked::new("InvalidSpec", field.to_string()))?;
    let slug = release_slug(&settings.release)
        .map_err(|e| Blocked::new("InvalidRelease", format!("the controller's {e}")))?;
    Ok((spec, slug))
}

/// Why this controller takes no ManagementBackup in `namespace` at all, if it takes none: only
/// its own namespace may ask (they read every project), and only once the platform has granted
/// them every project's Secrets.
fn refusal(settings: &Settings, namespace: &str) -> Option<Blocked> {
    let management = &settings.management_namespace;
    if namespace != management {
        return Some(Blocked::new(
            "NotManagementNamespace",
            format!(
                "ManagementBackups are honoured only in the controller's namespace {management}: \
                 they read every project, so a project may not take one; create it there"
            ),
        ));
    }
    if !settings.management_backup_secrets {
        return Some(Blocked::new(
            "SecretsNotGranted",
            "the platform has not granted ManagementBackups: they read every Secret our objects \
             reference, in every namespace, which needs the Helm chart's value \
             managementBackup.readProjectSecrets=true (it binds the chart's -project-secrets \
             ClusterRole cluster-wide and starts the controller with \
             --management-backup-secrets); ask the platform's admins to set it",
        ));
    }
    None
}

/// Why `location` may not hold a ManagementBackup: one holds every project's credentials, so
/// it is written only encrypted to at least one age recipient.
fn unencrypted(location: &ResolvedLocation) -> Option<Blocked> {
    location.repo.encryption().is_none().then(|| {
        Blocked::new(
            "EncryptionRequired",
            format!(
                "StorageLocation {} encrypts to no age recipient (spec.encryption.recipients): \
                 a ManagementBackup holds every project's credentials, so it is written only \
                 encrypted; add recipients to the location or name one that has them",
                location.name
            ),
        )
    })
}

/// The location, scoped to `<namespace>/management/`; `Ok(Err(..))` is why runs cannot go
/// there, for `Ready`.
async fn target(
    ctx: &Context,
    namespace: &str,
    spec: &ValidManagementBackup,
) -> Result<std::result::Result<Target, Blocked>> {
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
        Err((reason, message)) => return Ok(Err(Blocked::new(reason, message))),
    };
    if let Some(problem) = unencrypted(&location) {
        return Ok(Err(problem));
    }
    match location.repo.scoped_str(namespace, MANAGEMENT_SCOPE) {
        Ok(repo) => Ok(Ok(Target {
            location: location.name.clone(),
            repo,
        })),
        Err(e) => Ok(Err(Blocked::new(
            "InvalidSpec",
            format!("metadata.namespace: {e}"),
        ))),
    }
}

/// Announces the run `fire` (the status `decided`) and takes it.
async fn fire_backup(
    ctx: Arc<Context>,
    backup: &ManagementBackup,
    key: ObjectKey,
    spec: &ValidManagementBackup,
    fire: Firing,
    target: Target,
    decided: &Decision<ManagementBackupStatus>,
) -> Result<Action> {
    if let Some(later) =
        recorded_runs::claim_and_announce(&ctx, backup, &key, &fire, &decided.status).await?
    {
        return Ok(later);
    }
    ctx.event(
        &backup.object_ref(&()),
        false,
        "BackupStarted",
        NOUN,
        format!(
            "backing up the management cluster as {} to {}",
            fire.name, target.location
        ),
    )
    .await;
    start(ctx.clone(), backup, key, spec, fire, target);
    Ok(recorded_runs::requeue(decided.requeue_after))
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
                    rotate(&task_ctx, &engine, &schedule, &spec, &mut finished).await;
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

/// Applies retention to the runs of `schedule` after a successful one, noting in `finished`
/// what it deleted and what it could not.
async fn rotate(
    ctx: &Context,
    engine: &DirectEngine,
    schedule: &str,
    spec: &ValidManagementBackup,
    finished: &mut RunFinished,
) {
    let policy = RetentionPolicy {
        ttl_expiry: true,
        keep_last: Some(spec.keep),
        gfs: None,
    };
    // Release backups are the way back from an upgrade: kept until deleted by hand, outside
    // the rotation.
    let selector = backup_core::LabelSelector {
        match_labels: run_labels(schedule, None),
        match_expressions: vec![backup_core::Requirement {
            key: RELEASE_BACKUP_LABEL.into(),
            operator: backup_core::Operator::DoesNotExist,
            values: Vec::new(),
        }],
    };
    match super::retention::sweep(engine, &selector, &policy, ctx.clock.now()).await {
        Ok(swept) => {
            finished.deleted = swept.deleted;
            finished.refused = swept
                .refused
                .into_iter()
                .map(|(name, e)| (name, e.to_string()))
                .collect();
        }
        Err(e) => {
            finished.record.message = Some(format!("retention could not list the backups: {e}"));
        }
    }
    finished.at = ctx.clock.now();
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
    let items = items::our_objects(&ctx.client)
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
    Ok((status.phase, run_message(&status.errors, &status.warnings)))
}

/// What a run's record says of its item `errors` and `warnings`: how many, quoting the first
/// errors (else the first warning); nothing when there are none.
fn run_message(errors: &[String], warnings: &[String]) -> Option<String> {
    match (errors.len(), warnings.first()) {
        (0, None) => None,
        (0, Some(first)) => Some(format!("{} warning(s): {first}", warnings.len())),
        (n, _) => Some(format!(
            "{n} error(s): {}{}",
            errors[..n.min(ERRORS_QUOTED)].join("; "),
            if n > ERRORS_QUOTED { "; …" } else { "" }
        )),
    }
}

async fn cleanup(backup: Arc<ManagementBackup>, ctx: Arc<Context>) -> Result<Action> {
    // Backups stay in storage: they are what brings a lost management cluster back.
    ctx.runs.release_recorded(&key_of(&backup));
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn granted() -> Settings {
        Settings {
            management_namespace: "backup-fleet-system".into(),
            management_backup_secrets: true,
            release: "1.2.0+b".into(),
            ..Settings::default()
        }
    }

    fn backup(spec: serde_json::Value) -> ManagementBackup {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "backupfleet.dev/v1alpha1", "kind": "ManagementBackup",
            "metadata": {"name": "mgmt", "namespace": "backup-fleet-system"},
            "spec": spec,
        }))
        .unwrap()
    }

    #[test]
    fn only_the_controllers_namespace_and_only_with_the_platforms_grant() {
        let granted = granted();
        assert_eq!(refusal(&granted, "backup-fleet-system"), None);
        let not_management = Blocked::new(
            "NotManagementNamespace",
            "ManagementBackups are honoured only in the controller's namespace \
             backup-fleet-system: they read every project, so a project may not take one; \
             create it there",
        );
        assert_eq!(refusal(&granted, "project-a"), Some(not_management.clone()));
        let not_granted = Settings {
            management_backup_secrets: false,
            ..granted.clone()
        };
        assert_eq!(refusal(&not_granted, "project-a"), Some(not_management));
        let Some(refused) = refusal(&not_granted, "backup-fleet-system") else {
            panic!("not granted, yet not refused");
        };
        assert_eq!(refused.reason, "SecretsNotGranted");
        assert!(
            refused
                .message
                .contains("managementBackup.readProjectSecrets=true"),
            "{}",
            refused.message
        );
    }

    #[test]
    fn validation_refuses_the_namespace_then_the_spec_then_the_release() {
        let valid = backup(serde_json::json!({"schedule": "@daily"}));
        let (spec, slug) = validate(&granted(), "backup-fleet-system", &valid).unwrap();
        assert_eq!((spec.on_upgrade, slug.as_str()), (false, "1.2.0-b"));
        assert_eq!(
            validate(&granted(), "project-a", &valid)
                .err()
                .map(|b| b.reason),
            Some("NotManagementNamespace".to_string())
        );
        let invalid = backup(serde_json::json!({"performOnManagementUpgrade": true}));
        assert_eq!(
            validate(&granted(), "backup-fleet-system", &invalid).err(),
            Some(Blocked::new(
                "InvalidSpec",
                invalid.spec.validate("mgmt").unwrap_err().to_string()
            ))
        );
        let bad_release = Settings {
            release: "+++".into(),
            ..granted()
        };
        assert_eq!(
            validate(&bad_release, "backup-fleet-system", &valid).err(),
            Some(Blocked::new(
                "InvalidRelease",
                format!("the controller's {}", release_slug("+++").unwrap_err())
            ))
        );
    }

    #[test]
    fn a_run_says_how_many_errors_quoting_three_else_its_first_warning() {
        let texts = |n: usize, what: &str| -> Vec<String> {
            (1..=n).map(|i| format!("{what} {i}")).collect()
        };
        assert_eq!(run_message(&[], &[]), None);
        assert_eq!(
            run_message(&[], &texts(2, "w")),
            Some("2 warning(s): w 1".into())
        );
        assert_eq!(
            run_message(&texts(2, "e"), &texts(1, "w")),
            Some("2 error(s): e 1; e 2".into())
        );
        assert_eq!(
            run_message(&texts(4, "e"), &[]),
            Some("4 error(s): e 1; e 2; e 3; …".into())
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
