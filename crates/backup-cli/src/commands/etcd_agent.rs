//! `backupctl etcd agent`: carries out the EtcdRestores of one cluster next to its etcd.
//!
//! The fleet controller validates an EtcdRestore (its `Ready` condition); this agent takes the
//! validated ones of its cluster, oldest first, and reports on the object as it goes:
//! `Started`, `Restoring`, then `Completed` or `Failed` with a message. The restore itself is
//! `backup_etcd::restore`: verified download, staging next to the data directory, one rename at
//! the end, so a killed agent leaves the directory as it was. A restore found `Started` or
//! `Restoring` when the agent starts was cut off by an earlier agent and is marked `Failed`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use backup_api::{EtcdRestore, EtcdRestorePhase, etcd_restore::is_validated};
use backup_storage::BackupName;
use clap::Args;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;

use super::direct_args::ClusterArgs;
use super::etcd::MemberArgs;

/// The agent's field manager: it owns `phase`, `message` and the times in the status.
const FIELD_MANAGER: &str = "backupctl-etcd-agent";

#[derive(Args)]
pub struct AgentArgs {
    /// The management cluster (where the EtcdRestores are).
    #[command(flatten)]
    pub management: ClusterArgs,
    /// The project: the namespace of the EtcdRestores on the management cluster.
    #[arg(long)]
    pub namespace: String,
    /// The ManagedCluster whose etcd this agent runs next to.
    #[arg(long)]
    pub cluster: String,
    /// The member data directory to restore into; must not exist or be empty.
    #[arg(long)]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub member: MemberArgs,
    /// Carry out the validated restores waiting now, then exit (1 if one failed).
    #[arg(long)]
    pub once: bool,
    /// How often to look for new restores, as a duration (`2s`).
    #[arg(long, default_value = "2s", value_parser = duration)]
    pub poll: Duration,
    /// What the StorageLocation a project wrote may use here, as for the controller.
    #[command(flatten)]
    pub tenancy: backup_kube::tenancy::TenancyArgs,
}

fn duration(raw: &str) -> Result<Duration, String> {
    backup_core::parse_duration(raw).map_err(|e| format!("{raw:?}: {e}"))
}

pub async fn run(args: AgentArgs) -> Result<ExitCode> {
    let client = args.management.client().await?;
    let api: Api<EtcdRestore> = Api::namespaced(client.clone(), &args.namespace);
    for restore in ours(&api, &args).await? {
        let phase = restore.status.as_ref().and_then(|s| s.phase);
        if matches!(
            phase,
            Some(EtcdRestorePhase::Started | EtcdRestorePhase::Restoring)
        ) {
            let started = restore.status.as_ref().and_then(|s| s.start_time);
            report(
                &api,
                &restore.name_any(),
                EtcdRestorePhase::Failed,
                "interrupted: the agent stopped while restoring; the data directory was left as \
                 it was (a restore is moved into place by one rename at its end). Create a new \
                 EtcdRestore to try again",
                started.unwrap_or_else(jiff::Timestamp::now),
                true,
            )
            .await?;
        }
    }
    let mut failed = false;
    loop {
        let mut pending: Vec<EtcdRestore> = ours(&api, &args)
            .await?
            .into_iter()
            .filter(|r| r.status.as_ref().and_then(|s| s.phase).is_none() && is_validated(r))
            .collect();
        pending.sort_by_key(|r| r.metadata.creation_timestamp.clone().map(|t| t.0));
        if pending.is_empty() && args.once {
            eprintln!(
                "no validated EtcdRestore of cluster {} waits in namespace {}",
                args.cluster, args.namespace
            );
        }
        for restore in pending {
            failed |= !carry_out(&client, &api, &args, &restore).await?;
        }
        if args.once {
            return Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            });
        }
        tokio::time::sleep(args.poll).await;
    }
}

/// The EtcdRestores of this agent's cluster.
async fn ours(api: &Api<EtcdRestore>, args: &AgentArgs) -> Result<Vec<EtcdRestore>> {
    Ok(api
        .list(&ListParams::default())
        .await
        .with_context(|| {
            format!(
                "cannot list the EtcdRestores of namespace {}",
                args.namespace
            )
        })?
        .items
        .into_iter()
        .filter(|r| r.spec.cluster == args.cluster)
        .collect())
}

/// Restores one; returns whether it completed.
async fn carry_out(
    client: &kube::Client,
    api: &Api<EtcdRestore>,
    args: &AgentArgs,
    restore: &EtcdRestore,
) -> Result<bool> {
    let name = restore.name_any();
    let backup = &restore.spec.backup_name;
    let started = jiff::Timestamp::now();
    report(
        api,
        &name,
        EtcdRestorePhase::Started,
        "taken by the agent",
        started,
        false,
    )
    .await?;
    eprintln!(
        "EtcdRestore {name}: restoring snapshot {backup} into {}",
        args.data_dir.display()
    );
    let outcome = async {
        let location = backup_kube::locations::open_from_api(
            client,
            &args.namespace,
            restore.spec.storage_location.as_deref(),
            args.tenancy.clone().policy(),
        )
        .await
        .context("cannot open the StorageLocation")?;
        let repo = location.repo.scoped_str(&args.namespace, &args.cluster)?;
        report(
            api,
            &name,
            EtcdRestorePhase::Restoring,
            &format!(
                "downloading, verifying and restoring snapshot {backup} into {}",
                args.data_dir.display()
            ),
            started,
            false,
        )
        .await?;
        let request = args
            .member
            .request(BackupName::new(backup.as_str())?, args.data_dir.clone());
        Ok::<_, anyhow::Error>(backup_etcd::restore(&repo, &request).await?)
    }
    .await;
    match outcome {
        Ok(outcome) => {
            let message = format!(
                "restored snapshot {backup} ({} bytes, revision {}) into {} with {}",
                outcome.db_bytes,
                outcome
                    .revision
                    .map_or_else(|| "unknown".to_string(), |r| r.to_string()),
                outcome.data_dir.display(),
                outcome.tool.display()
            );
            eprintln!("EtcdRestore {name}: {message}");
            report(
                api,
                &name,
                EtcdRestorePhase::Completed,
                &message,
                started,
                true,
            )
            .await?;
            Ok(true)
        }
        Err(e) => {
            let message = format!("{e:#}");
            eprintln!("EtcdRestore {name} failed: {message}");
            report(
                api,
                &name,
                EtcdRestorePhase::Failed,
                &message,
                started,
                true,
            )
            .await?;
            Ok(false)
        }
    }
}

/// Writes the agent's part of the status, whole: server-side apply drops what an apply of
/// the same manager leaves out, so every report carries the start time.
async fn report(
    api: &Api<EtcdRestore>,
    name: &str,
    phase: EtcdRestorePhase,
    message: &str,
    started: jiff::Timestamp,
    finished: bool,
) -> Result<()> {
    let mut status = json!({"phase": phase, "message": message, "startTime": started});
    if finished {
        status["completionTime"] = json!(jiff::Timestamp::now());
    }
    let body = json!({
        "apiVersion": "backupfleet.dev/v1alpha1",
        "kind": "EtcdRestore",
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .with_context(|| format!("cannot report {phase:?} on EtcdRestore {name}"))?;
    Ok(())
}
