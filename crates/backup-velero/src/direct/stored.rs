//! What a direct backup's manifest says about it, so a listing needs one small read per backup.
//!
//! The manifest is the commit point of a backup (see `backup_storage`). The direct engine copies
//! the facts a scheduler and retention need from `velero-backup.json` into the manifest's
//! attributes: phase, counts, times and labels. Listing a cluster's backups then reads
//! manifests only; a manifest without these attributes (written before they existed) falls
//! back to reading its `velero-backup.json`.

use std::collections::BTreeMap;

use backup_core::{EngineError, LabelSelector, Phase, StoredBackup};
use backup_storage::{Manifest, Repository};
use jiff::Timestamp;

use super::read_backup_object;
use crate::format::BackupObject;

/// Which engine wrote the backup (`direct`).
pub const ENGINE: &str = "engine";
/// The final phase, Velero's spelling (the attribute storage's retention reads).
pub const PHASE: &str = backup_storage::PHASE_ATTRIBUTE;
/// Items written.
pub const ITEMS: &str = "items";
/// Items in scope.
pub const TOTAL_ITEMS: &str = "totalItems";
/// Item errors.
pub const ERRORS: &str = "errors";
/// Item warnings.
pub const WARNINGS: &str = "warnings";
/// Start time, RFC 3339.
pub const STARTED: &str = "started";
/// Completion time, RFC 3339.
pub const COMPLETED: &str = "completed";
/// Prefix of one attribute per backup label: `label/<key>` = value.
pub const LABEL_PREFIX: &str = "label/";

/// The manifest attributes recording `object`.
pub fn manifest_attributes(object: &BackupObject) -> BTreeMap<String, String> {
    let mut attributes = BTreeMap::from([
        (ENGINE.to_string(), "direct".to_string()),
        (PHASE.to_string(), object.phase.to_string()),
        (ITEMS.to_string(), object.items_backed_up.to_string()),
        (TOTAL_ITEMS.to_string(), object.total_items.to_string()),
        (ERRORS.to_string(), object.errors.to_string()),
        (WARNINGS.to_string(), object.warnings.to_string()),
    ]);
    for (key, time) in [(STARTED, object.started), (COMPLETED, object.completed)] {
        if let Some(time) = time {
            attributes.insert(key.to_string(), time.to_string());
        }
    }
    for (key, value) in &object.spec.labels {
        attributes.insert(format!("{LABEL_PREFIX}{key}"), value.clone());
    }
    attributes
}

/// Why a manifest's attributes could not be read: the manifest is corrupt or foreign.
fn corrupt(manifest: &Manifest, key: &str, value: &str) -> EngineError {
    EngineError::Other(format!(
        "backup {}: its manifest records {key} = {value:?}, which cannot be read; \
         check the backup with `backupctl backup describe`",
        manifest.name
    ))
}

fn number(manifest: &Manifest, key: &str) -> Result<u64, EngineError> {
    match manifest.attributes.get(key) {
        None => Ok(0),
        Some(v) => v.parse().map_err(|_| corrupt(manifest, key, v)),
    }
}

fn time(manifest: &Manifest, key: &str) -> Result<Option<Timestamp>, EngineError> {
    match manifest.attributes.get(key) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| corrupt(manifest, key, v)),
    }
}

/// The record of a backup from its manifest attributes; `None` when the manifest predates them.
pub fn from_attributes(manifest: &Manifest) -> Result<Option<StoredBackup>, EngineError> {
    let Some(phase) = manifest.attributes.get(PHASE) else {
        return Ok(None);
    };
    if !manifest.attributes.contains_key(STARTED) {
        return Ok(None);
    }
    let phase: Phase = phase.parse().map_err(|_| corrupt(manifest, PHASE, phase))?;
    let labels = manifest
        .attributes
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(LABEL_PREFIX)?.to_string(), v.clone())))
        .collect();
    Ok(Some(StoredBackup {
        name: manifest.name.to_string(),
        phase,
        items_backed_up: number(manifest, ITEMS)?,
        total_items: number(manifest, TOTAL_ITEMS)?,
        started: time(manifest, STARTED)?,
        completed: time(manifest, COMPLETED)?,
        expiration: manifest.expires_at,
        errors: number(manifest, ERRORS)?,
        warnings: number(manifest, WARNINGS)?,
        labels,
    }))
}

/// The record of a backup from its `velero-backup.json` (the fallback for older manifests).
pub fn from_object(object: &BackupObject) -> StoredBackup {
    StoredBackup {
        name: object.name.clone(),
        phase: object.phase,
        items_backed_up: object.items_backed_up,
        total_items: object.total_items,
        started: object.started,
        completed: object.completed,
        expiration: object.expiration,
        errors: object.errors,
        warnings: object.warnings,
        labels: object.spec.labels.clone(),
    }
}

/// The record of the backup `manifest` commits: from its attributes, or from its
/// `velero-backup.json` when the manifest predates them.
pub async fn record(repo: &Repository, manifest: &Manifest) -> Result<StoredBackup, EngineError> {
    match from_attributes(manifest)? {
        Some(record) => Ok(record),
        None => Ok(from_object(
            &read_backup_object(repo, &manifest.name).await?,
        )),
    }
}

/// Every committed resource backup in `repo` whose labels match `selector`, oldest first.
///
/// A manifest that cannot be read is an error, not a silent omission: a scheduler that skipped
/// it could delete the backups around it by retention.
pub async fn list(
    repo: &Repository,
    selector: &LabelSelector,
) -> Result<Vec<StoredBackup>, EngineError> {
    Ok(list_with_manifests(repo)
        .await?
        .into_iter()
        .map(|(record, _)| record)
        .filter(|record| selector.matches(&record.labels))
        .collect())
}

/// Every committed resource backup in `repo` with its manifest (sizes, checksums, encryption),
/// oldest first, from one listing of storage; errors as [`list`].
pub async fn list_with_manifests(
    repo: &Repository,
) -> Result<Vec<(StoredBackup, Manifest)>, EngineError> {
    let listing = repo
        .list(backup_core::BackupKind::Resources)
        .await
        .map_err(super::storage_error)?;
    if let Some((name, problem)) = listing.problems.first() {
        return Err(EngineError::Other(format!(
            "backup {name} has an unreadable manifest ({problem}); repair or delete it"
        )));
    }
    let mut out = Vec::with_capacity(listing.manifests.len());
    for manifest in listing.manifests {
        out.push((record(repo, &manifest).await?, manifest));
    }
    out.sort_by(|(a, _), (b, _)| (a.taken_at(), &a.name).cmp(&(b.taken_at(), &b.name)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use backup_core::BackupSpec;
    use backup_storage::{BackupName, FORMAT_VERSION};

    fn object() -> BackupObject {
        let mut spec = BackupSpec::default();
        spec.labels
            .insert("velero.io/schedule-name".into(), "nightly".into());
        BackupObject {
            name: "nightly-20261130020000".into(),
            spec,
            storage_location: "main".into(),
            phase: Phase::PartiallyFailed,
            started: Some("2026-11-30T02:00:00Z".parse().unwrap()),
            completed: Some("2026-11-30T02:00:07Z".parse().unwrap()),
            expiration: Some("2026-12-30T02:00:00Z".parse().unwrap()),
            total_items: 12,
            items_backed_up: 11,
            errors: 1,
            warnings: 2,
        }
    }

    fn manifest(attributes: BTreeMap<String, String>) -> Manifest {
        Manifest {
            format_version: FORMAT_VERSION,
            name: BackupName::new("nightly-20261130020000").unwrap(),
            kind: backup_core::BackupKind::Resources,
            created: "2026-11-30T02:00:08Z".parse().unwrap(),
            expires_at: Some("2026-12-30T02:00:00Z".parse().unwrap()),
            attributes,
            artifacts: Vec::new(),
        }
    }

    #[test]
    fn attributes_round_trip_to_the_same_record_as_the_backup_object() {
        let object = object();
        let record = from_attributes(&manifest(manifest_attributes(&object)))
            .unwrap()
            .expect("attributes are complete");
        assert_eq!(record, from_object(&object));
    }

    #[test]
    fn a_manifest_without_the_attributes_asks_for_the_fallback() {
        let old = BTreeMap::from([
            ("engine".to_string(), "direct".to_string()),
            ("phase".to_string(), "Completed".to_string()),
        ]);
        assert_eq!(from_attributes(&manifest(old)).unwrap(), None);
    }

    #[test]
    fn an_unreadable_attribute_is_an_error_naming_it() {
        let mut attributes = manifest_attributes(&object());
        attributes.insert(ERRORS.into(), "many".into());
        let e = from_attributes(&manifest(attributes)).unwrap_err();
        assert!(e.to_string().contains("errors = \"many\""), "{e}");
        let mut attributes = manifest_attributes(&object());
        attributes.insert(PHASE.into(), "Done".into());
        assert!(from_attributes(&manifest(attributes)).is_err());
    }
}
