//! `StorageLocation`: where a project's backups go. The fields of Velero's
//! BackupStorageLocation (as KKP's ClusterBackupStorageLocation wraps them), plus provider
//! `file` for a local directory.
//!
//! The spec is kept as the user wrote it (text for durations and the CA bundle) and turned into
//! the validated [`backup_core::StorageLocationSpec`] by [`StorageLocationSpec::to_core`], so a
//! typo becomes a status condition naming the field instead of an object the controller cannot
//! read.

use std::collections::BTreeMap;

use backup_core::{AccessMode, CredentialRef, GoDuration};
use jiff::Timestamp;
use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::invalid::InvalidField;
use super::schema::optional_date_time;
use super::status::Condition;

/// How often a location is probed when it does not say (Velero's default is 1 minute).
pub const DEFAULT_VALIDATION_FREQUENCY: std::time::Duration = std::time::Duration::from_secs(60);

/// Where backups are stored (`spec`).
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    crates(kube_core = "::kube_core"),
    group = "backupfleet.dev",
    version = "v1alpha1",
    kind = "StorageLocation",
    plural = "storagelocations",
    shortname = "sloc",
    namespaced,
    status = "StorageLocationStatus",
    printcolumn = r#"{"name":"Provider","type":"string","jsonPath":".spec.provider"}"#,
    printcolumn = r#"{"name":"Bucket","type":"string","jsonPath":".spec.objectStorage.bucket"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.reason"}"#,
    printcolumn = r#"{"name":"Default","type":"boolean","jsonPath":".spec.default"}"#,
    printcolumn = r#"{"name":"Last Validated","type":"date","jsonPath":".status.lastValidationTime"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct StorageLocationSpec {
    /// Object store: `aws` (S3 and compatible), `gcp`, `azure`, or `file` (a directory on the
    /// controller's file system; `objectStorage.bucket` is its absolute path).
    pub provider: String,
    /// Bucket, optional prefix and CA bundle.
    pub object_storage: ObjectStorage,
    /// Provider settings, as in Velero: `region`, `s3Url`, `s3ForcePathStyle`,
    /// `insecureSkipTLSVerify`, `storageAccount`, ...
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    /// The Secret key (in this namespace) holding the provider's credentials file, in Velero's
    /// format (for `aws`: `[default]` with `aws_access_key_id` and `aws_secret_access_key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<CredentialRef>,
    /// `ReadWrite` (default) or `ReadOnly`: list and restore only, never write or delete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_mode: Option<AccessMode>,
    /// Used by backups of this namespace that name no location. At most one per namespace.
    #[serde(default)]
    pub default: bool,
    /// How often availability is checked, as a Go duration (`1m`, `30s`); `0s` disables it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_frequency: Option<String>,
    /// Encryption at rest with age: what is written here is encrypted to `recipients` before
    /// it leaves the controller; `identitySecret` lets restores read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<LocationEncryption>,
}

/// A location's encryption at rest.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocationEncryption {
    /// age recipients (`age1...`, as `age-keygen -y` prints) every backup written to this
    /// location is encrypted to; several allow key rotation and escrow.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<String>,
    /// The Secret key (in this namespace) holding an age identity file (as `age-keygen`
    /// writes it) whose keys decrypt this location's backups for restores. Without it, backups
    /// are written but only restorable with the key elsewhere (`backupctl --identity-file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_secret: Option<CredentialRef>,
}

impl LocationEncryption {
    /// The shape: recipients, an identity, or both. The recipients are age public keys; they
    /// are parsed where they are used (the controller opening the location, with storage's
    /// parser), so a bad key is reported there under `spec.encryption.recipients`.
    pub fn check_shape(&self) -> Result<(), InvalidField> {
        if self.recipients.is_empty() && self.identity_secret.is_none() {
            return Err(InvalidField::new(
                "spec.encryption",
                "set recipients (to encrypt what is written), identitySecret (to read what \
                 was encrypted), or both",
            ));
        }
        Ok(())
    }
}

/// Velero's `objectStorage`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStorage {
    /// Bucket (or container); for provider `file`, an absolute directory.
    pub bucket: String,
    /// Path inside the bucket; each project's clusters live under `<prefix>/<namespace>/<cluster>/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Base64-encoded PEM bundle for endpoints with private certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<String>,
}

/// Whether the last probe could write, read back and delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum LocationPhase {
    /// The last probe succeeded.
    Available,
    /// The last probe failed, or the spec cannot be used; see `reason` and `message`.
    Unavailable,
}

/// What the controller last found (`status`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageLocationStatus {
    /// `Available` or `Unavailable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<LocationPhase>,
    /// Why, as a CamelCase word: the probe's reason (`BucketMissing`, `AccessDenied`,
    /// `Unreachable`, ...) or a spec problem (`InvalidSpec`, `CredentialMissing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What was found and what to fix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the location was last probed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_date_time")]
    pub last_validation_time: Option<Timestamp>,
    /// The generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (the spec is usable) and `Available` (the last probe succeeded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl StorageLocationSpec {
    /// The validated core spec: every field checked, the CA bundle decoded, the frequency
    /// parsed. The error names the field and what to write instead.
    pub fn to_core(&self) -> Result<backup_core::StorageLocationSpec, InvalidField> {
        let mut core = backup_core::StorageLocationSpec::new(
            self.provider.clone(),
            self.object_storage.bucket.clone(),
        );
        core.prefix = self.object_storage.prefix.clone();
        core.config = self.config.clone();
        core.credential = self.credential.clone();
        core.access_mode = self.access_mode.unwrap_or_default();
        if let Some(ca) = &self.object_storage.ca_cert {
            core.ca_cert = Some(decode_base64(ca).map_err(|reason| {
                InvalidField::new(
                    "spec.objectStorage.caCert",
                    format!("{reason}; put the PEM bundle base64-encoded in one line"),
                )
            })?);
        }
        if let Some(text) = &self.validation_frequency {
            let parsed: GoDuration = text.parse().map_err(|e| {
                InvalidField::new("spec.validationFrequency", format!("{e}; e.g. 1m or 30s"))
            })?;
            core.validation_frequency = Some(parsed);
        }
        core.validate()
            .map_err(|e| InvalidField::new(location_field(&e), e.to_string()))?;
        if let Some(encryption) = &self.encryption {
            encryption.check_shape()?;
        }
        Ok(core)
    }
}

/// The field a core location error is about.
fn location_field(e: &backup_core::LocationError) -> &'static str {
    use backup_core::LocationError as E;
    match e {
        E::EmptyProvider | E::InvalidProvider { .. } => "spec.provider",
        E::EmptyBucket | E::InvalidBucket { .. } | E::InvalidDirectory { .. } => {
            "spec.objectStorage.bucket"
        }
        E::InvalidPrefix { .. } => "spec.objectStorage.prefix",
        E::InvalidCredential { .. } => "spec.credential",
        E::InvalidCaBundle => "spec.objectStorage.caCert",
        E::EmptyConfigKey { .. } | E::OptionNotAllowed(_) => "spec.config",
    }
}

/// Standard base64 with whitespace ignored (a pasted multi-line value), as Kubernetes
/// writes `[]byte`.
fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|e| format!("it is not base64 ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> StorageLocationSpec {
        serde_json::from_value(serde_json::json!({
            "provider": "aws",
            "objectStorage": {"bucket": "backups", "prefix": "fleet"},
            "config": {"region": "us-east-1", "s3Url": "http://127.0.0.1:9000"},
            "credential": {"name": "s3-creds", "key": "cloud"},
            "default": true,
            "validationFrequency": "1m"
        }))
        .unwrap()
    }

    #[test]
    fn encryption_needs_recipients_or_an_identity() {
        let with = |encryption: serde_json::Value| {
            let mut s = spec();
            s.encryption = Some(serde_json::from_value(encryption).unwrap());
            s
        };
        with(serde_json::json!({"recipients": ["age1..."]}))
            .to_core()
            .unwrap();
        with(serde_json::json!({"identitySecret": {"name": "k", "key": "id"}}))
            .to_core()
            .unwrap();
        let e = with(serde_json::json!({})).to_core().unwrap_err();
        assert_eq!(e.field, "spec.encryption", "{e}");
    }

    #[test]
    fn the_issue_example_converts_to_the_core_spec() {
        let core = spec().to_core().unwrap();
        assert_eq!(core.bucket, "backups");
        assert_eq!(core.prefix.as_deref(), Some("fleet"));
        assert_eq!(core.credential.unwrap().name, "s3-creds");
        assert_eq!(core.access_mode, AccessMode::ReadWrite);
        assert_eq!(core.validation_frequency.unwrap().0.as_secs(), 60);
    }

    #[test]
    fn each_bad_field_is_named_with_the_fix() {
        let mut s = spec();
        s.validation_frequency = Some("every minute".into());
        let e = s.to_core().unwrap_err();
        assert_eq!(e.field, "spec.validationFrequency");
        assert!(e.message.contains("1m"), "{e}");

        let mut s = spec();
        s.object_storage.prefix = Some("../other-project".into());
        assert_eq!(s.to_core().unwrap_err().field, "spec.objectStorage.prefix");

        let mut s = spec();
        s.object_storage.ca_cert = Some("not base64!".into());
        let e = s.to_core().unwrap_err();
        assert_eq!(e.field, "spec.objectStorage.caCert");
        assert!(e.message.contains("not base64"), "{e}");

        let mut s = spec();
        s.object_storage.ca_cert = Some("aGVsbG8=".into()); // "hello": base64, but no PEM
        assert_eq!(s.to_core().unwrap_err().field, "spec.objectStorage.caCert");
    }

    #[test]
    fn base64_decodes_what_kubernetes_writes() {
        let pem = "-----BEGIN CERTIFICATE-----\nabc\n-----END CERTIFICATE-----\n";
        let encoded =
            "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCmFiYwotLS0tLUVORCBDRVJUSUZJQ0FURS0tLS0tCg==";
        assert_eq!(decode_base64(encoded).unwrap(), pem.as_bytes());
        assert_eq!(decode_base64("aGVs\n bG8=").unwrap(), b"hello");
        assert!(decode_base64("a").is_err());
    }
}
