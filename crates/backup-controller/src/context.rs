//! What every reconcile shares: the management client, the injected clock, caches of user
//! clusters and storage locations, the live runs, the informers' stores, metrics and events.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::ResourceExt;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::clock::Clock;
use crate::clusters::Clusters;
use crate::metrics::Metrics;
use crate::runs::Runs;
use backup_api::{ClusterBackup, ManagedCluster, StorageLocation};
use backup_kube::locations::Locations;
use backup_kube::tenancy::TenantPolicy;

/// Our server-side-apply field manager and event reporter.
pub const FIELD_MANAGER: &str = "backup-fleet-controller";

/// Tunables, with the defaults `backup-controller run` uses.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How often each ManagedCluster is checked for reachability.
    pub cluster_probe_every: Duration,
    /// How long a cluster's list of stored runs is trusted before it is read again (it is also
    /// read again after every run and every spec change).
    pub storage_resync: Duration,
    /// How often a running backup's progress is polled.
    pub poll_every: Duration,
    /// How long an uncommitted upload must have stood still before it is removed as what an
    /// interrupted run left behind (so a run still uploading into the scope is never touched).
    pub orphan_grace: jiff::SignedDuration,
    /// The controller's own namespace: the only one whose ManagementBackups are honoured.
    pub management_namespace: String,
    /// The release this controller runs as; ManagementBackups owe a backup when it changes.
    pub release: String,
    /// What the platform lends projects (addresses, `file` root, identity).
    pub tenancy: TenantPolicy,
    /// Whether the platform granted ManagementBackups every project's Secrets (the chart's
    /// `managementBackup.readProjectSecrets`); without it they are refused (`SecretsNotGranted`).
    pub management_backup_secrets: bool,
    /// How often the expiry collector deletes the expired backups of every location
    /// (`--gc-interval`; see [`crate::reconcile::expiry_collector`]).
    pub gc_interval: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            cluster_probe_every: Duration::from_secs(300),
            storage_resync: Duration::from_secs(600),
            poll_every: Duration::from_millis(500),
            orphan_grace: jiff::SignedDuration::from_hours(24),
            management_namespace: "default".into(),
            release: env!("CARGO_PKG_VERSION").into(),
            tenancy: TenantPolicy::default(),
            management_backup_secrets: false,
            gc_interval: Duration::from_secs(3600),
        }
    }
}

/// The informers' caches of our kinds.
#[derive(Clone)]
pub struct Stores {
    /// Every StorageLocation.
    pub locations: Store<StorageLocation>,
    /// Every ManagedCluster.
    pub clusters: Store<ManagedCluster>,
    /// Every ClusterBackup.
    pub backups: Store<ClusterBackup>,
    /// True once the StorageLocation informer has listed once (its store is complete).
    pub locations_listed: tokio::sync::watch::Receiver<bool>,
    /// True once the ManagedCluster informer has listed once.
    pub clusters_listed: tokio::sync::watch::Receiver<bool>,
}

impl Stores {
    /// Waits until the location and cluster stores hold a complete first listing. (kube's
    /// `Store::wait_until_ready` wakes only the last of several concurrent waiters, and the
    /// controllers' own appliers already wait on it, so it cannot be used here.)
    pub async fn listed(&self) {
        let _ = self.locations_listed.clone().wait_for(|l| *l).await;
        let _ = self.clusters_listed.clone().wait_for(|l| *l).await;
    }
}

/// Shared by every reconcile of every controller.
pub struct Context {
    /// The management cluster.
    pub client: kube::Client,
    /// "Now".
    pub clock: Arc<dyn Clock>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Kubernetes Events.
    pub recorder: Recorder,
    /// User-cluster clients.
    pub clusters: Clusters,
    /// Opened storage locations.
    pub locations: Locations,
    /// Backups running in this process, and stored runs as last listed.
    pub runs: Runs,
    /// The informers' caches.
    pub stores: Stores,
    /// Tunables.
    pub settings: Settings,
    /// Consecutive failures per object, for the error policy's backoff (keys are object
    /// references, unique across kinds). Part of the context, so a new term of leadership and
    /// every test starts from none.
    pub backoff: crate::reconcile::Backoff,
    /// The status versions this process wrote, so no reconcile decides from an older copy.
    pub written: crate::reconcile::written::WrittenVersions,
    /// The labels (hashed) each ManagedCluster had when last reconciled.
    seen_labels: std::sync::Mutex<std::collections::HashMap<String, u64>>,
}

impl Context {
    /// A context over `client`; `identity` names this replica in Events.
    pub fn new(
        client: kube::Client,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        stores: Stores,
        runs: Runs,
        settings: Settings,
        identity: &str,
    ) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: Some(identity.into()),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            clusters: Clusters::new(client.clone(), Arc::clone(&settings.tenancy.addresses)),
            locations: Locations::new(client.clone(), settings.tenancy.clone()),
            client,
            clock,
            metrics,
            runs,
            stores,
            settings,
            backoff: crate::reconcile::Backoff::default(),
            written: Default::default(),
            seen_labels: std::sync::Mutex::default(),
        }
    }

    /// Asks every ClusterBackup of `namespace` to look again: a location or cluster they may
    /// use changed. Called by those kinds' reconcilers, which run after the informer stores
    /// they read from were updated, so the ClusterBackups see the change (a separate watch
    /// could wake them before the store holds it, and they would decide on the old state).
    pub fn wake_backups_in(&self, namespace: &str) {
        for backup in self.stores.backups.state() {
            if backup.namespace().as_deref() == Some(namespace) {
                self.runs.nudge(ObjectRef::from_obj(backup.as_ref()));
            }
        }
    }

    /// Whether `key`'s labels hash differs from the last one recorded (and records it).
    pub fn labels_changed(&self, key: String, labels_hash: u64) -> bool {
        self.seen_labels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, labels_hash)
            != Some(labels_hash)
    }

    /// Publishes an Event about `object`; a failure to publish is logged, never fatal.
    pub async fn event(
        &self,
        object: &ObjectReference,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        self.event_related(object, None, warning, reason, action, note)
            .await;
    }

    /// [`Context::event`] about `object` and the `related` one (e.g. the cluster of one run of
    /// a fleet backup). kube's recorder folds Events with the same object, reason and related
    /// object into one series keeping the first note, so per-cluster Events must name their
    /// cluster here or all but the first cluster's are lost.
    pub async fn event_related(
        &self,
        object: &ObjectReference,
        related: Option<ObjectReference>,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            note: Some(truncate(note, 1000)),
            action: action.into(),
            secondary: related,
        };
        if let Err(e) = self.recorder.publish(&event, object).await {
            tracing::debug!(error = %e, reason, "publishing an event failed");
        }
    }
}

/// At most `max` bytes, cut at a character boundary (Events reject longer notes).
fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max.saturating_sub(3);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    text
}
