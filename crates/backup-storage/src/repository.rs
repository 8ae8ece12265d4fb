//! The repository: a (scoped) object store holding backups as `<kind>/<name>/<artifact>` plus a
//! manifest written last.
//!
//! Scoping wraps the store in object_store's `PrefixStore`, and every key below that is built
//! from validated names, so a scoped repository cannot address anything outside its prefix.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use jiff::Timestamp;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::crypt::{Encryption, Identities};
use crate::error::{Result, StorageError};
use crate::location::Location;
use crate::manifest::{ArtifactRecord, MANIFEST_FILE, Manifest};
use crate::names::{ArtifactName, BackupName, ScopeSegment};
use crate::tenancy::Tenancy;
use crate::upload::UploadOptions;
use crate::verify::{ArtifactStream, Verified};
use crate::writer::BackupWriter;
use backup_core::BackupKind;
use backup_core::StorageLocationSpec;
use backup_core::retention::{RetentionCandidate, RetentionPolicy, plan_deletions};

/// How many manifests are fetched concurrently when listing.
const LIST_CONCURRENCY: usize = 8;

/// A backup repository over any object store, optionally confined to a project/cluster scope.
///
/// Cheap to clone; clones share the underlying store and its connection pool.
#[derive(Debug, Clone)]
pub struct Repository {
    store: Arc<dyn ObjectStore>,
    upload: UploadOptions,
    writable: bool,
    encryption: Option<Arc<Encryption>>,
    identities: Option<Arc<Identities>>,
}

/// What a retention sweep did: the backups it deleted, and those the store refused to delete
/// (an immutable bucket under retention), reported instead of pretended away.
#[derive(Debug, Default)]
pub struct Sweep {
    /// Deleted, oldest first.
    pub deleted: Vec<BackupName>,
    /// Planned for deletion but refused by the store, with the refusal.
    pub refused: Vec<(BackupName, StorageError)>,
}

/// The result of listing: committed backups plus the ones whose manifest could not be used.
#[derive(Debug, Default)]
pub struct BackupListing {
    /// Committed backups with a valid manifest, oldest first.
    pub manifests: Vec<Manifest>,
    /// Backups whose manifest exists but is unreadable, with the reason; never silently dropped.
    pub problems: Vec<(BackupName, StorageError)>,
}

impl Repository {
    /// Wraps a store (already confined to the location's base prefix, if any).
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store,
            upload: UploadOptions::default(),
            writable: true,
            encryption: None,
            identities: None,
        }
    }

    /// Opens the location a project declared (a Velero-style spec) under the platform's
    /// `tenancy` (see [`crate::tenancy`]): only allowed config keys, authenticated only by
    /// `credentials` (the provider's credentials file from the location's Secret) unless the
    /// platform lends its identity, every connection's address checked, a `file` location only
    /// under the platform's root. So one project's location cannot borrow the files, identity
    /// or network position of the process that opens it. A `ReadOnly` spec gives a repository
    /// that refuses to start backups or delete ([`StorageError::ReadOnly`]).
    pub fn open_spec(
        spec: &StorageLocationSpec,
        credentials: Option<&[u8]>,
        tenancy: &Tenancy,
    ) -> Result<Self> {
        let store = crate::tenancy::open_store(spec, credentials, tenancy)?;
        Ok(Self {
            writable: spec.access_mode.is_writable(),
            ..Self::new(store)
        })
    }

    /// This repository as a ReadOnly location gives it.
    #[cfg(test)]
    pub(crate) fn read_only(self) -> Self {
        Self {
            writable: false,
            ..self
        }
    }

    /// Whether backups may be written and deleted through this repository.
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    pub(crate) fn check_writable(&self, operation: impl FnOnce() -> String) -> Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(StorageError::ReadOnly {
                operation: operation(),
            })
        }
    }

    /// Opens a location URL (`file:///dir`, `memory://`, `s3://bucket/prefix`, `gs://...`,
    /// `az://...`) with its config options; see [`Location`].
    pub fn open(url: &str, options: &BTreeMap<String, String>) -> Result<Self> {
        Ok(Self::new(Location::parse(url)?.open(options)?))
    }

    /// Sets part size and concurrency for artifact uploads (memory ≈ (in flight + 1) × part).
    pub fn with_upload_options(mut self, upload: UploadOptions) -> Self {
        self.upload = upload;
        self
    }

    /// The upload tuning in effect.
    pub fn upload_options(&self) -> UploadOptions {
        self.upload
    }

    /// Encrypts every artifact written from now on (by any [`BackupWriter`] this repository
    /// or its scoped clones start) to these age recipients, while it streams. Manifests stay
    /// readable: they record which artifacts are encrypted, and to which recipients'
    /// fingerprints. See [`crate::crypt`].
    pub fn with_encryption(mut self, encryption: Encryption) -> Self {
        self.encryption = Some(Arc::new(encryption));
        self
    }

    /// Decrypts encrypted artifacts with these age identities when they are read
    /// ([`Repository::open_artifact`], [`Repository::download_artifact_to`]). Unencrypted
    /// artifacts read as before.
    pub fn with_identities(mut self, identities: Identities) -> Self {
        self.identities = Some(Arc::new(identities));
        self
    }

    /// The encryption new artifacts get, if any.
    pub fn encryption(&self) -> Option<&Encryption> {
        self.encryption.as_deref()
    }

    /// The identities encrypted artifacts are read with, if any.
    pub fn identities(&self) -> Option<&Identities> {
        self.identities.as_deref()
    }

    /// Fails unless every encrypted artifact of `manifest` can be decrypted with this
    /// repository's identities ([`StorageError::IdentityRequired`] or
    /// [`StorageError::NoMatchingIdentity`], naming the recipients' fingerprints). Reads
    /// nothing: call it before any work whose result would be wasted, e.g. before a restore
    /// writes to a cluster or a data directory.
    pub fn ensure_readable(&self, manifest: &Manifest) -> Result<()> {
        for record in &manifest.artifacts {
            if let Some(encryption) = &record.encryption {
                Identities::check(
                    self.identities(),
                    encryption,
                    manifest.name.as_str(),
                    record.name.as_str(),
                )?;
            }
        }
        Ok(())
    }

    /// A repository confined to `<this scope>/<project>/<cluster>/`; it can neither list, read
    /// nor delete anything outside it.
    pub fn scoped(&self, project: &ScopeSegment, cluster: &ScopeSegment) -> Self {
        let prefix = Path::from_iter([project.as_str(), cluster.as_str()]);
        Self {
            store: Arc::new(PrefixStore::new(Arc::clone(&self.store), prefix)),
            ..self.clone()
        }
    }

    /// [`Repository::scoped`] from unvalidated strings, e.g. straight from a CR.
    pub fn scoped_str(&self, project: &str, cluster: &str) -> Result<Self> {
        Ok(self.scoped(
            &ScopeSegment::new(project)?,
            &ScopeSegment::cluster(cluster)?,
        ))
    }

    /// The (scoped) store, for callers that need to place extra objects beside ours.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The folder of `kind` in this scope ([`BackupKind::dir`] may have several segments).
    pub fn kind_root(kind: BackupKind) -> Path {
        Path::from(kind.dir())
    }

    pub(crate) fn backup_dir(kind: BackupKind, name: &BackupName) -> Path {
        Self::kind_root(kind).join(name.as_str())
    }

    pub(crate) fn manifest_path(kind: BackupKind, name: &BackupName) -> Path {
        Self::backup_dir(kind, name).join(MANIFEST_FILE)
    }

    pub(crate) fn artifact_path(
        kind: BackupKind,
        name: &BackupName,
        artifact: &ArtifactName,
    ) -> Path {
        Self::backup_dir(kind, name).join(artifact.as_str())
    }

    /// This repository as restore records are written through it: unencrypted, since every
    /// reader of the location lists restores, keys or not; and writable even when the location
    /// is ReadOnly, which protects backups, not the record of a restore from it.
    pub fn for_restore_records(&self) -> Self {
        Repository {
            encryption: None,
            writable: true,
            ..self.clone()
        }
    }

    /// Starts a backup; fails with [`StorageError::AlreadyExists`] if one is committed under
    /// this name, and with [`StorageError::VeleroBackupExists`] if Velero wrote one there (a
    /// `velero-backup.json` without our manifest). Nothing is visible to readers until
    /// [`BackupWriter::commit`].
    pub async fn begin_backup(&self, kind: BackupKind, name: &BackupName) -> Result<BackupWriter> {
        self.check_writable(|| format!("write backup {name}"))?;
        let exists = |path: &Path| {
            let path = path.clone();
            async move {
                match self.store.head(&path).await {
                    Ok(_) => Ok(true),
                    Err(object_store::Error::NotFound { .. }) => Ok(false),
                    Err(e) => Err(StorageError::store("head", &path, e)),
                }
            }
        };
        if exists(&Self::manifest_path(kind, name)).await? {
            return Err(StorageError::AlreadyExists {
                kind_dir: kind.dir(),
                name: name.to_string(),
            });
        }
        // A backup Velero wrote into a shared location has no manifest of ours; writing over it
        // would destroy it.
        if self.written_by_velero(kind, name).await? {
            return Err(StorageError::VeleroBackupExists {
                name: name.to_string(),
            });
        }
        Ok(BackupWriter::new(self.clone(), kind, name.clone()))
    }

    /// Opens a file of a backup Velero wrote (see [`Repository::written_by_velero`]) as it
    /// is stored. Velero records no checksum, so nothing is verified here: the reader's own
    /// format checks (gzip's CRC, tar's structure, JSON) are all there is. Backups of ours are
    /// opened with [`Repository::open_artifact`], which verifies against the manifest.
    pub async fn open_velero_file(
        &self,
        kind: BackupKind,
        name: &BackupName,
        file: &ArtifactName,
    ) -> Result<futures::stream::BoxStream<'static, Result<bytes::Bytes>>> {
        let path = Self::artifact_path(kind, name, file);
        match self.store.get(&path).await {
            Ok(result) => {
                let shown = path.to_string();
                Ok(result
                    .into_stream()
                    .map(move |chunk| {
                        chunk.map_err(|e| {
                            StorageError::store("read", &Path::from(shown.as_str()), e)
                        })
                    })
                    .boxed())
            }
            Err(object_store::Error::NotFound { .. }) => Err(StorageError::MissingArtifact {
                backup: name.to_string(),
                artifact: file.to_string(),
            }),
            Err(e) => Err(StorageError::store("get", &path, e)),
        }
    }

    /// Whether `name` holds Velero's `velero-backup.json` (a backup Velero wrote, or one of
    /// ours, which has it too: ask after finding no manifest).
    pub async fn written_by_velero(&self, kind: BackupKind, name: &BackupName) -> Result<bool> {
        let velero_file = ArtifactName::new(crate::gc::VELERO_BACKUP_FILE)?;
        let path = Self::artifact_path(kind, name, &velero_file);
        match self.store.head(&path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(StorageError::store("head", &path, e)),
        }
    }

    /// Reads and checks a committed backup's manifest.
    pub async fn get_manifest(&self, kind: BackupKind, name: &BackupName) -> Result<Manifest> {
        let path = Self::manifest_path(kind, name);
        let bytes = match self.store.get(&path).await {
            Ok(result) => result
                .bytes()
                .await
                .map_err(|e| StorageError::store("read", &path, e))?,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(StorageError::BackupNotFound {
                    kind_dir: kind.dir(),
                    name: name.to_string(),
                });
            }
            Err(e) => return Err(StorageError::store("get", &path, e)),
        };
        Manifest::parse(&bytes, kind, name)
    }

    /// Lists committed backups of `kind`. Directories without a manifest (uploads in progress
    /// or abandoned) are invisible; unreadable manifests are reported in
    /// [`BackupListing::problems`].
    pub async fn list(&self, kind: BackupKind) -> Result<BackupListing> {
        let root = Self::kind_root(kind);
        // Directories whose name is not a valid backup name were not written by us: skipped.
        // A directory without a manifest (an upload in progress or abandoned, or Velero's) is
        // found missing by the manifest read below and skipped there.
        let names: Vec<BackupName> = crate::listing::subdirectories(self.store.as_ref(), &root)
            .await
            .map_err(|e| StorageError::store("list", &root, e))?
            .iter()
            .filter_map(|dir| BackupName::new(dir.filename()?).ok())
            .collect();

        let results: Vec<(BackupName, Result<Manifest>)> = futures::stream::iter(names)
            .map(|name| async move {
                let result = self.get_manifest(kind, &name).await;
                (name, result)
            })
            .buffer_unordered(LIST_CONCURRENCY)
            .collect()
            .await;

        let mut listing = BackupListing::default();
        for (name, result) in results {
            match result {
                Ok(manifest) => listing.manifests.push(manifest),
                // Deleted between list and get: it is gone, which is not a problem.
                Err(StorageError::BackupNotFound { .. }) => {}
                Err(e @ StorageError::CorruptManifest { .. }) => listing.problems.push((name, e)),
                Err(e) => return Err(e),
            }
        }
        listing
            .manifests
            .sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
        listing.problems.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(listing)
    }

    /// Opens an artifact of a committed backup as a stream that verifies size and SHA-256 and,
    /// when the artifact is encrypted, decrypts it with this repository's identities. Without
    /// a matching identity it fails before fetching anything; a wrong key or an altered file
    /// fails before the first plaintext byte (see [`crate::crypt`]).
    pub async fn open_artifact(
        &self,
        kind: BackupKind,
        name: &BackupName,
        artifact: &ArtifactName,
    ) -> Result<ArtifactStream> {
        let manifest = self.get_manifest(kind, name).await?;
        self.open_stored(kind, &manifest, artifact, true).await
    }

    /// Opens an artifact's stored bytes exactly as stored (ciphertext when encrypted),
    /// verified against the manifest's size and SHA-256. Needs no keys.
    pub async fn open_stored_artifact(
        &self,
        kind: BackupKind,
        name: &BackupName,
        artifact: &ArtifactName,
    ) -> Result<ArtifactStream> {
        let manifest = self.get_manifest(kind, name).await?;
        self.open_stored(kind, &manifest, artifact, false).await
    }

    /// [`Repository::open_stored_artifact`] for a manifest already read.
    pub async fn open_stored_in(
        &self,
        manifest: &Manifest,
        artifact: &ArtifactName,
    ) -> Result<ArtifactStream> {
        self.open_stored(manifest.kind, manifest, artifact, false)
            .await
    }

    /// The verified stored bytes, decrypted when `decrypt` and the artifact is encrypted.
    async fn open_stored(
        &self,
        kind: BackupKind,
        manifest: &Manifest,
        artifact: &ArtifactName,
        decrypt: bool,
    ) -> Result<ArtifactStream> {
        let record =
            manifest
                .artifact(artifact)
                .cloned()
                .ok_or_else(|| StorageError::UnknownArtifact {
                    backup: manifest.name.to_string(),
                    artifact: artifact.to_string(),
                    available: manifest
                        .artifacts
                        .iter()
                        .map(|a| a.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
        let decrypt_with = match (&record.encryption, decrypt) {
            (Some(encryption), true) => {
                // Before the GET: a missing key is known without reading a byte.
                Identities::check(
                    self.identities(),
                    encryption,
                    manifest.name.as_str(),
                    artifact.as_str(),
                )?;
                Some((encryption.clone(), self.identities.clone()))
            }
            _ => None,
        };
        let path = Self::artifact_path(kind, &manifest.name, artifact);
        let verified = match self.store.get(&path).await {
            Ok(result) => Verified::new(
                result.into_stream(),
                manifest.name.to_string(),
                record.clone(),
                path.to_string(),
            ),
            Err(object_store::Error::NotFound { .. }) => {
                return Err(StorageError::MissingArtifact {
                    backup: manifest.name.to_string(),
                    artifact: artifact.to_string(),
                });
            }
            Err(e) => return Err(StorageError::store("get", &path, e)),
        };
        match decrypt_with {
            Some((encryption, Some(identities))) => {
                let plain = identities
                    .decrypt(
                        Box::pin(verified),
                        &encryption,
                        manifest.name.as_str(),
                        artifact.as_str(),
                    )
                    .await?;
                Ok(ArtifactStream::decrypted(record, plain))
            }
            _ => Ok(ArtifactStream::stored(verified)),
        }
    }

    /// Streams a verified (and, when encrypted, decrypted) artifact into `out`. On error, what
    /// was written so far must be discarded by the caller (write to a temporary file and rename
    /// on success).
    pub async fn download_artifact_to<W: AsyncWrite + Unpin + ?Sized>(
        &self,
        kind: BackupKind,
        name: &BackupName,
        artifact: &ArtifactName,
        out: &mut W,
    ) -> Result<ArtifactRecord> {
        let mut stream = self.open_artifact(kind, name, artifact).await?;
        let record = stream.record().clone();
        let write_err = |source| StorageError::Io {
            context: format!("writing artifact `{artifact}` of backup `{name}` failed"),
            source,
        };
        while let Some(chunk) = stream.next().await {
            out.write_all(&chunk?).await.map_err(write_err)?;
        }
        out.flush().await.map_err(write_err)?;
        Ok(record)
    }

    /// Reads every artifact of a backup and checks size and SHA-256 of the stored bytes; the
    /// first problem is returned ([`StorageError::MissingArtifact`],
    /// [`StorageError::ChecksumMismatch`], ...). Encrypted artifacts are checked as stored, so
    /// no keys are needed.
    pub async fn verify(&self, kind: BackupKind, name: &BackupName) -> Result<Manifest> {
        let manifest = self.get_manifest(kind, name).await?;
        for record in &manifest.artifacts {
            let mut stream = self
                .open_stored(kind, &manifest, &record.name, false)
                .await?;
            while let Some(chunk) = stream.next().await {
                chunk?;
            }
        }
        Ok(manifest)
    }

    /// Deletes a backup: manifest first (so it stops being listed at once), then everything
    /// in its directory. Idempotent; also cleans up uncommitted leftovers of that name. A store
    /// that refuses deletion is [`StorageError::DeletionRefused`].
    pub async fn delete(&self, kind: BackupKind, name: &BackupName) -> Result<()> {
        self.check_writable(|| format!("delete backup {name}"))?;
        let refused = |source| StorageError::DeletionRefused {
            backup: name.to_string(),
            source,
        };
        let manifest = Self::manifest_path(kind, name);
        match self.store.delete(&manifest).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e @ object_store::Error::PermissionDenied { .. }) => return Err(refused(e)),
            Err(e) => return Err(StorageError::store("delete", &manifest, e)),
        }
        let dir = Self::backup_dir(kind, name);
        let objects = crate::listing::tree(self.store.as_ref(), &dir)
            .await
            .map_err(|e| StorageError::store("list", &dir, e))?;
        let locations =
            futures::stream::iter(objects.into_iter().map(|meta| Ok(meta.location))).boxed();
        self.store
            .delete_stream(locations)
            .try_for_each(|_| async { Ok(()) })
            .await
            .or_else(|e| match e {
                object_store::Error::NotFound { .. } => Ok(()),
                e @ object_store::Error::PermissionDenied { .. } => Err(refused(e)),
                e => Err(StorageError::store("delete", &dir, e)),
            })
    }

    /// Applies a retention policy to every committed backup of `kind`; see
    /// [`Repository::sweep_where`].
    pub async fn sweep(
        &self,
        kind: BackupKind,
        policy: &RetentionPolicy,
        now: Timestamp,
    ) -> Result<Sweep> {
        self.sweep_where(kind, policy, now, |_| true).await
    }

    /// Applies a retention policy to the committed backups of `kind` that `candidate` selects
    /// (e.g. one schedule's): asks backup-core which to delete and deletes them. Unreadable
    /// manifests are never swept; a manifest whose recorded phase cannot be read stops the
    /// sweep with an error. A deletion the store refuses is reported in [`Sweep::refused`]
    /// and the sweep goes on; any other failure stops it.
    pub async fn sweep_where(
        &self,
        kind: BackupKind,
        policy: &RetentionPolicy,
        now: Timestamp,
        candidate: impl Fn(&Manifest) -> bool,
    ) -> Result<Sweep> {
        let listing = self.list(kind).await?;
        let ours: Vec<&Manifest> = listing.manifests.iter().filter(|m| candidate(m)).collect();
        let mut candidates = Vec::with_capacity(ours.len());
        for m in &ours {
            candidates.push(RetentionCandidate {
                name: m.name.to_string(),
                created: m.created,
                // The recorded phase decides: a PartiallyFailed backup is no restore point, so
                // it must not count toward keep-N nor shield the last good one.
                succeeded: m.succeeded()?,
                expires_at: m.expires_at,
            });
        }
        let mut sweep = Sweep::default();
        for doomed in plan_deletions(&candidates, policy, now) {
            // Only names we offered can come back; anything else is ignored, never deleted.
            let Some(manifest) = ours.iter().find(|m| m.name.as_str() == doomed) else {
                tracing::warn!(name = %doomed, "retention planned a backup that was not offered; ignored");
                continue;
            };
            match self.delete(kind, &manifest.name).await {
                Ok(()) => sweep.deleted.push(manifest.name.clone()),
                Err(e @ StorageError::DeletionRefused { .. }) => {
                    sweep.refused.push((manifest.name.clone(), e));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(sweep)
    }
}
