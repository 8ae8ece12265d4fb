//! Garbage collection of interrupted uploads: artifacts a backup wrote before it was cut off
//! (a crash, a kill, a storage outage) and never committed with a manifest.
//!
//! They are invisible (a backup exists only through its manifest) but cost storage forever.
//! A directory is an orphan when it has no manifest, is not a backup Velero wrote into a
//! shared location (a `velero-backup.json` without our manifest is Velero's, and Velero would
//! import it), and nothing in it changed for a grace period, so a backup still uploading is
//! never touched.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use object_store::ObjectStoreExt;
use object_store::path::Path;

use crate::error::{Result, StorageError};
use crate::manifest::MANIFEST_FILE;
use crate::repository::Repository;
use backup_core::BackupKind;

/// The file Velero writes for every backup; a directory holding it without our manifest is
/// Velero's own backup.
pub const VELERO_BACKUP_FILE: &str = "velero-backup.json";

/// One uncommitted backup directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    /// The backup name (directory).
    pub name: String,
    /// Its objects.
    pub objects: usize,
    /// Their total size in bytes.
    pub bytes: u64,
    /// When the newest of them was written.
    pub last_modified: Timestamp,
}

#[derive(Default)]
struct Dir {
    objects: Vec<Path>,
    bytes: u64,
    newest: Option<Timestamp>,
    committed: bool,
    velero: bool,
}

impl Repository {
    /// The uncommitted backup directories of `kind` untouched for at least `grace` before
    /// `now`, by name.
    pub async fn orphans(
        &self,
        kind: BackupKind,
        grace: SignedDuration,
        now: Timestamp,
    ) -> Result<Vec<Orphan>> {
        Ok(self
            .orphan_dirs(kind, grace, now)
            .await?
            .into_iter()
            .map(|(name, dir)| orphan(name, &dir))
            .collect())
    }

    /// Deletes what [`Repository::orphans`] finds; returns what it deleted.
    pub async fn remove_orphans(
        &self,
        kind: BackupKind,
        grace: SignedDuration,
        now: Timestamp,
    ) -> Result<Vec<Orphan>> {
        self.check_writable(|| "remove interrupted uploads".into())?;
        let mut removed = Vec::new();
        for (name, dir) in self.orphan_dirs(kind, grace, now).await? {
            for path in &dir.objects {
                match self.store().delete(path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e @ object_store::Error::PermissionDenied { .. }) => {
                        return Err(StorageError::DeletionRefused {
                            backup: name.clone(),
                            source: e,
                        });
                    }
                    Err(e) => return Err(StorageError::store("delete", path, e)),
                }
            }
            removed.push(orphan(name, &dir));
        }
        Ok(removed)
    }

    async fn orphan_dirs(
        &self,
        kind: BackupKind,
        grace: SignedDuration,
        now: Timestamp,
    ) -> Result<BTreeMap<String, Dir>> {
        let root = Repository::kind_root(kind);
        let depth = root.parts().count();
        let mut dirs: BTreeMap<String, Dir> = BTreeMap::new();
        let objects = crate::listing::tree(self.store().as_ref(), &root)
            .await
            .map_err(|e| StorageError::store("list", &root, e))?;
        for meta in objects {
            // The parts below the kind's folder: `<name>/<file>[/...]`.
            let parts: Vec<String> = meta
                .location
                .parts()
                .skip(depth)
                .map(|p| p.as_ref().to_string())
                .collect();
            let [name, file, ..] = parts.as_slice() else {
                continue;
            };
            let dir = dirs.entry(name.clone()).or_default();
            let modified = Timestamp::from_millisecond(meta.last_modified.timestamp_millis())
                .unwrap_or(Timestamp::MAX);
            dir.newest = Some(dir.newest.map_or(modified, |n| n.max(modified)));
            dir.bytes += meta.size;
            dir.committed |= parts.len() == 2 && file == MANIFEST_FILE;
            dir.velero |= parts.len() == 2 && file == VELERO_BACKUP_FILE;
            dir.objects.push(meta.location);
        }
        let cutoff = now.checked_sub(grace).unwrap_or(Timestamp::MIN);
        dirs.retain(|_, d| {
            !d.committed && !d.velero && d.newest.is_some_and(|newest| newest <= cutoff)
        });
        Ok(dirs)
    }
}

fn orphan(name: String, dir: &Dir) -> Orphan {
    Orphan {
        name,
        objects: dir.objects.len(),
        bytes: dir.bytes,
        last_modified: dir.newest.unwrap_or(Timestamp::MIN),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use object_store::PutPayload;
    use object_store::memory::InMemory;

    use super::*;
    use crate::names::{ArtifactName, BackupName};

    #[tokio::test]
    async fn only_old_uncommitted_directories_of_ours_are_orphans() {
        let store = Arc::new(InMemory::new());
        let repo = Repository::new(store.clone());
        let kind = BackupKind::Resources;
        // Committed: never an orphan.
        let mut w = repo
            .begin_backup(kind, &BackupName::new("done").unwrap())
            .await
            .unwrap();
        w.put_artifact_bytes(
            &ArtifactName::new("a.tar.gz").unwrap(),
            Bytes::from_static(b"a"),
        )
        .await
        .unwrap();
        w.commit(Default::default(), None).await.unwrap();
        // Interrupted: artifacts without a manifest.
        let put = |p: &str| {
            let store = store.clone();
            let p = Path::from(p);
            async move {
                store
                    .put(&p, PutPayload::from_static(b"xyz"))
                    .await
                    .unwrap()
            }
        };
        put("velero/backups/cut/cut.tar.gz").await;
        put("velero/backups/cut/cut-logs.gz").await;
        // Velero's own backup in a shared location.
        put("velero/backups/velero-made/velero-backup.json").await;
        put("velero/backups/velero-made/velero-made.tar.gz").await;

        let now = Timestamp::now();
        let young = repo
            .orphans(kind, SignedDuration::from_hours(1), now)
            .await
            .unwrap();
        assert!(young.is_empty(), "inside the grace period: {young:?}");
        let later = now + SignedDuration::from_hours(2);
        let found = repo
            .orphans(kind, SignedDuration::from_hours(1), later)
            .await
            .unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            (found[0].name.as_str(), found[0].objects, found[0].bytes),
            ("cut", 2, 6)
        );

        let removed = repo
            .remove_orphans(kind, SignedDuration::from_hours(1), later)
            .await
            .unwrap();
        assert_eq!(removed, found);
        assert!(
            store
                .head(&Path::from("velero/backups/cut/cut.tar.gz"))
                .await
                .is_err()
        );
        assert!(
            store
                .head(&Path::from("velero/backups/velero-made/velero-made.tar.gz"))
                .await
                .is_ok()
        );
        assert_eq!(repo.list(kind).await.unwrap().manifests.len(), 1);
    }
}
