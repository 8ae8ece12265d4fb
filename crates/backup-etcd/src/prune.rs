//! Keep-N rotation of one configuration's snapshots, as KKP's `EtcdBackupConfig.keep` does.
//!
//! Only backups recorded with the same configuration name are considered, so rotating
//! `nightly` can never delete `hourly`'s snapshots that share the location. Which ones go is
//! decided by backup-core's planner, the same rules every other component applies.

use backup_core::retention::{KeepCount, RetentionPolicy};
use backup_storage::{BackupKind, Repository, Sweep};
use jiff::Timestamp;

use crate::attributes;
use crate::error::Result;

/// Deletes all but the newest `keep` snapshots of configuration `config`; returns what it
/// deleted (oldest first) and what the store refused to delete.
pub async fn prune(repo: &Repository, config: &str, keep: KeepCount) -> Result<Sweep> {
    let policy = RetentionPolicy {
        keep_last: Some(keep),
        ..RetentionPolicy::default()
    };
    Ok(repo
        .sweep_where(BackupKind::EtcdSnapshot, &policy, Timestamp::now(), |m| {
            m.attributes.get(attributes::CONFIG).map(String::as_str) == Some(config)
        })
        .await?)
}
