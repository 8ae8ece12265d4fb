//! `backupstoragelocations.velero.io/v1`: where Velero writes backups.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::ByteString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Extra, SecretKeySelector, bytes, date_time, string_enum};

string_enum! {
    /// Whether Velero can reach the location (`status.phase`).
    BackupStorageLocationPhase {
        /// The last validation succeeded.
        Available,
        /// The last validation failed; see `message`.
        Unavailable,
    }
}

string_enum! {
    /// Whether backups may be written through the location (`spec.accessMode`).
    BackupStorageLocationAccessMode {
        /// Restores only.
        ReadOnly,
        /// The default.
        ReadWrite,
    }
}

/// Bucket and prefix (`spec.objectStorage`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStorageLocation {
    /// Bucket name.
    pub bucket: String,
    /// Path inside the bucket; we use `<project>/<cluster>` to isolate clusters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// PEM CA bundle for the endpoint (base64 in JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "bytes")]
    pub ca_cert: Option<ByteString>,
    /// Fields from newer Velero versions.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A storage location (`spec`). Unknown fields are kept in `extra`.
#[derive(CustomResource, Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "velero.io",
    version = "v1",
    kind = "BackupStorageLocation",
    plural = "backupstoragelocations",
    namespaced,
    status = "BackupStorageLocationStatus"
)]
#[serde(rename_all = "camelCase")]
pub struct BackupStorageLocationSpec {
    /// Object store plugin (`aws`, `gcp`, `azure`, `velero.io/aws`, ...).
    pub provider: String,
    /// Bucket and prefix.
    pub object_storage: ObjectStorageLocation,
    /// Provider settings (region, s3Url, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<BTreeMap<String, String>>,
    /// The Secret key holding the credentials (in the Velero namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<SecretKeySelector>,
    /// Used by backups that name no location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<bool>,
    /// ReadOnly or ReadWrite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_mode: Option<BackupStorageLocationAccessMode>,
    /// How often backups in storage are synced into the cluster (Go duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_sync_period: Option<String>,
    /// How often the location is validated (Go duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_frequency: Option<String>,
    /// Fields from newer Velero versions.
    #[serde(flatten)]
    pub extra: Extra,
}

/// What Velero reports about a location (`status`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupStorageLocationStatus {
    /// Available or Unavailable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<BackupStorageLocationPhase>,
    /// When backups were last synced from storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "date_time")]
    pub last_synced_time: Option<Timestamp>,
    /// Deprecated sync revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_synced_revision: Option<String>,
    /// When the location was last validated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "date_time")]
    pub last_validation_time: Option<Timestamp>,
    /// Why it is unavailable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Deprecated copy of `spec.accessMode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_mode: Option<BackupStorageLocationAccessMode>,
    /// Fields from newer Velero versions.
    #[serde(flatten)]
    pub extra: Extra,
}
