//! What storage says about restores and schedules, for engines that did not start them: a new
//! `backupctl` process or a restarted controller observing a finished restore, and a restore
//! from a schedule resolved to that schedule's newest completed backup (as Velero does).
//!
//! A finished restore is read from Velero's own files (`restores/<name>/restore-<name>-*`, see
//! [`RestoreFiles`]): the results give the phase (`Completed` without errors, else
//! `PartiallyFailed`), errors and warnings; the results object's last-modified time is the
//! completion time, the first line of the log the start time, and the resource list the number
//! of items restored. Velero keeps no Restore object in storage, and a restore that fails before
//! writing results (e.g. a refused tarball) leaves none of those files; only for that case the
//! engine writes one file of ours, [`failure_record_path`], so that the `Failed` phase and its
//! reason survive the process. Dry runs write nothing and are only known to the engine that ran
//! them.

use std::io::Read;

use backup_core::{
    BackupKind, EngineError, LabelSelector, Phase, Progress, RestoreStatus, StoredBackup,
};
use backup_storage::object_store::{self, ObjectStoreExt, path::Path};
use backup_storage::{ArtifactName, BackupName, Manifest, PHASE_ATTRIBUTE, Repository};
use bytes::Bytes;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::errors::storage_error;
use crate::format::{OperationResults, ResourceList, RestoreFiles, gunzip_json};

/// Velero's label naming the schedule that created a backup. The direct engine writes a
/// backup's spec labels into `velero-backup.json`, so a scheduler puts this label in the
/// [`backup_core::BackupSpec::labels`] of each backup it starts.
pub use crate::in_cluster::translate::VELERO_SCHEDULE_LABEL as SCHEDULE_LABEL;

/// How much of a restore log is fetched to find its first line's time.
const LOG_HEAD_BYTES: u64 = 16 * 1024;

/// Our record of a restore that failed before Velero's files were written:
/// `velero/restores/<name>/backup-fleet-restore-status.json`. The name cannot collide with Velero's
/// (`restore-<name>-...`), and the file lies in the restore's directory, so deleting the
/// restore's files (as Velero does, by prefix) deletes it too.
pub fn failure_record_path(name: &BackupName) -> String {
    format!(
        "{}/backup-fleet-restore-status.json",
        RestoreFiles::dir(name)
    )
}

/// The content of [`failure_record_path`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FailureRecord {
    kind: String,
    restore_name: String,
    backup_name: String,
    status: RestoreStatus,
}

const FAILURE_RECORD_KIND: &str = "BackupFleetRestoreStatus";

fn unavailable(path: &str, e: object_store::Error) -> EngineError {
    EngineError::Unavailable {
        reason: format!("reading {path}: {}", backup_storage::remote::summary(&e)),
    }
}

/// An object's bytes and last-modified time, or `None` when it does not exist.
async fn get_opt(
    repo: &Repository,
    path: &str,
) -> Result<Option<(Bytes, Option<Timestamp>)>, EngineError> {
    let location = Path::from(path);
    let result = match repo.store().get(&location).await {
        Ok(r) => r,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(unavailable(path, e)),
    };
    let modified = result.meta.last_modified;
    let modified = Timestamp::new(
        modified.timestamp(),
        modified.timestamp_subsec_nanos() as i32,
    )
    .ok();
    let bytes = result.bytes().await.map_err(|e| unavailable(path, e))?;
    Ok(Some((bytes, modified)))
}

async fn exists(repo: &Repository, path: &str) -> Result<bool, EngineError> {
    match repo.store().head(&Path::from(path)).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(unavailable(path, e)),
    }
}

/// Whether storage holds a restore named `name`, finished or with signs of life (see
/// [`liveness`](super::liveness)), so the name is taken.
pub async fn restore_stored(repo: &Repository, name: &BackupName) -> Result<bool, EngineError> {
    Ok(exists(repo, &RestoreFiles::new(name).results).await?
        || exists(repo, &failure_record_path(name)).await?
        || !super::liveness::beats(repo, name).await?.is_empty())
}

/// Records a failed restore's final status (see [`failure_record_path`]).
pub async fn write_failure_record(
    repo: &Repository,
    name: &BackupName,
    backup: &BackupName,
    status: &RestoreStatus,
) -> Result<(), EngineError> {
    let record = FailureRecord {
        kind: FAILURE_RECORD_KIND.into(),
        restore_name: name.to_string(),
        backup_name: backup.to_string(),
        status: status.clone(),
    };
    let data = serde_json::to_vec_pretty(&record)
        .map_err(|e| EngineError::Other(format!("encoding restore status: {e}")))?;
    commit_restore_record(
        repo,
        name,
        vec![(failure_record_path(name), Bytes::from(data).into())],
        &status.phase.to_string(),
    )
    .await
}

/// The content of one file of a restore's record.
pub enum RecordData {
    /// Small, in memory.
    Bytes(Bytes),
    /// Streamed from a file (a temporary one), from its current position to its end, so a
    /// large file is never all in memory.
    File(std::fs::File),
}

impl From<Bytes> for RecordData {
    fn from(data: Bytes) -> Self {
        RecordData::Bytes(data)
    }
}

impl From<Vec<u8>> for RecordData {
    fn from(data: Vec<u8>) -> Self {
        RecordData::Bytes(data.into())
    }
}

/// Stores a restore's record files (paths under `restores/<name>/`) as one committed record:
/// the files first, then a manifest with each one's size and SHA-256, so a reader can tell a
/// damaged record from a good one (see [`Repository::for_restore_records`]).
pub async fn commit_restore_record(
    repo: &Repository,
    name: &BackupName,
    files: Vec<(String, RecordData)>,
    phase: &str,
) -> Result<(), EngineError> {
    let stored = |e: backup_storage::StorageError| EngineError::Unavailable {
        reason: format!("storing the record of restore {name}: {e}"),
    };
    let mut writer = repo
        .for_restore_records()
        .begin_backup(BackupKind::RestoreRecord, name)
        .await
        .map_err(stored)?;
    for (path, data) in files {
        let file = path.rsplit('/').next().unwrap_or(&path);
        let artifact = ArtifactName::new(file).map_err(stored)?;
        match data {
            RecordData::Bytes(data) => writer.put_artifact_bytes(&artifact, data).await,
            RecordData::File(file) => {
                let file = tokio::fs::File::from_std(file);
                writer.put_artifact(&artifact, file).await
            }
        }
        .map_err(stored)?;
    }
    let attributes = [(PHASE_ATTRIBUTE.to_string(), phase.to_string())].into();
    writer.commit(attributes, None).await.map_err(stored)?;
    Ok(())
}

/// A file of restore `name`'s record and when it was stored, read through the record's
/// manifest when it has one, so its size and SHA-256 are verified (restores Velero or older
/// versions wrote have none and are read as stored). A file the manifest does not list is not
/// part of the committed record and reads as absent.
async fn get_record_file(
    repo: &Repository,
    name: &BackupName,
    manifest: Option<&Manifest>,
    path: &str,
) -> Result<Option<(Bytes, Option<Timestamp>)>, EngineError> {
    use backup_storage::StorageError;
    use futures::TryStreamExt;
    let Some(manifest) = manifest else {
        return get_opt(repo, path).await;
    };
    let file = path.rsplit('/').next().unwrap_or(path);
    let artifact = ArtifactName::new(file).map_err(storage_error)?;
    if manifest.artifact(&artifact).is_none() {
        return Ok(None);
    }
    let read = async {
        let stream = repo.open_stored_in(manifest, &artifact).await?;
        stream
            .try_fold(Vec::new(), |mut all, chunk| async move {
                all.extend_from_slice(&chunk);
                Ok(all)
            })
            .await
    };
    match read.await {
        Ok(bytes) => Ok(Some((Bytes::from(bytes), Some(manifest.created)))),
        Err(
            e @ (StorageError::ChecksumMismatch { .. }
            | StorageError::Truncated { .. }
            | StorageError::Oversized { .. }
            | StorageError::MissingArtifact { .. }),
        ) => Err(EngineError::Other(format!(
            "restore {name}: {path} does not match its record's manifest, so the record was \
             altered or damaged: {e}"
        ))),
        Err(e) => Err(storage_error(e)),
    }
}

/// The manifest of restore `name`'s record, if it was committed with one.
async fn record_manifest(
    repo: &Repository,
    name: &BackupName,
) -> Result<Option<Manifest>, EngineError> {
    match repo.get_manifest(BackupKind::RestoreRecord, name).await {
        Ok(manifest) => Ok(Some(manifest)),
        Err(backup_storage::StorageError::BackupNotFound { .. }) => Ok(None),
        Err(e) => Err(EngineError::Other(format!(
            "restore {name}: its record's manifest is unreadable: {e}"
        ))),
    }
}

/// Deletes every object under `restores/<name>/` (see [`delete_restore`](super::delete_restore)).
pub async fn delete_restore_files(
    repo: &Repository,
    name: &BackupName,
) -> Result<usize, EngineError> {
    if !repo.is_writable() {
        return Err(EngineError::Forbidden(format!(
            "the location is ReadOnly, so the files of restore {name} stay in it"
        )));
    }
    let prefix = Path::from(RestoreFiles::dir(name));
    let mut listed = backup_storage::listing::tree(repo.store().as_ref(), &prefix)
        .await
        .map_err(|e| unavailable(prefix.as_ref(), e))?;
    // The manifest first: a record half deleted is then no longer a committed one.
    listed.sort_by_key(|o| o.location.filename() != Some(backup_storage::MANIFEST_FILE));
    for object in &listed {
        match repo.store().delete(&object.location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => {
                return Err(EngineError::Unavailable {
                    reason: format!(
                        "deleting {}: {}",
                        object.location,
                        backup_storage::remote::summary(&e)
                    ),
                });
            }
        }
    }
    Ok(listed.len())
}

/// The restores whose directory `restores/<name>/` exists in `repo`, by name; each with its
/// stored status, or `None` when it has no results yet (running in another process, or cut off
/// before writing them). Dry runs store nothing and are not listed.
pub async fn list_restores(
    repo: &Repository,
) -> Result<Vec<(BackupName, Option<RestoreStatus>)>, EngineError> {
    let root = Repository::kind_root(BackupKind::RestoreRecord);
    let dirs = backup_storage::listing::subdirectories(repo.store().as_ref(), &root)
        .await
        .map_err(|e| unavailable(root.as_ref(), e))?;
    let mut restores = Vec::with_capacity(dirs.len());
    for dir in dirs {
        // Directories that are no valid name were not written by a restore: skipped.
        let Some(name) = dir.filename().and_then(|n| BackupName::new(n).ok()) else {
            continue;
        };
        let status = stored_restore(repo, &name).await?;
        restores.push((name, status));
    }
    Ok(restores)
}

/// The log of restore `name`, decompressed, as its record stores it (checked against the
/// record's manifest when it has one), or `None` when storage holds no log of that name.
pub async fn restore_log(
    repo: &Repository,
    name: &BackupName,
) -> Result<Option<Vec<u8>>, EngineError> {
    let manifest = record_manifest(repo, name).await?;
    let path = RestoreFiles::new(name).logs;
    let Some((bytes, _)) = get_record_file(repo, name, manifest.as_ref(), &path).await? else {
        return Ok(None);
    };
    crate::format::gunzip_bytes(&bytes)
        .map(Some)
        .map_err(|e| EngineError::Other(format!("restore {name}: {path} is not gzip: {e}")))
}

/// The time on the first line of a (possibly truncated) gzipped restore log, whose lines start
/// `time="<RFC 3339>"`.
pub fn first_log_time(gz_head: &[u8]) -> Option<Timestamp> {
    let mut decoder = flate2::read::GzDecoder::new(gz_head);
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    // A truncated stream ends in an error; what was decoded before it is still good.
    while let Ok(n) = decoder.read(&mut buf) {
        if n == 0 {
            break;
        }
        text.extend_from_slice(&buf[..n]);
        if text.contains(&b'\n') {
            break;
        }
    }
    let line = text.split(|b| *b == b'\n').next()?;
    let rest = std::str::from_utf8(line).ok()?.strip_prefix("time=\"")?;
    rest[..rest.find('"')?].parse().ok()
}

/// The status of a restore that wrote `results`: Velero's phase rule, messages flattened the
/// way the running engine reports them, `items` restored.
pub fn status_from_results(
    results: &OperationResults,
    items: u64,
    started: Option<Timestamp>,
    completed: Option<Timestamp>,
) -> RestoreStatus {
    RestoreStatus {
        phase: results.phase(),
        progress: Progress {
            items_done: items,
            total_items: items,
        },
        started,
        completed,
        errors: results.errors.flatten(),
        warnings: results.warnings.flatten(),
        ..RestoreStatus::default()
    }
}

/// The final status of restore `name` as storage records it, or `None` when storage knows no
/// such (finished, non-dry-run) restore. A restore of ours with no record whose signs of life
/// stopped (see [`liveness`](super::liveness)) is recorded `Failed` here, once, by the first
/// reader that finds it so.
pub async fn stored_restore(
    repo: &Repository,
    name: &BackupName,
) -> Result<Option<RestoreStatus>, EngineError> {
    use super::liveness::{Liveness, beat_backup, beats, gone_status, judge};
    if let Some(status) = recorded_restore(repo, name).await? {
        return Ok(Some(status));
    }
    let beats = beats(repo, name).await?;
    let times: Vec<Timestamp> = beats.iter().map(|(_, at)| *at).collect();
    let Liveness::Gone { first, last } = judge(&times, Timestamp::now()) else {
        return Ok(None);
    };
    let status = gone_status(first, last);
    let backup = beat_backup(repo, &beats[0].0).await?;
    if let Err(e) = write_failure_record(repo, name, &backup, &status).await {
        // Another reader may have recorded it first; its record is as good as ours.
        return match recorded_restore(repo, name).await? {
            Some(recorded) => Ok(Some(recorded)),
            None => Err(e),
        };
    }
    Ok(Some(status))
}

/// What the record of restore `name` says, if it has one.
async fn recorded_restore(
    repo: &Repository,
    name: &BackupName,
) -> Result<Option<RestoreStatus>, EngineError> {
    let manifest = record_manifest(repo, name).await?;
    let manifest = manifest.as_ref();
    let record_path = failure_record_path(name);
    if let Some((bytes, _)) = get_record_file(repo, name, manifest, &record_path).await? {
        let record: FailureRecord = serde_json::from_slice(&bytes).map_err(|e| {
            EngineError::Other(format!(
                "restore {name}: {record_path} {}",
                backup_storage::remote::json_error(&e)
            ))
        })?;
        return Ok(Some(record.status));
    }
    let files = RestoreFiles::new(name);
    let Some((bytes, completed)) = get_record_file(repo, name, manifest, &files.results).await?
    else {
        return Ok(None);
    };
    let results: OperationResults = gunzip_json(&bytes).map_err(|e| {
        EngineError::Other(format!(
            "restore {name}: {} {}",
            files.results,
            backup_storage::remote::stored_json_error(&e)
        ))
    })?;
    // A record without a resource list (Velero before 1.9 wrote none) has no item count; one
    // whose list fails its checksum or cannot be read is refused like the other files.
    let items = match get_record_file(repo, name, manifest, &files.resource_list).await? {
        Some((bytes, _)) => gunzip_json::<ResourceList>(&bytes)
            .map_err(|e| {
                EngineError::Other(format!(
                    "restore {name}: {} {}",
                    files.resource_list,
                    backup_storage::remote::stored_json_error(&e)
                ))
            })?
            .len() as u64,
        None => 0,
    };
    // The log only gives the start time: a record without one has none.
    let started = match repo
        .store()
        .get_range(&Path::from(files.logs.as_str()), 0..LOG_HEAD_BYTES)
        .await
    {
        Ok(head) => first_log_time(&head),
        Err(object_store::Error::NotFound { .. }) => None,
        Err(e) => return Err(unavailable(&files.logs, e)),
    };
    // Stored times have whole seconds (S3's Last-Modified, like Velero's metav1.Time).
    let whole = |t: Option<Timestamp>| t.and_then(|t| Timestamp::from_second(t.as_second()).ok());
    Ok(Some(status_from_results(
        &results,
        items,
        whole(started),
        whole(completed),
    )))
}

/// The newest `Completed` backup labelled as made by `schedule`, as Velero chooses it: by start
/// time, then completion time, then name (scheduled names end in their time).
pub fn newest_completed<'a>(
    backups: impl IntoIterator<Item = &'a StoredBackup>,
    schedule: &str,
) -> Option<&'a StoredBackup> {
    backups
        .into_iter()
        .filter(|b| {
            b.phase == Phase::Completed
                && b.labels.get(SCHEDULE_LABEL).map(String::as_str) == Some(schedule)
        })
        .max_by(|a, b| {
            let key = |o: &'a StoredBackup| (o.taken_at(), o.completed, &o.name);
            key(a).cmp(&key(b))
        })
}

/// Resolves `schedule` to its newest completed backup in `repo`. The facts come from the
/// manifests (or, for manifests that predate them, from `velero-backup.json`), so encrypted
/// backups are considered without keys, and an unreadable backup is an error rather than
/// silently passed over for an older one.
pub async fn resolve_schedule(
    repo: &Repository,
    schedule: &str,
) -> Result<BackupName, EngineError> {
    let selector = LabelSelector {
        match_labels: [(SCHEDULE_LABEL.to_string(), schedule.to_string())].into(),
        ..LabelSelector::default()
    };
    let backups = super::stored::list(repo, &selector).await?;
    let chosen = newest_completed(&backups, schedule).ok_or_else(|| EngineError::NotFound {
        what: "completed backup of schedule",
        name: schedule.to_string(),
    })?;
    BackupName::new(chosen.name.as_str()).map_err(storage_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::gzip_bytes;

    fn object(name: &str, schedule: Option<&str>, phase: Phase, started: &str) -> StoredBackup {
        let started: Timestamp = started.parse().unwrap();
        StoredBackup {
            name: name.into(),
            phase,
            items_backed_up: 1,
            total_items: 1,
            started: Some(started),
            completed: Some(started),
            expiration: None,
            errors: 0,
            warnings: 0,
            labels: schedule
                .map(|s| [(SCHEDULE_LABEL.to_string(), s.to_string())].into())
                .unwrap_or_default(),
        }
    }

    #[test]
    fn newest_completed_of_the_schedule_wins() {
        let backups = [
            object(
                "zz-old",
                Some("s"),
                Phase::Completed,
                "2026-01-01T00:00:00Z",
            ),
            object(
                "aa-new",
                Some("s"),
                Phase::Completed,
                "2026-01-02T00:00:00Z",
            ),
            object(
                "newest-failed",
                Some("s"),
                Phase::PartiallyFailed,
                "2026-01-03T00:00:00Z",
            ),
            object("other", Some("t"), Phase::Completed, "2026-01-04T00:00:00Z"),
            object("manual", None, Phase::Completed, "2026-01-05T00:00:00Z"),
        ];
        assert_eq!(newest_completed(&backups, "s").unwrap().name, "aa-new");
        assert_eq!(newest_completed(&backups, "t").unwrap().name, "other");
        assert!(newest_completed(&backups, "none").is_none());
        assert!(newest_completed(&backups[2..3], "s").is_none());
    }

    #[test]
    fn ties_fall_back_to_completion_then_name_and_missing_times_are_oldest() {
        let mut a = object(
            "s-20260101000000",
            Some("s"),
            Phase::Completed,
            "2026-01-01T00:00:00Z",
        );
        let b = object(
            "s-20260101000001",
            Some("s"),
            Phase::Completed,
            "2026-01-01T00:00:00Z",
        );
        assert_eq!(newest_completed([&a, &b], "s").unwrap().name, b.name);
        a.completed = Some("2026-01-01T00:00:05Z".parse().unwrap());
        assert_eq!(newest_completed([&a, &b], "s").unwrap().name, a.name);
        let mut c = object("zzz", Some("s"), Phase::Completed, "2026-01-01T00:00:00Z");
        c.started = None;
        c.completed = None;
        assert_eq!(newest_completed([&c, &b], "s").unwrap().name, b.name);
    }

    #[test]
    fn status_from_results_flattens_like_the_running_engine() {
        let mut r = OperationResults::default();
        r.warnings.add(Some("app"), "exists");
        let s = status_from_results(&r, 4, None, None);
        assert_eq!(s.phase, Phase::Completed);
        assert_eq!(s.warnings, vec!["namespace app: exists"]);
        assert_eq!(s.progress.items_done, 4);
        r.errors.add(None, "boom");
        let s = status_from_results(&r, 4, None, None);
        assert_eq!(s.phase, Phase::PartiallyFailed);
        assert_eq!(s.errors, vec!["cluster: boom"]);
    }

    #[test]
    fn first_log_time_reads_a_truncated_log() {
        let log = "time=\"2026-01-02T03:04:05.5Z\" level=info msg=\"starting\"\n".repeat(2000);
        let gz = gzip_bytes(log.as_bytes()).unwrap();
        let head = &gz[..gz.len().min(200)];
        assert_eq!(
            first_log_time(head),
            Some("2026-01-02T03:04:05.5Z".parse().unwrap())
        );
        assert_eq!(first_log_time(b"not gzip"), None);
        assert_eq!(
            first_log_time(&gzip_bytes(b"no time here\n").unwrap()),
            None
        );
    }

    #[test]
    fn failure_record_does_not_collide_with_velero_files() {
        let name = BackupName::new("r1").unwrap();
        let files = RestoreFiles::new(&name);
        let ours = failure_record_path(&name);
        assert!(ours.starts_with("velero/restores/r1/"));
        assert!(![files.results, files.logs, files.resource_list].contains(&ours));
    }
}
