//! Taking a snapshot: etcd's stream → trailer check → zstd → streaming upload → manifest last.
//!
//! Everything happens while the data flows: at any time we hold one etcd message (32 KiB in
//! etcd 3.4), the compressor's window and output buffer, and the storage upload's parts, so
//! memory does not grow with the database. The verified trailer is appended to the stored
//! stream only after it matched, which keeps the stored file byte-identical to what
//! `etcdctl snapshot save` writes (etcd's own restore checks it again).

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use backup_core::naming::{scheduled_backup_name, validate_dns1123_label};
use backup_core::retention::KeepCount;
use backup_storage::{ArtifactName, BackupKind, BackupName, Manifest, Repository, Sweep};
use bytes::Bytes;
use jiff::Timestamp;

use crate::connect::{self, EtcdConnection, MemberStatus, status_summary};
use crate::error::{EtcdError, Result};
use crate::prune::prune;
use crate::rpc::{self, SnapshotResponse};
use crate::trailing_hash::{TRAILER_LEN, TrailingHashVerifier, VerifiedSnapshot};
use crate::{SNAPSHOT_ARTIFACT, attributes};

/// Compressed output is handed to storage in pieces of about this size.
const FLUSH_BYTES: usize = 1024 * 1024;
/// Room for one flush plus the largest single write zstd makes, so the buffer never regrows.
const OUTPUT_CAPACITY: usize = FLUSH_BYTES + 256 * 1024;

/// zstd level used unless told otherwise: fast enough to keep up with etcd on one core.
pub const DEFAULT_COMPRESSION_LEVEL: i32 = 1;

/// How the stored backup is named, per KKP's `EtcdBackupConfig` rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// A one-shot backup is named exactly after its configuration.
    OneShot,
    /// A scheduled backup is `<config>-<YYYYMMDDhhmmss>` (UTC) of its start time.
    Scheduled {
        /// When the schedule fired.
        at: Timestamp,
    },
}

/// Progress of a running snapshot, for progress bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotProgress {
    /// Bytes received from etcd so far.
    pub received: u64,
    /// Bytes etcd will send in total (database plus trailer), as etcd announces it.
    pub total: u64,
}

/// Called with progress while the snapshot streams.
pub type ProgressFn = Arc<dyn Fn(SnapshotProgress) + Send + Sync>;

/// What to snapshot and how to store it.
#[derive(Clone)]
pub struct SnapshotRequest {
    /// The configuration name (a DNS-1123 label), base of the backup name.
    pub config: String,
    /// One-shot or scheduled naming.
    pub naming: Naming,
    /// After a successful snapshot, keep only the newest N of this configuration.
    pub keep: Option<KeepCount>,
    /// zstd level (1-19).
    pub compression_level: i32,
    /// Optional progress callback.
    pub progress: Option<ProgressFn>,
}

impl SnapshotRequest {
    /// A one-shot snapshot named `config`, no rotation, default compression.
    pub fn one_shot(config: impl Into<String>) -> Self {
        Self {
            config: config.into(),
            naming: Naming::OneShot,
            keep: None,
            compression_level: DEFAULT_COMPRESSION_LEVEL,
            progress: None,
        }
    }

    /// The backup name this request stores under; validates the configuration name.
    pub fn backup_name(&self) -> Result<BackupName> {
        validate_dns1123_label(&self.config).map_err(|e| EtcdError::InvalidName {
            name: self.config.clone(),
            reason: e.to_string(),
        })?;
        let name = match self.naming {
            Naming::OneShot => self.config.clone(),
            Naming::Scheduled { at } => scheduled_backup_name(&self.config, at),
        };
        BackupName::new(&name).map_err(EtcdError::from)
    }
}

/// The result of a stored snapshot.
#[derive(Debug)]
pub struct SnapshotOutcome {
    /// The committed manifest (its name is the stored backup's name).
    pub manifest: Manifest,
    /// The member the snapshot came from.
    pub member: MemberStatus,
    /// What rotation deleted among the configuration's snapshots, and what the store refused
    /// to delete.
    pub pruned: Sweep,
}

/// Takes a snapshot from the first reachable endpoint and stores it in `repo` as a backup of
/// kind etcd-snapshot. Either a complete, verified backup is committed or nothing is listed.
pub async fn take_snapshot(
    repo: &Repository,
    connection: &EtcdConnection,
    request: &SnapshotRequest,
) -> Result<SnapshotOutcome> {
    let name = request.backup_name()?;
    if !(1..=19).contains(&request.compression_level) {
        return Err(EtcdError::InvalidCompressionLevel {
            level: request.compression_level,
        });
    }
    let mut member = connect::connect(connection).await?;
    let status = member.status.clone();
    let stream = member
        .client
        .snapshot(rpc::SnapshotRequest {})
        .await
        .map(tonic::Response::into_inner)
        .map_err(|e| EtcdError::SnapshotStream {
            endpoint: status.endpoint.clone(),
            received: 0,
            reason: status_summary(&e),
        })?;
    let mut writer = repo.begin_backup(BackupKind::EtcdSnapshot, &name).await?;
    let artifact = ArtifactName::new(SNAPSHOT_ARTIFACT)?;

    let outcome = Arc::new(Mutex::new(PumpResult::default()));
    let codec = |source| EtcdError::Codec {
        operation: "compression",
        backup: name.to_string(),
        source,
    };
    let mut encoder = zstd::stream::write::Encoder::new(
        Vec::with_capacity(OUTPUT_CAPACITY),
        request.compression_level,
    )
    .map_err(codec)?;
    // zstd's own frame checksum catches corruption even without our manifest.
    encoder.include_checksum(true).map_err(codec)?;
    let pump = Pump {
        stream,
        verifier: TrailingHashVerifier::new(),
        encoder: Some(encoder),
        endpoint: status.endpoint.clone(),
        backup: name.to_string(),
        progress: request.progress.clone(),
        result: Arc::clone(&outcome),
    };
    let chunks = Box::pin(futures::stream::unfold(Some(pump), |state| async move {
        let mut pump = state?;
        match pump.next_chunk().await {
            Ok(Some(bytes)) => Some((Ok(bytes), Some(pump))),
            Ok(None) => None,
            Err(e) => {
                let message = e.to_string();
                pump.fail(e);
                Some((Err(std::io::Error::other(message)), None))
            }
        }
    }));
    let uploaded = writer.put_artifact_stream(&artifact, chunks).await;
    let result = std::mem::take(&mut *outcome.lock().unwrap_or_else(|e| e.into_inner()));
    let verified = match (uploaded, result) {
        (
            Ok(_),
            PumpResult {
                verified: Some(v), ..
            },
        ) => v,
        (upload, pumped) => {
            if let Err(e) = writer.abort().await {
                tracing::warn!(backup = %name, error = %e, "could not remove a failed snapshot's partial upload");
            }
            // Our own error explains the failure better than storage's view of it.
            return Err(match (pumped.error, upload) {
                (Some(e), _) => e,
                (None, Err(e)) => e.into(),
                (None, Ok(_)) => EtcdError::SnapshotStream {
                    endpoint: status.endpoint.clone(),
                    received: 0,
                    reason: "the snapshot stream ended without a verdict".into(),
                },
            });
        }
    };
    let manifest = writer
        .commit(manifest_attributes(request, &status, &verified), None)
        .await?;
    let pruned = match request.keep {
        Some(keep) => prune(repo, &request.config, keep).await?,
        None => Sweep::default(),
    };
    Ok(SnapshotOutcome {
        manifest,
        member: status,
        pruned,
    })
}

fn manifest_attributes(
    request: &SnapshotRequest,
    status: &MemberStatus,
    verified: &VerifiedSnapshot,
) -> BTreeMap<String, String> {
    BTreeMap::from([
        (attributes::CONFIG.into(), request.config.clone()),
        (attributes::REVISION.into(), status.revision.to_string()),
        (attributes::DB_SIZE.into(), status.db_size.to_string()),
        (
            attributes::SNAPSHOT_SIZE.into(),
            verified.payload_bytes.to_string(),
        ),
        (attributes::SNAPSHOT_SHA256.into(), verified.sha256_hex()),
        (
            attributes::MEMBER_ID.into(),
            format!("{:x}", status.member_id),
        ),
        (
            attributes::CLUSTER_ID.into(),
            format!("{:x}", status.cluster_id),
        ),
        (attributes::ETCD_VERSION.into(), status.version.clone()),
        (attributes::ENDPOINT.into(), status.endpoint.clone()),
        (attributes::COMPRESSION.into(), "zstd".into()),
    ])
}

#[derive(Default)]
struct PumpResult {
    verified: Option<VerifiedSnapshot>,
    error: Option<EtcdError>,
}

/// Pulls etcd messages, verifies and compresses them, and yields compressed pieces.
struct Pump {
    stream: tonic::Streaming<SnapshotResponse>,
    verifier: TrailingHashVerifier,
    encoder: Option<zstd::stream::write::Encoder<'static, Vec<u8>>>,
    endpoint: String,
    backup: String,
    progress: Option<ProgressFn>,
    result: Arc<Mutex<PumpResult>>,
}

impl Pump {
    fn fail(&self, error: EtcdError) {
        self.result.lock().unwrap_or_else(|e| e.into_inner()).error = Some(error);
    }

    fn codec_error(&self, source: std::io::Error) -> EtcdError {
        EtcdError::Codec {
            operation: "compression",
            backup: self.backup.clone(),
            source,
        }
    }

    async fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        let Some(encoder) = self.encoder.as_mut() else {
            return Ok(None);
        };
        loop {
            let message = self
                .stream
                .message()
                .await
                .map_err(|e| EtcdError::SnapshotStream {
                    endpoint: self.endpoint.clone(),
                    received: self.verifier.received(),
                    reason: status_summary(&e),
                })?;
            let Some(message) = message else {
                break;
            };
            let mut write_error = None;
            self.verifier.push(&message.blob, |payload| {
                if write_error.is_none() {
                    write_error = encoder.write_all(payload).err();
                }
            });
            if let Some(e) = write_error {
                return Err(self.codec_error(e));
            }
            if let Some(progress) = &self.progress {
                let received = self.verifier.received();
                progress(SnapshotProgress {
                    received,
                    total: received + message.remaining_bytes,
                });
            }
            if encoder.get_ref().len() >= FLUSH_BYTES {
                let full =
                    std::mem::replace(encoder.get_mut(), Vec::with_capacity(OUTPUT_CAPACITY));
                return Ok(Some(Bytes::from(full)));
            }
        }
        // End of stream: only a verified snapshot gets its trailer and the frame's end.
        let verifier = std::mem::take(&mut self.verifier);
        let verified = verifier.finish().map_err(|source| EtcdError::Integrity {
            origin: format!("`{}`", self.endpoint),
            source,
        })?;
        let Some(mut encoder) = self.encoder.take() else {
            return Ok(None);
        };
        debug_assert_eq!(verified.sha256.len(), TRAILER_LEN);
        encoder
            .write_all(&verified.sha256)
            .map_err(|e| self.codec_error(e))?;
        let rest = encoder.finish().map_err(|e| self.codec_error(e))?;
        self.result
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .verified = Some(verified);
        Ok(Some(Bytes::from(rest)))
    }
}
