//! `restores.velero.io/v1`: restoring one backup (or the latest of a schedule) into a cluster.

use std::collections::BTreeMap;

use jiff::Timestamp;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    Extra, HookStatus, LabelSelector, TypedLocalObjectReference, date_time, opaque_object,
    string_enum,
};

string_enum! {
    /// Where a Velero restore is in its life (`status.phase`).
    RestorePhase {
        /// Created, not yet picked up.
        New,
        /// The spec was rejected (e.g. the backup does not exist); see `validationErrors`.
        FailedValidation,
        /// Items are being restored.
        InProgress,
        /// Items done; asynchronous plugin operations still run.
        WaitingForPluginOperations,
        /// As above, with some items already failed.
        WaitingForPluginOperationsPartiallyFailed,
        /// Running post-restore work.
        Finalizing,
        /// As above, with some items already failed.
        FinalizingPartiallyFailed,
        /// Everything succeeded.
        Completed,
        /// Finished with item errors.
        PartiallyFailed,
        /// Finished unsuccessfully; see `failureReason`.
        Failed,
    }
}

/// What to do with an object that already exists in the cluster.
pub type ExistingResourcePolicy = String;

/// Which restored objects also get their `status` restored (`spec.restoreStatus`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreStatusSpec {
    /// Resources whose status is restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub included_resources: Option<Vec<String>>,
    /// Resources whose status is not restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excluded_resources: Option<Vec<String>>,
}

/// A restore (`spec`). Unknown fields are kept in `extra`.
#[derive(CustomResource, Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "velero.io",
    version = "v1",
    kind = "Restore",
    plural = "restores",
    namespaced,
    status = "RestoreStatus"
)]
#[serde(rename_all = "camelCase")]
pub struct RestoreSpec {
    /// The backup to restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_name: Option<String>,
    /// Or: restore the most recent `Completed` backup created by this schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_name: Option<String>,
    /// Namespaces to include.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub included_namespaces: Option<Vec<String>>,
    /// Namespaces to exclude.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excluded_namespaces: Option<Vec<String>>,
    /// Resources to include.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub included_resources: Option<Vec<String>>,
    /// Resources to exclude.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excluded_resources: Option<Vec<String>>,
    /// Restore namespace `key` as namespace `value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_mapping: Option<BTreeMap<String, String>>,
    /// Objects must match all of these labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
    /// Objects must match any one of these selectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub or_label_selectors: Option<Vec<LabelSelector>>,
    /// Restore persistent volumes from snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "restorePVs")]
    pub restore_pvs: Option<bool>,
    /// Restore `status` for these resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_status: Option<RestoreStatusSpec>,
    /// Keep Service node ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preserve_node_ports: Option<bool>,
    /// Cluster-scoped objects: all, none, or (absent) automatic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_cluster_resources: Option<bool>,
    /// Restore hooks, opaque to us.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "opaque_object")]
    pub hooks: Option<serde_json::Value>,
    /// `none` (keep and warn) or `update` (patch to match the backup).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub existing_resource_policy: Option<ExistingResourcePolicy>,
    /// How long to wait for async plugin operations (Go duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_operation_timeout: Option<String>,
    /// A ConfigMap with resource modifier rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_modifier: Option<TypedLocalObjectReference>,
    /// Uploader settings, opaque to us.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "opaque_object")]
    pub uploader_config: Option<serde_json::Value>,
    /// Fields from newer Velero versions.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Items restored so far (`status.progress`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreProgress {
    /// Items in scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_items: Option<i64>,
    /// Items restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items_restored: Option<i64>,
    /// Fields from newer Velero versions.
    #[serde(flatten)]
    pub extra: Extra,
}

/// What Velero reports about a restore (`status`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreStatus {
    /// Current phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RestorePhase>,
    /// Why the spec was rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_errors: Option<Vec<String>>,
    /// Count of warnings (messages are in the restore results).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warnings: Option<i64>,
    /// Count of errors (messages are in the restore results).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<i64>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// When it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "date_time")]
    pub start_timestamp: Option<Timestamp>,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "date_time")]
    pub completion_timestamp: Option<Timestamp>,
    /// Items done so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<RestoreProgress>,
    /// Async item operations attempted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_item_operations_attempted: Option<i64>,
    /// Async item operations completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_item_operations_completed: Option<i64>,
    /// Async item operations failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_item_operations_failed: Option<i64>,
    /// Hook counters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook_status: Option<HookStatus>,
    /// Fields from newer Velero versions.
    #[serde(flatten)]
    pub extra: Extra,
}
