//! File names of Velero's artifacts, derived from the backup or restore name.

use backup_storage::{ArtifactName, BackupName, StorageError};

/// The artifact names of one backup, inside `backups/<name>/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupFiles {
    /// `velero-backup.json`: the Backup object, written after the tarball.
    pub backup_object: ArtifactName,
    /// `<name>.tar.gz`: the items.
    pub tarball: ArtifactName,
    /// `<name>-resource-list.json.gz`.
    pub resource_list: ArtifactName,
    /// `<name>-results.gz`.
    pub results: ArtifactName,
    /// `<name>-logs.gz`.
    pub logs: ArtifactName,
}

impl BackupFiles {
    /// Velero's file names for backup `name`.
    pub fn new(name: &BackupName) -> Result<Self, StorageError> {
        Ok(BackupFiles {
            backup_object: ArtifactName::new("velero-backup.json")?,
            tarball: ArtifactName::new(format!("{name}.tar.gz"))?,
            resource_list: ArtifactName::new(format!("{name}-resource-list.json.gz"))?,
            results: ArtifactName::new(format!("{name}-results.gz"))?,
            logs: ArtifactName::new(format!("{name}-logs.gz"))?,
        })
    }
}

/// The object paths of one restore's files, relative to the cluster's scope (Velero's
/// `restores/<name>/` under [`backup_core::VELERO_DIR`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreFiles {
    /// `velero/restores/<name>/restore-<name>-results.gz`.
    pub results: String,
    /// `velero/restores/<name>/restore-<name>-logs.gz`.
    pub logs: String,
    /// `velero/restores/<name>/restore-<name>-resource-list.json.gz`.
    pub resource_list: String,
}

impl RestoreFiles {
    /// The folder of restore `name`: every file of its record lies in it.
    pub fn dir(name: &BackupName) -> String {
        format!("{}/{name}", backup_core::BackupKind::RestoreRecord.dir())
    }

    /// Velero's paths for restore `name` (already validated as a single path segment).
    pub fn new(name: &BackupName) -> Self {
        let dir = Self::dir(name);
        RestoreFiles {
            results: format!("{dir}/restore-{name}-results.gz"),
            logs: format!("{dir}/restore-{name}-logs.gz"),
            resource_list: format!("{dir}/restore-{name}-resource-list.json.gz"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_velero() {
        let name = BackupName::new("nightly-1").unwrap();
        let files = BackupFiles::new(&name).unwrap();
        assert_eq!(files.backup_object.as_str(), "velero-backup.json");
        assert_eq!(files.tarball.as_str(), "nightly-1.tar.gz");
        assert_eq!(
            files.resource_list.as_str(),
            "nightly-1-resource-list.json.gz"
        );
        assert_eq!(files.results.as_str(), "nightly-1-results.gz");
        assert_eq!(files.logs.as_str(), "nightly-1-logs.gz");
        let restore = RestoreFiles::new(&name);
        assert_eq!(
            restore.results,
            "velero/restores/nightly-1/restore-nightly-1-results.gz"
        );
        assert!(restore.logs.ends_with("restore-nightly-1-logs.gz"));
    }
}
