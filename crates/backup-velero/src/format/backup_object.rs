//! `velero-backup.json`: the `velero.io/v1` Backup object Velero stores beside each tarball.
//!
//! Velero's backup sync reads this file to recreate the Backup in a cluster, so we write the
//! fields it relies on (spec filters, `ttl` as a Go duration, `storageLocation`; status phase,
//! timestamps, progress, error/warning counts, `formatVersion`, `expiration`) with its spelling.
//! Defined here as a small struct over `serde_json::Value` so the format does not depend on the
//! full API types.

use std::collections::BTreeMap;

use backup_core::{BackupSpec, Phase, ResourceFilter, Ttl};
use backup_storage::remote::json_error;
use jiff::Timestamp;
use serde_json::{Map, Value, json};

use crate::api::BackupPhase;
use crate::in_cluster::observe::backup_phase;
use crate::tarball_layout::FORMAT_VERSION;

/// Why a stored `velero-backup.json` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BackupObjectError {
    /// Not JSON, or not a Backup.
    #[error("velero-backup.json is not a velero.io/v1 Backup: {0}")]
    Invalid(String),
}

/// The parts of a Velero Backup we write and read back.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupObject {
    /// Backup name.
    pub name: String,
    /// The spec (filters, ttl, volume options, labels).
    pub spec: BackupSpec,
    /// The storage location's name as Velero knows it.
    pub storage_location: String,
    /// Terminal phase (`Completed` or `PartiallyFailed`).
    pub phase: Phase,
    /// When it started.
    pub started: Option<Timestamp>,
    /// When it completed.
    pub completed: Option<Timestamp>,
    /// When it expires (started + ttl).
    pub expiration: Option<Timestamp>,
    /// Items in scope.
    pub total_items: u64,
    /// Items written.
    pub items_backed_up: u64,
    /// Number of errors.
    pub errors: u64,
    /// Number of warnings.
    pub warnings: u64,
}

/// A label value as Velero makes one from a longer name (its `label.GetValidName`): names of
/// at most 63 characters are kept; longer ones become their first 57 characters followed by
/// the first 6 hex digits of their SHA-256, so Velero finds our backups by the same value.
pub fn label_value(name: &str) -> String {
    const MAX: usize = 63;
    if name.len() <= MAX {
        return name.to_string();
    }
    use sha2::Digest as _;
    let digest = hex::encode(sha2::Sha256::digest(name.as_bytes()));
    let head: String = name.chars().take(MAX - 6).collect();
    format!("{head}{}", &digest[..6])
}

/// metav1.Time's format: RFC 3339 with whole seconds.
fn time(ts: Option<Timestamp>) -> Value {
    match ts.and_then(|t| Timestamp::from_second(t.as_second()).ok()) {
        Some(t) => Value::String(t.to_string()),
        None => Value::Null,
    }
}

impl BackupObject {
    /// The Backup as Velero's JSON.
    pub fn to_json(&self) -> Value {
        let mut spec = match serde_json::to_value(&self.spec.filter) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        spec.insert("ttl".into(), Value::String(self.spec.ttl.to_string()));
        spec.insert(
            "storageLocation".into(),
            Value::String(self.storage_location.clone()),
        );
        spec.insert("snapshotVolumes".into(), self.spec.snapshot_volumes.into());
        spec.insert(
            "defaultVolumesToFsBackup".into(),
            self.spec.default_volumes_to_fs_backup.into(),
        );
        let mut labels: BTreeMap<String, String> = self.spec.labels.clone();
        labels.insert(
            "velero.io/storage-location".into(),
            label_value(&self.storage_location),
        );
        json!({
            "apiVersion": "velero.io/v1",
            "kind": "Backup",
            "metadata": {
                "name": self.name,
                "namespace": "velero",
                "labels": labels,
            },
            "spec": spec,
            "status": {
                "version": 1,
                "formatVersion": FORMAT_VERSION,
                "phase": self.phase.as_str(),
                "startTimestamp": time(self.started),
                "completionTimestamp": time(self.completed),
                "expiration": time(self.expiration),
                "progress": {
                    "totalItems": self.total_items,
                    "itemsBackedUp": self.items_backed_up,
                },
                "errors": self.errors,
                "warnings": self.warnings,
            }
        })
    }

    /// Reads a stored Backup (ours or Velero's); unknown fields are ignored.
    pub fn from_json(bytes: &[u8]) -> Result<Self, BackupObjectError> {
        let invalid = |m: String| BackupObjectError::Invalid(m);
        let v: Value = serde_json::from_slice(bytes).map_err(|e| invalid(json_error(&e)))?;
        if v["kind"] != "Backup" {
            return Err(invalid("its kind is not \"Backup\"".into()));
        }
        let name = v["metadata"]["name"]
            .as_str()
            .ok_or_else(|| invalid("metadata.name is missing".into()))?
            .to_string();
        let spec_json = &v["spec"];
        let filter: ResourceFilter = serde_json::from_value(spec_json.clone())
            .map_err(|e| invalid(format!("spec {}", json_error(&e))))?;
        let ttl = match spec_json["ttl"].as_str() {
            Some(s) => Ttl::parse(s).map_err(|e| invalid(format!("spec.ttl: {e}")))?,
            None => Ttl::default(),
        };
        let labels = v["metadata"]["labels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| k.as_str() != "velero.io/storage-location")
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        let status = &v["status"];
        // Velero leaves `phase` empty (or out) for a backup it has not taken up: New.
        // Velero's phases, mapped as the in-cluster engine maps them: not yet started (none,
        // empty, queued) is New; the "...PartiallyFailed" intermediate phases are still running;
        // a phase this version does not know is running too (never listed as restorable).
        let phase = match &status["phase"] {
            Value::Null => Phase::New,
            Value::String(text) if text.is_empty() => Phase::New,
            Value::String(text) => {
                let velero: BackupPhase = serde_json::from_value(Value::String(text.clone()))
                    .map_err(|e| invalid(format!("status.phase {}", json_error(&e))))?;
                backup_phase(Some(&velero)).0
            }
            _ => return Err(invalid("status.phase is not a string".into())),
        };
        let count = |field: &str| -> Result<u64, BackupObjectError> {
            let value = field.split('.').fold(status, |v, key| &v[key]);
            match value {
                Value::Null => Ok(0),
                v => v
                    .as_u64()
                    .ok_or_else(|| invalid(format!("status.{field} is not a count"))),
            }
        };
        let time = |field: &str| -> Result<Option<Timestamp>, BackupObjectError> {
            match &status[field] {
                Value::Null => Ok(None),
                v => v
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .map(Some)
                    .ok_or_else(|| invalid(format!("status.{field} is not an RFC 3339 time"))),
            }
        };
        Ok(BackupObject {
            name,
            spec: BackupSpec {
                filter,
                ttl,
                storage_location: None,
                snapshot_volumes: spec_json["snapshotVolumes"].as_bool().unwrap_or(true),
                default_volumes_to_fs_backup: spec_json["defaultVolumesToFsBackup"]
                    .as_bool()
                    .unwrap_or(false),
                labels,
                ..BackupSpec::default()
            },
            storage_location: spec_json["storageLocation"]
                .as_str()
                .unwrap_or("default")
                .to_string(),
            phase,
            started: time("startTimestamp")?,
            completed: time("completionTimestamp")?,
            expiration: time("expiration")?,
            total_items: count("progress.totalItems")?,
            items_backed_up: count("progress.itemsBackedUp")?,
            errors: count("errors")?,
            warnings: count("warnings")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backup_core::LabelSelector;

    #[test]
    fn label_values_are_shortened_as_velero_shortens_them() {
        assert_eq!(label_value("main"), "main");
        let long = "a-very-long-storage-location-name-that-velero-would-have-to-shorten-for-labels";
        // First 57 characters, then the first 6 hex digits of SHA-256 (computed independently).
        assert_eq!(
            label_value(long),
            "a-very-long-storage-location-name-that-velero-would-have-ee1339"
        );
        assert_eq!(label_value(long).len(), 63);
    }

    fn sample() -> BackupObject {
        let mut spec = BackupSpec::default();
        spec.filter.included_namespaces = vec!["app".into()];
        spec.filter.label_selector = Some(LabelSelector::parse("tier=web").unwrap());
        spec.ttl = Ttl::parse("24h").unwrap();
        BackupObject {
            name: "b1".into(),
            spec,
            storage_location: "default".into(),
            phase: Phase::PartiallyFailed,
            started: Some("2026-01-02T03:04:05.678Z".parse().unwrap()),
            completed: Some("2026-01-02T03:04:09Z".parse().unwrap()),
            expiration: Some("2026-01-03T03:04:05Z".parse().unwrap()),
            total_items: 10,
            items_backed_up: 9,
            errors: 1,
            warnings: 2,
        }
    }

    #[test]
    fn writes_velero_fields() {
        let v = sample().to_json();
        assert_eq!(v["apiVersion"], "velero.io/v1");
        assert_eq!(v["spec"]["ttl"], "24h0m0s");
        assert_eq!(v["spec"]["includedNamespaces"], json!(["app"]));
        assert_eq!(v["spec"]["labelSelector"]["matchLabels"]["tier"], "web");
        assert_eq!(v["spec"]["storageLocation"], "default");
        assert_eq!(v["status"]["formatVersion"], "1.1.0");
        assert_eq!(v["status"]["phase"], "PartiallyFailed");
        assert_eq!(v["status"]["startTimestamp"], "2026-01-02T03:04:05Z");
        assert_eq!(v["status"]["progress"]["itemsBackedUp"], 9);
        assert_eq!(v["status"]["errors"], 1);
    }

    #[test]
    fn round_trips_and_rejects_other_kinds() {
        let b = sample();
        let bytes = serde_json::to_vec(&b.to_json()).unwrap();
        let mut back = BackupObject::from_json(&bytes).unwrap();
        // Sub-second precision is not part of metav1.Time.
        back.started = b
            .started
            .map(|t| Timestamp::from_second(t.as_second()).unwrap());
        let mut expected = b.clone();
        expected.started = back.started;
        assert_eq!(back, expected);
        let err = BackupObject::from_json(br#"{"kind":"Restore"}"#).unwrap_err();
        assert!(err.to_string().contains("not \"Backup\""), "{err}");
        assert!(BackupObject::from_json(b"{").is_err());
    }

    /// `sample()` as Velero's JSON with `status.<field>` set to `value`.
    fn with_status(field: &str, value: Value) -> Result<BackupObject, BackupObjectError> {
        let mut v = sample().to_json();
        let mut at = &mut v["status"];
        let mut keys = field.split('.').peekable();
        while let Some(key) = keys.next() {
            if keys.peek().is_none() {
                at[key] = value;
                break;
            }
            at = &mut at[key];
        }
        BackupObject::from_json(&serde_json::to_vec(&v).unwrap())
    }

    #[test]
    fn velero_phases_are_read_as_the_in_cluster_engine_reads_them() {
        for (velero, ours) in [
            ("", Phase::New),
            ("Queued", Phase::New),
            ("ReadyToStart", Phase::New),
            (
                "WaitingForPluginOperationsPartiallyFailed",
                Phase::WaitingForPluginOperations,
            ),
            ("FinalizingPartiallyFailed", Phase::Finalizing),
            ("PartiallyFailed", Phase::PartiallyFailed),
            // A phase of a newer Velero: running, never restorable, never New.
            ("SomethingNew", Phase::InProgress),
        ] {
            let read = with_status("phase", json!(velero)).unwrap();
            assert_eq!(read.phase, ours, "{velero}");
        }
        assert_eq!(with_status("phase", Value::Null).unwrap().phase, Phase::New);
        let err = with_status("phase", json!(7)).unwrap_err();
        assert!(err.to_string().contains("status.phase"), "{err}");
    }

    #[test]
    fn malformed_times_and_counts_are_errors_not_defaults() {
        // A backup whose expiration could not be read would otherwise never expire.
        let err = with_status("expiration", json!("next tuesday")).unwrap_err();
        assert!(err.to_string().contains("status.expiration"), "{err}");
        assert!(!err.to_string().contains("next tuesday"), "{err}");
        let err = with_status("startTimestamp", json!(12)).unwrap_err();
        assert!(err.to_string().contains("status.startTimestamp"), "{err}");
        let err = with_status("progress.totalItems", json!("many")).unwrap_err();
        assert!(
            err.to_string().contains("status.progress.totalItems"),
            "{err}"
        );
        let err = with_status("errors", json!(-1)).unwrap_err();
        assert!(err.to_string().contains("status.errors"), "{err}");
        assert_eq!(
            with_status("expiration", Value::Null).unwrap().expiration,
            None
        );
        assert_eq!(with_status("warnings", Value::Null).unwrap().warnings, 0);
    }
}
