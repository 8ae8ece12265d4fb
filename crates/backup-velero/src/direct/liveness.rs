//! Signs of life of a running restore, so that one cut off mid-way (the process killed, the
//! machine lost) is recorded `Failed` the next time its location is read, as Velero marks
//! interrupted work failed, instead of staying invisible forever.
//!
//! While a restore runs, its engine writes a small beat file into the restore's folder
//! (`velero/restores/<name>/backup-fleet-alive-<unix seconds>.json`) when it starts and every
//! [`BEAT_EVERY`]. Each beat is a new key, written once, so this works on write-once (Object
//! Lock) storage where a rewritten "last seen" object would not. A reader that finds a restore
//! folder without a record (no results, no failure record) judges it with [`judge`]: its newest
//! beat older than [`STALE_AFTER`] means the run is gone, and the reader commits the failure
//! record itself. Beats are ours alone: a restore Velero runs writes none and is left to it.
//!
//! Staleness is measured on the store's clock (each beat's last-modified time) against the
//! reader's; [`STALE_AFTER`] is six beats, so a late beat or a clock a minute off is no death.

use std::time::Duration;

use backup_core::{EngineError, Phase, RestoreStatus};
use backup_storage::object_store::{ObjectStoreExt, PutPayload, path::Path};
use backup_storage::{BackupName, Repository};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::format::RestoreFiles;

/// How often a running restore says it is alive.
pub const BEAT_EVERY: Duration = Duration::from_secs(30);
/// How long without a beat before a restore is judged gone.
pub const STALE_AFTER: SignedDuration = SignedDuration::from_mins(3);

const BEAT_PREFIX: &str = "backup-fleet-alive-";
const BEAT_SUFFIX: &str = ".json";

/// The content of a beat. Readers take its time from the object's last-modified time, and
/// from its content only the backup (for the failure record they may have to write).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Beat {
    kind: String,
    restore_name: String,
    backup_name: String,
    at: Timestamp,
}

/// The path of restore `name`'s beat written at `at`.
pub fn beat_path(name: &BackupName, at: Timestamp) -> String {
    format!(
        "{}/{BEAT_PREFIX}{:012}{BEAT_SUFFIX}",
        RestoreFiles::dir(name),
        at.as_second()
    )
}

/// Whether `file` (a file name in a restore's folder) is a beat.
pub fn is_beat(file: &str) -> bool {
    file.strip_prefix(BEAT_PREFIX)
        .and_then(|rest| rest.strip_suffix(BEAT_SUFFIX))
        .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
}

/// What the beats of a restore folder without a record say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// No beat: not a restore of ours (Velero's, or from a version without beats).
    Unknown,
    /// Its newest beat is recent: it is running somewhere.
    Running {
        /// Its first beat (when it started).
        first: Timestamp,
    },
    /// Its newest beat is older than [`STALE_AFTER`]: the run is gone.
    Gone {
        /// Its first beat (when it started).
        first: Timestamp,
        /// Its newest beat (the last moment it was known alive).
        last: Timestamp,
    },
}

/// Judges a restore by the times of its beats, at `now`.
pub fn judge(beats: &[Timestamp], now: Timestamp) -> Liveness {
    let (Some(first), Some(last)) = (beats.iter().min(), beats.iter().max()) else {
        return Liveness::Unknown;
    };
    match now.checked_sub(STALE_AFTER) {
        Ok(cutoff) if *last < cutoff => Liveness::Gone {
            first: *first,
            last: *last,
        },
        _ => Liveness::Running { first: *first },
    }
}

/// The final status of a restore judged [`Liveness::Gone`].
pub fn gone_status(first: Timestamp, last: Timestamp) -> RestoreStatus {
    RestoreStatus {
        phase: Phase::Failed,
        started: Some(first),
        completed: Some(last),
        errors: vec![format!(
            "the restore stopped before it finished: nothing was heard from it after {last} \
             (its process was killed or lost the storage); objects it created before then stay \
             in the cluster, so restore again with existingResourcePolicy update, or delete them"
        )],
        ..RestoreStatus::default()
    }
}

fn unavailable(what: &str, e: backup_storage::object_store::Error) -> EngineError {
    EngineError::Unavailable {
        reason: format!("{what}: {}", backup_storage::remote::summary(&e)),
    }
}

/// Writes one beat of restore `name` (from `backup`) at `now`.
pub async fn beat(
    repo: &Repository,
    name: &BackupName,
    backup: &BackupName,
    now: Timestamp,
) -> Result<(), EngineError> {
    let body = serde_json::to_vec(&Beat {
        kind: "BackupFleetRestoreAlive".into(),
        restore_name: name.to_string(),
        backup_name: backup.to_string(),
        at: now,
    })
    .map_err(|e| EngineError::Other(format!("encoding a restore beat: {e}")))?;
    let path = Path::from(beat_path(name, now));
    repo.store()
        .put(&path, PutPayload::from(body))
        .await
        .map_err(|e| unavailable(&format!("writing {path}"), e))?;
    Ok(())
}

/// Writes a beat every [`BEAT_EVERY`] (the first one after that interval) until dropped or
/// aborted. A beat that fails is logged; the next one tries again.
pub async fn keep_beating(repo: Repository, name: BackupName, backup: BackupName) {
    loop {
        tokio::time::sleep(BEAT_EVERY).await;
        if let Err(e) = beat(&repo, &name, &backup, Timestamp::now()).await {
            tracing::warn!(restore = %name, error = %e, "writing a sign of life failed");
        }
    }
}

/// The beats of restore `name`: each one's path and last-modified time.
pub async fn beats(
    repo: &Repository,
    name: &BackupName,
) -> Result<Vec<(Path, Timestamp)>, EngineError> {
    let dir = Path::from(RestoreFiles::dir(name));
    let listed = repo
        .store()
        .list_with_delimiter(Some(&dir))
        .await
        .map_err(|e| unavailable(&format!("listing {dir}"), e))?;
    Ok(listed
        .objects
        .into_iter()
        .filter(|o| o.location.filename().is_some_and(is_beat))
        .filter_map(|o| {
            let t = o.last_modified;
            let at = Timestamp::new(t.timestamp(), t.timestamp_subsec_nanos() as i32).ok()?;
            Some((o.location, at))
        })
        .collect())
}

/// The backup a beat names (the restore's source).
pub async fn beat_backup(repo: &Repository, path: &Path) -> Result<BackupName, EngineError> {
    let bytes = repo
        .store()
        .get(path)
        .await
        .map_err(|e| unavailable(&format!("reading {path}"), e))?
        .bytes()
        .await
        .map_err(|e| unavailable(&format!("reading {path}"), e))?;
    let beat: Beat = serde_json::from_slice(&bytes).map_err(|e| {
        EngineError::Other(format!("{path} {}", backup_storage::remote::json_error(&e)))
    })?;
    BackupName::new(&beat.backup_name)
        .map_err(|e| EngineError::Other(format!("{path} names an invalid backup: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn beat_files_are_named_by_their_second_and_recognised() {
        let name = BackupName::new("r1").unwrap();
        let path = beat_path(&name, at("2026-11-30T10:00:00Z"));
        assert_eq!(
            path,
            "velero/restores/r1/backup-fleet-alive-001796032800.json"
        );
        assert!(is_beat(path.rsplit('/').next().unwrap()));
        for other in [
            "restore-r1-results.gz",
            "backup-fleet-alive-.json",
            "backup-fleet-alive-12x.json",
            "backup-manifest.json",
        ] {
            assert!(!is_beat(other), "{other}");
        }
    }

    #[test]
    fn a_restore_is_gone_only_when_its_newest_beat_is_older_than_the_window() {
        let now = at("2026-11-30T10:10:00Z");
        assert_eq!(judge(&[], now), Liveness::Unknown);
        let first = at("2026-11-30T10:00:00Z");
        let recent = at("2026-11-30T10:07:30Z");
        assert_eq!(
            judge(&[recent, first], now),
            Liveness::Running { first },
            "the newest beat counts, not the first"
        );
        let edge = now - STALE_AFTER;
        assert_eq!(judge(&[first, edge], now), Liveness::Running { first });
        let old = at("2026-11-30T10:06:59Z");
        assert_eq!(
            judge(&[old, first], now),
            Liveness::Gone { first, last: old }
        );
        let status = gone_status(first, old);
        assert_eq!(status.phase, Phase::Failed);
        assert_eq!((status.started, status.completed), (Some(first), Some(old)));
        assert!(status.errors[0].contains("stopped before it finished"));
    }
}
