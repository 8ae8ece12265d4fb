//! Moving a cluster's backups out of the layout before [`VELERO_DIR`].
//!
//! Velero's folders (`backups/`, `restores/`) used to sit directly in a cluster's scope, beside
//! our `etcd-snapshots/`, and that scope was the prefix of the cluster's Velero
//! BackupStorageLocation. Velero marks a location Unavailable when its prefix holds a top-level
//! folder it does not know, so they now live in the scope's `velero/` folder, which is the BSL's
//! prefix. Backups in the old place are not read there; [`Repository::migrate_legacy_layout`]
//! moves them, and [`Repository::legacy_folders`] tells a reader that some are waiting.
//!
//! The move never loses a backup and never writes a key twice (so it works on write-once
//! storage): each backup's files are copied first and its manifest (or Velero's
//! `velero-backup.json`) last, so a backup appears in the new place only once all its files are
//! there; then its old files are deleted, manifest first. A move cut off half-way is resumed by
//! running it again: a file already at its new place with the same size is not copied again.

use std::collections::BTreeMap;

use backup_core::{LEGACY_VELERO_DIRS, VELERO_DIR};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStoreExt};

use crate::error::{Result, StorageError};
use crate::gc::VELERO_BACKUP_FILE;
use crate::manifest::MANIFEST_FILE;
use crate::repository::Repository;

/// What [`Repository::migrate_legacy_layout`] moved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Migrated {
    /// Backup and restore folders moved, as `backups/<name>` or `restores/<name>`.
    pub folders: Vec<String>,
    /// Objects copied (objects already at their new place are not counted).
    pub copied: usize,
    /// Objects deleted from the old place.
    pub deleted: usize,
}

/// Whether `file` is written last when a folder is copied and deleted first when it is removed:
/// the file whose presence makes the folder a backup (ours or Velero's).
fn marks_committed(file: Option<&str>) -> bool {
    matches!(file, Some(MANIFEST_FILE | VELERO_BACKUP_FILE))
}

impl Repository {
    /// The folders of the old layout this scope still holds (`backups`, `restores`), found with
    /// one delimiter listing of the scope.
    pub async fn legacy_folders(&self) -> Result<Vec<&'static str>> {
        let top = crate::listing::subdirectories(self.store().as_ref(), &Path::default())
            .await
            .map_err(|e| StorageError::store("list", &Path::default(), e))?;
        Ok(LEGACY_VELERO_DIRS
            .into_iter()
            .filter(|dir| top.iter().any(|p| p.filename() == Some(dir)))
            .collect())
    }

    /// The `(project, cluster)` scopes under this (unscoped) location that hold folders of the
    /// old layout: two levels of delimiter listings, then one per cluster. Folders whose names
    /// are not valid scope segments were not written by us and are skipped.
    pub async fn legacy_scopes(&self) -> Result<Vec<(String, String)>> {
        let mut found = Vec::new();
        let list = |dir: Path| async move {
            crate::listing::subdirectories(self.store().as_ref(), &dir)
                .await
                .map_err(|e| StorageError::store("list", &dir, e))
        };
        for project in list(Path::default()).await? {
            let Some(project) = project.filename().map(str::to_string) else {
                continue;
            };
            for cluster in list(Path::from(project.as_str())).await? {
                let Some(cluster) = cluster.filename() else {
                    continue;
                };
                let Ok(scope) = self.scoped_str(&project, cluster) else {
                    continue;
                };
                if !scope.legacy_folders().await?.is_empty() {
                    found.push((project.clone(), cluster.to_string()));
                }
            }
        }
        Ok(found)
    }

    /// Moves this scope's backups and restore records from the old layout into [`VELERO_DIR`]
    /// (see the module documentation). Fails on a ReadOnly location, and stops at the first
    /// object it cannot copy or delete, naming it; running it again goes on from there.
    pub async fn migrate_legacy_layout(&self) -> Result<Migrated> {
        self.check_writable(|| "move backups into the velero/ folder".into())?;
        let mut migrated = Migrated::default();
        for legacy in self.legacy_folders().await? {
            let root = Path::from(legacy);
            let objects = crate::listing::tree(self.store().as_ref(), &root)
                .await
                .map_err(|e| StorageError::store("list", &root, e))?;
            for (folder, mut files) in by_folder(objects) {
                files.sort_by_key(|o| marks_committed(o.location.filename()));
                for object in &files {
                    if self.copy_once(object).await? {
                        migrated.copied += 1;
                    }
                }
                files.reverse();
                for object in &files {
                    match self.store().delete(&object.location).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => return Err(StorageError::store("delete", &object.location, e)),
                    }
                    migrated.deleted += 1;
                }
                migrated.folders.push(folder);
            }
        }
        Ok(migrated)
    }

    /// Copies `object` to the same path under [`VELERO_DIR`] unless an object of its size is
    /// already there (a resumed move); returns whether it copied.
    async fn copy_once(&self, object: &ObjectMeta) -> Result<bool> {
        let to = object
            .location
            .parts()
            .fold(Path::from(VELERO_DIR), |path, part| path.join(part));
        match self.store().head(&to).await {
            Ok(existing) if existing.size == object.size => return Ok(false),
            Ok(_) => {
                return Err(StorageError::Layout(format!(
                    "{to} already exists with a different size than {}; move one of them \
                     aside and run the migration again",
                    object.location
                )));
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(StorageError::store("head", &to, e)),
        }
        self.store()
            .copy(&object.location, &to)
            .await
            .map_err(|e| StorageError::store("copy", &object.location, e))?;
        Ok(true)
    }
}

/// Objects grouped by their folder `<kind dir>/<name>`; objects directly in a kind dir are
/// their own group.
fn by_folder(objects: Vec<ObjectMeta>) -> BTreeMap<String, Vec<ObjectMeta>> {
    let mut folders: BTreeMap<String, Vec<ObjectMeta>> = BTreeMap::new();
    for object in objects {
        let parts: Vec<_> = object.location.parts().take(2).collect();
        let folder = parts
            .iter()
            .map(|p| p.as_ref())
            .collect::<Vec<_>>()
            .join("/");
        folders.entry(folder).or_default().push(object);
    }
    folders
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use object_store::PutPayload;
    use object_store::memory::InMemory;

    use super::*;
    use crate::write_once::WriteOnceStore as WriteOnce;

    async fn put(store: &InMemory, key: &str, data: &'static [u8]) {
        store
            .put(&Path::from(key), PutPayload::from_static(data))
            .await
            .unwrap();
    }

    async fn keys(store: &InMemory) -> Vec<String> {
        crate::listing::tree(store, &Path::default())
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.location.to_string())
            .collect()
    }

    #[tokio::test]
    async fn old_folders_move_into_velero_once_and_etcd_snapshots_stay() {
        let memory = Arc::new(InMemory::new());
        put(&memory, "backups/a/a.tar.gz", b"tar").await;
        put(&memory, "backups/a/backup-manifest.json", b"{}").await;
        put(&memory, "backups/v/velero-backup.json", b"{}").await;
        put(&memory, "restores/r/restore-r-results.gz", b"r").await;
        put(&memory, "etcd-snapshots/s/snapshot.db", b"db").await;
        // Every key may be written once only, as in an Object Lock bucket.
        let repo = Repository::new(Arc::new(WriteOnce::new(memory.clone())));
        assert_eq!(
            repo.legacy_folders().await.unwrap(),
            ["backups", "restores"]
        );

        let moved = repo.migrate_legacy_layout().await.unwrap();
        assert_eq!(moved.folders, ["backups/a", "backups/v", "restores/r"]);
        assert_eq!((moved.copied, moved.deleted), (4, 4));
        assert_eq!(
            keys(&memory).await,
            [
                "etcd-snapshots/s/snapshot.db",
                "velero/backups/a/a.tar.gz",
                "velero/backups/a/backup-manifest.json",
                "velero/backups/v/velero-backup.json",
                "velero/restores/r/restore-r-results.gz",
            ]
        );
        assert!(repo.legacy_folders().await.unwrap().is_empty());
        assert_eq!(
            repo.migrate_legacy_layout().await.unwrap(),
            Migrated::default()
        );
    }

    #[tokio::test]
    async fn scopes_of_the_old_layout_are_found_under_a_location() {
        let memory = Arc::new(InMemory::new());
        put(&memory, "p1/c1/backups/a/backup-manifest.json", b"{}").await;
        put(
            &memory,
            "p1/c2/velero/backups/a/backup-manifest.json",
            b"{}",
        )
        .await;
        put(&memory, "p2/c3/restores/r/restore-r-results.gz", b"r").await;
        put(&memory, "p2/c4/etcd-snapshots/s/snapshot.db", b"db").await;
        put(&memory, "not a project!/c5/backups/a/x", b"x").await;
        let repo = Repository::new(memory);
        assert_eq!(
            repo.legacy_scopes().await.unwrap(),
            [
                ("p1".to_string(), "c1".to_string()),
                ("p2".into(), "c3".into())
            ]
        );
    }

    #[tokio::test]
    async fn a_move_cut_off_half_way_resumes_without_writing_a_key_twice() {
        let memory = Arc::new(InMemory::new());
        put(&memory, "backups/a/a.tar.gz", b"tar").await;
        put(&memory, "backups/a/backup-manifest.json", b"{}").await;
        // The data was copied, then the move stopped before the manifest.
        put(&memory, "velero/backups/a/a.tar.gz", b"tar").await;
        let repo = Repository::new(Arc::new(WriteOnce::new(memory.clone())));
        let moved = repo.migrate_legacy_layout().await.unwrap();
        assert_eq!((moved.copied, moved.deleted), (1, 2));
        assert_eq!(
            keys(&memory).await,
            [
                "velero/backups/a/a.tar.gz",
                "velero/backups/a/backup-manifest.json"
            ]
        );
    }

    #[tokio::test]
    async fn a_different_object_in_the_way_stops_the_move_and_loses_nothing() {
        let memory = Arc::new(InMemory::new());
        put(&memory, "backups/a/a.tar.gz", b"tar").await;
        put(&memory, "velero/backups/a/a.tar.gz", b"other bytes").await;
        let repo = Repository::new(memory.clone());
        let e = repo.migrate_legacy_layout().await.unwrap_err();
        assert!(e.to_string().contains("different size"), "{e}");
        assert!(
            keys(&memory)
                .await
                .contains(&"backups/a/a.tar.gz".to_string())
        );
    }

    #[tokio::test]
    async fn a_read_only_location_is_not_touched() {
        let memory = Arc::new(InMemory::new());
        put(&memory, "backups/a/a.tar.gz", b"tar").await;
        let repo = Repository::new(memory.clone()).read_only();
        let e = repo.migrate_legacy_layout().await.unwrap_err();
        assert!(matches!(e, StorageError::ReadOnly { .. }), "{e}");
        assert_eq!(keys(&memory).await, ["backups/a/a.tar.gz"]);
    }
}
