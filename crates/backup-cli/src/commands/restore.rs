//! `backupctl restore create`: restore (or migrate) a backup into a cluster with the direct
//! engine, in Velero's priority order, with namespace mapping, filters, the existing-resource
//! policy and a dry run that reports what would happen without writing anything.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use backup_core::{
    ExistingResourcePolicy, Phase, RestoreEngine, RestoreOptions, RestoreSpec, RestoreStatusSpec,
};
use backup_velero::direct::{
    Action, DirectEngine, EXISTS_LEFT_UNCHANGED, ItemOutcome, RestoreReport,
};
use clap::{ArgGroup, Args, Subcommand, ValueEnum};
use serde::Serialize;

use super::crypt_args::IdentityArgs;
use super::direct_args::{ClusterArgs, StoreArgs, follow};
use crate::output::{self, OutputFormat, Tabular};

#[derive(Subcommand)]
pub enum RestoreCommand {
    /// Restore a backup into a cluster (the one it came from, or another: a migration).
    Create(Box<CreateArgs>),
    /// List the restores stored in a location scope (their results, logs and resource lists).
    ///
    /// A restore without results yet is still running in another process, or was cut off
    /// before writing them; dry runs store nothing and are not listed. `get` is Velero's name.
    #[command(visible_alias = "get")]
    List(ListArgs),
    /// Show one restore: phase, times, items, and every warning and error it recorded.
    Describe(DescribeArgs),
    /// Delete a restore's stored files (results, log, resource list); restored objects stay.
    Delete(DescribeArgs),
    /// Print a restore's log (what the engine logged while it ran), decompressed.
    Logs(LogsArgs),
}

#[derive(Args)]
pub struct LogsArgs {
    /// The restore's name.
    pub name: String,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Args)]
pub struct DescribeArgs {
    /// The restore's name.
    pub name: String,
    #[command(flatten)]
    pub store: StoreArgs,
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// One stored restore.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StoredRow {
    name: String,
    /// `None` when no results are stored yet.
    phase: Option<String>,
    started: Option<String>,
    completed: Option<String>,
    items: u64,
    warnings: Vec<String>,
    errors: Vec<String>,
}

impl StoredRow {
    fn of(name: &str, status: Option<&backup_core::RestoreStatus>) -> Self {
        StoredRow {
            name: name.to_string(),
            phase: status.map(|s| s.phase.to_string()),
            started: status.and_then(|s| s.started).map(|t| t.to_string()),
            completed: status.and_then(|s| s.completed).map(|t| t.to_string()),
            items: status.map_or(0, |s| s.progress.items_done),
            warnings: status.map(|s| s.warnings.clone()).unwrap_or_default(),
            errors: status
                .map(|s| {
                    s.validation_errors
                        .iter()
                        .chain(&s.errors)
                        .cloned()
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

impl Tabular for StoredRow {
    fn header() -> Vec<&'static str> {
        vec![
            "NAME",
            "STATUS",
            "STARTED",
            "COMPLETED",
            "ITEMS",
            "WARNINGS",
            "ERRORS",
        ]
    }
    fn row(&self) -> Vec<String> {
        let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        vec![
            self.name.clone(),
            self.phase
                .clone()
                .unwrap_or_else(|| "no results (running elsewhere, or cut off)".into()),
            or_dash(&self.started),
            or_dash(&self.completed),
            self.items.to_string(),
            self.warnings.len().to_string(),
            self.errors.len().to_string(),
        ]
    }
}

/// What to do with objects that already exist.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Policy {
    /// Leave them unchanged and warn.
    None,
    /// Overwrite them with the backed-up version.
    Update,
}

#[derive(Args)]
#[command(group(ArgGroup::new("source").required(true).args(["from_backup", "from_schedule"])))]
pub struct CreateArgs {
    /// Restore name (DNS-1123 subdomain); its results are stored under restores/<name>/.
    pub name: String,
    /// The backup to restore.
    #[arg(
        long,
        required_unless_present = "from_schedule",
        conflicts_with = "from_schedule"
    )]
    pub from_backup: Option<String>,
    /// Restore the newest Completed backup of this schedule (backups created with
    /// `backup create --schedule NAME`, or by a schedule), as Velero's `--from-schedule` does.
    #[arg(long)]
    pub from_schedule: Option<String>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    // Needed for an encrypted backup; checked before anything is created in the cluster.
    #[command(flatten)]
    pub identity: IdentityArgs,
    /// Namespaces to restore (globs allowed), comma-separated; default all in the backup.
    #[arg(long, value_delimiter = ',')]
    pub include_namespaces: Vec<String>,
    /// Namespaces not to restore, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub exclude_namespaces: Vec<String>,
    /// Resources to restore, comma-separated; default all.
    #[arg(long, value_delimiter = ',')]
    pub include_resources: Vec<String>,
    /// Resources not to restore, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub exclude_resources: Vec<String>,
    /// Restore namespace a as b: a:b,c:d.
    #[arg(long, value_delimiter = ',', value_parser = mapping)]
    pub namespace_mapping: Vec<(String, String)>,
    /// Objects that already exist: keep them (none) or overwrite them (update).
    #[arg(long, value_enum, default_value_t = Policy::None)]
    pub existing_resource_policy: Policy,
    /// Also restore the status of these resources (`*` for all), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub restore_status: Vec<String>,
    /// Report what would be created, updated or skipped, without writing anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Velero's resource-modifier rules (a YAML file, `version: v1`): JSON patches or JSON
    /// merge patches applied to the objects they select before they are created.
    #[arg(long, value_name = "FILE")]
    pub resource_modifiers: Option<std::path::PathBuf>,
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

fn mapping(raw: &str) -> Result<(String, String), String> {
    match raw.split_once(':') {
        Some((a, b)) if !a.is_empty() && !b.is_empty() => Ok((a.into(), b.into())),
        _ => Err(format!("expected SOURCE:TARGET, got {raw:?}")),
    }
}

/// The summary of one restore.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Summary {
    name: String,
    backup: String,
    phase: String,
    dry_run: bool,
    created: usize,
    updated: usize,
    skipped: usize,
    failed: usize,
    warnings: usize,
    errors: usize,
}

impl Tabular for Summary {
    fn header() -> Vec<&'static str> {
        vec![
            "NAME", "BACKUP", "STATUS", "CREATED", "UPDATED", "SKIPPED", "FAILED", "WARNINGS",
            "ERRORS",
        ]
    }
    fn row(&self) -> Vec<String> {
        let created = if self.dry_run {
            format!("{} (dry run)", self.created)
        } else {
            self.created.to_string()
        };
        vec![
            self.name.clone(),
            self.backup.clone(),
            self.phase.clone(),
            created,
            self.updated.to_string(),
            self.skipped.to_string(),
            self.failed.to_string(),
            self.warnings.to_string(),
            self.errors.to_string(),
        ]
    }
}

impl Tabular for ItemOutcome {
    fn header() -> Vec<&'static str> {
        vec!["RESOURCE", "NAMESPACE", "NAME", "ACTION"]
    }
    fn row(&self) -> Vec<String> {
        vec![
            self.resource.clone(),
            self.namespace.clone().unwrap_or_else(|| "-".into()),
            self.name.clone(),
            format!("{:?}", self.action),
        ]
    }
}

/// JSON/YAML output: the summary plus the detailed report.
#[derive(Serialize)]
struct Full {
    #[serde(flatten)]
    summary: Summary,
    report: RestoreReport,
}

impl Tabular for Full {
    fn header() -> Vec<&'static str> {
        Summary::header()
    }
    fn row(&self) -> Vec<String> {
        self.summary.row()
    }
}

pub async fn run(command: RestoreCommand) -> Result<ExitCode> {
    match command {
        RestoreCommand::Create(args) => create(*args).await,
        RestoreCommand::List(args) => list(args).await,
        RestoreCommand::Describe(args) => describe(args).await,
        RestoreCommand::Delete(args) => delete(args).await,
        RestoreCommand::Logs(args) => logs(args).await,
    }
}

async fn list(args: ListArgs) -> Result<ExitCode> {
    let repo = args.store.open()?;
    let restores = backup_velero::direct::list_restores(&repo)
        .await
        .context("cannot list the restores")?;
    let rows: Vec<StoredRow> = restores
        .iter()
        .map(|(name, status)| StoredRow::of(name.as_str(), status.as_ref()))
        .collect();
    output::print(&rows, args.output)?;
    args.store.hint_when_empty("restores", rows.len());
    args.store.warn_of_legacy_layout(&repo).await?;
    Ok(ExitCode::SUCCESS)
}

/// The restore's name, checked, and what storage holds of it.
async fn stored(
    args: &DescribeArgs,
) -> Result<(
    backup_storage::Repository,
    Option<backup_core::RestoreStatus>,
)> {
    let name = backup_storage::BackupName::new(args.name.as_str())
        .with_context(|| format!("invalid restore name {:?}", args.name))?;
    let repo = args.store.open()?;
    let status = backup_velero::direct::stored_restore(&repo, &name)
        .await
        .with_context(|| format!("cannot read restore {}", args.name))?;
    Ok((repo, status))
}

async fn describe(args: DescribeArgs) -> Result<ExitCode> {
    let (_, status) = stored(&args).await?;
    let Some(status) = status else {
        bail!(
            "no stored results of restore {} in {} {NOT_STORED_HINT}",
            args.name,
            args.store.described()
        );
    };
    let row = StoredRow::of(&args.name, Some(&status));
    match args.output {
        OutputFormat::Table => {
            output::print(std::slice::from_ref(&row), OutputFormat::Table)?;
            for w in &row.warnings {
                println!("warning: {w}");
            }
            for e in &row.errors {
                println!("error: {e}");
            }
        }
        format => output::print(&[row], format)?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn delete(args: DescribeArgs) -> Result<ExitCode> {
    let (repo, _) = stored(&args).await?;
    let deleted = backup_velero::direct::delete_restore(&repo, &args.name)
        .await
        .with_context(|| format!("cannot delete restore {}", args.name))?;
    if deleted == 0 {
        bail!(
            "no restore {} in {}: nothing deleted",
            args.name,
            args.store.described()
        );
    }
    println!("restore {}: {deleted} file(s) deleted", args.name);
    Ok(ExitCode::SUCCESS)
}

/// What to do when a restore's record is not where the arguments point.
const NOT_STORED_HINT: &str =
    "(`backupctl restore list` shows what is there; dry runs store nothing)";

async fn logs(args: LogsArgs) -> Result<ExitCode> {
    let name = backup_storage::BackupName::new(args.name.as_str())
        .with_context(|| format!("invalid restore name {:?}", args.name))?;
    let repo = args.store.open()?;
    let Some(log) = backup_velero::direct::restore_log(&repo, &name)
        .await
        .with_context(|| format!("cannot read the log of restore {name}"))?
    else {
        bail!(
            "no stored log of restore {name} in {} {NOT_STORED_HINT}",
            args.store.described()
        );
    };
    std::io::Write::write_all(&mut std::io::stdout().lock(), &log)?;
    Ok(ExitCode::SUCCESS)
}

fn spec(args: &CreateArgs) -> Result<RestoreSpec> {
    let mut spec = RestoreSpec {
        backup_name: args.from_backup.clone(),
        schedule_name: args.from_schedule.clone(),
        options: RestoreOptions {
            namespace_mapping: args
                .namespace_mapping
                .iter()
                .cloned()
                .collect::<BTreeMap<_, _>>(),
            existing_resource_policy: match args.existing_resource_policy {
                Policy::None => ExistingResourcePolicy::None,
                Policy::Update => ExistingResourcePolicy::Update,
            },
            dry_run: args.dry_run,
            ..RestoreOptions::default()
        },
        ..RestoreSpec::default()
    };
    spec.options.filter.included_namespaces = args.include_namespaces.clone();
    spec.options.filter.excluded_namespaces = args.exclude_namespaces.clone();
    spec.options.filter.included_resources = args.include_resources.clone();
    spec.options.filter.excluded_resources = args.exclude_resources.clone();
    if !args.restore_status.is_empty() {
        spec.options.restore_status = Some(RestoreStatusSpec {
            included_resources: args.restore_status.clone(),
            ..RestoreStatusSpec::default()
        });
    }
    if let Some(file) = &args.resource_modifiers {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("--resource-modifiers: cannot read {}", file.display()))?;
        let document = serde_yaml_ng::from_str(&text).with_context(|| {
            format!(
                "--resource-modifiers {}: not a resource-modifier document",
                file.display()
            )
        })?;
        spec.resource_modifiers = Some(document);
    }
    spec.validate().context("invalid restore")?;
    Ok(spec)
}

async fn create(args: CreateArgs) -> Result<ExitCode> {
    let spec = spec(&args)?;
    let repo = args.identity.apply(args.store.open()?)?;
    let client = args.cluster.client().await?;
    let engine = DirectEngine::new(client, repo);
    engine
        .start_restore(&args.name, &spec)
        .await
        .with_context(|| format!("cannot start restore {}", args.name))?;
    let status = follow(&format!("restore {}", args.name), || {
        engine.observe_restore(&args.name)
    })
    .await?;
    if status.phase == Phase::Failed {
        bail!("restore {} failed: {}", args.name, status.errors.join("; "));
    }
    let report = engine.restore_report(&args.name).with_context(|| {
        format!(
            "restore {} finished but its report is gone from this process",
            args.name
        )
    })?;
    let summary = Summary {
        name: args.name.clone(),
        backup: report.backup.clone(),
        phase: status.phase.to_string(),
        dry_run: spec.options.dry_run,
        created: report.count(Action::Created),
        updated: report.count(Action::Updated),
        skipped: report.count(Action::Skipped),
        failed: report.count(Action::Failed),
        warnings: status.warnings.len(),
        errors: status.errors.len(),
    };
    match args.output {
        OutputFormat::Table => {
            output::print(&[summary], OutputFormat::Table)?;
            if spec.options.dry_run {
                println!();
                output::print(
                    &report.items.iter().collect::<Vec<_>>(),
                    OutputFormat::Table,
                )?;
            }
            for line in warning_lines(&status.warnings, &args.name) {
                eprintln!("warning: {line}");
            }
            for e in &status.errors {
                eprintln!("error: {e}");
            }
        }
        format => output::print(&[Full { summary, report }], format)?,
    }
    Ok(if status.phase == Phase::Completed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Warnings shown after a restore: each one, except that objects left alone because they
/// already existed (thousands when restoring over a live namespace) are one line saying how
/// many and where the list is.
fn warning_lines(warnings: &[String], restore: &str) -> Vec<String> {
    let (existing, others): (Vec<&String>, Vec<&String>) = warnings
        .iter()
        .partition(|w| w.ends_with(EXISTS_LEFT_UNCHANGED));
    let mut lines: Vec<String> = others.into_iter().cloned().collect();
    match existing.as_slice() {
        [] => {}
        [one] => lines.push((*one).clone()),
        many => lines.push(format!(
            "{} objects already existed and were left unchanged (existingResourcePolicy none; \
             --existing-resource-policy update overwrites them); `backupctl restore describe \
             {restore}` lists them",
            many.len()
        )),
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_left_alone_because_they_existed_are_one_line() {
        let existing = |name: &str| {
            format!("could not restore configmaps shop/{name}: {EXISTS_LEFT_UNCHANGED}")
        };
        let mut warnings: Vec<String> = (0..3134).map(|i| existing(&format!("cm-{i}"))).collect();
        warnings.push("could not list secrets: forbidden".into());
        let lines = warning_lines(&warnings, "back");
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[0], "could not list secrets: forbidden");
        assert!(
            lines[1].starts_with("3134 objects already existed")
                && lines[1].contains("backupctl restore describe back"),
            "{}",
            lines[1]
        );
        // One is shown as it is.
        assert_eq!(warning_lines(&[existing("a")], "back"), [existing("a")]);
    }

    #[test]
    fn namespace_mapping_needs_both_sides() {
        assert_eq!(mapping("a:b").unwrap(), ("a".into(), "b".into()));
        for bad in ["a", ":b", "a:"] {
            assert!(mapping(bad).unwrap_err().contains("SOURCE:TARGET"));
        }
    }
}
