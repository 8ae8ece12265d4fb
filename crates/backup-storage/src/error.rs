//! The crate's one error type. Every message names the object involved and what to do about it.

use crate::names::NameKind;

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The location URL's scheme is not one we can open.
    #[error(
        "unsupported storage URL scheme `{scheme}` in `{url}`; use one of: file:///<dir>, memory://, s3://<bucket>/<prefix>, gs://<bucket>/<prefix>, az://<container>/<prefix>"
    )]
    UnsupportedScheme {
        /// The URL as given.
        url: String,
        /// Its scheme.
        scheme: String,
    },

    /// The location URL could not be parsed or lacks a required part.
    #[error("invalid storage URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A location spec names a provider we cannot open.
    #[error(
        "unsupported storage provider `{provider}`; use aws (S3 and compatible), gcp, azure or file"
    )]
    UnsupportedProvider {
        /// The provider as given.
        provider: String,
    },

    /// A provider credentials file that cannot be used. The reason never quotes the file.
    #[error("invalid {provider} credentials: {reason}")]
    InvalidCredentials {
        /// The provider whose format was expected.
        provider: String,
        /// What is missing or malformed.
        reason: String,
    },

    /// A write or delete through a location whose access mode is `ReadOnly`.
    #[error(
        "cannot {operation}: the storage location is ReadOnly (restores and listing only); set accessMode: ReadWrite to write to it"
    )]
    ReadOnly {
        /// What was refused, e.g. `start backup nightly`.
        operation: String,
    },

    /// An option in the location's config is unknown or has a bad value.
    #[error("invalid storage option `{key}`: {reason}")]
    InvalidOption {
        /// The option key as given.
        key: String,
        /// What is wrong and what is accepted.
        reason: String,
    },

    /// The object store client could not be configured (missing credentials, bad endpoint, ...).
    #[error(
        "could not configure storage for `{url}`: {source}; check the location's URL, options and credentials"
    )]
    Configure {
        /// The URL being opened.
        url: String,
        /// The underlying builder error.
        #[source]
        source: object_store::Error,
    },

    /// A local directory for a `file://` location could not be created.
    #[error(
        "could not create local storage directory `{path}`: {source}; check the path and its permissions"
    )]
    CreateDir {
        /// The directory.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A name (project, cluster, backup, artifact) is not acceptable as a path segment.
    #[error(
        "invalid {kind} name `{value}`: {reason}; use 1-253 letters, digits, '-', '.' or '_', starting and ending with a letter or digit"
    )]
    InvalidName {
        /// Which kind of name.
        kind: NameKind,
        /// The rejected value (escaped for display).
        value: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// An artifact name collides with a file the repository manages itself.
    #[error(
        "artifact name `{name}` is reserved for the backup manifest; choose another artifact name"
    )]
    ReservedArtifactName {
        /// The reserved name.
        name: String,
    },

    /// The same artifact was written twice within one backup.
    #[error(
        "artifact `{artifact}` was already written to backup `{backup}`; each artifact name may be used once"
    )]
    DuplicateArtifact {
        /// The backup.
        backup: String,
        /// The artifact.
        artifact: String,
    },

    /// A backup with this name is already committed.
    #[error(
        "backup `{name}` already exists in `{kind_dir}`; choose another name or delete the existing backup first"
    )]
    AlreadyExists {
        /// The storage directory of the backup's kind.
        kind_dir: &'static str,
        /// The backup name.
        name: String,
    },

    /// No committed backup (manifest) exists under this name.
    #[error(
        "backup `{name}` not found in `{kind_dir}` (no manifest); list backups to see which exist"
    )]
    BackupNotFound {
        /// The storage directory of the backup's kind.
        kind_dir: &'static str,
        /// The backup name.
        name: String,
    },

    /// The manifest does not list the requested artifact.
    #[error(
        "backup `{backup}` has no artifact `{artifact}` in its manifest; its artifacts are: {available}"
    )]
    UnknownArtifact {
        /// The backup.
        backup: String,
        /// The requested artifact.
        artifact: String,
        /// Comma-separated artifact names from the manifest.
        available: String,
    },

    /// The manifest lists an artifact that is not in storage.
    #[error(
        "backup `{backup}` is damaged: artifact `{artifact}` listed in its manifest is missing from storage; restore it from another copy or delete the backup"
    )]
    MissingArtifact {
        /// The backup.
        backup: String,
        /// The missing artifact.
        artifact: String,
    },

    /// The artifact's content does not match its recorded SHA-256.
    #[error(
        "backup `{backup}` is corrupt: artifact `{artifact}` has SHA-256 {actual}, its manifest records {expected}; do not restore from it"
    )]
    ChecksumMismatch {
        /// The backup.
        backup: String,
        /// The artifact.
        artifact: String,
        /// SHA-256 recorded in the manifest (hex).
        expected: String,
        /// SHA-256 of what was read (hex).
        actual: String,
    },

    /// The artifact is shorter than recorded.
    #[error(
        "backup `{backup}` is corrupt: artifact `{artifact}` is truncated ({actual} of {expected} bytes); do not restore from it"
    )]
    Truncated {
        /// The backup.
        backup: String,
        /// The artifact.
        artifact: String,
        /// Size recorded in the manifest.
        expected: u64,
        /// Bytes actually read.
        actual: u64,
    },

    /// The artifact is longer than recorded.
    #[error(
        "backup `{backup}` is corrupt: artifact `{artifact}` is longer than the {expected} bytes its manifest records; do not restore from it"
    )]
    Oversized {
        /// The backup.
        backup: String,
        /// The artifact.
        artifact: String,
        /// Size recorded in the manifest.
        expected: u64,
    },

    /// A backup of this name written by Velero (no manifest of ours) is in the location.
    #[error(
        "a backup named `{name}` written by Velero is already in this location (velero-backup.json without our manifest); choose another name, it would be overwritten"
    )]
    VeleroBackupExists {
        /// The name.
        name: String,
    },

    /// The store refused to delete a backup: an immutable (write-once, object-lock) bucket
    /// under retention, or credentials without delete permission.
    #[error(
        "storage refused to delete backup `{backup}` ({}); if the bucket is immutable (object lock / WORM), the backup can be deleted once its retention period ends, otherwise grant delete permission",
        crate::remote::summary(.source)
    )]
    DeletionRefused {
        /// The backup.
        backup: String,
        /// The store's refusal.
        #[source]
        source: object_store::Error,
    },

    /// A manifest exists but cannot be used.
    #[error(
        "manifest of backup `{backup}` is unreadable: {reason}; the backup cannot be trusted — delete it or restore the manifest"
    )]
    CorruptManifest {
        /// The backup (directory) name.
        backup: String,
        /// Why it is unusable.
        reason: String,
    },

    /// A string given as an age recipient is not an X25519 recipient (`age1…`).
    #[error(
        "invalid age recipient `{value}`{}: {reason}",
        line.map(|l| format!(" on line {l}")).unwrap_or_default()
    )]
    InvalidRecipient {
        /// The rejected text (shortened; a secret key is never echoed).
        value: String,
        /// Its line in a recipients file, if it came from one.
        line: Option<usize>,
        /// What is wrong and what is expected.
        reason: String,
    },

    /// Encryption was asked for without a single recipient.
    #[error(
        "encryption needs at least one age recipient (`age1…`); the recipients given are empty"
    )]
    NoRecipients,

    /// An age identity file cannot be used. The reason never quotes the file.
    #[error("invalid age identity file: {reason}")]
    InvalidIdentity {
        /// What is wrong (with a line number, not the line).
        reason: String,
    },

    /// An encrypted artifact was read without any identity.
    #[error(
        "backup `{backup}` is encrypted with age: artifact `{artifact}` needs the identity (secret key) of recipient fingerprint(s) {recipients}; give an identity file holding one of them"
    )]
    IdentityRequired {
        /// The backup.
        backup: String,
        /// The artifact.
        artifact: String,
        /// Fingerprints of the recipients that can read it, comma-separated.
        recipients: String,
    },

    /// An encrypted artifact was read with identities none of which is one of its recipients.
    #[error(
        "backup `{backup}` is encrypted with age to recipient fingerprint(s) {recipients}, but the identities given have fingerprint(s) {offered}: artifact `{artifact}` cannot be read; give an identity file holding the key of one of its recipients"
    )]
    NoMatchingIdentity {
        /// The backup.
        backup: String,
        /// The artifact.
        artifact: String,
        /// Fingerprints of the recipients that can read it, comma-separated.
        recipients: String,
        /// Fingerprints of the identities given, comma-separated.
        offered: String,
    },

    /// An encrypted artifact failed age's authentication or is not an age file: it was altered
    /// or truncated after it was written.
    #[error(
        "backup `{backup}` is corrupt: artifact `{artifact}` failed to decrypt: {reason}; it was altered or truncated after it was written, do not restore from it"
    )]
    Decrypt {
        /// The backup.
        backup: String,
        /// The artifact.
        artifact: String,
        /// What age reported.
        reason: String,
    },

    /// Setting up encryption failed (age refused the recipients).
    #[error("cannot encrypt {what}: {reason}")]
    Encrypt {
        /// The artifact being written.
        what: String,
        /// What age reported.
        reason: String,
    },

    /// No credentials: none were given, and the cloud's instance metadata, asked last, did
    /// not answer (as off a cloud VM). Said once, with what to set, instead of the metadata
    /// client's retries.
    #[error(
        "storage {operation} of `{path}` failed: no credentials for this location. Give them as \
         the options access_key_id and secret_access_key (a StorageLocation's credential \
         Secret), or the environment variables AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (GCS: \
         service_account_path; Azure: access_key); instance metadata, tried last, did not answer"
    )]
    NoCredentials {
        /// What we were doing.
        operation: &'static str,
        /// The object path.
        path: String,
    },

    /// A location `config` key outside the provider's allow-list.
    #[error("{0}")]
    OptionNotAllowed(#[from] backup_core::location_options::OptionNotAllowed),

    /// A project's location without a credential Secret, where the platform lends no identity.
    #[error(
        "this {provider} location names no credential Secret: set spec.credential to a Secret \
         of this namespace holding the provider's credentials file (Velero's format); the \
         controller's own identity (environment, instance metadata, workload identity) is not \
         lent to this namespace"
    )]
    CredentialRequired {
        /// The provider.
        provider: String,
    },

    /// A project's `file` location where the platform set no root for them.
    #[error(
        "file locations are disabled here: the platform has not set a directory for them \
         (backup-controller --file-root, chart value controller.fileRoot); use an object store"
    )]
    FileLocationsDisabled,

    /// A project's `file` location outside the platform's root.
    #[error(
        "directory `{directory}` is outside the root for file locations `{root}`: {how}; put \
         the location under {root}"
    )]
    OutsideFileRoot {
        /// The location's directory.
        directory: String,
        /// The platform's root.
        root: String,
        /// How it leaves the root.
        how: String,
    },

    /// The platform's root for file locations is unusable.
    #[error("the root for file locations `{root}` cannot be used: {reason}")]
    FileRoot {
        /// The root.
        root: String,
        /// Why.
        reason: String,
    },

    /// An address a project named (or one its names resolved to) that projects may not reach.
    #[error(
        "{what}: {denied}; name an address outside the link-local and metadata ranges and the \
         platform's own networks"
    )]
    AddressNotAllowed {
        /// Which field or operation named it.
        what: String,
        /// The refusal.
        denied: backup_net::AddressDenied,
    },

    /// Moving backups out of the old layout cannot go on (see [`Repository::migrate_legacy_layout`](crate::Repository::migrate_legacy_layout)).
    #[error("cannot move backups into the velero/ folder: {0}")]
    Layout(String),

    /// A storage operation failed. The message summarises the store's answer (see
    /// [`crate::remote`]); the whole chain is the source.
    #[error("storage {operation} of `{path}` failed: {}", crate::remote::summary(.source))]
    Store {
        /// What we were doing (`put`, `get`, `list`, ...).
        operation: &'static str,
        /// The object path (relative to the store's root).
        path: String,
        /// The object_store error.
        #[source]
        source: object_store::Error,
    },

    /// Reading the data to upload, or writing downloaded data, failed.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl StorageError {
    /// For a refusal of what a project asked for (see [`crate::tenancy`]), the condition reason
    /// that names it: `OptionNotAllowed`, `CredentialRequired`, `FileLocationsDisabled`,
    /// `OutsideFileRoot` or `AddressNotAllowed`.
    pub fn refusal_reason(&self) -> Option<&'static str> {
        Some(match self {
            StorageError::OptionNotAllowed(_) => "OptionNotAllowed",
            StorageError::CredentialRequired { .. } => "CredentialRequired",
            StorageError::FileLocationsDisabled => "FileLocationsDisabled",
            StorageError::OutsideFileRoot { .. } => "OutsideFileRoot",
            StorageError::AddressNotAllowed { .. } => "AddressNotAllowed",
            _ => return None,
        })
    }

    /// Wraps an object_store error with the operation and path it came from.
    pub(crate) fn store(
        operation: &'static str,
        path: &object_store::path::Path,
        source: object_store::Error,
    ) -> Self {
        if let Some(denied) = backup_net::denied_in(&source) {
            return StorageError::AddressNotAllowed {
                what: format!("storage {operation} of `{path}`"),
                denied: denied.clone(),
            };
        }
        if is_metadata_fallback(&source.to_string()) {
            return StorageError::NoCredentials {
                operation,
                path: path.to_string(),
            };
        }
        StorageError::Store {
            operation,
            path: path.to_string(),
            source,
        }
    }
}

/// Whether an error came from the credential chain's last resort, the cloud's instance
/// metadata service: when it is all that was left, no credentials were given.
pub(crate) fn is_metadata_fallback(text: &str) -> bool {
    text.contains("169.254.169.254")
}

/// Result alias for this crate.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;
