//! Writing one backup: artifacts first, each checksummed while streaming; the manifest last.
//!
//! Dropping a writer without [`BackupWriter::commit`] leaves uploaded artifacts behind but no
//! manifest, so the backup is never listed; [`BackupWriter::abort`] or
//! [`Repository::delete`](crate::Repository::delete) removes the leftovers.

use std::collections::BTreeMap;
use std::collections::BTreeSet;

use bytes::Bytes;
use futures::Stream;
use jiff::Timestamp;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use tokio::io::AsyncRead;

use crate::error::{Result, StorageError};
use crate::manifest::{ArtifactRecord, MANIFEST_FILE, Manifest};
use crate::names::{ArtifactName, BackupName};
use crate::repository::Repository;
use crate::upload::{self, Source};
use backup_core::BackupKind;

/// An uncommitted backup. Create with [`Repository::begin_backup`].
#[derive(Debug)]
pub struct BackupWriter {
    repo: Repository,
    kind: BackupKind,
    name: BackupName,
    artifacts: Vec<ArtifactRecord>,
    /// Names already attempted, including failed ones, so `abort` can clean them all.
    attempted: BTreeSet<ArtifactName>,
}

impl BackupWriter {
    pub(crate) fn new(repo: Repository, kind: BackupKind, name: BackupName) -> Self {
        Self {
            repo,
            kind,
            name,
            artifacts: Vec::new(),
            attempted: BTreeSet::new(),
        }
    }

    /// The backup being written.
    pub fn name(&self) -> &BackupName {
        &self.name
    }

    /// Artifacts written so far.
    pub fn artifacts(&self) -> &[ArtifactRecord] {
        &self.artifacts
    }

    fn claim(&mut self, artifact: &ArtifactName) -> Result<()> {
        if artifact.as_str() == MANIFEST_FILE {
            return Err(StorageError::ReservedArtifactName {
                name: artifact.to_string(),
            });
        }
        if !self.attempted.insert(artifact.clone()) {
            return Err(StorageError::DuplicateArtifact {
                backup: self.name.to_string(),
                artifact: artifact.to_string(),
            });
        }
        Ok(())
    }

    async fn put(&mut self, artifact: &ArtifactName, source: Source<'_>) -> Result<ArtifactRecord> {
        self.claim(artifact)?;
        let path = Repository::artifact_path(self.kind, &self.name, artifact);
        let what = format!("artifact `{artifact}` of backup `{}`", self.name);
        let store = self.repo.store().as_ref();
        let options = self.repo.upload_options();
        // With encryption, what is uploaded, sized and hashed is the age ciphertext.
        let (uploaded, encryption) = match self.repo.encryption() {
            None => (
                upload::upload(store, &path, source, options, &what).await?,
                None,
            ),
            Some(encryption) => {
                let mut ciphertext = encryption.encrypt(source, &what)?;
                let uploaded = upload::upload(
                    store,
                    &path,
                    Source::Stream(&mut ciphertext),
                    options,
                    &what,
                )
                .await?;
                (uploaded, Some(encryption.record()))
            }
        };
        let record = ArtifactRecord {
            name: artifact.clone(),
            size: uploaded.size,
            sha256: uploaded.sha256,
            encryption,
        };
        self.artifacts.push(record.clone());
        Ok(record)
    }

    /// Streams an artifact from a reader, in parts, hashing as it goes (and encrypting first
    /// when the repository has [`Repository::with_encryption`]; so do the other `put_*`).
    pub async fn put_artifact<R: AsyncRead + Unpin + Send>(
        &mut self,
        artifact: &ArtifactName,
        mut reader: R,
    ) -> Result<ArtifactRecord> {
        self.put(artifact, Source::Reader(&mut reader)).await
    }

    /// Streams an artifact from a stream of chunks, in parts, hashing as it goes.
    pub async fn put_artifact_stream<S>(
        &mut self,
        artifact: &ArtifactName,
        mut stream: S,
    ) -> Result<ArtifactRecord>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Unpin + Send,
    {
        self.put(artifact, Source::Stream(&mut stream)).await
    }

    /// Writes a small artifact held in memory.
    pub async fn put_artifact_bytes(
        &mut self,
        artifact: &ArtifactName,
        data: Bytes,
    ) -> Result<ArtifactRecord> {
        let mut once = futures::stream::iter([Ok(data)]);
        self.put(artifact, Source::Stream(&mut once)).await
    }

    /// Writes the manifest, making the backup visible. Create-only where the store supports
    /// it, so of two writers racing on one name exactly one commits. If the manifest cannot be
    /// written for any other reason, the artifacts are removed (best effort), so no artifact
    /// (in particular no `velero-backup.json`, which Velero would import) outlives a failed
    /// commit.
    pub async fn commit(
        self,
        attributes: BTreeMap<String, String>,
        expires_at: Option<Timestamp>,
    ) -> Result<Manifest> {
        match self.write_manifest(attributes, expires_at).await {
            Ok(manifest) => Ok(manifest),
            Err(e @ StorageError::AlreadyExists { .. }) => Err(e),
            Err(e) => {
                if let Err(cleanup) = self.abort().await {
                    tracing::warn!(error = %cleanup, "removing the artifacts of a failed commit failed");
                }
                Err(e)
            }
        }
    }

    async fn write_manifest(
        &self,
        attributes: BTreeMap<String, String>,
        expires_at: Option<Timestamp>,
    ) -> Result<Manifest> {
        let manifest = Manifest {
            format_version: Manifest::format_for(&self.artifacts),
            name: self.name.clone(),
            kind: self.kind,
            created: Timestamp::now(),
            expires_at,
            attributes,
            artifacts: self.artifacts.clone(),
        };
        let path = Repository::manifest_path(self.kind, &self.name);
        let store = self.repo.store();
        let payload = PutPayload::from(manifest.to_bytes());
        let exists = || StorageError::AlreadyExists {
            kind_dir: self.kind.dir(),
            name: self.name.to_string(),
        };
        let create = PutOptions::from(PutMode::Create);
        match store.put_opts(&path, payload.clone(), create).await {
            Ok(_) => Ok(manifest),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Err(exists()),
            Err(
                object_store::Error::NotImplemented { .. }
                | object_store::Error::NotSupported { .. },
            ) => {
                // Store without conditional writes: check, then write (best effort).
                match store.head(&path).await {
                    Ok(_) => return Err(exists()),
                    Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(StorageError::store("head", &path, e)),
                }
                store
                    .put(&path, payload)
                    .await
                    .map_err(|e| StorageError::store("put", &path, e))?;
                Ok(manifest)
            }
            Err(e) => Err(StorageError::store("put", &path, e)),
        }
    }

    /// Deletes every artifact this writer wrote or attempted; the backup never becomes visible.
    pub async fn abort(self) -> Result<()> {
        for artifact in &self.attempted {
            let path = Repository::artifact_path(self.kind, &self.name, artifact);
            match self.repo.store().delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(StorageError::store("delete", &path, e)),
            }
        }
        Ok(())
    }
}
