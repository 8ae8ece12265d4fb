//! `backups.velero.io/v1`: one backup run, as Velero documents it.

use std::collections::BTreeMap;

use jiff::Timestamp;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    Extra, HookStatus, LabelSelector, ObjectLabels, TypedLocalObjectReference, date_time,
    opaque_object, string_enum,
};

string_enum! {
    /// Where a Velero backup is in its life (`status.phase`).
    BackupPhase {
        /// Created, not yet picked up by the server.
        New,
        /// Waiting for a concurrent-backup slot (Velero 1.18+).
        Queued,
        /// Given a slot, about to start (Velero 1.18+).
        ReadyToStart,
        /// The spec was rejected; see `validationErrors`.
        FailedValidation,
        /// Items are being backed up.
        InProgress,
        /// Items done; asynchronous plugin operations still run.
        WaitingForPluginOperations,
        /// As above, with some items already failed.
        WaitingForPluginOperationsPartiallyFailed,
        /// Writing final metadata.
        Finalizing,
        /// As above, with some items already failed.
        FinalizingPartiallyFailed,
        /// Everything succeeded.
        Completed,
        /// Finished with item errors.
        PartiallyFailed,
        /// Finished unsuccessfully; see `failureReason`.
        Failed,
        /// A DeleteBackupRequest is being processed.
        Deleting,
    }
}

/// What a Velero backup captures and how (`spec`). Unknown fields are kept in `extra`.
#[derive(CustomResource, Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "velero.io",
    version = "v1",
    kind = "Backup",
    plural = "backups",
    namespaced,
    status = "BackupStatus"
)]
#[serde(rename_all = "camelCase")]
pub struct BackupSpec {
    /// Labels for the backup (Schedule templates use this to label the backups they create).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<ObjectLabels>,
    /// Namespaces to include (`*` = all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub included_namespaces: Option<Vec<String>>,
    /// Namespaces to exclude.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excluded_namespaces: Option<Vec<String>>,
    /// Resources to include (`*` = all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub included_resources: Option<Vec<String>>,
    /// Resources to exclude.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excluded_resources: Option<Vec<String>>,
    /// Cluster-scoped resources to include (new-style filter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub included_cluster_scoped_resources: Option<Vec<String>>,
    /// Cluster-scoped resources to exclude (new-style filter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excluded_cluster_scoped_resources: Option<Vec<String>>,
    /// Namespaced resources to include (new-style filter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub included_namespace_scoped_resources: Option<Vec<String>>,
    /// Namespaced resources to exclude (new-style filter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excluded_namespace_scoped_resources: Option<Vec<String>>,
    /// Objects must match all of these labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
    /// Objects must match any one of these selectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub or_label_selectors: Option<Vec<LabelSelector>>,
    /// Take volume snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_volumes: Option<bool>,
    /// Retention as a Go duration string (`720h0m0s`), kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    /// Cluster-scoped objects: all, none, or (absent) automatic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_cluster_resources: Option<bool>,
    /// Pre/post hooks, opaque to us.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "opaque_object")]
    pub hooks: Option<serde_json::Value>,
    /// Name of the BackupStorageLocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_location: Option<String>,
    /// Names of VolumeSnapshotLocations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_snapshot_locations: Option<Vec<String>>,
    /// Deprecated spelling of `defaultVolumesToFsBackup`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_volumes_to_restic: Option<bool>,
    /// Back up all pod volumes with file-system backup unless opted out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_volumes_to_fs_backup: Option<bool>,
    /// Per-resource backup order (`resource` -> `ns/name,ns/name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordered_resources: Option<BTreeMap<String, String>>,
    /// How long to wait for CSI snapshots (Go duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csi_snapshot_timeout: Option<String>,
    /// How long to wait for async plugin operations (Go duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_operation_timeout: Option<String>,
    /// A ConfigMap with a resource policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_policy: Option<TypedLocalObjectReference>,
    /// Move CSI snapshot data to the BSL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_move_data: Option<bool>,
    /// Which data mover to use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datamover: Option<String>,
    /// Uploader settings, opaque to us.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "opaque_object")]
    pub uploader_config: Option<serde_json::Value>,
    /// Fields from newer Velero versions.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Items backed up so far (`status.progress`); best effort, as Velero warns.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupProgress {
    /// Items in scope (may grow while the backup runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_items: Option<i64>,
    /// Items written to the tarball.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items_backed_up: Option<i64>,
    /// Fields from newer Velero versions.
    #[serde(flatten)]
    pub extra: Extra,
}

/// What Velero reports about a backup (`status`). Unknown fields are kept in `extra`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupStatus {
    /// Deprecated major format version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// Backup format version, e.g. `1.1.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format_version: Option<String>,
    /// When the backup becomes eligible for garbage collection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "date_time")]
    pub expiration: Option<Timestamp>,
    /// Current phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<BackupPhase>,
    /// Why the spec was rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_errors: Option<Vec<String>>,
    /// When the server started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "date_time")]
    pub start_timestamp: Option<Timestamp>,
    /// When it finished (also on failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "date_time")]
    pub completion_timestamp: Option<Timestamp>,
    /// Volume snapshots attempted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_snapshots_attempted: Option<i64>,
    /// Volume snapshots completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_snapshots_completed: Option<i64>,
    /// Why it failed (phase `Failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// Count of warnings (the messages are in the backup log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warnings: Option<i64>,
    /// Count of errors (the messages are in the backup log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<i64>,
    /// Items done so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<BackupProgress>,
    /// CSI snapshots attempted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csi_volume_snapshots_attempted: Option<i64>,
    /// CSI snapshots completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csi_volume_snapshots_completed: Option<i64>,
    /// Async item operations attempted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_item_operations_attempted: Option<i64>,
    /// Async item operations completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_item_operations_completed: Option<i64>,
    /// Async item operations failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_item_operations_failed: Option<i64>,
    /// Hook counters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook_status: Option<HookStatus>,
    /// Fields from newer Velero versions.
    #[serde(flatten)]
    pub extra: Extra,
}
