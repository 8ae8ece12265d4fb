//! Where backups are stored: a mirror of Velero's `BackupStorageLocation` spec.
//!
//! Keeping the same fields as Velero (and KKP's `ClusterBackupStorageLocation`, which wraps it)
//! means a location can be handed to Velero unchanged by the in-cluster engine and interpreted
//! identically by our storage crate in direct mode.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::duration::GoDuration;
use crate::location_options::{OptionNotAllowed, check_options};

/// Providers whose bucket naming we know; others (plugins) are accepted as-is.
pub const KNOWN_PROVIDERS: &[&str] = &["aws", "gcp", "azure", "file", "memory"];

/// Why a storage location is invalid. Each variant names the field and the bad value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    /// No provider given.
    #[error("storage location provider is empty: set it to one of {}", KNOWN_PROVIDERS.join(", "))]
    EmptyProvider,
    /// Provider with characters no plugin name contains.
    #[error(
        "storage location provider {provider:?} is invalid: use a plugin name such as \"aws\" or \"velero.io/aws\" (lowercase letters, digits, '-', '.', '/')"
    )]
    InvalidProvider {
        /// The rejected provider.
        provider: String,
    },
    /// No bucket given.
    #[error(
        "storage location bucket is empty: set objectStorage.bucket to the bucket (or directory for \"file\") name"
    )]
    EmptyBucket,
    /// A bucket containing `/` or whitespace (a prefix belongs in `prefix`).
    #[error(
        "storage location bucket {bucket:?} is invalid: it must be a bare bucket name without '/' or spaces; put sub-paths in prefix"
    )]
    InvalidBucket {
        /// The rejected bucket.
        bucket: String,
    },
    /// A `file` location whose bucket is not a usable absolute directory.
    #[error(
        "storage location directory {directory:?} is invalid: {reason}; for provider \"file\" set objectStorage.bucket to an absolute directory like /var/lib/backups"
    )]
    InvalidDirectory {
        /// The rejected directory.
        directory: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A prefix that escapes its directory or is absolute.
    #[error(
        "storage location prefix {prefix:?} is invalid: {reason}; use a relative path like \"project/cluster\""
    )]
    InvalidPrefix {
        /// The rejected prefix.
        prefix: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// Credential reference with an empty secret name or key.
    #[error(
        "storage location credential {field} is empty: set both the secret name and the key inside the secret"
    )]
    InvalidCredential {
        /// `name` or `key`.
        field: &'static str,
    },
    /// A CA bundle that does not look like PEM.
    #[error(
        "storage location caCert is not a PEM bundle: it must contain \"-----BEGIN CERTIFICATE-----\""
    )]
    InvalidCaBundle,
    /// A zero-length config key.
    #[error("storage location config has an empty key (value {value:?})")]
    EmptyConfigKey {
        /// The value stored under the empty key.
        value: String,
    },
    /// A config key outside the provider's allow-list (see [`crate::location_options`]).
    #[error("storage location {0}")]
    OptionNotAllowed(#[from] OptionNotAllowed),
}

/// Velero's `accessMode`: whether backups may be written and deleted through this location.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub enum AccessMode {
    /// Restores only: used when a second cluster reads another's backups (migration).
    ReadOnly,
    /// The default.
    #[default]
    ReadWrite,
}

impl AccessMode {
    /// Whether writing (backups, deletions) is allowed.
    pub fn is_writable(&self) -> bool {
        matches!(self, AccessMode::ReadWrite)
    }
}

/// A key in a Kubernetes Secret holding the provider credentials (Velero's `credential`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct CredentialRef {
    /// Secret name.
    pub name: String,
    /// Key within the secret.
    pub key: String,
}

/// A storage location spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageLocationSpec {
    /// Object store provider: "aws", "gcp", "azure", "file", or a plugin name.
    pub provider: String,
    /// Bucket (or root directory for "file").
    pub bucket: String,
    /// Path inside the bucket under which everything is written, e.g. `<project>/<cluster>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Provider-specific settings (region, s3Url, s3ForcePathStyle, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    /// Where the credentials are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<CredentialRef>,
    /// PEM CA bundle for endpoints with private certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<Vec<u8>>,
    /// Read-only or read-write.
    #[serde(default)]
    pub access_mode: AccessMode,
    /// How often availability is checked; `0s` disables checks, `None` uses the server default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_frequency: Option<GoDuration>,
}

impl StorageLocationSpec {
    /// A read-write location with only the required fields set.
    pub fn new(provider: impl Into<String>, bucket: impl Into<String>) -> Self {
        StorageLocationSpec {
            provider: provider.into(),
            bucket: bucket.into(),
            prefix: None,
            config: BTreeMap::new(),
            credential: None,
            ca_cert: None,
            access_mode: AccessMode::ReadWrite,
            validation_frequency: None,
        }
    }

    /// Checks everything that can be checked without talking to the store, so a typo is
    /// reported when the object is created rather than at 2 a.m. when the first backup runs.
    pub fn validate(&self) -> Result<(), LocationError> {
        if self.provider.trim().is_empty() {
            return Err(LocationError::EmptyProvider);
        }
        if !self.provider.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | '/' | '_')
        }) {
            return Err(LocationError::InvalidProvider {
                provider: self.provider.clone(),
            });
        }
        if self.bucket.trim().is_empty() {
            return Err(LocationError::EmptyBucket);
        }
        if self.provider == FILE_PROVIDER {
            validate_directory(&self.bucket)?;
        } else if self.bucket.contains('/') || self.bucket.chars().any(char::is_whitespace) {
            return Err(LocationError::InvalidBucket {
                bucket: self.bucket.clone(),
            });
        }
        if let Some(prefix) = &self.prefix {
            validate_prefix(prefix)?;
        }
        if let Some(cred) = &self.credential {
            if cred.name.trim().is_empty() {
                return Err(LocationError::InvalidCredential { field: "name" });
            }
            if cred.key.trim().is_empty() {
                return Err(LocationError::InvalidCredential { field: "key" });
            }
        }
        if let Some(ca) = &self.ca_cert
            && !ca
                .windows(b"-----BEGIN CERTIFICATE-----".len())
                .any(|w| w == b"-----BEGIN CERTIFICATE-----")
        {
            return Err(LocationError::InvalidCaBundle);
        }
        if let Some(v) = self.config.get("") {
            return Err(LocationError::EmptyConfigKey { value: v.clone() });
        }
        check_options(&self.provider, &self.config)?;
        Ok(())
    }
}

/// The provider whose "bucket" is a local directory.
pub const FILE_PROVIDER: &str = "file";

/// A `file` location's bucket: an absolute directory with no `.`/`..` segments, so it means
/// the same directory wherever the controller runs.
fn validate_directory(dir: &str) -> Result<(), LocationError> {
    let bad = |reason| {
        Err(LocationError::InvalidDirectory {
            directory: dir.to_string(),
            reason,
        })
    };
    if !dir.starts_with('/') {
        return bad("it must be an absolute path");
    }
    if dir.chars().any(|c| c.is_control()) {
        return bad("it must not contain control characters");
    }
    if dir.split('/').any(|seg| seg == "." || seg == "..") {
        return bad("it must not contain '.' or '..' segments");
    }
    Ok(())
}

/// Validates a prefix: relative, no `..` or `.` segments, no empty segments, no backslashes.
///
/// The prefix is the isolation boundary between clusters sharing a bucket (KKP uses
/// `<projectID>/<clusterID>`), so anything that could climb out of it is refused.
pub fn validate_prefix(prefix: &str) -> Result<(), LocationError> {
    let bad = |reason| {
        Err(LocationError::InvalidPrefix {
            prefix: prefix.to_string(),
            reason,
        })
    };
    if prefix.starts_with('/') {
        return bad("it must not start with '/'");
    }
    if prefix.contains('\\') {
        return bad("it must not contain '\\'");
    }
    if prefix.chars().any(|c| c.is_control()) {
        return bad("it must not contain control characters");
    }
    let trimmed = prefix.strip_suffix('/').unwrap_or(prefix);
    if trimmed.is_empty() {
        return if prefix.is_empty() {
            Ok(())
        } else {
            bad("it is only '/'")
        };
    }
    for seg in trimmed.split('/') {
        match seg {
            "" => return bad("it must not contain empty segments ('//')"),
            ".." => return bad("it must not contain '..'"),
            "." => return bad("it must not contain '.' segments"),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> StorageLocationSpec {
        let mut s = StorageLocationSpec::new("aws", "backups");
        s.prefix = Some("p1/c1".into());
        s
    }

    #[test]
    fn valid_location() {
        ok().validate().unwrap();
        assert_eq!(ok().access_mode, AccessMode::ReadWrite);
        assert!(ok().access_mode.is_writable());
        assert!(!AccessMode::ReadOnly.is_writable());
    }

    #[test]
    fn empty_bucket_and_provider() {
        let mut s = ok();
        s.bucket = " ".into();
        assert_eq!(s.validate(), Err(LocationError::EmptyBucket));
        let mut s = ok();
        s.provider = String::new();
        assert_eq!(s.validate(), Err(LocationError::EmptyProvider));
        let mut s = ok();
        s.provider = "AWS S3".into();
        let e = s.validate().unwrap_err();
        assert!(matches!(e, LocationError::InvalidProvider { .. }));
        assert!(e.to_string().contains("AWS S3"));
    }

    #[test]
    fn a_file_location_is_an_absolute_directory() {
        let mut s = StorageLocationSpec::new("file", "/var/lib/backups");
        s.validate().unwrap();
        for bad in ["backups", "/var/../etc", "./x"] {
            s.bucket = bad.into();
            let e = s.validate().unwrap_err();
            assert!(matches!(e, LocationError::InvalidDirectory { .. }), "{bad}");
            assert!(e.to_string().contains("/var/lib/backups"), "{e}");
        }
    }

    #[test]
    fn bucket_with_slash() {
        let mut s = ok();
        s.bucket = "b/sub".into();
        let e = s.validate().unwrap_err();
        assert!(matches!(e, LocationError::InvalidBucket { .. }));
        assert!(e.to_string().contains("b/sub"));
    }

    #[test]
    fn bad_prefixes() {
        for p in ["/abs", "a/../b", "..", "a//b", "./a", "a\\b", "/"] {
            let e = validate_prefix(p).unwrap_err();
            assert!(matches!(e, LocationError::InvalidPrefix { .. }), "{p}");
            assert!(e.to_string().contains(&format!("{p:?}")), "{e}");
        }
        for p in ["", "a", "a/b/", "proj-1/cluster.x", "a..b"] {
            validate_prefix(p).unwrap();
        }
    }

    #[test]
    fn credential_and_ca() {
        let mut s = ok();
        s.credential = Some(CredentialRef {
            name: "cloud".into(),
            key: String::new(),
        });
        assert_eq!(
            s.validate(),
            Err(LocationError::InvalidCredential { field: "key" })
        );
        let mut s = ok();
        s.ca_cert = Some(b"hello".to_vec());
        assert_eq!(s.validate(), Err(LocationError::InvalidCaBundle));
        s.ca_cert = Some(b"-----BEGIN CERTIFICATE-----\nabc\n-----END CERTIFICATE-----\n".to_vec());
        s.validate().unwrap();
        s.config.insert(String::new(), "x".into());
        assert!(matches!(
            s.validate(),
            Err(LocationError::EmptyConfigKey { .. })
        ));
    }

    #[test]
    fn serde_velero_shape() {
        let json = r#"{"provider":"aws","bucket":"b","prefix":"p","config":{"region":"eu-west-1"},
            "credential":{"name":"cloud-credentials","key":"cloud"},"accessMode":"ReadOnly",
            "validationFrequency":"1m"}"#;
        let s: StorageLocationSpec = serde_json::from_str(json).unwrap();
        assert_eq!(s.access_mode, AccessMode::ReadOnly);
        assert_eq!(s.config["region"], "eu-west-1");
        assert_eq!(s.validation_frequency.unwrap().0.as_secs(), 60);
        let back = serde_json::to_value(&s).unwrap();
        assert_eq!(back["validationFrequency"], "1m0s");
        let d: StorageLocationSpec =
            serde_json::from_str(r#"{"provider":"file","bucket":"x"}"#).unwrap();
        assert_eq!(d.access_mode, AccessMode::ReadWrite);
    }
}
