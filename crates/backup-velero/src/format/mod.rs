//! Velero's on-storage formats: where each file of a backup or restore lives, what the files
//! contain, and the tarball of items.
//!
//! Velero reads exactly these files when it syncs a bucket, so every name and field here is
//! Velero's own (facts from Velero's docs and `pkg/persistence`, `pkg/archive`):
//!
//! ```text
//! backups/<name>/velero-backup.json            the Backup object (JSON)
//! backups/<name>/<name>.tar.gz                 the items (see [`tarball`])
//! backups/<name>/<name>-resource-list.json.gz  {"apps/v1/Deployment": ["ns/name", ...]}
//! backups/<name>/<name>-results.gz             {"errors": {...}, "warnings": {...}}
//! backups/<name>/<name>-logs.gz                the backup's log, gzipped text
//! restores/<name>/restore-<name>-results.gz    same shape as the backup results
//! restores/<name>/restore-<name>-logs.gz
//! restores/<name>/restore-<name>-resource-list.json.gz
//! ```
//!
//! Our own checksummed manifest (`backup-manifest.json`, from `backup-storage`) sits beside
//! these files and is written last, so a backup is listed only once all of them exist. These
//! paths are relative to a BSL's prefix, which for our clusters is the scope's
//! [`backup_core::VELERO_DIR`] folder (see [`bsl_layout`]).

pub mod backup_object;
pub mod bsl_layout;
pub mod names;
pub mod pipe;
pub mod results;
pub mod tarball;

pub use crate::tarball_layout::{FORMAT_VERSION, ItemPath, LayoutError, VERSION_FILE};
pub use backup_object::{BackupObject, BackupObjectError};
pub use names::{BackupFiles, RestoreFiles};
pub use results::{
    OperationResults, ResourceList, Results, gunzip_bytes, gunzip_json, gzip_bytes, gzip_json,
};
pub use tarball::{TarballError, TarballItem, TarballWriter, read_tarball};
