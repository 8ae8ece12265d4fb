//! `backupctl backup ...`: agentless backups of a cluster's resources in Velero's format, and
//! the stored backups of a location (list, describe, delete, download).
//!
//! The backup runs inside this process (the direct engine reads the cluster's API from here),
//! so `create` always returns when the backup is finished; `--wait` adds a progress bar.
//!
//! With `--encrypt-to`, every file of the backup is stored encrypted with age; `list` and
//! `delete` need no key (they read manifests), `describe` shows the spec and results and
//! `download` the tarball only with `--identity-file` (or `download --raw`, the ciphertext).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use backup_core::human_bytes;
use backup_core::naming::validate_dns1123_label;
use backup_core::{BackupEngine, BackupKind, BackupSpec, LabelSelector, Phase, StoredBackup, Ttl};
use backup_storage::{BackupName, Fingerprint, Manifest, Repository};
use backup_velero::direct::{DirectEngine, SCHEDULE_LABEL, read_backup_object, stored};
use backup_velero::format::{
    BackupFiles, BackupObject, OperationResults, ResourceList, gunzip_json,
};
use clap::{Args, Subcommand};
use futures::StreamExt;
use serde::Serialize;

use super::crypt_args::{EncryptArgs, IdentityArgs, fingerprints};
use super::direct_args::{ClusterArgs, StoreArgs, follow};
use crate::output::{self, OutputFormat, Tabular};

#[derive(Subcommand)]
pub enum BackupCommand {
    /// Back up a cluster's resources (read from outside the cluster) in Velero's format.
    Create(Box<CreateArgs>),
    /// List the backups stored in a location scope (`get` is Velero's name).
    #[command(visible_alias = "get")]
    List(ListArgs),
    /// Show one backup: spec, status, files and the warnings/errors it recorded.
    ///
    /// An encrypted backup shows its spec and results only with --identity-file; without one,
    /// what its manifest records (status, files, the recipients' fingerprints).
    Describe(DescribeArgs),
    /// Delete a backup and all its files.
    Delete(NameArgs),
    /// Download a backup's tarball, verified against its manifest.
    ///
    /// An encrypted backup is written decrypted (the Velero tarball) with --identity-file;
    /// --raw writes the stored bytes as they are (still encrypted, `age -d -i KEY` reads them).
    Download(DownloadArgs),
    /// Read every artifact of one backup (or all) and check its size and SHA-256 against the
    /// manifest, restoring nothing. Exits 1 naming each corrupt backup.
    Verify(VerifyArgs),
    /// Print a backup's log (what the engine logged while it ran), decompressed.
    Logs(LogsArgs),
}

#[derive(Args)]
pub struct LogsArgs {
    /// Backup name.
    pub name: String,
    #[command(flatten)]
    pub store: StoreArgs,
    // An encrypted backup's log is encrypted too.
    #[command(flatten)]
    pub identity: IdentityArgs,
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
        vec!["NAME", "OK", "ARTIFACTS", "SIZE", "PROBLEM"]
    }
    fn row(&self) -> Vec<String> {
        vec![
            self.name.clone(),
            self.ok.to_string(),
            self.artifacts.to_string(),
            human_bytes(self.bytes),
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
    #[arg(short = 'l', long, conflicts_with = "or_selector")]
    pub selector: Option<String>,
    /// Objects matching any of these selectors (repeatable, as Velero's `--or-selector`);
    /// instead of --selector.
    #[arg(long)]
    pub or_selector: Vec<String>,
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
    #[command(flatten)]
    pub encrypt: EncryptArgs,
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
pub struct DescribeArgs {
    /// Backup name.
    pub name: String,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub identity: IdentityArgs,
    /// Also list every resource the backup holds, by API version and kind, as `velero backup
    /// describe --details` does (read from its resource list).
    #[arg(long)]
    pub details: bool,
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Args)]
pub struct DownloadArgs {
    /// Backup name.
    pub name: String,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub identity: IdentityArgs,
    /// Write the tarball exactly as stored: for an encrypted backup the age ciphertext, which
    /// `age -d -i KEY` decrypts. Verified against the manifest's checksum; needs no key.
    #[arg(long, conflicts_with = "identity_files")]
    pub raw: bool,
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
            human_bytes(self.size),
        ]
    }
}

fn ts(t: Option<jiff::Timestamp>) -> String {
    t.map(|t| t.to_string()).unwrap_or_else(|| "-".into())
}

fn row(manifest: &Manifest, backup: &StoredBackup) -> BackupRow {
    BackupRow {
        name: manifest.name.to_string(),
        phase: backup.phase.to_string(),
        items: backup.items_backed_up,
        errors: backup.errors,
        warnings: backup.warnings,
        created: manifest.created.to_string(),
        expires: ts(manifest.expires_at),
        size: manifest.total_size(),
    }
}

/// What a backup records about itself: from its manifest, which needs no key (also for an
/// encrypted backup), else from its `velero-backup.json` (manifests that predate the facts).
/// Either being unreadable is an error.
async fn facts(repo: &Repository, manifest: &Manifest) -> Result<StoredBackup> {
    if let Some(facts) = stored::from_attributes(manifest)? {
        return Ok(facts);
    }
    let object = read_backup_object(repo, &manifest.name).await?;
    Ok(stored::from_object(&object))
}

pub async fn run(command: BackupCommand) -> Result<ExitCode> {
    match command {
        BackupCommand::Create(args) => create(*args).await,
        BackupCommand::List(args) => list(args).await,
        BackupCommand::Describe(args) => describe(args).await,
        BackupCommand::Delete(args) => delete(args).await,
        BackupCommand::Download(args) => download(args).await,
        BackupCommand::Verify(args) => verify(args).await,
        BackupCommand::Logs(args) => logs(args).await,
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
    for selector in &args.or_selector {
        spec.filter.or_label_selectors.push(
            LabelSelector::parse(selector)
                .with_context(|| format!("--or-selector {selector:?}"))?,
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
    // Every input is checked before anything is read or connected to.
    backup_core::validate_dns1123_subdomain(&args.name)
        .map_err(|e| anyhow::anyhow!("backup name {:?}: {e}", args.name))?;
    BackupName::new(args.name.as_str())?;
    let spec = spec(&args)?;
    let repo = args.encrypt.apply(args.store.open()?)?;
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
    let facts = facts(&repo, &manifest)
        .await
        .with_context(|| format!("backup {name} was written but cannot be read back"))?;
    output::print(&[row(&manifest, &facts)], args.output)?;
    if manifest.is_encrypted() {
        eprintln!(
            "encrypted with age to recipient fingerprint(s) {}",
            fingerprints(&manifest.recipients())
        );
    }
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
        match facts(&repo, manifest).await {
            Ok(facts) => rows.push(row(manifest, &facts)),
            Err(e) => unreadable.push((manifest.name.to_string(), format!("{e:#}"))),
        }
    }
    output::print(&rows, args.output)?;
    args.store.hint_when_empty(
        "backups",
        rows.len() + unreadable.len() + listing.problems.len(),
    );
    for (name, problem) in &listing.problems {
        unreadable.push((name.to_string(), problem.to_string()));
    }
    for (name, problem) in &unreadable {
        eprintln!("error: backup {name} is unreadable and not listed: {problem}");
    }
    args.store.warn_of_legacy_layout(&repo).await?;
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
    /// `null` for an encrypted backup described without its identity.
    velero_backup: Option<serde_json::Value>,
    files: Vec<backup_storage::ArtifactRecord>,
    /// Fingerprints of the age recipients the backup is encrypted to (absent: not encrypted).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    encrypted_to: Vec<Fingerprint>,
    results: OperationResults,
    /// With `--details`: `"<apiVersion>/<Kind>"` to the items, as Velero's resource list.
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_list: Option<ResourceList>,
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

async fn describe(args: DescribeArgs) -> Result<ExitCode> {
    let identities = args.identity.identities()?;
    let name = BackupName::new(args.name.as_str())?;
    let mut repo = args.store.open()?;
    let given = identities.is_some();
    if let Some(identities) = identities {
        repo = repo.with_identities(identities);
    }
    let manifest = repo.get_manifest(BackupKind::Resources, &name).await?;
    let encrypted_to = manifest.recipients();
    // Without a key, an encrypted backup shows what its manifest records; a key that does not
    // fit is an error (it was meant to work).
    let readable = match repo.ensure_readable(&manifest) {
        Ok(()) => true,
        Err(e) if given => return Err(e.into()),
        Err(_) => false,
    };
    if args.details && !readable {
        bail!(
            "backup {name} is encrypted: --details needs --identity-file with the key of \
             recipient fingerprint(s) {}",
            fingerprints(&encrypted_to)
        );
    }
    let files = BackupFiles::new(&name)?;
    let resource_list = if args.details {
        let bytes = read_all(&repo, &name, &files.resource_list)
            .await
            .context("reading the backup's resource list")?;
        Some(gunzip_json::<ResourceList>(&bytes).context("decoding the backup's resource list")?)
    } else {
        None
    };
    let (summary, velero_backup, results) = if readable {
        let object_json = read_all(&repo, &name, &files.backup_object).await?;
        let object = BackupObject::from_json(&object_json)?;
        let results: OperationResults = gunzip_json(
            &read_all(&repo, &name, &files.results)
                .await
                .context("reading the backup's results")?,
        )
        .context("decoding the backup's results")?;
        (
            row(&manifest, &stored::from_object(&object)),
            Some(serde_json::from_slice(&object_json)?),
            results,
        )
    } else {
        (
            row(&manifest, &facts(&repo, &manifest).await?),
            None,
            OperationResults::default(),
        )
    };
    let description = Description {
        summary,
        velero_backup,
        files: manifest.artifacts.clone(),
        encrypted_to,
        results,
        resource_list,
    };
    output::print(std::slice::from_ref(&description), args.output)?;
    if args.output == OutputFormat::Table {
        match &description.velero_backup {
            Some(object) => {
                println!(
                    "\nSpec:\n{}",
                    serde_json::to_string_pretty(&object["spec"])?
                );
            }
            None => println!(
                "\nSpec: encrypted; give --identity-file with the key of recipient fingerprint(s) {} to show it and the results",
                fingerprints(&description.encrypted_to)
            ),
        }
        println!("\nFiles:");
        for f in &description.files {
            let encrypted = f.encryption.as_ref().map_or(String::new(), |e| {
                format!("  encrypted (age) to {}", fingerprints(&e.recipients))
            });
            println!(
                "  {}  {}  sha256 {}{encrypted}",
                f.name,
                human_bytes(f.size),
                f.sha256
            );
        }
        if let Some(list) = &description.resource_list {
            println!("\nResource List:");
            for (kind, items) in &list.0 {
                println!("  {kind}:");
                for item in items {
                    println!("    - {item}");
                }
            }
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
    // A damaged backup must stay deletable: unreadable facts are reported, and the backup is
    // deleted all the same.
    let facts = facts(&repo, &manifest).await;
    repo.delete(BackupKind::Resources, &name).await?;
    match facts {
        Ok(facts) => {
            let mut r = row(&manifest, &facts);
            r.phase = "Deleted".into();
            output::print(&[r], args.output)?;
        }
        Err(e) => {
            eprintln!("warning: its velero-backup.json was unreadable ({e:#})");
            println!(
                "deleted backup {name} ({})",
                human_bytes(manifest.total_size())
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn logs(args: LogsArgs) -> Result<ExitCode> {
    let name = BackupName::new(args.name.as_str())
        .with_context(|| format!("invalid backup name {:?}", args.name))?;
    let repo = args.identity.apply(args.store.open()?)?;
    let files = BackupFiles::new(&name)?;
    let manifest = repo.get_manifest(BackupKind::Resources, &name).await?;
    repo.ensure_readable(&manifest)
        .with_context(|| format!("cannot read the log of backup {name}"))?;
    let mut compressed = Vec::new();
    repo.download_artifact_to(BackupKind::Resources, &name, &files.logs, &mut compressed)
        .await
        .with_context(|| format!("cannot read the log of backup {name}"))?;
    let text = backup_velero::format::gunzip_bytes(&compressed)
        .with_context(|| format!("the log of backup {name} is not gzip"))?;
    std::io::Write::write_all(&mut std::io::stdout().lock(), &text)?;
    Ok(ExitCode::SUCCESS)
}

async fn download(args: DownloadArgs) -> Result<ExitCode> {
    let name = BackupName::new(args.name.as_str())?;
    let repo = args.identity.apply(args.store.open()?)?;
    let files = BackupFiles::new(&name)?;
    let manifest = repo.get_manifest(BackupKind::Resources, &name).await?;
    if !args.raw {
        // Before the output file is touched: without the key, say which key and what else works.
        repo.ensure_readable(&manifest).with_context(|| {
            format!(
                "cannot download backup {name} decrypted: pass --identity-file with the key of one of its recipients, or --raw for the encrypted tarball"
            )
        })?;
    }
    let decrypted = manifest.is_encrypted() && !args.raw;
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
        let record = if args.raw {
            let mut stream = repo
                .open_stored_artifact(BackupKind::Resources, &name, &files.tarball)
                .await?;
            while let Some(chunk) = stream.next().await {
                tokio::io::AsyncWriteExt::write_all(&mut out, &chunk?).await?;
            }
            stream.record().clone()
        } else {
            repo.download_artifact_to(BackupKind::Resources, &name, &files.tarball, &mut out)
                .await?
        };
        out.sync_all().await?;
        tokio::fs::rename(&temp, &args.file)
            .await
            .with_context(|| format!("cannot move the download to {}", args.file.display()))?;
        anyhow::Ok(record)
    }
    .await;
    match result {
        Ok(record) => {
            let how = match (&record.encryption, decrypted) {
                (None, _) => String::new(),
                (Some(_), true) => " as stored, then decrypted".into(),
                (Some(e), false) => {
                    format!(", still encrypted (age) to {}", fingerprints(&e.recipients))
                }
            };
            println!(
                "downloaded {} ({} bytes, sha256 {} verified{how}) to {}",
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
