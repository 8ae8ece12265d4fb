//! What Velero accepts in the folder a BackupStorageLocation's prefix names.
//!
//! Velero's `IsValid` (`pkg/persistence/object_store.go`) lists the top-level folders under the
//! prefix and marks the location Unavailable when any of them is not one of its own; from v1.17
//! an Unavailable location blocks sync and restores. Files at the top level are not checked.
//! Every layout we write is tested against this rule, so a Velero pointed at a cluster's
//! `velero/` folder keeps working beside our etcd snapshots.

/// The top-level folders Velero allows under a BSL's prefix (its object-store layout).
pub const VELERO_TOP_LEVEL_DIRS: [&str; 6] = [
    "backups", "restores", "restic", "metadata", "plugins", "kopia",
];

/// The folders among `top_level` that would make Velero mark the location Unavailable
/// ("Backup store contains invalid top-level directories"), in the given order.
pub fn invalid_top_level_dirs<'a>(top_level: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    top_level
        .into_iter()
        .filter(|dir| !VELERO_TOP_LEVEL_DIRS.contains(dir))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use backup_core::BackupKind;

    #[test]
    fn only_veleros_own_folders_pass() {
        assert!(invalid_top_level_dirs(["backups", "restores", "metadata", "kopia"]).is_empty());
        assert_eq!(
            invalid_top_level_dirs(["backups", "etcd-snapshots", "velero"]),
            ["etcd-snapshots", "velero"]
        );
    }

    #[test]
    fn the_kinds_inside_the_velero_folder_are_veleros_and_etcd_snapshots_are_outside_it() {
        for kind in [BackupKind::Resources, BackupKind::RestoreRecord] {
            let inside = kind
                .dir()
                .strip_prefix(&format!("{}/", backup_core::VELERO_DIR))
                .unwrap();
            assert!(invalid_top_level_dirs([inside]).is_empty(), "{inside}");
        }
        assert!(
            !BackupKind::EtcdSnapshot
                .dir()
                .starts_with(backup_core::VELERO_DIR)
        );
    }
}
