//! Listing stored snapshots with the facts recorded at snapshot time, and optionally whether
//! their stored bytes still match their checksums.

use backup_storage::{ArtifactName, BackupKind, Repository, StorageError};
use jiff::Timestamp;
use serde::Serialize;

use crate::error::Result;
use crate::{SNAPSHOT_ARTIFACT, attributes};

/// Whether a snapshot's stored bytes match the SHA-256 recorded in its manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "state", content = "reason")]
pub enum ChecksumState {
    /// Read back in full and matched.
    Ok,
    /// Read back and did not match, or could not be read; the message says which.
    Bad(String),
    /// Not checked (listing without verification).
    Unchecked,
}

/// One stored snapshot as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotInfo {
    /// Backup name.
    pub name: String,
    /// Configuration it belongs to (for rotation).
    pub config: Option<String>,
    /// When it was committed.
    pub created: Option<Timestamp>,
    /// etcd's revision when the snapshot was requested.
    pub revision: Option<i64>,
    /// Database size in bytes (uncompressed).
    pub db_size: Option<u64>,
    /// Bytes in storage (compressed).
    pub stored_size: Option<u64>,
    /// Member id (hex) it was taken from.
    pub member_id: Option<String>,
    /// Cluster id (hex).
    pub cluster_id: Option<String>,
    /// Checksum verdict.
    pub checksum: ChecksumState,
}

/// Lists snapshots, oldest first. With `verify`, every snapshot is read back in full and its
/// SHA-256 checked (costs a full download per snapshot). Backups whose manifest is unreadable
/// are listed with a bad checksum state rather than hidden.
pub async fn list_snapshots(repo: &Repository, verify: bool) -> Result<Vec<SnapshotInfo>> {
    let listing = repo.list(BackupKind::EtcdSnapshot).await?;
    let artifact = ArtifactName::new(SNAPSHOT_ARTIFACT)?;
    let mut out = Vec::with_capacity(listing.manifests.len() + listing.problems.len());
    for m in &listing.manifests {
        let attr = |key: &str| m.attributes.get(key).cloned();
        let revision = attributes::number::<i64>(m, attributes::REVISION);
        let db_size = attributes::number::<u64>(m, attributes::SNAPSHOT_SIZE);
        let damaged = [revision.as_ref().err(), db_size.as_ref().err()]
            .into_iter()
            .flatten()
            .cloned()
            .collect::<Vec<_>>();
        let checksum = if !damaged.is_empty() {
            ChecksumState::Bad(damaged.join("; "))
        } else if !verify {
            ChecksumState::Unchecked
        } else if m.artifact(&artifact).is_none() {
            ChecksumState::Bad(format!("no `{SNAPSHOT_ARTIFACT}` artifact"))
        } else {
            match repo.verify(BackupKind::EtcdSnapshot, &m.name).await {
                Ok(_) => ChecksumState::Ok,
                Err(e @ (StorageError::Store { .. } | StorageError::NoCredentials { .. })) => {
                    return Err(e.into());
                }
                Err(e) => ChecksumState::Bad(e.to_string()),
            }
        };
        out.push(SnapshotInfo {
            name: m.name.to_string(),
            config: attr(attributes::CONFIG),
            created: Some(m.created),
            revision: revision.ok().flatten(),
            db_size: db_size.ok().flatten(),
            stored_size: m.artifact(&artifact).map(|a| a.size),
            member_id: attr(attributes::MEMBER_ID),
            cluster_id: attr(attributes::CLUSTER_ID),
            checksum,
        });
    }
    for (name, problem) in listing.problems {
        out.push(SnapshotInfo {
            name: name.to_string(),
            config: None,
            created: None,
            revision: None,
            db_size: None,
            stored_size: None,
            member_id: None,
            cluster_id: None,
            checksum: ChecksumState::Bad(problem.to_string()),
        });
    }
    Ok(out)
}
