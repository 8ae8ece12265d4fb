//! EtcdBackupConfig: validate the spec, observe what [`plan`] needs (the cluster's etcd
//! access, the location, this process's snapshot), write the status it decides, and take the
//! snapshot it fires in the background with `backup-etcd`, rotation included.

use std::sync::Arc;

use backup_core::Phase;
use backup_etcd::{EtcdConnection, EtcdError, Naming, SnapshotOutcome, SnapshotRequest, TlsPem};
use jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use super::recorded_runs::{self, BLOCKED_RECHECK, Decision, Firing, PlanInput};
use super::{Blocked, with_finalizer};
use crate::context::Context;
use crate::error::Result;
use crate::runs::{ObjectKey, RunFinished, Wake};
use backup_api::etcd_backup_config::ValidEtcdBackupConfig;
use backup_api::{BackupRecord, EtcdBackupConfig, RecordedRunsStatus};
use backup_api::{EtcdAccess, ManagedCluster};
use backup_kube::secrets;

/// The controller's name in metrics.
pub const CONTROLLER: &str = "etcdbackupconfig";

/// What a run is called in Events.
const NOUN: &str = "Snapshot";

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

    let spec = match config.spec.validate(&name) {
        Ok(spec) => spec,
        Err(field) => {
            let invalid = Blocked::new("InvalidSpec", field.to_string());
            let status = recorded_runs::refused(&previous, &invalid, now, generation);
            return recorded_runs::write_refused(&ctx, config.as_ref(), &previous, &status).await;
        }
    };

    let key = key_of(&config);
    let facts = recorded_runs::observe(
        &ctx,
        &key,
        &previous,
        target(&ctx, &namespace, &spec),
        |target: &Target| &target.repo,
        backup_storage::BackupKind::EtcdSnapshot,
    )
    .await?;

    let describe = (
        format!("snapshots of {}'s etcd", spec.cluster),
        format!("one snapshot of {}'s etcd", spec.cluster),
    );
    let decided = plan(&PlanInput {
        run_now: recorded_runs::pending_token(config.as_ref(), &previous),
        name: &name,
        generation,
        created: recorded_runs::created(config.as_ref(), now),
        now,
        schedule: spec.schedule.as_ref(),
        keep: spec.keep.get() as usize,
        describe: (&describe.0, &describe.1),
        previous: &previous,
        stored: facts.stored.as_ref(),
        live: facts.live,
        blocked: facts.target.as_ref().err().cloned(),
    });

    match (&decided.fire, facts.target) {
        (Some(fire), Ok(target)) => {
            let fire = fire.clone();
            fire_snapshot(ctx, &config, key, &spec, fire, target, &decided).await
        }
        _ => recorded_runs::record(&ctx, config.as_ref(), &key, &decided, NOUN).await,
    }
}

/// The decision: the shared one ([`recorded_runs::plan::plan`], no release backups), looking
/// again for the fix every [`BLOCKED_RECHECK`] while blocked (what blocks a config is fixed in
/// other objects: a cluster's `spec.etcd`, a Secret, a location).
pub fn plan(input: &PlanInput<'_>) -> Decision<RecordedRunsStatus> {
    let runs = recorded_runs::plan::plan(input, None);
    let mut decided = recorded_runs::decision(
        runs,
        std::convert::identity,
        input.previous,
        &input.live,
        NOUN,
    );
    if input.blocked.is_some() {
        decided.requeue_after = Some(BLOCKED_RECHECK);
    }
    decided
}

/// Announces the snapshot `fire` (the status `decided`) and takes it.
async fn fire_snapshot(
    ctx: Arc<Context>,
    config: &EtcdBackupConfig,
    key: ObjectKey,
    spec: &ValidEtcdBackupConfig,
    fire: Firing,
    target: Target,
    decided: &Decision<RecordedRunsStatus>,
) -> Result<Action> {
    if let Some(later) =
        recorded_runs::claim_and_announce(&ctx, config, &key, &fire, &decided.status).await?
    {
        return Ok(later);
    }
    ctx.event(
        &config.object_ref(&()),
        false,
        "SnapshotStarted",
        NOUN,
        format!("snapshotting the etcd of {} as {}", spec.cluster, fire.name),
    )
    .await;
    start(ctx.clone(), config, key, spec, fire, target);
    Ok(recorded_runs::requeue(decided.requeue_after))
}

/// Where snapshots come from and go to.
struct Target {
    connection: EtcdConnection,
    repo: backup_storage::Repository,
}

/// The cluster's etcd and the location's repository scoped to the cluster; `Ok(Err(..))` is
/// why snapshots cannot be taken, reported as a condition.
async fn target(
    ctx: &Context,
    namespace: &str,
    spec: &ValidEtcdBackupConfig,
) -> Result<std::result::Result<Target, Blocked>> {
    let blocked = |reason: &str, message: String| Ok(Err(Blocked::new(reason, message)));
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
        Err((reason, message)) => return blocked(&reason, message),
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
) -> Result<std::result::Result<Option<TlsPem>, Blocked>> {
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
        Blocked::new(
            match e.is_not_shared() {
                true => secrets::NOT_SHARED_REASON,
                false => "EtcdTlsUnreadable",
            },
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
            return Ok(Err(Blocked::new(
                "EtcdTlsIncomplete",
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
        naming: naming(&config.name_any(), &fire),
        keep: Some(spec.keep),
        ..SnapshotRequest::one_shot(config.name_any())
    };
    let task_key = key.clone();
    let task_ctx = ctx.clone();
    let task = tokio::spawn(tracing::Instrument::in_current_span(async move {
        let started = task_ctx.clock.now();
        let outcome = backup_etcd::take_snapshot(&target.repo, &target.connection, &request).await;
        let finished = finished(&fire, started, task_ctx.clock.now(), outcome);
        task_ctx
            .runs
            .finish_recorded(&task_key, finished, Wake::Etcd(object));
    }));
    ctx.runs.track_recorded(&key, &task);
}

/// How the snapshot of `fire` is named in storage: the one-time run carries the config's own
/// name, every other run its slot's time.
fn naming(config: &str, fire: &Firing) -> Naming {
    if fire.name == config {
        Naming::OneShot
    } else {
        Naming::Scheduled { at: fire.at }
    }
}

/// How the snapshot of `fire`, started at `started`, ended at `at` with `outcome`.
fn finished(
    fire: &Firing,
    started: Timestamp,
    at: Timestamp,
    outcome: std::result::Result<SnapshotOutcome, EtcdError>,
) -> RunFinished {
    let record = BackupRecord {
        scheduled_time: Some(fire.at),
        backup_name: fire.name.clone(),
        backup_start_time: Some(started),
        backup_finished_time: Some(at),
        ..BackupRecord::default()
    };
    match outcome {
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
    }
}

async fn cleanup(config: Arc<EtcdBackupConfig>, ctx: Arc<Context>) -> Result<Action> {
    // Snapshots stay in storage (as KKP keeps them); only a running one is stopped.
    ctx.runs.release_recorded(&key_of(&config));
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::recorded_runs::{FiringKind, Live};
    use backup_api::EtcdBackupConfigSpec;
    use backup_api::status::{Condition, READY};
    use std::time::Duration;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn spec(json: serde_json::Value) -> ValidEtcdBackupConfig {
        serde_json::from_value::<EtcdBackupConfigSpec>(json)
            .unwrap()
            .validate("etcd")
            .unwrap()
    }

    fn input<'a>(
        spec: &'a ValidEtcdBackupConfig,
        previous: &'a RecordedRunsStatus,
        blocked: Option<Blocked>,
    ) -> PlanInput<'a> {
        PlanInput {
            name: "etcd",
            generation: Some(1),
            created: ts("2026-11-30T10:00:00Z"),
            now: ts("2026-11-30T10:00:30Z"),
            schedule: spec.schedule.as_ref(),
            keep: spec.keep.get() as usize,
            describe: ("snapshots of c1's etcd", "one snapshot of c1's etcd"),
            previous,
            stored: None,
            live: Live::Idle,
            blocked,
            run_now: None,
        }
    }

    #[test]
    fn a_blocked_config_looks_again_for_the_fix_every_recheck() {
        let spec = spec(serde_json::json!({"cluster": "c1", "schedule": "@every 10m"}));
        let previous = RecordedRunsStatus::default();
        let blocked = Blocked::new("ClusterNotFound", "spec.cluster: no ManagedCluster \"c1\"");
        let now = ts("2026-11-30T10:00:30Z");
        assert_eq!(
            plan(&input(&spec, &previous, Some(blocked.clone()))),
            Decision {
                fire: None,
                status: RecordedRunsStatus {
                    observed_generation: Some(1),
                    next_schedule_time: Some(ts("2026-11-30T10:10:00Z")),
                    conditions: vec![blocked.condition(READY).at(now, Some(1))],
                    ..RecordedRunsStatus::default()
                },
                write: true,
                release: None,
                // Not at the next slot, ten minutes away: the fix comes from another object.
                requeue_after: Some(BLOCKED_RECHECK),
            }
        );
    }

    #[test]
    fn an_unblocked_config_looks_again_at_its_next_slot() {
        let spec = spec(serde_json::json!({"cluster": "c1", "schedule": "@every 10m"}));
        let previous = RecordedRunsStatus::default();
        let now = ts("2026-11-30T10:00:30Z");
        let next = ts("2026-11-30T10:10:00Z");
        assert_eq!(
            plan(&input(&spec, &previous, None)),
            Decision {
                fire: None,
                status: RecordedRunsStatus {
                    observed_generation: Some(1),
                    next_schedule_time: Some(next),
                    conditions: vec![
                        Condition::met(
                            READY,
                            "Ready",
                            format!("snapshots of c1's etcd, keeping 20; next at {next}")
                        )
                        .at(now, Some(1))
                    ],
                    ..RecordedRunsStatus::default()
                },
                write: true,
                release: None,
                requeue_after: Some(Duration::from_secs(570)),
            }
        );
    }

    #[test]
    fn the_one_time_snapshot_carries_the_configs_name_and_others_their_slot() {
        let at = ts("2026-11-30T10:00:00Z");
        let fire = |name: &str, kind| Firing {
            at,
            name: name.into(),
            kind,
        };
        assert_eq!(
            naming("etcd", &fire("etcd", FiringKind::Scheduled)),
            Naming::OneShot
        );
        assert_eq!(
            naming("etcd", &fire("etcd-20261130100000", FiringKind::RunNow)),
            Naming::Scheduled { at }
        );
        assert_eq!(
            naming("etcd", &fire("etcd-1-2-0", FiringKind::Release)),
            Naming::Scheduled { at }
        );
    }
}
