//! `backupctl backup ...`: agentless backups of a cluster's resources in Velero's format, and
//! the stored backups of a location (list, describe, delete, download).
//!
//! The backup runs inside this process (the direct engine reads the cluster's API from here),
//! so `create` always returns when the backup is finished; `--wait` adds a progress bar.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use backup_core::naming::validate_dns1123_label;
use backup_core::{BackupEngine, BackupKind, BackupSpec, LabelSelector, Phase, Ttl};
use backup_storage::{BackupName, Manifest, Repository};
use backup_velero::direct::{DirectEngine, SCHEDULE_LABEL, read_backup_object};
use backup_velero::format::{BackupFiles, BackupObject, OperationResults, gunzip_json};
use clap::{Args, Subcommand};
use futures::StreamExt;
use serde::Serialize;

use super::direct_args::{ClusterArgs, StoreArgs, follow};
use crate::output::{self, OutputFormat, Tabular};

#[derive(Subcommand)]
pub enum BackupCommand {
    /// Back up a cluster's resources (read from outside the cluster) in Velero's format.
    Create(Box<CreateArgs>),
    /// List the backups stored in a location scope.
    List(ListArgs),
    /// Show one backup: spec, status, files and the warnings/errors it recorded.
    Describe(NameArgs),
    /// Delete a backup and all its files.
    Delete(NameArgs),
    /// Download a backup's tarball, verified against its manifest.
    Download(DownloadArgs),
    /// Read every artifact of one backup (or all) and check its size and SHA-256 against the
    /// manifest, restoring nothing. Exits 1 naming each corrupt backup.
    Verify(VerifyArgs),
}

#[derive(Args)]
pub struct VerifyArgs {
    /// Backup to verify (or --all).
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub name: Option<String>,
    /// Verify every backup in the location scope.
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub store: StoreArgs,
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// One verified backup.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct VerifyRow {
    name: String,
    ok: bool,
    artifacts: usize,
    bytes: u64,
    problem: String,
}

impl Tabular for VerifyRow {
    fn header() -> Vec<&'static str> {
        vec!["NAME", "OK", "ARTIFACTS", "BYTES", "PROBLEM"]
    }
    fn row(&self) -> Vec<String> {
        vec![
            self.name.clone(),
            self.ok.to_string(),
            self.artifacts.to_string(),
            self.bytes.to_string(),
            self.problem.clone(),
        ]
    }
}

#[derive(Args)]
pub struct CreateArgs {
    /// Backup name (DNS-1123 subdomain); must not exist in the location scope.
    pub name: String,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Namespaces to back up (globs allowed), comma-separated; default all.
    #[arg(long, value_delimiter = ',')]
    pub include_namespaces: Vec<String>,
    /// Namespaces to leave out (globs allowed), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub exclude_namespaces: Vec<String>,
    /// Resources to back up (`deployments`, `deployments.apps`), comma-separated; default all.
    #[arg(long, value_delimiter = ',')]
    pub include_resources: Vec<String>,
    /// Resources to leave out, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub exclude_resources: Vec<String>,
    /// Back up all cluster-scoped objects (true), none (false), or by default only when all
    /// namespaces are selected (related ones — namespaces, CRDs, PVs — are always included).
    #[arg(long)]
    pub include_cluster_resources: Option<bool>,
    /// Only objects matching this label selector, e.g. app=web,tier!=db.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// How long the backup is kept (Go duration, e.g. 720h, or 30d).
    #[arg(long, default_value = "720h")]
    pub ttl: String,
    /// Record the backup as one of this schedule's (label `velero.io/schedule-name`), so
    /// `restore create --from-schedule` finds it; for backups run by cron or a CI job.
    #[arg(long)]
    pub schedule: Option<String>,
    /// Name of the storage location recorded in velero-backup.json.
    #[arg(long, default_value = "default")]
    pub storage_location: String,
    /// Show progress while the backup runs.
    #[arg(long)]
    pub wait: bool,
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Args)]
pub struct NameArgs {
    /// Backup name.
    pub name: String,
    #[command(flatten)]
    pub store: StoreArgs,
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Args)]
pub struct DownloadArgs {
    /// Backup name.
    pub name: String,
    #[command(flatten)]
    pub store: StoreArgs,
    /// File to write the tarball (<name>.tar.gz) to; replaced only once fully verified.
    #[arg(short = 'o', long = "output-file", value_name = "FILE")]
    pub file: PathBuf,
}

/// One backup as listed.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BackupRow {
    name: String,
    phase: String,
    items: u64,
    errors: u64,
    warnings: u64,
    created: String,
    expires: String,
    size: u64,
}

impl Tabular for BackupRow {
    fn header() -> Vec<&'static str> {
        vec![
            "NAME", "STATUS", "ITEMS", "ERRORS", "WARNINGS", "CREATED", "EXPIRES", "SIZE",
        ]
    }
    fn row(&self) -> Vec<String> {
        vec![
            self.name.clone(),
            self.phase.clone(),
            self.items.to_string(),
            self.errors.to_string(),
            self.warnings.to_string(),
            self.created.clone(),
            self.expires.clone(),
            self.size.to_string(),
        ]
    }
}

fn ts(t: Option<jiff::Timestamp>) -> String {
    t.map(|t| t.to_string()).unwrap_or_else(|| "-".into())
}

fn row(manifest: &Manifest, object: &BackupObject) -> BackupRow {
    BackupRow {
        name: manifest.name.to_string(),
        phase: object.phase.to_string(),
        items: object.items_backed_up,
        errors: object.errors,
        warnings: object.warnings,
        created: manifest.created.to_string(),
        expires: ts(manifest.expires_at),
        size: manifest.total_size(),
    }
}

pub async fn run(command: BackupCommand) -> Result<ExitCode> {
    match command {
        BackupCommand::Create(args) => create(*args).await,
        BackupCommand::List(args) => list(args).await,
        BackupCommand::Describe(args) => describe(args).await,
        BackupCommand::Delete(args) => delete(args).await,
        BackupCommand::Download(args) => download(args).await,
        BackupCommand::Verify(args) => verify(args).await,
    }
}

fn spec(args: &CreateArgs) -> Result<BackupSpec> {
    let mut spec = BackupSpec {
        ttl: Ttl::parse(&args.ttl).with_context(|| format!("--ttl {:?}", args.ttl))?,
        storage_location: Some(args.storage_location.clone()),
        ..BackupSpec::default()
    };
    spec.filter.included_namespaces = args.include_namespaces.clone();
    spec.filter.excluded_namespaces = args.exclude_namespaces.clone();
    spec.filter.included_resources = args.include_resources.clone();
    spec.filter.excluded_resources = args.exclude_resources.clone();
    spec.filter.include_cluster_resources = args.include_cluster_resources;
    if let Some(selector) = &args.selector {
        spec.filter.label_selector = Some(
            LabelSelector::parse(selector).with_context(|| format!("--selector {selector:?}"))?,
        );
    }
    if let Some(schedule) = &args.schedule {
        validate_dns1123_label(schedule).with_context(|| format!("--schedule {schedule:?}"))?;
        spec.labels
            .insert(SCHEDULE_LABEL.to_string(), schedule.clone());
    }
    spec.validate().context("invalid backup")?;
    Ok(spec)
}

async fn create(args: CreateArgs) -> Result<ExitCode> {
    let spec = spec(&args)?;
    let repo = args.store.open()?;
    let client = args.cluster.client().await?;
    let engine =
        DirectEngine::new(client, repo.clone()).with_storage_location(&args.storage_location);
    engine
        .start_backup(&args.name, &spec)
        .await
        .with_context(|| format!("cannot start backup {}", args.name))?;
    let label = format!("backup {}", args.name);
    let status = if args.wait {
        follow(&label, || engine.observe_backup(&args.name)).await?
    } else {
        engine.wait_backup(&args.name).await?
    };
    if status.phase == Phase::Failed {
        bail!("backup {} failed: {}", args.name, status.errors.join("; "));
    }
    let name = BackupName::new(args.name.as_str())?;
    let manifest = repo.get_manifest(BackupKind::Resources, &name).await?;
    let object = read_backup_object(&repo, &name)
        .await
        .with_context(|| format!("backup {name} was written but cannot be read back"))?;
    output::print(&[row(&manifest, &object)], args.output)?;
    for w in &status.warnings {
        eprintln!("warning: {w}");
    }
    for e in &status.errors {
        eprintln!("error: {e}");
    }
    Ok(if status.phase == Phase::Completed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn list(args: ListArgs) -> Result<ExitCode> {
    let repo = args.store.open()?;
    let listing = repo.list(BackupKind::Resources).await?;
    let mut rows = Vec::new();
    let mut unreadable = Vec::new();
    for manifest in &listing.manifests {
        match read_backup_object(&repo, &manifest.name).await {
            Ok(object) => rows.push(row(manifest, &object)),
            Err(e) => unreadable.push((manifest.name.to_string(), e.to_string())),
        }
    }
    output::print(&rows, args.output)?;
    for (name, problem) in &listing.problems {
        unreadable.push((name.to_string(), problem.to_string()));
    }
    for (name, problem) in &unreadable {
        eprintln!("error: backup {name} is unreadable and not listed: {problem}");
    }
    Ok(if unreadable.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Everything `describe` shows.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Description {
    #[serde(flatten)]
    summary: BackupRow,
    velero_backup: serde_json::Value,
    files: Vec<backup_storage::ArtifactRecord>,
    results: OperationResults,
}

impl Tabular for Description {
    fn header() -> Vec<&'static str> {
        BackupRow::header()
    }
    fn row(&self) -> Vec<String> {
        self.summary.row()
    }
}

async fn read_all(
    repo: &Repository,
    name: &BackupName,
    file: &backup_storage::ArtifactName,
) -> Result<Vec<u8>> {
    let mut stream = repo
        .open_artifact(BackupKind::Resources, name, file)
        .await?;
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

async fn describe(args: NameArgs) -> Result<ExitCode> {
    let repo = args.store.open()?;
    let name = BackupName::new(args.name.as_str())?;
    let manifest = repo.get_manifest(BackupKind::Resources, &name).await?;
    let files = BackupFiles::new(&name)?;
    let object_json = read_all(&repo, &name, &files.backup_object).await?;
    let object = BackupObject::from_json(&object_json)?;
    let results: OperationResults = gunzip_json(
        &read_all(&repo, &name, &files.results)
            .await
            .context("reading the backup's results")?,
    )
    .context("decoding the backup's results")?;
    let description = Description {
        summary: row(&manifest, &object),
        velero_backup: serde_json::from_slice(&object_json)?,
        files: manifest.artifacts.clone(),
        results,
    };
    output::print(std::slice::from_ref(&description), args.output)?;
    if args.output == OutputFormat::Table {
        let spec = &description.velero_backup["spec"];
        println!("\nSpec:\n{}", serde_json::to_string_pretty(spec)?);
        println!("\nFiles:");
        for f in &description.files {
            println!("  {}  {} bytes  sha256 {}", f.name, f.size, f.sha256);
        }
        for (what, r) in [
            ("Warnings", &description.results.warnings),
            ("Errors", &description.results.errors),
        ] {
            let lines = r.flatten();
            if !lines.is_empty() {
                println!("\n{what}:");
                for l in lines {
                    println!("  {l}");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn delete(args: NameArgs) -> Result<ExitCode> {
    let repo = args.store.open()?;
    let name = BackupName::new(args.name.as_str())?;
    let manifest = repo.get_manifest(BackupKind::Resources, &name).await?;
    // A damaged backup must stay deletable: an unreadable velero-backup.json is reported, and
    // the backup is deleted all the same.
    let object = read_backup_object(&repo, &name).await;
    repo.delete(BackupKind::Resources, &name).await?;
    match object {
        Ok(object) => {
            let mut r = row(&manifest, &object);
            r.phase = "Deleted".into();
            output::print(&[r], args.output)?;
        }
        Err(e) => {
            eprintln!("warning: its velero-backup.json was unreadable ({e})");
            println!("deleted backup {name} ({} bytes)", manifest.total_size());
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn download(args: DownloadArgs) -> Result<ExitCode> {
    let repo = args.store.open()?;
    let name = BackupName::new(args.name.as_str())?;
    let files = BackupFiles::new(&name)?;
    let file_name = args
        .file
        .file_name()
        .with_context(|| format!("{} is not a file path", args.file.display()))?
        .to_string_lossy()
        .into_owned();
    let temp = args
        .file
        .with_file_name(format!(".{file_name}.partial-{}", std::process::id()));
    let result = async {
        let mut out = tokio::fs::File::create(&temp)
            .await
            .with_context(|| format!("cannot create {}", temp.display()))?;
        let record = repo
            .download_artifact_to(BackupKind::Resources, &name, &files.tarball, &mut out)
            .await?;
        out.sync_all().await?;
        tokio::fs::rename(&temp, &args.file)
            .await
            .with_context(|| format!("cannot move the download to {}", args.file.display()))?;
        anyhow::Ok(record)
    }
    .await;
    match result {
        Ok(record) => {
            println!(
                "downloaded {} ({} bytes, sha256 {} verified) to {}",
                record.name,
                record.size,
                record.sha256,
                args.file.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let _ = tokio::fs::remove_file(&temp).await;
            Err(e.context(format!(
                "download of backup {} failed; nothing was written to {}",
                args.name,
                args.file.display()
            )))
        }
    }
}

async fn verify(args: VerifyArgs) -> Result<ExitCode> {
    let names: Vec<BackupName> = match &args.name {
        Some(name) => vec![BackupName::new(name.as_str())?],
        None => Vec::new(),
    };
    let repo = args.store.open()?;
    let mut rows = Vec::new();
    let names = if args.all {
        let listing = repo.list(BackupKind::Resources).await?;
        for (name, problem) in &listing.problems {
            rows.push(VerifyRow {
                name: name.to_string(),
                ok: false,
                artifacts: 0,
                bytes: 0,
                problem: problem.to_string(),
            });
        }
        listing.manifests.into_iter().map(|m| m.name).collect()
    } else {
        names
    };
    for name in names {
        rows.push(match repo.verify(BackupKind::Resources, &name).await {
            Ok(manifest) => VerifyRow {
                name: name.to_string(),
                ok: true,
                artifacts: manifest.artifacts.len(),
                bytes: manifest.total_size(),
                problem: String::new(),
            },
            Err(e) => VerifyRow {
                name: name.to_string(),
                ok: false,
                artifacts: 0,
                bytes: 0,
                problem: e.to_string(),
            },
        });
    }
    output::print(&rows, args.output)?;
    let corrupt: Vec<&str> = rows
        .iter()
        .filter(|r| !r.ok)
        .map(|r| r.name.as_str())
        .collect();
    if corrupt.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("error: corrupt or unreadable: {}", corrupt.join(", "));
        Ok(ExitCode::FAILURE)
    }
}
