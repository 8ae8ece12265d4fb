//! `ClusterRestore`: restore one stored backup into the cluster it came from or into others
//! of the same project (a migration), with Velero's restore options.
//!
//! A ClusterRestore runs once. Its source is named by the cluster it was taken of (a storage
//! scope: the cluster need not exist any more) and either the ClusterBackup whose newest
//! completed run is wanted or the backup's name; the backup actually used is recorded in the
//! status when the restore starts, so every target gets the same one. Deleting the object
//! deletes its results from storage (k0rdent's rule); restored objects stay.

use backup_core::{Phase, RestoreOptions, RestoreSpec, SpecError, validate_dns1123_subdomain};
use jiff::Timestamp;
use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::FleetPhase;
use super::invalid::InvalidField;
use super::schema::optional_date_time;
use super::status::Condition;

/// The most objects a dry run lists in each cluster's status (the counts are always whole).
pub const PLAN_ITEMS_SHOWN: usize = 100;

/// What to restore, from where, into which clusters (`spec`).
#[derive(CustomResource, Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[kube(
    crates(kube_core = "::kube_core"),
    group = "backupfleet.dev",
    version = "v1alpha1",
    kind = "ClusterRestore",
    plural = "clusterrestores",
    shortname = "crs",
    namespaced,
    status = "ClusterRestoreStatus",
    printcolumn = r#"{"name":"Backup","type":"string","jsonPath":".status.backupName"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Dry Run","type":"boolean","jsonPath":".spec.dryRun"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRestoreSpec {
    /// The backup to restore.
    pub source: RestoreSource,
    /// ManagedClusters of this namespace to restore into; the source cluster when omitted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_clusters: Vec<String>,
    /// Which objects of the backup, where they go and what happens to existing ones: the
    /// same options, in the same JSON, as a restore in one cluster.
    #[serde(flatten)]
    pub options: RestoreOptions,
    /// Velero's resource-modifier rules (version v1), from a ConfigMap of this namespace or
    /// inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_modifiers: Option<ResourceModifiersSource>,
}

/// Where resource-modifier rules come from: exactly one of the two.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceModifiersSource {
    /// A ConfigMap (of this namespace) with one key holding the YAML document, as Velero's
    /// `--resource-modifier-configmap` takes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<ConfigMapName>,
    /// The YAML document itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<String>,
}

/// A ConfigMap by name.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ConfigMapName {
    /// Its name.
    pub name: String,
}

/// Where the backup comes from.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreSource {
    /// The cluster the backup was taken of: its storage scope, `<prefix>/<namespace>/<cluster>`.
    /// It need not be a ManagedCluster any more (restoring a lost cluster elsewhere).
    pub cluster: String,
    /// Restore the newest completed run of this ClusterBackup (or of a `backupctl` schedule of
    /// that name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_backup: Option<String>,
    /// Restore this backup (any backup in the cluster's scope: the controller's, `backupctl`'s
    /// or Velero's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_name: Option<String>,
    /// The StorageLocation (in this namespace) holding the backup; the named ClusterBackup's
    /// location, else the namespace's default location, when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_location: Option<String>,
}

/// What the controller last found (`status`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRestoreStatus {
    /// Aggregate over the target clusters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<FleetPhase>,
    /// The generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The generation the restore was started from (later edits are not applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_generation: Option<i64>,
    /// The StorageLocation read from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_location: Option<String>,
    /// The backup restored (resolved from `source` when the restore started).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_name: Option<String>,
    /// When the restore started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_date_time")]
    pub start_timestamp: Option<Timestamp>,
    /// When the last target finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_date_time")]
    pub completion_timestamp: Option<Timestamp>,
    /// One entry per target cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<ClusterRestoreResult>,
    /// `Ready` (the spec, source and targets are usable; its message says what to fix).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// The restore into one target cluster.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRestoreResult {
    /// The target ManagedCluster.
    pub cluster: String,
    /// The restore's name in storage (`velero/restores/<name>/` in the source cluster's scope).
    pub restore_name: String,
    /// Velero's phase.
    pub phase: Phase,
    /// Items restored (or, in a dry run, planned).
    pub items_restored: u64,
    /// Items selected from the backup.
    pub total_items: u64,
    /// Item warnings (e.g. objects that already existed).
    pub warnings: u64,
    /// Item errors.
    pub errors: u64,
    /// When it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_date_time")]
    pub start_timestamp: Option<Timestamp>,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_date_time")]
    pub completion_timestamp: Option<Timestamp>,
    /// Why it failed, or the first item errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// What was (or, in a dry run, would be) done with each object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<RestorePlan>,
}

/// Counts of what a restore did or would do, and the objects (the first
/// [`PLAN_ITEMS_SHOWN`] in a dry run).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestorePlan {
    /// Objects created (would be created).
    pub create: u64,
    /// Existing objects updated (policy `update`).
    pub update: u64,
    /// Existing objects left alone, or objects not restorable.
    pub skip: u64,
    /// Objects that failed.
    pub failed: u64,
    /// The objects, in restore order (dry runs only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<PlannedItem>,
    /// Whether `items` was cut at [`PLAN_ITEMS_SHOWN`].
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// One object of a restore plan.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlannedItem {
    /// `resource.group` (`deployments.apps`, `configmaps`).
    pub resource: String,
    /// Its namespace in the target (after mapping); none for cluster-scoped objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
    /// `Created`, `Updated`, `Skipped` or `Failed`.
    pub action: String,
}

/// A ClusterRestore spec made of checked values.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidClusterRestore {
    /// The source cluster's scope name.
    pub source_cluster: String,
    /// How the backup is chosen.
    pub source_backup: SourceBackup,
    /// The location named in the spec; `None` = the ClusterBackup's, else the default.
    pub storage_location: Option<String>,
    /// The targets, at least one (the source cluster when the spec named none).
    pub targets: Vec<String>,
    /// Whether the targets were left to default to the source cluster.
    pub targets_defaulted: bool,
    /// The restore every target runs, with its source still unresolved when it is a
    /// ClusterBackup (see [`ValidClusterRestore::restore_spec`]).
    pub template: RestoreSpec,
}

/// How the source backup is chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceBackup {
    /// This backup.
    Named(String),
    /// The newest completed run of this ClusterBackup (schedule label).
    NewestOf(String),
}

impl ValidClusterRestore {
    /// The restore of `backup` (the resolved source) each target runs.
    pub fn restore_spec(&self, backup: &str) -> RestoreSpec {
        RestoreSpec {
            backup_name: Some(backup.to_string()),
            schedule_name: None,
            ..self.template.clone()
        }
    }
}

impl ClusterRestoreSpec {
    /// Checks every field, in the order a user reads them; the first problem is returned.
    pub fn validate(&self) -> Result<ValidClusterRestore, InvalidField> {
        let source = &self.source;
        if source.cluster.is_empty() {
            return Err(InvalidField::new(
                "spec.source.cluster",
                "name the cluster the backup was taken of",
            ));
        }
        validate_dns1123_subdomain(&source.cluster).map_err(|e| {
            InvalidField::new("spec.source.cluster", format!("{:?}: {e}", source.cluster))
        })?;
        let source_backup = match (&source.backup_name, &source.cluster_backup) {
            (Some(_), Some(_)) => {
                return Err(InvalidField::new(
                    "spec.source",
                    "set either backupName or clusterBackup, not both",
                ));
            }
            (Some(name), None) => {
                validate_dns1123_subdomain(name).map_err(|e| {
                    InvalidField::new("spec.source.backupName", format!("{name:?}: {e}"))
                })?;
                SourceBackup::Named(name.clone())
            }
            (None, Some(name)) => {
                validate_dns1123_subdomain(name).map_err(|e| {
                    InvalidField::new("spec.source.clusterBackup", format!("{name:?}: {e}"))
                })?;
                SourceBackup::NewestOf(name.clone())
            }
            (None, None) => {
                return Err(InvalidField::new(
                    "spec.source",
                    "name the backup: backupName (one backup) or clusterBackup (its newest \
                     completed run)",
                ));
            }
        };
        if let Some(location) = &source.storage_location {
            validate_dns1123_subdomain(location).map_err(|e| {
                InvalidField::new("spec.source.storageLocation", format!("{location:?}: {e}"))
            })?;
        }
        let targets_defaulted = self.target_clusters.is_empty();
        let targets = if targets_defaulted {
            vec![source.cluster.clone()]
        } else {
            let mut seen = std::collections::BTreeSet::new();
            for name in &self.target_clusters {
                validate_dns1123_subdomain(name).map_err(|e| {
                    InvalidField::new(
                        "spec.targetClusters",
                        format!(
                            "{name:?}: {e} (name a ManagedCluster of this namespace; a restore \
                             cannot reach clusters of other projects)"
                        ),
                    )
                })?;
                if !seen.insert(name) {
                    return Err(InvalidField::new(
                        "spec.targetClusters",
                        format!("{name:?} is listed twice"),
                    ));
                }
            }
            self.target_clusters.clone()
        };
        let template = RestoreSpec {
            // Stands in for the resolved source while validating the rest.
            backup_name: Some(match &source_backup {
                SourceBackup::Named(n) | SourceBackup::NewestOf(n) => n.clone(),
            }),
            schedule_name: None,
            options: self.options.clone(),
            // Read from the ConfigMap (or the inline text) when the restore starts.
            resource_modifiers: None,
        };
        if let Some(source) = &self.resource_modifiers {
            match (&source.config_map_ref, &source.rules) {
                (Some(_), None) => {}
                (None, Some(rules)) => {
                    backup_core::resource_modifiers::ResourceModifiers::parse(rules).map_err(
                        |e| InvalidField::new("spec.resourceModifiers.rules", e.to_string()),
                    )?;
                }
                _ => {
                    return Err(InvalidField::new(
                        "spec.resourceModifiers",
                        "set exactly one of configMapRef and rules",
                    ));
                }
            }
        }
        template.validate().map_err(|e| {
            let field = match e {
                SpecError::NamespaceMapping { .. } => "spec.namespaceMapping",
                _ => "spec",
            };
            InvalidField::new(field, e.to_string())
        })?;
        Ok(ValidClusterRestore {
            source_cluster: source.cluster.clone(),
            source_backup,
            storage_location: source.storage_location.clone(),
            targets,
            targets_defaulted,
            template,
        })
    }
}

/// The name of the restore into `target` in storage: `<clusterrestore>-<target>`, so the
/// restores of one ClusterRestore into several clusters never collide in the source's scope.
pub fn restore_name(clusterrestore: &str, target: &str) -> String {
    format!("{clusterrestore}-{target}")
}

/// The aggregate phase of the per-cluster phases (`None` before any cluster was started).
pub fn aggregate_phase(clusters: &[ClusterRestoreResult]) -> Option<FleetPhase> {
    if clusters.is_empty() {
        return None;
    }
    if clusters.iter().any(|c| !c.phase.is_terminal()) {
        return Some(FleetPhase::InProgress);
    }
    let completed = clusters
        .iter()
        .filter(|c| c.phase == Phase::Completed)
        .count();
    let failed = clusters
        .iter()
        .filter(|c| matches!(c.phase, Phase::Failed | Phase::FailedValidation))
        .count();
    Some(if completed == clusters.len() {
        FleetPhase::Completed
    } else if failed == clusters.len() {
        FleetPhase::Failed
    } else {
        FleetPhase::PartiallyFailed
    })
}

/// Whether `status` describes a restore that was started (it then never starts again).
pub fn was_started(status: &ClusterRestoreStatus) -> bool {
    status.started_generation.is_some()
}

/// Marks every unfinished cluster of `status` Failed with `message` (Velero's rule for work
/// interrupted by a restart), and updates the aggregate phase.
pub fn fail_unfinished(status: &mut ClusterRestoreStatus, message: &str, now: Timestamp) {
    for cluster in &mut status.clusters {
        if !cluster.phase.is_terminal() {
            cluster.phase = Phase::Failed;
            cluster.completion_timestamp = Some(now);
            cluster.message = Some(message.to_string());
        }
    }
    status.phase = aggregate_phase(&status.clusters);
    if status.completion_timestamp.is_none() {
        status.completion_timestamp = Some(now);
    }
}

pub use super::status::READY;

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> ClusterRestoreSpec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn the_issue_example_validates() {
        let v = spec(serde_json::json!({
            "source": {"cluster": "c1", "clusterBackup": "nightly"},
            "targetClusters": ["c2"],
            "includedNamespaces": ["shop"],
            "namespaceMapping": {"shop": "shop-dr"},
            "existingResourcePolicy": "none",
            "restoreStatus": {"includedResources": []},
            "preserveNodePorts": true,
            "dryRun": false
        }))
        .validate()
        .unwrap();
        assert_eq!(v.source_cluster, "c1");
        assert_eq!(v.source_backup, SourceBackup::NewestOf("nightly".into()));
        assert_eq!(v.targets, vec!["c2"]);
        assert!(!v.targets_defaulted);
        let restore = v.restore_spec("nightly-20261130020000");
        assert_eq!(
            restore.backup_name.as_deref(),
            Some("nightly-20261130020000")
        );
        assert_eq!(restore.schedule_name, None);
        assert_eq!(restore.options.filter.included_namespaces, vec!["shop"]);
        assert_eq!(restore.options.namespace_mapping["shop"], "shop-dr");
        assert_eq!(restore.options.preserve_node_ports, Some(true));
        restore.validate().unwrap();
    }

    #[test]
    fn the_options_keep_their_place_in_the_json() {
        let json = serde_json::json!({
            "source": {"cluster": "c1", "backupName": "b1"},
            "targetClusters": ["c2"],
            "includedNamespaces": ["shop"],
            "namespaceMapping": {"shop": "shop-dr"},
            "existingResourcePolicy": "update",
            "restoreStatus": {"includedResources": ["*"]},
            "preserveNodePorts": true,
            "dryRun": true,
            "resourceModifiers": {"configMapRef": {"name": "rules"}}
        });
        let s = spec(json.clone());
        assert_eq!(s.options.filter.included_namespaces, vec!["shop"]);
        assert!(s.options.dry_run);
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"source":{"cluster":"c1","backupName":"b1"},"targetClusters":["c2"],"includedNamespaces":["shop"],"namespaceMapping":{"shop":"shop-dr"},"existingResourcePolicy":"update","restoreStatus":{"includedResources":["*"]},"preserveNodePorts":true,"dryRun":true,"resourceModifiers":{"configMapRef":{"name":"rules"}}}"#
        );
        assert_eq!(serde_json::to_value(&s).unwrap(), json);
    }

    #[test]
    fn targets_default_to_the_source_cluster() {
        let v = spec(serde_json::json!({"source": {"cluster": "c1", "backupName": "b1"}}))
            .validate()
            .unwrap();
        assert_eq!(v.targets, vec!["c1"]);
        assert!(v.targets_defaulted);
        assert_eq!(v.source_backup, SourceBackup::Named("b1".into()));
    }

    #[test]
    fn every_bad_field_is_named() {
        let cases = [
            (
                serde_json::json!({"source": {"cluster": ""}}),
                "spec.source.cluster",
            ),
            (
                serde_json::json!({"source": {"cluster": "C_1", "backupName": "b"}}),
                "spec.source.cluster",
            ),
            (
                serde_json::json!({"source": {"cluster": "c1"}}),
                "spec.source",
            ),
            (
                serde_json::json!({"source": {"cluster": "c1", "backupName": "b", "clusterBackup": "n"}}),
                "spec.source",
            ),
            (
                serde_json::json!({"source": {"cluster": "c1", "backupName": "../b"}}),
                "spec.source.backupName",
            ),
            (
                serde_json::json!({"source": {"cluster": "c1", "clusterBackup": "N"}}),
                "spec.source.clusterBackup",
            ),
            (
                serde_json::json!({"source": {"cluster": "c1", "backupName": "b", "storageLocation": "x/y"}}),
                "spec.source.storageLocation",
            ),
            (
                serde_json::json!({"source": {"cluster": "c1", "backupName": "b"}, "targetClusters": ["project-b/c2"]}),
                "spec.targetClusters",
            ),
            (
                serde_json::json!({"source": {"cluster": "c1", "backupName": "b"}, "targetClusters": ["c2", "c2"]}),
                "spec.targetClusters",
            ),
            (
                serde_json::json!({"source": {"cluster": "c1", "backupName": "b"}, "namespaceMapping": {"shop": "Shop DR"}}),
                "spec.namespaceMapping",
            ),
        ];
        for (json, field) in cases {
            let e = spec(json.clone()).validate().unwrap_err();
            assert_eq!(e.field, field, "{json}: {e}");
            assert!(!e.message.is_empty());
        }
    }

    fn result(cluster: &str, phase: Phase) -> ClusterRestoreResult {
        ClusterRestoreResult {
            cluster: cluster.into(),
            restore_name: restore_name("r", cluster),
            phase,
            ..ClusterRestoreResult::default()
        }
    }

    #[test]
    fn the_aggregate_phase_follows_the_clusters() {
        use Phase::*;
        assert_eq!(aggregate_phase(&[]), None);
        let cases = [
            (vec![Completed, InProgress], FleetPhase::InProgress),
            (vec![Completed, New], FleetPhase::InProgress),
            (vec![Completed, Completed], FleetPhase::Completed),
            (vec![Completed, Failed], FleetPhase::PartiallyFailed),
            (vec![PartiallyFailed], FleetPhase::PartiallyFailed),
            (vec![Failed, FailedValidation], FleetPhase::Failed),
        ];
        for (phases, want) in cases {
            let clusters: Vec<_> = phases
                .iter()
                .enumerate()
                .map(|(i, p)| result(&format!("c{i}"), *p))
                .collect();
            assert_eq!(aggregate_phase(&clusters), Some(want), "{phases:?}");
        }
    }

    #[test]
    fn interrupted_clusters_end_failed_and_finished_ones_keep_their_phase() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let mut status = ClusterRestoreStatus {
            clusters: vec![
                result("c1", Phase::Completed),
                result("c2", Phase::InProgress),
            ],
            ..ClusterRestoreStatus::default()
        };
        fail_unfinished(&mut status, "interrupted", now);
        assert_eq!(status.clusters[0].phase, Phase::Completed);
        assert_eq!(status.clusters[0].message, None);
        assert_eq!(status.clusters[1].phase, Phase::Failed);
        assert_eq!(status.clusters[1].message.as_deref(), Some("interrupted"));
        assert_eq!(status.phase, Some(FleetPhase::PartiallyFailed));
        assert_eq!(status.completion_timestamp, Some(now));
    }

    #[test]
    fn restore_names_are_per_target() {
        assert_eq!(restore_name("shop-dr", "c2"), "shop-dr-c2");
    }
}
