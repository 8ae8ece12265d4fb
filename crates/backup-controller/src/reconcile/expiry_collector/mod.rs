//! The expiry collector: a backup's TTL holds whoever wrote it and whether or not its schedule
//! still runs.
//!
//! Retention after a run ([`super::retention`]) expires a schedule's runs only when that
//! schedule runs again, so without this the runs of one-time, paused and deleted (`deletePolicy:
//! Retain`) ClusterBackups and the backups `backupctl` writes would stay forever.
//!
//! Every `--gc-interval` (first at the start of each term of leadership, then on the
//! interval; it runs beside the controllers and ends with them when the Lease is lost) it
//! visits every StorageLocation that is `Available` and `ReadWrite` (a ReadOnly one is left
//! alone: nothing may be deleted through it), and in it every cluster scope of the location's
//! own project, `<prefix>/<namespace>/<cluster>/`: ManagedClusters', the ManagementBackups'
//! `management` scope and scopes only `backupctl` wrote. There it lists the committed resource
//! backups, asks [`plan::plan`] which have expired (never the newest successful run of a
//! schedule, never a release backup) and deletes them with the direct engine's delete, the one
//! retention uses: the manifest first, so a backup stops being listed before its data goes.
//! Backups Velero wrote without our manifest are not listed here: Velero's own garbage
//! collection expires those. A deletion storage refuses, or a scope it cannot list, is
//! reported ([`report`]) and the rest goes on.

pub mod plan;
pub mod report;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use backup_core::{BackupEngine, EngineError, LabelSelector, StoredBackup};
use backup_storage::object_store::path::Path;
use backup_velero::direct::{DirectEngine, SCHEDULE_LABEL};
use futures::StreamExt;
use kube::runtime::events::Reporter;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use tokio::time::{Instant, MissedTickBehavior};

use self::report::Swept;
use crate::context::{Context, FIELD_MANAGER};
use crate::metrics::ExpiryLabels;
use crate::runs::RunKey;
use backup_api::storage_location::LocationPhase;
use backup_api::{EngineKind, StorageLocation};
use backup_kube::locations::ResolvedLocation;

/// Cluster scopes of one location listed and swept at once.
const SCOPE_CONCURRENCY: usize = 4;
/// The shortest interval: tokio's interval refuses zero (`--gc-interval` refuses it too, but
/// [`crate::context::Settings`] built in code may hold it).
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Sweeps every collectable location now and then every `ctx.settings.gc_interval`, for as
/// long as it is polled: it never returns, and is dropped when the term of leadership ends.
/// `identity` names this replica in the Events.
pub async fn run(ctx: Arc<Context>, identity: String) {
    let reporter = Reporter {
        controller: FIELD_MANAGER.into(),
        instance: Some(identity),
    };
    // Locations are read from the informer's store: wait for its first complete listing.
    ctx.stores.listed().await;
    let mut every = tokio::time::interval(ctx.settings.gc_interval.max(MIN_INTERVAL));
    every.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        for location in ctx.stores.locations.state() {
            if collectable(&location) {
                sweep_location(&ctx, &reporter, &location).await;
            }
        }
    }
}

/// Whether the collector visits `location`: its last probe succeeded, it takes deletions, and
/// it is not being deleted.
fn collectable(location: &StorageLocation) -> bool {
    let available =
        location.status.as_ref().and_then(|s| s.phase) == Some(LocationPhase::Available);
    let writable = location.spec.access_mode.unwrap_or_default().is_writable();
    available && writable && location.metadata.deletion_timestamp.is_none()
}

/// Sweeps every cluster scope of `location`'s project and reports what it did.
async fn sweep_location(ctx: &Context, reporter: &Reporter, location: &StorageLocation) {
    let namespace = location.namespace().unwrap_or_default();
    let resolved = match ctx.locations.open(location).await {
        Ok(resolved) if resolved.repo.is_writable() => resolved,
        Ok(_) => return,
        // The location's own reconcile reports why it cannot be opened, as its condition.
        Err(e) => {
            tracing::debug!(location = %location.name_any(), error = %e, "expiry: location not opened");
            return;
        }
    };
    let one_time = one_time_backups(ctx, &namespace);
    let mut swept = Swept::default();
    match clusters(&resolved, &namespace).await {
        Ok(clusters) => {
            let scopes: Vec<Swept> = futures::stream::iter(clusters)
                .map(|cluster| sweep_scope(ctx, &resolved, &namespace, &one_time, cluster))
                .buffer_unordered(SCOPE_CONCURRENCY)
                .collect()
                .await;
            for scope in scopes {
                swept.deleted.extend(scope.deleted);
                swept.refused.extend(scope.refused);
                swept.unlisted.extend(scope.unlisted);
            }
        }
        Err(e) => swept
            .unlisted
            .push((format!("project folder {namespace}/"), e)),
    }
    swept.deleted.sort();
    let labels = ExpiryLabels {
        namespace,
        location: resolved.name.clone(),
    };
    report::publish(ctx, reporter, &location.object_ref(&()), labels, &swept).await;
}

/// The names of `namespace`'s ClusterBackups that run once (they have no schedule).
fn one_time_backups(ctx: &Context, namespace: &str) -> BTreeSet<String> {
    ctx.stores
        .backups
        .state()
        .iter()
        .filter(|b| b.namespace().as_deref() == Some(namespace) && b.spec.schedule.is_none())
        .map(|b| b.name_any())
        .collect()
}

/// The cluster folders under the project's folder of `location`: one delimiter listing.
async fn clusters(location: &ResolvedLocation, namespace: &str) -> Result<Vec<String>, String> {
    let project = Path::from(namespace);
    let folders = backup_storage::listing::subdirectories(location.repo.store().as_ref(), &project)
        .await
        .map_err(|e| format!("listing {project}/ failed: {e}"))?;
    Ok(folders
        .iter()
        .filter_map(|folder| folder.filename().map(str::to_string))
        .collect())
}

/// Deletes what has expired in one cluster scope; each backup named `<cluster>/<backup>`.
async fn sweep_scope(
    ctx: &Context,
    location: &ResolvedLocation,
    namespace: &str,
    one_time: &BTreeSet<String>,
    cluster: String,
) -> Swept {
    let mut swept = Swept::default();
    // A folder whose name is no valid scope segment was not written by us or backupctl.
    let Ok(repo) = location.repo.scoped_str(namespace, &cluster) else {
        return swept;
    };
    // The engine lists and deletes in storage only; the management client it is given is
    // never used for that (a scope need not belong to a ManagedCluster).
    let engine = DirectEngine::new(ctx.client.clone(), repo).with_storage_location(&location.name);
    let started = Instant::now();
    let stored = match engine.list_backups(&LabelSelector::default()).await {
        Ok(stored) => stored,
        Err(e) => {
            swept
                .unlisted
                .push((format!("cluster {cluster}"), e.to_string()));
            return swept;
        }
    };
    let decided = plan::plan(&stored, one_time, ctx.clock.now());
    for spared in &decided.spared {
        tracing::debug!(%namespace, %cluster, backup = %spared.name, reason = %spared.reason, "expired backup kept");
    }
    let mut deleted = Vec::new();
    for expired in decided.delete {
        match engine.delete_backup(&expired.name).await {
            Ok(()) => {
                tracing::info!(%namespace, %cluster, backup = %expired.name, expired_at = %expired.expired_at, why = %expired.why, "deleted expired backup");
                deleted.push(expired.name);
            }
            // Deleted meanwhile by someone else: nothing to do, nothing to report.
            Err(EngineError::NotFound { .. }) => {}
            Err(e) => {
                tracing::warn!(%namespace, %cluster, backup = %expired.name, error = %e, "expired backup not deleted");
                swept
                    .refused
                    .push((format!("{cluster}/{}", expired.name), e.to_string()));
            }
        }
    }
    if !deleted.is_empty() {
        refresh_listings(
            ctx, location, namespace, &cluster, &stored, &deleted, started,
        );
    }
    swept
        .deleted
        .extend(deleted.iter().map(|name| format!("{cluster}/{name}")));
    swept
}

/// Shows the deletions in the status of the ClusterBackups whose runs they were, at once
/// rather than at the next storage resync: the listing of each such ClusterBackup on
/// `cluster` is replaced by what stays, when that ClusterBackup writes to this location with
/// the direct engine (a Velero cluster's runs are listed from Velero, another location's are
/// elsewhere), and the ClusterBackup is asked to look again. A listing started after ours is
/// newer and stays ([`crate::runs::Runs::set_listing`]).
fn refresh_listings(
    ctx: &Context,
    location: &ResolvedLocation,
    namespace: &str,
    cluster: &str,
    stored: &[StoredBackup],
    deleted: &[String],
    listed_at: Instant,
) {
    let schedule = |b: &StoredBackup| b.labels.get(SCHEDULE_LABEL).cloned();
    let mut schedules: Vec<String> = stored
        .iter()
        .filter(|b| deleted.contains(&b.name))
        .filter_map(schedule)
        .collect();
    schedules.sort();
    schedules.dedup();
    let velero = ctx.stores.clusters.state().iter().any(|c| {
        c.namespace().as_deref() == Some(namespace)
            && c.name_any() == cluster
            && c.status.as_ref().and_then(|s| s.engine) == Some(EngineKind::Velero)
    });
    if velero {
        return;
    }
    for backup in ctx.stores.backups.state() {
        let name = backup.name_any();
        if backup.namespace().as_deref() != Some(namespace) || !schedules.contains(&name) {
            continue;
        }
        let same_location = backup_kube::locations::pick(
            &ctx.stores.locations,
            namespace,
            backup.spec.storage_location.as_deref(),
        )
        .is_ok_and(|l| l.name_any() == location.name);
        if !same_location {
            continue;
        }
        let kept: Vec<StoredBackup> = stored
            .iter()
            .filter(|b| !deleted.contains(&b.name) && schedule(b).as_deref() == Some(&name))
            .cloned()
            .collect();
        let key = RunKey {
            namespace: namespace.into(),
            backup: name,
            cluster: cluster.into(),
        };
        ctx.runs.set_listing(key, Ok(kept), listed_at);
        ctx.runs.nudge(ObjectRef::from_obj(backup.as_ref()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backup_api::storage_location::StorageLocationStatus;

    fn location(phase: Option<LocationPhase>, access_mode: &str) -> StorageLocation {
        let mut location: StorageLocation = serde_json::from_value(serde_json::json!({
            "apiVersion": "backupfleet.dev/v1alpha1",
            "kind": "StorageLocation",
            "metadata": {"name": "main", "namespace": "project-a"},
            "spec": {"provider": "aws", "objectStorage": {"bucket": "b"}, "accessMode": access_mode},
        }))
        .expect("a StorageLocation");
        location.status = Some(StorageLocationStatus {
            phase,
            ..StorageLocationStatus::default()
        });
        location
    }

    #[test]
    fn only_available_read_write_locations_that_stay_are_collected() {
        assert!(collectable(&location(
            Some(LocationPhase::Available),
            "ReadWrite"
        )));
        assert!(!collectable(&location(
            Some(LocationPhase::Available),
            "ReadOnly"
        )));
        assert!(!collectable(&location(
            Some(LocationPhase::Unavailable),
            "ReadWrite"
        )));
        assert!(!collectable(&location(None, "ReadWrite")));
        let mut leaving = location(Some(LocationPhase::Available), "ReadWrite");
        leaving.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
        );
        assert!(!collectable(&leaving));
    }
}
