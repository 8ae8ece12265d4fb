//! Reading artifacts back with their size and SHA-256 checked against the manifest.
//!
//! The stream holds back the most recent chunk until the end of the object, so a wrong checksum
//! or size is delivered as an error *instead of* the final chunk: a consumer that stops at the
//! first error never sees a complete-looking but wrong artifact. An encrypted artifact is
//! decrypted on top of that check ([`crate::crypt`]): age's last chunk is only ever decrypted
//! after the stored bytes matched, so the same holds for its plaintext.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use futures::stream::BoxStream;
use sha2::{Digest, Sha256};

use crate::error::StorageError;
use crate::manifest::ArtifactRecord;

/// A stream of an artifact's bytes that fails with [`StorageError::ChecksumMismatch`],
/// [`StorageError::Truncated`] or [`StorageError::Oversized`] when the stored content does not
/// match its manifest record, and, when it is decrypted, with [`StorageError::Decrypt`] when
/// age's authentication fails.
pub struct ArtifactStream {
    record: ArtifactRecord,
    decrypted: bool,
    inner: BoxStream<'static, Result<Bytes, StorageError>>,
}

impl std::fmt::Debug for ArtifactStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactStream")
            .field("record", &self.record)
            .field("decrypted", &self.decrypted)
            .finish_non_exhaustive()
    }
}

impl ArtifactStream {
    /// The stored bytes, verified.
    pub(crate) fn stored(verified: Verified) -> Self {
        Self {
            record: verified.record.clone(),
            decrypted: false,
            inner: Box::pin(verified),
        }
    }

    /// Plaintext decrypted from verified stored bytes.
    pub(crate) fn decrypted(
        record: ArtifactRecord,
        inner: BoxStream<'static, Result<Bytes, StorageError>>,
    ) -> Self {
        Self {
            record,
            decrypted: true,
            inner,
        }
    }

    /// The manifest record this stream is checked against (size and SHA-256 of the stored
    /// bytes, which are ciphertext when the artifact is encrypted).
    pub fn record(&self) -> &ArtifactRecord {
        &self.record
    }

    /// Whether this stream yields plaintext decrypted from an encrypted artifact.
    pub fn is_decrypted(&self) -> bool {
        self.decrypted
    }
}

impl Stream for ArtifactStream {
    type Item = Result<Bytes, StorageError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().inner.as_mut().poll_next(cx)
    }
}

/// The stored bytes of an artifact, checked against its record (see the module docs).
pub(crate) struct Verified {
    inner: Option<BoxStream<'static, object_store::Result<Bytes>>>,
    held: Option<Bytes>,
    hasher: Sha256,
    read: u64,
    backup: String,
    record: ArtifactRecord,
    path: String,
}

impl Verified {
    pub(crate) fn new(
        inner: BoxStream<'static, object_store::Result<Bytes>>,
        backup: String,
        record: ArtifactRecord,
        path: String,
    ) -> Self {
        Self {
            inner: Some(inner),
            held: None,
            hasher: Sha256::new(),
            read: 0,
            backup,
            record,
            path,
        }
    }

    fn finish(&mut self) -> Result<(), StorageError> {
        let backup = self.backup.clone();
        let artifact = self.record.name.to_string();
        if self.read < self.record.size {
            return Err(StorageError::Truncated {
                backup,
                artifact,
                expected: self.record.size,
                actual: self.read,
            });
        }
        let actual = hex::encode(std::mem::take(&mut self.hasher).finalize());
        if actual != self.record.sha256 {
            return Err(StorageError::ChecksumMismatch {
                backup,
                artifact,
                expected: self.record.sha256.clone(),
                actual,
            });
        }
        Ok(())
    }
}

impl Stream for Verified {
    type Item = Result<Bytes, StorageError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            let Some(inner) = this.inner.as_mut() else {
                return Poll::Ready(None);
            };
            match inner.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => {
                    this.inner = None;
                    let path = object_store::path::Path::from(this.path.as_str());
                    return Poll::Ready(Some(Err(StorageError::store("read", &path, e))));
                }
                Poll::Ready(Some(Ok(chunk))) => {
                    if chunk.is_empty() {
                        continue;
                    }
                    this.read += chunk.len() as u64;
                    if this.read > this.record.size {
                        this.inner = None;
                        return Poll::Ready(Some(Err(StorageError::Oversized {
                            backup: this.backup.clone(),
                            artifact: this.record.name.to_string(),
                            expected: this.record.size,
                        })));
                    }
                    this.hasher.update(&chunk);
                    if let Some(previous) = this.held.replace(chunk) {
                        return Poll::Ready(Some(Ok(previous)));
                    }
                }
                Poll::Ready(None) => {
                    this.inner = None;
                    return Poll::Ready(match this.finish() {
                        Ok(()) => this.held.take().map(Ok),
                        Err(e) => {
                            this.held = None;
                            Some(Err(e))
                        }
                    });
                }
            }
        }
    }
}
