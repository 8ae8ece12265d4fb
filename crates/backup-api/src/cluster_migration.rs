//! `ClusterMigration` (Kurator's Migrate): one fresh backup of a source cluster, then a restore
//! of it into each target cluster of the project.
//!
//! It is carried out by the kinds that already do each stage: the migration owns a one-time
//! [`ClusterBackup`](super::ClusterBackup) of the source and, once that completed, a
//! [`ClusterRestore`](super::ClusterRestore) of its backup into the targets, both named after
//! the migration and visible with `kubectl get`. Its status gathers both stages per target.
//! Deleting the migration deletes both (owner references), the backup's run from storage
//! included (the child ClusterBackup's `deletePolicy: Delete`); migrated objects stay.

use std::collections::BTreeMap;

use backup_core::{ExistingResourcePolicy, Phase, validate_dns1123_subdomain};
use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::cluster_backup::BackupTemplate;
use super::invalid::InvalidField;
use super::status::Condition;
use super::{ClusterRestoreResult, FleetPhase, RunStatus};

/// What to migrate, from where, to where (`spec`).
#[derive(CustomResource, Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[kube(
    crates(kube_core = "::kube_core"),
    group = "backupfleet.dev",
    version = "v1alpha1",
    kind = "ClusterMigration",
    plural = "clustermigrations",
    shortname = "cmig",
    namespaced,
    status = "ClusterMigrationStatus",
    printcolumn = r#"{"name":"Source","type":"string","jsonPath":".spec.sourceCluster"}"#,
    printcolumn = r#"{"name":"Stage","type":"string","jsonPath":".status.stage"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterMigrationSpec {
    /// The ManagedCluster (of this namespace) to migrate from.
    pub source_cluster: String,
    /// The ManagedClusters (of this namespace) to migrate to.
    pub target_clusters: Vec<String>,
    /// What the backup of the source takes, as in a ClusterBackup's template.
    #[serde(default)]
    pub template: BackupTemplate,
    /// The StorageLocation (of this namespace) the backup goes through; the default when
    /// omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_location: Option<String>,
    /// Restore namespace `key` as namespace `value` in the targets.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub namespace_mapping: BTreeMap<String, String>,
    /// Objects that already exist in a target: `none` (leave them, warn) or `update`.
    #[serde(default)]
    pub existing_resource_policy: ExistingResourcePolicy,
}

/// Where a migration is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum MigrationStage {
    /// Backing up the source.
    Backup,
    /// Restoring into the targets.
    Restore,
    /// Finished (see `phase`).
    Done,
}

/// What the controller last found (`status`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterMigrationStatus {
    /// Aggregate over both stages and every target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<FleetPhase>,
    /// The stage it is in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<MigrationStage>,
    /// The generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The backup of the source (the child ClusterBackup's run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<RunStatus>,
    /// One entry per target: both stages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<MigrationTarget>,
    /// `Ready`: the spec is usable and the stages can go on (its message says what to fix).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// One target cluster's migration.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MigrationTarget {
    /// The target ManagedCluster.
    pub cluster: String,
    /// The backup stage's phase (the same source backup for every target).
    pub backup_phase: Phase,
    /// The restore into this target (absent until the backup completed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<ClusterRestoreResult>,
}

/// A ClusterMigration spec, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidClusterMigration {
    /// The source cluster.
    pub source: String,
    /// The targets.
    pub targets: Vec<String>,
}

impl ClusterMigrationSpec {
    /// Checks the fields the migration itself uses; the template, mapping and policy are
    /// checked by the ClusterBackup and ClusterRestore it creates, whose conditions it relays.
    pub fn validate(&self) -> Result<ValidClusterMigration, InvalidField> {
        if self.source_cluster.is_empty() {
            return Err(InvalidField::new(
                "spec.sourceCluster",
                "name the ManagedCluster to migrate from",
            ));
        }
        validate_dns1123_subdomain(&self.source_cluster).map_err(|e| {
            InvalidField::new(
                "spec.sourceCluster",
                format!("{:?}: {e}", self.source_cluster),
            )
        })?;
        if self.target_clusters.is_empty() {
            return Err(InvalidField::new(
                "spec.targetClusters",
                "name at least one ManagedCluster to migrate to",
            ));
        }
        for target in &self.target_clusters {
            validate_dns1123_subdomain(target).map_err(|e| {
                InvalidField::new("spec.targetClusters", format!("{target:?}: {e}"))
            })?;
            if *target == self.source_cluster && self.namespace_mapping.is_empty() {
                return Err(InvalidField::new(
                    "spec.targetClusters",
                    format!(
                        "{target:?} is the source cluster: without a namespaceMapping the \
                         migration would restore every object onto itself"
                    ),
                ));
            }
        }
        self.template.to_backup_spec()?;
        Ok(ValidClusterMigration {
            source: self.source_cluster.clone(),
            targets: self.target_clusters.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> ClusterMigrationSpec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn kuratos_shape_validates() {
        let v = spec(serde_json::json!({
            "sourceCluster": "c1",
            "targetClusters": ["c2", "c3"],
            "template": {"includedNamespaces": ["shop"], "ttl": "24h"},
            "namespaceMapping": {"shop": "shop-new"},
            "existingResourcePolicy": "update"
        }))
        .validate()
        .unwrap();
        assert_eq!(v.source, "c1");
        assert_eq!(v.targets, vec!["c2", "c3"]);
    }

    #[test]
    fn every_bad_field_is_named() {
        let cases = [
            (
                serde_json::json!({"sourceCluster": "", "targetClusters": ["c2"]}),
                "spec.sourceCluster",
            ),
            (
                serde_json::json!({"sourceCluster": "C1", "targetClusters": ["c2"]}),
                "spec.sourceCluster",
            ),
            (
                serde_json::json!({"sourceCluster": "c1", "targetClusters": []}),
                "spec.targetClusters",
            ),
            (
                serde_json::json!({"sourceCluster": "c1", "targetClusters": ["b/c2"]}),
                "spec.targetClusters",
            ),
            (
                serde_json::json!({"sourceCluster": "c1", "targetClusters": ["c1"]}),
                "spec.targetClusters",
            ),
            (
                serde_json::json!({"sourceCluster": "c1", "targetClusters": ["c2"], "template": {"ttl": "soon"}}),
                "spec.template.ttl",
            ),
        ];
        for (json, field) in cases {
            let e = spec(json.clone()).validate().unwrap_err();
            assert_eq!(e.field, field, "{json}: {e}");
        }
        // Onto itself is fine with a mapping (a copy under other names).
        spec(serde_json::json!({"sourceCluster": "c1", "targetClusters": ["c1"], "namespaceMapping": {"a": "b"}}))
            .validate()
            .unwrap();
    }
}
