//! Backup repositories over `object_store`.
//!
//! One abstraction for every backend (`file://`, `memory://`, `s3://`, `gs://`, `az://`), with
//! the guarantees backups need and plain object stores lack:
//!
//! - **Scoping by construction**: [`Repository::scoped`] confines a repository to
//!   `<prefix>/<project>/<cluster>/`, and every key is built from validated [`names`], so one
//!   cluster cannot read or delete another's backups.
//! - **Data first, manifest last** (as restic does): artifacts are streamed with their SHA-256,
//!   then a [`Manifest`] is written create-only. A backup exists exactly when its manifest does.
//! - **Verified reads**: [`ArtifactStream`] checks size and SHA-256 and fails instead of
//!   yielding the last chunk when they do not match.
//! - **Bounded memory**: uploads stream in parts ([`UploadOptions`]), never buffering an artifact.
//! - **Actionable availability**: [`Repository::probe`] says *why* a location is unusable.
//! - **Encryption at rest** (optional, [`crypt`]): with [`Repository::with_encryption`] every
//!   artifact is encrypted with age while it streams, before upload; with
//!   [`Repository::with_identities`] it reads back as plaintext. Manifests stay plaintext and
//!   record which artifacts are encrypted and to which recipient [`Fingerprint`]s.
//!
//! Storage layout under a cluster's scope: `<kind dir>/<backup>/<artifact>` and
//! `<kind dir>/<backup>/backup-manifest.json`, where the kind dir ([`BackupKind::dir`]) is
//! `velero/backups` or `velero/restores` (Velero's layout, so a Velero BSL whose prefix is the
//! scope's `velero` folder reads our backups and we read its), or `etcd-snapshots`, beside
//! `velero/` so that Velero's check of its prefix's top-level folders passes.

mod credentials;
pub mod crypt;
mod error;
mod gc;
mod layout;
pub mod listing;
mod location;
mod manifest;
pub mod names;
mod probe;
pub mod remote;
mod repository;
pub mod tenancy;
#[cfg(feature = "testing")]
pub mod testing;
mod upload;
mod verify;
#[cfg(feature = "testing")]
pub mod write_once;
mod writer;

pub use backup_core::BackupKind;
pub use credentials::{DEFAULT_AWS_PROFILE, credential_options};
pub use crypt::{Encryption, Fingerprint, Identities, Recipient};
pub use error::{Result, StorageError};
pub use gc::{Orphan, VELERO_BACKUP_FILE};
pub use layout::Migrated;
pub use location::{Backend, Location};
pub use manifest::{
    ArtifactEncryption, ArtifactRecord, ENCRYPTED_FORMAT_VERSION, EncryptionScheme, FORMAT_VERSION,
    MANIFEST_FILE, Manifest, PHASE_ATTRIBUTE,
};
pub use names::{ArtifactName, BackupName, NameKind, ScopeSegment};
pub use probe::Availability;
pub use repository::{BackupListing, Repository, Sweep};
pub use tenancy::Tenancy;
pub use upload::UploadOptions;
pub use verify::ArtifactStream;
pub use writer::BackupWriter;

/// Re-exported so callers can wrap stores (e.g. `LimitStore`) without a direct dependency.
pub use object_store;
