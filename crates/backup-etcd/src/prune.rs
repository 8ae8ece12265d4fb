//! Keep-N rotation of one configuration's snapshots, as KKP's `EtcdBackupConfig.keep` does.
//!
//! Only backups recorded with the same configuration name are considered, so rotating
//! `nightly` can never delete `hourly`'s snapshots that share the location. Which ones go is
//! decided by backup-core's planner, the same rules every other component applies.

use backup_core::retention::{KeepCount, RetentionCandidate, RetentionPolicy, plan_deletions};
use backup_storage::{BackupKind, BackupName, Repository};
use jiff::Timestamp;

use crate::attributes;
use crate::error::Result;

/// Deletes all but the newest `keep` snapshots of configuration `config`; returns what it deleted,
/// oldest first.
pub async fn prune(repo: &Repository, config: &str, keep: KeepCount) -> Result<Vec<BackupName>> {
    let listing = repo.list(BackupKind::EtcdSnapshot).await?;
    let ours: Vec<_> = listing
        .manifests
        .iter()
        .filter(|m| m.attributes.get(attributes::CONFIG).map(String::as_str) == Some(config))
        .collect();
    let candidates: Vec<RetentionCandidate> = ours
        .iter()
        .map(|m| RetentionCandidate {
            name: m.name.to_string(),
            created: m.created,
            succeeded: true,
            expires_at: m.expires_at,
        })
        .collect();
    let policy = RetentionPolicy {
        keep_last: Some(keep),
        ..RetentionPolicy::default()
    };
    let mut deleted = Vec::new();
    for doomed in plan_deletions(&candidates, &policy, Timestamp::now()) {
        let Some(manifest) = ours.iter().find(|m| m.name.as_str() == doomed) else {
            continue;
        };
        repo.delete(BackupKind::EtcdSnapshot, &manifest.name)
            .await?;
        deleted.push(manifest.name.clone());
    }
    Ok(deleted)
}
