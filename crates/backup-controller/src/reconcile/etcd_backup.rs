//! EtcdBackupConfig: gather what [`recorded_runs::plan::plan`] needs (the cluster's etcd access, the
//! location, this process's snapshot), write the status it decides, and take the snapshot it
//! fires in the background with `backup-etcd`, rotation included.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use backup_core::Phase;
use backup_etcd::{EtcdConnection, Naming, SnapshotRequest, TlsPem};
use jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use super::recorded_runs::{self, Firing, Live, Plan, PlanInput};
use super::{with_finalizer, write_status};
use crate::context::Context;
use crate::error::Result;
use crate::runs::{ObjectKey, RunFinished, Wake};
use backup_api::etcd_backup_config::ValidEtcdBackupConfig;
use backup_api::status::{Condition, merge_conditions};
use backup_api::{BackupRecord, EtcdBackupConfig, RecordedRunsStatus};
use backup_api::{EtcdAccess, ManagedCluster};
use backup_kube::secrets;

/// The controller's name in metrics.
pub const CONTROLLER: &str = "etcdbackupconfig";

/// How often a config that cannot take snapshots looks again for the fix.
const BLOCKED_RECHECK: Duration = Duration::from_secs(30);

/// Keys of the TLS Secret: KKP's and cert-manager's names.
const CA_KEY: &str = "ca.crt";
const CERT_KEY: &str = "tls.crt";
const KEY_KEY: &str = "tls.key";

/// Reconciles one EtcdBackupConfig.
#[tracing::instrument(name = "reconcile", skip_all, fields(kind = "EtcdBackupConfig", namespace = %config.metadata.namespace.as_deref().unwrap_or_default(), name = %config.metadata.name.as_deref().unwrap_or_default()))]
pub async fn reconcile(config: Arc<EtcdBackupConfig>, ctx: Arc<Context>) -> Result<Action> {
    ctx.stores.listed().await;
    with_finalizer(CONTROLLER, config, ctx, apply, cleanup).await
}

fn key_of(config: &EtcdBackupConfig) -> ObjectKey {
    (
        config.namespace().unwrap_or_default(),
        config.name_any(),
        config.uid().unwrap_or_default(),
    )
}

async fn apply(config: Arc<EtcdBackupConfig>, ctx: Arc<Context>) -> Result<Action> {
    let now = ctx.clock.now();
    let name = config.name_any();
    let namespace = config.namespace().unwrap_or_default();
    let generation = config.metadata.generation;
    let previous = config.status.clone().unwrap_or_default();
    let key = key_of(&config);

    let spec = match config.spec.validate(&name) {
        Ok(spec) => spec,
        Err(field) => {
            let mut status = previous.clone();
            status.observed_generation = generation;
            status.next_schedule_time = None;
            status.conditions = merge_conditions(
                &previous.conditions,
                vec![
                    Condition::unmet(backup_api::status::READY, "InvalidSpec", field.to_string())
                        .at(now, generation),
                ],
            );
            if status != previous {
                write_status(&ctx, config.as_ref(), &status).await?;
            }
            return Ok(Action::await_change());
        }
    };

    let live = recorded_runs::live(&ctx, &key);
    let target = match target(&ctx, &namespace, &spec).await? {
        Ok(target) => Some(target),
        Err(blocked) => {
            // Reported below; the snapshot waits for the fix.
            let decided = decide(
                &config,
                &spec,
                &previous,
                live.clone(),
                None,
                Some(blocked),
                now,
            );
            write_and_requeue(&ctx, &config, &key, &previous, decided, &live).await?;
            // What blocks it is fixed elsewhere (a cluster's spec.etcd, a Secret): look again.
            return Ok(Action::requeue(BLOCKED_RECHECK));
        }
    };
    let stored = recorded_runs::stored_phases(
        &previous,
        &live,
        target.as_ref().map(|t| &t.repo),
        backup_storage::BackupKind::EtcdSnapshot,
    )
    .await?;
    let decided = decide(
        &config,
        &spec,
        &previous,
        live.clone(),
        stored.as_ref(),
        None,
        now,
    );
    match (&decided.fire, target) {
        (Some(fire), Some(target)) => {
            if !ctx.runs.claim_recorded(&key, &fire.name) {
                return Ok(Action::requeue(Duration::from_secs(1)));
            }
            if let Err(e) = write_status(&ctx, config.as_ref(), &decided.status).await {
                ctx.runs.release_recorded(&key);
                return Err(e);
            }
            ctx.event(
                &config.object_ref(&()),
                false,
                "SnapshotStarted",
                "Snapshot",
                format!("snapshotting the etcd of {} as {}", spec.cluster, fire.name),
            )
            .await;
            start(ctx.clone(), &config, key, &spec, fire.clone(), target);
            Ok(recorded_runs::requeue(decided.requeue_after))
        }
        _ => write_and_requeue(&ctx, &config, &key, &previous, decided, &live).await,
    }
}

fn decide(
    config: &EtcdBackupConfig,
    spec: &ValidEtcdBackupConfig,
    previous: &RecordedRunsStatus,
    live: Live,
    stored: Option<&BTreeMap<String, Phase>>,
    blocked: Option<(String, String)>,
    now: Timestamp,
) -> Plan {
    recorded_runs::plan::plan(&PlanInput {
        run_now: recorded_runs::pending_token(config, previous),
        name: &config.name_any(),
        generation: config.metadata.generation,
        created: recorded_runs::created(config, now),
        now,
        schedule: spec.schedule.as_ref(),
        keep: spec.keep.get() as usize,
        describe: (
            &format!("snapshots of {}'s etcd", spec.cluster),
            &format!("one snapshot of {}'s etcd", spec.cluster),
        ),
        previous,
        stored,
        live,
        blocked,
        release: None,
    })
}

async fn write_and_requeue(
    ctx: &Context,
    config: &EtcdBackupConfig,
    key: &ObjectKey,
    previous: &RecordedRunsStatus,
    decided: Plan,
    live: &Live,
) -> Result<Action> {
    recorded_runs::write_outcome(
        ctx,
        config,
        key,
        live,
        &decided.status,
        decided.status != *previous,
        decided.requeue_after,
        "Snapshot",
    )
    .await
}

/// Where snapshots come from and go to.
struct Target {
    connection: EtcdConnection,
    repo: backup_storage::Repository,
}

/// The cluster's etcd and the location's repository scoped to the cluster; `Ok(Err(..))` is a
/// problem to report as a condition.
async fn target(
    ctx: &Context,
    namespace: &str,
    spec: &ValidEtcdBackupConfig,
) -> Result<std::result::Result<Target, (String, String)>> {
    let blocked = |reason: &str, message: String| Ok(Err((reason.to_string(), message)));
    let Some(cluster) = ctx
        .stores
        .clusters
        .state()
        .into_iter()
        .find(|c| c.namespace().as_deref() == Some(namespace) && c.name_any() == spec.cluster)
    else {
        return blocked(
            "ClusterNotFound",
            format!(
                "spec.cluster: no ManagedCluster {:?} in namespace {namespace} (an \
                 EtcdBackupConfig only reaches the clusters of its own project)",
                spec.cluster
            ),
        );
    };
    let Some(access) = cluster.spec.etcd.clone() else {
        return blocked(
            "EtcdNotConfigured",
            format!(
                "ManagedCluster {} has no spec.etcd: set its etcd endpoints (and a TLS Secret \
                 with ca.crt, tls.crt, tls.key when etcd serves https)",
                spec.cluster
            ),
        );
    };
    let tls_pem = match tls(ctx, namespace, &cluster, &access).await? {
        Ok(tls) => tls,
        Err(problem) => return Ok(Err(problem)),
    };
    let location = match ctx
        .locations
        .resolve_writable(
            &ctx.stores.locations,
            namespace,
            spec.storage_location.as_deref(),
            "snapshots",
        )
        .await?
    {
        Ok(location) => location,
        Err(problem) => return Ok(Err(problem)),
    };
    let repo = match location.repo.scoped_str(namespace, &spec.cluster) {
        Ok(repo) => repo,
        Err(e) => return blocked("InvalidSpec", format!("spec.cluster: {e}")),
    };
    Ok(Ok(Target {
        connection: EtcdConnection {
            endpoints: access.endpoints.clone(),
            tls_pem,
            addresses: Some(std::sync::Arc::clone(&ctx.settings.tenancy.addresses)),
            ..EtcdConnection::default()
        },
        repo,
    }))
}

/// The TLS material of the cluster's etcd, from its Secret.
async fn tls(
    ctx: &Context,
    namespace: &str,
    cluster: &ManagedCluster,
    access: &EtcdAccess,
) -> Result<std::result::Result<Option<TlsPem>, (String, String)>> {
    let Some(secret) = &access.tls else {
        return Ok(Ok(None));
    };
    let read = |key: &'static str| {
        let client = ctx.client.clone();
        let name = secret.name.clone();
        async move {
            match secrets::read_key(&client, namespace, &name, key).await {
                Ok(value) => Ok(Some(value.data)),
                Err(secrets::SecretError::KeyMissing { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        }
    };
    let problem = |e: secrets::SecretError| {
        (
            match e.is_not_shared() {
                true => secrets::NOT_SHARED_REASON,
                false => "EtcdTlsUnreadable",
            }
            .to_string(),
            format!("ManagedCluster {}'s spec.etcd.tls: {e}", cluster.name_any()),
        )
    };
    let (ca, cert, key) = match (
        read(CA_KEY).await,
        read(CERT_KEY).await,
        read(KEY_KEY).await,
    ) {
        (Ok(ca), Ok(cert), Ok(key)) => (ca, cert, key),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            if e.is_retryable() {
                return Err(crate::Error::Cluster(
                    crate::clusters::ClusterProblem::Secret(e),
                ));
            }
            return Ok(Err(problem(e)));
        }
    };
    let identity = match (cert, key) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => {
            return Ok(Err((
                "EtcdTlsIncomplete".into(),
                format!(
                    "Secret {} holds only one of {CERT_KEY} and {KEY_KEY}: a client certificate \
                     needs both",
                    secret.name
                ),
            )));
        }
    };
    Ok(Ok(Some(TlsPem { ca, identity })))
}

/// Takes the snapshot in the background; its outcome reaches the status through a reconcile.
fn start(
    ctx: Arc<Context>,
    config: &EtcdBackupConfig,
    key: ObjectKey,
    spec: &ValidEtcdBackupConfig,
    fire: Firing,
    target: Target,
) {
    let object = ObjectRef::from_obj(config);
    let request = SnapshotRequest {
        naming: if fire.name == config.name_any() {
            Naming::OneShot
        } else {
            Naming::Scheduled { at: fire.at }
        },
        keep: Some(spec.keep),
        ..SnapshotRequest::one_shot(config.name_any())
    };
    let task_key = key.clone();
    let task_ctx = ctx.clone();
    let task = tokio::spawn(tracing::Instrument::in_current_span(async move {
        let started = task_ctx.clock.now();
        let outcome = backup_etcd::take_snapshot(&target.repo, &target.connection, &request).await;
        let at = task_ctx.clock.now();
        let record = BackupRecord {
            scheduled_time: Some(fire.at),
            backup_name: fire.name.clone(),
            backup_start_time: Some(started),
            backup_finished_time: Some(at),
            ..BackupRecord::default()
        };
        let finished = match outcome {
            Ok(outcome) => RunFinished {
                record: BackupRecord {
                    backup_phase: Phase::Completed,
                    ..record
                },
                deleted: outcome
                    .pruned
                    .deleted
                    .iter()
                    .map(|n| n.to_string())
                    .collect(),
                refused: outcome
                    .pruned
                    .refused
                    .iter()
                    .map(|(n, e)| (n.to_string(), e.to_string()))
                    .collect(),
                at,
            },
            Err(e) => RunFinished {
                record: BackupRecord {
                    backup_phase: Phase::Failed,
                    message: Some(e.to_string()),
                    ..record
                },
                deleted: Vec::new(),
                refused: Vec::new(),
                at,
            },
        };
        task_ctx
            .runs
            .finish_recorded(&task_key, finished, Wake::Etcd(object));
    }));
    ctx.runs.track_recorded(&key, &task);
}

async fn cleanup(config: Arc<EtcdBackupConfig>, ctx: Arc<Context>) -> Result<Action> {
    // Snapshots stay in storage (as KKP keeps them); only a running one is stopped.
    ctx.runs.release_recorded(&key_of(&config));
    Ok(Action::await_change())
}
