//! `cargo xtask bench resources`: back up and restore many small objects, ours vs kubectl.
//!
//! On the local control plane: N ConfigMaps of ~0.5 KB over M namespaces on `c1` (created once,
//! reused by later runs). Measured in one run:
//! - `backupctl backup create` to the S3 server vs `kubectl get configmaps -A -o json > file`
//!   and vs the raw paged LIST (limit 500, body read and discarded) — the physical limit;
//! - the same backup encrypted with age (`--encrypt-to`) vs unencrypted, alternating;
//! - `backupctl restore create` into `c2` vs `kubectl create -f` of the same objects;
//! - our peak RSS (GNU time) of backup and restore at `--rss-objects` and
//!   `--rss-objects-large` (50k and 200k by default), with the restore's figure against its goal
//!   (≤ 150 MiB) and whether it stays flat from the first count to the second.
//!
//! The peak-RSS object sets live in namespaces of their own (`rss-NNN`, [`RSS_PER_NAMESPACE`]
//! each) on `c1`, the larger set containing the smaller (only missing objects are created).
//! They are removed at the end of the run, with their restored copies on `c2` and the backups
//! made of them: left on `c1`, 200k ConfigMaps slow down every cluster-wide LIST there (our
//! backups of a namespace glob, other tests, this bench's own kubectl comparison). Repeated
//! peak-RSS runs keep them with `--keep-rss-objects` and then reuse them.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use futures::StreamExt;

use super::child::{Measured, build_backupctl, run_measured};
use backup_localenv::env_state::EnvState;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

#[derive(clap::Args)]
pub struct ResourcesBenchArgs {
    /// ConfigMaps to back up.
    #[arg(long, default_value_t = 10_000)]
    pub objects: usize,
    /// Namespaces they are spread over.
    #[arg(long, default_value_t = 100)]
    pub namespaces: usize,
    /// Measure peak RSS of backup and restore with this many objects (0 = skip); a multiple
    /// of 500 (the objects per namespace of the peak-RSS set).
    #[arg(long, default_value_t = 50_000)]
    pub rss_objects: usize,
    /// And again with this many (0 = skip): restore memory must be flat from the first count
    /// to this one. The first time, creating the extra objects takes minutes.
    #[arg(long, default_value_t = 200_000)]
    pub rss_objects_large: usize,
    /// Only the peak-RSS measurements: no backup/restore comparison with kubectl.
    #[arg(long)]
    pub rss_only: bool,
    /// Keep the peak-RSS object set on c1 for the next run (it is removed at the end
    /// otherwise); meant for repeated `--rss-only` runs, as the set slows down the kubectl
    /// comparison's cluster-wide LISTs.
    #[arg(long)]
    pub keep_rss_objects: bool,
    /// Measure this backupctl instead of building one (e.g. an older build, for a before/after).
    #[arg(long)]
    pub backupctl: Option<std::path::PathBuf>,
    /// Encrypted backups (`--encrypt-to`), each followed by an unencrypted one; the best of
    /// each kind (the first unencrypted backup included) gives the ratio (0 = skip).
    #[arg(long, default_value_t = 2)]
    pub encrypted_runs: u32,
}

const LABEL: &str = "backup-fleet.bench/resources";
/// Objects per namespace of the peak-RSS sets.
const RSS_PER_NAMESPACE: usize = 500;
/// Namespace prefix of the peak-RSS sets.
const RSS_PREFIX: &str = "rss";
/// Peak RSS the restore must stay within at every measured count.
const RESTORE_RSS_GOAL_MIB: f64 = 150.0;
/// Growth of the restore's peak RSS from the first count to the larger one still called flat.
const FLAT_TOLERANCE: f64 = 0.10;

pub fn run(args: ResourcesBenchArgs) -> Result<()> {
    ensure!(
        args.namespaces > 0 && args.objects >= args.namespaces,
        "need at least one object per namespace"
    );
    for n in [args.rss_objects, args.rss_objects_large] {
        ensure!(
            n % RSS_PER_NAMESPACE == 0,
            "--rss-objects and --rss-objects-large must be multiples of {RSS_PER_NAMESPACE} \
             (the objects per namespace of the peak-RSS set), not {n}"
        );
    }
    ensure!(
        args.rss_objects_large == 0 || args.rss_objects_large > args.rss_objects,
        "--rss-objects-large ({}) must be larger than --rss-objects ({})",
        args.rss_objects_large,
        args.rss_objects
    );
    let env_dir = crate::env::default_dir()?;
    crate::env::up_default(&env_dir)?;
    let backupctl = match &args.backupctl {
        Some(path) => path.clone(),
        None => build_backupctl()?,
    };
    tokio::runtime::Runtime::new()?.block_on(bench(args, &env_dir, &backupctl))
}

pub(super) struct Cluster {
    pub(super) client: Client,
    pub(super) kubeconfig: String,
    pub(super) context: String,
}

pub(super) async fn cluster(state: &EnvState, name: &str) -> Result<Cluster> {
    let info = state.cluster(name)?;
    Ok(Cluster {
        client: backup_localenv::env::client_for(info).await?,
        kubeconfig: info.kubeconfig.display().to_string(),
        context: info.context.clone(),
    })
}

fn ns_name(prefix: &str, i: usize) -> String {
    format!("{prefix}-{i:03}")
}

/// Makes sure exactly `count` ConfigMaps exist over the bench namespaces of `c1`: an earlier
/// version of this bench grew them for its peak-RSS run (now in `rss-*` namespaces of their
/// own), and such a larger set is removed first.
pub(super) async fn populate_exactly(
    client: &Client,
    namespaces: usize,
    count: usize,
) -> Result<()> {
    let beyond =
        Api::<ConfigMap>::namespaced(client.clone(), &ns_name("bench", count % namespaces))
            .get_opt(&format!("cm-{count:06}"))
            .await?;
    if beyond.is_some() {
        eprintln!("removing the larger object set left by a previous run");
        clear(client, "bench").await?;
    }
    populate(client, namespaces, count).await
}

/// Creates namespace `name` (labelled as the bench's) unless it exists.
async fn ensure_namespace(client: &Client, name: &str) -> Result<()> {
    let ns = Namespace {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_string()),
            labels: Some([(LABEL.to_string(), "true".to_string())].into()),
            ..Default::default()
        },
        ..Default::default()
    };
    match Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Makes sure `count` ConfigMaps exist over the bench namespaces of `c1` (idempotent).
async fn populate(client: &Client, namespaces: usize, count: usize) -> Result<()> {
    for i in 0..namespaces {
        ensure_namespace(client, &ns_name("bench", i)).await?;
    }
    let objects = (0..count)
        .map(|i| (ns_name("bench", i % namespaces), i))
        .collect();
    create_config_maps(client, objects).await
}

/// Deletes namespaces with `prefix` on a cluster and waits until they are gone.
pub(super) async fn clear(client: &Client, prefix: &str) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let names: Vec<String> = api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .filter(|n| n.starts_with(&format!("{prefix}-")))
        .collect();
    for n in &names {
        let _ = api.delete(n, &DeleteParams::default()).await;
    }
    let start = Instant::now();
    for n in &names {
        while api.get_opt(n).await?.is_some() {
            ensure!(
                start.elapsed() < Duration::from_secs(600),
                "namespace {n} is not going away"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    Ok(())
}

/// Makes sure the peak-RSS set holds (at least) `count` ConfigMaps: object `i` is `cm-<i>` in
/// namespace `rss-<i / 500>`, so a smaller set is the first namespaces of a larger one. Only
/// missing objects are created (one metadata LIST per namespace finds them).
async fn populate_rss(client: &Client, count: usize) -> Result<()> {
    let mut missing = Vec::new();
    for n in 0..count / RSS_PER_NAMESPACE {
        let ns = ns_name(RSS_PREFIX, n);
        ensure_namespace(client, &ns).await?;
        let existing: std::collections::HashSet<String> =
            Api::<ConfigMap>::namespaced(client.clone(), &ns)
                .list_metadata(&ListParams::default())
                .await?
                .items
                .into_iter()
                .filter_map(|m| m.metadata.name)
                .collect();
        let first = n * RSS_PER_NAMESPACE;
        missing.extend(
            (first..first + RSS_PER_NAMESPACE)
                .filter(|i| !existing.contains(&format!("cm-{i:06}")))
                .map(|i| (ns.clone(), i)),
        );
    }
    create_config_maps(client, missing).await
}

/// Creates ConfigMap `cm-<i>` (~0.5 KB) in each given namespace, 32 at a time; existing ones
/// are left alone.
async fn create_config_maps(client: &Client, objects: Vec<(String, usize)>) -> Result<()> {
    let value = "x".repeat(400);
    let start = Instant::now();
    let created: Vec<Result<bool>> = futures::stream::iter(objects)
        .map(|(ns, i)| {
            let client = client.clone();
            let value = value.clone();
            async move {
                let cm: ConfigMap = serde_json::from_value(json!({
                    "metadata": {"name": format!("cm-{i:06}"), "labels": {"app": "bench", "shard": (i % 7).to_string()}},
                    "data": {"payload": value, "index": i.to_string()}
                }))?;
                match Api::<ConfigMap>::namespaced(client, &ns).create(&PostParams::default(), &cm).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                    Err(e) => Err(e.into()),
                }
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let mut new = 0;
    for c in created {
        new += usize::from(c?);
    }
    if new > 0 {
        eprintln!(
            "created {new} ConfigMaps in {:.1} s",
            start.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// The raw paged LIST of all ConfigMaps: bodies read and discarded; returns the item count.
async fn raw_list(client: &Client) -> Result<usize> {
    #[derive(serde::Deserialize)]
    struct Page {
        metadata: Meta,
        items: Vec<serde::de::IgnoredAny>,
    }
    #[derive(serde::Deserialize)]
    struct Meta {
        #[serde(rename = "continue", default)]
        continue_: Option<String>,
    }
    let mut params = ListParams::default().limit(500);
    let mut items = 0;
    loop {
        let request = kube::core::Request::new("/api/v1/configmaps").list(&params)?;
        let text = client.request_text(request).await?;
        let page: Page = serde_json::from_str(&text)?;
        items += page.items.len();
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => params = params.continue_token(&c),
            None => return Ok(items),
        }
    }
}

fn backupctl_cmd(backupctl: &Path, state: &EnvState, c: &Cluster, args: &[&str]) -> Command {
    let mut cmd = Command::new(backupctl);
    cmd.args(args)
        .args(["--kubeconfig", &c.kubeconfig, "--context", &c.context])
        .args(["--location", &state.s3.location])
        .args(["--project", "bench", "--cluster", "c1"])
        .envs(state.s3.aws_env());
    cmd
}

/// Our backup of the bench's ConfigMaps on `c`, measured.
fn our_backup(backupctl: &Path, state: &EnvState, c: &Cluster, name: &str) -> Result<Measured> {
    our_backup_with(backupctl, state, c, name, "bench-*", &[])
}

/// Our backup of the ConfigMaps in `namespaces` (comma-separated, globs allowed) on `c`, with
/// more arguments (e.g. `--encrypt-to`), measured.
fn our_backup_with(
    backupctl: &Path,
    state: &EnvState,
    c: &Cluster,
    name: &str,
    namespaces: &str,
    extra: &[&str],
) -> Result<Measured> {
    let mut args = vec![
        "backup",
        "create",
        name,
        "--include-namespaces",
        namespaces,
        "--include-resources",
        "configmaps",
    ];
    args.extend_from_slice(extra);
    let what = format!("backupctl backup create {name}");
    run_measured(
        &backupctl_cmd(backupctl, state, c, &args),
        Stdio::null(),
        &what,
    )
}

/// Our restore of backup `from` into `c`, measured.
fn our_restore(
    backupctl: &Path,
    state: &EnvState,
    c: &Cluster,
    name: &str,
    from: &str,
) -> Result<Measured> {
    let args = ["restore", "create", name, "--from-backup", from];
    let what = format!("backupctl restore create {name}");
    run_measured(
        &backupctl_cmd(backupctl, state, c, &args),
        Stdio::null(),
        &what,
    )
}

/// Deletes backup `name` of the bench's scope (its files and restore records stay small; the
/// tarballs of the peak-RSS sets do not).
fn delete_backup(backupctl: &Path, state: &EnvState, name: &str) -> Result<()> {
    let out = Command::new(backupctl)
        .args(["backup", "delete", name])
        .args(["--location", &state.s3.location])
        .args(["--project", "bench", "--cluster", "c1"])
        .envs(state.s3.aws_env())
        .output()?;
    ensure!(
        out.status.success(),
        "backupctl backup delete {name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Peak RSS of backup and restore at one size of the peak-RSS set.
struct RssRun {
    objects: usize,
    backup: Measured,
    restore: Measured,
}

/// Backs up the first `objects` of the peak-RSS set from `c1` and restores them into `c2`
/// (emptied of an earlier copy first), measuring both; the backup is deleted afterwards.
async fn rss_run(
    backupctl: &Path,
    state: &EnvState,
    (c1, c2): (&Cluster, &Cluster),
    objects: usize,
    stamp: &str,
) -> Result<RssRun> {
    populate_rss(&c1.client, objects).await?;
    let namespaces: Vec<String> = (0..objects / RSS_PER_NAMESPACE)
        .map(|n| ns_name(RSS_PREFIX, n))
        .collect();
    let name = format!("rss-{objects}-{stamp}");
    let backup = our_backup_with(backupctl, state, c1, &name, &namespaces.join(","), &[])?;
    clear(&c2.client, RSS_PREFIX).await?;
    let restore = our_restore(backupctl, state, c2, &format!("rr-{name}"), &name)?;
    delete_backup(backupctl, state, &name)?;
    eprintln!(
        "{objects} objects: restore peak RSS {:.1} MiB in {:.1} s",
        mib(restore.peak_rss_kib),
        restore.elapsed.as_secs_f64()
    );
    Ok(RssRun {
        objects,
        backup,
        restore,
    })
}

/// Our backup and restore of `args.objects` ConfigMaps vs kubectl and the raw LIST.
struct Comparison {
    ours: Measured,
    encrypted_best: Option<Measured>,
    plain_best: Duration,
    kubectl: Measured,
    listed: usize,
    raw: Duration,
    ours_restore: Measured,
    kubectl_create: Duration,
}

async fn compare(
    args: &ResourcesBenchArgs,
    state: &EnvState,
    backupctl: &Path,
    (c1, c2): (&Cluster, &Cluster),
    stamp: &str,
) -> Result<Comparison> {
    let work = state.dir.join("bench-resources");
    std::fs::create_dir_all(&work)?;
    populate_exactly(&c1.client, args.namespaces, args.objects).await?;
    let rss_kept = Api::<Namespace>::all(c1.client.clone())
        .get_opt(&ns_name(RSS_PREFIX, 0))
        .await?
        .is_some();
    if rss_kept {
        eprintln!(
            "note: c1 still holds the peak-RSS set (--keep-rss-objects): the cluster-wide LISTs \
             below (kubectl get -A, the raw LIST, our backup's) read it too"
        );
    }

    // Backup: ours, kubectl, raw LIST.
    let name = format!("res-{}-{stamp}", args.objects);
    let ours = our_backup(backupctl, state, c1, &name)?;
    // Encrypted (age, one X25519 recipient) vs unencrypted, alternating; best of each.
    let recipient = backup_storage::Identities::generate().recipients()[0].to_string();
    let mut plain_best = ours.elapsed;
    let mut encrypted_best: Option<Measured> = None;
    for run in 0..args.encrypted_runs {
        let encrypt = ["--encrypt-to", recipient.as_str()];
        let enc_name = format!("{name}-enc{run}");
        let enc = our_backup_with(backupctl, state, c1, &enc_name, "bench-*", &encrypt)?;
        eprintln!(
            "encrypted backup {run}: {:.2} s (CPU {:.2} s)",
            enc.elapsed.as_secs_f64(),
            enc.cpu.as_secs_f64()
        );
        if encrypted_best.is_none_or(|b| enc.elapsed < b.elapsed) {
            encrypted_best = Some(enc);
        }
        if run + 1 < args.encrypted_runs {
            let again = our_backup(backupctl, state, c1, &format!("{name}-plain{run}"))?;
            eprintln!(
                "unencrypted backup {}: {:.2} s (CPU {:.2} s)",
                run + 1,
                again.elapsed.as_secs_f64(),
                again.cpu.as_secs_f64()
            );
            plain_best = plain_best.min(again.elapsed);
        }
    }
    let dump = work.join("kubectl-get.json");
    let kubectl = run_measured(
        Command::new("kubectl").args([
            "--kubeconfig",
            &c1.kubeconfig,
            "--context",
            &c1.context,
            "get",
            "configmaps",
            "-A",
            "-o",
            "json",
        ]),
        std::fs::File::create(&dump)?.into(),
        "kubectl get",
    )?;
    let start = Instant::now();
    let listed = raw_list(&c1.client).await?;
    let raw = start.elapsed();

    // Restore into c2: ours vs kubectl create -f (into other namespaces, same objects).
    clear(&c2.client, "bench").await?;
    clear(&c2.client, "kbench").await?;
    let restore_name = format!("rr-{stamp}");
    let ours_restore = our_restore(backupctl, state, c2, &restore_name, &name)?;
    let objects = kubectl_objects(&dump)?;
    let create_file = work.join("kubectl-create.json");
    std::fs::write(
        &create_file,
        serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "List", "items": objects}))?,
    )?;
    let start = Instant::now();
    let out = Command::new("kubectl")
        .args([
            "--kubeconfig",
            &c2.kubeconfig,
            "--context",
            &c2.context,
            "create",
            "-f",
        ])
        .arg(&create_file)
        .stdout(Stdio::null())
        .output()?;
    ensure!(
        out.status.success(),
        "kubectl create failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kubectl_create = start.elapsed();
    clear(&c2.client, "kbench").await.ok();
    Ok(Comparison {
        ours,
        encrypted_best,
        plain_best,
        kubectl,
        listed,
        raw,
        ours_restore,
        kubectl_create,
    })
}

async fn bench(args: ResourcesBenchArgs, env_dir: &Path, backupctl: &Path) -> Result<()> {
    let state = EnvState::load(env_dir)?
        .with_context(|| format!("no environment in {} (env.json missing)", env_dir.display()))?;
    let c1 = cluster(&state, "c1").await?;
    let c2 = cluster(&state, "c2").await?;
    let stamp = jiff::Timestamp::now().strftime("%H%M%S").to_string();
    let compared = if args.rss_only {
        None
    } else {
        Some(compare(&args, &state, backupctl, (&c1, &c2), &stamp).await?)
    };
    let mut rss = Vec::new();
    for objects in [args.rss_objects, args.rss_objects_large] {
        if objects > 0 {
            rss.push(rss_run(backupctl, &state, (&c1, &c2), objects, &stamp).await?);
        }
    }
    // The clusters are shared: leave them as they were, but for the 10k set (and the
    // peak-RSS set when asked).
    clear(&c2.client, RSS_PREFIX).await?;
    clear(&c2.client, "bench").await?;
    if !args.keep_rss_objects {
        clear(&c1.client, RSS_PREFIX).await?;
    }

    let s = |d: Duration| d.as_secs_f64();
    if let Some(c) = compared {
        println!(
            "\nresources bench: {} ConfigMaps (~0.5 KB) over {} namespaces, Kubernetes 1.20 on 127.0.0.1",
            args.objects, args.namespaces
        );
        println!(
            "  backup  ours (backupctl → S3):        {:7.2} s   (CPU {:.2} s)",
            s(c.ours.elapsed),
            s(c.ours.cpu)
        );
        if let Some(enc) = c.encrypted_best {
            println!(
                "  backup  ours encrypted (--encrypt-to): {:7.2} s   (CPU {:.2} s) encrypted/unencrypted = {:.2} (goal ≤ 1.15; best of {} vs {})",
                s(enc.elapsed),
                s(enc.cpu),
                s(enc.elapsed) / s(c.plain_best),
                args.encrypted_runs,
                args.encrypted_runs,
            );
        }
        println!(
            "  backup  kubectl get -A -o json:        {:7.2} s   ours/kubectl = {:.2} (goal ≤ 0.3)",
            s(c.kubectl.elapsed),
            s(c.ours.elapsed) / s(c.kubectl.elapsed)
        );
        println!(
            "  backup  raw paged LIST ({} items): {:7.2} s   ours/raw = {:.2} (goal ≤ 2.5)",
            c.listed,
            s(c.raw),
            s(c.ours.elapsed) / s(c.raw)
        );
        println!(
            "  restore ours (backupctl → c2):         {:7.2} s   (CPU {:.2} s)",
            s(c.ours_restore.elapsed),
            s(c.ours_restore.cpu)
        );
        println!(
            "  restore kubectl create -f:             {:7.2} s   ours/kubectl = {:.2} (goal ≤ 0.3)",
            s(c.kubectl_create),
            s(c.ours_restore.elapsed) / s(c.kubectl_create)
        );
        println!(
            "  peak RSS backup  at {:>6}:            {:7.1} MiB (goal ≤ 150 MiB)",
            args.objects,
            mib(c.ours.peak_rss_kib)
        );
        println!(
            "  peak RSS restore at {:>6}:            {:7.1} MiB",
            args.objects,
            mib(c.ours_restore.peak_rss_kib)
        );
    }
    if !rss.is_empty() {
        println!(
            "\npeak RSS (GNU time) of backupctl, ConfigMaps (~0.5 KB) in namespaces of {RSS_PER_NAMESPACE}:"
        );
    }
    for run in &rss {
        let restore = mib(run.restore.peak_rss_kib);
        println!(
            "  backup  at {:>7}: {:7.1} MiB in {:7.2} s (CPU {:.2} s)",
            run.objects,
            mib(run.backup.peak_rss_kib),
            s(run.backup.elapsed),
            s(run.backup.cpu)
        );
        println!(
            "  restore at {:>7}: {:7.1} MiB in {:7.2} s (CPU {:.2} s)   goal ≤ {RESTORE_RSS_GOAL_MIB} MiB: {}",
            run.objects,
            restore,
            s(run.restore.elapsed),
            s(run.restore.cpu),
            if restore <= RESTORE_RSS_GOAL_MIB {
                "met"
            } else {
                "MISSED"
            }
        );
    }
    if let [small, large] = &rss[..] {
        let (a, b) = (
            mib(small.restore.peak_rss_kib),
            mib(large.restore.peak_rss_kib),
        );
        let growth = b / a - 1.0;
        println!(
            "  restore {} → {} objects: {:+.1} MiB ({:+.0}%): {} (goal: flat, within {:.0}%)",
            small.objects,
            large.objects,
            b - a,
            growth * 100.0,
            if growth <= FLAT_TOLERANCE {
                "flat"
            } else {
                "NOT flat"
            },
            FLAT_TOLERANCE * 100.0
        );
    }
    Ok(())
}

fn mib(kib: i64) -> f64 {
    kib as f64 / 1024.0
}

/// kubectl's dump turned into creatable objects in `kbench-*` namespaces (plus the namespaces).
fn kubectl_objects(dump: &Path) -> Result<Vec<Value>> {
    let list: Value = serde_json::from_slice(&std::fs::read(dump)?)?;
    let mut namespaces = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for mut item in list["items"].as_array().cloned().unwrap_or_default() {
        let Some(ns) = item["metadata"]["namespace"].as_str().map(str::to_owned) else {
            continue;
        };
        let Some(rest) = ns.strip_prefix("bench-") else {
            continue;
        };
        let target = format!("kbench-{rest}");
        namespaces.insert(target.clone());
        let name = item["metadata"]["name"].clone();
        item["metadata"] = json!({"name": name, "namespace": target, "labels": item["metadata"]["labels"].clone()});
        out.push(item);
    }
    let mut all: Vec<Value> = namespaces
        .into_iter()
        .map(|n| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}}))
        .collect();
    all.extend(out);
    Ok(all)
}
