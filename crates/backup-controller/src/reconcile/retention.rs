//! Retention over an engine's stored runs of one schedule: what backup-core's plan says to
//! delete is deleted; a deletion refused (an immutable bucket, a ReadOnly location) is reported
//! with the run's name instead of stopping the others or pretending it happened.

use backup_core::retention::{RetentionCandidate, plan_deletions};
use backup_core::{BackupEngine, EngineError, LabelSelector, RetentionPolicy, StoredBackup};
use jiff::Timestamp;

/// What a sweep did.
#[derive(Debug, Default)]
pub struct Swept {
    /// The runs still stored, oldest first as listed.
    pub kept: Vec<StoredBackup>,
    /// Runs deleted.
    pub deleted: Vec<String>,
    /// Runs retention wanted gone that could not be deleted, with why.
    pub refused: Vec<(String, EngineError)>,
}

/// Applies `policy` to the runs `selector` lists in `engine` at `now`. Listing failures are
/// errors (nothing is deleted); each deletion's failure is in [`Swept::refused`].
pub async fn sweep(
    engine: &dyn BackupEngine,
    selector: &LabelSelector,
    policy: &RetentionPolicy,
    now: Timestamp,
) -> Result<Swept, EngineError> {
    let stored = engine.list_backups(selector).await?;
    let candidates: Vec<RetentionCandidate> = stored
        .iter()
        .filter_map(|b| {
            Some(RetentionCandidate {
                name: b.name.clone(),
                created: b.taken_at()?,
                succeeded: b.phase.is_successful(),
                expires_at: b.expiration,
            })
        })
        .collect();
    let doomed = plan_deletions(&candidates, policy, now);
    let mut swept = Swept::default();
    for name in doomed {
        match engine.delete_backup(&name).await {
            Ok(()) | Err(EngineError::NotFound { .. }) => swept.deleted.push(name),
            Err(e) => swept.refused.push((name, e)),
        }
    }
    swept.kept = stored
        .into_iter()
        .filter(|b| !swept.deleted.contains(&b.name))
        .collect();
    Ok(swept)
}
