//! Mapping kube and storage failures onto the engine's error kinds, so callers know whether to
//! retry (unreachable apiserver, storage outage), fix credentials, or pick another name.

use backup_core::EngineError;
use backup_storage::StorageError;

/// Classifies a kube error met while doing `context` (the engines' one classifier).
pub fn engine_error(context: &str, e: kube::Error) -> EngineError {
    backup_kube::errors::engine_error(context, e)
}

/// Classifies a storage error.
pub fn storage_error(e: StorageError) -> EngineError {
    match e {
        StorageError::AlreadyExists { name, .. } | StorageError::VeleroBackupExists { name } => {
            EngineError::AlreadyExists {
                what: "backup",
                name,
            }
        }
        StorageError::BackupNotFound { name, .. } => EngineError::NotFound {
            what: "backup",
            name,
        },
        // Fixed by the caller, not by retrying: a bad name, or keys that do not fit.
        StorageError::InvalidName { .. }
        | StorageError::IdentityRequired { .. }
        | StorageError::NoMatchingIdentity { .. }
        | StorageError::InvalidIdentity { .. }
        | StorageError::InvalidRecipient { .. }
        | StorageError::NoRecipients
        | StorageError::NoCredentials { .. } => EngineError::Invalid(e.to_string()),
        StorageError::Store { .. } => EngineError::Unavailable {
            reason: e.to_string(),
        },
        e => EngineError::Other(e.to_string()),
    }
}
