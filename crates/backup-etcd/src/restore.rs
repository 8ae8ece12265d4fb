//! Restoring a snapshot into a fresh member data directory.
//!
//! The stored stream is downloaded (storage checks its SHA-256, and decrypts it when it is
//! encrypted and the repository has a matching identity), decompressed to a staging file
//! next to the target while etcd's own trailer is checked again, and compared with the hash
//! recorded at snapshot time. Only then does etcd's tool (`etcdutl`, or `etcdctl` with
//! `ETCDCTL_API=3` on etcd 3.4) build the member directory, in staging; a final rename puts it in
//! place. A failure at any step leaves the target as it was.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use backup_storage::{ArtifactName, BackupKind, BackupName, Repository};
use bytes::Bytes;
use futures::StreamExt;

use crate::error::{EtcdError, Result};
use crate::trailing_hash::{TrailingHashVerifier, VerifiedSnapshot};
use crate::{SNAPSHOT_ARTIFACT, attributes};

/// Cluster membership of the restored member; `None` keeps etcd's defaults
/// (`default`, `default=http://localhost:2380`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberOptions {
    /// `--name` of the new member.
    pub name: Option<String>,
    /// `--initial-cluster`, e.g. `m1=https://10.0.0.1:2380,m2=...`.
    pub initial_cluster: Option<String>,
    /// `--initial-cluster-token`.
    pub initial_cluster_token: Option<String>,
    /// `--initial-advertise-peer-urls`.
    pub initial_advertise_peer_urls: Option<String>,
}

/// What to restore and where.
#[derive(Debug, Clone)]
pub struct RestoreRequest {
    /// The stored backup.
    pub backup: BackupName,
    /// The member data directory to create; must not exist or be empty.
    pub data_dir: PathBuf,
    /// Membership options passed to etcd's restore tool.
    pub member: MemberOptions,
    /// Path of `etcdutl`/`etcdctl`; found on `PATH` when `None`.
    pub tool: Option<PathBuf>,
}

/// What a restore produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreOutcome {
    /// The data directory now holding the member.
    pub data_dir: PathBuf,
    /// Database bytes restored.
    pub db_bytes: u64,
    /// Revision recorded when the snapshot was taken, if any.
    pub revision: Option<i64>,
    /// The tool that built the member directory.
    pub tool: PathBuf,
}

fn io_error(context: String) -> impl FnOnce(std::io::Error) -> EtcdError {
    move |source| EtcdError::Io { context, source }
}

/// Fails unless `dir` is absent or an empty directory.
fn check_target(dir: &Path) -> Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(EtcdError::DataDirNotEmpty {
                    path: dir.to_path_buf(),
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if dir.exists() => Err(EtcdError::Io {
            context: format!(
                "restore target `{}` exists but is not a readable directory",
                dir.display()
            ),
            source: e,
        }),
        Err(e) => Err(io_error(format!("cannot inspect `{}`", dir.display()))(e)),
    }
}

/// Finds etcd's restore tool: `etcdutl` (etcd ≥ 3.5) first, then `etcdctl`.
pub fn find_restore_tool() -> Result<PathBuf> {
    let dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    let mut tried = Vec::new();
    for tool in ["etcdutl", "etcdctl"] {
        for dir in &dirs {
            let candidate = dir.join(tool);
            if candidate.is_file() {
                return Ok(candidate);
            }
            tried.push(candidate.display().to_string());
        }
    }
    Err(EtcdError::ToolNotFound {
        tried: tried.join(", "),
    })
}

/// Restores backup `request.backup` from `repo` into `request.data_dir`.
pub async fn restore(repo: &Repository, request: &RestoreRequest) -> Result<RestoreOutcome> {
    let data_dir = &request.data_dir;
    check_target(data_dir)?;
    let tool = match &request.tool {
        Some(tool) => tool.clone(),
        None => find_restore_tool()?,
    };
    let manifest = repo
        .get_manifest(BackupKind::EtcdSnapshot, &request.backup)
        .await?;
    let artifact = ArtifactName::new(SNAPSHOT_ARTIFACT)?;
    if manifest.artifact(&artifact).is_none() {
        return Err(EtcdError::NotASnapshot {
            backup: request.backup.to_string(),
            reason: format!("its manifest lists no `{SNAPSHOT_ARTIFACT}`"),
        });
    }
    let revision =
        attributes::number::<i64>(&manifest, attributes::REVISION).map_err(|reason| {
            EtcdError::NotASnapshot {
                backup: request.backup.to_string(),
                reason,
            }
        })?;
    // An encrypted snapshot without a matching identity: refused before anything is created
    // next to the data directory.
    repo.ensure_readable(&manifest)?;
    let parent = match data_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)
        .map_err(io_error(format!("cannot create `{}`", parent.display())))?;
    let staging = tempfile::Builder::new()
        .prefix(".etcd-restore-")
        .tempdir_in(&parent)
        .map_err(io_error(format!(
            "cannot create a staging directory in `{}`",
            parent.display()
        )))?;
    let db_file = staging.path().join("snapshot.db");

    let verified = download_db(repo, &request.backup, &artifact, &db_file).await?;
    if let Some(expected) = manifest.attributes.get(attributes::SNAPSHOT_SHA256)
        && *expected != verified.sha256_hex()
    {
        return Err(EtcdError::RestoredChecksumMismatch {
            backup: request.backup.to_string(),
            expected: expected.clone(),
            actual: verified.sha256_hex(),
        });
    }

    let member_dir = staging.path().join("member");
    run_tool(&tool, &db_file, &member_dir, &request.member).await?;
    // Re-check right before the rename: rename(2) onto a non-empty directory fails anyway,
    // so nothing that appeared meanwhile can be overwritten.
    check_target(data_dir)?;
    std::fs::rename(&member_dir, data_dir).map_err(io_error(format!(
        "cannot move the restored member into `{}`",
        data_dir.display()
    )))?;
    Ok(RestoreOutcome {
        data_dir: data_dir.clone(),
        db_bytes: verified.payload_bytes,
        revision,
        tool,
    })
}

/// Streams the artifact through zstd into `path`, checking storage's and etcd's checksums.
async fn download_db(
    repo: &Repository,
    backup: &BackupName,
    artifact: &ArtifactName,
    path: &Path,
) -> Result<VerifiedSnapshot> {
    let mut stream = repo
        .open_artifact(BackupKind::EtcdSnapshot, backup, artifact)
        .await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(8);
    let file_path = path.to_path_buf();
    let name = backup.to_string();
    let decoder = tokio::task::spawn_blocking(move || decode_to_file(rx, &file_path, &name));
    let mut storage_error = None;
    let mut decoder_alive = true;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => {
                // If the decoder gave up (garbage in), keep reading so storage can say whether
                // the stored bytes fail their checksum, the more useful verdict.
                if decoder_alive && tx.send(bytes).await.is_err() {
                    decoder_alive = false;
                }
            }
            Err(e) => {
                storage_error = Some(e);
                break;
            }
        }
    }
    drop(tx);
    let decoded = decoder.await.map_err(|e| EtcdError::Io {
        context: format!("decompressing snapshot `{backup}` crashed"),
        source: std::io::Error::other(e.to_string()),
    });
    // A storage verdict (checksum, truncation) comes first: it names the real cause.
    if let Some(e) = storage_error {
        return Err(e.into());
    }
    decoded?
}

/// Writes everything it is given to a file and feeds it to a trailer verifier.
struct VerifyingFile {
    file: std::io::BufWriter<std::fs::File>,
    verifier: TrailingHashVerifier,
}

impl Write for VerifyingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.verifier.push(&buf[..n], |_| {});
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

fn decode_to_file(
    mut rx: tokio::sync::mpsc::Receiver<Bytes>,
    path: &Path,
    backup: &str,
) -> Result<VerifiedSnapshot> {
    let file = std::fs::File::create(path)
        .map_err(io_error(format!("cannot create `{}`", path.display())))?;
    let sink = VerifyingFile {
        file: std::io::BufWriter::with_capacity(1 << 20, file),
        verifier: TrailingHashVerifier::new(),
    };
    let codec = |source| EtcdError::Codec {
        operation: "decompression",
        backup: backup.to_string(),
        source,
    };
    let mut decoder = zstd::stream::write::Decoder::new(sink).map_err(codec)?;
    while let Some(chunk) = rx.blocking_recv() {
        decoder.write_all(&chunk).map_err(codec)?;
    }
    decoder.flush().map_err(codec)?;
    let sink = decoder.into_inner();
    let file = sink
        .file
        .into_inner()
        .map_err(|e| io_error(format!("cannot write `{}`", path.display()))(e.into_error()))?;
    file.sync_all()
        .map_err(io_error(format!("cannot sync `{}`", path.display())))?;
    sink.verifier
        .finish()
        .map_err(|source| EtcdError::Integrity {
            origin: format!("backup `{backup}`"),
            source,
        })
}

async fn run_tool(
    tool: &Path,
    db_file: &Path,
    member_dir: &Path,
    member: &MemberOptions,
) -> Result<()> {
    let mut command = tokio::process::Command::new(tool);
    command
        .arg("snapshot")
        .arg("restore")
        .arg(db_file)
        .arg("--data-dir")
        .arg(member_dir);
    let flags = [
        ("--name", &member.name),
        ("--initial-cluster", &member.initial_cluster),
        ("--initial-cluster-token", &member.initial_cluster_token),
        (
            "--initial-advertise-peer-urls",
            &member.initial_advertise_peer_urls,
        ),
    ];
    for (flag, value) in flags {
        if let Some(value) = value {
            command.arg(format!("{flag}={value}"));
        }
    }
    // etcd 3.4's etcdctl only has `snapshot restore` under the v3 API; etcdutl ignores this.
    command.env("ETCDCTL_API", "3");
    command.stdin(Stdio::null()).kill_on_drop(true);
    let shown = format!("{command:?}");
    let output = command
        .output()
        .await
        .map_err(io_error(format!("cannot run `{}`", tool.display())))?;
    if !output.status.success() {
        let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stdout));
        return Err(EtcdError::RestoreTool {
            command: shown,
            status: output.status.to_string(),
            output: text.trim().to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_absent_or_empty_targets_are_accepted() {
        let dir = tempfile::tempdir().unwrap();
        check_target(&dir.path().join("absent")).unwrap();
        check_target(dir.path()).unwrap();
        std::fs::write(dir.path().join("x"), b"1").unwrap();
        let err = check_target(dir.path()).unwrap_err();
        assert!(matches!(err, EtcdError::DataDirNotEmpty { .. }));
        assert!(err.to_string().contains("refusing to overwrite"), "{err}");
    }
}
