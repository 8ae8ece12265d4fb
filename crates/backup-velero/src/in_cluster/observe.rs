//! Pure mapping of Velero status into core status: phases, progress, and Velero's own error
//! texts passed through verbatim.

use backup_core::{BackupStatus as CoreStatus, Phase, Progress, StoredBackup};
use kube::ResourceExt;

use super::translate::NAME_ANNOTATION;
use crate::api::{Backup, BackupPhase, Restore, RestorePhase};

/// Core phase of a Velero backup phase. `None` (not yet touched by Velero) and the queueing
/// phases are `New`; the "…PartiallyFailed" intermediate phases keep running, so they map to
/// their running counterpart. An unknown phase from a newer Velero is treated as running
/// (never terminal, so callers keep polling) and reported as a warning.
pub fn backup_phase(p: Option<&BackupPhase>) -> (Phase, Option<String>) {
    use BackupPhase as V;
    let phase = match p {
        None | Some(V::New | V::Queued | V::ReadyToStart) => Phase::New,
        Some(V::FailedValidation) => Phase::FailedValidation,
        Some(V::InProgress) => Phase::InProgress,
        Some(V::WaitingForPluginOperations | V::WaitingForPluginOperationsPartiallyFailed) => {
            Phase::WaitingForPluginOperations
        }
        Some(V::Finalizing | V::FinalizingPartiallyFailed) => Phase::Finalizing,
        Some(V::Completed) => Phase::Completed,
        Some(V::PartiallyFailed) => Phase::PartiallyFailed,
        Some(V::Failed) => Phase::Failed,
        Some(V::Deleting) => Phase::Deleting,
        Some(V::Other(s)) => return (Phase::InProgress, Some(unknown(s))),
    };
    (phase, None)
}

/// Core phase of a Velero restore phase (same rules as [`backup_phase`]).
pub fn restore_phase(p: Option<&RestorePhase>) -> (Phase, Option<String>) {
    use RestorePhase as V;
    let phase = match p {
        None | Some(V::New) => Phase::New,
        Some(V::FailedValidation) => Phase::FailedValidation,
        Some(V::InProgress) => Phase::InProgress,
        Some(V::WaitingForPluginOperations | V::WaitingForPluginOperationsPartiallyFailed) => {
            Phase::WaitingForPluginOperations
        }
        Some(V::Finalizing | V::FinalizingPartiallyFailed) => Phase::Finalizing,
        Some(V::Completed) => Phase::Completed,
        Some(V::PartiallyFailed) => Phase::PartiallyFailed,
        Some(V::Failed) => Phase::Failed,
        Some(V::Other(s)) => return (Phase::InProgress, Some(unknown(s))),
    };
    (phase, None)
}

fn unknown(s: &str) -> String {
    format!(
        "Velero reported phase {s:?}, which this version does not know; treating it as in progress"
    )
}

fn count(n: Option<i64>) -> u64 {
    n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0)
}

/// Fills errors and warnings: `failureReason` verbatim, then Velero's counters (the messages
/// themselves live in the results file, downloadable with `kind` via a DownloadRequest).
fn messages(
    out: &mut CoreStatus,
    failure: Option<&String>,
    errors: Option<i64>,
    warnings: Option<i64>,
    kind: &str,
) {
    if let Some(f) = failure.filter(|f| !f.is_empty()) {
        out.errors.push(f.clone());
    }
    match count(errors) {
        0 => {}
        n => out.errors.push(format!(
            "Velero reported {n} item error(s); download {kind} for the messages"
        )),
    }
    match count(warnings) {
        0 => {}
        n => out.warnings.push(format!(
            "Velero reported {n} warning(s); download {kind} for the messages"
        )),
    }
}

/// Core status of a Velero Backup.
pub fn backup_status(b: &Backup) -> CoreStatus {
    let Some(s) = &b.status else {
        return CoreStatus::default();
    };
    let (phase, warning) = backup_phase(s.phase.as_ref());
    let mut out = CoreStatus {
        phase,
        progress: s
            .progress
            .as_ref()
            .map(|p| Progress {
                items_done: count(p.items_backed_up),
                total_items: count(p.total_items),
            })
            .unwrap_or_default(),
        started: s.start_timestamp,
        completed: s.completion_timestamp,
        validation_errors: s.validation_errors.clone().unwrap_or_default(),
        ..Default::default()
    };
    messages(
        &mut out,
        s.failure_reason.as_ref(),
        s.errors,
        s.warnings,
        "BackupResults",
    );
    out.warnings.extend(warning);
    out
}

/// The stored record of a finished Velero Backup, under its core name (our annotation, else
/// the Velero name); `None` while it runs. Velero recreates Backups from the bucket (its sync),
/// so this is what the bucket holds as the cluster's Velero sees it.
pub fn stored_backup(b: &Backup) -> Option<StoredBackup> {
    let status = b.status.as_ref()?;
    let (phase, _) = backup_phase(status.phase.as_ref());
    if !phase.is_terminal() {
        return None;
    }
    let progress = status.progress.as_ref();
    Some(StoredBackup {
        name: b
            .annotations()
            .get(NAME_ANNOTATION)
            .cloned()
            .unwrap_or_else(|| b.name_any()),
        phase,
        items_backed_up: count(progress.and_then(|p| p.items_backed_up)),
        total_items: count(progress.and_then(|p| p.total_items)),
        started: status.start_timestamp,
        completed: status.completion_timestamp,
        expiration: status.expiration,
        errors: count(status.errors),
        warnings: count(status.warnings),
        labels: b.labels().clone(),
    })
}

/// Core status of a Velero Restore.
pub fn restore_status(r: &Restore) -> CoreStatus {
    let Some(s) = &r.status else {
        return CoreStatus::default();
    };
    let (phase, warning) = restore_phase(s.phase.as_ref());
    let mut out = CoreStatus {
        phase,
        progress: s
            .progress
            .as_ref()
            .map(|p| Progress {
                items_done: count(p.items_restored),
                total_items: count(p.total_items),
            })
            .unwrap_or_default(),
        started: s.start_timestamp,
        completed: s.completion_timestamp,
        validation_errors: s.validation_errors.clone().unwrap_or_default(),
        ..Default::default()
    };
    messages(
        &mut out,
        s.failure_reason.as_ref(),
        s.errors,
        s.warnings,
        "RestoreResults",
    );
    out.warnings.extend(warning);
    out
}
