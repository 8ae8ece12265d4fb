//! `backupctl location ...`

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Context, Result};
use backup_storage::{Availability, Repository};
use serde::Serialize;

use crate::cli::{LocationCheckArgs, LocationGcArgs, LocationMigrateArgs};
use crate::output::{self, Tabular};

#[derive(Serialize)]
struct CheckReport {
    location: String,
    scope: String,
    available: bool,
    reason: &'static str,
    message: String,
}

impl Tabular for CheckReport {
    fn header() -> Vec<&'static str> {
        vec!["LOCATION", "SCOPE", "AVAILABLE", "REASON", "MESSAGE"]
    }
    fn row(&self) -> Vec<String> {
        vec![
            self.location.clone(),
            self.scope.clone(),
            self.available.to_string(),
            self.reason.into(),
            self.message.clone(),
        ]
    }
}

pub async fn check(args: LocationCheckArgs) -> Result<ExitCode> {
    let options: BTreeMap<String, String> = args.options.into_iter().collect();
    let repository = Repository::open(&args.location, &options)
        .and_then(|repo| repo.scoped_str(&args.scope.project, &args.scope.cluster))
        .with_context(|| format!("cannot use location {}", args.location))?;
    let availability = repository.probe().await;
    let report = CheckReport {
        location: args.location,
        scope: format!("{}/{}", args.scope.project, args.scope.cluster),
        available: availability.is_available(),
        reason: availability.reason(),
        message: availability.to_string(),
    };
    output::print(std::slice::from_ref(&report), args.output)?;
    Ok(match availability {
        Availability::Available => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    })
}

/// One interrupted upload found (and removed unless `--dry-run`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OrphanRow {
    kind: &'static str,
    name: String,
    objects: usize,
    bytes: u64,
    last_modified: String,
    removed: bool,
}

impl Tabular for OrphanRow {
    fn header() -> Vec<&'static str> {
        vec![
            "KIND",
            "NAME",
            "OBJECTS",
            "BYTES",
            "LAST MODIFIED",
            "REMOVED",
        ]
    }
    fn row(&self) -> Vec<String> {
        vec![
            self.kind.into(),
            self.name.clone(),
            self.objects.to_string(),
            self.bytes.to_string(),
            self.last_modified.clone(),
            self.removed.to_string(),
        ]
    }
}

pub async fn gc(args: LocationGcArgs) -> Result<ExitCode> {
    let grace = backup_core::parse_duration(&args.grace)
        .ok()
        .and_then(|d| jiff::SignedDuration::try_from(d).ok())
        .with_context(|| {
            format!(
                "--grace {:?} is not a duration: use a Go duration such as 24h or 90m",
                args.grace
            )
        })?;
    let options: BTreeMap<String, String> = args.options.into_iter().collect();
    let repository = Repository::open(&args.location, &options)
        .and_then(|repo| repo.scoped_str(&args.scope.project, &args.scope.cluster))
        .with_context(|| format!("cannot use location {}", args.location))?;
    let now = jiff::Timestamp::now();
    let mut rows = Vec::new();
    for kind in [
        backup_storage::BackupKind::Resources,
        backup_storage::BackupKind::EtcdSnapshot,
    ] {
        let found = if args.dry_run {
            repository.orphans(kind, grace, now).await?
        } else {
            repository.remove_orphans(kind, grace, now).await?
        };
        rows.extend(found.into_iter().map(|o| OrphanRow {
            kind: kind.dir(),
            name: o.name,
            objects: o.objects,
            bytes: o.bytes,
            last_modified: o.last_modified.to_string(),
            removed: !args.dry_run,
        }));
    }
    output::print(&rows, args.output)?;
    Ok(ExitCode::SUCCESS)
}

/// One cluster's move out of the old layout.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MigrationRow {
    scope: String,
    /// The old layout's folders found (`backups`, `restores`).
    legacy_folders: Vec<&'static str>,
    /// Backup and restore folders moved (0 on a dry run).
    moved: usize,
    objects_copied: usize,
    objects_deleted: usize,
}

impl Tabular for MigrationRow {
    fn header() -> Vec<&'static str> {
        vec!["SCOPE", "OLD FOLDERS", "MOVED", "COPIED", "DELETED"]
    }
    fn row(&self) -> Vec<String> {
        vec![
            self.scope.clone(),
            self.legacy_folders.join(","),
            self.moved.to_string(),
            self.objects_copied.to_string(),
            self.objects_deleted.to_string(),
        ]
    }
}

pub async fn migrate_layout(args: LocationMigrateArgs) -> Result<ExitCode> {
    let options: BTreeMap<String, String> = args.options.into_iter().collect();
    let location = Repository::open(&args.location, &options)
        .with_context(|| format!("cannot use location {}", args.location))?;
    let scopes = if args.all_clusters {
        location.legacy_scopes().await?
    } else {
        vec![(args.scope.project, args.scope.cluster)]
    };
    let mut rows = Vec::new();
    for (project, cluster) in scopes {
        let scope = format!("{project}/{cluster}");
        let repository = location.scoped_str(&project, &cluster)?;
        let legacy_folders = repository.legacy_folders().await?;
        let moved = if args.dry_run || legacy_folders.is_empty() {
            backup_storage::Migrated::default()
        } else {
            repository
                .migrate_legacy_layout()
                .await
                .with_context(|| format!("moving the backups of {scope}"))?
        };
        rows.push(MigrationRow {
            scope,
            legacy_folders,
            moved: moved.folders.len(),
            objects_copied: moved.copied,
            objects_deleted: moved.deleted,
        });
    }
    output::print(&rows, args.output)?;
    Ok(ExitCode::SUCCESS)
}
