//! Validated names: the only way to put a user-supplied string into an object path.
//!
//! Every object key a [`Repository`](crate::Repository) touches is assembled from these types, so
//! a scope cannot be escaped by construction: a name can never contain `/`, be `.` or `..`, carry
//! percent-encoded tricks (`%2e%2e`), control characters or anything outside a small DNS-1123-like
//! charset. Validation happens once, in [`FromStr`]/[`TryFrom`], including when a manifest is
//! deserialised, so a tampered manifest cannot smuggle a path either.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::StorageError;

/// Longest accepted name: the DNS-1123 subdomain limit, which every Kubernetes object name obeys.
pub const MAX_NAME_LEN: usize = 253;

/// What a validated name is used for; shown in error messages so the user knows which input to fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// A project segment of a scope (`<prefix>/<project>/...`).
    Project,
    /// A cluster segment of a scope (`<prefix>/<project>/<cluster>/`).
    Cluster,
    /// A backup (directory under `backups/` or `etcd-snapshots/`).
    Backup,
    /// One file of a backup.
    Artifact,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameKind::Project => "project",
            NameKind::Cluster => "cluster",
            NameKind::Backup => "backup",
            NameKind::Artifact => "artifact",
        })
    }
}

/// Checks `value` against the shared naming rule; returns the reason it fails, if any.
fn check(value: &str) -> Result<(), &'static str> {
    if value.is_empty() {
        return Err("it is empty");
    }
    if value.len() > MAX_NAME_LEN {
        return Err("it is longer than 253 characters");
    }
    if value.chars().any(|c| c.is_control()) {
        return Err("it contains control characters");
    }
    if value.contains('/') || value.contains('\\') {
        return Err("it contains a path separator");
    }
    if value.contains('%') {
        return Err("it contains '%' (percent-encoded names are not accepted)");
    }
    if value.contains("..") {
        return Err("it contains '..'");
    }
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
    {
        return Err("it contains characters other than letters, digits, '-', '.' and '_'");
    }
    let first = value.chars().next().unwrap_or('-');
    let last = value.chars().last().unwrap_or('-');
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return Err("it must start and end with a letter or digit");
    }
    Ok(())
}

macro_rules! validated_name {
    ($(#[$doc:meta])* $ty:ident, $kind:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $ty(String);

        impl $ty {
            /// Validates `value`; see the module docs for the rule.
            pub fn new(value: impl Into<String>) -> Result<Self, StorageError> {
                let value = value.into();
                match check(&value) {
                    Ok(()) => Ok(Self(value)),
                    Err(reason) => Err(StorageError::InvalidName {
                        kind: $kind,
                        value: value.escape_debug().to_string(),
                        reason,
                    }),
                }
            }

            /// The name as a string slice (always a single, safe path segment).
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $ty {
            type Err = StorageError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $ty {
            type Error = StorageError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $ty {
            type Error = StorageError;
            fn try_from(s: &str) -> Result<Self, Self::Error> {
                Self::new(s)
            }
        }

        impl From<$ty> for String {
            fn from(n: $ty) -> String {
                n.0
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

validated_name!(
    /// A project or cluster identifier used as one segment of a repository scope.
    ScopeSegment,
    NameKind::Project
);
validated_name!(
    /// The name of one backup (or etcd snapshot) inside a scope.
    BackupName,
    NameKind::Backup
);
validated_name!(
    /// The file name of one artifact inside a backup.
    ArtifactName,
    NameKind::Artifact
);

impl ScopeSegment {
    /// Like [`ScopeSegment::new`] but reports the segment as a cluster id in errors.
    pub fn cluster(value: impl Into<String>) -> Result<Self, StorageError> {
        Self::new(value).map_err(|e| match e {
            StorageError::InvalidName { value, reason, .. } => StorageError::InvalidName {
                kind: NameKind::Cluster,
                value,
                reason,
            },
            other => other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_kubernetes_and_velero_names() {
        for ok in [
            "a",
            "daily-20250101120000",
            "etcd-snapshot.db.zst",
            "velero-backup.json",
            "my_backup.tar.gz",
            "Proj1",
        ] {
            assert!(BackupName::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_path_tricks() {
        for bad in [
            "", ".", "..", "a/b", "/abs", "%2e%2e", "a%2fb", "..a", "a..b", "a\\b", "a\nb",
            "a\u{0}b", "-lead", "trail-", ".hidden", "sp ace", "ünï",
        ] {
            let err = BackupName::new(bad).unwrap_err();
            assert!(
                matches!(
                    err,
                    StorageError::InvalidName {
                        kind: NameKind::Backup,
                        ..
                    }
                ),
                "{bad}: {err}"
            );
            let msg = err.to_string();
            assert!(msg.contains("backup name"), "{msg}");
            assert!(
                msg.contains("letters, digits"),
                "message must say what is allowed: {msg}"
            );
        }
        assert!(BackupName::new("x".repeat(254)).is_err());
    }

    #[test]
    fn deserialisation_validates() {
        let bad: Result<ArtifactName, _> = serde_json::from_str("\"../../etc/passwd\"");
        assert!(bad.is_err());
        let ok: ArtifactName = serde_json::from_str("\"data.tar.gz\"").unwrap();
        assert_eq!(ok.as_str(), "data.tar.gz");
    }

    #[test]
    fn cluster_segment_reports_cluster() {
        let err = ScopeSegment::cluster("..").unwrap_err();
        assert!(err.to_string().contains("cluster"), "{err}");
    }
}
