//! `cargo xtask bench resources`: back up and restore many small objects, ours vs kubectl.
//!
//! On the local control plane: N ConfigMaps of ~0.5 KB over M namespaces on `c1` (created once,
//! reused by later runs). Measured in one run:
//! - `backupctl backup create` to the S3 server vs `kubectl get configmaps -A -o json > file`
//!   and vs the raw paged LIST (limit 500, body read and discarded) — the physical limit;
//! - the same backup encrypted with age (`--encrypt-to`) vs unencrypted, alternating;
//! - `backupctl restore create` into `c2` vs `kubectl create -f` of the same objects;
//! - our peak RSS (GNU time) of backup and restore at N and, optionally, at a larger count.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use futures::StreamExt;

use super::child::{Measured, build_backupctl, run_measured};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use tests::env_state::EnvState;

#[derive(clap::Args)]
pub struct ResourcesBenchArgs {
    /// ConfigMaps to back up.
    #[arg(long, default_value_t = 10_000)]
    pub objects: usize,
    /// Namespaces they are spread over.
    #[arg(long, default_value_t = 100)]
    pub namespaces: usize,
    /// Also measure peak RSS with this many objects (0 = skip).
    #[arg(long, default_value_t = 50_000)]
    pub rss_objects: usize,
    /// Encrypted backups (`--encrypt-to`), each followed by an unencrypted one; the best of
    /// each kind (the first unencrypted backup included) gives the ratio (0 = skip).
    #[arg(long, default_value_t = 2)]
    pub encrypted_runs: u32,
}

const LABEL: &str = "backup-fleet.bench/resources";

pub fn run(args: ResourcesBenchArgs) -> Result<()> {
    ensure!(
        args.namespaces > 0 && args.objects >= args.namespaces,
        "need at least one object per namespace"
    );
    let env_dir = crate::env::default_dir()?;
    crate::env::up_default(&env_dir)?;
    let backupctl = build_backupctl()?;
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
        client: tests::env::client_for(info).await?,
        kubeconfig: info.kubeconfig.display().to_string(),
        context: info.context.clone(),
    })
}

fn ns_name(prefix: &str, i: usize) -> String {
    format!("{prefix}-{i:03}")
}

/// Makes sure exactly `count` ConfigMaps exist over the bench namespaces of `c1`: a previous
/// run may have left more (the large RSS run), and then they are all removed first.
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

/// Makes sure `count` ConfigMaps exist over the bench namespaces of `c1` (idempotent).
async fn populate(client: &Client, namespaces: usize, count: usize) -> Result<()> {
    let ns_api: Api<Namespace> = Api::all(client.clone());
    for i in 0..namespaces {
        let ns = Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some(ns_name("bench", i)),
                labels: Some([(LABEL.to_string(), "true".to_string())].into()),
                ..Default::default()
            },
            ..Default::default()
        };
        match ns_api.create(&PostParams::default(), &ns).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    let value = "x".repeat(400);
    let start = Instant::now();
    let created: Vec<Result<bool>> = futures::stream::iter(0..count)
        .map(|i| {
            let client = client.clone();
            let value = value.clone();
            async move {
                let ns = ns_name("bench", i % namespaces);
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
    our_backup_with(backupctl, state, c, name, &[])
}

/// [`our_backup`] with more arguments (e.g. `--encrypt-to`).
fn our_backup_with(
    backupctl: &Path,
    state: &EnvState,
    c: &Cluster,
    name: &str,
    extra: &[&str],
) -> Result<Measured> {
    let mut args = vec![
        "backup",
        "create",
        name,
        "--include-namespaces",
        "bench-*",
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

async fn bench(args: ResourcesBenchArgs, env_dir: &Path, backupctl: &Path) -> Result<()> {
    let state = EnvState::load(env_dir)?
        .with_context(|| format!("no environment in {} (env.json missing)", env_dir.display()))?;
    let c1 = cluster(&state, "c1").await?;
    let c2 = cluster(&state, "c2").await?;
    let work = env_dir.join("bench-resources");
    std::fs::create_dir_all(&work)?;
    populate_exactly(&c1.client, args.namespaces, args.objects).await?;
    let stamp = jiff::Timestamp::now().strftime("%H%M%S").to_string();

    // Backup: ours, kubectl, raw LIST.
    let name = format!("res-{}-{stamp}", args.objects);
    let ours = our_backup(backupctl, &state, &c1, &name)?;
    // Encrypted (age, one X25519 recipient) vs unencrypted, alternating; best of each.
    let recipient = backup_storage::Identities::generate().recipients()[0].to_string();
    let mut plain_best = ours.elapsed;
    let mut encrypted_best: Option<Measured> = None;
    for run in 0..args.encrypted_runs {
        let encrypt = ["--encrypt-to", recipient.as_str()];
        let enc_name = format!("{name}-enc{run}");
        let enc = our_backup_with(backupctl, &state, &c1, &enc_name, &encrypt)?;
        eprintln!(
            "encrypted backup {run}: {:.2} s (CPU {:.2} s)",
            enc.elapsed.as_secs_f64(),
            enc.cpu.as_secs_f64()
        );
        if encrypted_best.is_none_or(|b| enc.elapsed < b.elapsed) {
            encrypted_best = Some(enc);
        }
        if run + 1 < args.encrypted_runs {
            let again = our_backup(backupctl, &state, &c1, &format!("{name}-plain{run}"))?;
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
    let ours_restore = our_restore(backupctl, &state, &c2, &restore_name, &name)?;
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

    let big = if args.rss_objects > args.objects {
        populate(&c1.client, args.namespaces, args.rss_objects).await?;
        let name = format!("res-{}-{stamp}", args.rss_objects);
        let big = our_backup(backupctl, &state, &c1, &name)?;
        // Restore memory must not grow with the backup either.
        clear(&c2.client, "bench").await?;
        let restored = our_restore(backupctl, &state, &c2, &format!("rr-big-{stamp}"), &name)?;
        Some((big, restored))
    } else {
        None
    };

    let s = |d: Duration| d.as_secs_f64();
    println!(
        "\nresources bench: {} ConfigMaps (~0.5 KB) over {} namespaces, Kubernetes 1.20 on 127.0.0.1",
        args.objects, args.namespaces
    );
    println!(
        "  backup  ours (backupctl → S3):        {:7.2} s   (CPU {:.2} s)",
        s(ours.elapsed),
        s(ours.cpu)
    );
    if let Some(enc) = encrypted_best {
        println!(
            "  backup  ours encrypted (--encrypt-to): {:7.2} s   (CPU {:.2} s) encrypted/unencrypted = {:.2} (goal ≤ 1.15; best of {} vs {})",
            s(enc.elapsed),
            s(enc.cpu),
            s(enc.elapsed) / s(plain_best),
            args.encrypted_runs,
            args.encrypted_runs,
        );
    }
    println!(
        "  backup  kubectl get -A -o json:        {:7.2} s   ours/kubectl = {:.2} (goal ≤ 0.3)",
        s(kubectl.elapsed),
        s(ours.elapsed) / s(kubectl.elapsed)
    );
    println!(
        "  backup  raw paged LIST ({listed} items): {:7.2} s   ours/raw = {:.2} (goal ≤ 2.5)",
        s(raw),
        s(ours.elapsed) / s(raw)
    );
    println!(
        "  restore ours (backupctl → c2):         {:7.2} s   (CPU {:.2} s)",
        s(ours_restore.elapsed),
        s(ours_restore.cpu)
    );
    println!(
        "  restore kubectl create -f:             {:7.2} s   ours/kubectl = {:.2} (goal ≤ 0.3)",
        s(kubectl_create),
        s(ours_restore.elapsed) / s(kubectl_create)
    );
    println!(
        "  peak RSS backup  at {:>6}:            {:7.1} MiB (goal ≤ 150 MiB)",
        args.objects,
        mib(ours.peak_rss_kib)
    );
    println!(
        "  peak RSS restore at {:>6}:            {:7.1} MiB",
        args.objects,
        mib(ours_restore.peak_rss_kib)
    );
    if let Some((backup, restore)) = big {
        println!(
            "  peak RSS backup  at {:>6}:            {:7.1} MiB in {:.2} s (goal: flat)",
            args.rss_objects,
            mib(backup.peak_rss_kib),
            s(backup.elapsed)
        );
        println!(
            "  peak RSS restore at {:>6}:            {:7.1} MiB in {:.2} s (goal: flat)",
            args.rss_objects,
            mib(restore.peak_rss_kib),
            s(restore.elapsed)
        );
    }
    clear(&c2.client, "kbench").await.ok();
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
