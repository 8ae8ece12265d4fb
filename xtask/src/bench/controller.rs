//! `cargo xtask bench controller`: the fleet controller at 500 clusters, ours vs the same
//! backups run one after another with `backupctl`.
//!
//! On the local control plane, in one run:
//! - the peer: `backupctl backup create` of one small namespace (`bench-ctl-data`, a few
//!   ConfigMaps, present in `c1` and `c2`), once per cluster scope, one after another (or the
//!   first `--sequential` of them, extrapolated linearly — the output says so);
//! - ours: a project namespace on `mgmt` with N ManagedClusters (each its own kubeconfig Secret,
//!   alternately `c1`'s and `c2`'s inline kubeconfig), a StorageLocation on the S3 server, and
//!   one one-time ClusterBackup over all of them; the makespan runs from applying it to its
//!   status showing every cluster's run Completed;
//! - the controller's peak RSS (VmHWM of its own process), its CPU over 60 s with N clusters
//!   and nothing due (a ClusterBackup scheduled for next New Year), and the lag from a firing
//!   of an `@every 15s` schedule to the start of its first run, over 5 firings;
//! - the dashboard, on with `--api-addr`: the latency of listing each cluster's backups
//!   through the API (p50, p99 over the N clusters), and the load of the fleet overview page
//!   in headless Chromium, signed in with mgmt's token.
//!
//! The controller runs as built (release) with its default flags. Everything the benchmark
//! creates — the project namespace, the data namespaces, the storage prefixes — is removed at
//! the end, also when a step fails.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use backup_api::{ClusterBackup, FleetPhase, LocationPhase, ManagedCluster, StorageLocation};
use backup_core::{LabelSelector, Phase, scheduled_backup_name};
use backup_localenv::env_state::{EnvState, S3State};
use backup_storage::Repository;
use futures::{StreamExt, TryStreamExt};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::json;

use super::child::{build_backupctl, process_cpu, run_measured};
use crate::fleet::{self, ControllerProcess};

#[derive(clap::Args)]
pub struct ControllerBenchArgs {
    /// ManagedClusters in the project, alternately reaching c1 and c2.
    #[arg(long, default_value_t = 500)]
    pub clusters: usize,
    /// How many of the same backups `backupctl` runs one after another (the peer); fewer than
    /// --clusters are extrapolated linearly to --clusters, and the output says so.
    #[arg(long, default_value_t = 500)]
    pub sequential: usize,
    /// maxConcurrentClusters of the fleet ClusterBackup.
    #[arg(long, default_value_t = 16)]
    pub max_concurrent: u32,
    /// ConfigMaps in the namespace each run backs up.
    #[arg(long, default_value_t = 10)]
    pub configmaps: usize,
    /// Firings of the `@every 15s` schedule whose lag is measured.
    #[arg(long, default_value_t = 5)]
    pub firings: usize,
    /// Measure this backup-controller binary instead of building the workspace's (release), e.g.
    /// to compare a change.
    #[arg(long)]
    pub controller_binary: Option<PathBuf>,
}

/// Stored backups per cluster the dashboard lists besides the fleet run (500 clusters: 10k).
const HISTORY_PER_CLUSTER: usize = 19;
/// The namespace every run backs up, in c1 and c2.
const DATA_NS: &str = "bench-ctl-data";
/// The S3 credentials Secret of the project.
const S3_SECRET: &str = "s3-creds";
/// The window over which idle CPU is measured.
const IDLE_WINDOW: Duration = Duration::from_secs(60);
/// The schedule whose firing lag is measured, and its period.
const LAG_SCHEDULE: &str = "@every 15s";
const LAG_PERIOD: Duration = Duration::from_secs(15);
/// Clusters the lag schedule covers.
const LAG_CLUSTERS: usize = 4;

pub fn run(args: ControllerBenchArgs) -> Result<()> {
    ensure!(args.clusters >= 1, "--clusters must be at least 1");
    ensure!(
        (1..=args.clusters).contains(&args.sequential),
        "--sequential must be between 1 and --clusters"
    );
    ensure!(args.firings >= 1, "--firings must be at least 1");
    let env_dir = crate::env::default_dir()?;
    crate::env::up_default(&env_dir)?;
    let backupctl = build_backupctl()?;
    let controller = match &args.controller_binary {
        Some(path) => path.clone(),
        None => fleet::build("backup-controller", "backup-controller", true)?,
    };
    tokio::runtime::Runtime::new()?.block_on(bench(args, &env_dir, &backupctl, &controller))
}

/// One user cluster the ManagedClusters point at.
struct Target {
    name: String,
    client: Client,
    inline_kubeconfig: PathBuf,
}

/// What the benchmark created, so it can be removed again.
struct Bench {
    state: EnvState,
    mgmt: Client,
    targets: Vec<Target>,
    /// The project namespace on mgmt; also the storage prefix of the controller's runs.
    project: String,
    controller: Option<ControllerProcess>,
}

impl Bench {
    /// The storage prefix of the peer's backups.
    fn peer_prefix(&self) -> String {
        format!("{}-seq", self.project)
    }

    fn cluster_name(i: usize) -> String {
        format!("m{i:04}")
    }

    fn target(&self, i: usize) -> &Target {
        &self.targets[i % self.targets.len()]
    }
}

async fn bench(
    args: ControllerBenchArgs,
    env_dir: &Path,
    backupctl: &Path,
    controller: &Path,
) -> Result<()> {
    let mut state = EnvState::load(env_dir)?
        .with_context(|| format!("no environment in {} (env.json missing)", env_dir.display()))?;
    // A bucket of its own, for both sides: the S3 server here (s3s-fs) walks the whole bucket
    // on every LIST, so the objects other tests left in the shared bucket would be measured too.
    let project = backup_localenv::unique_name("bench", "controller");
    state.s3.bucket = project.clone();
    state.s3.location = format!("s3://{project}");
    let bucket_dir = state.s3.root.join(&state.s3.bucket);
    std::fs::create_dir_all(&bucket_dir)
        .with_context(|| format!("creating bucket {}", bucket_dir.display()))?;
    let mgmt = backup_localenv::env::client_for(state.cluster("mgmt")?).await?;
    let mut targets = Vec::new();
    for name in ["c1", "c2"] {
        let info = state.cluster(name)?;
        targets.push(Target {
            name: name.into(),
            client: backup_localenv::env::client_for(info).await?,
            inline_kubeconfig: info.inline_kubeconfig.clone(),
        });
    }
    let mut bench = Bench {
        project,
        state,
        mgmt,
        targets,
        controller: None,
    };
    let result = measure(&args, &mut bench, backupctl, controller).await;
    eprintln!("cleaning up");
    let cleaned = cleanup(&mut bench).await;
    match (result, cleaned) {
        (Ok(()), Ok(())) => Ok(()),
        (Ok(()), Err(e)) => Err(e.context("the benchmark ran, but cleaning up after it failed")),
        (Err(e), Ok(())) => Err(e),
        (Err(e), Err(c)) => {
            eprintln!("cleaning up after the failure failed too: {c:#}");
            Err(e)
        }
    }
}

/// Removes what the benchmark created; every step is tried even if an earlier one fails.
async fn cleanup(bench: &mut Bench) -> Result<()> {
    let mut problems = Vec::new();
    if let Some(mut controller) = bench.controller.take()
        && let Err(e) = controller.stop()
    {
        problems.push(format!("stopping the controller: {e:#}"));
    }
    // Before anything is deleted: without its controller the webhook refuses every write.
    if let Err(e) = super::admission::remove_configuration(&bench.mgmt, &bench.project).await {
        problems.push(format!("removing the webhook's configuration: {e:#}"));
    }
    if let Err(e) =
        fleet::delete_project(&bench.mgmt, &bench.project, Duration::from_secs(300)).await
    {
        problems.push(format!(
            "deleting namespace {} on mgmt: {e:#}",
            bench.project
        ));
    }
    for target in &bench.targets {
        if let Err(e) =
            fleet::delete_namespace(&target.client, DATA_NS, Duration::from_secs(120)).await
        {
            problems.push(format!(
                "deleting namespace {DATA_NS} on {}: {e:#}",
                target.name
            ));
        }
    }
    for prefix in [bench.project.clone(), bench.peer_prefix()] {
        if let Err(e) = remove_s3_prefix(&bench.state.s3, &prefix) {
            problems.push(format!("removing storage prefix {prefix}: {e:#}"));
        }
    }
    let bucket_dir = bench.state.s3.root.join(&bench.state.s3.bucket);
    if let Err(e) = std::fs::remove_dir_all(&bucket_dir) {
        problems.push(format!("removing bucket {}: {e}", bucket_dir.display()));
    }
    match problems.is_empty() {
        true => Ok(()),
        false => bail!("{}", problems.join("; ")),
    }
}

/// Removes every object under `prefix/` of the environment's bucket. The S3 server (s3s-fs)
/// keeps a bucket as a directory under its root and each object's metadata in files named
/// `.bucket-<base64 bucket>.object-<base64 key>.*.json` beside it, which it leaves behind on
/// DeleteObject; removing both directly is complete and takes no thousands of requests.
fn remove_s3_prefix(s3: &S3State, prefix: &str) -> Result<()> {
    use base64::Engine as _;
    ensure!(
        !prefix.is_empty() && !prefix.contains(['/', '.']),
        "refusing to remove prefix {prefix:?}"
    );
    let dir = s3.root.join(&s3.bucket).join(prefix);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let bucket = format!(".bucket-{}.object-", engine.encode(&s3.bucket));
    let wanted = format!("{prefix}/");
    for entry in std::fs::read_dir(&s3.root)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(key) = name
            .strip_prefix(&bucket)
            .and_then(|rest| rest.split('.').next())
        else {
            continue;
        };
        let decoded = engine
            .decode(key)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(key));
        if decoded.is_ok_and(|k| k.starts_with(wanted.as_bytes())) {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Makes sure `DATA_NS` with `count` small ConfigMaps exists on `client` (idempotent).
async fn populate(client: &Client, count: usize) -> Result<()> {
    fleet::create_namespace(client, DATA_NS).await?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), DATA_NS);
    for i in 0..count {
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": format!("settings-{i:02}"), "labels": {"app": "bench"}},
            "data": {"payload": "x".repeat(400), "index": i.to_string()}
        }))?;
        match api.create(&PostParams::default(), &cm).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// What the peer took.
struct Sequential {
    runs: usize,
    wall: Duration,
    cpu: Duration,
    peak_rss_kib: i64,
}

/// `backupctl backup create` of `DATA_NS` for the first `n` cluster scopes, one after another.
fn sequential(bench: &Bench, backupctl: &Path, n: usize) -> Result<Sequential> {
    let location = format!("{}/{}", bench.state.s3.location, bench.peer_prefix());
    let mut out = Sequential {
        runs: 0,
        wall: Duration::ZERO,
        cpu: Duration::ZERO,
        peak_rss_kib: 0,
    };
    let start = Instant::now();
    for i in 0..n {
        let cluster = Bench::cluster_name(i);
        let mut cmd = Command::new(backupctl);
        cmd.args(["backup", "create", "seq", "--kubeconfig"])
            .arg(&bench.target(i).inline_kubeconfig)
            .args(["--location", &location])
            .args(["--project", &bench.project, "--cluster", &cluster])
            .args(["--include-namespaces", DATA_NS])
            .envs(bench.state.s3.aws_env());
        let measured = run_measured(
            &cmd,
            Stdio::null(),
            &format!("backupctl backup create seq (cluster {cluster})"),
        )?;
        out.runs += 1;
        out.cpu += measured.cpu;
        out.peak_rss_kib = out.peak_rss_kib.max(measured.peak_rss_kib);
        if (i + 1) % 50 == 0 {
            eprintln!(
                "  peer: {}/{n} backups in {:.1} s",
                i + 1,
                start.elapsed().as_secs_f64()
            );
        }
    }
    out.wall = start.elapsed();
    Ok(out)
}

/// Creates the project on mgmt: credentials, location, and `n` clusters with their Secrets.
async fn create_project(bench: &Bench, n: usize) -> Result<()> {
    let mgmt = &bench.mgmt;
    let project = bench.project.as_str();
    backup_localenv::crds::install_crds(mgmt, &backup_api::crds()).await?;
    fleet::create_namespace(mgmt, project).await?;
    let s3 = &bench.state.s3;
    fleet::secret(
        mgmt,
        project,
        S3_SECRET,
        "cloud",
        fleet::s3_credentials(s3).as_bytes(),
    )
    .await?;
    let locations: Api<StorageLocation> = Api::namespaced(mgmt.clone(), project);
    fleet::apply(
        &locations,
        &fleet::s3_location(s3, "main", project, S3_SECRET),
    )
    .await?;
    let mut kubeconfigs = Vec::new();
    for target in &bench.targets {
        kubeconfigs.push(
            std::fs::read(&target.inline_kubeconfig)
                .with_context(|| format!("reading {}", target.inline_kubeconfig.display()))?,
        );
    }
    let clusters: Api<ManagedCluster> = Api::namespaced(mgmt.clone(), project);
    let created: Vec<Result<()>> = futures::stream::iter(0..n)
        .map(|i| {
            let clusters = clusters.clone();
            let kubeconfig = &kubeconfigs[i % kubeconfigs.len()];
            let target = bench.target(i).name.clone();
            async move {
                let name = Bench::cluster_name(i);
                let secret = format!("{name}-kubeconfig");
                fleet::secret(mgmt, project, &secret, "kubeconfig", kubeconfig).await?;
                let labels = json!({"bench": "fleet", "target": target});
                fleet::apply(&clusters, &fleet::managed_cluster(&name, &secret, labels)).await
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    created.into_iter().collect()
}

/// Waits until every ManagedCluster is Reachable and the location Available.
async fn wait_onboarded(bench: &Bench, n: usize, timeout: Duration) -> Result<()> {
    let clusters: Api<ManagedCluster> = Api::namespaced(bench.mgmt.clone(), &bench.project);
    let locations: Api<StorageLocation> = Api::namespaced(bench.mgmt.clone(), &bench.project);
    let start = Instant::now();
    let mut last_report = Instant::now();
    loop {
        let reachable = clusters
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|c| {
                c.status.as_ref().is_some_and(|s| {
                    backup_api::status::find(&s.conditions, "Reachable")
                        .is_some_and(|c| c.is_true())
                })
            })
            .count();
        let available = locations.get("main").await?.status.and_then(|s| s.phase)
            == Some(LocationPhase::Available);
        if reachable == n && available {
            return Ok(());
        }
        if start.elapsed() > timeout {
            bail!(
                "after {} s only {reachable}/{n} ManagedClusters are Reachable (location \
                 available: {available})",
                timeout.as_secs()
            );
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            eprintln!("  onboarding: {reachable}/{n} clusters Reachable");
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Watches ClusterBackup `name` until `check` says it is done (`Ok(true)`) or fails; returns the
/// object that satisfied it and when it was seen.
async fn watch_until(
    api: &Api<ClusterBackup>,
    name: &str,
    timeout: Duration,
    mut check: impl FnMut(&ClusterBackup) -> Result<bool>,
) -> Result<(ClusterBackup, Instant)> {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let stream = watcher(api.clone(), config)
        .default_backoff()
        .applied_objects();
    let mut stream = std::pin::pin!(stream);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last: Option<ClusterBackup> = None;
    loop {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => {
                let shown = last
                    .as_ref()
                    .and_then(|b| b.status.as_ref())
                    .map(summary)
                    .unwrap_or_else(|| "no status".into());
                bail!(
                    "timed out after {} s waiting for ClusterBackup {name}: {shown}",
                    timeout.as_secs()
                );
            }
            Ok(None) => bail!("the watch of ClusterBackup {name} ended"),
            Ok(Some(Err(e))) => eprintln!("  watching ClusterBackup {name}: {e} (retrying)"),
            Ok(Some(Ok(object))) => {
                if check(&object)? {
                    return Ok((object, Instant::now()));
                }
                last = Some(object);
            }
        }
    }
}

/// Phase and per-phase counts of a ClusterBackup's clusters' last runs.
fn summary(status: &backup_api::ClusterBackupStatus) -> String {
    let mut phases: BTreeMap<String, usize> = BTreeMap::new();
    for c in &status.clusters {
        let phase = c
            .last_backup
            .as_ref()
            .map_or("none".to_string(), |b| b.phase.to_string());
        *phases.entry(phase).or_default() += 1;
    }
    format!(
        "phase {:?}, {} clusters: {}",
        status.phase,
        status.clusters.len(),
        phases
            .iter()
            .map(|(p, n)| format!("{n} {p}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The fleet run as seen in its status.
struct FleetRun {
    /// From applying the ClusterBackup to seeing every run Completed.
    makespan: Duration,
    /// Status timestamps relative to the apply: first run start, last completion.
    first_start: f64,
    last_completion: f64,
    /// The status' lastScheduleTime relative to the apply.
    scheduled: f64,
}

async fn fleet_run(bench: &Bench, n: usize, max_concurrent: u32) -> Result<FleetRun> {
    let api: Api<ClusterBackup> = Api::namespaced(bench.mgmt.clone(), &bench.project);
    let applied_at = Timestamp::now();
    let start = Instant::now();
    fleet::apply(
        &api,
        &json!({
            "apiVersion": "backupfleet.dev/v1alpha1", "kind": "ClusterBackup",
            "metadata": {"name": "fleet"},
            "spec": {
                "template": {"includedNamespaces": [DATA_NS]},
                "maxConcurrentClusters": max_concurrent,
            }
        }),
    )
    .await?;
    let mut last_report = Instant::now();
    let (done, seen) = watch_until(&api, "fleet", Duration::from_secs(3600), |b| {
        let Some(status) = &b.status else {
            return Ok(false);
        };
        let completed = status
            .clusters
            .iter()
            .filter(|c| {
                c.last_backup
                    .as_ref()
                    .is_some_and(|r| r.name == "fleet" && r.phase == Phase::Completed)
            })
            .count();
        if last_report.elapsed() > Duration::from_secs(10) {
            eprintln!(
                "  fleet run: {completed}/{n} completed after {:.0} s",
                start.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        if status.phase == Some(FleetPhase::Completed)
            && status.clusters.len() == n
            && completed == n
        {
            return Ok(true);
        }
        if matches!(
            status.phase,
            Some(FleetPhase::Failed | FleetPhase::PartiallyFailed)
        ) {
            let failures: Vec<String> = status
                .clusters
                .iter()
                .filter_map(|c| {
                    let run = c.last_backup.as_ref()?;
                    (run.phase != Phase::Completed).then(|| {
                        format!(
                            "{}: {} {}",
                            c.cluster,
                            run.phase,
                            run.message.as_deref().unwrap_or("")
                        )
                    })
                })
                .take(5)
                .collect();
            bail!(
                "the fleet run ended {:?} ({}); first failures: {}",
                status.phase,
                summary(status),
                failures.join("; ")
            );
        }
        Ok(false)
    })
    .await?;
    let status = done.status.unwrap_or_default();
    let since =
        |t: Option<Timestamp>| t.map_or(f64::NAN, |t| t.duration_since(applied_at).as_secs_f64());
    let starts = status
        .clusters
        .iter()
        .filter_map(|c| c.last_backup.as_ref()?.start_timestamp);
    let ends = status
        .clusters
        .iter()
        .filter_map(|c| c.last_backup.as_ref()?.completion_timestamp);
    Ok(FleetRun {
        makespan: seen.duration_since(start),
        first_start: since(starts.min()),
        last_completion: since(ends.max()),
        scheduled: since(status.last_schedule_time),
    })
}

/// `backupfleet_reconcile_total` per controller.
fn reconciles(metrics: &str) -> BTreeMap<String, u64> {
    metrics
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("backupfleet_reconcile_total{controller=\"")?;
            let (controller, value) = rest.split_once("\"} ")?;
            Some((controller.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

/// The controller idle: CPU and reconciles over `IDLE_WINDOW` once a far-away schedule over all
/// clusters is in place.
struct Idle {
    cpu: Duration,
    reconciles: BTreeMap<String, u64>,
    /// Clusters the far-away ClusterBackup's status listed when the window began.
    listed: usize,
}

async fn idle(bench: &Bench, n: usize) -> Result<Idle> {
    let api: Api<ClusterBackup> = Api::namespaced(bench.mgmt.clone(), &bench.project);
    fleet::apply(
        &api,
        &json!({
            "apiVersion": "backupfleet.dev/v1alpha1", "kind": "ClusterBackup",
            "metadata": {"name": "new-year"},
            "spec": {
                "schedule": "0 0 1 1 *",
                "template": {"includedNamespaces": [DATA_NS]},
            }
        }),
    )
    .await?;
    // Its first status: the schedule's next firing, and (normally) every cluster listed.
    let (first, _) = watch_until(&api, "new-year", Duration::from_secs(600), |b| {
        Ok(b.status
            .as_ref()
            .is_some_and(|s| s.next_schedule_time.is_some()))
    })
    .await?;
    let mut listed = first.status.map_or(0, |s| s.clusters.len());
    if listed != n {
        let waited = watch_until(&api, "new-year", Duration::from_secs(60), |b| {
            Ok(b.status.as_ref().is_some_and(|s| s.clusters.len() == n))
        })
        .await;
        if waited.is_ok() {
            listed = n;
        }
    }
    // Let the reconciles that writing the status caused settle.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let controller = bench
        .controller
        .as_ref()
        .context("controller not running")?;
    let before = reconciles(&controller.metrics()?);
    let cpu_before = process_cpu(controller.pid)?;
    eprintln!("  idle: measuring CPU over {} s", IDLE_WINDOW.as_secs());
    tokio::time::sleep(IDLE_WINDOW).await;
    let cpu = process_cpu(controller.pid)? - cpu_before;
    let after = reconciles(&controller.metrics()?);
    let reconciles = after
        .into_iter()
        .map(|(k, v)| {
            let d = v.saturating_sub(before.get(&k).copied().unwrap_or(0));
            (k, d)
        })
        .collect();
    Ok(Idle {
        cpu,
        reconciles,
        listed,
    })
}

/// One firing of the lag schedule: when it fired and how long until its first run started.
struct Firing {
    at: Timestamp,
    lag: Option<Duration>,
}

async fn lag(bench: &Bench, firings: usize) -> Result<Vec<Firing>> {
    let api: Api<ClusterBackup> = Api::namespaced(bench.mgmt.clone(), &bench.project);
    let names: Vec<String> = (0..LAG_CLUSTERS).map(Bench::cluster_name).collect();
    fleet::apply(
        &api,
        &json!({
            "apiVersion": "backupfleet.dev/v1alpha1", "kind": "ClusterBackup",
            "metadata": {"name": "lag"},
            "spec": {
                "clusters": {"names": names},
                "schedule": LAG_SCHEDULE,
                "template": {"includedNamespaces": [DATA_NS]},
            }
        }),
    )
    .await?;
    let mut fired: BTreeSet<Timestamp> = BTreeSet::new();
    let timeout = LAG_PERIOD * (firings as u32 + 4);
    watch_until(&api, "lag", timeout, |b| {
        let Some(status) = &b.status else {
            return Ok(false);
        };
        let Some(at) = status.last_schedule_time else {
            return Ok(false);
        };
        if fired.insert(at) {
            eprintln!("  lag: firing {} at {at}", fired.len());
        }
        let run = scheduled_backup_name("lag", at);
        let finished = status.clusters.len() == LAG_CLUSTERS
            && status.clusters.iter().all(|c| {
                c.last_backup
                    .as_ref()
                    .is_some_and(|r| r.name == run && r.phase.is_terminal())
            });
        Ok(fired.len() >= firings && finished)
    })
    .await?;
    // The runs' start times as stored (full precision), earliest per firing.
    let location = project_location(bench)?;
    let selector = LabelSelector::parse("velero.io/schedule-name=lag")?;
    let mut first_start: BTreeMap<String, Timestamp> = BTreeMap::new();
    for cluster in &names {
        let repo = location.scoped_str(&bench.project, cluster)?;
        for run in backup_velero::direct::stored::list(&repo, &selector).await? {
            if let Some(started) = run.started {
                let entry = first_start.entry(run.name).or_insert(started);
                *entry = (*entry).min(started);
            }
        }
    }
    Ok(fired
        .into_iter()
        .take(firings)
        .map(|at| Firing {
            at,
            lag: first_start
                .get(&scheduled_backup_name("lag", at))
                .map(|start| Duration::try_from(start.duration_since(at)).unwrap_or_default()),
        })
        .collect())
}

/// The project's location in the environment's S3 bucket, as the controller writes it.
fn project_location(bench: &Bench) -> Result<Repository> {
    let s3 = &bench.state.s3;
    let options = [
        ("region", s3.region.clone()),
        ("s3Url", s3.endpoint.clone()),
        ("access_key_id", s3.access_key_id.clone()),
        ("secret_access_key", s3.secret_access_key.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    Ok(Repository::open(
        &format!("s3://{}/{}", s3.bucket, bench.project),
        &options,
    )?)
}

/// Gives each of the `n` clusters `extra` more stored backups beside its fleet run, so the
/// dashboard lists a fleet's worth of history. Each is committed like a run (its manifest
/// carries the fleet run's record under its own name) with one small artifact instead of the
/// run's files: listing reads manifests only, and nothing restores these. Returns how many.
async fn seed_history(bench: &Bench, n: usize, extra: usize) -> Result<usize> {
    use backup_core::BackupKind;
    use backup_storage::{ArtifactName, BackupName};
    let location = project_location(bench)?;
    let artifact = ArtifactName::new("seeded.txt")?;
    let made: Vec<usize> = futures::stream::iter(0..n)
        .map(|i| {
            let (location, artifact) = (&location, &artifact);
            async move {
                let repo = location.scoped_str(&bench.project, &Bench::cluster_name(i))?;
                let fleet = repo
                    .get_manifest(BackupKind::Resources, &BackupName::new("fleet")?)
                    .await?;
                for j in 1..=extra {
                    let name = BackupName::new(format!("fleet-history-{j:03}"))?;
                    let mut writer = repo.begin_backup(BackupKind::Resources, &name).await?;
                    writer
                        .put_artifact_bytes(
                            artifact,
                            bytes::Bytes::from_static(b"a listing entry of the dashboard bench\n"),
                        )
                        .await?;
                    writer
                        .commit(fleet.attributes.clone(), fleet.expires_at)
                        .await?;
                }
                Ok::<usize, anyhow::Error>(extra)
            }
        })
        .buffer_unordered(16)
        .try_collect()
        .await?;
    Ok(made.into_iter().sum())
}

/// The controller's peak and current resident set from `/proc/<pid>/status`, in KiB.
fn memory_kib(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok((field("VmHWM:")?, field("VmRSS:")?))
}

/// How often the controller's log says it lost the lease.
fn leadership_losses(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .map(|text| text.matches("could not renew the lease in time").count())
        .unwrap_or(0)
}

/// Prints one line of the report at once, so what was measured stays visible if a later step
/// fails.
/// The dashboard at `n` clusters: each cluster's backups listed through the API (from
/// storage), and the fleet overview page loaded in headless Chromium.
/// What the dashboard part measured.
struct DashboardMeasured {
    /// Each cluster's first listing (from storage).
    first: Vec<Duration>,
    /// Each cluster's second listing (from the dashboard's cache).
    latencies: Vec<Duration>,
    /// Backups the second pass listed.
    listed: usize,
    /// Overview page loads.
    loads: Vec<Duration>,
    /// Cluster rows on the overview page.
    rows: usize,
}

async fn dashboard(
    bench: &Bench,
    n: usize,
    api_addr: &str,
    certificate: &backup_localenv::http::LoopbackCertificate,
) -> Result<()> {
    let seeded_at = Instant::now();
    let seeded = seed_history(bench, n, HISTORY_PER_CLUSTER).await?;
    report(format!(
        "  dashboard: {seeded} more stored backups written beside the fleet run's {n} ({:.1} s), \
         {} per cluster",
        seeded_at.elapsed().as_secs_f64(),
        HISTORY_PER_CLUSTER + 1
    ));
    let addr: std::net::SocketAddr = api_addr.parse()?;
    let token = bench.state.cluster("mgmt")?.token.clone();
    let project = bench.project.clone();
    let (trusted, spki) = (certificate.pem.clone(), certificate.spki_sha256.clone());
    let measured = tokio::task::spawn_blocking(move || -> Result<DashboardMeasured> {
        // The first pass fills the dashboard's listings from storage; the second is what
        // a user browsing the fleet gets, from the cache.
        let mut first = Vec::with_capacity(n);
        let mut latencies = Vec::with_capacity(n);
        let mut listed = 0;
        // Paced under the dashboard's limit for one token (50 a second), never catching up
        // after a slow answer: each latency is a request's own, and none is turned away.
        let spacing = Duration::from_secs_f64(1.0 / API_REQUESTS_PER_SECOND);
        let mut previous: Option<Instant> = None;
        for i in (0..n).chain(0..n) {
            if let Some(previous) = previous {
                std::thread::sleep((previous + spacing).saturating_duration_since(Instant::now()));
            }
            previous = Some(Instant::now());
            let path = format!(
                "/api/v1/namespaces/{project}/clusters/{}/backups",
                Bench::cluster_name(i)
            );
            let start = Instant::now();
            let (code, body) = backup_localenv::http::https_request(
                addr,
                &trusted,
                "GET",
                &path,
                Some(&token),
                None,
            )?;
            if first.len() < n {
                first.push(start.elapsed());
            } else {
                latencies.push(start.elapsed());
            }
            ensure!(
                code == 200,
                "{path}: {code} {}",
                String::from_utf8_lossy(&body)
            );
            let value: serde_json::Value = serde_json::from_slice(&body)?;
            if first.len() == n && !latencies.is_empty() {
                listed += value["items"].as_array().map_or(0, Vec::len);
            }
        }
        let browser = backup_localenv::browser::Browser::start_trusting(Some(&spki))?;
        browser.goto(&format!("https://{addr}/ui"))?;
        browser.type_into(&browser.find("#token")?, &token)?;
        browser.click(&browser.find("button[type=submit]")?)?;
        browser.wait_for_text("Projects", Duration::from_secs(30))?;
        let mut loads = Vec::new();
        let mut rows = 0;
        for _ in 0..3 {
            let start = Instant::now();
            browser.goto(&format!("https://{addr}/ui/projects/{project}"))?;
            loads.push(start.elapsed());
            rows = browser.source()?.matches("/clusters/m").count();
        }
        Ok(DashboardMeasured {
            first,
            latencies,
            listed,
            loads,
            rows,
        })
    })
    .await??;
    let DashboardMeasured {
        mut first,
        mut latencies,
        listed,
        loads,
        rows,
    } = measured;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let pct = |sorted: &[Duration], p: f64| {
        sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
    };
    first.sort();
    latencies.sort();
    report(format!(
        "  dashboard API, each cluster's backups, first read (listed from storage), {n} requests: \
         p50 {:.1} ms, p99 {:.1} ms",
        ms(pct(&first, 0.5)),
        ms(pct(&first, 0.99))
    ));
    report(format!(
        "  dashboard API over TLS, each cluster's backups, served from the cache, {n} requests \
         ({listed} backups; a new connection each): p50 {:.1} ms, p99 {:.1} ms (goal p99 ≤ 50 ms)",
        ms(pct(&latencies, 0.5)),
        ms(pct(&latencies, 0.99))
    ));
    report(format!(
        "  fleet overview page, {rows} cluster rows, headless Chromium: {} s (3 loads; goal ≤ 1 s)",
        loads
            .iter()
            .map(|d| format!("{:.2}", d.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok(())
}

fn report(line: String) {
    use std::io::Write as _;
    println!("{line}");
    let _ = std::io::stdout().flush();
}

async fn measure(
    args: &ControllerBenchArgs,
    bench: &mut Bench,
    backupctl: &Path,
    binary: &Path,
) -> Result<()> {
    let n = args.clusters;
    let s = |d: Duration| d.as_secs_f64();
    let mib = |kib: u64| kib as f64 / 1024.0;
    let log = bench
        .state
        .dir
        .join("controller-logs")
        .join(format!("{}.log", bench.project));
    eprintln!(
        "controller bench: project {} on mgmt, {n} clusters",
        bench.project
    );
    report(format!(
        "\ncontroller bench: {n} ManagedClusters (alternately c1 and c2, one kubeconfig Secret \
         each), every run backs up namespace {DATA_NS} ({} ConfigMaps); Kubernetes 1.20 + s3s-fs \
         on 127.0.0.1, {} cores shared by 3 apiservers, 3 etcds, S3, the controller and the tools\n  \
         controller: {} (default flags), log: {}",
        args.configmaps,
        std::thread::available_parallelism().map_or(0, |p| p.get()),
        binary.display(),
        log.display()
    ));
    for target in &bench.targets {
        populate(&target.client, args.configmaps).await?;
    }

    // The peer first, on a machine where no controller runs.
    eprintln!(
        "peer: {} × backupctl backup create, one after another",
        args.sequential
    );
    let peer = sequential(bench, backupctl, args.sequential)?;
    let peer_total = peer.wall.mul_f64(n as f64 / peer.runs as f64);
    let peer_note = if peer.runs == n {
        format!("{} runs measured", peer.runs)
    } else {
        format!(
            "{} runs measured in {:.1} s, EXTRAPOLATED linearly ×{:.1} to {n}",
            peer.runs,
            s(peer.wall),
            n as f64 / peer.runs as f64
        )
    };
    report(format!(
        "  peer: {n} × backupctl backup create, one after another: {:7.1} s   ({peer_note}; \
         {:.2} s and {:.2} s CPU per backup, peak RSS {:.1} MiB)",
        s(peer_total),
        s(peer.wall) / peer.runs as f64,
        s(peer.cpu) / peer.runs as f64,
        peer.peak_rss_kib as f64 / 1024.0
    ));

    eprintln!("creating {n} ManagedClusters and their Secrets on mgmt");
    create_project(bench, n).await?;
    eprintln!("starting the controller (log: {})", log.display());
    let onboarding_start = Instant::now();
    let api_addr = format!("127.0.0.1:{}", backup_localenv::http::free_port()?);
    let webhook_addr = format!("127.0.0.1:{}", backup_localenv::http::free_port()?);
    let webhook_url = format!("https://{webhook_addr}");
    // The dashboard serves TLS, as in a cluster: its latency is measured with it.
    let certificate = backup_localenv::http::LoopbackCertificate::new()?;
    let (cert, key) = (
        certificate.cert.display().to_string(),
        certificate.key.display().to_string(),
    );
    bench.controller = Some(
        ControllerProcess::start_with(
            binary,
            bench.state.cluster("mgmt")?,
            &bench.project,
            log.clone(),
            &[
                "--api-addr",
                &api_addr,
                "--api-tls-cert-file",
                &cert,
                "--api-tls-key-file",
                &key,
                "--webhook-addr",
                &webhook_addr,
                "--webhook-register",
                &webhook_url,
            ],
        )
        .await?,
    );
    let pid = bench.controller.as_ref().map(|c| c.pid).unwrap_or_default();
    wait_onboarded(bench, n, Duration::from_secs(1800)).await?;
    let onboarding = onboarding_start.elapsed();
    let onboarding_cpu = process_cpu(pid)?;
    let (onboarding_hwm, onboarding_rss) = memory_kib(pid)?;
    report(format!(
        "  onboarding: {n} clusters Reachable {:.1} s after the controller started (CPU {:.2} s, \
         RSS {:.1} MiB, peak {:.1} MiB)",
        s(onboarding),
        s(onboarding_cpu),
        mib(onboarding_rss),
        mib(onboarding_hwm)
    ));

    eprintln!(
        "fleet run: one ClusterBackup over {n} clusters, maxConcurrentClusters {}",
        args.max_concurrent
    );
    let cpu_before = process_cpu(pid)?;
    let fleet = fleet_run(bench, n, args.max_concurrent).await?;
    let fleet_cpu = process_cpu(pid)? - cpu_before;
    let (fleet_hwm, _) = memory_kib(pid)?;
    report(format!(
        "  fleet run ours (1 ClusterBackup, maxConcurrentClusters {}): {:7.1} s   (CPU {:.1} s; \
         status: fired +{:.2} s, first run started +{:.2} s, last completed +{:.1} s after apply)",
        args.max_concurrent,
        s(fleet.makespan),
        s(fleet_cpu),
        fleet.scheduled,
        fleet.first_start,
        fleet.last_completion
    ));
    report(format!(
        "  fleet makespan ours vs peer: {:.1} s vs {:.1} s: {:.2} (goal ≤ 0.25)",
        s(fleet.makespan),
        s(peer_total),
        s(fleet.makespan) / s(peer_total)
    ));
    report(format!(
        "  maxConcurrentClusters {}: each run mostly waits on c1/c2 and S3, so a few runs per \
         core keep the 2 cores busy; more would only queue on the same two apiservers and S3 \
         (the API allows 1..=256; default 4)",
        args.max_concurrent
    ));

    eprintln!("dashboard: the API and the overview page at {n} clusters");
    dashboard(bench, n, &api_addr, &certificate).await?;

    eprintln!("admission: {ADMISSION_CREATES} creates judged by the webhook, and not");
    let clusters: Vec<String> = (0..n).map(Bench::cluster_name).collect();
    let judged =
        super::admission::measure(&bench.mgmt, &bench.project, &clusters, ADMISSION_CREATES)
            .await?;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let p = |sorted: &[Duration], q: f64| {
        ms(sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1])
    };
    report(format!(
        "  admission: create of a ClusterBackup naming one cluster, {ADMISSION_CREATES} each: \
         judged by our webhook p50 {:.1} ms, p99 {:.1} ms; the same API server without it \
         p50 {:.1} ms, p99 {:.1} ms; the webhook adds {:.1} ms at p99 (goal p99 ≤ 100 ms)",
        p(&judged.ours, 0.5),
        p(&judged.ours, 0.99),
        p(&judged.peer, 0.5),
        p(&judged.peer, 0.99),
        p(&judged.ours, 0.99) - p(&judged.peer, 0.99)
    ));

    eprintln!("idle: a ClusterBackup over all {n} clusters due next New Year");
    let idle = idle(bench, n).await?;
    let listed = if idle.listed == n {
        String::new()
    } else {
        format!(
            "; NOTE its status listed {} of the {n} clusters when the window began",
            idle.listed
        )
    };
    report(format!(
        "  controller CPU over {} s, {n} clusters, nothing due: {:.2} s (goal ≤ 0.6 s); \
         reconciles in that window: {}{listed}",
        IDLE_WINDOW.as_secs(),
        s(idle.cpu),
        idle.reconciles
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));

    eprintln!(
        "lag: {LAG_SCHEDULE} over {LAG_CLUSTERS} clusters, {} firings",
        args.firings
    );
    let firings = lag(bench, args.firings).await;

    // Memory and Lease losses are reported even when the lag could not be measured.
    let (hwm, rss) = memory_kib(pid)?;
    report(format!(
        "  controller peak RSS (VmHWM) at {n} clusters: {:7.1} MiB (goal ≤ 200 MiB; {:.1} MiB \
         after onboarding, {:.1} MiB after the fleet run, {:.1} MiB resident at the end)",
        mib(hwm),
        mib(onboarding_hwm),
        mib(fleet_hwm),
        mib(rss)
    ));
    let losses = leadership_losses(&log);
    if losses > 0 {
        report(format!(
            "  NOTE the controller lost its Lease {losses} time(s) during the run (\"could not \
             renew the lease in time\" in its log): each loss stops every running backup and \
             restarts its controllers"
        ));
    }
    let firings = firings?;
    let lags: Vec<String> = firings
        .iter()
        .map(|f| match f.lag {
            Some(l) => format!("{:.3}", s(l)),
            None => format!("(no stored run of {})", f.at),
        })
        .collect();
    let worst = firings.iter().filter_map(|f| f.lag).max();
    report(format!(
        "  firing → first run start ({LAG_SCHEDULE}, {LAG_CLUSTERS} clusters), {} firings: \
         {} s; p99 (= max of {}) {} (goal ≤ 1 s)",
        firings.len(),
        lags.join(", "),
        firings.len(),
        match (worst, firings.iter().all(|f| f.lag.is_some())) {
            (Some(w), true) => format!("{:.3} s", s(w)),
            _ => "not measured: a firing has no stored run".to_string(),
        }
    ));
    Ok(())
}
/// The pace of the dashboard API requests: under its limit of 50 a second for one token.
const API_REQUESTS_PER_SECOND: f64 = 40.0;

/// Creates measured with and without the admission webhook.
const ADMISSION_CREATES: usize = 200;
