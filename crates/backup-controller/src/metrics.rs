//! Prometheus metrics, prefix `backupfleet_`, with fixed low-cardinality labels: controller
//! names, error kinds, phases, and the namespace/object/cluster names users alert on.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};

/// Which controller a reconcile belongs to.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    /// `storagelocation`, `managedcluster`, `clusterbackup`.
    pub controller: &'static str,
}

/// A failed reconcile, by kind of error.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The controller.
    pub controller: &'static str,
    /// [`crate::Error::metric_label`].
    pub error: &'static str,
}

/// A finished backup run.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    /// Its final phase (`Completed`, `PartiallyFailed`, `Failed`, ...).
    pub phase: &'static str,
    /// `direct` or `velero`.
    pub engine: &'static str,
}

/// One cluster's runs of one ClusterBackup.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackupLabels {
    /// The project.
    pub namespace: String,
    /// The ClusterBackup.
    pub clusterbackup: String,
    /// The ManagedCluster.
    pub cluster: String,
}

/// One StorageLocation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LocationLabels {
    /// The project.
    pub namespace: String,
    /// The location.
    pub name: String,
}

/// One StorageLocation, as the expiry collector counts its deletions.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExpiryLabels {
    /// The project.
    pub namespace: String,
    /// The location.
    pub location: String,
}

/// A TokenReview the dashboard made, by its answer.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReviewLabels {
    /// `accepted`, `refused` or `failed` (no answer).
    pub result: &'static str,
}

/// A dashboard request refused by one of its limits.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    /// `in_flight`, `timeout`, `caller_rate`, `invalid_tokens`, `streams`.
    pub limit: &'static str,
}

/// One cluster drilled by RestoreDrills.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DrilledLabels {
    /// The project.
    pub namespace: String,
    /// The ManagedCluster.
    pub cluster: String,
}

/// A finished drill.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DrillLabels {
    /// `Verified`, `Mismatched` or `Failed`.
    pub phase: &'static str,
}

/// `metric`, registered in `registry` as `name` with `help`.
fn registered<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

/// Every metric the controller exports.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ControllerLabels, Counter>,
    failures: Family<ErrorLabels, Counter>,
    duration: Family<ControllerLabels, Histogram>,
    runs: Family<RunLabels, Counter>,
    last_success: Family<BackupLabels, Gauge>,
    location_available: Family<LocationLabels, Gauge>,
    leader: Gauge,
    expired_deleted: Family<ExpiryLabels, Counter>,
    token_reviews: Family<ReviewLabels, Counter>,
    api_limited: Family<LimitLabels, Counter>,
    drills: DrillMetrics,
}

/// What restore drills found.
struct DrillMetrics {
    last_proven: Family<DrilledLabels, Gauge>,
    finished: Family<DrillLabels, Counter>,
    recovery: Histogram,
}

impl DrillMetrics {
    fn new(r: &mut Registry) -> Self {
        DrillMetrics {
            last_proven: registered(
                r,
                "last_proven_restorable_timestamp_seconds",
                "When a RestoreDrill last verified a backup of the cluster (Unix seconds)",
                Family::default(),
            ),
            finished: registered(
                r,
                "drills",
                "Restore drills finished, by phase",
                Family::default(),
            ),
            recovery: registered(
                r,
                "drill_recovery_seconds",
                "How long a drill's restore and verification took: the recovery time it measured",
                Histogram::new(exponential_buckets(0.25, 2.0, 16)),
            ),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("backupfleet");
        let r = &mut registry;
        Metrics {
            reconciles: registered(r, "reconcile", "Reconciles started", Family::default()),
            failures: registered(
                r,
                "reconcile_errors",
                "Reconciles that failed, by kind of error",
                Family::default(),
            ),
            duration: registered(
                r,
                "reconcile_duration_seconds",
                "How long reconciles take",
                Family::new_with_constructor(|| {
                    Histogram::new(exponential_buckets(0.001, 2.0, 16))
                }),
            ),
            runs: registered(
                r,
                "backup_runs",
                "Backup runs finished, by final phase",
                Family::default(),
            ),
            last_success: registered(
                r,
                "last_successful_backup_timestamp_seconds",
                "When the newest completed run of a ClusterBackup on a cluster started (Unix seconds)",
                Family::default(),
            ),
            location_available: registered(
                r,
                "storage_location_available",
                "1 when the location's last probe succeeded, 0 otherwise",
                Family::default(),
            ),
            leader: registered(
                r,
                "leader",
                "1 while this replica holds the lease and reconciles",
                Gauge::default(),
            ),
            expired_deleted: registered(
                r,
                "expired_backups_deleted",
                "Backups the expiry collector deleted because their TTL ran out",
                Family::default(),
            ),
            token_reviews: registered(
                r,
                "api_token_reviews",
                "TokenReviews the dashboard asked the management cluster for, by answer",
                Family::default(),
            ),
            api_limited: registered(
                r,
                "api_limited",
                "Dashboard requests refused by a limit, by limit",
                Family::default(),
            ),
            drills: DrillMetrics::new(r),
            registry,
        }
    }

    /// Counts a TokenReview the dashboard made.
    pub fn token_reviewed(&self, result: &'static str) {
        self.token_reviews
            .get_or_create(&ReviewLabels { result })
            .inc();
    }

    /// Counts a dashboard request refused by `limit`.
    pub fn api_limited(&self, limit: &'static str) {
        self.api_limited.get_or_create(&LimitLabels { limit }).inc();
    }

    /// Counts a reconcile of `controller` and its duration.
    pub fn reconciled(&self, controller: &'static str, took: Duration) {
        let labels = ControllerLabels { controller };
        self.reconciles.get_or_create(&labels).inc();
        self.duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// Counts a failed reconcile.
    pub fn failed(&self, controller: &'static str, error: &crate::Error) {
        self.failures
            .get_or_create(&ErrorLabels {
                controller,
                error: error.metric_label(),
            })
            .inc();
    }

    /// Counts a finished run.
    pub fn run_finished(&self, phase: backup_core::Phase, engine: &'static str) {
        self.runs
            .get_or_create(&RunLabels {
                phase: phase.as_str(),
                engine,
            })
            .inc();
    }

    /// Records the start time of the newest completed run of a ClusterBackup on a cluster.
    pub fn last_successful_backup(&self, labels: BackupLabels, at: jiff::Timestamp) {
        self.last_success.get_or_create(&labels).set(at.as_second());
    }

    /// Forgets a ClusterBackup's series (it was deleted).
    pub fn forget_backup(&self, labels: &BackupLabels) {
        self.last_success.remove(labels);
    }

    /// Records a location's availability.
    pub fn location_available(&self, labels: LocationLabels, available: bool) {
        self.location_available
            .get_or_create(&labels)
            .set(i64::from(available));
    }

    /// Forgets a location's series (it was deleted).
    pub fn forget_location(&self, labels: &LocationLabels) {
        self.location_available.remove(labels);
    }

    /// Records a finished drill of `labels`' cluster: its phase, its recovery time, and when
    /// it proved the cluster restorable if it verified.
    pub fn drill_finished(
        &self,
        labels: DrilledLabels,
        phase: backup_api::restore_drill::DrillPhase,
        recovery_seconds: Option<f64>,
        at: jiff::Timestamp,
    ) {
        use backup_api::restore_drill::DrillPhase;
        let name = match phase {
            DrillPhase::InProgress => return,
            DrillPhase::Verified => "Verified",
            DrillPhase::Mismatched => "Mismatched",
            DrillPhase::Failed => "Failed",
        };
        let drills = &self.drills;
        drills
            .finished
            .get_or_create(&DrillLabels { phase: name })
            .inc();
        if let Some(seconds) = recovery_seconds {
            drills.recovery.observe(seconds);
        }
        if phase == DrillPhase::Verified {
            drills
                .last_proven
                .get_or_create(&labels)
                .set(at.as_second());
        }
    }

    /// Counts `count` backups the expiry collector deleted from a location (the series
    /// appears, at 0, with the location's first sweep).
    pub fn expired_backups_deleted(&self, labels: ExpiryLabels, count: u64) {
        self.expired_deleted.get_or_create(&labels).inc_by(count);
    }

    /// Records whether this replica leads.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// The text exposition format (`/metrics`).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_the_issue_names_is_exported_with_its_prefix() {
        let m = Metrics::new();
        m.reconciled("clusterbackup", Duration::from_millis(3));
        m.run_finished(backup_core::Phase::Completed, "direct");
        m.last_successful_backup(
            BackupLabels {
                namespace: "project-a".into(),
                clusterbackup: "nightly".into(),
                cluster: "c1".into(),
            },
            jiff::Timestamp::from_second(1_800_000_000).unwrap(),
        );
        m.location_available(
            LocationLabels {
                namespace: "project-a".into(),
                name: "main".into(),
            },
            true,
        );
        m.set_leader(true);
        m.expired_backups_deleted(
            ExpiryLabels {
                namespace: "project-a".into(),
                location: "main".into(),
            },
            2,
        );
        let text = m.encode().unwrap();
        for expected in [
            "backupfleet_reconcile_total{controller=\"clusterbackup\"} 1",
            "backupfleet_reconcile_duration_seconds_count{controller=\"clusterbackup\"} 1",
            "backupfleet_backup_runs_total{phase=\"Completed\",engine=\"direct\"} 1",
            "backupfleet_last_successful_backup_timestamp_seconds{namespace=\"project-a\",clusterbackup=\"nightly\",cluster=\"c1\"} 1800000000",
            "backupfleet_storage_location_available{namespace=\"project-a\",name=\"main\"} 1",
            "backupfleet_leader 1",
            "backupfleet_expired_backups_deleted_total{namespace=\"project-a\",location=\"main\"} 2",
        ] {
            assert!(text.contains(expected), "missing {expected} in\n{text}");
        }
    }
}
