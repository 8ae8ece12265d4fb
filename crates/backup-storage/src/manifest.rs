//! The backup manifest: the object written last, whose presence makes a backup exist.
//!
//! Like restic's snapshot files, the manifest is the commit point: artifacts are uploaded first,
//! each with its size and SHA-256, and only then is the manifest written (create-only where the
//! store supports it). Readers trust nothing that is not listed in a manifest.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::crypt::Fingerprint;
use crate::error::{Result, StorageError};
use crate::names::{ArtifactName, BackupName};
use crate::remote::json_error;
use backup_core::BackupKind;

/// The manifest's file name inside a backup's directory. Chosen so it cannot collide with
/// Velero's own files (`velero-backup.json`, `<name>.tar.gz`, ...), which may sit beside it.
pub const MANIFEST_FILE: &str = "backup-manifest.json";

/// The attribute in which writers record a backup's final phase (Velero's spelling). Backups
/// whose writers record no phase (etcd snapshots) are committed only when complete.
pub const PHASE_ATTRIBUTE: &str = "phase";

/// The manifest format of backups without encrypted artifacts, readable by every version of
/// this crate.
pub const FORMAT_VERSION: u32 = 1;

/// The manifest format of backups with encrypted artifacts ([`ArtifactRecord::encryption`]).
/// Software that predates encryption refuses it ("upgrade the software") instead of handing
/// ciphertext to a tarball reader. This crate reads both.
pub const ENCRYPTED_FORMAT_VERSION: u32 = 2;

/// How a stored artifact is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EncryptionScheme {
    /// An age v1 file (<https://age-encryption.org/v1>) to X25519 recipients: `age -d` reads it.
    #[serde(rename = "age")]
    Age,
}

/// The manifest's record that an artifact is stored encrypted, and to whom.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactEncryption {
    /// The format of the stored bytes.
    pub scheme: EncryptionScheme,
    /// Fingerprints of the recipients whose identities can decrypt it (see [`Fingerprint`]);
    /// never keys.
    pub recipients: Vec<Fingerprint>,
}

/// What was written for one artifact, recorded while streaming it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRecord {
    /// File name inside the backup directory.
    pub name: ArtifactName,
    /// Exact size in bytes of what is stored (the ciphertext when encrypted).
    pub size: u64,
    /// SHA-256 of what is stored (the ciphertext when encrypted), lower-case hex, so it can
    /// be verified without keys.
    pub sha256: String,
    /// Set when the artifact is stored encrypted; absent in manifests written before
    /// encryption existed, which read as unencrypted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<ArtifactEncryption>,
}

/// The committed description of one backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT_VERSION`], or [`ENCRYPTED_FORMAT_VERSION`] when any artifact is encrypted.
    pub format_version: u32,
    /// The backup's name (equals its directory name).
    pub name: BackupName,
    /// Resources or etcd snapshot.
    pub kind: BackupKind,
    /// When the backup was committed.
    pub created: Timestamp,
    /// When retention may delete it regardless of count-based rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// Free-form facts about the backup (e.g. the etcd revision), for callers.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// Every artifact, with size and checksum.
    pub artifacts: Vec<ArtifactRecord>,
}

impl Manifest {
    /// Looks up an artifact's record by name.
    pub fn artifact(&self, name: &ArtifactName) -> Option<&ArtifactRecord> {
        self.artifacts.iter().find(|a| &a.name == name)
    }

    /// Whether this backup is a full restore point: its recorded phase is `Completed`, or it
    /// records no phase (its writer commits only complete backups). A phase that cannot be
    /// read is an error, so retention never guesses.
    pub fn succeeded(&self) -> Result<bool> {
        self.phase().map(|phase| phase.is_successful())
    }

    /// The phase the backup was committed with: the recorded one, or `Completed` when none is
    /// recorded (its writer commits only complete backups). Unreadable is an error.
    pub fn phase(&self) -> Result<backup_core::Phase> {
        match self.attributes.get(PHASE_ATTRIBUTE) {
            None => Ok(backup_core::Phase::Completed),
            Some(text) => {
                text.parse::<backup_core::Phase>()
                    .map_err(|e| StorageError::CorruptManifest {
                        backup: self.name.to_string(),
                        reason: format!("attribute {PHASE_ATTRIBUTE}: {e}"),
                    })
            }
        }
    }

    /// Whether any artifact is stored encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.artifacts.iter().any(|a| a.encryption.is_some())
    }

    /// The fingerprints of every recipient any artifact is encrypted to, sorted, no duplicates.
    pub fn recipients(&self) -> Vec<Fingerprint> {
        let set: BTreeSet<&Fingerprint> = self
            .artifacts
            .iter()
            .filter_map(|a| a.encryption.as_ref())
            .flat_map(|e| &e.recipients)
            .collect();
        set.into_iter().cloned().collect()
    }

    /// The format version a manifest with these artifacts is written with.
    pub(crate) fn format_for(artifacts: &[ArtifactRecord]) -> u32 {
        if artifacts.iter().any(|a| a.encryption.is_some()) {
            ENCRYPTED_FORMAT_VERSION
        } else {
            FORMAT_VERSION
        }
    }

    /// Total bytes of all artifacts.
    pub fn total_size(&self) -> u64 {
        self.artifacts.iter().map(|a| a.size).sum()
    }

    /// Serialises for storage (pretty JSON, so people can read it with `cat`).
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Parses and checks a stored manifest found at `<kind>/<dir_name>/`.
    pub(crate) fn parse(bytes: &[u8], kind: BackupKind, dir_name: &BackupName) -> Result<Self> {
        let corrupt = |reason: String| StorageError::CorruptManifest {
            backup: dir_name.to_string(),
            reason,
        };
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| corrupt(json_error(&e)))?;
        match value.get("format_version").and_then(|v| v.as_u64()) {
            Some(v)
                if v == u64::from(FORMAT_VERSION) || v == u64::from(ENCRYPTED_FORMAT_VERSION) => {}
            Some(v) => {
                return Err(corrupt(format!(
                    "format_version {v} is not supported (this version reads {FORMAT_VERSION} and {ENCRYPTED_FORMAT_VERSION}); upgrade the software"
                )));
            }
            None => return Err(corrupt("format_version is missing".into())),
        }
        let manifest: Manifest =
            serde_json::from_value(value).map_err(|e| corrupt(json_error(&e)))?;
        if &manifest.name != dir_name {
            return Err(corrupt(format!(
                "it names backup `{}` but is stored under `{dir_name}`",
                manifest.name
            )));
        }
        if manifest.kind != kind {
            return Err(corrupt(format!(
                "its kind {:?} does not match directory `{}`",
                manifest.kind,
                kind.dir()
            )));
        }
        for a in &manifest.artifacts {
            let valid_hex = a.sha256.len() == 64
                && a.sha256
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
            if !valid_hex {
                return Err(corrupt(format!(
                    "artifact `{}` has a malformed sha256 `{}`",
                    a.name, a.sha256
                )));
            }
            if a.encryption
                .as_ref()
                .is_some_and(|e| e.recipients.is_empty())
            {
                return Err(corrupt(format!(
                    "artifact `{}` is recorded as encrypted to no recipient",
                    a.name
                )));
            }
        }
        if manifest.format_version != Self::format_for(&manifest.artifacts) {
            return Err(corrupt(format!(
                "format_version {} does not match its artifacts (version {ENCRYPTED_FORMAT_VERSION} exactly when some are encrypted)",
                manifest.format_version
            )));
        }
        Ok(manifest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            format_version: FORMAT_VERSION,
            name: BackupName::new("b1").unwrap(),
            kind: BackupKind::EtcdSnapshot,
            created: "2025-01-02T03:04:05Z".parse().unwrap(),
            expires_at: None,
            attributes: BTreeMap::from([("revision".to_string(), "42".to_string())]),
            artifacts: vec![ArtifactRecord {
                name: ArtifactName::new("snapshot.db").unwrap(),
                size: 3,
                sha256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".into(),
                encryption: None,
            }],
        }
    }

    #[test]
    fn round_trips_with_rfc3339_and_kebab_kind() {
        let m = sample();
        let bytes = m.to_bytes();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.contains("\"created\": \"2025-01-02T03:04:05Z\""),
            "{text}"
        );
        assert!(text.contains("\"kind\": \"etcd-snapshot\""), "{text}");
        assert!(!text.contains("expires_at"));
        let back = Manifest::parse(&bytes, BackupKind::EtcdSnapshot, &m.name).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn rejects_wrong_version_name_and_garbage() {
        let m = sample();
        let mut v: serde_json::Value = serde_json::from_slice(&m.to_bytes()).unwrap();
        v["format_version"] = 3.into();
        let err = Manifest::parse(v.to_string().as_bytes(), m.kind, &m.name).unwrap_err();
        assert!(err.to_string().contains("upgrade"), "{err}");

        let other = BackupName::new("b2").unwrap();
        let err = Manifest::parse(&m.to_bytes(), m.kind, &other).unwrap_err();
        assert!(matches!(err, StorageError::CorruptManifest { .. }));

        let err = Manifest::parse(b"{not json", m.kind, &m.name).unwrap_err();
        assert!(err.to_string().contains("not valid JSON"), "{err}");

        let mut v: serde_json::Value = serde_json::from_slice(&m.to_bytes()).unwrap();
        v["artifacts"][0]["name"] = "../../x".into();
        let err = Manifest::parse(v.to_string().as_bytes(), m.kind, &m.name).unwrap_err();
        assert!(matches!(err, StorageError::CorruptManifest { .. }), "{err}");
    }

    #[test]
    fn encrypted_artifacts_are_recorded_with_version_2_and_older_manifests_read_as_plain() {
        let plain = sample();
        assert!(!plain.is_encrypted());
        assert!(
            !String::from_utf8(plain.to_bytes())
                .unwrap()
                .contains("encryption")
        );

        let mut m = sample();
        let fp = Fingerprint::try_from("0123456789abcdef".to_string()).unwrap();
        m.artifacts[0].encryption = Some(ArtifactEncryption {
            scheme: EncryptionScheme::Age,
            recipients: vec![fp.clone()],
        });
        m.format_version = Manifest::format_for(&m.artifacts);
        assert_eq!(m.format_version, ENCRYPTED_FORMAT_VERSION);
        let text = String::from_utf8(m.to_bytes()).unwrap();
        assert!(text.contains("\"scheme\": \"age\""), "{text}");
        assert!(text.contains("\"0123456789abcdef\""), "{text}");
        let back = Manifest::parse(&m.to_bytes(), m.kind, &m.name).unwrap();
        assert_eq!(back, m);
        assert!(back.is_encrypted());
        assert_eq!(back.recipients(), vec![fp]);

        // An encrypted artifact in a version-1 manifest, an unknown scheme, a malformed or
        // empty recipient list: each is a corrupt manifest, never a guess.
        let mut v: serde_json::Value = serde_json::from_slice(&m.to_bytes()).unwrap();
        v["format_version"] = 1.into();
        assert!(Manifest::parse(v.to_string().as_bytes(), m.kind, &m.name).is_err());
        for (field, value) in [
            ("scheme", serde_json::json!("rot13")),
            ("recipients", serde_json::json!(["XYZ"])),
            ("recipients", serde_json::json!([])),
        ] {
            let mut v: serde_json::Value = serde_json::from_slice(&m.to_bytes()).unwrap();
            v["artifacts"][0]["encryption"][field] = value;
            let err = Manifest::parse(v.to_string().as_bytes(), m.kind, &m.name).unwrap_err();
            assert!(matches!(err, StorageError::CorruptManifest { .. }), "{err}");
        }
    }
}
