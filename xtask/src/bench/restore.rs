//! `cargo xtask bench restore`: a ClusterRestore carried out by the controller vs
//! `backupctl restore create` of the same backup into the same cluster, in one run.
//!
//! On the local control plane: the resources bench's ConfigMaps (10k over 100 namespaces on
//! `c1`, created once and reused), backed up once by `backupctl` into a project's scope
//! `<prefix>/<project>/c1` on a bucket of its own. Then, alternating for `--rounds` rounds, each
//! into `c2` after the previous restore's namespaces were removed:
//! - the peer: `backupctl restore create --from-backup`, from spawn to exit;
//! - ours: a ClusterRestore `{source: {cluster: c1, backupName}, targetClusters: [c2]}` applied
//!   to the project on `mgmt` with the controller running (release, default flags), from the
//!   apply to the status saying `Completed`, as a user waiting on it sees it.
//!
//! An unmeasured restore goes first (the first restore into a fresh c2 is faster than all
//! later ones). Rounds go in ABBA order (c2 slows a little with every restore and deletion, so
//! one side always going first would be favoured). The best round of each and the medians give
//! the ratios (the goal: the controller adds no real cost, ≤ 1.1×).
//! Both restores are checked to have created every ConfigMap.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use backup_api::ClusterRestore;
use backup_localenv::env_state::EnvState;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::ListParams;
use serde_json::json;

use super::child::{Measured, build_backupctl, process_cpu, run_measured};
use super::resources::{Cluster, clear, cluster, populate_exactly};
use crate::fleet::{self, ControllerProcess};

#[derive(clap::Args)]
pub struct RestoreBenchArgs {
    /// ConfigMaps in the backup.
    #[arg(long, default_value_t = 10_000)]
    pub objects: usize,
    /// Namespaces they are spread over.
    #[arg(long, default_value_t = 100)]
    pub namespaces: usize,
    /// Restores of each kind, alternating; the best of each gives the ratio.
    #[arg(long, default_value_t = 2)]
    pub rounds: u32,
}

/// How long one restore may take before the benchmark gives up.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(900);

pub fn run(args: RestoreBenchArgs) -> Result<()> {
    ensure!(args.rounds >= 1, "--rounds must be at least 1");
    ensure!(
        args.namespaces > 0 && args.objects >= args.namespaces,
        "need at least one object per namespace"
    );
    let env_dir = crate::env::default_dir()?;
    crate::env::up_default(&env_dir)?;
    let backupctl = build_backupctl()?;
    let controller = fleet::build("backup-controller", "backup-controller", true)?;
    tokio::runtime::Runtime::new()?.block_on(bench(args, &env_dir, &backupctl, &controller))
}

async fn bench(
    args: RestoreBenchArgs,
    env_dir: &Path,
    backupctl: &Path,
    controller: &Path,
) -> Result<()> {
    let mut state = EnvState::load(env_dir)?
        .with_context(|| format!("no environment in {} (env.json missing)", env_dir.display()))?;
    let project = backup_localenv::unique_name("bench", "restore");
    // A bucket of its own, as in the controller bench.
    state.s3.bucket = project.clone();
    state.s3.location = format!("s3://{project}");
    std::fs::create_dir_all(state.s3.root.join(&state.s3.bucket))?;
    let mgmt = backup_localenv::env::client_for(state.cluster("mgmt")?).await?;
    let c1 = cluster(&state, "c1").await?;
    let c2 = cluster(&state, "c2").await?;
    let mut running: Option<ControllerProcess> = None;
    let result = measure(
        &args,
        &state,
        &project,
        &mgmt,
        (&c1, &c2),
        backupctl,
        controller,
        &mut running,
    )
    .await;
    eprintln!("cleaning up");
    if let Some(mut process) = running.take() {
        process.stop()?;
    }
    let cleaned = async {
        fleet::delete_project(&mgmt, &project, Duration::from_secs(300)).await?;
        clear(&c2.client, "bench").await
    }
    .await;
    match (result, cleaned) {
        (Ok(()), Ok(())) => Ok(()),
        (Ok(()), Err(e)) => Err(e.context("the benchmark ran, but cleaning up after it failed")),
        (Err(e), _) => Err(e),
    }
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    args: &RestoreBenchArgs,
    state: &EnvState,
    project: &str,
    mgmt: &kube::Client,
    (c1, c2): (&Cluster, &Cluster),
    backupctl: &Path,
    controller: &Path,
    running: &mut Option<ControllerProcess>,
) -> Result<()> {
    populate_exactly(&c1.client, args.namespaces, args.objects).await?;
    let backup = "restore-bench";
    let prefix = project;
    let backupctl_cmd = |c: &Cluster, args: &[&str]| {
        let mut cmd = Command::new(backupctl);
        cmd.args(args)
            .args(["--kubeconfig", &c.kubeconfig, "--context", &c.context])
            .args(["--location", &format!("{}/{prefix}", state.s3.location)])
            .args(["--project", project, "--cluster", "c1"])
            .envs(state.s3.aws_env());
        cmd
    };
    eprintln!(
        "backing up {} ConfigMaps of c1 with backupctl",
        args.objects
    );
    let made = run_measured(
        &backupctl_cmd(
            c1,
            &[
                "backup",
                "create",
                backup,
                "--include-namespaces",
                "bench-*",
                "--include-resources",
                "configmaps",
            ],
        ),
        Stdio::null(),
        "backupctl backup create",
    )?;
    eprintln!("  backup: {:.1} s", made.elapsed.as_secs_f64());

    // The project: credentials, the location over the same prefix, c1 and c2.
    fleet::create_project(mgmt, state, project, prefix, &["c1", "c2"], |_, _| {}).await?;
    let log = crate::env::default_dir()?
        .join("controller-logs")
        .join(format!("{project}.log"));
    eprintln!("starting the controller (log: {})", log.display());
    let process = running
        .insert(ControllerProcess::start(controller, state.cluster("mgmt")?, project, log).await?);
    let pid = process.pid;

    // A first restore into c2 runs faster than all later ones (its etcd has no history yet):
    // one unmeasured restore first, so no measured round gets that advantage.
    clear(&c2.client, "bench").await?;
    eprintln!("warm-up restore into c2 (not measured)");
    run_measured(
        &backupctl_cmd(
            c2,
            &["restore", "create", "rr-warmup", "--from-backup", backup],
        ),
        Stdio::null(),
        "backupctl restore create (warm-up)",
    )?;
    let mut peer_all: Vec<Duration> = Vec::new();
    let mut ours_all: Vec<Duration> = Vec::new();
    let mut peer_best: Option<Measured> = None;
    let mut ours_best: Option<(Duration, Duration)> = None;
    for round in 0..args.rounds {
        // ABBA order: c2 slows down a little with every restore and deletion (etcd grows
        // until compaction), so going first every time would favour one side.
        let order = if round % 2 == 0 {
            [Side::Peer, Side::Ours]
        } else {
            [Side::Ours, Side::Peer]
        };
        for side in order {
            clear(&c2.client, "bench").await?;
            match side {
                Side::Peer => {
                    let peer = peer_restore(&backupctl_cmd, c2, round, backup)?;
                    check_restored(&c2.client, args.objects).await?;
                    peer_all.push(peer.elapsed);
                    if peer_best.is_none_or(|b| peer.elapsed < b.elapsed) {
                        peer_best = Some(peer);
                    }
                }
                Side::Ours => {
                    let ours = cluster_restore(mgmt, project, pid, round, backup).await?;
                    check_restored(&c2.client, args.objects).await?;
                    ours_all.push(ours.0);
                    if ours_best.is_none_or(|(b, _)| ours.0 < b) {
                        ours_best = Some(ours);
                    }
                }
            }
        }
    }
    let peer = peer_best.context("no peer round")?;
    let (ours, ours_cpu) = ours_best.context("no round of ours")?;
    println!(
        "\nrestore bench: {} ConfigMaps over {} namespaces from c1's backup into c2, Kubernetes \
         1.20 + s3s-fs on 127.0.0.1, best of {} alternating rounds each",
        args.objects, args.namespaces, args.rounds
    );
    println!(
        "  backupctl restore create:               {:7.2} s   (CPU {:.2} s, peak RSS {:.1} MiB)",
        peer.elapsed.as_secs_f64(),
        peer.cpu.as_secs_f64(),
        peer.peak_rss_kib as f64 / 1024.0
    );
    println!(
        "  ClusterRestore, apply to Completed:     {:7.2} s   (controller CPU {:.2} s)",
        ours.as_secs_f64(),
        ours_cpu.as_secs_f64()
    );
    let (peer_median, ours_median) = (median(&mut peer_all), median(&mut ours_all));
    println!(
        "  medians over the rounds: backupctl {:.2} s, ClusterRestore {:.2} s",
        peer_median.as_secs_f64(),
        ours_median.as_secs_f64()
    );
    println!(
        "  ClusterRestore vs backupctl: {:.2} best, {:.2} median (goal ≤ 1.1)",
        ours.as_secs_f64() / peer.elapsed.as_secs_f64(),
        ours_median.as_secs_f64() / peer_median.as_secs_f64()
    );
    Ok(())
}

/// The median of `times` (the mean of the middle two for an even count).
fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    match times.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => times[n / 2],
        n => (times[n / 2 - 1] + times[n / 2]) / 2,
    }
}

/// Which side of the comparison.
#[derive(Clone, Copy)]
enum Side {
    Peer,
    Ours,
}

/// `backupctl restore create` of `backup` into c2, measured.
fn peer_restore(
    backupctl_cmd: &dyn Fn(&Cluster, &[&str]) -> Command,
    c2: &Cluster,
    round: u32,
    backup: &str,
) -> Result<Measured> {
    let name = format!("rr-peer-{round}");
    let peer = run_measured(
        &backupctl_cmd(c2, &["restore", "create", &name, "--from-backup", backup]),
        Stdio::null(),
        "backupctl restore create",
    )?;
    eprintln!(
        "  round {round}: backupctl restore create {:.2} s (CPU {:.2} s)",
        peer.elapsed.as_secs_f64(),
        peer.cpu.as_secs_f64()
    );
    Ok(peer)
}

/// A ClusterRestore of `backup` into c2 through the running controller (process `pid`), from
/// the apply to the status saying Completed; returns that time and the controller's CPU.
async fn cluster_restore(
    mgmt: &kube::Client,
    project: &str,
    pid: u32,
    round: u32,
    backup: &str,
) -> Result<(Duration, Duration)> {
    let name = format!("rr-ours-{round}");
    let cpu_before = process_cpu(pid)?;
    let api: Api<ClusterRestore> = Api::namespaced(mgmt.clone(), project);
    let start = Instant::now();
    fleet::apply(
        &api,
        &json!({
            "apiVersion": "backupfleet.dev/v1alpha1", "kind": "ClusterRestore",
            "metadata": {"name": name},
            "spec": {"source": {"cluster": "c1", "backupName": backup}, "targetClusters": ["c2"]}
        }),
    )
    .await?;
    let (phase, object) = loop {
        let object = api.get(&name).await?;
        let phase = object
            .status
            .as_ref()
            .and_then(|s| s.phase)
            .map(|p| format!("{p:?}"));
        if let Some(p) = phase.filter(|p| p != "InProgress") {
            break (p, object);
        }
        if start.elapsed() > RESTORE_TIMEOUT {
            bail!(
                "ClusterRestore {name} did not finish within {} s",
                RESTORE_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let took = start.elapsed();
    let cpu = process_cpu(pid)?.saturating_sub(cpu_before);
    ensure!(
        phase == "Completed",
        "ClusterRestore {name} ended {phase}: {:?}",
        object.status
    );
    eprintln!(
        "  round {round}: ClusterRestore {:.2} s (controller CPU {:.2} s)",
        took.as_secs_f64(),
        cpu.as_secs_f64()
    );
    Ok((took, cpu))
}

/// Fails unless c2's bench namespaces hold `count` ConfigMaps (what both restores create).
async fn check_restored(client: &kube::Client, count: usize) -> Result<()> {
    let api: Api<ConfigMap> = Api::all(client.clone());
    let listed = api
        .list_metadata(&ListParams::default().labels("app=bench"))
        .await?;
    let restored = listed
        .items
        .iter()
        .filter(|cm| {
            cm.metadata
                .namespace
                .as_deref()
                .is_some_and(|ns| ns.starts_with("bench-"))
        })
        .count();
    ensure!(
        restored == count,
        "expected {count} restored ConfigMaps in c2's bench namespaces, found {restored}"
    );
    Ok(())
}
