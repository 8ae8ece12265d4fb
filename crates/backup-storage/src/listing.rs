//! Listing by "directory": backups are directories of a few files, and every question asked
//! of storage (which backups exist, what is in one) is about one level of one directory.
//!
//! These listings use delimiter requests (as Velero lists backups), never a recursive listing
//! of a prefix: stores backed by a filesystem (s3s-fs, MinIO in gateway/FS mode, a local
//! directory) answer a recursive listing by walking the whole bucket whatever the prefix, so
//! its cost grows with every cluster's backups, while a delimiter listing of one directory
//! costs that directory. On S3 itself both are one request per thousand keys.

use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore};

/// Directories listed at once when walking a tree.
const WALK_CONCURRENCY: usize = 8;

/// The immediate subdirectories of `dir` (their full paths).
pub async fn subdirectories(
    store: &dyn ObjectStore,
    dir: &Path,
) -> object_store::Result<Vec<Path>> {
    Ok(store.list_with_delimiter(Some(dir)).await?.common_prefixes)
}

/// Every object under `dir`, at any depth: one delimiter listing per directory of the tree.
pub async fn tree(store: &dyn ObjectStore, dir: &Path) -> object_store::Result<Vec<ObjectMeta>> {
    let mut objects = Vec::new();
    let mut pending = vec![dir.clone()];
    while !pending.is_empty() {
        let listed: Vec<_> = futures::stream::iter(std::mem::take(&mut pending))
            .map(|d| async move { store.list_with_delimiter(Some(&d)).await })
            .buffer_unordered(WALK_CONCURRENCY)
            .collect()
            .await;
        for result in listed {
            let result = result?;
            objects.extend(result.objects);
            pending.extend(result.common_prefixes);
        }
    }
    objects.sort_by(|a, b| a.location.cmp(&b.location));
    Ok(objects)
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;
    use object_store::{ObjectStoreExt, PutPayload};

    use super::*;

    #[tokio::test]
    async fn a_tree_is_every_object_below_the_directory_and_nothing_beside_it() {
        let store = InMemory::new();
        for key in [
            "backups/a/manifest.json",
            "backups/a/data.tar.gz",
            "backups/a/nested/deeper/x",
            "backups/ab/manifest.json",
            "backups-other/a/y",
            "top",
        ] {
            store
                .put(&Path::from(key), PutPayload::from_static(b"1"))
                .await
                .unwrap();
        }
        let found: Vec<String> = tree(&store, &Path::from("backups/a"))
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.location.to_string())
            .collect();
        assert_eq!(
            found,
            [
                "backups/a/data.tar.gz",
                "backups/a/manifest.json",
                "backups/a/nested/deeper/x"
            ]
        );
        let dirs: Vec<String> = subdirectories(&store, &Path::from("backups"))
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(dirs, ["backups/a", "backups/ab"]);
        assert!(tree(&store, &Path::from("none")).await.unwrap().is_empty());
    }
}
