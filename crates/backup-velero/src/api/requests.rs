//! Velero's request objects: delete a backup with its data, get a signed download URL, and ask
//! the server who it is. Each is created by a client and answered through its `status`.

use jiff::Timestamp;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Extra, date_time, preserve_unknown, string_enum};

string_enum! {
    /// Progress of a DeleteBackupRequest (`status.phase`).
    DeleteBackupRequestPhase {
        /// Not yet processed.
        New,
        /// Being processed.
        InProgress,
        /// Done (see `errors`).
        Processed,
    }
}

/// Delete a backup, its stored data and snapshots (`spec`).
#[derive(CustomResource, Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "velero.io",
    version = "v1",
    kind = "DeleteBackupRequest",
    plural = "deletebackuprequests",
    namespaced,
    status = "DeleteBackupRequestStatus"
)]
#[serde(rename_all = "camelCase")]
pub struct DeleteBackupRequestSpec {
    /// The Velero Backup to delete.
    pub backup_name: String,
    /// Fields from newer Velero versions.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Outcome of a DeleteBackupRequest (`status`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeleteBackupRequestStatus {
    /// Current phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<DeleteBackupRequestPhase>,
    /// Why (part of) the deletion failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<String>>,
    /// Fields from newer Velero versions.
    #[serde(flatten)]
    pub extra: Extra,
}

string_enum! {
    /// What a DownloadRequest asks for (`spec.target.kind`).
    DownloadTargetKind {
        /// The backup's log.
        BackupLog,
        /// The backup tarball.
        BackupContents,
        /// Native volume snapshots.
        BackupVolumeSnapshots,
        /// Async item operations.
        BackupItemOperations,
        /// The list of backed-up resources.
        BackupResourceList,
        /// Errors and warnings of the backup.
        BackupResults,
        /// The restore's log.
        RestoreLog,
        /// Errors and warnings of the restore.
        RestoreResults,
        /// The list of restored resources.
        RestoreResourceList,
        /// Async item operations of the restore.
        RestoreItemOperations,
        /// CSI VolumeSnapshots of the backup.
        CSIBackupVolumeSnapshots,
        /// CSI VolumeSnapshotContents of the backup.
        CSIBackupVolumeSnapshotContents,
        /// Volume information of the backup.
        BackupVolumeInfos,
        /// Volume information of the restore.
        RestoreVolumeInfo,
    }
}

string_enum! {
    /// Progress of a DownloadRequest (`status.phase`).
    DownloadRequestPhase {
        /// Not yet processed.
        New,
        /// `downloadURL` is set.
        Processed,
    }
}

/// What to download (`spec.target`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DownloadTarget {
    /// Which artifact.
    pub kind: DownloadTargetKind,
    /// The backup or restore it belongs to.
    pub name: String,
}

/// A request for a signed URL to one artifact (`spec`).
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "velero.io",
    version = "v1",
    kind = "DownloadRequest",
    plural = "downloadrequests",
    namespaced,
    status = "DownloadRequestStatus"
)]
#[serde(rename_all = "camelCase")]
pub struct DownloadRequestSpec {
    /// What to download.
    pub target: DownloadTarget,
    /// Fields from newer Velero versions.
    #[serde(flatten)]
    pub extra: Extra,
}

/// The answer to a DownloadRequest (`status`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DownloadRequestStatus {
    /// Current phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<DownloadRequestPhase>,
    /// The signed URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "downloadURL")]
    pub download_url: Option<String>,
    /// When the URL stops working.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "date_time")]
    pub expiration: Option<Timestamp>,
    /// Fields from newer Velero versions.
    #[serde(flatten)]
    pub extra: Extra,
}

string_enum! {
    /// Progress of a ServerStatusRequest (`status.phase`).
    ServerStatusRequestPhase {
        /// Not yet processed.
        New,
        /// Answered by a running Velero server.
        Processed,
    }
}

/// Ask the Velero server for its version and plugins (`spec` is empty).
#[derive(CustomResource, Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "velero.io",
    version = "v1",
    kind = "ServerStatusRequest",
    plural = "serverstatusrequests",
    namespaced,
    status = "ServerStatusRequestStatus"
)]
#[schemars(transform = preserve_unknown)]
pub struct ServerStatusRequestSpec {
    /// Fields from newer Velero versions.
    #[serde(flatten)]
    pub extra: Extra,
}

/// One plugin the server runs.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct PluginInfo {
    /// Plugin name, e.g. `velero.io/aws`.
    pub name: String,
    /// Plugin kind, e.g. `ObjectStore`.
    pub kind: String,
}

/// The server's answer (`status`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerStatusRequestStatus {
    /// Current phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ServerStatusRequestPhase>,
    /// When the server answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "date_time")]
    pub processed_timestamp: Option<Timestamp>,
    /// The server's version, e.g. `v1.16.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    /// The server's plugins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugins: Option<Vec<PluginInfo>>,
    /// Fields from newer Velero versions.
    #[serde(flatten)]
    pub extra: Extra,
}
