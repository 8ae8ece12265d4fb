//! `RestoreDrill`: proof, on a schedule, that each cluster's newest backup restores. Each drill
//! restores the newest Completed run of a ClusterBackup for each selected cluster into scratch
//! namespaces (a dedicated cluster, or the same cluster under a prefix), checks that what was
//! restored is what the backup holds, measures how long that took, and cleans up.

use std::time::Duration;

use backup_core::{
    ResourceFilter, Schedule, parse_duration, validate_dns1123_label, validate_dns1123_subdomain,
};
use jiff::Timestamp;
use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::cluster_backup::{ClusterSelection, Selection, selection_of};
use super::invalid::InvalidField;
use super::schema::optional_date_time;
use super::status::Condition;

/// The label on every scratch namespace a drill creates, valued with the RestoreDrill's uid:
/// how its cleanup finds them, also after a crash cut a drill short.
pub const DRILL_LABEL: &str = "backupfleet.dev/drill";

/// How long a drill may take when the spec does not say.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// The longest prefix of a scratch namespace: room is left for the source name.
pub const MAX_PREFIX: usize = 20;

/// What to drill, where, and when (`spec`).
#[derive(CustomResource, Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[kube(
    crates(kube_core = "::kube_core"),
    group = "backupfleet.dev",
    version = "v1alpha1",
    kind = "RestoreDrill",
    plural = "restoredrills",
    shortname = "drill",
    namespaced,
    status = "RestoreDrillStatus",
    printcolumn = r#"{"name":"Schedule","type":"string","jsonPath":".spec.schedule"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Proven","type":"string","jsonPath":".status.conditions[?(@.type==\"Proven\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RestoreDrillSpec {
    /// The ClusterBackup whose newest Completed run of each cluster is drilled.
    pub cluster_backup: String,
    /// Which of its clusters (by `names` or label `selector`); all of them when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clusters: Option<ClusterSelection>,
    /// When to drill, as a ClusterBackup's schedule; omitted: once, now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Where to restore.
    pub target: DrillTarget,
    /// Namespaces of the backup to restore; everything it holds that a restore would create
    /// when omitted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub included_namespaces: Vec<String>,
    /// What becomes of the scratch namespaces afterwards.
    #[serde(default)]
    pub cleanup: DrillCleanup,
    /// How long one cluster's drill may take (Go duration, default `30m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// Where a drill restores: exactly one of the two.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrillTarget {
    /// A ManagedCluster of this namespace kept for drills: cluster-scoped kinds are restored
    /// there too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// The drilled cluster itself, into namespaces named `<prefix><source>`; cluster-scoped
    /// kinds are left out, so nothing of the source is touched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_cluster: Option<SameCluster>,
}

/// Scratch namespaces in the drilled cluster.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SameCluster {
    /// The prefix of each scratch namespace (`drill-`).
    pub namespace_prefix: String,
}

/// What becomes of the scratch namespaces after a drill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub enum DrillCleanup {
    /// Deleted, whatever the outcome.
    #[default]
    Always,
    /// Deleted when the drill verified; kept for a look when it did not.
    OnSuccess,
    /// Kept.
    Never,
}

/// A spec that makes sense, in `backup-core` types.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidRestoreDrill {
    /// The ClusterBackup drilled.
    pub cluster_backup: String,
    /// Its clusters drilled.
    pub selection: Selection,
    /// When (`None`: once, now).
    pub schedule: Option<Schedule>,
    /// Where.
    pub target: ValidTarget,
    /// Namespaces restored (empty: all).
    pub included_namespaces: Vec<String>,
    /// Cleanup.
    pub cleanup: DrillCleanup,
    /// How long one cluster's drill may take.
    pub timeout: Duration,
}

/// Where, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValidTarget {
    /// A dedicated cluster.
    Cluster(String),
    /// The drilled cluster, under a prefix.
    SameCluster {
        /// The prefix.
        prefix: String,
    },
}

impl ValidTarget {
    /// What scratch namespaces' names start with: nothing in a dedicated cluster.
    pub fn namespace_prefix(&self) -> &str {
        match self {
            ValidTarget::Cluster(_) => "",
            ValidTarget::SameCluster { prefix } => prefix,
        }
    }

    /// The scratch namespace a source namespace is restored into.
    pub fn scratch_namespace(&self, source: &str) -> String {
        format!("{}{source}", self.namespace_prefix())
    }

    /// Whether cluster-scoped kinds may be restored (only into a dedicated cluster).
    pub fn takes_cluster_scoped(&self) -> bool {
        matches!(self, ValidTarget::Cluster(_))
    }
}

impl ValidRestoreDrill {
    /// What each drill restores: the included namespaces (all when none), and cluster-scoped
    /// kinds only into a dedicated cluster. The one definition the drill and the admission
    /// check both use.
    pub fn restore_filter(&self) -> ResourceFilter {
        ResourceFilter {
            included_namespaces: self.included_namespaces.clone(),
            include_cluster_resources: Some(self.target.takes_cluster_scoped()),
            ..ResourceFilter::default()
        }
    }
}

impl RestoreDrillSpec {
    /// The spec checked, or the field to fix.
    pub fn validate(&self) -> Result<ValidRestoreDrill, InvalidField> {
        validate_dns1123_subdomain(&self.cluster_backup)
            .map_err(|e| InvalidField::new("spec.clusterBackup", e.to_string()))?;
        let schedule = match &self.schedule {
            None => None,
            Some(text) => Some(
                Schedule::parse(text)
                    .map_err(|e| InvalidField::new("spec.schedule", e.to_string()))?,
            ),
        };
        let timeout = match &self.timeout {
            None => DEFAULT_TIMEOUT,
            Some(text) => parse_duration(text)
                .map_err(|e| InvalidField::new("spec.timeout", e.to_string()))
                .and_then(|d| match d.is_zero() {
                    true => Err(InvalidField::new("spec.timeout", "must be more than 0")),
                    false => Ok(d),
                })?,
        };
        for namespace in &self.included_namespaces {
            validate_dns1123_label(namespace).map_err(|e| {
                InvalidField::new("spec.includedNamespaces", format!("{namespace:?}: {e}"))
            })?;
        }
        Ok(ValidRestoreDrill {
            cluster_backup: self.cluster_backup.clone(),
            selection: selection_of(self.clusters.as_ref())?,
            schedule,
            target: self.target.validate()?,
            included_namespaces: self.included_namespaces.clone(),
            cleanup: self.cleanup,
            timeout,
        })
    }
}

impl DrillTarget {
    fn validate(&self) -> Result<ValidTarget, InvalidField> {
        match (&self.cluster, &self.same_cluster) {
            (Some(cluster), None) => {
                validate_dns1123_subdomain(cluster)
                    .map_err(|e| InvalidField::new("spec.target.cluster", e.to_string()))?;
                Ok(ValidTarget::Cluster(cluster.clone()))
            }
            (None, Some(SameCluster { namespace_prefix })) => {
                let prefix = namespace_prefix;
                let fits = !prefix.is_empty()
                    && prefix.len() <= MAX_PREFIX
                    && validate_dns1123_label(&format!("{prefix}x")).is_ok();
                match fits {
                    true => Ok(ValidTarget::SameCluster {
                        prefix: prefix.clone(),
                    }),
                    false => Err(InvalidField::new(
                        "spec.target.sameCluster.namespacePrefix",
                        format!(
                            "{prefix:?}: 1 to {MAX_PREFIX} lowercase letters, digits or '-', \
                             starting with a letter or digit (e.g. drill-), so that \
                             <prefix><namespace> is a namespace name"
                        ),
                    )),
                }
            }
            _ => Err(InvalidField::new(
                "spec.target",
                "set exactly one of cluster (a ManagedCluster kept for drills) or \
                 sameCluster.namespacePrefix (scratch namespaces in the drilled cluster)",
            )),
        }
    }
}

/// What drills found (`status`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreDrillStatus {
    /// `Ready`: whether drills can run (and why not).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// One entry per drilled cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<ClusterDrill>,
    /// The generation last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The schedule's last firing served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_date_time")]
    pub last_schedule_time: Option<Timestamp>,
    /// The schedule's next firing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_date_time")]
    pub next_schedule_time: Option<Timestamp>,
    /// The last `backupfleet.dev/run-now` token served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_now_token: Option<String>,
}

/// One cluster's drills.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterDrill {
    /// The ManagedCluster.
    pub name: String,
    /// The newest drill.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_drill: Option<DrillResult>,
    /// The newest backup a drill verified, and when: "last proven restorable".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_proven_restorable: Option<ProvenRestorable>,
}

/// A backup a drill restored and verified.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProvenRestorable {
    /// The backup.
    pub backup_name: String,
    /// When the drill that verified it ended.
    #[schemars(schema_with = "super::schema::date_time")]
    pub time: Timestamp,
}

/// One drill of one cluster.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrillResult {
    /// The backup drilled.
    pub backup_name: String,
    /// The restore that carried the drill out (its records are in the location, as any
    /// restore's: `backupctl restore logs`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub restore_name: String,
    /// The cluster restored into.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target_cluster: String,
    /// When it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_date_time")]
    pub start_time: Option<Timestamp>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_date_time")]
    pub completion_time: Option<Timestamp>,
    /// `InProgress`, `Verified`, `Mismatched` or `Failed`.
    pub phase: DrillPhase,
    /// Objects the backup holds that the restore should create.
    #[serde(default)]
    pub items: u64,
    /// Of those, restored and read back unchanged.
    #[serde(default)]
    pub verified: u64,
    /// Of those, missing, refused or changed.
    #[serde(default)]
    pub mismatched: u64,
    /// The first ten mismatches, each naming its object and what differs or why it was
    /// refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mismatches: Vec<String>,
    /// Restore plus verification, in seconds: the recovery time this drill measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_seconds: Option<f64>,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// How a drill ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub enum DrillPhase {
    /// Running.
    #[default]
    InProgress,
    /// Every object restored and read back unchanged.
    Verified,
    /// Restored, but objects are missing, refused or changed.
    Mismatched,
    /// The backup could not be read, decrypted or restored, or the drill timed out.
    Failed,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(value: serde_json::Value) -> RestoreDrillSpec {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn the_issues_example_is_valid() {
        let drill = spec(json!({
            "clusterBackup": "nightly",
            "clusters": {"selector": {"matchLabels": {"env": "prod"}}},
            "schedule": "0 6 * * *",
            "target": {"cluster": "scratch"},
            "includedNamespaces": ["shop"],
            "cleanup": "Always",
            "timeout": "30m",
        }))
        .validate()
        .unwrap();
        assert_eq!(drill.target, ValidTarget::Cluster("scratch".into()));
        assert_eq!(drill.timeout, Duration::from_secs(1800));
        assert!(drill.target.takes_cluster_scoped());
        let same = spec(json!({"clusterBackup": "nightly",
            "target": {"sameCluster": {"namespacePrefix": "drill-"}}}))
        .validate()
        .unwrap();
        assert_eq!(same.target.scratch_namespace("shop"), "drill-shop");
        assert!(!same.target.takes_cluster_scoped());
        assert_eq!(same.schedule, None, "once, now");
        assert_eq!(same.cleanup, DrillCleanup::Always);
    }

    #[test]
    fn each_mistake_names_its_field_and_the_fix() {
        let cases = [
            (
                json!({"clusterBackup": "Nightly", "target": {"cluster": "s"}}),
                "spec.clusterBackup",
            ),
            (json!({"clusterBackup": "n", "target": {}}), "spec.target"),
            (
                json!({"clusterBackup": "n", "target": {"cluster": "s",
                    "sameCluster": {"namespacePrefix": "d-"}}}),
                "spec.target",
            ),
            (
                json!({"clusterBackup": "n", "target": {"sameCluster": {"namespacePrefix": "Drill_"}}}),
                "spec.target.sameCluster.namespacePrefix",
            ),
            (
                json!({"clusterBackup": "n", "target": {"sameCluster":
                    {"namespacePrefix": "a-very-long-drill-prefix-"}}}),
                "spec.target.sameCluster.namespacePrefix",
            ),
            (
                json!({"clusterBackup": "n", "target": {"cluster": "s"}, "schedule": "61 * * * *"}),
                "spec.schedule",
            ),
            (
                json!({"clusterBackup": "n", "target": {"cluster": "s"}, "timeout": "0s"}),
                "spec.timeout",
            ),
            (
                json!({"clusterBackup": "n", "target": {"cluster": "s"},
                    "includedNamespaces": ["ok", "Not OK"]}),
                "spec.includedNamespaces",
            ),
        ];
        for (value, field) in cases {
            let err = spec(value.clone()).validate().unwrap_err();
            assert_eq!(err.field, field, "{value}: {err}");
        }
    }
}
