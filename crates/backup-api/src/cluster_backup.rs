//! `ClusterBackup`: one-time or scheduled backups of one cluster or a selected fleet, with
//! retention (Kurator's fleet Backup plus KKP's schedules).
//!
//! As with every kind here, the spec is what the user wrote (schedule, TTL and time zone as
//! text) and [`ClusterBackupSpec::validate`] turns it into a [`ValidClusterBackup`] made of
//! `backup-core` types, or names the field to fix.

use std::collections::BTreeMap;

use backup_core::{
    BackupSpec, GfsPolicy, KeepCount, LabelSelector, Phase, ResourceFilter, RetentionPolicy,
    Schedule, Ttl, validate_dns1123_subdomain,
};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::invalid::InvalidField;
use super::schema::optional_date_time;
use super::status::Condition;

/// Clusters backed up at once by one ClusterBackup when the spec does not say.
pub const DEFAULT_MAX_CONCURRENT_CLUSTERS: u32 = 4;
/// The most clusters one ClusterBackup may back up at once.
pub const MAX_CONCURRENT_CLUSTERS: u32 = 256;

/// What to back up, where, and when (`spec`).
#[derive(CustomResource, Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[kube(
    crates(kube_core = "::kube_core"),
    group = "backupfleet.dev",
    version = "v1alpha1",
    kind = "ClusterBackup",
    plural = "clusterbackups",
    shortname = "cbk",
    namespaced,
    status = "ClusterBackupStatus",
    printcolumn = r#"{"name":"Schedule","type":"string","jsonPath":".spec.schedule"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Last Run","type":"date","jsonPath":".status.lastScheduleTime"}"#,
    printcolumn = r#"{"name":"Next Run","type":"string","jsonPath":".status.nextScheduleTime"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterBackupSpec {
    /// Which ManagedClusters of this namespace: by `names` or by label `selector`; every
    /// ManagedCluster of the namespace when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clusters: Option<ClusterSelection>,
    /// When to run: 5-field cron (`0 2 * * *`), `@hourly`/`@daily`/`@weekly`/`@monthly`/
    /// `@yearly`, or `@every <duration>` (`@every 20m`). Omitted: one run, now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// IANA time zone the cron fields are read in (`Europe/Berlin`); UTC when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// The StorageLocation (in this namespace) runs are written to; the namespace's default
    /// location when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_location: Option<String>,
    /// What each run backs up, as in Velero's Backup spec.
    #[serde(default)]
    pub template: BackupTemplate,
    /// How many runs to keep per cluster (`keep`, 1..=50) or grandfather-father-son tiers
    /// (`gfs`); TTL expiry always applies, and the newest successful run is never deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
    /// Stop starting scheduled runs, without deleting anything.
    #[serde(default)]
    pub paused: bool,
    /// How many clusters are backed up at once (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_clusters: Option<u32>,
    /// `Retain` (default) keeps the runs in storage when this object is deleted; `Delete`
    /// deletes them with it.
    #[serde(default)]
    pub delete_policy: DeletePolicy,
}

/// The clusters a ClusterBackup covers.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSelection {
    /// ManagedClusters whose labels match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// ManagedClusters by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
}

/// What a run backs up (Velero's Backup spec fields).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupTemplate {
    /// Namespaces, resources, cluster-scoped objects and label selectors, as in Velero.
    #[serde(flatten)]
    pub filter: ResourceFilter,
    /// How long each run is kept, as a Go duration (`720h`, the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    /// Velero engine: take volume snapshots (default true). The direct engine copies no
    /// volume data and records so in each backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_volumes: Option<bool>,
    /// Velero engine: back up volume data with file-system backup (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_volumes_to_fs_backup: Option<bool>,
    /// Labels put on every run.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// How many runs are kept per cluster.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Retention {
    /// Keep the newest N successful runs (1..=50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<i64>,
    /// Keep the newest run of each of the last N hours, days, ISO weeks and months (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gfs: Option<GfsPolicy>,
}

/// What happens to stored runs when the ClusterBackup is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub enum DeletePolicy {
    /// Keep them (they can still be restored and are listed by `backupctl`).
    #[default]
    Retain,
    /// Delete them from storage.
    Delete,
}

/// Where the fleet's last runs stand, aggregated over the selected clusters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum FleetPhase {
    /// Nothing has run yet.
    New,
    /// At least one cluster's run is still going.
    InProgress,
    /// Every cluster's last run completed.
    Completed,
    /// Some clusters' last runs failed or had item errors.
    PartiallyFailed,
    /// Every cluster's last run failed.
    Failed,
}

/// What the controller last found (`status`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterBackupStatus {
    /// The fleet's phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<FleetPhase>,
    /// The generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The firing time of the last run (or the one-time run's start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_date_time")]
    pub last_schedule_time: Option<Timestamp>,
    /// When the schedule fires next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_date_time")]
    pub next_schedule_time: Option<Timestamp>,
    /// The generation the last run was started from (a one-time backup is never re-run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_generation: Option<i64>,
    /// The last `backupfleet.dev/run-now` token served (each new token runs once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_now_token: Option<String>,
    /// One entry per selected cluster, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<ClusterRuns>,
    /// `Ready` (the spec, location and clusters are usable) and `Degraded` (naming the clusters
    /// whose last run did not complete).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// One cluster's runs of this ClusterBackup.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRuns {
    /// The ManagedCluster.
    pub cluster: String,
    /// The newest run: running, finished, or failed before anything was stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_backup: Option<RunStatus>,
    /// The newest run that completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_backup: Option<String>,
    /// The runs in storage, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backups: Vec<String>,
}

/// One run in one cluster.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunStatus {
    /// The backup's name in storage (`<clusterbackup>-<YYYYMMDDhhmmss>`).
    pub name: String,
    /// Velero's phase.
    pub phase: Phase,
    /// Items written.
    pub items_backed_up: u64,
    /// Items in scope.
    pub total_items: u64,
    /// When it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_date_time")]
    pub start_timestamp: Option<Timestamp>,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_date_time")]
    pub completion_timestamp: Option<Timestamp>,
    /// When its TTL runs out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_date_time")]
    pub expiration: Option<Timestamp>,
    /// Item errors.
    pub errors: u64,
    /// Item warnings.
    pub warnings: u64,
    /// Why it failed, or what to know about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// How clusters are chosen, once validated.
#[derive(Debug, Clone, PartialEq)]
pub enum Selection {
    /// Every ManagedCluster in the namespace.
    All,
    /// These, by name.
    Names(Vec<String>),
    /// Those whose labels match.
    Selector(LabelSelector),
}

impl Selection {
    /// Whether a cluster named `name` with `labels` is selected.
    pub fn selects(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Selection::All => true,
            Selection::Names(names) => names.iter().any(|n| n == name),
            Selection::Selector(selector) => selector.matches(labels),
        }
    }
}

/// A ClusterBackup spec made of checked `backup-core` values.
#[derive(Debug, Clone)]
pub struct ValidClusterBackup {
    /// Which clusters.
    pub selection: Selection,
    /// When, and in which time zone; `None` for a one-time backup.
    pub schedule: Option<(Schedule, TimeZone)>,
    /// The location name; `None` = the namespace's default.
    pub storage_location: Option<String>,
    /// What each run backs up (without location and labels, which each run adds).
    pub template: BackupSpec,
    /// What retention deletes after each run.
    pub retention: RetentionPolicy,
    /// Whether scheduled runs are paused.
    pub paused: bool,
    /// Clusters backed up at once.
    pub max_concurrent_clusters: usize,
    /// What deletion does to stored runs.
    pub delete_policy: DeletePolicy,
}

/// The clusters `clusters` selects (all when it is omitted or names none), or the field to
/// fix: a ClusterBackup's and a RestoreDrill's `spec.clusters` mean the same.
pub fn selection_of(clusters: Option<&ClusterSelection>) -> Result<Selection, InvalidField> {
    Ok(match clusters {
        None => Selection::All,
        Some(ClusterSelection {
            selector: Some(_),
            names,
        }) if !names.is_empty() => {
            return Err(InvalidField::new(
                "spec.clusters",
                "set either names or selector, not both",
            ));
        }
        Some(ClusterSelection {
            selector: Some(selector),
            ..
        }) => {
            selector
                .validate()
                .map_err(|e| InvalidField::new("spec.clusters.selector", e.to_string()))?;
            Selection::Selector(selector.clone())
        }
        Some(ClusterSelection { names, .. }) if names.is_empty() => Selection::All,
        Some(ClusterSelection { names, .. }) => {
            for name in names {
                validate_dns1123_subdomain(name).map_err(|e| {
                    InvalidField::new("spec.clusters.names", format!("{name:?}: {e}"))
                })?;
            }
            Selection::Names(names.clone())
        }
    })
}

impl ClusterBackupSpec {
    /// Checks every field, in the order a user reads them; the first problem is returned.
    pub fn validate(&self) -> Result<ValidClusterBackup, InvalidField> {
        let selection = selection_of(self.clusters.as_ref())?;
        let time_zone = match &self.time_zone {
            None => TimeZone::UTC,
            Some(name) => TimeZone::get(name).map_err(|_| {
                InvalidField::new(
                    "spec.timeZone",
                    format!(
                        "unknown time zone {name:?}: use an IANA name such as Europe/Berlin or UTC"
                    ),
                )
            })?,
        };
        let schedule = match &self.schedule {
            None => None,
            Some(text) => Some((
                Schedule::parse(text)
                    .map_err(|e| InvalidField::new("spec.schedule", e.to_string()))?,
                time_zone,
            )),
        };
        if let Some(location) = &self.storage_location {
            validate_dns1123_subdomain(location).map_err(|e| {
                InvalidField::new("spec.storageLocation", format!("{location:?}: {e}"))
            })?;
        }
        let template = self.template.to_backup_spec()?;
        let retention = match &self.retention {
            None => RetentionPolicy {
                ttl_expiry: true,
                ..RetentionPolicy::default()
            },
            Some(r) => r.to_policy()?,
        };
        let max = self
            .max_concurrent_clusters
            .unwrap_or(DEFAULT_MAX_CONCURRENT_CLUSTERS);
        if !(1..=MAX_CONCURRENT_CLUSTERS).contains(&max) {
            return Err(InvalidField::new(
                "spec.maxConcurrentClusters",
                format!("{max} is out of range: use 1 to {MAX_CONCURRENT_CLUSTERS}"),
            ));
        }
        Ok(ValidClusterBackup {
            selection,
            schedule,
            storage_location: self.storage_location.clone(),
            template,
            retention,
            paused: self.paused,
            max_concurrent_clusters: max as usize,
            delete_policy: self.delete_policy,
        })
    }
}

impl BackupTemplate {
    /// The core backup spec of one run, before the run adds its location and labels.
    pub fn to_backup_spec(&self) -> Result<BackupSpec, InvalidField> {
        let mut spec = BackupSpec {
            filter: self.filter.clone(),
            labels: self.labels.clone(),
            ..BackupSpec::default()
        };
        if let Some(ttl) = &self.ttl {
            spec.ttl = Ttl::parse(ttl)
                .map_err(|e| InvalidField::new("spec.template.ttl", e.to_string()))?;
        }
        if let Some(v) = self.snapshot_volumes {
            spec.snapshot_volumes = v;
        }
        if let Some(v) = self.default_volumes_to_fs_backup {
            spec.default_volumes_to_fs_backup = v;
        }
        for key in self.labels.keys() {
            if key.starts_with("velero.io/") || key.starts_with("backupfleet.dev/") {
                return Err(InvalidField::new(
                    "spec.template.labels",
                    format!("{key:?} is set by the controller; use a label of your own"),
                ));
            }
        }
        spec.validate()
            .map_err(|e| InvalidField::new("spec.template", e.to_string()))?;
        Ok(spec)
    }
}

impl Retention {
    /// The core retention policy (TTL expiry always on).
    pub fn to_policy(&self) -> Result<RetentionPolicy, InvalidField> {
        let keep_last = match self.keep {
            None => None,
            Some(n) => Some(
                KeepCount::from_spec(n)
                    .map_err(|e| InvalidField::new("spec.retention.keep", e.to_string()))?,
            ),
        };
        Ok(RetentionPolicy {
            ttl_expiry: true,
            keep_last,
            gfs: self.gfs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> ClusterBackupSpec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn the_issue_example_validates() {
        let s = spec(serde_json::json!({
            "clusters": {"selector": {"matchLabels": {"env": "prod"}}},
            "schedule": "0 2 * * *",
            "timeZone": "Europe/Berlin",
            "storageLocation": "main",
            "template": {
                "includedNamespaces": ["shop"],
                "labelSelector": {"matchLabels": {"app": "shop"}},
                "ttl": "720h",
                "defaultVolumesToFsBackup": true
            },
            "retention": {"keep": 20},
            "paused": false,
            "maxConcurrentClusters": 4,
            "deletePolicy": "Retain"
        }));
        let v = s.validate().unwrap();
        assert!(matches!(v.selection, Selection::Selector(_)));
        let (schedule, tz) = v.schedule.unwrap();
        assert_eq!(schedule.as_str(), "0 2 * * *");
        assert_eq!(tz.iana_name(), Some("Europe/Berlin"));
        assert_eq!(v.template.filter.included_namespaces, vec!["shop"]);
        assert_eq!(v.retention.keep_last.unwrap().get(), 20);
        assert!(v.retention.ttl_expiry);
        assert_eq!(v.max_concurrent_clusters, 4);
    }

    #[test]
    fn every_bad_field_is_named() {
        let cases = [
            (
                serde_json::json!({"schedule": "61 * * * *"}),
                "spec.schedule",
            ),
            (
                serde_json::json!({"schedule": "@daily", "timeZone": "Mars/Olympus"}),
                "spec.timeZone",
            ),
            (
                serde_json::json!({"retention": {"keep": 0}}),
                "spec.retention.keep",
            ),
            (
                serde_json::json!({"retention": {"keep": 51}}),
                "spec.retention.keep",
            ),
            (
                serde_json::json!({"retention": {"keep": -3}}),
                "spec.retention.keep",
            ),
            (
                serde_json::json!({"template": {"ttl": "-1h"}}),
                "spec.template.ttl",
            ),
            (
                serde_json::json!({"storageLocation": "Main_Location"}),
                "spec.storageLocation",
            ),
            (
                serde_json::json!({"clusters": {"names": ["c1"], "selector": {}}}),
                "spec.clusters",
            ),
            (
                serde_json::json!({"clusters": {"names": ["C 1"]}}),
                "spec.clusters.names",
            ),
            (
                serde_json::json!({"maxConcurrentClusters": 0}),
                "spec.maxConcurrentClusters",
            ),
            (
                serde_json::json!({"template": {"labels": {"velero.io/schedule-name": "x"}}}),
                "spec.template.labels",
            ),
            (
                serde_json::json!({"template": {"labelSelector": {"matchLabels": {"a": "b"}}, "orLabelSelectors": [{"matchLabels": {"c": "d"}}]}}),
                "spec.template",
            ),
        ];
        for (json, field) in cases {
            let e = spec(json.clone()).validate().unwrap_err();
            assert_eq!(e.field, field, "{json}: {e}");
            assert!(!e.message.is_empty());
        }
        let e = spec(serde_json::json!({"retention": {"keep": 51}}))
            .validate()
            .unwrap_err();
        assert!(e.message.contains("50"), "{e}");
        // The value as written, not what it would wrap to.
        let e = spec(serde_json::json!({"retention": {"keep": -3}}))
            .validate()
            .unwrap_err();
        assert!(e.message.starts_with("keep count -3 "), "{e}");
    }

    #[test]
    fn defaults_are_a_one_time_backup_of_every_cluster_kept_by_ttl() {
        let v = ClusterBackupSpec::default().validate().unwrap();
        assert_eq!(v.selection, Selection::All);
        assert!(v.schedule.is_none());
        assert!(v.retention.ttl_expiry && v.retention.keep_last.is_none());
        assert_eq!(v.template.ttl.to_string(), "720h0m0s");
        assert_eq!(v.delete_policy, DeletePolicy::Retain);
    }

    #[test]
    fn selection_by_names_and_labels() {
        let labels = BTreeMap::from([("env".to_string(), "prod".to_string())]);
        assert!(Selection::Names(vec!["c1".into()]).selects("c1", &BTreeMap::new()));
        assert!(!Selection::Names(vec!["c1".into()]).selects("c2", &labels));
        let prod = Selection::Selector(LabelSelector::parse("env=prod").unwrap());
        assert!(prod.selects("c9", &labels));
        assert!(!prod.selects("c9", &BTreeMap::new()));
    }
}
