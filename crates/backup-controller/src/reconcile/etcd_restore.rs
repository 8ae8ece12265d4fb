//! EtcdRestore: validate before the agent next to etcd may act on it. The cluster must be a
//! ManagedCluster of the namespace, the snapshot must exist in the location with its checksum
//! recorded (and be readable with the location's keys when encrypted). The result is the
//! `Ready` condition; the agent's `phase` is never touched here, and once the agent took the
//! restore, the controller leaves it alone.

use std::sync::Arc;
use std::time::Duration;

use backup_core::BackupKind;
use backup_storage::{BackupName, Manifest, StorageError};
use jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action;

use super::{Blocked, write_status};
use crate::context::Context;
use crate::error::Result;
use backup_api::cluster_restore::READY;
use backup_api::etcd_restore::{EtcdRestore, EtcdRestoreSpec, EtcdRestoreStatus};
use backup_api::status::{Condition, merge_conditions};

/// The controller's name in metrics.
pub const CONTROLLER: &str = "etcdrestore";

/// How often a restore that cannot be validated looks again (a snapshot may appear).
const RECHECK: Duration = Duration::from_secs(30);

/// Reconciles one EtcdRestore.
#[tracing::instrument(name = "reconcile", skip_all, fields(kind = "EtcdRestore", namespace = %restore.metadata.namespace.as_deref().unwrap_or_default(), name = %restore.metadata.name.as_deref().unwrap_or_default()))]
pub async fn reconcile(restore: Arc<EtcdRestore>, ctx: Arc<Context>) -> Result<Action> {
    if let Some(later) = super::cached_copy_behind(&ctx, restore.as_ref()) {
        return Ok(later);
    }
    let started = std::time::Instant::now();
    ctx.stores.listed().await;
    let result = apply(&restore, &ctx).await;
    ctx.metrics.reconciled(CONTROLLER, started.elapsed());
    result
}

async fn apply(restore: &EtcdRestore, ctx: &Context) -> Result<Action> {
    let previous = restore.status.clone().unwrap_or_default();
    if left_alone(restore, &previous) {
        return Ok(Action::await_change());
    }
    let now = ctx.clock.now();
    let namespace = restore.namespace().unwrap_or_default();
    let found = match restore.spec.validate() {
        Ok(()) => observe(ctx, &namespace, &restore.spec).await?,
        Err(field) => Err(Blocked::new("InvalidSpec", field.to_string())),
    };
    let decided = plan(&PlanInput {
        namespace: &namespace,
        spec: &restore.spec,
        generation: restore.metadata.generation,
        now,
        previous: &previous,
        found,
    });
    if decided.write {
        write_status(ctx, restore, &decided.status).await?;
    }
    Ok(match decided.requeue_after {
        Some(wait) => Action::requeue(wait),
        None => Action::await_change(),
    })
}

/// Whether the controller leaves `restore` alone: it is being deleted, or the agent took it
/// (its phase is set), after which only the agent writes.
fn left_alone(restore: &EtcdRestore, previous: &EtcdRestoreStatus) -> bool {
    restore.metadata.deletion_timestamp.is_some() || previous.phase.is_some()
}

/// The snapshot to restore as storage holds it (the observe step's facts).
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// The StorageLocation holding it.
    pub location: String,
    /// Its manifest.
    pub manifest: Manifest,
    /// Why the location's keys cannot read it, when they cannot.
    pub unreadable: Option<String>,
}

/// Reads what the agent would restore: the cluster, the location and the snapshot's manifest;
/// `Ok(Err(..))` is why one of them cannot be had, `Err` only what retrying can fix.
async fn observe(
    ctx: &Context,
    namespace: &str,
    spec: &EtcdRestoreSpec,
) -> Result<std::result::Result<Found, Blocked>> {
    let known = ctx
        .stores
        .clusters
        .state()
        .iter()
        .any(|c| c.namespace().as_deref() == Some(namespace) && c.name_any() == spec.cluster);
    if !known {
        return Ok(Err(Blocked::new(
            "ClusterNotFound",
            format!(
                "spec.cluster: no ManagedCluster {:?} in namespace {namespace} (an EtcdRestore \
                 only reaches the clusters of its own project)",
                spec.cluster
            ),
        )));
    }
    let location = match ctx
        .locations
        .resolve(
            &ctx.stores.locations,
            namespace,
            spec.storage_location.as_deref(),
        )
        .await
    {
        Ok(location) => location,
        Err(problem) if problem.is_retryable() => return Err(problem.into()),
        Err(problem) => return Ok(Err(Blocked::from(&problem))),
    };
    let repo = location
        .repo
        .scoped_str(namespace, &spec.cluster)
        .map_err(crate::Error::Storage)?;
    let name = BackupName::new(spec.backup_name.as_str()).map_err(crate::Error::Storage)?;
    let manifest = match repo.get_manifest(BackupKind::EtcdSnapshot, &name).await {
        Ok(manifest) => manifest,
        Err(StorageError::BackupNotFound { .. }) => {
            return Ok(Err(Blocked::new(
                "BackupNotFound",
                format!(
                    "no etcd snapshot {} of cluster {} in StorageLocation {}; `backupctl etcd \
                     list --project {namespace} --cluster {}` lists them",
                    spec.backup_name, spec.cluster, location.name, spec.cluster
                ),
            )));
        }
        Err(e @ (StorageError::Store { .. } | StorageError::NoCredentials { .. })) => {
            return Err(e.into());
        }
        Err(e) => return Ok(Err(Blocked::new("BackupUnreadable", e.to_string()))),
    };
    Ok(Ok(Found {
        location: location.name.clone(),
        unreadable: repo.ensure_readable(&manifest).err().map(|e| e.to_string()),
        manifest,
    }))
}

/// What the decision reads.
#[derive(Debug, Clone)]
pub struct PlanInput<'a> {
    /// The restore's namespace.
    pub namespace: &'a str,
    /// Its spec.
    pub spec: &'a EtcdRestoreSpec,
    /// Its generation.
    pub generation: Option<i64>,
    /// Now.
    pub now: Timestamp,
    /// The status as last written.
    pub previous: &'a EtcdRestoreStatus,
    /// The snapshot, or why it could not be had (an invalid spec included).
    pub found: std::result::Result<Found, Blocked>,
}

/// What the reconcile does.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The controller's fields of the status (the agent owns the others).
    pub status: EtcdRestoreStatus,
    /// Whether they differ from the ones read, so are written.
    pub write: bool,
    /// When to look again: soon while it cannot be validated (the snapshot may appear);
    /// `None` waits for a change.
    pub requeue_after: Option<Duration>,
}

/// Decides `Ready` from what was found.
pub fn plan(input: &PlanInput<'_>) -> Plan {
    let verdict = verdict(input);
    let condition = match &verdict {
        Ok(message) => Condition::met(READY, "Validated", message.clone()),
        Err(blocked) => blocked.condition(READY),
    }
    .at(input.now, input.generation);
    let status = EtcdRestoreStatus {
        observed_generation: input.generation,
        conditions: merge_conditions(&input.previous.conditions, vec![condition]),
        ..EtcdRestoreStatus::default()
    };
    Plan {
        write: status.conditions != input.previous.conditions
            || status.observed_generation != input.previous.observed_generation,
        status,
        requeue_after: verdict.is_err().then_some(RECHECK),
    }
}

/// What the agent will restore (as a message), or why it may not: a snapshot whose every file
/// has its SHA-256 recorded (else a restore could not be verified) and that the location's keys
/// can read.
fn verdict(input: &PlanInput<'_>) -> std::result::Result<String, Blocked> {
    let found = input.found.as_ref().map_err(Blocked::clone)?;
    let spec = input.spec;
    let artifacts = &found.manifest.artifacts;
    if artifacts.is_empty() || artifacts.iter().any(|a| a.sha256.is_empty()) {
        return Err(Blocked::new(
            "ChecksumMissing",
            format!(
                "snapshot {} has no SHA-256 recorded for every file, so a restore could not be \
                 verified: take a new snapshot",
                spec.backup_name
            ),
        ));
    }
    if let Some(e) = &found.unreadable {
        return Err(Blocked::new(
            "BackupEncrypted",
            format!(
                "snapshot {} is encrypted and StorageLocation {} holds no key for it: {e}",
                spec.backup_name, found.location
            ),
        ));
    }
    Ok(format!(
        "snapshot {} of cluster {} in StorageLocation {} ({} bytes, SHA-256 recorded): the \
         agent next to that etcd (`backupctl etcd agent --namespace {} --cluster {}`) \
         restores it",
        spec.backup_name,
        spec.cluster,
        found.location,
        found.manifest.total_size(),
        input.namespace,
        spec.cluster
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use backup_api::etcd_restore::EtcdRestorePhase;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn spec() -> EtcdRestoreSpec {
        EtcdRestoreSpec {
            cluster: "c1".into(),
            backup_name: "etcd-20261130100000".into(),
            storage_location: None,
        }
    }

    /// A stored snapshot of one file per size in `sizes`, with checksums unless `unchecked`.
    fn found(sizes: &[u64], unchecked: bool) -> Found {
        let artifacts: Vec<serde_json::Value> = sizes
            .iter()
            .enumerate()
            .map(|(i, size)| {
                serde_json::json!({"name": format!("part-{i}"), "size": size,
                                   "sha256": if unchecked { "" } else { "ab12" }})
            })
            .collect();
        let manifest = serde_json::from_value(serde_json::json!({
            "format_version": 1, "name": "etcd-20261130100000",
            "kind": "etcd-snapshot", "created": "2026-11-30T10:00:00Z", "artifacts": artifacts,
        }))
        .unwrap();
        Found {
            location: "main".into(),
            manifest,
            unreadable: None,
        }
    }

    fn planned(previous: &EtcdRestoreStatus, found: std::result::Result<Found, Blocked>) -> Plan {
        plan(&PlanInput {
            namespace: "p",
            spec: &spec(),
            generation: Some(2),
            now: ts("2026-11-30T11:00:00Z"),
            previous,
            found,
        })
    }

    /// The status holding only `Ready` as `condition`, for generation 2.
    fn status(condition: Condition) -> EtcdRestoreStatus {
        EtcdRestoreStatus {
            observed_generation: Some(2),
            conditions: vec![condition.at(ts("2026-11-30T11:00:00Z"), Some(2))],
            ..EtcdRestoreStatus::default()
        }
    }

    #[test]
    fn a_checksummed_readable_snapshot_is_validated_once() {
        let previous = EtcdRestoreStatus::default();
        let validated = status(Condition::met(
            READY,
            "Validated",
            "snapshot etcd-20261130100000 of cluster c1 in StorageLocation main (30 bytes, \
             SHA-256 recorded): the agent next to that etcd (`backupctl etcd agent --namespace \
             p --cluster c1`) restores it",
        ));
        assert_eq!(
            planned(&previous, Ok(found(&[10, 20], false))),
            Plan {
                status: validated.clone(),
                write: true,
                requeue_after: None,
            }
        );
        // Written and read back: nothing to write again.
        assert_eq!(
            planned(&validated, Ok(found(&[10, 20], false))),
            Plan {
                status: validated,
                write: false,
                requeue_after: None,
            }
        );
    }

    #[test]
    fn a_snapshot_without_every_checksum_or_a_key_is_refused_and_rechecked() {
        let previous = EtcdRestoreStatus::default();
        for unchecked in [found(&[10, 20], true), found(&[], false)] {
            assert_eq!(
                planned(&previous, Ok(unchecked)),
                Plan {
                    status: status(Condition::unmet(
                        READY,
                        "ChecksumMissing",
                        "snapshot etcd-20261130100000 has no SHA-256 recorded for every file, \
                         so a restore could not be verified: take a new snapshot",
                    )),
                    write: true,
                    requeue_after: Some(RECHECK),
                }
            );
        }
        let locked = Found {
            unreadable: Some("no identity for recipient age1xyz".into()),
            ..found(&[10], false)
        };
        assert_eq!(
            planned(&previous, Ok(locked)),
            Plan {
                status: status(Condition::unmet(
                    READY,
                    "BackupEncrypted",
                    "snapshot etcd-20261130100000 is encrypted and StorageLocation main holds \
                     no key for it: no identity for recipient age1xyz",
                )),
                write: true,
                requeue_after: Some(RECHECK),
            }
        );
    }

    #[test]
    fn what_could_not_be_found_is_shown_as_is_and_rechecked() {
        let blocked = Blocked::new("BackupNotFound", "no etcd snapshot etcd-20261130100000");
        assert_eq!(
            planned(&EtcdRestoreStatus::default(), Err(blocked.clone())),
            Plan {
                status: status(blocked.condition(READY)),
                write: true,
                requeue_after: Some(RECHECK),
            }
        );
    }

    #[test]
    fn a_restore_the_agent_took_or_being_deleted_is_left_alone() {
        let mut restore: EtcdRestore = serde_json::from_value(serde_json::json!({
            "apiVersion": "backupfleet.dev/v1alpha1", "kind": "EtcdRestore",
            "metadata": {"name": "r", "namespace": "p"},
            "spec": {"cluster": "c1", "backupName": "etcd-20261130100000"},
        }))
        .unwrap();
        let fresh = EtcdRestoreStatus::default();
        assert!(!left_alone(&restore, &fresh));
        let taken = EtcdRestoreStatus {
            phase: Some(EtcdRestorePhase::Started),
            ..EtcdRestoreStatus::default()
        };
        assert!(left_alone(&restore, &taken));
        restore.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(ts("2026-11-30T11:00:00Z")),
        );
        assert!(left_alone(&restore, &fresh));
    }
}
