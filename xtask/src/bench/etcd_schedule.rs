//! `cargo xtask bench etcd-schedule`: EtcdBackupConfigs at `@every 1m` on the three etcds of
//! the local control plane (mgmt, c1, c2), run by the controller for `--minutes`, then checked:
//! - on time: the lag from each slot (`scheduledTime`) to the snapshot's start
//!   (`backupStartTime`), max and p99 over every snapshot (goal ≤ 1 s);
//! - every slot: consecutive snapshots of a config are exactly one minute apart, none missed;
//! - rotation exact: storage holds exactly the newest `keep` snapshots of each config, the ones
//!   the status shows as kept.
//!
//! The controller runs as built (release) with its default flags; the project, its storage
//! prefix and bucket are removed at the end.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use backup_api::{BackupRecord, EtcdBackupConfig};
use backup_core::Phase;
use backup_localenv::env_state::EnvState;
use jiff::Timestamp;
use kube::Api;
use serde_json::json;

use crate::fleet::{self, ControllerProcess};

#[derive(clap::Args)]
pub struct EtcdScheduleBenchArgs {
    /// How long the schedules run.
    #[arg(long, default_value_t = 10)]
    pub minutes: u64,
    /// Snapshots kept per config.
    #[arg(long, default_value_t = 3)]
    pub keep: u32,
}

const CLUSTERS: [&str; 3] = ["mgmt", "c1", "c2"];
/// The location's prefix.
const PREFIX: &str = "etcd";

pub fn run(args: EtcdScheduleBenchArgs) -> Result<()> {
    ensure!(args.minutes >= 2, "--minutes must be at least 2");
    let env_dir = crate::env::default_dir()?;
    crate::env::up_default(&env_dir)?;
    let controller = fleet::build("backup-controller", "backup-controller", true)?;
    tokio::runtime::Runtime::new()?.block_on(bench(args, &env_dir, &controller))
}

async fn bench(args: EtcdScheduleBenchArgs, env_dir: &Path, binary: &Path) -> Result<()> {
    let mut state = EnvState::load(env_dir)?
        .with_context(|| format!("no environment in {} (env.json missing)", env_dir.display()))?;
    let project = backup_localenv::unique_name("bench", "etcd-schedule");
    state.s3.bucket = project.clone();
    state.s3.location = format!("s3://{project}");
    std::fs::create_dir_all(state.s3.root.join(&state.s3.bucket))?;
    let mgmt = backup_localenv::env::client_for(state.cluster("mgmt")?).await?;
    let mut controller: Option<ControllerProcess> = None;
    let result = measure(&args, &state, &project, &mgmt, binary, &mut controller).await;
    eprintln!("cleaning up");
    if let Some(mut process) = controller.take() {
        process.stop()?;
    }
    let cleaned = fleet::delete_project(&mgmt, &project, Duration::from_secs(120)).await;
    let _ = std::fs::remove_dir_all(state.s3.root.join(&state.s3.bucket));
    result.and(cleaned)
}

async fn measure(
    args: &EtcdScheduleBenchArgs,
    state: &EnvState,
    project: &str,
    mgmt: &kube::Client,
    binary: &Path,
    controller: &mut Option<ControllerProcess>,
) -> Result<()> {
    // A short prefix: s3s-fs keeps per-object files named after the whole key, and the file
    // system refuses names over 255 bytes.
    fleet::create_project(mgmt, state, project, PREFIX, &CLUSTERS, |info, cluster| {
        cluster["spec"]["etcd"] = json!({"endpoints": [info.etcd_endpoint]});
    })
    .await?;
    let configs: Api<EtcdBackupConfig> = Api::namespaced(mgmt.clone(), project);
    for name in CLUSTERS {
        fleet::apply(
            &configs,
            &json!({
                "apiVersion": "backupfleet.dev/v1alpha1", "kind": "EtcdBackupConfig",
                "metadata": {"name": format!("{name}-etcd")},
                "spec": {"cluster": name, "schedule": "@every 1m", "keep": args.keep}
            }),
        )
        .await?;
    }
    let log = crate::env::default_dir()?
        .join("controller-logs")
        .join(format!("{project}.log"));
    eprintln!(
        "EtcdBackupConfigs @every 1m (keep {}) on the etcds of {}; running the controller for {} \
         minutes (log: {})",
        args.keep,
        CLUSTERS.join(", "),
        args.minutes,
        log.display()
    );
    *controller =
        Some(ControllerProcess::start(binary, state.cluster("mgmt")?, project, log).await?);
    // The status keeps only the newest few records: collect every record as it goes by.
    let mut seen: BTreeMap<(String, String), BackupRecord> = BTreeMap::new();
    let start = Instant::now();
    let run_for = Duration::from_secs(args.minutes * 60);
    let mut last_report = Instant::now();
    loop {
        let done = start.elapsed() >= run_for + Duration::from_secs(10);
        for name in CLUSTERS {
            let config = format!("{name}-etcd");
            let records = configs
                .get(&config)
                .await?
                .status
                .map(|s| s.last_backups)
                .unwrap_or_default();
            for r in records.into_iter().filter(|r| r.backup_phase.is_terminal()) {
                seen.insert((config.clone(), r.backup_name.clone()), r);
            }
        }
        if done {
            break;
        }
        if last_report.elapsed() >= Duration::from_secs(60) {
            eprintln!(
                "  {} s: {} snapshots seen",
                start.elapsed().as_secs(),
                seen.len()
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }

    let mut lags: Vec<f64> = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    let mut snapshots = 0;
    for name in CLUSTERS {
        let config = format!("{name}-etcd");
        let records: Vec<&BackupRecord> = seen
            .iter()
            .filter(|((c, _), _)| *c == config)
            .map(|(_, r)| r)
            .collect();
        for r in &records {
            if r.backup_phase != Phase::Completed {
                problems.push(format!(
                    "{config}: {} {}: {:?}",
                    r.backup_name, r.backup_phase, r.message
                ));
                continue;
            }
            let (Some(slot), Some(started)) = (r.scheduled_time, r.backup_start_time) else {
                problems.push(format!("{config}: {} has no times", r.backup_name));
                continue;
            };
            lags.push(started.duration_since(slot).as_secs_f64());
            snapshots += 1;
        }
        // Every slot: each one minute after the previous, none missed.
        let mut slots: Vec<Timestamp> = records.iter().filter_map(|r| r.scheduled_time).collect();
        slots.sort();
        for pair in slots.windows(2) {
            let gap = pair[1].duration_since(pair[0]).as_secs_f64();
            if (gap - 60.0).abs() > 0.001 {
                problems.push(format!(
                    "{config}: slots {} and {} are {gap} s apart",
                    pair[0], pair[1]
                ));
            }
        }
        let expected = args.minutes as usize;
        if slots.len() + 1 < expected {
            problems.push(format!(
                "{config}: {} snapshots in {} minutes",
                slots.len(),
                args.minutes
            ));
        }
        let object = configs.get(&config).await?;
        let records: Vec<BackupRecord> = object.status.map(|s| s.last_backups).unwrap_or_default();
        // Rotation exact: storage holds the kept ones, and only them.
        let options = [
            ("region", state.s3.region.clone()),
            ("s3Url", state.s3.endpoint.clone()),
            ("access_key_id", state.s3.access_key_id.clone()),
            ("secret_access_key", state.s3.secret_access_key.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let repo =
            backup_storage::Repository::open(&format!("{}/{PREFIX}", state.s3.location), &options)?
                .scoped_str(project, name)?;
        let listing = repo.list(backup_core::BackupKind::EtcdSnapshot).await?;
        ensure!(
            listing.problems.is_empty(),
            "{config}: {:?}",
            listing.problems
        );
        let stored: Vec<String> = listing
            .manifests
            .iter()
            .map(|m| m.name.to_string())
            .filter(|n| n.starts_with(&format!("{config}-")))
            .collect();
        let kept: Vec<String> = records
            .iter()
            .filter(|r| r.backup_phase == Phase::Completed && r.delete_phase.is_none())
            .map(|r| r.backup_name.clone())
            .collect();
        let mut stored_sorted = stored.clone();
        stored_sorted.sort();
        let mut kept_sorted = kept.clone();
        kept_sorted.sort();
        if stored_sorted != kept_sorted || stored.len() != args.keep as usize {
            problems.push(format!(
                "{config}: storage holds {stored:?}, status keeps {kept:?} (keep {})",
                args.keep
            ));
        }
        let deleted = records
            .iter()
            .filter(|r| r.delete_phase == Some(Phase::Completed))
            .count();
        eprintln!(
            "  {config}: {} snapshots taken, {} kept in storage, {deleted} rotated out at the last run",
            slots.len(),
            stored.len()
        );
    }
    lags.sort_by(f64::total_cmp);
    let max = lags.last().copied().unwrap_or(f64::NAN);
    let p99 = lags
        .get(((lags.len() as f64 * 0.99).ceil() as usize).saturating_sub(1))
        .copied()
        .unwrap_or(f64::NAN);
    println!(
        "\netcd-schedule bench: 3 EtcdBackupConfigs @every 1m (keep {}) on the etcds of mgmt, c1, \
         c2 for {} minutes; Kubernetes 1.20's etcd 3.4 + s3s-fs on 127.0.0.1",
        args.keep, args.minutes
    );
    println!(
        "  lag from slot to snapshot start over all {} snapshots: max {max:.3} s, p99 {p99:.3} s (goal ≤ 1 s)",
        lags.len()
    );
    println!("  snapshots completed: {snapshots}");
    if problems.is_empty() {
        println!(
            "  every slot taken, none failed; storage holds exactly the newest {} of each config (rotation exact)",
            args.keep
        );
    } else {
        for p in &problems {
            println!("  PROBLEM: {p}");
        }
    }
    ensure!(problems.is_empty(), "{} problem(s) found", problems.len());
    Ok(())
}
