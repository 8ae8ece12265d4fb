//! Streaming upload with bounded memory, hashing while streaming.
//!
//! Memory is bounded by `(parts_in_flight + 1) × part_size`: one part being filled plus the parts
//! being sent. Nothing ever holds a whole artifact. Data smaller than one part goes up in a single
//! put; larger data uses the store's multipart upload, which is aborted on any error so no parts
//! are left behind where the store lets us clean up.

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::error::{Result, StorageError};

/// Tuning for uploads. Memory use is about `(max_parts_in_flight + 1) × part_size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadOptions {
    /// Size of each multipart part, and the threshold below which a single put is used.
    /// S3 requires at least 5 MiB for all parts but the last.
    pub part_size: usize,
    /// How many parts may be uploading at once.
    pub max_parts_in_flight: usize,
}

impl Default for UploadOptions {
    /// 8 MiB parts, 4 in flight: ~40 MiB peak, enough to saturate a local S3 server.
    fn default() -> Self {
        Self {
            part_size: 8 * 1024 * 1024,
            max_parts_in_flight: 4,
        }
    }
}

impl UploadOptions {
    /// Clamps nonsense values (zero parts, parts below S3's 5 MiB minimum) to usable ones.
    pub(crate) fn normalised(self) -> Self {
        Self {
            part_size: self.part_size.max(5 * 1024 * 1024),
            max_parts_in_flight: self.max_parts_in_flight.max(1),
        }
    }
}

/// Size and SHA-256 of what was uploaded.
pub(crate) struct Uploaded {
    pub size: u64,
    pub sha256: String,
}

/// A source of bytes to upload: either a reader or a stream of chunks.
pub(crate) enum Source<'a> {
    Reader(&'a mut (dyn AsyncRead + Unpin + Send)),
    Stream(&'a mut (dyn Stream<Item = std::io::Result<Bytes>> + Unpin + Send)),
}

impl Source<'_> {
    /// Reads up to `limit` bytes into `buf` (which may already hold some); returns false at EOF.
    pub(crate) async fn fill(
        &mut self,
        buf: &mut BytesMut,
        limit: usize,
        carry: &mut Option<Bytes>,
    ) -> std::io::Result<bool> {
        while buf.len() < limit {
            match self {
                Source::Reader(reader) => {
                    // `read_buf` writes straight into the part buffer: no intermediate copy.
                    if reader.read_buf(buf).await? == 0 {
                        return Ok(false);
                    }
                }
                Source::Stream(stream) => {
                    let chunk = match carry.take() {
                        Some(c) => c,
                        None => match stream.next().await {
                            Some(chunk) => chunk?,
                            None => return Ok(false),
                        },
                    };
                    let room = limit - buf.len();
                    if chunk.len() > room {
                        buf.extend_from_slice(&chunk[..room]);
                        *carry = Some(chunk.slice(room..));
                    } else {
                        buf.extend_from_slice(&chunk);
                    }
                }
            }
        }
        Ok(true)
    }
}

/// Uploads everything from `source` to `path`, returning its size and SHA-256.
pub(crate) async fn upload(
    store: &dyn ObjectStore,
    path: &Path,
    mut source: Source<'_>,
    options: UploadOptions,
    what: &str,
) -> Result<Uploaded> {
    let options = options.normalised();
    let read_err = |source| StorageError::Io {
        context: format!("reading data for {what} failed"),
        source,
    };
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let mut carry = None;

    let mut first = BytesMut::with_capacity(options.part_size);
    let more = source
        .fill(&mut first, options.part_size, &mut carry)
        .await
        .map_err(read_err)?;
    hasher.update(&first);
    size += first.len() as u64;
    let first = first.freeze();

    // Peek for one more byte to tell "exactly one part" from "more to come".
    let mut next = BytesMut::with_capacity(if more { options.part_size } else { 0 });
    let more = more
        && source
            .fill(&mut next, 1, &mut carry)
            .await
            .map_err(read_err)?;
    if !more {
        store
            .put(path, PutPayload::from(first))
            .await
            .map_err(|e| StorageError::store("put", path, e))?;
        return Ok(Uploaded {
            size,
            sha256: hex::encode(hasher.finalize()),
        });
    }

    let upload = store
        .put_multipart(path)
        .await
        .map_err(|e| StorageError::store("start multipart upload", path, e))?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, options.part_size);
    writer.put(first);
    let result: Result<()> = async {
        loop {
            let more = source
                .fill(&mut next, options.part_size, &mut carry)
                .await
                .map_err(read_err)?;
            if !next.is_empty() {
                hasher.update(&next);
                size += next.len() as u64;
                writer
                    .wait_for_capacity(options.max_parts_in_flight)
                    .await
                    .map_err(|e| StorageError::store("upload part", path, e))?;
                let part = std::mem::replace(&mut next, BytesMut::with_capacity(options.part_size));
                writer.put(part.freeze());
            }
            if !more {
                return Ok(());
            }
        }
    }
    .await;
    match result {
        Ok(()) => {
            // `finish` aborts the upload itself if completing fails.
            writer
                .finish()
                .await
                .map_err(|e| StorageError::store("complete multipart upload", path, e))?;
        }
        Err(e) => {
            if let Err(abort) = writer.abort().await {
                tracing::warn!(%path, error = %abort, "could not abort multipart upload");
            }
            return Err(e);
        }
    }
    Ok(Uploaded {
        size,
        sha256: hex::encode(hasher.finalize()),
    })
}
