//! The volume data a backup holds besides its objects: file-system backups of pod volumes
//! (Velero's `<backup>-podvolumebackups.json.gz`), volume snapshots (`-volumesnapshots`) and
//! CSI snapshots (`-csi-volumesnapshots`). Only Velero writes them, and only Velero restores
//! them: the direct engine restores objects, so a restore by it of such a backup would bring the
//! PersistentVolumeClaims back empty. Callers refuse that, or restore through Velero.

use backup_core::{BackupKind, EngineError, ResourceFilter};
use backup_storage::{ArtifactName, BackupName, Repository, StorageError};
use futures::TryStreamExt;
use serde_json::Value;

use super::errors::storage_error;
use crate::format::results::gunzip_json;

/// How one entry of a Velero volume file is named.
type Describe = fn(&Value) -> Option<Volume>;

/// Velero's files that record volume data, each with how one of its entries is named.
const FILES: [(&str, Describe); 3] = [
    ("podvolumebackups", pod_volume),
    ("volumesnapshots", snapshot),
    ("csi-volumesnapshots", csi_snapshot),
];

/// One volume whose data the backup holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// The namespace of what it belongs to (a pod's, a claim's); `None` for a PersistentVolume.
    pub namespace: Option<String>,
    /// How people name it (`file-system backup of volume data of pod shop/db-0`).
    pub description: String,
}

impl std::fmt::Display for Volume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

/// The volumes whose data `backup` holds, among what `filter` restores (a volume of a namespace
/// the restore leaves out does not count); empty when it holds none.
pub async fn volume_data(
    repo: &Repository,
    backup: &BackupName,
    filter: &ResourceFilter,
) -> Result<Vec<Volume>, EngineError> {
    let mut found = Vec::new();
    for (file, describe) in FILES {
        let artifact =
            ArtifactName::new(format!("{backup}-{file}.json.gz")).map_err(storage_error)?;
        let stream = match repo
            .open_velero_file(BackupKind::Resources, backup, &artifact)
            .await
        {
            Ok(stream) => stream,
            Err(StorageError::MissingArtifact { .. }) => continue,
            Err(e) => return Err(storage_error(e)),
        };
        let data: Vec<u8> = stream
            .try_fold(Vec::new(), |mut all, chunk| async move {
                all.extend_from_slice(&chunk);
                Ok(all)
            })
            .await
            .map_err(storage_error)?;
        let entries: Vec<Value> = gunzip_json(&data).map_err(|e| {
            EngineError::Invalid(format!(
                "backup {backup}: Velero's {artifact} cannot be read ({e}), so whether it holds \
                 volume data is unknown; it is not restored without knowing"
            ))
        })?;
        found.extend(entries.iter().filter_map(describe).filter(|v| {
            v.namespace
                .as_deref()
                .is_none_or(|ns| filter.matches_namespace(ns))
        }));
    }
    Ok(found)
}

fn text<'v>(value: &'v Value, pointer: &str) -> &'v str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or("?")
}

fn pod_volume(entry: &Value) -> Option<Volume> {
    let namespace = text(entry, "/spec/pod/namespace");
    Some(Volume {
        namespace: Some(namespace.to_string()),
        description: format!(
            "file-system backup of volume {} of pod {namespace}/{}",
            text(entry, "/spec/volume"),
            text(entry, "/spec/pod/name")
        ),
    })
}

fn snapshot(entry: &Value) -> Option<Volume> {
    Some(Volume {
        namespace: None,
        description: format!(
            "snapshot of PersistentVolume {}",
            text(entry, "/spec/persistentVolumeName")
        ),
    })
}

fn csi_snapshot(entry: &Value) -> Option<Volume> {
    let namespace = text(entry, "/metadata/namespace");
    Some(Volume {
        namespace: Some(namespace.to_string()),
        description: format!(
            "CSI snapshot of PersistentVolumeClaim {namespace}/{}",
            text(entry, "/spec/source/persistentVolumeClaimName")
        ),
    })
}

/// The volumes, named for a condition or an error: the first few and how many more.
pub fn describe(volumes: &[Volume]) -> String {
    const NAMED: usize = 5;
    let mut named: Vec<String> = volumes.iter().take(NAMED).map(Volume::to_string).collect();
    if volumes.len() > NAMED {
        named.push(format!("and {} more", volumes.len() - NAMED));
    }
    named.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::results::gzip_json;
    use serde_json::json;

    async fn repo_with(files: &[(&str, Value)]) -> (tempfile::TempDir, Repository, BackupName) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let repo = Repository::open(&url, &Default::default())
            .unwrap()
            .scoped_str("p", "c1")
            .unwrap();
        let name = BackupName::new("nightly").unwrap();
        for (file, entries) in files {
            let path = dir.path().join(format!(
                "p/c1/velero/backups/nightly/nightly-{file}.json.gz"
            ));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, gzip_json(entries).unwrap()).unwrap();
        }
        (dir, repo, name)
    }

    #[tokio::test]
    async fn each_kind_of_volume_data_is_named_and_a_left_out_namespace_does_not_count() {
        let (_dir, repo, name) = repo_with(&[
            (
                "podvolumebackups",
                json!([{"spec": {"volume": "data", "pod": {"namespace": "shop", "name": "db-0"}}},
                       {"spec": {"volume": "cache", "pod": {"namespace": "other", "name": "x"}}}]),
            ),
            (
                "volumesnapshots",
                json!([{"spec": {"persistentVolumeName": "pv-1"}}]),
            ),
            (
                "csi-volumesnapshots",
                json!([{"metadata": {"namespace": "shop"},
                        "spec": {"source": {"persistentVolumeClaimName": "data-db-0"}}}]),
            ),
        ])
        .await;
        let filter = ResourceFilter {
            included_namespaces: vec!["shop".into()],
            ..ResourceFilter::default()
        };
        let found = volume_data(&repo, &name, &filter).await.unwrap();
        assert_eq!(
            describe(&found),
            "file-system backup of volume data of pod shop/db-0; snapshot of PersistentVolume \
             pv-1; CSI snapshot of PersistentVolumeClaim shop/data-db-0"
        );
    }

    #[tokio::test]
    async fn a_backup_without_those_files_holds_none_and_an_unreadable_one_is_an_error() {
        let (_dir, repo, name) = repo_with(&[]).await;
        let none = volume_data(&repo, &name, &ResourceFilter::default()).await;
        assert_eq!(none.unwrap(), []);
        let (dir, repo, name) = repo_with(&[]).await;
        let path = dir
            .path()
            .join("p/c1/velero/backups/nightly/nightly-volumesnapshots.json.gz");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"not gzip").unwrap();
        let err = volume_data(&repo, &name, &ResourceFilter::default())
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("whether it holds volume data is unknown"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn the_direct_engine_refuses_to_restore_volume_data_before_it_touches_anything() {
        use backup_core::{RestoreEngine, RestoreSpec};
        let (dir, repo, name) = repo_with(&[(
            "podvolumebackups",
            json!([{"spec": {"volume": "data", "pod": {"namespace": "shop", "name": "db-0"}}}]),
        )])
        .await;
        std::fs::write(
            dir.path()
                .join("p/c1/velero/backups/nightly/velero-backup.json"),
            br#"{"apiVersion": "velero.io/v1", "kind": "Backup", "metadata": {"name": "nightly"}}"#,
        )
        .unwrap();
        // A cluster nobody answers at: the refusal must come before any request to it.
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let engine = super::super::DirectEngine::new(kube::Client::try_from(config).unwrap(), repo);
        let spec = RestoreSpec {
            backup_name: Some(name.to_string()),
            ..RestoreSpec::default()
        };
        let refused = engine.start_restore("r", &spec).await.unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("holds volume data (file-system backup of volume data of pod shop/db-0)"),
            "{refused}"
        );
        let mut excluded = spec.clone();
        excluded.options.filter.excluded_namespaces = vec!["shop".into()];
        let started = engine.start_restore("r2", &excluded).await;
        assert!(
            !started.is_err_and(|e| e.to_string().contains("volume data")),
            "leaving the namespace out lifts the refusal"
        );
        assert!(
            !dir.path().join("p/c1/velero/restores/r").exists(),
            "nothing written for the refused restore"
        );
    }
}
