//! Arguments and helpers shared by `backupctl backup ...` and `backupctl restore ...`: which
//! cluster (kubeconfig + context), which location and scope, and live progress on a terminal.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use backup_core::{BackupStatus, EngineError};
use backup_kube::kubeconfig;
use backup_storage::Repository;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use kube::Client;

use crate::cli::ScopeArgs;

/// The cluster to read from or restore into.
#[derive(Args)]
pub struct ClusterArgs {
    /// Kubeconfig file of the cluster (default: the files in $KUBECONFIG, else ~/.kube/config,
    /// else the in-cluster configuration when run in a pod).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Context in the kubeconfig (default: its current context).
    #[arg(long)]
    pub context: Option<String>,
}

impl ClusterArgs {
    /// A client for the chosen cluster and context. The error names the kubeconfig file and
    /// context and carries its cause in its own message, so it is printed once.
    pub async fn client(&self) -> Result<Client> {
        let context = self.context.as_deref();
        let client = match &self.kubeconfig {
            Some(path) => kubeconfig::client_from_file(path, context).await?,
            None => kubeconfig::client_from_default(context).await?,
        };
        Ok(client)
    }
}

/// Where backups are stored.
#[derive(Args)]
pub struct StoreArgs {
    /// Location URL, e.g. file:///var/lib/backups or s3://bucket/prefix.
    #[arg(long)]
    pub location: String,
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Location option overriding the environment, e.g. --option region=eu-west-1 (repeatable).
    #[arg(long = "option", value_name = "KEY=VALUE", value_parser = key_value)]
    pub options: Vec<(String, String)>,
}

impl StoreArgs {
    /// The repository confined to the project/cluster scope.
    pub fn open(&self) -> Result<Repository> {
        let options: BTreeMap<String, String> = self.options.iter().cloned().collect();
        Repository::open(&self.location, &options)
            .and_then(|repo| repo.scoped_str(&self.scope.project, &self.scope.cluster))
            .with_context(|| format!("cannot use location {}", self.location))
    }

    /// When a listing of `what` found nothing, says on stderr where it looked and where the
    /// controller keeps a cluster's backups: an empty table alone reads as "nothing was ever
    /// backed up" when usually the scope was not named.
    pub fn hint_when_empty(&self, what: &str, found: usize) {
        if found == 0 {
            eprintln!(
                "no {what} in {}; the controller keeps a ManagedCluster's under --project <its \
                 namespace> --cluster <its name>",
                self.described()
            );
        }
    }

    /// Where these arguments point, as messages name it: `project P, cluster C of LOCATION`.
    pub fn described(&self) -> String {
        format!(
            "project {}, cluster {} of {}",
            self.scope.project, self.scope.cluster, self.location
        )
    }

    /// Says so on stderr when the scope still holds backups in the layout before `velero/`:
    /// they are not listed until `location migrate-layout` moves them.
    pub async fn warn_of_legacy_layout(&self, repo: &Repository) -> Result<()> {
        let legacy = repo.legacy_folders().await?;
        if !legacy.is_empty() {
            let (project, cluster) = (&self.scope.project, &self.scope.cluster);
            eprintln!(
                "warning: {project}/{cluster} also holds backups in the old layout ({}/ directly \
                 in the cluster's folder), which are not listed; move them into its velero/ \
                 folder with: backupctl location migrate-layout {} --project {project} \
                 --cluster {cluster}",
                legacy.join("/, "),
                self.location,
            );
        }
        Ok(())
    }
}

/// Parses `KEY=VALUE`.
pub fn key_value(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().into(), v.into())),
        _ => Err(format!("expected KEY=VALUE, got {raw:?}")),
    }
}

/// Polls `observe` until a terminal phase, drawing a progress bar on a terminal.
pub async fn follow<F, Fut>(label: &str, mut observe: F) -> Result<BackupStatus>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<BackupStatus, EngineError>>,
{
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} items {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(label.to_string());
        bar
    });
    loop {
        let status = observe().await?;
        if let Some(bar) = &bar {
            bar.set_length(status.progress.total_items);
            bar.set_position(status.progress.items_done);
        }
        if status.phase.is_terminal() {
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            return Ok(status);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_needs_a_key() {
        assert_eq!(key_value("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert!(key_value("novalue").is_err());
    }
}
