//! Velero's API (`velero.io/v1`) as Rust types, for the in-cluster engine and for tests.
//!
//! The types follow the fields Velero documents. Every spec and status keeps fields it does
//! not know in a flattened `extra` map, and the generated CRD schemas mark those objects
//! `x-kubernetes-preserve-unknown-fields`, so an object written by a newer Velero survives our
//! read-modify-write both in memory and through an apiserver that prunes by schema.
//!
//! Velero's own CRD manifests declare no status subresource for any of these kinds (BSL and
//! DeleteBackupRequest have `subresources: {}`): Velero writes `status` by updating or patching
//! the whole object. [`crds`] generates the same, so tests can play Velero's part faithfully.

mod backup;
mod common;
mod location;
mod requests;
mod restore;
mod schedule;
#[cfg(test)]
mod tests;

pub use backup::{Backup, BackupPhase, BackupProgress, BackupSpec, BackupStatus};
pub use common::{
    Extra, HookStatus, LabelSelector, LabelSelectorRequirement, ObjectLabels, SecretKeySelector,
    TypedLocalObjectReference,
};
pub use location::{
    BackupStorageLocation, BackupStorageLocationAccessMode, BackupStorageLocationPhase,
    BackupStorageLocationSpec, BackupStorageLocationStatus, ObjectStorageLocation,
};
pub use requests::{
    DeleteBackupRequest, DeleteBackupRequestPhase, DeleteBackupRequestSpec,
    DeleteBackupRequestStatus, DownloadRequest, DownloadRequestPhase, DownloadRequestSpec,
    DownloadRequestStatus, DownloadTarget, DownloadTargetKind, PluginInfo, ServerStatusRequest,
    ServerStatusRequestPhase, ServerStatusRequestSpec, ServerStatusRequestStatus,
};
pub use restore::{
    Restore, RestorePhase, RestoreProgress, RestoreSpec, RestoreStatus, RestoreStatusSpec,
};
pub use schedule::{Schedule, SchedulePhase, ScheduleSpec, ScheduleStatus};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// Velero's API group.
pub const GROUP: &str = "velero.io";
/// The version of Velero's API these types model.
pub const VERSION: &str = "v1";
/// `velero.io/v1`.
pub const API_VERSION: &str = "velero.io/v1";

/// Plural resource names the in-cluster engine needs, to check an installation is complete.
pub const REQUIRED_RESOURCES: &[&str] = &[
    "backups",
    "schedules",
    "restores",
    "backupstoragelocations",
    "deletebackuprequests",
    "downloadrequests",
    "serverstatusrequests",
];

/// The CRDs of every kind modelled here, as Velero serves them: generated from the Rust types
/// (so tests install exactly what the engine reads and writes), without a status subresource,
/// because Velero writes status through the main resource.
pub fn crds() -> Vec<CustomResourceDefinition> {
    let mut out = vec![
        Backup::crd(),
        Schedule::crd(),
        Restore::crd(),
        BackupStorageLocation::crd(),
        DeleteBackupRequest::crd(),
        DownloadRequest::crd(),
        ServerStatusRequest::crd(),
    ];
    for v in out.iter_mut().flat_map(|crd| crd.spec.versions.iter_mut()) {
        v.subresources = None;
    }
    out
}
