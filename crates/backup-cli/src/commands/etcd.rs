//! `backupctl etcd ...`: etcd snapshots to a storage location, and restores from them.
//!
//! The grammar lives here (not in cli.rs) so the etcd group is one self-contained module; the
//! work is all in the backup-etcd library.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use backup_core::human_bytes;
use backup_core::retention::KeepCount;
use backup_etcd::{
    ChecksumState, EtcdConnection, MemberOptions, Naming, RestoreRequest, SnapshotInfo,
    SnapshotProgress, SnapshotRequest, TlsFiles,
};
use backup_storage::{BackupName, Repository, UploadOptions};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use super::crypt_args::{EncryptArgs, IdentityArgs, fingerprints};
use crate::cli::ScopeArgs;
use crate::output::{self, OutputFormat, Tabular};

#[derive(Subcommand)]
pub enum EtcdCommand {
    /// Stream a snapshot from etcd, verify etcd's checksum, compress it and store it.
    ///
    /// Prints the stored backup's name on stdout; progress goes to stderr on a terminal.
    Snapshot(SnapshotArgs),
    /// List stored snapshots with their revision, size and whether their checksum still holds.
    List(ListArgs),
    /// Build a new member data directory from a stored snapshot (etcdutl/etcdctl restore).
    Restore(RestoreArgs),
    /// Delete all but the newest N snapshots taken under one name.
    Prune(PruneArgs),
    /// Run next to a cluster's etcd and carry out the EtcdRestores of that cluster that the
    /// fleet controller validated (as KKP's etcd launcher does): verify the snapshot, restore it
    /// into --data-dir (refusing a non-empty one), and report Started, Restoring, then
    /// Completed or Failed on the object.
    Agent(Box<super::etcd_agent::AgentArgs>),
}

/// Where the snapshots are stored.
#[derive(Args)]
pub struct LocationArgs {
    /// Location URL, e.g. file:///var/lib/backups or s3://bucket/prefix.
    #[arg(long)]
    pub location: String,
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Location option overriding the environment, e.g. --option region=eu-west-1 (repeatable).
    #[arg(long = "option", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub options: Vec<(String, String)>,
}

impl LocationArgs {
    fn open(&self) -> Result<Repository> {
        let options: BTreeMap<String, String> = self.options.iter().cloned().collect();
        Repository::open(&self.location, &options)
            .and_then(|repo| repo.scoped_str(&self.scope.project, &self.scope.cluster))
            .with_context(|| format!("cannot use location {}", self.location))
    }
}

#[derive(Args)]
pub struct SnapshotArgs {
    /// etcd client URLs, comma-separated; the first member that answers is snapshotted.
    #[arg(long, value_delimiter = ',', required = true)]
    pub endpoints: Vec<String>,
    #[command(flatten)]
    pub location: LocationArgs,
    /// Snapshot (configuration) name: the backup is called exactly this, or
    /// <name>-<YYYYMMDDhhmmss> with --timestamped.
    #[arg(long)]
    pub name: String,
    /// Name the backup <name>-<YYYYMMDDhhmmss> (UTC now), as scheduled backups are named.
    #[arg(long)]
    pub timestamped: bool,
    /// After storing, keep only the newest N snapshots of this name (1-50).
    #[arg(long)]
    pub keep: Option<u32>,
    /// CA certificate that signed etcd's server certificate (PEM).
    #[arg(long)]
    pub cacert: Option<PathBuf>,
    /// Client certificate for etcd's --client-cert-auth (PEM).
    #[arg(long)]
    pub cert: Option<PathBuf>,
    /// Client certificate's key (PEM).
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// zstd level: 1 is fastest, 19 smallest.
    #[arg(long, default_value_t = backup_etcd::DEFAULT_COMPRESSION_LEVEL)]
    pub compression_level: i32,
    #[command(flatten)]
    pub encrypt: EncryptArgs,
}

#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub location: LocationArgs,
    /// Do not read snapshots back to check their checksums (fast; CHECKSUM shows "unchecked").
    #[arg(long)]
    pub no_verify: bool,
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub location: LocationArgs,
    /// The stored snapshot to restore (as `backupctl etcd list` shows it).
    #[arg(long)]
    pub backup: String,
    /// New member data directory; must not exist or be empty.
    #[arg(long)]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub member: MemberArgs,
    // Needed for an encrypted snapshot; checked before anything is written.
    #[command(flatten)]
    pub identity: IdentityArgs,
}

/// The restored member's identity in its cluster, and etcd's restore tool.
#[derive(Args)]
pub struct MemberArgs {
    /// Name of the restored member (etcd's --name).
    #[arg(long)]
    pub member_name: Option<String>,
    /// Initial cluster, e.g. m1=https://10.0.0.1:2380,m2=https://10.0.0.2:2380.
    #[arg(long)]
    pub initial_cluster: Option<String>,
    /// Initial cluster token of the restored cluster.
    #[arg(long)]
    pub initial_cluster_token: Option<String>,
    /// This member's peer URLs.
    #[arg(long)]
    pub initial_advertise_peer_urls: Option<String>,
    /// Path of etcdutl or etcdctl (default: etcdutl, then etcdctl, from PATH).
    #[arg(long)]
    pub restore_tool: Option<PathBuf>,
}

impl MemberArgs {
    /// The restore of `backup` into `data_dir` as this member.
    pub fn request(&self, backup: BackupName, data_dir: PathBuf) -> RestoreRequest {
        RestoreRequest {
            backup,
            data_dir,
            member: MemberOptions {
                name: self.member_name.clone(),
                initial_cluster: self.initial_cluster.clone(),
                initial_cluster_token: self.initial_cluster_token.clone(),
                initial_advertise_peer_urls: self.initial_advertise_peer_urls.clone(),
            },
            tool: self.restore_tool.clone(),
        }
    }
}

#[derive(Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub location: LocationArgs,
    /// Snapshot name whose snapshots to rotate.
    #[arg(long)]
    pub name: String,
    /// How many of the newest to keep (1-50).
    #[arg(long)]
    pub keep: u32,
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

fn parse_key_value(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().into(), value.into())),
        _ => Err(format!("expected KEY=VALUE, got {raw:?}")),
    }
}

pub async fn run(command: EtcdCommand) -> Result<ExitCode> {
    match command {
        EtcdCommand::Snapshot(args) => snapshot(args).await,
        EtcdCommand::List(args) => list(args).await,
        EtcdCommand::Restore(args) => restore(args).await,
        EtcdCommand::Prune(args) => prune(args).await,
        EtcdCommand::Agent(args) => super::etcd_agent::run(*args).await,
    }
}

fn progress_bar() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} snapshot [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}

async fn snapshot(args: SnapshotArgs) -> Result<ExitCode> {
    let keep = args.keep.map(KeepCount::new).transpose()?;
    let encryption = args.encrypt.encryption()?;
    let repo = args.location.open()?.with_upload_options(UploadOptions {
        // Two 8 MiB parts in flight keep a local disk or S3 busy at ~24 MiB of buffers.
        part_size: 8 * 1024 * 1024,
        max_parts_in_flight: 2,
    });
    let repo = match encryption {
        Some(encryption) => repo.with_encryption(encryption),
        None => repo,
    };
    let connection = EtcdConnection {
        endpoints: args.endpoints,
        tls: TlsFiles {
            ca: args.cacert,
            cert: args.cert,
            key: args.key,
        },
        tls_pem: None,
        // The operator's own command line: any endpoint they name.
        addresses: None,
    };
    let bar = progress_bar();
    let progress_target = bar.clone();
    let request = SnapshotRequest {
        config: args.name,
        naming: if args.timestamped {
            Naming::Scheduled {
                at: jiff::Timestamp::now(),
            }
        } else {
            Naming::OneShot
        },
        keep,
        compression_level: args.compression_level,
        progress: Some(Arc::new(move |p: SnapshotProgress| {
            progress_target.set_length(p.total);
            progress_target.set_position(p.received);
        })),
    };
    let result = backup_etcd::take_snapshot(&repo, &connection, &request).await;
    bar.finish_and_clear();
    let outcome = result?;
    let m = &outcome.manifest;
    let attr = |k: &str| m.attributes.get(k).map(String::as_str).unwrap_or("?");
    eprintln!(
        "stored snapshot of member {} at revision {} ({} bytes, {} stored)",
        attr(backup_etcd::attributes::MEMBER_ID),
        attr(backup_etcd::attributes::REVISION),
        attr(backup_etcd::attributes::SNAPSHOT_SIZE),
        m.total_size(),
    );
    if m.is_encrypted() {
        eprintln!(
            "encrypted with age to recipient fingerprint(s) {}",
            fingerprints(&m.recipients())
        );
    }
    for (name, refusal) in &outcome.pruned.refused {
        eprintln!("warning: rotation could not delete {name}: {refusal}");
    }
    for pruned in &outcome.pruned.deleted {
        eprintln!("pruned {pruned}");
    }
    println!("{}", m.name);
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct Row {
    name: String,
    created: Option<String>,
    revision: Option<i64>,
    size: Option<u64>,
    stored_size: Option<u64>,
    checksum_ok: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<String>,
}

impl From<SnapshotInfo> for Row {
    fn from(s: SnapshotInfo) -> Self {
        let (checksum_ok, problem) = match s.checksum {
            ChecksumState::Ok => (Some(true), None),
            ChecksumState::Bad(reason) => (Some(false), Some(reason)),
            ChecksumState::Unchecked => (None, None),
        };
        Row {
            name: s.name,
            created: s.created.map(|t| t.to_string()),
            revision: s.revision,
            size: s.db_size,
            stored_size: s.stored_size,
            checksum_ok,
            problem,
        }
    }
}

impl Tabular for Row {
    fn header() -> Vec<&'static str> {
        vec!["NAME", "CREATED", "REVISION", "SIZE", "STORED", "CHECKSUM"]
    }
    fn row(&self) -> Vec<String> {
        let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        vec![
            self.name.clone(),
            opt(self.created.clone()),
            opt(self.revision.map(|r| r.to_string())),
            opt(self.size.map(human_bytes)),
            opt(self.stored_size.map(human_bytes)),
            match (self.checksum_ok, &self.problem) {
                (Some(true), _) => "ok".into(),
                (Some(false), Some(p)) => format!("BAD: {p}"),
                (Some(false), None) => "BAD".into(),
                (None, _) => "unchecked".into(),
            },
        ]
    }
}

async fn list(args: ListArgs) -> Result<ExitCode> {
    let repo = args.location.open()?;
    let snapshots = backup_etcd::list_snapshots(&repo, !args.no_verify).await?;
    let all_ok = snapshots
        .iter()
        .all(|s| !matches!(s.checksum, ChecksumState::Bad(_)));
    let rows: Vec<Row> = snapshots.into_iter().map(Row::from).collect();
    output::print(&rows, args.output)?;
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn restore(args: RestoreArgs) -> Result<ExitCode> {
    let repo = args.identity.apply(args.location.open()?)?;
    let request = args
        .member
        .request(BackupName::new(&args.backup)?, args.data_dir);
    let outcome = backup_etcd::restore(&repo, &request).await?;
    println!(
        "restored snapshot {} ({} bytes, revision {}) into {} with {}",
        request.backup,
        outcome.db_bytes,
        outcome
            .revision
            .map_or_else(|| "unknown".to_string(), |r| r.to_string()),
        outcome.data_dir.display(),
        outcome.tool.display(),
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct Pruned {
    deleted: String,
}

impl Tabular for Pruned {
    fn header() -> Vec<&'static str> {
        vec!["DELETED"]
    }
    fn row(&self) -> Vec<String> {
        vec![self.deleted.clone()]
    }
}

async fn prune(args: PruneArgs) -> Result<ExitCode> {
    let keep = KeepCount::new(args.keep)?;
    let repo = args.location.open()?;
    let sweep = backup_etcd::prune(&repo, &args.name, keep).await?;
    let rows: Vec<Pruned> = sweep
        .deleted
        .into_iter()
        .map(|d| Pruned {
            deleted: d.to_string(),
        })
        .collect();
    output::print(&rows, args.output)?;
    for (name, refusal) in &sweep.refused {
        eprintln!("error: could not delete {name}: {refusal}");
    }
    Ok(if sweep.refused.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
